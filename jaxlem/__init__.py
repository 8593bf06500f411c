"""jaxlem: JAX environments for multi-agent reinforcement learning in electricity markets."""

import os

# XLA 0.10.2's concurrency-optimised CPU scheduler deadlocks on some programs here (the trainers
# with several vmapped seeds hang forever in ``block_until_ready``, every thread idle). Turn it
# off unless the user chose a value; it must be set before JAX starts its CPU backend, so import
# jaxlem before running any JAX computation.
if "xla_cpu_enable_concurrency_optimized_scheduler" not in os.environ.get("XLA_FLAGS", ""):
    os.environ["XLA_FLAGS"] = (
        os.environ.get("XLA_FLAGS", "") + " --xla_cpu_enable_concurrency_optimized_scheduler=false"
    ).strip()

from jaxlem.envs.registry import make, register, registered_envs  # noqa: E402

__version__ = "0.1.0"


def _make_lem(scenario: str | None = None, **kwargs):
    from jaxlem import scenarios
    from jaxlem.envs.lem import LEMEnv

    if scenario:
        return scenarios.make_env(scenario, **kwargs)
    return LEMEnv(**kwargs)


def _make_gencos(**kwargs):
    from jaxlem.envs.gencos import GencosEnv

    return GencosEnv(**kwargs)


register("lem-v0", _make_lem)
register("gencos-v0", _make_gencos)

__all__ = ["__version__", "make", "register", "registered_envs"]
