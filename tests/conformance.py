"""The conformance suite every registered jaxlem env must pass (the env contract).

``check_env(env)`` runs: spaces, jit, determinism, vmap over keys and over params, auto-reset with
terminated/truncated/final_obs, no NaN/inf under random and extreme actions, and the JaxMARL
dict-adapter round trip. Add a new env id to ``CONFIGS`` in test_conformance.py (or rely on its
default constructor) and it is checked.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

from jaxlem.envs.wrappers import JaxMARLAdapter


def _leaves_finite(tree) -> bool:
    return all(
        bool(np.all(np.isfinite(np.asarray(x))))
        for x in jax.tree_util.tree_leaves(tree)
        if np.issubdtype(np.asarray(x).dtype, np.floating)
    )


def _tree_equal(a, b) -> bool:
    la, lb = jax.tree_util.tree_leaves(a), jax.tree_util.tree_leaves(b)
    return len(la) == len(lb) and all(
        np.array_equal(np.asarray(x), np.asarray(y)) for x, y in zip(la, lb, strict=True)
    )


def _tree_close(a, b) -> bool:
    return all(
        np.allclose(np.asarray(x), np.asarray(y), rtol=1e-5, atol=1e-5)
        for x, y in zip(jax.tree_util.tree_leaves(a), jax.tree_util.tree_leaves(b), strict=True)
    )


def _episode(env, params, key, actions_fn, steps):
    """Python loop over the env's own jitted step (test code, not compiled code)."""
    keys = jax.random.split(key, steps + 1)
    obs, state = env.reset(keys[0], params)
    out = []
    for t in range(steps):
        ka, ks = jax.random.split(keys[t + 1])
        action = actions_fn(ka)
        obs, state, reward, done, info = env.step(ks, state, action, params)
        out.append((obs, state, reward, done, info))
    return out


def check_spaces_and_shapes(env, params):
    n = env.num_agents
    obs, state = env.reset(jax.random.PRNGKey(0), params)
    assert obs.shape == env.observation_space(params).shape
    assert obs.shape[0] == n and obs.dtype == jnp.float32
    assert env.observation_space(params).contains(obs)
    aspace = env.action_space(params)
    action = aspace.sample(jax.random.PRNGKey(1))
    assert aspace.contains(action), "sampled action not in the action space"
    assert action.shape[0] == n
    obs2, state2, reward, done, info = env.step(jax.random.PRNGKey(2), state, action, params)
    assert obs2.shape == obs.shape and obs2.dtype == jnp.float32
    assert reward.shape == (n,)
    assert jnp.shape(done) == () and jnp.asarray(done).dtype == jnp.bool_
    for k in ("terminated", "truncated", "final_obs"):
        assert k in info, f"info lacks {k!r}"
    assert info["final_obs"].shape == obs.shape
    assert jax.tree_util.tree_structure(state) == jax.tree_util.tree_structure(state2)


def check_determinism(env, params):
    sample = env.action_space(params).sample
    a = _episode(env, params, jax.random.PRNGKey(7), sample, 5)
    b = _episode(env, params, jax.random.PRNGKey(7), sample, 5)
    assert _tree_equal(a, b), "same key and params must give bitwise-identical trajectories"
    c = _episode(env, params, jax.random.PRNGKey(8), sample, 5)
    assert not _tree_equal(a, c), "different keys should give different trajectories"


def check_vmap(env, params, bank):
    nb = 3
    keys = jax.random.split(jax.random.PRNGKey(3), nb)
    obs, state = jax.vmap(env.reset, in_axes=(0, None))(keys, params)
    actions = jax.vmap(env.action_space(params).sample)(jax.random.split(keys[0], nb))
    step = jax.vmap(env.step, in_axes=(0, 0, 0, None))
    out = step(keys, state, actions, params)
    single = env.step(keys[1], jax.tree_util.tree_map(lambda x: x[1], state), actions[1], params)
    assert _tree_close(jax.tree_util.tree_map(lambda x: x[1], out), single)
    # over params: a scenario bank
    obs_p, state_p = jax.vmap(env.reset)(keys, bank)
    out_p = jax.vmap(env.step)(keys, state_p, actions, bank)
    p1 = jax.tree_util.tree_map(lambda x: x[1], bank)
    s1 = env.step(keys[1], jax.tree_util.tree_map(lambda x: x[1], state_p), actions[1], p1)
    assert _tree_close(jax.tree_util.tree_map(lambda x: x[1], out_p), s1)
    assert _leaves_finite(out_p)


def check_auto_reset(env, params):
    steps = env.num_steps
    traj = _episode(env, params, jax.random.PRNGKey(11), env.action_space(params).sample, steps)
    dones = [bool(d) for (_, _, _, d, _) in traj]
    assert dones == [False] * (steps - 1) + [True], "done exactly at the end of the episode"
    for _, _, _, d, info in traj:
        assert bool(d) == bool(info["terminated"] | info["truncated"])
    obs_last, state_last, _, _, info_last = traj[-1]
    assert not np.array_equal(np.asarray(obs_last), np.asarray(info_last["final_obs"]))
    if hasattr(state_last, "t"):
        assert int(state_last.t) == 0, "state must be reset after the episode ends"


def check_extreme_actions(env, params):
    aspace = env.action_space(params)
    shape = aspace.shape
    cases = [
        jnp.full(shape, jnp.nan),
        jnp.full(shape, jnp.inf),
        jnp.full(shape, -jnp.inf),
        jnp.full(shape, 1e30),
        jnp.full(shape, -1e30),
        1e6 * jax.random.normal(jax.random.PRNGKey(5), shape),
        jnp.where(jax.random.uniform(jax.random.PRNGKey(6), shape) < 0.5, jnp.nan, 1e9),
    ]
    obs, state = env.reset(jax.random.PRNGKey(4), params)
    for t in range(env.num_steps + 2):  # through an auto-reset
        action = cases[t % len(cases)]
        obs, state, reward, done, info = env.step(
            jax.random.PRNGKey(100 + t), state, action, params
        )
        assert _leaves_finite((obs, state, reward, info)), f"non-finite output at step {t}"


def check_jaxmarl_adapter(env, params):
    adapter = JaxMARLAdapter(env, params)
    key = jax.random.PRNGKey(9)
    obs_d, state = adapter.reset(key)
    obs, _ = env.reset(key, params)
    assert list(obs_d) == adapter.agents and len(obs_d) == env.num_agents
    np.testing.assert_array_equal(np.stack([obs_d[a] for a in adapter.agents]), np.asarray(obs))
    action = env.action_space(params).sample(key)
    actions = {a: action[i] for i, a in enumerate(adapter.agents)}
    obs_d2, _, rew_d, dones, _ = adapter.step(key, state, actions)
    obs2, _, rew, done, _ = env.step(key, state, action, params)
    np.testing.assert_array_equal(np.stack([obs_d2[a] for a in adapter.agents]), obs2)
    np.testing.assert_array_equal(np.stack([rew_d[a] for a in adapter.agents]), rew)
    assert bool(dones["__all__"]) == bool(done)


def check_env(env, params=None):
    params = env.default_params if params is None else params
    bank = env.sample_params(jax.random.PRNGKey(1), 3)
    check_spaces_and_shapes(env, params)
    check_determinism(env, params)
    check_vmap(env, params, bank)
    check_auto_reset(env, params)
    check_extreme_actions(env, params)
    check_jaxmarl_adapter(env, params)
