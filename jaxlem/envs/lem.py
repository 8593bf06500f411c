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

Observation per agent (``[N, obs_dim]``; energies divided by the site's size ``(pv + demand +
dispatchable + battery kW) * dt``, prices by ``max_price``):
  0-2 hour of day (sin, cos), episode progress t / T; 3-6 PV and demand now, forecasts of the
  next step; 7 net position now; 8-9 state of charge, room left in the battery; 10-13 FiT and
  utility price now and at the next step; 14-15 last clearing price and P2P volume; 16-17 own
  last P2P energy and average P2P price; 18 reputation; 19 has a battery; 20-22 day of the year
  (sin, cos), weekend.
  With ``day_ahead_obs`` (default; the DSO publishes its tariff a day ahead): 23-25 highest and
  lowest utility price and highest FiT over the rest of the episode; 26 steps until the highest
  utility price / T; 27-28 noisy forecasts of own PV and demand over the rest of the episode
  (per size, / (T / 4)). With ``global_obs``: 4 community features at the end.

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
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from functools import cached_property

import jax
import jax.numpy as jnp
import numpy as np
from flax import struct

from jaxlem import battery, profiles
from jaxlem.envs import population as pop
from jaxlem.envs.base import Environment
from jaxlem.envs.spaces import Box
from jaxlem.grid import Network, distance_km, load_case, solve_dcopf
from jaxlem.market import clear, dso, pricing
from jaxlem.market.dso import KWH_PER_MWH

GRID_MODES = ("none", "capacity", "losses", "dcopf")
PROFILE_SOURCES = ("bank", "synthetic")
TARIFFS = ("tou", "fixed")
BASE_OBS_DIM = 23
AHEAD_OBS_DIM = 6
GLOBAL_OBS_DIM = 4
_EPS = 1e-6
DUST_FRAC = 1e-5  # P2P energy below this share of a site's size (kWh per step) is rounding dust


@struct.dataclass
class LEMParams:
    """All numbers of one scenario. Per-agent arrays are [N] (units in the field comments)."""

    # agents [N]
    pv_kw: jax.Array  # PV capacity, kW
    demand_kw: jax.Array  # mean demand, kW
    disp_kw: jax.Array  # dispatchable capacity, kW
    disp_cost: jax.Array  # dispatchable marginal cost, currency/MWh
    bat_kwh: jax.Array  # battery energy capacity, kWh (0 = none)
    bat_kw: jax.Array  # battery power limit, kW
    soc_min: jax.Array
    soc_max: jax.Array
    soc_init: jax.Array  # SOC at reset, fraction of capacity
    eta_c: jax.Array
    eta_d: jax.Array
    self_discharge: jax.Array  # fraction of energy above the floor lost per step
    degradation_cost: jax.Array  # currency per MWh of throughput
    export_limit_kw: jax.Array  # per-site export limit (DSO intervention), inf = none
    node: jax.Array  # int32 bus of the network
    feeder: jax.Array  # int32 feeder index in [0, num_feeders)
    pv_kind: jax.Array  # int32 PV orientation (row of the source's PV kinds); -1 = random per reset
    demand_kind: jax.Array  # int32 demand kind (row of the source's demand kinds); -1 = random
    agent_type: jax.Array  # int32 label (0 consumer, 1 prosumer, 2 storage, 3 producer)
    # profiles
    pv_table: jax.Array  # [K, T] per-unit PV shapes (profile_source="synthetic")
    demand_table: jax.Array  # [K, T] per-unit demand shapes, mean ~1 (profile_source="synthetic")
    day_lo: jax.Array  # first day of the year an episode may start on (0 = 1 January)
    day_hi: jax.Array  # days are drawn uniformly in [day_lo, day_hi), at most 365
    cloudiness: jax.Array  # daily PV factor 1 - cloudiness * U(0, 1) (synthetic source only)
    demand_day_std: jax.Array
    pv_noise: jax.Array
    demand_noise: jax.Array
    forecast_noise: jax.Array
    # DSO tariff
    min_price: jax.Array
    max_price: jax.Array
    tariff_gap: jax.Array  # FiT + gap * (max - min) <= utility
    tariff_jitter: jax.Array
    fit_profile: jax.Array  # [T] FiT used when tariff="fixed"
    utility_profile: jax.Array  # [T] utility price used when tariff="fixed"
    # market
    k: jax.Array
    reputation_rate: jax.Array
    p2p_fee: jax.Array  # currency/MWh of delivered P2P energy, split between both sides
    p2p_fee_per_km: jax.Array
    loss_per_km: jax.Array  # fraction per km (grid_mode='losses')
    loss_cap: jax.Array  # maximum loss fraction of one trade
    # DSO interventions and grid
    dynamic_tariff_slope: jax.Array
    imbalance_penalty: jax.Array  # currency/MWh on residual energy exchanged with the DSO
    shed_penalty: jax.Array  # currency/MWh of shed load
    import_limit_kw: jax.Array  # connection point (grid_mode='capacity')
    export_limit_kw_total: jax.Array
    feeder_limit_kw: jax.Array  # [F] symmetric per-feeder limit (grid_mode='capacity')
    p2p_limit_kw: jax.Array  # P2P transfer capacity (grid_mode='capacity')
    node_distance_km: jax.Array  # [M, M]
    # reward
    reward_scale: jax.Array
    coop_alpha: jax.Array
    terminal_soc_value: jax.Array  # currency/MWh of stored energy at the end
    # grid_mode='dcopf': the feeder, a uniform line limit and the DSO's redispatch costs
    network: Network | None = None
    line_limit_kw: jax.Array | None = None
    curtail_cost: jax.Array | None = None  # currency/MWh paid to curtail an export


