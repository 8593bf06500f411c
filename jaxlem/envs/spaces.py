"""Minimal action/observation spaces (gymnax-style) with ``sample`` and ``contains``."""

from __future__ import annotations

from dataclasses import dataclass

import jax
import jax.numpy as jnp
import numpy as np
import numpy.typing as npt


@dataclass(frozen=True)
class Box:
    """Continuous box ``[low, high]`` of a fixed shape (bounds broadcast to the shape)."""

    low: float | np.ndarray
    high: float | np.ndarray
    shape: tuple[int, ...]
    dtype: type = jnp.float32

    def sample(self, key: jax.Array) -> jax.Array:
        lo = jnp.broadcast_to(jnp.asarray(self.low, self.dtype), self.shape)
        hi = jnp.broadcast_to(jnp.asarray(self.high, self.dtype), self.shape)
        finite = jnp.isfinite(lo) & jnp.isfinite(hi)
        u = jax.random.uniform(key, self.shape, self.dtype)
        return jnp.where(finite, lo + u * (hi - lo), jax.random.normal(key, self.shape, self.dtype))

    def contains(self, x: npt.ArrayLike) -> bool:
        x = np.asarray(x)
        return bool(
            x.shape == tuple(self.shape)
            and np.all(np.isfinite(x))
            and np.all(x >= self.low)
            and np.all(x <= self.high)
        )


@dataclass(frozen=True)
class Discrete:
    """Integers ``0 .. n-1`` (with an optional ``start`` offset), of a fixed shape."""

    n: int
    shape: tuple[int, ...] = ()
    start: int = 0
    dtype: type = jnp.int32

    def sample(self, key: jax.Array) -> jax.Array:
        return jax.random.randint(key, self.shape, self.start, self.start + self.n, self.dtype)

    def contains(self, x: npt.ArrayLike) -> bool:
        x = np.asarray(x)
        return bool(
            x.shape == tuple(self.shape)
            and np.all(x == np.round(x))
            and np.all(x >= self.start)
            and np.all(x < self.start + self.n)
        )
