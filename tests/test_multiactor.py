"""multiactor-v0: conformance, energy and money invariants under random, extreme and NaN
actions (hypothesis), pay-as-clear auctions against a NumPy reference, daily decisions,
validation, scenario banks under jit(vmap) and training with per-type parameters."""

from __future__ import annotations

import json

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import jaxlem
from jaxlem.envs.multiactor import policies, text
from jaxlem.envs.multiactor.markets import auction

SMALL = dict(num_producers=3, num_utilities=2, num_consumers=5, num_prosumers=4, num_days=2)
ENVS = {s: jaxlem.make("multiactor-v0", scenario=s, dt_h=2.0, **SMALL) for s in (1, 2)}


def _actions(key, t, env, kind):
    """Random (kind 0), extreme (1), NaN/inf-laced (2) or scripted (3) actions."""
    n, d = env.action_space().shape
    k1, k2, k3 = jax.random.split(jax.random.fold_in(key, t), 3)
    rand = jax.random.uniform(k1, (n, d), minval=-1.5, maxval=1.5)
    rand = rand.at[:, -1].set(jax.random.randint(k3, (n,), -2, env.num_utilities + 1))
    extreme = jnp.sign(jax.random.normal(k2, (n, d))) * 1e30
    nan = jnp.where(jax.random.uniform(k3, (n, d)) < 0.4, jnp.nan, rand)
    nan = jnp.where(jax.random.uniform(k2, (n, d)) < 0.1, jnp.inf, nan)
    return jnp.select([kind == 0, kind == 1], [rand, extreme], nan)


def _episode_invariants(env, params, key, kind):
    """Per step: the energy and money residuals, the credit headroom, SOC, capacity and
    whether every output is finite."""
    obs, state = env.reset(key, params)

    def body(carry, k):
        obs, state = carry
        a = jnp.where(kind == 3, policies.BASELINES["scripted"](k, obs, env, params),
                      _actions(k, state.t, env, kind))  # fmt: skip
        obs2, state2, reward, done, info = env.step(k, state, a, params)
        supply = (
            info["produced_kwh"] + info["pv_kwh"] + info["discharge_kwh"]
            + info["imports_kwh"] + info["shed_kwh"]
        )  # fmt: skip
        use = info["consumed_kwh"] + info["charge_kwh"] + info["exports_kwh"] + info["curtail_kwh"]
        money = jnp.sum(info["cash_delta"]) + info["external_receipts"]
        scale = 1.0 + jnp.sum(jnp.abs(info["cash_delta"])) + jnp.abs(info["external_receipts"])
        finite = jnp.all(jnp.isfinite(obs2)) & jnp.all(jnp.isfinite(reward))
        for v in jax.tree_util.tree_leaves(state2):
            finite &= jnp.all(jnp.isfinite(v))
        out = dict(
            energy=jnp.abs(supply - use) / (1.0 + supply),
            money=jnp.abs(money) / scale,
            headroom=info["min_headroom"],
            soc_ok=jnp.all(state2.soc_kwh <= params.battery_kwh * (1 + 1e-5) + 1e-5)
            & jnp.all(state2.soc_kwh >= -1e-6),
            cap_ok=jnp.all(state2.capacity_kw >= 0) & jnp.all(state2.pipeline_kw >= 0),
            finite=finite,
            cash_cons=jnp.sum(info["cash_delta"]),
        )
        return (obs2, state2), out

    keys = jax.random.split(key, env.num_steps)
    return jax.lax.scan(body, (obs, state), keys)[1]


EPISODES = {
    s: jax.jit(jax.vmap(lambda p, k, kind, e=e: _episode_invariants(e, p, k, kind), (0, 0, None)))
    for s, e in ENVS.items()
}


@settings(max_examples=8, deadline=None, derandomize=True)
@given(seed=st.integers(0, 2**30), kind=st.integers(0, 3), scenario=st.sampled_from([1, 2]))
def test_energy_money_credit_soc_capacity_hold_under_any_action(seed, kind, scenario):
    """On a bank of 2 random scenarios under jit(vmap) (scenario 2's bank test)."""
    env = ENVS[scenario]
    key = jax.random.PRNGKey(seed)
    params = env.sample_params(key, 2)
    out = jax.device_get(EPISODES[scenario](params, jax.random.split(key, 2), kind))
    assert out["finite"].all()
    assert out["energy"].max() < 1e-4, out["energy"].max()
    assert out["money"].max() < 1e-4, out["money"].max()
    assert out["headroom"].min() >= -1e-3
    assert out["soc_ok"].all() and out["cap_ok"].all()


