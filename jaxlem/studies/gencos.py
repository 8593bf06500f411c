"""``jaxlem-study gencos``: strategic generators bidding into the case5 network-constrained
dispatch (``gencos-v0``; config: ``jaxlem/configs/study/gencos.yaml``).

Cells:

- ``nash``: the stage game at fixed loads, every profile of uniform markups on the markup grid
  cleared (``jaxlem.envs.gencos.equilibrium``): pure Nash profiles, the floor of exploitability,
  a Nash profile's markups and LMP;
- ``scripted``: truthful, a fixed markup, random markups and the myopic best response (each
  step every unit picks its best uniform markup against the others' previous action);
- one cell per learner (IPPO, self-play), trained with several seeds.

Every policy plays the same held-out scenarios with the same keys. Per policy: profit per unit,
mean agent return, the welfare ratio against the planner (everyone truthful, same loads),
exploitability (the best single deviator's myopic gain, $ per step, averaged over the steps),
system-mean LMP and its volatility, dispatch shares and their HHI, the ramp-binding rate, shed
load; and the OOD axes: demand shift, renewable shock, ramp stress, and for learners the
opponent shift (one seed's unit against another seed's opponents).
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
from jaxlem import metrics
from jaxlem.envs.gencos import equilibrium, evaluation, policies
from jaxlem.envs.gencos.env import CASES
from jaxlem.studies import figures, tables
from jaxlem.studies.runner import header
from jaxlem.train import banks
from jaxlem.train import evaluate as ev
from jaxlem.train.config import TrainConfig
from jaxlem.train.driver import run_training

CLEAR_CACHES = True
KPIS = ("mean_agent_return", "welfare_ratio", "deadweight_loss", "exploitability",
        "mean_system_lmp",
        "price_volatility", "hhi_dispatch", "ramp_binding_rate", "shed_mwh")  # fmt: skip
OOD_KPIS = ("mean_agent_return", "welfare_ratio", "mean_system_lmp")
SCRIPTED = ("truthful", "fixed_markup_0.5", "random_markup", "myopic_best_response")
MYOPIC = "myopic_best_response"


def cells(cfg: DictConfig) -> list[str]:
    return ["nash", "scripted", *[str(a) for a in cfg.algos]]


@functools.lru_cache(maxsize=2)
def _env() -> Any:
    return jaxlem.make("gencos-v0")


# --------------------------------------------------------------------------- episodes


def _kpis(ep: dict, planner: dict) -> dict[str, jax.Array]:
    k = metrics.gencos_episode_kpis(ep["info"], ep["reward"], planner["info"])
    k["exploitability"] = jnp.mean(ep["gain"])
    k["mean_agent_return"] = k.pop("mean_return")
    k["deadweight_loss"] = jnp.sum(planner["info"]["welfare"]) - jnp.sum(ep["info"]["welfare"])
    return k


@functools.lru_cache(maxsize=32)
def _evaluate_fn(env: Any, policy: Any, with_br: bool, traces: bool):
    """jit(vmap over scenarios): KPIs of ``policy`` (a ``(key, obs, env, params, state)``
    policy, or ``MYOPIC``) against the planner on the same keys and params."""

    def one(key, params, state):
        if policy == MYOPIC:

            def act(k, obs, st, last):
                return policies.best_response(env, params, st, last)[0]
        else:

            def act(k, obs, st, last):
                return policy(k, obs, env, params, state)

        def truthful(k, obs, st, last):
            return policies.truthful(k, obs, env, params)

        ep = evaluation.play_episode(env, act, key, params, with_br)
        planner = evaluation.play_episode(env, truthful, key, params, False)
        out = _kpis(ep, planner)
        if traces:
            out["trace"] = {k: ep["info"][k] for k in ("p_gen", "lmp", "markup", "system_lmp")}
        return out

    return jax.jit(jax.vmap(one, in_axes=(0, 0, None)))


def evaluate(env, policy, bank, seed: int, state=None, with_br=True, traces=False) -> dict:
    out = _evaluate_fn(env, policy, with_br, traces)(ev.episode_keys(bank, seed), bank, state)
    return jax.tree_util.tree_map(lambda x: np.asarray(x, np.float64), out)


def ood_banks(env: Any, cfg: DictConfig) -> dict[str, Any]:
    """The held-out bank and its OOD variants: demand shift, renewable shock at the case's
    renewable bus, ramp stress."""
    held = banks.held_out_bank(env, int(cfg.eval_scenarios), 0)
    o = cfg.ood
    ren = jnp.zeros_like(held.renewable_mw).at[:, env_renewable_bus(env)].set(o.renewable_mw)
    out = {
        "held_out": held,
        f"demand x{o.demand_shift:g}": held.replace(
            demand_shift=jnp.full_like(held.demand_shift, o.demand_shift)
        ),
        f"renewable {o.renewable_mw:g} MW": held.replace(renewable_mw=ren),
        f"ramp x{o.ramp_scale:g}": held.replace(
            ramp_scale=jnp.full_like(held.ramp_scale, o.ramp_scale)
        ),
    }
    for b in out.values():
        env.check_params(jax.tree_util.tree_map(lambda x: x[0], b))
    return out


def env_renewable_bus(env: Any) -> int:
    return int(CASES[env.case].renewable_bus)


def _summary(k: dict) -> dict:
    """JSON-able per-scenario KPIs (lists) and per-unit profit and dispatch share means."""
    out = {name: k[name].tolist() for name in KPIS}
    out["profit"] = k["profit"].mean(0).tolist()
    out["dispatch_share"] = k["dispatch_share"].mean(0).tolist()
    if "trace" in k:
        out["trace"] = {n: v[0].tolist() for n, v in k["trace"].items()}  # first scenario
    return out


def _ood(env, policy, obanks: dict, seed: int, state=None) -> dict:
    out = {}
    for name, b in list(obanks.items())[1:]:
        k = evaluate(env, policy, b, seed, state, with_br=False)
        out[name] = {n: k[n].tolist() for n in OOD_KPIS}
    return out


# ------------------------------------------------------------------------------ cells


def run_cell(cfg: DictConfig, cell: str, log) -> dict:
    env = _env()
    seed = banks.held_out_episode_seed(0)
    obanks = ood_banks(env, cfg)
    held = obanks["held_out"]
    if cell == "nash":
        return _nash(cfg, env, log)
    if cell == "scripted":
        out = {}
        for name in SCRIPTED:
            pol = MYOPIC if name == MYOPIC else ev.stateless(policies.BASELINES[name])
            log(f"  {name}")
            out[name] = {
                **_summary(evaluate(env, pol, held, seed, traces=True)),
                "ood": _ood(env, pol, obanks, seed),
            }
        return {"policies": out}
    return _learner(cfg, cell, env, obanks, seed, log)


def _nash(cfg: DictConfig, env: Any, log) -> dict:
    params = env.default_params
    rows = []
    for mult in cfg.loads:
        state = equilibrium.state_at_load(env, params, float(mult))
        ref = equilibrium.stage_reference(env, params, state, grid=int(cfg.nash_grid))
        rows.append({
            "load_mult": float(mult),
            "load_mw": float(jnp.sum(state.load_next)),
            "grid_floor": float(ref.floor),
            "pure_nash_profiles": int(ref.num_pure_nash),
            "profiles": int(int(cfg.nash_grid) ** env.num_agents),
            "nash_markups": [float(m) for m in ref.best_profile],
            "nash_lmp": float(ref.nash_lmp),
            "nash_profit_total": float(np.sum(ref.nash_profit)),
            "truthful_exploitability": float(ref.truthful_exploitability),
        })  # fmt: skip
        log(f"  load x{mult}: {rows[-1]['pure_nash_profiles']} pure Nash profiles")
    return {"loads": rows}


def stage_exploitability(env: Any, cfg: DictConfig, policy, state=None) -> list[float]:
    """Exploitability ($/step) of a deterministic policy's action at each Nash load state."""
    params = env.default_params
    out = []
    for mult in cfg.loads:
        st = equilibrium.state_at_load(env, params, float(mult))
        action = policy(jax.random.PRNGKey(0), env.observe(st, params), env, params, state)
        _, br, profit = policies.best_response(env, params, st, action)
        out.append(float(metrics.exploitability_proxy(br, profit)))
    return out


