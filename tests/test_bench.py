"""The benchmark script runs end to end on a tiny grid and writes its JSON and plot."""

import json

import jax
import jax.numpy as jnp
import pytest

from jaxlem.app import bench, profile_update


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


def test_update_stages_from_scope_paths():
    """Scope paths as JAX writes them under vmap, jit and grad map to the profile's stages."""
    head = "jit(run)/while/body/closed_call"
    roll = f"{head}/vmap(rollout)/while/body/closed_call"
    learn = f"{head}/vmap(learn)/while/body/closed_call/while/body/closed_call"
    cases = {
        f"{roll}/env/vmap()/add": "rollout: env",
        f"{roll}/distribution/jit(_normal)/jit(_uniform)/shift_left": "rollout: distribution",
        f"{roll}/actor/dot_general": "rollout: actor",
        f"{roll}/split": "rollout: other (keys, reward scaling, stacking)",
        f"{head}/advantages/while/body/mul": "advantages (GAE / V-trace)",
        f"{learn}/jvp(actor)/dot_general": "learn: forward actor",
        f"{learn}/transpose(jvp(actor))/dot_general": "learn: backward actor",
        f"{learn}/jvp(distribution)/lgamma": "learn: forward distribution",
        f"{learn}/transpose(jvp(critic))/add_any": "learn: backward critic",
        f"{learn}/transpose(jvp())/mul": "learn: backward loss terms",
        f"{learn}/optimizer/sqrt": "learn: optimizer (clip, Adam, apply)",
        f"{head}/vmap(learn)/while/body/closed_call/shuffle/gather": "learn: shuffle",
        f"{head}/reduce_sum": "other (metrics, bookkeeping)",
        "jit(run)/while/body/closed_call/vmap(rollout_len)/add": "other (metrics, bookkeeping)",
    }
    for op_name, stage in cases.items():
        assert profile_update.stage_of(op_name) == stage, op_name
        assert stage in profile_update.STAGES


def test_op_times_finds_each_scope_of_a_compiled_update():
    """The profiler's op times land in the stages whose scopes the ops were traced under; the
    gradient's matmuls (whose fusions XLA leaves unnamed) count as backward."""

    def update(w, x):
        with jax.named_scope("rollout"), jax.named_scope("env"):
            y = jnp.sin(x) @ x

        def loss(w):
            with jax.named_scope("actor"):
                return jnp.sum(jnp.tanh(y @ w))

        with jax.named_scope("learn"):
            g = jax.grad(loss)(w)
            with jax.named_scope("optimizer"):
                return w - 1e-3 * g

    w, x = jnp.ones((256, 256)), jnp.ones((256, 256))
    compiled = jax.jit(jax.vmap(update, (0, None))).lower(w[None], x).compile()
    times = profile_update.op_times(compiled, lambda: compiled(w[None], x))
    for stage in ("rollout: env", "learn: forward actor", "learn: backward actor"):
        assert times[stage] > 0, (stage, times)
    assert times["advantages (GAE / V-trace)"] == 0


def test_network_floor_reads_layers_and_counts_every_pass(monkeypatch):
    """The floor takes the layer shapes from Flax params (with a seed axis, and a type axis
    where each agent type has its own network) and adds one forward pass per rollout step and
    one forward and backward pass per minibatch and epoch."""
    import numpy as np

    from jaxlem.app import network_floor as nf

    def net(*shape_prefix):
        dims = [(5, 8), (8, 8), (8, 2)]
        return {
            "params": {
                f"Dense_{i}": {"kernel": np.zeros((*shape_prefix, a, b)), "bias": np.zeros(b)}
                for i, (a, b) in enumerate(dims)
            }
        }

    assert nf.kernels(net(1)) == [(1, 5, 8), (1, 8, 8), (1, 8, 2)]
    assert nf.kernels(net(1, 3)) == [(3, 5, 8), (3, 8, 8), (3, 8, 2)]
    f, fb = nf.pass_times(nf.kernels(net(1, 3)), 30)
    assert 0.0 < f and 0.0 < fb
    calls = []

    def fake(layers, rows):  # forward 1 s, forward and backward 10 s, whatever the rows
        calls.append((layers[-1][2], rows))
        return 1.0, 10.0

    monkeypatch.setattr(nf, "pass_times", fake)
    got = nf.update_floor({"actor": net(1), "critic": net(1)}, 2, 4, 3, 5, 2)
    # agents 2, envs 4, rollout 3, epochs 5, minibatches 2: rollout rows 8, minibatch rows 12
    assert calls == [(2, 8), (2, 12), (2, 8), (2, 12)]
    assert got == {"actor_rollout_s": 3.0, "actor_learn_s": 100.0, "critic_rollout_s": 3.0,
                   "critic_learn_s": 100.0, "total_s": 206.0}  # fmt: skip
