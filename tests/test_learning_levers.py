"""The levers that make PPO learn lem-v0: residual actors, action masks, per-agent reward
scales, the day-ahead observation and the optional metric writers."""

from __future__ import annotations

import importlib.util

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import jaxlem
from jaxlem.envs.lem import observation as lem_obs
from jaxlem.envs.lem import policies
from jaxlem.train import TrainConfig, loggers, make_train
from jaxlem.train import networks as nets
from jaxlem.train.ppo import build

ENV = jaxlem.make("lem-v0", num_agents=6, num_steps=24)
TINY = dict(total_timesteps=96, num_envs=2, rollout_len=4, hidden=(8,), eval_every=0)


def test_action_mask_marks_the_columns_that_can_matter():
    p = ENV.default_params
    mask = np.asarray(ENV.action_mask(p))
    has_bat = np.asarray(p.bat_kwh) > 0
    can_sell = (np.asarray(p.pv_kw) > 0) | has_bat
    assert mask.shape == (6, 3)
    assert np.array_equal(mask[:, 0], has_bat) and mask[:, 1].all()
    assert np.array_equal(mask[:, 2], can_sell)
    assert has_bat.any() and not has_bat.all()  # the default community has both kinds
    gencos = jaxlem.make("gencos-v0")
    assert np.asarray(gencos.action_mask()).all()  # the contract's default: every column


def test_masked_log_prob_and_entropy_leave_the_masked_columns_out():
    head = nets.ActionHead(3)
    out = jax.random.normal(jax.random.PRNGKey(0), (5, 6))
    raw = head.sample(out, jax.random.PRNGKey(1))
    mask = jnp.asarray([1.0, 0.0, 1.0])
    full = head._cont(out).log_prob(jnp.clip(raw, 1e-6, 1 - 1e-6))
    np.testing.assert_allclose(
        head.log_prob(out, raw, mask), full[:, 0] + full[:, 2], rtol=1e-5, atol=1e-5
    )
    ent = head._cont(out).entropy()
    np.testing.assert_allclose(head.entropy(out, mask), ent[:, 0] + ent[:, 2], rtol=1e-5)


@pytest.mark.parametrize("algo", ["ippo", "ctce"])
def test_a_residual_actor_at_zero_plays_its_baseline_and_reaches_every_edge(algo):
    core = build(TrainConfig(algo=algo, residual="auto", **TINY).static(), ENV)
    bank = ENV.sample_params(jax.random.PRNGKey(3), 2)
    obs, _ = jax.vmap(ENV.reset)(jax.random.split(jax.random.PRNGKey(4), 2), bank)
    key = jax.random.PRNGKey(5)
    base = jax.vmap(lambda o, p: policies.rule_based_battery(key, o, ENV, p))(obs, bank)
    views = 1 if algo == "ctce" else ENV.num_agents
    for u, expect in ((0.5, base), (1.0, jnp.ones_like(base)), (0.0, -jnp.ones_like(base))):
        raw = jnp.full((2, views, core.head.raw_dim), u)
        act = core._to_env(raw, obs, bank, key)
        np.testing.assert_allclose(act, expect, atol=1e-6)
    # between the baseline and an edge the action moves monotonically
    acts = [
        core._to_env(jnp.full((2, views, core.head.raw_dim), u), obs, bank, key)
        for u in (0.5, 0.6, 0.8)
    ]
    assert np.all(np.diff(np.stack([np.asarray(a) for a in acts]), axis=0) >= -1e-6)


