"""Bad configuration is rejected in Python with a ValueError naming field, value and range."""

import jax
import numpy as np
import pytest

import jaxlem
from jaxlem.envs.lem import LEMEnv
from jaxlem.envs.lem.population import Population
from jaxlem.market import clear

ENV = LEMEnv(num_agents=4)
KEY = jax.random.PRNGKey(0)


def _bad(**over):
    return ENV.make_params(KEY, **over)


@pytest.mark.parametrize(
    ("over", "pattern"),
    [
        (
            dict(pv_kw=np.array([1.0, -2.0, 1.0, 1.0], np.float32)),
            r"pv_kw\[1\]: got -2; allowed range \[0.0, inf\)",
        ),
        (dict(bat_kwh=np.full(4, -1.0, np.float32)), r"bat_kwh\[0\]: got -1; allowed range"),
        (dict(demand_kw=np.full(4, np.nan, np.float32)), r"demand_kw\[0\]: got nan"),
        (
            dict(soc_min=np.full(4, 0.9, np.float32), soc_max=np.full(4, 0.2, np.float32)),
            r"soc_min\[0\] = 0.9 must be <= soc_max\[0\] = 0.2",
        ),
        (
            dict(eta_c=np.full(4, 0.0, np.float32)),
            r"eta_c\[0\]: got 0; allowed range \(0.0, 1.0\]",
        ),
        (dict(eta_d=np.full(4, 1.5, np.float32)), r"eta_d\[0\]: got 1.5"),
        (
            dict(min_price=np.float32(300.0), max_price=np.float32(30.0)),
            r"min_price = 300 must be < max_price = 30",
        ),
        (dict(pv_table=np.ones((1, 23), np.float32)), r"pv_table: profile length 23; allowed"),
        (dict(demand_table=np.ones((2, 48), np.float32)), r"demand_table: profile length 48"),
        (
            dict(fit_profile=np.full(24, 400.0, np.float32)),
            r"fit_profile \+ tariff_gap .* must be <= utility_profile",
        ),
        (dict(k=np.float32(1.5)), r"k: got 1.5; allowed range \[0.0, 1.0\]"),
        (dict(coop_alpha=np.float32(-0.1)), r"coop_alpha: got -0.1"),
        (dict(node=np.array([0, 0, 5, 0], np.int32)), r"node\[2\]: got 5"),
        (dict(loss_cap=np.float32(1.0)), r"loss_cap: got 1; allowed range \[0.0, 1.0\)"),
        (dict(pv_kw=np.ones(3, np.float32)), r"pv_kw: shape \(3,\); allowed: last axis"),
    ],
)
def test_bad_params(over, pattern):
    with pytest.raises(ValueError, match=pattern):
        _bad(**over)


@pytest.mark.parametrize(
    ("kwargs", "pattern"),
    [
        (dict(num_agents=0), r"num_agents: got 0; allowed range >= 1"),
        (dict(num_agents=2.5), r"num_agents: got 2.5"),
        (dict(rule="vickrey"), r"rule: got 'vickrey'; allowed: one of average"),
        (dict(grid_mode="ac"), r"grid_mode: got 'ac'"),
        (dict(num_steps=0), r"num_steps: got 0"),
        (dict(dt_h=0.0), r"dt_h: got 0; allowed range \(0.0, 24.0\]"),
        (dict(tariff="spot"), r"tariff: got 'spot'"),
    ],
)
def test_bad_env(kwargs, pattern):
    with pytest.raises(ValueError, match=pattern):
        jaxlem.make("lem-v0", **kwargs)


def test_bad_population_and_registry():
    with pytest.raises(ValueError, match=r"population.eta: got 1.2"):
        Population(eta=1.2)
    with pytest.raises(ValueError, match=r"population.pv_kw\[0\] = 5 must be <= "):
        Population(pv_kw=(5.0, 1.0))
    with pytest.raises(ValueError, match=r"env_id: got 'lem-v9'"):
        jaxlem.make("lem-v9")
    with pytest.raises(ValueError, match=r"scenario: got 'case9'"):
        jaxlem.make("lem-v0", scenario="case9")


def test_clear_rejects_bad_rule_and_missing_prices():
    x = np.ones(3, np.float32)
    with pytest.raises(ValueError, match="rule: got 'dutch'"):
        clear(x, x, x > 0, "dutch")
    with pytest.raises(ValueError, match="rule: 'nash' needs both fit and utility"):
        clear(x, x, x > 0, "nash")


def test_scenario_bank_is_validated_too():
    bank = ENV.sample_params(KEY, 4)
    ENV.check_params(bank)
    with pytest.raises(ValueError, match="soc_max"):
        ENV.check_params(bank.replace(soc_max=bank.soc_max.at[2, 1].set(1.5)))


def test_dcopf_feeder_names_a_bundled_case_or_a_generated_radial_tree():
    import jaxlem

    env = jaxlem.make("lem-v0", grid_mode="dcopf", grid_case="radial-12-3", num_agents=15)
    p = env.default_params
    assert p.network.num_buses == 12 and p.network.num_branches == 11
    assert int(p.node.min()) >= 1 and int(p.node.max()) <= 11  # never the supply point
    for bad in ("nope", "radial-1", "radial-x", "radial-5-1-2"):
        with pytest.raises(ValueError, match="grid_case: got"):
            jaxlem.make("lem-v0", grid_mode="dcopf", grid_case=bad)
