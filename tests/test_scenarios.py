"""Tests for jaxlem.scenarios: every preset builds and carries the sizes the case studies specify.

An agent of ``P`` kW has a battery of ``ratio * P`` kWh with a 0.5 C power limit and a mean demand
``mult * P * CF`` kW (CF = clear-day output per kW of the agent's PV orientation), so the battery
ratio is ``bat_kwh / pv_kw`` and the demand multiplier ``demand_kw / (pv_kw * CF)``. Building
params does not compile a step; only two smoke tests (one case-2 and one case-5 preset) reset
and step once.
"""

from __future__ import annotations

import jax
import numpy as np
import pytest

import jaxlem
from jaxlem.envs.lem import LEMEnv, scenarios
from jaxlem.market.pricing import RULES

NAMES = scenarios.names()


def fields(env) -> dict[str, np.ndarray]:
    p = env.default_params
    out = {k: np.asarray(v) for k, v in vars(p).items() if k != "network"}
    out["cf"] = env.clear_day_factors()[out["pv_kind"]]
    return out


def ratio(p):
    return p["bat_kwh"] / p["pv_kw"]


def demand_mult(p):
    return p["demand_kw"] / (p["pv_kw"] * p["cf"])


# --------------------------------------------------------------------------- names and building


def test_names_cover_every_case():
    assert len(NAMES) == len(set(NAMES))
    assert "default" in NAMES
    for rule in RULES:
        assert f"case1-{rule}" in NAMES
    for v in ("balanced", "monopoly", "oligopoly", "cooperative"):
        assert f"case2-{v}" in NAMES
    for v in ("no_battery", "small", "large", "mixed", "strategic", "degradation"):
        assert f"case5-{v}" in NAMES
    assert any(n.startswith("case3-") for n in NAMES)
    assert any(n.startswith("case6-") for n in NAMES)


@pytest.mark.parametrize("name", NAMES)
def test_every_preset_builds_and_passes_check_params(name):
    env = LEMEnv.from_scenario(name)
    assert env.scenario == name
    params = env.default_params
    env.check_params(params)  # raises on any bad number
    for path, v in jax.tree_util.tree_leaves_with_path(params):  # None fields have no leaves
        v = np.asarray(v)
        if np.issubdtype(v.dtype, np.floating):
            assert not np.any(np.isnan(v)), jax.tree_util.keystr(path)
    assert np.asarray(params.pv_kw).shape == (env.num_agents,)
    assert env.action_space().shape == (env.num_agents, env.act_dim)
    # the registry builds the same env
    via_make = jaxlem.make("lem-v0", scenario=name)
    assert via_make == env
    jax.tree_util.tree_map(
        np.testing.assert_array_equal, via_make.default_params, env.default_params
    )


@pytest.mark.parametrize("name", ["nope", "case2", "case2-monopolyx", "case9-balanced", ""])
def test_unknown_scenario_raises(name):
    with pytest.raises(ValueError, match="scenario"):
        LEMEnv.from_scenario(name)
    if name:  # scenario="" is the documented "no preset" value of LEMEnv
        with pytest.raises(ValueError, match="scenario"):
            jaxlem.make("lem-v0", scenario=name)


def test_agent_count_override_is_rejected_for_sized_presets():
    env = LEMEnv.from_scenario("case2-monopoly", num_agents=5)
    with pytest.raises(ValueError, match="num_agents"):
        _ = env.default_params


def test_static_override_keeps_the_preset_agents():
    base = fields(LEMEnv.from_scenario("case2-oligopoly"))
    env = LEMEnv.from_scenario("case2-oligopoly", rule="nash")
    assert env.rule == "nash" and env.num_agents == 6
    np.testing.assert_array_equal(fields(env)["pv_kw"], base["pv_kw"])


def test_quarter_hour_grid_builds():
    env = LEMEnv.from_scenario("case5-strategic", num_steps=96, dt_h=0.25)
    p = fields(env)
    assert env.bank.pv.shape[-1] == 365 * 96 and p["fit_profile"].shape == (96,)


# --------------------------------------------------------------------------- case 1, 3, 6


@pytest.mark.parametrize("rule", RULES)
def test_case1_uses_the_rule_on_the_same_community(rule):
    env = LEMEnv.from_scenario(f"case1-{rule}")
    assert env.rule == rule
    ref = fields(LEMEnv.from_scenario("default"))
    for k in ("pv_kw", "demand_kw", "bat_kwh"):
        np.testing.assert_array_equal(fields(env)[k], ref[k])


