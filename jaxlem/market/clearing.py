"""Double-auction clearing of one order per agent in O(N log N) time and O(N) memory.

Buyers are sorted by limit price descending and sellers ascending (ties: higher reputation first,
then a key-driven random order, or the agent index when no key is given), in one sort of the whole
book on a packed 64-bit key (``sort_book``). Both sides are laid on one cumulative-quantity axis;
the unit at position ``q`` is bought by the buyer whose interval holds ``q`` and sold by the seller
whose interval holds ``q``, and it trades while ``bid >= ask``. The two breakpoint sequences are
merged by rank (one ``searchsorted``, no second sort) into at most ``2N`` segments, each of which
has exactly one buyer and one seller; the matched volume is the end of the last segment whose bid
covers its ask, and payments for the pairwise pricing rules are integrated over the segments.
No N x N array is ever built.

Units are the caller's: ``payment = price * quantity``.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeAlias, cast

import jax
import jax.numpy as jnp
from flax import struct
from jaxtyping import Array, ArrayLike, Bool, Float, Int

from jaxlem.market import pricing
from jaxlem.market.pricing import Num

PRICE_BOUND = 1e9  # limit prices are clipped to +-PRICE_BOUND so sorting sentinels stay finite

# ``pair_terms(buyer_idx, seller_idx) -> (loss_fraction, fee_per_unit)``, elementwise over pairs
# (index arrays: JAX in ``clear``, NumPy in ``trade_log``)
PairTerms: TypeAlias = Callable[[Any, Any], tuple[ArrayLike, ArrayLike]]
# ``pair_price(bid, ask) -> price``, elementwise
PairPrice: TypeAlias = Callable[[Array, Array], Array]


@struct.dataclass
class ClearingResult:
    """Outcome of one clearing. Arrays [N] are per agent in the caller's order."""

    matched_qty: Float[Array, " N"]  # energy traded peer to peer (>= 0), partner stage included
    payment: Float[Array, " N"]  # money paid into the P2P book: + buyers, - sellers; sums to 0
    partner_qty: Float[Array, " N"]  # part of matched_qty traded in the mutual-partner stage
    clearing_price: Float[Array, ""]  # volume-weighted mean price of matched units (or fallback)
    volume: Float[Array, ""]  # total matched energy (= matched buy = matched sell)
    supply: Float[Array, ""]  # total energy offered by sellers
    demand: Float[Array, ""]  # total energy bid by buyers
    spread: Float[Array, ""]  # best bid - best ask of the book (0 when a side is empty)
    loss: Float[Array, " N"]  # energy lost in transit on the agent's purchases (buyers only)
    fee: Float[Array, " N"]  # network fee the agent owes the DSO for its P2P trades


def _sanitize(price: jax.Array, qty: jax.Array) -> tuple[jax.Array, jax.Array]:
    ok = jnp.isfinite(price) & jnp.isfinite(qty)
    qty = jnp.where(ok, jnp.maximum(qty, 0.0), 0.0)
    price = jnp.where(ok, jnp.clip(price, -PRICE_BOUND, PRICE_BOUND), 0.0)
    return price, qty


RANK_BITS = 30  # low bits of the packed sort key that hold an order's rank: N <= 2**30


def _float_code(x: jax.Array) -> jax.Array:
    """uint64 code of float32 ``x`` whose integer order is the float order (-0 counts as +0)."""
    bits = jax.lax.bitcast_convert_type(jnp.where(x == 0, 0.0, x), jnp.uint32)
    neg = (bits >> 31) == 1
    return jnp.where(neg, ~bits, bits | jnp.uint32(0x80000000)).astype(jnp.uint64)


def _rank_by(code_hi: jax.Array, rank_lo: jax.Array, order_lo: jax.Array):
    """Order and rank of the elements by (``code_hi``, ``rank_lo``), where ``rank_lo`` is a
    permutation of 0..N-1 and ``order_lo`` its inverse (the element at each rank)."""
    n = code_hi.shape[0]
    low = jax.lax.sort((code_hi << 32) | rank_lo.astype(jnp.uint64)) & jnp.uint64(0xFFFFFFFF)
    order = order_lo[low.astype(jnp.int32)]
    rank = jnp.zeros((n,), jnp.int32).at[order].set(jnp.arange(n, dtype=jnp.int32))
    return order, rank


