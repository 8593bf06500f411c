"""Study figures: small PNGs, one panel per cell of a study's grid."""

from __future__ import annotations

import math
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

STYLES = {"wholesale_price": "-", "retail_price": "--", "local_price": ":"}


def save(fig, path: Path, tight: bool = True) -> None:
    """Write ``fig`` as a small PNG and close it."""
    if tight:
        fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)


def panel(ax, title: str) -> None:
    """A panel's title, grid and tick size as every study figure has them."""
    ax.set_title(title, fontsize=8)
    ax.grid(alpha=0.3)
    ax.tick_params(labelsize=7)


def _finish_curves(fig, axes, path: Path) -> None:
    axes[0].set_ylabel("episode return", fontsize=8)
    axes[0].legend(fontsize=5)
    fig.supxlabel("update", fontsize=8)
    save(fig, path)


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
    save(fig, path)


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
    save(fig, path)


def learning_curves(curves: dict[str, dict[str, list[float]]], path: Path) -> None:
    """Per cell: the mean training episode return per update, one line per algorithm."""
    fig, axes = _grid(len(curves))
    for ax, (cell, algos) in zip(axes, curves.items(), strict=False):
        for i, (name, y) in enumerate(algos.items()):
            ax.plot(np.arange(1, len(y) + 1), y, lw=1.0, color=f"C{i + 1}", label=name)
        panel(ax, cell)
    _finish_curves(fig, axes, path)


POLICY_COLOURS = {
    "trained": "C0",
    "rule_based_battery": "C1",
    "zero_intelligence": "C2",
    "dso_only": "C7",
    "optimum": "k",
}


def grouped_bars(
    rows: list[dict], group: str, keys: list[str], policies: list[str], path: Path
) -> None:
    """One panel per KPI: bars per ``group`` value (x) and policy (colour), error bars from
    ``key_se``; ``rows`` carry ``group``, ``policy``, ``key`` and ``key_se``."""
    cells = list(dict.fromkeys(r[group] for r in rows))
    fig, axes = _grid(len(keys), width=4.6, height=3.0)
    w = 0.8 / len(policies)
    for ax, key in zip(axes, keys, strict=False):
        for j, pol in enumerate(policies):
            sub = {r[group]: r for r in rows if r["policy"] == pol and key in r}
            x = [i + (j - (len(policies) - 1) / 2) * w for i, c in enumerate(cells) if c in sub]
            y = [sub[c][key] for c in cells if c in sub]
            e = [sub[c].get(key + "_se", 0.0) for c in cells if c in sub]
            ax.bar(
                x,
                y,
                w,
                yerr=e,
                label=pol,
                color=POLICY_COLOURS.get(pol, f"C{j}"),
                alpha=0.85,
                error_kw={"lw": 0.8},
            )
        ax.set_xticks(range(len(cells)), cells, rotation=30, ha="right", fontsize=7)
        ax.set_title(key, fontsize=9)
        ax.grid(axis="y", alpha=0.3)
        ax.tick_params(labelsize=7)
    axes[0].legend(fontsize=6)
    save(fig, path)


def table_bars(table: dict[str, dict[str, float]], keys: list[str], path: Path) -> None:
    """One panel per column of a static table (``table[cell][key]``)."""
    fig, axes = _grid(len(keys), width=3.6, height=2.8)
    cells = list(table)
    for ax, key in zip(axes, keys, strict=False):
        ax.bar(range(len(cells)), [table[c][key] for c in cells], color="C4", alpha=0.85)
        ax.set_xticks(range(len(cells)), cells, rotation=30, ha="right", fontsize=7)
        ax.set_title(key, fontsize=9)
        ax.grid(axis="y", alpha=0.3)
        ax.tick_params(labelsize=7)
    save(fig, path)


