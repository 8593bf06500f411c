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
    return {
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
