"""``jaxlem-study multiactor``: scenario 1 against 2, regulator off and on, two persona mixes,
with scripted and trained agents (config: ``jaxlem/configs/study/multiactor.yaml``).

Every cell (scenario, regulator, persona mix) trains each algorithm with several seeds on its
own scenario bank (the regulator switch and the personas are numbers in params, so the cells of
one scenario train together, as lanes of one vmapped program) and plays the same held-out
scenarios with:

- ``scripted``: every kind's rule (the regulator's fixed rule; ignored when it is off);
- ``<algo>``: every agent trained;
- that kind trained, every other kind scripted: its kind's return against ``scripted``
  (paired per scenario) says whether the trained agents beat the rule of their own kind in the
  market the rules make;
- every kind trained but that one, which plays its rule: the trained market's return of that
  kind against this one says whether the trained agents beat the rule of their own kind in the
  market they were trained in (a best-response check);
- one agent trained, every other agent (its own kind's included) playing its rule: that agent's
  return against its rule's, averaged over the agents of each kind, says whether the trained
  policy is a better response to the rules than the rule itself (a unilateral deviation; where
  it gains and the whole kind trained loses, the kind faces a social dilemma);
- every agent trained but one, which plays its rule: that agent's return in the trained market
  against its return there with its trained policy, averaged over the agents of each kind (is
  the trained policy a better response than the rule, given every other agent trained?);
- the scripted consumers' rule with the local limit price ``bid_markup`` times the retail price,
  played by one consumer and by all: the same dilemma, in the rules alone;
- where the regulator is on, every agent trained but the regulator, which sets each of 27
  fixed rates (``multiactor_rates``): where the trained regulator sits among them.

One compiled evaluator serves each of these: which rows play the trained policy (or which
rates the regulator sets) is an argument.
"""

from __future__ import annotations

import functools
from pathlib import Path
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from omegaconf import DictConfig, OmegaConf

import jaxlem
from jaxlem.envs.multiactor import policies
from jaxlem.envs.multiactor.types import KINDS
from jaxlem.studies import figures, multiactor_rates, tables
from jaxlem.studies import multiactor_deviations as deviations
from jaxlem.studies.runner import header
from jaxlem.train import banks
from jaxlem.train import evaluate as ev
from jaxlem.train.config import TrainConfig
from jaxlem.train.driver import run_training

SCRIPTED = deviations.SCRIPTED  # the regulator's fixed rule acts only where it is on
KPIS = (
    "welfare",
    "consumer_surplus",
    "wholesale_price",
    "retail_price",
    "local_price",
    "mean_markup",
    "renewable_share",
    "invest_kw",
    "regulator_budget",
    "hhi_producers",
    "hhi_utilities",
    "disconnected",
    "quota_shortfall_kwh",
)
RETURNS = tuple(f"return_{k}" for k in KINDS)
TRACES = ("wholesale_price", "retail_price", "local_price", "renewable_share", "capacity_kw")


def cells(cfg: DictConfig) -> list[str]:
    return [
        f"s{s}-regulator_{r}-{m}"
        for s in cfg.grid.scenario
        for r in cfg.grid.regulator
        for m in cfg.grid.personas
    ]


def _parse(cell: str) -> tuple[int, bool, str]:
    s, r, m = cell.split("-", 2)
    return int(s[1:]), r == "regulator_on", m


@functools.lru_cache(maxsize=8)
def _env(scenario: int, counts: tuple[tuple[str, int], ...]) -> Any:
    """One env object per scenario (the compiled trainers are cached per env object)."""
    return jaxlem.make("multiactor-v0", scenario=scenario, **dict(counts))


def _cell_bank(env: Any, bank: Any, regulator: bool, persona: list[int]) -> Any:
    num = jax.tree_util.tree_leaves(bank)[0].shape[0]
    pers = jnp.broadcast_to(jnp.asarray(persona, jnp.int32), (num, env.num_utilities))
    return bank.replace(
        regulator_on=jnp.full_like(bank.regulator_on, float(regulator)), persona=pers
    )


