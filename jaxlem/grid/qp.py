"""One small QP interface for the grid solvers, with swappable backends.

    minimise  1/2 x'Qx + c'x   subject to   A x = b,   G x <= h,   lb <= x <= ub

Bounds may be +-inf (ignored). The default backend ``"ipm"`` is our own primal-dual interior
point method (Mehrotra predictor-corrector) with a fixed iteration budget: jittable, vmappable
over a batch of QPs, float32 or float64. It returns primal and dual solutions; duals follow the
Lagrangian ``L = f + y'(Ax - b) + z'(Gx - h) + z_ub'(x - ub) + z_lb'(lb - x)`` so that
``dL/db = -y`` and ``dL/dh = -z`` (sensitivities of the optimal value).

Iterations freeze once the relative residuals and gap are below ``tol``, so extra iterations are
harmless, and the best iterate seen is returned (float32 can degrade once the barrier is tiny).
Bound constraints are handled as diagonals (no dense rows). With a diagonal ``Q`` (given as a
vector [n], as the dispatch problems do) one iteration factorises only the (m_eq + m_ineq) normal
equations ``C D^-1 C' + E`` (C = [A; G], D and E diagonal) by Cholesky, so the cost grows with the
number of coupling rows, not with the number of variables; a dense ``Q`` [n, n] uses one dense
(n + m_eq) LU factorisation per iteration.

The second backend ``"boxosqp"`` runs the ADMM iteration of ``jaxopt.BoxOSQP`` (OSQP) on the
form ``l <= [A; G; I] x <= u`` with OSQP's equilibration, step-size rule and solution polishing
around it, and stops on the same relative KKT error (``residual``), so ``converged`` means the same
for both. It is slower than the ipm on CPU (thousands of cheap iterations instead of tens of
factorisations); jaxopt is unmaintained, so it is imported only inside this backend. Gradients do
not depend on the backend: the VJP uses only the returned solution.
"""

from __future__ import annotations

from functools import partial

import jax
import jax.numpy as jnp
from flax import struct

BACKENDS = ("ipm", "boxosqp")
DEFAULT_ITERS = {"ipm": 40, "boxosqp": 4000}


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
class _State:
    x: jax.Array
    y: jax.Array
    z: jax.Array
    s: jax.Array
    zl: jax.Array
    sl: jax.Array
    zu: jax.Array
    su: jax.Array
    done: jax.Array


def _qmul(q: jax.Array, x: jax.Array) -> jax.Array:
    return q * x if q.ndim == 1 else q @ x


def _finite_bounds(qp: QP):
    """(lb, ub) with missing bounds set to 0, and their indicators (1.0 where a bound exists)."""
    has_lb, has_ub = jnp.isfinite(qp.lb), jnp.isfinite(qp.ub)
    lb = jnp.where(has_lb, qp.lb, 0.0)
    ub = jnp.where(has_ub, qp.ub, 0.0)
    return lb, ub, has_lb.astype(qp.c.dtype), has_ub.astype(qp.c.dtype)


def _residuals(qp: QP, st: _State, bounds=None):
    """KKT residuals: dual (stationarity), equality, inequality (Gx + s - h), bounds, and gap.
    ``bounds``: ``_finite_bounds(qp)`` if already computed."""
    lb, ub, fl, fu = _finite_bounds(qp) if bounds is None else bounds
    rd = _qmul(qp.Q, st.x) + qp.c + qp.A.T @ st.y + qp.G.T @ st.z - st.zl * fl + st.zu * fu
    re = qp.A @ st.x - qp.b
    ri = qp.G @ st.x + st.s - qp.h
    rl = (lb - st.x + st.sl) * fl  # lb - x + sl = 0
    ru = (st.x + st.su - ub) * fu  # x + su - ub = 0
    gap = st.s @ st.z + (st.sl * st.zl) @ fl + (st.su * st.zu) @ fu  # total duality gap
    return rd, re, ri, rl, ru, gap


