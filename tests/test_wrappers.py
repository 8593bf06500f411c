"""Tests for jaxlem.envs.wrappers: LogWrapper, the JaxMARL dict adapter and the PettingZoo adapter.

One small env (4 agents) is shared by most tests so that the env's compiled ``reset``/``step`` are
reused: the JaxMARL and PettingZoo adapters call the env's own compiled programs, and the
LogWrapper test compiles one vmapped ``lax.scan`` episode. PettingZoo's ``parallel_api_test`` runs
on every registered env (small settings). JaxMARL's training conventions (IPPO, spaces,
truncation) are in test_jaxmarl.py.
"""

from __future__ import annotations

import math
import os
import subprocess
import sys
import warnings

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import jaxlem
from jaxlem.envs.adapters import JaxMARLAdapter, JaxMARLState, make_pettingzoo_env
from jaxlem.envs.spaces import Box
from jaxlem.envs.wrappers import LogEnvState, LogWrapper, Wrapper, agent_names

N = 4


def _lem(**kwargs):
    return jaxlem.make("lem-v0", **kwargs)


@pytest.fixture(scope="module")
def env():
    return _lem(num_agents=N)


def _tree_equal(a, b) -> None:
    la, ta = jax.tree_util.tree_flatten(a)
    lb, tb = jax.tree_util.tree_flatten(b)
    assert ta == tb
    for x, y in zip(la, lb, strict=True):
        np.testing.assert_array_equal(np.asarray(x), np.asarray(y))


# --------------------------------------------------------------------------------- LogWrapper


def test_log_wrapper_delegates_and_hashes(env):
    wrapped = LogWrapper(env)
    assert wrapped.num_agents == N
    assert wrapped.num_steps == env.num_steps
    assert wrapped.action_space() == env.action_space()
    assert wrapped.observation_space() == env.observation_space()
    assert wrapped.default_params is env.default_params
    assert wrapped.unwrapped is env
    # static-argument friendly: equal envs give equal wrappers (shared compile cache)
    assert wrapped == LogWrapper(_lem(num_agents=N))
    assert hash(wrapped) == hash(LogWrapper(_lem(num_agents=N)))
    assert wrapped != LogWrapper(_lem(num_agents=N + 1))


def test_log_wrapper_episode_returns_vmapped(env):
    """Full episode under lax.scan, vmapped over 3 keys: returns equal the summed rewards."""
    wrapped = LogWrapper(env)
    t_len = env.num_steps
    act_space = env.action_space()

    def episode(key):
        k_reset, k_run = jax.random.split(key)
        obs, state = wrapped.reset(k_reset)

        def body(state, k):
            k_act, k_step = jax.random.split(k)
            action = act_space.sample(k_act)
            _, state, reward, done, info = wrapped.step(k_step, state, action)
            out = (
                reward,
                done,
                info["returned_episode_returns"],
                info["returned_episode_lengths"],
                info["returned_episode"],
                state.episode_returns,
                state.episode_lengths,
            )
            return state, out

        state, outs = jax.lax.scan(body, state, jax.random.split(k_run, t_len))
        return obs, state, outs

    keys = jax.random.split(jax.random.PRNGKey(0), 3)
    obs0, state, outs = jax.jit(jax.vmap(episode))(keys)
    reward, done, ret, length, returned, run_ret, run_len = jax.device_get(outs)
    assert isinstance(state, LogEnvState)
    assert obs0.shape == (3, N, env.obs_dim)
    assert reward.shape == (3, t_len, N) and ret.shape == (3, t_len, N)

    # done exactly at the last step; returned_* reported there
    expected_done = np.zeros((3, t_len), bool)
    expected_done[:, -1] = True
    np.testing.assert_array_equal(done, expected_done)
    np.testing.assert_array_equal(returned, expected_done)
    manual = reward.astype(np.float64).sum(axis=1)  # [3, N]
    np.testing.assert_allclose(ret[:, -1], manual, rtol=1e-5, atol=1e-6)
    np.testing.assert_array_equal(length[:, -1], t_len)
    # before the end nothing has been returned yet; the running sums track the episode
    np.testing.assert_array_equal(ret[:, :-1], 0.0)
    np.testing.assert_array_equal(length[:, :-1], 0)
    np.testing.assert_allclose(
        run_ret[:, :-1], np.cumsum(reward, axis=1)[:, :-1], rtol=1e-5, atol=1e-6
    )
    np.testing.assert_array_equal(run_len[:, :-1], np.tile(np.arange(1, t_len), (3, 1)))
    # ... and restart at the auto-reset
    np.testing.assert_array_equal(run_ret[:, -1], 0.0)
    np.testing.assert_array_equal(run_len[:, -1], 0)
    np.testing.assert_array_equal(np.asarray(state.episode_lengths), 0)
    np.testing.assert_allclose(np.asarray(state.returned_episode_returns), manual, rtol=1e-5)
    # different keys give different episodes
    assert not np.allclose(manual[0], manual[1])


