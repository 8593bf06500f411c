"""The stages of one ``lem-v0`` step, in the order ``LEMEnv.step_env`` runs them.

1. :func:`sanitize_action`: non-finite entries to 0, everything clipped to the action box;
2. :func:`battery_stage`: the battery set-point, clipped to power and the SOC window;
3. :func:`net_position`: PV + dispatchable - demand - charge + discharge, then the per-site export
   limit and the grid mode's physical limits (curtailment, shedding; LMPs under ``dcopf``);
4. :func:`orders` and :func:`clearing`: limit prices and quantities, the P2P book cleared under the
   env's pricing rule (O(N log N)), scaled down to the P2P transfer limit under ``capacity``;
5. :func:`settle`: residuals with the DSO at FiT / utility price, fees, penalties, dispatch and
   degradation costs, the value of stored energy at the end; :func:`reward` from the profits;
6. :func:`kpis`: the step's ``info``;
7. :func:`next_state`: the next step's PV and demand, price features, reputation.

Energies in kWh per step, prices in currency/MWh, money in currency.
"""

from __future__ import annotations

from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
from jaxtyping import Array, Bool, Float, Int

from jaxlem import battery
from jaxlem.battery import BatteryStep
from jaxlem.envs.lem import grid
from jaxlem.envs.lem.exogenous import draw_step
from jaxlem.envs.lem.types import DUST_FRAC, EPS, LEMParams, LEMState
from jaxlem.market import clear, dso
from jaxlem.market.clearing import ClearingResult
from jaxlem.market.dso import KWH_PER_MWH


class Position(NamedTuple):
    """Net positions after the grid stage (kWh per step, [N]) and the grid's outputs."""

    x: jax.Array  # net position after curtailment and shedding (> 0 sells)
    curtail: jax.Array
    shed: jax.Array
    disp_avail: jax.Array  # dispatchable energy available this step
    lmp: jax.Array | None  # [M] LMPs (grid_mode='dcopf')
    grid_info: dict


class Orders(NamedTuple):
    price: jax.Array  # [N] limit price, currency/MWh
    qty: jax.Array  # [N] kWh offered (sellers) or bid (buyers)
    is_buy: jax.Array  # [N] bool


class Trades(NamedTuple):
    """The clearing result after the P2P transfer limit."""

    result: ClearingResult
    matched: jax.Array  # [N] kWh
    payment: jax.Array  # [N] currency/MWh x kWh (> 0 pays)
    loss: jax.Array  # [N] kWh lost on the way to the buyer
    fee: jax.Array  # [N] network fee, currency/MWh x kWh
    volume: jax.Array  # kWh bought in the market


class Settlement(NamedTuple):
    p2p_bought: jax.Array  # [N] kWh received from peers
    p2p_sold: jax.Array  # [N] kWh sold to peers
    dso_bought: jax.Array  # [N] kWh imported from the DSO
    dso_sold: jax.Array  # [N] kWh exported to the DSO
    disp_out: jax.Array  # [N] kWh produced by the dispatchable unit
    dso_money: jax.Array  # [N] currency received from the DSO (< 0 pays)
    fee_money: jax.Array  # [N] network fees paid
    penalty: jax.Array  # [N] imbalance and shedding penalties paid
    money: jax.Array  # [N] net cash flow of the step
    profit: jax.Array  # [N] money - degradation - dispatch cost + terminal storage value


def sanitize_action(env: Any, action: jax.Array) -> tuple[jax.Array, jax.Array | None]:
    """Continuous columns [N, 3] in [-1, 1] and the partner index [N] (partner stage, else
    None); non-finite entries become 0 (idle battery, mid price, half offered, no partner)."""
    a = jnp.asarray(action, jnp.float32)
    a = jnp.where(jnp.isfinite(a), a, 0.0)
    cont = jnp.clip(a[:, :3], -1.0, 1.0)
    partner = None
    if env.partner_stage:
        p = jnp.clip(jnp.round(a[:, 3]), -1.0, env.num_agents - 1)
        partner = jnp.where(jnp.isfinite(action[:, 3]), p, -1.0).astype(jnp.int32)
    return cont, partner