def market_over_time(traces: dict[str, dict[str, dict]], path: Path) -> None:
    """Per cell (column): the P2P price of each policy against the FiT-utility band (top), and
    the P2P volume and DSO import of each policy (bottom), over one held-out episode."""
    cells = list(traces)
    fig, axes = plt.subplots(
        2, len(cells), figsize=(3.2 * len(cells), 4.8), squeeze=False, sharex=True
    )
    for c, cell in enumerate(cells):
        top, bot = axes[0, c], axes[1, c]
        first = next(iter(traces[cell].values()))
        hours = np.arange(len(first["fit"]))
        top.fill_between(
            hours,
            first["fit"],
            first["utility"],
            step="post",
            color="0.85",
            label="FiT-utility band",
        )
        for pol, tr in traces[cell].items():
            vol = np.asarray(tr["p2p_volume_kwh"])
            price = np.where(vol > 0, tr["clearing_price"], np.nan)
            col = POLICY_COLOURS.get(pol)
            top.plot(hours, price, "o-", ms=2, lw=1, color=col, label=pol)
            bot.plot(hours, vol, "-", lw=1, color=col, label=f"P2P {pol}")
            bot.plot(hours, tr["import_kwh"], ":", lw=1, color=col, label=f"DSO import {pol}")
        top.set_title(cell, fontsize=8)
        for ax in (top, bot):
            ax.grid(alpha=0.3)
            ax.tick_params(labelsize=7)
    axes[0, 0].set_ylabel("price (currency/MWh)", fontsize=8)
    axes[1, 0].set_ylabel("energy (kWh)", fontsize=8)
    axes[0, 0].legend(fontsize=5)
    axes[1, 0].legend(fontsize=5)
    fig.supxlabel("hour", fontsize=8)
    save(fig, path)


def violins(samples: dict[str, dict[str, np.ndarray]], ylabel: str, path: Path) -> None:
    """Distributions per cell (x) and policy (side by side): ``samples[cell][policy]``."""
    cells = list(samples)
    pols = list(dict.fromkeys(p for c in cells for p in samples[c]))
    w = 0.8 / len(pols)
    fig, ax = plt.subplots(figsize=(1.4 * len(cells) * len(pols) + 1.5, 3.2))
    for j, pol in enumerate(pols):
        pos, data = [], []
        for i, c in enumerate(cells):
            v = np.asarray(samples[c].get(pol, []), np.float64)
            if v.size > 1 and np.ptp(v) > 0:
                pos.append(i + (j - (len(pols) - 1) / 2) * w)
                data.append(v)
        if data:
            parts = ax.violinplot(data, pos, widths=w * 0.95, showmedians=True)
            for b in parts["bodies"]:
                b.set_facecolor(POLICY_COLOURS.get(pol, f"C{j}"))
                b.set_alpha(0.6)
        ax.plot([], [], color=POLICY_COLOURS.get(pol, f"C{j}"), lw=6, alpha=0.6, label=pol)
    ax.set_xticks(range(len(cells)), cells, rotation=30, ha="right", fontsize=7)
    ax.set_ylabel(ylabel, fontsize=8)
    ax.grid(axis="y", alpha=0.3)
    ax.legend(fontsize=6)
    save(fig, path)


def trade_heatmaps(matrices: dict[str, np.ndarray], path: Path) -> None:
    """Per cell: energy sold by each agent (row) to each agent (column), kWh."""
    fig, axes = _grid(len(matrices), width=3.0, height=2.7)
    for ax, (cell, m) in zip(axes, matrices.items(), strict=False):
        m = np.asarray(m)
        im = ax.imshow(m, cmap="viridis")
        ax.set_title(cell, fontsize=8)
        ax.set_xticks(range(len(m)))
        ax.set_yticks(range(len(m)))
        ax.tick_params(labelsize=6)
        fig.colorbar(im, ax=ax, fraction=0.046).ax.tick_params(labelsize=6)
    axes[0].set_ylabel("seller", fontsize=8)
    fig.supxlabel("buyer (kWh over the episode)", fontsize=8)
    save(fig, path)


def trade_network(
    m: np.ndarray, sizes: np.ndarray, labels: list[str], title: str, path: Path
) -> None:
    """The trading network: agents on a circle (marker area ~ ``sizes``), an arrow from seller
    to buyer with width ~ energy traded."""
    m = np.asarray(m, np.float64)
    n = len(m)
    ang = 2 * np.pi * np.arange(n) / max(n, 1)
    xy = np.stack([np.cos(ang), np.sin(ang)], 1)
    fig, ax = plt.subplots(figsize=(4.2, 4.2))
    top = m.max() if m.size and m.max() > 0 else 1.0
    for i in range(n):
        for j in range(n):
            if m[i, j] > 1e-3 * top:
                ax.annotate(
                    "",
                    xy=xy[j],
                    xytext=xy[i],
                    arrowprops={
                        "arrowstyle": "->",
                        "lw": 0.3 + 4 * m[i, j] / top,
                        "alpha": 0.6,
                        "color": "C0",
                        "connectionstyle": "arc3,rad=0.15",
                    },
                )
    s = np.asarray(sizes, np.float64)
    ax.scatter(xy[:, 0], xy[:, 1], s=60 + 400 * s / max(s.max(), 1e-9), color="C1", zorder=3)
    for i in range(n):
        ax.text(*(1.18 * xy[i]), labels[i], ha="center", va="center", fontsize=7)
    ax.set_title(title, fontsize=8)
    ax.set_xlim(-1.45, 1.45)
    ax.set_ylim(-1.45, 1.45)
    ax.axis("off")
    save(fig, path)


