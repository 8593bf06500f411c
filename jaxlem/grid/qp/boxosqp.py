"""The ``"boxosqp"`` backend of ``grid.solve_qp``: OSQP's ADMM through ``jaxopt.BoxOSQP``.

jaxopt (unmaintained; tested with 0.8.5) provides the ADMM iteration and its LU-based
linear solves; around it, as in OSQP: Ruiz equilibration, a step-size rule applied only on large
changes, and solution polishing. Added for the dispatch QPs: the cost range of the columns is
capped, so that penalty variables (10^4 $/MWh) do not stall the cheap ones. The stopping test
and the reported ``residual`` are the ipm's relative KKT error, so ``converged`` means the same
for both backends. Everything is jittable and vmappable; gradients come from
``grid.qp.solve``'s backend-independent implicit differentiation. jaxopt is imported only when
this backend runs.
"""

from __future__ import annotations

import warnings

import jax
import jax.numpy as jnp

from jaxlem.grid.qp.kkt import QP, QPSolution, State, converged, finite_bounds, kkt_error, objective

# jaxopt.BoxOSQP settings (its own step-size rule is switched off: see _adapt_rho)
_OSQP = dict(eq_qp_solve="lu", rho_start=1.0, sigma=1e-6, momentum=1.6)
_CHECK_EVERY = 50  # ADMM iterations between step-size updates, polishing and the stopping test
_RHO_TOLERANCE = 5.0  # OSQP's adaptive_rho_tolerance
_POLISH_DELTA, _POLISH_REFINE = 1e-6, 3  # OSQP's polishing regularisation and refinement steps


def _limit_scaling(v: jax.Array) -> jax.Array:
    """OSQP's guard on equilibration norms: tiny -> 1, huge -> 1e4."""
    return jnp.where(v < 1e-4, 1.0, jnp.minimum(v, 1e4))


def _ruiz(q_mat: jax.Array, cmat: jax.Array, iters: int = 10):
    """Modified Ruiz equilibration of the KKT matrix [[Q, C'], [C, 0]] (as OSQP): column
    scaling d [n] and row scaling e [m], so that D Q D and E C D have unit inf-norms."""

    def body(_, carry):
        d, e, q, cm = carry
        col = jnp.maximum(jnp.max(jnp.abs(q), axis=0), jnp.max(jnp.abs(cm), axis=0))
        dt = 1.0 / jnp.sqrt(_limit_scaling(col))
        et = 1.0 / jnp.sqrt(_limit_scaling(jnp.max(jnp.abs(cm), axis=1)))
        return d * dt, e * et, dt[:, None] * q * dt[None, :], et[:, None] * cm * dt[None, :]

    ones_n = jnp.ones((cmat.shape[1],), cmat.dtype)
    ones_m = jnp.ones((cmat.shape[0],), cmat.dtype)
    d, e, _, _ = jax.lax.fori_loop(0, iters, body, (ones_n, ones_m, q_mat, cmat))
    return d, e


def _cost_range(c: jax.Array) -> jax.Array:
    """Column factors f in (0, 1] that cap each |c_j| at the geometric mean of the nonzero |c|.
    Penalty variables (load shedding at 1e4 $/MWh next to offers of 10-40 $/MWh) otherwise
    dominate the step-size rule and ADMM crawls along the cheap variables' flat directions."""
    a = jnp.abs(c)
    nz = a > 0
    log_mean = jnp.sum(jnp.where(nz, jnp.log(jnp.where(nz, a, 1.0)), 0.0)) / jnp.maximum(
        jnp.sum(nz), 1
    )
    return jnp.clip(jnp.exp(log_mean) / jnp.where(nz, a, 1.0), 1e-4, 1.0)


def _box_problem(qp: QP):
    """BoxOSQP's form ``l <= C x <= u`` with ``C = [A; G; I]``, scaled: returns (Q_s, c_s, C_s,
    l_s, u_s) and (d, e, k) with x = d x_s, rows of C times e, objective times k (so that the
    duals are y = e y_s / k)."""
    dtype = qp.c.dtype
    n, mi = qp.c.shape[0], qp.h.shape[0]
    q_mat = jnp.diag(qp.Q) if qp.Q.ndim == 1 else qp.Q
    cmat = jnp.concatenate([qp.A, qp.G, jnp.eye(n, dtype=dtype)])
    lo = jnp.concatenate([qp.b, jnp.full((mi,), -jnp.inf, dtype), qp.lb])
    hi = jnp.concatenate([qp.b, qp.h, qp.ub])
    d, e = _ruiz(q_mat, cmat)
    f = _cost_range(d * qp.c)
    d = d * f
    e = e.at[-n:].divide(f)  # the bound rows keep their scale
    q_s = d[:, None] * q_mat * d[None, :]
    k = 1.0 / _limit_scaling(  # OSQP's cost scaling
        jnp.maximum(jnp.mean(jnp.max(jnp.abs(q_s), axis=0)), jnp.max(jnp.abs(d * qp.c)))
    )
    cm_s = e[:, None] * cmat * d[None, :]
    return k * q_s, k * d * qp.c, cm_s, e * lo, e * hi, d, e, k


