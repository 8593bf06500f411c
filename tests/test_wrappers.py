"""Tests for jaxlem.envs.wrappers: LogWrapper, the JaxMARL dict adapter and the PettingZoo adapter.

One small env (4 agents) is shared by every test so that the env's compiled ``reset``/``step`` are
reused: the JaxMARL and PettingZoo adapters call the env's own compiled programs, and the
LogWrapper test compiles one vmapped ``lax.scan`` episode.
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

from jaxlem.envs.lem import LEMEnv
from jaxlem.envs.spaces import Box
from jaxlem.envs.wrappers import (
    JaxMARLAdapter,
    LogEnvState,
    LogWrapper,
    agent_names,
    make_pettingzoo_env,
)

N = 4


@pytest.fixture(scope="module")
def env() -> LEMEnv:
    return LEMEnv(num_agents=N)


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
    assert wrapped == LogWrapper(LEMEnv(num_agents=N))
    assert hash(wrapped) == hash(LogWrapper(LEMEnv(num_agents=N)))
    assert wrapped != LogWrapper(LEMEnv(num_agents=N + 1))


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
    adapter = JaxMARLAdapter(env)
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
    assert adapter.num_steps == env.num_steps  # delegated
    with pytest.raises(ValueError, match="agent"):
        adapter.action_space("agent_9")
    # the partner stage has 4 action columns
    partner = JaxMARLAdapter(LEMEnv(num_agents=3, partner_stage=True))
    assert partner.action_space("agent_0").shape == (4,)


def test_jaxmarl_adapter_round_trip(env):
    adapter = JaxMARLAdapter(env)
    params = env.default_params
    key = jax.random.PRNGKey(7)

    obs_d, state = adapter.reset(key)
    obs, state_ref = env.reset(key, params)
    assert list(obs_d) == adapter.agents
    for i, a in enumerate(adapter.agents):
        np.testing.assert_array_equal(np.asarray(obs_d[a]), np.asarray(obs[i]))
    _tree_equal(state, state_ref)

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
        _tree_equal(state, state_ref)
        _tree_equal(info, info_ref)
        assert set(dones) == {*adapter.agents, "__all__"}
        assert bool(dones["__all__"]) == (t == t_len - 1)

    with pytest.raises(ValueError, match="missing agents"):
        adapter.step(keys[0], state, {"agent_0": jnp.zeros(3)})


def test_jaxmarl_adapter_traces_under_jit_and_vmap(env):
    """jit(vmap(step)) traces (checked with eval_shape, which traces without compiling)."""
    adapter = JaxMARLAdapter(env)
    keys = jax.random.split(jax.random.PRNGKey(0), 3)
    obs_d, state = jax.eval_shape(jax.jit(jax.vmap(adapter.reset)), keys)
    actions = {a: jax.ShapeDtypeStruct((3, env.act_dim), jnp.float32) for a in adapter.agents}
    out = jax.eval_shape(jax.jit(jax.vmap(adapter.step)), keys, state, actions)
    obs_d, _, rew_d, dones, info = out
    assert obs_d["agent_0"].shape == (3, env.obs_dim)
    assert rew_d["agent_3"].shape == (3,)
    assert dones["__all__"].shape == (3,) and dones["__all__"].dtype == jnp.bool_
    assert info["final_obs"].shape == (3, N, env.obs_dim)


# --------------------------------------------------------------------------------- PettingZoo


def test_pettingzoo_parallel_api_test(env):
    from pettingzoo.test import parallel_api_test

    pz_env = make_pettingzoo_env(env, seed=0)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        parallel_api_test(pz_env, num_cycles=env.num_steps + 5)
    pz_warnings = [w for w in caught if "pettingzoo" in w.filename]
    assert not pz_warnings, [str(w.message) for w in pz_warnings]


def test_pettingzoo_full_episode_from_numpy(env):
    import gymnasium
    from pettingzoo import ParallelEnv

    from jaxlem.envs.wrappers import PettingZooAdapter

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
        "import jaxlem.envs.wrappers as w\n"
        "from jaxlem.envs.wrappers import *\n"
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
