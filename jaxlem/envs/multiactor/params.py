"""``multiactor-v0`` params: the default market, random scenario banks and validation.

The default market scales with the agent counts: producers' capacities are shares of the total
mean demand of consumers and prosumers, so any count gives a market with something to trade.
Profiles come from the shipped profile bank (a real year of PV and BDEW demand); a scenario
draws its first day of the year, a wind series, sizes and initial suppliers.
``check_params`` rejects bad numbers in Python with a ``ValueError`` naming the field, the
value and the allowed range.
"""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from jaxlem import checks, profiles
from jaxlem.envs.multiactor.types import PERSONAS, MAParams

# producer archetypes, cycled over the producers: (name, renewable, PV weight, fuel
# currency/MWh, t CO2/MWh, minimum share, capacity as a share of the total mean demand)
ARCHETYPES = (
    ("gas", 0.0, 0.0, 90.0, 0.40, 0.2, 0.7),
    ("coal", 0.0, 0.0, 60.0, 0.90, 0.3, 0.5),
    ("solar", 1.0, 1.0, 5.0, 0.0, 0.0, 0.8),
    ("wind", 1.0, 0.0, 5.0, 0.0, 0.0, 0.5),
)
CONSUMER_KINDS = ("h0", "h0", "g0", "g1", "h0", "g4")  # cycled over consumers
START_DAY = 151  # default episode: from 1 June of the bank's year


def producer_archetypes(num_producers: int) -> tuple[str, ...]:
    """Names of the producers' archetypes, in agent order."""
    return tuple(ARCHETYPES[i % len(ARCHETYPES)][0] for i in range(num_producers))


def profile_bank(env: Any) -> profiles.ProfileBank:
    return profiles.load_bank(env.profile_bank, env.dt_h)


def _episode_profiles(env: Any, day: jax.Array) -> tuple[jax.Array, jax.Array]:
    """PV [Kpv, T] and demand [Kd, T] per-unit profiles of the episode starting on ``day``."""
    bank = profile_bank(env)
    spd = bank.steps_per_day
    start = jnp.asarray(day, jnp.int32) * spd
    pv = jax.lax.dynamic_slice_in_dim(jnp.asarray(bank.pv), start, env.num_steps, axis=1)
    dem = jax.lax.dynamic_slice_in_dim(jnp.asarray(bank.demand), start, env.num_steps, axis=1)
    return pv, dem


def _wind(key: jax.Array, num_steps: int, dt_h: float) -> jax.Array:
    """A wind availability series in [0, 1]: an AR(1) around 0.35 with a ~12 h memory."""
    phi = float(np.exp(-dt_h / 12.0))
    eps = jax.random.normal(key, (num_steps,)) * 0.25 * np.sqrt(1.0 - phi**2)
    x0 = jax.random.normal(jax.random.fold_in(key, 1)) * 0.25

    def ar(x, e):
        x = phi * x + e
        return x, x

    _, xs = jax.lax.scan(ar, x0, eps)
    return jnp.clip(0.35 + xs, 0.0, 1.0).astype(jnp.float32)


def default_params(env: Any) -> MAParams:
    """The default market (deterministic: day ``START_DAY``, a fixed wind series)."""
    return _build(env, None)


def sample_params(env: Any, key: jax.Array, num: int) -> MAParams:
    """A bank of ``num`` scenarios: random first day, wind, sizes and initial suppliers."""
    return jax.vmap(lambda k: _build(env, k))(jax.random.split(key, num))


