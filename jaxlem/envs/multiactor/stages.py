"""The named stages of one ``multiactor-v0`` step, as pure functions on per-kind arrays.

Order within a step: daily decisions at a day's first step (regulator's rates, suppliers,
investment, day-ahead contracts) -> exogenous energy (PV, wind, demand) -> demand response
-> prosumers' batteries -> local auction -> retail supply (scenario 1: at each utility's price;
scenario 2: an auction) -> real-time wholesale auction -> producers' delivery and the outside
grid's balancing -> money -> fines and subsidies -> bailouts at the credit limit.

Units: kWh per step, currency/MWh prices, currency amounts (``price * kWh / 1000``).
"""

from __future__ import annotations

from typing import Any, NamedTuple

import jax
import jax.numpy as jnp

from jaxlem import battery
from jaxlem.envs.multiactor.markets import KWH_PER_MWH, auction, contracts
from jaxlem.envs.multiactor.types import MAParams, MAState

NUM_CONT = 5  # continuous action columns; one categorical column follows


def unit(a: jax.Array) -> jax.Array:
    """Action values in [-1, 1] (NaN -> 0) to [0, 1]."""
    a = jnp.where(jnp.isnan(a), 0.0, a)
    return 0.5 * (jnp.clip(a, -1.0, 1.0) + 1.0)


def choice(a: jax.Array, options: int) -> jax.Array:
    """The categorical column (option index - 1, NaN -> first option) to an option index."""
    a = jnp.where(jnp.isnan(a), -1.0, a)
    return jnp.clip(jnp.round(a) + 1, 0, options - 1).astype(jnp.int32)


class Split(NamedTuple):
    """An action [N, 6] split by kind into [0, 1] controls (and the consumers' and prosumers'
    categorical choice)."""

    prod: jax.Array  # [P, 5]
    util: jax.Array  # [U, 5]
    cons: jax.Array  # [C, 5]
    pros: jax.Array  # [R, 5]
    reg: jax.Array  # [5]
    pick: jax.Array  # [C + R] option in [0, U]


def split(env: Any, action: jax.Array) -> Split:
    u = unit(action[:, :NUM_CONT])
    s = env.slices
    pick = choice(action[s.cons.start : s.pros.stop, NUM_CONT], env.num_utilities + 1)
    return Split(u[s.prod], u[s.util], u[s.cons], u[s.pros], u[s.reg][0], pick)


def marginal_cost(params: MAParams) -> jax.Array:
    """[P] producers' marginal cost: fuel plus carbon, currency/MWh."""
    return params.prod_fuel_cost + params.prod_carbon * params.carbon_price


def price_between(u: jax.Array, lo: jax.Array, hi: jax.Array) -> jax.Array:
    return lo + u * jnp.maximum(hi - lo, 0.0)


# ----------------------------------------------------------------------------- daily
def regulator_rates(u: jax.Array, params: MAParams) -> jax.Array:
    """[3] gouging fine (share of excess revenue), output subsidy (currency/MWh), investment
    subsidy (currency/kW); all 0 when the regulator is off."""
    top = jnp.stack([params.fine_max, params.subsidy_max, params.invest_subsidy_max])
    return u[:3] * top * params.regulator_on


def suppliers(
    env: Any, old: jax.Array, pick: jax.Array, params: MAParams
) -> tuple[jax.Array, jax.Array]:
    """New suppliers [C + R] and the switching costs paid [C + R]. Consumers choose only in
    scenario 1 (in scenario 2 the retail auction replaces suppliers); prosumers choose their
    fallback utility or to disconnect (option U) in both."""
    c = env.num_consumers
    is_cons = jnp.arange(old.shape[0]) < c
    if env.scenario == 2:
        pick = jnp.where(is_cons, old, pick)
    cost = jnp.where(pick != old, params.switching_cost, 0.0)
    return pick, cost