def _pay_as_clear_reference(price, qty, is_buy):
    """Plain NumPy: asks ascending, bids descending, matched greedily while bid >= ask; the
    price is the highest accepted ask."""
    asks = sorted(
        (p, i)
        for i, (p, q, b) in enumerate(zip(price, qty, is_buy, strict=True))
        if not b and q > 0
    )
    bids = sorted(
        ((-p, i) for i, (p, q, b) in enumerate(zip(price, qty, is_buy, strict=True)) if b and q > 0)
    )
    left = np.array(qty, float)
    matched = np.zeros(len(price))
    ai = bi = 0
    top = None
    while ai < len(asks) and bi < len(bids):
        ap, a = asks[ai]
        bp, b = -bids[bi][0], bids[bi][1]
        if bp < ap:
            break
        q = min(left[a], left[b])
        matched[a] += q
        matched[b] += q
        left[a] -= q
        left[b] -= q
        top = ap if q > 0 else top
        ai += left[a] <= 1e-12
        bi += left[b] <= 1e-12
    return matched, (0.0 if top is None else top)


_AUCTION = jax.jit(lambda p, q, b: auction(p, q, b, "marginal", jnp.zeros(())))


@settings(max_examples=40, deadline=None, derandomize=True)
@given(st.integers(0, 2**31 - 1), st.integers(2, 12))
def test_pay_as_clear_matches_a_numpy_reference(seed, n):
    rng = np.random.default_rng(seed)
    price = rng.permutation(12).astype(np.float32) * 10.0 + 5.0  # distinct prices
    qty = rng.uniform(0.0, 5.0, 12).astype(np.float32)
    qty[n:] = 0.0  # n live orders in a book of 12 (one compile)
    is_buy = rng.uniform(size=12) < 0.5
    res = _AUCTION(jnp.asarray(price), jnp.asarray(qty), jnp.asarray(is_buy))
    matched, top = _pay_as_clear_reference(price, qty, is_buy)
    np.testing.assert_allclose(np.asarray(res.qty), matched, atol=1e-4)
    if matched.sum() > 0:
        assert float(res.price) == pytest.approx(top)
        pay = np.where(is_buy, 1.0, -1.0) * top * matched / 1000.0
        np.testing.assert_allclose(np.asarray(res.pay), pay, atol=1e-6)
    assert abs(float(jnp.sum(res.pay))) < 1e-5


def test_daily_decisions_happen_at_day_starts_only():
    env = ENVS[1]
    p = env.default_params.replace(build_delay_days=jnp.asarray(1, jnp.int32))
    obs, s = env.reset(jax.random.PRNGKey(0), p)
    a = policies.BASELINES["scripted"](jax.random.PRNGKey(0), obs, env, p)
    a = a.at[env.slices.prod, 2].set(1.0)  # every producer orders its largest build
    a = a.at[env.slices.cons, -1].set(env.num_utilities - 1.0)  # every consumer goes local
    cap0 = s.capacity_kw
    for t in range(env.steps_per_day + 1):
        obs, s2, r, done, info = env.step(jax.random.PRNGKey(t), s, a, p)
        if t == 0:
            ordered = info["invest_kw"]
            assert (ordered > 0).all()
            np.testing.assert_allclose(s2.pipeline_kw[:, 0], ordered, rtol=1e-6)
            assert (s2.supplier[: env.num_consumers] == env.num_utilities).all()
            assert float(info["cash_delta"][env.slices.cons].max()) < 0  # switching cost
        elif t < env.steps_per_day:
            assert float(info["invest_kw"].sum()) == 0.0
        s = s2
    # the build delay of one day: running from the second day's first step
    np.testing.assert_allclose(s.capacity_kw, cap0 + ordered, rtol=1e-5)