def sort_book(price, q_buy, q_sell, reputation, tie):
    """One sort of the whole book: active buyers by price descending, then active sellers by price
    ascending, then inactive orders; ties by reputation (desc), then ``tie`` (None: index order).

    Returns the permutation and the group of each sorted slot (0 buyer, 1 seller, 2 inactive).
    The lexicographic keys are packed into one uint64 per order (XLA sorts a single integer
    operand several times faster than a multi-operand comparator sort): the tie-breaks first
    become a rank (a sort of ``tie << 32 | index``, then of ``-reputation << 32 | rank``), and
    the book's key is ``group << 62 | price << 30 | rank``. The order is exactly that of the
    lexicographic sort of (group, price, -reputation, tie, index), which float64 prices (x64
    mode: 64 price bits do not fit the packed key) get directly.
    """
    n = price.shape[0]
    if n > 2**RANK_BITS:
        raise ValueError(f"book size: got {n}; allowed range [0, {2**RANK_BITS}]")
    buy, sell = q_buy > 0, q_sell > 0
    group = jnp.where(buy, 0, jnp.where(sell, 1, 2)).astype(jnp.int32)
    key_price = jnp.where(buy, -price, jnp.where(sell, price, 0.0))
    idx = jnp.arange(n, dtype=jnp.int32)
    if price.dtype != jnp.float32:
        keys = [group, key_price]
        keys += [] if reputation is None else [jnp.where(group < 2, -reputation, 0.0)]
        keys += [] if tie is None else [tie]
        out = jax.lax.sort((*keys, idx), num_keys=len(keys), is_stable=True)
        return out[-1], out[0]
    with jax.enable_x64(True):
        order, rank = idx, idx
        if tie is not None:
            order, rank = _rank_by(jnp.asarray(tie, jnp.uint32).astype(jnp.uint64), idx, idx)
        if reputation is not None:
            rep = jnp.where(group < 2, -reputation, 0.0)
            order, rank = _rank_by(_float_code(rep), rank, order)
        key = (
            (group.astype(jnp.uint64) << 62)
            | (_float_code(key_price) << RANK_BITS)
            | rank.astype(jnp.uint64)
        )
        out = jax.lax.sort(key)
        perm = order[(out & jnp.uint64(2**RANK_BITS - 1)).astype(jnp.int32)]
        group_sorted = (out >> 62).astype(jnp.int32)
    return perm, group_sorted


def _unsort(values_sorted: jax.Array, perm: jax.Array) -> jax.Array:
    return jnp.zeros_like(values_sorted).at[perm].set(values_sorted)


def _partner_stage(price, qty, is_buy, partner, pair_price_fn, pair_terms):
    """Mutually-named buyer/seller pairs with bid >= ask trade min(q_i, q_j) bilaterally first."""
    n = price.shape[0]
    idx = jnp.arange(n, dtype=jnp.int32)
    valid = (partner >= 0) & (partner < n)
    j = jnp.clip(partner, 0, n - 1).astype(jnp.int32)
    bid = jnp.where(is_buy, price, price[j])
    ask = jnp.where(is_buy, price[j], price)
    mutual = (
        valid
        & (j[j] == idx)
        & valid[j]
        & (is_buy != is_buy[j])
        & (qty > 0)
        & (qty[j] > 0)
        & (bid >= ask)
    )
    q = jnp.where(mutual, jnp.minimum(qty, qty[j]), 0.0)
    p = pair_price_fn(bid, ask)
    buyer = jnp.where(is_buy, idx, j)
    seller = jnp.where(is_buy, j, idx)
    lossf, fee_rate = _terms(pair_terms, buyer, seller, q)
    delivered = q * (1.0 - lossf)
    pay = jnp.where(is_buy, 1.0, -1.0) * p * delivered
    loss = jnp.where(is_buy, q * lossf, 0.0)
    fee = 0.5 * fee_rate * delivered
    return q, pay, loss, fee


def _terms(pair_terms, buyer, seller, q):
    """Loss fraction in [0, 1] and fee per delivered unit for each (buyer, seller) pair."""
    if pair_terms is None:
        zero = jnp.zeros_like(q)
        return zero, zero
    lossf, fee_rate = pair_terms(buyer, seller)
    lossf = jnp.clip(jnp.where(jnp.isfinite(lossf), lossf, 0.0), 0.0, 1.0)
    fee_rate = jnp.where(jnp.isfinite(fee_rate), jnp.maximum(fee_rate, 0.0), 0.0)
    return lossf, fee_rate


