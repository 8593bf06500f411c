"""Training under ``jax.distributed``: two processes on one machine (CPU collectives through
gloo) run ``jaxlem-train distributed=true`` with the scenario batch sharded over both; the
parameters match a one-process run within float tolerance, process 0 alone writes the run
folder, and a resume from its checkpoint continues the same history."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[1]
OVERRIDES = [
    "env.kwargs.num_agents=3",
    "+env.kwargs.num_steps=4",
    "seed=0",
    "experiment=smoke",
    "train.total_timesteps=128",
    "train.num_envs=8",
    "train.rollout_len=4",
    "train.hidden=[8]",
    "train.eval_envs=4",
    "train.eval_every=0",
    "train.update_epochs=1",
    "train.num_minibatches=2",
    "num_chunks=2",
    "eval_scenarios=4",
]
CODE = textwrap.dedent(
    """
    import json, sys
    import jax, numpy as np
    from jaxlem.app import cli
    from jaxlem.train import checkpoint, distributed
    out, stop, overrides = sys.argv[1], sys.argv[2] == "stop", sys.argv[3:]
    if stop:  # the first chunk only, as if the job died after its checkpoint
        from jaxlem.train import driver
        run = driver.run_training
        driver.run_training = lambda *a, **k: run(*a, **{**k, "stop_after_chunk": 1})
        from jaxlem.app import job
        job.run_training = driver.run_training
    sys.argv = ["jaxlem-train", f"out_dir={out}", *overrides]
    cli.train_main()
    print(json.dumps({"process": jax.process_index(), "count": jax.process_count(),
                      "devices": jax.device_count()}))
    """
)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("localhost", 0))
        return s.getsockname()[1]


def _launch(out: Path, num: int, extra: list[str], stop: bool = False) -> list[dict]:
    """``num`` processes of one job; returns what each printed last."""
    port = _free_port()
    procs = []
    for pid in range(num):
        env = dict(os.environ)
        env["PYTHONPATH"] = str(ROOT) + os.pathsep + env.get("PYTHONPATH", "")
        if num > 1:
            env.update(
                JAX_COORDINATOR_ADDRESS=f"localhost:{port}",
                JAX_NUM_PROCESSES=str(num),
                JAX_PROCESS_ID=str(pid),
            )
        args = [str(out), "stop" if stop else "full", *OVERRIDES, *extra]
        procs.append(
            subprocess.Popen(
                [sys.executable, "-c", CODE, *args],
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                text=True,
                env=env,
            )
        )
    results = []
    for p in procs:
        stdout, stderr = p.communicate(timeout=600)
        assert p.returncode == 0, stderr[-3000:]
        results.append(json.loads(stdout.strip().splitlines()[-1]))
    return results


def _params(out: Path) -> list[np.ndarray]:
    import jax

    from jaxlem.train import checkpoint

    manifest = checkpoint.latest(out / "checkpoints")
    state = checkpoint._checkpointer().restore((out / "checkpoints" / manifest["path"]).resolve())
    return [np.asarray(x) for x in jax.tree_util.tree_leaves(state["params"])]


LEAN = textwrap.dedent(
    """
    import sys
    import jax, numpy as np
    import jaxlem
    from jaxlem.train import TrainConfig, distributed
    from jaxlem.train.driver import run_training
    out, pid, num, port = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), sys.argv[4]
    distributed.initialize(f"localhost:{port}", num, pid)
    env = jaxlem.make("lem-v0", num_agents=3, num_steps=4)
    cfg = TrainConfig(total_timesteps=128, num_envs=8, rollout_len=4, hidden=(8,),
                      eval_every=0, num_minibatches=2, update_epochs=1)
    kw = dict(seeds=(0,), log=print, out_dir=out, num_chunks=2)
    run_training(cfg, env, stop_after_chunk=1, **kw)  # as if the job died after chunk 1
    res = run_training(cfg, env, resume=True, **kw)
    leaves = distributed.to_host(jax.tree_util.tree_leaves(res["runners"].params))
    if distributed.is_main():
        np.savez(f"{out}/params.npz", *leaves)
    print(jax.device_count(), res["runners"].obs.sharding.num_devices, len(res["rows"]))
    """
)


@pytest.mark.slow  # two fresh processes and a reference run: about 65 s; pytest -m slow
def test_two_processes_match_one_and_resume(tmp_path):
    """run_training in two processes (stopped after a chunk, then resumed) against one
    process in this one."""
    import jax

    import jaxlem
    from jaxlem.train import TrainConfig
    from jaxlem.train.driver import run_training

    port, procs = _free_port(), []
    env = dict(os.environ)
    env["PYTHONPATH"] = str(ROOT) + os.pathsep + env.get("PYTHONPATH", "")
    for pid in range(2):
        procs.append(
            subprocess.Popen(
                [sys.executable, "-c", LEAN, str(tmp_path), str(pid), "2", str(port)],
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                text=True,
                env=env,
            )
        )
    cfg = TrainConfig(total_timesteps=128, num_envs=8, rollout_len=4, hidden=(8,),
                      eval_every=0, num_minibatches=2, update_epochs=1)  # fmt: skip
    ref = run_training(cfg, jaxlem.make("lem-v0", num_agents=3, num_steps=4), log=lambda s: 0)
    outs = []
    for p in procs:
        stdout, stderr = p.communicate(timeout=600)
        assert p.returncode == 0, stderr[-3000:]
        outs.append(stdout.strip().splitlines()[-1].split())
    assert outs[0] == ["2", "2", "4"]  # 2 devices, the batch on both, process 0: 4 updates
    assert outs[1] == ["2", "2", "2"]  # process 1 keeps no history of its own
    got = np.load(tmp_path / "params.npz")
    want = jax.tree_util.tree_leaves(ref["runners"].params)
    for i, w in enumerate(want):
        np.testing.assert_allclose(got[f"arr_{i}"], np.asarray(w), rtol=1e-5, atol=1e-6)
    rows = (tmp_path / "metrics.csv").read_text().splitlines()
    assert len(rows) == 1 + 4  # header and 4 updates of one seed, written by process 0 only


@pytest.mark.slow  # five jaxlem-train processes with their evaluations (minutes); pytest -m slow
def test_two_processes_train_like_one_and_resume(tmp_path):
    one, two = tmp_path / "one", tmp_path / "two"
    _launch(one, 1, [])
    first = _launch(two, 2, ["distributed=true"], stop=True)
    assert [r["process"] for r in first] == [0, 1]
    assert all(r["count"] == 2 and r["devices"] == 2 for r in first)
    _launch(two, 2, ["distributed=true", "resume=true"])
    for a, b in zip(_params(one), _params(two), strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)
    rows = [ln for ln in (two / "metrics.csv").read_text().splitlines()[1:] if ln]
    assert len(rows) == 4  # 4 updates, one seed: process 0 alone wrote the history
    summary = json.loads((two / "summary.json").read_text())
    assert [s["kind"] for s in summary["segments"]] == ["start", "resume"]
    assert not list(two.glob("**/*.tmp"))


def test_initialize_refuses_bad_counts():
    from jaxlem.train import distributed

    with pytest.raises(ValueError, match="num_processes: got 0"):
        distributed.initialize("localhost:1", 0, 0)
    with pytest.raises(ValueError, match="process_id: got 2; allowed: 0 .. 1"):
        distributed.initialize("localhost:1", 2, 2)
