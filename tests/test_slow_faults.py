"""Long fault tests (``pytest -m slow``): kill -9 at random points and resume; a fuzz of 10^6 env
steps per env with random, extreme and NaN actions on random valid params."""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import jaxlem

pytestmark = pytest.mark.slow
ROOT = Path(__file__).resolve().parents[1]

JOB = """
import json, sys
from jaxlem.app.job import run_job
cfg = json.loads(sys.argv[1])
run_job(cfg, sys.argv[2], log=lambda s: None)
"""


def _cfg(resume: bool, updates: int = 24) -> dict:
    return {
        "env": {"id": "lem-v0", "kwargs": {"num_agents": 3, "num_steps": 4}, "params": {}},
        "train": {
            "total_timesteps": 4 * 4 * updates,
            "num_envs": 4,
            "rollout_len": 4,
            "num_minibatches": 2,
            "hidden": [8],
            "eval_every": 4,
            "eval_envs": 2,
        },
        "scenario": {"name": None},
        "seed": 0,
        "num_seeds": 1,
        "num_chunks": 8,
        "resume": resume,
        "out_dir": None,
        "eval_scenarios": 4,
        "loggers": [],
    }


def _start(out: Path, resume: bool, updates: int = 24) -> subprocess.Popen:
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    args = [sys.executable, "-c", JOB, json.dumps(_cfg(resume, updates)), str(out)]
    return subprocess.Popen(args, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)


def _chunk(out: Path) -> int:
    try:
        return int(json.loads((out / "checkpoints" / "latest.json").read_text())["chunk"])
    except (OSError, ValueError, KeyError):
        return 0


def _history(out: Path) -> list[dict]:
    from jaxlem.train.driver import read_csv

    rows = read_csv(out / "metrics.csv")
    for r in rows:
        r.pop("env_steps_per_s")
    return rows


def test_kill_9_at_random_points_then_resume_gives_the_uninterrupted_run(tmp_path):
    full = tmp_path / "full"
    proc = _start(full, False)
    assert proc.wait(timeout=1800) == 0, proc.stderr.read().decode()[-3000:]
    reference = json.loads((full / "summary.json").read_text())
    rng = random.Random(0)
    for trial in range(3):
        out = tmp_path / f"killed{trial}"
        proc = _start(out, False)
        target = rng.randint(1, 6)
        while _chunk(out) < target and proc.poll() is None:
            time.sleep(0.05)
        time.sleep(rng.uniform(0.0, 0.5))  # sometimes during the next chunk's checkpoint write
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        while True:  # resume until the run completes (the kill may land late)
            proc = _start(out, True)
            assert proc.wait(timeout=1800) == 0, proc.stderr.read().decode()[-3000:]
            if (out / "summary.json").exists():
                break
        summary = json.loads((out / "summary.json").read_text())
        assert summary["comparison"] == reference["comparison"], trial
        assert json.dumps(_history(out)) == json.dumps(_history(full)), trial
        kinds = [seg["kind"] for seg in json.loads((out / "segments.json").read_text())]
        assert kinds[0] == "start" and set(kinds[1:]) == {"resume"}, kinds

    # more total steps extend the finished run as a new segment: same chunk length, history kept
    proc = _start(full, True, updates=42)  # 14 chunks of 3
    assert proc.wait(timeout=1800) == 0, proc.stderr.read().decode()[-3000:]
    segments = json.loads((full / "segments.json").read_text())
    assert [seg["kind"] for seg in segments] == ["start", "extend"]
    assert segments[1]["first_update"] == 24 and segments[1]["last_update"] == 42
    assert "train.total_timesteps: 384 -> 672" in segments[1]["changes"]
    assert "total_timesteps: 672" in (full / "config.yaml").read_text()
    history = _history(full)
    assert [r["update"] for r in history] == list(range(1, 43))
    assert json.dumps(history[:24]) == json.dumps(_history(tmp_path / "killed0")[:24])
    assert json.loads((full / "summary.json").read_text())["updates"] == 42