@pytest.mark.parametrize("scenario", [1, 2])
def test_daily_columns_count_only_at_day_starts(scenario):
    env = ENVS[scenario]
    p = env.default_params
    _, s = env.reset(jax.random.PRNGKey(0), p)
    static = np.asarray(env.action_mask(p))
    np.testing.assert_array_equal(np.asarray(env.action_mask_at(s, p)), static)
    mid = np.asarray(env.action_mask_at(s.replace(t=s.t + 1), p))
    sl = env.slices
    assert not mid[sl.reg].any()  # the regulator acts once a day
    assert not mid[sl.prod, 2:5].any() and mid[sl.prod, :2].all()  # offers hourly
    assert not mid[sl.cons, -1].any() and not mid[sl.pros, -1].any()  # suppliers daily
    np.testing.assert_array_equal(mid[sl.pros, :3], static[sl.pros, :3])  # prosumers hourly
    assert mid[sl.util, 0].all() and mid[sl.util, 1].all()  # retail price, wholesale bid
    assert mid[sl.util, 4].all() == (scenario == 2)  # the retail offer of scenario 2
    next_day = np.asarray(env.action_mask_at(s.replace(t=s.t + env.steps_per_day), p))
    np.testing.assert_array_equal(next_day, static)


def test_investment_is_bounded_by_cash_and_credit():
    env = ENVS[1]
    p = env.default_params
    p = p.replace(cash0=p.cash0.at[0].set(0.0), credit=p.credit.at[0].set(1.0),
                  prod_max_invest_kw=p.prod_max_invest_kw * 100)  # fmt: skip
    obs, s = env.reset(jax.random.PRNGKey(0), p)
    a = jnp.zeros(env.action_space().shape).at[env.slices.prod, 2].set(1.0)
    a = a.at[env.slices.reg].set(-1.0)  # no investment subsidy: the net cost is the capex
    _, s2, _, _, info = env.step(jax.random.PRNGKey(1), s, a, p)
    cost = info["invest_kw"] * p.prod_capex_per_kw
    assert (cost <= 1.0 + 1e-4).all() and (cost > 0.99).all()


def test_regulator_off_means_no_fines_or_subsidies():
    env = ENVS[1]
    p = env.default_params.replace(regulator_on=jnp.asarray(0.0))
    obs, s = env.reset(jax.random.PRNGKey(0), p)
    regulated = policies.BASELINES["scripted_regulated"]
    budget = 0.0
    for t in range(env.steps_per_day):
        a = regulated(jax.random.PRNGKey(t), obs, env, p)
        obs, s, _, _, info = env.step(jax.random.PRNGKey(t), s, a, p)
        assert float(jnp.abs(s.rates).max()) == 0.0
        assert float(info["gouge_fine"].sum()) == 0.0 and float(info["quota_fine"].sum()) == 0.0
        budget += float(info["regulator_net"])
    # carbon payments still reach the regulator: its budget is exactly what producers paid
    assert budget > 0 and budget == pytest.approx(float(s.cash[-1]), rel=1e-5)


@pytest.mark.parametrize(
    ("change", "pattern"),
    [
        (dict(quota=jnp.asarray([0.3, 1.5])), r"quota\[1\]: got 1.5"),
        (dict(persona=jnp.asarray([0, 3])), r"persona\[1\]: got 3"),
        (dict(prod_capacity_kw=jnp.ones(2)), r"prod_capacity_kw: shape \(2,\).*num_producers"),
        (dict(supplier0=jnp.full((9,), 5)), r"supplier0\[0\]: got 5"),
        (dict(build_delay_days=jnp.asarray(9)), r"build_delay_days: got 9"),
    ],
)
def test_bad_params_name_the_field(change, pattern):
    env = ENVS[1]
    with pytest.raises(ValueError, match=pattern):
        env.check_params(env.default_params.replace(**change))


def test_bad_static_settings_name_the_field():
    with pytest.raises(ValueError, match="scenario: got 3"):
        jaxlem.make("multiactor-v0", scenario=3)
    with pytest.raises(ValueError, match="num_utilities: got 0"):
        jaxlem.make("multiactor-v0", num_utilities=0)
    with pytest.raises(ValueError, match="dt_h"):
        jaxlem.make("multiactor-v0", dt_h=0.7)