def test_a_residual_categorical_head_keeps_the_baseline_choice_until_it_learns_otherwise():
    from jaxlem.envs.multiactor import policies as ma_policies

    env = jaxlem.make("multiactor-v0", num_consumers=2, num_prosumers=2, num_days=1)
    cfg = TrainConfig(algo="mappo", sharing="type", residual="auto", **TINY)
    core = build(cfg.static(), env)
    head, u = core.head, env.num_utilities
    assert head.defer and head.classes == u + 2  # "keep the rule's choice" + U + 1 options
    bank = env.sample_params(jax.random.PRNGKey(3), 2)
    obs, _ = jax.vmap(env.reset)(jax.random.split(jax.random.PRNGKey(4), 2), bank)
    key = jax.random.PRNGKey(5)
    base = jax.vmap(lambda o, p: ma_policies.BASELINES["scripted"](key, o, env, p))(obs, bank)
    raw = jnp.full((2, env.num_agents, head.raw_dim), 0.5).at[..., -1].set(0.0)
    np.testing.assert_allclose(core._to_env(raw, obs, bank, key), base, atol=1e-6)
    for k in range(1, u + 2):  # an explicit option k plays option k - 1 (column value k - 2)
        act = core._to_env(raw.at[..., -1].set(float(k)), obs, bank, key)
        np.testing.assert_allclose(act[..., -1], k - 2.0)
        np.testing.assert_allclose(act[..., :-1], base[..., :-1], atol=1e-6)
    # an untrained actor (logits ~ 0) keeps the rule's choice in its mode and mostly in samples
    out = jnp.zeros((4000, head.out_dim))
    assert np.all(np.asarray(head.mode(out)[:, -1]) == 0)
    kept = float(np.mean(np.asarray(head.sample(out, key)[:, -1]) == 0))
    expect = np.exp(cfg.residual_keep_logit) / (np.exp(cfg.residual_keep_logit) + u + 1)
    assert abs(kept - expect) < 0.02
    # without a residual baseline the head has the env's options only
    assert not build(TrainConfig(algo="mappo", **TINY).static(), env).head.defer


def test_residual_auto_follows_the_env_and_bad_names_are_refused():
    assert TrainConfig(residual="auto").residual_policy(ENV) == "rule_based_battery"
    assert TrainConfig(residual="auto").residual_policy(jaxlem.make("gencos-v0")) == ""
    with pytest.raises(ValueError, match="residual: got 'nope'"):
        TrainConfig(residual="nope").check_env(ENV)


def test_per_agent_reward_scale_has_one_running_scale_per_agent_slot():
    cfg = TrainConfig(reward_norm="agent", **TINY)
    core = build(cfg.static(), ENV)
    bank = ENV.sample_params(jax.random.PRNGKey(0), 2)
    runner = core.init(jax.random.PRNGKey(1)[None], bank, cfg.hyper())
    assert runner.ret_stats["var"].shape == (1, 2, ENV.num_agents)
    runner, _ = core.run(runner, bank, None, cfg.hyper(), 2)
    var = np.asarray(runner.ret_stats["var"][0])
    assert np.all(np.isfinite(var)) and np.all(var >= 0)
    # sites of different size get different scales
    assert np.ptp(var) > 0


def test_day_ahead_features_match_a_plain_numpy_reading_of_the_episode():
    env = jaxlem.make("lem-v0", num_agents=4, num_steps=24)
    p = env.default_params.replace(
        pv_noise=jnp.float32(0.0), demand_noise=jnp.float32(0.0), forecast_noise=jnp.float32(0.0)
    )
    obs, state = env.reset(jax.random.PRNGKey(7), p)
    util, fit = np.asarray(state.utility), np.asarray(state.fit)
    pmax = float(p.max_price)
    gens, dems, feats = [], [], []
    act = jnp.zeros((4, 3))
    for t in range(24):
        feats.append((t, np.asarray(obs[:, len(lem_obs.BASE_COLUMNS) :])))
        gens.append(np.asarray(state.gen))
        dems.append(np.asarray(state.demand))
        obs, state, *_ = env.step_env(jax.random.PRNGKey(100 + t), state, act, p)
    gens, dems = np.stack(gens), np.stack(dems)
    size = np.asarray((p.pv_kw + p.demand_kw + p.disp_kw + p.bat_kw) * env.dt_h) + 1e-6
    for t, f in feats:
        if t == 23:
            break
        later = np.arange(24) > t
        np.testing.assert_allclose(f[:, 0], util[later].max() / pmax, rtol=1e-5)
        np.testing.assert_allclose(f[:, 1], util[later].min() / pmax, rtol=1e-5)
        np.testing.assert_allclose(f[:, 2], fit[later].max() / pmax, rtol=1e-5)
        first_peak = np.argmax(np.where(later, util, -np.inf) >= util[later].max())
        np.testing.assert_allclose(f[:, 3], (first_peak - t) / 24, rtol=1e-5)
        # without noise the forecast of the rest of the day is what the rest of the day brings
        np.testing.assert_allclose(f[:, 4] * size * 6, gens[t + 1 :].sum(0), rtol=1e-4, atol=1e-4)
        np.testing.assert_allclose(f[:, 5] * size * 6, dems[t + 1 :].sum(0), rtol=1e-4, atol=1e-4)
    off = jaxlem.make("lem-v0", num_agents=4, day_ahead_obs=False)
    assert off.obs_dim == env.obs_dim - len(lem_obs.AHEAD_COLUMNS)


