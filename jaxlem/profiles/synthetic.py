"""Synthetic per-unit shapes: a clear-sky PV bell and a residential demand curve, plus one simple
shape per profile kind (``synthetic_tables``), for users who ask for ``profile_source="synthetic"``
or want data-free tests. Built once in NumPy, outside jit.

Per-unit convention: a profile value is the average power over one step divided by the agent's
size (``pv_kw`` for PV, the mean demand in kW for demand); energy in a step is
``value * size * dt_h`` kWh.
"""

from __future__ import annotations

import math

import numpy as np

from jaxlem.profiles._grid import check_grid, step_hours
from jaxlem.profiles.kinds import DEMAND_KIND_NAMES, PV_KINDS

# Residential demand: constant base plus periodic Gaussian bumps (centre h, width h, amplitude).
_DEMAND_BASE = 0.45
_DEMAND_BUMPS = (
    (8.0, 1.2, 0.55),  # morning peak
    (13.0, 3.0, 0.15),  # midday plateau
    (20.0, 1.5, 0.90),  # evening peak (highest)
)

# One shape per demand kind: (base, bumps); h0 is the residential curve above.
_KIND_SHAPES: dict[str, tuple[float, tuple[tuple[float, float, float], ...]]] = {
    "h0": (_DEMAND_BASE, _DEMAND_BUMPS),
    "g0": (0.5, ((12.0, 4.0, 0.9),)),
    "g1": (0.3, ((9.5, 2.0, 1.0), (15.0, 2.5, 0.9))),
    "g2": (0.3, ((20.0, 2.5, 1.2),)),
    "g3": (1.0, ((13.0, 5.0, 0.1),)),
    "g4": (0.3, ((13.0, 3.5, 1.1),)),
    "g5": (0.3, ((6.0, 2.0, 1.5),)),
    "g6": (0.5, ((14.0, 4.0, 0.6),)),
    "l0": (0.5, ((7.0, 1.5, 0.6), (18.0, 2.0, 0.8))),
    "l1": (0.6, ((6.0, 1.2, 0.9), (18.0, 1.2, 0.9))),
    "l2": (0.5, ((11.0, 4.0, 0.5),)),
    "ev": (0.05, ((21.0, 2.0, 1.6), (1.0, 2.0, 0.6))),
    "heat_pump": (0.8, ((7.0, 2.0, 0.4), (19.0, 2.5, 0.3))),
}
# PV bell per orientation: (centre h, width h, peak per unit)
_PV_BELLS: dict[str, tuple[float, float, float]] = {
    "south": (12.0, 3.0, 1.0),
    "south_flat": (12.0, 2.7, 0.9),
    "east": (10.5, 2.8, 0.85),
    "west": (13.5, 2.8, 0.85),
    "southeast": (11.2, 3.0, 0.95),
    "southwest": (12.8, 3.0, 0.95),
}


def pv_shape(
    num_steps: int,
    dt_h: float,
    sunrise_h: float = 6.0,
    sunset_h: float = 18.0,
    width_h: float = 3.0,
    centre_h: float = 12.0,
) -> np.ndarray:
    """Clear-sky per-unit PV output at each step's mid-hour; float32 [T].

    ``exp(-((h - centre_h) / width_h)**2)`` for ``sunrise_h <= h <= sunset_h`` (hours of day), 0
    outside; the peak, 1 per unit (kW per kW of ``pv_kw``), is at ``centre_h`` (noon for a south
    panel). Day-to-day cloudiness and per-step noise are applied later by
    :func:`jaxlem.profiles.draw_day_factors` and :func:`jaxlem.profiles.sample_step`.
    """
    check_grid(num_steps, dt_h)
    if not (0.0 <= sunrise_h < sunset_h <= 24.0):
        raise ValueError(
            f"sunrise_h/sunset_h must satisfy 0 <= sunrise_h < sunset_h <= 24, "
            f"got sunrise_h={sunrise_h!r}, sunset_h={sunset_h!r}"
        )
    if not (math.isfinite(width_h) and width_h > 0):
        raise ValueError(f"width_h must be a finite number of hours > 0, got {width_h!r}")
    h = step_hours(num_steps, dt_h)
    bell = np.exp(-(((h - centre_h) / width_h) ** 2))
    daylight = (h >= sunrise_h) & (h <= sunset_h)
    return np.where(daylight, bell, 0.0).astype(np.float32)


def _bumps(h: np.ndarray, base: float, bumps) -> np.ndarray:
    """Base plus periodic Gaussian bumps at hours of day ``h`` (wrapping around midnight)."""
    out = np.full_like(h, base, dtype=np.float64)
    for centre, width, amp in bumps:
        d = np.mod(h - centre + 12.0, 24.0) - 12.0  # signed periodic distance to the centre
        out = out + amp * np.exp(-((d / width) ** 2))
    return out


def _day_mean(num_steps: int, dt_h: float, base: float, bumps) -> float:
    steps_per_day = 24.0 / dt_h
    n_day = round(steps_per_day)
    if n_day >= 1 and abs(steps_per_day - n_day) < 1e-9:
        return float(_bumps(step_hours(n_day, dt_h), base, bumps).mean())
    return float(_bumps(step_hours(1440, 1.0 / 60.0), base, bumps).mean())  # 1-minute grid


def demand_shape(num_steps: int, dt_h: float, kind: str = "h0") -> np.ndarray:
    """Per-unit demand of ``kind`` at each step's mid-hour; float32 [T], > 0 everywhere.

    The default (household) has a morning peak around 8 h, an evening peak around 20 h (the
    higher one), a midday plateau and a night trough (about 1-6 h). Normalised so its mean over
    one 24 h day on this step grid is 1.0, so an agent's demand scale is its mean demand in kW.
    """
    check_grid(num_steps, dt_h)
    if kind not in _KIND_SHAPES:
        raise ValueError(f"kind: got {kind!r}; allowed: one of {', '.join(_KIND_SHAPES)}")
    base, bumps = _KIND_SHAPES[kind]
    raw = _bumps(step_hours(num_steps, dt_h), base, bumps)
    return (raw / _day_mean(num_steps, dt_h, base, bumps)).astype(np.float32)


def synthetic_tables(num_steps: int, dt_h: float) -> tuple[np.ndarray, np.ndarray]:
    """One synthetic shape per kind: PV [len(PV_KINDS), T] and demand [len(DEMAND_KIND_NAMES), T],
    rows in the order of :mod:`jaxlem.profiles.kinds` (the same rows as the profile bank)."""
    pv = np.stack(
        [
            peak * pv_shape(num_steps, dt_h, 6.0, 18.0, width, centre)
            for centre, width, peak in (_PV_BELLS[k] for k in PV_KINDS)
        ]
    )
    dem = np.stack([demand_shape(num_steps, dt_h, k) for k in DEMAND_KIND_NAMES])
    return pv.astype(np.float32), dem
