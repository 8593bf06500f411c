"""Market KPIs as pure functions of arrays. Safe on empty or zero inputs.

Shapes in the annotations are those of the default ``axis=-1`` (the reduced axis last).
"""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp
from jaxtyping import Array, ArrayLike, Float

_EPS = 1e-9


def _safe_div(a: ArrayLike, b: ArrayLike) -> Array:
    return jnp.where(jnp.abs(b) > _EPS, a / jnp.where(jnp.abs(b) > _EPS, b, 1.0), 0.0)


def shares(values: Float[Array, "*batch N"], axis: int = -1) -> Float[Array, "*batch N"]:
    """Non-negative values normalised to shares summing to one (zeros if all are zero)."""
    v = jnp.maximum(values, 0.0)
    return _safe_div(v, jnp.sum(v, axis=axis, keepdims=True))


def hhi(values: Float[Array, "*batch N"], axis: int = -1) -> Float[Array, "*batch"]:
    """Herfindahl-Hirschman index on the 0..10,000 scale of the shares of ``values``."""
    return 1e4 * jnp.sum(shares(values, axis) ** 2, axis=axis)


def concentration_ratio(
    values: Float[Array, "*batch N"], k: int, axis: int = -1
) -> Float[Array, "*batch"]:
    """CR_k: combined share of the k largest (k static)."""
    s = jnp.sort(shares(values, axis), axis=axis)
    return jnp.sum(
        jax.lax.slice_in_dim(s, s.shape[axis] - min(k, s.shape[axis]), None, axis=axis % s.ndim),
        axis=axis,
    )


def gini(values: Float[Array, "*batch N"], axis: int = -1) -> Float[Array, "*batch"]:
    """Gini coefficient via sorted ranks (O(N log N)); shifted so negative profits are allowed."""
    v = jnp.moveaxis(values, axis, -1)
    if v.shape[-1] == 0:
        return jnp.zeros(v.shape[:-1], v.dtype)
    v = v - jnp.minimum(jnp.min(v, axis=-1, keepdims=True), 0.0)
    v = jnp.sort(v, axis=-1)
    n = v.shape[-1]
    rank = jnp.arange(1, n + 1, dtype=v.dtype)
    total = jnp.sum(v, axis=-1)
    return _safe_div(jnp.sum((2 * rank - n - 1) * v, axis=-1), n * total)


def volatility(prices: Float[Array, "*batch N"], axis: int = -1) -> Float[Array, "*batch"]:
    """Coefficient of variation std/mean."""
    return _safe_div(jnp.std(prices, axis=axis), jnp.abs(jnp.mean(prices, axis=axis)))


def peak_to_average(series: Float[Array, "*batch N"], axis: int = -1) -> Float[Array, "*batch"]:
    """Peak-to-average ratio of a (non-negative) series, e.g. community net import."""
    s = jnp.maximum(series, 0.0)
    if s.shape[axis] == 0:
        return jnp.zeros(jnp.sum(s, axis=axis).shape, s.dtype)
    return _safe_div(jnp.max(s, axis=axis), jnp.mean(s, axis=axis))


def battery_cycles(
    throughput_kwh: Float[Array, "*batch N"], capacity_kwh: Float[Array, "*batch N"]
) -> Float[Array, "*batch N"]:
    """Equivalent full cycles: throughput / (2 capacity)."""
    return _safe_div(throughput_kwh, 2.0 * capacity_kwh)


def correlation(a: Float[Array, "*batch T"], b: Float[Array, "*batch T"], axis: int = -1):
    """Pearson correlation of two series (0 if either is constant)."""
    x = a - jnp.mean(a, axis=axis, keepdims=True)
    y = b - jnp.mean(b, axis=axis, keepdims=True)
    den = jnp.sqrt(jnp.sum(x * x, axis=axis) * jnp.sum(y * y, axis=axis))
    return _safe_div(jnp.sum(x * y, axis=axis), den)


