"""Plain-NumPy float64 reference for ``jaxlem.market.clear``, written from the pricing rules.

Deliberately naive: a sequential two-pointer loop that matches one (buyer, seller) pair at a time,
so it shares no algorithm with the implementation's cumulative-axis / searchsorted clearing.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

PAIR_RULES = ("average", "pay_as_bid", "pay_as_ask", "k_double", "nash", "proportional_surplus")
COMMUNITY_RULES = ("mmr", "sdr", "bill_sharing")


@dataclass
class RefResult:
    matched_qty: np.ndarray
    payment: np.ndarray
    partner_qty: np.ndarray
    clearing_price: float
    volume: float
    supply: float
    demand: float
    trades: list  # (buyer, seller, qty, price) in matching order, partner trades first


def pair_price(rule, b, a, *, k=0.5, m=None, fit=None, utility=None):
    """Price of one unit between bid b and ask a (b >= a) under a pairwise rule."""
    if rule in ("average", "uniform"):
        return 0.5 * (a + b)
    if rule == "pay_as_bid":
        return b
    if rule == "pay_as_ask":
        return a
    if rule == "k_double":
        return a + k * (b - a)
    if rule == "nash" or rule in COMMUNITY_RULES:
        return min(max(0.5 * (utility + fit), a), b)
    if rule == "proportional_surplus":
        db = max(0.0, b - m)
        ds = max(0.0, m - a)
        if db + ds == 0:
            return 0.5 * (a + b)
        return a + db / (db + ds) * (b - a)
    raise ValueError(rule)


def community_price(rule, supply, demand, fit, utility):
    if rule == "mmr":
        return 0.5 * (utility + fit)
    if rule == "sdr":
        ratio = supply / demand
        if ratio <= 1.0:
            return fit * utility / ((utility - fit) * ratio + fit)
        return fit
    if rule == "bill_sharing":
        return 0.0
    raise ValueError(rule)


def reference_clear(
    bid_price,
    quantity,
    is_buy,
    rule,
    *,
    reference_price=None,
    fit=None,
    utility=None,
    k=0.5,
    reputation=None,
    partner=None,
) -> RefResult:
    price = np.asarray(bid_price, np.float64)
    qty = np.asarray(quantity, np.float64)
    is_buy = np.asarray(is_buy, bool)
    n = price.shape[0]
    ok = np.isfinite(price) & np.isfinite(qty) & (qty > 0)
    qty = np.where(ok, qty, 0.0)
    rep = np.zeros(n) if reputation is None else np.asarray(reputation, np.float64)
    fit = None if fit is None else float(fit)
    utility = None if utility is None else float(utility)
    if reference_price is not None:
        m = float(reference_price)
    elif fit is not None and utility is not None:
        m = 0.5 * (fit + utility)
    else:
        m = None

    def pp(b, a):
        return pair_price(rule, b, a, k=k, m=m, fit=fit, utility=utility)

    matched = np.zeros(n)
    payment = np.zeros(n)
    partner_qty = np.zeros(n)
    trades = []

    def book(b, s, t, p):
        matched[b] += t
        matched[s] += t
        payment[b] += t * p
        payment[s] -= t * p
        trades.append((b, s, t, p))

    # Partner stage: mutually-named, opposite sides, both active, bid >= ask.
    if partner is not None:
        partner = np.asarray(partner)
        for i in range(n):
            j = int(partner[i])
            if not (0 <= j < n) or j <= i or int(partner[j]) != i:
                continue
            if is_buy[i] == is_buy[j] or qty[i] <= 0 or qty[j] <= 0:
                continue
            b, s = (i, j) if is_buy[i] else (j, i)
            if price[b] < price[s]:
                continue
            t = min(qty[i], qty[j])
            book(b, s, t, pp(price[b], price[s]))
            partner_qty[b] += t
            partner_qty[s] += t
    rest = qty - partner_qty

    if rule in COMMUNITY_RULES:
        buyers = [i for i in range(n) if is_buy[i] and rest[i] > 0]
        sellers = [i for i in range(n) if not is_buy[i] and rest[i] > 0]
        s_tot = sum(rest[i] for i in sellers)
        d_tot = sum(rest[i] for i in buyers)
        vol = min(s_tot, d_tot)
        if vol > 0:
            p = community_price(rule, s_tot, d_tot, fit, utility)
            for i in buyers:
                t = rest[i] * vol / d_tot
                matched[i] += t
                payment[i] += t * p
            for j in sellers:
                t = rest[j] * vol / s_tot
                matched[j] += t
                payment[j] -= t * p
    else:
        # Priority lists: price (desc for bids, asc for asks), then reputation desc, then index.
        buyers = sorted(
            (i for i in range(n) if is_buy[i] and rest[i] > 0),
            key=lambda i: (-price[i], -rep[i], i),
        )
        sellers = sorted(
            (i for i in range(n) if not is_buy[i] and rest[i] > 0),
            key=lambda i: (price[i], -rep[i], i),
        )
        rb = {i: rest[i] for i in buyers}
        rs = {j: rest[j] for j in sellers}
        ib = js = 0
        pairs = []  # (buyer, seller, qty)
        while ib < len(buyers) and js < len(sellers):
            b, s = buyers[ib], sellers[js]
            if price[b] < price[s]:
                break
            t = min(rb[b], rs[s])
            pairs.append((b, s, t))
            rb[b] -= t
            rs[s] -= t
            if rb[b] == 0:
                ib += 1
            if rs[s] == 0:
                js += 1
        if rule == "uniform":
            if pairs:
                b_last, s_last, _ = pairs[-1]
                p_uni = 0.5 * (price[b_last] + price[s_last])
            for b, s, t in pairs:
                book(b, s, t, p_uni)
        else:
            for b, s, t in pairs:
                book(b, s, t, pp(price[b], price[s]))

    volume = float(np.sum(np.where(is_buy, matched, 0.0)))
    if volume > 0:
        clearing_price = float(np.sum(np.where(is_buy, payment, 0.0))) / volume
    else:
        clearing_price = 0.0 if m is None else m
    return RefResult(
        matched_qty=matched,
        payment=payment,
        partner_qty=partner_qty,
        clearing_price=clearing_price,
        volume=volume,
        supply=float(np.sum(np.where(is_buy, 0.0, qty))),
        demand=float(np.sum(np.where(is_buy, qty, 0.0))),
        trades=trades,
    )
