"""The three auctions of ``multiactor-v0`` and the day-ahead contract auction, on top of the
project's O(N log N) double-auction clearing (``jaxlem.market.clear``).

Wholesale, contract and retail auctions are pay-as-clear: every matched kWh trades at the
highest accepted offer (the marginal seller's price), as in electricity pools. The local
auction uses one of lem's pricing rules.

Prices are currency/MWh and quantities kWh, so a payment is ``price * kWh / 1000``; every
auction's payments sum to zero (what buyers pay, sellers receive).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
from flax import struct

from jaxlem.market import clear

KWH_PER_MWH = 1000.0


@struct.dataclass
class Cleared:
    """One auction: per-order matched energy (kWh) and payment (currency, + buyers pay)."""

    qty: jax.Array
    pay: jax.Array
    price: jax.Array  # volume-weighted price of the matched energy, currency/MWh
    volume: jax.Array  # kWh


def auction(
    price: jax.Array,
    qty: jax.Array,
    is_buy: jax.Array,
    rule: str,
    fallback: jax.Array,
    key: jax.Array | None = None,
) -> Cleared:
    """Clear one book of one order per row at ``rule`` (``"marginal"``: pay-as-clear at the
    highest accepted offer); ``fallback`` is the reported price when nothing trades."""
    res = clear(price, qty, is_buy, "uniform" if rule == "marginal" else rule, key=key)
    traded = res.volume > 0
    if rule == "marginal":
        clearing, pay = _pay_as_clear(price, res.matched_qty, is_buy)
    else:
        clearing, pay = res.clearing_price, res.payment
    return Cleared(
        qty=res.matched_qty,
        pay=pay / KWH_PER_MWH,
        price=jnp.where(traded, clearing, fallback),
        volume=res.volume,
    )


def _pay_as_clear(
    price: jax.Array, matched: jax.Array, is_buy: jax.Array
) -> tuple[jax.Array, jax.Array]:
    """The highest accepted offer's price and every matched order's payment at it (the
    matched set of a double auction does not depend on the price paid). Offers matched for
    less than 1e-5 of the largest match (float rounding of the cumulative sums) do not set
    the price."""
    accepted = (~is_buy) & (matched > 1e-5 * jnp.max(matched))
    clearing = jnp.max(jnp.where(accepted, price, -jnp.inf))
    clearing = jnp.where(jnp.any(accepted), clearing, 0.0)
    return clearing, jnp.where(is_buy, 1.0, -1.0) * clearing * matched


def contracts(
    ask_price: jax.Array,  # [P] producers' contract prices
    ask_qty: jax.Array,  # [P, S] energy each producer offers per hour of the day
    bid_price: jax.Array,  # [U] utilities' contract prices
    bid_qty: jax.Array,  # [U, S] energy each utility wants per hour
    rule: str,
) -> tuple[jax.Array, jax.Array]:
    """The day-ahead forward auction: one double auction per hour of the next day on the
    blocks offered. Returns the signed contracted energy [P + U, S] (+ bought by utilities,
    - sold by producers) and its payments [P + U, S] (+ paid by utilities), settled hour by
    hour at delivery."""
    p, s = ask_qty.shape
    price = jnp.concatenate([ask_price, bid_price])
    is_buy = jnp.concatenate([jnp.zeros((p,), bool), jnp.ones(bid_price.shape, bool)])

    def hour(q):
        res = auction(price, q, is_buy, rule, jnp.zeros(()))
        return jnp.where(is_buy, res.qty, -res.qty), res.pay

    qty, pay = jax.vmap(hour, in_axes=1, out_axes=1)(jnp.concatenate([ask_qty, bid_qty]))
    return qty, pay
