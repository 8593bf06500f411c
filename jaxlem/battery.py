"""Battery physics as pure functions on per-agent arrays.

Energies in kWh, powers in kW, ``dt_h`` in hours. Requests are measured at the grid side: a charge
request ``c`` draws ``c`` from the site and stores ``eta_c * c``; a discharge request ``d``
delivers ``d`` to the site and removes ``d / eta_d`` from storage. Requests beyond the power limit
or the SOC window are clipped, never refused, so the state of charge cannot leave its window.
A battery of capacity 0 does nothing.
"""

from __future__ import annotations

import jax.numpy as jnp
from flax import struct
from jaxtyping import Array, Float


@struct.dataclass
class BatteryStep:
    energy: Float[Array, " N"]  # stored energy after the step, kWh
    charge: Float[Array, " N"]  # energy drawn from the site to charge, kWh (>= 0)
    discharge: Float[Array, " N"]  # energy delivered to the site, kWh (>= 0)
    throughput: Float[Array, " N"]  # charge + discharge, kWh
    degradation_cost: Float[Array, " N"]  # degradation cost, currency


def step(
    energy: Float[Array, " N"],
    request_kwh: Float[Array, " N"],
    capacity_kwh: Float[Array, " N"],
    power_kw: Float[Array, " N"],
    soc_min: Float[Array, " N"],
    soc_max: Float[Array, " N"],
    eta_c: Float[Array, " N"],
    eta_d: Float[Array, " N"],
    dt_h: float | Float[Array, ""],
    self_discharge: Float[Array, " N"] | float = 0.0,
    degradation_cost: Float[Array, " N"] | float = 0.0,
) -> BatteryStep:
    """Apply one step's charge (request > 0) or discharge (request < 0), clipped to what fits.

    ``self_discharge`` is the fraction of the energy above the SOC floor lost per step;
    ``degradation_cost`` is in currency per kWh of throughput.
    """
    e_lo = soc_min * capacity_kwh
    e_hi = soc_max * capacity_kwh
    energy = jnp.clip(energy, e_lo, e_hi)
    limit = jnp.maximum(power_kw * dt_h, 0.0)
    req = jnp.where(jnp.isnan(request_kwh), 0.0, request_kwh)  # +-inf is clipped below
    charge = jnp.clip(jnp.minimum(jnp.maximum(req, 0.0), limit), 0.0, None)
    charge = jnp.minimum(charge, jnp.maximum(e_hi - energy, 0.0) / eta_c)
    discharge = jnp.clip(jnp.minimum(jnp.maximum(-req, 0.0), limit), 0.0, None)
    discharge = jnp.minimum(discharge, eta_d * jnp.maximum(energy - e_lo, 0.0))
    new = energy + eta_c * charge - discharge / eta_d
    new = new - self_discharge * jnp.maximum(new - e_lo, 0.0)
    new = jnp.clip(new, e_lo, e_hi)
    throughput = charge + discharge
    return BatteryStep(
        energy=new,
        charge=charge,
        discharge=discharge,
        throughput=throughput,
        degradation_cost=degradation_cost * throughput,
    )
