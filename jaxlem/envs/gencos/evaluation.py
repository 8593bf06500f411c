"""How ``gencos-v0`` policies are evaluated: one episode's KPIs with the exploitability of the
joint policy (the myopic best-response gain of the best single deviator, per step), the scripted
baselines, the comparison table and the figure of one episode."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import jax
import jax.numpy as jnp

from jaxlem import metrics, viz
from jaxlem.envs.base import EvalSpec, Policy, PRNGKey
from jaxlem.envs.gencos import policies

TABLE = ("mean_agent_return", "mean_system_lmp", "price_volatility", "exploitability")
TRACES = ("p_gen", "system_lmp", "lmp")


def episode_kpis(env: Any, policy: Policy, key: PRNGKey, params: Any) -> dict[str, jax.Array]:
    """One episode with the myopic best-response gain of the best deviator at every step."""
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


def plot_episode(traces: dict[str, dict[str, Any]], path: Path, env: Any) -> None:
    viz.gencos_episode(traces, path, env.dt_h)


SPEC = EvalSpec(
    episode_kpis=episode_kpis,
    baselines=policies.BASELINES,
    table=TABLE,
    traces=TRACES,
    plot_episode=plot_episode,
)
