"""``JaxMARLAdapter``: a whole JaxMARL ``MultiAgentEnv`` over a jaxlem env.

Dict API, JaxMARL spaces when jaxmarl is installed, ``agent_classes``, ``get_obs``,
``get_avail_actions``, per-agent ``info`` that JaxMARL's ``LogWrapper`` and IPPO accept, and
episodes drawn from a scenario bank. Import jaxlem before jaxmarl (XLA flags; see the class).
"""

from __future__ import annotations

import importlib.util
import warnings
from typing import TYPE_CHECKING, Any, Self, cast

import jax
import jax.numpy as jnp
import numpy as np
from flax import struct

from jaxlem.envs.spaces import Box
from jaxlem.envs.wrappers import Wrapper, agent_box, agent_names, resolve_params

__all__ = ["JaxMARLAdapter", "JaxMARLState"]


_INFO_MODES = ("agent", "full")
_SPACE_MODES = ("auto", "jaxmarl", "jaxlem")


@struct.dataclass
class JaxMARLState:
    """State of ``JaxMARLAdapter``: the env's state plus what JaxMARL's API reads from it."""

    env_state: Any  # the wrapped env's own state
    obs: jax.Array  # [N, obs_dim] the last observation (``get_obs``)
    params: Any  # params of the scenario this episode is played in (``step``, action masks)
    scenario: jax.Array  # int32 index of that scenario in the bank; -1 when not from the bank

    if TYPE_CHECKING:  # added by ``struct.dataclass``; declared for type checkers

        def replace(self, **updates: Any) -> Self: ...


@jax.jit
def _split_rows(*arrays: jax.Array) -> tuple[list, ...]:
    return tuple(list(x) for x in arrays)


@jax.jit
def _stack_rows(rows: list) -> jax.Array:
    return jnp.stack(rows)


@jax.jit
def _draw_scenario(key: jax.Array, bank: Any) -> tuple[jax.Array, Any]:
    """One scenario index drawn uniformly from ``bank`` (leading axis) and its params."""
    num = jax.tree_util.tree_leaves(bank)[0].shape[0]
    idx = jax.random.randint(key, (), 0, num, jnp.int32)
    return idx, jax.tree_util.tree_map(lambda x: x[idx], bank)


@jax.jit
def _select_tree(pred: jax.Array, on_true: Any, on_false: Any) -> Any:
    return jax.tree_util.tree_map(lambda a, b: jnp.where(pred, a, b), on_true, on_false)


def _bank_size(bank: Any, params: Any) -> int:
    """Validate a scenario bank against the env's params; return its number of scenarios."""
    leaves, treedef = jax.tree_util.tree_flatten(bank)
    ref_leaves, ref_treedef = jax.tree_util.tree_flatten(params)
    # (jaxlib ships no stub of PyTreeDef, so a type checker cannot resolve its ``!=``)
    if treedef != ref_treedef:  # type: ignore[operator]
        raise ValueError(
            "bank: its pytree structure differs from env.default_params; allowed: a bank from "
            "env.sample_params(key, num) (the env's params with a leading scenario axis)"
        )
    sizes = {np.shape(x)[0] if np.ndim(x) > 0 else None for x in leaves}
    shapes_ok = all(
        np.ndim(x) == np.ndim(r) + 1 and tuple(np.shape(x)[1:]) == tuple(np.shape(r))
        for x, r in zip(leaves, ref_leaves, strict=True)
    )
    if len(sizes) != 1 or None in sizes or not shapes_ok or 0 in sizes:
        raise ValueError(
            f"bank: leading sizes {sorted(sizes, key=str)}; allowed: every leaf of the env's "
            "params with one extra leading axis of the same size >= 1 (env.sample_params)"
        )
    return int(cast(int, sizes.pop()))  # one size, not None (checked above)


