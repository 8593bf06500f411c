"""DER generation, demand and DSO price profiles: synthetic shapes, CSV loading, random draws.

Per-unit convention: a profile value is the *average power over one step* divided by the agent's
size (``pv_kw`` for PV, the demand scale in kW for demand). Energy in a step is
``value * size * dt_h`` kWh. Shapes and CSV files are built once in Python (NumPy, outside jit)
and stored in the env params; the random draws and the tariff sampler are pure, jittable JAX.
"""

from __future__ import annotations

import csv
import math
import os

import jax
import jax.numpy as jnp
import numpy as np

__all__ = [
    "pv_shape",
    "demand_shape",
    "load_profile_csv",
    "draw_day_factors",
    "sample_step",
    "tou_tariff",
]

# Residential demand: constant base plus periodic Gaussian bumps (centre h, width h, amplitude).
_DEMAND_BASE = 0.45
_DEMAND_BUMPS = (
    (8.0, 1.2, 0.55),  # morning peak
    (13.0, 3.0, 0.15),  # midday plateau
    (20.0, 1.5, 0.90),  # evening peak (highest)
)

# Time-of-use blocks: night [0, e1), day [e1, e2), evening peak [e2, e3), late evening [e3, 24).
_TOU_EDGES_H = (7.0, 17.0, 21.0)
_TOU_EDGE_SHIFT_H = 1.5  # edge shift = round(jitter * U(-1.5, 1.5)) hours
_UTILITY_FRAC = (0.35, 0.55, 0.90, 0.50)  # of the price range, per block
_UTILITY_JITTER = 0.10  # level perturbation = jitter * U(-0.1, 0.1)
_FIT_FRAC = (0.10, 0.20, 0.25, 0.15)
_FIT_JITTER = 0.05

# Factor allowed by resampling a CSV (15 min <-> 30 min <-> 60 min).
_RESAMPLE_FACTORS = (2, 4)
_DAY_FACTOR_BOUNDS = (0.2, 3.0)


def _check_grid(num_steps: int, dt_h: float) -> None:
    """Reject a bad time grid (Python-side, outside jit)."""
    if not isinstance(num_steps, (int, np.integer)) or num_steps < 1:
        raise ValueError(f"num_steps must be an integer >= 1, got {num_steps!r}")
    if not (math.isfinite(dt_h) and dt_h > 0):
        raise ValueError(f"dt_h must be a finite number of hours > 0, got {dt_h!r}")


def _step_hours(num_steps: int, dt_h: float) -> np.ndarray:
    """Hour of day at each step's midpoint, ``(t + 0.5) * dt_h mod 24``; float64 [T]."""
    return np.mod((np.arange(num_steps, dtype=np.float64) + 0.5) * dt_h, 24.0)


def pv_shape(
    num_steps: int,
    dt_h: float,
    sunrise_h: float = 6.0,
    sunset_h: float = 18.0,
    width_h: float = 3.0,
) -> np.ndarray:
    """Clear-sky per-unit PV output at each step's mid-hour; float32 [T].

    ``exp(-((h - 12) / width_h)**2)`` for ``sunrise_h <= h <= sunset_h`` (hours of day), 0 outside;
    the peak, 1 per unit (kW per kW of ``pv_kw``), is at noon. Day-to-day cloudiness and per-step
    noise are applied later by :func:`draw_day_factors` and :func:`sample_step`.
    """
    _check_grid(num_steps, dt_h)
    if not (0.0 <= sunrise_h < sunset_h <= 24.0):
        raise ValueError(
            f"sunrise_h/sunset_h must satisfy 0 <= sunrise_h < sunset_h <= 24, "
            f"got sunrise_h={sunrise_h!r}, sunset_h={sunset_h!r}"
        )
    if not (math.isfinite(width_h) and width_h > 0):
        raise ValueError(f"width_h must be a finite number of hours > 0, got {width_h!r}")
    h = _step_hours(num_steps, dt_h)
    bell = np.exp(-(((h - 12.0) / width_h) ** 2))
    daylight = (h >= sunrise_h) & (h <= sunset_h)
    return np.where(daylight, bell, 0.0).astype(np.float32)


def _demand_raw(h: np.ndarray) -> np.ndarray:
    """Un-normalised demand shape at hours of day ``h`` (bumps wrap around midnight)."""
    out = np.full_like(h, _DEMAND_BASE, dtype=np.float64)
    for centre, width, amp in _DEMAND_BUMPS:
        d = np.mod(h - centre + 12.0, 24.0) - 12.0  # signed periodic distance to the centre
        out = out + amp * np.exp(-((d / width) ** 2))
    return out


