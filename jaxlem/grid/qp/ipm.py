"""The ``"ipm"`` backend of ``grid.solve_qp``: our own primal-dual interior point method.

Mehrotra predictor-corrector with a fixed iteration budget: jittable, vmappable over a batch of
QPs, float32 or float64. Iterations freeze once the relative residuals and gap are below ``tol``,
so extra iterations are harmless, and the best iterate seen is returned (float32 can degrade once
the barrier is tiny). Bound constraints are handled as diagonals (no dense rows). With a diagonal
``Q`` (given as a vector [n], as the dispatch problems do) one iteration factorises only the
(m_eq + m_ineq) normal equations ``C D^-1 C' + E`` (C = [A; G], D and E diagonal) by Cholesky, so
the cost grows with the number of coupling rows, not with the number of variables; a dense ``Q``
[n, n] uses one dense (n + m_eq) LU factorisation per iteration.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from jaxlem.grid.qp.kkt import (
    QP,
    QPSolution,
    State,
    converged,
    finite_bounds,
    kkt_error,
    kkt_scales,
    objective,
    residuals,
)


def _max_step(v, dv):
    """Largest alpha in (0, 1] with v + alpha dv >= 0 (elementwise, v > 0)."""
    ratio = jnp.where(dv < 0, -v / jnp.where(dv < 0, dv, -1.0), jnp.inf)
    return jnp.minimum(1.0, jnp.min(ratio, initial=jnp.inf))


UNROLL_MAX = 10  # factor matrices up to this size with unrolled elementwise ops


def chol_inverse(m: jax.Array) -> jax.Array:
    """``L^-1`` for the Cholesky factor ``L`` of the SPD matrix ``m``: ``m^-1 = L^-T L^-1``.

    Up to ``UNROLL_MAX`` rows the factor and its inverse are written out entry by entry: under
    ``vmap`` each entry is one vector op over the batch, where XLA:CPU's LAPACK calls loop over
    the batch one small matrix at a time (5x5: several times faster at a batch of 2048).
    """
    k = m.shape[-1]
    if k > UNROLL_MAX or m.ndim != 2:
        chol = jnp.linalg.cholesky(m)
        eye = jnp.eye(k, dtype=m.dtype)
        return jax.scipy.linalg.solve_triangular(chol, eye, lower=True)
    low: list[list[jax.Array]] = [[] for _ in range(k)]  # low[i][j], j <= i
    for j in range(k):
        diag = m[j, j] - sum((low[j][q] * low[j][q] for q in range(j)), jnp.zeros((), m.dtype))
        d = jnp.sqrt(diag)
        low[j].append(d)
        for i in range(j + 1, k):
            off = m[i, j] - sum((low[i][q] * low[j][q] for q in range(j)), jnp.zeros((), m.dtype))
            low[i].append(off / d)
    inv: list[list[jax.Array]] = [[] for _ in range(k)]  # inv[i][j], j <= i
    for i in range(k):
        inv_d = 1.0 / low[i][i]
        row = [-inv_d * sum(low[i][q] * inv[q][j] for q in range(j, i)) for j in range(i)]
        inv[i] = [*row, inv_d]
    zero = jnp.zeros((), m.dtype)
    return jnp.stack([jnp.stack(inv[i] + [zero] * (k - 1 - i)) for i in range(k)])


def solve_ipm(
    qp: QP, iters: int, tol: float | None, reg: float | None, refine: int = 2
) -> QPSolution:
    """Primal-dual interior point (Mehrotra predictor-corrector), ``iters`` iterations (static);
    ``tol``: relative KKT error to stop at (None: 1e-6 in float32, 1e-8 in float64); ``reg``: the
    primal-dual regularisation (None: eps^0.75); ``refine``: iterative refinement steps of the
    normal equations (diagonal ``Q``)."""
    dtype = qp.c.dtype
    eps = jnp.finfo(dtype).eps
    if tol is None:  # float32 reaches ~1e-6 relative (0.03 MW, 0.003 $/MWh on case5)
        tol = 1e-6 if eps > 1e-10 else 1e-8
    reg = float(eps**0.75) if reg is None else reg
    n, me, mi = qp.c.shape[0], qp.b.shape[0], qp.h.shape[0]
    has_lb, has_ub = jnp.isfinite(qp.lb), jnp.isfinite(qp.ub)
    bounds = finite_bounds(qp)
    lb, ub, fl, fu = bounds
    m_tot = jnp.maximum(mi + jnp.sum(fl) + jnp.sum(fu), 1.0)
    scales = kkt_scales(qp)
    eye_e = jnp.eye(me, dtype=dtype)
    diag_q = qp.Q.ndim == 1
    coupling = jnp.concatenate([qp.A, qp.G])  # [me + mi, n]

    def newton(st, factor, rhs_c):
        """Solve the KKT system for complementarity targets ``rhs_c = (rc, rcl, rcu)``."""
        rd, re, ri, rl, ru, _ = residuals(qp, st, bounds)
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
            factor = (d_inv, chol_inverse(normal) if me + mi else None)
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
        new = State(
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
        e = kkt_error(qp, new, scales, bounds)
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
    st = State(
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
        body, (st, st, kkt_error(qp, st, scales, bounds)), None, length=iters
    )
    obj = objective(qp, st.x)
    return QPSolution(
        x=st.x,
        y=st.y,
        z=st.z,
        z_lb=st.zl * fl,
        z_ub=st.zu * fu,
        objective=obj,
        converged=converged(e, dtype, tol),
        residual=e,
        slack=st.s,
    )
