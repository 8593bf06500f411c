"""Scenario presets (the seed case studies), constructible by name:
``jaxlem.make("lem-v0", scenario="case2-monopoly")`` (or ``LEMEnv.from_scenario``).

A case-2/case-5 preset is a list of sites. A site of ``P`` kW of PV has a battery of
``ratio * P`` kWh (power limit 0.5 C) and a mean demand of ``demand_mult * P * CF``, where CF is
the mean output per kW of its PV orientation over a clear day (the 90th percentile of the year's
days in the profile bank), so ``demand_mult = 1`` means a day's demand equals a clear day's PV
energy. Each site holds a PV orientation and a
demand kind fitting its role (homes, offices, shops, farms; panels facing east, south, west), so
the community has sellers and buyers at the same hour. Where the seed draws a size from a range,
the range is data: ``default_params`` uses its midpoint, ``sample_params`` draws it per scenario.
Degradation costs (currency/MWh of throughput) differ by technology in case 5.
"""

from __future__ import annotations

from typing import Any, NamedTuple, cast

import jax
import jax.numpy as jnp
import numpy as np

from jaxlem.envs.lem.population import PROSUMER
from jaxlem.envs.lem.types import LEMParams
from jaxlem.market.pricing import RULES
from jaxlem.profiles.kinds import kind_index


class Site(NamedTuple):
    """One agent of a preset: PV size range (kW), battery ratio (kWh per kW of PV), efficiency,
    SOC window, demand multiplier, degradation cost (currency/MWh), PV orientation, demand kind."""

    kw: tuple[float, float]
    ratio: float
    eta: float
    soc: tuple[float, float]
    mult: float
    deg: float
    pv: str
    demand: str


_DEF_SOC = (0.1, 0.9)


def _s(
    kw: Any,  # a size or a (low, high) range, kW
    ratio: float,
    eta: float,
    soc: tuple[float, float],
    mult: float,
    pv: str,
    demand: str,
    deg: float = 20.0,
) -> Site:
    if np.isscalar(kw):
        lo = hi = float(cast(float, kw))  # (numpy's ``isscalar`` admits complex and str too)
    else:
        lo, hi = float(kw[0]), float(kw[1])
    return Site((lo, hi), ratio, eta, soc, mult, deg, pv, demand)


_AROUND_60 = (50.0, 75.0)  # the seed's 60 + U(-10, 15) kW


def _group(
    kw: Any,
    ratio: float,
    eta: float,
    soc: tuple[float, float],
    mult: float,
    roles: list[tuple[str, str]],
    deg: float = 20.0,
) -> list[Site]:
    """Sites sharing sizes and storage specs, one per (PV orientation, demand kind) role."""
    return [_s(kw, ratio, eta, soc, mult, pv, dem, deg) for pv, dem in roles]