def test_case3_interventions():
    assert fields(LEMEnv.from_scenario("case3-dynamic_tariff"))["dynamic_tariff_slope"] > 0
    assert fields(LEMEnv.from_scenario("case3-p2p_fee"))["p2p_fee"] > 0
    lim = fields(LEMEnv.from_scenario("case3-export_limit"))["export_limit_kw"]
    assert lim.shape == (10,) and np.all(np.isfinite(lim)) and np.all(lim > 0)
    assert fields(LEMEnv.from_scenario("case3-imbalance"))["imbalance_penalty"] > 0
    default = fields(LEMEnv.from_scenario("default"))
    assert default["dynamic_tariff_slope"] == 0 and default["p2p_fee"] == 0
    assert np.all(np.isinf(default["export_limit_kw"]))


def test_case6_cooperation_and_information():
    coop = LEMEnv.from_scenario("case6-cooperative")
    assert 0 < fields(coop)["coop_alpha"] <= 1
    informed = LEMEnv.from_scenario("case6-informed")
    assert informed.global_obs and informed.obs_dim == coop.obs_dim + 4


# --------------------------------------------------------------------------- case 2


def _common_case2(p):
    assert p["pv_kw"].shape == (6,)
    assert p["min_price"] == 30 and p["max_price"] == 300
    assert p["import_limit_kw"] == 2000 and p["export_limit_kw_total"] == 2000
    np.testing.assert_allclose(p["bat_kw"], 0.5 * p["bat_kwh"], rtol=1e-6)  # 0.5 C
    np.testing.assert_array_equal(p["eta_c"], p["eta_d"])


@pytest.mark.parametrize("variant", ["balanced", "monopoly", "oligopoly", "cooperative"])
def test_case2_common(variant):
    env = LEMEnv.from_scenario(f"case2-{variant}")
    assert env.num_agents == 6 and env.grid_mode == "capacity"
    _common_case2(fields(env))


def test_case2_balanced():
    p = fields(LEMEnv.from_scenario("case2-balanced"))
    assert np.all((p["pv_kw"] >= 40) & (p["pv_kw"] <= 60))
    np.testing.assert_allclose(ratio(p), 0.5, rtol=1e-6)
    np.testing.assert_allclose(demand_mult(p), 1.2, rtol=1e-5)


def test_case2_monopoly():
    p = fields(LEMEnv.from_scenario("case2-monopoly"))
    big = int(np.argmax(p["pv_kw"]))
    small = np.arange(6) != big
    assert p["pv_kw"][big] == 300 and p["bat_kwh"][big] == pytest.approx(150)
    assert p["eta_c"][big] == pytest.approx(0.98)
    assert p["soc_min"][big] == pytest.approx(0.2) and p["soc_max"][big] == pytest.approx(0.8)
    assert demand_mult(p)[big] == pytest.approx(0.7, rel=1e-5)
    assert np.all((p["pv_kw"][small] >= 20) & (p["pv_kw"][small] <= 35))
    np.testing.assert_allclose(ratio(p)[small], 0.6, rtol=1e-6)
    np.testing.assert_allclose(p["eta_c"][small], 0.90, rtol=1e-6)
    np.testing.assert_allclose(demand_mult(p)[small], 1.5, rtol=1e-5)
    assert np.all(p["soc_init"] >= p["soc_min"]) and np.all(p["soc_init"] <= p["soc_max"])


def test_case2_oligopoly():
    p = fields(LEMEnv.from_scenario("case2-oligopoly"))
    big = p["pv_kw"] >= 100
    assert big.sum() == 3
    assert np.all(p["pv_kw"][big] <= 150)
    np.testing.assert_allclose(ratio(p)[big], 0.7, rtol=1e-6)
    np.testing.assert_allclose(p["eta_c"][big], 0.95, rtol=1e-6)
    np.testing.assert_allclose(p["soc_min"][big], 0.15, rtol=1e-6)
    np.testing.assert_allclose(p["soc_max"][big], 0.85, rtol=1e-6)
    np.testing.assert_allclose(np.sort(demand_mult(p)[big]), [1.1, 1.3, 1.3], rtol=1e-5)
    assert np.all((p["pv_kw"][~big] >= 20) & (p["pv_kw"][~big] <= 45))
    np.testing.assert_allclose(ratio(p)[~big], 0.5, rtol=1e-6)
    np.testing.assert_allclose(p["eta_c"][~big], 0.90, rtol=1e-6)
    np.testing.assert_allclose(demand_mult(p)[~big], 1.4, rtol=1e-5)


