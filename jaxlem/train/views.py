"""What the learners' networks see and emit, built from the env's declared contract.

``AgentViews`` turns raw observations [M, N, D] into network inputs for every training mode
(own observation plus type/id features; MAPPO's pooled world state; CTCE's one joint view) and
knows the agents' types (``env.agent_types``) and which action columns matter
(``env.action_mask_at``). ``action_head`` builds the actor's output layout from
``env.action_layout()``. ``Residual`` maps a learner's raw action to an env action that moves a
scripted baseline's action (declared by the env) towards the box edges. Shared by PPO and SAC.
"""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from jaxlem.train import networks as nets
from jaxlem.train.config import TrainConfig


def action_head(config: TrainConfig, env: Any, kind: str | None = None) -> nets.ActionHead:
    """The actor's output layout for ``env.action_layout()`` (joint over agents under CTCE)."""
    layout = env.action_layout()
    if len(set(layout.categorical)) > 1:
        raise ValueError(
            f"action_layout.categorical: got sizes {layout.categorical}; allowed: categorical "
            "heads of one size (the actor's heads share one logit width)"
        )
    n = env.num_agents
    num_cat = len(layout.categorical)
    classes = max(layout.categorical, default=1)
    kind = config.dist if kind is None else kind
    defer = bool(num_cat) and bool(config.residual_policy(env))
    extra = {"defer": defer, "defer_logit": config.residual_keep_logit if defer else 0.0}
    classes += int(defer)
    if config.algo == "ctce":
        return nets.ActionHead(
            n * layout.continuous, layout.low, layout.high, n * num_cat, classes, kind, **extra
        )
    return nets.ActionHead(
        layout.continuous, layout.low, layout.high, num_cat, classes, kind, **extra
    )


class AgentViews:
    """Network inputs of every agent (the agent axis N' is 1 under CTCE, N otherwise)."""

    def __init__(self, config: TrainConfig, env: Any, head: nets.ActionHead):
        self.config, self.env, self.head = config, env, head
        self.num_agents = env.num_agents
        self.obs_dim = env.observation_space().shape[-1]
        self.num_types = env.num_agent_types
        self.central = config.algo == "ctce"
        self.views = 1 if self.central else self.num_agents
        self.sharing = "shared" if self.central else config.sharing
        static = env.static_agent_types
        self.type_rows = (
            None
            if static is None or self.sharing != "type"
            else tuple(np.flatnonzero(np.asarray(static) == t) for t in range(self.num_types))
        )

    def types(self, params) -> jax.Array:
        """[N] agent types of one scenario."""
        return self.env.agent_types(params).astype(jnp.int32)

    def bank_types(self, bank) -> jax.Array:
        """[B, N] agent types of a scenario bank."""
        return jax.vmap(self.types)(bank)

    def inputs(self, obs_n: jax.Array, types: jax.Array):
        """Normalised obs [M, N, D] -> (actor input, critic input) with agent axis N'."""
        m = obs_n.shape[0]
        if self.central:
            flat = obs_n.reshape(m, 1, -1)
            return flat, flat
        feats = nets.agent_features(
            jnp.broadcast_to(types, (m, self.num_agents)),
            self.num_agents,
            self.num_types,
            self.config.sharing == "shared",
        )
        own = jnp.concatenate([obs_n, feats], axis=-1)
        if not self.config.centralised_critic:
            return own, own
        pooled = jnp.concatenate([obs_n.mean(axis=1), obs_n.max(axis=1)], axis=-1)
        world = jnp.concatenate(
            [own, jnp.broadcast_to(pooled[:, None], (m, self.num_agents, pooled.shape[-1]))], -1
        )
        return own, world

    def view_types(self, types: jax.Array, m: int) -> jax.Array:
        """Agent types [M, N'] as the networks see them (one joint "agent" under CTCE)."""
        if self.central:
            return jnp.zeros((m, 1), jnp.int32)
        return jnp.broadcast_to(types, (m, self.num_agents))

    def head_mask(self, bank, env_state) -> jax.Array:
        """[B, N', raw_dim] float: 1 where an action column matters for the actions taken in
        the batch of env states ``env_state`` (``env.action_mask_at``)."""
        b = jax.tree_util.tree_leaves(bank)[0].shape[0]
        if not self.config.action_mask:
            return jnp.ones((b, self.views, self.head.raw_dim), jnp.float32)
        mask = jax.vmap(self.env.action_mask_at)(env_state, bank).astype(jnp.float32)  # [B, N, A]
        if not self.central:
            return mask
        cont = self.head.cont // self.num_agents
        return jnp.concatenate(
            [mask[..., :cont].reshape(b, 1, -1), mask[..., cont:].reshape(b, 1, -1)], axis=-1
        )

    def apply(self, net, params, x, types):
        """One network over the agent axis under the config's parameter sharing (with static
        types, each type's network on its own rows; ``types`` is then not read)."""
        if self.type_rows is not None:
            return nets.apply_by_type(net, params, x, self.type_rows)
        return nets.apply_shared(net, params, x, types, self.sharing, self.num_types)

    def init(self, net, key, x):
        """Parameters of ``net`` for one input row ``x`` under the config's sharing."""
        return nets.init_shared(net, key, x, self.sharing, self.num_agents, self.num_types)

    def joint_to_agents(self, act: jax.Array) -> jax.Array:
        """CTCE: a joint action [M, 1, N*cont + N*cat] -> per-agent rows [M, N, act_dim]."""
        if not self.central:
            return act
        h, m = self.head, act.shape[0]
        parts = [act[..., : h.cont].reshape(m, self.num_agents, -1)]
        if h.num_cat:
            parts.append(act[..., h.cont :].reshape(m, self.num_agents, -1))
        return jnp.concatenate(parts, axis=-1)


