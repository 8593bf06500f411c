"""How a community's agents are drawn: types and sizes as per-agent arrays (DOMAIN.md 1.1).

Agent types are data, not classes: consumers (no PV), prosumers (PV, some with a battery) and
dispatchable producers are all rows of the same arrays, so one compiled step serves any mix.
``sample`` is pure JAX, so a scenario bank is one ``vmap`` over keys.
"""

from __future__ import annotations

from dataclasses import dataclass

import jax
import jax.numpy as jnp

CONSUMER, PROSUMER, STORAGE, PRODUCER = 0, 1, 2, 3


@dataclass(frozen=True)
class Population:
    """Ranges the agents of a community are drawn from (kW, kWh, currency/MWh)."""

    prosumer_frac: float = 0.6
    producer_frac: float = 0.0
    pv_kw: tuple[float, float] = (3.0, 8.0)
    demand_kw: tuple[float, float] = (0.4, 1.2)
    battery_frac: float = 0.5  # share of prosumers with a battery
    bat_kwh: tuple[float, float] = (5.0, 13.5)
    c_rate: float = 0.5  # battery power limit, kW per kWh
    soc_min: float = 0.1
    soc_max: float = 0.9
    soc_init: float = 0.5
    eta: float = 0.95
    degradation_cost: float = 20.0
    disp_kw: tuple[float, float] = (5.0, 20.0)
    disp_cost: tuple[float, float] = (40.0, 120.0)

    def __post_init__(self):
        from jaxlem import checks

        for name in ("prosumer_frac", "producer_frac", "battery_frac", "soc_init"):
            checks.check_range(f"population.{name}", getattr(self, name), 0.0, 1.0)
        checks.check_range(
            "population.prosumer_frac + producer_frac",
            self.prosumer_frac + self.producer_frac,
            0.0,
            1.0,
        )
        for name in ("pv_kw", "demand_kw", "bat_kwh", "disp_kw", "disp_cost"):
            lo, hi = getattr(self, name)
            checks.check_range(f"population.{name}", (lo, hi), 0.0)
            checks.check_order(f"population.{name}[0]", lo, f"population.{name}[1]", hi)
        checks.check_range("population.c_rate", self.c_rate, 0.0)
        checks.check_range("population.soc_min", self.soc_min, 0.0, 1.0)
        checks.check_range("population.soc_max", self.soc_max, 0.0, 1.0)
        checks.check_order("population.soc_min", self.soc_min, "population.soc_max", self.soc_max)
        checks.check_range("population.eta", self.eta, 0.0, 1.0, lo_open=True)
        checks.check_range("population.degradation_cost", self.degradation_cost, 0.0)


def sample(key: jax.Array, num_agents: int, spec: Population) -> dict[str, jax.Array]:
    """Draw one community of ``num_agents`` agents; returns the per-agent fields of the params."""
    n = num_agents
    ks = jax.random.split(key, 8)
    u = lambda k, rng: rng[0] + jax.random.uniform(k, (n,)) * (rng[1] - rng[0])  # noqa: E731
    role = jax.random.uniform(ks[0], (n,))
    is_prod = role < spec.producer_frac
    is_pros = ~is_prod & (role < spec.producer_frac + spec.prosumer_frac)
    has_bat = is_pros & (jax.random.uniform(ks[1], (n,)) < spec.battery_frac)
    bat_kwh = jnp.where(has_bat, u(ks[2], spec.bat_kwh), 0.0)
    agent_type = jnp.where(is_prod, PRODUCER, jnp.where(is_pros, PROSUMER, CONSUMER))
    full = lambda v: jnp.full((n,), v, jnp.float32)  # noqa: E731
    return dict(
        pv_kw=jnp.where(is_pros, u(ks[3], spec.pv_kw), 0.0),
        demand_kw=u(ks[4], spec.demand_kw),
        disp_kw=jnp.where(is_prod, u(ks[5], spec.disp_kw), 0.0),
        disp_cost=u(ks[6], spec.disp_cost),
        bat_kwh=bat_kwh,
        bat_kw=bat_kwh * spec.c_rate,
        soc_min=full(spec.soc_min),
        soc_max=full(spec.soc_max),
        soc_init=full(spec.soc_init),
        eta_c=full(spec.eta),
        eta_d=full(spec.eta),
        self_discharge=full(0.0),
        degradation_cost=full(spec.degradation_cost),
        export_limit_kw=full(jnp.inf),
        node=jnp.zeros((n,), jnp.int32),
        feeder=jnp.zeros((n,), jnp.int32),
        profile_col=jnp.full((n,), -1, jnp.int32),
        agent_type=agent_type.astype(jnp.int32),
    )
