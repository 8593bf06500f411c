"""Episodes under ``lax.scan``: one jitted function for a policy, vmappable over scenarios."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import jax
from jaxtyping import Array, Float

from jaxlem.checks import is_concrete


def rollout(
    env: Any,
    policy: Callable[[jax.Array, jax.Array, Any, Any], jax.Array],
    key: jax.Array,
    params: Any,
    num_steps: int | None = None,
) -> tuple[Float[Array, "T N"], dict[str, Array]]:
    """Run ``num_steps`` (default one episode) from a fresh reset with ``policy``.

    ``env`` follows the env contract (``jaxlem.envs.base.Environment``) and ``policy`` is a
    ``jaxlem.envs.base.Policy``, ``policy(key, obs [N, obs_dim], env, params) -> action``.
    Returns ``(rewards [T, N], infos)`` with every info entry stacked on a leading time axis.
    Concrete params are validated first (``env.check_params``); traced ones were validated
    where they entered.
    """
    if is_concrete(params):
        env.check_params(params)
    steps = env.num_steps if num_steps is None else num_steps
    key, k_reset = jax.random.split(key)
    obs, state = env.reset(k_reset, params)

    def body(carry, k):
        obs, state = carry
        k_act, k_step = jax.random.split(k)
        action = policy(k_act, obs, env, params)
        obs, state, reward, _, info = env.step(k_step, state, action, params)
        info = {k: v for k, v in info.items() if k != "final_obs"}
        return (obs, state), (reward, info)

    _, (rewards, infos) = jax.lax.scan(body, (obs, state), jax.random.split(key, steps))
    return rewards, infos