class Residual:
    """A residual actor around the scripted policy ``name`` of ``env.evaluation().policies``:
    each continuous column ``d`` in [-1, 1] moves the baseline's action ``b`` towards the box
    edge it points to, ``scale * |d|`` of the way (``d = 0`` plays the baseline; with
    ``scale = 1``, ``-1`` and ``+1`` the edges); a categorical column keeps the baseline's
    choice where the head's first ("defer") class was drawn, and plays the drawn option
    otherwise."""

    def __init__(
        self, env: Any, name: str, head: nets.ActionHead, scale: float | tuple[float, ...] = 1.0
    ):
        """``scale``: one bound for every agent, or one per agent type."""
        self.env, self.name, self.head, self.scale = env, name, head, scale
        self.policy = env.evaluation().policies[name] if name else None

    def __call__(self, act: jax.Array, obs, bank, key) -> jax.Array:
        """Env actions [M, N, A] from the head's actions [M, N, A] (unchanged without a
        baseline)."""
        if self.policy is None:
            return act
        h = self.head
        k = act.shape[-1] - (1 if h.num_cat else 0)
        scale = self.scale
        if isinstance(scale, tuple):  # per agent type: [M, N, 1]
            types = jax.vmap(self.env.agent_types)(bank)
            scale = jnp.asarray(scale, jnp.float32)[types][..., None]
        d = scale * (2.0 * (act[..., :k] - h.low) / (h.high - h.low) - 1.0)
        m = obs.shape[0]
        keys = jax.random.split(jax.random.fold_in(key, 1), m)
        full = jax.vmap(lambda kk, o, p: self.policy(kk, o, self.env, p))(keys, obs, bank)
        b = full[..., :k]
        moved = jnp.where(d >= 0, b + d * (h.high - b), b + d * (b - h.low))
        cat = jnp.where(act[..., k:] < -1.5, full[..., k:], act[..., k:])
        return jnp.concatenate([moved, cat], axis=-1)
