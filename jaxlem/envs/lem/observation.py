"""The ``lem-v0`` observation: its named columns and the function that builds it.

Every feature is of order one: energies are divided by the site's size ``(pv + demand +
dispatchable + battery kW) * dt`` (kWh per step), prices by ``max_price``. The columns are listed
once, here; the scripted policies index them by name (``obs[:, Col.net]``) and the docs render
the same list.
"""

from __future__ import annotations

from enum import IntEnum
from typing import TYPE_CHECKING, Any

import jax
import jax.numpy as jnp
from jaxtyping import Array, Float

from jaxlem.envs.base import Column, Obs
from jaxlem.envs.lem.types import EPS, LEMParams, LEMState

BASE_COLUMNS = (
    Column("hour_sin", "hour of day, sine"),
    Column("hour_cos", "hour of day, cosine"),
    Column("progress", "episode progress t / T"),
    Column("pv", "own PV energy this step / size"),
    Column("demand", "own demand this step / size"),
    Column("pv_next", "noisy forecast of own PV at the next step / size"),
    Column("demand_next", "noisy forecast of own demand at the next step / size"),
    Column("net", "own net position (PV + dispatchable - demand) / size"),
    Column("soc", "battery state of charge (0 without a battery)"),
    Column("room", "energy the battery can still take up to soc_max / size"),
    Column("fit", "feed-in tariff now / max_price"),
    Column("utility", "utility price now / max_price"),
    Column("fit_next", "feed-in tariff at the next step / max_price"),
    Column("utility_next", "utility price at the next step / max_price"),
    Column("last_price", "last clearing price / max_price"),
    Column("last_volume", "last P2P volume / community demand per step"),
    Column("own_matched", "own last P2P energy / size"),
    Column("own_price", "own last average P2P price / max_price"),
    Column("reputation", "reputation in [0, 1]"),
    Column("has_battery", "1 if the site has a battery"),
    Column("day_sin", "day of the year, sine"),
    Column("day_cos", "day of the year, cosine"),
    Column("weekend", "1 on Saturdays and Sundays"),
)
AHEAD_COLUMNS = (
    Column("utility_max_ahead", "highest utility price over the rest of the episode / max_price"),
    Column("utility_min_ahead", "lowest utility price over the rest of the episode / max_price"),
    Column("fit_max_ahead", "highest feed-in tariff over the rest of the episode / max_price"),
    Column("to_peak", "steps until the highest utility price ahead / T"),
    Column("pv_rest", "noisy forecast of own PV over the rest of the episode / (size T / 4)"),
    Column(
        "demand_rest", "noisy forecast of own demand over the rest of the episode / (size T / 4)"
    ),
)
GLOBAL_COLUMNS = (
    Column("community_net", "community net position / community size"),
    Column("supply_demand", "P2P supply / P2P demand of the last clearing, clipped to [0, 10]"),
    Column("community_soc", "mean state of charge over the sites"),
    Column("community_surplus", "community PV - demand / community size"),
)

# column indices by name, for code that reads observations (policies, tests)
if TYPE_CHECKING:  # a type checker cannot enumerate the members of an enum built from a list
    Col: Any
else:
    Col = IntEnum("Col", [(c.name, i) for i, c in enumerate(BASE_COLUMNS + AHEAD_COLUMNS)])


def columns(day_ahead_obs: bool, global_obs: bool) -> tuple[Column, ...]:
    """The observation columns under these static settings, in order."""
    return (
        BASE_COLUMNS
        + (AHEAD_COLUMNS if day_ahead_obs else ())
        + (GLOBAL_COLUMNS if global_obs else ())
    )