def _learner(cfg: DictConfig, algo: str, env: Any, obanks: dict, seed: int, log) -> dict:
    train = {**OmegaConf.to_container(cfg.train), **OmegaConf.to_container(cfg.algos[algo])}
    train_cfg = TrainConfig.from_dict({**train, "algo": algo})
    seeds = tuple(range(int(cfg.seeds)))
    res = run_training(
        train_cfg, env, seeds=seeds, num_chunks=int(cfg.num_chunks), log=lambda s: log("  " + s)
    )
    pol = ev.trained_policy(res["train"].core)
    runners = [ev.seed_slice(res["runners"], i) for i in seeds]
    held = obanks["held_out"]
    per_seed = []
    for i, r in enumerate(runners):
        s = _summary(evaluate(env, pol, held, seed, r, traces=i == 0))
        s["ood"] = _ood(env, pol, obanks, seed, r)
        s["stage_exploitability"] = stage_exploitability(env, cfg, pol, r)
        per_seed.append(s)
    shift = opponent_shift(env, pol, runners, held, seed) if len(runners) > 1 else None
    updates = sorted({r["update"] for r in res["rows"]})
    return {
        "seeds": per_seed,
        "opponent_shift": shift,
        "curves": [
            [
                next(
                    r["episode_return"] for r in res["rows"] if r["update"] == u and r["seed"] == s
                )
                for u in updates
            ]
            for s in seeds
        ],  # fmt: skip
        "train_seconds": res["wall_s"],
        "env_steps_per_s": res["env_steps_per_s"],
    }


