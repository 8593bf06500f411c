"""Scenario presets of DOMAIN.md 1.10, constructible by name: ``jaxlem.make("lem-v0",
scenario="case2-monopoly")``.

Sizes follow the seed case studies: an agent of ``P`` kW has a battery of ``ratio * P`` kWh (power
limit 0.5 C) and a mean demand of ``demand_mult * P * CF`` kW, where CF is the mean of the clear-sky
PV shape (about 0.2 for 24 x 1 h), so ``demand_mult = 1`` means a day's demand equals a clear day's
PV energy. Degradation costs (currency/MWh of throughput) differ by technology in case 5.
"""

from __future__ import annotations

import numpy as np

from jaxlem import profiles
from jaxlem.market.pricing import RULES

# name: (pv_kw, battery ratio, eta, (soc_min, soc_max), demand mult, degradation, profile column)
_Row = tuple[float, float, float, tuple[float, float], float, float, int]
_DEF_SOC = (0.1, 0.9)


def _rows(kws, ratio, eta, soc, mult, deg=20.0, col=0) -> list[_Row]:
    seq = lambda v: v if isinstance(v, list | tuple) and len(v) == len(kws) else [v] * len(kws)  # noqa: E731
    return list(
        zip(kws, seq(ratio), seq(eta), [soc] * len(kws), seq(mult), seq(deg), seq(col), strict=True)
    )


