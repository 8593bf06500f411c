"""Money of one ``multiactor-v0`` step: every transfer between actors, the regulator's fines and
subsidies, and what the outside world receives (fuel, capital, balancing energy net of spilled
energy, switching costs). By construction the cash changes of all actors plus the outside
world's net receipts sum to zero; ``bailout`` lifts an actor back to its credit limit at the
regulator's expense (a transfer)."""

from __future__ import annotations

from typing import Any, NamedTuple

import jax
import jax.numpy as jnp

from jaxlem.envs.multiactor.markets import KWH_PER_MWH, Cleared
from jaxlem.envs.multiactor.stages import Retail, Wholesale
from jaxlem.envs.multiactor.types import MAParams


class Money(NamedTuple):
    delta: jax.Array  # [N] cash change of every actor before bailouts, currency
    external: jax.Array  # net receipts of the outside world, currency
    gouge_fine: jax.Array  # [U]
    quota_fine: jax.Array  # [U]
    quota_shortfall: jax.Array  # [U] kWh (at a day's last step, else 0)
    subsidy: jax.Array  # [P] output subsidies
    carbon: jax.Array  # [P] carbon payments
    excess: jax.Array  # [U] retail price above the gouging threshold, currency/MWh


def settle(
    env: Any,
    params: MAParams,
    rates: jax.Array,
    switch_cost: jax.Array,
    capex: jax.Array,
    invest_subsidy: jax.Array,
    local: Cleared,
    rt: Retail,
    ws: Wholesale,
    reference: jax.Array,
    pros_spill: jax.Array,
    day_purchase: jax.Array,
    day_end: jax.Array,
) -> Money:
    """Cash changes of one step (``day_purchase`` [U, 2] includes this step). A retail price
    gouges above ``1 + gouge_threshold`` times the larger of the wholesale price and its
    day-long mean ``reference`` (currency/MWh)."""
    p, c = env.num_producers, env.num_consumers
    bal, spill = params.balancing_price / KWH_PER_MWH, params.spill_price / KWH_PER_MWH
    # producers
    fuel = ws.own * params.prod_fuel_cost / KWH_PER_MWH
    carbon = ws.own * params.prod_carbon * params.carbon_price / KWH_PER_MWH
    subsidy = ws.own * params.prod_renewable * rates[1] / KWH_PER_MWH
    prod = (
        -ws.pay[:p]
        - ws.contract_pay[:p]
        - ws.shortfall * bal
        - fuel
        - carbon
        + subsidy
        - capex
        + invest_subsidy
    )
    # utilities
    threshold = (1.0 + params.gouge_threshold) * jnp.maximum(ws.price, reference)
    excess = jnp.maximum(rt.price - threshold, 0.0)
    gouge = rates[0] * excess * rt.sales / KWH_PER_MWH
    total, ren = day_purchase[:, 0], day_purchase[:, 1]
    shortfall = jnp.where(day_end, jnp.maximum(params.quota * total - ren, 0.0), 0.0)
    quota = params.quota_fine * params.regulator_on * shortfall / KWH_PER_MWH
    util = (
        rt.revenue
        - ws.pay[p:]
        - ws.contract_pay[p:]
        - ws.util_import * bal
        + ws.util_spill * spill
        - gouge
        - quota
    )
    # consumers and prosumers
    cons = -local.pay[:c] - rt.cons_pay - rt.cons_import * bal - switch_cost[:c]
    pros = (
        -local.pay[c:] - rt.pros_pay - rt.pros_import * bal + pros_spill * spill - switch_cost[c:]
    )
    reg = (
        jnp.sum(carbon)
        + jnp.sum(gouge)
        + jnp.sum(quota)
        - jnp.sum(subsidy)
        - jnp.sum(invest_subsidy)
    )
    imports = (
        ws.shortfall.sum() + ws.util_import.sum() + rt.cons_import.sum() + rt.pros_import.sum()
    )
    exports = ws.util_spill.sum() + pros_spill.sum()
    external = (
        jnp.sum(fuel) + jnp.sum(capex) + imports * bal - exports * spill + jnp.sum(switch_cost)
    )
    delta = jnp.concatenate([prod, util, cons, pros, reg[None]])
    return Money(delta, external, gouge, quota, shortfall, subsidy, carbon, excess)


def bailout(cash: jax.Array, kind: jax.Array, params: MAParams) -> tuple[jax.Array, jax.Array]:
    """Lift every actor below its credit limit back to it, paid by the regulator (the last
    row). Returns (cash [N], bailout received [N])."""
    floor = -params.credit[kind]
    lift = jnp.maximum(floor - cash, 0.0).at[-1].set(0.0)
    cash = cash + lift
    return cash.at[-1].add(-jnp.sum(lift)), lift
