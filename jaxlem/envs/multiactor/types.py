"""State and params of ``multiactor-v0``, and the names of its actor kinds and personas.

Agents are rows of one set of arrays, in kind order: producers, utilities, consumers,
prosumers, then the regulator. Energies are kWh per step, powers kW, prices currency/kWh,
cash and rewards currency.
"""

from __future__ import annotations

import jax
from flax import struct

PRODUCER, UTILITY, CONSUMER, PROSUMER, REGULATOR = range(5)
KINDS = ("producer", "utility", "consumer", "prosumer", "regulator")
PERSONAS = ("eco", "balanced", "greedy")
SCENARIOS = (1, 2)


@struct.dataclass
class MAParams:
    """Every number of one scenario (traced: a sweep over any of them reuses one compile)."""

    # --- exogenous profiles of the episode, per unit (T steps)
    pv_unit: jax.Array  # [Kpv, T] kW per kWp of each PV orientation
    demand_unit: jax.Array  # [Kd, T] demand per kW of mean demand of each demand kind
    wind_unit: jax.Array  # [T] wind availability in [0, 1] per kW of capacity
    demand_noise: jax.Array  # relative std of each step's realised demand
    # --- producers [P]
    prod_capacity_kw: jax.Array  # installed capacity at reset, kW
    prod_pv_weight: jax.Array  # renewables: availability = w * PV + (1 - w) * wind
    prod_renewable: jax.Array  # 1.0 renewable, 0.0 fossil
    prod_fuel_cost: jax.Array  # fuel and variable O&M, currency/kWh
    prod_carbon: jax.Array  # kg CO2 per kWh
    prod_min_share: jax.Array  # fossil minimum output: share of capacity always offered
    prod_capex_per_kw: jax.Array  # capital cost of one kW built, annuitised to the episode
    prod_max_invest_kw: jax.Array  # largest build request per day, kW
    build_delay_days: jax.Array  # int32: days from the decision until the capacity runs
    carbon_price: jax.Array  # currency per kg CO2, paid to the regulator
    # --- utilities [U]
    persona: jax.Array  # int32 index into PERSONAS
    quota: jax.Array  # required renewable share of purchases per day, in [0, 1]
    persona_green: jax.Array  # [3] reward value per kWh of renewable purchases
    persona_fair: jax.Array  # [3] reward weight on retail price above the gouging threshold
    retail_min: jax.Array  # lowest retail price
    retail_max: jax.Array  # highest retail price
    # --- consumers [C] and prosumers [R]
    cons_demand_kw: jax.Array  # [C] mean demand, kW
    cons_kind: jax.Array  # [C] int32 demand kind
    elasticity: jax.Array  # [C] demand falls by elasticity * (p / ref_price - 1) of itself
    demand_floor: jax.Array  # share of demand kept at any price
    ref_price: jax.Array  # price at which consumers demand their full profile
    switching_cost: jax.Array  # paid by a consumer or prosumer that changes supplier
    supplier0: jax.Array  # [C + R] int32 supplier at reset (U: local market / disconnected)
    pros_pv_kw: jax.Array  # [R] kWp
    pros_pv_kind: jax.Array  # [R] int32 PV orientation
    pros_demand_kw: jax.Array  # [R] mean demand, kW
    pros_kind: jax.Array  # [R] int32 demand kind
    battery_kwh: jax.Array  # [R] capacity (0: no battery)
    battery_kw: jax.Array  # [R] power limit
    battery_eta: jax.Array  # [R] one-way efficiency
    soc0: jax.Array  # state of charge at reset, share of capacity
    voll: jax.Array  # value of lost load of shed demand
    # --- markets
    balancing_price: jax.Array  # price of energy from the outside grid (any shortfall)
    spill_price: jax.Array  # price paid for energy spilled to the outside grid (any surplus)
    price_cap: jax.Array  # highest wholesale offer or bid
    # --- regulator
    regulator_on: jax.Array  # 0.0: fines and subsidies are off whatever it chooses
    fine_max: jax.Array  # largest gouging fine: share of the excess retail revenue taken
    gouge_threshold: jax.Array  # markup over the wholesale price above which retail gouges
    subsidy_max: jax.Array  # largest subsidy per kWh of renewable output
    invest_subsidy_max: jax.Array  # largest subsidy per kW of renewable capacity built
    quota_fine: jax.Array  # fine per kWh of a utility's daily renewable-quota shortfall
    # --- money
    cash0: jax.Array  # [5] cash at reset per kind
    credit: jax.Array  # [5] allowed credit per kind: cash never falls below -credit
    reward_scale: jax.Array  # [5] reward multiplier per kind


@struct.dataclass
class MAState:
    """What carries from one step to the next."""

    t: jax.Array  # int32 step of the episode
    cash: jax.Array  # [N] currency
    capacity_kw: jax.Array  # [P] producers' running capacity
    pipeline_kw: jax.Array  # [P, D] capacity under construction, by days until it runs
    invested_kw: jax.Array  # [P] capacity ordered so far in the episode
    soc_kwh: jax.Array  # [R] prosumers' stored energy
    supplier: jax.Array  # [C + R] int32 supplier (U: local market / disconnected)
    rates: jax.Array  # [3] regulator's (gouging fine, output subsidy, investment subsidy)
    contract_qty: jax.Array  # [P + U, S] today's forward contracts per hour (+ buy, - sell)
    contract_pay: jax.Array  # [P + U, S] their payments per hour (+ utility pays)
    load_today: jax.Array  # [U, S] each utility's load this day so far (tomorrow's forecast)
    load_forecast: jax.Array  # [U, S] yesterday's load: the forecast for contracts
    day_purchase: jax.Array  # [U, 2] today's purchases (all, renewable), kWh
    prices: jax.Array  # [4] last wholesale, local and retail prices; the wholesale day mean
    retail: jax.Array  # [U] last retail prices
    last_sales: jax.Array  # [P] last step's output of each producer, kWh
    stats: jax.Array  # [4] last step's renewable share, mean markup, import share, disconnected
