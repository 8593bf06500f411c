"""``jaxlem-study case6-cooperation``: implicit cooperation through the reward's cooperation mix
``alpha`` (``r_i <- (1 - alpha) r_i + alpha mean_j r_j``) and through what agents observe (own
only, or also the community's KPIs: ``global_obs``) (config:
``jaxlem/configs/study/case6-cooperation.yaml``).

One cell per (observation, alpha). ``alpha`` is a number in params: the cells of one
observation share one compiled trainer and evaluator. The mix changes what each agent is
paid for learning, not the money: the scripted baselines and the optimum are the same in every
cell, and the mean agent return (hence the gain share) is comparable across cells. Per cell:
community cost, gain share, Gini of profits, P2P share, self-sufficiency, peak-to-average import,
storage alignment and deadweight loss of the trained agents.
"""

from __future__ import annotations

import functools
from pathlib import Path
from typing import Any

import numpy as np
from omegaconf import DictConfig

import jaxlem
from jaxlem.studies import figures, lem_cells, tables
from jaxlem.studies.runner import header
from jaxlem.train import evaluate as ev

KPIS = ("mean_agent_return", "gain_share", "community_cost", "gini_profit", "p2p_share",
        "self_sufficiency", "peak_to_average_import", "storage_alignment",
        "deadweight_loss")  # fmt: skip
OBSERVATIONS = {"own": False, "community": True}  # global_obs


def cells(cfg: DictConfig) -> list[str]:
    return [f"{obs}-alpha{float(a):g}" for obs in cfg.observations for a in cfg.alphas]


def parse(cell: str) -> tuple[str, float]:
    obs, _, alpha = cell.partition("-alpha")
    return obs, float(alpha)


@functools.lru_cache(maxsize=4)
def _env(obs: str, num_agents: int) -> Any:
    if obs not in OBSERVATIONS:
        raise ValueError(f"observations: got {obs!r}; allowed: one of {list(OBSERVATIONS)}")
    return jaxlem.make("lem-v0", num_agents=num_agents, global_obs=OBSERVATIONS[obs])


def groups(cfg: DictConfig) -> list[list[str]]:
    """One group per observation setting (a static setting): its alphas, numbers in params,
    train as lanes of one program."""
    return [[c for c in cells(cfg) if parse(c)[0] == obs] for obs in cfg.observations]


def run_group(cfg: DictConfig, group: list[str], log) -> dict[str, dict]:
    env = _env(parse(group[0])[0], int(cfg.env.num_agents))
    levels = [{"coop_alpha": parse(c)[1]} for c in group]
    return dict(zip(group, lem_cells.run_levels(cfg, env, log, levels), strict=True))


def run_cell(cfg: DictConfig, cell: str, log) -> dict:
    return run_group(cfg, [cell], log)[cell]


# ---------------------------------------------------------------------------- report


def rows(results: dict) -> list[dict]:
    out = []
    for cell, r in results.items():
        obs, alpha = parse(cell)
        out.append({"observation": obs, "alpha": alpha, "policy": "trained",
                    **lem_cells.seed_means(r, KPIS)})  # fmt: skip
    return out


def references(results: dict) -> dict[str, dict[str, float]]:
    """The baselines and the optimum (the same in every cell), from the first cell."""
    r = next(iter(results.values()))
    out = {n: {k: float(np.mean(r["baselines"][n][k])) for k in KPIS}
           for n in ("rule_based_battery", "zero_intelligence")}  # fmt: skip
    out["optimum"] = {k: float(np.mean(v)) for k, v in r["optimum"].items() if k in KPIS}
    return out


