"""Wrappers around the jaxlem environment contract.

* ``Wrapper``: delegates to the wrapped env; hashable like it (a static argument of ``jit``).
* ``LogWrapper``: same array API as the env, adds per-agent episode returns and lengths
  (gymnax / PureJaxRL semantics) to the state and to ``info``.

Adapters to other APIs live in ``jaxlem.envs.adapters`` (JaxMARL, PettingZoo).
"""

from __future__ import annotations

from functools import partial
from typing import TYPE_CHECKING, Any, Self

import jax
import jax.numpy as jnp
import numpy as np
from flax import struct
from jaxtyping import Array, Bool, Float, Int

from jaxlem.envs.base import Action, Obs, PRNGKey, StepResult
from jaxlem.envs.spaces import Box

__all__ = ["LogEnvState", "LogWrapper", "Wrapper", "agent_box", "agent_names", "resolve_params"]


def agent_names(num_agents: int) -> list[str]:
    """Agent ids in array order: ``["agent_0", ..., "agent_{N-1}"]``."""
    return [f"agent_{i}" for i in range(num_agents)]


def resolve_params(env: Any, params: Any) -> Any:
    """``params``, or the env's defaults when None."""
    return env.default_params if params is None else params


def agent_box(space: Box, i: int) -> Box:
    """Row ``i`` of a ``Box`` with a leading agent axis, as a per-agent ``Box``."""
    shape = tuple(space.shape[1:])

    def row(bound: float | np.ndarray) -> float | np.ndarray:
        if np.ndim(bound) == 0:
            return float(bound)
        return np.broadcast_to(np.asarray(bound), tuple(space.shape))[i]

    return Box(row(space.low), row(space.high), shape, space.dtype)


class Wrapper:
    """Base wrapper: delegates unknown attributes to the wrapped env.

    Hash and equality follow the wrapped env (and the wrapper type), so a wrapper can be a static
    argument of ``jax.jit`` and two wrappers of equal envs share compiled programs. Subclasses must
    keep every number out of ``self`` (numbers belong in ``params``).
    """

    def __init__(self, env: Any) -> None:
        self._env = env

    def __getattr__(self, name: str) -> Any:
        if name == "_env":  # not set yet (copy / unpickling): avoid infinite recursion
            raise AttributeError(name)
        return getattr(self._env, name)

    def __hash__(self) -> int:
        return hash((type(self), self._env))

    def __eq__(self, other: object) -> bool:
        return type(self) is type(other) and self._env == other._env

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self._env!r})"

    @property
    def unwrapped(self) -> Any:
        """The innermost env."""
        return getattr(self._env, "unwrapped", self._env)


# --------------------------------------------------------------------------------- LogWrapper


@struct.dataclass
class LogEnvState:
    env_state: Any
    episode_returns: Float[Array, " N"]  # running sum of rewards of the current episode
    episode_lengths: Int[Array, ""]  # int32 scalar, steps taken in the current episode
    returned_episode_returns: Float[Array, " N"]  # returns of the last finished episode
    returned_episode_lengths: Int[Array, ""]  # int32 scalar, length of the last finished episode
    returned_episode: Bool[Array, ""]  # bool scalar, an episode finished on the last step

    if TYPE_CHECKING:  # added by ``struct.dataclass``; declared for type checkers

        def replace(self, **updates: Any) -> Self: ...


class LogWrapper(Wrapper):
    """Adds per-agent episode returns and lengths (gymnax / PureJaxRL ``LogWrapper`` semantics).

    Same API as the env: ``reset(key, params=None) -> (obs, LogEnvState)`` and
    ``step(key, state, action, params=None) -> (obs, LogEnvState, reward, done, info)``, both
    jitted with the wrapper static, so they can be vmapped and called inside ``lax.scan``. Every
    step adds the reward to ``episode_returns`` and one to ``episode_lengths``; on ``done`` the
    sums move to ``returned_episode_*`` (kept until the next episode ends) and restart from zero.
    ``info`` gains ``returned_episode_returns`` [N], ``returned_episode_lengths`` and
    ``returned_episode`` (= ``done``).
    """

    @partial(jax.jit, static_argnums=(0,))
    def reset(self, key: PRNGKey, params: Any = None) -> tuple[Obs, LogEnvState]:
        params = resolve_params(self, params)
        obs, env_state = self._env.reset(key, params)
        n = self.num_agents
        zero_ret = jnp.zeros((n,), jnp.float32)
        zero_len = jnp.zeros((), jnp.int32)
        state = LogEnvState(
            env_state=env_state,
            episode_returns=zero_ret,
            episode_lengths=zero_len,
            returned_episode_returns=zero_ret,
            returned_episode_lengths=zero_len,
            returned_episode=jnp.zeros((), bool),
        )
        return obs, state

    @partial(jax.jit, static_argnums=(0,))
    def step(
        self, key: PRNGKey, state: LogEnvState, action: Action, params: Any = None
    ) -> StepResult[LogEnvState]:
        params = resolve_params(self, params)
        obs, env_state, reward, done, info = self._env.step(key, state.env_state, action, params)
        done = jnp.asarray(done, bool)
        ret = state.episode_returns + reward.astype(jnp.float32)
        length = state.episode_lengths + 1
        state = LogEnvState(
            env_state=env_state,
            episode_returns=jnp.where(done, 0.0, ret),
            episode_lengths=jnp.where(done, 0, length).astype(jnp.int32),
            returned_episode_returns=jnp.where(done, ret, state.returned_episode_returns),
            returned_episode_lengths=jnp.where(done, length, state.returned_episode_lengths).astype(
                jnp.int32
            ),
            returned_episode=done,
        )
        info = dict(info)
        info["returned_episode_returns"] = state.returned_episode_returns
        info["returned_episode_lengths"] = state.returned_episode_lengths
        info["returned_episode"] = state.returned_episode
        return obs, state, reward, done, info