def community_match(
    q_buy: Float[Array, " N"],
    q_sell: Float[Array, " N"],
    rule: str,
    fit: Num | None,
    utility: Num | None,
    pair_terms: PairTerms | None,
) -> tuple[Float[Array, " N"], Float[Array, " N"], Float[Array, " N"], Float[Array, " N"]]:
    """Pro-rata sharing for the community-level rules (limit prices ignored).

    There are no pairs: a buyer's loss and fee are those between it and the community pool
    (``pair_terms(i, -1)``); the buyer pays the whole fee, sellers share the buyers' payments
    for delivered energy pro rata.
    """
    supply, demand = jnp.sum(q_sell), jnp.sum(q_buy)
    volume = jnp.minimum(supply, demand)
    buy_frac = jnp.where(demand > 0, volume / jnp.where(demand > 0, demand, 1.0), 0.0)
    sell_frac = jnp.where(supply > 0, volume / jnp.where(supply > 0, supply, 1.0), 0.0)
    # the community rules need both DSO prices (``pricing.check_rule``)
    price = pricing.community_price(rule, supply, demand, cast(Num, fit), cast(Num, utility))
    mb, ms = q_buy * buy_frac, q_sell * sell_frac
    idx = jnp.arange(q_buy.shape[0], dtype=jnp.int32)
    lossf, fee_rate = _terms(pair_terms, idx, jnp.full_like(idx, -1), mb)
    delivered = mb * (1.0 - lossf)
    pay_b = price * delivered
    total_pay = jnp.sum(pay_b)
    safe_vol = jnp.where(volume > 0, volume, 1.0)
    payment = pay_b - jnp.where(volume > 0, total_pay * ms / safe_vol, 0.0)
    return mb + ms, payment, mb * lossf, fee_rate * delivered


def _ss(sorted_arr, query, side):
    return jnp.searchsorted(sorted_arr, query, side=side, method="scan")


def match_segments(
    price: Float[Array, " N"],
    q_buy: Float[Array, " N"],
    q_sell: Float[Array, " N"],
    rule: str,
    reputation: Float[Array, " N"] | None,
    tie: Array | None,
    pair_price_fn: PairPrice,
) -> dict[str, Array]:
    """Lay the sorted book on the cumulative-quantity axis and cut it into <= 2N segments.

    Returns a dict of per-segment arrays [2N] (``qty``, ``price``, sorted-slot indices ``ib``,
    ``js``), per-slot matched quantities ``mb``/``ms`` [N], and the permutation ``perm``.
    """
    n = price.shape[0]
    perm, group = sort_book(price, q_buy, q_sell, reputation, tie)
    p = price[perm]
    qb = jnp.where(group == 0, q_buy[perm], 0.0)
    qs = jnp.where(group == 1, q_sell[perm], 0.0)
    cum_b = jnp.cumsum(qb)  # flat after the buyers
    cum_s = jnp.cumsum(qs)  # zero through the buyers
    # Merge the two breakpoint sequences by rank (no second sort): buyer i goes after the sellers
    # with cum_s < cum_b[i] (ties: buyers first) and the sellers fill the free places in order.
    # Each segment [lo, t) of the merged axis then has exactly one buyer and one seller: those
    # whose breakpoints all lie before it.
    pos_b = jnp.arange(n) + _ss(cum_s, cum_b, "left")
    from_b = jnp.zeros((2 * n,), bool).at[pos_b].set(True)
    fb = from_b.astype(jnp.int32)
    nb = jnp.cumsum(fb)  # buyer breakpoints up to and including each place
    ns = jnp.arange(1, 2 * n + 1, dtype=jnp.int32) - nb
    t = jnp.where(from_b, cum_b[jnp.maximum(nb - 1, 0)], cum_s[jnp.maximum(ns - 1, 0)])
    lo = jnp.concatenate([jnp.zeros((1,), t.dtype), t[:-1]])
    ib = jnp.clip(nb - fb, 0, n - 1)
    js = jnp.clip(ns - (1 - fb), 0, n - 1)
    # The units of a segment trade while its bid >= its ask; along the axis bids fall and asks
    # rise, so the traded segments are a prefix and the volume is the end of the last one.
    trades = (t > lo) & (lo < cum_b[-1]) & (lo < cum_s[-1]) & (p[ib] >= p[js])
    volume = jnp.maximum(jnp.max(jnp.where(trades, t, 0.0)), 0.0)

    if rule == "uniform":
        ib_v = jnp.clip(_ss(cum_b, volume, "left"), 0, n - 1)
        js_v = jnp.clip(_ss(cum_s, volume, "left"), 0, n - 1)
        uniform_price = 0.5 * (p[ib_v] + p[js_v])
        pair_price_fn = lambda b, a: jnp.full_like(b, uniform_price)  # noqa: E731

    return {
        "qty": jnp.clip(jnp.minimum(t, volume) - lo, 0.0, None),
        "price": pair_price_fn(p[ib], p[js]),
        "ib": ib,
        "js": js,
        "mb": jnp.clip(volume - (cum_b - qb), 0.0, qb),
        "ms": jnp.clip(volume - (cum_s - qs), 0.0, qs),
        "perm": perm,
    }


