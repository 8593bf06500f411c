"""The exogenous side of a ``lem-v0`` episode: PV, demand, their forecasts and the DSO tariff.

None of it depends on the agents' actions. At reset the episode draws one day of the year for the
community, each agent's PV orientation and demand kind (where params leave them random), daily
factors and the tariff; every step then draws the realised PV and demand of the step and noisy
forecasts of the next step and of the rest of the episode (kWh).
"""

from __future__ import annotations

from typing import Any, NamedTuple, TypeAlias

import jax
import jax.numpy as jnp
from jaxtyping import Array, Float, Int

from jaxlem import profiles
from jaxlem.envs.lem.types import LEMParams


class Episode(NamedTuple):
    """What a reset draws: kinds and day, daily factors, the tariff (currency/MWh)."""

    pv_kind: jax.Array  # [N] PV orientation in use
    demand_kind: jax.Array  # [N] demand kind in use
    day: jax.Array  # int32 day of the year of the first step
    pv_day: jax.Array  # [N] daily PV factor
    demand_day: jax.Array  # [N] daily demand factor
    fit: jax.Array  # [T] feed-in tariff
    utility: jax.Array  # [T] utility price


# (pv_kind [N], demand_kind [N], day): the kinds in use and the episode's first day
Kinds: TypeAlias = tuple[Int[Array, " N"], Int[Array, " N"], Int[Array, ""]]
PerAgent: TypeAlias = Float[Array, " N"]


def draw_episode(env: Any, key: jax.Array, params: LEMParams) -> tuple[Episode, jax.Array]:
    """The reset's draws, and the key left for the first step's PV and demand."""
    n, t_len = env.num_agents, env.num_steps
    k_kind, k_day, k_tariff, k_draw = jax.random.split(key, 4)
    n_pv, n_dem = num_kinds(env, params)
    # two random words per reset: one seeds a per-agent integer hash that picks random
    # kinds (a per-agent PRNG draw would cost as much as the rest of the reset), one the day
    words = jax.random.bits(k_kind, (2,), jnp.uint32)
    h = hash32(words[0] ^ (jnp.arange(n, dtype=jnp.uint32) * jnp.uint32(0x9E3779B9)))
    rand_pv = ((h & 0xFFFF) % jnp.uint32(n_pv)).astype(jnp.int32)
    rand_dem = ((h >> 16) % jnp.uint32(n_dem)).astype(jnp.int32)
    pv_kind = jnp.where(params.pv_kind >= 0, params.pv_kind, rand_pv)
    demand_kind = jnp.where(params.demand_kind >= 0, params.demand_kind, rand_dem)
    u_day = (words[1] >> 8).astype(jnp.float32) * (1.0 / (1 << 24))  # uniform in [0, 1)
    day = jnp.floor(params.day_lo + u_day * (params.day_hi - params.day_lo))
    day = jnp.clip(day, 0, 364).astype(jnp.int32)
    # the bank's weather is real: no extra daily cloud factor on top of it
    cloud = params.cloudiness if env.bank is None else 0.0 * params.cloudiness
    pv_day, dem_day = profiles.draw_day_factors(k_day, n, cloud, params.demand_day_std)
    if env.tariff == "fixed":
        fit, util = params.fit_profile, params.utility_profile
    else:
        fit, util = profiles.tou_tariff(
            k_tariff,
            t_len,
            env.dt_h,
            params.min_price,
            params.max_price,
            params.tariff_gap,
            params.tariff_jitter,
        )
    return Episode(pv_kind, demand_kind, day, pv_day, dem_day, fit, util), k_draw


def num_kinds(env: Any, params: LEMParams) -> tuple[int, int]:
    if env.bank is not None:
        return len(env.bank.pv_kinds), len(env.bank.demand_kinds)
    return params.pv_table.shape[-2], params.demand_table.shape[-2]