# Roles mix daytime businesses (offices g1, shops g4), homes (h0, with a heat pump or an EV),
# farms (l0, l1) and continuous loads (g3) with panels facing east, south and west, so that some
# sites buy while others sell at the same hour.
_SEVEN = [
    ("east", "g1"),
    ("west", "g1"),
    ("south", "heat_pump"),
    ("west", "g4"),
    ("south", "h0"),
    ("east", "ev"),
    ("west", "heat_pump"),
]
_CASE2: dict[str, list[Site]] = {
    "balanced": _group(
        (40, 60), 0.5, 0.95, _DEF_SOC, 1.2,
        [("east", "g1"), ("west", "g4"), ("south", "l0"), ("east", "heat_pump"), ("west", "ev"),
         ("southwest", "g1")],
    ),
    "monopoly": _group(300, 0.5, 0.98, (0.2, 0.8), 0.7, [("south", "l0")])
    + _group(
        (20, 35), 0.6, 0.90, _DEF_SOC, 1.5,
        [("east", "g1"), ("west", "g4"), ("southwest", "heat_pump"), ("east", "ev"),
         ("west", "g0")],
    ),
    "oligopoly": _group((100, 150), 0.7, 0.95, (0.15, 0.85), 1.1, [("south", "l1")])
    + _group((100, 150), 0.7, 0.95, (0.15, 0.85), 1.3, [("east", "heat_pump"), ("west", "g1")])
    + _group(
        (20, 45), 0.5, 0.90, _DEF_SOC, 1.4, [("west", "ev"), ("east", "g1"), ("southwest", "g4")]
    ),
    "cooperative": _group(200, 0.5, 0.97, (0.2, 0.8), 0.6, [("south", "g3")])  # community plant
    + [
        _s(kw, 0.6, 0.92, _DEF_SOC, 1.3, pv, dem)
        for kw, pv, dem in [
            (60, "east", "g1"),
            (45, "west", "g4"),
            (35, "southwest", "heat_pump"),
            (25, "east", "ev"),
            (40, "west", "h0"),
        ]
    ],
}  # fmt: skip
_CASE5: dict[str, list[Site]] = {
    "no_battery": _group(_AROUND_60, 0.0, 0.95, _DEF_SOC, 1.0, _SEVEN),
    "small": _group(_AROUND_60, 0.3, 0.92, (0.15, 0.85), 1.0, _SEVEN),
    "large": _group(_AROUND_60, 0.8, 0.95, (0.1, 0.9), 1.0, _SEVEN),
    "mixed": [
        _s(100, 1.0, 0.96, _DEF_SOC, 1.0, "south", "g3"),  # community storage
        _s(70, 0.6, 0.94, _DEF_SOC, 1.0, "east", "heat_pump"),  # prosumers
        _s(65, 0.5, 0.93, _DEF_SOC, 1.0, "west", "h0"),
        _s(50, 0.4, 0.97, _DEF_SOC, 1.0, "east", "g1"),  # efficient
        _s(45, 0.3, 0.97, _DEF_SOC, 1.0, "west", "g4"),
        _s(55, 0.0, 0.95, _DEF_SOC, 1.0, "southwest", "ev"),  # no storage
        _s(40, 1.5, 0.95, _DEF_SOC, 1.0, "west", "g1"),  # storage-heavy
    ],
    # morning-peak generators face east, afternoon ones west; the evening-demand sites are an
    # evening business and EV charging; the coordinator a shop with south-east panels
    "strategic": [
        _s(80, 0.7, 0.95, _DEF_SOC, 1.0, "east", "heat_pump"),
        _s(75, 0.6, 0.95, _DEF_SOC, 1.0, "east", "g1"),
        _s(85, 0.8, 0.95, _DEF_SOC, 1.0, "west", "g1"),
        _s(70, 0.5, 0.95, _DEF_SOC, 1.0, "west", "h0"),
        _s(50, 0.9, 0.95, _DEF_SOC, 1.0, "south", "g2"),
        _s(45, 1.0, 0.95, _DEF_SOC, 1.0, "southwest", "ev"),
        _s(60, 1.2, 0.95, _DEF_SOC, 1.0, "southeast", "g4"),
    ],
    "degradation": [
        _s(70, 0.6, 0.98, (0.05, 0.95), 1.0, "south", "h0", 15.0),  # premium
        _s(65, 0.5, 0.97, (0.05, 0.95), 1.0, "east", "g1", 15.0),
        _s(60, 0.5, 0.93, (0.15, 0.85), 1.0, "west", "g4", 30.0),  # standard
        _s(55, 0.4, 0.92, (0.15, 0.85), 1.0, "west", "heat_pump", 30.0),
        _s(50, 0.4, 0.88, (0.25, 0.75), 1.0, "east", "ev", 60.0),  # aging
        _s(45, 0.3, 0.87, (0.25, 0.75), 1.0, "southwest", "g1", 60.0),
        _s(58, 0.6, 0.94, (0.3, 0.7), 1.0, "southeast", "l0", 25.0),  # conservative
    ],
}
_MARKET: dict[str, dict[str, Any]] = {  # price range (currency/MWh) and connection limit (kW)
    "case2": dict(prices=(30.0, 300.0), conn=2000.0),
    "case5": dict(prices=(35.0, 280.0), conn=1200.0),
}
_CASE3 = {  # DSO interventions at a moderate strength; sweep the named field for a study
    "dynamic_tariff": {"dynamic_tariff_slope": 0.5},
    "p2p_fee": {"p2p_fee": 10.0},
    "export_limit": {"export_limit_kw": 3.0},
    "imbalance": {"imbalance_penalty": 20.0},
}


def names() -> tuple[str, ...]:
    """Every preset name."""
    out = ["default"]
    out += [f"case1-{r}" for r in RULES]
    out += [f"case2-{k}" for k in _CASE2]
    out += [f"case3-{k}" for k in _CASE3]
    out += [f"case5-{k}" for k in _CASE5]
    out += ["case6-cooperative", "case6-informed"]
    return tuple(out)


def sites(name: str) -> list[Site]:
    """The sites of a case-2/case-5 preset (empty for the population-drawn presets)."""
    case, _, variant = name.partition("-")
    return {"case2": _CASE2, "case5": _CASE5}.get(case, {}).get(variant, [])


