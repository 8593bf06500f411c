"""A crude local-market step in plain JAX, written for the env benchmark as a yardstick: what
one step costs when it does no more than PV and demand draws, a battery, two sorts (bids
descending, asks ascending), a uniform-price match on the cumulative quantities, settlement
against the grid and a small observation. ``lem-v0``'s step does all of this and more (pricing
rules, partner stage, reputation, DSO interventions, KPIs), so the benchmark reports its
throughput as a ratio to this one, measured in the same run.

State per scenario: battery energy [N] (kWh) and the step index; actions [N, 3] in [-1, 1]
(battery set-point, limit price, offered share), as in ``lem-v0``.
"""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp
from flax import struct


@struct.dataclass
class RefState:
    energy: jax.Array  # [N] kWh
    t: jax.Array  # int32


@struct.dataclass
class RefParams:
    pv_kw: jax.Array  # [N] kWp
    demand_kw: jax.Array  # [N] mean kW
    bat_kwh: jax.Array  # [N]


class ReferenceStep:
    """``reset(key, params)``, ``step(key, state, action, params)`` and ``sample_params``,
    shaped like an env for ``jaxlem.app.random_rollout.make_runner``."""

    dt_h = 1.0
    fit, utility, lo, hi = 0.05, 0.25, 0.0, 0.3  # currency/kWh

    def __init__(self, num_agents: int, num_steps: int = 24):
        self.num_agents, self.num_steps = num_agents, num_steps

    def action_space(self) -> Any:
        return jax.ShapeDtypeStruct((self.num_agents, 3), jnp.float32)

    def sample_params(self, key: jax.Array, num: int) -> RefParams:
        k1, k2, k3 = jax.random.split(key, 3)
        n = self.num_agents
        return RefParams(
            pv_kw=jax.random.uniform(k1, (num, n), minval=0.0, maxval=10.0),
            demand_kw=jax.random.uniform(k2, (num, n), minval=0.3, maxval=2.0),
            bat_kwh=jax.random.uniform(k3, (num, n), minval=0.0, maxval=13.5),
        )

    def reset(self, key: jax.Array, params: RefParams) -> tuple[jax.Array, RefState]:
        state = RefState(0.5 * params.bat_kwh, jnp.zeros((), jnp.int32))
        return self._obs(state, params, jnp.zeros(())), state

    def _obs(self, state, params, price):
        n = self.num_agents
        hour = jnp.broadcast_to(state.t % 24, (n,)).astype(jnp.float32) / 24.0
        return jnp.stack(
            [state.energy / jnp.maximum(params.bat_kwh, 1e-6), hour, jnp.full((n,), price)], 1
        )

    def step(self, key, state, action, params):
        n, dt = self.num_agents, self.dt_h
        # profiles and randomness
        hour = (state.t % 24).astype(jnp.float32)
        sun = jnp.maximum(jnp.sin(jnp.pi * (hour - 6.0) / 12.0), 0.0)
        noise = 1.0 + 0.2 * jax.random.normal(key, (n,))
        pv = params.pv_kw * sun * dt
        demand = params.demand_kw * jnp.maximum(noise, 0.0) * dt
        # battery
        a = jnp.clip(action, -1.0, 1.0)
        energy = jnp.clip(state.energy + a[:, 0] * 0.5 * params.bat_kwh, 0.0, params.bat_kwh)
        x = pv - demand - (energy - state.energy)
        # orders: two sorts
        price = self.lo + 0.5 * (a[:, 1] + 1.0) * (self.hi - self.lo)
        buy_q = jnp.maximum(-x, 0.0)
        sell_q = jnp.maximum(x, 0.0) * 0.5 * (a[:, 2] + 1.0)
        bid = jnp.where(buy_q > 0, price, -jnp.inf)
        ask = jnp.where(sell_q > 0, price, jnp.inf)
        ib = jnp.argsort(-bid)
        js = jnp.argsort(ask)
        cum_b, cum_s = jnp.cumsum(buy_q[ib]), jnp.cumsum(sell_q[js])
        bid_s, ask_s = bid[ib], ask[js]
        # matching: the volume where the demand and supply curves cross
        sell_at = jnp.searchsorted(ask_s, bid_s, side="right")
        supply = jnp.concatenate([jnp.zeros((1,)), cum_s])[sell_at]
        volume = jnp.max(jnp.minimum(cum_b, supply))
        k_b = jnp.clip(jnp.searchsorted(cum_b, volume), 0, n - 1)
        k_s = jnp.clip(jnp.searchsorted(cum_s, volume), 0, n - 1)
        p_star = jnp.where(volume > 0, 0.5 * (bid_s[k_b] + ask_s[k_s]), 0.0)
        got_b = jnp.zeros((n,)).at[ib].set(jnp.clip(volume - (cum_b - buy_q[ib]), 0.0, buy_q[ib]))
        got_s = jnp.zeros((n,)).at[js].set(jnp.clip(volume - (cum_s - sell_q[js]), 0.0, sell_q[js]))
        # settlement: P2P at the uniform price, the rest with the grid
        money = (
            p_star * (got_s - got_b)
            + self.fit * (jnp.maximum(x, 0.0) - got_s)
            - self.utility * (buy_q - got_b)
        )
        nxt = RefState(energy, state.t + 1)
        done = nxt.t >= self.num_steps
        nxt = RefState(jnp.where(done, 0.5 * params.bat_kwh, energy), jnp.where(done, 0, nxt.t))
        return self._obs(nxt, params, p_star), nxt, money, done, {}
