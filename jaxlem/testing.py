"""The conformance suite of the jaxlem env contract, for our envs and yours.

``check_env(env)`` runs: spaces and shapes, the declared contract (action layout, named columns,
agent types, action mask, evaluation spec), jit, determinism, vmap over keys and over params,
auto-reset with terminated/truncated/final_obs, no NaN/inf under random and extreme actions,
that the action columns a state's mask leaves out change nothing, and the JaxMARL dict-adapter
round trip. Each check raises ``AssertionError`` naming what failed::

    from jaxlem.testing import check_env
    check_env(MyEnv())
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeAlias

import jax
import jax.numpy as jnp
import numpy as np

from jaxlem.envs.adapters import JaxMARLAdapter
from jaxlem.envs.base import Environment

# any env of the contract (a subclass of ``Environment``, whatever its state and params)
Env: TypeAlias = Environment[Any, Any]


def _check(condition: Any, message: str) -> None:
    """An explicit check (not ``assert``: it must hold under ``python -O`` too)."""
    if not bool(condition):
        raise AssertionError(message)


def _leaves_finite(tree: Any) -> bool:
    return all(
        bool(np.all(np.isfinite(np.asarray(x))))
        for x in jax.tree_util.tree_leaves(tree)
        if np.issubdtype(np.asarray(x).dtype, np.floating)
    )


def _tree_equal(a: Any, b: Any) -> bool:
    la, lb = jax.tree_util.tree_leaves(a), jax.tree_util.tree_leaves(b)
    return len(la) == len(lb) and all(
        np.array_equal(np.asarray(x), np.asarray(y)) for x, y in zip(la, lb, strict=True)
    )


def _tree_close(a: Any, b: Any) -> bool:
    return all(
        np.allclose(np.asarray(x), np.asarray(y), rtol=1e-5, atol=1e-5)
        for x, y in zip(jax.tree_util.tree_leaves(a), jax.tree_util.tree_leaves(b), strict=True)
    )


def _episode(
    env: Env, params: Any, key: jax.Array, actions_fn: Callable[[jax.Array], jax.Array], steps: int
) -> list[tuple[Any, ...]]:
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


def check_spaces_and_shapes(env: Env, params: Any) -> None:
    n = env.num_agents
    obs, state = env.reset(jax.random.PRNGKey(0), params)
    _check(
        obs.shape == env.observation_space(params).shape,
        "obs.shape == env.observation_space(params).shape",
    )
    _check(
        obs.shape[0] == n and obs.dtype == jnp.float32,
        "obs.shape[0] == n and obs.dtype == jnp.float32",
    )
    _check(
        env.observation_space(params).contains(obs), "env.observation_space(params).contains(obs)"
    )
    aspace = env.action_space(params)
    action = aspace.sample(jax.random.PRNGKey(1))
    _check(aspace.contains(action), "sampled action not in the action space")
    _check(action.shape[0] == n, "action.shape[0] == n")
    obs2, state2, reward, done, info = env.step(jax.random.PRNGKey(2), state, action, params)
    _check(
        obs2.shape == obs.shape and obs2.dtype == jnp.float32,
        "obs2.shape == obs.shape and obs2.dtype == jnp.float32",
    )
    _check(reward.shape == (n,), "reward.shape == (n,)")
    _check(
        jnp.shape(done) == () and jnp.asarray(done).dtype == jnp.bool_,
        "jnp.shape(done) == () and jnp.asarray(done).dtype == jnp.bool_",
    )
    for k in ("terminated", "truncated", "final_obs"):
        _check(k in info, f"info lacks {k!r}")
    _check(info["final_obs"].shape == obs.shape, 'info["final_obs"].shape == obs.shape')
    _check(
        # (jaxlib ships no stub of PyTreeDef, so a type checker cannot resolve its ``==``)
        jax.tree_util.tree_structure(state) == jax.tree_util.tree_structure(state2),  # type: ignore[operator]
        "jax.tree_util.tree_structure(state) == jax.tree_util.tree_structure(state2)",
    )


def check_determinism(env: Env, params: Any) -> None:
    sample = env.action_space(params).sample
    a = _episode(env, params, jax.random.PRNGKey(7), sample, 5)
    b = _episode(env, params, jax.random.PRNGKey(7), sample, 5)
    _check(_tree_equal(a, b), "same key and params must give bitwise-identical trajectories")
    c = _episode(env, params, jax.random.PRNGKey(8), sample, 5)
    _check(not _tree_equal(a, c), "different keys should give different trajectories")


def check_vmap(env: Env, params: Any, bank: Any) -> None:
    nb = 3
    keys = jax.random.split(jax.random.PRNGKey(3), nb)
    obs, state = jax.vmap(env.reset, in_axes=(0, None))(keys, params)
    actions = jax.vmap(env.action_space(params).sample)(jax.random.split(keys[0], nb))
    step = jax.vmap(env.step, in_axes=(0, 0, 0, None))
    out = step(keys, state, actions, params)
    single = env.step(keys[1], jax.tree_util.tree_map(lambda x: x[1], state), actions[1], params)
    _check(
        _tree_close(jax.tree_util.tree_map(lambda x: x[1], out), single),
        "_tree_close(jax.tree_util.tree_map(lambda x: x[1], out), single)",
    )
    # over params: a scenario bank
    obs_p, state_p = jax.vmap(env.reset)(keys, bank)
    out_p = jax.vmap(env.step)(keys, state_p, actions, bank)
    p1 = jax.tree_util.tree_map(lambda x: x[1], bank)
    s1 = env.step(keys[1], jax.tree_util.tree_map(lambda x: x[1], state_p), actions[1], p1)
    _check(
        _tree_close(jax.tree_util.tree_map(lambda x: x[1], out_p), s1),
        "_tree_close(jax.tree_util.tree_map(lambda x: x[1], out_p), s1)",
    )
    _check(_leaves_finite(out_p), "_leaves_finite(out_p)")


def check_auto_reset(env: Env, params: Any) -> None:
    steps = env.num_steps
    traj = _episode(env, params, jax.random.PRNGKey(11), env.action_space(params).sample, steps)
    dones = [bool(d) for (_, _, _, d, _) in traj]
    _check(dones == [False] * (steps - 1) + [True], "done exactly at the end of the episode")
    for _, _, _, d, info in traj:
        _check(
            bool(d) == bool(info["terminated"] | info["truncated"]),
            'bool(d) == bool(info["terminated"] | info["truncated"])',
        )
    obs_last, state_last, _, _, info_last = traj[-1]
    _check(
        not np.array_equal(np.asarray(obs_last), np.asarray(info_last["final_obs"])),
        'not np.array_equal(np.asarray(obs_last), np.asarray(info_last["final_obs"]))',
    )
    if hasattr(state_last, "t"):
        _check(int(state_last.t) == 0, "state must be reset after the episode ends")


def check_extreme_actions(env: Env, params: Any) -> None:
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
        _check(_leaves_finite((obs, state, reward, info)), f"non-finite output at step {t}")


def check_jaxmarl_adapter(env: Env, params: Any) -> None:
    adapter = JaxMARLAdapter(env, params)
    key = jax.random.PRNGKey(9)
    obs_d, state = adapter.reset(key)
    obs, _ = env.reset(key, params)
    _check(
        list(obs_d) == adapter.agents and len(obs_d) == env.num_agents,
        "list(obs_d) == adapter.agents and len(obs_d) == env.num_agents",
    )
    np.testing.assert_array_equal(np.stack([obs_d[a] for a in adapter.agents]), np.asarray(obs))
    action = env.action_space(params).sample(key)
    actions = {a: action[i] for i, a in enumerate(adapter.agents)}
    obs_d2, _, rew_d, dones, _ = adapter.step(key, state, actions)
    obs2, _, rew, done, _ = env.step(key, state.env_state, action, params)
    np.testing.assert_array_equal(np.stack([obs_d2[a] for a in adapter.agents]), obs2)
    np.testing.assert_array_equal(np.stack([rew_d[a] for a in adapter.agents]), rew)
    _check(bool(dones["__all__"]) == bool(done), 'bool(dones["__all__"]) == bool(done)')


def check_contract(env: Env, params: Any) -> None:
    """What the env declares for trainers and reports agrees with its spaces."""
    n = env.num_agents
    layout = env.action_layout()
    act_shape = env.action_space(params).shape
    _check(layout.act_dim == act_shape[-1], f"action_layout: {layout} vs action space {act_shape}")
    _check(layout.low < layout.high, f"action_layout: low {layout.low} >= high {layout.high}")
    _check(
        len(env.action_columns()) == act_shape[-1],
        f"action_columns: {len(env.action_columns())} names for {act_shape[-1]} columns",
    )
    obs_dim = env.observation_space(params).shape[-1]
    _check(
        len(env.observation_columns()) == obs_dim,
        f"observation_columns: {len(env.observation_columns())} names for {obs_dim} columns",
    )
    names = [c.name for c in env.observation_columns()]
    _check(len(set(names)) == len(names), "observation_columns: duplicate names")
    types = np.asarray(env.agent_types(params))
    _check(types.shape == (n,), f"agent_types: shape {types.shape}; expected ({n},)")
    _check(
        np.issubdtype(types.dtype, np.integer)
        and types.min() >= 0
        and types.max() < env.num_agent_types,
        f"agent_types: values in [0, num_agent_types={env.num_agent_types})",
    )
    static = env.static_agent_types
    _check(
        static is None or tuple(int(t) for t in types) == tuple(static),
        f"static_agent_types {static} differ from agent_types {types.tolist()}",
    )
    mask = np.asarray(env.action_mask(params))
    _check(
        mask.shape == tuple(act_shape) and mask.dtype == np.bool_,
        f"action_mask: shape {mask.shape} {mask.dtype}; expected {tuple(act_shape)} bool",
    )
    spec = env.evaluation()
    _check(len(spec.baselines) > 0, "evaluation: no baselines")
    _check("mean_agent_return" in spec.table, "evaluation.table lacks 'mean_agent_return'")
    _check(
        not spec.null_policy or spec.null_policy in spec.policies,
        f"evaluation.null_policy {spec.null_policy!r} is not one of its policies",
    )
    _check(
        not env.reference_policy or env.reference_policy in spec.policies,
        f"reference_policy {env.reference_policy!r} is not one of evaluation().policies",
    )
    obs, _ = env.reset(jax.random.PRNGKey(0), params)
    space = env.action_space(params)
    for name, policy in spec.policies.items():
        action = policy(jax.random.PRNGKey(1), obs, env, params)
        _check(space.contains(action), f"policy {name!r}: action outside the action space")


def check_action_mask(env: Env, params: Any, steps: int = 3) -> None:
    """At the first ``steps`` states of an episode, ``action_mask_at`` lies within
    ``action_mask``, and the columns it leaves out change nothing: the step with other values
    there gives the same observation, state, reward and done."""
    space = env.action_space(params)
    static = np.asarray(env.action_mask(params))
    mask_at = jax.jit(env.action_mask_at)
    _, state = env.reset(jax.random.PRNGKey(7), params)
    for t in range(min(steps, env.num_steps)):
        k_a, k_b, k_step = jax.random.split(jax.random.PRNGKey(200 + t), 3)
        mask = np.asarray(mask_at(state, params))
        _check(
            mask.shape == static.shape and mask.dtype == np.bool_,
            f"action_mask_at: shape {mask.shape} {mask.dtype}; expected {static.shape} bool",
        )
        _check(not (mask & ~static).any(), f"action_mask_at outside action_mask at step {t}")
        action = space.sample(k_a)
        other = jnp.where(jnp.asarray(mask), action, space.sample(k_b))
        got = env.step(k_step, state, action, params)
        alt = env.step(k_step, state, other, params)
        for i, what in enumerate(("obs", "state", "reward", "done")):
            _check(
                _tree_equal(got[i], alt[i]),
                f"step {t}: a column action_mask_at leaves out changed the {what}",
            )
        state = got[1]


def check_evaluation(env: Env, params: Any) -> None:
    """One episode's KPIs of the first baseline (compiles a whole episode: slower)."""
    spec = env.evaluation()
    name, policy = next(iter(spec.baselines.items()))
    kpis = spec.episode_kpis(env, policy, jax.random.PRNGKey(0), params)
    _check("mean_agent_return" in kpis, "episode_kpis lacks 'mean_agent_return'")
    _check(_leaves_finite(kpis), f"episode_kpis of {name!r} not finite")


def check_env(
    env: Env, params: Any = None, episode_kpis: bool = False, adapter: bool = True
) -> None:
    """Every check on ``env`` (default params unless given); ``episode_kpis`` also plays one
    evaluation episode, ``adapter`` runs the JaxMARL adapter round trip (a second compile)."""
    params = env.default_params if params is None else params
    bank = env.sample_params(jax.random.PRNGKey(1), 3)
    check_spaces_and_shapes(env, params)
    check_contract(env, params)
    check_determinism(env, params)
    check_vmap(env, params, bank)
    check_auto_reset(env, params)
    check_extreme_actions(env, params)
    check_action_mask(env, params)
    if adapter:
        check_jaxmarl_adapter(env, params)
    if episode_kpis:
        check_evaluation(env, params)
