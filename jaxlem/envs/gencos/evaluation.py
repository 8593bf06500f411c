"""How ``gencos-v0`` policies are evaluated: one episode's KPIs with the exploitability of the
joint policy (the myopic best-response gain of the best single deviator, per step), the scripted
baselines, the comparison table and the figure of one episode."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import jax
import jax.numpy as jnp

from jaxlem import metrics, viz
from jaxlem.envs.base import EvalSpec, Policy, PRNGKey
from jaxlem.envs.gencos import policies

TABLE = ("mean_agent_return", "mean_system_lmp", "price_volatility", "exploitability")
TRACES = ("p_gen", "system_lmp", "lmp")


INFO_KEYS = ("p_gen", "lmp", "system_lmp", "welfare", "profit", "markup", "ramp_binding",
             "shed_mw", "load_mw")  # fmt: skip


def play_episode(
    env: Any, act: Callable, key: PRNGKey, params: Any, with_br: bool = True
) -> dict[str, Any]:
    """One episode of ``act(key, obs, state, last_action) -> action`` (the last action starts
    truthful; a myopic best responder uses it): rewards [T, G], the infos of ``INFO_KEYS``
    [T, ...] and, with ``with_br``, the best single deviator's myopic gain at every step [T]
    ($ per step; zeros without)."""
    key, k_reset = jax.random.split(key)
    obs, state = env.reset(k_reset, params)

    def body(carry, k):
        obs, state, last = carry
        k_act, k_step = jax.random.split(k)
        action = act(k_act, obs, state, last)
        gain = jnp.zeros(())
        if with_br:
            _, br_profit, profit = policies.best_response(env, params, state, action)
            gain = metrics.exploitability_proxy(br_profit, profit)
        obs, state, reward, _, info = env.step(k_step, state, action, params)
        return (obs, state, action), (reward, {k: info[k] for k in INFO_KEYS}, gain)

    first = policies.markup_action(env, 0.0)
    keys = jax.random.split(key, env.num_steps)
    _, (reward, info, gain) = jax.lax.scan(body, (obs, state, first), keys)
    return {"reward": reward, "info": info, "gain": gain}


def episode_kpis(env: Any, policy: Policy, key: PRNGKey, params: Any) -> dict[str, jax.Array]:
    """One episode with the myopic best-response gain of the best deviator at every step."""
    ep = play_episode(env, lambda k, obs, st, last: policy(k, obs, env, params), key, params)
    lmp = ep["info"]["system_lmp"]
    return {
        "mean_agent_return": jnp.mean(jnp.sum(ep["reward"], axis=0)),
        "mean_system_lmp": jnp.mean(lmp),
        "price_volatility": metrics.volatility(lmp),
        "exploitability": jnp.mean(ep["gain"]),
    }


def plot_episode(traces: dict[str, dict[str, Any]], path: Path, env: Any) -> None:
    viz.gencos_episode(traces, path, env.dt_h)


SPEC = EvalSpec(
    episode_kpis=episode_kpis,
    baselines=policies.BASELINES,
    table=TABLE,
    traces=TRACES,
    plot_episode=plot_episode,
)