def soc_trajectories(socs: dict[str, np.ndarray], path: Path) -> None:
    """Per cell: each battery's state of charge over one episode ([T, N]; agents without a
    battery left out)."""
    fig, axes = _grid(len(socs), width=3.0, height=2.3)
    for ax, (cell, soc) in zip(axes, socs.items(), strict=False):
        soc = np.asarray(soc)
        own = np.any(soc > 0, axis=0)
        for i in np.flatnonzero(own):
            ax.plot(np.arange(len(soc)), soc[:, i], lw=1, label=f"agent {i}")
        ax.set_ylim(-0.02, 1.02)
        ax.set_title(cell + ("" if own.any() else " (no battery)"), fontsize=8)
        ax.grid(alpha=0.3)
        ax.tick_params(labelsize=7)
    axes[0].set_ylabel("SOC", fontsize=8)
    fig.supxlabel("hour", fontsize=8)
    save(fig, path)


def seed_band_curves(curves: dict[str, dict], path: Path) -> None:
    """Per cell: the training episode return per update, mean over seeds with a min-max band,
    and horizontal references (``curves[cell]['refs']``: name -> value)."""
    fig, axes = _grid(len(curves), width=3.2, height=2.4)
    for ax, (cell, c) in zip(axes, curves.items(), strict=False):
        y = np.asarray(c["seeds"], np.float64)  # [seeds, updates]
        x = np.arange(1, y.shape[1] + 1)
        ax.plot(x, y.mean(0), color="C0", lw=1.2, label="trained (mean of seeds)")
        ax.fill_between(x, y.min(0), y.max(0), color="C0", alpha=0.25)
        for k, (name, v) in enumerate(c.get("refs", {}).items()):
            ax.axhline(v, ls="--", lw=1, color=POLICY_COLOURS.get(name, f"C{k + 1}"), label=name)
        panel(ax, cell)
    _finish_curves(fig, axes, path)


HHI_THRESHOLDS = (1500.0, 2500.0)  # moderately, highly concentrated (0-10,000 scale)


def _hhi_class_colour(h: float) -> str:
    return "C2" if h < HHI_THRESHOLDS[0] else "C1" if h < HHI_THRESHOLDS[1] else "C3"


def market_power(cap: dict[str, dict], table: list[dict], path: Path) -> None:
    """The market-power 2x2 per structure: HHI on capacity and on realised sales with the
    concentration thresholds; CR1 and CR3 on capacity and sales (trained agents); the
    capacity range (min to max kW, total in the label); HHI on capacity coloured by class."""
    sts = list(cap)
    by = {(r["structure"], r["policy"]): r for r in table}
    x = np.arange(len(sts))
    fig, ax = plt.subplots(2, 2, figsize=(9, 6.4))
    a = ax[0, 0]
    a.bar(x - 0.27, [cap[s]["hhi_capacity"] for s in sts], 0.27, label="capacity", color="C4")
    for k, pol in enumerate(("trained", "rule_based_battery")):
        a.bar(x + 0.27 * k, [by[(s, pol)]["hhi_sales"] for s in sts], 0.27,
              yerr=[by[(s, pol)]["hhi_sales_se"] for s in sts], label=f"sales: {pol}",
              color=POLICY_COLOURS[pol])  # fmt: skip
    for t, lab in zip(HHI_THRESHOLDS, ("moderate", "high"), strict=True):
        a.axhline(t, ls="--", lw=0.8, color="k")
        a.text(len(sts) - 0.5, t, lab, fontsize=6, va="bottom", ha="right")
    a.set_title("HHI (0-10,000)", fontsize=9)
    a.legend(fontsize=6)
    a = ax[0, 1]
    tr = [by[(s, "trained")] for s in sts]
    a.bar(x - 0.3, [cap[s]["cr1_capacity"] for s in sts], 0.2, label="CR1 capacity", color="C4")
    a.bar(x - 0.1, [cap[s]["cr3_capacity"] for s in sts], 0.2, label="CR3 capacity", color="C9")
    a.bar(x + 0.1, [r["cr1_sales"] for r in tr], 0.2, yerr=[r["cr1_sales_se"] for r in tr],
          label="CR1 sales (trained)", color="C0")  # fmt: skip
    a.bar(x + 0.3, [r["cr3_sales"] for r in tr], 0.2, yerr=[r["cr3_sales_se"] for r in tr],
          label="CR3 sales (trained)", color="C5")  # fmt: skip
    a.set_ylim(0, 1.05)
    a.set_title("concentration ratios", fontsize=9)
    a.legend(fontsize=6)
    a = ax[1, 0]
    lo = np.asarray([cap[s]["min_kw"] for s in sts])
    hi = np.asarray([cap[s]["max_kw"] for s in sts])
    a.bar(x, hi - lo, 0.5, bottom=lo, color="C7", alpha=0.7)
    a.scatter(x, lo, color="C0", zorder=3, label="smallest")
    a.scatter(x, hi, color="C3", zorder=3, label="largest")
    a.set_title("PV capacity range (kW)", fontsize=9)
    a.legend(fontsize=6)
    a = ax[1, 1]
    h = [cap[s]["hhi_capacity"] for s in sts]
    a.bar(x, h, color=[_hhi_class_colour(v) for v in h])
    for t in HHI_THRESHOLDS:
        a.axhline(t, ls="--", lw=0.8, color="k")
    a.set_title("HHI on capacity by class (green < 1,500 < orange < 2,500 < red)", fontsize=8)
    labels = [f"{s}\n({cap[s]['total_kw']:.0f} kW)" for s in sts]
    for a in ax.reshape(-1):
        a.set_xticks(x, labels, fontsize=7)
        a.grid(axis="y", alpha=0.3)
        a.tick_params(labelsize=7)
    save(fig, path)