# --------------------------------------------------------------------------------- JaxMARL


def test_jaxmarl_adapter_spaces(env):
    adapter = JaxMARLAdapter(env, spaces="jaxlem")
    assert adapter.agents == ["agent_0", "agent_1", "agent_2", "agent_3"] == agent_names(N)
    assert adapter.num_agents == N
    assert adapter.params is env.default_params
    obs_space = adapter.observation_space("agent_2")
    act_space = adapter.action_space("agent_2")
    assert isinstance(obs_space, Box) and isinstance(act_space, Box)
    assert obs_space.shape == (env.obs_dim,)
    assert act_space.shape == (env.act_dim,)
    assert (act_space.low, act_space.high) == (-1.0, 1.0)
    assert act_space.contains(act_space.sample(jax.random.PRNGKey(0)))
    assert adapter.observation_space("agent_2") is obs_space  # one object per agent
    assert adapter.observation_spaces["agent_2"] is obs_space
    assert adapter.num_steps == env.num_steps  # delegated
    assert adapter.name == env.name
    # agent classes group the agents by env.agent_types (one class when all are alike)
    types = np.asarray(env.agent_types(env.default_params))
    classes = adapter.agent_classes
    assert sorted(a for members in classes.values() for a in members) == adapter.agents
    for members in classes.values():
        assert len({int(types[adapter.agents.index(a)]) for a in members}) == 1
    assert len(classes) == max(1, len(set(types.tolist())))
    with pytest.raises(ValueError, match="agent"):
        adapter.action_space("agent_9")
    # the partner stage has 4 action columns
    partner = JaxMARLAdapter(jaxlem.make("lem-v0", num_agents=3, partner_stage=True))
    assert partner.action_space("agent_0").shape == (4,)
    # whatever class the spaces are (JaxMARL's when installed), they have the same attributes
    default = JaxMARLAdapter(env).action_space("agent_1")
    assert default.shape == (env.act_dim,) and default.dtype == jnp.float32
    assert float(np.min(default.low)) == -1.0 and float(np.max(default.high)) == 1.0


class _TypedEnv(Wrapper):
    """An env whose agents have types (even agents type 0, odd type 1), optionally varying by
    scenario: scenarios whose first float leaf differs from the default swap the types."""

    agent_type_names = ("consumer", "prosumer")

    def __init__(self, env, vary: bool = False):
        super().__init__(env)
        self.vary = vary

    def agent_types(self, params):
        base = jnp.arange(self.num_agents, dtype=jnp.int32) % 2
        if not self.vary:
            return base
        leaf = _first_float_leaf(params)
        ref = _first_float_leaf(self._env.default_params)
        return jnp.where(jnp.any(leaf != ref), 1 - base, base)


def _first_float_leaf(params):
    return next(
        x for x in jax.tree_util.tree_leaves(params) if jnp.issubdtype(x.dtype, jnp.floating)
    )


def _two_scenario_bank(env):
    """Scenario 0 the default, scenario 1 the default with its first float leaf changed."""
    p = env.default_params
    target = _first_float_leaf(p)
    return jax.tree_util.tree_map(
        lambda x: jnp.stack([x, x + 1 if x is target else x]), p, is_leaf=lambda x: x is target
    )


def test_jaxmarl_adapter_agent_classes(env):
    typed = JaxMARLAdapter(_TypedEnv(env))
    assert typed.agent_classes == {
        "consumer": ["agent_0", "agent_2"],
        "prosumer": ["agent_1", "agent_3"],
    }
    typed.agent_classes["consumer"].append("x")  # a copy: the adapter's mapping is unchanged
    assert typed.agent_classes["consumer"] == ["agent_0", "agent_2"]
    # types constant over the bank: grouped; types varying over the bank: one class
    bank = _two_scenario_bank(env)
    assert JaxMARLAdapter(_TypedEnv(env), bank=bank).agent_classes == typed.agent_classes
    varying = JaxMARLAdapter(_TypedEnv(env, vary=True), bank=bank)
    assert varying.agent_classes == {"agents": agent_names(N)}


