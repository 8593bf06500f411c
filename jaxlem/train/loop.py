"""The parts of a compiled training run that every algorithm shares.

- :func:`compile_run`: ``num_updates`` updates of every seed as one ``lax.scan``, with the
  periodic evaluation and the per-update progress callback;
- :func:`evaluate_return`: a policy's mean agent return over one episode per eval scenario;
- :func:`step_metrics` / :func:`episode_metrics`: what a rollout step reports;
- :func:`wrap`: ``train(key)`` for one seed around a compiled core, with ``train.init`` and
  ``train.run`` for chunked drivers.
"""

from __future__ import annotations

import collections
from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp

from jaxlem.rollout import rollout
from jaxlem.train import banks
from jaxlem.train.config import TrainConfig
from jaxlem.train.reporter import Reporter

# how many times each compiled core was traced (a sweep over numbers must not add any)
TRACE_COUNT: collections.Counter = collections.Counter()

SKIP_INFO = (
    "terminated",
    "truncated",
    "returned_episode",
    "returned_episode_lengths",
    "final_obs",
)


def step_metrics(info: dict) -> dict:
    """Batch means of the env's per-step scalar KPIs (info entries of shape [B])."""
    return {k: v.mean() for k, v in info.items() if k not in SKIP_INFO and v.ndim == 1}


def episode_metrics(info: dict) -> tuple[jax.Array, jax.Array]:
    """(sum of the mean agent returns of the episodes that ended, how many ended)."""
    ended = info["returned_episode"]
    total = jnp.sum(jnp.where(ended, info["returned_episode_returns"].mean(axis=1), 0.0))
    return total, jnp.sum(ended.astype(jnp.float32))


def evaluate_return(env: Any, policy: Callable, eval_bank: Any, key: jax.Array) -> jax.Array:
    """Mean agent return of ``policy(key, obs [1, N, D], params) -> action [1, N, A]`` over one
    episode per eval scenario. Scenario ``i`` plays ``rollout(env, ., split(key, M)[i], p_i)``,
    the episodes that the evaluation spec's baselines and optimum play for the same key."""
    m = jax.tree_util.tree_leaves(eval_bank)[0].shape[0]

    def episode(k, params):
        batched = jax.tree_util.tree_map(lambda x: x[None], params)

        def pol(kk, obs, e, p):
            return policy(kk, obs[None], batched)[0]

        rewards, _ = rollout(env, pol, k, params)
        return jnp.mean(jnp.sum(rewards, axis=0))

    return jnp.mean(jax.vmap(episode)(jax.random.split(key, m), eval_bank))


def compile_run(
    name: str,
    config: TrainConfig,
    update: Callable,
    evaluate: Callable,
    reporter: Reporter,
) -> Callable:
    """``run(runners, bank, eval_bank, hyper, num_updates, lanes=False)``: ``num_updates`` calls
    of ``update(runner, bank, hyper) -> (runner, metrics)`` for every lane (leading axis of
    ``runners``: seeds, or seeds x sweep levels) as one jitted scan; every ``eval_every``
    updates ``evaluate(runner, eval_bank, key)`` adds ``eval_return``; each update's metrics go
    to ``reporter``. ``lanes``: ``bank``, ``eval_bank`` and ``hyper`` carry the same leading
    axis as ``runners`` (each lane trains on its own scenarios and hyperparameters, so a sweep
    over numbers is one vmapped program); else every lane shares them."""

    def run(runners, bank, eval_bank, hyper, num_updates: int, lanes: bool = False):
        TRACE_COUNT[name] += 1
        axis = 0 if lanes else None

        def body(runners, _):
            runners, metrics = jax.vmap(update, in_axes=(0, axis, axis))(runners, bank, hyper)
            if config.eval_every and eval_bank is not None:
                due = (runners.update[0] % config.eval_every) == 0
                metrics["eval_return"] = jax.lax.cond(
                    due,
                    lambda r: jax.vmap(evaluate, in_axes=(0, axis, None))(
                        r, eval_bank, jax.random.PRNGKey(0)
                    ),
                    lambda r: jnp.full((r.update.shape[0],), jnp.nan),
                    runners,
                )
            jax.debug.callback(reporter, runners.update, metrics)
            return runners, metrics

        return jax.lax.scan(body, runners, None, num_updates)

    return jax.jit(run, static_argnums=(4, 5))


def unbatched_init(init: Callable[..., Any]) -> Callable[..., Any]:
    """``jit(init)`` over a leading axis of keys, one key after the other, returning only once
    the result is computed.

    The networks' orthogonal initialiser runs LAPACK's QR. Batched (under ``vmap``), jaxlib's
    CPU QR splits the batch over XLA's thread pool and waits for it from a pool thread; with
    two such QRs at once, or the next program dispatched while the state is computed, every
    thread of a 2-core machine waits and nothing runs again (seen with per-type parameters on
    multiactor-v0, jaxlib 0.10.2). ``lax.map`` keeps every QR unbatched and gives the same
    values as ``vmap``; waiting costs nothing, as the training scan needs the state anyway.
    With ``lanes=True`` every argument carries the keys' leading axis (a bank and hyper per
    lane)."""
    shared = jax.jit(lambda keys, *args: jax.lax.map(lambda k: init(k, *args), keys))
    per_lane = jax.jit(lambda keys, *args: jax.lax.map(lambda ka: init(*ka), (keys, *args)))

    def run(keys: jax.Array, *args: Any, lanes: bool = False) -> Any:
        return jax.block_until_ready((per_lane if lanes else shared)(keys, *args))

    return run


def wrap(core: Any, config: TrainConfig, env: Any, params=None, eval_params=None):
    """``train(key)`` for one seed around a compiled core (PPO or SAC). Default banks: the
    training bank and the evaluation bank of seed 0 (``jaxlem.train.banks``)."""
    bank = banks.scenario_bank(env, params, config.num_envs, banks.train_key(0))
    eval_bank = banks.scenario_bank(env, eval_params, config.eval_envs, banks.eval_key(0))
    banks.check_bank(env, bank, "params")
    banks.check_bank(env, eval_bank, "eval_params")
    hyper = config.hyper()

    def init(key):
        return jax.tree_util.tree_map(lambda x: x[0], core.init(key[None], bank, hyper))

    def run(runner, num_updates: int):
        batched = jax.tree_util.tree_map(lambda x: x[None], runner)
        out, metrics = core.run(batched, bank, eval_bank, hyper, num_updates)
        return (
            jax.tree_util.tree_map(lambda x: x[0], out),
            jax.tree_util.tree_map(lambda x: x[:, 0], metrics),
        )

    def train(key):
        return run(init(key), config.num_updates)

    train.init, train.run, train.core = init, run, core
    train.bank, train.eval_bank, train.hyper = bank, eval_bank, hyper
    return train