def _lem_fuzz(env, bank, steps: int, key):
    """Counts of invariant violations and non-finite values over ``steps`` x the bank."""
    num_envs = jax.tree_util.tree_leaves(bank)[0].shape[0]
    n = env.num_agents

    def action(k, t):
        k1, k2, k3 = jax.random.split(k, 3)
        rand = jax.random.uniform(k1, (num_envs, n, 3), minval=-1.5, maxval=1.5)
        extreme = jnp.sign(jax.random.normal(k2, rand.shape)) * 1e30
        nan = jnp.where(jax.random.uniform(k3, rand.shape) < 0.5, jnp.nan, rand)
        kind = t % 4
        return jnp.select([kind == 0, kind == 1, kind == 2], [rand, extreme, nan], jnp.inf)

    def body(carry, k):
        state, t = carry
        k_a, k_s = jax.random.split(k)
        a = action(k_a, t)
        keys = jax.random.split(k_s, num_envs)
        obs, state2, reward, done, info = jax.vmap(env.step)(keys, state, a, bank)
        lhs = (
            info["gen_kwh"]
            - info["demand_kwh"]
            - info["charge_kwh"]
            + info["discharge_kwh"]
            - info["curtail_kwh"]
            + info["shed_kwh"]
        )
        rhs = (
            info["p2p_sold_kwh"]
            + info["dso_sold_kwh"]
            - info["p2p_bought_kwh"]
            - info["loss_kwh"]
            - info["dso_bought_kwh"]
        )
        scale = 1.0 + jnp.abs(info["gen_kwh"]) + jnp.abs(info["demand_kwh"])
        energy_bad = jnp.sum(jnp.abs(lhs - rhs) > 1e-4 * scale)
        pay = info["p2p_payment"]
        money_bad = jnp.sum(
            jnp.abs(jnp.sum(pay, axis=1)) > 1e-4 * (1.0 + jnp.sum(jnp.abs(pay), axis=1))
        )
        soc = info["soc"]
        has = bank.bat_kwh > 0
        soc_bad = jnp.sum(has & ((soc < bank.soc_min - 1e-4) | (soc > bank.soc_max + 1e-4)))
        leaves = jax.tree_util.tree_leaves((obs, state2, reward, info))
        nonfinite = sum(
            jnp.sum(~jnp.isfinite(x)) for x in leaves if jnp.issubdtype(x.dtype, jnp.floating)
        )
        return (state2, t + 1), jnp.stack([energy_bad, money_bad, soc_bad, nonfinite])

    _, state = jax.vmap(env.reset)(jax.random.split(key, num_envs), bank)
    counts = jax.lax.scan(body, (state, 0), jax.random.split(key, steps))[1]
    return counts.sum(axis=0)


def test_fuzz_a_million_lem_steps_keeps_every_invariant():
    env = jaxlem.make("lem-v0", num_agents=8, grid_mode="capacity")
    bank = env.sample_params(jax.random.PRNGKey(1), 256)
    counts = np.asarray(
        jax.jit(lambda b, k: _lem_fuzz(env, b, 4_000, k))(bank, jax.random.PRNGKey(0))
    )
    names = ("energy balance", "P2P money", "SOC bounds", "non-finite")
    assert dict(zip(names, counts.tolist(), strict=True)) == dict.fromkeys(names, 0)


