"""The time grid of an episode: validation and the hour of day of each step (outside jit)."""

from __future__ import annotations

import math

import numpy as np


def check_grid(num_steps: int, dt_h: float) -> None:
    """Reject a bad time grid (Python-side, outside jit)."""
    if not isinstance(num_steps, (int, np.integer)) or num_steps < 1:
        raise ValueError(f"num_steps must be an integer >= 1, got {num_steps!r}")
    if not (math.isfinite(dt_h) and dt_h > 0):
        raise ValueError(f"dt_h must be a finite number of hours > 0, got {dt_h!r}")


def step_hours(num_steps: int, dt_h: float) -> np.ndarray:
    """Hour of day at each step's midpoint, ``(t + 0.5) * dt_h mod 24``; float64 [T]."""
    return np.mod((np.arange(num_steps, dtype=np.float64) + 0.5) * dt_h, 24.0)
