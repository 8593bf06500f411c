"""How ``multiactor-v0`` policies are evaluated: one episode's KPIs at every level of the
market (prices, markups, renewable share and quota, investment, concentration, surplus,
welfare, the regulator's budget, disconnections), returns per kind, the scripted baselines,
the comparison table and the figure of one episode."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import jax
import jax.numpy as jnp

from jaxlem import viz
from jaxlem.envs.base import EvalSpec, Policy, PRNGKey
from jaxlem.envs.multiactor import policies
from jaxlem.envs.multiactor.types import KINDS
from jaxlem.rollout import rollout

TABLE = (
    "mean_agent_return",
    "welfare",
    "consumer_surplus",
    "wholesale_price",
    "retail_price",
    "mean_markup",
    "renewable_share",
    "hhi_producers",
)
TRACES = ("wholesale_price", "local_price", "retail_price", "renewable_share", "capacity_kw")


def episode_kpis(env: Any, policy: Policy, key: PRNGKey, params: Any) -> dict[str, jax.Array]:
    """One episode from a fresh reset: returns per kind (unscaled: currency) and the market's
    KPIs (prices currency/MWh, energy kWh, money currency; HHI on 0..10,000)."""
    rewards, info = rollout(env, policy, key, params)
    kinds = jnp.asarray(env.kind_of_row)
    total = jnp.sum(rewards, axis=0) / params.reward_scale[kinds]
    out = {"mean_agent_return": jnp.mean(jnp.sum(rewards, axis=0))}
    for k, name in enumerate(KINDS):
        out[f"return_{name}"] = jnp.sum(jnp.where(kinds == k, total, 0.0)) / max(env.counts[k], 1)
    retail_kwh = jnp.maximum(jnp.sum(info["retail_kwh"]), 1e-9)
    produced = jnp.maximum(jnp.sum(info["produced_kwh"]), 1e-9)
    consumed = jnp.maximum(jnp.sum(info["consumed_kwh"]), 1e-9)
    out.update(
        wholesale_price=jnp.mean(info["wholesale_price"]),
        local_price=jnp.mean(info["local_price"]),
        retail_price=jnp.sum(info["retail_price"] * info["retail_kwh"]) / retail_kwh,
        mean_markup=jnp.sum(info["mean_markup"] * info["retail_kwh"]) / retail_kwh,
        renewable_share=jnp.sum(info["renewable_share"] * info["produced_kwh"]) / produced,
        quota_shortfall_kwh=jnp.sum(info["quota_shortfall_kwh"]),
        invest_kw=jnp.sum(info["invest_kw"]),
        hhi_producers=jnp.mean(info["hhi_producers"]),
        hhi_utilities=jnp.mean(info["hhi_utilities"]),
        consumer_surplus=jnp.sum(info["consumer_surplus"]),
        welfare=jnp.sum(info["welfare"]),
        regulator_budget=info["regulator_budget"][-1],
        disconnected=jnp.mean(info["disconnected"]),
        import_share=jnp.sum(info["imports_kwh"]) / consumed,
        local_share=jnp.sum(info["local_kwh"]) / consumed,
        bailout=jnp.sum(info["bailout"]),
    )
    return out


def plot_episode(traces: dict[str, dict[str, Any]], path: Path, env: Any) -> None:
    viz.multiactor_episode(traces, path, env.dt_h)


SPEC = EvalSpec(
    episode_kpis=episode_kpis,
    baselines=policies.BASELINES,
    table=TABLE,
    traces=TRACES,
    plot_episode=plot_episode,
)
