"""What every ``multiactor-v0`` agent observes: one padded row per agent.

A row is the market-wide columns (``COMMON``: the agent's kind as a one-hot, the time, the
last prices and the regulator's rates) followed by ``OWN`` columns whose meaning depends on the
kind (documented per column). Prices are in currency/kWh (currency/MWh / 1000), energies in
kWh, cash in hundreds.
"""

from __future__ import annotations

from enum import IntEnum
from typing import Any

import jax.numpy as jnp

from jaxlem.envs.base import Column
from jaxlem.envs.multiactor.stages import availability, marginal_cost
from jaxlem.envs.multiactor.types import KINDS, MAParams, MAState

COMMON = (
    *(Column(f"is_{k}", f"1 if the agent is a {k}") for k in KINDS),
    Column("hour_sin", "sin(2 pi hour / 24) of the step to act on"),
    Column("hour_cos", "cos(2 pi hour / 24)"),
    Column("progress", "t / T"),
    Column("day_start", "1 at a day's first step: daily decisions are taken now"),
    Column("wholesale_price", "last real-time wholesale price, currency/kWh"),
    Column("wholesale_mean", "the wholesale price's exponential mean over about a day"),
    Column("local_price", "last local (P2P) price, currency/kWh"),
    Column("retail_price", "last sales-weighted retail price, currency/kWh"),
    Column("balancing_price", "outside grid's price, currency/kWh"),
    Column("fine_rate", "gouging fine in force, share of the excess revenue"),
    Column("subsidy", "output subsidy in force, currency/kWh of renewable output"),
    Column("invest_subsidy", "investment subsidy in force, currency per kW / 100"),
)
OWN = (
    Column(
        "own_0",
        "producer: capacity / total mean demand; utility: share of customers; "
        "consumer: expected demand, kWh; prosumer: expected PV, kWh; regulator: budget / 1000",
    ),
    Column(
        "own_1",
        "producer: availability share now; utility: forecast load now, kWh / 10; "
        "consumer: 1 if on the local market; prosumer: expected demand, kWh; "
        "regulator: renewable share of producers' output",
    ),
    Column(
        "own_2",
        "producer: capacity under construction / capacity; utility: contracted "
        "now / forecast load; consumer: its supplier's retail price; prosumer: state of "
        "charge; regulator: mean retail markup, currency/kWh",
    ),
    Column("own_3", "cash / 100 (regulator: share of energy from the outside grid)"),
    Column(
        "own_4",
        "producer: contracted now / capacity; utility: 1 if eco persona; "
        "consumer: cheapest retail price; prosumer: battery kWh / 10; regulator: share "
        "of prosumers disconnected",
    ),
    Column(
        "own_5",
        "producer: 1 if renewable; utility: 1 if greedy persona; consumer: "
        "elasticity; prosumer: 1 if disconnected",
    ),
    Column(
        "own_6",
        "producer: marginal cost, currency/kWh; utility: renewable share of "
        "today's purchases - quota; prosumer: its supplier's retail price",
    ),
    Column(
        "own_7",
        "producer: last output / capacity; utility: its last retail price; "
        "consumer and prosumer: 1 if its supplier is the cheapest",
    ),
)
COLUMNS = COMMON + OWN
Col = IntEnum("Col", [(c.name, i) for i, c in enumerate(COLUMNS)])  # type: ignore[misc]
NUM_COMMON = len(COMMON)