def test_jaxmarl_adapter_round_trip(env):
    """info="full", no bank: bitwise env.reset / env.step on ``state.env_state``."""
    adapter = JaxMARLAdapter(env, info="full")
    params = env.default_params
    key = jax.random.PRNGKey(7)

    obs_d, state = adapter.reset(key)
    obs, state_ref = env.reset(key, params)
    assert isinstance(state, JaxMARLState)
    assert list(obs_d) == adapter.agents
    for i, a in enumerate(adapter.agents):
        np.testing.assert_array_equal(np.asarray(obs_d[a]), np.asarray(obs[i]))
    _tree_equal(state.env_state, state_ref)
    _tree_equal(adapter.get_obs(state), obs_d)
    assert int(state.scenario) == -1 and state.params is params

    t_len = env.num_steps
    keys = jax.random.split(jax.random.PRNGKey(8), t_len)
    act_keys = jax.random.split(jax.random.PRNGKey(9), t_len)
    for t in range(t_len):
        action = env.action_space().sample(act_keys[t])
        actions = {a: action[i] for i, a in enumerate(adapter.agents)}
        obs_d, state, rew_d, dones, info = adapter.step(keys[t], state, actions)
        obs, state_ref, reward, done, info_ref = env.step(keys[t], state_ref, action, params)
        # exact equality with env.step on the stacked actions
        for i, a in enumerate(adapter.agents):
            np.testing.assert_array_equal(np.asarray(obs_d[a]), np.asarray(obs[i]))
            np.testing.assert_array_equal(np.asarray(rew_d[a]), np.asarray(reward[i]))
            assert bool(dones[a]) == bool(done)
        _tree_equal(state.env_state, state_ref)
        _tree_equal(adapter.get_obs(state), obs_d)
        _tree_equal(info, info_ref)
        assert set(dones) == {*adapter.agents, "__all__"}
        assert bool(dones["__all__"]) == (t == t_len - 1)

    with pytest.raises(ValueError, match="missing agents"):
        adapter.step(keys[0], state, {"agent_0": jnp.zeros(3)})


def test_jaxmarl_adapter_info_is_per_agent(env):
    """Default info: every leaf [N] (scalars broadcast, [N] kept, the rest left out)."""
    adapter = JaxMARLAdapter(env)
    key = jax.random.PRNGKey(3)
    _, state = adapter.reset(key)
    _, state_ref = env.reset(key, env.default_params)
    actions = {a: jnp.zeros(env.act_dim) for a in adapter.agents}
    *_, info = adapter.step(key, state, actions)
    *_, info_ref = env.step(key, state_ref, jnp.zeros((N, env.act_dim)), env.default_params)
    for k, v in info.items():
        assert v.shape == (N,), k
    for k, v in info_ref.items():
        v = np.asarray(v)
        if v.ndim == 0:
            np.testing.assert_array_equal(info[k], np.full(N, v))
        elif v.shape == (N,):
            np.testing.assert_array_equal(info[k], v)
        else:
            assert k not in info, k
    assert "final_obs" not in info and not bool(np.any(info["terminated"]))
    assert info["terminated"].dtype == jnp.bool_ and info["truncated"].dtype == jnp.bool_
    with pytest.raises(ValueError, match="info"):
        JaxMARLAdapter(env, info="dict")


def test_jaxmarl_adapter_avail_actions(env):
    adapter = JaxMARLAdapter(env)
    _, state = adapter.reset(jax.random.PRNGKey(0))
    avail = adapter.get_avail_actions(state)
    mask = np.asarray(env.action_mask(env.default_params))
    assert list(avail) == adapter.agents
    for i, a in enumerate(adapter.agents):
        assert avail[a].dtype == jnp.bool_ and avail[a].shape == (env.act_dim,)
        np.testing.assert_array_equal(avail[a], mask[i])
    # per scenario: the masks of the state's params, also vmapped over a bank
    bank = env.sample_params(jax.random.PRNGKey(1), 3)
    _, states = jax.vmap(adapter.reset)(jax.random.split(jax.random.PRNGKey(2), 3), bank)
    avail = jax.jit(jax.vmap(adapter.get_avail_actions))(states)
    expected = np.asarray(jax.vmap(env.action_mask)(bank))
    for i, a in enumerate(adapter.agents):
        np.testing.assert_array_equal(avail[a], expected[:, i])