def demand_shape(num_steps: int, dt_h: float) -> np.ndarray:
    """Per-unit residential demand at each step's mid-hour; float32 [T], > 0 everywhere.

    Morning peak around 8 h, evening peak around 20 h (the higher one), a midday plateau and a
    night trough (about 1-6 h). Normalised so its mean over one 24 h day on this step grid is 1.0,
    so an agent's demand scale is its mean demand in kW.
    """
    _check_grid(num_steps, dt_h)
    steps_per_day = 24.0 / dt_h
    n_day = round(steps_per_day)
    if n_day >= 1 and abs(steps_per_day - n_day) < 1e-9:
        day_mean = _demand_raw(_step_hours(n_day, dt_h)).mean()
    else:  # dt does not divide the day: normalise on a 1-minute grid instead
        day_mean = _demand_raw(_step_hours(1440, 1.0 / 60.0)).mean()
    return (_demand_raw(_step_hours(num_steps, dt_h)) / day_mean).astype(np.float32)


def _resample_rows(values: np.ndarray, num_steps: int, dt_h: float, path: str) -> np.ndarray:
    """Map [rows, K] values onto ``num_steps`` steps (repeat or block-average); [K, T] float64."""
    rows = values.shape[0]
    if rows == num_steps:
        out = values
    elif num_steps % rows == 0 and num_steps // rows in _RESAMPLE_FACTORS:
        # Coarser file: per-unit power is an average power, so repeating each row keeps energy.
        out = np.repeat(values, num_steps // rows, axis=0)
    elif rows % num_steps == 0 and rows // num_steps in _RESAMPLE_FACTORS:
        # Finer file: the average power over each env step is the mean of its sub-steps.
        m = rows // num_steps
        out = values.reshape(num_steps, m, values.shape[1]).mean(axis=1)
    else:
        allowed = sorted(
            {num_steps}
            | {num_steps // m for m in _RESAMPLE_FACTORS if num_steps % m == 0}
            | {num_steps * m for m in _RESAMPLE_FACTORS}
        )
        raise ValueError(
            f"{path}: rows = {rows} data rows cannot be resampled to num_steps = {num_steps} "
            f"(dt_h = {dt_h}); allowed row counts are {allowed} (the same resolution, or a file "
            f"{list(_RESAMPLE_FACTORS)} times coarser or finer)"
        )
    return out.T


def load_profile_csv(path: str | os.PathLike, num_steps: int, dt_h: float) -> np.ndarray:
    """Read per-unit profiles from a CSV file; float32 [K, num_steps], K = number of columns.

    The header must be exactly ``profile_1,...,profile_K`` (K >= 1, in order) and each data row
    holds one step's per-unit average power per profile (finite, >= 0). Files 2x or 4x coarser
    than the env grid have each row repeated; files 2x or 4x finer are averaged in blocks. Any
    other row count, or a malformed file, raises ``ValueError`` naming the field or location, the
    bad value and what is allowed. Runs in Python, outside jit.
    """
    _check_grid(num_steps, dt_h)
    path = os.fspath(path)
    if not os.path.isfile(path):
        raise FileNotFoundError(f"profile CSV not found: path = {path!r}")
    with open(path, newline="", encoding="utf-8-sig") as f:
        lines = list(csv.reader(f))
    while lines and not any(cell.strip() for cell in lines[-1]):
        lines.pop()  # tolerate trailing blank lines
    if not lines:
        raise ValueError(
            f"{path}: file is empty; expected a header 'profile_1,...,profile_K' "
            f"followed by one row per step"
        )

    header = [cell.strip() for cell in lines[0]]
    expected = [f"profile_{j + 1}" for j in range(len(header))]
    if header != expected:
        raise ValueError(
            f"{path}: header = {lines[0]!r} is invalid; expected exactly {expected!r} "
            f"(columns named profile_1 ... profile_K in order, K >= 1)"
        )
    k = len(header)
    data = lines[1:]
    if not data:
        raise ValueError(f"{path}: rows = 0; the file needs at least one data row after the header")

    values = np.empty((len(data), k), dtype=np.float64)
    for i, row in enumerate(data):
        line_no = i + 2  # 1-based line number in the file, the header being line 1
        if len(row) != k:
            raise ValueError(
                f"{path}: row {i + 1} (line {line_no}) has {len(row)} cells; "
                f"expected {k} (one per column of the header)"
            )
        for j, cell in enumerate(row):
            where = f"{path}: row {i + 1} (line {line_no}), column '{header[j]}'"
            text = cell.strip()
            if not text:
                raise ValueError(f"{where}: missing cell (empty); expected a number >= 0")
            try:
                v = float(text)
            except ValueError:
                raise ValueError(
                    f"{where}: value {cell!r} is not numeric; expected a finite number >= 0"
                ) from None
            if not math.isfinite(v):
                raise ValueError(f"{where}: value {cell!r} is not finite; expected a number >= 0")
            if v < 0:
                raise ValueError(f"{where}: value {v!r} is negative; expected a number >= 0")
            values[i, j] = v
    return _resample_rows(values, num_steps, dt_h, path).astype(np.float32)


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
    _check_grid(num_steps, dt_h)
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
    h = jnp.asarray(_step_hours(num_steps, dt_h), f32)
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