def battery_stage(
    env: Any, state: LEMState, setpoint: Float[Array, " N"], params: LEMParams
) -> BatteryStep:
    """The battery step for set-points in [-1, 1] (-1 full discharge, +1 full charge)."""
    dt = env.dt_h
    return battery.step(
        state.energy,
        setpoint * params.bat_kw * dt,
        params.bat_kwh,
        params.bat_kw,
        params.soc_min,
        params.soc_max,
        params.eta_c,
        params.eta_d,
        dt,
        params.self_discharge,
        params.degradation_cost / KWH_PER_MWH,
    )


def net_position(
    env: Any, state: LEMState, bat: BatteryStep, util_base: Float[Array, ""], params: LEMParams
) -> Position:
    """Net positions; dispatchable capacity counts as available supply. The per-site export
    limit (a DSO intervention) applies first, then the grid mode's physical limits."""
    dt = env.dt_h
    disp_avail = params.disp_kw * dt
    x = state.gen + disp_avail - state.demand - bat.charge + bat.discharge
    curtail = jnp.maximum(x - params.export_limit_kw * dt, 0.0)
    shed = jnp.zeros_like(x)
    if env.grid_mode == "capacity":
        curtail, shed = grid.capacity_limits(env, x - curtail, curtail, params)
    grid_info: dict[str, jax.Array] = {}
    lmp: jax.Array | None = None
    if env.grid_mode == "dcopf":
        c_dc, s_dc, lmp, grid_info = grid.redispatch(env, x - curtail, util_base, params)
        curtail, shed = curtail + c_dc, shed + s_dc
    return Position(x - curtail + shed, curtail, shed, disp_avail, lmp, grid_info)


def utility_price(
    env: Any,
    x: Float[Array, " N"],
    util_base: Float[Array, ""],
    fit_t: Float[Array, ""],
    params: LEMParams,
) -> Float[Array, ""]:
    """The utility price after the dynamic tariff (rises with the community's import), never
    below the FiT."""
    community_import = jnp.maximum(-jnp.sum(x), 0.0)
    util_t = dso.dynamic_utility_price(
        util_base,
        community_import,
        jnp.sum(params.demand_kw) * env.dt_h,
        params.dynamic_tariff_slope,
    )
    return jnp.maximum(util_t, fit_t)


def orders(a: jax.Array, x: jax.Array, params: LEMParams) -> Orders:
    """Limit prices from column 1, offered share of a surplus from column 2; a deficit is bid
    in full."""
    price = params.min_price + 0.5 * (a[:, 1] + 1.0) * (params.max_price - params.min_price)
    frac = 0.5 * (a[:, 2] + 1.0)
    is_buy = x < 0
    return Orders(price, jnp.where(is_buy, -x, frac * x), is_buy)


def clearing(
    env: Any,
    book: Orders,
    state: LEMState,
    prices: tuple[Float[Array, ""], Float[Array, ""]],
    partner: Int[Array, " N"] | None,
    lmp: Float[Array, " M"] | None,
    key: jax.Array,
    params: LEMParams,
) -> Trades:
    """The P2P book cleared under ``env.rule``; under ``capacity`` every trade is scaled down
    so the volume fits the P2P transfer limit."""
    fit_t, util_t = prices
    res = clear(
        book.price,
        book.qty,
        book.is_buy,
        env.rule,
        reference_price=state.last_price,
        fit=fit_t,
        utility=util_t,
        k=params.k,
        key=key,
        reputation=state.reputation if env.use_reputation else None,
        partner=partner,
        pair_terms=grid.pair_terms(env, params, lmp),
    )
    matched, payment, loss, fee = res.matched_qty, res.payment, res.loss, res.fee
    if env.grid_mode == "capacity":
        lim = params.p2p_limit_kw * env.dt_h
        scale = jnp.where(res.volume > lim, lim / jnp.maximum(res.volume, EPS), 1.0)
        matched, payment, loss, fee = (v * scale for v in (matched, payment, loss, fee))
    volume = jnp.sum(jnp.where(book.is_buy, matched, 0.0))
    return Trades(res, matched, payment, loss, fee, volume)


