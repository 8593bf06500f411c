"""Orbax checkpoints of the trainer state, one folder per finished chunk, plus a JSON manifest.

``save(folder, chunk, runners, meta)`` writes ``folder/chunk_<j>/`` (the whole runner pytree:
parameters, optimiser state, env states, normalisers, PRNG keys, self-play pool) and updates
``folder/latest.json``; ``restore(folder, like)`` loads the latest one into the structure of
``like``. Resuming from chunk j replays exactly what an uninterrupted run would have done.
"""

from __future__ import annotations

import json
import logging
import shutil
from pathlib import Path
from typing import Any

import jax
import numpy as np


def _checkpointer():
    import orbax.checkpoint as ocp

    logging.getLogger("absl").setLevel(logging.WARNING)  # orbax logs every save at INFO

    return ocp.StandardCheckpointer()


def save(folder: str | Path, chunk: int, runners: Any, meta: dict, keep: int = 2) -> Path:
    """Write the runner state after ``chunk`` finished chunks; keep the last ``keep``."""
    folder = Path(folder).resolve()
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"chunk_{chunk}"
    if path.exists():
        shutil.rmtree(path)
    ckptr = _checkpointer()
    ckptr.save(path, jax.tree_util.tree_map(np.asarray, runners))
    ckptr.wait_until_finished()
    (folder / "latest.json").write_text(json.dumps({"chunk": chunk, "path": path.name, **meta}))
    for old in folder.glob("chunk_*"):
        j = int(old.name.split("_")[1])
        if j <= chunk - keep:
            shutil.rmtree(old, ignore_errors=True)
    return path


def latest(folder: str | Path) -> dict | None:
    """The manifest of the latest checkpoint in ``folder`` (None if there is none)."""
    f = Path(folder) / "latest.json"
    return json.loads(f.read_text()) if f.exists() else None


def restore(folder: str | Path, like: Any) -> tuple[Any, dict]:
    """Load the latest checkpoint into the structure (and dtypes) of ``like``."""
    manifest = latest(folder)
    if manifest is None:
        raise ValueError(f"checkpoint: no checkpoint in {folder}; allowed: a run folder with one")
    path = (Path(folder) / manifest["path"]).resolve()
    target = jax.tree_util.tree_map(
        lambda x: jax.ShapeDtypeStruct(np.shape(x), np.asarray(x).dtype), like
    )
    state = _checkpointer().restore(path, target)
    return jax.tree_util.tree_map(jax.numpy.asarray, state), manifest
