"""gencos-v0: planner equivalence (vs DC-OPF and HiGHS), best response, ramp block cutting,
offers, episode structure, OOD axes, KPIs and validation. (Conformance: test_conformance.py.)"""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import jaxlem
from jaxlem import metrics
from jaxlem.envs.gencos import policies
from jaxlem.grid import solve_dcopf
from jaxlem.grid.highs import dcopf_highs
from jaxlem.rollout import rollout

ENV = jaxlem.make("gencos-v0")
PARAMS = ENV.default_params


def _planner_net(params):
    net = params.network
    return net.replace(gen_c1=params.cost, gen_pmin_mw=params.pmin, gen_pmax_mw=params.pmax)


def test_truthful_bids_reproduce_the_planner_dispatch():
    """Inelastic demand, no binding ramp: truthful offers = least-cost DC-OPF = HiGHS."""
    params = ENV.make_params(elastic_frac=np.float32(0.0), ramp_scale=np.float32(100.0))
    obs, state = ENV.reset(jax.random.PRNGKey(0), params)
    for t in range(3):
        load = state.load_next
        obs, state, _, _, info = ENV.step(jax.random.PRNGKey(t), state, -jnp.ones((5, 3)), params)
        plan = solve_dcopf(_planner_net(params), load)
        ref = dcopf_highs(_planner_net(params), np.asarray(load, np.float64))
        np.testing.assert_allclose(info["p_gen"], plan.p_gen, atol=0.1)
        np.testing.assert_allclose(info["p_gen"], ref["p_gen"], atol=0.1)
        np.testing.assert_allclose(info["lmp"], ref["lmp"], atol=1e-2)


def test_best_response_improves_on_everyone_at_the_cap():
    """The default game is not trivially solved: against all units at the maximum markup, the
    myopic best response strictly raises at least one unit's profit."""
    _, state = ENV.reset(jax.random.PRNGKey(0), PARAMS)
    for s in range(3):
        _, state, *_ = ENV.step(jax.random.PRNGKey(s), state, jnp.ones((5, 3)), PARAMS)
    br_action, br_profit, profit = jax.jit(
        lambda st: policies.best_response(ENV, PARAMS, st, jnp.ones((5, 3)))
    )(state)
    gain = np.asarray(br_profit - profit)
    # the current markup is on the grid: no loss beyond the fixed-budget IPM's accuracy on
    # profits, 0.3 % of the largest (the same dispatch solved twice came out 0.08 apart on an
    # Intel Xeon under the suite's LLVM -O0)
    assert np.all(gain >= -3e-3 * float(jnp.abs(profit).max()) - 1e-3)
    assert gain.max() > 0.01 * float(jnp.abs(profit).max())
    assert np.any(np.asarray(br_action[:, 0]) < 1.0)
    assert float(metrics.exploitability_proxy(br_profit, profit)) == pytest.approx(gain.max())


def test_ramp_limits_cut_blocks_not_shrink_them():
    pmin, pmax = np.asarray(PARAMS.pmin), np.asarray(PARAMS.pmax)
    r = 0.5 * pmax
    must_run, avail, lo, hi = ENV.ramp_blocks(jnp.asarray(pmin), PARAMS)  # at Pmin: top cut
    np.testing.assert_allclose(hi, np.minimum(pmax, pmin + r), rtol=1e-6)
    np.testing.assert_allclose(must_run, pmin, rtol=1e-6)
    np.testing.assert_allclose(
        np.asarray(avail).sum(1), np.minimum(pmax, pmin + r) - pmin, rtol=1e-5
    )
    width = (pmax - pmin) / 3
    np.testing.assert_allclose(np.asarray(avail)[:, 0], width, rtol=1e-5)  # bottom block whole
    must_run, avail, lo, hi = ENV.ramp_blocks(jnp.asarray(pmax), PARAMS)  # at Pmax: bottom cut
    np.testing.assert_allclose(must_run, np.maximum(pmin, pmax - r), rtol=1e-6)
    np.testing.assert_allclose(np.asarray(avail)[:, 2], width, rtol=1e-5)  # top block whole
    np.testing.assert_allclose(np.asarray(must_run) + np.asarray(avail).sum(1), pmax, rtol=1e-5)


