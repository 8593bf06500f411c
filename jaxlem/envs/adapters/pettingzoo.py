"""``make_pettingzoo_env``: a PettingZoo ``ParallelEnv`` over a jaxlem env, driven from NumPy
for non-JAX users (RLlib, SB3). PettingZoo and gymnasium are optional; they are imported only
when the adapter is requested (``pip install jaxlem[pettingzoo]``).
"""

from __future__ import annotations

import functools
from typing import Any, cast

import jax
import jax.numpy as jnp
import numpy as np

from jaxlem.envs.spaces import Box
from jaxlem.envs.wrappers import agent_box, agent_names, resolve_params

# ``PettingZooAdapter`` is left out so that ``from ... import *`` never needs pettingzoo.
__all__ = ["make_pettingzoo_env"]

_PZ_HINT = (
    "The PettingZoo adapter needs the optional dependencies pettingzoo and gymnasium; "
    "install them with `pip install jaxlem[pettingzoo]`."
)


def _require_pettingzoo() -> tuple[Any, Any]:
    try:
        import gymnasium
        import pettingzoo
    except ImportError as err:
        raise ImportError(_PZ_HINT) from err
    return pettingzoo, gymnasium


def _gym_box(space: Box, i: int, gymnasium: Any) -> Any:
    """Per-agent gymnasium Box (float32 bounds; infinite bounds are kept, gymnasium allows them)."""
    box = agent_box(space, i)
    low = np.broadcast_to(np.asarray(box.low, np.float32), box.shape).copy()
    high = np.broadcast_to(np.asarray(box.high, np.float32), box.shape).copy()
    return gymnasium.spaces.Box(low=low, high=high, shape=box.shape, dtype=np.float32)


@functools.cache
def _pettingzoo_class() -> type:
    pettingzoo, gymnasium = _require_pettingzoo()
    parallel_env: Any = pettingzoo.ParallelEnv  # (a base class a type checker can take)

    class PettingZooAdapter(parallel_env):
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

        def __init__(self, env: Any, params: Any = None, seed: int | None = 0) -> None:
            self.env = env
            self.params = resolve_params(env, params)
            self.possible_agents = agent_names(int(env.num_agents))
            self.agents: list[str] = []
            obs_space, act_space = env.observation_space(self.params), env.action_space(self.params)
            self.observation_spaces = {
                a: _gym_box(obs_space, i, gymnasium) for i, a in enumerate(self.possible_agents)
            }
            self.action_spaces = {
                a: _gym_box(act_space, i, gymnasium) for i, a in enumerate(self.possible_agents)
            }
            self._act_shape = tuple(act_space.shape[1:])
            self._rng = np.random.default_rng(seed)
            self._key: jax.Array | None = None
            self._state: Any = None

        def observation_space(self, agent: str) -> Any:
            return self.observation_spaces[agent]

        def action_space(self, agent: str) -> Any:
            return self.action_spaces[agent]

        def reset(
            self, seed: int | None = None, options: dict[str, Any] | None = None
        ) -> tuple[dict[str, np.ndarray], dict[str, dict[str, float]]]:
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

        def step(
            self, actions: dict[str, Any]
        ) -> tuple[
            dict[str, np.ndarray],
            dict[str, float],
            dict[str, bool],
            dict[str, bool],
            dict[str, dict[str, float]],
        ]:
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
            self._key, k_step = jax.random.split(cast(jax.Array, self._key))  # set by reset
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


def make_pettingzoo_env(env: Any, params: Any = None, seed: int | None = 0) -> Any:
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
