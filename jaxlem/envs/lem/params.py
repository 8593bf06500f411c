"""``lem-v0`` params: the defaults of every number that is not per agent, and validation.

``check_params`` rejects bad numbers in Python, before anything compiles, with a ``ValueError``
naming the field, the value and the allowed range.
"""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from jaxlem import checks, profiles
from jaxlem.envs.lem.exogenous import num_kinds
from jaxlem.envs.lem.types import LEMParams
from jaxlem.grid import Network, distance_km, load_case, make_topology


def global_defaults(env: Any) -> dict[str, Any]:
    t, dt = env.num_steps, env.dt_h
    f32 = np.float32
    dc = env.grid_mode == "dcopf"
    net = feeder(env) if dc else None
    fit0, util0 = (
        np.asarray(v, f32)
        for v in profiles.tou_tariff(jax.random.PRNGKey(0), t, dt, 30.0, 300.0, 0.05, 0.0)
    )
    pv_table, demand_table = profiles.synthetic_tables(t, dt)
    return dict(
        pv_table=pv_table,
        demand_table=demand_table,
        day_lo=f32(0.0),
        day_hi=f32(365.0),
        cloudiness=f32(0.4),
        demand_day_std=f32(0.15),
        pv_noise=f32(0.1),
        demand_noise=f32(0.1),
        forecast_noise=f32(0.05),
        min_price=f32(30.0),
        max_price=f32(300.0),
        tariff_gap=f32(0.05),
        tariff_jitter=f32(1.0),
        fit_profile=fit0,
        utility_profile=util0,
        k=f32(0.5),
        reputation_rate=f32(0.1),
        p2p_fee=f32(0.0),
        p2p_fee_per_km=f32(0.0),
        loss_per_km=f32(0.01),
        loss_cap=f32(0.2),
        dynamic_tariff_slope=f32(0.0),
        imbalance_penalty=f32(0.0),
        shed_penalty=f32(1000.0),
        import_limit_kw=f32(np.inf),
        export_limit_kw_total=f32(np.inf),
        feeder_limit_kw=np.full((env.num_feeders,), np.inf, f32),
        p2p_limit_kw=f32(np.inf),
        node_distance_km=np.zeros((1, 1), f32) if net is None else distance_km(net).astype(f32),
        reward_scale=f32(1.0),
        coop_alpha=f32(0.0),
        terminal_soc_value=f32(0.0),
        **(dict(network=net, line_limit_kw=f32(np.inf), curtail_cost=f32(10.0)) if dc else {}),
    )


RADIAL_BRANCH_KM = 0.5  # branch length of generated radial feeders


def feeder_case(name: str) -> Network:
    """A bundled case by name, or a generated radial tree ``radial-<buses>[-<seed>]`` (each
    bus attached to a uniformly drawn earlier one, supply point at bus 0, branches of
    ``RADIAL_BRANCH_KM``)."""
    if not name.startswith("radial-"):
        try:
            return load_case(name)
        except ValueError as e:
            raise ValueError(
                f"grid_case: got {name!r}; allowed: a bundled case or 'radial-<buses>[-<seed>]' "
                f"({e})"
            ) from None
    parts = name.split("-")[1:]
    ok = 1 <= len(parts) <= 2 and all(p.isdigit() for p in parts) and int(parts[0]) >= 2
    if not ok:
        raise ValueError(
            f"grid_case: got {name!r}; allowed: a bundled case or 'radial-<buses>[-<seed>]' "
            "with buses >= 2"
        )
    seed = int(parts[1]) if len(parts) == 2 else 0
    return make_topology("radial", int(parts[0]), seed=seed, length_km=RADIAL_BRANCH_KM)


def feeder(env: Any) -> Network:
    """The dcopf feeder: bundled case or generated tree (``feeder_case``), loads zeroed (the
    agents are the load), supply point able to take reverse flow."""
    net = feeder_case(env.grid_case)
    return net.replace(
        bus_load_mw=jnp.zeros_like(net.bus_load_mw),
        gen_pmin_mw=-jnp.maximum(net.gen_pmax_mw, 0.0),
    )


def spread_nodes(env: Any, base: dict[str, Any], overrides: dict[str, Any]) -> dict[str, Any]:
    """dcopf: agents spread over the feeder's buses other than the supply point."""
    if env.grid_mode != "dcopf" or "node" in overrides:
        return base
    nb = feeder_case(env.grid_case).num_buses
    node = 1 + np.arange(env.num_agents) % max(nb - 1, 1)
    return {
        **base,
        "node": jnp.broadcast_to(jnp.asarray(node, jnp.int32), np.shape(base["node"])),
    }


