"""``multiactor-v0``: producers, utilities, consumers, prosumers and a regulator in one market.

Agents are rows in kind order (producers, utilities, consumers, prosumers, the regulator) with
a type index (:attr:`MultiActorEnv.static_agent_types`); every number is in :class:`MAParams`, the
counts and the market design are static fields. Actions are one padded row per agent: five
continuous columns in [-1, 1] whose meaning depends on the kind (:data:`ACTION_COLUMNS`) and a
categorical column, the consumers' supplier and the prosumers' fallback utility or
disconnection, read at a day's first step. :meth:`action_mask` says which columns each kind
uses in the static scenario, :meth:`action_mask_at` which of them a given step reads:

- scenario 1: the local P2P auction, day-ahead forward contracts between utilities and
  producers (one auction per hour of the day, cleared at its first step), a real-time
  wholesale auction for every utility's residual, retail supply at each utility's price;
- scenario 2: wholesale, retail and local auctions at every step, no contracts.

Whatever no market covers comes from the outside grid at the balancing price; surplus goes
to it at the spill price. Rewards: producers and utilities their profit (utilities plus their
persona's value of renewable purchases and minus its dislike of gouging), consumers and
prosumers their surplus (the value of their demand at the reference price minus what they pay
and the value lost to demand response or shedding), the regulator the welfare of the step
(everyone's surplus, its own budget included). Each is scaled by ``reward_scale`` of its kind.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from types import SimpleNamespace
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from jaxlem import checks, metrics
from jaxlem.envs.base import ActionLayout, Column, Environment, EvalSpec
from jaxlem.envs.multiactor import params as mparams
from jaxlem.envs.multiactor import settlement, stages
from jaxlem.envs.multiactor.evaluation import SPEC
from jaxlem.envs.multiactor.markets import KWH_PER_MWH
from jaxlem.envs.multiactor.observation import COLUMNS, observe
from jaxlem.envs.multiactor.types import (
    CONSUMER,
    KINDS,
    PRODUCER,
    PROSUMER,
    REGULATOR,
    UTILITY,
    MAParams,
    MAState,
)
from jaxlem.envs.spaces import Box
from jaxlem.market import pricing

ACTION_COLUMNS = (
    Column(
        "a0",
        "producer: offer price, marginal cost .. price cap; utility: retail price, "
        "retail_min .. retail_max; consumer: local limit price, spill .. balancing price; "
        "prosumer: battery, full discharge .. full charge; regulator: gouging fine, "
        "0 .. fine_max",
    ),
    Column(
        "a1",
        "producer: share of free capacity offered (at least its minimum); utility: "
        "wholesale bid, 0 .. price cap; consumer: share of demand bid locally; prosumer: "
        "limit price of its local (and scenario 2 retail) orders; regulator: output "
        "subsidy, 0 .. subsidy_max",
    ),
    Column(
        "a2",
        "producer: investment, 0 .. prod_max_invest_kw (daily); utility: contract "
        "bid price (scenario 1); consumer: retail limit price (scenario 2); prosumer: "
        "share of its surplus or deficit ordered locally; regulator: investment subsidy",
    ),
    Column(
        "a3",
        "producer: contract ask price (scenario 1); utility: contracted share of "
        "its forecast load (scenario 1)",
    ),
    Column(
        "a4",
        "producer: contracted share of its expected availability (scenario 1); "
        "utility: retail offer, share of the residual demand (scenario 2)",
    ),
    Column(
        "choice",
        "consumer: supplier, utility 0 .. U-1 or U = local market (scenario 1); "
        "prosumer: fallback utility or U = disconnect for the day; encoded option - 1",
    ),
)


@dataclass(frozen=True)
class MultiActorEnv(Environment[MAState, MAParams]):
    """The multi-actor electricity market (see the module docstring)."""

    num_producers: int = 4
    num_utilities: int = 3
    num_consumers: int = 24
    num_prosumers: int = 24
    num_days: int = 7
    dt_h: float = 1.0
    scenario: int = 1
    local_rule: str = "uniform"
    retail_rule: str = "marginal"
    max_build_delay: int = 7
    profile_bank: str = "default"

    num_agent_types = 5
    agent_type_names = KINDS
    reference_policy = "scripted"

    def __post_init__(self) -> None:
        checks.check_int("num_producers", self.num_producers, 1)
        checks.check_int("num_utilities", self.num_utilities, 1)
        checks.check_int("num_consumers", self.num_consumers, 0)
        checks.check_int("num_prosumers", self.num_prosumers, 0)
        checks.check_int("num_days", self.num_days, 1, 364)
        checks.check_int("max_build_delay", self.max_build_delay, 1, 60)
        checks.check_choice("scenario", self.scenario, (1, 2))
        checks.check_choice("local_rule", self.local_rule, pricing.PAIR_RULES + ("uniform",))
        checks.check_choice(
            "retail_rule", self.retail_rule, pricing.PAIR_RULES + ("uniform", "marginal")
        )
        if self.local_rule in ("nash", "proportional_surplus") or self.retail_rule in (
            "nash",
            "proportional_surplus",
        ):
            raise ValueError(
                f"local_rule/retail_rule: got {self.local_rule!r}/{self.retail_rule!r}; allowed: "
                "average, pay_as_bid, pay_as_ask, k_double or uniform (no tariff reference here)"
            )
        if not isinstance(self.dt_h, int | float) or self.dt_h <= 0 or (24.0 / self.dt_h) % 1:
            raise ValueError(f"dt_h: got {self.dt_h!r}; allowed: hours dividing 24 (e.g. 0.25, 1)")
        mparams.profile_bank(self)  # a bad profile_bank or dt_h fails here, by name

    # ------------------------------------------------------------------ layout
    @property
    def steps_per_day(self) -> int:
        return round(24.0 / self.dt_h)

    @property
    def num_steps(self) -> int:
        return self.steps_per_day * self.num_days

    @property
    def num_agents(self) -> int:
        return self.num_producers + self.num_utilities + self.num_consumers + self.num_prosumers + 1

    @property
    def counts(self) -> tuple[int, int, int, int, int]:
        return (self.num_producers, self.num_utilities, self.num_consumers, self.num_prosumers, 1)

    @property
    def slices(self) -> SimpleNamespace:
        edges = np.cumsum((0, *self.counts))
        names = ("prod", "util", "cons", "pros", "reg")
        return SimpleNamespace(
            **{k: slice(int(edges[i]), int(edges[i + 1])) for i, k in enumerate(names)}
        )

    @property
    def kind_of_row(self) -> tuple[int, ...]:
        return tuple(k for k, n in enumerate(self.counts) for _ in range(n))

    @property
    def static_agent_types(self) -> tuple[int, ...]:
        """Rows are in kind order with static counts: the kind is the type."""
        return self.kind_of_row

    # ------------------------------------------------------------------ params
    @functools.cached_property
    def _default(self) -> MAParams:
        return mparams.default_params(self)

    @property
    def default_params(self) -> MAParams:
        return self._default

    def sample_params(self, key: jax.Array, num: int) -> MAParams:
        return _sample(self, key, num)

    def check_params(self, params: MAParams) -> None:
        mparams.check_params(self, params)

    # ------------------------------------------------------------------ reset / step
    def reset_env(self, key: jax.Array, params: MAParams) -> tuple[jax.Array, MAState]:
        p, u = self.num_producers, self.num_utilities
        s = self.steps_per_day
        kind = jnp.asarray(self.kind_of_row)
        sup = params.supplier0
        c = self.num_consumers
        dem = params.demand_unit[:, :s]
        cons_load = dem[params.cons_kind] * params.cons_demand_kw[:, None] * self.dt_h
        on = jax.nn.one_hot(sup[:c], u + 1)[:, :u]  # [C, U]
        forecast = on.T @ cons_load  # [U, S]
        mc = stages.marginal_cost(params)
        start_price = jnp.sort(mc)[p // 2]
        state = MAState(
            t=jnp.zeros((), jnp.int32),
            cash=params.cash0[kind],
            capacity_kw=params.prod_capacity_kw,
            pipeline_kw=jnp.zeros((p, self.max_build_delay)),
            invested_kw=jnp.zeros((p,)),
            soc_kwh=params.soc0 * params.battery_kwh,
            supplier=sup,
            rates=jnp.zeros((3,)),
            contract_qty=jnp.zeros((p + u, s)),
            contract_pay=jnp.zeros((p + u, s)),
            load_today=jnp.zeros((u, s)),
            load_forecast=forecast,
            day_purchase=jnp.zeros((u, 2)),
            prices=jnp.stack([start_price, start_price, params.ref_price, start_price]),
            retail=jnp.full((u,), params.ref_price),
            last_sales=jnp.zeros((p,)),
            stats=jnp.zeros((4,)),
        )
        del key
        return observe(self, state, params), state

    def step_env(self, key, state, action, params):
        k_local, k_ex = jax.random.split(key)
        a = stages.split(self, action)
        day, daily = self._daily(state, a, params)
        ex = stages.exogenous(self, k_ex, state.t, day.capacity_kw, params)
        flows = self._energy(k_local, day, a, ex, params)
        return self._settle(state, day, daily, ex, flows, params)

    def _daily(self, state: MAState, a: stages.Split, params: MAParams):
        """At a day's first step: the regulator's rates, suppliers, investment and the
        day-ahead contracts. Returns the state they leave and their money (switching costs
        [C + R], kW ordered, capital cost and investment subsidy [P]; zero on other steps)."""
        start = state.t % self.steps_per_day == 0
        rates = jnp.where(start, stages.regulator_rates(a.reg, params), state.rates)
        supplier, switch = stages.suppliers(self, state.supplier, a.pick, params)
        s = self.slices
        cap, pipe, kw, (capex, sub) = stages.invest(
            self, state, a.prod[:, 2], state.cash[s.prod], rates[2], params
        )
        daily = SimpleNamespace(
            **{k: jnp.where(start, x, 0.0) for k, x in
               dict(switch=switch, kw=kw, capex=capex, invest_subsidy=sub).items()}
        )  # fmt: skip
        day = state.replace(
            rates=rates,
            supplier=jnp.where(start, supplier, state.supplier),
            capacity_kw=jnp.where(start, cap, state.capacity_kw),
            pipeline_kw=jnp.where(start, pipe, state.pipeline_kw),
        )
        if self.scenario == 1:
            # cleared once a day (a select of both branches only when vmapped over steps)
            qty, pay = jax.lax.cond(
                start,
                lambda: stages.day_contracts(self, day, a, day.capacity_kw, params),
                lambda: (state.contract_qty, state.contract_pay),
            )
            day = day.replace(contract_qty=qty, contract_pay=pay)
        return day, daily

    def _energy(self, key, day: MAState, a: stages.Split, ex: stages.Exogenous, params: MAParams):
        """Demand response, prosumers, the local, retail and wholesale markets."""
        u, c = self.num_utilities, self.num_consumers
        sup = day.supplier
        posted = stages.posted_prices(a, params)
        if self.scenario == 1:
            on_local = sup[:c] == u
            face = jnp.where(on_local, day.prices[1], posted[jnp.minimum(sup[:c], u - 1)])
        else:
            on_local = jnp.zeros((c,), bool)
            face = jnp.full((c,), day.prices[2])
        demand, lost = stages.demand_response(ex.cons_base, face, params)
        pr = stages.prosumers(self, day.soc_kwh, a.pros, sup[c:] < u, ex, params)
        local = stages.local_market(self, key, a, demand, on_local, pr, day.prices[1], params)
        sells = pr.surplus > 0
        cons_need = demand - local.qty[:c]
        pros_need = jnp.where(sells, 0.0, pr.deficit - local.qty[c:])
        pros_spill = jnp.where(sells, pr.surplus - local.qty[c:], 0.0)
        rt = stages.retail(self, a, posted, cons_need, pros_need, sup, day.prices[2], params)
        ws = stages.wholesale(self, a, rt.sales, ex, day, params)
        decay = float(np.exp(-self.dt_h / 24.0))
        reference = decay * day.prices[3] + (1.0 - decay) * ws.price
        return SimpleNamespace(
            demand=demand, lost=lost, pr=pr, local=local, rt=rt, ws=ws, pros_spill=pros_spill,
            reference=reference,
        )  # fmt: skip

    def _settle(self, state, day, daily, ex, f, params):
        """Money, fines, bailouts, rewards, KPIs and the next state."""
        s_ = self.slices
        u = self.num_utilities
        hour = state.t % self.steps_per_day
        start, end = hour == 0, hour == self.steps_per_day - 1
        kind = jnp.asarray(self.kind_of_row)
        kw = daily.kw
        purchase = jnp.where(start, 0.0, state.day_purchase) + jnp.stack(
            [f.rt.sales, f.ws.ren_in], axis=1
        )
        money = settlement.settle(
            self, params, day.rates, daily.switch, daily.capex, daily.invest_subsidy,
            f.local, f.rt, f.ws, f.reference,
            f.pros_spill, purchase, end,
        )  # fmt: skip
        cash, lift = settlement.bailout(state.cash + money.delta, kind, params)
        # surpluses and rewards
        ref = params.ref_price / KWH_PER_MWH
        c_value = ref * ex.cons_base - f.lost
        cons = c_value + money.delta[s_.cons]
        pros = ref * ex.pros_demand - params.voll * f.pr.shed / KWH_PER_MWH + money.delta[s_.pros]
        prod, util = money.delta[s_.prod], money.delta[s_.util]
        welfare = jnp.sum(prod) + jnp.sum(util) + jnp.sum(cons) + jnp.sum(pros) + money.delta[-1]
        persona = (
            params.persona_green[params.persona] * f.ws.ren_in
            - params.persona_fair[params.persona] * money.excess * f.rt.sales
        ) / KWH_PER_MWH
        raw = jnp.concatenate([prod, util + persona, cons, pros, welfare[None]])
        reward = raw * params.reward_scale[kind]
        # KPIs
        produced = jnp.sum(f.ws.own)
        ren_share = jnp.sum(f.ws.own * params.prod_renewable) / jnp.maximum(produced, 1e-9)
        ren_share = jnp.where(produced > 0, ren_share, 0.0)
        markup = f.rt.price - f.ws.price
        sales = jnp.maximum(jnp.sum(f.rt.sales), 1e-9)
        mean_markup = jnp.sum(markup * f.rt.sales) / sales
        imports = (
            jnp.sum(f.ws.shortfall) + jnp.sum(f.ws.util_import)
            + jnp.sum(f.rt.cons_import) + jnp.sum(f.rt.pros_import)
        )  # fmt: skip
        exports = jnp.sum(f.ws.util_spill) + jnp.sum(f.pros_spill)
        consumed = jnp.sum(f.demand) + jnp.sum(ex.pros_demand)
        disconnected = jnp.sum(day.supplier[self.num_consumers :] == u)
        info = {
            "wholesale_price": f.ws.price,
            "local_price": f.local.price,
            "retail_price": f.rt.mean_price,
            "retail_prices": f.rt.price,
            "markup": markup,
            "mean_markup": mean_markup,
            "renewable_share": ren_share,
            "quota_shortfall_kwh": money.quota_shortfall,
            "quota_fine": money.quota_fine,
            "gouge_fine": money.gouge_fine,
            "invest_kw": kw,
            "capacity_kw": day.capacity_kw,
            "hhi_producers": metrics.hhi(f.ws.own),
            "hhi_utilities": metrics.hhi(f.rt.sales),
            "consumer_surplus": jnp.sum(cons),
            "prosumer_surplus": jnp.sum(pros),
            "producer_profit": jnp.sum(prod),
            "utility_profit": jnp.sum(util),
            "regulator_net": money.delta[-1],
            "welfare": welfare,
            "regulator_budget": cash[-1],
            "bailout": jnp.sum(lift),
            "disconnected": disconnected,
            "local_kwh": f.local.volume,
            "wholesale_kwh": jnp.sum(f.ws.sold),
            "contract_kwh": jnp.sum(f.ws.contract_out),
            "retail_kwh": jnp.sum(f.rt.sales),
            "produced_kwh": produced,
            "pv_kwh": jnp.sum(ex.pros_pv),
            "discharge_kwh": jnp.sum(f.pr.discharge),
            "charge_kwh": jnp.sum(f.pr.charge),
            "imports_kwh": imports,
            "exports_kwh": exports,
            "shed_kwh": jnp.sum(f.pr.shed),
            "curtail_kwh": jnp.sum(f.pr.curtail),
            "consumed_kwh": consumed,
            "cash_delta": money.delta,
            "external_receipts": money.external,
            "min_headroom": jnp.min(cash + params.credit[kind]),
        }
        load_today = jnp.where(start, 0.0, state.load_today).at[:, hour].set(f.rt.sales)
        nxt = day.replace(
            t=state.t + 1,
            cash=cash,
            invested_kw=state.invested_kw + kw,
            soc_kwh=f.pr.soc,
            load_today=load_today,
            load_forecast=jnp.where(end, load_today, state.load_forecast),
            day_purchase=jnp.where(end, 0.0, purchase),
            prices=jnp.stack([f.ws.price, f.local.price, f.rt.mean_price, f.reference]),
            retail=f.rt.price,
            last_sales=f.ws.own,
            stats=jnp.stack(
                [
                    ren_share,
                    mean_markup,
                    imports / jnp.maximum(consumed, 1e-9),
                    disconnected / max(self.num_prosumers, 1),
                ]
            ),
        )
        done = nxt.t >= self.num_steps
        info["terminated"] = jnp.zeros((), bool)
        info["truncated"] = done
        obs = observe(self, nxt, params)
        reward = jnp.where(jnp.isfinite(reward), reward, 0.0)
        return obs, nxt, reward, done, info

    # ------------------------------------------------------------------ contract
    def observation_space(self, params: MAParams | None = None) -> Box:
        return Box(-np.inf, np.inf, (self.num_agents, len(COLUMNS)))

    def action_space(self, params: MAParams | None = None) -> Box:
        high = np.array([1.0] * stages.NUM_CONT + [self.num_utilities - 1.0], np.float32)
        return Box(
            -1.0,
            np.broadcast_to(high, (self.num_agents, high.shape[0])),
            (self.num_agents, high.shape[0]),
        )

    def action_layout(self) -> ActionLayout:
        return ActionLayout(stages.NUM_CONT, -1.0, 1.0, (self.num_utilities + 1,))

    def action_mask(self, params: MAParams | None = None) -> jax.Array:
        p = self.default_params if params is None else params
        s1 = self.scenario == 1
        rows = {
            PRODUCER: (1, 1, 1, s1, s1, 0),
            UTILITY: (1, 1, s1, s1, not s1, 0),
            CONSUMER: (1, 1, not s1, 0, 0, s1),
            PROSUMER: (1, 1, 1, 0, 0, 1),
            REGULATOR: (1, 1, 1, 0, 0, 0),
        }
        mask = self._by_kind(rows)
        s = self.slices
        has_battery = p.battery_kwh > 0
        return mask.at[s.pros, 0].set(has_battery)

    def action_mask_at(self, state: MAState, params: MAParams) -> jax.Array:
        """:meth:`action_mask` with the daily columns (investment, contracts, supplier or
        disconnection, the regulator's rates) only at a day's first step, the only step that
        reads them."""
        s1 = self.scenario == 1
        daily = {
            PRODUCER: (0, 0, 1, s1, s1, 0),
            UTILITY: (0, 0, s1, s1, 0, 0),
            CONSUMER: (0, 0, 0, 0, 0, 1),
            PROSUMER: (0, 0, 0, 0, 0, 1),
            REGULATOR: (1, 1, 1, 0, 0, 0),
        }
        start = state.t % self.steps_per_day == 0
        return self.action_mask(params) & (start | ~self._by_kind(daily))

    def _by_kind(self, rows: dict[int, tuple]) -> jax.Array:
        """[N, act_dim] bool: each agent's row of a per-kind table of action columns."""
        return jnp.asarray([rows[k] for k in range(5)], bool)[jnp.asarray(self.kind_of_row)]

    def observation_columns(self) -> tuple[Column, ...]:
        return COLUMNS

    def action_columns(self) -> tuple[Column, ...]:
        return ACTION_COLUMNS

    def evaluation(self) -> EvalSpec:
        return SPEC


# one compiled program per (env, num): a bank of thousands of scenarios in one call
_sample = jax.jit(mparams.sample_params, static_argnums=(0, 2))


def make_multiactor(**kwargs: Any) -> MultiActorEnv:
    """``jaxlem.make("multiactor-v0", ...)``."""
    return MultiActorEnv(**kwargs)
