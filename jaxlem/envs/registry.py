"""Env ids -> constructors, so research code can say ``jaxlem.make("lem-v0", num_agents=100)``.

A constructor is a callable or an entry point ``"package.module:attribute"``, imported when the
env is first made (so ``import jaxlem`` stays light and the registry imports no env module).
The built env carries everything a trainer or report needs (the ``Environment`` contract:
agent types, action layout, evaluation spec).
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from typing import Any

_REGISTRY: dict[str, Callable[..., Any] | str] = {}


def register(env_id: str, ctor: Callable[..., Any] | str) -> None:
    """Register a constructor (called with the keyword arguments given to ``make``), or an entry
    point ``"module:attribute"`` naming one."""
    if env_id in _REGISTRY:
        raise ValueError(f"env_id: {env_id!r} is already registered")
    if isinstance(ctor, str) and ":" not in ctor:
        raise ValueError(f"ctor: got {ctor!r}; allowed: a callable or 'module:attribute'")
    _REGISTRY[env_id] = ctor


def unregister(env_id: str) -> None:
    """Remove a registered id (tests and notebooks that register throwaway envs)."""
    _REGISTRY.pop(env_id, None)


def registered_envs() -> tuple[str, ...]:
    return tuple(sorted(_REGISTRY))


def _resolve(ctor: Callable[..., Any] | str) -> Callable[..., Any]:
    if callable(ctor):
        return ctor
    module, _, attr = ctor.partition(":")
    return getattr(importlib.import_module(module), attr)


def make(env_id: str, **kwargs: Any) -> Any:
    """Build a registered env. ``lem-v0`` also takes ``scenario="case2-monopoly"`` etc. and then
    returns the env with ``env.default_params`` set to the preset."""
    if env_id not in _REGISTRY:
        raise ValueError(f"env_id: got {env_id!r}; allowed: one of {', '.join(registered_envs())}")
    return _resolve(_REGISTRY[env_id])(**kwargs)
