"""The state and params pytrees of ``lem-v0`` and the constants its stages share.

Units: kW, kWh per step of ``dt_h`` hours, prices in currency per MWh, money in currency.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Self

import jax
from flax import struct

from jaxlem.grid import Network

GRID_MODES = ("none", "capacity", "losses", "dcopf")
PROFILE_SOURCES = ("bank", "synthetic")
TARIFFS = ("tou", "fixed")
EPS = 1e-6
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
    soc_min: jax.Array  # lowest allowed SOC, fraction of capacity
    soc_max: jax.Array  # highest allowed SOC, fraction of capacity
    soc_init: jax.Array  # SOC at reset, fraction of capacity
    eta_c: jax.Array  # charging efficiency in (0, 1]
    eta_d: jax.Array  # discharging efficiency in (0, 1]
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
    demand_day_std: jax.Array  # std of the daily demand factor around 1
    pv_noise: jax.Array  # relative std of per-step PV noise
    demand_noise: jax.Array  # relative std of per-step demand noise
    forecast_noise: jax.Array  # relative std of the PV and demand forecast errors
    # DSO tariff
    min_price: jax.Array  # price floor of bids, asks and the tariff, currency/MWh
    max_price: jax.Array  # price cap of bids, asks and the tariff, currency/MWh
    tariff_gap: jax.Array  # FiT + gap * (max - min) <= utility
    tariff_jitter: jax.Array  # random variation of the time-of-use blocks per reset
    fit_profile: jax.Array  # [T] FiT used when tariff="fixed"
    utility_profile: jax.Array  # [T] utility price used when tariff="fixed"
    # market
    k: jax.Array  # k of the k-double auction: price = k bid + (1 - k) ask
    reputation_rate: jax.Array  # update rate of the reputation (fill ratio average)
    p2p_fee: jax.Array  # currency/MWh of delivered P2P energy, split between both sides
    p2p_fee_per_km: jax.Array  # network fee per km between the two buses, currency/MWh
    loss_per_km: jax.Array  # fraction per km (grid_mode='losses')
    loss_cap: jax.Array  # maximum loss fraction of one trade
    # DSO interventions and grid
    dynamic_tariff_slope: jax.Array  # utility price rise per unit of community import share
    imbalance_penalty: jax.Array  # currency/MWh on residual energy exchanged with the DSO
    shed_penalty: jax.Array  # currency/MWh of shed load
    import_limit_kw: jax.Array  # connection point (grid_mode='capacity')
    export_limit_kw_total: jax.Array  # connection point export limit (grid_mode=capacity)
    feeder_limit_kw: jax.Array  # [F] symmetric per-feeder limit (grid_mode='capacity')
    p2p_limit_kw: jax.Array  # P2P transfer capacity (grid_mode='capacity')
    node_distance_km: jax.Array  # [M, M]
    # reward
    reward_scale: jax.Array  # reward = profit (currency) x reward_scale
    coop_alpha: jax.Array  # weight of the community mean in each reward, in [0, 1]
    terminal_soc_value: jax.Array  # currency/MWh of stored energy at the end
    # grid_mode='dcopf': the feeder, a uniform line limit and the DSO's redispatch costs
    network: Network | None = None  # the feeder (grid_mode=dcopf)
    line_limit_kw: jax.Array | None = None  # uniform line limit, kW (grid_mode=dcopf)
    curtail_cost: jax.Array | None = None  # currency/MWh paid to curtail an export

    if TYPE_CHECKING:  # added by ``struct.dataclass``; declared for type checkers

        def replace(self, **updates: Any) -> Self: ...


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

    if TYPE_CHECKING:  # added by ``struct.dataclass``; declared for type checkers

        def replace(self, **updates: Any) -> Self: ...
