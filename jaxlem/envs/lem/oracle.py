"""The perfect-foresight optimum of a lem-v0 episode: what a central planner who knows the whole
episode in advance could earn, an upper bound for any policy on the same episode.

The exogenous data of an episode (PV, demand and the DSO's prices, for a given key) do not depend
on the agents' actions, so :func:`exogenous` reads them from the episode that
``jaxlem.rollout.rollout(env, policy, key, params)`` plays. The planner schedules every battery and
dispatchable unit; inside the community energy is shared at no cost (P2P payments sum to zero),
the community's net position at each step is bought from the DSO at the utility price or sold at
the FiT, plus degradation and dispatch costs, minus the value of stored energy at the end.
Connection limits (``grid_mode="capacity"``) are constraints, with shedding at ``shed_penalty``
and free curtailment. Variables per agent and step: charge, discharge, stored energy,
dispatchable output; per step: import, export, shed, curtailment. It is a linear programme,
solved with the project's interior-point QP (``jaxlem.grid.qp``), so a scenario bank is one
``jit(vmap(...))`` call.

The planner ignores what only lowers what agents can earn (P2P fees and losses, feeder and P2P
transfer limits, per-site export limits, a dynamic tariff's surcharge, the rule that a battery
either charges or discharges in a step), so its value is an upper bound for the mean agent return
of every policy. ``individual=True`` solves each agent alone against the DSO (no sharing).
The gain share of a policy is ``(R - R_dso_only) / (R* - R_dso_only)`` per episode.
"""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp
from flax import struct

from jaxlem.envs.lem import policies
from jaxlem.envs.lem.types import LEMParams
from jaxlem.grid.qp import QP, solve_qp
from jaxlem.market.dso import KWH_PER_MWH
from jaxlem.rollout import rollout

MAX_AGENTS = 200  # the LP is dense: [T (N + 1), 4 T (N + 1)] per episode
_ITERS = 60


@struct.dataclass
class Optimum:
    """The optimum of one episode (kWh per step, currency)."""

    mean_agent_return: jax.Array  # the reward-scaled community profit / N
    community_profit: jax.Array  # currency over the episode
    community_cost: jax.Array  # money paid to the DSO (imports, penalties) minus export income
    self_sufficiency: jax.Array  # 1 - imports / demand
    charge_kwh: jax.Array  # [T, N]
    discharge_kwh: jax.Array  # [T, N]
    energy_kwh: jax.Array  # [T, N] stored energy after each step
    dispatch_kwh: jax.Array  # [T, N]
    import_kwh: jax.Array  # [T] (community) or [T, N] (individual)
    export_kwh: jax.Array
    shed_kwh: jax.Array
    curtail_kwh: jax.Array
    converged: jax.Array
    residual: jax.Array


def exogenous(env: Any, params: LEMParams, key: jax.Array) -> dict[str, jax.Array]:
    """PV and demand [T, N] (kWh), FiT and base utility price [T] (currency/MWh) of the episode
    that ``rollout(env, policy, key, params)`` plays, for any policy."""
    _, infos = rollout(env, policies.dso_only, key, params)
    return {
        "pv": infos["pv_kwh"],
        "demand": infos["demand_kwh"],
        "fit": infos["fit"],
        "utility": jnp.maximum(infos["utility_base"], infos["fit"]),
    }


def check_size(env: Any) -> None:
    """Refuse, in Python, episodes whose dense LP would be too large."""
    if env.num_agents > MAX_AGENTS:
        raise ValueError(
            f"num_agents: got {env.num_agents}; allowed for the perfect-foresight LP: at most "
            f"{MAX_AGENTS} (its dense constraint matrix grows as N^2 T^2)"
        )