def _auction(price, q_buy, q_sell, rule, reputation, tie, pair_price_fn, pair_terms):
    """Continuous double auction; per-agent (matched, payment, loss, fee) in the caller's order."""
    n = price.shape[0]
    seg = match_segments(price, q_buy, q_sell, rule, reputation, tie, pair_price_fn)
    ib, js, perm = seg["ib"], seg["js"], seg["perm"]
    lossf, fee_rate = _terms(pair_terms, perm[ib], perm[js], seg["qty"])
    seg_deliv = seg["qty"] * (1.0 - lossf)
    seg_pay = seg_deliv * seg["price"]
    seg_fee = 0.5 * fee_rate * seg_deliv

    def to_slots(v, i):
        return jax.ops.segment_sum(v, i, num_segments=n)

    pay = to_slots(seg_pay, ib) - to_slots(seg_pay, js)
    loss = to_slots(seg["qty"] * lossf, ib)
    fee = to_slots(seg_fee, ib) + to_slots(seg_fee, js)
    matched = seg["mb"] + seg["ms"]
    return tuple(_unsort(v, perm) for v in (matched, pay, loss, fee))


@struct.dataclass
class _Book:
    """A sanitised book after the partner stage (shared by ``clear`` and the trade log)."""

    price: jax.Array
    qty: jax.Array
    is_buy: jax.Array
    q_buy: jax.Array
    q_sell: jax.Array
    partner: tuple[Array, Array, Array, Array]  # per-agent (qty, payment, loss, fee) of partners
    tie: jax.Array | None
    reputation: jax.Array | None
    m: Num | None = struct.field(pytree_node=True, default=None)  # pair rules reference
    pair_price_fn: PairPrice = struct.field(pytree_node=False, default=None)


def prepare_book(
    bid_price: ArrayLike,
    quantity: ArrayLike,
    is_buy: ArrayLike,
    rule: str,
    reference_price: Num | None,
    fit: Num | None,
    utility: Num | None,
    k: Num,
    key: jax.Array | None,
    reputation: ArrayLike | None,
    partner: ArrayLike | None,
    pair_terms: PairTerms | None,
) -> _Book:
    """The sanitised book of ``clear`` (arguments as there) after the partner stage."""
    pricing.check_rule(rule, fit=fit, utility=utility, reference_price=reference_price)
    price, qty = _sanitize(jnp.asarray(bid_price), jnp.asarray(quantity))
    is_buy = jnp.asarray(is_buy, bool)
    n = price.shape[0]
    mid = None if fit is None or utility is None else 0.5 * (fit + utility)
    m = mid if reference_price is None else reference_price
    pair_price_fn = pricing.pair_price_fn(rule, k=k, reference=m, fit=fit, utility=utility)
    if partner is not None:
        stage = _partner_stage(
            price, qty, is_buy, jnp.asarray(partner, jnp.int32), pair_price_fn, pair_terms
        )
    else:
        stage = (jnp.zeros_like(qty),) * 4
    rest = qty - stage[0]
    return _Book(
        price=price,
        qty=qty,
        is_buy=is_buy,
        q_buy=jnp.where(is_buy, rest, 0.0),
        q_sell=jnp.where(is_buy, 0.0, rest),
        partner=stage,
        tie=None if key is None else jax.random.bits(key, (n,), jnp.uint32),
        reputation=None if reputation is None else jnp.asarray(reputation, price.dtype),
        m=m,
        pair_price_fn=pair_price_fn,
    )