def test_metric_writers_are_validated_and_tensorboard_writes_events(tmp_path):
    with pytest.raises(ValueError, match="loggers: got 'csv'"):
        loggers.make_writers(["csv"], tmp_path, {})
    assert loggers.make_writers([], tmp_path, {}) == []
    if importlib.util.find_spec("tensorboardX") is None:
        pytest.skip("tensorboardX (extra 'tensorboard') is not installed")
    (w,) = loggers.make_writers(["tensorboard"], tmp_path, {"lr": 1e-3})
    w.write([{"update": 1, "seed": 0, "entropy": -1.5, "approx_kl": 1e-3, "note": "x"}])
    w.close()
    assert list((tmp_path / "tensorboard").glob("events.out.tfevents.*"))


@pytest.mark.parametrize("algo", ["ippo", "mappo"])
def test_only_the_mappo_critic_sees_the_other_agents(algo):
    """MAPPO's critic input carries the pooled world state: changing another agent's observation
    moves agent 0's value under MAPPO but not under IPPO; the actor never sees it."""
    cfg = TrainConfig(algo=algo, **TINY)
    core = build(cfg.static(), ENV)
    bank = ENV.sample_params(jax.random.PRNGKey(0), 2)
    runner = jax.tree_util.tree_map(
        lambda x: x[0], core.init(jax.random.PRNGKey(1)[None], bank, cfg.hyper())
    )
    types = jnp.zeros((1, ENV.num_agents), jnp.int32)
    obs = jax.random.normal(jax.random.PRNGKey(2), (1, ENV.num_agents, ENV.obs_dim))
    other = obs.at[0, 3].add(3.0)  # agent 3's observation changes

    def value_and_action(o):
        x_a, x_c = core.agents.inputs(o, types)
        v = core._value(runner.params["critic"], x_c, types)[0, 0]
        return float(v), np.asarray(core._actor(runner.params["actor"], x_a, types)[0, 0])

    v0, a0 = value_and_action(obs)
    v1, a1 = value_and_action(other)
    np.testing.assert_array_equal(a0, a1)
    if algo == "mappo":
        assert abs(v1 - v0) > 1e-4
    else:
        assert v1 == v0


def test_residual_scale_bounds_how_far_the_actor_moves_the_baseline():
    """With ``residual_scale = s`` a continuous column at d = +1 (-1) moves the baseline's
    action s of the way to the upper (lower) edge; d = 0 plays the baseline."""
    bank = ENV.sample_params(jax.random.PRNGKey(3), 2)
    obs, _ = jax.vmap(ENV.reset)(jax.random.split(jax.random.PRNGKey(4), 2), bank)
    key = jax.random.PRNGKey(5)
    base = jax.vmap(lambda o, p: policies.rule_based_battery(key, o, ENV, p))(obs, bank)
    with pytest.raises(ValueError, match="residual_scale: got 0"):
        TrainConfig(residual="auto", residual_scale=0.0, **TINY)
    for s in (1.0, 0.2):
        core = build(TrainConfig(residual="auto", residual_scale=s, **TINY).static(), ENV)
        shape = (2, ENV.num_agents, core.head.raw_dim)
        # raw Beta samples u in [0, 1]: u = 0.5 is d = 0, u = 1 is d = +1, u = 0 is d = -1
        for v, want in ((0.5, base), (1.0, base + s * (1.0 - base)),
                        (0.0, base - s * (base + 1.0))):  # fmt: skip
            got = core._to_env(jnp.full(shape, v), obs, bank, key)
            np.testing.assert_allclose(got, want, atol=1e-5)


