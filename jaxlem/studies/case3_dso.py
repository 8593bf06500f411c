"""``jaxlem-study case3-dso``: DSO interventions swept in strength (config:
``jaxlem/configs/study/case3-dso.yaml``): the dynamic tariff's slope (the utility price rises
with the community's import), a flat P2P network fee, a per-agent export limit and an
imbalance penalty on every kWh settled with the DSO.

One cell per (intervention, strength), plus the cell without any intervention. Every strength
is a number in params, so all cells share one compiled trainer and evaluator. Per cell the
learner trains with several seeds at that strength; trained agents, the scripted baselines and
the perfect-foresight optimum play the same held-out days. Reported: community cost, the DSO's
fees and penalties, P2P share, peak-to-average import, self-sufficiency,
curtailment, mean agent return and gain share.

The optimum is the LP of ``jaxlem.envs.lem.oracle``: it prices imports at the base tariff and
has no per-agent export limit or P2P fee, so under the dynamic tariff, the export limit and the
fee it is an upper bound (a relaxation), not the exact optimum; the report says so.
"""

from __future__ import annotations

import functools
from pathlib import Path
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from omegaconf import DictConfig

import jaxlem
from jaxlem.studies import figures, lem_cells, tables
from jaxlem.studies.runner import header
from jaxlem.train import evaluate as ev

POLICIES = ("trained", "rule_based_battery", "zero_intelligence")
KPIS = ("community_cost", "dso_fees", "p2p_share", "peak_to_average_import",
        "self_sufficiency", "curtailment_kwh", "mean_agent_return", "gain_share")  # fmt: skip
FIELDS = {  # intervention -> the params field it sets (units in the report)
    "dynamic_tariff": "dynamic_tariff_slope",
    "p2p_fee": "p2p_fee",
    "export_limit": "export_limit_kw",
    "imbalance": "imbalance_penalty",
}
NONE = {"export_limit": float("inf")}  # the strength that means "no intervention"
RELAXED = ("dynamic_tariff", "p2p_fee", "export_limit")  # the optimum is an upper bound there


def cells(cfg: DictConfig) -> list[str]:
    out = ["none"]
    for name, levels in cfg.sweeps.items():
        if name not in FIELDS:
            raise ValueError(f"sweeps.{name}: unknown intervention; allowed: {list(FIELDS)}")
        out += [f"{name}={float(v):g}" for v in levels]
    return out


def parse(cell: str) -> tuple[str, float | None]:
    if cell == "none":
        return "none", None
    name, _, value = cell.partition("=")
    return name, float(value)


@functools.lru_cache(maxsize=2)
def _env(num_agents: int) -> Any:
    return jaxlem.make("lem-v0", num_agents=num_agents)


def dso_fees(env: Any, info: dict, rewards: jax.Array, params: Any) -> dict[str, jax.Array]:
    """What the DSO collects from the community over the episode through the interventions:
    P2P network fees and imbalance (and shedding) penalties, currency. (The DSO's whole net
    income from the community is the community cost.)"""
    return {"dso_fees": jnp.sum(info["dso_fees_money"])}


def groups(cfg: DictConfig) -> list[list[str]]:
    """Every cell at once: the strengths are numbers in params, so their learners train as
    lanes of one program."""
    return [cells(cfg)]


def run_group(cfg: DictConfig, group: list[str], log) -> dict[str, dict]:
    env = _env(int(cfg.env.num_agents))
    levels = []
    for cell in group:
        name, value = parse(cell)
        levels.append(None if value is None else {FIELDS[name]: value})
    results = lem_cells.run_levels(cfg, env, log, levels, extra=dso_fees)
    return dict(zip(group, results, strict=True))


def run_cell(cfg: DictConfig, cell: str, log) -> dict:
    return run_group(cfg, [cell], log)[cell]


# ---------------------------------------------------------------------------- report


def rows(results: dict) -> list[dict]:
    """Per (intervention, strength, policy); the cell without intervention is strength 0 of
    every intervention (for the export limit: no limit, ``inf``)."""
    out = []
    for cell, r in results.items():
        name, value = parse(cell)
        targets = list(FIELDS) if name == "none" else [name]
        for target in targets:
            strength = value if value is not None else NONE.get(target, 0.0)
            base = {"intervention": target, "strength": strength}
            out.append({**base, "policy": "trained", **lem_cells.seed_means(r, KPIS)})
            for pol in POLICIES[1:]:
                s = r["baselines"][pol]
                out.append({**base, "policy": pol, **ev.summarize({k: s[k] for k in KPIS})})
            best = {k: v for k, v in r["optimum"].items() if k in KPIS}
            out.append({**base, "policy": "optimum", **ev.summarize(best)})

    def order(r: dict) -> tuple:
        sign = -1.0 if r["intervention"] in NONE else 1.0  # the export limit: none first
        return list(FIELDS).index(r["intervention"]), sign * r["strength"]

    return sorted(out, key=order)


