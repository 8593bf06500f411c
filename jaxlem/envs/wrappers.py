"""Wrappers and adapters around the jaxlem environment contract.

* ``LogWrapper``: same array API as the env, adds per-agent episode returns and lengths
  (gymnax / PureJaxRL semantics) to the state and to ``info``.
* ``JaxMARLAdapter``: JaxMARL's dict API (``agents``, ``reset(key)``, ``step(key, state,
  actions_dict)``, ``dones["__all__"]``, per-agent spaces).
* ``PettingZooAdapter`` / ``make_pettingzoo_env``: a PettingZoo ``ParallelEnv`` driven from NumPy
  for non-JAX users (RLlib, SB3). PettingZoo and gymnasium are optional; they are imported only
  when the adapter is requested (``pip install jaxlem[pettingzoo]``).
"""

from __future__ import annotations

import functools
from functools import partial
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from flax import struct

from jaxlem.envs.spaces import Box

# ``PettingZooAdapter`` is left out so that ``from ... import *`` never needs pettingzoo.
__all__ = [
    "JaxMARLAdapter",
    "LogEnvState",
    "LogWrapper",
    "Wrapper",
    "agent_names",
    "make_pettingzoo_env",
]

_PZ_HINT = (
    "The PettingZoo adapter needs the optional dependencies pettingzoo and gymnasium; "
    "install them with `pip install jaxlem[pettingzoo]`."
)


def agent_names(num_agents: int) -> list[str]:
    """Agent ids in array order: ``["agent_0", ..., "agent_{N-1}"]``."""
    return [f"agent_{i}" for i in range(num_agents)]


def _resolve_params(env: Any, params: Any) -> Any:
    return env.default_params if params is None else params


def _agent_box(space: Box, i: int) -> Box:
    """Row ``i`` of a ``Box`` with a leading agent axis, as a per-agent ``Box``."""
    shape = tuple(space.shape[1:])

    def row(bound):
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

    def __init__(self, env: Any):
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
    episode_returns: jax.Array  # [N] running sum of rewards of the current episode
    episode_lengths: jax.Array  # int32 scalar, steps taken in the current episode
    returned_episode_returns: jax.Array  # [N] returns of the last finished episode
    returned_episode_lengths: jax.Array  # int32 scalar, length of the last finished episode
    returned_episode: jax.Array  # bool scalar, an episode finished on the last step


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
    def reset(self, key: jax.Array, params: Any = None) -> tuple[jax.Array, LogEnvState]:
        params = _resolve_params(self, params)
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
    def step(self, key: jax.Array, state: LogEnvState, action: jax.Array, params: Any = None):
        params = _resolve_params(self, params)
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


# --------------------------------------------------------------------------------- JaxMARL


@jax.jit
def _split_rows(*arrays: jax.Array) -> tuple[list, ...]:
    return tuple(list(x) for x in arrays)


@jax.jit
def _stack_rows(rows: list) -> jax.Array:
    return jnp.stack(rows)