@functools.lru_cache(maxsize=16)
def _mixed(core: Any):
    """``policy(key, obs, env, params, (runner, trained_rows [N] bool))``: the trained policy on
    the marked rows, the scripted rule on the others."""
    trained = ev.trained_policy(core)
    scripted = policies.BASELINES[SCRIPTED]

    def policy(key, obs, env, params, state):
        runner, rows = state
        a = trained(key, obs, env, params, runner)
        b = scripted(key, obs, env, params)
        return jnp.where(rows[:, None], a, b)

    return policy


@functools.lru_cache(maxsize=16)
def _trace_fn(env: Any, policy: Any):
    """Mean over a bank of scenarios of the traced info entries, per step (producers'
    capacity summed)."""
    one = ev.trace_fn(env, policy, TRACES)

    def mean(k, p, s):
        tr = jax.tree_util.tree_map(
            lambda x: x.mean(0), jax.vmap(one, in_axes=(0, 0, None))(k, p, s)
        )
        return {**tr, "capacity_kw": tr["capacity_kw"].sum(-1)}

    return jax.jit(mean)


def groups(cfg: DictConfig) -> list[list[str]]:
    """One group per market scenario (a static setting): its regulator and persona cells
    differ only in params, so their learners train as lanes of one program."""
    return [[c for c in cells(cfg) if _parse(c)[0] == int(s)] for s in cfg.grid.scenario]


def run_cell(cfg: DictConfig, cell: str, log) -> dict:
    return run_group(cfg, [cell], log)[cell]


def run_group(cfg: DictConfig, group: list[str], log) -> dict[str, dict]:
    scenario = _parse(group[0])[0]
    counts = tuple(sorted((k, int(v)) for k, v in cfg.env.items()))
    env = _env(scenario, counts)
    seeds = tuple(range(int(cfg.seeds)))
    setting = {c: (_parse(c)[1], list(cfg.persona_mixes[_parse(c)[2]])) for c in group}
    held = {
        c: _cell_bank(env, banks.held_out_bank(env, int(cfg.eval_scenarios), 0), *setting[c])
        for c in group
    }
    out: dict[str, dict[str, Any]] = {c: {"algos": {}} for c in group}
    for algo in cfg.algos:
        train_cfg = TrainConfig.from_dict({**OmegaConf.to_container(cfg.train), "algo": algo})
        lanes = [
            _cell_bank(env, env.sample_params(banks.train_key(0), train_cfg.num_envs), *setting[c])
            for c in group
        ]
        evals = [
            _cell_bank(env, env.sample_params(banks.eval_key(0), train_cfg.eval_envs), *setting[c])
            for c in group
        ]
        together = len(group) > 1
        res = run_training(
            train_cfg,
            env,
            seeds=seeds,
            params=None if together else lanes[0],
            eval_params=None if together else evals[0],
            lanes=lanes if together else (),
            lane_eval_params=evals if together else (),
            num_chunks=int(cfg.num_chunks),
            log=lambda s, a=algo: log(f"  {a}: {s}"),
        )
        for lvl, cell in enumerate(group):
            lo, hi = lvl * len(seeds), (lvl + 1) * len(seeds)
            runners = jax.tree_util.tree_map(lambda x, lo=lo, hi=hi: x[lo:hi], res["runners"])
            rows = [r for r in res["rows"] if r.get("lane", 0) == lvl]
            _evaluate_cell(cfg, env, setting[cell][0], held[cell], out[cell], algo, res, runners)
            out[cell]["algos"][algo].update(
                {
                    # one program trained every cell of the group: its time shared evenly
                    "train_seconds": res["wall_s"] / len(group),
                    "env_steps_per_s": res["env_steps_per_s"],
                    "trained_together": len(group),
                    "updates": res["updates"],
                    "episode_return_curve": [
                        float(np.mean([r["episode_return"] for r in rows if r["update"] == u]))
                        for u in sorted({r["update"] for r in rows})
                    ],
                }
            )
    return out


