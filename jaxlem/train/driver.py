"""The chunked driver: runs a trainer's scan in k chunks for progress, checkpoints and resume.

k = 1 is the pure single-scan run. Seeds run together (a leading seed axis, vmapped inside the
compiled update). Metrics leave the device through ``jax.debug.callback`` for the progress bar
(updates, env-steps/s, mean return) and as the scan's stacked outputs for ``metrics.csv``. With
several devices the scenario batch is sharded over them (``jax.sharding``).
"""

from __future__ import annotations

import csv
import math
import time
from pathlib import Path
from typing import Any

import jax
import numpy as np
from jax.sharding import Mesh, NamedSharding, PartitionSpec

from jaxlem.train import checkpoint
from jaxlem.train.config import TrainConfig
from jaxlem.train.trainers import make_train

# learner diagnostics shown in the progress line (all of them are in metrics.csv)
_DIAG = (
    ("approx_kl", "kl", ".1e"),
    ("entropy", "ent", "+.2f"),
    ("explained_variance", "ev", ".2f"),
)


class Progress:
    """Host-side sink of the per-update callback: a progress line, env-steps/s from wall time."""

    def __init__(self, total: int, steps_per_update: int, every: int | None = None, log=print):
        self.total, self.steps_per_update, self.log = total, steps_per_update, log
        self.every = every or max(1, total // 20)
        self.times: dict[int, float] = {}
        self.start = time.perf_counter()
        self.last_ret = float("nan")

    def __call__(self, update, metrics) -> None:
        u = int(np.max(np.asarray(update)))
        now = time.perf_counter()
        self.times[u] = now
        ret = np.asarray(metrics.get("episode_return", np.nan), np.float64)
        if np.isfinite(ret).any():
            self.last_ret = float(np.nanmean(ret))
        if u % self.every == 0 or u == self.total:
            width = 24
            done = int(width * u / self.total)
            diag = "".join(
                f" | {label} {float(np.mean(np.asarray(metrics[k]))):{fmt}}"
                for k, label, fmt in _DIAG
                if k in metrics
            )
            self.log(
                f"[{'#' * done}{'.' * (width - done)}] update {u}/{self.total} | "
                f"{self.rate(u):,.0f} env-steps/s | mean return {self.last_ret:+.3f}{diag} | "
                f"{now - self.start:6.1f} s"
            )

    def rate(self, u: int, window: int = 10) -> float:
        """Steady-state env-steps/s over the last ``window`` updates (0 before two updates)."""
        past = [k for k in self.times if k < u and k >= u - window]
        if not past:
            return 0.0
        k = min(past)
        return (u - k) * self.steps_per_update / max(self.times[u] - self.times[k], 1e-9)


def shard_batch(tree: Any, num_envs: int, axis: int) -> Any:
    """Place every leaf whose ``axis`` has length ``num_envs`` sharded over all devices along it
    (others replicated); a no-op on one device."""
    devices = jax.devices()
    if len(devices) == 1 or num_envs % len(devices):
        return tree
    mesh = Mesh(np.asarray(devices), ("env",))

    def place(x):
        x = jax.numpy.asarray(x)
        if x.ndim > axis and x.shape[axis] == num_envs:
            spec = PartitionSpec(*([None] * axis), "env")
        else:
            spec = PartitionSpec()
        return jax.device_put(x, NamedSharding(mesh, spec))

    return jax.tree_util.tree_map(place, tree)


def run_training(
    config: TrainConfig,
    env,
    *,
    seeds: tuple[int, ...] = (0,),
    params=None,
    eval_params=None,
    num_chunks: int = 1,
    out_dir: str | Path | None = None,
    resume: bool = False,
    stop_after_chunk: int | None = None,
    log=print,
    writers=(),
    progress_every: int | None = None,
    shard: bool = True,
) -> dict:
    """Train ``len(seeds)`` seeds together; returns runners, metric rows and timings.

    With ``out_dir``, checkpoints go to ``out_dir/checkpoints`` after every chunk and
    ``metrics.csv`` is written at the end; ``resume`` continues from the latest checkpoint there.
    ``stop_after_chunk`` ends early (as if interrupted) after that many chunks. With several
    devices and ``shard``, the scenario batch is split over them.
    """
    if num_chunks < 1:
        raise ValueError(f"num_chunks: got {num_chunks}; allowed: an integer >= 1")
    train = make_train(config, env, params, eval_params)
    core = train.core
    per_chunk = math.ceil(config.num_updates / num_chunks)
    total = per_chunk * num_chunks  # rounded up to whole chunks
    keys = np.stack([np.asarray(jax.random.PRNGKey(s)) for s in seeds])
    place = shard_batch if shard else (lambda tree, num, axis: tree)
    bank = place(train.bank, config.num_envs, 0)
    t0 = time.perf_counter()
    runners = core.init(keys, bank, train.hyper)
    start = 0
    ckpt_dir = Path(out_dir) / "checkpoints" if out_dir is not None else None
    if resume:
        if ckpt_dir is None or checkpoint.latest(ckpt_dir) is None:
            raise ValueError(f"resume: no checkpoint under {ckpt_dir}; allowed: a run folder")
        runners, manifest = checkpoint.restore(ckpt_dir, runners)
        start = int(manifest["chunk"])
        log(f"resumed from {ckpt_dir / manifest['path']} (chunk {start}/{num_chunks})")
    runners = place(runners, config.num_envs, 1)

    prog = Progress(total, config.env_steps_per_update * len(seeds), progress_every, log)
    chunks_metrics = []
    compile_s = None
    try:
        with core.reporter.attach(prog):
            for j in range(start, num_chunks):
                tc = time.perf_counter()
                runners, metrics = core.run(runners, bank, train.eval_bank, train.hyper, per_chunk)
                metrics = jax.tree_util.tree_map(np.asarray, jax.block_until_ready(metrics))
                if compile_s is None:
                    compile_s = time.perf_counter() - tc
                chunks_metrics.append(metrics)
                if writers:
                    chunk_rows = _rows(
                        [metrics], j * per_chunk, config.env_steps_per_update, seeds, prog
                    )
                    for w in writers:
                        w.write(chunk_rows)
                if ckpt_dir is not None:
                    checkpoint.save(
                        ckpt_dir, j + 1, runners, {"num_chunks": num_chunks, "updates": per_chunk}
                    )
                if stop_after_chunk is not None and j + 1 >= stop_after_chunk:
                    break
    finally:
        for w in writers:
            w.close()
    wall = time.perf_counter() - t0
    rows = _rows(chunks_metrics, start * per_chunk, config.env_steps_per_update, seeds, prog)
    if out_dir is not None and rows:
        write_csv(Path(out_dir) / "metrics.csv", rows)
    steady = [r["env_steps_per_s"] for r in rows if r["env_steps_per_s"] > 0]
    return {
        "runners": runners,
        "rows": rows,
        "train": train,
        "wall_s": wall,
        "first_chunk_s": compile_s,
        "env_steps_per_s": float(np.median(steady)) if steady else float("nan"),
        "updates": total,
    }


def _rows(chunks, first_update, steps_per_update, seeds, prog) -> list[dict]:
    rows = []
    u = first_update
    for metrics in chunks:
        n = next(iter(metrics.values())).shape[0]
        for i in range(n):
            u += 1
            rate = prog.rate(u, window=1)
            for s_idx, seed in enumerate(seeds):
                row = {
                    "update": u,
                    "seed": seed,
                    "env_steps": u * steps_per_update,
                    "env_steps_per_s": rate,
                }
                for k, v in metrics.items():
                    row[k] = float(v[i, s_idx])
                rows.append(row)
    return rows


def write_csv(path: Path, rows: list[dict]) -> None:
    keys = list(rows[0])
    for r in rows:
        keys += [k for k in r if k not in keys]
    with open(path, "w", newline="") as fh:
        w = csv.DictWriter(fh, fieldnames=keys)
        w.writeheader()
        w.writerows(rows)


def stdout_log(line: str) -> None:
    print(line, flush=True)