def test_residual_scale_by_type_bounds_each_type_by_its_own_scale():
    """Per agent type: each agent's move towards the edge is its type's share of the way."""
    bank = ENV.sample_params(jax.random.PRNGKey(3), 2)
    obs, _ = jax.vmap(ENV.reset)(jax.random.split(jax.random.PRNGKey(4), 2), bank)
    key = jax.random.PRNGKey(5)
    base = jax.vmap(lambda o, p: policies.rule_based_battery(key, o, ENV, p))(obs, bank)
    scales = tuple(0.1 * (i + 1) for i in range(ENV.num_agent_types))
    with pytest.raises(ValueError, match="residual_scale_by_type: got 1 values"):
        TrainConfig(residual="auto", residual_scale_by_type=(0.5,), **TINY).check_env(ENV)
    with pytest.raises(ValueError, match=r"residual_scale_by_type\[0\]: got 2"):
        TrainConfig(residual="auto", residual_scale_by_type=(2.0,) * 4, **TINY)
    cfg = TrainConfig.from_dict({"residual": "auto", "residual_scale_by_type": list(scales)})
    assert cfg.residual_scale_by_type == scales
    core = build(TrainConfig(residual="auto", residual_scale_by_type=scales, **TINY).static(), ENV)
    shape = (2, ENV.num_agents, core.head.raw_dim)
    s = np.asarray(scales)[np.asarray(jax.vmap(ENV.agent_types)(bank))][..., None]
    got = core._to_env(jnp.full(shape, 1.0), obs, bank, key)
    np.testing.assert_allclose(got, base + s * (1.0 - base), atol=1e-5)


def test_actor_lr_scale_by_type_steps_each_types_actor_at_its_own_rate():
    """A type scaled by 0 keeps its actor (its critic still learns); the others move."""
    types = np.asarray(ENV.agent_types(ENV.default_params))
    frozen, moving = int(types[0]), int(types[2])
    assert frozen != moving
    scales = [1.0] * ENV.num_agent_types
    scales[frozen] = 0.0
    with pytest.raises(ValueError, match="actor_lr_scale_by_type: got 1 values"):
        TrainConfig(sharing="type", actor_lr_scale_by_type=(0.5,), **TINY).check_env(ENV)
    with pytest.raises(ValueError, match=r"actor_lr_scale_by_type\[1\]: got 2"):
        TrainConfig(sharing="type", actor_lr_scale_by_type=(1.0, 2.0), **TINY)
    with pytest.raises(ValueError, match="actor_lr_scale_by_type: set with sharing='shared'"):
        TrainConfig(actor_lr_scale_by_type=tuple(scales), **TINY)
    cfg = TrainConfig.from_dict(
        {"sharing": "type", "actor_lr_scale_by_type": scales, **TINY, "hidden": [8]}
    )
    assert cfg.actor_lr_scale_by_type == tuple(scales)
    train = make_train(cfg, ENV, params=ENV.default_params)
    init = train.init(jax.random.PRNGKey(0))
    runner, _ = jax.block_until_ready(train.run(init, cfg.num_updates))

    def moved(net, t):
        pairs = zip(
            jax.tree_util.tree_leaves(init.params[net]),
            jax.tree_util.tree_leaves(runner.params[net]),
            strict=True,
        )
        return any(not np.array_equal(a[t], b[t]) for a, b in pairs)

    assert not moved("actor", frozen)
    assert moved("actor", moving) and moved("critic", frozen) and moved("critic", moving)