def opponent_shift(env: Any, pol, runners: list, bank: Any, seed: int) -> dict:
    """Each unit of seed ``i`` against the other units of seed ``i + 1``: its return (mean
    over units and scenarios) against its return among its own seed, per seed pair."""
    g = env.num_agents
    keys = ev.episode_keys(bank, seed)

    @jax.jit
    def returns(key, params, mine, theirs):
        def one_focal(focal):
            def act(k, obs, st, last):
                a = pol(k, obs, env, params, mine)
                b = pol(k, obs, env, params, theirs)
                return jnp.where((jnp.arange(g) == focal)[:, None], a, b)

            ep = evaluation.play_episode(env, act, key, params, False)
            return jnp.sum(ep["reward"][:, focal])

        return jax.vmap(one_focal)(jnp.arange(g))  # [G]

    def run(mine, theirs):
        out = jax.vmap(returns, in_axes=(0, 0, None, None))(keys, bank, mine, theirs)
        return np.asarray(out, np.float64)  # [S, G]

    rows = []
    for i in range(len(runners)):
        j = (i + 1) % len(runners)
        own = run(runners[i], runners[i])
        mixed = run(runners[i], runners[j])
        d = (mixed - own).reshape(-1)
        rows.append({"seed": i, "against": j, "own": float(own.mean()),
                     "shifted": float(mixed.mean()), "diff": float(d.mean()),
                     "diff_se": float(d.std(ddof=1) / np.sqrt(d.size))})  # fmt: skip
    return {"pairs": rows}


# ---------------------------------------------------------------------------- report


def policy_rows(results: dict) -> list[dict]:
    """Every policy's KPIs: scripted mean ± s.e. over scenarios; learners over seeds."""
    out = []
    for name, s in results.get("scripted", {}).get("policies", {}).items():
        out.append({"policy": name, **ev.summarize({k: s[k] for k in KPIS})})
    for algo, r in results.items():
        if algo in ("nash", "scripted"):
            continue
        out.append({"policy": algo, **ev.summarize(
            {k: [float(np.mean(s[k])) for s in r["seeds"]] for k in KPIS})})  # fmt: skip
    return out


def _policies(results: dict) -> dict[str, list[dict]]:
    """Policy -> its per-seed summaries (one for a scripted policy)."""
    out = {n: [s] for n, s in results.get("scripted", {}).get("policies", {}).items()}
    for algo, r in results.items():
        if algo not in ("nash", "scripted"):
            out[algo] = r["seeds"]
    return out