def clear(
    bid_price: Float[Array, " N"],
    quantity: Float[Array, " N"],
    is_buy: Bool[Array, " N"],
    rule: str,
    *,
    reference_price: Float[Array, ""] | float | None = None,
    fit: Float[Array, ""] | float | None = None,
    utility: Float[Array, ""] | float | None = None,
    k: Float[Array, ""] | float = 0.5,
    key: jax.Array | None = None,
    reputation: Float[Array, " N"] | None = None,
    partner: Int[Array, " N"] | None = None,
    pair_terms: PairTerms | None = None,
) -> ClearingResult:
    """Clear one peer-to-peer book of one order per agent.

    Args:
      bid_price: [N] limit price of each order (currency per unit of quantity).
      quantity: [N] energy each agent wants to buy (``is_buy``) or sell; <= 0 means no order.
      is_buy: [N] bool, True for a bid, False for an ask.
      rule: pricing rule name, one of ``pricing.RULES`` (static).
      reference_price: last clearing price, used by ``proportional_surplus`` (default DSO mid).
      fit, utility: DSO feed-in tariff and utility price (``nash`` and the community rules).
      k: bid-ask split of ``k_double`` in [0, 1].
      key: PRNG key for random tie-breaking among equal prices (index order if None).
      reputation: [N] optional; higher reputation wins ties before the random order.
      partner: [N] int optional; agent i names partner[i] (-1 none); mutual compatible pairs
        trade first, bilaterally, at the rule's pair price.
      pair_terms: optional ``f(buyer_idx, seller_idx) -> (loss_fraction, fee_per_unit)`` evaluated
        per matched pair (seller -1 is the community pool under the community rules). The buyer
        receives ``q (1 - loss)`` and pays for delivered energy only; the fee (price units per
        delivered unit) is split half and half between buyer and seller.

    Non-finite prices or quantities drop the order; prices are clipped to +-PRICE_BOUND.
    """
    b = prepare_book(
        bid_price,
        quantity,
        is_buy,
        rule,
        reference_price,
        fit,
        utility,
        k,
        key,
        reputation,
        partner,
        pair_terms,
    )
    price, qty, is_buy, m, q_buy, q_sell = b.price, b.qty, b.is_buy, b.m, b.q_buy, b.q_sell
    dtype = price.dtype
    partner_qty, partner_pay, partner_loss, partner_fee = b.partner

    if rule in pricing.COMMUNITY_RULES:
        matched, payment, loss, fee = community_match(q_buy, q_sell, rule, fit, utility, pair_terms)
    else:
        matched, payment, loss, fee = _auction(
            price, q_buy, q_sell, rule, b.reputation, b.tie, b.pair_price_fn, pair_terms
        )

    matched = matched + partner_qty
    payment = payment + partner_pay
    loss = loss + partner_loss
    fee = fee + partner_fee
    volume = jnp.sum(jnp.where(is_buy, matched, 0.0))
    delivered = jnp.sum(jnp.where(is_buy, matched - loss, 0.0))
    buyer_paid = jnp.sum(jnp.where(is_buy, payment, 0.0))
    fallback = jnp.asarray(0.0 if m is None else m, dtype)
    safe_del = jnp.where(delivered > 0, delivered, 1.0)
    clearing_price = jnp.where(delivered > 0, buyer_paid / safe_del, fallback)

    has_b = jnp.any(is_buy & (qty > 0))
    has_s = jnp.any(~is_buy & (qty > 0))
    best_bid = jnp.max(jnp.where(is_buy & (qty > 0), price, -PRICE_BOUND))
    best_ask = jnp.min(jnp.where(~is_buy & (qty > 0), price, PRICE_BOUND))
    spread = jnp.where(has_b & has_s, best_bid - best_ask, 0.0)
    return ClearingResult(
        matched_qty=matched,
        payment=payment,
        partner_qty=partner_qty,
        clearing_price=clearing_price.astype(dtype),
        volume=volume,
        supply=jnp.sum(jnp.where(is_buy, 0.0, qty)),
        demand=jnp.sum(jnp.where(is_buy, qty, 0.0)),
        spread=spread.astype(dtype),
        loss=loss,
        fee=fee,
    )
