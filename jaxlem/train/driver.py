"""The chunked driver: runs a trainer's scan in k chunks for progress, checkpoints and resume.

k = 1 is the pure single-scan run. Seeds run together (a leading seed axis, vmapped inside the
compiled update). Metrics leave the device through ``jax.debug.callback`` for the progress bar
(updates, env-steps/s, mean return) and as the scan's stacked outputs for ``metrics.csv``. With
several devices the scenario batch is sharded over them (``jax.sharding``).
"""

from __future__ import annotations

import csv
import math
import os
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import jax
import numpy as np
from jax.sharding import Mesh, NamedSharding, PartitionSpec

from jaxlem.train import banks, checkpoint, distributed
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
    lanes: Sequence[Any] = (),
    lane_eval_params: Sequence[Any] = (),
) -> dict:
    """Train ``len(seeds)`` seeds together; returns runners, metric rows and timings.

    The run is ``num_chunks`` chunks of ``ceil(num_updates / num_chunks)`` updates (one compiled
    program), so it ends after ``updates`` = chunks x chunk length updates. With ``out_dir``,
    a checkpoint goes to ``out_dir/checkpoints`` after every chunk and the chunk's metric rows are
    appended to ``out_dir/metrics.csv`` first; ``resume`` continues from the newest good
    checkpoint there, keeps the history up to it (rows of a chunk whose checkpoint never landed
    are dropped) and refuses another chunk schedule. ``rows`` in the result is the whole
    history. ``stop_after_chunk`` ends early (as if interrupted) after that many chunks. With
    several devices and ``shard``, the scenario batch is split over them; under
    ``jax.distributed`` (``jaxlem.train.distributed``) those span every process, process 0
    alone writes ``out_dir`` and logs, and every process must call this function.

    ``lanes``: a sweep over numbers in params as one program. Each entry is the params (one
    pytree or a bank of ``num_envs``) of one level; every level trains every seed, all of them
    as lanes of one vmapped update (lane ``l * len(seeds) + i`` is level ``l``, seed
    ``seeds[i]``; the seeds' keys are the same at every level). ``lane_eval_params`` gives each
    level its evaluation bank (default: ``eval_params`` for all). ``runners`` then has one entry
    per lane and every row of ``rows`` a ``lane`` column (the level's index).
    """
    if num_chunks < 1:
        raise ValueError(f"num_chunks: got {num_chunks}; allowed: an integer >= 1")
    train = make_train(config, env, params, eval_params)
    core = train.core
    per_chunk = schedule(config.num_updates, num_chunks)
    chunks = num_chunks
    keys = np.stack([np.asarray(jax.random.PRNGKey(s)) for s in seeds])
    bank, eval_bank, hyper = train.bank, train.eval_bank, train.hyper
    levels = len(lanes)
    if levels:
        if params is not None:
            raise ValueError("params: given with lanes; allowed: None (each lane has its own)")
        bank, eval_bank, hyper = _lane_banks(train, env, config, lanes, lane_eval_params, seeds)
        keys = np.tile(keys, (levels, 1))
    elif lane_eval_params:
        raise ValueError("lane_eval_params: given without lanes; allowed: one entry per lane")
    place = shard_batch if shard else (lambda tree, num, axis: tree)
    bank = place(bank, config.num_envs, 1 if levels else 0)
    t0 = time.perf_counter()
    runners = core.init(keys, bank, hyper, lanes=bool(levels))
    start = 0
    ckpt_dir = Path(out_dir) / "checkpoints" if out_dir is not None else None
    csv_path = Path(out_dir) / "metrics.csv" if out_dir is not None else None
    main = distributed.is_main()
    if not main:
        log, writers, csv_path = (lambda s: None), (), None
    if out_dir is not None and main:
        Path(out_dir).mkdir(parents=True, exist_ok=True)
    history: list[dict] = []
    if resume:
        if ckpt_dir is None or checkpoint.latest(ckpt_dir) is None:
            raise ValueError(f"resume: no checkpoint under {ckpt_dir}; allowed: a run folder")
        runners, manifest = checkpoint.restore(ckpt_dir, runners, log)
        per_chunk, chunks = resumed_schedule(manifest, config.num_updates, num_chunks)
        start = int(manifest["chunk"])
        log(f"resumed from {ckpt_dir / manifest['path']} (chunk {start}/{chunks})")
        if csv_path is not None and csv_path.exists():
            history = [r for r in read_csv(csv_path) if r["update"] <= start * per_chunk]
            write_csv(csv_path, history)
        distributed.barrier("resumed")  # nobody trains while process 0 rewrites the history
    elif csv_path is not None and csv_path.exists():
        csv_path.unlink()  # a fresh run in an old folder starts a fresh history
    runners = place(runners, config.num_envs, 1)

    total = per_chunk * chunks
    meta = {
        "num_chunks": chunks,
        "updates": per_chunk,
        "num_updates": config.num_updates,
        "schedule_chunks": num_chunks,
    }
    prog = Progress(total, config.env_steps_per_update * len(keys), progress_every, log)
    new: list[dict] = []
    compile_s = None
    try:
        with core.reporter.attach(prog):
            for j in range(start, chunks):
                tc = time.perf_counter()
                runners, metrics = core.run(
                    runners, bank, eval_bank, hyper, per_chunk, bool(levels)
                )
                metrics = distributed.to_host(jax.block_until_ready(metrics))
                if compile_s is None:
                    compile_s = time.perf_counter() - tc
                chunk_rows = _rows(
                    metrics, j * per_chunk, config.env_steps_per_update, seeds, prog, levels
                )
                new += chunk_rows
                if csv_path is not None:
                    append_csv(csv_path, chunk_rows)
                for w in writers:
                    w.write(chunk_rows)
                if ckpt_dir is not None:
                    checkpoint.save(ckpt_dir, j + 1, runners, meta)
                if stop_after_chunk is not None and j + 1 >= stop_after_chunk:
                    break
    finally:
        for w in writers:
            w.close()
    wall = time.perf_counter() - t0
    rows = history + new
    steady = [r["env_steps_per_s"] for r in new if r["env_steps_per_s"] > 0]
    return {
        "runners": runners,
        "rows": rows,
        "train": train,
        "wall_s": wall,
        "first_chunk_s": compile_s,
        "env_steps_per_s": float(np.median(steady)) if steady else float("nan"),
        "updates": total,
        "first_update": start * per_chunk,
    }


