"""The environment contract shared by every jaxlem env.

Static configuration lives on the (frozen, hashable) env object; every number lives in a params
pytree. ``step`` auto-resets at episode end and reports ``terminated``, ``truncated`` and the
pre-reset ``final_obs`` in ``info``. Agents are a leading array axis: obs [N, obs_dim],
action [N, act_dim], reward [N], done a scalar.

Beyond stepping, an env declares what a generic trainer and report need, so that neither ever
asks which env it has: its agents' types (:attr:`Environment.num_agent_types`,
:meth:`Environment.agent_types`), its action layout (:class:`ActionLayout`: continuous columns
first, then categorical heads), the names of its observation and action columns
(:class:`Column`), and its evaluation (:class:`EvalSpec`: episode KPIs, scripted baselines, the
comparison table, traces and the figure of one episode, an optional optimum).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from functools import partial
from typing import TYPE_CHECKING, Any, Generic, TypeAlias, TypeVar

import jax
import jax.numpy as jnp
from jaxtyping import Array, Bool, Float, Int

from jaxlem.envs.spaces import Box

TState = TypeVar("TState")
TParams = TypeVar("TParams")

# The arrays of the contract, for annotations (shapes for readers and type checkers; nothing
# checks them at run time). N agents on the leading axis; keys are ``jax.random`` keys.
PRNGKey: TypeAlias = jax.Array
Obs: TypeAlias = Float[Array, "N obs_dim"]
Action: TypeAlias = Float[Array, "N act_dim"]
Reward: TypeAlias = Float[Array, " N"]
Done: TypeAlias = Bool[Array, ""]
Info: TypeAlias = dict[str, Any]
# what ``step`` and ``step_env`` return: (obs, state, reward, done, info)
StepResult: TypeAlias = tuple[Obs, TState, Reward, Done, Info]

# ``policy(key, obs [N, D], env, params) -> action [N, act_dim]``
Policy: TypeAlias = Callable[[PRNGKey, Obs, Any, Any], Action]


@dataclass(frozen=True)
class Column:
    """One column of an observation or action row: a short name and what it holds (units)."""

    name: str
    doc: str


@dataclass(frozen=True)
class ActionLayout:
    """How an action row ``[act_dim]`` is laid out, for the learners' heads.

    The first ``continuous`` columns are continuous in ``[low, high]``; each of the following
    columns is a categorical choice with ``categorical[i]`` options, encoded as the option index
    minus one (so ``-1`` is the first option, e.g. "no partner")."""

    continuous: int
    low: float = -1.0
    high: float = 1.0
    categorical: tuple[int, ...] = ()

    @property
    def act_dim(self) -> int:
        return self.continuous + len(self.categorical)


@dataclass(frozen=True)
class EvalSpec:
    """What a trained policy is compared on, declared by the env.

    - ``episode_kpis(env, policy, key, params) -> {kpi: scalar}``: one episode from a fresh
      reset (``policy`` as in :data:`Policy`); must contain ``mean_agent_return``.
    - ``baselines``: the scripted policies a trained policy is compared with.
    - ``table``: the KPI columns of the printed comparison table.
    - ``traces``: ``info`` entries traced over one episode for ``plot_episode(traces, path,
      env)``, which draws the figure of one episode (one trace dict per policy).
    - ``optimum(env, params, key) -> {kpi: scalar}``: an upper reference on the same episode
      (e.g. perfect foresight), or None. With an optimum and a ``null_policy`` (a baseline name),
      every row gets ``gain_share = (R - R_null) / (R* - R_null)``; ``optimum_name`` names the
      optimum's row in tables.
    - ``extra_policies``: further scripted policies (residual starting points, diagnostics).
    """

    episode_kpis: Callable[..., dict[str, Any]]
    baselines: Mapping[str, Policy]
    table: tuple[str, ...]
    traces: tuple[str, ...] = ()
    plot_episode: Callable[..., None] | None = None
    optimum: Callable[..., dict[str, Any]] | None = None
    null_policy: str = ""
    optimum_name: str = "optimum"
    extra_policies: Mapping[str, Policy] = field(default_factory=dict)

    @property
    def policies(self) -> dict[str, Policy]:
        """Every scripted policy the env ships: the baselines and the extra ones (residual
        starting points, diagnostics)."""
        return {**self.extra_policies, **self.baselines}


class Environment(Generic[TState, TParams]):
    """Base class: subclasses implement ``reset_env``, ``step_env``, ``default_params``, the
    spaces and ``evaluation``; the rest has defaults for a single agent type and continuous
    actions."""

    if TYPE_CHECKING:  # dataclass fields or properties of the subclass (read-only here)

        @property
        def num_agents(self) -> int:
            """Agents: the leading axis of every per-agent array."""
            ...

        @property
        def num_steps(self) -> int:
            """Steps per episode (``rollout`` and the conformance suite play one episode)."""
            ...
    else:
        num_agents: int
    # the scripted policy (a name in ``evaluation().policies``) a residual learner starts from
    reference_policy: str = ""
    # agents of different types can get separate network parameters (``sharing="type"``)
    num_agent_types: int = 1
    # names of the types (``agent_types`` values index them; "" or missing = ``type_k``)
    agent_type_names: tuple[str, ...] = ()

    @property
    def name(self) -> str:
        return type(self).__name__

    @property
    def default_params(self) -> TParams:
        raise NotImplementedError

    def sample_params(self, key: PRNGKey, num: int) -> TParams:
        """A bank of ``num`` scenarios on a leading axis (default: copies of the default)."""
        params = self.default_params
        return jax.tree_util.tree_map(lambda x: jnp.broadcast_to(x, (num, *jnp.shape(x))), params)

    def check_params(self, params: TParams) -> None:
        """Raise ``ValueError`` naming the field, value and allowed range (default: accept)."""

    def reset_env(self, key: PRNGKey, params: TParams) -> tuple[Obs, TState]:
        raise NotImplementedError

    def step_env(
        self, key: PRNGKey, state: TState, action: Action, params: TParams
    ) -> StepResult[TState]:
        raise NotImplementedError

    @partial(jax.jit, static_argnums=(0,))
    def reset(self, key: PRNGKey, params: TParams | None = None) -> tuple[Obs, TState]:
        params = self.default_params if params is None else params
        return self.reset_env(key, params)

    @partial(jax.jit, static_argnums=(0,))
    def step(
        self, key: PRNGKey, state: TState, action: Action, params: TParams | None = None
    ) -> StepResult[TState]:
        """One step with auto-reset: returns (obs, state, reward, done, info). The action must
        have exactly the action space's shape (checked when traced; no broadcasting)."""
        params = self.default_params if params is None else params
        expected = tuple(self.action_space(params).shape)
        if tuple(jnp.shape(action)) != expected:
            raise ValueError(
                f"action: shape {tuple(jnp.shape(action))}; allowed: {expected} "
                "([num_agents, act_dim], one row per agent; no broadcasting)"
            )
        _check_state(state, jax.eval_shape(self.reset_env, key, params)[1])
        key_step, key_reset = jax.random.split(key)
        obs_st, state_st, reward, done, info = self.step_env(key_step, state, action, params)
        obs_re, state_re = self.reset_env(key_reset, params)
        state = jax.tree_util.tree_map(lambda r, s: jnp.where(done, r, s), state_re, state_st)
        obs = jnp.where(done, obs_re, obs_st)
        info = dict(info)
        info["final_obs"] = obs_st
        return obs, state, reward, done, info

    def observation_space(self, params: TParams | None = None) -> Box:
        raise NotImplementedError

    def action_space(self, params: TParams | None = None) -> Box:
        raise NotImplementedError

    def action_layout(self) -> ActionLayout:
        """Default: every column continuous within the action box."""
        space = self.action_space()
        return ActionLayout(space.shape[-1], float(jnp.min(space.low)), float(jnp.max(space.high)))

    def agent_types(self, params: TParams) -> Int[Array, " N"]:
        """[N] int32 type of each agent in ``[0, num_agent_types)`` (default:
        ``static_agent_types`` where declared, else all 0)."""
        static = self.static_agent_types
        if static is None:
            return jnp.zeros((self.num_agents,), jnp.int32)
        return jnp.asarray(static, jnp.int32)

    @property
    def static_agent_types(self) -> tuple[int, ...] | None:
        """The type of each agent row where no params can change it (``agent_types`` of every
        params), else None (default). With it, learners that keep one network per type
        (``sharing=type``) run each network on its own rows only instead of on every row."""
        return None

    def action_mask(self, params: TParams | None = None) -> Bool[Array, "N act_dim"]:
        """[N, act_dim] bool: which action columns can change anything for each agent (a
        battery set-point without a battery cannot). Learners leave the others out of their
        log-probabilities and entropy, so irrelevant noise does not drown the signal of the
        columns that matter. Default: every column of every agent."""
        return jnp.ones(self.action_space(params).shape, bool)

    def action_mask_at(self, state: TState, params: TParams) -> Bool[Array, "N act_dim"]:
        """[N, act_dim] bool: which action columns can change anything when the action is
        taken in ``state``: within :meth:`action_mask`, an env whose decisions fall due at
        certain steps only (a daily investment, a supplier chosen at day start) leaves the
        other steps' columns out, so a learner's gradient carries no noise from actions that
        were never read. Default: :meth:`action_mask`, whatever the state."""
        return self.action_mask(params)

    def observation_columns(self) -> tuple[Column, ...]:
        """Names and meanings of the observation columns (default: unnamed)."""
        d = self.observation_space().shape[-1]
        return tuple(Column(f"obs_{i}", "") for i in range(d))

    def action_columns(self) -> tuple[Column, ...]:
        """Names and meanings of the action columns (default: unnamed)."""
        return tuple(Column(f"action_{i}", "") for i in range(self.action_layout().act_dim))

    def evaluation(self) -> EvalSpec:
        raise NotImplementedError


def _check_state(state: Any, like: Any) -> None:
    """A state must have the structure, shapes and dtypes ``reset`` gives (checked when
    traced, so a state of another env or config fails here, naming the field)."""
    if jax.tree_util.tree_structure(state) != jax.tree_util.tree_structure(like):  # type: ignore[operator]
        raise ValueError(
            f"state: got a {type(state).__name__} of another structure; allowed: the state "
            "``reset`` returns for this env and config"
        )
    flat, _ = jax.tree_util.tree_flatten_with_path(state)
    for (path, x), ref in zip(flat, jax.tree_util.tree_leaves(like), strict=True):
        if tuple(jnp.shape(x)) != tuple(ref.shape) or jnp.result_type(x) != ref.dtype:
            where = jax.tree_util.keystr(path)
            raise ValueError(
                f"state{where}: shape {tuple(jnp.shape(x))} {jnp.result_type(x)}; allowed: "
                f"{tuple(ref.shape)} {ref.dtype} (the state reset returns)"
            )
