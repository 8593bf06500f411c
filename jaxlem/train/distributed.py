"""Training across processes with ``jax.distributed``: one job, several hosts (or several
processes on one host), the scenario batch sharded over every process's devices.

Every process runs the same program on its share of the scenarios (the driver's
``shard_batch`` lays the batch over ``jax.devices()``, which spans all processes once
``initialize`` ran); gradients are averaged by XLA's collectives, so the parameters equal a
one-process run's up to float rounding. Process 0 writes the run folder (metrics, checkpoints,
reports); ``to_host`` gathers a sharded state so it can.

On SLURM, ``initialize()`` finds the coordinator, the process count and the process id from the
job's environment; elsewhere pass them (or set ``JAX_COORDINATOR_ADDRESS``,
``JAX_NUM_PROCESSES``, ``JAX_PROCESS_ID``). On CPU, processes talk through gloo.
"""

from __future__ import annotations

import os
from typing import Any

import jax
import numpy as np
from jax.experimental import multihost_utils


def initialize(
    coordinator: str | None = None,
    num_processes: int | None = None,
    process_id: int | None = None,
) -> None:
    """Join this process to the job (before any JAX computation). Arguments left ``None`` come
    from ``JAX_COORDINATOR_ADDRESS`` / ``JAX_NUM_PROCESSES`` / ``JAX_PROCESS_ID`` or, on a
    cluster JAX recognises (SLURM, Open MPI), from its environment."""
    env = os.environ
    coordinator = coordinator or env.get("JAX_COORDINATOR_ADDRESS")
    if num_processes is None and env.get("JAX_NUM_PROCESSES"):
        num_processes = int(env["JAX_NUM_PROCESSES"])
    if process_id is None and env.get("JAX_PROCESS_ID"):
        process_id = int(env["JAX_PROCESS_ID"])
    if num_processes is not None and num_processes < 1:
        raise ValueError(f"num_processes: got {num_processes}; allowed: an integer >= 1")
    if process_id is not None and num_processes is not None and not 0 <= process_id < num_processes:
        raise ValueError(f"process_id: got {process_id}; allowed: 0 .. {num_processes - 1}")
    if jax.distributed.is_initialized():
        return
    jax.config.update("jax_cpu_collectives_implementation", "gloo")
    jax.distributed.initialize(coordinator, num_processes, process_id)


def is_main() -> bool:
    """Whether this process writes the run folder (process 0; always true in one process)."""
    return jax.process_index() == 0


def to_host(tree: Any) -> Any:
    """Every leaf as a NumPy array holding its global value: arrays sharded over several
    processes are gathered (a collective: every process must call it), others copied."""

    def get(x):
        if isinstance(x, jax.Array) and not x.is_fully_addressable:
            return np.asarray(multihost_utils.process_allgather(x, tiled=True))
        return np.asarray(x)

    return jax.tree_util.tree_map(get, tree)


def barrier(name: str) -> None:
    """Wait until every process reached ``name`` (a no-op in one process)."""
    if jax.process_count() > 1:
        multihost_utils.sync_global_devices(name)
