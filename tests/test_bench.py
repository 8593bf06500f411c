"""The benchmark script runs end to end on a tiny grid and writes its JSON and plot."""

import json

import pytest

from jaxlem.app import bench


def test_bench_tiny(tmp_path, capsys):
    args = "--agents 3 30 --batch 1 --work 200 --repeats 1 --max-agent-slots 10 --reference"
    bench.main([*args.split(), "--out", str(tmp_path)])
    data = json.loads((tmp_path / "bench_env.json").read_text())
    assert (tmp_path / "bench_env.png").stat().st_size > 0
    assert [(r["num_agents"], r["batch"]) for r in data["rows"]] == [(3, 1)]
    assert data["skipped"] == [{"num_agents": 30, "batch": 1, "reason": "over memory budget"}]
    for r in data["rows"]:
        assert r["compile_s"] > 0 and r["agent_steps_per_s"] > 0
        rel = abs(r["agent_steps_per_s"] - r["env_steps_per_s"] * r["num_agents"])
        assert rel < 1e-6 * r["agent_steps_per_s"]
        assert r["ratio_to_reference"] > 0  # the plain-JAX two-sort step timed beside it
    assert data["hardware"]["jax"]
    assert "skipped" in capsys.readouterr().out


def test_growth_exponent():
    rows = [{"batch": 1, "num_agents": n, "step_time_s": 1e-6 * n} for n in (1000, 10000, 100000)]
    assert abs(bench.growth_exponent(rows, 1) - 1.0) < 1e-9


def test_stage_chain_reproduces_the_step():
    """The profiler times the stages of ``step_env`` on the inputs a real step gives them:
    chaining them reproduces the step exactly."""
    import jax
    import numpy as np

    import jaxlem
    from jaxlem.app import profile_step

    env = jaxlem.make("lem-v0", num_agents=6)
    params = env.default_params
    _, state = env.reset(jax.random.PRNGKey(0), params)
    action = jax.random.uniform(jax.random.PRNGKey(1), (6, 3), minval=-1.0, maxval=1.0)
    for i in range(8):  # into the day: both sides of the book
        _, state, *_ = env.step(jax.random.PRNGKey(i), state, action, params)
    key = jax.random.PRNGKey(42)
    calls = profile_step.stage_calls(env, key, state, action, params)
    obs, nxt, reward, *_ = env.step_env(key, state, action, params)
    for a, b in zip(
        jax.tree_util.tree_leaves(calls["out"]),
        jax.tree_util.tree_leaves((obs, nxt, reward)),
        strict=True,
    ):
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
    names = [name for name, _, _ in calls["stages"]]
    assert names[0] == "battery" and names[-1] == "observation" and len(names) == 11


@pytest.mark.slow  # benchmark-only code (jaxlem-bench train runs it); pytest -m slow
def test_plain_ppo_reference_moves_its_actor():
    """The benchmark's plain PPO update runs on an env of the contract and moves its actor."""
    import jax
    import numpy as np

    import jaxlem
    from jaxlem.app import plain_ppo

    env = jaxlem.make("lem-v0", num_agents=3, num_steps=4)
    bank = env.sample_params(jax.random.PRNGKey(0), 4)
    init, update = plain_ppo.make(env, 4, 4, 2, 2, (8,))
    state = init(jax.random.PRNGKey(1), bank)
    new, reward = jax.jit(update)(state, bank)
    assert np.isfinite(float(reward))
    before, after = (jax.tree_util.tree_leaves(s[0]["actor"]) for s in (state, new))
    moved = [not np.array_equal(a, b) for a, b in zip(before, after, strict=True)]
    assert any(moved)
