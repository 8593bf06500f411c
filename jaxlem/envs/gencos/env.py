"""``gencos-v0``: generators bid markups into a network-constrained SCED.

PJM 5-bus (MATPOWER case5): loads at buses 2, 3, 4; five units G1..G5 at buses 1, 1, 3, 4, 5 with
true marginal costs 14, 15, 30, 40, 10 $/MWh, Pmax 40, 170, 520, 200, 600 MW, Pmin 5, 10, 20, 10,
20 MW; lines 1-2 (400 MW) and 4-5 (240 MW) limited, so cheap G5 is export-limited.

Action per unit ``a`` in [-1, 1]^3 -> markups in [0, 1], non-decreasing over the blocks: with
``offer_param="increments"`` (default) each column is a share ``u = (a + 1)/2`` of the headroom
left above the previous block, ``m_k = m_{k-1} + u_k (1 - m_{k-1})`` (monotone by construction,
no sort in the gradient); with ``"sort"``, ``m = sort((a + 1)/2)``; the unit's [Pmin, Pmax]
is split into 3 equal blocks offered at ``min(cost (1 + max_markup m_k), price_cap)``. One SCED
per 30-min step clears the offers against the load (inelastic part sheddable at VOLL, plus
price-responsive demand blocks); LMPs come from its duals. Ramp coupling cuts blocks: with
``R = ramp_frac * Pmax`` per step the feasible range is ``[max(Pmin, P_prev - R),
min(Pmax, P_prev + R)]``; block MW above the top are removed and MW below the bottom become
must-run. Reward: ``(LMP at the unit's bus - cost) * P * dt`` ($ per step, times reward_scale).

Why the defaults (a well-posed game): with inelastic demand and no cap, all units bidding the 3x
markup is the collusive optimum. Here offers are capped at ``price_cap`` = 100 $/MWh and 20 % of
each bus load is price-responsive in three blocks valued 90, 70 and 50 $/MWh, so high markups
lose demand: against everyone at the maximum markup, a unit's best response is lower (tested).

Episode: 48 steps of 30 min from midnight, day-aligned; the episode is truncated (not terminated)
at the end of the day. Observation (12 per unit, private): own cost/100, own Pmax / max Pmax, last
dispatch / Pmax, last profit (k$), ramp headroom / Pmax, next-step total load / sum Pmax, sin/cos
of the clock time, last 4 system-mean LMPs / 100.

The game in full: ``docs/model/gencos.md``; columns and params: ``docs/envs/gencos-v0.md``.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property
from typing import TYPE_CHECKING, Any, NamedTuple, Self, cast

import jax
import jax.numpy as jnp
import numpy as np
from flax import struct
from jaxtyping import Array, ArrayLike, Float

from jaxlem import checks, profiles
from jaxlem.envs.base import (
    Action,
    ActionLayout,
    Column,
    Environment,
    EvalSpec,
    Obs,
    PRNGKey,
    StepResult,
)
from jaxlem.envs.gencos import evaluation
from jaxlem.envs.spaces import Box
from jaxlem.grid import DispatchSolution, Network, load_case, solve_sced

OFFER_PARAMS = ("sort", "increments")


class CaseData(NamedTuple):
    """What a MATPOWER case does not hold: true marginal costs ($/MWh), Pmin (MW), the buses
    with load (where demand blocks are offered) and the bus of the renewable shock."""

    cost: tuple[float, ...]
    pmin: tuple[float, ...]
    load_buses: tuple[int, ...]
    renewable_bus: int


CASES = {
    "case5": CaseData((14.0, 15.0, 30.0, 40.0, 10.0), (5.0, 10.0, 20.0, 10.0, 20.0), (1, 2, 3), 4)
}
OBS_COLUMNS = (
    Column("cost", "own true marginal cost / 100 $/MWh"),
    Column("pmax", "own Pmax / largest Pmax"),
    Column("dispatch", "last dispatch / Pmax"),
    Column("profit", "last profit, k$"),
    Column("ramp_room", "ramp headroom / Pmax"),
    Column("load_next", "next step's total load / sum of Pmax"),
    Column("hour_sin", "clock time, sine"),
    Column("hour_cos", "clock time, cosine"),
    Column("lmp_1", "system-mean LMP 4 steps ago / 100 $/MWh"),
    Column("lmp_2", "system-mean LMP 3 steps ago / 100 $/MWh"),
    Column("lmp_3", "system-mean LMP 2 steps ago / 100 $/MWh"),
    Column("lmp_4", "last system-mean LMP / 100 $/MWh"),
)
OBS_DIM = len(OBS_COLUMNS)


@struct.dataclass
class GencosParams:
    network: Network  # the transmission case
    cost: jax.Array  # [G] true marginal cost $/MWh
    pmin: jax.Array  # [G] MW
    pmax: jax.Array  # [G] MW
    ramp_frac: jax.Array  # [G] ramp limit per step as a fraction of Pmax
    strategic: jax.Array  # [G] 1 = learns, 0 = bids truthfully whatever its action
    p_init: jax.Array  # [G] dispatch before the first step (truthful SCED at step 0)
    base_load_mw: jax.Array  # [B]
    load_table: jax.Array  # [K, T] per-unit load multipliers (one daily profile per row)
    demand_noise: jax.Array  # relative std of per-step load noise
    day_std: jax.Array  # std of the daily load factor around 1
    max_markup: jax.Array  # offer = cost (1 + max_markup m), m in [0, 1]
    price_cap: jax.Array  # $/MWh
    elastic_frac: jax.Array  # share of each bus load that is price-responsive
    demand_values: jax.Array  # [Kd] $/MWh value of each price-responsive block
    voll: jax.Array  # $/MWh value of inelastic load
    demand_shift: jax.Array  # OOD: load multiplier
    renewable_mw: jax.Array  # [B] OOD: must-take injection (renewable shock)
    ramp_scale: jax.Array  # OOD: ramp stress (< 1 tighter)
    reward_scale: jax.Array  # reward = profit ($) x reward_scale

    if TYPE_CHECKING:  # added by ``struct.dataclass``; declared for type checkers

        def replace(self, **updates: Any) -> Self: ...


@struct.dataclass
class GencosState:
    t: jax.Array
    p_prev: jax.Array  # [G]
    last_profit: jax.Array  # [G] $ per step
    lmp_hist: jax.Array  # [4] last system-mean LMPs
    day: jax.Array  # daily load factor
    col: jax.Array  # load profile row
    load_next: jax.Array  # [B] load of the coming step (drawn, observed as a forecast)

    if TYPE_CHECKING:  # added by ``struct.dataclass``; declared for type checkers

        def replace(self, **updates: Any) -> Self: ...


@dataclass(frozen=True)
class GencosEnv(Environment[GencosState, GencosParams]):
    """Static configuration of the GenCos bidding game."""

    num_steps: int = 48  # steps per episode (a day of 30 min)
    dt_h: float = 0.5  # step length, hours
    num_blocks: int = 3  # offer blocks per unit (equal shares of [Pmin, Pmax])
    solver_iters: int = 20  # fixed IPM budget; converges in 10-15 on case5 (bench_opf.py)
    case: str = "case5"  # transmission case (its units are the agents)
    # how an action maps to monotone markups: "increments" (cumulative shares of the headroom,
    # 2-3x less exploitable after training than "sort"; docs/learning.md) or "sort"
    offer_param: str = "increments"

    def __post_init__(self) -> None:
        checks.check_int("num_steps", self.num_steps, 1)
        checks.check_range("dt_h", self.dt_h, 0.0, 24.0, lo_open=True)
        checks.check_int("num_blocks", self.num_blocks, 1)
        checks.check_int("solver_iters", self.solver_iters, 5)
        checks.check_choice("case", self.case, tuple(CASES))
        checks.check_choice("offer_param", self.offer_param, OFFER_PARAMS)

    @property
    def num_agents(self) -> int:
        """One agent per generating unit of the case."""
        return len(CASES[self.case].cost)

    @property
    def load_buses(self) -> tuple[int, ...]:
        """Buses of the case that carry load (static): where demand blocks are offered."""
        return CASES[self.case].load_buses

    # ------------------------------------------------------------------ params
    @cached_property
    def default_params(self) -> GencosParams:
        with jax.ensure_compile_time_eval():  # eager even when first read inside a trace
            return self.make_params()

    def make_params(self, **over: Any) -> GencosParams:
        net = load_case(self.case)
        t = self.num_steps
        shape = profiles.demand_shape(t, self.dt_h)
        table = (0.55 + 0.45 * shape / shape.max())[None, :].astype(np.float32)
        f32 = np.float32
        g, data = self.num_agents, CASES[self.case]
        values: dict[str, Any] = dict(
            network=net,
            cost=np.asarray(data.cost, f32),
            pmin=np.asarray(data.pmin, f32),
            pmax=np.asarray(net.gen_pmax_mw, f32),
            ramp_frac=np.full(g, 0.5, f32),
            strategic=np.ones(g, f32),
            base_load_mw=np.asarray(net.bus_load_mw, f32),
            load_table=table,
            demand_noise=f32(0.02),
            day_std=f32(0.05),
            max_markup=f32(2.0),
            price_cap=f32(100.0),
            elastic_frac=f32(0.2),
            demand_values=np.asarray([90.0, 70.0, 50.0], f32),
            voll=f32(10_000.0),
            demand_shift=f32(1.0),
            renewable_mw=np.zeros(net.num_buses, f32),
            ramp_scale=f32(1.0),
            reward_scale=f32(1e-3),
        )
        values.update(over)
        values.setdefault("p_init", None)
        fields: dict[str, Any] = {
            k: (v if k in ("network", "p_init") else jnp.asarray(v)) for k, v in values.items()
        }
        params = GencosParams(**fields)
        self.check_params(params)
        if params.p_init is None:
            params = params.replace(p_init=self._initial_dispatch(params))
        return params

    def _initial_dispatch(self, params: GencosParams) -> jax.Array:
        """Truthful SCED at the step-0 load: the dispatch the first ramp limits start from."""
        load = params.base_load_mw * params.load_table[0, 0] * params.demand_shift
        wide = params.replace(p_init=params.pmin, ramp_scale=jnp.asarray(1e6, jnp.float32))
        truthful = jnp.broadcast_to(params.cost[:, None], (self.num_agents, self.num_blocks))
        sol, _ = self.sced(wide, truthful, params.pmin, load)
        return jnp.clip(sol.p_gen, params.pmin, params.pmax)

    def check_params(self, p: GencosParams) -> None:
        a = jax.tree_util.tree_map(np.asarray, p)
        checks.check_range("cost", a.cost, 0.0, np.inf, hi_open=True)
        checks.check_range("pmin", a.pmin, 0.0, np.inf, hi_open=True)
        checks.check_order("pmin", a.pmin, "pmax", a.pmax)
        checks.check_range("ramp_frac", a.ramp_frac, 0.0, 1.0, lo_open=True)
        checks.check_range("strategic", a.strategic, 0.0, 1.0)
        checks.check_range("base_load_mw", a.base_load_mw, 0.0, np.inf, hi_open=True)
        checks.check_range("load_table", a.load_table, 0.0, np.inf, hi_open=True)
        if a.load_table.shape[-1] != self.num_steps:
            raise ValueError(
                f"load_table: profile length {a.load_table.shape[-1]}; allowed: num_steps = "
                f"{self.num_steps}"
            )
        checks.check_range("demand_noise", a.demand_noise, 0.0, 1.0)
        checks.check_range("day_std", a.day_std, 0.0, 1.0)
        checks.check_range("max_markup", a.max_markup, 0.0, 100.0)
        checks.check_range("price_cap", a.price_cap, 0.0, np.inf, lo_open=True)
        checks.check_range("elastic_frac", a.elastic_frac, 0.0, 1.0)
        checks.check_range("demand_values", a.demand_values, 0.0, np.inf, hi_open=True)
        checks.check_range("voll", a.voll, 0.0, np.inf, lo_open=True, hi_open=True)
        checks.check_range("demand_shift", a.demand_shift, 0.0, 10.0)
        checks.check_range("renewable_mw", a.renewable_mw, 0.0, np.inf, hi_open=True)
        checks.check_range("ramp_scale", a.ramp_scale, 0.0, np.inf, lo_open=True, hi_open=True)
        checks.check_range("reward_scale", a.reward_scale, 0.0, np.inf, lo_open=True)

    def sample_params(self, key: PRNGKey, num: int) -> GencosParams:
        """A scenario bank: demand level and renewable shock drawn per scenario (OOD-style)."""
        k1, k2 = jax.random.split(key)
        base = super().sample_params(key, num)
        shift = jax.random.uniform(k1, (num,), minval=0.8, maxval=1.15)
        nb = base.base_load_mw.shape[-1]
        shock_bus = jnp.eye(nb)[CASES[self.case].renewable_bus]
        ren = jax.random.uniform(k2, (num, 1)) * 100.0 * shock_bus[None, :]
        return base.replace(demand_shift=shift, renewable_mw=ren)

    # ------------------------------------------------------------------ spaces
    def action_space(self, params: GencosParams | None = None) -> Box:
        return Box(-1.0, 1.0, (self.num_agents, self.num_blocks))

    def observation_space(self, params: GencosParams | None = None) -> Box:
        return Box(-np.inf, np.inf, (self.num_agents, OBS_DIM))

    # ------------------------------------------------------------------ dynamics
    def _load(
        self,
        key: PRNGKey,
        t: jax.Array,
        day: jax.Array,
        col: jax.Array,
        params: GencosParams,
    ) -> Float[Array, " B"]:
        t = jnp.minimum(t, self.num_steps - 1)
        noise = 1.0 + params.demand_noise * jax.random.normal(key, params.base_load_mw.shape)
        mult = params.load_table[col, t] * day * params.demand_shift
        return params.base_load_mw * mult * jnp.maximum(noise, 0.0)

    def reset_env(self, key: PRNGKey, params: GencosParams) -> tuple[Obs, GencosState]:
        k_day, k_col, k_load = jax.random.split(key, 3)
        day = 1.0 + params.day_std * jax.random.normal(k_day, ())
        col = jax.random.randint(k_col, (), 0, params.load_table.shape[0])
        state = GencosState(
            t=jnp.zeros((), jnp.int32),
            p_prev=params.p_init.astype(jnp.float32),
            last_profit=jnp.zeros((self.num_agents,)),
            lmp_hist=jnp.zeros((4,)),
            day=jnp.maximum(day, 0.1),
            col=col,
            load_next=self._load(k_load, jnp.zeros((), jnp.int32), day, col, params),
        )
        return self.observe(state, params), state

    def markups(self, action: Action) -> Float[Array, "G K"]:
        """Non-decreasing markups [G, K] in [0, 1] from an action [G, K] (``offer_param``)."""
        a = jnp.where(jnp.isfinite(action), action, -1.0)  # non-finite -> truthful
        u = (jnp.clip(a, -1.0, 1.0) + 1.0) / 2.0
        if self.offer_param == "sort":
            return jnp.sort(u, axis=-1)
        return 1.0 - jnp.cumprod(1.0 - u, axis=-1)

    def action_for_markups(self, markups: ArrayLike) -> Action:
        """The action [G, K] whose offers carry ``markups`` (broadcast to [G, K], non-decreasing
        along the blocks, in [0, 1]): the inverse of :meth:`markups`."""
        m = jnp.broadcast_to(
            jnp.clip(jnp.asarray(markups, jnp.float32), 0.0, 1.0),
            (self.num_agents, self.num_blocks),
        )
        if self.offer_param == "sort":
            return 2.0 * m - 1.0
        prev = jnp.concatenate([jnp.zeros_like(m[:, :1]), m[:, :-1]], axis=-1)
        room = 1.0 - prev
        u = jnp.where(room > 1e-6, (m - prev) / jnp.where(room > 1e-6, room, 1.0), 0.0)
        return 2.0 * jnp.clip(u, 0.0, 1.0) - 1.0

    def offers(
        self, action: Action, params: GencosParams
    ) -> tuple[Float[Array, "G K"], Float[Array, "G K"]]:
        """Markups in [0, 1] (non-decreasing) and offer prices [G, K] from an action [G, K]."""
        m = self.markups(action) * params.strategic[:, None]
        price = params.cost[:, None] * (1.0 + params.max_markup * m)
        return m, jnp.minimum(price, params.price_cap)

    def ramp_blocks(
        self, p_prev: Float[Array, " G"], params: GencosParams
    ) -> tuple[Float[Array, " G"], Float[Array, "G K"], Float[Array, " G"], Float[Array, " G"]]:
        """Ramp-feasible range and the cut blocks: (must-run MW [G], block MW [G, K], lo, hi)."""
        k = self.num_blocks
        r = params.ramp_frac * params.pmax * params.ramp_scale
        lo = jnp.maximum(params.pmin, p_prev - r)
        hi = jnp.minimum(params.pmax, p_prev + r)
        hi = jnp.maximum(hi, lo)
        width = (params.pmax - params.pmin) / k
        bottom = params.pmin[:, None] + width[:, None] * jnp.arange(k)[None, :]
        top = bottom + width[:, None]
        avail = jnp.clip(jnp.minimum(hi[:, None], top) - jnp.maximum(lo[:, None], bottom), 0.0)
        return lo, avail, lo, hi

    def sced(
        self,
        params: GencosParams,
        price: Float[Array, "G K"],
        p_prev: Float[Array, " G"],
        load: Float[Array, " B"],
    ) -> tuple[DispatchSolution, tuple[jax.Array, jax.Array, jax.Array, jax.Array]]:
        """One SCED of offer prices [G, K] against ``load`` [B] from dispatch ``p_prev``:
        returns (solution, (lo, hi, fixed load, demand block prices))."""
        net = params.network
        must_run, blocks, lo, hi = self.ramp_blocks(p_prev, params)
        net_load = load - params.renewable_mw
        inelastic = (1.0 - params.elastic_frac) * jnp.maximum(net_load, 0.0)
        fixed = inelastic + jnp.minimum(net_load, 0.0)  # a negative net load is injection
        kd = params.demand_values.shape[0]
        buses = jnp.asarray(self.load_buses, jnp.int32)  # blocks only where there is load
        d_bus = jnp.repeat(buses, kd)
        d_price = jnp.tile(params.demand_values, len(self.load_buses))
        d_mw = jnp.repeat(params.elastic_frac * jnp.maximum(net_load[buses], 0.0) / kd, kd)
        sol = solve_sced(
            net,
            fixed,
            price,
            blocks,
            pmin_mw=must_run,
            demand_bus=d_bus,
            demand_price=d_price,
            demand_mw=d_mw,
            voll=params.voll,
            spill_cost=params.voll,
            iters=self.solver_iters,
            regularization=1e-6,  # equal-price blocks (truthful bids) make the LP degenerate
        )
        return sol, (lo, hi, fixed, d_price)

    def step_env(
        self, key: PRNGKey, state: GencosState, action: Action, params: GencosParams
    ) -> StepResult[GencosState]:
        dt = self.dt_h
        load = state.load_next
        m, price = self.offers(action, params)
        sol, (lo, hi, fixed, d_price) = self.sced(params, price, state.p_prev, load)
        gen_bus = params.network.gen_bus
        lmp_unit = sol.lmp[gen_bus]
        p = sol.p_gen
        profit = (lmp_unit - params.cost) * p * dt
        reward = profit * params.reward_scale
        at_load = (params.base_load_mw > 0).astype(sol.lmp.dtype)
        mean_lmp = jnp.sum(sol.lmp * at_load) / jnp.maximum(jnp.sum(at_load), 1.0)
        true_cost = jnp.sum(params.cost * p)
        served_inelastic = jnp.sum(jnp.maximum(fixed, 0.0)) - jnp.sum(sol.shed)
        demand_mw = cast(jax.Array, sol.demand_mw)  # the SCED always has demand blocks here
        value = params.voll * served_inelastic + jnp.sum(d_price * demand_mw)
        tol = 1e-3 * params.pmax
        ramp_up = (hi < params.pmax - tol) & (p >= hi - tol)
        ramp_dn = (lo > params.pmin + tol) & (p <= lo + tol)
        t = state.t
        last = t >= self.num_steps - 1
        info = {
            "terminated": jnp.zeros((), bool),
            "truncated": last,
            "lmp": sol.lmp,
            "p_gen": p,
            "profit": profit,
            "markup": m,
            "offer_price": price,
            "system_lmp": mean_lmp,
            "welfare": (value - true_cost) * dt,
            "true_cost": true_cost * dt,
            "shed_mw": jnp.sum(sol.shed),
            "curtail_mw": jnp.sum(sol.curtail),
            "demand_served_mw": jnp.sum(demand_mw),
            "ramp_binding": (ramp_up | ramp_dn).astype(jnp.float32),
            "load_mw": jnp.sum(load),
            "converged": sol.converged,
        }
        t_next = t + 1
        state = state.replace(
            t=t_next.astype(jnp.int32),
            p_prev=p,
            last_profit=profit,
            lmp_hist=jnp.concatenate([state.lmp_hist[1:], mean_lmp[None]]),
            load_next=self._load(key, t_next, state.day, state.col, params),
        )
        return self.observe(state, params), state, reward, last, info

    def observe(self, state: GencosState, params: GencosParams) -> Obs:
        """Private observation [G, 12] of every unit (columns: ``OBS_COLUMNS``)."""
        hour = (state.t.astype(jnp.float32) * self.dt_h) % 24.0
        r = params.ramp_frac * params.pmax * params.ramp_scale
        ones = jnp.ones((self.num_agents,))
        cols = [
            params.cost / 100.0,
            params.pmax / jnp.max(params.pmax),
            state.p_prev / params.pmax,
            state.last_profit / 1000.0,
            jnp.minimum(r, params.pmax - state.p_prev) / params.pmax,
            ones * jnp.sum(state.load_next) / jnp.sum(params.pmax),
            ones * jnp.sin(2 * jnp.pi * hour / 24.0),
            ones * jnp.cos(2 * jnp.pi * hour / 24.0),
        ] + [ones * state.lmp_hist[i] / 100.0 for i in range(4)]
        obs = jnp.stack(cols, axis=-1)
        return jnp.clip(jnp.where(jnp.isfinite(obs), obs, 0.0), -1e3, 1e3).astype(jnp.float32)

    # ------------------------------------------------------------------ the contract
    def action_layout(self) -> ActionLayout:
        return ActionLayout(self.num_blocks, -1.0, 1.0)

    def observation_columns(self) -> tuple[Column, ...]:
        return OBS_COLUMNS

    def action_columns(self) -> tuple[Column, ...]:
        return tuple(
            Column(f"block_{k}", f"markup of block {k} ({self.offer_param}, -1 truthful)")
            for k in range(self.num_blocks)
        )

    def evaluation(self) -> EvalSpec:
        return evaluation.SPEC