def static_settings(name: str) -> dict[str, Any]:
    """The static settings a preset sets on the env (they win over the env's defaults; settings
    the user passes explicitly win over them)."""
    if name not in names():
        raise ValueError(f"scenario: got {name!r}; allowed: one of {', '.join(names())}")
    case, _, variant = name.partition("-")
    if case == "case1":
        return {"rule": variant}
    if case in ("case2", "case5"):
        return {"num_agents": len(sites(name)), "grid_mode": "capacity"}
    if case == "case6" and variant == "informed":
        return {"global_obs": True}
    return {}


def _overrides(env: Any) -> dict[str, Any]:
    """Numeric params a preset sets besides its agents."""
    case, _, variant = env.scenario.partition("-")
    if case in _MARKET:
        lo, hi = _MARKET[case]["prices"]
        conn = np.float32(_MARKET[case]["conn"])
        return dict(
            min_price=np.float32(lo),
            max_price=np.float32(hi),
            import_limit_kw=conn,
            export_limit_kw_total=conn,
        )
    if case == "case3":
        over: dict[str, Any] = {k: np.float32(v) for k, v in _CASE3[variant].items()}
        if "export_limit_kw" in over:
            over["export_limit_kw"] = np.full(env.num_agents, over["export_limit_kw"], np.float32)
        return over
    if case == "case6":
        return {"coop_alpha": np.float32(0.5)}
    return {}


def _site_fields(env: Any, rows: list[Site], kw: jax.Array | np.ndarray) -> dict[str, Any]:
    """Per-agent params of the sites ``rows`` with PV sizes ``kw`` ([..., N] kW)."""
    if len(rows) != env.num_agents:
        raise ValueError(
            f"num_agents: got {env.num_agents}; scenario {env.scenario!r} has {len(rows)} agents"
        )
    pv_kind = np.asarray([kind_index("pv kind", r.pv, env.pv_kinds) for r in rows], np.int32)
    dem_kind = np.asarray(
        [kind_index("demand kind", r.demand, env.demand_kinds) for r in rows], np.int32
    )
    cf = env.clear_day_factors()[pv_kind]
    arr = lambda f: np.asarray([getattr(r, f) for r in rows], np.float32)  # noqa: E731
    ratio, eta, mult = arr("ratio"), arr("eta"), arr("mult")
    soc = np.asarray([r.soc for r in rows], np.float32)
    shape = jnp.shape(kw)
    full = lambda v: jnp.broadcast_to(jnp.asarray(v), shape)  # noqa: E731
    return dict(
        pv_kw=kw,
        demand_kw=mult * kw * np.float32(cf),
        bat_kwh=ratio * kw,
        bat_kw=0.5 * ratio * kw,
        eta_c=full(eta),
        eta_d=full(eta),
        soc_min=full(soc[:, 0]),
        soc_max=full(soc[:, 1]),
        soc_init=full(soc.mean(axis=1)),
        degradation_cost=full(arr("deg")),
        pv_kind=full(pv_kind),
        demand_kind=full(dem_kind),
        agent_type=full(np.full(len(rows), PROSUMER, np.int32)),  # every preset site has PV
        disp_kw=jnp.zeros(shape, jnp.float32),
        disp_cost=jnp.zeros(shape, jnp.float32),
        self_discharge=jnp.zeros(shape, jnp.float32),
        export_limit_kw=jnp.full(shape, jnp.inf, jnp.float32),
        node=jnp.zeros(shape, jnp.int32),
        feeder=jnp.zeros(shape, jnp.int32),
    )


def preset_params(env: Any) -> LEMParams:
    """Default params of ``env.scenario`` (called by ``LEMEnv.default_params``): sizes at the
    midpoint of their ranges."""
    rows = sites(env.scenario)
    key = jax.random.PRNGKey(0)
    if not rows:
        return env.make_params(key, **_overrides(env))
    kw = np.asarray([0.5 * (r.kw[0] + r.kw[1]) for r in rows], np.float32)
    return env.make_params(key, **_site_fields(env, rows, jnp.asarray(kw)), **_overrides(env))


def preset_bank(env: Any, key: jax.Array, num: int) -> LEMParams:
    """``num`` scenarios of ``env.scenario``: case-2/5 sizes drawn from their ranges per
    scenario; population-drawn presets draw a community per scenario."""
    rows = sites(env.scenario)
    if not rows:
        keys = jax.random.split(key, num)
        return env.assemble_bank(jax.vmap(env.draw_population)(keys), num, **_overrides(env))
    lo = np.asarray([r.kw[0] for r in rows], np.float32)
    hi = np.asarray([r.kw[1] for r in rows], np.float32)
    kw = lo + jax.random.uniform(key, (num, len(rows))) * (hi - lo)
    return env.assemble_bank(_site_fields(env, rows, kw), num, **_overrides(env))