def report(cfg: DictConfig, results: dict, out: Path, meta: dict) -> None:
    env = _env()
    table = policy_rows(results)
    tables.write_csv(out / "kpis.csv", table)
    pols = _policies(results)
    units = [f"G{i + 1}" for i in range(env.num_agents)]
    profit = [
        {"policy": p, **{u: tables.fmt(float(np.mean([s["profit"][i] for s in ss])),
                                       _se([s["profit"][i] for s in ss]))
                         for i, u in enumerate(units)}}
        for p, ss in pols.items()
    ]  # fmt: skip
    share = [
        {"policy": p, **{u: f"{np.mean([s['dispatch_share'][i] for s in ss]):.3f}"
                         for i, u in enumerate(units)}}
        for p, ss in pols.items()
    ]  # fmt: skip
    ood_names = list(next(iter(pols.values()))[0]["ood"])
    ood = []
    for p, ss in pols.items():
        for axis in ood_names:
            row = {"policy": p, "axis": axis}
            for k in OOD_KPIS:
                row[k] = tables.fmt(float(np.mean([np.mean(s["ood"][axis][k]) for s in ss])),
                                    _se([np.mean(s["ood"][axis][k]) for s in ss]))  # fmt: skip
            ood.append(row)
    tables.write_csv(out / "ood.csv", ood)
    nash = results.get("nash", {}).get("loads", [])
    tables.write_csv(out / "nash.csv", nash)
    stage = [
        {"policy": a, **{f"load x{m:g}": tables.fmt(
            float(np.mean([s["stage_exploitability"][j] for s in r["seeds"]])),
            _se([s["stage_exploitability"][j] for s in r["seeds"]]))
            for j, m in enumerate(cfg.loads)}}
        for a, r in results.items() if a not in ("nash", "scripted")
    ]  # fmt: skip
    shifts = [{"policy": a, **p} for a, r in results.items() if a not in ("nash", "scripted")
              and r.get("opponent_shift") for p in r["opponent_shift"]["pairs"]]  # fmt: skip

    traces = {p: ss[0]["trace"] for p, ss in pols.items() if "trace" in ss[0]}
    figures.dispatch_stacks(traces, units, out / "dispatch.png")
    params = env.default_params
    net = params.network
    figures.lmp_maps(
        {p: np.mean(np.asarray(t["lmp"]), axis=0) for p, t in traces.items()},
        np.asarray(net.branch_from), np.asarray(net.branch_to),
        np.isfinite(np.asarray(net.branch_limit_mw)), np.asarray(net.gen_bus), units,
        out / "lmp_map.png",
    )  # fmt: skip
    figures.markup_trajectories(
        {p: t["markup"] for p, t in traces.items() if p not in ("truthful",)}, units,
        out / "markups.png",
    )  # fmt: skip
    learners = {a: r for a, r in results.items() if a not in ("nash", "scripted")}
    if learners:
        figures.seed_band_curves({a: {"seeds": r["curves"]} for a, r in learners.items()},
                                 out / "learning.png")  # fmt: skip
    what = (
        "gencos-v0: the five units of the PJM/MATPOWER case5 network (G1–G5, true marginal "
        "costs 14, 15, 30, 40, 10 $/MWh) offer three blocks each at markups of up to 3× cost "
        "into a network-constrained SCED every 30 minutes (48 steps, one day). "
        f"{cfg.eval_scenarios} held-out scenarios, the same keys for every policy. Learners: "
        + ", ".join(a.upper() if a == "ippo" else a for a in cfg.algos)
        + f", {cfg.seeds} seeds each, {cfg.train.total_timesteps:,} env steps per seed. "
        "Welfare per step: (VOLL × served inelastic load + value of the served "
        "price-responsive demand − the units' true cost) × Δt; the welfare ratio divides a "
        "policy's episode welfare by the planner's (every unit truthful) on the same loads; "
        "it stays near 1 because the value of served load (at VOLL) dwarfs generation cost, "
        "so the deadweight loss (planner welfare − welfare, $ per episode: generation cost "
        "above the least-cost dispatch plus the value of price-responsive demand priced out) "
        "shows the inefficiency. "
        "Exploitability: the largest myopic gain of a single unit switching to its best "
        "uniform markup on an 11-level grid, $ per step, averaged over the episode. Money in "
        "$ per episode unless stated."
    )
    lines = [
        header("GenCos: strategic bidding on a constrained network", meta, what),
        "## Findings",
        "",
        *[f"- {s}" for s in findings(table, nash, learners)],
        "",
        "## Every policy",
        "",
        "Scripted: mean ± s.e. over scenarios; learners: over seeds (each seed's mean over "
        "the scenarios). `mean_agent_return`: scaled profit per unit; `hhi_dispatch`: HHI of "
        "the dispatch shares (0–10,000).",
        "",
        tables.markdown(table, ["policy"], list(KPIS)),
        "",
        "Profit per unit ($ per episode):",
        "",
        tables.markdown_plain(profit),
        "",
        "Dispatch shares:",
        "",
        tables.markdown_plain(share),
        "",
        "## The Nash reference of the stage game",
        "",
        f"At each load level (× the base load), all {cfg.nash_grid}^5 profiles of uniform "
        "markups are cleared at the state where the previous dispatch is the truthful one. "
        "Floor: the lowest exploitability of any profile ($/step; 0 = a pure Nash "
        "equilibrium exists).",
        "",
        tables.markdown_plain(
            [
                {
                    "load": f"x{r['load_mult']:g} ({r['load_mw']:.0f} MW)",
                    "floor": tables.fmt(r["grid_floor"]),
                    "pure Nash": f"{r['pure_nash_profiles']} of {r['profiles']:,}",
                    "a Nash profile (G1..G5)": " ".join(f"{m:.1f}" for m in r["nash_markups"]),
                    "its mean LMP": tables.fmt(r["nash_lmp"]),
                    "everyone truthful: exploitability": tables.fmt(r["truthful_exploitability"]),
                }
                for r in nash
            ]
        ),  # fmt: skip
        "",
        "The learners' exploitability at those states (their deterministic action; mean ± "
        "s.e. over seeds, $/step):",
        "",
        tables.markdown_plain(stage) if stage else "(no learner)",
        "",
        "## Out of distribution",
        "",
        "The held-out scenarios with one axis moved beyond the training bank (training draws "
        "demand × 0.8–1.15 and 0–100 MW of renewables). Mean ± s.e. over seeds (scripted: "
        "the scenario mean).",
        "",
        tables.markdown_plain(ood),
        "",
        "Opponent shift: each unit of one seed plays against the other units of the next "
        "seed; its return (scaled, per episode) against its return among its own seed, "
        "paired on the scenarios:",
        "",
        tables.markdown(shifts, ["policy", "seed", "against"], ["own", "shifted", "diff"])
        if shifts
        else "(needs two seeds)",
        "",
        "## Figures",
        "",
        "Dispatch stack on the first held-out day (MW per unit):",
        "",
        "![dispatch](dispatch.png)",
        "",
        "Nodal LMPs on the case5 graph (mean over that day; thick lines: limited branches):",
        "",
        "![lmp map](lmp_map.png)",
        "",
        "Markups per unit over that day (mean of the three blocks, share of the largest):",
        "",
        "![markups](markups.png)",
        "",
        "Training curves (band: min-max over seeds):",
        "",
        "![learning](learning.png)",
        "",
        tables.files_line("kpis.csv", "ood.csv", "nash.csv"),
        "",
    ]
    (out / "README.md").write_text("\n".join(lines))