def report(cfg: DictConfig, results: dict, out: Path, meta: dict) -> None:
    table = rows(results)
    tables.write_csv(out / "kpis.csv", table)
    for name in FIELDS:
        sub = [r for r in table if r["intervention"] == name and np.isfinite(r["strength"])]
        if len({r["strength"] for r in sub}) > 1:
            figures.kpi_lines(sub, "strength", "policy", ["community_cost", "dso_fees",
                              "p2p_share", "peak_to_average_import", "curtailment_kwh",
                              "gain_share"], out / f"{name}.png")  # fmt: skip
    figures.seed_band_curves(lem_cells.curves(results), out / "learning.png")
    what = (
        f"lem-v0 communities of {cfg.env.num_agents} agents (the default market), the same "
        f"{cfg.eval_scenarios} held-out days in every cell. Interventions and strengths: "
        + "; ".join(f"{n} ({FIELDS[n]}) {list(v)}" for n, v in cfg.sweeps.items())
        + ". Units: dynamic tariff slope (relative rise of the utility price per unit of "
        "community import over community demand), P2P fee (currency/MWh of traded energy), "
        "export limit (kW per agent; inf: no limit; the figure leaves it out), imbalance penalty "
        "(currency/MWh settled with the DSO). Per cell, "
        f"{cfg.train.algo.upper()} trains {cfg.seeds} seeds for "
        f"{cfg.train.total_timesteps:,} env steps at that strength; every (strength, seed) "
        "trains as a lane of one vmapped program. The community cost is the DSO's whole net "
        "income from the community (imports, fees and penalties minus export payments); DSO "
        "fees: the part from P2P network fees and imbalance penalties. The optimum prices "
        "imports at the base tariff and has no per-agent export limit or P2P fee: under "
        f"{', '.join(RELAXED)} it is an upper bound, and the gain share there is against "
        "that bound."
    )
    sections = []
    for name in FIELDS:
        sub = [r for r in table if r["intervention"] == name]
        if not sub:
            continue
        sections += [f"### {name} (`{FIELDS[name]}`)", "",
                     tables.markdown(sub, ["strength", "policy"], list(KPIS)), ""]  # fmt: skip
        if (out / f"{name}.png").exists():
            sections += [f"![{name}]({name}.png)", ""]
    lines = [
        header("Case 3: DSO interventions", meta, what),
        "## Findings",
        "",
        *[f"- {s}" for s in findings(table)],
        "",
        "## Every intervention and strength",
        "",
        "Trained: mean ± s.e. over seeds; baselines and the optimum: over scenarios. "
        "Strength 0 is the cell without intervention.",
        "",
        *sections,
        "## Training curves",
        "",
        "![learning](learning.png)",
        "",
        tables.files_line("kpis.csv"),
        "",
    ]
    (out / "README.md").write_text("\n".join(lines))


def findings(table: list[dict]) -> list[str]:
    """Per intervention: the KPIs of the trained agents and the rule at no and at the strongest
    intervention."""
    out = []
    for name in FIELDS:
        sub = [r for r in table if r["intervention"] == name]
        strengths = sorted({r["strength"] for r in sub}, reverse=name in NONE)
        if len(strengths) < 2:
            continue
        lo, hi = strengths[0], strengths[-1]  # none, strongest
        parts = []
        for pol in ("trained", "rule_based_battery"):
            a = next(r for r in sub if r["strength"] == lo and r["policy"] == pol)
            b = next(r for r in sub if r["strength"] == hi and r["policy"] == pol)
            parts.append(
                f"{pol}: community cost {a['community_cost']:.1f} → {b['community_cost']:.1f}, "
                f"DSO fees {a['dso_fees']:.1f} → {b['dso_fees']:.1f}, P2P share "
                f"{a['p2p_share']:.3f} → {b['p2p_share']:.3f}, peak-to-average import "
                f"{a['peak_to_average_import']:.2f} → {b['peak_to_average_import']:.2f}"
            )
        out.append(f"{name} from {lo:g} to {hi:g}: " + "; ".join(parts) + ".")
    return out
