"""The cell the ``lem-v0`` studies share: on one env (one preset, one static setting), train the
learner with several seeds, then play the same held-out scenarios with the same keys with the
trained agents, the scripted baselines and the perfect-foresight optimum.

Every policy's KPIs are kept per scenario (so differences can be paired), with the gain share,
equivalent battery cycles, community welfare and its deadweight loss against the optimum. One
episode (the first held-out scenario) of the trained agents (first seed) and of the rule-based
battery is kept step by step for figures, with its agent-to-agent trades
(``jaxlem.envs.lem.trades``); so are the P2P prices and volumes of every step of every
scenario (price and volume distributions).
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from omegaconf import DictConfig, OmegaConf

from jaxlem import metrics
from jaxlem.envs.lem import oracle, policies, trades
from jaxlem.rollout import rollout
from jaxlem.train import banks
from jaxlem.train import evaluate as ev
from jaxlem.train.config import TrainConfig
from jaxlem.train.driver import run_training

BASELINES = ("rule_based_battery", "zero_intelligence", "dso_only")
NULL = "dso_only"
TRACE_KEYS = (
    "clearing_price",
    "p2p_volume_kwh",
    "import_kwh",
    "export_kwh",
    "fit",
    "utility",
    "soc",
    "order_price",
)
Extra = Callable[[Any, dict, jax.Array, Any], dict]  # (env, info, rewards, params) -> KPIs


def episode(env: Any, info: dict, rewards: jax.Array, params: Any) -> dict[str, jax.Array]:
    """An episode's KPIs: ``metrics.lem_episode_kpis`` plus equivalent full cycles of the
    community's storage, community welfare (the agents' summed profit, currency) and the
    per-step P2P price and volume (``step_price``, ``step_volume`` [T])."""
    out = metrics.lem_episode_kpis(info, rewards)
    out["cycles"] = metrics.battery_cycles(
        jnp.sum(info["battery_throughput_kwh"]), jnp.sum(params.bat_kwh)
    )
    out["welfare"] = jnp.sum(info["profit"])
    out["step_price"] = info["clearing_price"]
    out["step_volume"] = info["p2p_volume_kwh"]
    return out


@functools.lru_cache(maxsize=64)
def _episodes_fn(env: Any, policy: Any, extra: Extra | None):
    def one(k, p, state):
        rewards, info = rollout(env, lambda kk, o, e, pp: policy(kk, o, e, pp, state), k, p)
        out = episode(env, info, rewards, p)
        if extra is not None:
            out.update(extra(env, info, rewards, p))
        return out

    return jax.jit(jax.vmap(one, in_axes=(0, 0, None)))


def play(env, policy, bank, seed: int, state=None, extra: Extra | None = None) -> dict:
    """Per-scenario KPIs (NumPy float64) of a stateful policy on ``bank``."""
    out = _episodes_fn(env, policy, extra)(ev.episode_keys(bank, seed), bank, state)
    return {k: np.asarray(v, np.float64) for k, v in out.items()}


@functools.lru_cache(maxsize=16)
def _optimum_fn(env: Any):
    def one(k, p):
        opt = oracle.perfect_foresight(env, p, k)
        exo = oracle.exogenous(env, p, k)
        net_charge = jnp.sum(opt.charge_kwh - opt.discharge_kwh, axis=-1)
        throughput = jnp.sum(opt.charge_kwh + opt.discharge_kwh)
        return {
            "mean_agent_return": opt.mean_agent_return,
            "community_cost": opt.community_cost,
            "self_sufficiency": opt.self_sufficiency,
            "welfare": opt.community_profit,
            "peak_to_average_import": metrics.peak_to_average(opt.import_kwh - opt.export_kwh),
            "battery_throughput_kwh": throughput,
            "cycles": metrics.battery_cycles(throughput, jnp.sum(p.bat_kwh)),
            "storage_alignment": jnp.where(  # the LP's zero storage is ~1e-13 kWh noise
                jnp.sum(p.bat_kwh) > 0,
                metrics.correlation(net_charge, jnp.sum(exo["pv"] - exo["demand"], axis=-1)),
                0.0,
            ),
            "converged": opt.converged.astype(jnp.float32),
        }

    return jax.jit(jax.vmap(one))


def optimum(env: Any, bank: Any, seed: int) -> dict[str, np.ndarray]:
    """Per-scenario KPIs of the perfect-foresight optimum of the episodes ``play`` plays."""
    out = _optimum_fn(env)(ev.episode_keys(bank, seed), bank)
    return {k: np.asarray(v, np.float64) for k, v in out.items()}


def trace(env: Any, policy, bank: Any, seed: int, state=None) -> dict[str, Any]:
    """The first held-out episode step by step (``TRACE_KEYS``, lists) and its trade matrix
    ``trades`` [seller][buyer] (kWh)."""
    params = jax.tree_util.tree_map(lambda x: x[0], bank)
    key = ev.episode_keys(bank, seed)[0]
    run = jax.jit(
        lambda k, p, s: rollout(env, lambda kk, o, e, pp: policy(kk, o, e, pp, s), k, p)[1]
    )
    info = jax.tree_util.tree_map(np.asarray, run(key, params, state))
    out = {k: info[k].tolist() for k in TRACE_KEYS}
    out["trades"] = trades.episode_trades(env, params, info).tolist()
    return out


def _lists(samples: dict[str, np.ndarray], steps: bool) -> dict[str, list]:
    return {k: v.tolist() for k, v in samples.items() if steps or not k.startswith("step_")}


def with_params(bank: Any, overrides: dict[str, float] | None) -> Any:
    """``bank`` with numeric params fields set for every scenario (and agent)."""
    if not overrides:
        return bank
    new = {}
    for k, v in overrides.items():
        cur = getattr(bank, k)
        new[k] = jnp.broadcast_to(jnp.asarray(v, cur.dtype), cur.shape)
    return bank.replace(**new)


def held_out(env: Any, cfg: DictConfig, overrides: dict[str, float] | None = None) -> Any:
    """The cell's held-out scenarios (the same draws for every cell of one env), validated."""
    bank = with_params(banks.held_out_bank(env, int(cfg.eval_scenarios), 0), overrides)
    env.check_params(jax.tree_util.tree_map(lambda x: x[0], bank))
    return bank