def lerner_index(
    receipts: Float[Array, "T N"],
    sold_kwh: Float[Array, "T N"],
    opportunity_price: Float[Array, "T ..."],
) -> Float[Array, " N"]:
    """Lerner index of each seller over an episode, ``(p - c) / p``: ``p`` its average realised
    P2P price (receipts / energy sold), ``c`` its volume-weighted opportunity cost
    (``opportunity_price``, currency/MWh, per step [T] or per step and agent [T, N]: the FiT it
    would get from the DSO, or a unit's marginal cost). Receipts in currency, energy in kWh; 0
    for an agent that sold nothing. Equals ``1 - sum_t sold c_t / (1000 sum_t receipts)``."""
    c = opportunity_price if opportunity_price.ndim == sold_kwh.ndim else opportunity_price[:, None]
    cost = jnp.sum(sold_kwh * c, axis=0) / 1000.0  # currency the DSO would have paid
    rec = jnp.sum(receipts, axis=0)
    return jnp.where(jnp.sum(sold_kwh, axis=0) > _EPS, 1.0 - _safe_div(cost, rec), 0.0)


def withholding_ratio(
    offered_kwh: Float[Array, "T N"], available_kwh: Float[Array, "T N"]
) -> Float[Array, " N"]:
    """Quantity withholding of each seller over an episode: ``1 - sum_t offered / sum_t
    available`` (available: its surplus after its own battery decision; 0 for an agent that
    never had a surplus)."""
    avail = jnp.sum(available_kwh, axis=0)
    return jnp.where(avail > _EPS, 1.0 - _safe_div(jnp.sum(offered_kwh, axis=0), avail), 0.0)


def group_mean(
    values: Float[Array, "*batch N"],
    groups: ArrayLike,
    num_groups: int,
    weights: Float[Array, "*batch N"] | None = None,
) -> Float[Array, "*batch G"]:
    """Per-group (weighted) mean of per-agent ``values``; ``groups`` [N] ints in
    ``[0, num_groups)`` (static count); 0 for an empty group or zero weight."""
    w = jnp.ones_like(values) if weights is None else jnp.broadcast_to(weights, values.shape)
    onehot = jax.nn.one_hot(jnp.asarray(groups), num_groups, dtype=values.dtype)  # [N, G]
    return _safe_div((values * w) @ onehot, w @ onehot)


def deadweight_loss(welfare: ArrayLike, optimum_welfare: ArrayLike) -> Array:
    """Welfare lost against the perfect-foresight optimum (currency; >= 0 up to rounding for
    any policy, since the optimum is an upper bound)."""
    return jnp.asarray(optimum_welfare) - jnp.asarray(welfare)


def lem_episode_kpis(
    info: dict[str, Any], reward: Float[Array, "T N"]
) -> dict[str, Float[Array, ""]]:
    """Episode KPIs from ``lem-v0`` infos stacked on a leading time axis [T, ...]."""
    demand = jnp.sum(info["demand_kwh"])
    sold = jnp.sum(info["p2p_sold_kwh"], axis=0)
    profit = jnp.sum(info["profit"], axis=0)
    vol = info["p2p_volume_kwh"]
    traded = vol > 0
    price_mean = _safe_div(jnp.sum(info["clearing_price"] * vol), jnp.sum(vol))
    price_std = jnp.sqrt(
        _safe_div(jnp.sum(vol * (info["clearing_price"] - price_mean) ** 2), jnp.sum(vol))
    )
    kpis = {
        "community_cost": jnp.sum(info["community_cost"]),
        "baseline_cost": jnp.sum(info["baseline_cost"]),
        "savings": jnp.sum(info["savings"]),
        "p2p_share": _safe_div(jnp.sum(vol), demand),
        "self_sufficiency": 1.0 - _safe_div(jnp.sum(info["import_kwh"]), demand),
        "mean_agent_return": jnp.mean(jnp.sum(reward, axis=0)),
        "clearing_price_mean": price_mean,
        "price_volatility": _safe_div(price_std, price_mean),
        "trading_steps": jnp.mean(traded.astype(jnp.float32)),
        "peak_to_average_import": peak_to_average(info["net_import_kwh"]),
        "hhi_sales": hhi(sold),
        "cr1_sales": concentration_ratio(sold, 1),
        "cr3_sales": concentration_ratio(sold, 3),
        "gini_profit": gini(profit),
        "curtailment_kwh": jnp.sum(info["curtail_kwh"]),
        "battery_throughput_kwh": jnp.sum(info["battery_throughput_kwh"]),
    }
    if "net_position_kwh" in info:  # the order book (lem-v0 >= this version)
        kpis.update(market_power_kpis(info))
    return kpis