def _lane_banks(train, env, config: TrainConfig, lanes, lane_eval_params, seeds):
    """(bank, eval bank, hyper), each with a leading lane axis: level-major, seeds inner."""
    if lane_eval_params and len(lane_eval_params) != len(lanes):
        raise ValueError(
            f"lane_eval_params: got {len(lane_eval_params)} entries; allowed: one per lane "
            f"({len(lanes)})"
        )

    def stack(entries, num, key, name):
        out = []
        for i, p in enumerate(entries):
            b = banks.scenario_bank(env, p, num, key)
            banks.check_bank(env, b, f"{name}[{i}]")
            out.append(b)
        return jax.tree_util.tree_map(lambda *x: np.repeat(np.stack(x), len(seeds), 0), *out)

    bank = stack(lanes, config.num_envs, banks.train_key(0), "lanes")
    evals = lane_eval_params or [train.eval_bank] * len(lanes)
    eval_bank = stack(evals, config.eval_envs, banks.eval_key(0), "lane_eval_params")
    num = len(lanes) * len(seeds)
    hyper = jax.tree_util.tree_map(lambda x: np.broadcast_to(x, (num, *np.shape(x))), train.hyper)
    return bank, eval_bank, hyper


def _rows(metrics, first_update, steps_per_update, seeds, prog, levels: int = 0) -> list[dict]:
    """One row per (update, lane) of a chunk's stacked metrics, numbered from ``first_update``
    (with sweep lanes, ``lane`` is the level's index)."""
    rows = []
    n = next(iter(metrics.values())).shape[0]
    for i in range(n):
        u = first_update + i + 1
        rate = prog.rate(u, window=1)
        for j in range(max(levels, 1) * len(seeds)):
            row = {
                "update": u,
                **({"lane": j // len(seeds)} if levels else {}),
                "seed": seeds[j % len(seeds)],
                "env_steps": u * steps_per_update,
                "env_steps_per_s": rate,
            }
            for k, v in metrics.items():
                row[k] = float(v[i, j])
            rows.append(row)
    return rows


def resumed_schedule(manifest: dict, num_updates: int, num_chunks: int) -> tuple[int, int]:
    """(updates per chunk, chunks) of a resumed run, from its checkpoint's manifest.

    The same ``num_updates`` must come with the same ``num_chunks``. More updates than the run
    was started with extend it: the chunk length stays, chunks are added until the new count is
    reached (a new segment; the learning-rate annealing then runs to the new count, as training
    for longer from this point means). Fewer updates, or another ``num_chunks``, are refused.
    """
    per_chunk = int(manifest.get("updates", 0))
    chunks = int(manifest.get("num_chunks", num_chunks))
    started = int(manifest.get("schedule_chunks", chunks))
    target = manifest.get("num_updates")
    if target is None:  # manifests written before runs could be extended
        same = schedule(num_updates, started) == per_chunk
        target = num_updates if same else chunks * per_chunk
    target = int(target)
    if num_chunks != started:
        raise ValueError(
            f"num_chunks: got {num_chunks} on resume; allowed: {started}, the schedule the run "
            f"was started with ({per_chunk} updates per chunk)"
        )
    if num_updates < target:
        raise ValueError(
            f"train.total_timesteps: gives {num_updates} updates on resume; allowed: at least "
            f"{target}, the run's count (a run may be extended, not shortened)"
        )
    if num_updates == target:
        return per_chunk, chunks
    return per_chunk, max(chunks, math.ceil(num_updates / per_chunk))


def schedule(num_updates: int, num_chunks: int) -> int:
    """Updates per chunk: every chunk runs the same compiled scan, so the run ends after
    ``num_chunks * ceil(num_updates / num_chunks)`` updates (at most ``num_chunks - 1`` more
    than ``num_updates``)."""
    return math.ceil(num_updates / num_chunks)


def _columns(rows: list[dict]) -> list[str]:
    keys = list(rows[0])
    for r in rows:
        keys += [k for k in r if k not in keys]
    return keys


def write_csv(path: Path, rows: list[dict]) -> None:
    """Write ``rows`` (atomically: a crash leaves the old file or the new one)."""
    tmp = path.with_name(path.name + ".tmp")
    with open(tmp, "w", newline="") as fh:
        w = csv.DictWriter(fh, fieldnames=_columns(rows) if rows else ["update"])
        w.writeheader()
        w.writerows(rows)
    os.replace(tmp, path)


def append_csv(path: Path, rows: list[dict]) -> None:
    """Append ``rows`` to the history in ``path`` (same columns; header on a new file)."""
    if not rows:
        return
    if not path.exists():
        write_csv(path, rows)
        return
    with open(path, newline="") as fh:
        header = next(csv.reader(fh), [])
    if set(_columns(rows)) - set(header):
        write_csv(path, read_csv(path) + rows)  # new columns: rewrite with the union
        return
    with open(path, "a", newline="") as fh:
        csv.DictWriter(fh, fieldnames=header).writerows(rows)
        fh.flush()
        os.fsync(fh.fileno())


def read_csv(path: Path) -> list[dict]:
    """The rows of a metrics history with numbers parsed (``update`` and ``seed`` as ints)."""
    with open(path, newline="") as fh:
        rows = list(csv.DictReader(fh))
    out = []
    for r in rows:
        row: dict[str, Any] = {}
        for k, v in r.items():
            if k in ("update", "seed", "env_steps"):
                row[k] = int(float(v))
            else:
                row[k] = float(v) if v not in ("", None) else float("nan")
        out.append(row)
    return out


def stdout_log(line: str) -> None:
    print(line, flush=True)