def _build(env: Any, key: jax.Array | None) -> MAParams:
    f32 = jnp.float32
    p, u, c, r = env.num_producers, env.num_utilities, env.num_consumers, env.num_prosumers
    bank = profile_bank(env)
    demand_row = {k: i for i, k in enumerate(bank.demand_kinds)}
    cons_kind = jnp.asarray([demand_row[CONSUMER_KINDS[i % 6]] for i in range(c)], jnp.int32)
    pros_kind = jnp.full((r,), demand_row["h0"], jnp.int32)
    pros_pv_kind = jnp.asarray(np.arange(r) % len(bank.pv_kinds), jnp.int32)
    arch = np.asarray([ARCHETYPES[i % len(ARCHETYPES)][1:] for i in range(p)], np.float32)
    if key is None:
        day = jnp.asarray(START_DAY, jnp.int32)
        wind = _wind(jax.random.PRNGKey(7), env.num_steps, env.dt_h)
        cons_kw = jnp.linspace(0.6, 1.4, c, dtype=f32) if c else jnp.zeros((0,), f32)
        pv_kw = jnp.linspace(3.0, 7.0, r, dtype=f32) if r else jnp.zeros((0,), f32)
        pros_kw = jnp.linspace(0.7, 1.1, r, dtype=f32) if r else jnp.zeros((0,), f32)
        cap_jitter = jnp.ones((p,), f32)
        supplier0 = jnp.arange(c + r, dtype=jnp.int32) % u
    else:
        ks = jax.random.split(key, 7)
        last = 365 - env.num_days
        day = jax.random.randint(ks[0], (), 0, last + 1, jnp.int32)
        wind = _wind(ks[1], env.num_steps, env.dt_h)
        cons_kw = jax.random.uniform(ks[2], (c,), f32, 0.5, 1.5)
        pv_kw = jax.random.uniform(ks[3], (r,), f32, 2.0, 8.0)
        pros_kw = jax.random.uniform(ks[4], (r,), f32, 0.6, 1.2)
        cap_jitter = jax.random.uniform(ks[5], (p,), f32, 0.8, 1.2)
        supplier0 = jax.random.randint(ks[6], (c + r,), 0, u, jnp.int32)
    pv_unit, demand_unit = _episode_profiles(env, day)
    total_kw = jnp.sum(cons_kw) + jnp.sum(pros_kw)
    per_archetype = max(1.0, p / len(ARCHETYPES))
    capacity = jnp.asarray(arch[:, 5]) * total_kw * cap_jitter / per_archetype
    battery = jnp.where(jnp.arange(r) % 2 == 0, 2.0 * pv_kw, 0.0).astype(f32)
    return MAParams(
        pv_unit=pv_unit,
        demand_unit=demand_unit,
        wind_unit=wind,
        demand_noise=f32(0.05),
        prod_capacity_kw=capacity.astype(f32),
        prod_pv_weight=jnp.asarray(arch[:, 1]),
        prod_renewable=jnp.asarray(arch[:, 0]),
        prod_fuel_cost=jnp.asarray(arch[:, 2]),
        prod_carbon=jnp.asarray(arch[:, 3]),
        prod_min_share=jnp.asarray(arch[:, 4]),
        prod_capex_per_kw=jnp.where(jnp.asarray(arch[:, 0]) > 0, 4.0, 3.0).astype(f32),
        prod_max_invest_kw=(0.1 * capacity + 1.0).astype(f32),
        build_delay_days=jnp.asarray(min(2, env.max_build_delay), jnp.int32),
        carbon_price=f32(50.0),
        persona=jnp.arange(u, dtype=jnp.int32) % len(PERSONAS),
        quota=jnp.full((u,), 0.3, f32),
        persona_green=jnp.asarray([30.0, 10.0, 0.0], f32),
        persona_fair=jnp.asarray([0.5, 0.2, 0.0], f32),
        retail_min=f32(0.0),
        retail_max=f32(450.0),
        cons_demand_kw=cons_kw,
        cons_kind=cons_kind,
        elasticity=jnp.full((c,), 0.3, f32),
        demand_floor=f32(0.6),
        ref_price=f32(250.0),
        switching_cost=f32(2.0),
        supplier0=supplier0,
        pros_pv_kw=pv_kw,
        pros_pv_kind=pros_pv_kind,
        pros_demand_kw=pros_kw,
        pros_kind=pros_kind,
        battery_kwh=battery,
        battery_kw=0.5 * battery,
        battery_eta=jnp.full((r,), 0.95, f32),
        soc0=f32(0.5),
        voll=f32(3000.0),
        balancing_price=f32(400.0),
        spill_price=f32(30.0),
        price_cap=f32(500.0),
        regulator_on=f32(1.0),
        fine_max=f32(1.0),
        gouge_threshold=f32(0.5),
        subsidy_max=f32(50.0),
        invest_subsidy_max=f32(2.0),
        quota_fine=f32(100.0),
        cash0=jnp.asarray([100.0, 100.0, 0.0, 0.0, 0.0], f32),
        credit=jnp.asarray([200.0, 200.0, 100.0, 100.0, 1e9], f32),
        reward_scale=jnp.asarray([0.1, 0.1, 1.0, 1.0, 0.02], f32),
    )


