"""The self-play pool: past actor snapshots held in the scan state.

In each environment, with probability ``selfplay_prob`` every agent plays the current policy;
otherwise one random agent learns against a snapshot drawn from the pool. A snapshot of the
actor enters the pool every ``snapshot_every`` updates (a ring of ``pool_size``).
"""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp


def init(actor_params: Any, pool_size: int) -> Any:
    """A pool of ``pool_size`` copies of the initial actor."""
    return jax.tree_util.tree_map(
        lambda p: jnp.broadcast_to(p, (pool_size, *p.shape)), actor_params
    )


def draw(
    keys: jax.Array,
    pool: Any,
    pool_count: jax.Array,
    num_envs: int,
    num_agents: int,
    prob: jax.Array,
) -> tuple[jax.Array, Any]:
    """Per environment: which agents learn ([B, N] bool) and the snapshot the others play
    (``keys``: three keys, for the snapshot, the learner and the all-self draw)."""
    k_opp, k_learn, k_self = keys
    opp_idx = jax.random.randint(k_opp, (num_envs,), 0, pool_count)
    learner = jax.random.randint(k_learn, (num_envs,), 0, num_agents)
    all_self = jax.random.uniform(k_self, (num_envs,)) < prob
    mask = all_self[:, None] | (jnp.arange(num_agents)[None] == learner[:, None])
    return mask, jax.tree_util.tree_map(lambda p: p[opp_idx], pool)


def push(
    pool: Any,
    pool_count: jax.Array,
    actor_params: Any,
    update: jax.Array,
    snapshot_every: int,
    pool_size: int,
) -> tuple[Any, jax.Array]:
    """The pool after update number ``update``: a snapshot every ``snapshot_every`` updates."""
    slot = (update // snapshot_every) % pool_size
    due = (update % snapshot_every) == 0
    pool = jax.tree_util.tree_map(
        lambda pl, p: pl.at[slot].set(jnp.where(due, p, pl[slot])), pool, actor_params
    )
    return pool, jnp.where(due, jnp.minimum(pool_count + 1, pool_size), pool_count)