def test_scenario_banks_run_under_jit_vmap():  # scenario 2: the invariants test's banks
    env = ENVS[1]
    bank = env.sample_params(jax.random.PRNGKey(4), 6)
    env.check_params(bank)
    pol = policies.BASELINES["scripted"]
    kpis = jax.jit(jax.vmap(lambda p, k: env.evaluation().episode_kpis(env, pol, k, p)))(
        bank, jax.random.split(jax.random.PRNGKey(5), 6)
    )
    assert np.isfinite(np.asarray(kpis["welfare"])).all()
    assert len(set(np.round(np.asarray(kpis["welfare"]), 3))) > 1  # the scenarios differ


def test_types_masks_and_columns_are_declared():
    env = ENVS[1]
    types = np.asarray(env.agent_types(env.default_params))
    assert list(np.bincount(types)) == [3, 2, 5, 4, 1]
    mask = np.asarray(env.action_mask())
    s = env.slices
    assert mask[s.cons, -1].all() and not mask[s.prod, -1].any()  # only choosers choose
    assert not np.asarray(ENVS[2].action_mask())[s.cons, -1].any()  # no suppliers in scenario 2
    assert len(env.observation_columns()) == env.observation_space().shape[-1]
    assert env.action_layout().categorical == (env.num_utilities + 1,)


# ----------------------------------------------------------------------------- text adapter
def test_text_answers_round_trip_to_actions_for_every_kind():
    env = ENVS[1]
    p = env.default_params
    obs, _ = env.reset(jax.random.PRNGKey(0), p)
    rows = np.asarray(
        jax.random.uniform(jax.random.PRNGKey(1), env.action_space().shape, minval=-1, maxval=1)
    )
    rows = np.array(rows)
    rows[:, -1] = np.round(rows[:, -1])
    fallback = np.zeros_like(rows)
    for i in range(env.num_agents):
        assert "JSON" in text.prompt(env, np.asarray(obs), i, p)
        answer = text.value(env, rows[i], i, p)
        row, rejected, found = text.parse(env, json.dumps(answer), i, p, fallback[i])
        assert found and rejected == 0, (i, answer)
        back = text.value(env, row, i, p)
        for k, v in answer.items():
            assert back[k] == (v if isinstance(v, str) else pytest.approx(v, rel=1e-4, abs=1e-4))


def test_text_parser_falls_back_and_counts_bad_answers():
    env = ENVS[1]
    p = env.default_params
    fallback = np.full((6,), 0.25, np.float32)
    row, rejected, found = text.parse(env, "I would rather not say.", 0, p, fallback)
    assert not found and np.array_equal(row, fallback)
    answer = 'Sure: {"offer_price": 1e9, "offer_share": "all", "invest_kw": 0.5}'
    row, rejected, found = text.parse(env, answer, 0, p, fallback)
    assert found and rejected == 2
    assert row[0] == fallback[0] and row[1] == fallback[1] and row[2] != fallback[2]
    _, rejected, _ = text.parse(
        env, '{"supplier": "utility_9"}', env.slices.cons.start, p, fallback
    )
    assert rejected == 1


def test_text_players_play_through_the_pettingzoo_adapter():
    from jaxlem.envs.adapters import make_pettingzoo_env

    env = ENVS[1]
    p = env.default_params
    producer, consumer, reg = 0, env.slices.cons.start, env.num_agents - 1
    seen = []

    def greedy_producer(prompt: str) -> str:
        seen.append(prompt)
        return '{"offer_price": 300, "offer_share": 0.5}'

    players = text.TextPlayers(
        env,
        {
            producer: greedy_producer,
            consumer: lambda s: '{"supplier": "local"}',
            reg: lambda s: "?",
        },
        p,
    )
    pz = make_pettingzoo_env(env, p)
    obs, _ = pz.reset(seed=0)
    for _ in range(3):
        obs, rewards, term, trunc, infos = pz.step(players.act_dict(obs))
    assert players.answers == 9 and players.unparseable == 3 and players.rejected_fields == 0
    assert "producer 0 (gas)" in seen[0] and "offer_price" in seen[0]
    joint = players.act(np.stack([obs[f"agent_{i}"] for i in range(env.num_agents)]))
    assert text.value(env, joint[producer], producer, p)["offer_price"] == pytest.approx(
        300, rel=1e-4
    )
    assert text.value(env, joint[consumer], consumer, p)["supplier"] == "local"