@pytest.mark.parametrize("param", ["sort", "increments"])
def test_offers_monotone_capped_and_strategic_mask(param):
    env = jaxlem.make("gencos-v0", offer_param=param)
    a = jnp.array([[1.0, -1.0, 0.0]] * 5) if param == "sort" else jnp.array([[-1.0, 0.0, 1.0]] * 5)
    m, price = env.offers(a, PARAMS)
    assert np.all(np.diff(np.asarray(m), axis=1) >= 0)
    assert np.all(np.diff(np.asarray(price), axis=1) >= 0)
    assert float(price.max()) <= float(PARAMS.price_cap) + 1e-6
    np.testing.assert_allclose(price[:, 0], PARAMS.cost)  # markup 0 on the first block
    np.testing.assert_allclose(m[:, 1], 0.5, atol=1e-6)  # half the range, either way
    mask = PARAMS.replace(strategic=jnp.array([1.0, 0.0, 1.0, 1.0, 1.0]))
    _, p2 = env.offers(jnp.ones((5, 3)), mask)
    np.testing.assert_allclose(p2[1], PARAMS.cost[1])  # the non-strategic unit bids truthfully
    _, p3 = env.offers(jnp.full((5, 3), jnp.nan), PARAMS)
    np.testing.assert_allclose(p3, jnp.broadcast_to(PARAMS.cost[:, None], (5, 3)))


def test_episode_structure_and_observation():
    obs, state = ENV.reset(jax.random.PRNGKey(1), PARAMS)
    assert obs.shape == (5, 12)
    np.testing.assert_allclose(obs[:, 6:8], [[0.0, 1.0]] * 5, atol=1e-6)  # midnight
    np.testing.assert_allclose(obs[:, 0], np.asarray(PARAMS.cost) / 100, rtol=1e-6)
    rewards, infos = rollout(ENV, policies.truthful, jax.random.PRNGKey(2), PARAMS)
    assert rewards.shape == (48, 5)
    assert bool(infos["truncated"][-1]) and not bool(infos["truncated"][:-1].any())
    assert not bool(infos["terminated"].any())
    # float32 IPM: a few degenerate truthful-bid LPs end just above the 1e-3 residual flag
    assert float(infos["converged"].mean()) >= 0.9
    # reward = (LMP at the unit's bus - true cost) * P * dt * reward_scale (a unit's committed
    # Pmin can lose money when cheaper units set a lower price at its bus)
    lmp_unit = infos["lmp"][:, PARAMS.network.gen_bus]
    expect = (lmp_unit - PARAMS.cost) * infos["p_gen"] * ENV.dt_h
    np.testing.assert_allclose(infos["profit"], expect, rtol=1e-5, atol=1e-3)
    np.testing.assert_allclose(rewards, expect * float(PARAMS.reward_scale), rtol=1e-5, atol=1e-6)