def run(
    cfg: DictConfig,
    env: Any,
    log,
    extra: Extra | None = None,
    overrides: dict[str, float] | None = None,
) -> dict:
    """One study cell on ``env`` with params ``overrides`` (training and held-out banks):
    baselines, optimum, training (``cfg.train``, ``cfg.seeds`` seeds, ``cfg.num_chunks``
    chunks), trained seeds; JSON-able per-scenario results. Cells that differ only in
    ``overrides`` share the compiled trainer and evaluators."""
    return run_levels(cfg, env, log, [overrides], extra)[0]


def run_levels(
    cfg: DictConfig,
    env: Any,
    log,
    levels: list[dict[str, float] | None],
    extra: Extra | None = None,
) -> list[dict]:
    """``run`` for several cells of one env that differ only in params ``overrides``: their
    learners train as lanes of one vmapped program (every level x every seed), then each cell
    is evaluated on its own held-out scenarios as ``run`` does."""
    train_cfg = TrainConfig.from_dict(OmegaConf.to_container(cfg.train))
    seeds = tuple(range(int(cfg.seeds)))
    # validated by run_training (every lane's bank, with the env's own checks)
    lanes = [
        with_params(env.sample_params(banks.train_key(0), train_cfg.num_envs), overrides)
        for overrides in levels
    ]
    res = run_training(
        train_cfg,
        env,
        seeds=seeds,
        lanes=lanes if len(levels) > 1 else (),
        params=lanes[0] if len(levels) == 1 else None,
        num_chunks=int(cfg.num_chunks),
        log=lambda s: log("  " + s),
    )
    pol = ev.trained_policy(res["train"].core)
    out = []
    for lvl, overrides in enumerate(levels):
        runners = [ev.seed_slice(res["runners"], lvl * len(seeds) + i) for i in seeds]
        rows = [r for r in res["rows"] if r.get("lane", 0) == lvl]
        out.append(_evaluate(cfg, env, extra, overrides, pol, runners, rows, seeds))
        # one program trained every level: its wall time shared evenly, its rate (all lanes)
        out[-1]["train_seconds"] = res["wall_s"] / len(levels)
        out[-1]["env_steps_per_s"] = res["env_steps_per_s"]
        out[-1]["trained_together"] = len(levels)
    return out


def _evaluate(cfg, env, extra, overrides, pol, runners, rows, seeds) -> dict:
    """Baselines, optimum and the trained seeds on the cell's held-out scenarios."""
    held = held_out(env, cfg, overrides)
    ep_seed = banks.held_out_episode_seed(0)
    samples = {
        n: play(env, ev.stateless(policies.BASELINES[n]), held, ep_seed, extra=extra)
        for n in BASELINES
    }
    best = optimum(env, held, ep_seed)
    null = samples[NULL]["mean_agent_return"]
    trained = [play(env, pol, held, ep_seed, r, extra) for r in runners]
    for s in [*samples.values(), *trained, best]:
        s["gain_share"] = ev.gain_share(s["mean_agent_return"], null, best["mean_agent_return"])
    for s in [*samples.values(), *trained]:
        s["deadweight_loss"] = np.asarray(metrics.deadweight_loss(s["welfare"], best["welfare"]))
    rule = ev.stateless(policies.rule_based_battery)
    updates = sorted({r["update"] for r in rows})
    return {
        "baselines": {n: _lists(s, n != NULL) for n, s in samples.items()},
        "trained": [_lists(s, i == 0) for i, s in enumerate(trained)],
        "optimum": _lists(best, False),
        "traces": {
            "trained": trace(env, pol, held, ep_seed, runners[0]),
            "rule_based_battery": trace(env, rule, held, ep_seed),
        },
        "curves": [
            [
                next(r["episode_return"] for r in rows if r["update"] == u and r["seed"] == s)
                for u in updates
            ]
            for s in seeds
        ],
    }


def seed_means(cell: dict, keys: tuple[str, ...]) -> dict[str, float]:
    """The trained agents' mean ± s.e. over seeds of each seed's mean over the scenarios."""
    return ev.summarize({k: [float(np.mean(s[k])) for s in cell["trained"]] for k in keys})


def paired(cell: dict, key: str, baseline: str) -> tuple[float, float]:
    """Trained minus ``baseline`` on the same scenarios, pooled over seeds: mean and s.e."""
    base = np.asarray(cell["baselines"][baseline][key])
    d = np.concatenate([np.asarray(s[key]) - base for s in cell["trained"]])
    return float(d.mean()), float(d.std(ddof=1) / np.sqrt(d.size)) if d.size > 1 else 0.0


def curves(results: dict) -> dict[str, dict]:
    """``figures.seed_band_curves`` input: each cell's training curves per seed, with the
    held-out mean return of the rule-based battery and of the optimum as references."""
    return {
        cell: {
            "seeds": r["curves"],
            "refs": {
                "rule_based_battery": float(
                    np.mean(r["baselines"]["rule_based_battery"]["mean_agent_return"])
                ),
                "optimum": float(np.mean(r["optimum"]["mean_agent_return"])),
            },
        }
        for cell, r in results.items()
    }
