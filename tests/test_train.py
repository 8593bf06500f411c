"""Trainers end to end on tiny configs, bad configs, resume, Hydra multirun and sharding."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import jax
import numpy as np
import pytest

import jaxlem
from jaxlem.train import TrainConfig, capacity, loop, make_train
from jaxlem.train import networks as nets
from jaxlem.train.config import ALGOS
from jaxlem.train.driver import read_csv, run_training

ROOT = Path(__file__).resolve().parents[1]
LEM = jaxlem.make("lem-v0", num_agents=3, num_steps=4)
PARTNER = jaxlem.make("lem-v0", num_agents=3, num_steps=4, partner_stage=True)
TINY = dict(
    total_timesteps=4 * 4 * 3,
    num_envs=4,
    rollout_len=4,
    hidden=(8,),
    eval_every=0,
    eval_envs=2,
    num_minibatches=2,
    update_epochs=1,
)


@pytest.fixture(autouse=True)
def _fresh_jit_caches():
    """Each trainer test compiles its own programs; drop them afterwards (hundreds of compiled
    executables in one process made a later XLA compile crash)."""
    yield
    jax.clear_caches()


def _leaves_equal(a, b) -> bool:
    return all(
        np.array_equal(np.asarray(x), np.asarray(y))
        for x, y in zip(jax.tree_util.tree_leaves(a), jax.tree_util.tree_leaves(b), strict=True)
    )


@pytest.mark.parametrize(
    "algo, extra, env",
    [
        # ippo end to end: the CLI and multirun tests, the JaxMARL adapter's
        ("mappo", {"sharing": "type", "reward_norm": "agent"}, PARTNER),  # + a partner head
        # joint heads, N partner heads; a lagged behaviour actor with V-trace (CTCE APPO)
        ("ctce", {"residual": "rule_based_battery", "off_policy_lag": 2}, PARTNER),
        (
            "sac",
            {
                "buffer_size": 64,
                "batch_size": 16,
                "learning_starts": 8,
                "sharing": "independent",
                "eval_every": 2,
            },
            LEM,
        ),  # fmt: skip
        pytest.param(  # a second SAC compile (about 25 s): pytest -m slow
            "masac",
            {"buffer_size": 64, "batch_size": 16, "learning_starts": 8},
            LEM,
            marks=pytest.mark.slow,
        ),
    ],
)
def test_every_algorithm_trains_end_to_end(algo, extra, env):
    cfg = TrainConfig(algo=algo, **{**TINY, **extra})
    train = make_train(cfg, env)
    init = train.init(jax.random.PRNGKey(0))
    runner, metrics = jax.block_until_ready(train.run(init, cfg.num_updates))
    if cfg.behaviour_lag:  # the newest actor joined the lag; the oldest acted in the last rollout
        lagged = [jax.tree_util.tree_map(lambda x, i=i: x[i], runner.behaviour) for i in (0, 1)]
        assert _leaves_equal(lagged[1], runner.params["actor"])
        assert not _leaves_equal(lagged[0], lagged[1])
        assert np.all(np.asarray(metrics["is_ratio"]) > 0)
    if algo not in ("sac", "masac"):  # the learner diagnostics of every PPO update
        for k in ("approx_kl", "clip_frac", "entropy", "explained_variance", "value_loss"):
            assert k in metrics, k
        assert {"policy_loss", "grad_norm_actor", "grad_norm_critic", "lr"} <= set(metrics)
    for k, v in metrics.items():
        v = np.asarray(v)
        assert v.shape[0] == cfg.num_updates, k
        if k not in ("episode_return", "eval_return"):  # nan = no episode ended / no eval due
            assert np.all(np.isfinite(v)), k
    assert not _leaves_equal(init.params["actor"], runner.params["actor"])  # it learned something
    assert int(runner.update) == cfg.num_updates
    if cfg.eval_every:
        ev = np.asarray(metrics["eval_return"])
        assert np.isfinite(ev[cfg.eval_every - 1 :: cfg.eval_every]).all()
    # the trained policy is a scripted-policy callable: valid actions on a fresh state
    from jaxlem.train.evaluate import as_policy

    obs, _ = env.reset(jax.random.PRNGKey(1))
    act = as_policy(train.core, runner)(jax.random.PRNGKey(2), obs, env, env.default_params)
    assert act.shape == (env.num_agents, env.act_dim)
    assert env.action_space().contains(np.asarray(act))
    if env.partner_stage:  # partner index: an integer in [-1, N-1]
        assert np.array_equal(np.asarray(act[:, 3]), np.round(np.asarray(act[:, 3])))


def test_selfplay_on_gencos_keeps_a_pool_of_snapshots():
    env = jaxlem.make("gencos-v0", num_steps=4)
    cfg = TrainConfig(algo="selfplay", pool_size=3, snapshot_every=1, **TINY)
    runner, metrics = jax.block_until_ready(make_train(cfg, env)(jax.random.PRNGKey(0)))
    assert int(runner.pool_count) == 3  # one snapshot per update, capped at the pool size
    newest = jax.tree_util.tree_map(lambda p: p[cfg.num_updates % 3], runner.pool)
    assert _leaves_equal(newest, runner.params["actor"])
    assert np.isfinite(np.asarray(metrics["value_loss"])).all()


@pytest.mark.parametrize(
    "bad, field",
    [
        (dict(algo="dqn"), "algo"),
        (dict(num_minibatches=1000), "num_minibatches"),
        (dict(lr=-1e-3), "lr"),
        (dict(algo="selfplay", sharing="independent"), "sharing"),
        (dict(hidden=()), "hidden"),
        (dict(algo="sac", batch_size=512, buffer_size=100), "batch_size"),
        (dict(reward_norm="scenario"), "reward_norm"),
        (dict(algo="sac", residual="auto"), "residual"),
    ],
)
def test_bad_configs_name_the_field(bad, field):
    with pytest.raises(ValueError, match=field):
        TrainConfig(**{**TINY, **bad})


def test_masac_critics_see_the_world_state_and_pooled_actions():
    """MASAC's critics take MAPPO's world input (own obs and features plus the mean and max of
    all observations) and own action plus the mean and max of all actions; SAC's only own
    input and action (shapes traced, nothing compiled; end to end: pytest -m slow)."""
    widths = {}
    for algo in ("sac", "masac"):
        cfg = TrainConfig(algo=algo, buffer_size=64, batch_size=16, **TINY)
        train = make_train(cfg, LEM)
        runner = jax.eval_shape(train.init, jax.random.PRNGKey(0))
        widths[algo] = (
            jax.tree_util.tree_leaves(runner.params["actor"])[1].shape[0],
            jax.tree_util.tree_leaves(runner.params["q1"])[1].shape[0],
        )
    d = LEM.observation_space().shape[-1]
    a = LEM.action_space().shape[-1]
    actor_in, sac_q_in = widths["sac"]
    assert sac_q_in == actor_in + a
    assert widths["masac"] == (actor_in, actor_in + 2 * d + 3 * a)


def test_ctce_above_its_agent_limit_fails_before_compiling():
    """The limit is where the joint networks' training bytes pass the memory share; the
    parameter count it uses is the networks' own (shapes traced, nothing compiled)."""
    before = sum(loop.TRACE_COUNT.values())
    cfg = TrainConfig(algo="ctce", **TINY)
    train = make_train(cfg, LEM)
    core = train.core
    runner = jax.eval_shape(train.init, jax.random.PRNGKey(0))
    counted = sum(x.size for x in jax.tree_util.tree_leaves(runner.params))
    d, out = core.obs_dim, core.head.out_dim // LEM.num_agents
    assert counted == capacity.joint_parameters(LEM.num_agents, d, out, cfg.hidden)
    # a device of exactly the bytes 10 agents need at a share of 0.5: 10 fit, 11 do not
    mem = 2 * capacity.BYTES_PER_PARAMETER * capacity.joint_parameters(10, d, out, cfg.hidden)
    capacity.check_joint(10, d, out, cfg.hidden, 0.5, memory_bytes=mem)
    with pytest.raises(ValueError, match=r"num_agents: got 11 .*allowed range \[1, 10\]"):
        capacity.check_joint(11, d, out, cfg.hidden, 0.5, memory_bytes=mem)
    assert capacity.device_memory_bytes() > 2**28
    big = jaxlem.make("lem-v0", num_agents=20)
    with pytest.raises(ValueError, match="num_agents: got 20 with algo='ctce'.*ctce_memory"):
        make_train(TrainConfig(algo="ctce", ctce_memory_fraction=1e-9, **TINY), big)
    assert sum(loop.TRACE_COUNT.values()) == before