def report(cfg: DictConfig, results: dict, out: Path, meta: dict) -> None:
    table = rows(results)
    refs = references(results)
    tables.write_csv(out / "kpis.csv", table)
    figures.kpi_lines(table, "alpha", "observation", ["gain_share", "community_cost",
                      "gini_profit", "p2p_share", "peak_to_average_import",
                      "storage_alignment"], out / "cooperation.png", refs)  # fmt: skip
    figures.seed_band_curves(
        {c: {"seeds": r["curves"], "refs": {"rule_based_battery":
             refs["rule_based_battery"]["mean_agent_return"],
             "optimum": refs["optimum"]["mean_agent_return"]}} for c, r in results.items()},
        out / "learning.png",
    )  # fmt: skip
    first = next(iter(results.values()))
    base = [{"policy": n, **ev.summarize({k: first["baselines"][n][k] for k in KPIS})}
            for n in ("rule_based_battery", "zero_intelligence")]  # fmt: skip
    base.append({"policy": "optimum", **ev.summarize({k: v for k, v in first["optimum"].items()
                                                      if k in KPIS})})  # fmt: skip
    what = (
        f"lem-v0 communities of {cfg.env.num_agents} agents (the default market), the same "
        f"{cfg.eval_scenarios} held-out days in every cell. Cooperation mix alpha in "
        f"{list(cfg.alphas)}: each agent is paid (1 − alpha) of its own reward plus alpha of "
        "the community's mean while learning (the money is unchanged). Observation: `own` "
        "(the agent's own state and market prices) or `community` (plus the community's "
        f"net position and supply/demand ratio, `global_obs`). Per cell, "
        f"{cfg.train.algo.upper()} trains {cfg.seeds} seeds for "
        f"{cfg.train.total_timesteps:,} env steps (the alphas of one observation setting "
        "and their seeds as lanes of one vmapped program). Differences between cells: per "
        "seed, the mean over the scenarios of the paired difference; mean ± s.e. over seeds."
    )
    lines = [
        header("Case 6: implicit cooperation", meta, what),
        "## Findings",
        "",
        *[f"- {s}" for s in findings(results, refs)],
        "",
        "## Trained agents per cell",
        "",
        "Mean ± s.e. over seeds (each seed's mean over the held-out scenarios).",
        "",
        tables.markdown(table, ["observation", "alpha"], list(KPIS)),
        "",
        "## References (the same in every cell)",
        "",
        "Mean ± s.e. over scenarios.",
        "",
        tables.markdown(base, ["policy"], list(KPIS)),
        "",
        "## Figures",
        "",
        "KPIs of the trained agents against alpha, one line per observation, with the "
        "rule-based battery, zero intelligence and the optimum (dashed):",
        "",
        "![cooperation](cooperation.png)",
        "",
        "Training curves (band: min-max over seeds):",
        "",
        "![learning](learning.png)",
        "",
        tables.files_line("kpis.csv"),
        "",
    ]
    (out / "README.md").write_text("\n".join(lines))


def findings(results: dict, refs: dict) -> list[str]:
    """Sentences computed from the results: each KPI at the lowest against the highest alpha
    (per observation, mean ± s.e. over seeds of the paired difference), and
    the community observation against the own one at each alpha."""
    out = []
    by = {parse(c): r for c, r in results.items()}
    alphas = sorted({a for _, a in by})
    for obs in dict.fromkeys(o for o, _ in by):
        lo, hi = by.get((obs, alphas[0])), by.get((obs, alphas[-1]))
        if lo is None or hi is None or len(alphas) < 2:
            continue
        parts = []
        for key in ("gain_share", "gini_profit", "p2p_share"):
            d = _diff(hi, lo, key)
            parts.append(
                f"{key} {_mean(lo, key):.3f} → {_mean(hi, key):.3f} ({d[0]:+.3f} ± {d[1]:.3f})"
            )
        out.append(f"{obs} observation, alpha {alphas[0]:g} → {alphas[-1]:g}: " + "; ".join(parts))
    obs_names = list(dict.fromkeys(o for o, _ in by))
    if len(obs_names) == 2:
        parts = []
        for a in alphas:
            x, y = by.get((obs_names[1], a)), by.get((obs_names[0], a))
            if x is not None and y is not None:
                d = _diff(x, y, "gain_share")
                parts.append(f"alpha {a:g}: {d[0]:+.3f} ± {d[1]:.3f}")
        out.append(
            f"Gain share with the {obs_names[1]} observation minus with the {obs_names[0]} one: "
            + "; ".join(parts)
            + "."
        )
    out.append(
        "References: rule-based battery gain share "
        f"{refs['rule_based_battery']['gain_share']:.3f}, zero intelligence "
        f"{refs['zero_intelligence']['gain_share']:.3f}."
    )
    return out


def _mean(cell: dict, key: str) -> float:
    return float(np.mean([np.mean(s[key]) for s in cell["trained"]]))


def _diff(a: dict, b: dict, key: str) -> tuple[float, float]:
    """``a - b``: per seed, the mean over the scenarios of the paired difference (seed i of
    ``a`` against seed i of ``b``); mean and s.e. over seeds (the cells are separate
    trainings, so the seeds' spread is the uncertainty)."""
    pairs = zip(a["trained"], b["trained"], strict=True)
    d = np.asarray([np.mean(np.asarray(x[key]) - np.asarray(y[key])) for x, y in pairs])
    return float(d.mean()), float(d.std(ddof=1) / np.sqrt(d.size)) if d.size > 1 else 0.0
