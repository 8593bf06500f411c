"""jaxlem: JAX environments for multi-agent reinforcement learning in electricity markets."""

import os
import sys
import warnings


def _backend_started() -> bool:
    """Whether JAX already started a backend (then XLA_FLAGS set now are ignored)."""
    if "jax" not in sys.modules:
        return False
    try:
        from jax._src import xla_bridge  # private: guarded, only for a warning

        return bool(xla_bridge.backends_are_initialized())
    except Exception:
        return False


# XLA 0.10.2's concurrency-optimised CPU scheduler deadlocks on some programs here (the trainers
# with several vmapped seeds hang forever in ``block_until_ready``, every thread idle). Turn it
# off unless the user chose a value; it must be set before JAX starts its CPU backend, so import
# jaxlem before running any JAX computation.
if "xla_cpu_enable_concurrency_optimized_scheduler" not in os.environ.get("XLA_FLAGS", ""):
    if _backend_started():
        warnings.warn(
            "jaxlem was imported after JAX started its backend (e.g. after importing jaxmarl or "
            "running a JAX computation), so XLA_FLAGS can no longer turn off the CPU scheduler "
            "that can deadlock multi-seed training; import jaxlem first or set XLA_FLAGS="
            "--xla_cpu_enable_concurrency_optimized_scheduler=false yourself",
            RuntimeWarning,
            stacklevel=2,
        )
    os.environ["XLA_FLAGS"] = (
        os.environ.get("XLA_FLAGS", "") + " --xla_cpu_enable_concurrency_optimized_scheduler=false"
    ).strip()

from jaxlem import threefry  # noqa: E402
from jaxlem.envs.registry import make, register, registered_envs  # noqa: E402

if os.environ.get("JAXLEM_ROLLED_THREEFRY", "") != "1":
    threefry.set_cpu_lowering(unrolled=True)

__version__ = "0.1.0"

register("lem-v0", "jaxlem.envs.lem.env:make_lem")
register("gencos-v0", "jaxlem.envs.gencos.env:GencosEnv")
register("multiactor-v0", "jaxlem.envs.multiactor.env:make_multiactor")

__all__ = ["__version__", "make", "register", "registered_envs"]