def _se(v) -> float | None:
    """Standard error over seeds (None for one sample: a scripted policy's scenario mean)."""
    v = np.asarray(v, np.float64)
    return float(v.std(ddof=1) / np.sqrt(v.size)) if v.size > 1 else None


def findings(table: list[dict], nash: list[dict], learners: dict) -> list[str]:
    out = []
    by = {r["policy"]: r for r in table}
    ranked = sorted(table, key=lambda r: -r["welfare_ratio"])
    out.append(
        "Welfare ratio (planner = 1): "
        + ", ".join(f"{r['policy']} {r['welfare_ratio']:.4f}" for r in ranked)
        + "; exploitability ($/step): "
        + ", ".join(f"{r['policy']} {r['exploitability']:.0f}" for r in table)
        + "."
    )
    if nash:
        n_eq = [r["pure_nash_profiles"] for r in nash]
        out.append(
            f"The grid stage game has pure Nash profiles at {sum(n > 0 for n in n_eq)} of "
            f"{len(nash)} load levels (floor of exploitability "
            + ", ".join(f"{r['grid_floor']:.0f}" for r in nash)
            + " $/step), so an exploitability above 0 is distance from equilibrium, not a "
            "property of the game."
        )
    out.append(
        "Deadweight loss against the planner ($ per episode): "
        + ", ".join(f"{r['policy']} {r['deadweight_loss']:.0f}" for r in table)
        + "."
    )
    for a, r in learners.items():
        pairs = (r.get("opponent_shift") or {}).get("pairs", [])
        if pairs:
            moves = ", ".join(f"{p['diff']:+.2f} ± {p['diff_se']:.2f}" for p in pairs)
            own = float(np.mean([p["own"] for p in pairs]))
            out.append(
                f"{a}, opponent shift: a unit's return against another seed's opponents moves "
                f"by {moves} (its return among its own seed: about {own:.1f})."
            )
    if "truthful" in by:
        for a in learners:
            if a in by:
                out.append(
                    f"{a}: mean system LMP {by[a]['mean_system_lmp']:.1f} $/MWh against "
                    f"{by['truthful']['mean_system_lmp']:.1f} truthful; return per unit "
                    f"{by[a]['mean_agent_return']:.2f} against "
                    f"{by['truthful']['mean_agent_return']:.2f}."
                )
    return out