class JaxMARLAdapter(Wrapper):
    """JaxMARL's ``MultiAgentEnv`` dict API over a jaxlem env.

    ``agents`` is ``["agent_0", ...]`` in array order. ``reset(key) -> (obs_dict, state)`` and
    ``step(key, state, actions_dict) -> (obs_dict, state, rewards_dict, dones_dict, info)``:
    actions are stacked into ``[N, act_dim]`` in agent order, obs and rewards are split per agent,
    ``dones`` holds every agent plus ``"__all__"`` (all agents end together). The env's auto-reset
    is kept (JaxMARL semantics) and ``info`` is the env's info dict unchanged (``final_obs`` [N, .],
    ``terminated``, ``truncated``, KPIs); with JaxMARL's own ``LogWrapper`` and training scripts
    that reshape every info leaf per actor, use ``replace_info=True``.

    Params are stored on the adapter (default ``env.default_params``) but are passed to the env
    as traced arguments, never baked into ``self``; ``step``/``reset`` also take ``params=`` to
    override them (e.g. a vmapped scenario bank). Eager calls run the env's own compiled
    ``step`` (so the numbers are bitwise those of ``env.step`` and no second program is
    compiled); ``jax.jit`` / ``vmap`` / ``lax.scan`` over ``adapter.step`` trace through it.
    """

    # Identity hash/eq: ``self.params`` is read when ``params`` is not given, so two adapters of
    # equal envs but different params must never share a compiled program as a static argument.
    __hash__ = object.__hash__
    __eq__ = object.__eq__

    def __init__(self, env: Any, params: Any = None):
        super().__init__(env)
        self.params = _resolve_params(env, params)
        self.num_agents = int(env.num_agents)
        self.agents = agent_names(self.num_agents)
        self.possible_agents = list(self.agents)
        obs_space, act_space = env.observation_space(self.params), env.action_space(self.params)
        self.observation_spaces = {a: _agent_box(obs_space, i) for i, a in enumerate(self.agents)}
        self.action_spaces = {a: _agent_box(act_space, i) for i, a in enumerate(self.agents)}

    def _check_agent(self, agent: str) -> None:
        if agent not in self.observation_spaces:
            raise ValueError(f"agent: got {agent!r}; allowed: one of {self.agents}")

    def observation_space(self, agent: str) -> Box:
        self._check_agent(agent)
        return self.observation_spaces[agent]

    def action_space(self, agent: str) -> Box:
        self._check_agent(agent)
        return self.action_spaces[agent]

    def stack_actions(self, actions: dict[str, jax.Array]) -> jax.Array:
        """``{agent: [act_dim]}`` -> ``[N, act_dim]`` in agent order."""
        if set(actions) != set(self.agents):
            missing = sorted(set(self.agents) - set(actions))
            extra = sorted(set(actions) - set(self.agents))
            raise ValueError(
                f"actions: missing agents {missing}, unknown keys {extra}; allowed: exactly "
                f"the keys of `agents` ({self.num_agents} agents)"
            )
        return _stack_rows([jnp.asarray(actions[a]) for a in self.agents])

    def _per_agent(self, *arrays: jax.Array) -> tuple[dict[str, jax.Array], ...]:
        """Split each ``[N, ...]`` array into ``{agent: row}``."""
        return tuple(dict(zip(self.agents, rows, strict=True)) for rows in _split_rows(*arrays))

    def reset(self, key: jax.Array, params: Any = None) -> tuple[dict[str, jax.Array], Any]:
        params = self.params if params is None else params
        obs, state = self._env.reset(key, params)
        return self._per_agent(obs)[0], state

    def step(self, key: jax.Array, state: Any, actions: dict[str, jax.Array], params: Any = None):
        params = self.params if params is None else params
        action = self.stack_actions(actions)
        obs, state, reward, done, info = self._env.step(key, state, action, params)
        obs_d, rew_d = self._per_agent(obs, reward)
        dones = {a: done for a in self.agents}
        dones["__all__"] = done
        return obs_d, state, rew_d, dones, info


# --------------------------------------------------------------------------------- PettingZoo


def _require_pettingzoo():
    try:
        import gymnasium
        import pettingzoo
    except ImportError as err:
        raise ImportError(_PZ_HINT) from err
    return pettingzoo, gymnasium


def _gym_box(space: Box, i: int, gymnasium: Any):
    """Per-agent gymnasium Box (float32 bounds; infinite bounds are kept, gymnasium allows them)."""
    box = _agent_box(space, i)
    low = np.broadcast_to(np.asarray(box.low, np.float32), box.shape).copy()
    high = np.broadcast_to(np.asarray(box.high, np.float32), box.shape).copy()
    return gymnasium.spaces.Box(low=low, high=high, shape=box.shape, dtype=np.float32)


