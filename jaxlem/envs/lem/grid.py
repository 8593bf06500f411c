"""The grid stage of ``lem-v0``: physical limits on the sites' net positions and the terms of
each P2P trade.

- ``grid_mode="capacity"``: feeder limits, then the connection point; excess export curtails
  exporters pro rata, excess import sheds importers pro rata.
- ``grid_mode="losses"``: a distance-based loss fraction per trade (capped).
- ``grid_mode="dcopf"``: a DC-OPF on the feeder redispatches the net injections (curtailment,
  shedding) and its LMP differences add to the network fee of each trade.
All energies in kWh per step.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, cast

import jax
import jax.numpy as jnp
from jaxtyping import Array, Float

from jaxlem.envs.lem.types import LEMParams
from jaxlem.grid import Network, solve_dcopf
from jaxlem.market import dso
from jaxlem.market.dso import KWH_PER_MWH


def capacity_limits(
    env: Any, x: Float[Array, " N"], curtail: Float[Array, " N"], params: LEMParams
) -> tuple[Float[Array, " N"], Float[Array, " N"]]:
    """Feeder limits, then the connection point: excess export curtails exporters pro rata,
    excess import sheds importers pro rata (all in kWh per step)."""
    dt = env.dt_h
    exp_amt, imp_amt = jnp.maximum(x, 0.0), jnp.maximum(-x, 0.0)
    f = env.num_feeders
    net_f = jax.ops.segment_sum(x, params.feeder, num_segments=f)
    lim_f = params.feeder_limit_kw * dt
    c1 = dso.pro_rata_cut_grouped(exp_amt, jnp.maximum(net_f - lim_f, 0.0), params.feeder, f)
    s1 = dso.pro_rata_cut_grouped(imp_amt, jnp.maximum(-net_f - lim_f, 0.0), params.feeder, f)
    x = x - c1 + s1
    net = jnp.sum(x)
    c2 = dso.pro_rata_cut(
        jnp.maximum(x, 0.0), jnp.maximum(net - params.export_limit_kw_total * dt, 0.0)
    )
    s2 = dso.pro_rata_cut(
        jnp.maximum(-x, 0.0), jnp.maximum(-net - params.import_limit_kw * dt, 0.0)
    )
    return curtail + c1 + c2, s1 + s2


def pair_terms(
    env: Any, params: LEMParams, lmp: Float[Array, " M"] | None = None
) -> Callable[[jax.Array, jax.Array], tuple[jax.Array, jax.Array]]:
    """Distance-based loss fraction (grid_mode='losses', capped) and network fee per pair;
    under 'dcopf' the fee adds the LMP difference buyer bus - seller bus (when positive)."""
    losses = env.grid_mode == "losses"

    def terms(buyer: jax.Array, seller: jax.Array) -> tuple[jax.Array, jax.Array]:
        nb = params.node[buyer]
        ns = jnp.where(seller >= 0, params.node[jnp.maximum(seller, 0)], 0)
        d = params.node_distance_km[nb, ns]
        lossf = jnp.minimum(params.loss_cap, params.loss_per_km * d) if losses else 0.0 * d
        fee = params.p2p_fee + params.p2p_fee_per_km * d
        if lmp is not None:
            fee = fee + jnp.maximum(lmp[nb] - lmp[ns], 0.0)
        return lossf, fee

    return terms


def redispatch(
    env: Any, x: Float[Array, " N"], utility: Float[Array, ""], params: LEMParams
) -> tuple[Float[Array, " N"], Float[Array, " N"], Float[Array, " M"], dict[str, jax.Array]]:
    """grid_mode='dcopf': the agents' net positions [N] (kWh per step) are injections on
    their buses; a DC-OPF in which the supply point buys at the utility price keeps line
    flows within limits, curtailing exports (``curtail_cost``) or shedding imports
    (``shed_penalty``) where it must. Returns per-agent (curtail, shed) kWh, LMPs and KPIs.
    P2P trades are financial, so the physical injections are the same before and after
    the market; the redispatch therefore runs before clearing. The DC model ignores
    resistance (a coarse model on r/x > 1 feeders)."""
    # the params of grid_mode='dcopf' hold the feeder, its line limit and the curtailment cost
    net = cast(Network, params.network)
    line_limit_kw = cast(jax.Array, params.line_limit_kw)
    curtail_cost = cast(jax.Array, params.curtail_cost)
    m = net.num_buses
    scale = 1.0 / (env.dt_h * KWH_PER_MWH)  # kWh per step -> MW
    inj_mw = jax.ops.segment_sum(x, params.node, num_segments=m) * scale
    limit = jnp.minimum(net.branch_limit_mw, line_limit_kw / KWH_PER_MWH)
    supply = net.replace(gen_c1=jnp.broadcast_to(utility, net.gen_c1.shape))
    sol = solve_dcopf(
        supply,
        -inj_mw,
        line_limit_mw=limit,
        voll=params.shed_penalty,
        spill_cost=curtail_cost,
        iters=40,
    )
    to_kwh = 1.0 / scale
    curtail = dso.pro_rata_cut_grouped(jnp.maximum(x, 0.0), sol.curtail * to_kwh, params.node, m)
    shed = dso.pro_rata_cut_grouped(jnp.maximum(-x, 0.0), sol.shed * to_kwh, params.node, m)
    finite = jnp.isfinite(limit)
    loading = jnp.where(finite, jnp.abs(sol.flow) / jnp.where(finite, limit, 1.0), 0.0)
    info = {
        "lmp": sol.lmp,
        "line_loading": loading,
        "congested": jnp.any(loading >= 0.999),
        "grid_curtail_kwh": jnp.sum(curtail),
        "grid_shed_kwh": jnp.sum(shed),
        "opf_converged": sol.converged,
    }
    return curtail, shed, sol.lmp, info