def calendar(env: Any, state: LEMState) -> tuple[jax.Array, jax.Array, jax.Array]:
    """Day of the year as sin/cos (seasons) and a weekend flag, at the current step."""
    steps_per_day = max(round(24.0 / env.dt_h), 1)
    doy = (state.day + jnp.minimum(state.t, env.num_steps - 1) // steps_per_day) % 365
    angle = 2 * jnp.pi * doy.astype(jnp.float32) / 365.0
    weekday0 = env.bank.weekday0 if env.bank is not None else 0
    weekend = ((weekday0 + doy) % 7 >= 5).astype(jnp.float32)
    return jnp.sin(angle), jnp.cos(angle), weekend


def observe(
    env: Any,
    state: LEMState,
    params: LEMParams,
    net_x: Float[Array, ""],
    sd_ratio: Float[Array, ""],
) -> Obs:
    """Per-agent observation [N, obs_dim] of ``state`` (columns as :func:`columns`);
    ``net_x`` and ``sd_ratio`` are the community features of the last clearing."""
    dt = env.dt_h
    t_len = env.num_steps
    t = jnp.minimum(state.t, t_len - 1)
    t_next = jnp.minimum(state.t + 1, t_len - 1)
    hour = (t.astype(jnp.float32) * dt) % 24.0
    size = env.site_size(params) + EPS
    pmax = params.max_price
    n = env.num_agents
    cap = jnp.maximum(params.bat_kwh, EPS)
    has_bat = params.bat_kwh > 0
    ones = jnp.ones((n,))
    cols = [
        ones * jnp.sin(2 * jnp.pi * hour / 24.0),
        ones * jnp.cos(2 * jnp.pi * hour / 24.0),
        ones * state.t / t_len,
        state.gen / size,
        state.demand / size,
        state.forecast_gen / size,
        state.forecast_demand / size,
        (state.gen + params.disp_kw * dt - state.demand) / size,
        jnp.where(has_bat, state.energy / cap, 0.0),
        jnp.where(has_bat, (params.soc_max * params.bat_kwh - state.energy) / size, 0.0),
        ones * state.fit[t] / pmax,
        ones * state.utility[t] / pmax,
        ones * state.fit[t_next] / pmax,
        ones * state.utility[t_next] / pmax,
        ones * state.last_price / pmax,
        ones * state.last_volume / (jnp.sum(params.demand_kw) * dt + EPS),
        state.last_matched / size,
        state.last_own_price / pmax,
        state.reputation,
        has_bat.astype(jnp.float32),
        *(ones * c for c in calendar(env, state)),
    ]
    if env.day_ahead_obs:
        ahead = jnp.arange(t_len) > state.t  # the steps after this one
        u_ahead = jnp.where(ahead, state.utility, -jnp.inf)
        u_max = jnp.max(u_ahead)
        has_ahead = jnp.any(ahead)
        u_max = jnp.where(has_ahead, u_max, state.utility[t])
        u_min = jnp.where(has_ahead, jnp.min(jnp.where(ahead, state.utility, jnp.inf)), u_max)
        f_max = jnp.where(has_ahead, jnp.max(jnp.where(ahead, state.fit, -jnp.inf)), 0.0)
        to_peak = jnp.argmax(u_ahead >= u_max) - state.t  # steps until the highest price
        cols += [
            ones * u_max / pmax,
            ones * u_min / pmax,
            ones * jnp.where(has_ahead, f_max, state.fit[t]) / pmax,
            ones * jnp.where(has_ahead, to_peak, 0) / t_len,
            state.forecast_gen_rest / (size * jnp.maximum(t_len * 0.25, 1.0)),
            state.forecast_demand_rest / (size * jnp.maximum(t_len * 0.25, 1.0)),
        ]
    if env.global_obs:
        total = (jnp.sum(params.pv_kw + params.demand_kw) * dt) + EPS
        cols += [
            ones * net_x / total,
            ones * jnp.clip(sd_ratio, 0.0, 10.0),
            ones * jnp.mean(state.energy / cap * has_bat),
            ones * jnp.sum(state.gen - state.demand) / total,
        ]
    # stacked as rows then transposed: XLA:CPU's concatenation along the minor axis was most of
    # this function's time
    obs = jnp.stack(cols, axis=0).T
    return jnp.clip(jnp.where(jnp.isfinite(obs), obs, 0.0), -1e3, 1e3).astype(jnp.float32)