def performance(cap: dict[str, dict], table: list[dict], path: Path) -> None:
    """The performance 2x2: mean agent return against HHI and CR1 on capacity, by structure
    and policy, and the structures ranked by the trained agents' return."""
    sts = list(cap)
    by = {(r["structure"], r["policy"]): r for r in table}
    pols = [p for p in ("trained", "rule_based_battery", "zero_intelligence", "optimum")
            if all((s, p) in by for s in sts)]  # fmt: skip
    fig, ax = plt.subplots(2, 2, figsize=(9, 6.4))
    for a, xkey in ((ax[0, 0], "hhi_capacity"), (ax[1, 0], "cr1_capacity")):
        for pol in pols:
            xs = [cap[s][xkey] for s in sts]
            ys = [by[(s, pol)]["mean_agent_return"] for s in sts]
            es = [by[(s, pol)]["mean_agent_return_se"] for s in sts]
            a.errorbar(xs, ys, yerr=es, fmt="o", ms=4, color=POLICY_COLOURS.get(pol), label=pol)
        for s in sts:
            a.annotate(s, (cap[s][xkey], by[(s, pols[0])]["mean_agent_return"]), fontsize=6)
        a.set_xlabel(xkey, fontsize=8)
        a.set_ylabel("mean agent return", fontsize=8)
        a.legend(fontsize=6)
    a = ax[0, 1]
    w = 0.8 / len(pols)
    for j, pol in enumerate(pols):
        a.bar(np.arange(len(sts)) + (j - (len(pols) - 1) / 2) * w,
              [by[(s, pol)]["mean_agent_return"] for s in sts], w,
              yerr=[by[(s, pol)]["mean_agent_return_se"] for s in sts],
              color=POLICY_COLOURS.get(pol), label=pol)  # fmt: skip
    a.set_xticks(range(len(sts)), sts, fontsize=7)
    a.set_title("mean agent return by structure", fontsize=9)
    a = ax[1, 1]
    order = sorted(sts, key=lambda s: by[(s, pols[0])]["mean_agent_return"])
    a.barh(range(len(order)), [by[(s, pols[0])]["mean_agent_return"] for s in order],
           xerr=[by[(s, pols[0])]["mean_agent_return_se"] for s in order], color="C0")  # fmt: skip
    a.set_yticks(range(len(order)), order, fontsize=7)
    a.set_title(f"ranking ({pols[0]})", fontsize=9)
    for a in ax.reshape(-1):
        a.grid(alpha=0.3)
        a.tick_params(labelsize=7)
    save(fig, path)


