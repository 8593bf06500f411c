"""Env ids -> constructors, so research code can say ``jaxlem.make("lem-v0", num_agents=100)``."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

_REGISTRY: dict[str, Callable[..., Any]] = {}


def register(env_id: str, ctor: Callable[..., Any]) -> None:
    """Register a constructor (called with the keyword arguments given to ``make``)."""
    if env_id in _REGISTRY:
        raise ValueError(f"env_id: {env_id!r} is already registered")
    _REGISTRY[env_id] = ctor


def registered_envs() -> tuple[str, ...]:
    return tuple(sorted(_REGISTRY))


def make(env_id: str, **kwargs) -> Any:
    """Build a registered env. ``lem-v0`` also takes ``scenario="case2-monopoly"`` etc. and then
    returns the env with ``env.default_params`` set to the preset."""
    if env_id not in _REGISTRY:
        raise ValueError(f"env_id: got {env_id!r}; allowed: one of {', '.join(registered_envs())}")
    return _REGISTRY[env_id](**kwargs)
