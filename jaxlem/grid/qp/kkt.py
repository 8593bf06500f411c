"""The QP problem and solution types and the KKT helpers shared by every backend.

    minimise  1/2 x'Qx + c'x   subject to   A x = b,   G x <= h,   lb <= x <= ub

Bounds may be +-inf (ignored). Duals follow the Lagrangian
``L = f + y'(Ax - b) + z'(Gx - h) + z_ub'(x - ub) + z_lb'(lb - x)`` so that ``dL/db = -y`` and
``dL/dh = -z`` (sensitivities of the optimal value). Every backend reports the same relative KKT
error (``kkt_error``) as ``residual`` and the same ``converged`` flag (``converged``).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Self, TypeAlias

import jax
import jax.numpy as jnp
from flax import struct
from jax.typing import DTypeLike


@struct.dataclass
class QP:
    Q: jax.Array  # [n, n] positive semidefinite, or [n] its diagonal (the fast path)
    c: jax.Array  # [n]
    A: jax.Array  # [me, n]
    b: jax.Array  # [me]
    G: jax.Array  # [mi, n]
    h: jax.Array  # [mi]
    lb: jax.Array  # [n] (-inf = none)
    ub: jax.Array  # [n] (+inf = none)

    if TYPE_CHECKING:  # added by ``struct.dataclass``; declared for type checkers

        def replace(self, **updates: Any) -> Self: ...


@struct.dataclass
class QPSolution:
    x: jax.Array
    y: jax.Array  # equality duals [me]
    z: jax.Array  # inequality duals [mi] (>= 0)
    z_lb: jax.Array  # lower-bound duals [n] (>= 0, 0 where no bound)
    z_ub: jax.Array  # upper-bound duals [n]
    objective: jax.Array
    # relative KKT residual < 1e-3 in float32 (whose floor on degenerate LPs is ~1e-4), or
    # < 100 tol in float64 (every backend): flags a failed solve, not the last digits
    converged: jax.Array
    residual: jax.Array  # max of relative primal, dual residual and gap
    slack: jax.Array  # [mi] h - Gx at the solution (>= 0)


@struct.dataclass
class State:
    """A primal-dual point: x, duals y, z (slacks s), bound duals zl, zu (slacks sl, su)."""

    x: jax.Array
    y: jax.Array
    z: jax.Array
    s: jax.Array
    zl: jax.Array
    sl: jax.Array
    zu: jax.Array
    su: jax.Array
    done: jax.Array

    if TYPE_CHECKING:  # added by ``struct.dataclass``; declared for type checkers

        def replace(self, **updates: Any) -> Self: ...


def qmul(q: jax.Array, x: jax.Array) -> jax.Array:
    """``Q x`` for a dense ``Q`` [n, n] or a diagonal given as a vector [n]."""
    return q * x if q.ndim == 1 else q @ x


def objective(qp: QP, x: jax.Array) -> jax.Array:
    """1/2 x'Qx + c'x."""
    return 0.5 * x @ qmul(qp.Q, x) + qp.c @ x


# (lb, ub) with missing bounds at 0 and their indicators: ``finite_bounds``
Bounds: TypeAlias = tuple[jax.Array, jax.Array, jax.Array, jax.Array]


def finite_bounds(qp: QP) -> Bounds:
    """(lb, ub) with missing bounds set to 0, and their indicators (1.0 where a bound exists)."""
    has_lb, has_ub = jnp.isfinite(qp.lb), jnp.isfinite(qp.ub)
    lb = jnp.where(has_lb, qp.lb, 0.0)
    ub = jnp.where(has_ub, qp.ub, 0.0)
    return lb, ub, has_lb.astype(qp.c.dtype), has_ub.astype(qp.c.dtype)


def residuals(
    qp: QP, st: State, bounds: Bounds | None = None
) -> tuple[jax.Array, jax.Array, jax.Array, jax.Array, jax.Array, jax.Array]:
    """KKT residuals: dual (stationarity), equality, inequality (Gx + s - h), bounds, and gap.
    ``bounds``: ``finite_bounds(qp)`` if already computed."""
    lb, ub, fl, fu = finite_bounds(qp) if bounds is None else bounds
    rd = qmul(qp.Q, st.x) + qp.c + qp.A.T @ st.y + qp.G.T @ st.z - st.zl * fl + st.zu * fu
    re = qp.A @ st.x - qp.b
    ri = qp.G @ st.x + st.s - qp.h
    rl = (lb - st.x + st.sl) * fl  # lb - x + sl = 0
    ru = (st.x + st.su - ub) * fu  # x + su - ub = 0
    gap = st.s @ st.z + (st.sl * st.zl) @ fl + (st.su * st.zu) @ fu  # total duality gap
    return rd, re, ri, rl, ru, gap


def kkt_scales(qp: QP) -> tuple[jax.Array, jax.Array]:
    """Dual and primal scales of the relative KKT error: 1 + |c|_inf, 1 + max(|b|, |h|)_inf."""
    scale_d = 1.0 + jnp.max(jnp.abs(qp.c))
    scale_p = 1.0 + jnp.maximum(
        jnp.max(jnp.abs(qp.b), initial=0.0), jnp.max(jnp.abs(qp.h), initial=0.0)
    )
    return scale_d, scale_p


def kkt_error(
    qp: QP,
    st: State,
    scales: tuple[jax.Array, jax.Array] | None = None,
    bounds: Bounds | None = None,
) -> jax.Array:
    """The relative KKT error every backend reports as ``residual``: the max of the dual
    residual over 1 + |c|_inf, the primal residual over 1 + max(|b|, |h|), and the gap over
    1 + |objective|. Slacks and duals in ``st`` must be >= 0."""
    rd, re, ri, rl, ru, gap = residuals(qp, st, bounds)
    scale_d, scale_p = kkt_scales(qp) if scales is None else scales
    prim = jnp.maximum(
        jnp.max(jnp.abs(re), initial=0.0),
        jnp.maximum(jnp.max(jnp.abs(ri), initial=0.0), jnp.max(jnp.abs(rl) + jnp.abs(ru))),
    )
    obj = objective(qp, st.x)
    return jnp.maximum(
        jnp.maximum(jnp.max(jnp.abs(rd)) / scale_d, prim / scale_p),
        gap / (1.0 + jnp.abs(obj)),
    )


def converged(err: jax.Array, dtype: DTypeLike, tol: float | None) -> jax.Array:
    """The shared ``converged`` flag: < 1e-3 in float32, < 100 tol (default 1e-8) in float64."""
    if jnp.finfo(dtype).eps > 1e-10:
        return err < 1e-3
    return err < 100 * (1e-8 if tol is None else tol)
