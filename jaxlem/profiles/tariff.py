"""The DSO's time-of-use tariff: random FiT and utility price blocks with a gap (jittable)."""

from __future__ import annotations

import jax
import jax.numpy as jnp

from jaxlem.profiles._grid import check_grid, step_hours

# Time-of-use blocks: night [0, e1), day [e1, e2), evening peak [e2, e3), late evening [e3, 24).
_TOU_EDGES_H = (7.0, 17.0, 21.0)
_TOU_EDGE_SHIFT_H = 1.5  # edge shift = round(jitter * U(-1.5, 1.5)) hours
_UTILITY_FRAC = (0.35, 0.55, 0.90, 0.50)  # of the price range, per block
_UTILITY_JITTER = 0.10  # level perturbation = jitter * U(-0.1, 0.1)
_FIT_FRAC = (0.10, 0.20, 0.25, 0.15)
_FIT_JITTER = 0.05


def tou_tariff(
    key: jax.Array,
    num_steps: int,
    dt_h: float,
    min_price: jax.Array | float,
    max_price: jax.Array | float,
    gap_frac: jax.Array | float = 0.05,
    jitter: jax.Array | float = 1.0,
) -> tuple[jax.Array, jax.Array]:
    """Random time-of-use DSO prices ``(fit, utility)``, each float32 [T], in price units as given.

    Blocks by hour of day ``h = (t + 0.5) * dt_h mod 24``: night [0, e1), day [e1, e2), evening
    peak [e2, e3), late evening [e3, 24); defaults e1, e2, e3 = 7, 17, 21 h, each shifted by
    ``round(jitter * U(-1.5, 1.5))`` whole hours (kept 1 <= e1 < e2 < e3 <= 23). Utility levels
    are fractions ~0.35/0.55/0.90/0.50 of the range ``r = max - min`` (+ jitter * U(-0.1, 0.1));
    FiT levels ~0.10/0.20/0.25/0.15 (+ jitter * U(-0.05, 0.05)). By construction
    ``min <= fit``, ``fit + gap_frac * r <= utility <= max`` (gap_frac clipped to [0, 1]), so
    P2P trade between the two is worth doing. ``jitter = 0`` gives the default, key-independent
    profile. Jittable and vmappable over all array arguments; ``num_steps`` and ``dt_h`` static.
    """
    check_grid(num_steps, dt_h)
    k_edges, k_util, k_fit = jax.random.split(key, 3)
    f32 = jnp.float32
    jitter = jnp.asarray(jitter, f32)
    lo = jnp.asarray(min_price, f32)
    hi = jnp.maximum(jnp.asarray(max_price, f32), lo)
    r = hi - lo
    gap = jnp.clip(jnp.asarray(gap_frac, f32), 0.0, 1.0)

    # Block edges in whole hours, kept strictly ordered inside (0, 24).
    shift = jnp.round(
        jitter * jax.random.uniform(k_edges, (3,), f32, -_TOU_EDGE_SHIFT_H, _TOU_EDGE_SHIFT_H)
    )
    e = jnp.asarray(_TOU_EDGES_H, f32) + shift
    e1 = jnp.clip(e[0], 1.0, 21.0)
    e2 = jnp.clip(e[1], e1 + 1.0, 22.0)
    e3 = jnp.clip(e[2], e2 + 1.0, 23.0)
    h = jnp.asarray(step_hours(num_steps, dt_h), f32)
    block = (h >= e1).astype(jnp.int32) + (h >= e2) + (h >= e3)  # 0..3 per step

    # Levels as fractions of the range; the gap is enforced in fraction space, then mapped.
    u_frac = jnp.asarray(_UTILITY_FRAC, f32) + jitter * jax.random.uniform(
        k_util, (4,), f32, -_UTILITY_JITTER, _UTILITY_JITTER
    )
    u_frac = jnp.clip(u_frac, gap, 1.0)
    f_frac = jnp.asarray(_FIT_FRAC, f32) + jitter * jax.random.uniform(
        k_fit, (4,), f32, -_FIT_JITTER, _FIT_JITTER
    )
    f_frac = jnp.clip(f_frac, 0.0, u_frac - gap)

    utility = jnp.clip(lo + r * u_frac[block], lo, hi)
    fit = jnp.maximum(jnp.minimum(lo + r * f_frac[block], utility - gap * r), lo)
    return fit.astype(f32), utility.astype(f32)