def solve(
    env: Any,
    params: LEMParams,
    data: dict[str, jax.Array],
    individual: bool = False,
    iters: int = _ITERS,
) -> Optimum:
    """The optimum for the exogenous ``data`` of one episode (jittable, vmappable)."""
    check_size(env)
    t_len, n = data["pv"].shape
    m = n if individual else 1  # sites that settle with the DSO
    dt = env.dt_h
    f = data["pv"].dtype
    nt, mt = n * t_len, m * t_len
    # variable blocks: charge, discharge, energy, dispatch [T, N]; import, export, shed,
    # curtailment [T, M]
    off = dict(c=0, d=nt, e=2 * nt, g=3 * nt, i=4 * nt, x=4 * nt + mt, s=4 * nt + 2 * mt)
    off["k"] = 4 * nt + 3 * mt
    nv = 4 * nt + 4 * mt
    t_idx = jnp.repeat(jnp.arange(t_len), n)
    a_idx = jnp.tile(jnp.arange(n), t_len)
    site = a_idx if individual else jnp.zeros_like(a_idx)
    ti_m = jnp.repeat(jnp.arange(t_len), m)
    s_m = jnp.tile(jnp.arange(m), t_len)

    e_lo = params.soc_min * params.bat_kwh
    e_hi = params.soc_max * params.bat_kwh
    e0 = jnp.clip(params.soc_init * params.bat_kwh, e_lo, e_hi)
    keep = 1.0 - params.self_discharge
    has = params.bat_kwh > 0
    eta_c, eta_d = jnp.where(has, params.eta_c, 1.0), jnp.where(has, params.eta_d, 1.0)

    # balance rows [T * M]: sum over the site's agents of (d - c + g) - k + s - x + i = dem - pv
    bal = t_idx * m + site
    rows = [bal, bal, bal, ti_m * m + s_m, ti_m * m + s_m, ti_m * m + s_m, ti_m * m + s_m]
    cols = [
        off["c"] + t_idx * n + a_idx,
        off["d"] + t_idx * n + a_idx,
        off["g"] + t_idx * n + a_idx,
        off["i"] + ti_m * m + s_m,
        off["x"] + ti_m * m + s_m,
        off["s"] + ti_m * m + s_m,
        off["k"] + ti_m * m + s_m,
    ]
    ones_nt, ones_mt = jnp.ones(nt, f), jnp.ones(mt, f)
    vals = [-ones_nt, ones_nt, ones_nt, ones_mt, -ones_mt, ones_mt, -ones_mt]
    # energy rows [T * N]: e_t - keep (e_{t-1} + eta_c c - d / eta_d) = sd e_lo (+ keep e0 at t=0)
    en = mt + t_idx * n + a_idx
    k_a = keep[a_idx]
    rows += [en, en, en]
    cols += [
        off["e"] + t_idx * n + a_idx,
        off["c"] + t_idx * n + a_idx,
        off["d"] + t_idx * n + a_idx,
    ]
    vals += [ones_nt, -k_a * eta_c[a_idx], k_a / eta_d[a_idx]]
    later = t_idx > 0
    rows.append(jnp.where(later, en, 0))
    cols.append(off["e"] + jnp.maximum(t_idx - 1, 0) * n + a_idx)
    vals.append(jnp.where(later, -k_a, 0.0))
    a_mat = jnp.zeros((mt + nt, nv), f)
    a_mat = a_mat.at[jnp.concatenate(rows), jnp.concatenate(cols)].add(jnp.concatenate(vals))

    net_need = data["demand"] - data["pv"]  # [T, N]
    b_bal = jax.ops.segment_sum(net_need.reshape(-1), bal, num_segments=mt)
    b_en = (params.self_discharge * e_lo)[a_idx] + jnp.where(later, 0.0, (keep * e0)[a_idx])
    b = jnp.concatenate([b_bal, b_en]).astype(f)

    per_kwh = 1.0 / KWH_PER_MWH
    fit = data["fit"][ti_m] * per_kwh
    util = data["utility"][ti_m] * per_kwh
    pen = params.imbalance_penalty * per_kwh
    deg = (params.degradation_cost * per_kwh)[a_idx]
    last = t_idx == t_len - 1
    cost = jnp.concatenate(
        [
            deg * ones_nt,  # charge
            deg * ones_nt,  # discharge
            jnp.where(last, -params.terminal_soc_value * per_kwh, 0.0) * ones_nt,  # energy
            (params.disp_cost * per_kwh)[a_idx] * ones_nt,  # dispatch
            util + pen,  # import
            -fit + pen,  # export
            params.shed_penalty * per_kwh * ones_mt,  # shed
            0.0 * ones_mt,  # curtailment
        ]
    ).astype(f)

    p_lim = (params.bat_kw * dt)[a_idx]
    inf = jnp.full(mt, jnp.inf, f)
    if env.grid_mode == "capacity" and not individual:
        imp_ub = params.import_limit_kw * dt * ones_mt
        exp_ub = params.export_limit_kw_total * dt * ones_mt
    else:
        imp_ub, exp_ub = inf, inf
    lb = jnp.concatenate([jnp.zeros(2 * nt, f), e_lo[a_idx], jnp.zeros(nt + 4 * mt, f)]).astype(f)
    ub = jnp.concatenate(
        [p_lim, p_lim, e_hi[a_idx], (params.disp_kw * dt)[a_idx], imp_ub, exp_ub, inf, inf]
    ).astype(f)
    # the shed and curtailment columns are only needed where limits can bind; keep them bounded
    # by what could ever be shed or curtailed so the problem stays bounded
    cap_s = jnp.sum(jnp.maximum(net_need, 0.0)) + 1.0
    cap_k = jnp.sum(data["pv"] + params.disp_kw * dt) + 1.0
    ub = ub.at[off["s"] : off["s"] + mt].set(cap_s).at[off["k"] : off["k"] + mt].set(cap_k)

    qp = QP(
        Q=jnp.zeros(nv, f),
        c=cost,
        A=a_mat,
        b=b,
        G=jnp.zeros((0, nv), f),
        h=jnp.zeros((0,), f),
        lb=lb,
        ub=ub,
    )
    sol = solve_qp(qp, iters=iters)
    x = sol.x
    terminal_const = params.terminal_soc_value * per_kwh * jnp.sum(e_lo)
    profit = -(sol.objective + terminal_const)

    imports, exports, shed = (x[off[k] : off[k] + mt] for k in ("i", "x", "s"))
    money_cost = jnp.sum(
        (util + pen) * imports + (pen - fit) * exports + params.shed_penalty * per_kwh * shed
    )
    demand = jnp.sum(data["demand"])
    self_sufficiency = jnp.where(
        demand > 0, 1.0 - jnp.sum(imports) / jnp.maximum(demand, 1e-9), 0.0
    )

    def block(name, size, cols_):
        return x[off[name] : off[name] + size].reshape(t_len, cols_)

    def site_block(name):  # [T] for the community, [T, N] per agent
        out = block(name, mt, m)
        return out[:, 0] if m == 1 else out

    return Optimum(
        mean_agent_return=params.reward_scale * profit / n,
        community_profit=profit,
        community_cost=money_cost,
        self_sufficiency=jnp.clip(self_sufficiency, 0.0, 1.0),
        charge_kwh=block("c", nt, n),
        discharge_kwh=block("d", nt, n),
        energy_kwh=block("e", nt, n),
        dispatch_kwh=block("g", nt, n),
        import_kwh=site_block("i"),
        export_kwh=site_block("x"),
        shed_kwh=site_block("s"),
        curtail_kwh=site_block("k"),
        converged=sol.converged,
        residual=sol.residual,
    )


def perfect_foresight(
    env: Any, params: LEMParams, key: jax.Array, individual: bool = False
) -> Optimum:
    """The perfect-foresight optimum of the episode ``rollout(env, policy, key, params)`` plays
    (jittable; ``jax.vmap`` over keys and a params bank gives a scenario bank in one call)."""
    return solve(env, params, exogenous(env, params, key), individual)


def gain_share(ret: jax.Array, dso_only: jax.Array, optimum: jax.Array) -> jax.Array:
    """``(R - R_dso_only) / (R* - R_dso_only)`` per episode (0 where the optimum gains nothing)."""
    span = optimum - dso_only
    safe = jnp.where(jnp.abs(span) > 1e-9, span, 1.0)
    return jnp.where(jnp.abs(span) > 1e-9, (ret - dso_only) / safe, 0.0)