@struct.dataclass
class LEMState:
    t: jax.Array  # int32 step index
    energy: jax.Array  # [N] battery energy, kWh
    gen: jax.Array  # [N] PV energy this step, kWh
    demand: jax.Array  # [N] demand this step, kWh
    forecast_gen: jax.Array  # [N] noisy forecast of next step's PV, kWh
    forecast_demand: jax.Array  # [N] noisy forecast of next step's demand, kWh
    forecast_gen_rest: jax.Array  # [N] noisy forecast of PV over the rest of the episode, kWh
    forecast_demand_rest: jax.Array  # [N] the same for demand, kWh
    pv_day: jax.Array  # [N] daily PV factor
    demand_day: jax.Array  # [N] daily demand factor
    pv_kind: jax.Array  # [N] PV orientation in use
    demand_kind: jax.Array  # [N] demand kind in use
    day: jax.Array  # int32 day of the year of the episode's first step
    fit: jax.Array  # [T] FiT, currency/MWh
    utility: jax.Array  # [T] utility price, currency/MWh
    last_price: jax.Array  # last clearing price
    last_volume: jax.Array  # last P2P volume, kWh
    last_matched: jax.Array  # [N] own last P2P energy, kWh
    last_own_price: jax.Array  # [N] own last average P2P price
    reputation: jax.Array  # [N] in [0, 1]
    lmp: jax.Array | None = None  # [M] last LMPs, currency/MWh (grid_mode='dcopf')


