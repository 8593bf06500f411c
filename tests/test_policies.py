"""Tests for jaxlem.policies (the scripted baselines) run through
``jaxlem.rollout.rollout`` on ``lem-v0`` with 6 agents.

Compile budget: all baselines are run by ONE jitted rollout that picks the policy with
``lax.switch`` on a traced index, and the (obs, action) pairs each policy sees and returns are
recorded with an ordered ``jax.debug.callback`` (``rollout`` itself returns only rewards and
infos). So the whole file compiles one rollout plus two tiny per-policy functions.

Observation columns used by the policies: 7 net position (own generation - demand, scaled by the
site size; > 0 seller, < 0 buyer), 10 / 11 FiT and utility price now divided by ``max_price``,
19 has-battery flag. Action columns: 0 battery set-point, 1 limit price
(``min_price + (a + 1) / 2 * (max_price - min_price)``), 2 offer fraction ((a + 1) / 2).
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import jaxlem
from jaxlem import metrics
from jaxlem.envs.lem import with_overrides
from jaxlem.envs.lem.policies import BASELINES
from jaxlem.rollout import rollout

N = 6
ENV = jaxlem.make("lem-v0", num_agents=N)
PARAMS = ENV.default_params
NAMES = tuple(BASELINES)
NET, FIT, UTIL, HAS_BAT = 7, 10, 11, 19

_RECORD: list[tuple[np.ndarray, np.ndarray]] = []


def _record(obs, action):
    _RECORD.append((np.asarray(obs), np.asarray(action)))


def _switched(idx):
    policies = [functools.partial(p, env=ENV) for p in BASELINES.values()]

    def policy(key, obs, env, params):
        branches = [lambda k, o, p=p: p(k, o, params=params) for p in policies]
        action = jax.lax.switch(idx, branches, key, obs)
        jax.debug.callback(_record, obs, action, ordered=True)
        return action

    return policy


@jax.jit
def _run(key, idx, params):
    return rollout(ENV, _switched(idx), key, params)


@functools.cache
def episode(name: str, seed: int = 0):
    """(rewards [T, N], infos, obs [T, N, D], actions [T, N, A]) of one episode of ``name``."""
    _RECORD.clear()
    rewards, infos = _run(jax.random.PRNGKey(seed), jnp.int32(NAMES.index(name)), PARAMS)
    jax.block_until_ready(rewards)
    jax.effects_barrier()
    assert len(_RECORD) == ENV.num_steps
    obs = np.stack([o for o, _ in _RECORD])
    act = np.stack([a for _, a in _RECORD])
    infos = {k: np.asarray(v) for k, v in infos.items()}
    return np.asarray(rewards), infos, obs, act


def implied_price(action):
    lo, hi = float(PARAMS.min_price), float(PARAMS.max_price)
    return lo + (action[..., 1].astype(np.float64) + 1.0) / 2.0 * (hi - lo)


PRICE_TOL = 1e-5 * float(PARAMS.max_price)


# --------------------------------------------------------------------------- every baseline


def test_baselines_registry():
    assert set(NAMES) >= {"zero_intelligence", "zi_constrained", "rule_based_battery", "dso_only"}
    assert all(callable(p) for p in BASELINES.values())


@pytest.mark.parametrize("name", NAMES)
def test_actions_in_box_and_episode_finite(name):
    rewards, infos, obs, act = episode(name)
    assert act.shape == (ENV.num_steps, N, ENV.act_dim)
    assert np.all(np.isfinite(act))
    assert np.all(act >= -1.0) and np.all(act <= 1.0), (act.min(), act.max())
    assert rewards.shape == (ENV.num_steps, N) and np.all(np.isfinite(rewards))
    kpis = metrics.lem_episode_kpis(infos, rewards)  # the env's info has every key it reads
    for k, v in kpis.items():
        assert np.all(np.isfinite(np.asarray(v))), k


# --------------------------------------------------------------------------- DSO only


def test_dso_only_never_trades_peer_to_peer():
    rewards, infos, obs, act = episode("dso_only")
    np.testing.assert_array_equal(infos["p2p_volume_kwh"], 0.0)
    np.testing.assert_array_equal(infos["p2p_sold_kwh"], 0.0)
    np.testing.assert_array_equal(infos["p2p_bought_kwh"], 0.0)
    np.testing.assert_array_equal(infos["battery_throughput_kwh"], 0.0)  # battery idle
    # with no P2P and an idle battery the community pays exactly the no-P2P baseline
    base = np.abs(infos["baseline_cost"]).max() + 1.0
    np.testing.assert_allclose(infos["savings"], 0.0, atol=1e-5 * base)
    kpis = metrics.lem_episode_kpis(infos, rewards)
    assert float(kpis["p2p_share"]) == 0.0 and float(kpis["hhi_sales"]) == 0.0


# --------------------------------------------------------------------------- ZI-C


def test_zi_constrained_never_trades_at_a_loss():
    _, infos, obs, act = episode("zi_constrained")
    price = implied_price(act)
    pmax = float(PARAMS.max_price)
    fit = obs[..., FIT].astype(np.float64) * pmax
    util = obs[..., UTIL].astype(np.float64) * pmax
    seller, buyer = obs[..., NET] > 0, obs[..., NET] < 0
    assert seller.any() and buyer.any()  # both sides occur in the episode
    assert np.all(price[seller] >= fit[seller] - PRICE_TOL), (price[seller] - fit[seller]).min()
    assert np.all(price[buyer] <= util[buyer] + PRICE_TOL), (price[buyer] - util[buyer]).max()
    assert np.all(price <= pmax + PRICE_TOL) and np.all(price >= float(PARAMS.min_price) - 1e-3)
    np.testing.assert_array_equal(act[..., 0], 0.0)  # battery idle
    np.testing.assert_array_equal(act[..., 2], 1.0)  # offers the whole surplus
    # it is random: not one price for every seller / buyer
    assert np.unique(np.round(price[seller], 3)).size > 1
    # market consequence: every P2P unit trades inside [FiT, utility] and saves money
    traded = infos["p2p_volume_kwh"] > 0
    assert np.all(infos["clearing_price"][traded] >= infos["fit"][traded] - PRICE_TOL)
    assert np.all(infos["clearing_price"][traded] <= infos["utility"][traded] + PRICE_TOL)
    assert np.all(infos["savings"] >= -1e-5 * (np.abs(infos["baseline_cost"]) + 1.0))


# --------------------------------------------------------------------------- rule-based battery


def test_rule_based_battery_charges_own_surplus():
    _, infos, obs, act = episode("rule_based_battery")
    has_bat = np.asarray(PARAMS.bat_kwh) > 0
    assert has_bat.any() and (~has_bat).any()  # the 6-agent default has both kinds
    np.testing.assert_array_equal(obs[..., HAS_BAT], np.broadcast_to(has_bat, obs.shape[:2]))
    net, a0 = obs[..., NET], act[..., 0]
    bat = np.broadcast_to(has_bat, net.shape)
    surplus, deficit = bat & (net > 0), bat & (net < 0)
    assert surplus.any() and deficit.any()
    assert np.all(a0[surplus] > 0), "a battery owner with a surplus must charge"
    assert np.all(a0[deficit] < 0), "a battery owner with a deficit must discharge"
    np.testing.assert_array_equal(a0[~bat], 0.0)
    # it trades the rest at the DSO mid price
    pmax = float(PARAMS.max_price)
    mid = 0.5 * (obs[..., FIT] + obs[..., UTIL]).astype(np.float64) * pmax
    np.testing.assert_allclose(implied_price(act), mid, atol=PRICE_TOL)
    assert infos["charge_kwh"].sum() > 0 and infos["discharge_kwh"].sum() > 0


# --------------------------------------------------------------------------- zero intelligence


def test_zero_intelligence_prices_cover_the_range():
    _, _, obs, act = episode("zero_intelligence")
    np.testing.assert_array_equal(act[..., 0], 0.0)
    np.testing.assert_array_equal(act[..., 2], 1.0)
    a1 = act[..., 1].ravel()
    # 144 uniform draws on [-1, 1]: both halves and both tails are hit
    assert a1.min() < -0.5 and a1.max() > 0.5 and np.unique(a1).size > 100


# --------------------------------------------------------------------------- policies alone


@functools.cache
def _jit_policy(name):
    return jax.jit(lambda key, obs: BASELINES[name](key, obs, ENV, PARAMS))


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    st.integers(0, 2**31 - 1),
    # no subnormals: XLA on CPU flushes them to zero, so the policy would see 1e-40 as 0
    st.lists(st.floats(-2.0, 2.0, width=32, allow_subnormal=False), min_size=N, max_size=N),
    st.floats(0.11, 0.6),
    st.floats(0.05, 0.39),
)
def test_zi_constrained_on_any_observation(seed, net, fit_frac, gap_frac):
    """ZI-C limits hold for any net position and any FiT <= utility inside the price range."""
    obs = np.zeros((N, ENV.obs_dim), np.float32)
    obs[:, NET] = net
    obs[:, FIT] = fit_frac
    obs[:, UTIL] = fit_frac + gap_frac
    act = np.asarray(_jit_policy("zi_constrained")(jax.random.PRNGKey(seed), obs))
    price = implied_price(act)
    pmax = float(PARAMS.max_price)
    seller, buyer = obs[:, NET] > 0, obs[:, NET] <= 0
    assert np.all(price[seller] >= obs[seller, FIT] * pmax - PRICE_TOL)
    assert np.all(price[buyer] <= obs[buyer, UTIL] * pmax + PRICE_TOL)
    assert np.all(np.abs(act) <= 1.0)


def test_partner_stage_column_is_no_partner():
    """With the partner stage on, every baseline names no partner (-1 in column 3)."""
    env = with_overrides(ENV, partner_stage=True)
    obs = np.zeros((N, env.obs_dim), np.float32)
    obs[:, NET] = np.linspace(-1, 1, N)
    obs[:, FIT], obs[:, UTIL] = 0.2, 0.6
    for name, policy in BASELINES.items():
        act = np.asarray(policy(jax.random.PRNGKey(0), jnp.asarray(obs), env, PARAMS))
        assert act.shape == (N, 4), name
        np.testing.assert_array_equal(act[:, 3], -1.0, err_msg=name)