def kpi_lines(rows: list[dict], x: str, line: str, keys: list[str], path: Path,
              refs: dict[str, dict[str, float]] | None = None) -> None:  # fmt: skip
    """One panel per KPI: the KPI against ``x`` with one line per value of ``line`` (error
    bars from ``key_se``), and dashed horizontal references ``refs[name][key]``."""
    fig, axes = _grid(len(keys), width=3.4, height=2.6)
    groups = list(dict.fromkeys(r[line] for r in rows))
    for ax, key in zip(axes, keys, strict=False):
        for j, g in enumerate(groups):
            sub = sorted((r for r in rows if r[line] == g and key in r), key=lambda r: r[x])
            ax.errorbar([r[x] for r in sub], [r[key] for r in sub],
                        yerr=[r.get(key + "_se", 0.0) for r in sub], marker="o", ms=3, lw=1,
                        color=f"C{j}", label=str(g))  # fmt: skip
        for name, ref in (refs or {}).items():
            if key in ref:
                ax.axhline(ref[key], ls="--", lw=0.8, color=POLICY_COLOURS.get(name, "0.5"),
                           label=name)  # fmt: skip
        ax.set_title(key, fontsize=9)
        ax.set_xlabel(x, fontsize=8)
        ax.grid(alpha=0.3)
        ax.tick_params(labelsize=7)
    axes[0].legend(fontsize=6)
    save(fig, path)


def dispatch_stacks(traces: dict[str, dict], units: list[str], path: Path) -> None:
    """Per policy: the units' dispatch (MW) stacked over one episode (``p_gen`` [T, G])."""
    fig, axes = _grid(len(traces), width=3.2, height=2.4)
    for ax, (pol, tr) in zip(axes, traces.items(), strict=False):
        p = np.asarray(tr["p_gen"])
        ax.stackplot(np.arange(len(p)) / 2.0, p.T, labels=units, alpha=0.85)
        ax.set_title(pol, fontsize=8)
        ax.grid(alpha=0.3)
        ax.tick_params(labelsize=7)
    axes[0].set_ylabel("MW", fontsize=8)
    axes[0].legend(fontsize=6, loc="upper left")
    fig.supxlabel("hour", fontsize=8)
    save(fig, path)


def lmp_maps(lmps: dict[str, np.ndarray], frm: np.ndarray, to: np.ndarray, limited: np.ndarray,
             gen_bus: np.ndarray, units: list[str], path: Path) -> None:  # fmt: skip
    """Per policy: the network's buses on a circle coloured by their (mean) LMP, branches
    (thick where limited) and the units at their buses."""
    nb = len(next(iter(lmps.values())))
    ang = np.pi / 2 - 2 * np.pi * np.arange(nb) / nb
    xy = np.stack([np.cos(ang), np.sin(ang)], 1)
    lo = min(float(np.min(v)) for v in lmps.values())
    hi = max(float(np.max(v)) for v in lmps.values())
    fig, axes = _grid(len(lmps), width=2.8, height=2.8)
    for ax, (pol, lmp) in zip(axes, lmps.items(), strict=False):
        for f, t, lim in zip(frm, to, limited, strict=True):
            ax.plot(*xy[[f, t]].T, color="C3" if lim else "0.6", lw=3 if lim else 1, zorder=1)
        sc = ax.scatter(xy[:, 0], xy[:, 1], c=lmp, cmap="viridis", vmin=lo, vmax=hi, s=260,
                        zorder=2, edgecolors="k")  # fmt: skip
        for b in range(nb):
            ax.text(*xy[b], f"{lmp[b]:.0f}", ha="center", va="center", fontsize=6, color="w")
            names = [u for u, gb in zip(units, gen_bus, strict=True) if gb == b]
            ax.text(*(1.32 * xy[b]), f"bus {b + 1}\n" + " ".join(names), ha="center",
                    va="center", fontsize=6)  # fmt: skip
        ax.set_title(pol, fontsize=8)
        ax.set_xlim(-1.7, 1.7)
        ax.set_ylim(-1.7, 1.7)
        ax.axis("off")
    fig.colorbar(sc, ax=list(axes), fraction=0.03, label="LMP ($/MWh)")
    save(fig, path, tight=False)


def markup_trajectories(markups: dict[str, np.ndarray], units: list[str], path: Path) -> None:
    """Per policy: each unit's markup (mean over its blocks, in [0, 1] of the largest) over one
    episode (``markup`` [T, G, K] or [T, G])."""
    fig, axes = _grid(len(markups), width=3.2, height=2.4)
    for ax, (pol, m) in zip(axes, markups.items(), strict=False):
        m = np.asarray(m)
        m = m.mean(-1) if m.ndim == 3 else m
        for i, u in enumerate(units):
            ax.plot(np.arange(len(m)) / 2.0, m[:, i], lw=1, label=u)
        ax.set_ylim(-0.02, 1.02)
        ax.set_title(pol, fontsize=8)
        ax.grid(alpha=0.3)
        ax.tick_params(labelsize=7)
    axes[0].set_ylabel("markup", fontsize=8)
    axes[0].legend(fontsize=6)
    fig.supxlabel("hour", fontsize=8)
    save(fig, path)