def invest(
    env: Any, state: MAState, u: jax.Array, cash: jax.Array, rate: jax.Array, params: MAParams
) -> tuple[jax.Array, jax.Array, jax.Array, jax.Array]:
    """A day's investment: commission the capacity due today, then order ``u * max`` kW,
    bounded by cash plus credit at the capital cost net of the regulator's subsidy. Returns
    (running capacity [P], pipeline [P, D], kW ordered [P], (capex [P], subsidy [P]))."""
    capacity = state.capacity_kw + state.pipeline_kw[:, 0]
    pipeline = jnp.concatenate(
        [state.pipeline_kw[:, 1:], jnp.zeros_like(state.pipeline_kw[:, :1])], axis=1
    )
    subsidy_kw = jnp.minimum(rate * params.prod_renewable, params.prod_capex_per_kw)
    net = params.prod_capex_per_kw - subsidy_kw
    budget = jnp.maximum(cash + params.credit[0], 0.0)
    affordable = jnp.where(net > 0, budget / jnp.where(net > 0, net, 1.0), jnp.inf)
    kw = jnp.minimum(u * params.prod_max_invest_kw, affordable)
    delay = params.build_delay_days
    slot = jnp.arange(env.max_build_delay) == delay - 1
    pipeline = pipeline + jnp.where(slot[None, :], kw[:, None], 0.0)
    capacity = capacity + jnp.where(delay == 0, kw, 0.0)
    return capacity, pipeline, kw, jnp.stack([kw * params.prod_capex_per_kw, kw * subsidy_kw])


def availability(capacity: jax.Array, t: jax.Array, params: MAParams, dt_h: float) -> jax.Array:
    """[P] energy each producer can produce at step ``t`` (kWh): capacity for fossil units,
    capacity times the PV / wind availability for renewables."""
    ren = params.pv_unit[0, t] * params.prod_pv_weight + params.wind_unit[t] * (
        1.0 - params.prod_pv_weight
    )
    share = jnp.where(params.prod_renewable > 0, jnp.clip(ren, 0.0, 1.0), 1.0)
    return capacity * share * dt_h


def day_contracts(
    env: Any, state: MAState, a: Split, capacity: jax.Array, params: MAParams
) -> tuple[jax.Array, jax.Array]:
    """The day-ahead auction of today's hours: producers offer ``share`` of their expected
    availability at their contract price, utilities bid ``share`` of yesterday's load at
    theirs."""
    s = env.steps_per_day
    hours = state.t + jnp.arange(s)
    hours = jnp.minimum(hours, env.num_steps - 1)
    avail = jax.vmap(lambda t: availability(capacity, t, params, env.dt_h), out_axes=1)(hours)
    ask_price = price_between(a.prod[:, 3], marginal_cost(params), params.price_cap)
    bid_price = a.util[:, 2] * params.price_cap
    ask_qty = a.prod[:, 4, None] * avail
    bid_qty = a.util[:, 3, None] * state.load_forecast
    return contracts(ask_price, ask_qty, bid_price, bid_qty, "marginal")


# ----------------------------------------------------------------------------- energy
class Exogenous(NamedTuple):
    cons_base: jax.Array  # [C] kWh consumers would use at the reference price
    pros_pv: jax.Array  # [R] kWh
    pros_demand: jax.Array  # [R] kWh
    avail: jax.Array  # [P] kWh producers can produce


def exogenous(
    env: Any, key: jax.Array, t: jax.Array, capacity: jax.Array, params: MAParams
) -> Exogenous:
    k_c, k_r = jax.random.split(key)
    dt = env.dt_h

    def noisy(k, x):
        z = jax.random.normal(k, x.shape)
        return x * jnp.maximum(1.0 + params.demand_noise * z, 0.0)

    dem = params.demand_unit[:, t]
    cons = noisy(k_c, dem[params.cons_kind] * params.cons_demand_kw * dt)
    pros_dem = noisy(k_r, dem[params.pros_kind] * params.pros_demand_kw * dt)
    pv = params.pv_unit[params.pros_pv_kind, t] * params.pros_pv_kw * dt
    return Exogenous(cons, pv, pros_dem, availability(capacity, t, params, dt))


def demand_response(
    base: jax.Array, price: jax.Array, params: MAParams
) -> tuple[jax.Array, jax.Array]:
    """Consumers' demand at the price they face (linear, down to ``demand_floor`` of the
    profile) and the value they give up, currency: the area under the inverse demand curve
    between the demand and the full profile."""
    eps = params.elasticity
    cut = jnp.clip(eps * (price / params.ref_price - 1.0), 0.0, 1.0 - params.demand_floor)
    q = base * (1.0 - cut)
    gap = base - q
    safe = jnp.where((eps > 0) & (base > 0), eps * base, 1.0)
    lost = params.ref_price * (gap + jnp.where(eps > 0, gap**2 / (2.0 * safe), 0.0))
    return q, lost / KWH_PER_MWH


class Prosumers(NamedTuple):
    soc: jax.Array  # [R] kWh after the step
    charge: jax.Array  # [R] kWh
    discharge: jax.Array  # [R] kWh
    surplus: jax.Array  # [R] kWh to sell (connected)
    deficit: jax.Array  # [R] kWh to buy (connected)
    curtail: jax.Array  # [R] kWh surplus lost while disconnected
    shed: jax.Array  # [R] kWh demand unmet while disconnected


