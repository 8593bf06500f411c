"""A trained policy against the env's scripted baselines on held-out scenarios.

Everything env-specific comes from the env's evaluation spec (``env.evaluation()``: episode KPIs,
baselines, the optimum if any, the table columns, the traces). ``trained_policy(core)`` turns
one seed's trained state into a policy callable, so the trained agents and the baselines play
exactly the same held-out scenarios with the same keys. Per-scenario KPIs come back as arrays,
so comparisons can be paired (trained - baseline on the same scenario), which is what the
standard errors of the differences use.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any

import jax
import numpy as np

from jaxlem.envs.base import Policy
from jaxlem.rollout import rollout
from jaxlem.train import banks

# a policy with an explicit state argument: ``policy(key, obs, env, params, state)``
StatefulPolicy = Callable[[jax.Array, jax.Array, Any, Any, Any], jax.Array]


def seed_slice(runners: Any, i: int) -> Any:
    return jax.tree_util.tree_map(lambda x: x[i], runners)


def as_policy(core: Any, runner: Any) -> Policy:
    """A deterministic policy callable ``policy(key, obs, env, params)`` for one seed's runner."""

    def policy(key, obs, env, params):
        return trained_policy(core)(key, obs, env, params, runner)

    return policy


@functools.lru_cache(maxsize=32)
def trained_policy(core: Any) -> StatefulPolicy:
    """``policy(key, obs, env, params, runner)``: the trained state is an argument, so one
    compiled evaluation serves every seed, checkpoint and sweep job of the same shapes."""

    def policy(key, obs, env, params, runner):
        types = core.agents.types(params)[None]
        batched = jax.tree_util.tree_map(lambda x: x[None], params)
        return core.policy(runner, obs[None], types, key, True, batched)[0]

    return policy


@functools.lru_cache(maxsize=64)
def stateless(policy: Policy) -> StatefulPolicy:
    """A scripted baseline in the ``(key, obs, env, params, state)`` form (state unused)."""
    return lambda key, obs, env, params, state: policy(key, obs, env, params)


@functools.lru_cache(maxsize=64)
def _kpi_fn(env: Any, policy: StatefulPolicy):
    """jit(vmap over scenarios) of one episode's KPIs (the env's ``episode_kpis``)."""
    episode_kpis = env.evaluation().episode_kpis

    def episode(k, p, state):
        def pol(kk, obs, e, pp):
            return policy(kk, obs, e, pp, state)

        return episode_kpis(env, pol, k, p)

    return jax.jit(jax.vmap(episode, in_axes=(0, 0, None)))


@functools.lru_cache(maxsize=64)
def trace_fn(
    env: Any, policy: StatefulPolicy, keys: tuple[str, ...]
) -> Callable[[jax.Array, Any, Any], dict[str, jax.Array]]:
    """jit of one episode returning the info entries ``keys`` stacked over time."""

    def episode(k, p, state):
        def pol(kk, obs, e, pp):
            return policy(kk, obs, e, pp, state)

        _, infos = rollout(env, pol, k, p)
        return {name: infos[name] for name in keys if name in infos}

    return jax.jit(episode)


def episode_keys(bank: Any, seed: int) -> jax.Array:
    """The episode keys of a bank played with ``seed``: ``split(PRNGKey(seed), M)``."""
    num = jax.tree_util.tree_leaves(bank)[0].shape[0]
    return jax.random.split(jax.random.PRNGKey(seed), num)


def episode_kpis(env: Any, policies: dict, bank: Any, seed: int) -> dict[str, dict]:
    """Per-scenario episode KPIs [num_scenarios] of each policy (same keys for every policy).

    ``policies[name]`` is either a scripted policy or a pair ``(stateful_policy, state)``.
    """
    banks.check_bank(env, bank, "bank")
    keys = episode_keys(bank, seed)
    out = {}
    for name, pol in policies.items():
        fn, state = pol if isinstance(pol, tuple) else (stateless(pol), None)
        kpis = _kpi_fn(env, fn)(keys, bank, state)
        out[name] = {k: np.asarray(v, np.float64) for k, v in kpis.items()}
    return out


@functools.lru_cache(maxsize=16)
def _optimum_fn(env: Any):
    optimum = env.evaluation().optimum
    return jax.jit(jax.vmap(lambda k, p: optimum(env, p, k)))


def optimum_kpis(env: Any, bank: Any, seed: int) -> dict[str, np.ndarray]:
    """Per-scenario optimum of the env's evaluation spec on the episodes that
    :func:`episode_kpis` plays with the same ``seed``."""
    out = _optimum_fn(env)(episode_keys(bank, seed), bank)
    return {k: np.asarray(v, np.float64) for k, v in out.items()}


