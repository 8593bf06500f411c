"""A trained policy against the scripted baselines on held-out scenarios.

``as_policy(core, runner)`` turns one seed's trained state into a scripted-policy callable
``policy(key, obs, env, params) -> action`` (deterministic: the distribution's mean/mode), so
the trained agents and the baselines play exactly the same held-out scenarios with the same keys.
Per-scenario KPIs come back as arrays, so comparisons can be paired (trained - baseline on the
same scenario), which is what the standard errors of the differences use.
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np

from jaxlem import metrics, oracle
from jaxlem.rollout import rollout
from jaxlem.train.ppo import agent_types


def seed_slice(runners, i: int):
    return jax.tree_util.tree_map(lambda x: x[i], runners)


def as_policy(core, runner):
    """A deterministic scripted-policy callable ``policy(key, obs, env, params)`` for one seed's
    runner."""

    def policy(key, obs, env, params):
        return trained_policy(core)(key, obs, env, params, runner)

    return policy


@functools.lru_cache(maxsize=32)
def trained_policy(core):
    """``policy(key, obs, env, params, runner)``: the trained state is an argument, so one
    compiled evaluation serves every seed, checkpoint and sweep job of the same shapes."""

    def policy(key, obs, env, params, runner):
        types = agent_types(core.env, params)[None]
        batched = jax.tree_util.tree_map(lambda x: x[None], params)
        return core.policy(runner, obs[None], types, key, True, batched)[0]

    return policy


@functools.lru_cache(maxsize=64)
def stateless(policy):
    """A scripted baseline in the ``(key, obs, env, params, state)`` form (state unused)."""
    return lambda key, obs, env, params, state: policy(key, obs, env, params)


def held_out_bank(env, num: int, seed: int = 0):
    """Scenarios drawn from keys the training and evaluation banks never use."""
    return env.sample_params(jax.random.PRNGKey(10_000 + seed), num)


def _gencos_episode(env, policy, key, params):
    """One gencos-v0 episode with the myopic best-response gain of the best deviator per step."""
    from jaxlem import policies

    key, k_reset = jax.random.split(key)
    obs, state = env.reset(k_reset, params)

    def body(carry, k):
        obs, state = carry
        k_act, k_step = jax.random.split(k)
        action = policy(k_act, obs, env, params)
        _, br_profit, profit = policies.best_response(env, params, state, action)
        obs, state, reward, _, info = env.step(k_step, state, action, params)
        return (obs, state), (
            reward,
            info["system_lmp"],
            metrics.exploitability_proxy(br_profit, profit),
        )

    _, (reward, lmp, gain) = jax.lax.scan(body, (obs, state), jax.random.split(key, env.num_steps))
    return {
        "mean_agent_return": jnp.mean(jnp.sum(reward, axis=0)),
        "mean_system_lmp": jnp.mean(lmp),
        "price_volatility": metrics.volatility(lmp),
        "exploitability": jnp.mean(gain),
    }


def is_lem(env) -> bool:
    return hasattr(env.default_params, "agent_type")


@functools.lru_cache(maxsize=64)
def _kpi_fn(env, policy):
    """jit(vmap over scenarios) of one episode's KPIs; ``policy`` in the stateful form."""
    gencos = not hasattr(env.default_params, "agent_type")

    def episode(k, p, state):
        def pol(kk, obs, e, pp):
            return policy(kk, obs, e, pp, state)

        if gencos:
            return _gencos_episode(env, pol, k, p)
        rewards, infos = rollout(env, pol, k, p)
        return metrics.lem_episode_kpis(infos, rewards)

    return jax.jit(jax.vmap(episode, in_axes=(0, 0, None)))


@functools.lru_cache(maxsize=64)
def trace_fn(env, policy, keys: tuple[str, ...]):
    """jit of one episode returning the info entries ``keys`` stacked over time."""

    def episode(k, p, state):
        def pol(kk, obs, e, pp):
            return policy(kk, obs, e, pp, state)

        _, infos = rollout(env, pol, k, p)
        return {name: infos[name] for name in keys if name in infos}

    return jax.jit(episode)


def episode_kpis(env, policies: dict, bank, seed: int) -> dict[str, dict[str, np.ndarray]]:
    """Per-scenario episode KPIs [num_scenarios] of each policy (same keys for every policy).

    ``policies[name]`` is either a scripted policy or a pair ``(stateful_policy, state)``.
    """
    num = jax.tree_util.tree_leaves(bank)[0].shape[0]
    keys = jax.random.split(jax.random.PRNGKey(seed), num)
    out = {}
    for name, pol in policies.items():
        fn, state = pol if isinstance(pol, tuple) else (stateless(pol), None)
        kpis = _kpi_fn(env, fn)(keys, bank, state)
        out[name] = {k: np.asarray(v, np.float64) for k, v in kpis.items()}
    return out


