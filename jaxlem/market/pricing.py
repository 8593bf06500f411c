"""Pricing rules of the P2P market, one small function each.

Pairwise rules price one matched unit between a bid ``b`` and an ask ``a`` (``b >= a``); community
rules price the whole community's matched volume from aggregate supply and demand and ignore limit
prices. Every rule only moves money between agents (P2P payments sum to zero); the DSO settles
whatever the P2P book leaves unmatched.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TypeAlias, cast

import jax
import jax.numpy as jnp

# a price or a rule parameter: a number or an array that broadcasts against the prices
Num: TypeAlias = jax.Array | float

PAIR_RULES = ("average", "pay_as_bid", "pay_as_ask", "k_double", "nash", "proportional_surplus")
COMMUNITY_RULES = ("mmr", "sdr", "bill_sharing")
RULES = (*PAIR_RULES, "uniform", *COMMUNITY_RULES)
_NEEDS_DSO_PRICES = ("nash", "mmr", "sdr", "bill_sharing")


def check_rule(
    rule: str,
    *,
    fit: Num | None = None,
    utility: Num | None = None,
    reference_price: Num | None = None,
) -> None:
    """Raise ValueError for an unknown rule or a rule missing the DSO prices it needs."""
    if rule not in RULES:
        raise ValueError(f"rule: got {rule!r}; allowed: one of {', '.join(RULES)}")
    if rule in _NEEDS_DSO_PRICES and (fit is None or utility is None):
        raise ValueError(f"rule: {rule!r} needs both fit and utility prices (got None)")
    if (
        rule == "proportional_surplus"
        and reference_price is None
        and (fit is None or utility is None)
    ):
        raise ValueError(
            "rule: 'proportional_surplus' needs reference_price or both fit and utility (got None)"
        )


def average(b: jax.Array, a: jax.Array) -> jax.Array:
    return 0.5 * (a + b)


def pay_as_bid(b: jax.Array, a: jax.Array) -> jax.Array:
    return b


def pay_as_ask(b: jax.Array, a: jax.Array) -> jax.Array:
    return a + 0.0 * b


def k_double(b: jax.Array, a: jax.Array, k: Num) -> jax.Array:
    """Bid-ask spread split: a + k (b - a), k in [0, 1]."""
    return a + jnp.clip(k, 0.0, 1.0) * (b - a)


def nash(b: jax.Array, a: jax.Array, fit: Num, utility: Num) -> jax.Array:
    """Nash bargaining with outside options: argmax (u-p)(p-f) = (u+f)/2, clipped to [a, b]."""
    return jnp.clip(0.5 * (fit + utility), a, b)


def proportional_surplus(b: jax.Array, a: jax.Array, m: Num) -> jax.Array:
    """Split b - a in proportion to each side's surplus against the reference price m."""
    db = jnp.maximum(0.0, b - m)
    ds = jnp.maximum(0.0, m - a)
    tot = db + ds
    share = jnp.where(tot > 0, db / jnp.where(tot > 0, tot, 1.0), 0.5)
    return a + share * (b - a)


def pair_price_fn(
    rule: str,
    *,
    k: Num,
    reference: Num | None,
    fit: Num | None,
    utility: Num | None,
) -> Callable[[jax.Array, jax.Array], jax.Array]:
    """The pair price ``f(b, a)`` the auction and the partner stage use under ``rule``.

    ``uniform`` prices partner trades at the pair average (the auction itself uses one price);
    community rules price partner trades by Nash bargaining between the DSO prices.
    """
    # ``check_rule`` has made sure that the prices the rule needs are given
    ref, fit_, util_ = cast(Num, reference), cast(Num, fit), cast(Num, utility)
    if rule == "average" or rule == "uniform":
        return average
    if rule == "pay_as_bid":
        return pay_as_bid
    if rule == "pay_as_ask":
        return pay_as_ask
    if rule == "k_double":
        return lambda b, a: k_double(b, a, k)
    if rule == "proportional_surplus":
        return lambda b, a: proportional_surplus(b, a, ref)
    if rule == "nash" or rule in COMMUNITY_RULES:
        return lambda b, a: nash(b, a, fit_, util_)
    raise ValueError(f"rule: got {rule!r}; allowed: one of {', '.join(RULES)}")


def community_price(rule: str, supply: Num, demand: Num, fit: Num, utility: Num) -> Num:
    """P2P price of the community rules from aggregate supply and demand.

    - ``mmr``: mid-market rate (u + f)/2.
    - ``sdr``: Liu et al. (2017); SDR = supply/demand; for SDR <= 1 the seller price
      f u / ((u - f) SDR + f) (buyers' blended price p_s SDR + u (1 - SDR) results from the
      pro-rata DSO residual), for SDR > 1 the FiT.
    - ``bill_sharing``: internal energy is free (price 0); the pro-rata DSO residuals then share the
      community's bill with the DSO in proportion to each agent's import or export.
    """
    if rule == "mmr":
        return 0.5 * (fit + utility)
    if rule == "sdr":
        sdr = supply / jnp.where(demand > 0, demand, 1.0)
        den = (utility - fit) * sdr + fit
        ps = jnp.where(den > 0, fit * utility / jnp.where(den > 0, den, 1.0), utility)
        return jnp.where(sdr <= 1.0, ps, fit)
    if rule == "bill_sharing":
        return jnp.zeros_like(jnp.asarray(supply))
    raise ValueError(f"rule: {rule!r} is not a community rule ({', '.join(COMMUNITY_RULES)})")
