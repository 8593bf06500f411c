"""``solve_qp``: backend dispatch and the backend-independent custom VJP.

Backends: ``"ipm"`` (``grid.qp.ipm``, the default) and ``"boxosqp"`` (``grid.qp.boxosqp``). The
boxosqp backend runs the ADMM iteration of ``jaxopt.BoxOSQP`` (OSQP); it stops on the same
relative KKT error (``residual``) as the ipm, so ``converged`` means the same for both. It is
slower than the ipm on CPU (thousands of cheap iterations instead of tens of factorisations).
Gradients do not depend on the backend: the VJP uses only the returned solution.
"""

from __future__ import annotations

from functools import partial

import jax
import jax.numpy as jnp

from jaxlem.grid.qp.boxosqp import solve_boxosqp
from jaxlem.grid.qp.ipm import solve_ipm
from jaxlem.grid.qp.kkt import QP, QPSolution

BACKENDS = ("ipm", "boxosqp")
DEFAULT_ITERS = {"ipm": 40, "boxosqp": 4000}


def solve_qp(
    qp: QP,
    *,
    backend: str = "ipm",
    iters: int | None = None,
    tol: float | None = None,
    reg: float | None = None,
    temperature: float = 0.0,
) -> QPSolution:
    """Solve one QP (vmap for a batch) with ``backend`` (one of ``BACKENDS``). ``iters`` is the
    iteration budget (static; ipm iterations or ADMM iterations; None: ``DEFAULT_ITERS``).
    ``tol``: the relative KKT error to stop at (None: 1e-6 in float32, 1e-8 in float64).
    ``reg``: the ipm's primal-dual regularisation (boxosqp ignores it).

    Reverse-mode derivatives of every output (primal, duals, objective) with respect to every
    QP array come from implicit differentiation of the KKT conditions at the solution
    (``jax.custom_vjp``), not from unrolling the iterations, for every backend. ``temperature``
    > 0 smooths them: slacks and duals are both raised by it in the KKT matrix, so the gradients
    of a degenerate LP see constraints that are almost active instead of jumping between vertices.
    """
    if backend not in BACKENDS:
        raise ValueError(f"backend: got {backend!r}; allowed: one of {', '.join(BACKENDS)}")
    iters = DEFAULT_ITERS[backend] if iters is None else int(iters)
    return _solve(qp, backend, iters, tol, reg, float(temperature))


def _forward(qp: QP, backend: str, iters: int, tol, reg) -> QPSolution:
    if backend == "boxosqp":
        return solve_boxosqp(qp, iters, tol)
    return solve_ipm(qp, iters, tol, reg)


@partial(jax.custom_vjp, nondiff_argnums=(1, 2, 3, 4, 5))
def _solve(qp, backend, iters, tol, reg, temperature):
    return _forward(qp, backend, iters, tol, reg)


def _solve_fwd(qp, backend, iters, tol, reg, temperature):
    sol = _forward(qp, backend, iters, tol, reg)
    return sol, (qp, sol)


def _solve_bwd(backend, iters, tol, reg, temperature, res, g):
    """VJP by the implicit function theorem on F(x, z_f, y) = 0 (OptNet form):

    F1 = Qx + c + A'y + G_f'z_f,  F2 = diag(z_f)(G_f x - h_f),  F3 = Ax - b,
    with the bounds as rows of G_f = [G; -I; I], h_f = [h; -lb; ub]. Solve K' lam = w_bar and
    theta_bar = -lam' dF/dtheta.
    """
    qp, sol = res
    dtype = qp.c.dtype
    n, me, mi = qp.c.shape[0], qp.b.shape[0], qp.h.shape[0]
    has_lb, has_ub = jnp.isfinite(qp.lb), jnp.isfinite(qp.ub)
    x, y = sol.x, sol.y
    diag_q = qp.Q.ndim == 1
    q_mat = jnp.diag(qp.Q) if diag_q else qp.Q
    eye = jnp.eye(n, dtype=dtype)
    g_f = jnp.concatenate([qp.G, -eye, eye])
    z_f = jnp.concatenate([sol.z, sol.z_lb, sol.z_ub])
    slack_f = jnp.concatenate(
        [
            sol.slack,
            jnp.where(has_lb, x - jnp.where(has_lb, qp.lb, 0.0), 1.0),
            jnp.where(has_ub, jnp.where(has_ub, qp.ub, 0.0) - x, 1.0),
        ]
    )
    active_row = jnp.concatenate([jnp.ones((mi,), bool), has_lb, has_ub])
    tiny = 10 * jnp.finfo(dtype).eps
    z_k = jnp.where(active_row, z_f + temperature, 0.0)
    s_k = jnp.where(active_row, jnp.maximum(slack_f, 0.0) + temperature + tiny, 1.0)
    m_f = g_f.shape[0]
    k = jnp.block(
        [
            [q_mat, g_f.T, qp.A.T],
            [z_k[:, None] * g_f, -jnp.diag(s_k), jnp.zeros((m_f, me), dtype)],
            [qp.A, jnp.zeros((me, m_f), dtype), -tiny * jnp.eye(me, dtype=dtype)],
        ]
    )
    # the objective 1/2 x'Qx + c'x: direct partials plus its dependence through x
    o_bar = g.objective
    x_bar = g.x + o_bar * (q_mat @ x + qp.c)
    zf_bar = jnp.concatenate([g.z, g.z_lb, g.z_ub]) * active_row
    w_bar = jnp.concatenate([x_bar, zf_bar, g.y])
    lam = jnp.linalg.solve(k.T, w_bar)
    l1, l2, l3 = lam[:n], lam[n : n + m_f], lam[n + m_f :]
    hf_bar = l2 * z_k
    q_bar = -0.5 * (jnp.outer(l1, x) + jnp.outer(x, l1)) + 0.5 * o_bar * jnp.outer(x, x)
    qp_bar = QP(
        Q=jnp.diagonal(q_bar) if diag_q else q_bar,
        c=-l1 + o_bar * x,
        A=-(jnp.outer(y, l1) + jnp.outer(l3, x)),
        b=l3,
        G=-(jnp.outer(sol.z, l1) + jnp.outer(hf_bar[:mi], x)),
        h=hf_bar[:mi],
        lb=jnp.where(has_lb, -hf_bar[mi : mi + n], 0.0),
        ub=jnp.where(has_ub, hf_bar[mi + n :], 0.0),
    )
    return (qp_bar,)


_solve.defvjp(_solve_fwd, _solve_bwd)
