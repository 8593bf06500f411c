"""Comparison tables as text and CSV: one format for ``jaxlem-train``, ``jaxlem-eval`` and
``jaxlem-baselines``."""

from __future__ import annotations

import csv
from collections.abc import Sequence
from pathlib import Path


def cell(row: dict, key: str, width: int = 24) -> str:
    """One table cell: mean ± s.e., or a dash where the policy has no such KPI."""
    if key not in row:
        return f"{'-':>{width}}"
    return f"{row[key]:>{width - 9}.4g} ±{row[key + '_se']:<7.2g}"


def format_table(table: dict[str, dict], keys: Sequence[str], width: int = 24) -> str:
    """Rows ``table[policy] = {kpi: mean, kpi_se: s.e.}`` as aligned text."""
    head = f"{'policy':<20}" + "".join(f"{k:>{width}}" for k in keys)
    lines = [head, "-" * len(head)]
    for name, row in table.items():
        lines.append(f"{name:<20}" + "".join(cell(row, k, width) for k in keys))
    return "\n".join(lines)


def format_paired(paired: dict[str, dict]) -> str:
    """Trained - baseline differences of the mean agent return with their paired s.e."""

    def z(row: dict) -> str:
        return "too few samples for a z" if row["z"] is None else f"{row['z']:+.1f} s.e."

    return "\n".join(
        f"trained - {name:<18} mean agent return {row['diff']:+.4f} ± {row['diff_se']:.4f} "
        f"(paired s.e.; {z(row)})"
        for name, row in paired.items()
    )


def write_table_csv(path: Path, table: dict[str, dict]) -> None:
    """One row per policy, one column per KPI of the first row (and its ``_se``), sorted."""
    cols = sorted(next(iter(table.values())))
    with open(path, "w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(["policy", *cols])
        for name, row in table.items():
            w.writerow([name, *(row.get(c, "") for c in cols)])