def gain_share(
    ret: np.ndarray | float, null: np.ndarray | float, best: np.ndarray | float
) -> np.ndarray:
    """``(R - R_null) / (R* - R_null)`` per episode (0 where the optimum gains nothing)."""
    span = np.asarray(best, np.float64) - np.asarray(null, np.float64)
    safe = np.where(np.abs(span) > 1e-9, span, 1.0)
    return np.where(np.abs(span) > 1e-9, (np.asarray(ret, np.float64) - null) / safe, 0.0)


def optimum_row(env: Any, bank: Any, seed: int, samples: dict[str, dict]) -> dict | None:
    """The optimum's row of a comparison on ``bank`` (episodes of ``seed``), after adding
    ``gain_share`` to every policy's ``samples`` (the null policy is played if absent). None
    when the env declares no optimum."""
    spec = env.evaluation()
    if spec.optimum is None:
        return None
    best = optimum_kpis(env, bank, seed)
    if spec.null_policy:
        null = samples.get(spec.null_policy)
        if null is None:
            null = episode_kpis(env, {"null": spec.policies[spec.null_policy]}, bank, seed)["null"]
        add_gain_share(samples, null["mean_agent_return"], best["mean_agent_return"])
        best["gain_share"] = np.ones_like(best["mean_agent_return"])
    return summarize(best)


def add_gain_share(samples: dict[str, dict], null: np.ndarray, best: np.ndarray) -> None:
    """Add ``gain_share`` per episode to every policy's samples (seed-major pooled samples are
    matched to the per-scenario references by tiling)."""
    for v in samples.values():
        ret = v["mean_agent_return"]
        reps = ret.size // null.size
        v["gain_share"] = gain_share(ret, np.tile(null, reps), np.tile(best, reps))


def summarize(samples: dict[str, np.ndarray]) -> dict[str, float]:
    """Mean and standard error of each KPI over its samples."""
    row = {}
    for k, v in samples.items():
        v = np.asarray(v, np.float64).reshape(-1)
        row[k] = float(v.mean())
        row[k + "_se"] = float(v.std(ddof=1) / np.sqrt(v.size)) if v.size > 1 else 0.0
    return row


def compare(
    core: Any,
    runners: Any,
    env: Any,
    num_scenarios: int,
    seed: int = 0,
    initial: Any = None,
    baselines: dict | None = None,
) -> dict:
    """Trained seeds and the env's baselines on the held-out bank of ``seed``.

    Returns ``{"table": {policy: row}, "paired": {baseline: row}}``: rows pool seeds x scenarios;
    ``paired`` is trained - baseline per (seed, scenario) on ``mean_agent_return``. With
    ``initial`` (the runners before training) an ``untrained`` row shows what learning added.
    """
    bank = banks.held_out_bank(env, num_scenarios, seed)
    ep_seed = banks.held_out_episode_seed(seed)
    baselines = dict(env.evaluation().baselines) if baselines is None else baselines
    num_seeds = jax.tree_util.tree_leaves(runners)[0].shape[0]

    def pooled_kpis(states):
        """KPI samples of every seed's policy, pooled seed-major like ``np.tile`` below."""
        policy = trained_policy(core)
        per_seed = [
            episode_kpis(env, {"p": (policy, seed_slice(states, i))}, bank, ep_seed)["p"]
            for i in range(num_seeds)
        ]
        return {k: np.concatenate([t[k] for t in per_seed]) for k in per_seed[0]}

    pooled = pooled_kpis(runners)
    # baselines do not depend on the seed: one sample per scenario, tiled in the paired rows
    samples = {} if initial is None else {"untrained": pooled_kpis(initial)}
    samples.update(episode_kpis(env, baselines, bank, ep_seed))
    best = optimum_row(env, bank, ep_seed, {"trained": pooled, **samples})
    table = {"trained": summarize(pooled)}
    table.update({name: summarize(v) for name, v in samples.items()})
    if best is not None:
        table[env.evaluation().optimum_name] = best
    mine = pooled["mean_agent_return"]
    rows = {name: paired(mine, v["mean_agent_return"]) for name, v in samples.items()}
    return {"table": table, "paired": rows}


def paired(mine: np.ndarray, ret: np.ndarray) -> dict:
    """``mine - ret`` per (seed, scenario) (``ret`` per scenario, tiled over seeds): mean, s.e.
    and z, which is None with fewer than 2 samples per side or no spread (no significance)."""
    mine, ret = np.asarray(mine, np.float64), np.asarray(ret, np.float64)
    row: dict[str, Any] = summarize({"diff": mine - np.tile(ret, mine.size // ret.size)})
    enough = min(mine.size, ret.size) >= 2 and row["diff_se"] > 0
    row["z"] = row["diff"] / row["diff_se"] if enough else None
    return row
