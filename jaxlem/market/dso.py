"""The DSO / utility: it settles whatever the P2P book leaves and applies its interventions.

Prices are in currency per MWh, energies in kWh, money in currency (so money = price * kWh / 1000).
Every function is pure and works on per-agent arrays [N].
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
from jaxtyping import Array, Float, Int

KWH_PER_MWH = 1000.0


def dynamic_utility_price(
    utility: jax.Array, community_import_kwh: jax.Array, reference_kwh: jax.Array, slope: jax.Array
) -> jax.Array:
    """Utility price that rises with the community's net import.

    ``utility * (1 + slope * max(0, import) / reference)``; slope 0 is the plain tariff.
    """
    ref = jnp.where(reference_kwh > 0, reference_kwh, 1.0)
    return utility * (1.0 + slope * jnp.maximum(community_import_kwh, 0.0) / ref)


def settle(
    export_kwh: Float[Array, " N"],
    import_kwh: Float[Array, " N"],
    fit: jax.Array,
    utility: jax.Array,
) -> Float[Array, " N"]:
    """Money each agent gets from the DSO: FiT on residual export minus utility on import."""
    return (fit * export_kwh - utility * import_kwh) / KWH_PER_MWH


def pro_rata_cut(amount: Float[Array, " N"], excess: Float[Array, ""]) -> Float[Array, " N"]:
    """Cut ``excess`` (>= 0) from the non-negative ``amount`` [N] in proportion to each share."""
    total = jnp.sum(amount)
    frac = jnp.where(total > 0, jnp.minimum(excess, total) / jnp.where(total > 0, total, 1.0), 0.0)
    return amount * frac


def pro_rata_cut_grouped(
    amount: Float[Array, " N"], excess: Float[Array, " G"], group: Int[Array, " N"], num_groups: int
) -> Float[Array, " N"]:
    """Per-group pro-rata cut: ``excess`` [G] is removed from ``amount`` [N] within each group."""
    total = jax.ops.segment_sum(amount, group, num_segments=num_groups)
    frac = jnp.where(total > 0, jnp.minimum(excess, total) / jnp.where(total > 0, total, 1.0), 0.0)
    return amount * frac[group]