def _space_class(mode: str) -> type:
    """The per-agent ``Box`` class: JaxMARL's own when wanted and importable, else jaxlem's."""
    if mode not in _SPACE_MODES:
        raise ValueError(f"spaces: got {mode!r}; allowed: one of {_SPACE_MODES}")
    if mode == "jaxlem" or (mode == "auto" and importlib.util.find_spec("jaxmarl") is None):
        return Box
    try:
        from jaxmarl.environments.spaces import Box as JaxMARLBox
    except Exception as err:  # not installed, or installed but broken against this jax
        if mode == "jaxmarl":
            raise ImportError(
                f"spaces='jaxmarl' needs an importable jaxmarl (pip install jaxmarl): {err!r}"
            ) from err
        warnings.warn(
            f"jaxmarl is installed but does not import ({err!r}); JaxMARLAdapter falls back to "
            "jaxlem's Box spaces, which JaxMARL's get_space_dim rejects",
            stacklevel=3,
        )
        return Box
    return JaxMARLBox


class JaxMARLAdapter(Wrapper):
    """A JaxMARL ``MultiAgentEnv`` over a jaxlem env (JaxMARL's dict API and conventions).

    ``JaxMARLAdapter(env, params=None, bank=None, *, info="agent", spaces="auto")``.

    API (what JaxMARL's baselines and wrappers use): ``agents`` (``["agent_0", ...]`` in array
    order), ``num_agents``, ``agent_classes``, ``observation_space(agent)``/``action_space(agent)``
    (and the ``observation_spaces``/``action_spaces`` dicts), ``reset(key) -> (obs, state)``,
    ``step(key, state, actions, reset_state=None) -> (obs, state, rewards, dones, info)``,
    ``get_obs(state)`` and ``get_avail_actions(state)``; obs, actions and rewards are dicts keyed
    by agent, ``dones`` holds every agent plus ``"__all__"`` (all agents end together). All of
    it works under ``jax.jit``, ``jax.vmap`` and ``lax.scan``; the adapter hashes by identity, so
    it can be a static argument (JaxMARL jits ``reset``/``step`` with ``self`` static).

    * Spaces: JaxMARL's own ``jaxmarl.environments.spaces.Box`` when jaxmarl is importable
      (``spaces="auto"``, the default; ``"jaxmarl"`` requires it), so ``get_space_dim`` and
      JaxMARL's rollout managers accept them; otherwise (or ``spaces="jaxlem"``)
      ``jaxlem.envs.spaces.Box`` with the same attributes (``low``, ``high``, ``shape``,
      ``dtype``, ``sample``, ``contains``) but not JaxMARL's class. Observation boxes are
      unbounded (``-inf``/``inf``): do not ``sample`` them.
    * ``agent_classes``: ``{class: [agents]}`` from ``env.agent_types(params)`` (names from
      ``env.agent_type_names`` when the env has them, else ``"type_k"``); one class
      ``"agents"`` when every agent has the same type, when the env has no ``agent_types``, or
      when the types differ between the bank's scenarios (no static grouping exists then).
    * ``info`` (``info="agent"``, the default): every leaf is per-agent, shape ``[num_agents]``,
      which is what JaxMARL's ``LogWrapper`` (default ``replace_info=False``) and its IPPO
      scripts (``info`` reshaped to ``[NUM_ACTORS]``) need: scalars (``terminated``,
      ``truncated``, community KPIs) are broadcast to ``[N]``, ``[N]`` leaves kept (a leaf is
      taken as per-agent when its shape is ``[N]``, e.g. gencos bus LMPs on case5's 5 buses),
      everything else (``final_obs`` ``[N, D]``, ``[N, K]`` and ``[M]`` KPIs) left out.
      ``info="full"`` returns the env's info dict unchanged (``final_obs`` included, for
      bootstrapping truncated episodes). Either way ``info["truncated"]`` (gencos-v0: the
      horizon) is distinct from ``info["terminated"]`` (lem-v0: the day ends), while
      ``dones`` is their union, as in JaxMARL; with a bank ``info["scenario"]`` is the index of
      the scenario the step was played in.
    * Scenarios: with ``bank`` (``env.sample_params(key, num)``), every ``reset(key)`` draws
      one scenario uniformly from the bank and the state carries its params, which ``step``
      and ``get_avail_actions`` use; the auto-reset at an episode's end draws a new one (the
      bank is a constant of the traced program). Without a bank every episode is played in
      ``params`` (default ``env.default_params``). ``reset(key, params=...)`` plays one given
      scenario instead (e.g. ``vmap`` over a bank in order); ``step(..., params=...)``
      overrides the state's scenario for that step.
    * ``step`` auto-resets like JaxMARL's ``MultiAgentEnv.step``: obs and state are those of the
      next episode after ``dones["__all__"]``; ``reset_state`` (an adapter state) replaces the
      fresh reset. Without a bank and ``reset_state``, eager calls run the env's own compiled
      ``step`` on ``state.env_state`` (bitwise ``env.step``); the env's state is
      ``state.env_state``.

    Import order: ``import jaxlem`` adds ``--xla_cpu_enable_concurrency_optimized_scheduler=
    false`` to ``XLA_FLAGS`` (a deadlock workaround for XLA's CPU scheduler). XLA reads
    ``XLA_FLAGS`` once, when JAX starts its backend at the first computation: importing jax
    first is harmless, but importing jaxmarl first is not (it computes arrays at import), nor
    is any JAX computation before ``import jaxlem``; the flag is then silently ignored. Import
    jaxlem before jaxmarl and before running any JAX computation, or set the flag in
    ``XLA_FLAGS`` yourself before starting Python. This adapter imports jaxmarl (for its
    spaces) only when constructed, i.e. after jaxlem.
    """

    # Identity hash/eq: ``self.params`` / ``self.bank`` are read inside traced code, so two
    # adapters of equal envs but different params must never share a compiled program.
    __hash__ = object.__hash__
    __eq__ = object.__eq__

    def __init__(
        self,
        env: Any,
        params: Any = None,
        bank: Any = None,
        *,
        info: str = "agent",
        spaces: str = "auto",
    ) -> None:
        super().__init__(env)
        if info not in _INFO_MODES:
            raise ValueError(f"info: got {info!r}; allowed: one of {_INFO_MODES}")
        if params is not None and bank is not None:
            raise ValueError(
                "params, bank: got both; allowed: one of them (a fixed scenario, or a bank to "
                "draw each episode's scenario from)"
            )
        self.params = resolve_params(env, params)
        self.bank = bank
        self.num_scenarios = None if bank is None else _bank_size(bank, self.params)
        self.info_mode = info
        self.num_agents = int(env.num_agents)
        self.agents = agent_names(self.num_agents)
        self.possible_agents = list(self.agents)
        box = _space_class(spaces)
        ref = self.params if bank is None else jax.tree_util.tree_map(lambda x: x[0], bank)
        obs_space, act_space = env.observation_space(ref), env.action_space(ref)

        def per_agent(space: Box, i: int) -> Any:
            b = agent_box(space, i)
            return box(b.low, b.high, b.shape, b.dtype)

        self.observation_spaces = {a: per_agent(obs_space, i) for i, a in enumerate(self.agents)}
        self.action_spaces = {a: per_agent(act_space, i) for i, a in enumerate(self.agents)}
        self._agent_classes = self._classes()

    # ------------------------------------------------------------------ metadata

    def _classes(self) -> dict[str, list[str]]:
        one = {"agents": list(self.agents)}
        agent_types = self._env.agent_types
        if self.bank is None:
            types = np.asarray(agent_types(self.params)).reshape(1, -1)
        else:
            num = cast(int, self.num_scenarios)  # set with the bank
            types = np.asarray(jax.vmap(agent_types)(self.bank)).reshape(num, -1)
        if types.shape[1] != self.num_agents or np.any(types != types[:1]):
            return one  # types differ between scenarios: no static grouping
        types = types[0]
        kinds = sorted({int(t) for t in types})
        if len(kinds) == 1:
            return one
        names = tuple(self._env.agent_type_names)
        return {
            (names[k] if k < len(names) else f"type_{k}"): [
                a for a, t in zip(self.agents, types, strict=True) if int(t) == k
            ]
            for k in kinds
        }

    @property
    def agent_classes(self) -> dict[str, list[str]]:
        """``{class name: [agent names]}`` (JaxMARL's grouping of agents by role)."""
        return {k: list(v) for k, v in self._agent_classes.items()}

    def _check_agent(self, agent: str) -> None:
        if agent not in self.observation_spaces:
            raise ValueError(f"agent: got {agent!r}; allowed: one of {self.agents}")

    def observation_space(self, agent: str) -> Any:
        self._check_agent(agent)
        return self.observation_spaces[agent]

    def action_space(self, agent: str) -> Any:
        self._check_agent(agent)
        return self.action_spaces[agent]

    # ------------------------------------------------------------------ dict <-> array

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

    def _agent_leaves(self, info: dict[str, Any]) -> dict[str, Any]:
        """Scalars broadcast to ``[N]``, ``[N]`` leaves kept, the rest left out."""
        n = self.num_agents
        out: dict[str, Any] = {}
        for k, v in info.items():
            if isinstance(v, dict):
                sub = self._agent_leaves(v)
                if sub:
                    out[k] = sub
                continue
            v = jnp.asarray(v)
            if v.ndim == 0:
                out[k] = jnp.broadcast_to(v, (n,))
            elif v.shape == (n,):
                out[k] = v
        return out

    def _info(self, info: dict[str, Any], done: jax.Array, scenario: jax.Array) -> dict[str, Any]:
        info = dict(info)
        trunc = jnp.asarray(info.get("truncated", jnp.zeros((), bool)), bool)
        info["truncated"] = trunc
        info["terminated"] = jnp.asarray(info.get("terminated", done & ~trunc), bool)
        if self.bank is not None:
            info["scenario"] = scenario
        return self._agent_leaves(info) if self.info_mode == "agent" else info

    # ------------------------------------------------------------------ JaxMARL API

    def reset(
        self, key: jax.Array, params: Any = None
    ) -> tuple[dict[str, jax.Array], JaxMARLState]:
        """``reset(key) -> (obs_dict, JaxMARLState)``; with a bank the scenario is drawn from
        it, ``params=`` plays the given scenario instead (``state.scenario == -1``)."""
        scenario = jnp.full((), -1, jnp.int32)
        if params is None and self.bank is not None:
            k_draw, key = jax.random.split(key)
            scenario, params = _draw_scenario(k_draw, self.bank)
        elif params is None:
            params = self.params
        obs, env_state = self._env.reset(key, params)
        state = JaxMARLState(env_state=env_state, obs=obs, params=params, scenario=scenario)
        return self.get_obs(state), state

    def step(
        self,
        key: jax.Array,
        state: JaxMARLState,
        actions: dict[str, jax.Array],
        reset_state: JaxMARLState | None = None,
        *,
        params: Any = None,
    ) -> tuple[
        dict[str, jax.Array],
        JaxMARLState,
        dict[str, jax.Array],
        dict[str, jax.Array],
        dict[str, Any],
    ]:
        """``step(key, state, actions, reset_state=None) -> (obs, state, rewards, dones,
        info)`` with auto-reset (see the class docstring)."""
        if params is not None:
            state = state.replace(params=params)
        action = self.stack_actions(actions)
        redraw = reset_state is None and self.bank is not None
        k_env = key
        if redraw:
            k_env, k_reset = jax.random.split(key)
        obs, env_state, reward, done, info = self._env.step(
            k_env, state.env_state, action, state.params
        )
        done = jnp.asarray(done, bool)
        new_state = JaxMARLState(
            env_state=env_state, obs=obs, params=state.params, scenario=state.scenario
        )
        if redraw:
            _, reset_state = self.reset(k_reset)
        if reset_state is not None:
            new_state = _select_tree(done, reset_state, new_state)
        obs_d, rew_d = self._per_agent(new_state.obs, reward)
        dones = dict.fromkeys(self.agents, done)
        dones["__all__"] = done
        return obs_d, new_state, rew_d, dones, self._info(info, done, state.scenario)

    def get_obs(self, state: JaxMARLState) -> dict[str, jax.Array]:
        """``{agent: [obs_dim]}``: the observation the state was reached with."""
        return self._per_agent(state.obs)[0]

    def get_avail_actions(self, state: JaxMARLState) -> dict[str, jax.Array]:
        """``{agent: [act_dim] bool}`` from ``env.action_mask_at`` in the state and its
        scenario: which action columns can change anything for the agent's next action
        (continuous actions: a column that is False is ignored by the env, e.g. a battery
        set-point without a battery, or a daily decision between day starts)."""
        mask = jnp.asarray(self._env.action_mask_at(state.env_state, state.params), bool)
        return self._per_agent(mask)[0]
