"""Random draws on top of the profile shapes: per-agent daily factors, per-step noise (jittable)."""

from __future__ import annotations

import jax
import jax.numpy as jnp

_DAY_FACTOR_BOUNDS = (0.2, 3.0)


def draw_day_factors(
    key: jax.Array,
    num_agents: int,
    cloudiness: jax.Array | float,
    demand_day_std: jax.Array | float,
) -> tuple[jax.Array, jax.Array]:
    """Independent per-agent daily factors ``(pv_peak, demand_day)``, each float32 [N].

    ``pv_peak = 1 - cloudiness * U(0, 1)`` lies in ``[1 - cloudiness, 1]`` (cloudiness is clipped
    to [0, 1]); ``demand_day = clip(1 + demand_day_std * N(0, 1), 0.2, 3.0)``. Both multiply the
    per-unit shapes for a whole episode (day). Jittable; ``num_agents`` is static.
    """
    k_pv, k_dem = jax.random.split(key)
    cloud = jnp.clip(jnp.asarray(cloudiness, jnp.float32), 0.0, 1.0)
    u = jax.random.uniform(k_pv, (num_agents,), jnp.float32)
    pv_peak = 1.0 - cloud * u
    z = jax.random.normal(k_dem, (num_agents,), jnp.float32)
    std = jnp.asarray(demand_day_std, jnp.float32)
    demand_day = jnp.clip(1.0 + std * z, *_DAY_FACTOR_BOUNDS)
    return pv_peak.astype(jnp.float32), demand_day.astype(jnp.float32)


def sample_step(
    key: jax.Array,
    shape_value: jax.Array,
    day_factor: jax.Array,
    noise_std: jax.Array | float,
) -> jax.Array:
    """Realised per-unit value for one step; float32 [N], >= 0 and never NaN.

    ``max(0, shape_value * day_factor * (1 + noise_std * N(0, 1)))`` with independent noise per
    element. Overflow is saturated to the largest float32 and any NaN (e.g. ``0 * inf``) maps to
    0, so extreme inputs cannot poison the env state. Jittable.
    """
    shape_value = jnp.asarray(shape_value, jnp.float32)
    day_factor = jnp.asarray(day_factor, jnp.float32)
    base = shape_value * day_factor
    z = jax.random.normal(key, base.shape, jnp.float32)
    value = base * (1.0 + jnp.asarray(noise_std, jnp.float32) * z)
    value = jnp.maximum(value, 0.0)
    big = jnp.finfo(jnp.float32).max
    return jnp.nan_to_num(value, nan=0.0, posinf=big, neginf=0.0).astype(jnp.float32)