def test_case2_cooperative():
    p = fields(LEMEnv.from_scenario("case2-cooperative"))
    plant = int(np.argmax(p["pv_kw"]))
    others = np.arange(6) != plant
    assert p["pv_kw"][plant] == 200 and p["bat_kwh"][plant] == pytest.approx(100)
    assert p["eta_c"][plant] == pytest.approx(0.97)
    assert demand_mult(p)[plant] == pytest.approx(0.6, rel=1e-5)
    assert p["soc_min"][plant] == pytest.approx(0.2) and p["soc_max"][plant] == pytest.approx(0.8)
    assert sorted(p["pv_kw"][others].tolist()) == [25, 35, 40, 45, 60]
    np.testing.assert_allclose(ratio(p)[others], 0.6, rtol=1e-6)
    np.testing.assert_allclose(p["eta_c"][others], 0.92, rtol=1e-6)
    np.testing.assert_allclose(demand_mult(p)[others], 1.3, rtol=1e-5)


# --------------------------------------------------------------------------- case 5


CASE5 = ["no_battery", "small", "large", "mixed", "strategic", "degradation"]


@pytest.mark.parametrize("variant", CASE5)
def test_case5_common(variant):
    env = LEMEnv.from_scenario(f"case5-{variant}")
    assert env.num_agents == 7 and env.grid_mode == "capacity"
    p = fields(env)
    assert p["pv_kw"].shape == (7,)
    assert np.all((p["pv_kw"] >= 40) & (p["pv_kw"] <= 100))  # "around 60 kW"
    assert p["min_price"] == 35 and p["max_price"] == 280
    assert p["import_limit_kw"] == 1200 and p["export_limit_kw_total"] == 1200
    np.testing.assert_allclose(p["bat_kw"], 0.5 * p["bat_kwh"], rtol=1e-6)
    env_kinds = (len(env.pv_kinds), len(env.demand_kinds))
    assert np.all((p["pv_kind"] >= 0) & (p["pv_kind"] < env_kinds[0]))
    assert np.all((p["demand_kind"] >= 0) & (p["demand_kind"] < env_kinds[1]))
    # a community of different shapes: several orientations and several demand kinds
    assert len(set(p["pv_kind"].tolist())) >= 2 and len(set(p["demand_kind"].tolist())) >= 3
    np.testing.assert_allclose(demand_mult(p), 1.0, rtol=1e-5)


def test_case5_uniform_variants():
    p = fields(LEMEnv.from_scenario("case5-no_battery"))
    np.testing.assert_array_equal(p["bat_kwh"], 0.0)
    np.testing.assert_array_equal(p["bat_kw"], 0.0)
    p = fields(LEMEnv.from_scenario("case5-small"))
    np.testing.assert_allclose(ratio(p), 0.3, rtol=1e-6)
    np.testing.assert_allclose(p["eta_c"], 0.92, rtol=1e-6)
    np.testing.assert_allclose(p["soc_min"], 0.15, rtol=1e-6)
    np.testing.assert_allclose(p["soc_max"], 0.85, rtol=1e-6)
    p = fields(LEMEnv.from_scenario("case5-large"))
    np.testing.assert_allclose(ratio(p), 0.8, rtol=1e-6)
    np.testing.assert_allclose(p["eta_c"], 0.95, rtol=1e-6)
    np.testing.assert_allclose(p["soc_min"], 0.1, rtol=1e-6)
    np.testing.assert_allclose(p["soc_max"], 0.9, rtol=1e-6)


def _by_kw(p):
    """{pv_kw: (battery ratio, eta)} of a preset whose agents have distinct sizes."""
    assert len(set(p["pv_kw"].tolist())) == len(p["pv_kw"])
    return {
        float(kw): (float(r), float(e))
        for kw, r, e in zip(p["pv_kw"], ratio(p), p["eta_c"], strict=True)
    }


def test_case5_mixed():
    p = fields(LEMEnv.from_scenario("case5-mixed"))
    want = {  # kW: (ratio, eta); eta of the no-storage agent is irrelevant
        100: (1.0, 0.96),  # community storage
        70: (0.6, 0.94),
        65: (0.5, 0.93),
        50: (0.4, 0.97),
        45: (0.3, 0.97),
        55: (0.0, None),
        40: (1.5, 0.95),  # storage-heavy
    }
    got = _by_kw(p)
    assert set(got) == set(want)
    for kw, (r, eta) in want.items():
        assert got[kw][0] == pytest.approx(r, rel=1e-6), kw
        if eta is not None:
            assert got[kw][1] == pytest.approx(eta, rel=1e-6), kw
    i = int(np.flatnonzero(p["pv_kw"] == 100)[0])
    assert p["bat_kwh"][i] == pytest.approx(100) and p["bat_kw"][i] == pytest.approx(50)


