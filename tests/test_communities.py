"""Real communities: the default market and the case-2/case-5 presets have a P2P market (a
material share of demand that peers could trade with batteries idle), agents' demand shapes
differ, preset sizes drawn from ranges differ between the scenarios of a bank, and the Hydra
configuration builds the env each preset asks for."""

from __future__ import annotations

import functools
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import jaxlem
from jaxlem import metrics
from jaxlem.envs.lem import policies, scenarios
from jaxlem.rollout import rollout

EPISODES = 64


@functools.lru_cache(maxsize=4)
def _stats_fn(env):
    """jit(vmap) of one episode's tradable energy, demand, demand correlation and flows (one
    compile per env: the presets of a case differ only in params)."""

    def episode(k, p):
        _, infos = rollout(env, policies.dso_only, k, p)
        x = infos["gen_kwh"] - infos["demand_kwh"]
        tradable = jnp.sum(
            jnp.minimum(jnp.sum(jnp.maximum(x, 0), -1), jnp.sum(jnp.maximum(-x, 0), -1))
        )
        corr = metrics.mean_pairwise_correlation(infos["demand_kwh"])
        return tradable, jnp.sum(infos["demand_kwh"]), corr, infos["gen_kwh"], infos["demand_kwh"]

    return jax.jit(jax.vmap(episode))


def _community_stats(env, bank, key):
    """(tradable share over all episodes, mean pairwise demand correlation) with idle batteries."""
    keys = jax.random.split(key, jax.tree_util.tree_leaves(bank)[0].shape[0])
    tr, dem, corr, gen, demand = _stats_fn(env)(keys, bank)
    pooled = float(np.sum(tr) / np.sum(dem))
    # the library KPI agrees with the pooled sum computed here, episode by episode
    np.testing.assert_allclose(
        np.asarray(metrics.tradable_share(gen, demand)), np.asarray(tr / dem), rtol=1e-5
    )
    return pooled, float(np.mean(corr))


def _repeat(params, num):
    return jax.tree_util.tree_map(lambda x: jnp.broadcast_to(x, (num, *jnp.shape(x))), params)


def test_default_market_trades_and_agents_differ():
    env = jaxlem.make("lem-v0")
    bank = _repeat(env.default_params, EPISODES)
    share, corr = _community_stats(env, bank, jax.random.PRNGKey(1))
    assert share >= 0.15, share
    assert corr < 0.8, corr
    bank_share, _ = _community_stats(
        env, env.sample_params(jax.random.PRNGKey(2), EPISODES), jax.random.PRNGKey(3)
    )
    assert bank_share >= 0.15, bank_share


@pytest.mark.parametrize("case", ["case2", "case5"])
def test_every_storage_and_market_power_preset_has_a_market(case):
    names = [n for n in scenarios.names() if n.startswith(case)]
    env = jaxlem.make("lem-v0", scenario=names[0])  # the presets of a case differ only in params
    for i, name in enumerate(names):
        bank = jaxlem.make("lem-v0", scenario=name).sample_params(jax.random.PRNGKey(i), EPISODES)
        share, _ = _community_stats(env, bank, jax.random.PRNGKey(100 + i))
        assert share >= 0.05, (name, share)


def test_preset_ranges_are_drawn_per_scenario():
    env = jaxlem.make("lem-v0", scenario="case2-monopoly")
    bank = env.sample_params(jax.random.PRNGKey(0), 32)
    kw = np.asarray(bank.pv_kw)
    big = int(np.argmax(kw[0]))
    np.testing.assert_array_equal(kw[:, big], 300.0)  # a fixed size stays fixed
    small = np.delete(kw, big, axis=1)
    assert np.all((small >= 20) & (small <= 35))
    assert np.unique(small.round(3), axis=0).shape[0] == 32  # every scenario its own community
    # battery and demand follow the drawn size
    np.testing.assert_allclose(np.asarray(bank.bat_kwh)[:, big], 150.0, rtol=1e-6)
    ratio = np.asarray(bank.bat_kwh) / kw
    np.testing.assert_allclose(ratio, np.broadcast_to(ratio[0], ratio.shape), rtol=1e-5)