def check_params(env: Any, params: MAParams) -> None:
    """Reject bad numbers in Python with a ValueError naming field, value and allowed range."""
    p = jax.tree_util.tree_map(np.asarray, params)
    counts = {
        "prod": ("num_producers", env.num_producers),
        "util": ("num_utilities", env.num_utilities),
        "cons": ("num_consumers", env.num_consumers),
        "pros": ("num_prosumers", env.num_prosumers),
    }
    per_agent = {
        "prod_capacity_kw": "prod",
        "prod_pv_weight": "prod",
        "prod_renewable": "prod",
        "prod_fuel_cost": "prod",
        "prod_carbon": "prod",
        "prod_min_share": "prod",
        "prod_capex_per_kw": "prod",
        "prod_max_invest_kw": "prod",
        "persona": "util",
        "quota": "util",
        "cons_demand_kw": "cons",
        "cons_kind": "cons",
        "elasticity": "cons",
        "pros_pv_kw": "pros",
        "pros_pv_kind": "pros",
        "pros_demand_kw": "pros",
        "pros_kind": "pros",
        "battery_kwh": "pros",
        "battery_kw": "pros",
        "battery_eta": "pros",
    }
    for name, group in per_agent.items():
        arr = np.asarray(getattr(p, name))
        count_name, count = counts[group]
        if arr.shape[-1:] != (count,):
            raise ValueError(
                f"{name}: shape {arr.shape}; allowed: last axis = {count_name} = {count}"
            )
    n_sup = env.num_consumers + env.num_prosumers
    if p.supplier0.shape[-1:] != (n_sup,):
        raise ValueError(f"supplier0: shape {p.supplier0.shape}; allowed: last axis = {n_sup}")
    for name in ("pv_unit", "demand_unit", "wind_unit"):
        arr = checks.check_range(name, getattr(p, name), 0.0, np.inf, hi_open=True)
        if arr.shape[-1] != env.num_steps:
            raise ValueError(
                f"{name}: profile length {arr.shape[-1]}; allowed: num_steps = {env.num_steps}"
            )
    checks.check_range("wind_unit", p.wind_unit, 0.0, 1.0)
    checks.check_range("cons_kind", p.cons_kind, 0, p.demand_unit.shape[-2] - 1)
    checks.check_range("pros_kind", p.pros_kind, 0, p.demand_unit.shape[-2] - 1)
    checks.check_range("pros_pv_kind", p.pros_pv_kind, 0, p.pv_unit.shape[-2] - 1)
    checks.check_range("demand_noise", p.demand_noise, 0.0, 1.0)
    for name in ("prod_capacity_kw", "prod_max_invest_kw", "cons_demand_kw", "pros_pv_kw"):
        checks.check_range(name, getattr(p, name), 0.0, np.inf, hi_open=True)
    for name in ("pros_demand_kw", "battery_kwh", "battery_kw"):
        checks.check_range(name, getattr(p, name), 0.0, np.inf, hi_open=True)
    for name in ("prod_pv_weight", "prod_renewable", "prod_min_share", "quota", "soc0"):
        checks.check_range(name, getattr(p, name), 0.0, 1.0)
    checks.check_range("battery_eta", p.battery_eta, 0.0, 1.0, lo_open=True)
    checks.check_range("elasticity", p.elasticity, 0.0, 10.0)
    checks.check_range("demand_floor", p.demand_floor, 0.0, 1.0)
    checks.check_range("build_delay_days", p.build_delay_days, 0, env.max_build_delay)
    checks.check_range("persona", p.persona, 0, len(PERSONAS) - 1)
    checks.check_range("supplier0", p.supplier0, 0, env.num_utilities)
    for name in ("persona_green", "persona_fair"):
        arr = checks.check_range(name, getattr(p, name), 0.0, np.inf, hi_open=True)
        if arr.shape[-1:] != (len(PERSONAS),):
            raise ValueError(f"{name}: shape {arr.shape}; allowed: last axis = {len(PERSONAS)}")
    for name in ("cash0", "credit", "reward_scale"):
        arr = np.asarray(getattr(p, name))
        if arr.shape[-1:] != (5,):
            raise ValueError(f"{name}: shape {arr.shape}; allowed: last axis = 5 (one per kind)")
    checks.check_range("cash0", p.cash0, -1e9, 1e9)
    checks.check_range("credit", p.credit, 0.0, 1e12)
    checks.check_order("-credit", -p.credit, "cash0", p.cash0)
    checks.check_range("reward_scale", p.reward_scale, 0.0, np.inf, lo_open=True, hi_open=True)
    nonneg = (
        "prod_fuel_cost", "prod_carbon", "prod_capex_per_kw", "carbon_price", "ref_price",
        "switching_cost", "voll", "spill_price", "fine_max", "gouge_threshold", "subsidy_max",
        "invest_subsidy_max", "quota_fine",
    )  # fmt: skip
    for name in nonneg:
        checks.check_range(name, getattr(p, name), 0.0, np.inf, hi_open=True)
    checks.check_range("retail_min", p.retail_min, 0.0, np.inf, hi_open=True)
    checks.check_order("retail_min", p.retail_min, "retail_max", p.retail_max, strict=True)
    checks.check_range("price_cap", p.price_cap, 0.0, np.inf, lo_open=True, hi_open=True)
    checks.check_range("balancing_price", p.balancing_price, 0.0, np.inf, hi_open=True)
    checks.check_order("spill_price", p.spill_price, "balancing_price", p.balancing_price)
    checks.check_order("prod_fuel_cost", p.prod_fuel_cost, "price_cap", p.price_cap[..., None])
    checks.check_order("retail_max", p.retail_max, "voll", p.voll)
    checks.check_range("regulator_on", p.regulator_on, 0.0, 1.0)