def _evaluate_cell(cfg, env, regulator: bool, held, out: dict, algo: str, res, runners) -> None:
    """The held-out episodes of one cell for ``algo``'s trained seeds (and, once per cell, of
    the scripted market), into ``out``."""
    ep_seed = banks.held_out_episode_seed(0)
    keys = ev.episode_keys(held, ep_seed)
    kinds = np.asarray(env.kind_of_row)
    core = res["train"].core
    policy = _mixed(core)
    every = np.ones(env.num_agents, bool)
    none = np.zeros(env.num_agents, bool)
    if "scripted" not in out:
        state = (ev.seed_slice(runners, 0), none)
        out["scripted"] = _episodes(env, policy, held, ep_seed, state)
        out["scripted_traces"] = _traces(env, policy, keys, held, state)
        out["consumer_dilemma"] = deviations.consumer_dilemma(env, keys, held, cfg.bid_markups)
    per: dict[str, list] = {"all": []}
    rule: dict[str, list] = {}
    one: dict[str, list] = {}
    one_trained: dict[str, list] = {}
    traces, rates = [], []
    for i in range(int(cfg.seeds)):
        runner = ev.seed_slice(runners, i)
        per["all"].append(_episodes(env, policy, held, ep_seed, (runner, every)))
        traces.append(_traces(env, policy, keys, held, (runner, every)))
        if regulator:
            rates.append(multiactor_rates.landscape(env, core, keys, held, runner))
        for among, store in ((False, one), (True, one_trained)):
            state = (runner, none)
            for name, gains in deviations.unilateral(env, policy, keys, held, state, among).items():
                if name != "regulator" or regulator:
                    store.setdefault(name, []).append(gains)
        for k, name in enumerate(KINDS):
            if env.counts[k] and (name != "regulator" or regulator):
                per.setdefault(name, []).append(
                    _episodes(env, policy, held, ep_seed, (runner, kinds == k))
                )
                rule.setdefault(name, []).append(
                    _episodes(env, policy, held, ep_seed, (runner, kinds != k))
                )
    out["algos"][algo] = {
        "episodes": per,  # [trained rows][seed] -> {kpi: [scenario values]}
        "rule_in_trained": rule,  # [kind playing its rule][seed] -> {kpi: [...]}
        "one_alone": one,  # [kind][seed] -> [scenario]: one agent's gain, mean over agents
        "one_trained": one_trained,  # the same, every other agent trained
        "traces": {k: np.mean([t[k] for t in traces], 0).tolist() for k in TRACES},
        **({"rates": rates} if regulator else {}),
    }


def _episodes(env, policy, bank, ep_seed, state) -> dict[str, list[float]]:
    kpis = ev.episode_kpis(env, {"p": (policy, state)}, bank, ep_seed)["p"]
    return {k: v.tolist() for k, v in kpis.items() if k in KPIS + RETURNS + ("mean_agent_return",)}


def _traces(env, policy, keys, bank, state) -> dict[str, list[float]]:
    tr = _trace_fn(env, policy)(keys, bank, state)
    return {k: np.asarray(v, np.float64).tolist() for k, v in tr.items()}


# ---------------------------------------------------------------------------- report


def _seed_rows(per_seed: list[dict], keys) -> dict[str, float]:
    """Mean and s.e. over seeds of each KPI's per-seed mean over scenarios."""
    return ev.summarize({k: [np.mean(s[k]) for s in per_seed] for k in keys})


def _scenario_row(sample: dict, keys) -> dict[str, float]:
    return ev.summarize({k: np.asarray(sample[k]) for k in keys})


def _bounds(cfg: DictConfig) -> str:
    """The residual bound of each kind, in words."""
    by_type = list(cfg.train.get("residual_scale_by_type") or [])
    if not by_type:
        return f"bound {float(cfg.train.get('residual_scale', 1.0)):g} for every kind"
    plural = {"utility": "utilities"}
    pairs = ", ".join(
        f"{plural.get(k, k + 's')} {float(v):g}" for k, v in zip(KINDS, by_type, strict=True)
    )
    return f"bound per kind: {pairs}"


