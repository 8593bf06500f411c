"""An independent DC-OPF / SCED reference: a B-theta nodal-balance LP solved by SciPy HiGHS.

What the tests and ``experiments/bench_opf.py`` check the interior-point solver against (SciPy
is optional: ``pip install scipy``). It shares no code with jaxlem's PTDF formulation: flows are
(theta_from - theta_to) / x, every bus has its own balance row, and the LMP is the HiGHS marginal
of that row (d cost / d load_n).
"""

from __future__ import annotations

import numpy as np


def dcopf_highs(net, load_mw, *, line_limit_mw=None, voll=1e4, spill_cost=1e4, offers=None):
    """Linear costs only. ``offers``: optional (price [G, K], mw [G, K], pmin [G]) for SCED.

    Returns dict(p_gen, flow, lmp, shed, curtail, objective)."""
    from scipy.optimize import linprog  # optional dependency

    base = float(net.base_mva)
    nb = int(net.num_buses)
    frm, to = np.asarray(net.branch_from), np.asarray(net.branch_to)
    x = np.asarray(net.branch_x, np.float64)
    nl = len(x)
    lim = np.asarray(net.branch_limit_mw if line_limit_mw is None else line_limit_mw, np.float64)
    gbus = np.asarray(net.gen_bus)
    load = np.asarray(load_mw, np.float64)
    if offers is None:
        cost = np.asarray(net.gen_c1, np.float64)
        lo, hi = np.asarray(net.gen_pmin_mw, np.float64), np.asarray(net.gen_pmax_mw, np.float64)
        vbus, fixed_gen = gbus, np.zeros(nb)
    else:
        price, mw, pmin = (np.asarray(a, np.float64) for a in offers)
        ng, nk = price.shape
        cost, lo, hi = price.reshape(-1), np.zeros(ng * nk), np.maximum(mw.reshape(-1), 0)
        vbus = np.repeat(gbus, nk)
        fixed_gen = np.zeros(nb)
        np.add.at(fixed_gen, gbus, pmin)
    nv = len(cost)
    # variables: v (nv), shed (nb), spill (nb), theta (nb)
    n = nv + 3 * nb
    c = np.concatenate([cost, np.full(nb, voll), np.full(nb, spill_cost), np.zeros(nb)])
    a_eq = np.zeros((nb + 1, n))
    a_eq[vbus, np.arange(nv)] = 1.0
    a_eq[np.arange(nb), nv + np.arange(nb)] = 1.0
    a_eq[np.arange(nb), nv + nb + np.arange(nb)] = -1.0
    for l_ in range(nl):  # minus flows out of the bus
        f, t, w = frm[l_], to[l_], base / x[l_]
        a_eq[f, nv + 2 * nb + f] -= w
        a_eq[f, nv + 2 * nb + t] += w
        a_eq[t, nv + 2 * nb + t] -= w
        a_eq[t, nv + 2 * nb + f] += w
    ref = int(net.ref_bus)
    a_eq[nb, nv + 2 * nb + ref] = 1.0
    b_eq = np.concatenate([load - fixed_gen, [0.0]])
    rows, b_ub = [], []
    for l_ in np.flatnonzero(np.isfinite(lim)):
        r = np.zeros(n)
        r[nv + 2 * nb + frm[l_]] = base / x[l_]
        r[nv + 2 * nb + to[l_]] = -base / x[l_]
        rows += [r, -r]
        b_ub += [lim[l_], lim[l_]]
    bounds = (
        [(lo[i], hi[i]) for i in range(nv)]
        + [(0, max(v, 0)) for v in load]
        + [(0, None)] * nb
        + [(None, None)] * nb
    )
    res = linprog(
        c,
        A_ub=np.array(rows) if rows else None,
        b_ub=np.array(b_ub) if rows else None,
        A_eq=a_eq,
        b_eq=b_eq,
        bounds=bounds,
        method="highs",
    )
    assert res.status == 0, res.message
    v = res.x[:nv]
    theta = res.x[nv + 2 * nb :]
    flow = (theta[frm] - theta[to]) / x * base
    p = v if offers is None else np.asarray(offers[2]) + v.reshape(len(gbus), -1).sum(1)
    return dict(
        p_gen=p,
        flow=flow,
        lmp=np.asarray(res.eqlin.marginals[:nb]),
        shed=res.x[nv : nv + nb],
        curtail=res.x[nv + nb : nv + 2 * nb],
        objective=res.fun,
        block_mw=None if offers is None else v.reshape(len(gbus), -1),
    )
