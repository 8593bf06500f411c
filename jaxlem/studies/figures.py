"""Study figures: small PNGs, one panel per cell of a study's grid."""

from __future__ import annotations

import math
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

STYLES = {"wholesale_price": "-", "retail_price": "--", "local_price": ":"}


def _grid(n: int, width: float = 3.4, height: float = 2.4):
    cols = min(n, 4)
    rows = math.ceil(n / cols)
    fig, axes = plt.subplots(rows, cols, figsize=(width * cols, height * rows), squeeze=False,
                             sharex=True)  # fmt: skip
    flat = axes.reshape(-1)
    for ax in flat[n:]:
        ax.axis("off")
    return fig, flat


def multiactor_levels(series: dict[str, dict[str, dict]], path: Path) -> None:
    """Per cell: wholesale (solid), retail (dashed) and local (dotted) price per hour, one
    colour per policy."""
    fig, axes = _grid(len(series))
    for ax, (cell, pols) in zip(axes, series.items(), strict=False):
        for i, (name, tr) in enumerate(pols.items()):
            for key, ls in STYLES.items():
                y = np.asarray(tr[key])
                label = f"{name}: {key.split('_')[0]}" if ax is axes[0] else None
                ax.plot(np.arange(len(y)), y, ls=ls, lw=0.9, color=f"C{i}", label=label)
        ax.set_title(cell, fontsize=8)
        ax.grid(alpha=0.3)
        ax.tick_params(labelsize=7)
    axes[0].set_ylabel("currency/MWh", fontsize=8)
    axes[0].legend(fontsize=5, ncol=1)
    fig.supxlabel("hour", fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)


def cell_lines(series: dict[str, dict[str, dict]], key: str, ylabel: str, path: Path) -> None:
    """Per cell: ``key`` per step, one line per policy."""
    fig, axes = _grid(len(series))
    for ax, (cell, pols) in zip(axes, series.items(), strict=False):
        for i, (name, tr) in enumerate(pols.items()):
            y = np.asarray(tr[key])
            ax.plot(np.arange(len(y)), y, lw=1.0, color=f"C{i}", label=name)
        ax.set_title(cell, fontsize=8)
        ax.grid(alpha=0.3)
        ax.tick_params(labelsize=7)
    axes[0].set_ylabel(ylabel, fontsize=8)
    axes[0].legend(fontsize=6)
    fig.supxlabel("hour", fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)


def learning_curves(curves: dict[str, dict[str, list[float]]], path: Path) -> None:
    """Per cell: the mean training episode return per update, one line per algorithm."""
    fig, axes = _grid(len(curves))
    for ax, (cell, algos) in zip(axes, curves.items(), strict=False):
        for i, (name, y) in enumerate(algos.items()):
            ax.plot(np.arange(1, len(y) + 1), y, lw=1.0, color=f"C{i + 1}", label=name)
        ax.set_title(cell, fontsize=8)
        ax.grid(alpha=0.3)
        ax.tick_params(labelsize=7)
    axes[0].set_ylabel("episode return", fontsize=8)
    axes[0].legend(fontsize=6)
    fig.supxlabel("update", fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)