def test_ood_axes_and_kpis():
    key = jax.random.PRNGKey(3)

    def run(params, policy):
        return rollout(ENV, policy, key, params)

    _, base = run(PARAMS, policies.truthful)
    _, shifted = run(PARAMS.replace(demand_shift=jnp.float32(1.1)), policies.truthful)
    np.testing.assert_allclose(shifted["load_mw"], 1.1 * base["load_mw"], rtol=1e-5)
    ren = PARAMS.replace(renewable_mw=jnp.array([0.0, 0.0, 200.0, 0.0, 0.0]))
    _, shock = run(ren, policies.truthful)
    assert float(shock["system_lmp"].mean()) <= float(base["system_lmp"].mean()) + 1e-3
    r_max, greedy = run(PARAMS, policies.fixed_markup(1.0))
    k_true = metrics.gencos_episode_kpis(base, jnp.zeros((48, 5)), base)
    k_max = metrics.gencos_episode_kpis(greedy, r_max, base)
    assert float(k_true["welfare_ratio"]) == pytest.approx(1.0)
    assert float(k_max["welfare_ratio"]) < 1.0
    assert float(k_max["mean_system_lmp"]) > float(k_true["mean_system_lmp"])
    assert 0.0 <= float(k_max["ramp_binding_rate"]) <= 1.0
    np.testing.assert_allclose(float(jnp.sum(k_max["dispatch_share"])), 1.0, rtol=1e-5)


@pytest.mark.parametrize(
    ("over", "pattern"),
    [
        (dict(pmin=np.full(5, 900.0, np.float32)), r"pmin\[0\] = 900 must be <= pmax\[0\] = 40"),
        (dict(load_table=np.ones((1, 24), np.float32)), "load_table: profile length 24"),
        (dict(price_cap=np.float32(0.0)), "price_cap: got 0"),
        (dict(elastic_frac=np.float32(1.5)), "elastic_frac: got 1.5"),
    ],
)
def test_bad_params(over, pattern):
    with pytest.raises(ValueError, match=pattern):
        ENV.make_params(**over)


@pytest.mark.parametrize("param", ["sort", "increments"])
def test_action_for_markups_inverts_the_offer_parametrisation(param):
    env = jaxlem.make("gencos-v0", offer_param=param)
    rng = np.random.default_rng(0)
    m = np.sort(rng.uniform(0, 1, (5, 3)), axis=-1).astype(np.float32)
    m[0] = 0.0
    m[1] = 1.0
    np.testing.assert_allclose(env.markups(env.action_for_markups(m)), m, atol=1e-5)
    # any action gives non-decreasing markups in [0, 1]
    a = rng.uniform(-1.5, 1.5, (64, 5, 3)).astype(np.float32)
    mk = np.asarray(jax.vmap(env.markups)(a))
    assert np.all(np.diff(mk, axis=-1) >= -1e-7) and mk.min() >= 0 and mk.max() <= 1


def test_stage_reference_matches_best_responses_computed_one_profile_at_a_time():
    from jaxlem.envs.gencos import equilibrium

    env = jaxlem.make("gencos-v0", num_steps=4)
    p = env.default_params
    state = equilibrium.state_at_load(env, p, 0.9)
    ref = equilibrium.stage_reference(env, p, state, grid=3, chunk=64)
    assert ref.exploitability.shape == (3,) * 5 and ref.floor >= 0
    assert ref.floor <= ref.truthful_exploitability
    rng = np.random.default_rng(1)
    for idx in [tuple(rng.integers(0, 3, 5)) for _ in range(2)] + [
        tuple(np.argwhere(ref.exploitability == ref.exploitability.min())[0])
    ]:
        action = env.action_for_markups(ref.levels[list(idx)][:, None])
        _, br, profit = policies.best_response(env, p, state, action, grid=3)
        expect = float(jnp.max(br - profit))
        # both sides clear with the fixed-budget IPM (20 iterations), batched and one profile
        # at a time: a unit's profit agrees to its tolerance, about 0.2 % of the largest profit
        # (0.16 % seen on an Intel Xeon with the suite's LLVM -O0, where the exploitability
        # of a pure Nash profile came out 9.6 on profits of 5,400), so the exploitability does
        scale = float(jnp.max(jnp.abs(profit)))
        assert ref.exploitability[idx] == pytest.approx(
            max(expect, 0.0), rel=1e-2, abs=max(1.0, 3e-3 * scale)
        )
    with pytest.raises(ValueError, match="grid: got 40"):
        equilibrium.stage_reference(env, p, state, grid=40)
