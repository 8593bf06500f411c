"""``jaxlem-study case4-grid``: the local market on real feeders with line limits, in
``grid_mode='dcopf'`` (config: ``jaxlem/configs/study/case4-grid.yaml``).

Each step, a DC-OPF on the feeder (the agents' net positions as injections on their buses, the
supply point buying at the utility price) keeps line flows within the uniform line limit by
curtailing exports or shedding imports, and gives nodal prices; P2P trades pay a network fee
that includes the LMP difference between the buyer's and the seller's bus. One cell per
(feeder, line limit); the limit is a number in params, so the cells of one feeder share one
compiled trainer. Reported: congestion hours, the largest line loading, curtailment, shed
load, the LMP spread across buses, network fees, P2P share, community cost and gain share.

The perfect-foresight optimum is the community LP of ``jaxlem.envs.lem.oracle``, which has no
network: under binding lines it is an upper bound (a relaxation), and so the gain share is
measured against that bound.
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

CLEAR_CACHES = False  # the cells of one feeder share the compiled trainer
POLICIES = ("trained", "rule_based_battery", "zero_intelligence")
KPIS = ("congestion_hours", "max_line_loading", "curtailment_kwh", "shed_kwh", "lmp_spread",
        "network_fees", "p2p_share", "community_cost", "mean_agent_return",
        "gain_share")  # fmt: skip


def cells(cfg: DictConfig) -> list[str]:
    return [f"{f}-{_limit_name(v)}" for f in cfg.feeders for v in cfg.line_limits_kw]


def _limit_name(v: Any) -> str:
    v = float(v)
    return "unlimited" if not np.isfinite(v) else f"{v:g}kW"


def parse(cell: str) -> tuple[str, float]:
    feeder, _, lim = cell.rpartition("-")
    return feeder, float("inf") if lim == "unlimited" else float(lim.removesuffix("kW"))


@functools.lru_cache(maxsize=2)
def _env(feeder: str, num_agents: int) -> Any:
    return jaxlem.make("lem-v0", grid_mode="dcopf", grid_case=feeder, num_agents=num_agents)


def grid_kpis(env: Any, info: dict, rewards: jax.Array, params: Any) -> dict[str, jax.Array]:
    """Congestion hours (steps with a line at its limit x step length), the largest line
    loading, shed load (kWh), the mean over steps of the LMP spread across buses (currency/MWh)
    and the P2P network fees (currency) of one episode."""
    lmp = info["lmp"]
    return {
        "congestion_hours": jnp.sum(info["congested"].astype(jnp.float32)) * env.dt_h,
        "max_line_loading": jnp.max(info["line_loading"]),
        "shed_kwh": jnp.sum(info["grid_shed_kwh"]),
        "lmp_spread": jnp.mean(jnp.max(lmp, axis=-1) - jnp.min(lmp, axis=-1)),
        "network_fees": jnp.sum(info["network_fees_money"]),
    }


def run_cell(cfg: DictConfig, cell: str, log) -> dict:
    feeder, limit = parse(cell)
    env = _env(feeder, int(cfg.env.num_agents))
    return lem_cells.run(cfg, env, log, extra=grid_kpis, overrides={"line_limit_kw": limit})


# ---------------------------------------------------------------------------- report


def rows(results: dict) -> list[dict]:
    out = []
    for cell, r in results.items():
        feeder, limit = parse(cell)
        base = {"feeder": feeder, "line_limit_kw": limit}
        out.append({**base, "policy": "trained", **lem_cells.seed_means(r, KPIS)})
        for pol in POLICIES[1:]:
            s = r["baselines"][pol]
            out.append({**base, "policy": pol, **ev.summarize({k: s[k] for k in KPIS})})
        best = {k: v for k, v in r["optimum"].items() if k in KPIS}
        out.append({**base, "policy": "optimum (no network)", **ev.summarize(best)})
    return sorted(out, key=lambda r: (r["feeder"], -r["line_limit_kw"]))


def report(cfg: DictConfig, results: dict, out: Path, meta: dict) -> None:
    table = rows(results)
    tables.write_csv(out / "kpis.csv", table)
    shown = [{**r, "cell": f"{r['feeder']} {_limit_name(r['line_limit_kw'])}"}
             for r in table if r["policy"] in POLICIES]  # fmt: skip
    figures.grouped_bars(shown, "cell", ["congestion_hours", "curtailment_kwh", "shed_kwh",
                         "lmp_spread", "network_fees", "p2p_share", "community_cost",
                         "gain_share"], list(POLICIES), out / "grid.png")  # fmt: skip
    figures.market_over_time({c: r["traces"] for c, r in results.items()}, out / "market.png")
    first = next(iter(results.values()))
    what = (
        f"lem-v0 communities of {cfg.env.num_agents} agents on each feeder "
        f"({', '.join(cfg.feeders)}; radial-B: a generated radial tree of B buses; agents "
        "spread over the buses other than the supply point) in grid_mode='dcopf', uniform "
        f"line limits {[_limit_name(v) for v in cfg.line_limits_kw]}; the same "
        f"{cfg.eval_scenarios} held-out days in every cell. Per cell, "
        f"{cfg.train.algo.upper()} trains {cfg.seeds} seeds for "
        f"{cfg.train.total_timesteps:,} env steps (a DC-OPF per step and scenario: training "
        f"ran at about {first['env_steps_per_s']:,.0f} env-steps/s, so the budget is small "
        "and the trained agents stay close to the rule they adjust). Congestion hours: "
        "hours with a line at its limit; LMP spread: the mean over steps of the highest "
        "minus the lowest nodal price (currency/MWh); network fees: what P2P trades pay "
        "for the network, including the LMP difference between the buses (currency). The "
        "optimum has no network: under binding lines it is an upper bound, and the gain "
        "share is measured against it."
    )
    lines = [
        header("Case 4: grid constraints", meta, what),
        "## Findings",
        "",
        *[f"- {s}" for s in findings(table)],
        "",
        "## Every feeder and line limit",
        "",
        "Trained: mean ± s.e. over seeds; baselines and the optimum: over scenarios.",
        "",
        tables.markdown(table, ["feeder", "line_limit_kw", "policy"], list(KPIS)),
        "",
        "## Figures",
        "",
        "KPIs per feeder and line limit (error bars: s.e.):",
        "",
        "![grid](grid.png)",
        "",
        "The market over the first held-out day in every cell (trained agents and the "
        "rule-based battery):",
        "",
        "![market](market.png)",
        "",
        tables.files_line("kpis.csv"),
        "",
    ]
    (out / "README.md").write_text("\n".join(lines))


def findings(table: list[dict]) -> list[str]:
    out = []
    for feeder in dict.fromkeys(r["feeder"] for r in table):
        for pol in ("rule_based_battery", "trained"):
            sub = sorted((r for r in table if r["feeder"] == feeder and r["policy"] == pol),
                         key=lambda r: -r["line_limit_kw"])  # fmt: skip
            if len(sub) < 2:
                continue
            a, b = sub[0], sub[-1]
            out.append(
                f"{feeder}, {pol}: from {_limit_name(a['line_limit_kw'])} to "
                f"{_limit_name(b['line_limit_kw'])} lines, congestion {a['congestion_hours']:.1f}"
                f" → {b['congestion_hours']:.1f} h/day, curtailment {a['curtailment_kwh']:.1f} → "
                f"{b['curtailment_kwh']:.1f} kWh, shed {a['shed_kwh']:.2f} → {b['shed_kwh']:.2f} "
                f"kWh, LMP spread {a['lmp_spread']:.1f} → {b['lmp_spread']:.1f}, network fees "
                f"{a['network_fees']:.2f} → {b['network_fees']:.2f}, P2P share "
                f"{a['p2p_share']:.3f} → {b['p2p_share']:.3f}, community cost "
                f"{a['community_cost']:.1f} → {b['community_cost']:.1f}."
            )
    return out