def _polish(q, c, cmat, lo, hi, z, y):
    """OSQP's solution polishing: guess the active rows from the ADMM iterate (z, y) and solve
    the equality-constrained QP on them, [[Q, C_a'], [C_a, 0]] [x; y_a] = [-c; bound_a], by a
    (+delta, -delta)-regularised LU with iterative refinement on the exact system. Inactive
    rows get y = 0 (fixed shapes: one (n + m) system whatever the active set)."""
    n, dtype = c.shape[0], c.dtype
    at_lo = z - lo < -y
    at_hi = hi - z < y
    act = (at_lo | at_hi).astype(dtype)
    target = jnp.where(at_lo, lo, jnp.where(at_hi, hi, 0.0))
    target = jnp.where(jnp.isfinite(target), target, 0.0) * act
    k_exact = jnp.block([[q, cmat.T * act[None, :]], [act[:, None] * cmat, jnp.diag(1.0 - act)]])
    reg = jnp.concatenate([jnp.full((n,), _POLISH_DELTA, dtype), -_POLISH_DELTA * act])
    lu = jax.scipy.linalg.lu_factor(k_exact + jnp.diag(reg))
    rhs = jnp.concatenate([-c, target])
    sol = jax.scipy.linalg.lu_solve(lu, rhs)
    for _ in range(_POLISH_REFINE):
        sol = sol + jax.scipy.linalg.lu_solve(lu, rhs - k_exact @ sol)
    return sol[:n], sol[n:] * act


def _adapt_rho(solver, state, params, q, c, cmat):
    """OSQP's step-size rule, rho *= sqrt((|r_p| / |Cx|) / (|r_d| / max(|Qx|, |C'y|, |c|))),
    applied only when it changes rho by more than ``_RHO_TOLERANCE`` times, as OSQP does
    (BoxOSQP applies it unconditionally every few updates: the dispatch QPs then oscillate)."""
    x, y = params.primal[0], params.dual_eq
    tiny = jnp.finfo(c.dtype).tiny
    r_p = jnp.max(jnp.abs(state.primal_residuals)) / jnp.maximum(jnp.max(jnp.abs(cmat @ x)), tiny)
    scale_d = jnp.maximum(
        jnp.maximum(jnp.max(jnp.abs(q @ x)), jnp.max(jnp.abs(cmat.T @ y))), jnp.max(jnp.abs(c))
    )
    r_d = jnp.max(jnp.abs(state.dual_residuals)) / jnp.maximum(scale_d, tiny)
    rho = state.rho_bar
    new = rho * jnp.sqrt(r_p / (r_d + jnp.finfo(c.dtype).eps))
    new = jnp.clip(new, solver.rho_min, solver.rho_max)
    new = jnp.where((new > _RHO_TOLERANCE * rho) | (new < rho / _RHO_TOLERANCE), new, rho)
    # refactorise the ADMM linear system for the new rho (jaxopt internals; jaxopt is frozen)
    solver_state = solver._eq_qp_solve_impl.update_stepsize(state.solver_state, new)
    return state._replace(rho_bar=new, solver_state=solver_state)


def _box_candidate(qp: QP, x, y_all, bounds):
    """Our (state, KKT error) from a primal x, projected on the bounds (ADMM only reaches them
    in the limit), and BoxOSQP-style duals y on the rows [A; G; I]."""
    me, mi = qp.b.shape[0], qp.h.shape[0]
    lb, ub, fl, fu = bounds
    x = jnp.clip(x, qp.lb, qp.ub)
    y_b = y_all[me + mi :]
    st = State(
        x=x,
        y=y_all[:me],
        z=jnp.maximum(y_all[me : me + mi], 0.0),
        s=jnp.maximum(qp.h - qp.G @ x, 0.0),
        zl=jnp.maximum(-y_b, 0.0) * fl,
        sl=jnp.maximum(x - lb, 0.0) * fl,
        zu=jnp.maximum(y_b, 0.0) * fu,
        su=jnp.maximum(ub - x, 0.0) * fu,
        done=jnp.ones((), bool),
    )
    return st, kkt_error(qp, st, bounds=bounds)