def unit_profiles(
    env: Any, kinds: Kinds, t_now: Int[Array, ""], t_next: Int[Array, ""], params: LEMParams
) -> tuple[PerAgent, ...]:
    """Per-unit PV and demand [N] of every agent at the episode steps ``t_now`` and
    ``t_next``: ``(pv_now, demand_now, pv_next, demand_next)``. Every agent shares the day,
    so the values of all kinds at the two steps are one contiguous slice of the time-major
    bank; each agent then takes its kind's entry from that short vector."""
    pv_kind, demand_kind, day = kinds
    if env.bank is None:
        pv_t, dem_t = params.pv_table, params.demand_table  # [K, T]
        pv_now, pv_next = pv_t[:, t_now], pv_t[:, t_next]
        dem_now, dem_next = dem_t[:, t_now], dem_t[:, t_next]
        pv_kind, demand_kind = pv_kind % pv_t.shape[0], demand_kind % dem_t.shape[0]
    else:
        n_pv, steps = env.bank.pv.shape
        start = (day * env.bank.steps_per_day + t_now) % steps
        w = jax.lax.dynamic_slice_in_dim(jnp.asarray(env.bank_rows), start, 2)  # [2, K]
        nxt = jnp.where(t_next > t_now, w[1], w[0])
        pv_now, pv_next, dem_now, dem_next = w[0, :n_pv], nxt[:n_pv], w[0, n_pv:], nxt[n_pv:]

    return tuple(
        jnp.take(values, kind, mode="clip")
        for values, kind in (
            (pv_now, pv_kind),
            (dem_now, demand_kind),
            (pv_next, pv_kind),
            (dem_next, demand_kind),
        )
    )


def rest_profiles(
    env: Any, kinds: Kinds, t: Int[Array, ""], params: LEMParams
) -> tuple[PerAgent, PerAgent]:
    """Per-unit PV and demand [N] summed over the episode's steps after ``t`` (the
    day-ahead forecast's expected shape; zeros with ``day_ahead_obs`` off)."""
    pv_kind, demand_kind, day = kinds
    if not env.day_ahead_obs:
        z = jnp.zeros(pv_kind.shape, jnp.float32)
        return z, z
    later = (jnp.arange(env.num_steps) > t).astype(jnp.float32)  # [T]
    if env.bank is None:
        pv_rest = params.pv_table @ later
        dem_rest = params.demand_table @ later
        pv_kind, demand_kind = pv_kind % pv_rest.shape[0], demand_kind % dem_rest.shape[0]
    else:
        n_pv, steps = env.bank.pv.shape
        idx = (day * env.bank.steps_per_day + jnp.arange(env.num_steps)) % steps
        rest = later @ jnp.take(jnp.asarray(env.bank_rows), idx, axis=0)  # [K]
        pv_rest, dem_rest = rest[:n_pv], rest[n_pv:]
    return (
        jnp.take(pv_rest, pv_kind, mode="clip"),
        jnp.take(dem_rest, demand_kind, mode="clip"),
    )


def draw_step(
    env: Any,
    key: jax.Array,
    t: Int[Array, ""],
    kinds: Kinds,
    pv_day: PerAgent,
    dem_day: PerAgent,
    params: LEMParams,
) -> tuple[PerAgent, PerAgent, PerAgent, PerAgent, tuple[PerAgent, PerAgent]]:
    """Realised PV and demand energy (kWh) of step ``t`` for every agent, noisy forecasts
    of step ``t + 1`` (its expected value times ``1 + forecast_noise * N(0,1)``) and of the
    totals over the steps after ``t`` (same noise model)."""
    k_gen, k_dem, k_fg, k_fd, k_rest = jax.random.split(key, 5)
    dt = env.dt_h
    t_now = jnp.minimum(t, env.num_steps - 1)
    t_next = jnp.minimum(t + 1, env.num_steps - 1)
    pv_now, dem_now, pv_next, dem_next = unit_profiles(env, kinds, t_now, t_next, params)
    pv_u = profiles.sample_step(k_gen, pv_now, pv_day, params.pv_noise)
    dem_u = profiles.sample_step(k_dem, dem_now, dem_day, params.demand_noise)
    fc_pv = profiles.sample_step(k_fg, pv_next, pv_day, params.forecast_noise)
    fc_dem = profiles.sample_step(k_fd, dem_next, dem_day, params.forecast_noise)
    pv_rest, dem_rest = rest_profiles(env, kinds, t, params)
    if env.day_ahead_obs:
        k_rg, k_rd = jax.random.split(k_rest)
        pv_rest = profiles.sample_step(k_rg, pv_rest, pv_day, params.forecast_noise)
        dem_rest = profiles.sample_step(k_rd, dem_rest, dem_day, params.forecast_noise)
    return (
        pv_u * params.pv_kw * dt,
        dem_u * params.demand_kw * dt,
        fc_pv * params.pv_kw * dt,
        fc_dem * params.demand_kw * dt,
        (pv_rest * params.pv_kw * dt, dem_rest * params.demand_kw * dt),
    )


def hash32(x: jax.Array) -> jax.Array:
    """A fast, well-mixed 32-bit integer hash (lowbias32): uniform bits from distinct inputs."""
    x = x ^ (x >> 16)
    x = x * jnp.uint32(0x7FEB352D)
    x = x ^ (x >> 15)
    x = x * jnp.uint32(0x846CA68B)
    return x ^ (x >> 16)
