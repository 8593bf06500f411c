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


def learning_curve(rows: list[dict], path: Path, references: dict | None = None) -> None:
    """Training return per update and the periodic held-out evaluation, one line per seed;
    ``references`` (name -> mean agent return: baselines, the perfect-foresight optimum) are
    drawn as horizontal lines."""
    fig, ax = plt.subplots(figsize=(7, 4))
    for i, (name, value) in enumerate((references or {}).items()):
        ax.axhline(value, color=f"C{(i + 3) % 10}", ls=":", lw=1.2, label=name)
    seeds = sorted({r["seed"] for r in rows})
    for s in seeds:
        rs = [r for r in rows if r["seed"] == s]
        x = np.asarray([r["env_steps"] for r in rs], np.float64)
        y = np.asarray([r.get("episode_return", np.nan) for r in rs], np.float64)
        ok = np.isfinite(y) & (np.asarray([r.get("episodes", 1.0) for r in rs]) > 0)
        (line,) = ax.plot(x[ok], y[ok], lw=1, alpha=0.8, label=f"seed {s} (training)")
        ev = np.asarray([r.get("eval_return", np.nan) for r in rs], np.float64)
        e_ok = np.isfinite(ev)
        if e_ok.any():
            ax.plot(
                x[e_ok], ev[e_ok], "o--", ms=3, color=line.get_color(), label=f"seed {s} (eval)"
            )
    ax.set_xlabel("env steps (per seed)")
    ax.set_ylabel("mean agent episode return")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def gencos_episode(infos: dict[str, dict], path: Path, dt_h: float = 0.5) -> None:
    """System LMP and total dispatch per generator over one gencos-v0 episode, per policy."""
    fig, axes = plt.subplots(2, 1, figsize=(7, 6.5), sharex=True)
    for name, inf in infos.items():
        lmp = np.asarray(inf["system_lmp"])
        hours = np.arange(len(lmp)) * dt_h
        axes[0].step(hours, lmp, where="post", lw=1.2, label=name)
    axes[0].set_ylabel("load-weighted LMP ($/MWh)")
    axes[0].legend(fontsize=7)
    first_name = next(iter(infos))
    p = np.asarray(infos[first_name]["p_gen"])
    hours = np.arange(p.shape[0]) * dt_h
    axes[1].stackplot(hours, p.T, labels=[f"G{g + 1}" for g in range(p.shape[1])], step="post")
    axes[1].set_ylabel(f"dispatch, {first_name} (MW)")
    axes[1].set_xlabel("hour")
    axes[1].legend(fontsize=7, ncol=5)
    for ax in axes:
        ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def multiactor_episode(infos: dict[str, dict], path: Path, dt_h: float = 1.0) -> None:
    """Prices at each level, renewable share and producers' capacity over one multiactor-v0
    episode, per policy."""
    fig, axes = plt.subplots(3, 1, figsize=(7, 8), sharex=True)
    for name, inf in infos.items():
        w = np.asarray(inf["wholesale_price"])
        hours = np.arange(len(w)) * dt_h
        axes[0].step(hours, w, where="post", lw=1.0, label=f"{name}: wholesale")
        axes[0].step(hours, np.asarray(inf["retail_price"]), where="post", lw=1.0, ls="--",
                     label=f"{name}: retail")  # fmt: skip
        axes[0].step(hours, np.asarray(inf["local_price"]), where="post", lw=0.8, ls=":",
                     label=f"{name}: local")  # fmt: skip
        axes[1].plot(hours, np.asarray(inf["renewable_share"]), lw=1.0, label=name)
        axes[2].step(hours, np.asarray(inf["capacity_kw"]).sum(axis=-1), where="post", label=name)
    axes[0].set_ylabel("price (currency/MWh)")
    axes[0].legend(fontsize=6, ncol=2)
    axes[1].set_ylabel("renewable share of output")
    axes[2].set_ylabel("producers' capacity (kW)")
    axes[2].set_xlabel("hour")
    axes[2].legend(fontsize=7)
    for ax in axes:
        ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
