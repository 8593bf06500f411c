"""The environment contract shared by every jaxlem env.

Static configuration lives on the (frozen, hashable) env object; every number lives in a params
pytree. ``step`` auto-resets at episode end and reports ``terminated``, ``truncated`` and the
pre-reset ``final_obs`` in ``info``. Agents are a leading array axis: obs [N, obs_dim],
action [N, act_dim], reward [N], done a scalar.
"""

from __future__ import annotations

from functools import partial
from typing import Any

import jax
import jax.numpy as jnp

from jaxlem.envs.spaces import Box


class Environment:
    """Base class: subclasses implement ``reset_env``, ``step_env`` and ``default_params``."""

    num_agents: int
    # the scripted baseline (``jaxlem.policies``) a residual learner starts from ("" = none)
    reference_policy: str = ""

    @property
    def name(self) -> str:
        return type(self).__name__

    @property
    def default_params(self) -> Any:
        raise NotImplementedError

    def sample_params(self, key: jax.Array, num: int) -> Any:
        """A bank of ``num`` scenarios on a leading axis (default: copies of the default)."""
        params = self.default_params
        return jax.tree_util.tree_map(lambda x: jnp.broadcast_to(x, (num, *jnp.shape(x))), params)

    def reset_env(self, key: jax.Array, params: Any) -> tuple[jax.Array, Any]:
        raise NotImplementedError

    def step_env(self, key: jax.Array, state: Any, action: jax.Array, params: Any):
        raise NotImplementedError

    @partial(jax.jit, static_argnums=(0,))
    def reset(self, key: jax.Array, params: Any = None) -> tuple[jax.Array, Any]:
        params = self.default_params if params is None else params
        return self.reset_env(key, params)

    @partial(jax.jit, static_argnums=(0,))
    def step(self, key: jax.Array, state: Any, action: jax.Array, params: Any = None):
        """One step with auto-reset: returns (obs, state, reward, done, info)."""
        params = self.default_params if params is None else params
        key_step, key_reset = jax.random.split(key)
        obs_st, state_st, reward, done, info = self.step_env(key_step, state, action, params)
        obs_re, state_re = self.reset_env(key_reset, params)
        state = jax.tree_util.tree_map(lambda r, s: jnp.where(done, r, s), state_re, state_st)
        obs = jnp.where(done, obs_re, obs_st)
        info = dict(info)
        info["final_obs"] = obs_st
        return obs, state, reward, done, info

    def observation_space(self, params: Any = None) -> Box:
        raise NotImplementedError

    def action_mask(self, params: Any = None) -> jax.Array:
        """[N, act_dim] bool: which action columns can change anything for each agent (a
        battery set-point without a battery cannot). Learners leave the others out of their
        log-probabilities and entropy, so irrelevant noise does not drown the signal of the
        columns that matter. Default: every column of every agent."""
        return jnp.ones(self.action_space(params).shape, bool)

    def action_space(self, params: Any = None) -> Box:
        raise NotImplementedError