def settle(
    env: Any,
    pos: Position,
    book: Orders,
    trades: Trades,
    bat: BatteryStep,
    prices: tuple[Float[Array, ""], Float[Array, ""]],
    last: Bool[Array, ""],
    params: LEMParams,
) -> Settlement:
    """Residuals to the DSO and every cash flow of the step. Unsold dispatchable energy is not
    produced when the FiT is below its cost."""
    fit_t, util_t = prices
    x, is_buy, matched = pos.x, book.is_buy, trades.matched
    p2p_bought = jnp.where(is_buy, matched - trades.loss, 0.0)
    p2p_sold = jnp.where(is_buy, 0.0, matched)
    dso_bought = jnp.where(is_buy, -x - p2p_bought, 0.0)
    dso_sold = jnp.where(is_buy, 0.0, x - matched)
    unused = jnp.where(fit_t < params.disp_cost, jnp.minimum(pos.disp_avail, dso_sold), 0.0)
    dso_sold = dso_sold - unused
    disp_out = pos.disp_avail - unused

    dso_money = dso.settle(dso_sold, dso_bought, fit_t, util_t)
    penalty = (
        params.imbalance_penalty * (dso_sold + dso_bought) + params.shed_penalty * pos.shed
    ) / KWH_PER_MWH
    disp_cost = params.disp_cost * disp_out / KWH_PER_MWH
    fee_money = trades.fee / KWH_PER_MWH
    p2p_money = -trades.payment / KWH_PER_MWH
    money = p2p_money + dso_money - fee_money - penalty
    terminal = jnp.where(
        last,
        params.terminal_soc_value
        * jnp.maximum(bat.energy - params.soc_min * params.bat_kwh, 0.0)
        / KWH_PER_MWH,
        0.0,
    )
    profit = money - bat.degradation_cost - disp_cost + terminal
    return Settlement(
        p2p_bought, p2p_sold, dso_bought, dso_sold, disp_out, dso_money, fee_money, penalty,
        money, profit,
    )  # fmt: skip


def reward(profit: jax.Array, params: LEMParams) -> jax.Array:
    """Scaled profit, mixed with the community mean by the cooperation weight ``coop_alpha``."""
    r = profit * params.reward_scale
    return (1.0 - params.coop_alpha) * r + params.coop_alpha * jnp.mean(r)