def _kkt_scales(qp: QP):
    """Dual and primal scales of the relative KKT error: 1 + |c|_inf, 1 + max(|b|, |h|)_inf."""
    scale_d = 1.0 + jnp.max(jnp.abs(qp.c))
    scale_p = 1.0 + jnp.maximum(
        jnp.max(jnp.abs(qp.b), initial=0.0), jnp.max(jnp.abs(qp.h), initial=0.0)
    )
    return scale_d, scale_p


def _kkt_error(qp: QP, st: _State, scales=None, bounds=None) -> jax.Array:
    """The relative KKT error every backend reports as ``residual``: the max of the dual
    residual over 1 + |c|_inf, the primal residual over 1 + max(|b|, |h|), and the gap over
    1 + |objective|. Slacks and duals in ``st`` must be >= 0."""
    rd, re, ri, rl, ru, gap = _residuals(qp, st, bounds)
    scale_d, scale_p = _kkt_scales(qp) if scales is None else scales
    prim = jnp.maximum(
        jnp.max(jnp.abs(re), initial=0.0),
        jnp.maximum(jnp.max(jnp.abs(ri), initial=0.0), jnp.max(jnp.abs(rl) + jnp.abs(ru))),
    )
    obj = 0.5 * st.x @ _qmul(qp.Q, st.x) + qp.c @ st.x
    return jnp.maximum(
        jnp.maximum(jnp.max(jnp.abs(rd)) / scale_d, prim / scale_p),
        gap / (1.0 + jnp.abs(obj)),
    )


def _converged(err: jax.Array, dtype, tol) -> jax.Array:
    """The shared ``converged`` flag: < 1e-3 in float32, < 100 tol (default 1e-8) in float64."""
    if jnp.finfo(dtype).eps > 1e-10:
        return err < 1e-3
    return err < 100 * (1e-8 if tol is None else tol)


def _max_step(v, dv):
    """Largest alpha in (0, 1] with v + alpha dv >= 0 (elementwise, v > 0)."""
    ratio = jnp.where(dv < 0, -v / jnp.where(dv < 0, dv, -1.0), jnp.inf)
    return jnp.minimum(1.0, jnp.min(ratio, initial=jnp.inf))


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
        from jaxlem.grid.boxosqp import solve_boxosqp  # imports jaxopt: only when asked for

        return solve_boxosqp(qp, iters, tol)
    return _ipm(qp, iters, tol, reg)


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


def _chol_inverse(m: jax.Array) -> jax.Array:
    """``L^-1`` for the Cholesky factor ``L`` of the SPD matrix ``m``: ``m^-1 = L^-T L^-1``."""
    chol = jnp.linalg.cholesky(m)
    eye = jnp.eye(m.shape[-1], dtype=m.dtype)
    return jax.scipy.linalg.solve_triangular(chol, eye, lower=True)