@pytest.mark.slow  # four runs, about 30 s; the default suite checks resume refusals (test_faults)
def test_resume_after_a_chunk_equals_an_uninterrupted_run(tmp_path):
    cfg = TrainConfig(**{**TINY, "total_timesteps": 4 * 4 * 6})
    log = lambda s: None  # noqa: E731
    full = run_training(cfg, LEM, seeds=(0, 1), num_chunks=3, out_dir=tmp_path / "a", log=log)
    run_training(
        cfg, LEM, seeds=(0, 1), num_chunks=3, out_dir=tmp_path / "b", stop_after_chunk=1, log=log
    )
    resumed = run_training(
        cfg, LEM, seeds=(0, 1), num_chunks=3, out_dir=tmp_path / "b", resume=True, log=log
    )
    assert _leaves_equal(full["runners"].params, resumed["runners"].params)
    assert _leaves_equal(full["runners"].opt_state, resumed["runners"].opt_state)
    # the chunked run is the single scan cut in pieces: the same parameters as k = 1
    single = run_training(cfg, LEM, seeds=(0, 1), num_chunks=1, log=log)
    np.testing.assert_allclose(
        jax.tree_util.tree_leaves(single["runners"].params)[0],
        jax.tree_util.tree_leaves(full["runners"].params)[0],
        rtol=1e-5,
        atol=1e-6,
    )
    rows = (tmp_path / "a" / "metrics.csv").read_text().splitlines()
    assert len(rows) == 1 + 6 * 2  # header + updates x seeds
    # the resumed run's history is whole: every update once, numbered as in the full run
    _assert_same_history(tmp_path / "a" / "metrics.csv", tmp_path / "b" / "metrics.csv")
    assert [r["update"] for r in resumed["rows"]] == [r["update"] for r in full["rows"]]

    # a crash after chunk 2's rows were appended, with its checkpoint damaged on disk: resume
    # names the bad checkpoint, restarts from chunk 1, drops the orphan rows and still ends
    # equal to the uninterrupted run; another chunk schedule is refused by name
    run_training(
        cfg, LEM, seeds=(0, 1), num_chunks=3, out_dir=tmp_path / "c", stop_after_chunk=2, log=log
    )
    ckpt = tmp_path / "c" / "checkpoints"
    for f in (ckpt / "chunk_2").rglob("*"):
        if f.is_file():
            f.write_bytes(f.read_bytes()[: len(f.read_bytes()) // 3])
    (ckpt / "latest.json").write_text('{"chunk": 2, "pa')  # torn manifest
    with pytest.raises(ValueError, match="num_chunks: got 2"):
        run_training(
            cfg, LEM, seeds=(0, 1), num_chunks=2, out_dir=tmp_path / "c", resume=True, log=log
        )
    lines: list[str] = []
    again = run_training(
        cfg, LEM, seeds=(0, 1), num_chunks=3, out_dir=tmp_path / "c", resume=True, log=lines.append
    )
    assert any("chunk_2" in ln and "unreadable" in ln for ln in lines), lines
    assert any("resumed from" in ln and "chunk_1" in ln for ln in lines), lines
    assert _leaves_equal(full["runners"].params, again["runners"].params)
    _assert_same_history(tmp_path / "a" / "metrics.csv", tmp_path / "c" / "metrics.csv")
    # more total steps extend a run: test_faults (the schedule), test_slow_faults (a whole job)


def test_sweep_levels_as_lanes_match_separate_runs():
    """A sweep over a number in params as lanes of one program: a (level, seed) lane ends where
    its own run ends, with one compile for all levels."""
    cfg = TrainConfig(**{**TINY, "eval_every": 1})
    log = lambda s: None  # noqa: E731
    levels = [LEM.default_params, LEM.default_params.replace(p2p_fee=jax.numpy.float32(0.05))]
    before = dict(loop.TRACE_COUNT)
    res = run_training(cfg, LEM, seeds=(0, 1), lanes=levels, lane_eval_params=levels, log=log)
    assert sum(loop.TRACE_COUNT.values()) - sum(before.values()) == 1
    assert [(r["lane"], r["seed"]) for r in res["rows"] if r["update"] == 1] == [
        (0, 0), (0, 1), (1, 0), (1, 1)
    ]  # fmt: skip
    lvl = 1  # the second level: its lanes sit at an offset, and its params are not the default
    p = levels[lvl]
    alone = run_training(cfg, LEM, seeds=(0, 1), params=p, eval_params=p, log=log)
    lanes = jax.tree_util.tree_leaves(res["runners"].params)
    for a, b in zip(lanes, jax.tree_util.tree_leaves(alone["runners"].params), strict=True):
        np.testing.assert_allclose(a[2 * lvl : 2 * lvl + 2], b, rtol=1e-4, atol=1e-5)
    ev_lane = [r["eval_return"] for r in res["rows"] if r["lane"] == lvl]
    ev_own = [r["eval_return"] for r in alone["rows"]]
    np.testing.assert_allclose(ev_lane, ev_own, rtol=1e-4, atol=1e-5)
    # the fee changes the market: the two levels do not train alike
    first = jax.tree_util.tree_leaves(res["runners"].params)[0]
    assert not np.allclose(first[0], first[2])
    with pytest.raises(ValueError, match="lane_eval_params: got 1 entries"):
        run_training(cfg, LEM, lanes=levels, lane_eval_params=levels[:1], log=log)
    with pytest.raises(ValueError, match="params: given with lanes"):
        run_training(cfg, LEM, lanes=levels, params=levels[0], log=log)


def _assert_same_history(a, b):
    ra, rb = read_csv(a), read_csv(b)
    assert len(ra) == len(rb)
    for x, y in zip(ra, rb, strict=True):
        x.pop("env_steps_per_s"), y.pop("env_steps_per_s")  # wall clock
        assert x.keys() == y.keys()
        np.testing.assert_array_equal(list(x.values()), list(y.values()))


@pytest.mark.slow  # a fresh process that trains and compares twice (about 80 s); pytest -m slow
def test_hydra_multirun_compiles_once_and_writes_one_folder_per_run(tmp_path):
    """``jaxlem-train -m`` over 2 values of a numeric env field in a fresh process
    (as a user runs it): one trace of the trainer, one result folder per run."""
    sweep = tmp_path / "multirun"
    overrides = [
        "-m",
        "env.kwargs.num_agents=3",
        "+env.kwargs.num_steps=4",
        "+env.params.coop_alpha=0.0,1.0",
        "seed=0",
        "experiment=smoke",
        "train.total_timesteps=64",
        "train.num_envs=4",
        "train.rollout_len=4",
        "train.hidden=[8]",
        "train.eval_envs=4",
        "train.eval_every=0",  # evaluation inside the scan: test_every_algorithm_trains...
        "train.update_epochs=1",
        "train.num_minibatches=2",
        "num_chunks=2",
        "eval_scenarios=4",
        f"hydra.sweep.dir={sweep}",
    ]
    code = textwrap.dedent(
        f"""
        import json, sys
        from jaxlem.app import cli
        from jaxlem.train import loop
        sys.argv = ["jaxlem-train", *{overrides!r}]
        cli.train_main()
        print(json.dumps(dict(loop.TRACE_COUNT)))
        """
    )
    out = _run_python(code)
    counts = [ln for ln in out.splitlines() if ln.startswith("{")]
    assert json.loads(counts[0]) == {"Core": 1}  # 2 runs, one compile
    runs = sorted(p for p in sweep.iterdir() if p.is_dir() and p.name.isdigit())
    assert len(runs) == 2
    alphas = set()
    for run in runs:
        for f in ("config.yaml", "metrics.csv", "summary.json", "episode.png", "kpis.png"):
            assert (run / f).exists(), (run, f)
        summary = json.loads((run / "summary.json").read_text())
        assert summary["algo"] == "ippo" and summary["updates"] == 4
        assert "zero_intelligence" in summary["paired_vs_baselines"]
        alphas.add((run / "config.yaml").read_text().split("coop_alpha: ")[1].split()[0])
    assert alphas == {"0.0", "1.0"}  # jaxlem-eval on a run folder: test_third_env


def _run_python(code: str, **env_extra) -> str:
    env = dict(os.environ, **env_extra)
    env["PYTHONPATH"] = str(ROOT) + os.pathsep + env.get("PYTHONPATH", "")
    proc = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=900
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    return proc.stdout


@pytest.mark.slow  # a fresh process with 4 host devices (about 40 s); pytest -m slow
def test_scenario_batch_sharded_over_four_devices_matches_one_device():
    code = textwrap.dedent(
        """
        import json, jax, numpy as np, jaxlem
        from jaxlem.train import TrainConfig
        from jaxlem.train.driver import read_csv, run_training
        assert jax.device_count() == 4
        env = jaxlem.make("lem-v0", num_agents=3, num_steps=4)
        cfg = TrainConfig(total_timesteps=96, num_envs=8, rollout_len=4, hidden=(8,),
                          eval_every=0, num_minibatches=2, update_epochs=1)
        out = {}
        for shard in (True, False):
            res = run_training(cfg, env, seeds=(0,), shard=shard, log=lambda s: None)
            sharding = res["runners"].obs.sharding
            out[shard] = (jax.tree_util.tree_leaves(res["runners"].params), sharding)
        assert len(out[True][1].device_set) == 4, out[True][1]
        diff = max(float(np.max(np.abs(np.asarray(a) - np.asarray(b))))
                   for a, b in zip(out[True][0], out[False][0]))
        print(json.dumps({"max_diff": diff}))
        """
    )
    flags = os.environ.get("XLA_FLAGS", "") + " --xla_force_host_platform_device_count=4"
    out = _run_python(code, XLA_FLAGS=flags)
    diff = json.loads(out.strip().splitlines()[-1])["max_diff"]
    assert diff < 1e-5


def test_submitit_launcher_config_composes_without_slurm():
    pytest.importorskip("hydra_plugins.hydra_submitit_launcher")
    from hydra import compose, initialize_config_module

    with initialize_config_module("jaxlem.configs", version_base=None):
        cfg = compose(
            "config",
            overrides=["+launcher=submitit", "hydra.launcher.partition=gpu"],
            return_hydra_config=True,
        )
    launcher = cfg.hydra.launcher
    assert launcher._target_.endswith("SlurmLauncher")
    assert launcher.partition == "gpu" and launcher.gpus_per_node == 1
    assert cfg.train.algo == "ippo" and cfg.env.id == "lem-v0"


def test_every_config_group_option_composes_into_a_valid_trainer_config():
    from hydra import compose, initialize_config_module

    from jaxlem.app.job import make_env

    with initialize_config_module("jaxlem.configs", version_base=None):
        for algo in ALGOS:  # every algo has its config group option
            for experiment in ("default", "smoke", "learning"):
                cfg = compose("config", overrides=[f"algo={algo}", f"experiment={experiment}"])
                TrainConfig.from_dict(dict(cfg.train)).check_env(make_env(dict(cfg)))
        cfg = compose("config", overrides=["env=gencos", "algo=selfplay"])
        assert make_env(dict(cfg)).num_agents == 5
        cfg = compose("config", overrides=["scenario=case2-monopoly"])
        assert make_env(dict(cfg)).scenario == "case2-monopoly"


@pytest.mark.parametrize(
    "types",
    [(0, 0, 1, 1, 1, 2), (2, 0, 1, 0, 2, 1, 1), (0, 2, 2, 0)],  # last: type 1 empty
)
def test_static_types_run_each_network_on_its_own_rows_with_the_same_outputs(types):
    """``sharing=type`` with static types (one network per type, each on its own rows) gives
    what the dense route (every network on every row, one-hot selection) gives."""
    t, n = 3, len(types)
    net = nets.MLP(hidden=(8,), activation="tanh", out=2)
    x = jax.random.normal(jax.random.PRNGKey(0), (5, n, 4))
    params = nets.init_shared(net, jax.random.PRNGKey(1), x[0, 0], "type", n, t)
    rows = tuple(np.flatnonzero(np.asarray(types) == k) for k in range(t))
    tt = np.broadcast_to(types, (5, n))
    dense = nets.apply_shared(net, params, x, tt, "type", t)
    static = nets.apply_by_type(net, params, x, rows)
    np.testing.assert_allclose(np.asarray(static), np.asarray(dense), rtol=1e-6, atol=1e-6)
    g_dense = jax.grad(lambda p: nets.apply_shared(net, p, x, tt, "type", t).sum())(params)
    g_static = jax.grad(lambda p: nets.apply_by_type(net, p, x, rows).sum())(params)
    for a, b in zip(*map(jax.tree_util.tree_leaves, (g_dense, g_static)), strict=True):
        np.testing.assert_allclose(np.asarray(a), np.asarray(b), rtol=1e-5, atol=1e-6)