_CASE2 = {
    "balanced": _rows([40, 44, 48, 52, 56, 60], 0.5, 0.95, _DEF_SOC, 1.2),
    "monopoly": _rows([300], 0.5, 0.98, (0.2, 0.8), 0.7)
    + _rows([20, 24, 27, 31, 35], 0.6, 0.90, _DEF_SOC, 1.5),
    "oligopoly": _rows([100, 125, 150], 0.7, 0.95, (0.15, 0.85), [1.1, 1.3, 1.3])
    + _rows([20, 32, 45], 0.5, 0.90, _DEF_SOC, 1.4),
    "cooperative": _rows([200], 0.5, 0.97, _DEF_SOC, 0.6)
    + _rows([60, 45, 35, 25, 40], 0.6, 0.92, _DEF_SOC, 1.3),
}
_CASE5 = {
    "no_battery": _rows([50, 55, 58, 60, 62, 65, 70], 0.0, 0.95, _DEF_SOC, 1.0),
    "small": _rows([50, 55, 58, 60, 62, 65, 70], 0.3, 0.92, (0.15, 0.85), 1.0),
    "large": _rows([50, 55, 58, 60, 62, 65, 70], 0.8, 0.95, (0.1, 0.9), 1.0),
    "mixed": _rows([100], 1.0, 0.96, _DEF_SOC, 1.0)
    + _rows([70, 65], [0.6, 0.5], [0.94, 0.93], _DEF_SOC, 1.0)
    + _rows([50, 45], [0.4, 0.3], 0.97, _DEF_SOC, 1.0)
    + _rows([55], 0.0, 0.95, _DEF_SOC, 1.0)
    + _rows([40], 1.5, 0.95, _DEF_SOC, 1.0),
    # columns: 0 midday PV, 1 morning-peak PV, 2 afternoon-peak PV, 3 evening-heavy demand
    "strategic": _rows([80, 75], [0.7, 0.6], 0.95, _DEF_SOC, 1.0, col=1)
    + _rows([85, 70], [0.8, 0.5], 0.95, _DEF_SOC, 1.0, col=2)
    + _rows([50, 45], [0.9, 1.0], 0.95, _DEF_SOC, 1.0, col=3)
    + _rows([60], 1.2, 0.95, _DEF_SOC, 1.0),
    "degradation": _rows([70, 65], [0.6, 0.5], [0.98, 0.97], (0.05, 0.95), 1.0, 15.0)
    + _rows([60, 55], [0.5, 0.4], [0.93, 0.92], (0.15, 0.85), 1.0, 30.0)
    + _rows([50, 45], [0.4, 0.3], [0.88, 0.87], (0.25, 0.75), 1.0, 60.0)
    + _rows([58], 0.6, 0.94, (0.3, 0.7), 1.0, 25.0),
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


def make_env(name: str, **kwargs):
    """The env of preset ``name`` (static settings may be overridden by keyword)."""
    from jaxlem.envs.lem import LEMEnv

    if name not in names():
        raise ValueError(f"scenario: got {name!r}; allowed: one of {', '.join(names())}")
    case, _, variant = name.partition("-")
    static: dict = {}
    if case == "case1":
        static["rule"] = variant
    elif case in ("case2", "case5"):
        static["num_agents"] = len((_CASE2 if case == "case2" else _CASE5)[variant])
        static["grid_mode"] = "capacity"
    elif case == "case6" and variant == "informed":
        static["global_obs"] = True
    return LEMEnv(**{**static, **kwargs, "scenario": name})


def preset_params(env):
    """Default params of ``env.scenario`` (called by ``LEMEnv.default_params``)."""
    import jax

    case, _, variant = env.scenario.partition("-")
    key = jax.random.PRNGKey(0)
    if case in ("case2", "case5"):
        rows = (_CASE2 if case == "case2" else _CASE5)[variant]
        if len(rows) != env.num_agents:
            raise ValueError(
                f"num_agents: got {env.num_agents}; scenario {env.scenario!r} "
                f"has {len(rows)} agents"
            )
        prices = (30.0, 300.0) if case == "case2" else (35.0, 280.0)
        conn = 2000.0 if case == "case2" else 1200.0
        return env.make_params(
            key,
            **_agent_fields(env, rows, with_columns=case == "case5"),
            min_price=np.float32(prices[0]),
            max_price=np.float32(prices[1]),
            import_limit_kw=np.float32(conn),
            export_limit_kw_total=np.float32(conn),
        )
    if case == "case3":
        over = dict(_CASE3[variant])
        if "export_limit_kw" in over:
            over["export_limit_kw"] = np.full(env.num_agents, over["export_limit_kw"], np.float32)
        return env.make_params(key, **{k: np.asarray(v, np.float32) for k, v in over.items()})
    if case == "case6":
        return env.make_params(key, coop_alpha=np.float32(0.5))
    return env.make_params(key)


def _agent_fields(env, rows: list[_Row], with_columns: bool) -> dict:
    t, dt = env.num_steps, env.dt_h
    pv = profiles.pv_shape(t, dt)
    dem = profiles.demand_shape(t, dt)
    cf = float(np.mean(pv))
    arr = lambda i: np.asarray([r[i] for r in rows], np.float32)  # noqa: E731
    kw, ratio, eta, mult, deg = arr(0), arr(1), arr(2), arr(4), arr(5)
    soc = np.asarray([r[3] for r in rows], np.float32)
    fields = dict(
        pv_kw=kw,
        demand_kw=mult * kw * cf,
        bat_kwh=ratio * kw,
        bat_kw=0.5 * ratio * kw,
        eta_c=eta,
        eta_d=eta,
        soc_min=soc[:, 0],
        soc_max=soc[:, 1],
        soc_init=soc.mean(axis=1),
        degradation_cost=deg,
        profile_col=np.zeros(len(rows), np.int32),
        agent_type=np.where(kw > 0, 1, 0).astype(np.int32),
        disp_kw=np.zeros(len(rows), np.float32),
    )
    if with_columns:
        steps_per_h = max(int(round(1.0 / dt)), 1)
        evening = dem**1.5 * np.roll(np.ones_like(dem), 0)
        evening = evening / evening.mean()
        fields["pv_table"] = np.stack(
            [pv, np.roll(pv, -2 * steps_per_h), np.roll(pv, 2 * steps_per_h), pv]
        )
        fields["demand_table"] = np.stack([dem, dem, dem, evening])
        fields["profile_col"] = np.asarray([r[6] for r in rows], np.int32)
    return fields