def prosumers(
    env: Any, soc: jax.Array, u: jax.Array, connected: jax.Array, ex: Exogenous, params: MAParams
) -> Prosumers:
    request = (2.0 * u[:, 0] - 1.0) * params.battery_kw * env.dt_h
    b = battery.step(
        soc,
        request,
        params.battery_kwh,
        params.battery_kw,
        jnp.zeros_like(soc),
        jnp.ones_like(soc),
        params.battery_eta,
        params.battery_eta,
        env.dt_h,
    )
    net = ex.pros_pv - ex.pros_demand - b.charge + b.discharge
    surplus, deficit = jnp.maximum(net, 0.0), jnp.maximum(-net, 0.0)
    return Prosumers(
        b.energy,
        b.charge,
        b.discharge,
        jnp.where(connected, surplus, 0.0),
        jnp.where(connected, deficit, 0.0),
        jnp.where(connected, 0.0, surplus),
        jnp.where(connected, 0.0, deficit),
    )


# ----------------------------------------------------------------------------- markets
def local_market(
    env: Any,
    key: jax.Array,
    a: Split,
    demand: jax.Array,
    on_local: jax.Array,
    pr: Prosumers,
    last: jax.Array,
    params: MAParams,
):
    """The P2P auction among consumers and prosumers (lem's clearing at ``env.local_rule``).
    Consumers bid ``share`` of their demand (all of it when the local market is their
    supplier) at their limit price; prosumers offer ``share`` of their surplus or bid
    ``share`` of their deficit at theirs. Limit prices lie between the spill and balancing
    prices."""
    lo, hi = params.spill_price, params.balancing_price
    c_qty = jnp.where(on_local, 1.0, a.cons[:, 1]) * demand
    p_sell = pr.surplus > 0
    p_qty = a.pros[:, 2] * jnp.where(p_sell, pr.surplus, pr.deficit)
    price = jnp.concatenate(
        [price_between(a.cons[:, 0], lo, hi), price_between(a.pros[:, 1], lo, hi)]
    )
    qty = jnp.concatenate([c_qty, p_qty])
    is_buy = jnp.concatenate([jnp.ones_like(c_qty, bool), ~p_sell])
    return auction(price, qty, is_buy, env.local_rule, last, key)


class Retail(NamedTuple):
    cons_retail: jax.Array  # [C] kWh supplied by utilities
    pros_retail: jax.Array  # [R] kWh supplied by utilities
    cons_import: jax.Array  # [C] kWh bought from the outside grid at the balancing price
    pros_import: jax.Array  # [R]
    cons_pay: jax.Array  # [C] currency paid to utilities
    pros_pay: jax.Array  # [R]
    sales: jax.Array  # [U] kWh each utility must supply
    revenue: jax.Array  # [U] currency
    price: jax.Array  # [U] currency/MWh each utility charged (posted; scenario 2: the auction's)
    mean_price: jax.Array  # sales-weighted retail price (the mean posted one when nothing sold)


def posted_prices(a: Split, params: MAParams) -> jax.Array:
    """[U] the utilities' posted retail prices, currency/MWh."""
    return price_between(a.util[:, 0], params.retail_min, params.retail_max)