def kpis(
    state: LEMState,
    pos: Position,
    book: Orders,
    trades: Trades,
    s: Settlement,
    bat: BatteryStep,
    prices: tuple[Float[Array, ""], Float[Array, ""], Float[Array, ""]],
    last: Bool[Array, ""],
    params: LEMParams,
) -> dict[str, jax.Array]:
    """The step's ``info``: flows per agent, money, market and community KPIs. The savings
    compare with the same physics where every residual is traded with the DSO."""
    fit_t, util_t, util_base = prices
    res, volume = trades.result, trades.volume
    base_money = dso.settle(jnp.maximum(pos.x, 0.0), jnp.maximum(-pos.x, 0.0), fit_t, util_t)
    community_cost = -jnp.sum(s.money)
    baseline_cost = -jnp.sum(base_money)
    total_demand = jnp.sum(state.demand)
    total_gen = jnp.sum(state.gen + s.disp_out)
    imports = jnp.sum(s.dso_bought)
    exports = jnp.sum(s.dso_sold)
    return {
        "terminated": last,
        "truncated": jnp.zeros((), bool),
        "money": s.money,
        "profit": s.profit,
        "p2p_payment": trades.payment / KWH_PER_MWH,
        "gen_kwh": state.gen + s.disp_out,
        "pv_kwh": state.gen,
        "demand_kwh": state.demand,
        "charge_kwh": bat.charge,
        "discharge_kwh": bat.discharge,
        "p2p_bought_kwh": s.p2p_bought,
        "p2p_sold_kwh": s.p2p_sold,
        "net_position_kwh": pos.x,
        "order_kwh": book.qty,
        "order_price": book.price,
        "reference_price": state.last_price,
        "dso_bought_kwh": s.dso_bought,
        "dso_sold_kwh": s.dso_sold,
        "curtail_kwh": pos.curtail,
        "shed_kwh": pos.shed,
        "loss_kwh": trades.loss,
        "soc": bat.energy / jnp.maximum(params.bat_kwh, EPS),
        "dso_net_money": -jnp.sum(s.dso_money - s.fee_money - s.penalty),
        "dso_fees_money": jnp.sum(s.fee_money + s.penalty),
        "network_fees_money": jnp.sum(s.fee_money),
        "clearing_price": res.clearing_price,
        "p2p_volume_kwh": volume,
        "p2p_share": volume / jnp.maximum(total_demand, EPS),
        "supply_kwh": res.supply,
        "bid_kwh": res.demand,
        "liquidity": volume / jnp.maximum(res.supply, EPS),
        "spread": res.spread,
        "community_cost": community_cost,
        "baseline_cost": baseline_cost,
        "savings": baseline_cost - community_cost,
        "import_kwh": imports,
        "export_kwh": exports,
        "net_import_kwh": imports - exports,
        "self_sufficiency": jnp.clip(1.0 - imports / jnp.maximum(total_demand, EPS), 0, 1),
        "self_consumption": jnp.clip(1.0 - exports / jnp.maximum(total_gen, EPS), 0, 1),
        "battery_throughput_kwh": jnp.sum(bat.throughput),
        "fit": fit_t,
        "utility": util_t,
        "utility_base": util_base,
        **pos.grid_info,
    }


def next_state(
    env: Any,
    key: jax.Array,
    state: LEMState,
    book: Orders,
    trades: Trades,
    bat: BatteryStep,
    lmp: Float[Array, " M"] | None,
    params: LEMParams,
) -> LEMState:
    """The state of the next step: its PV and demand draws, the battery energy, and the price
    features of this clearing. A match below the dust tolerance (float rounding of a net
    position that is zero) does not move the price features: its price is the ratio of two
    rounding errors."""
    t_next = state.t + 1
    gen, dem, fc_gen, fc_dem, fc_rest = draw_step(
        env,
        key,
        t_next,
        (state.pv_kind, state.demand_kind, state.day),
        state.pv_day,
        state.demand_day,
        params,
    )
    matched, volume = trades.matched, trades.volume
    size = env.site_size(params)
    real = matched > DUST_FRAC * size
    own_price = jnp.where(
        real,
        jnp.abs(trades.payment) / jnp.maximum(matched - trades.loss, EPS),
        state.last_own_price,
    )
    real_volume = volume > DUST_FRAC * jnp.sum(size)
    qty = book.qty
    fill = jnp.where(qty > 0, matched / jnp.maximum(qty, EPS), 0.0)
    rep = jnp.where(
        qty > 0,
        (1.0 - params.reputation_rate) * state.reputation + params.reputation_rate * fill,
        state.reputation,
    )
    return state.replace(
        t=t_next.astype(jnp.int32),
        energy=bat.energy,
        gen=gen,
        demand=dem,
        forecast_gen=fc_gen,
        forecast_demand=fc_dem,
        forecast_gen_rest=fc_rest[0],
        forecast_demand_rest=fc_rest[1],
        last_price=jnp.where(real_volume, trades.result.clearing_price, state.last_price),
        last_volume=volume,
        last_matched=matched,
        last_own_price=own_price,
        reputation=jnp.clip(rep, 0.0, 1.0),
        lmp=lmp,
    )