def test_case5_strategic():
    p = fields(LEMEnv.from_scenario("case5-strategic"))
    got = _by_kw(p)
    want = {80: 0.7, 75: 0.6, 85: 0.8, 70: 0.5, 50: 0.9, 45: 1.0, 60: 1.2}
    assert set(got) == set(want)
    for kw, r in want.items():
        assert got[kw][0] == pytest.approx(r, rel=1e-6), kw
    env = LEMEnv.from_scenario("case5-strategic")
    pv = {float(kw): env.pv_kinds[k] for kw, k in zip(p["pv_kw"], p["pv_kind"], strict=True)}
    assert pv[80] == pv[75] == "east" and pv[85] == pv[70] == "west"  # morning / afternoon
    # evening-demand agents hold kinds with a larger share of demand after 17 h
    hourly = env.bank.demand.reshape(len(env.demand_kinds), 365, -1)
    dem = {float(kw): int(k) for kw, k in zip(p["pv_kw"], p["demand_kind"], strict=True)}
    ev = lambda kw: hourly[dem[kw], :, 17:].sum() / hourly[dem[kw]].sum()  # noqa: E731
    assert min(ev(50), ev(45)) > max(ev(80), ev(75), ev(85), ev(60))


def test_case5_degradation():
    p = fields(LEMEnv.from_scenario("case5-degradation"))
    groups = {  # name: ({kW: (ratio, eta)}, (soc_min, soc_max))
        "premium": ({70: (0.6, 0.98), 65: (0.5, 0.97)}, (0.05, 0.95)),
        "standard": ({60: (0.5, 0.93), 55: (0.4, 0.92)}, (0.15, 0.85)),
        "aging": ({50: (0.4, 0.88), 45: (0.3, 0.87)}, (0.25, 0.75)),
        "conservative": ({58: (0.6, 0.94)}, (0.3, 0.7)),
    }
    got = _by_kw(p)
    kw = p["pv_kw"].tolist()
    costs = {}
    for name, (members, soc) in groups.items():
        idx = [kw.index(k) for k in members]
        for k, (r, eta) in members.items():
            assert got[k][0] == pytest.approx(r, rel=1e-6), (name, k)
            assert got[k][1] == pytest.approx(eta, rel=1e-6), (name, k)
        np.testing.assert_allclose(p["soc_min"][idx], soc[0], rtol=1e-6, err_msg=name)
        np.testing.assert_allclose(p["soc_max"][idx], soc[1], rtol=1e-6, err_msg=name)
        c = set(p["degradation_cost"][idx].tolist())
        assert len(c) == 1, (name, c)  # one cost per technology
        costs[name] = c.pop()
    assert len(set(costs.values())) == 4, costs  # differing by technology
    assert costs["premium"] < costs["standard"] < costs["aging"], costs
    assert sum(len(m) for m, _ in groups.values()) == 7


# --------------------------------------------------------------------------- smoke steps


@pytest.mark.parametrize("name", ["case2-monopoly", "case5-mixed"])
def test_one_step_smoke(name):
    env = jaxlem.make("lem-v0", scenario=name)
    params = env.default_params
    obs, state = env.reset(jax.random.PRNGKey(0), params)
    assert obs.shape == (env.num_agents, env.obs_dim)
    n = env.num_agents
    action = np.stack([np.linspace(-1, 1, n), np.zeros(n), np.ones(n)], -1).astype(np.float32)
    obs, state, reward, done, info = env.step(jax.random.PRNGKey(1), state, action, params)
    assert reward.shape == (n,) and np.all(np.isfinite(np.asarray(reward)))
    assert np.all(np.isfinite(np.asarray(obs))) and not bool(done)
    e = np.asarray(state.energy, np.float64)
    cap = np.asarray(params.bat_kwh, np.float64)
    tol = 1e-4 * (cap + 1)
    assert np.all(e >= np.asarray(params.soc_min) * cap - tol)
    assert np.all(e <= np.asarray(params.soc_max) * cap + tol)
    # the community's net exchange stays within the connection limit
    net = float(info["net_import_kwh"])
    assert -float(params.export_limit_kw_total) * env.dt_h - 1e-3 <= net
    assert net <= float(params.import_limit_kw) * env.dt_h + 1e-3
    for k in ("p2p_volume_kwh", "clearing_price", "community_cost", "battery_throughput_kwh"):
        assert np.all(np.isfinite(np.asarray(info[k]))), k