def test_jaxmarl_adapter_scenario_bank(env):
    """reset draws a scenario from the bank, step plays it, the auto-reset draws a new one."""
    bank = env.sample_params(jax.random.PRNGKey(0), 4)
    adapter = JaxMARLAdapter(env, bank=bank)
    assert adapter.num_scenarios == 4
    t_len = env.num_steps
    zero = {a: jnp.zeros(env.act_dim) for a in adapter.agents}

    def episode_pair(key):
        k_reset, k_run = jax.random.split(key)
        _, state = adapter.reset(k_reset)

        def body(state, k):
            _, new, rew, dones, info = adapter.step(k, state, zero)
            rew = jnp.stack([rew[a] for a in adapter.agents])
            return new, (state.scenario, info["scenario"], dones["__all__"], rew, state.params)

        return jax.lax.scan(body, state, jax.random.split(k_run, 2 * t_len))

    keys = jax.random.split(jax.random.PRNGKey(5), 8)
    _, (scn, info_scn, done, rew, played) = jax.jit(jax.vmap(episode_pair))(keys)
    scn, info_scn, done = np.asarray(scn), np.asarray(info_scn), np.asarray(done)
    assert scn.shape == (8, 2 * t_len) and info_scn.shape == (8, 2 * t_len, N)
    np.testing.assert_array_equal(info_scn, np.repeat(scn[..., None], N, -1))
    assert np.all((scn >= 0) & (scn < 4))
    # constant within an episode, redrawn (possibly equal) at the boundary; all 4 get drawn
    np.testing.assert_array_equal(scn[:, :t_len], scn[:, :1].repeat(t_len, 1))
    np.testing.assert_array_equal(scn[:, t_len:], scn[:, t_len:][:, :1].repeat(t_len, 1))
    np.testing.assert_array_equal(done[:, t_len - 1], True)
    assert set(np.unique(scn)) == {0, 1, 2, 3}
    assert np.any(scn[:, 0] != scn[:, t_len])
    # the state carries the drawn scenario's params
    for b, t in ((0, 0), (3, t_len + 1)):
        _tree_equal(
            jax.tree_util.tree_map(lambda x, b=b, t=t: x[b, t], played),
            jax.tree_util.tree_map(lambda x, b=b, t=t: x[scn[b, t]], bank),
        )
    assert np.all(np.isfinite(np.asarray(rew)))

    # reset(key, params=...) plays a given scenario: scenario -1
    _, state = adapter.reset(jax.random.PRNGKey(0), env.default_params)
    assert int(state.scenario) == -1

    with pytest.raises(ValueError, match="both"):
        JaxMARLAdapter(env, env.default_params, bank)
    with pytest.raises(ValueError, match="bank"):
        JaxMARLAdapter(env, bank=env.default_params)  # no scenario axis


def test_jaxmarl_adapter_reset_state(env):
    """JaxMARL's ``step(..., reset_state)``: the episode restarts from the given state."""
    adapter = JaxMARLAdapter(env)
    _, start = adapter.reset(jax.random.PRNGKey(11))
    _, state = adapter.reset(jax.random.PRNGKey(12))
    zero = {a: jnp.zeros(env.act_dim) for a in adapter.agents}
    for t in range(env.num_steps):
        obs_d, state, _, dones, _ = adapter.step(jax.random.PRNGKey(t), state, zero, start)
    assert bool(dones["__all__"])
    _tree_equal(state, start)
    _tree_equal(obs_d, adapter.get_obs(start))


def test_jaxmarl_adapter_traces_under_jit_and_vmap(env):
    """jit(vmap(step)) traces (checked with eval_shape, which traces without compiling)."""
    for info_mode in ("agent", "full"):
        adapter = JaxMARLAdapter(env, info=info_mode)
        keys = jax.random.split(jax.random.PRNGKey(0), 3)
        obs_d, state = jax.eval_shape(jax.jit(jax.vmap(adapter.reset)), keys)
        actions = {a: jax.ShapeDtypeStruct((3, env.act_dim), jnp.float32) for a in adapter.agents}
        out = jax.eval_shape(jax.jit(jax.vmap(adapter.step)), keys, state, actions)
        obs_d, _, rew_d, dones, info = out
        assert obs_d["agent_0"].shape == (3, env.obs_dim)
        assert rew_d["agent_3"].shape == (3,)
        assert dones["__all__"].shape == (3,) and dones["__all__"].dtype == jnp.bool_
        if info_mode == "full":
            assert info["final_obs"].shape == (3, N, env.obs_dim)
        else:
            assert all(v.shape == (3, N) for v in jax.tree_util.tree_leaves(info))


# --------------------------------------------------------------------------------- PettingZoo

# small settings per registered env (others are built with their defaults)
PZ_SETTINGS = {
    "lem-v0": dict(num_agents=3, num_steps=8),
    "gencos-v0": dict(num_steps=6),
}