def check_params(env: Any, params: LEMParams) -> None:
    """Reject bad numbers in Python with a ValueError naming field, value and allowed range."""

    p = jax.tree_util.tree_map(np.asarray, params)
    n = env.num_agents
    for name in ("pv_kw", "demand_kw", "disp_kw", "bat_kwh", "bat_kw"):
        arr = checks.check_range(name, getattr(p, name), 0.0, np.inf, hi_open=True)
        if arr.shape[-1:] != (n,):
            raise ValueError(f"{name}: shape {arr.shape}; allowed: last axis = num_agents = {n}")
    checks.check_range("disp_cost", p.disp_cost, 0.0)
    checks.check_range("soc_min", p.soc_min, 0.0, 1.0)
    checks.check_range("soc_max", p.soc_max, 0.0, 1.0)
    checks.check_order("soc_min", p.soc_min, "soc_max", p.soc_max)
    checks.check_range("soc_init", p.soc_init, 0.0, 1.0)
    checks.check_range("eta_c", p.eta_c, 0.0, 1.0, lo_open=True)
    checks.check_range("eta_d", p.eta_d, 0.0, 1.0, lo_open=True)
    checks.check_range("self_discharge", p.self_discharge, 0.0, 1.0)
    checks.check_range("degradation_cost", p.degradation_cost, 0.0)
    checks.check_range("export_limit_kw", p.export_limit_kw, 0.0)
    m = p.node_distance_km.shape[-1]
    checks.check_range("node", p.node, 0, m - 1)
    checks.check_range("feeder", p.feeder, 0, env.num_feeders - 1)
    n_pv, n_dem = num_kinds(env, p)
    checks.check_range("pv_kind", p.pv_kind, -1, n_pv - 1)
    checks.check_range("demand_kind", p.demand_kind, -1, n_dem - 1)
    checks.check_range("day_lo", p.day_lo, 0.0, 364.0)
    checks.check_range("day_hi", p.day_hi, 1.0, 365.0)
    checks.check_order("day_lo", p.day_lo, "day_hi", p.day_hi, strict=True)
    for name in ("pv_table", "demand_table"):
        arr = checks.check_range(name, getattr(p, name), 0.0, np.inf, hi_open=True)
        if arr.shape[-1] != env.num_steps:
            raise ValueError(
                f"{name}: profile length {arr.shape[-1]}; allowed: num_steps = {env.num_steps}"
            )
    checks.check_range("cloudiness", p.cloudiness, 0.0, 1.0)
    for name in ("demand_day_std", "pv_noise", "demand_noise", "forecast_noise"):
        checks.check_range(name, getattr(p, name), 0.0, 10.0)
    checks.check_range("min_price", p.min_price, 0.0, np.inf, hi_open=True)
    checks.check_range("max_price", p.max_price, 0.0, np.inf, lo_open=True, hi_open=True)
    checks.check_order("min_price", p.min_price, "max_price", p.max_price, strict=True)
    checks.check_range("tariff_gap", p.tariff_gap, 0.0, 1.0)
    checks.check_range("tariff_jitter", p.tariff_jitter, 0.0, 10.0)
    for name in ("fit_profile", "utility_profile"):
        arr = checks.check_range(name, getattr(p, name), 0.0, np.inf, hi_open=True)
        if arr.shape[-1] != env.num_steps:
            raise ValueError(
                f"{name}: length {arr.shape[-1]}; allowed: num_steps = {env.num_steps}"
            )
    gap = p.tariff_gap[..., None] * (p.max_price - p.min_price)[..., None]
    checks.check_order(
        "fit_profile + tariff_gap * (max_price - min_price)",
        p.fit_profile + gap,
        "utility_profile",
        p.utility_profile,
    )
    checks.check_range("k", p.k, 0.0, 1.0)
    checks.check_range("reputation_rate", p.reputation_rate, 0.0, 1.0)
    for name in ("p2p_fee", "p2p_fee_per_km", "loss_per_km", "dynamic_tariff_slope"):
        checks.check_range(name, getattr(p, name), 0.0, np.inf, hi_open=True)
    checks.check_range("loss_cap", p.loss_cap, 0.0, 1.0, hi_open=True)
    for name in ("imbalance_penalty", "shed_penalty", "terminal_soc_value"):
        checks.check_range(name, getattr(p, name), 0.0, np.inf, hi_open=True)
    for name in ("import_limit_kw", "export_limit_kw_total", "feeder_limit_kw", "p2p_limit_kw"):
        checks.check_range(name, getattr(p, name), 0.0)
    checks.check_range("node_distance_km", p.node_distance_km, 0.0, np.inf, hi_open=True)
    checks.check_range("reward_scale", p.reward_scale, 0.0, np.inf, lo_open=True, hi_open=True)
    checks.check_range("coop_alpha", p.coop_alpha, 0.0, 1.0)
    if env.grid_mode == "dcopf":
        checks.check_range("line_limit_kw", p.line_limit_kw, 0.0, np.inf, lo_open=True)
        checks.check_range("curtail_cost", p.curtail_cost, 0.0, np.inf, hi_open=True)
