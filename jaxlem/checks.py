"""Validation of configuration values in Python, before anything is traced.

Every failure raises ``ValueError`` naming the field, the offending value and the allowed range.
"""

from __future__ import annotations

from collections.abc import Collection
from typing import Any, TypeVar

import jax
import numpy as np
import numpy.typing as npt

_T = TypeVar("_T")


def _fmt(v: Any) -> str:
    """A number as a reader wants it: float32 inputs without float64 noise (0.9, not 0.8999...)."""
    return f"{float(v):.7g}" if isinstance(v, float | np.floating) else repr(v)


def _first_bad(arr: np.ndarray, bad: np.ndarray) -> tuple[str, Any]:
    idx = np.argwhere(bad)[0]
    where = "" if arr.ndim == 0 else f"[{', '.join(str(int(i)) for i in idx)}]"
    return where, (arr[tuple(idx)] if arr.ndim else arr).item()


def check_range(
    name: str,
    value: npt.ArrayLike,
    lo: float = -np.inf,
    hi: float = np.inf,
    *,
    lo_open: bool = False,
    hi_open: bool = False,
) -> np.ndarray:
    """Check that every element of ``value`` is finite-or-inf-allowed and inside the interval."""
    arr = np.asarray(value, dtype=np.float64)
    bad = np.isnan(arr)
    bad |= (arr <= lo) if lo_open else (arr < lo)
    bad |= (arr >= hi) if hi_open else (arr > hi)
    if np.any(bad):
        where, v = _first_bad(arr, bad)
        left = "(" if lo_open else "["
        right = ")" if hi_open else "]"
        raise ValueError(f"{name}{where}: got {_fmt(v)}; allowed range {left}{lo}, {hi}{right}")
    return arr


def check_order(
    name_lo: str, lo: npt.ArrayLike, name_hi: str, hi: npt.ArrayLike, *, strict: bool = False
) -> None:
    """Check ``lo <= hi`` (or ``<``) elementwise, naming both fields."""
    a, b = np.broadcast_arrays(np.asarray(lo, np.float64), np.asarray(hi, np.float64))
    bad = (a >= b) if strict else (a > b)
    if np.any(bad):
        idx = tuple(np.argwhere(bad)[0])
        where = f"[{', '.join(str(int(i)) for i in idx)}]" if a.ndim else ""
        op = "<" if strict else "<="
        raise ValueError(
            f"{name_lo}{where} = {_fmt(a[idx])} must be {op} "
            f"{name_hi}{where} = {_fmt(b[idx])}; "
            f"allowed range {name_lo} {op} {name_hi}"
        )


def check_int(name: str, value: Any, lo: int, hi: int | None = None) -> int:
    """Check a static integer setting (agent count, episode length, ...)."""
    if isinstance(value, bool) or not isinstance(value, int | np.integer):
        raise ValueError(f"{name}: got {value!r}; allowed: an integer >= {lo}")
    if value < lo or (hi is not None and value > hi):
        rng = f"[{lo}, {hi}]" if hi is not None else f">= {lo}"
        raise ValueError(f"{name}: got {value!r}; allowed range {rng}")
    return int(value)


def check_choice(name: str, value: _T, choices: Collection[Any]) -> _T:
    if value not in choices:
        raise ValueError(f"{name}: got {value!r}; allowed: one of {', '.join(map(str, choices))}")
    return value


def check_number(name: str, value: Any) -> float:
    """Check that a scalar setting is a real number (not a string, list or bool)."""
    if isinstance(value, bool) or not isinstance(value, int | float | np.integer | np.floating):
        raise ValueError(f"{name}: got {value!r}; allowed: a number")
    return float(value)


def is_concrete(tree: Any) -> bool:
    """Whether every leaf of ``tree`` has a value now (False under ``jit`` tracing), so checks
    that read values can run on it."""
    try:
        for leaf in jax.tree_util.tree_leaves(tree):
            np.asarray(leaf)
    except (jax.errors.TracerArrayConversionError, jax.errors.ConcretizationTypeError):
        return False
    return True