@pytest.mark.parametrize("env_id", jaxlem.registered_envs())
def test_pettingzoo_parallel_api_test(env_id):
    from pettingzoo.test import parallel_api_test

    env = jaxlem.make(env_id, **PZ_SETTINGS.get(env_id, {}))
    pz_env = make_pettingzoo_env(env, seed=0)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        parallel_api_test(pz_env, num_cycles=env.num_steps + 5)
    pz_warnings = [w for w in caught if "pettingzoo" in w.filename]
    assert not pz_warnings, [str(w.message) for w in pz_warnings]


def test_pettingzoo_full_episode_from_numpy(env):
    import gymnasium
    from pettingzoo import ParallelEnv

    from jaxlem.envs.adapters.pettingzoo import PettingZooAdapter

    pz_env = make_pettingzoo_env(env, seed=1)
    assert isinstance(pz_env, PettingZooAdapter) and isinstance(pz_env, ParallelEnv)
    assert pz_env.metadata["name"] == "jaxlem_v0"
    assert pz_env.possible_agents == agent_names(N)
    assert pz_env.agents == []
    for i, a in enumerate(pz_env.possible_agents):
        space = pz_env.action_space(a)
        assert isinstance(space, gymnasium.spaces.Box)
        assert space.dtype == np.float32 and space.shape == (env.act_dim,)
        assert space.low.dtype == np.float32 and space.high.dtype == np.float32
        space.seed(100 + i)
        assert pz_env.observation_space(a).shape == (env.obs_dim,)

    def run_episode(seed):
        obs, infos = pz_env.reset(seed=seed)
        assert pz_env.agents == pz_env.possible_agents
        assert set(obs) == set(infos) == set(pz_env.agents)
        for a in pz_env.agents:
            assert obs[a].dtype == np.float32 and pz_env.observation_space(a).contains(obs[a])
        total, steps = dict.fromkeys(pz_env.agents, 0.0), 0
        while pz_env.agents:
            actions = {a: pz_env.action_space(a).sample() for a in pz_env.agents}
            obs, rewards, terms, truncs, infos = pz_env.step(actions)
            steps += 1
            assert set(obs) == set(rewards) == set(terms) == set(truncs) == set(infos)
            for a, r in rewards.items():
                assert type(r) is float and math.isfinite(r)
                assert obs[a].dtype == np.float32 and pz_env.observation_space(a).contains(obs[a])
                assert isinstance(infos[a]["profit"], float)
                total[a] += r
            assert all(terms.values()) == (steps == env.num_steps)
            assert not any(truncs.values())
        assert steps == env.num_steps
        assert pz_env.agents == []
        return total

    total = run_episode(seed=3)
    with pytest.raises(RuntimeError, match="reset"):
        pz_env.step(dict.fromkeys(pz_env.possible_agents, np.zeros(env.act_dim, np.float32)))

    # reproducible from the seed (same actions: reseed the action spaces)
    for i, a in enumerate(pz_env.possible_agents):
        pz_env.action_space(a).seed(100 + i)
    assert run_episode(seed=3) == total

    pz_env.reset()
    with pytest.raises(ValueError, match="shape"):
        pz_env.step(dict.fromkeys(pz_env.agents, np.zeros(env.act_dim + 1, np.float32)))
    with pytest.raises(ValueError, match="missing agents"):
        pz_env.step({"agent_0": np.zeros(env.act_dim, np.float32)})
    pz_env.close()


def test_wrappers_import_without_pettingzoo():
    """The module imports without pettingzoo; the adapter then raises an install hint."""
    code = (
        "import sys\n"
        "sys.modules['pettingzoo'] = None\n"
        "sys.modules['gymnasium'] = None\n"
        "import jaxlem.envs.adapters.pettingzoo as w\n"
        "from jaxlem.envs.adapters import *\n"
        "for get in (lambda: w.PettingZooAdapter, lambda: w.make_pettingzoo_env(None)):\n"
        "    try:\n"
        "        get()\n"
        "    except ImportError as err:\n"
        "        assert 'pip install jaxlem[pettingzoo]' in str(err), err\n"
        "    else:\n"
        "        raise SystemExit('no ImportError')\n"
    )
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    env_vars = {**os.environ, "PYTHONPATH": root + os.pathsep + os.environ.get("PYTHONPATH", "")}
    res = subprocess.run(
        [sys.executable, "-c", code], env=env_vars, capture_output=True, text=True, timeout=120
    )
    assert res.returncode == 0, res.stderr
