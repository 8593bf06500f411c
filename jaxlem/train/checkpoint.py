"""Orbax checkpoints of the trainer state, one folder per finished chunk, plus a JSON manifest.

``save(folder, chunk, runners, meta)`` writes ``folder/chunk_<j>/`` (the whole runner pytree:
parameters, optimiser state, env states, normalisers, PRNG keys, self-play pool) with its manifest
``chunk_<j>.json``, then points ``folder/latest.json`` at it; manifests are written atomically
(a temporary file renamed over the old one) and only after Orbax finished the checkpoint, so a
crash mid-save leaves the previous checkpoint the latest. ``restore(folder, like)`` loads the
newest checkpoint that reads back into the structure of ``like``: a corrupt one is reported by
name and the next older one is tried. Resuming from chunk j replays exactly what an uninterrupted
run would have done.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

import jax
import numpy as np

from jaxlem.train import distributed


def _checkpointer():
    import orbax.checkpoint as ocp

    logging.getLogger("absl").setLevel(logging.WARNING)  # orbax logs every save at INFO

    me = jax.process_index()  # each process reads (and process 0 writes) on its own
    only_me = ocp.options.MultiprocessingOptions(primary_host=me, active_processes={me})
    return ocp.StandardCheckpointer(multiprocessing_options=only_me)


def _write_atomic(path: Path, text: str) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(text)
    os.replace(tmp, path)


def save(folder: str | Path, chunk: int, runners: Any, meta: dict, keep: int = 2) -> Path:
    """Write the runner state after ``chunk`` finished chunks; keep the last ``keep``. Under
    ``jax.distributed`` every process calls this (the state is gathered from all of them) and
    process 0 writes."""
    folder = Path(folder).resolve()
    path = folder / f"chunk_{chunk}"
    host = distributed.to_host(runners)
    if distributed.is_main():
        _write(folder, path, chunk, host, meta, keep)
    distributed.barrier(f"checkpoint {chunk}")  # nobody reads or resumes before it landed
    return path


def _write(folder: Path, path: Path, chunk: int, host: Any, meta: dict, keep: int) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    if path.exists():
        shutil.rmtree(path)
    _save_local(path, host)
    manifest = json.dumps({"chunk": chunk, "path": path.name, **meta})
    _write_atomic(folder / f"chunk_{chunk}.json", manifest)
    _write_atomic(folder / "latest.json", manifest)
    for old in folder.glob("chunk_*"):
        j = int(old.name.split("_")[1].split(".")[0])
        if j <= chunk - keep:
            if old.is_dir():
                shutil.rmtree(old, ignore_errors=True)
            else:
                old.unlink(missing_ok=True)


def _save_local(path: Path, host: Any) -> None:
    """Orbax writes ``host`` (NumPy leaves) from this process alone, whatever the job's size."""
    ckptr = _checkpointer()
    ckptr.save(path, host)
    ckptr.wait_until_finished()


def _read(path: Path) -> dict | None:
    try:
        out = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    return out if isinstance(out, dict) and "chunk" in out and "path" in out else None


def manifests(folder: str | Path) -> list[dict]:
    """Readable checkpoint manifests in ``folder``, newest first."""
    folder = Path(folder)
    found = {}
    for f in [folder / "latest.json", *folder.glob("chunk_*.json")]:
        m = _read(f)
        if m is not None and (folder / m["path"]).is_dir():
            found[int(m["chunk"])] = m
    return [found[k] for k in sorted(found, reverse=True)]


def latest(folder: str | Path) -> dict | None:
    """The manifest of the newest checkpoint in ``folder`` (None if there is none)."""
    found = manifests(folder)
    return found[0] if found else None


def _dtype(x: Any) -> np.dtype:
    """The dtype of a leaf without fetching it (a sharded array may span other processes)."""
    return x.dtype if isinstance(x, jax.Array | np.ndarray) else np.result_type(x)


def restore(folder: str | Path, like: Any, log: Callable[[str], None] = print) -> tuple[Any, dict]:
    """Load the newest readable checkpoint into the structure (and dtypes) of ``like``; a
    checkpoint that fails to load is reported by name and the next older one is tried."""
    found = manifests(folder)
    if not found:
        raise ValueError(f"checkpoint: no checkpoint in {folder}; allowed: a run folder with one")
    target = jax.tree_util.tree_map(lambda x: jax.ShapeDtypeStruct(np.shape(x), _dtype(x)), like)
    errors = []
    for manifest in found:
        path = (Path(folder) / manifest["path"]).resolve()
        try:
            state = _checkpointer().restore(path, target)
        except Exception as err:  # orbax raises many kinds on a damaged folder
            errors.append(f"{path.name}: {type(err).__name__}")
            log(f"checkpoint {path} is unreadable ({type(err).__name__}); trying an older one")
            continue
        return jax.tree_util.tree_map(jax.numpy.asarray, state), manifest
    raise ValueError(
        f"checkpoint: every checkpoint in {folder} is unreadable ({'; '.join(errors)}); "
        "allowed: a run folder with an intact checkpoint (start afresh without resume=true)"
    )
