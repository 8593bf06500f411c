"""Profiles from CSV files: per-unit columns, resampled to the env's time grid (outside jit)."""

from __future__ import annotations

import csv
import math
import os

import numpy as np

from jaxlem.profiles._grid import check_grid

# Factor allowed by resampling a CSV (15 min <-> 30 min <-> 60 min).
_RESAMPLE_FACTORS = (2, 4)


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
    check_grid(num_steps, dt_h)
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
