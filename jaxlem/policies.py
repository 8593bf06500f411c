"""Scripted baseline policies for ``lem-v0``: zero intelligence (Gode-Sunder),
ZI-C (random but never trading at a loss against the DSO outside option), a rule-based battery,
and DSO only (no P2P trading).

A policy is ``policy(key, obs, env, params) -> action [N, act_dim]``: it reads the agent's own
observation (net position, FiT and utility price) and the static price range in ``params``.
"""

from __future__ import annotations

from collections.abc import Callable

import jax
import jax.numpy as jnp

from jaxlem.envs import lem

Policy = Callable[[jax.Array, jax.Array, "lem.LEMEnv", "lem.LEMParams"], jax.Array]

# observation columns used here (see LEMEnv._obs)
_NET, _FIT, _UTIL = 7, 10, 11


def _price_action(price, params):
    span = params.max_price - params.min_price
    return jnp.clip(2.0 * (price - params.min_price) / span - 1.0, -1.0, 1.0)


def _assemble(env, battery, price_a, frac_a):
    cols = [battery, price_a, frac_a]
    if env.partner_stage:
        cols.append(-jnp.ones_like(battery))
    return jnp.stack(cols, axis=-1)


def zero_intelligence(key, obs, env, params):
    """Uniform random limit prices over the whole price range; battery idle; offer everything."""
    n = obs.shape[0]
    price_a = jax.random.uniform(key, (n,), minval=-1.0, maxval=1.0)
    return _assemble(env, jnp.zeros((n,)), price_a, jnp.ones((n,)))


def zi_constrained(key, obs, env, params):
    """ZI-C: sellers ask uniformly in [FiT, max], buyers bid uniformly in [min, utility]."""
    n = obs.shape[0]
    fit = obs[:, _FIT] * params.max_price
    util = obs[:, _UTIL] * params.max_price
    u = jax.random.uniform(key, (n,))
    seller = obs[:, _NET] > 0
    price = jnp.where(
        seller,
        fit + u * (params.max_price - fit),
        params.min_price + u * (util - params.min_price),
    )
    return _assemble(env, jnp.zeros((n,)), _price_action(price, params), jnp.ones((n,)))


def rule_based_battery(key, obs, env, params):
    """Store own surplus, cover own deficit from storage; trade the rest at the DSO mid price."""
    n = obs.shape[0]
    size = env.site_size(params) + 1e-6
    net = obs[:, _NET] * size
    limit = jnp.maximum(params.bat_kw * env.dt_h, 1e-6)
    battery = jnp.clip(net / limit, -1.0, 1.0) * (params.bat_kwh > 0)
    mid = 0.5 * (obs[:, _FIT] + obs[:, _UTIL]) * params.max_price
    return _assemble(env, battery, _price_action(mid, params), jnp.ones((n,)))


def dso_only(key, obs, env, params):
    """No P2P: offer nothing, bid at the floor; battery idle. The DSO settles everything."""
    n = obs.shape[0]
    return _assemble(env, jnp.zeros((n,)), -jnp.ones((n,)), -jnp.ones((n,)))


def random_uniform(key, obs, env, params):
    """Uniform random actions over the whole action box (battery included)."""
    n = obs.shape[0]
    a = jax.random.uniform(key, (n, 3), minval=-1.0, maxval=1.0)
    return _assemble(env, a[:, 0], a[:, 1], a[:, 2])


BASELINES: dict[str, Policy] = {
    "random": random_uniform,
    "zero_intelligence": zero_intelligence,
    "zi_constrained": zi_constrained,
    "rule_based_battery": rule_based_battery,
    "dso_only": dso_only,
}


# ----------------------------------------------------------------------------- gencos-v0
# An action [G, K] in [-1, 1] maps to non-decreasing markups in [0, 1] under the env's
# offer_param; ``env.action_for_markups`` is its inverse (see envs/gencos.py).


def markup_action(env, markup) -> jax.Array:
    """The action that offers every block of every unit at ``markup`` in [0, 1] (scalar, [G]
    or [G, K])."""
    m = jnp.asarray(markup, jnp.float32)
    if m.ndim == 1:
        m = m[:, None]
    return env.action_for_markups(m)


def truthful(key, obs, env, params):
    """Offer at true marginal cost (markup 0): the planner's reference."""
    return markup_action(env, 0.0)


def fixed_markup(markup: float):
    """A policy offering every block at one fixed markup in [0, 1]."""
    return lambda key, obs, env, params: markup_action(env, markup)


def random_markup(key, obs, env, params):
    """Markups drawn uniformly in [0, 1] per block."""
    return jax.random.uniform(key, (env.num_agents, env.num_blocks), minval=-1.0, maxval=1.0)


def best_response(env, params, state, action, grid: int = 11):
    """Myopic best response of every unit to the others' ``action`` [G, K] at ``state``.

    Each unit tries every uniform markup on a grid of ``grid`` levels in [0, 1] while the others
    keep their action; all G x grid candidate markets are cleared in one vmapped call. Returns
    (best action [G, K], best immediate profit [G], the profit of ``action`` itself [G]).
    """
    g, k = env.num_agents, env.num_blocks
    levels = jnp.linspace(0.0, 1.0, grid)

    def profit_of(a):
        _, price = env.offers(a, params)
        sol, _ = env._clear(params, price, state.p_prev, state.load_next)
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


GENCOS_BASELINES: dict[str, Policy] = {
    "truthful": truthful,
    "fixed_markup_0.5": fixed_markup(0.5),
    "random_markup": random_markup,
}
