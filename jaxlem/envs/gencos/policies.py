"""Scripted policies for ``gencos-v0``: truthful offers, a fixed markup, random markups, and the
myopic best response of every unit to the others' offers.

An action [G, K] in [-1, 1] maps to non-decreasing markups in [0, 1] under the env's
``offer_param``; ``env.action_for_markups`` is its inverse.
"""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp
from jaxtyping import Array, ArrayLike, Float

from jaxlem.envs.base import Action, Obs, Policy, PRNGKey


def markup_action(env: Any, markup: ArrayLike) -> Action:
    """The action that offers every block of every unit at ``markup`` in [0, 1] (scalar, [G]
    or [G, K])."""
    m = jnp.asarray(markup, jnp.float32)
    if m.ndim == 1:
        m = m[:, None]
    return env.action_for_markups(m)


def truthful(key: PRNGKey, obs: Obs, env: Any, params: Any) -> Action:
    """Offer at true marginal cost (markup 0): the planner's reference."""
    return markup_action(env, 0.0)


def fixed_markup(markup: float) -> Policy:
    """A policy offering every block at one fixed markup in [0, 1]."""
    return lambda key, obs, env, params: markup_action(env, markup)


def random_markup(key: PRNGKey, obs: Obs, env: Any, params: Any) -> Action:
    """Markups drawn uniformly in [0, 1] per block."""
    return jax.random.uniform(key, (env.num_agents, env.num_blocks), minval=-1.0, maxval=1.0)


def best_response(
    env: Any, params: Any, state: Any, action: Action, grid: int = 11
) -> tuple[Action, Float[Array, " G"], Float[Array, " G"]]:
    """Myopic best response of every unit to the others' ``action`` [G, K] at ``state``.

    Each unit tries every uniform markup on a grid of ``grid`` levels in [0, 1] while the others
    keep their action; all G x grid candidate markets are cleared in one vmapped call. Returns
    (best action [G, K], best immediate profit [G], the profit of ``action`` itself [G]).
    """
    g, k = env.num_agents, env.num_blocks
    levels = jnp.linspace(0.0, 1.0, grid)

    def profit_of(a):
        _, price = env.offers(a, params)
        sol, _ = env.sced(params, price, state.p_prev, state.load_next)
        lmp = sol.lmp[params.network.gen_bus]
        return (lmp - params.cost) * sol.p_gen * env.dt_h

    def candidate(unit, level):
        uniform = env.action_for_markups(jnp.full((g, k), level))[0]
        a = action.at[unit].set(uniform)
        return profit_of(a)[unit]

    units = jnp.repeat(jnp.arange(g), grid)
    lv = jnp.tile(levels, g)
    prof = jax.vmap(candidate)(units, lv).reshape(g, grid)
    best = jnp.argmax(prof, axis=1)
    best_action = env.action_for_markups(levels[best][:, None])
    return best_action, jnp.max(prof, axis=1), profit_of(action)


BASELINES: dict[str, Policy] = {
    "truthful": truthful,
    "fixed_markup_0.5": fixed_markup(0.5),
    "random_markup": random_markup,
}