@functools.lru_cache(maxsize=16)
def _optimum_fn(env):
    def episode(k, p):
        opt = oracle.perfect_foresight(env, p, k)
        return {
            "mean_agent_return": opt.mean_agent_return,
            "community_cost": opt.community_cost,
            "self_sufficiency": opt.self_sufficiency,
            "converged": opt.converged.astype(jnp.float32),
        }

    return jax.jit(jax.vmap(episode))


def optimum_kpis(env, bank, seed: int) -> dict[str, np.ndarray]:
    """Per-scenario perfect-foresight optimum (``jaxlem.oracle``) of the episodes that
    :func:`episode_kpis` plays with the same ``seed``."""
    num = jax.tree_util.tree_leaves(bank)[0].shape[0]
    keys = jax.random.split(jax.random.PRNGKey(seed), num)
    return {k: np.asarray(v, np.float64) for k, v in _optimum_fn(env)(keys, bank).items()}


def optimum_row(env, bank, seed: int, samples: dict[str, dict[str, np.ndarray]]) -> dict:
    """The ``perfect_foresight`` row of a comparison on ``bank`` (episodes of ``seed``), after
    adding ``gain_share`` to every policy's ``samples`` (DSO only is played if absent)."""
    from jaxlem import policies

    best = optimum_kpis(env, bank, seed)
    dso = samples.get("dso_only")
    if dso is None:
        dso = episode_kpis(env, {"dso_only": policies.dso_only}, bank, seed)["dso_only"]
    add_gain_share(samples, dso["mean_agent_return"], best["mean_agent_return"])
    best["gain_share"] = np.ones_like(best["mean_agent_return"])
    return summarize(best)


def add_gain_share(samples: dict[str, dict[str, np.ndarray]], dso: np.ndarray, best: np.ndarray):
    """Add ``gain_share = (R - R_dso_only) / (R* - R_dso_only)`` per episode to every policy's
    samples (seed-major pooled samples are matched to the per-scenario references by tiling)."""
    for v in samples.values():
        ret = v["mean_agent_return"]
        reps = ret.size // dso.size
        v["gain_share"] = np.asarray(
            oracle.gain_share(ret, np.tile(dso, reps), np.tile(best, reps)), np.float64
        )


def summarize(samples: dict[str, np.ndarray]) -> dict[str, float]:
    """Mean and standard error of each KPI over its samples."""
    row = {}
    for k, v in samples.items():
        v = np.asarray(v, np.float64).reshape(-1)
        row[k] = float(v.mean())
        row[k + "_se"] = float(v.std(ddof=1) / np.sqrt(v.size)) if v.size > 1 else 0.0
    return row


def compare(
    core, runners, env, baselines: dict, num_scenarios: int, seed: int = 0, initial=None
) -> dict:
    """Trained seeds and baselines on one held-out bank.

    Returns ``{"table": {policy: row}, "paired": {baseline: row}}``: rows pool seeds x scenarios;
    ``paired`` is trained - baseline per (seed, scenario) on ``mean_agent_return``. With
    ``initial`` (the runners before training) an ``untrained`` row shows what learning added.
    """
    bank = held_out_bank(env, num_scenarios, seed)
    num_seeds = jax.tree_util.tree_leaves(runners)[0].shape[0]

    def pooled_kpis(states):
        """KPI samples of every seed's policy, pooled seed-major like ``np.tile`` below."""
        policy = trained_policy(core)
        per_seed = [
            episode_kpis(env, {"p": (policy, seed_slice(states, i))}, bank, seed + 1)["p"]
            for i in range(num_seeds)
        ]
        return {k: np.concatenate([t[k] for t in per_seed]) for k in per_seed[0]}

    pooled = pooled_kpis(runners)
    # baselines do not depend on the seed: one sample per scenario, tiled in the paired rows
    samples = {} if initial is None else {"untrained": pooled_kpis(initial)}
    samples.update(episode_kpis(env, baselines, bank, seed + 1))
    best = None
    if is_lem(env):
        best = optimum_row(env, bank, seed + 1, {"trained": pooled, **samples})
    table = {"trained": summarize(pooled)}
    table.update({name: summarize(v) for name, v in samples.items()})
    if best is not None:
        table["perfect_foresight"] = best
    mine = pooled["mean_agent_return"]
    paired = {}
    for name, v in samples.items():
        ret = v["mean_agent_return"]
        row = summarize({"diff": mine - np.tile(ret, mine.size // ret.size)})
        row["z"] = row["diff"] / max(row["diff_se"], 1e-12)
        paired[name] = row
    return {"table": table, "paired": paired}