def report(cfg: DictConfig, results: dict, out: Path, meta: dict) -> None:
    algos = list(cfg.algos)
    names = list(results)
    # KPI table: scripted (s.e. over scenarios) and trained (s.e. over seeds)
    kpi_rows = []
    for cell in names:
        r = results[cell]
        kpi_rows.append({"cell": cell, "policy": "scripted",
                         **_scenario_row(r["scripted"], KPIS + RETURNS)})  # fmt: skip
        for a in algos:
            kpi_rows.append(
                {
                    "cell": cell,
                    "policy": a,
                    **_seed_rows(r["algos"][a]["episodes"]["all"], KPIS + RETURNS),
                }  # fmt: skip
            )
    gain_rows = []
    for market in deviations.MARKETS:
        for cell in names:
            for a in algos:
                for kind, g in deviations.kind_gains(results[cell], a, market).items():
                    gain_rows.append({"market": market, "cell": cell, "algo": a, "kind": kind, **g})
    tables.write_csv(out / "kpis.csv", kpi_rows)
    tables.write_csv(out / "kind_vs_scripted.csv", gain_rows)
    train_rows = [
        {
            "cell": c,
            "algo": a,
            "train_seconds": results[c]["algos"][a]["train_seconds"],
            "env_steps_per_s": results[c]["algos"][a]["env_steps_per_s"],
            "updates": results[c]["algos"][a]["updates"],
        }  # fmt: skip
        for c in names
        for a in algos
    ]
    tables.write_csv(out / "training.csv", train_rows)

    # figures: per cell, mean over held-out scenarios (and seeds) per step
    series = {
        cell: {
            "scripted": results[cell]["scripted_traces"],
            **{a: results[cell]["algos"][a]["traces"] for a in algos},
        }  # fmt: skip
        for cell in names
    }
    figures.multiactor_levels(series, out / "prices.png")
    figures.cell_lines(series, "capacity_kw", "producers' capacity (kW)", out / "investment.png")
    figures.cell_lines(
        series, "renewable_share", "renewable share of output", out / "renewable_share.png"
    )
    figures.learning_curves(
        {c: {a: results[c]["algos"][a]["episode_return_curve"] for a in algos} for c in names},
        out / "learning.png",
    )

    shown = ("welfare", "consumer_surplus", "wholesale_price", "retail_price", "local_price",
             "mean_markup", "renewable_share", "invest_kw", "regulator_budget")  # fmt: skip

    def shown_gains(market):
        return [
            {
                "cell": g["cell"],
                "algo": g["algo"],
                "kind": g["kind"],
                "rule's return": f"{g['rule']:.2f}",
                "trained - rule (paired s.e.)": f"{g['diff']:+.2f} ± {g['paired_se']:.2f}",
                "s.e. over seeds": f"{g['seed_se']:.2f}",
                "seeds ahead": f"{g['wins']}/{g['seeds']}",
            }  # fmt: skip
            for g in gain_rows
            if g["market"] == market
        ]

    what = (
        f"The multi-actor market ({_describe(cfg)}) in every cell of scenario "
        f"{list(cfg.grid.scenario)} x regulator {list(cfg.grid.regulator)} x persona mix "
        f"{list(cfg.grid.personas)}. Per cell, {', '.join(a.upper() for a in algos)} with one "
        f"network per kind of actor (`sharing=type`, residual on each kind's rule, "
        f"{_bounds(cfg)}) train "
        f"{cfg.seeds} seeds for {cfg.train.total_timesteps:,} env steps each (the cells of one "
        "scenario and their seeds as lanes of one vmapped program); then the scripted "
        f"rules, the trained agents and each kind trained alone among scripted others play the "
        f"same {cfg.eval_scenarios} held-out scenarios (episodes of the same keys). Money in "
        "currency units per episode, prices in currency/MWh, energy in kWh."
    )
    lines = [
        header("Multi-actor market: designs, regulation, personas, learning", meta, what),
        "## Findings",
        "",
        *[f"- {s}" for s in findings(cfg, results, kpi_rows, gain_rows)],
        "",
        "## Market KPIs per cell",
        "",
        "Scripted: mean ± s.e. over held-out scenarios. Trained: mean ± s.e. over seeds (each "
        "seed's mean over the held-out scenarios).",
        "",
        tables.markdown(kpi_rows, ["cell", "policy"], shown),
        "",
        "## Does each trained kind beat the rule of its kind?",
        "",
        "Mean return per agent of the kind (currency per episode), trained minus its rule on "
        "the same scenarios; paired s.e. per scenario pooled over seeds, and the s.e. of the "
        "seeds' means.",
        "",
        "**In the market it was trained in** (every kind trained, against the same market with "
        "this kind playing its rule):",
        "",
        tables.markdown_plain(shown_gains("trained")),
        "",
        "**Among scripted agents** (this kind trained, every other kind playing its rule, "
        "against the all-scripted market):",
        "",
        tables.markdown_plain(shown_gains("scripted")),
        "",
        "**One agent among agents all playing their rules** (that agent trained, every other "
        "agent of every kind playing its rule; the agent's own gain, averaged over the agents of "
        "the kind: is the trained policy a better response to the rules than the rule itself?):",
        "",
        tables.markdown_plain(shown_gains("one")),
        "",
        "**One agent against its rule among trained agents** (that agent trained, against the "
        "same market with that agent alone playing its rule, every other agent trained; mean "
        "over the agents of the kind: is the trained policy a better response than the rule in "
        "the market it was trained in? For the single regulator this is the first table):",
        "",
        tables.markdown_plain(shown_gains("one_trained")),
        "",
        "## The regulator's rates in the trained market",
        "",
        "Every agent trained except the regulator, which sets fixed rates (shares of the largest "
        "gouging fine, output subsidy and investment subsidy) every day; its return (welfare, "
        "currency per episode) minus the trained regulator's on the same held-out episodes, "
        "mean ± paired s.e. over seeds x scenarios. The fixed rule is (1, 0.5, 0.5); the trained "
        "regulator's rates are those of its first day, mean over scenarios and seeds.",
        "",
        tables.markdown_plain(multiactor_rates.rows(results)),
        "",
        "## The consumers' dilemma, in the rules alone",
        "",
        "Scripted market; the consumers' local limit price set to a multiple of their "
        "supplier's retail price (the rule: 1). The gain of one consumer doing so while the "
        "others keep the rule (its own return; averaged over which consumer), and the mean gain "
        "of the consumers when all do so; currency per episode, mean ± paired s.e. over the "
        "held-out scenarios.",
        "",
        tables.markdown_plain(deviations.dilemma_rows(results)),
        "",
        "## Figures",
        "",
        "Prices at each level (hourly mean over the held-out scenarios):",
        "",
        "![prices](prices.png)",
        "",
        "Producers' capacity (investment) and the renewable share of output over the episode:",
        "",
        "![investment](investment.png)",
        "",
        "![renewable share](renewable_share.png)",
        "",
        "Training curves (mean episode return per update, mean over seeds):",
        "",
        "![learning](learning.png)",
        "",
        "Files: `kpis.csv` (every KPI with its s.e.), `kind_vs_scripted.csv`, `training.csv` "
        "(wall time and env-steps/s per training), `cells/*.json` (raw per-scenario results; "
        "written by the command, not committed), "
        "`study.json` (config and hardware).",
        "",
    ]
    (out / "README.md").write_text("\n".join(lines))