def test_cooperative_plant_soc_window():
    p = jaxlem.make("lem-v0", scenario="case2-cooperative").default_params
    plant = int(np.argmax(np.asarray(p.pv_kw)))
    assert float(p.soc_min[plant]) == pytest.approx(0.2)
    assert float(p.soc_max[plant]) == pytest.approx(0.8)


# --------------------------------------------------------------------------- configuration


def _compose(*overrides):
    from hydra import compose, initialize_config_module

    with initialize_config_module("jaxlem.configs", version_base=None):
        return compose("config", overrides=list(overrides))


def test_scenario_yamls_match_the_registry_of_presets():
    folder = Path(jaxlem.__file__).parent / "configs" / "scenario"
    yamls = {p.stem for p in folder.glob("*.yaml")}
    assert yamls == set(scenarios.names())
    import yaml

    for stem in yamls:
        name = yaml.safe_load((folder / f"{stem}.yaml").read_text())["name"]
        assert name == (None if stem == "default" else stem), stem


def test_every_scenario_option_builds_the_presets_env_through_the_train_config():
    from jaxlem.app.job import make_env

    for name in scenarios.names():
        env = make_env(dict(_compose(f"scenario={name}")))
        want = jaxlem.make("lem-v0", scenario=name) if name != "default" else jaxlem.make("lem-v0")
        for field in ("rule", "grid_mode", "num_agents", "partner_stage", "global_obs"):
            assert getattr(env, field) == getattr(want, field), (name, field)
        if name.startswith("case1-"):
            assert env.rule == name.removeprefix("case1-")
        if name.startswith(("case2-", "case5-")):
            assert env.grid_mode == "capacity"
            limit = float(env.default_params.import_limit_kw)
            assert limit == (2000.0 if name.startswith("case2") else 1200.0)


def test_explicit_settings_win_over_the_preset():
    from jaxlem.app.job import make_env

    env = make_env(dict(_compose("scenario=case1-nash", "env.kwargs.rule=uniform")))
    assert env.rule == "uniform" and env.scenario == "case1-nash"
    env = make_env(dict(_compose("scenario=case2-monopoly", "env.kwargs.grid_mode=none")))
    assert env.grid_mode == "none"


def test_population_from_hydra():
    from jaxlem.app.job import env_settings, make_env

    env = make_env(
        dict(
            _compose(
                "+env.kwargs.population.prosumer_frac=0.9",
                "+env.kwargs.population.pv_mix={east:1,west:1}",
                "+env.kwargs.population.demand_mix={h0:[3,1],g1:[1,4]}",
            )
        )
    )
    pop = env.population
    assert pop.prosumer_frac == 0.9
    assert pop.pv_mix == (("east", 1.0), ("west", 1.0))
    assert pop.demand_mix == (("h0", 3.0, 1.0), ("g1", 1.0, 4.0))
    p = env.default_params
    assert int(np.sum(np.asarray(p.pv_kw) > 0)) == 9
    east_west = {env.pv_kinds.index("east"), env.pv_kinds.index("west")}
    assert set(np.asarray(p.pv_kind).tolist()) <= east_west
    settings = env_settings(env, "lem-v0")
    assert settings["population"]["prosumer_frac"] == 0.9 and settings["id"] == "lem-v0"
    hash(env)  # still a static, hashable configuration
    with pytest.raises(ValueError, match=r"population.prosumer_fraction: unknown field"):
        make_env(dict(_compose("+env.kwargs.population.prosumer_fraction=0.9")))
    with pytest.raises(ValueError, match=r"population.pv_mix: got 'north'"):
        jaxlem.make("lem-v0", population={"pv_mix": {"north": 1.0}})
