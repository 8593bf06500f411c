"""The case-7 scalability report: tables, growth exponents, scaling factors, best and worst
cells, the 4-panel timing figure, the throughput heatmap, KPIs against N and findings.

Rows come from ``jaxlem.studies.case7_scalability`` (``env_rows``, ``train_rows``,
``reference_rows``); times in seconds, memory in bytes (MiB / KiB in the tables).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from omegaconf import DictConfig

from jaxlem.app.bench import growth
from jaxlem.studies import figures, tables
from jaxlem.studies.runner import header

MIB, KIB = 2.0**20, 2.0**10


def scaling_factor(points: list[tuple[float, float]]) -> float | None:
    """(y(N_max) / y(N_min)) / (N_max / N_min): 1 when y grows in proportion to N, below 1
    when it grows slower (for time per update: the batch's parallelism absorbs agents)."""
    pts = sorted((n, y) for n, y in points if y > 0 and np.isfinite(y))
    if len(pts) < 2:
        return None
    (n0, y0), (n1, y1) = pts[0], pts[-1]
    return float((y1 / y0) / (n1 / n0))


def _label(r: dict) -> str:
    return f"{r['mode']} {r['algo']}"


def _fmt(x: float | None, digits: str = ".2f") -> str:
    return "-" if x is None or not np.isfinite(x) else format(x, digits)


def exponent_rows(train: list[dict], large: float) -> list[dict]:
    """Per mode x algorithm: growth exponents of the time per update (per agent-step moved:
    the batch shrinks with N) and of the memory, over all N and over N >= ``large``."""
    out = []
    for label in dict.fromkeys(_label(r) for r in train):
        run = [r for r in train if _label(r) == label and r["status"] == "run"]
        if not run:
            continue
        # time per update divided by the update's agent-steps: the cost of one agent-step
        per_step = [(r["N"], r["median_call_s"] / (r["env_steps_per_call"] * r["N"]))
                    for r in run]  # fmt: skip
        upd = [(r["N"], r["update_s"]) for r in run]
        mem = [(r["N"], r["memory_bytes"]) for r in run]
        out.append({
            "cell": label,
            "N run": f"{min(r['N'] for r in run)}-{max(r['N'] for r in run)}",
            "time/update exponent": _fmt(growth(upd)),
            f"... N>={large:g}": _fmt(growth(upd, large)),
            "time/agent-step exponent": _fmt(growth(per_step)),
            "memory exponent": _fmt(growth(mem)),
            f"memory exponent N>={large:g}": _fmt(growth(mem, large)),
            "scaling factor (time/update)": _fmt(scaling_factor(upd), ".3g"),
            "peak agent-steps/s": f"{max(r['agent_steps_per_s'] for r in run):,.0f}",
        })  # fmt: skip
    return out


def extremes(train: list[dict]) -> list[dict]:
    """The fastest and slowest cell (agent-steps/s) at each N."""
    out = []
    for n in sorted({r["N"] for r in train}):
        run = [r for r in train if r["N"] == n and r["status"] == "run"]
        if not run:
            continue
        best = max(run, key=lambda r: r["agent_steps_per_s"])
        worst = min(run, key=lambda r: r["agent_steps_per_s"])
        out.append({
            "N": n,
            "fastest": f"{_label(best)} ({best['agent_steps_per_s']:,.0f})",
            "slowest": f"{_label(worst)} ({worst['agent_steps_per_s']:,.0f})",
            "ratio": f"{best['agent_steps_per_s'] / worst['agent_steps_per_s']:.1f}x",
        })  # fmt: skip
    return out


# ---------------------------------------------------------------------------- figures


def timing_figure(train: list[dict], path: Path, hw: str) -> None:
    """The 4-panel timing figure: training wall time, time per agent, agent-steps/s and peak
    memory against N (log-log), one line per mode x algorithm."""
    plt = figures.plt
    fig, axes = plt.subplots(2, 2, figsize=(9.5, 7))
    panels = [
        ("train_wall_s", "training wall time (s, compile included)"),
        ("time_per_agent_s", "wall time per agent (s)"),
        ("agent_steps_per_s", "agent-steps/s (steady state)"),
        ("memory_bytes", "peak memory of the update (MiB)"),
    ]
    for ax, (key, title) in zip(axes.reshape(-1), panels, strict=True):
        for j, label in enumerate(dict.fromkeys(_label(r) for r in train)):
            pts = sorted((r["N"], r[key] / (MIB if key == "memory_bytes" else 1.0))
                         for r in train if _label(r) == label and r["status"] == "run")  # fmt: skip
            if pts:
                ls = {"DTDE": "-", "CTDE": "--", "CTCE": ":"}.get(label.split()[0], "-")
                ax.loglog(*zip(*pts, strict=True), marker="o", ms=3, lw=1, ls=ls,
                          color=f"C{j}", label=label)  # fmt: skip
        figures.panel(ax, title)
        ax.set_xlabel("agents N", fontsize=8)
    axes[0, 0].legend(fontsize=6)
    fig.suptitle(f"Training cost against N: {hw}", fontsize=8)
    figures.save(fig, path)


def heatmap(train: list[dict], path: Path) -> None:
    """log10 agent-steps/s per mode x algorithm (rows) and N (columns); cells not run: x."""
    plt = figures.plt
    labels = list(dict.fromkeys(_label(r) for r in train))
    ns = sorted({r["N"] for r in train})
    grid = np.full((len(labels), len(ns)), np.nan)
    for r in train:
        if r["status"] == "run":
            grid[labels.index(_label(r)), ns.index(r["N"])] = np.log10(r["agent_steps_per_s"])
    fig, ax = plt.subplots(figsize=(1.0 + 0.8 * len(ns), 0.9 + 0.45 * len(labels)))
    im = ax.imshow(grid, cmap="viridis", aspect="auto")
    for i in range(len(labels)):
        for j in range(len(ns)):
            v = grid[i, j]
            dark = bool(np.isnan(v) or v < np.nanmean(grid))
            ax.text(j, i, "x" if np.isnan(v) else f"{v:.1f}", ha="center", va="center",
                    fontsize=7, color="w" if dark else "k")  # fmt: skip
    ax.set_xticks(range(len(ns)), [f"{n:g}" for n in ns], fontsize=7)
    ax.set_yticks(range(len(labels)), labels, fontsize=7)
    ax.set_xlabel("agents N", fontsize=8)
    fig.colorbar(im, ax=ax, label="log10 agent-steps/s")
    figures.save(fig, path)


def env_figure(env: list[dict], path: Path, hw: str) -> None:
    """The env alone: agent-steps/s and time per batched step against N."""
    plt = figures.plt
    fig, (a, b) = plt.subplots(1, 2, figsize=(9, 3.4))
    ns = [r["N"] for r in env]
    a.loglog(ns, [r["agent_steps_per_s"] for r in env], "o-")
    figures.panel(a, "lem-v0 agent-steps/s (random actions)")
    b.loglog(ns, [r["step_time_s"] / r["batch"] for r in env], "o-", label="per scenario-step")
    n = np.asarray(ns, float)
    t_last = env[-1]["step_time_s"] / env[-1]["batch"]
    b.loglog(n, t_last * n / n[-1], "k:", lw=1, label="∝ N")
    figures.panel(b, "time per scenario-step (s)")
    b.legend(fontsize=7)
    for ax in (a, b):
        ax.set_xlabel("agents N", fontsize=8)
    fig.suptitle(hw, fontsize=8)
    figures.save(fig, path)


# ---------------------------------------------------------------------------- README


def write(
    cfg: DictConfig,
    out: Path,
    meta: dict,
    *,
    env: list[dict],
    train: list[dict],
    refs: list[dict],
    absent: list[dict],
    ctce: dict,
    kpis: tuple[str, ...],
) -> None:
    """Write the CSVs, the figures and ``README.md`` of the case-7 study into ``out``."""
    out = Path(out)
    hw = meta["hardware"]
    hw_short = f"{hw['cpu'] if hw['backend'] == 'cpu' else hw['device']} ({hw['backend']})"
    tables.write_csv(out / "env.csv", env)
    tables.write_csv(out / "train.csv", train)
    tables.write_csv(out / "rule_kpis.csv", refs)
    large = float(cfg.large_n)
    expo = exponent_rows(train, large)
    tables.write_csv(out / "exponents.csv", expo)
    run = [r for r in train if r["status"] == "run"]
    if env:
        env_figure(env, out / "env.png", hw_short)
    if run:
        timing_figure(train, out / "timing.png", hw_short)
        heatmap(train, out / "heatmap.png")
        kpi_rows = [{**r, "cell": _label(r)} for r in run]
        figures.kpi_lines(kpi_rows, "N", "cell", [k for k in kpis if any(k in r for r in run)],
                          out / "kpis.png")  # fmt: skip
    env_table = tables.markdown_plain([
        {"N": r["N"], "B": r["batch"], "compile (s)": f"{r['compile_s']:.1f}",
         "env-steps/s": f"{r['env_steps_per_s']:,.0f}",
         "agent-steps/s": f"{r['agent_steps_per_s']:,.0f}",
         "ns per agent-step": f"{1e9 * r['step_time_s'] / (r['batch'] * r['N']):.1f}",
         "XLA memory (MiB)": f"{r['memory_bytes'] / MIB:,.1f}",
         "per agent and scenario (KiB)": f"{r['memory_per_agent_bytes'] / KIB:,.2f}"}
        for r in env
    ])  # fmt: skip
    train_table = tables.markdown_plain([
        {"cell": _label(r), "N": r["N"], "B": r["batch"], "compile (s)": f"{r['compile_s']:.1f}",
         "env-steps/s": f"{r['env_steps_per_s']:,.0f}",
         "agent-steps/s": f"{r['agent_steps_per_s']:,.0f}",
         "update (s)": f"{r['update_s']:.3g}", "train wall (s)": f"{r['train_wall_s']:.1f}",
         "per agent (s)": f"{r['time_per_agent_s']:.3g}",
         "peak memory (MiB)": f"{r['memory_bytes'] / MIB:,.1f}",
         "per agent (KiB)": f"{r['memory_per_agent_bytes'] / KIB:,.1f}"}
        for r in run
    ])  # fmt: skip
    not_run = [{"cell": _label(r), "N": r["N"], "reason": r["reason"]} for r in train
               if r["status"] != "run"]  # fmt: skip
    not_run += [{"cell": f"{a['mode']} {a['algo']}", "N": "all", "reason": a["reason"]}
                for a in absent]  # fmt: skip
    kpi_keys = [k for k in kpis if any(k in r for r in run)]
    kpi_table = tables.markdown(
        [{**r, "cell": _label(r)} for r in run] + [{**r, "cell": "rule-based battery"}
                                                   for r in refs],
        ["cell", "N"], kpi_keys,
    )  # fmt: skip
    what = (
        f"`lem-v0` (default preset) from N = {min(cfg.env_agents)} to "
        f"{max(cfg.env_agents):,} agents for the env alone (random actions) and from N = "
        f"{min(cfg.train_agents)} to {max(cfg.train_agents):,} for training, in every mode "
        f"({', '.join(cfg.modes)}) x algorithm ({', '.join(cfg.algos)}) cell that jaxlem has. "
        f"Each training cell compiles a chunk of {int(cfg.updates_per_call)} updates (SAC: "
        f"{int(cfg.updates_per_call) * int(cfg.rollout_len)} one-step updates, the same env "
        f"steps), runs {int(cfg.warmup_calls)} warm-up and {int(cfg.timed_calls)} timed chunks "
        f"(steady state: their median) of {int(cfg.rollout_len)}-step rollouts over B "
        "scenarios, B shrinking as N grows so an update moves a similar number of "
        "agent-steps (`update (s)`: the time of B x rollout_len env steps and their "
        "learning, for every algorithm), then plays held-out scenarios with the trained "
        "policy (one seed: this study measures cost; learning quality is the other studies' "
        "subject). SAC takes one gradient step on a batch of replay rows per env step of "
        "the batch, PPO and APPO four epochs of four minibatches over each rollout: their "
        "throughputs compare the algorithms at these settings, not per gradient step. Peak "
        "memory is "
        "XLA's memory analysis of the compiled chunk (arguments + outputs + temporaries - "
        "aliased)."
    )
    lines = [
        header("Case 7: scalability in the number of agents", meta, what),
        "## Findings",
        "",
        *[f"- {s}" for s in findings(env, train, expo, ctce, large, hw)],
        "",
        "## The env alone",
        "",
        env_table,
        "",
        "![env](env.png)",
        "",
        "## Training: every cell",
        "",
        train_table,
        "",
        "![timing](timing.png)",
        "",
        "![heatmap](heatmap.png)",
        "",
        "Cells not run, with the reason:",
        "",
        tables.markdown_plain(not_run),
        "",
        "## Growth exponents and scaling factors",
        "",
        "Slopes of log(cost) against log(N) (1: in proportion to N). The time per update "
        "moves a batch that shrinks with N, so its exponent is below the cost per agent-step's "
        "plus one; the scaling factor is (cost at the largest N / cost at the smallest) / "
        "(largest N / smallest N).",
        "",
        tables.markdown_plain(expo),
        "",
        "Fastest and slowest cell at each N (agent-steps/s):",
        "",
        tables.markdown_plain(extremes(train)),
        "",
        "## KPIs against N",
        "",
        "Mean ± s.e. over the held-out scenarios after the short budget above (the policies "
        "start from the rule-based battery: `residual=auto`), with the rule itself; the gain "
        "share needs the perfect-foresight optimum, solved here up to N = 50 (its dense LP "
        "grows as N^2 and its solve as N^3: 16 scenarios take about 2 min at N = 50 on two "
        "CPU cores).",
        "",
        kpi_table,
        "",
        "![kpis](kpis.png)",
        "",
        tables.files_line(
            "env.csv",
            "train.csv",
            "exponents.csv",
            "rule_kpis.csv",
            "env.png",
            "timing.png",
            "heatmap.png",
            "kpis.png",
        ),  # fmt: skip
        "",
    ]
    (out / "README.md").write_text("\n".join(lines))


def findings(env: list[dict], train: list[dict], expo: list[dict], ctce: dict, large: float,
             hw: dict) -> list[str]:  # fmt: skip
    out = []
    big = [r for r in env if r["N"] >= large]
    if len(big) >= 2:
        g = growth([(r["N"], r["step_time_s"] / r["batch"]) for r in big])
        top = max(env, key=lambda r: r["agent_steps_per_s"])
        out.append(
            f"The env's time per scenario-step grows as N^{g:.2f} for N >= {large:g} (an "
            f"N log N clearing gives about 1.1); it peaks at {top['agent_steps_per_s']:,.0f} "
            f"agent-steps/s at N = {top['N']:,} and does "
            f"{env[-1]['agent_steps_per_s']:,.0f} at N = {env[-1]['N']:,}, using "
            f"{env[-1]['memory_per_agent_bytes'] / KIB:.2f} KiB of XLA memory per agent and "
            "scenario."
        )
    run = [r for r in train if r["status"] == "run"]
    if run:
        n_max = max(r["N"] for r in run)
        at = [r for r in run if r["N"] == n_max]
        best = max(at, key=lambda r: r["agent_steps_per_s"])
        worst = min(at, key=lambda r: r["agent_steps_per_s"])
        out.append(
            f"At N = {n_max:,} the fastest cell is {_label(best)} "
            f"({best['agent_steps_per_s']:,.0f} agent-steps/s, "
            f"{best['memory_per_agent_bytes'] / KIB:.1f} KiB per agent) and the slowest "
            f"{_label(worst)} ({worst['agent_steps_per_s']:,.0f})."
        )
        comp = [r["compile_s"] for r in run]
        out.append(
            f"Compilation takes {min(comp):.0f}-{max(comp):.0f} s per cell and dominates the "
            "wall time of these short runs at small N (the 4-panel figure's first panel)."
        )
    for e in expo:
        if e["cell"] == "DTDE PPO" and e["time/update exponent"] != "-":
            out.append(
                f"IPPO's cost per agent-step grows as N^{e['time/agent-step exponent']} from "
                f"N = 1 to the largest N (flat: an agent-step costs about the same at every N); "
                f"its time per update, whose batch shrinks as N grows, as "
                f"N^{e['time/update exponent']} (N^{e[f'... N>={large:g}']} for N >= "
                f"{large:g}), its memory as N^{e['memory exponent']}."
            )
    out.append(
        f"CTCE's joint networks ({ctce['hidden']} hidden) fit up to N = "
        f"{ctce['max_agents']:,} agents on this device (their parameters, gradients and Adam "
        f"moments within {ctce['fraction']:g} of its {ctce['memory_bytes'] / 2**30:.1f} GiB); "
        "above that `algo=ctce` stops with an error naming the limit."
    )
    skipped = [r for r in train if r["status"] != "run"]
    if skipped:
        out.append(f"{len(skipped)} cell(s) did not fit and are listed below with the reason.")
    if hw["backend"] == "cpu":
        out.append(
            "No GPU figures exist yet: this run is on CPU, and no GPU was available to the "
            "session that produced it. The same command on a GPU machine writes them."
        )
    return out