def _describe(cfg: DictConfig) -> str:
    e = cfg.env
    return (
        f"{e.num_producers} producers, {e.num_utilities} utilities, {e.num_consumers} consumers, "
        f"{e.num_prosumers} prosumers and a regulator over {e.num_days} day(s) of hourly steps"
    )


def findings(cfg: DictConfig, results: dict, kpi_rows: list, gain_rows: list) -> list[str]:
    """A few sentences computed from the numbers (so they stay true when the study reruns)."""
    out = []
    by = {(r["cell"], r["policy"]): r for r in kpi_rows}
    cells_ = list(results)
    algos = list(cfg.algos)

    def mean_over(policy, key, pred):
        vals = [by[(c, policy)][key] for c in cells_ if pred(c) and (c, policy) in by]
        return float(np.mean(vals)) if vals else float("nan")

    s1 = lambda c: c.startswith("s1-")  # noqa: E731
    s2 = lambda c: c.startswith("s2-")  # noqa: E731
    if any(map(s1, cells_)) and any(map(s2, cells_)):
        out.append(
            "Market design, scripted agents: retail price "
            f"{mean_over('scripted', 'retail_price', s1):.1f} (scenario 1) vs "
            f"{mean_over('scripted', 'retail_price', s2):.1f} (scenario 2) currency/MWh, "
            f"wholesale {mean_over('scripted', 'wholesale_price', s1):.1f} vs "
            f"{mean_over('scripted', 'wholesale_price', s2):.1f}, welfare "
            f"{mean_over('scripted', 'welfare', s1):.0f} vs "
            f"{mean_over('scripted', 'welfare', s2):.0f} per episode."
        )
    every = lambda c: True  # noqa: E731
    for algo in algos:
        out.append(
            f"Trained ({algo}) against scripted, mean over the cells: retail price "
            f"{mean_over(algo, 'retail_price', every):.1f} vs "
            f"{mean_over('scripted', 'retail_price', every):.1f} currency/MWh, utilities' mean "
            f"markup {mean_over(algo, 'mean_markup', every):.1f} vs "
            f"{mean_over('scripted', 'mean_markup', every):.1f}, consumer surplus "
            f"{mean_over(algo, 'consumer_surplus', every):.1f} vs "
            f"{mean_over('scripted', 'consumer_surplus', every):.1f}, welfare "
            f"{mean_over(algo, 'welfare', every):.1f} vs "
            f"{mean_over('scripted', 'welfare', every):.1f} per episode."
        )
    on = lambda c: "regulator_on" in c  # noqa: E731
    off = lambda c: "regulator_off" in c  # noqa: E731
    for pol in ["scripted", *algos]:
        if any(map(on, cells_)) and any(map(off, cells_)):
            out.append(
                f"Regulator on vs off ({pol}): mean markup "
                + " vs ".join(f"{mean_over(pol, 'mean_markup', f):.3f}" for f in (on, off))
                + ", renewable share "
                + " vs ".join(f"{mean_over(pol, 'renewable_share', f):.3f}" for f in (on, off))
                + ", investment "
                + " vs ".join(f"{mean_over(pol, 'invest_kw', f):.1f}" for f in (on, off))
                + f" kW, regulator's budget {mean_over(pol, 'regulator_budget', on):.0f} (on)."
            )
    if max(r["invest_kw"] for r in kpi_rows) <= 0.0:
        out.append(
            f"No producer invested in any cell, scripted or trained: with {cfg.env.num_days}-day "
            "episodes and the default build delay of 2 days, capacity ordered cannot run, let "
            "alone pay back, within an episode (the investment figure is flat for that reason; "
            "longer episodes, `env.num_days=7`, are needed to study investment)."
        )
    mixes = list(cfg.grid.personas)
    if len(mixes) > 1:
        a, b = mixes[0], mixes[1]
        out.append(
            f"Persona mix, scripted agents: the retail price is "
            f"{mean_over('scripted', 'retail_price', lambda c: c.endswith(a)):.1f} ({a}) vs "
            f"{mean_over('scripted', 'retail_price', lambda c: c.endswith(b)):.1f} ({b}) "
            "currency/MWh (the scripted utilities price cost-plus whatever their persona; "
            "personas change what a trained utility is rewarded for)."
        )
        for algo in algos:
            out.append(
                f"Persona mix, {algo}: mean markup "
                f"{mean_over(algo, 'mean_markup', lambda c: c.endswith(a)):.3f} ({a}) vs "
                f"{mean_over(algo, 'mean_markup', lambda c: c.endswith(b)):.3f} ({b}), "
                f"renewable share {mean_over(algo, 'renewable_share', lambda c: c.endswith(a)):.3f}"
                f" vs {mean_over(algo, 'renewable_share', lambda c: c.endswith(b)):.3f}."
            )
    for market, words in deviations.MARKETS.items():
        for algo in algos:
            rows = [g for g in gain_rows if g["algo"] == algo and g["market"] == market]
            if not rows:
                continue
            ahead = []
            for kind in [k for k in KINDS if any(g["kind"] == k for g in rows)]:
                ks = [g for g in rows if g["kind"] == kind]
                sig = sum(g["diff"] > deviations.margin(g) for g in ks)
                worse = sum(g["diff"] < -deviations.margin(g) for g in ks)
                mean = np.mean([g["diff"] / max(abs(g["rule"]), 1e-9) for g in ks])
                ahead.append(
                    f"{kind} ahead of its rule in {sig}/{len(ks)} cells, behind in {worse} "
                    f"(mean {100 * mean:+.0f} % of the rule's return)"
                )
            out.append(
                f"{algo.upper()}, each kind {words}, against the rule of its kind (beyond 2 "
                "paired s.e. and float rounding): " + "; ".join(ahead) + "."
            )
    return out + deviations.dilemma_findings(results) + multiactor_rates.findings(results)
