"""Matplotlib figures of episodes and KPI comparisons (files only; no display needed)."""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402


def lem_episode(infos: dict[str, dict], path: Path, dt_h: float = 1.0) -> None:
    """Prices, P2P volume and mean SOC over one episode, one line per policy.

    ``infos[policy]`` maps info keys to arrays with a leading time axis [T, ...].
    """
    fig, axes = plt.subplots(3, 1, figsize=(7, 7.5), sharex=True)
    first = next(iter(infos.values()))
    hours = np.arange(len(first["fit"])) * dt_h
    axes[0].step(hours, first["fit"], "k--", where="post", lw=1, label="FiT")
    axes[0].step(hours, first["utility"], "k-", where="post", lw=1, label="utility")
    for name, inf in infos.items():
        vol = np.asarray(inf["p2p_volume_kwh"])
        price = np.where(vol > 0, inf["clearing_price"], np.nan)
        axes[0].plot(hours, price, "o-", ms=3, label=f"P2P price: {name}")
        axes[1].plot(hours, vol, "o-", ms=3, label=name)
        soc = np.asarray(inf["soc"])
        owners = np.any(soc > 0, axis=0)  # agents without a battery report SOC 0
        axes[2].plot(hours, soc[:, owners].mean(axis=-1) if owners.any() else soc[:, 0], label=name)
    axes[0].set_ylabel("price (currency/MWh)")
    axes[1].set_ylabel("P2P volume (kWh)")
    axes[2].set_ylabel("mean SOC of batteries")
    axes[2].set_xlabel("hour of day")
    for ax in axes:
        ax.grid(alpha=0.3)
    axes[0].legend(fontsize=7, ncol=2)
    axes[1].legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def kpi_bars(table: dict[str, dict[str, float]], keys: list[str], path: Path) -> None:
    """Bar chart per KPI; ``table[policy][kpi]`` and optional ``table[policy][kpi + '_se']``."""
    fig, axes = plt.subplots(1, len(keys), figsize=(3.2 * len(keys), 3.6))
    names = list(table)
    for ax, key in zip(np.atleast_1d(axes), keys, strict=True):
        vals = [table[n][key] for n in names]
        err = [table[n].get(key + "_se", 0.0) for n in names]
        ax.bar(range(len(names)), vals, yerr=err, color="tab:blue", alpha=0.8)
        ax.set_xticks(range(len(names)), names, rotation=45, ha="right", fontsize=7)
        ax.set_title(key, fontsize=9)
        ax.grid(axis="y", alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