def _pick(better, a, b):
    return jax.tree_util.tree_map(lambda u, v: jnp.where(better, u, v), a, b)


def solve_boxosqp(qp: QP, maxiter: int, tol: float | None) -> QPSolution:
    """ADMM with jaxopt.BoxOSQP's iteration on ``l <= C x <= u``, ``C = [A; G; I]``, after
    OSQP-style scaling. Every ``_CHECK_EVERY`` iterations: OSQP's step-size update, polishing,
    and the stopping test on our relative KKT error (the one the ipm reports) of the best of
    the ADMM iterate and its polished version; at most ``maxiter`` iterations (rounded up to
    the check period). BoxOSQP's Lagrangian ``y'(Cx - z) + mu'(z - u) + phi'(l - z)`` with
    ``y = mu - phi`` gives our duals: y on the A rows, z = y+ on the G rows, z_ub = y+ and
    z_lb = y- on the bound rows."""
    with warnings.catch_warnings():  # jaxopt warns that it is unmaintained; it stays in here
        warnings.simplefilter("ignore", DeprecationWarning)
        try:
            from jaxopt import BoxOSQP
        except ImportError as err:  # pragma: no cover - optional
            raise ImportError("backend 'boxosqp' needs jaxopt: pip install jaxopt") from err

    dtype = qp.c.dtype
    if tol is None:  # as the ipm: below this the LMPs are right to ~1e-5 $/MWh on case5
        tol = 1e-6 if jnp.finfo(dtype).eps > 1e-10 else 1e-8
    bounds = finite_bounds(qp)
    q_s, c_s, cm_s, lo_s, hi_s, d, e, k = _box_problem(qp)
    args = ((q_s, c_s), cm_s, (lo_s, hi_s))
    # we stop it and adapt its step size: its own rule and stopping test never fire, as its
    # iteration count restarts at 1 in every chunk (unbatched, so under vmap its conds stay
    # conds instead of computing both branches at every iteration)
    never = 2**30
    solver = BoxOSQP(
        **_OSQP,
        tol=0.0,
        stepsize_updates_frequency=never,
        termination_check_frequency=never,
        implicit_diff=False,
        jit=True,
    )
    every = max(1, min(_CHECK_EVERY, maxiter))

    def candidate(params):
        st, err = _box_candidate(qp, d * params.primal[0], e * params.dual_eq / k, bounds)
        xp, yp = _polish(q_s, c_s, cm_s, lo_s, hi_s, params.primal[1], params.dual_eq)
        st_p, err_p = _box_candidate(qp, d * xp, e * yp / k, bounds)
        return _pick(err_p < err, st_p, st), jnp.minimum(err, err_p)

    def step(_, ps):
        out = solver.update(*ps, *args)
        return out.params, out.state

    def body(carry):
        it, params, state, best, best_err = carry
        state = state._replace(iter_num=jnp.ones((), jnp.int32))
        params, state = jax.lax.fori_loop(0, every, step, (params, state))
        st, err = candidate(params)
        # one LU factorisation at a time: under vmap, the polishing and step-size ones run
        # concurrently and have deadlocked XLA:CPU's thread pool (jax 0.10, 2 cores)
        state, st, err = jax.lax.optimization_barrier((state, st, err))
        state = _adapt_rho(solver, state, params, q_s, c_s, cm_s)
        return (
            it + every,
            params,
            state,
            _pick(err < best_err, st, best),
            jnp.minimum(err, best_err),
        )

    def cond(carry):
        it, *_, best_err = carry
        return (it < maxiter) & (best_err >= tol)

    # start at the projection of 0 on the bounds, duals 0
    x0 = jnp.clip(jnp.zeros_like(qp.c), qp.lb, qp.ub) / d
    params = solver.init_params(x0, *args)
    st, err = _box_candidate(qp, d * params.primal[0], e * params.dual_eq / k, bounds)
    state = solver.init_state(params, *args)._replace(iter_num=jnp.ones((), jnp.int32))
    carry = (jnp.zeros((), jnp.int32), params, state, st, err)
    *_, st, err = jax.lax.while_loop(cond, body, carry)
    return QPSolution(
        x=st.x,
        y=st.y,
        z=st.z,
        z_lb=st.zl,
        z_ub=st.zu,
        objective=objective(qp, st.x),
        converged=converged(err, dtype, tol),
        residual=err,
        slack=st.s,
    )
