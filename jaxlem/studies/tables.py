"""Study tables: CSV files and Markdown tables of mean ± s.e. columns."""

from __future__ import annotations

import csv
from collections.abc import Sequence
from pathlib import Path


def write_csv(path: Path, rows: list[dict]) -> None:
    """Rows with the union of their keys as columns (first-seen order)."""
    cols: list[str] = []
    for r in rows:
        cols += [k for k in r if k not in cols]
    with open(path, "w", newline="") as fh:
        w = csv.DictWriter(fh, fieldnames=cols)
        w.writeheader()
        w.writerows(rows)


def fmt(mean: float, se: float | None = None) -> str:
    """``mean ± se`` with 3-4 significant digits."""
    m = f"{mean:.4g}" if abs(mean) < 1e5 else f"{mean:.3e}"
    return m if se is None else f"{m} ± {se:.2g}"


def markdown(rows: list[dict], labels: Sequence[str], keys: Sequence[str]) -> str:
    """A Markdown table: the ``labels`` columns, then ``mean ± s.e.`` of each key (``key`` and
    ``key_se`` in each row)."""
    head = "| " + " | ".join([*labels, *keys]) + " |"
    sep = "|" + "|".join(["---"] * len(labels) + ["---:"] * len(keys)) + "|"
    body = [
        "| "
        + " | ".join(
            [str(r[c]) for c in labels]
            + [fmt(r[k], r.get(k + "_se")) if k in r else "-" for k in keys]
        )
        + " |"
        for r in rows
    ]
    return "\n".join([head, sep, *body])


def markdown_plain(rows: list[dict]) -> str:
    """A Markdown table of already formatted values."""
    if not rows:
        return "(none)"
    cols = list(rows[0])
    head = "| " + " | ".join(cols) + " |"
    sep = "|" + "|".join(["---"] * len(cols)) + "|"
    return "\n".join(
        [head, sep, *("| " + " | ".join(str(r[c]) for c in cols) + " |" for r in rows)]
    )


def files_line(*names: str) -> str:
    """The report's closing line: its files, and the per-cell results that stay out of git."""
    listed = ", ".join(f"`{n}`" for n in (*names, "study.json"))
    return (
        f"Files: {listed}; `cells/*.json` (per-cell results, kept for resuming; written by "
        "the command, not committed)."
    )