def retail(
    env: Any,
    a: Split,
    posted: jax.Array,
    cons_need: jax.Array,
    pros_need: jax.Array,
    supplier: jax.Array,
    last: jax.Array,
    params: MAParams,
) -> Retail:
    """What the local market left: scenario 1, each customer of a utility is supplied at its
    posted retail price (consumers on the local market buy the rest from the outside grid);
    scenario 2, a retail auction of utilities' offers against consumers' and prosumers' bids,
    the unmatched rest from the outside grid."""
    u = env.num_utilities
    c = env.num_consumers
    if env.scenario == 1:
        sup_c, sup_r = supplier[:c], supplier[c:]
        on_util_c = sup_c < u
        cons_retail = jnp.where(on_util_c, cons_need, 0.0)
        pros_retail = jnp.where(sup_r < u, pros_need, 0.0)
        per_row = jnp.concatenate([cons_retail, pros_retail])
        sales = jax.ops.segment_sum(per_row, supplier, num_segments=u + 1)[:u]
        price_row = posted[jnp.minimum(supplier, u - 1)]
        pay = price_row * per_row / KWH_PER_MWH
        revenue = posted * sales / KWH_PER_MWH
        weights = jnp.maximum(jnp.sum(sales), 1e-9)
        mean = jnp.where(jnp.sum(sales) > 0, jnp.sum(posted * sales) / weights, jnp.mean(posted))
        return Retail(
            cons_retail,
            pros_retail,
            cons_need - cons_retail,
            pros_need - pros_retail,
            pay[:c],
            pay[c:],
            sales,
            revenue,
            posted,
            mean,
        )
    need = jnp.concatenate([cons_need, pros_need])
    lo, hi = params.spill_price, params.balancing_price
    bids = jnp.concatenate(
        [price_between(a.cons[:, 2], lo, hi), price_between(a.pros[:, 1], lo, hi)]
    )
    offer = a.util[:, 4] * jnp.sum(need)
    book = auction(
        jnp.concatenate([posted, bids]),
        jnp.concatenate([offer, need]),
        jnp.concatenate([jnp.zeros((u,), bool), jnp.ones(need.shape, bool)]),
        env.retail_rule,
        last,
    )
    bought, pay = book.qty[u:], book.pay[u:]
    return Retail(
        bought[:c],
        bought[c:],
        cons_need - bought[:c],
        pros_need - bought[c:],
        pay[:c],
        pay[c:],
        book.qty[:u],
        -book.pay[:u],
        jnp.full((u,), book.price),
        book.price,
    )


class Wholesale(NamedTuple):
    contract_in: jax.Array  # [U] kWh delivered to utilities under contracts this hour
    contract_out: jax.Array  # [P] kWh producers owe under contracts this hour
    contract_pay: jax.Array  # [P + U] currency (+ utilities pay)
    bought: jax.Array  # [U] kWh bought in the real-time auction
    sold: jax.Array  # [P] kWh sold in the real-time auction
    pay: jax.Array  # [P + U] currency (+ utilities pay)
    price: jax.Array  # currency/MWh of the real-time auction
    util_import: jax.Array  # [U] kWh a utility still lacked, from the outside grid
    util_spill: jax.Array  # [U] kWh contracted beyond its load, spilled to the outside grid
    own: jax.Array  # [P] kWh each producer produced
    shortfall: jax.Array  # [P] kWh of contracts a producer bought from the outside grid
    ren_in: jax.Array  # [U] kWh of renewable energy in each utility's purchases


def wholesale(
    env: Any, a: Split, sales: jax.Array, ex: Exogenous, state: MAState, params: MAParams
) -> Wholesale:
    """Contracts delivered this hour, then the real-time uniform-price auction of producers'
    free capacity against utilities' residual need; the rest from the outside grid. Renewable
    energy in purchases is attributed pro rata (pooled markets)."""
    p, u = env.num_producers, env.num_utilities
    hour = state.t % env.steps_per_day
    if env.scenario == 1:
        k = state.contract_qty[:, hour]
        k_pay = state.contract_pay[:, hour]
    else:
        k = jnp.zeros((p + u,))
        k_pay = jnp.zeros((p + u,))
    k_out, k_in = jnp.maximum(-k[:p], 0.0), jnp.maximum(k[p:], 0.0)
    need = jnp.maximum(sales - k_in, 0.0)
    spill = jnp.maximum(k_in - sales, 0.0)
    own_k = jnp.minimum(k_out, ex.avail)
    free = jnp.maximum(ex.avail - own_k, 0.0)
    share = jnp.maximum(a.prod[:, 1], params.prod_min_share)
    ask = price_between(a.prod[:, 0], marginal_cost(params), params.price_cap)
    bid = a.util[:, 1] * params.price_cap
    book = auction(
        jnp.concatenate([ask, bid]),
        jnp.concatenate([share * free, need]),
        jnp.concatenate([jnp.zeros((p,), bool), jnp.ones((u,), bool)]),
        "marginal",
        state.prices[0],
    )
    sold, bought = book.qty[:p], book.qty[p:]
    ren = params.prod_renewable
    k_ren = jnp.sum(k_out * ren) / jnp.maximum(jnp.sum(k_out), 1e-9)
    w_ren = jnp.sum(sold * ren) / jnp.maximum(jnp.sum(sold), 1e-9)
    return Wholesale(
        contract_in=k_in,
        contract_out=k_out,
        contract_pay=k_pay,
        bought=bought,
        sold=sold,
        pay=book.pay,
        price=book.price,
        util_import=need - bought,
        util_spill=spill,
        own=own_k + sold,
        shortfall=k_out - own_k,
        ren_in=k_ren * jnp.minimum(k_in, sales) + w_ren * bought,
    )
