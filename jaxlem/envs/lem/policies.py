"""Scripted baseline policies for ``lem-v0``: zero intelligence (Gode-Sunder),
ZI-C (random but never trading at a loss against the DSO outside option), a rule-based battery,
and DSO only (no P2P trading).

A policy is ``policy(key, obs, env, params) -> action [N, act_dim]``: it reads the agent's own
observation (net position, FiT and utility price) and the static price range in ``params``.
"""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp

from jaxlem.envs.base import Action, Obs, Policy, PRNGKey
from jaxlem.envs.lem.observation import Col
from jaxlem.envs.lem.types import LEMParams


def _price_action(price: jax.Array, params: LEMParams) -> jax.Array:
    span = params.max_price - params.min_price
    return jnp.clip(2.0 * (price - params.min_price) / span - 1.0, -1.0, 1.0)


def _assemble(env: Any, battery: jax.Array, price_a: jax.Array, frac_a: jax.Array) -> Action:
    cols = [battery, price_a, frac_a]
    if env.partner_stage:
        cols.append(-jnp.ones_like(battery))
    return jnp.stack(cols, axis=-1)


def zero_intelligence(key: PRNGKey, obs: Obs, env: Any, params: LEMParams) -> Action:
    """Uniform random limit prices over the whole price range; battery idle; offer everything."""
    n = obs.shape[0]
    price_a = jax.random.uniform(key, (n,), minval=-1.0, maxval=1.0)
    return _assemble(env, jnp.zeros((n,)), price_a, jnp.ones((n,)))


def zi_constrained(key: PRNGKey, obs: Obs, env: Any, params: LEMParams) -> Action:
    """ZI-C: sellers ask uniformly in [FiT, max], buyers bid uniformly in [min, utility]."""
    n = obs.shape[0]
    fit = obs[:, Col.fit] * params.max_price
    util = obs[:, Col.utility] * params.max_price
    u = jax.random.uniform(key, (n,))
    seller = obs[:, Col.net] > 0
    price = jnp.where(
        seller,
        fit + u * (params.max_price - fit),
        params.min_price + u * (util - params.min_price),
    )
    return _assemble(env, jnp.zeros((n,)), _price_action(price, params), jnp.ones((n,)))


def rule_based_battery(key: PRNGKey, obs: Obs, env: Any, params: LEMParams) -> Action:
    """Store own surplus, cover own deficit from storage; trade the rest at the DSO mid price."""
    n = obs.shape[0]
    size = env.site_size(params) + 1e-6
    net = obs[:, Col.net] * size
    limit = jnp.maximum(params.bat_kw * env.dt_h, 1e-6)
    battery = jnp.clip(net / limit, -1.0, 1.0) * (params.bat_kwh > 0)
    mid = 0.5 * (obs[:, Col.fit] + obs[:, Col.utility]) * params.max_price
    return _assemble(env, battery, _price_action(mid, params), jnp.ones((n,)))


def dso_only(key: PRNGKey, obs: Obs, env: Any, params: LEMParams) -> Action:
    """No P2P: offer nothing, bid at the floor; battery idle. The DSO settles everything."""
    n = obs.shape[0]
    return _assemble(env, jnp.zeros((n,)), -jnp.ones((n,)), -jnp.ones((n,)))


def random_uniform(key: PRNGKey, obs: Obs, env: Any, params: LEMParams) -> Action:
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