def market_power_kpis(info: dict[str, Any]) -> dict[str, Float[Array, ""]]:
    """Community-level Lerner index (sales-weighted over sellers, against the FiT), quantity
    withholding (``1 - offered / surplus`` over all surpluses) and storage alignment (the
    correlation over steps between the community's net battery charging and its surplus
    before batteries: storage absorbing the community's surplus, not only its own) from
    ``lem-v0`` infos [T, ...]."""
    sold = info["p2p_sold_kwh"]
    receipts = jnp.maximum(-info["p2p_payment"], 0.0) * (sold > 0)
    lerner = lerner_index(receipts, sold, info["fit"])
    surplus = jnp.maximum(info["net_position_kwh"], 0.0)
    offered = jnp.where(info["net_position_kwh"] > 0, info["order_kwh"], 0.0)
    net_charge = jnp.sum(info["charge_kwh"] - info["discharge_kwh"], axis=-1)
    community_surplus = jnp.sum(info["pv_kwh"] - info["demand_kwh"], axis=-1)
    return {
        "lerner": _safe_div(jnp.sum(lerner * jnp.sum(sold, axis=0)), jnp.sum(sold)),
        "withholding": jnp.where(
            jnp.sum(surplus) > _EPS, 1.0 - _safe_div(jnp.sum(offered), jnp.sum(surplus)), 0.0
        ),
        "storage_alignment": correlation(net_charge, community_surplus),
    }


def gencos_episode_kpis(
    info: dict[str, Any], reward: Float[Array, "T N"], planner_info: dict[str, Any]
) -> dict[str, Array]:
    """GenCos KPIs from infos stacked on a leading time axis [T, ...].

    ``planner_info`` is the same episode (same loads) under truthful bids: the welfare reference.
    """
    p = info["p_gen"]
    return {
        "profit": jnp.sum(info["profit"], axis=0),
        "mean_return": jnp.mean(jnp.sum(reward, axis=0)),
        "welfare_ratio": _safe_div(jnp.sum(info["welfare"]), jnp.sum(planner_info["welfare"])),
        "price_volatility": volatility(info["system_lmp"]),
        "mean_system_lmp": jnp.mean(info["system_lmp"]),
        "dispatch_share": jnp.mean(shares(p), axis=0),
        "hhi_dispatch": jnp.mean(hhi(p)),
        "ramp_binding_rate": jnp.mean(info["ramp_binding"]),
        "shed_mwh": jnp.sum(info["shed_mw"]),
    }


def exploitability_proxy(
    best_response_profit: Float[Array, " N"], profit: Float[Array, " N"]
) -> Float[Array, ""]:
    """max_i [BR_i(pi_-i) - pi_i]: how much the best single deviator could gain."""
    return jnp.max(best_response_profit - profit)


def tradable_share(
    gen_kwh: Float[Array, "*batch T N"], demand_kwh: Float[Array, "*batch T N"]
) -> Float[Array, "*batch"]:
    """Share of demand that peers could trade with batteries idle:
    ``sum_t min(sum_i surplus_it, sum_i deficit_it) / sum_it demand_it`` over [..., T, N] arrays
    (a community where everyone sells or everyone buys at the same hour has no P2P market)."""
    x = gen_kwh - demand_kwh
    surplus = jnp.sum(jnp.maximum(x, 0.0), axis=-1)
    deficit = jnp.sum(jnp.maximum(-x, 0.0), axis=-1)
    tradable = jnp.sum(jnp.minimum(surplus, deficit), axis=-1)
    return _safe_div(tradable, jnp.sum(demand_kwh, axis=(-2, -1)))


def mean_pairwise_correlation(series: Float[Array, "T N"]) -> Float[Array, ""]:
    """Mean Pearson correlation over distinct pairs of the columns of ``series`` [T, N] (pairs
    with a constant column count as 0)."""
    x = series - jnp.mean(series, axis=0)
    norm = jnp.sqrt(jnp.sum(x * x, axis=0))
    unit = _safe_div(x, norm)
    corr = unit.T @ unit  # [N, N] of a small community's agents, outside any step
    n = series.shape[-1]
    off = jnp.sum(corr) - jnp.sum(jnp.diagonal(corr))
    return _safe_div(off, n * (n - 1))
