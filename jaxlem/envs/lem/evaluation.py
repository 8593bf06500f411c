"""How ``lem-v0`` policies are evaluated: one episode's KPIs, the scripted baselines, the
perfect-foresight optimum, the comparison table and the figure of one episode."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import jax
import jax.numpy as jnp

from jaxlem import metrics, viz
from jaxlem.envs.base import EvalSpec, Policy, PRNGKey
from jaxlem.envs.lem import oracle, policies
from jaxlem.envs.lem.types import LEMParams
from jaxlem.rollout import rollout

TABLE = ("mean_agent_return", "gain_share", "community_cost", "p2p_share", "self_sufficiency")
TRACES = ("fit", "utility", "clearing_price", "p2p_volume_kwh", "soc")


def episode_kpis(env: Any, policy: Policy, key: PRNGKey, params: LEMParams) -> dict[str, jax.Array]:
    """KPIs of the episode ``rollout(env, policy, key, params)`` (``metrics.lem_episode_kpis``)."""
    rewards, infos = rollout(env, policy, key, params)
    return metrics.lem_episode_kpis(infos, rewards)


def optimum(env: Any, params: LEMParams, key: PRNGKey) -> dict[str, jax.Array]:
    """The perfect-foresight optimum of the same episode (``oracle.perfect_foresight``)."""
    opt = oracle.perfect_foresight(env, params, key)
    return {
        "mean_agent_return": opt.mean_agent_return,
        "community_cost": opt.community_cost,
        "self_sufficiency": opt.self_sufficiency,
        "converged": opt.converged.astype(jnp.float32),
    }


def plot_episode(traces: dict[str, dict[str, Any]], path: Path, env: Any) -> None:
    viz.lem_episode(traces, path, env.dt_h)


SPEC = EvalSpec(
    episode_kpis=episode_kpis,
    baselines={
        k: policies.BASELINES[k] for k in ("zero_intelligence", "rule_based_battery", "dso_only")
    },
    table=TABLE,
    traces=TRACES,
    plot_episode=plot_episode,
    optimum=optimum,
    null_policy="dso_only",
    optimum_name="perfect_foresight",
    extra_policies={k: policies.BASELINES[k] for k in ("random", "zi_constrained")},
)