def test_fuzz_a_million_gencos_steps_stays_finite_and_within_capacity():
    env = jaxlem.make("gencos-v0")
    b, steps = 512, 2_000
    bank = env.sample_params(jax.random.PRNGKey(1), b)

    def body(state, k, bank):
        k1, k2, k3 = jax.random.split(k, 3)
        a = jax.random.uniform(k1, (b, 5, env.num_blocks), minval=-3.0, maxval=3.0)
        a = jnp.where(jax.random.uniform(k2, a.shape) < 0.1, jnp.nan, a)
        obs, state, reward, _, info = jax.vmap(env.step)(jax.random.split(k3, b), state, a, bank)
        leaves = jax.tree_util.tree_leaves((obs, state, reward, info))
        nonfinite = sum(jnp.sum(~jnp.isfinite(x)) for x in leaves if x.dtype == jnp.float32)
        over = jnp.sum(info["p_gen"] > bank.pmax * (1 + 1e-3) + 1e-2)
        return state, jnp.stack([nonfinite, over])

    def run(bank, key):
        _, state = jax.vmap(env.reset)(jax.random.split(key, b), bank)
        return jax.lax.scan(lambda st, k: body(st, k, bank), state, jax.random.split(key, steps))[
            1
        ].sum(axis=0)

    counts = np.asarray(jax.jit(run)(bank, jax.random.PRNGKey(2)))
    assert counts.tolist() == [0, 0]


def test_fuzz_a_million_multiactor_steps_keeps_every_invariant():
    env = jaxlem.make("multiactor-v0", num_consumers=12, num_prosumers=12, num_days=2)
    b, steps = 256, 4_000  # 1,024,000 env steps over 83 episodes of 48 steps per scenario
    bank = env.sample_params(jax.random.PRNGKey(1), b)
    n, d = env.action_space().shape

    def body(state, k, bank):
        k1, k2, k3, k4 = jax.random.split(k, 4)
        rand = jax.random.uniform(k1, (b, n, d), minval=-1.5, maxval=1.5)
        rand = rand.at[..., -1].set(jax.random.randint(k4, (b, n), -2, env.num_utilities + 1))
        extreme = jnp.sign(jax.random.normal(k2, rand.shape)) * 1e30
        mode = jax.random.randint(k3, (b, 1, 1), 0, 3)
        nan = jnp.where(jax.random.uniform(k2, rand.shape) < 0.3, jnp.nan, rand)
        a = jnp.select([mode == 0, mode == 1], [rand, extreme], nan)
        obs, state, reward, _, info = jax.vmap(env.step)(jax.random.split(k3, b), state, a, bank)
        supply = (
            info["produced_kwh"] + info["pv_kwh"] + info["discharge_kwh"]
            + info["imports_kwh"] + info["shed_kwh"]
        )  # fmt: skip
        use = info["consumed_kwh"] + info["charge_kwh"] + info["exports_kwh"] + info["curtail_kwh"]
        money = jnp.sum(info["cash_delta"], -1) + info["external_receipts"]
        scale = 1.0 + jnp.sum(jnp.abs(info["cash_delta"]), -1) + jnp.abs(info["external_receipts"])
        leaves = jax.tree_util.tree_leaves((obs, state, reward, info))
        nonfinite = sum(jnp.sum(~jnp.isfinite(x)) for x in leaves if x.dtype == jnp.float32)
        soc = (state.soc_kwh < -1e-6) | (state.soc_kwh > bank.battery_kwh * (1 + 1e-5) + 1e-5)
        return state, jnp.stack(
            [
                jnp.sum(jnp.abs(supply - use) > 1e-4 * (1.0 + supply)),
                jnp.sum(jnp.abs(money) > 1e-4 * scale),
                jnp.sum(info["min_headroom"] < -1e-3),
                jnp.sum(soc) + jnp.sum(state.capacity_kw < 0),
                nonfinite,
            ]
        )

    def run(bank, key):
        _, state = jax.vmap(env.reset)(jax.random.split(key, b), bank)
        return jax.lax.scan(lambda st, k: body(st, k, bank), state, jax.random.split(key, steps))[
            1
        ].sum(axis=0)

    counts = np.asarray(jax.jit(run)(bank, jax.random.PRNGKey(3)))
    names = ("energy balance", "money", "credit", "SOC or capacity", "non-finite")
    assert dict(zip(names, counts.tolist(), strict=True)) == dict.fromkeys(names, 0)
