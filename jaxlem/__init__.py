"""jaxlem: JAX environments for multi-agent reinforcement learning in electricity markets."""

from jaxlem.envs.registry import make, register, registered_envs

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