def _ipm(qp: QP, iters: int, tol, reg, refine: int = 2) -> QPSolution:
    dtype = qp.c.dtype
    eps = jnp.finfo(dtype).eps
    if tol is None:  # float32 reaches ~1e-6 relative (0.03 MW, 0.003 $/MWh on case5)
        tol = 1e-6 if eps > 1e-10 else 1e-8
    reg = float(eps**0.75) if reg is None else reg
    n, me, mi = qp.c.shape[0], qp.b.shape[0], qp.h.shape[0]
    has_lb, has_ub = jnp.isfinite(qp.lb), jnp.isfinite(qp.ub)
    bounds = _finite_bounds(qp)
    lb, ub, fl, fu = bounds
    m_tot = jnp.maximum(mi + jnp.sum(fl) + jnp.sum(fu), 1.0)
    scales = _kkt_scales(qp)
    eye_e = jnp.eye(me, dtype=dtype)
    diag_q = qp.Q.ndim == 1
    coupling = jnp.concatenate([qp.A, qp.G])  # [me + mi, n]

    def newton(st, factor, rhs_c):
        """Solve the KKT system for complementarity targets ``rhs_c = (rc, rcl, rcu)``."""
        rd, re, ri, rl, ru, _ = _residuals(qp, st, bounds)
        rc, rcl, rcu = rhs_c
        w = st.z / st.s
        wl = st.zl / st.sl * fl
        wu = st.zu / st.su * fu
        # ds = -ri - G dx ; dsl = -rl + dx ; dsu = -ru - dx  (from the linearised constraints)
        # dz = (-rc - z ds)/s etc.  =>  reduced system in (dx, dy)
        g_rhs = rc / st.s - w * ri
        l_rhs = (rcl / st.sl - wl * rl) * fl
        u_rhs = (rcu / st.su - wu * ru) * fu
        r2 = -re
        if diag_q:
            # D dx + A'dy + G'dz = r1;  A dx - reg dy = r2;  G dx - dz s/z = rc/z - ri
            d_inv, l_inv = factor
            r1 = -rd - l_rhs + u_rhs
            if me + mi == 0:
                dx, dy = d_inv * r1, jnp.zeros((0,), dtype)
            else:
                r23 = jnp.concatenate([r2, rc / st.z - ri])
                e = jnp.concatenate([jnp.full((me,), reg, dtype), st.s / st.z])

                def reduced(v1, v23):
                    dyz = l_inv.T @ (l_inv @ (coupling @ (d_inv * v1) - v23))
                    return d_inv * (v1 - coupling.T @ dyz), dyz

                dx, dyz = reduced(r1, r23)
                # the normal equations lose digits in float32: refine on the full system
                for _ in range(refine):
                    dx_c, dyz_c = reduced(
                        r1 - dx / d_inv - coupling.T @ dyz, r23 - coupling @ dx + e * dyz
                    )
                    dx, dyz = dx + dx_c, dyz + dyz_c
                dy = dyz[:me]
        else:
            r1 = -rd + qp.G.T @ g_rhs - l_rhs + u_rhs
            sol = jax.scipy.linalg.lu_solve(factor, jnp.concatenate([r1, r2]))
            dx, dy = sol[:n], sol[n:]
        ds = -ri - qp.G @ dx
        dsl = (-rl + dx) * fl
        dsu = (-ru - dx) * fu
        dz = (-rc - st.z * ds) / st.s
        dzl = (-rcl - st.zl * dsl) / st.sl * fl
        dzu = (-rcu - st.zu * dsu) / st.su * fu
        return dx, dy, dz, ds, dzl, dsl, dzu, dsu

    def step_len(st, d):
        _, _, dz, ds, dzl, dsl, dzu, dsu = d
        return jnp.minimum(
            jnp.minimum(_max_step(st.s, ds), _max_step(st.z, dz)),
            jnp.minimum(
                jnp.minimum(_max_step(st.sl, dsl * fl), _max_step(st.zl, dzl * fl)),
                jnp.minimum(_max_step(st.su, dsu * fu), _max_step(st.zu, dzu * fu)),
            ),
        )

    def body(carry, _):
        st, best, best_err = carry
        w = st.z / st.s
        wl = st.zl / st.sl * fl
        wu = st.zu / st.su * fu
        if diag_q:
            d_inv = 1.0 / (qp.Q + wl + wu + reg)
            e = jnp.concatenate([jnp.full((me,), reg, dtype), st.s / st.z])
            normal = (coupling * d_inv) @ coupling.T + jnp.diag(e)
            # one triangular inverse per iteration: the six solves below become matrix products
            # (batched small triangular solves are slow on CPU and GPU; refinement keeps float32)
            factor = (d_inv, _chol_inverse(normal) if me + mi else None)
        else:
            h = qp.Q + (qp.G.T * w) @ qp.G + jnp.diag(wl + wu) + reg * jnp.eye(n, dtype=dtype)
            kkt = jnp.block([[h, qp.A.T], [qp.A, -reg * eye_e]])
            factor = jax.scipy.linalg.lu_factor(kkt)
        # predictor (affine scaling)
        aff = newton(st, factor, (st.s * st.z, st.sl * st.zl * fl, st.su * st.zu * fu))
        a_aff = step_len(st, aff)
        _, _, dz, ds, dzl, dsl, dzu, dsu = aff
        mu = (st.s @ st.z + (st.sl * st.zl) @ fl + (st.su * st.zu) @ fu) / m_tot
        mu_aff = (
            (st.s + a_aff * ds) @ (st.z + a_aff * dz)
            + ((st.sl + a_aff * dsl) * (st.zl + a_aff * dzl)) @ fl
            + ((st.su + a_aff * dsu) * (st.zu + a_aff * dzu)) @ fu
        ) / m_tot
        sigma = jnp.clip((mu_aff / jnp.maximum(mu, 1e-30)) ** 3, 0.0, 1.0)
        # corrector
        rc = st.s * st.z + ds * dz - sigma * mu
        rcl = (st.sl * st.zl + dsl * dzl - sigma * mu) * fl
        rcu = (st.su * st.zu + dsu * dzu - sigma * mu) * fu
        d = newton(st, factor, (rc, rcl, rcu))
        alpha = 0.99 * step_len(st, d)
        dx, dy, dz, ds, dzl, dsl, dzu, dsu = d
        new = _State(
            x=st.x + alpha * dx,
            y=st.y + alpha * dy,
            z=st.z + alpha * dz,
            s=st.s + alpha * ds,
            zl=jnp.where(fl > 0, st.zl + alpha * dzl, 1.0),
            sl=jnp.where(fl > 0, st.sl + alpha * dsl, 1.0),
            zu=jnp.where(fu > 0, st.zu + alpha * dzu, 1.0),
            su=jnp.where(fu > 0, st.su + alpha * dsu, 1.0),
            done=st.done,
        )
        ok = jax.tree_util.tree_reduce(
            lambda a, v: a & jnp.all(jnp.isfinite(v)), new, jnp.asarray(True)
        )
        keep = st.done | ~ok
        new = jax.tree_util.tree_map(lambda o, v: jnp.where(keep, o, v), st, new)
        e = _kkt_error(qp, new, scales, bounds)
        new = new.replace(done=keep | (e < tol))
        # float32 can lose accuracy once mu is tiny: remember the best iterate, not the last
        better = e < best_err
        best = jax.tree_util.tree_map(lambda b, v: jnp.where(better, v, b), best, new)
        return (new, best, jnp.where(better, e, best_err)), None

    x0 = jnp.clip(
        jnp.zeros((n,), dtype), jnp.where(has_lb, lb, -jnp.inf), jnp.where(has_ub, ub, jnp.inf)
    )
    x0 = jnp.where(has_lb & has_ub, 0.5 * (lb + ub), x0)
    s0 = jnp.maximum(qp.h - qp.G @ x0, 1.0)
    sl0 = jnp.where(fl > 0, jnp.maximum(x0 - lb, 1.0), 1.0)
    su0 = jnp.where(fu > 0, jnp.maximum(ub - x0, 1.0), 1.0)
    st = _State(
        x=x0,
        y=jnp.zeros((me,), dtype),
        z=jnp.ones((mi,), dtype),
        s=s0,
        zl=1.0 + jnp.maximum(qp.c, 0.0) * fl,
        sl=sl0,
        zu=1.0 + jnp.maximum(-qp.c, 0.0) * fu,
        su=su0,
        done=jnp.zeros((), bool),
    )
    (_, st, e), _ = jax.lax.scan(
        body, (st, st, _kkt_error(qp, st, scales, bounds)), None, length=iters
    )
    obj = 0.5 * st.x @ _qmul(qp.Q, st.x) + qp.c @ st.x
    return QPSolution(
        x=st.x,
        y=st.y,
        z=st.z,
        z_lb=st.zl * fl,
        z_ub=st.zu * fu,
        objective=obj,
        converged=_converged(e, dtype, tol),
        residual=e,
        slack=st.s,
    )