@functools.cache
def _pettingzoo_class() -> type:
    pettingzoo, gymnasium = _require_pettingzoo()

    class PettingZooAdapter(pettingzoo.ParallelEnv):
        """PettingZoo ``ParallelEnv`` over a jaxlem env, driven from NumPy.

        ``reset(seed=None, options=None) -> (obs, infos)``; ``step(actions) -> (obs, rewards,
        terminations, truncations, infos)`` with dicts keyed by agent: obs are float32 arrays
        ``[obs_dim]``, rewards Python floats, actions array-likes of shape ``[act_dim]`` (the env
        clips them to its space and treats NaN/inf as its safe default). All agents act every
        step and end together: on the last step obs is the env's pre-reset ``final_obs``,
        terminations/truncations come from ``info["terminated"]``/``info["truncated"]`` and
        ``agents`` becomes ``[]``; call ``reset`` for a new episode (the env's auto-reset is not
        used). ``infos[agent]`` holds the env's KPIs as floats: the agent's entry of every
        per-agent array and every community scalar.

        Randomness: a NumPy generator seeded by ``seed`` (constructor, or ``reset(seed=...)``)
        draws a JAX key at each reset; steps split that key. The env's own compiled ``reset`` and
        ``step`` are used (compiled once per env and params shapes).
        """

        metadata = {"name": "jaxlem_v0", "render_modes": []}
        render_mode = None

        def __init__(self, env: Any, params: Any = None, seed: int | None = 0):
            self.env = env
            self.params = _resolve_params(env, params)
            self.possible_agents = agent_names(int(env.num_agents))
            self.agents = []
            obs_space, act_space = env.observation_space(self.params), env.action_space(self.params)
            self.observation_spaces = {
                a: _gym_box(obs_space, i, gymnasium) for i, a in enumerate(self.possible_agents)
            }
            self.action_spaces = {
                a: _gym_box(act_space, i, gymnasium) for i, a in enumerate(self.possible_agents)
            }
            self._act_shape = tuple(act_space.shape[1:])
            self._rng = np.random.default_rng(seed)
            self._key = None
            self._state = None

        def observation_space(self, agent: str):
            return self.observation_spaces[agent]

        def action_space(self, agent: str):
            return self.action_spaces[agent]

        def reset(self, seed: int | None = None, options: dict | None = None):
            if seed is not None:
                self._rng = np.random.default_rng(seed)
            key = jax.random.PRNGKey(int(self._rng.integers(0, 2**31 - 1)))
            self._key, k_reset = jax.random.split(key)
            obs, self._state = self.env.reset(k_reset, self.params)
            obs = np.array(obs, np.float32)
            self.agents = list(self.possible_agents)
            return (
                {a: obs[i] for i, a in enumerate(self.agents)},
                {a: {} for a in self.agents},
            )

        def step(self, actions: dict[str, Any]):
            if not self.agents:
                raise RuntimeError("step: the episode is over (or never started); call reset()")
            if set(actions) != set(self.agents):
                missing = sorted(set(self.agents) - set(actions))
                extra = sorted(set(actions) - set(self.agents))
                raise ValueError(
                    f"actions: missing agents {missing}, unknown keys {extra}; allowed: one "
                    f"action per live agent"
                )
            rows = []
            for a in self.possible_agents:
                row = np.asarray(actions[a], np.float32)
                if row.shape != self._act_shape:
                    raise ValueError(
                        f"actions[{a!r}]: shape {row.shape}; allowed: {self._act_shape}"
                    )
                rows.append(row)
            self._key, k_step = jax.random.split(self._key)
            _, self._state, reward, done, info = self.env.step(
                k_step, self._state, jnp.asarray(np.stack(rows)), self.params
            )
            reward, done, info = jax.device_get((reward, done, info))
            obs = np.array(info["final_obs"], np.float32)  # pre-reset obs on the last step
            done = bool(done)
            term = bool(info.get("terminated", done))
            trunc = bool(info.get("truncated", False))
            if done and not (term or trunc):  # contract: done = terminated | truncated
                trunc = True
            agents = self.agents
            n = len(self.possible_agents)
            kpis = {
                k: np.asarray(v)
                for k, v in info.items()
                if k not in ("final_obs", "terminated", "truncated")
                and np.ndim(v) <= 1
                and np.size(v) in (1, n)
            }
            out = (
                {a: obs[i] for i, a in enumerate(agents)},
                {a: float(reward[i]) for i, a in enumerate(agents)},
                {a: term for a in agents},
                {a: trunc for a in agents},
                {
                    a: {k: float(v if v.ndim == 0 else v[i]) for k, v in kpis.items()}
                    for i, a in enumerate(agents)
                },
            )
            if done:
                self.agents = []
            return out

        def close(self) -> None:
            pass

    return PettingZooAdapter


def make_pettingzoo_env(env: Any, params: Any = None, seed: int | None = 0):
    """A PettingZoo ``ParallelEnv`` over ``env`` (see ``PettingZooAdapter``).

    Raises ImportError with an install hint when pettingzoo / gymnasium are missing.
    """
    _require_pettingzoo()
    return _pettingzoo_class()(env, params=params, seed=seed)


def __getattr__(name: str) -> Any:
    # PEP 562: ``PettingZooAdapter`` is built on first access, so importing this module never
    # needs pettingzoo.
    if name == "PettingZooAdapter":
        _require_pettingzoo()
        return _pettingzoo_class()
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
