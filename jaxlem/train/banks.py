"""The scenario banks of a run and the keys they are drawn with: one convention everywhere.

For a run with seed ``s``: the training bank is drawn with key ``s``, the periodic evaluation's
bank with ``5_000 + s`` (played with episode key 0), and the held-out comparison bank with
``10_000 + s`` (played with episode keys ``split(PRNGKey(s + 1), M)``). Training never sees the
evaluation or held-out scenarios, and every policy of a comparison plays the same episodes.
"""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp

from jaxlem import checks

EVAL_OFFSET = 5_000
HELD_OUT_OFFSET = 10_000


def train_key(seed: int) -> jax.Array:
    return jax.random.PRNGKey(seed)


def eval_key(seed: int) -> jax.Array:
    return jax.random.PRNGKey(EVAL_OFFSET + seed)


def held_out_key(seed: int) -> jax.Array:
    return jax.random.PRNGKey(HELD_OUT_OFFSET + seed)


def held_out_episode_seed(seed: int) -> int:
    """The episode seed of the held-out comparison of a run with seed ``seed``."""
    return seed + 1


def held_out_bank(env: Any, num: int, seed: int = 0) -> Any:
    """Scenarios drawn from keys the training and evaluation banks never use."""
    return env.sample_params(held_out_key(seed), num)


def scenario_bank(env: Any, params: Any, num: int, key: jax.Array) -> Any:
    """A bank of ``num`` scenarios: sampled with ``key`` (params None), broadcast (one params
    pytree) or as given (a bank of ``num``)."""
    if params is None:
        return env.sample_params(key, num)
    lead = jax.tree_util.tree_leaves(params)[0]
    ref = jax.tree_util.tree_leaves(env.default_params)[0]
    if jnp.ndim(lead) == jnp.ndim(ref):
        return jax.tree_util.tree_map(lambda x: jnp.broadcast_to(x, (num, *jnp.shape(x))), params)
    if jnp.shape(lead)[0] != num:
        raise ValueError(
            f"params: bank of {jnp.shape(lead)[0]} scenarios; allowed: {num} (num_envs/eval_envs)"
        )
    return params


def check_bank(env: Any, bank: Any, name: str = "params") -> None:
    """Validate a scenario bank (or one params pytree) with the env's own checks, so params
    changed with ``.replace`` cannot slip past validation (a no-op on traced values)."""
    expected = type(env.default_params)
    if type(bank) is not expected:
        raise ValueError(
            f"{name}: got {type(bank).__name__}; allowed: {expected.__name__} (params of "
            f"{type(env).__name__}, e.g. env.default_params or env.sample_params(key, num))"
        )
    if not checks.is_concrete(bank):
        return
    try:
        env.check_params(bank)
    except ValueError as err:
        raise ValueError(f"{name}: {err}") from None