def observe(env: Any, state: MAState, params: MAParams) -> jnp.ndarray:
    """[N, len(COLUMNS)] observation for the step ``state.t`` is about to take."""
    p_, u_, c_, r_ = env.num_producers, env.num_utilities, env.num_consumers, env.num_prosumers
    n = env.num_agents
    t = jnp.minimum(state.t, env.num_steps - 1)
    s = env.steps_per_day
    hour = (t % s).astype(jnp.float32) * env.dt_h
    kinds = jnp.asarray(env.kind_of_row)
    onehot = (kinds[:, None] == jnp.arange(5)[None, :]).astype(jnp.float32)
    g = jnp.stack(
        [
            jnp.sin(2 * jnp.pi * hour / 24.0),
            jnp.cos(2 * jnp.pi * hour / 24.0),
            t / env.num_steps,
            (t % s == 0).astype(jnp.float32),
            state.prices[0] / 1000.0,
            state.prices[3] / 1000.0,
            state.prices[1] / 1000.0,
            state.prices[2] / 1000.0,
            params.balancing_price / 1000.0,
            state.rates[0],
            state.rates[1] / 1000.0,
            state.rates[2] / 100.0,
        ]
    )
    common = jnp.concatenate([onehot, jnp.broadcast_to(g, (n, g.shape[0]))], axis=1)
    dt = env.dt_h
    cash = state.cash / 100.0
    total_kw = jnp.maximum(jnp.sum(params.cons_demand_kw) + jnp.sum(params.pros_demand_kw), 1e-6)
    # producers
    cap = jnp.maximum(state.capacity_kw, 1e-6)
    from_avail = availability(state.capacity_kw, t, params, dt) / (cap * dt)
    hour_i = t % s
    k = state.contract_qty[:, hour_i]
    prod = jnp.stack(
        [
            state.capacity_kw / total_kw,
            from_avail,
            jnp.sum(state.pipeline_kw, axis=1) / cap,
            cash[:p_],
            jnp.maximum(-k[:p_], 0.0) / (cap * dt),
            params.prod_renewable,
            marginal_cost(params) / 1000.0,
            state.last_sales / (cap * dt),
        ],
        axis=1,
    )
    # utilities
    sup = state.supplier
    customers = jnp.sum(sup[:, None] == jnp.arange(u_)[None, :], axis=0)
    fc = state.load_forecast[:, hour_i]
    total, ren = state.day_purchase[:, 0], state.day_purchase[:, 1]
    ren_share = jnp.where(total > 0, ren / jnp.where(total > 0, total, 1.0), 0.0)
    util = jnp.stack(
        [
            customers / max(c_ + r_, 1),
            fc / 10.0,
            jnp.maximum(k[p_:], 0.0) / jnp.maximum(fc, 1e-6),
            cash[p_ : p_ + u_],
            (params.persona == 0).astype(jnp.float32),
            (params.persona == 2).astype(jnp.float32),
            ren_share - params.quota,
            state.retail / 1000.0,
        ],
        axis=1,
    )
    # consumers and prosumers
    retail = state.retail / 1000.0
    cheapest = jnp.min(retail)
    their = retail[jnp.minimum(sup, u_ - 1)]
    is_cheapest = (their <= cheapest + 1e-6) & (sup < u_)
    dem = params.demand_unit[:, t]
    cons_dem = dem[params.cons_kind] * params.cons_demand_kw * dt
    cons = jnp.stack(
        [
            cons_dem,
            (sup[:c_] == u_).astype(jnp.float32),
            their[:c_],
            cash[p_ + u_ : p_ + u_ + c_],
            jnp.full((c_,), cheapest),
            params.elasticity,
            sup[:c_] / u_,
            is_cheapest[:c_].astype(jnp.float32),
        ],
        axis=1,
    )
    pv = params.pv_unit[params.pros_pv_kind, t] * params.pros_pv_kw * dt
    pros_dem = dem[params.pros_kind] * params.pros_demand_kw * dt
    soc = state.soc_kwh / jnp.maximum(params.battery_kwh, 1e-6)
    pros = jnp.stack(
        [
            pv,
            pros_dem,
            jnp.where(params.battery_kwh > 0, soc, 0.0),
            cash[p_ + u_ + c_ : n - 1],
            params.battery_kwh / 10.0,
            sup[c_:] / u_,
            their[c_:],
            is_cheapest[c_:].astype(jnp.float32),
        ],
        axis=1,
    )
    reg = jnp.stack(
        [
            state.cash[-1] / 1000.0,
            state.stats[0],
            state.stats[1] / 1000.0,
            state.stats[2],
            state.stats[3],
            jnp.zeros(()),
            jnp.zeros(()),
            jnp.zeros(()),
        ]
    )[None, :]
    own = jnp.concatenate([prod, util, cons, pros, reg], axis=0)
    obs = jnp.concatenate([common, own], axis=1)
    return jnp.clip(jnp.where(jnp.isfinite(obs), obs, 0.0), -1e6, 1e6).astype(jnp.float32)
