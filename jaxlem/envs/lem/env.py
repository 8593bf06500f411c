"""``lem-v0``: a local energy market of N prosumers trading peer to peer.

Each agent is a site behind one connection with PV, demand, an optional battery and an optional
dispatchable unit. Every step each agent sets its battery, a limit price and the fraction of its
surplus it offers; the P2P book clears under the env's pricing rule (``jaxlem.market.clear``); the
DSO settles every residual at the FiT / utility price. Units: kW, kWh per step of ``dt_h`` hours,
prices in currency per MWh, money in currency.

Action per agent (``[N, 3]``, each in [-1, 1]; ``[N, 4]`` with the partner stage):
  0. battery set-point: -1 discharge at full power ... +1 charge at full power;
  1. limit price: -1 -> ``min_price`` ... +1 -> ``max_price``;
  2. offer fraction of a surplus: -1 -> 0 ... +1 -> 1 (the rest is sold to the DSO at the FiT);
  3. (partner stage) index of the preferred partner, rounded; < 0 means none.
Non-finite action entries are replaced by 0 (idle battery, mid price, half offered, no partner)
and everything is clipped to the space, so no action can produce NaN. ``action_mask(params)``
marks the columns that can matter for each agent (the battery column needs a battery, the offer
fraction a site that can have a surplus); learners leave the others out of their loss.

Observation per agent (``[N, obs_dim]``, every feature of order one): the columns are named in
``jaxlem.envs.lem.observation`` (``env.observation_columns()``): 23 base columns (clock, own PV
and demand with next-step forecasts, net position, battery, tariff now and next, last clearing,
own last trade, reputation, calendar); with ``day_ahead_obs`` (default; the DSO publishes its
tariff a day ahead) 6 more (extremes of the tariff ahead, steps to the peak, forecasts of own PV
and demand over the rest of the episode); with ``global_obs`` 4 community features at the end.

PV and demand come from a profile source (static ``profile_source``): ``"bank"`` (default) looks
them up in a year of 15-minute profiles generated with pvlib and demandlib (``profile_bank``
names a shipped bank or a file built with ``jaxlem-profiles``): each reset draws a day of the
year in ``[day_lo, day_hi)`` for the whole community, and each agent reads its own PV
orientation and demand kind (``pv_kind``, ``demand_kind`` in params). ``"synthetic"`` uses the
[K, T] shape tables in params instead (one simple shape per kind by default; CSV profiles can be
loaded into them). Per-agent daily factors and per-step noise go on top in both cases.

The episode is ``num_steps`` steps starting at midnight; all steps trade. The last step
terminates the episode (a finite-horizon task; ``terminal_soc_value`` pays for energy left in
storage).

The model in full: ``docs/model/lem.md``; every observation column, action column and params
field with its default: ``docs/envs/lem-v0.md`` (generated from this code).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from functools import cached_property
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from jaxtyping import Array, Bool, Float, Int

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
from jaxlem.envs.lem import evaluation, observation, scenarios, stages
from jaxlem.envs.lem import params as lem_params
from jaxlem.envs.lem import population as pop
from jaxlem.envs.lem.exogenous import draw_episode, draw_step
from jaxlem.envs.lem.types import EPS, GRID_MODES, PROFILE_SOURCES, TARIFFS, LEMParams, LEMState
from jaxlem.envs.spaces import Box
from jaxlem.grid import Network
from jaxlem.market import pricing

ACTION_COLUMNS = (
    Column("battery", "battery set-point: -1 full discharge ... +1 full charge"),
    Column("price", "limit price: -1 min_price ... +1 max_price"),
    Column("offer", "share of a surplus offered to peers: -1 none ... +1 all"),
)
PARTNER_COLUMN = Column("partner", "preferred partner's index (rounded; -1 = none)")


@dataclass(frozen=True)
class LEMEnv(Environment[LEMState, LEMParams]):
    """Local energy market. Static configuration only; numbers live in ``LEMParams``."""

    num_agents: int = 10  # sites in the community
    num_steps: int = 24  # steps per episode (from midnight)
    dt_h: float = 1.0  # step length, hours
    rule: str = "average"  # pricing rule of the P2P clearing (jaxlem.market.RULES)
    grid_mode: str = "none"  # none | capacity | losses | dcopf
    partner_stage: bool = False  # a 4th action column: preferred partner (mutual matches)
    use_reputation: bool = False  # break price ties by reputation
    num_feeders: int = 1  # feeders of grid_mode=capacity (params.feeder indexes them)
    global_obs: bool = False  # 4 community features at the end of the observation
    day_ahead_obs: bool = True  # observe the rest of the day's tariff and PV/demand forecasts
    population: pop.Population = field(default_factory=pop.Population)  # drawn communities
    scenario: str = ""  # preset name (envs.lem.scenarios); "" = drawn from ``population``
    tariff: str = "tou"  # "tou": random time-of-use blocks per reset; "fixed": params profiles
    grid_case: str = "ieee34"  # feeder of grid_mode='dcopf': a bundled case or "radial-<buses>"
    profile_source: str = "bank"  # "bank": the profile bank; "synthetic": the params tables
    profile_bank: str = "default"  # a shipped bank's name or the path of a jaxlem-profiles .npz

    # the controller a residual learner starts from (envs.lem.policies): self-consumption storage
    reference_policy = "rule_based_battery"

    def __post_init__(self) -> None:
        checks.check_int("num_agents", self.num_agents, 1)
        checks.check_int("num_steps", self.num_steps, 1)
        checks.check_range("dt_h", self.dt_h, 0.0, 24.0, lo_open=True)
        checks.check_choice("rule", self.rule, pricing.RULES)
        checks.check_choice("grid_mode", self.grid_mode, GRID_MODES)
        checks.check_int("num_feeders", self.num_feeders, 1)
        if self.grid_mode == "dcopf":
            lem_params.feeder_case(self.grid_case)  # a bad name raises here, naming grid_case
        checks.check_choice("tariff", self.tariff, TARIFFS)
        object.__setattr__(self, "population", pop.Population.from_config(self.population))
        checks.check_choice("profile_source", self.profile_source, PROFILE_SOURCES)
        pop.check_kinds(self.population, self.pv_kinds, self.demand_kinds)  # loads the bank

    @cached_property
    def bank(self) -> profiles.ProfileBank | None:
        """The profile bank on this env's time grid (None with the synthetic source)."""
        if self.profile_source != "bank":
            return None
        return profiles.load_bank(self.profile_bank, self.dt_h)

    @property
    def pv_kinds(self) -> tuple[str, ...]:
        """Names of the PV kinds of the profile source (rows that ``pv_kind`` indexes)."""
        return self.bank.pv_kinds if self.bank is not None else profiles.PV_KINDS

    @property
    def demand_kinds(self) -> tuple[str, ...]:
        """Names of the demand kinds of the profile source (rows that ``demand_kind`` indexes)."""
        return self.bank.demand_kinds if self.bank is not None else profiles.DEMAND_KIND_NAMES

    def clear_day_factors(self) -> np.ndarray:
        """Mean per-unit output of each PV kind over a clear day: the 90th percentile of the
        year's days (bank) or the mean of the clear-sky table (synthetic)."""
        if self.bank is not None:
            return self.bank.clear_day_factor()
        return np.asarray(lem_params.global_defaults(self)["pv_table"], np.float64).mean(axis=-1)

    def draw_population(self, key: PRNGKey) -> dict[str, Any]:
        """Per-agent fields of one community drawn from ``population`` (pure JAX, vmappable)."""
        return pop.sample(key, self.num_agents, self.population, self.pv_kinds, self.demand_kinds)

    # ---------------------------------------------------------------- params
    @cached_property
    def default_params(self) -> LEMParams:
        """The preset's params, or a community drawn with key 0 (computed eagerly even when
        first read inside a traced function)."""
        with jax.ensure_compile_time_eval():
            if self.scenario:
                return scenarios.preset_params(self)
            return self.make_params(jax.random.PRNGKey(0))

    def make_params(self, key: PRNGKey, **overrides: Any) -> LEMParams:
        """Params with agents drawn from ``population`` by ``key``; keyword overrides, validated."""
        base = lem_params.spread_nodes(self, self.draw_population(key), overrides)
        values = {**lem_params.global_defaults(self), **base, **overrides}
        fields: dict[str, Any] = {
            k: v if isinstance(v, Network) else jnp.asarray(v) for k, v in values.items()
        }
        params = LEMParams(**fields)
        self.check_params(params)
        return params

    def sample_params(self, key: PRNGKey, num: int) -> LEMParams:
        """A scenario bank: ``num`` independently drawn communities on a leading axis (a preset
        draws the sizes its definition gives as ranges, per scenario)."""
        if self.scenario:
            return scenarios.preset_bank(self, key, num)
        keys = jax.random.split(key, num)
        return self.assemble_bank(jax.vmap(self.draw_population)(keys), num)

    def assemble_bank(self, agents: dict[str, Any], num: int, **overrides: Any) -> LEMParams:
        """A bank of ``num`` scenarios from per-agent fields ``agents`` (each [num, N]) and
        ``overrides`` of any field (broadcast over the bank), the rest at its default."""
        agents = lem_params.spread_nodes(self, agents, overrides)

        def spread(values: dict[str, Any]) -> dict[str, Any]:
            return {
                k: jax.tree_util.tree_map(lambda a: jnp.broadcast_to(a, (num, *jnp.shape(a))), v)
                if isinstance(v, Network)
                else jnp.broadcast_to(jnp.asarray(v), (num, *np.shape(v)))
                for k, v in values.items()
            }

        agents = {k: jnp.asarray(v) for k, v in agents.items()}
        params = LEMParams(
            **{**spread(lem_params.global_defaults(self)), **agents, **spread(overrides)}
        )
        self.check_params(params)
        return params

    def check_params(self, params: LEMParams) -> None:
        """Reject bad numbers in Python with a ValueError naming field, value and allowed range."""
        lem_params.check_params(self, params)

    @property
    def act_dim(self) -> int:
        return 4 if self.partner_stage else 3

    @property
    def obs_dim(self) -> int:
        return len(self.observation_columns())

    def action_space(self, params: LEMParams | None = None) -> Box:
        """Continuous [-1, 1]^3 per agent; with the partner stage a 4th column holds the partner
        index in [-1, N-1] (rounded to an integer): bounds per column."""
        if self.partner_stage:
            high = np.asarray([1.0, 1.0, 1.0, float(self.num_agents - 1)], np.float32)
            return Box(-1.0, high, (self.num_agents, 4))
        return Box(-1.0, 1.0, (self.num_agents, 3))

    def observation_space(self, params: LEMParams | None = None) -> Box:
        return Box(-np.inf, np.inf, (self.num_agents, self.obs_dim))

    def site_size(self, params: LEMParams) -> Float[Array, " N"]:
        """[N] a site's size, ``(pv + demand + dispatchable + battery kW) * dt`` (kWh per step):
        the scale of its energy observations and of the dust tolerance."""
        return (params.pv_kw + params.demand_kw + params.disp_kw + params.bat_kw) * self.dt_h

    def action_mask(self, params: LEMParams | None = None) -> Bool[Array, "N act_dim"]:
        """The battery column matters only with a battery, the offer fraction only for a site
        that can ever have a surplus (PV, a dispatchable unit or a battery); the limit price
        and the partner column always matter."""
        p = self.default_params if params is None else params
        has_bat = (p.bat_kwh > 0) & (p.bat_kw > 0)
        can_sell = (p.pv_kw > 0) | (p.disp_kw > 0) | has_bat
        cols = [has_bat, jnp.ones_like(has_bat), can_sell]
        if self.partner_stage:
            cols.append(jnp.ones_like(has_bat))
        return jnp.stack(cols, axis=-1)

    # ---------------------------------------------------------------- dynamics
    def reset_env(self, key: PRNGKey, params: LEMParams) -> tuple[Obs, LEMState]:
        n = self.num_agents
        ep, k_draw = draw_episode(self, key, params)
        t0 = jnp.zeros((), jnp.int32)
        kinds = (ep.pv_kind, ep.demand_kind, ep.day)
        gen, dem, fc_gen, fc_dem, fc_rest = draw_step(
            self, k_draw, t0, kinds, ep.pv_day, ep.demand_day, params
        )
        mid = 0.5 * (ep.fit[0] + ep.utility[0])
        state = LEMState(
            t=t0,
            energy=params.soc_init * params.bat_kwh,
            gen=gen,
            demand=dem,
            forecast_gen=fc_gen,
            forecast_demand=fc_dem,
            forecast_gen_rest=fc_rest[0],
            forecast_demand_rest=fc_rest[1],
            pv_day=ep.pv_day,
            demand_day=ep.demand_day,
            pv_kind=ep.pv_kind,
            demand_kind=ep.demand_kind,
            day=ep.day,
            fit=ep.fit,
            utility=ep.utility,
            last_price=mid,
            last_volume=jnp.zeros(()),
            last_matched=jnp.zeros((n,)),
            last_own_price=jnp.full((n,), mid),
            reputation=jnp.full((n,), 0.5),
            lmp=None if params.network is None else jnp.full((params.network.num_buses,), mid),
        )
        state = jax.tree_util.tree_map(lambda x: x.astype(_float_or_int(x)), state)
        return observation.observe(self, state, params, jnp.zeros(()), jnp.ones(())), state

    def step_env(
        self, key: PRNGKey, state: LEMState, action: Action, params: LEMParams
    ) -> StepResult[LEMState]:
        """One market step: battery, grid, orders and clearing, settlement, reward, KPIs, next
        state (``jaxlem.envs.lem.stages``)."""
        k_tie, k_draw = jax.random.split(key)
        a, partner = stages.sanitize_action(self, action)
        t = state.t
        fit_t, util_base = state.fit[t], state.utility[t]
        last = t >= self.num_steps - 1

        bat = stages.battery_stage(self, state, a[:, 0], params)
        pos = stages.net_position(self, state, bat, util_base, params)
        util_t = stages.utility_price(self, pos.x, util_base, fit_t, params)
        book = stages.orders(a, pos.x, params)
        trades = stages.clearing(
            self, book, state, (fit_t, util_t), partner, pos.lmp, k_tie, params
        )
        money = stages.settle(self, pos, book, trades, bat, (fit_t, util_t), last, params)
        reward = stages.reward(money.profit, params)
        info = stages.kpis(
            state, pos, book, trades, money, bat, (fit_t, util_t, util_base), last, params
        )
        info["tie_key"] = jax.random.key_data(
            k_tie
        )  # replays the clearing (``trades.episode_trades``)

        state = stages.next_state(self, k_draw, state, book, trades, bat, pos.lmp, params)
        res = trades.result
        sd_ratio = res.supply / jnp.maximum(res.demand, EPS)
        obs = observation.observe(self, state, params, jnp.sum(pos.x), sd_ratio)
        return obs, state, reward, last, info

    # ---------------------------------------------------------------- the contract
    num_agent_types = pop.NUM_TYPES
    agent_type_names = ("consumer", "prosumer", "storage", "producer")

    def agent_types(self, params: LEMParams) -> Int[Array, " N"]:
        """[N] consumer 0, prosumer 1, storage 2, producer 3 (``params.agent_type``)."""
        return params.agent_type.astype(jnp.int32)

    def action_layout(self) -> ActionLayout:
        """Three continuous columns in [-1, 1]; with the partner stage a categorical column of
        N + 1 options (no partner, agent 0, ..., agent N-1)."""
        return ActionLayout(3, -1.0, 1.0, (self.num_agents + 1,) if self.partner_stage else ())

    def observation_columns(self) -> tuple[Column, ...]:
        return observation.columns(self.day_ahead_obs, self.global_obs)

    def action_columns(self) -> tuple[Column, ...]:
        return ACTION_COLUMNS + ((PARTNER_COLUMN,) if self.partner_stage else ())

    def evaluation(self) -> EvalSpec:
        return evaluation.SPEC

    @classmethod
    def from_scenario(cls, name: str, **kwargs: Any) -> LEMEnv:
        """The env of preset ``name`` (``scenarios.names()``); keyword static settings win over
        the preset's."""
        return cls(**{**scenarios.static_settings(name), **kwargs, "scenario": name})

    @cached_property
    def bank_rows(self) -> np.ndarray | None:
        """The bank time-major, [steps of the year + 1, PV kinds + demand kinds] (the first step
        repeated at the end, so a window of two steps never wraps)."""
        if self.bank is None:
            return None
        rows = np.concatenate([self.bank.pv, self.bank.demand]).T
        return np.concatenate([rows, rows[:1]]).astype(np.float32)


def _float_or_int(x: jax.Array) -> Any:
    return jnp.int32 if jnp.issubdtype(x.dtype, jnp.integer) else jnp.float32


def make_lem(scenario: str | None = None, **kwargs: Any) -> LEMEnv:
    """``jaxlem.make("lem-v0", ...)``: a preset by name, or an env from static settings."""
    if scenario:
        return LEMEnv.from_scenario(scenario, **kwargs)
    return LEMEnv(**kwargs)


def with_overrides(env: LEMEnv, **static: Any) -> LEMEnv:
    """A copy of ``env`` with other static settings (validated again)."""
    return dataclasses.replace(env, **static)
