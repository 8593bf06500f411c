"""Scripted decision makers of ``multiactor-v0``, one rule per kind, combined into policies.

- producers: truthful, offering all free capacity at marginal cost, half their expected
  availability under contracts at marginal cost, no investment;
- utilities: cost-plus, a retail price 20 % above the larger of the last wholesale price and
  its day-long mean, wholesale bids up to the outside grid's price, 70 % of the forecast load
  under contracts at 5 % above the day-long mean;
- consumers: the cheapest supplier (switching only for a 3 % saving, as switching costs),
  every kWh bid locally at that retail price first;
  in scenario 2 retail bids at the reference price;
- prosumers: the battery rule (charge surplus, discharge deficit), surplus offered at the
  spill price, deficit bid at the supplier's retail price, never disconnecting;
- regulator: none (all rates 0) or a fixed rule (full gouging fine, half the subsidies).

A policy is ``policy(key, obs [N, D], env, params) -> action [N, 6]``.
"""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp

from jaxlem.envs.base import Action, Obs, Policy, PRNGKey
from jaxlem.envs.multiactor.observation import Col
from jaxlem.envs.multiactor.stages import NUM_CONT


def _to_action(u: jax.Array) -> jax.Array:
    """[0, 1] controls to action values in [-1, 1]."""
    return 2.0 * jnp.clip(u, 0.0, 1.0) - 1.0


def _rows(controls: jax.Array, pick: jax.Array) -> jax.Array:
    return jnp.concatenate([_to_action(controls), pick[:, None].astype(jnp.float32)], axis=1)


def producers(obs: Obs, env: Any, params: Any) -> Action:
    p = env.num_producers
    u = jnp.stack(
        [jnp.zeros(p), jnp.ones(p), jnp.zeros(p), jnp.zeros(p), jnp.full((p,), 0.5)], axis=1
    )
    return _rows(u, jnp.full((p,), -1.0))


def utilities(obs: Obs, env: Any, params: Any) -> Action:
    o = obs[env.slices.util]
    n = o.shape[0]
    mean = o[:, Col.wholesale_mean] * 1000.0
    wholesale = jnp.maximum(o[:, Col.wholesale_price] * 1000.0, mean)
    retail = jnp.clip(1.2 * wholesale, params.retail_min, params.retail_max)
    span = jnp.maximum(params.retail_max - params.retail_min, 1e-9)
    u = jnp.stack(
        [
            (retail - params.retail_min) / span,
            jnp.full((n,), params.balancing_price / params.price_cap),
            1.05 * mean / params.price_cap,
            jnp.full((n,), 0.7),
            jnp.ones((n,)),
        ],
        axis=1,
    )
    return _rows(u, jnp.full((n,), -1.0))


def _switch(
    obs: Obs, env: Any, rows: slice, column: int, margin: float = 0.03
) -> tuple[jax.Array, jax.Array]:
    """Keep the current utility unless the cheapest is ``margin`` cheaper (switching costs);
    leave the local market or reconnect to the cheapest. Returns (utility [M], its price)."""
    u = env.num_utilities
    retail = obs[env.slices.util, Col.own_7] * 1000.0
    best = jnp.argmin(retail)
    current = jnp.round(obs[rows, column] * u).astype(jnp.int32)
    on_util = current < u
    own = retail[jnp.minimum(current, u - 1)]
    keep = on_util & (own <= (1.0 + margin) * retail[best])
    choice = jnp.where(keep, current, best)
    return choice, retail[choice]


def _limit(price: jax.Array, params: Any) -> jax.Array:
    """A limit price (currency/MWh) as the [0, 1] control of a local order."""
    lo, hi = params.spill_price, params.balancing_price
    return (price - lo) / jnp.maximum(hi - lo, 1e-9)


def consumers(obs: Obs, env: Any, params: Any, bid_markup: float = 1.0) -> Action:
    """The consumers' rule; ``bid_markup`` scales their local limit price (1: the supplier's
    retail price), the deviation a study probes the rule with."""
    c = env.num_consumers
    best, price = _switch(obs, env, env.slices.cons, Col.own_6)
    u = jnp.stack(
        [
            _limit(bid_markup * price, params),
            jnp.ones((c,)),
            jnp.full((c,), _limit(params.ref_price, params)),
            jnp.zeros((c,)),
            jnp.zeros((c,)),
        ],
        axis=1,
    )
    return _rows(u, best - 1.0)


def prosumers(obs: Obs, env: Any, params: Any) -> Action:
    o = obs[env.slices.pros]
    r = o.shape[0]
    best, price = _switch(obs, env, env.slices.pros, Col.own_5)
    net = o[:, Col.own_0] - o[:, Col.own_1]  # expected PV - demand, kWh
    power = jnp.maximum(params.battery_kw * env.dt_h, 1e-9)
    battery = jnp.clip(net / power, -1.0, 1.0)
    limit = jnp.where(net > 0, 0.0, _limit(price, params))
    u = jnp.stack(
        [0.5 * (battery + 1.0), limit, jnp.ones((r,)), jnp.zeros((r,)), jnp.zeros((r,))], axis=1
    )
    return _rows(u, best - 1.0)


def regulator(fine: float, subsidy: float, invest: float) -> Policy:
    """A regulator that sets fixed shares of its largest fine and subsidies every day."""

    def act(key: PRNGKey, obs: Obs, env: Any, params: Any) -> Action:
        u = jnp.asarray([[fine, subsidy, invest, 0.0, 0.0]], jnp.float32)
        return _rows(u, jnp.full((1,), -1.0))

    return act


def scripted(regulator_policy: Policy) -> Policy:
    """Every kind's rule, with ``regulator_policy`` for the regulator."""

    def act(key: PRNGKey, obs: Obs, env: Any, params: Any) -> Action:
        return jnp.concatenate(
            [
                producers(obs, env, params),
                utilities(obs, env, params),
                consumers(obs, env, params),
                prosumers(obs, env, params),
                regulator_policy(key, obs, env, params),
            ]
        )

    return act


def random_policy(key: PRNGKey, obs: Obs, env: Any, params: Any) -> Action:
    """Every column uniform: continuous in [-1, 1], the choice uniform over its options."""
    k1, k2 = jax.random.split(key)
    n, u = env.num_agents, env.num_utilities
    cont = jax.random.uniform(k1, (n, NUM_CONT), minval=-1.0, maxval=1.0)
    pick = jax.random.randint(k2, (n, 1), -1, u).astype(jnp.float32)
    return jnp.concatenate([cont, pick], axis=1)


NO_REGULATION = regulator(0.0, 0.0, 0.0)
FIXED_RULE = regulator(1.0, 0.5, 0.5)
BASELINES: dict[str, Policy] = {
    "scripted": scripted(NO_REGULATION),
    "scripted_regulated": scripted(FIXED_RULE),
    "random": random_policy,
}
