"""DC optimal power flow and security-constrained economic dispatch on a PTDF network model.

Both build one QP through ``jaxlem.grid.qp`` and are always feasible: load shedding (at ``voll``)
and curtailment of surplus injection (at ``spill_cost``) are slack variables, reported. LMPs are
the sensitivities of the optimal cost to the load at each bus, from the duals:
``LMP_n = lambda + sum_l PTDF[l, n] mu_l`` (with the sign convention of flows from ``from`` to
``to``), in $/MWh. Variables are scaled to per unit on ``base_mva`` and the objective to order one.

``solve_dcopf`` dispatches generators with polynomial costs; ``solve_sced`` dispatches offer blocks
(price, MW) above a committed minimum output, with optional price-responsive demand blocks.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
from flax import struct

from jaxlem.checks import is_concrete
from jaxlem.grid.network import Network
from jaxlem.grid.qp import QP, solve_qp

DEFAULT_VOLL = 10_000.0  # $/MWh
# ``DispatchSolution.status`` codes
DISPATCH_STATUS = (
    "optimal",  # 0: KKT residual within tolerance
    "not converged: KKT residual above tolerance after the iteration limit",  # 1
    "non-finite input: NaN/inf entries of the load or offers were replaced by 0",  # 2
)


@struct.dataclass
class DispatchSolution:
    p_gen: jax.Array  # [G] MW
    flow: jax.Array  # [L] MW, positive from ``from`` to ``to``
    lmp: jax.Array  # [B] $/MWh
    shed: jax.Array  # [B] MW of load shed
    curtail: jax.Array  # [B] MW of surplus injection curtailed
    objective: jax.Array  # $/h (generation cost + slack penalties - demand value)
    converged: jax.Array
    residual: jax.Array
    status: jax.Array  # int code, an index into ``DISPATCH_STATUS`` (0 optimal)
    block_mw: jax.Array | None = None  # SCED: [G, K] dispatched MW per offer block
    demand_mw: jax.Array | None = None  # SCED: [D] served price-responsive demand

    def message(self) -> str | list:
        """Why the solve ended, in words (outside jit; a nested list for batched solutions)."""
        names = np.asarray(DISPATCH_STATUS, dtype=object)[np.asarray(self.status)]
        return names.tolist() if isinstance(names, np.ndarray) else str(names)


def _status(converged: jax.Array, bad: jax.Array) -> jax.Array:
    return jnp.where(bad, 2, jnp.where(converged, 0, 1)).astype(jnp.int32)


def _check_inputs(**named: object) -> None:
    """Outside jit: reject NaN/inf inputs and negative VOLL or line limits by name (under
    tracing the solvers zero non-finite inputs and report ``converged=False`` instead)."""
    for name, x in named.items():
        if x is None:
            continue
        if not is_concrete(x):
            continue
        v = np.asarray(x)
        if name in ("voll", "spill_cost", "line_limit_mw"):
            if np.any(np.isnan(v)) or np.any(v < 0):
                raise ValueError(f"{name}: got {v}; allowed range [0, inf]")
        elif not np.all(np.isfinite(v)):
            raise ValueError(f"{name}: got non-finite values {v}; allowed: finite numbers")


def _finite(x: jax.Array) -> tuple[jax.Array, jax.Array]:
    """(x with non-finite entries set to 0, whether any entry was non-finite)."""
    ok = jnp.isfinite(x)
    return jnp.where(ok, x, 0.0), ~jnp.all(ok)


MIN_SHED_BOUND_PU = 1e-5  # 1 kW at a 100 MVA base


def _dispatch(
    net: Network,
    fixed_inj_mw,  # [B] fixed injection (generation commitments minus load)
    fixed_load_mw,  # [B] load that may be shed (>= 0)
    var_bus,  # [V] int bus of each variable
    var_sign,  # [V] +1 injection, -1 withdrawal
    var_c1,  # [V] $/MWh
    var_c2,  # [V] $/MW^2 h
    var_lo,  # [V] MW
    var_hi,  # [V] MW
    line_limit_mw,
    voll,
    spill_cost,
    iters,
    regularization,
    tol=None,
    backend="ipm",
):
    """Build and solve the dispatch QP; returns (QP solution, dispatch, shed, spill, flow, LMP)."""
    dtype = net.ptdf.dtype
    base = net.base_mva
    nb, nl = net.num_buses, net.num_branches
    nv = var_bus.shape[0]
    lim = net.branch_limit_mw if line_limit_mw is None else jnp.asarray(line_limit_mw, dtype)
    # constraint rows only for the monitored branches (all of them when limits are given here)
    rows = (
        np.asarray(net.monitored, np.int32)
        if line_limit_mw is None and net.monitored is not None
        else np.arange(nl)
    )
    lim = lim[rows]
    limited = jnp.isfinite(lim)
    cs = jnp.maximum(jnp.max(jnp.abs(var_c1)), 1.0) * base  # $/h per unit of scaled objective

    # x = [v (V), shed (B), spill (B)], all in pu
    m_v = jnp.zeros((nb, nv), dtype).at[var_bus, jnp.arange(nv)].set(var_sign.astype(dtype))
    inj_map = jnp.concatenate([m_v, jnp.eye(nb, dtype=dtype), -jnp.eye(nb, dtype=dtype)], axis=1)
    slack_cost = jnp.concatenate([jnp.full((nb,), voll, dtype), jnp.full((nb,), spill_cost, dtype)])
    c = jnp.concatenate([var_c1, slack_cost]) * base / cs
    q_diag = jnp.concatenate([2.0 * var_c2 * base**2, jnp.zeros((2 * nb,), dtype)]) / cs
    q_diag = q_diag + regularization
    fixed = fixed_inj_mw / base
    a_eq = jnp.ones((1, nb), dtype) @ inj_map
    b_eq = -jnp.sum(fixed)[None]
    ptdf_rows = net.ptdf[rows]
    flow_map = ptdf_rows @ inj_map  # [rows, n] flow per unit of each variable
    flow0 = ptdf_rows @ fixed
    lim_pu = jnp.where(limited, lim / base, 1.0)
    g_line = jnp.where(limited[:, None], flow_map, 0.0)
    h_up = jnp.where(limited, lim_pu - flow0, 1.0)
    h_dn = jnp.where(limited, lim_pu + flow0, 1.0)
    qp = QP(
        Q=q_diag,
        c=c,
        A=a_eq,
        b=b_eq,
        G=jnp.concatenate([g_line, -g_line]),
        h=jnp.concatenate([h_up, h_dn]),
        lb=jnp.concatenate([var_lo / base, jnp.zeros((2 * nb,), dtype)]),
        ub=jnp.concatenate(
            [
                var_hi / base,
                jnp.where(fixed_load_mw > 0, fixed_load_mw, 0.0) / base,
                jnp.full((nb,), jnp.inf, dtype),
            ]
        ),
    )
    sol = solve_qp(qp, backend=backend, iters=iters, tol=tol)
    x = sol.x
    inj_pu = inj_map @ x + fixed
    flow = net.ptdf @ inj_pu * base
    nr = rows.shape[0]
    z_up, z_dn = sol.z[:nr], sol.z[nr:]
    mu = jnp.where(limited, z_up - z_dn, 0.0)
    # d(objective)/d(load_n): load enters b_eq, h_up, h_dn and the shed upper bound. A bus
    # whose load is below the solver's resolution has a shed variable pinned between two
    # bounds 0 and ~0, whose duals are not unique (they moved LMPs by hundreds of $/MWh):
    # below MIN_SHED_BOUND_PU its LMP is the network's price.
    shed_bound = jnp.where(fixed_load_mw / base > MIN_SHED_BOUND_PU, sol.z_ub[nv : nv + nb], 0.0)
    lmp = (-sol.y[0] - ptdf_rows.T @ mu - shed_bound) * cs / base
    return sol, x[:nv] * base, x[nv : nv + nb] * base, x[nv + nb :] * base, flow, lmp


def solve_dcopf(
    network: Network,
    load_mw: jax.Array | None = None,
    *,
    line_limit_mw: jax.Array | None = None,
    voll: float | jax.Array = DEFAULT_VOLL,
    spill_cost: float | jax.Array = DEFAULT_VOLL,
    iters: int | None = None,
    tol: float | None = None,
    regularization: float = 0.0,
    backend: str = "ipm",
) -> DispatchSolution:
    """Least-cost dispatch of the network's generators (cost c2 P^2 + c1 P + c0) for ``load_mw``
    [B] (default: the network's loads) under the branch limits (or ``line_limit_mw`` [L]).
    ``backend``, ``iters`` (None: the backend's default) and ``tol`` go to ``grid.solve_qp``."""
    net = network
    _check_inputs(load_mw=load_mw, line_limit_mw=line_limit_mw, voll=voll, spill_cost=spill_cost)
    load = net.bus_load_mw if load_mw is None else jnp.asarray(load_mw, net.ptdf.dtype)
    load, bad = _finite(load)
    sol, p, shed, spill, flow, lmp = _dispatch(
        net,
        -load,
        load,
        net.gen_bus,
        jnp.ones_like(net.gen_c1),
        net.gen_c1,
        net.gen_c2,
        net.gen_pmin_mw,
        net.gen_pmax_mw,
        line_limit_mw,
        voll,
        spill_cost,
        iters,
        regularization,
        tol,
        backend,
    )
    objective = (
        jnp.sum(net.gen_c2 * p**2 + net.gen_c1 * p + net.gen_c0)
        + voll * jnp.sum(shed)
        + spill_cost * jnp.sum(spill)
    )
    return DispatchSolution(
        p_gen=p,
        flow=flow,
        lmp=lmp,
        shed=shed,
        curtail=spill,
        objective=objective,
        converged=sol.converged & ~bad,
        residual=sol.residual,
        status=_status(sol.converged, bad),
    )


def solve_sced(
    network: Network,
    load_mw: jax.Array,
    offer_price: jax.Array,
    offer_mw: jax.Array,
    *,
    pmin_mw: jax.Array | None = None,
    demand_bus: jax.Array | None = None,
    demand_price: jax.Array | None = None,
    demand_mw: jax.Array | None = None,
    line_limit_mw: jax.Array | None = None,
    voll: float | jax.Array = DEFAULT_VOLL,
    spill_cost: float | jax.Array = DEFAULT_VOLL,
    iters: int | None = None,
    tol: float | None = None,
    regularization: float = 0.0,
    backend: str = "ipm",
) -> DispatchSolution:
    """Network-constrained economic dispatch of piecewise offers.

    Unit g produces ``pmin_mw[g] + sum_k block_k`` with ``0 <= block_k <= offer_mw[g, k]`` offered
    at ``offer_price[g, k]`` $/MWh. ``load_mw`` [B] is inelastic (sheddable at ``voll``);
    optional price-responsive demand blocks (``demand_bus`` [D], ``demand_price`` [D] $/MWh,
    ``demand_mw`` [D]) are served when the price is at or below their value. The objective is
    offer cost minus served demand value (+ slack penalties); LMPs are d(objective)/d(load).
    ``backend``, ``iters`` (None: the backend's default) and ``tol`` go to ``grid.solve_qp``.
    """
    net = network
    dtype = net.ptdf.dtype
    ng, nk = offer_price.shape
    _check_inputs(
        load_mw=load_mw,
        offer_price=offer_price,
        offer_mw=offer_mw,
        line_limit_mw=line_limit_mw,
        voll=voll,
        spill_cost=spill_cost,
    )
    load, bad_load = _finite(jnp.asarray(load_mw, dtype))
    offer_price, bad_price = _finite(jnp.asarray(offer_price, dtype))
    offer_mw, bad_mw = _finite(jnp.asarray(offer_mw, dtype))
    bad = bad_load | bad_price | bad_mw
    pmin = jnp.zeros((ng,), dtype) if pmin_mw is None else jnp.asarray(pmin_mw, dtype)
    fixed = net.gen_incidence @ pmin - load
    bus = jnp.repeat(net.gen_bus, nk)
    sign = jnp.ones((ng * nk,), dtype)
    c1 = offer_price.reshape(-1).astype(dtype)
    hi = jnp.maximum(offer_mw.reshape(-1).astype(dtype), 0.0)
    nd = 0
    if demand_bus is not None:
        nd = demand_bus.shape[0]
        bus = jnp.concatenate([bus, demand_bus.astype(jnp.int32)])
        sign = jnp.concatenate([sign, -jnp.ones((nd,), dtype)])
        c1 = jnp.concatenate([c1, -jnp.asarray(demand_price, dtype)])
        hi = jnp.concatenate([hi, jnp.maximum(jnp.asarray(demand_mw, dtype), 0.0)])
    lo = jnp.zeros_like(hi)
    sol, v, shed, spill, flow, lmp = _dispatch(
        net,
        fixed,
        load,
        bus,
        sign,
        c1,
        jnp.zeros_like(c1),
        lo,
        hi,
        line_limit_mw,
        voll,
        spill_cost,
        iters,
        regularization,
        tol,
        backend,
    )
    blocks = v[: ng * nk].reshape(ng, nk)
    served = v[ng * nk :]
    objective = jnp.sum(c1 * v) + voll * jnp.sum(shed) + spill_cost * jnp.sum(spill)
    return DispatchSolution(
        p_gen=pmin + jnp.sum(blocks, axis=1),
        flow=flow,
        lmp=lmp,
        shed=shed,
        curtail=spill,
        objective=objective,
        converged=sol.converged & ~bad,
        residual=sol.residual,
        status=_status(sol.converged, bad),
        block_mw=blocks,
        demand_mw=served if nd else None,
    )