@dataclass(frozen=True)
class LEMEnv(Environment):
    """Local energy market. Static configuration only; numbers live in ``LEMParams``."""

    num_agents: int = 10
    num_steps: int = 24
    dt_h: float = 1.0
    rule: str = "average"
    grid_mode: str = "none"
    partner_stage: bool = False
    use_reputation: bool = False
    num_feeders: int = 1
    global_obs: bool = False
    day_ahead_obs: bool = True  # observe the rest of the day's tariff and PV/demand forecasts
    population: pop.Population = field(default_factory=pop.Population)
    scenario: str = ""  # preset name (jaxlem.scenarios); "" = agents drawn from ``population``
    tariff: str = "tou"  # "tou": random time-of-use blocks per reset; "fixed": params profiles
    grid_case: str = "ieee34"  # feeder of grid_mode='dcopf' (a bundled case)
    profile_source: str = "bank"  # "bank": the profile bank; "synthetic": the params tables
    profile_bank: str = "default"  # a shipped bank's name or the path of a jaxlem-profiles .npz

    # the controller a residual learner starts from (jaxlem.policies): self-consumption storage
    reference_policy = "rule_based_battery"

    def __post_init__(self):
        from jaxlem import checks

        checks.check_int("num_agents", self.num_agents, 1)
        checks.check_int("num_steps", self.num_steps, 1)
        checks.check_range("dt_h", self.dt_h, 0.0, 24.0, lo_open=True)
        checks.check_choice("rule", self.rule, pricing.RULES)
        checks.check_choice("grid_mode", self.grid_mode, GRID_MODES)
        checks.check_int("num_feeders", self.num_feeders, 1)
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
        return np.asarray(self._global_defaults()["pv_table"], np.float64).mean(axis=-1)

    def draw_population(self, key: jax.Array) -> dict:
        """Per-agent fields of one community drawn from ``population`` (pure JAX, vmappable)."""
        return pop.sample(key, self.num_agents, self.population, self.pv_kinds, self.demand_kinds)

    # ---------------------------------------------------------------- params
    @cached_property
    def default_params(self) -> LEMParams:
        if self.scenario:
            from jaxlem import scenarios

            return scenarios.preset_params(self)
        return self.make_params(jax.random.PRNGKey(0))

    def make_params(self, key: jax.Array, **overrides) -> LEMParams:
        """Params with agents drawn from ``population`` by ``key``; keyword overrides, validated."""
        base = self._spread_nodes(self.draw_population(key), overrides)
        values = {**self._global_defaults(), **base, **overrides}
        params = LEMParams(
            **{k: v if isinstance(v, Network) else jnp.asarray(v) for k, v in values.items()}
        )
        self.check_params(params)
        return params

    def sample_params(self, key: jax.Array, num: int) -> LEMParams:
        """A scenario bank: ``num`` independently drawn communities on a leading axis (a preset
        draws the sizes its definition gives as ranges, per scenario)."""
        if self.scenario:
            from jaxlem import scenarios

            return scenarios.preset_bank(self, key, num)
        keys = jax.random.split(key, num)
        return self.assemble_bank(jax.vmap(self.draw_population)(keys), num)

    def assemble_bank(self, agents: dict, num: int, **overrides) -> LEMParams:
        """A bank of ``num`` scenarios from per-agent fields ``agents`` (each [num, N]) and
        ``overrides`` of any field (broadcast over the bank), the rest at its default."""
        agents = self._spread_nodes(agents, overrides)

        def spread(values: dict) -> dict:
            return {
                k: jax.tree_util.tree_map(lambda a: jnp.broadcast_to(a, (num, *jnp.shape(a))), v)
                if isinstance(v, Network)
                else jnp.broadcast_to(jnp.asarray(v), (num, *np.shape(v)))
                for k, v in values.items()
            }

        agents = {k: jnp.asarray(v) for k, v in agents.items()}
        params = LEMParams(**{**spread(self._global_defaults()), **agents, **spread(overrides)})
        self.check_params(params)
        return params

    def _global_defaults(self) -> dict:
        t, dt = self.num_steps, self.dt_h
        f32 = np.float32
        dc = self.grid_mode == "dcopf"
        net = self._feeder() if dc else None
        fit0, util0 = (
            np.asarray(v, f32)
            for v in profiles.tou_tariff(jax.random.PRNGKey(0), t, dt, 30.0, 300.0, 0.05, 0.0)
        )
        pv_table, demand_table = profiles.synthetic_tables(t, dt)
        return dict(
            pv_table=pv_table,
            demand_table=demand_table,
            day_lo=f32(0.0),
            day_hi=f32(365.0),
            cloudiness=f32(0.4),
            demand_day_std=f32(0.15),
            pv_noise=f32(0.1),
            demand_noise=f32(0.1),
            forecast_noise=f32(0.05),
            min_price=f32(30.0),
            max_price=f32(300.0),
            tariff_gap=f32(0.05),
            tariff_jitter=f32(1.0),
            fit_profile=fit0,
            utility_profile=util0,
            k=f32(0.5),
            reputation_rate=f32(0.1),
            p2p_fee=f32(0.0),
            p2p_fee_per_km=f32(0.0),
            loss_per_km=f32(0.01),
            loss_cap=f32(0.2),
            dynamic_tariff_slope=f32(0.0),
            imbalance_penalty=f32(0.0),
            shed_penalty=f32(1000.0),
            import_limit_kw=f32(np.inf),
            export_limit_kw_total=f32(np.inf),
            feeder_limit_kw=np.full((self.num_feeders,), np.inf, f32),
            p2p_limit_kw=f32(np.inf),
            node_distance_km=np.zeros((1, 1), f32) if not dc else distance_km(net).astype(f32),
            reward_scale=f32(1.0),
            coop_alpha=f32(0.0),
            terminal_soc_value=f32(0.0),
            **(dict(network=net, line_limit_kw=f32(np.inf), curtail_cost=f32(10.0)) if dc else {}),
        )

    def _feeder(self) -> Network:
        """The dcopf feeder: bundled case, loads zeroed (the agents are the load), supply point
        able to take reverse flow."""
        net = load_case(self.grid_case)
        return net.replace(
            bus_load_mw=jnp.zeros_like(net.bus_load_mw),
            gen_pmin_mw=-jnp.maximum(net.gen_pmax_mw, 0.0),
        )

    def _spread_nodes(self, base: dict, overrides: dict) -> dict:
        """dcopf: agents spread over the feeder's buses other than the supply point."""
        if self.grid_mode != "dcopf" or "node" in overrides:
            return base
        nb = load_case(self.grid_case).num_buses
        node = 1 + np.arange(self.num_agents) % max(nb - 1, 1)
        return {
            **base,
            "node": jnp.broadcast_to(jnp.asarray(node, jnp.int32), np.shape(base["node"])),
        }

    def check_params(self, params: LEMParams) -> None:
        """Reject bad numbers in Python with a ValueError naming field, value and allowed range."""
        from jaxlem import checks

        p = jax.tree_util.tree_map(np.asarray, params)
        n = self.num_agents
        for name in ("pv_kw", "demand_kw", "disp_kw", "bat_kwh", "bat_kw"):
            arr = checks.check_range(name, getattr(p, name), 0.0, np.inf, hi_open=True)
            if arr.shape[-1:] != (n,):
                raise ValueError(
                    f"{name}: shape {arr.shape}; allowed: last axis = num_agents = {n}"
                )
        checks.check_range("disp_cost", p.disp_cost, 0.0)
        checks.check_range("soc_min", p.soc_min, 0.0, 1.0)
        checks.check_range("soc_max", p.soc_max, 0.0, 1.0)
        checks.check_order("soc_min", p.soc_min, "soc_max", p.soc_max)
        checks.check_range("soc_init", p.soc_init, 0.0, 1.0)
        checks.check_range("eta_c", p.eta_c, 0.0, 1.0, lo_open=True)
        checks.check_range("eta_d", p.eta_d, 0.0, 1.0, lo_open=True)
        checks.check_range("self_discharge", p.self_discharge, 0.0, 1.0)
        checks.check_range("degradation_cost", p.degradation_cost, 0.0)
        checks.check_range("export_limit_kw", p.export_limit_kw, 0.0)
        m = p.node_distance_km.shape[-1]
        checks.check_range("node", p.node, 0, m - 1)
        checks.check_range("feeder", p.feeder, 0, self.num_feeders - 1)
        n_pv, n_dem = self._num_kinds(p)
        checks.check_range("pv_kind", p.pv_kind, -1, n_pv - 1)
        checks.check_range("demand_kind", p.demand_kind, -1, n_dem - 1)
        checks.check_range("day_lo", p.day_lo, 0.0, 364.0)
        checks.check_range("day_hi", p.day_hi, 1.0, 365.0)
        checks.check_order("day_lo", p.day_lo, "day_hi", p.day_hi, strict=True)
        for name in ("pv_table", "demand_table"):
            arr = checks.check_range(name, getattr(p, name), 0.0, np.inf, hi_open=True)
            if arr.shape[-1] != self.num_steps:
                raise ValueError(
                    f"{name}: profile length {arr.shape[-1]}; allowed: num_steps = {self.num_steps}"
                )
        checks.check_range("cloudiness", p.cloudiness, 0.0, 1.0)
        for name in ("demand_day_std", "pv_noise", "demand_noise", "forecast_noise"):
            checks.check_range(name, getattr(p, name), 0.0, 10.0)
        checks.check_range("min_price", p.min_price, 0.0, np.inf, hi_open=True)
        checks.check_range("max_price", p.max_price, 0.0, np.inf, lo_open=True, hi_open=True)
        checks.check_order("min_price", p.min_price, "max_price", p.max_price, strict=True)
        checks.check_range("tariff_gap", p.tariff_gap, 0.0, 1.0)
        checks.check_range("tariff_jitter", p.tariff_jitter, 0.0, 10.0)
        for name in ("fit_profile", "utility_profile"):
            arr = checks.check_range(name, getattr(p, name), 0.0, np.inf, hi_open=True)
            if arr.shape[-1] != self.num_steps:
                raise ValueError(
                    f"{name}: length {arr.shape[-1]}; allowed: num_steps = {self.num_steps}"
                )
        gap = p.tariff_gap[..., None] * (p.max_price - p.min_price)[..., None]
        checks.check_order(
            "fit_profile + tariff_gap * (max_price - min_price)",
            p.fit_profile + gap,
            "utility_profile",
            p.utility_profile,
        )
        checks.check_range("k", p.k, 0.0, 1.0)
        checks.check_range("reputation_rate", p.reputation_rate, 0.0, 1.0)
        for name in ("p2p_fee", "p2p_fee_per_km", "loss_per_km", "dynamic_tariff_slope"):
            checks.check_range(name, getattr(p, name), 0.0, np.inf, hi_open=True)
        checks.check_range("loss_cap", p.loss_cap, 0.0, 1.0, hi_open=True)
        for name in ("imbalance_penalty", "shed_penalty", "terminal_soc_value"):
            checks.check_range(name, getattr(p, name), 0.0, np.inf, hi_open=True)
        for name in ("import_limit_kw", "export_limit_kw_total", "feeder_limit_kw", "p2p_limit_kw"):
            checks.check_range(name, getattr(p, name), 0.0)
        checks.check_range("node_distance_km", p.node_distance_km, 0.0, np.inf, hi_open=True)
        checks.check_range("reward_scale", p.reward_scale, 0.0, np.inf, lo_open=True, hi_open=True)
        checks.check_range("coop_alpha", p.coop_alpha, 0.0, 1.0)
        if self.grid_mode == "dcopf":
            checks.check_range("line_limit_kw", p.line_limit_kw, 0.0, np.inf, lo_open=True)
            checks.check_range("curtail_cost", p.curtail_cost, 0.0, np.inf, hi_open=True)

    # ---------------------------------------------------------------- spaces
    @property
    def act_dim(self) -> int:
        return 4 if self.partner_stage else 3

    @property
    def obs_dim(self) -> int:
        return (
            BASE_OBS_DIM
            + (AHEAD_OBS_DIM if self.day_ahead_obs else 0)
            + (GLOBAL_OBS_DIM if self.global_obs else 0)
        )

    def action_space(self, params: LEMParams | None = None) -> Box:
        """Continuous [-1, 1]^3 per agent; with the partner stage a 4th column holds the partner
        index in [-1, N-1] (rounded to an integer)."""
        if self.partner_stage:
            return Box(-1.0, float(self.num_agents - 1), (self.num_agents, 4))
        return Box(-1.0, 1.0, (self.num_agents, 3))

    def observation_space(self, params: LEMParams | None = None) -> Box:
        return Box(-np.inf, np.inf, (self.num_agents, self.obs_dim))

    def site_size(self, params: LEMParams) -> jax.Array:
        """[N] a site's size, ``(pv + demand + dispatchable + battery kW) * dt`` (kWh per step):
        the scale of its energy observations and of the dust tolerance."""
        return (params.pv_kw + params.demand_kw + params.disp_kw + params.bat_kw) * self.dt_h

    def action_mask(self, params: LEMParams | None = None) -> jax.Array:
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
    def reset_env(self, key: jax.Array, params: LEMParams) -> tuple[jax.Array, LEMState]:
        n, t_len = self.num_agents, self.num_steps
        k_kind, k_day, k_tariff, k_draw = jax.random.split(key, 4)
        n_pv, n_dem = self._num_kinds(params)
        # two random words per reset: one seeds a per-agent integer hash that picks random
        # kinds (a per-agent PRNG draw would cost as much as the rest of the reset), one the day
        words = jax.random.bits(k_kind, (2,), jnp.uint32)
        h = _hash32(words[0] ^ (jnp.arange(n, dtype=jnp.uint32) * jnp.uint32(0x9E3779B9)))
        rand_pv = ((h & 0xFFFF) % jnp.uint32(n_pv)).astype(jnp.int32)
        rand_dem = ((h >> 16) % jnp.uint32(n_dem)).astype(jnp.int32)
        pv_kind = jnp.where(params.pv_kind >= 0, params.pv_kind, rand_pv)
        demand_kind = jnp.where(params.demand_kind >= 0, params.demand_kind, rand_dem)
        u_day = (words[1] >> 8).astype(jnp.float32) * (1.0 / (1 << 24))  # uniform in [0, 1)
        day = jnp.floor(params.day_lo + u_day * (params.day_hi - params.day_lo))
        day = jnp.clip(day, 0, 364).astype(jnp.int32)
        # the bank's weather is real: no extra daily cloud factor on top of it
        cloud = params.cloudiness if self.bank is None else 0.0 * params.cloudiness
        pv_day, dem_day = profiles.draw_day_factors(k_day, n, cloud, params.demand_day_std)
        if self.tariff == "fixed":
            fit, util = params.fit_profile, params.utility_profile
        else:
            fit, util = profiles.tou_tariff(
                k_tariff,
                t_len,
                self.dt_h,
                params.min_price,
                params.max_price,
                params.tariff_gap,
                params.tariff_jitter,
            )
        t0 = jnp.zeros((), jnp.int32)
        kinds = (pv_kind, demand_kind, day)
        gen, dem, fc_gen, fc_dem, fc_rest = self._draw_step(
            k_draw, t0, kinds, pv_day, dem_day, params
        )
        mid = 0.5 * (fit[0] + util[0])
        state = LEMState(
            t=t0,
            energy=params.soc_init * params.bat_kwh,
            gen=gen,
            demand=dem,
            forecast_gen=fc_gen,
            forecast_demand=fc_dem,
            forecast_gen_rest=fc_rest[0],
            forecast_demand_rest=fc_rest[1],
            pv_day=pv_day,
            demand_day=dem_day,
            pv_kind=pv_kind,
            demand_kind=demand_kind,
            day=day,
            fit=fit,
            utility=util,
            last_price=mid,
            last_volume=jnp.zeros(()),
            last_matched=jnp.zeros((n,)),
            last_own_price=jnp.full((n,), mid),
            reputation=jnp.full((n,), 0.5),
            lmp=None if params.network is None else jnp.full((params.network.num_buses,), mid),
        )
        state = jax.tree_util.tree_map(lambda x: x.astype(_float_or_int(x)), state)
        return self._obs(state, params, jnp.zeros(()), jnp.ones(())), state

    def _num_kinds(self, params: LEMParams) -> tuple[int, int]:
        if self.bank is not None:
            return len(self.bank.pv_kinds), len(self.bank.demand_kinds)
        return params.pv_table.shape[-2], params.demand_table.shape[-2]

    @cached_property
    def _bank_rows(self) -> np.ndarray | None:
        """The bank time-major, [steps of the year + 1, PV kinds + demand kinds] (the first step
        repeated at the end, so a window of two steps never wraps)."""
        if self.bank is None:
            return None
        rows = np.concatenate([self.bank.pv, self.bank.demand]).T
        return np.concatenate([rows, rows[:1]]).astype(np.float32)

    def _unit_profiles(self, kinds, t_now, t_next, params: LEMParams):
        """Per-unit PV and demand [N] of every agent at the episode steps ``t_now`` and
        ``t_next``: ``(pv_now, demand_now, pv_next, demand_next)``. Every agent shares the day,
        so the values of all kinds at the two steps are one contiguous slice of the time-major
        bank; each agent then takes its kind's entry from that short vector."""
        pv_kind, demand_kind, day = kinds
        if self.bank is None:
            pv_t, dem_t = params.pv_table, params.demand_table  # [K, T]
            pv_now, pv_next = pv_t[:, t_now], pv_t[:, t_next]
            dem_now, dem_next = dem_t[:, t_now], dem_t[:, t_next]
            pv_kind, demand_kind = pv_kind % pv_t.shape[0], demand_kind % dem_t.shape[0]
        else:
            n_pv, steps = self.bank.pv.shape
            start = (day * self.bank.steps_per_day + t_now) % steps
            w = jax.lax.dynamic_slice_in_dim(jnp.asarray(self._bank_rows), start, 2)  # [2, K]
            nxt = jnp.where(t_next > t_now, w[1], w[0])
            pv_now, pv_next, dem_now, dem_next = w[0, :n_pv], nxt[:n_pv], w[0, n_pv:], nxt[n_pv:]

        return tuple(
            jnp.take(values, kind, mode="clip")
            for values, kind in (
                (pv_now, pv_kind),
                (dem_now, demand_kind),
                (pv_next, pv_kind),
                (dem_next, demand_kind),
            )
        )

    def _rest_profiles(self, kinds, t, params):
        """Per-unit PV and demand [N] summed over the episode's steps after ``t`` (the
        day-ahead forecast's expected shape; zeros with ``day_ahead_obs`` off)."""
        pv_kind, demand_kind, day = kinds
        if not self.day_ahead_obs:
            z = jnp.zeros(pv_kind.shape, jnp.float32)
            return z, z
        later = (jnp.arange(self.num_steps) > t).astype(jnp.float32)  # [T]
        if self.bank is None:
            pv_rest = params.pv_table @ later
            dem_rest = params.demand_table @ later
            pv_kind, demand_kind = pv_kind % pv_rest.shape[0], demand_kind % dem_rest.shape[0]
        else:
            n_pv, steps = self.bank.pv.shape
            idx = (day * self.bank.steps_per_day + jnp.arange(self.num_steps)) % steps
            rest = later @ jnp.take(jnp.asarray(self._bank_rows), idx, axis=0)  # [K]
            pv_rest, dem_rest = rest[:n_pv], rest[n_pv:]
        return (
            jnp.take(pv_rest, pv_kind, mode="clip"),
            jnp.take(dem_rest, demand_kind, mode="clip"),
        )

    def _draw_step(self, key, t, kinds, pv_day, dem_day, params):
        """Realised PV and demand energy (kWh) of step ``t`` for every agent, noisy forecasts
        of step ``t + 1`` (its expected value times ``1 + forecast_noise * N(0,1)``) and of the
        totals over the steps after ``t`` (same noise model)."""
        k_gen, k_dem, k_fg, k_fd, k_rest = jax.random.split(key, 5)
        dt = self.dt_h
        t_now = jnp.minimum(t, self.num_steps - 1)
        t_next = jnp.minimum(t + 1, self.num_steps - 1)
        pv_now, dem_now, pv_next, dem_next = self._unit_profiles(kinds, t_now, t_next, params)
        pv_u = profiles.sample_step(k_gen, pv_now, pv_day, params.pv_noise)
        dem_u = profiles.sample_step(k_dem, dem_now, dem_day, params.demand_noise)
        fc_pv = profiles.sample_step(k_fg, pv_next, pv_day, params.forecast_noise)
        fc_dem = profiles.sample_step(k_fd, dem_next, dem_day, params.forecast_noise)
        pv_rest, dem_rest = self._rest_profiles(kinds, t, params)
        if self.day_ahead_obs:
            k_rg, k_rd = jax.random.split(k_rest)
            pv_rest = profiles.sample_step(k_rg, pv_rest, pv_day, params.forecast_noise)
            dem_rest = profiles.sample_step(k_rd, dem_rest, dem_day, params.forecast_noise)
        return (
            pv_u * params.pv_kw * dt,
            dem_u * params.demand_kw * dt,
            fc_pv * params.pv_kw * dt,
            fc_dem * params.demand_kw * dt,
            (pv_rest * params.pv_kw * dt, dem_rest * params.demand_kw * dt),
        )

    def _sanitize_action(self, action: jax.Array) -> tuple[jax.Array, jax.Array | None]:
        a = jnp.asarray(action, jnp.float32)
        a = jnp.where(jnp.isfinite(a), a, 0.0)
        cont = jnp.clip(a[:, :3], -1.0, 1.0)
        partner = None
        if self.partner_stage:
            p = jnp.clip(jnp.round(a[:, 3]), -1.0, self.num_agents - 1)
            partner = jnp.where(jnp.isfinite(action[:, 3]), p, -1.0).astype(jnp.int32)
        return cont, partner

    def step_env(self, key, state: LEMState, action, params: LEMParams):
        dt = self.dt_h
        k_tie, k_draw = jax.random.split(key)
        a, partner = self._sanitize_action(action)
        t = state.t
        fit_t = state.fit[t]
        util_base = state.utility[t]

        # 1. battery set-point, clipped to power and SOC window
        bat = battery.step(
            state.energy,
            a[:, 0] * params.bat_kw * dt,
            params.bat_kwh,
            params.bat_kw,
            params.soc_min,
            params.soc_max,
            params.eta_c,
            params.eta_d,
            dt,
            params.self_discharge,
            params.degradation_cost / KWH_PER_MWH,
        )
        # 2. net position; dispatchable capacity counts as available supply
        disp_avail = params.disp_kw * dt
        x = state.gen + disp_avail - state.demand - bat.charge + bat.discharge
        # per-site export limit (DSO intervention), then physical grid limits
        curtail = jnp.maximum(x - params.export_limit_kw * dt, 0.0)
        shed = jnp.zeros_like(x)
        if self.grid_mode == "capacity":
            curtail, shed = self._capacity_limits(x - curtail, curtail, params)
        grid_info, lmp = {}, None
        if self.grid_mode == "dcopf":
            c_dc, s_dc, lmp, grid_info = self._redispatch(x - curtail, util_base, params)
            curtail, shed = curtail + c_dc, shed + s_dc
        x = x - curtail + shed
        community_import = jnp.maximum(-jnp.sum(x), 0.0)
        util_t = dso.dynamic_utility_price(
            util_base,
            community_import,
            jnp.sum(params.demand_kw) * dt,
            params.dynamic_tariff_slope,
        )
        util_t = jnp.maximum(util_t, fit_t)

        # 3-4. orders and clearing
        price = params.min_price + 0.5 * (a[:, 1] + 1.0) * (params.max_price - params.min_price)
        frac = 0.5 * (a[:, 2] + 1.0)
        is_buy = x < 0
        qty = jnp.where(is_buy, -x, frac * x)
        res = clear(
            price,
            qty,
            is_buy,
            self.rule,
            reference_price=state.last_price,
            fit=fit_t,
            utility=util_t,
            k=params.k,
            key=k_tie,
            reputation=state.reputation if self.use_reputation else None,
            partner=partner,
            pair_terms=self._pair_terms(params, lmp),
        )
        matched, payment, loss, fee = res.matched_qty, res.payment, res.loss, res.fee
        if self.grid_mode == "capacity":
            lim = params.p2p_limit_kw * dt
            scale = jnp.where(res.volume > lim, lim / jnp.maximum(res.volume, _EPS), 1.0)
            matched, payment, loss, fee = (v * scale for v in (matched, payment, loss, fee))
        volume = jnp.sum(jnp.where(is_buy, matched, 0.0))

        # 5. residuals to the DSO; unsold dispatchable energy is not produced when FiT < cost
        p2p_bought = jnp.where(is_buy, matched - loss, 0.0)
        p2p_sold = jnp.where(is_buy, 0.0, matched)
        dso_bought = jnp.where(is_buy, -x - p2p_bought, 0.0)
        dso_sold = jnp.where(is_buy, 0.0, x - matched)
        unused = jnp.where(fit_t < params.disp_cost, jnp.minimum(disp_avail, dso_sold), 0.0)
        dso_sold = dso_sold - unused
        disp_out = disp_avail - unused

        # 7. money (currency)
        dso_money = dso.settle(dso_sold, dso_bought, fit_t, util_t)
        penalty = (
            params.imbalance_penalty * (dso_sold + dso_bought) + params.shed_penalty * shed
        ) / KWH_PER_MWH
        disp_cost = params.disp_cost * disp_out / KWH_PER_MWH
        fee_money = fee / KWH_PER_MWH
        p2p_money = -payment / KWH_PER_MWH
        money = p2p_money + dso_money - fee_money - penalty
        new_energy = bat.energy
        last = t >= self.num_steps - 1
        terminal = jnp.where(
            last,
            params.terminal_soc_value
            * jnp.maximum(new_energy - params.soc_min * params.bat_kwh, 0.0)
            / KWH_PER_MWH,
            0.0,
        )
        profit = money - bat.degradation_cost - disp_cost + terminal
        reward = profit * params.reward_scale
        reward = (1.0 - params.coop_alpha) * reward + params.coop_alpha * jnp.mean(reward)

        # KPIs (baseline: same physics, every residual traded with the DSO)
        base_money = dso.settle(jnp.maximum(x, 0.0), jnp.maximum(-x, 0.0), fit_t, util_t)
        community_cost = -jnp.sum(money)
        baseline_cost = -jnp.sum(base_money)
        total_demand = jnp.sum(state.demand)
        total_gen = jnp.sum(state.gen + disp_out)
        imports = jnp.sum(dso_bought)
        exports = jnp.sum(dso_sold)
        info = {
            "terminated": last,
            "truncated": jnp.zeros((), bool),
            "money": money,
            "profit": profit,
            "p2p_payment": payment / KWH_PER_MWH,
            "gen_kwh": state.gen + disp_out,
            "pv_kwh": state.gen,
            "demand_kwh": state.demand,
            "charge_kwh": bat.charge,
            "discharge_kwh": bat.discharge,
            "p2p_bought_kwh": p2p_bought,
            "p2p_sold_kwh": p2p_sold,
            "dso_bought_kwh": dso_bought,
            "dso_sold_kwh": dso_sold,
            "curtail_kwh": curtail,
            "shed_kwh": shed,
            "loss_kwh": loss,
            "soc": new_energy / jnp.maximum(params.bat_kwh, _EPS),
            "dso_net_money": -jnp.sum(dso_money - fee_money - penalty),
            "clearing_price": res.clearing_price,
            "p2p_volume_kwh": volume,
            "p2p_share": volume / jnp.maximum(total_demand, _EPS),
            "supply_kwh": res.supply,
            "bid_kwh": res.demand,
            "liquidity": volume / jnp.maximum(res.supply, _EPS),
            "spread": res.spread,
            "community_cost": community_cost,
            "baseline_cost": baseline_cost,
            "savings": baseline_cost - community_cost,
            "import_kwh": imports,
            "export_kwh": exports,
            "net_import_kwh": imports - exports,
            "self_sufficiency": jnp.clip(1.0 - imports / jnp.maximum(total_demand, _EPS), 0, 1),
            "self_consumption": jnp.clip(1.0 - exports / jnp.maximum(total_gen, _EPS), 0, 1),
            "battery_throughput_kwh": jnp.sum(bat.throughput),
            "fit": fit_t,
            "utility": util_t,
            "utility_base": util_base,
            **grid_info,
        }

        # 8. next state and observation
        t_next = t + 1
        gen, dem, fc_gen, fc_dem, fc_rest = self._draw_step(
            k_draw,
            t_next,
            (state.pv_kind, state.demand_kind, state.day),
            state.pv_day,
            state.demand_day,
            params,
        )
        # a match below the dust tolerance (float rounding of a net position that is zero) does
        # not move the price features: its price is the ratio of two rounding errors
        size = self.site_size(params)
        real = matched > DUST_FRAC * size
        own_price = jnp.where(
            real, jnp.abs(payment) / jnp.maximum(matched - loss, _EPS), state.last_own_price
        )
        real_volume = volume > DUST_FRAC * jnp.sum(size)
        fill = jnp.where(qty > 0, matched / jnp.maximum(qty, _EPS), 0.0)
        rep = jnp.where(
            qty > 0,
            (1.0 - params.reputation_rate) * state.reputation + params.reputation_rate * fill,
            state.reputation,
        )
        state = state.replace(
            t=t_next.astype(jnp.int32),
            energy=new_energy,
            gen=gen,
            demand=dem,
            forecast_gen=fc_gen,
            forecast_demand=fc_dem,
            forecast_gen_rest=fc_rest[0],
            forecast_demand_rest=fc_rest[1],
            last_price=jnp.where(real_volume, res.clearing_price, state.last_price),
            last_volume=volume,
            last_matched=matched,
            last_own_price=own_price,
            reputation=jnp.clip(rep, 0.0, 1.0),
            lmp=lmp,
        )
        obs = self._obs(state, params, jnp.sum(x), res.supply / jnp.maximum(res.demand, _EPS))
        return obs, state, reward, last, info

    def _capacity_limits(self, x, curtail, params):
        """Feeder limits, then the connection point: excess export curtails exporters pro rata,
        excess import sheds importers pro rata (all in kWh per step)."""
        dt = self.dt_h
        exp_amt, imp_amt = jnp.maximum(x, 0.0), jnp.maximum(-x, 0.0)
        f = self.num_feeders
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

    def _pair_terms(self, params: LEMParams, lmp=None):
        """Distance-based loss fraction (grid_mode='losses', capped) and network fee per pair;
        under 'dcopf' the fee adds the LMP difference buyer bus - seller bus (when positive)."""
        losses = self.grid_mode == "losses"

        def terms(buyer, seller):
            nb = params.node[buyer]
            ns = jnp.where(seller >= 0, params.node[jnp.maximum(seller, 0)], 0)
            d = params.node_distance_km[nb, ns]
            lossf = jnp.minimum(params.loss_cap, params.loss_per_km * d) if losses else 0.0 * d
            fee = params.p2p_fee + params.p2p_fee_per_km * d
            if lmp is not None:
                fee = fee + jnp.maximum(lmp[nb] - lmp[ns], 0.0)
            return lossf, fee

        return terms

    def _redispatch(self, x, utility, params: LEMParams):
        """grid_mode='dcopf': the agents' net positions [N] (kWh per step) are injections on
        their buses; a DC-OPF in which the supply point buys at the utility price keeps line
        flows within limits, curtailing exports (``curtail_cost``) or shedding imports
        (``shed_penalty``) where it must. Returns per-agent (curtail, shed) kWh, LMPs and KPIs.
        P2P trades are financial, so the physical injections are the same before and after
        the market; the redispatch therefore runs before clearing. The DC model ignores
        resistance (a coarse model on r/x > 1 feeders)."""
        net = params.network
        m = net.num_buses
        scale = 1.0 / (self.dt_h * KWH_PER_MWH)  # kWh per step -> MW
        inj_mw = jax.ops.segment_sum(x, params.node, num_segments=m) * scale
        limit = jnp.minimum(net.branch_limit_mw, params.line_limit_kw / KWH_PER_MWH)
        supply = net.replace(gen_c1=jnp.broadcast_to(utility, net.gen_c1.shape))
        sol = solve_dcopf(
            supply,
            -inj_mw,
            line_limit_mw=limit,
            voll=params.shed_penalty,
            spill_cost=params.curtail_cost,
            iters=40,
        )
        to_kwh = 1.0 / scale
        curtail = dso.pro_rata_cut_grouped(
            jnp.maximum(x, 0.0), sol.curtail * to_kwh, params.node, m
        )
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

    def _calendar(self, state: LEMState) -> tuple[jax.Array, jax.Array, jax.Array]:
        """Day of the year as sin/cos (seasons) and a weekend flag, at the current step."""
        steps_per_day = max(round(24.0 / self.dt_h), 1)
        doy = (state.day + jnp.minimum(state.t, self.num_steps - 1) // steps_per_day) % 365
        angle = 2 * jnp.pi * doy.astype(jnp.float32) / 365.0
        weekday0 = self.bank.weekday0 if self.bank is not None else 0
        weekend = ((weekday0 + doy) % 7 >= 5).astype(jnp.float32)
        return jnp.sin(angle), jnp.cos(angle), weekend

    def _obs(self, state: LEMState, params: LEMParams, net_x, sd_ratio) -> jax.Array:
        """Per-agent observation [N, obs_dim], each feature of order one."""
        dt = self.dt_h
        t_len = self.num_steps
        t = jnp.minimum(state.t, t_len - 1)
        t_next = jnp.minimum(state.t + 1, t_len - 1)
        hour = (t.astype(jnp.float32) * dt) % 24.0
        size = self.site_size(params) + _EPS
        pmax = params.max_price
        n = self.num_agents
        cap = jnp.maximum(params.bat_kwh, _EPS)
        has_bat = params.bat_kwh > 0
        ones = jnp.ones((n,))
        cols = [
            ones * jnp.sin(2 * jnp.pi * hour / 24.0),
            ones * jnp.cos(2 * jnp.pi * hour / 24.0),
            ones * state.t / t_len,
            state.gen / size,
            state.demand / size,
            state.forecast_gen / size,
            state.forecast_demand / size,
            (state.gen + params.disp_kw * dt - state.demand) / size,
            jnp.where(has_bat, state.energy / cap, 0.0),
            jnp.where(has_bat, (params.soc_max * params.bat_kwh - state.energy) / size, 0.0),
            ones * state.fit[t] / pmax,
            ones * state.utility[t] / pmax,
            ones * state.fit[t_next] / pmax,
            ones * state.utility[t_next] / pmax,
            ones * state.last_price / pmax,
            ones * state.last_volume / (jnp.sum(params.demand_kw) * dt + _EPS),
            state.last_matched / size,
            state.last_own_price / pmax,
            state.reputation,
            has_bat.astype(jnp.float32),
            *(ones * c for c in self._calendar(state)),
        ]
        if self.day_ahead_obs:
            ahead = jnp.arange(t_len) > state.t  # the steps after this one
            u_ahead = jnp.where(ahead, state.utility, -jnp.inf)
            u_max = jnp.max(u_ahead)
            has_ahead = jnp.any(ahead)
            u_max = jnp.where(has_ahead, u_max, state.utility[t])
            u_min = jnp.where(has_ahead, jnp.min(jnp.where(ahead, state.utility, jnp.inf)), u_max)
            f_max = jnp.where(has_ahead, jnp.max(jnp.where(ahead, state.fit, -jnp.inf)), 0.0)
            to_peak = jnp.argmax(u_ahead >= u_max) - state.t  # steps until the highest price
            cols += [
                ones * u_max / pmax,
                ones * u_min / pmax,
                ones * jnp.where(has_ahead, f_max, state.fit[t]) / pmax,
                ones * jnp.where(has_ahead, to_peak, 0) / t_len,
                state.forecast_gen_rest / (size * jnp.maximum(t_len * 0.25, 1.0)),
                state.forecast_demand_rest / (size * jnp.maximum(t_len * 0.25, 1.0)),
            ]
        if self.global_obs:
            total = (jnp.sum(params.pv_kw + params.demand_kw) * dt) + _EPS
            cols += [
                ones * net_x / total,
                ones * jnp.clip(sd_ratio, 0.0, 10.0),
                ones * jnp.mean(state.energy / cap * has_bat),
                ones * jnp.sum(state.gen - state.demand) / total,
            ]
        obs = jnp.stack(cols, axis=-1)
        return jnp.clip(jnp.where(jnp.isfinite(obs), obs, 0.0), -1e3, 1e3).astype(jnp.float32)


def _hash32(x: jax.Array) -> jax.Array:
    """A fast, well-mixed 32-bit integer hash (lowbias32): uniform bits from distinct inputs."""
    x = x ^ (x >> 16)
    x = x * jnp.uint32(0x7FEB352D)
    x = x ^ (x >> 15)
    x = x * jnp.uint32(0x846CA68B)
    return x ^ (x >> 16)


def _float_or_int(x):
    return jnp.int32 if jnp.issubdtype(x.dtype, jnp.integer) else jnp.float32


def with_overrides(env: LEMEnv, **static) -> LEMEnv:
    """A copy of ``env`` with other static settings (validated again)."""
    return dataclasses.replace(env, **static)
