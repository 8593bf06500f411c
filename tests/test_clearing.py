"""Tests for jaxlem.market.clear against a plain-NumPy two-pointer reference (reference_market.py).

Numerics: the books are float32 (the dtype the library runs in) and the reference re-reads the very
same float32 values in float64, so every price comparison (bid >= ask, ties) is decided identically
on both sides. The implementation then works on float32 prefix sums of the quantities, so its
absolute error scales with the book's *total* quantity (and, for money, with the largest price),
not with the single order: a prefix sum of <= 24 terms is off by at most ~24 * 2**-24 * total.
We therefore compare with rtol=1e-5 and atol = 1e-5 * total quantity (times the price scale for
money), which is ~3x that worst case and still orders of magnitude below what a wrong pairing,
price or ordering produces. The ``uniform`` rule's price jumps when the marginal pair changes, so
its books use dyadic quantities (k/1024), whose float32 prefix sums are exact.
"""

from __future__ import annotations

import functools
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from reference_market import reference_clear

from jaxlem.market import COMMUNITY_RULES, RULES, clear
from jaxlem.market.clearing import PRICE_BOUND, sort_book

N = 24  # every random book is padded to this size so each jitted function compiles once
# Tie randomisation is rule-independent code; one representative per auction pricing code path
# (segment-integrated pair prices / one uniform price) keeps the number of compiled variants down.
KEYED_RULES = ("average", "uniform")
LINEAR_RULES = ("average", "pay_as_bid", "pay_as_ask", "k_double", "uniform")
FIELDS = (
    "matched_qty",
    "payment",
    "partner_qty",
    "clearing_price",
    "volume",
    "supply",
    "demand",
    "spread",
)

SETTINGS = settings(
    max_examples=60,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)


# --------------------------------------------------------------------------- helpers


def _positional(rule):
    def f(price, qty, is_buy, rep, partner, key, fit, utility, ref, k):
        return clear(
            price,
            qty,
            is_buy,
            rule,
            reference_price=ref,
            fit=fit,
            utility=utility,
            k=k,
            key=key,
            reputation=rep,
            partner=partner,
        )

    return f


@functools.cache
def jclear(rule):
    """One jitted clear per rule (rule static); key=None / a key array are two cached traces."""
    return jax.jit(_positional(rule))


@functools.cache
def vclear(rule):
    return jax.jit(jax.vmap(_positional(rule)))


class Book(NamedTuple):
    price: np.ndarray  # float32 [N]
    qty: np.ndarray  # float32 [N]
    is_buy: np.ndarray  # bool [N]
    rep: np.ndarray  # float32 [N]
    partner: np.ndarray  # int32 [N]


class Dso(NamedTuple):
    fit: np.float32
    utility: np.float32
    ref: np.float32
    k: np.float32


def run(rule, book, dso, key=None):
    out = jclear(rule)(book.price, book.qty, book.is_buy, book.rep, book.partner, key, *dso)
    return {f: np.asarray(getattr(out, f), np.float64) for f in FIELDS}


def to_np(res):
    return {f: np.asarray(getattr(res, f), np.float64) for f in FIELDS}


def run_ref(rule, book, dso, partner=True):
    return reference_clear(
        book.price,
        book.qty,
        book.is_buy,
        rule,
        reference_price=dso.ref,
        fit=dso.fit,
        utility=dso.utility,
        k=float(dso.k),
        reputation=book.rep,
        partner=book.partner if partner else None,
    )


def _active(price, qty):
    price = np.asarray(price, np.float64)
    qty = np.asarray(qty, np.float64)
    with np.errstate(invalid="ignore"):
        return np.isfinite(price) & np.isfinite(qty) & (qty > 0)


def _scales(price, qty, dso=None):
    """(atol for quantities, atol for money, price scale) of one book; see module docstring."""
    ok = _active(price, qty)
    total_q = float(np.sum(np.where(ok, qty, 0.0)))
    p = np.clip(np.where(ok, np.asarray(price, np.float64), 0.0), -PRICE_BOUND, PRICE_BOUND)
    p_scale = max(1.0, float(np.max(np.abs(p), initial=0.0)))
    if dso is not None:
        p_scale = max(p_scale, abs(float(dso.fit)), abs(float(dso.utility)), abs(float(dso.ref)))
    atol_q = 1e-5 * total_q + 1e-12
    return atol_q, atol_q * p_scale, p_scale


def assert_matches_reference(out, ref, book, dso, rule):
    atol_q, atol_pay, p_scale = _scales(book.price, book.qty, dso)
    ctx = f"rule={rule}\nbook={book}\ndso={dso}\nref trades={ref.trades}"
    np.testing.assert_allclose(out["matched_qty"], ref.matched_qty, 1e-5, atol_q, err_msg=ctx)
    np.testing.assert_allclose(out["payment"], ref.payment, 1e-5, atol_pay, err_msg=ctx)
    np.testing.assert_allclose(out["partner_qty"], ref.partner_qty, 1e-5, atol_q, err_msg=ctx)
    for name in ("volume", "supply", "demand"):
        np.testing.assert_allclose(out[name], getattr(ref, name), 1e-5, atol_q, err_msg=ctx)
    # The clearing price is money / volume: its error is the money error over the volume.
    cp_tol = 1e-5 * p_scale + (2 * atol_pay / ref.volume if ref.volume > 0 else 0.0)
    np.testing.assert_allclose(out["clearing_price"], ref.clearing_price, 0, cp_tol, err_msg=ctx)
    # Spread of the book: best active bid - best active ask, 0 if a side is empty.
    ok = _active(book.price, book.qty)
    bids, asks = book.price[ok & book.is_buy], book.price[ok & ~book.is_buy]
    spread = float(bids.max()) - float(asks.min()) if bids.size and asks.size else 0.0
    np.testing.assert_allclose(out["spread"], spread, 1e-6, 1e-6 * p_scale, err_msg=ctx)


def check_invariants(out, price, qty, is_buy, rule):
    """Spec invariants that hold for any book and any tie-break order."""
    for name, v in out.items():
        assert np.all(np.isfinite(v)), f"{name} not finite: {v}"
    ok = _active(price, qty)
    q = np.where(ok, np.asarray(qty, np.float64), 0.0)
    atol_q, atol_pay, _ = _scales(price, qty)
    m, pay, vol = out["matched_qty"], out["payment"], out["volume"]
    assert np.all(m >= -atol_q), m
    assert np.all(m <= q * (1 + 1e-5) + atol_q), (m, q)
    assert np.all(m[~ok] == 0) and np.all(pay[~ok] == 0), (m, pay)
    assert np.all(out["partner_qty"] >= 0)
    assert np.all(out["partner_qty"] <= m * (1 + 1e-5) + atol_q)
    buy_vol, sell_vol = m[is_buy].sum(), m[~is_buy].sum()
    np.testing.assert_allclose(buy_vol, vol, 1e-5, atol_q)
    np.testing.assert_allclose(sell_vol, vol, 1e-5, atol_q)
    assert vol <= min(out["supply"], out["demand"]) * (1 + 1e-5) + atol_q
    money = np.abs(pay).sum()
    assert abs(pay.sum()) <= 1e-5 * money + 1e-12 * (1 + money), (pay.sum(), money)
    if rule in COMMUNITY_RULES:
        return  # community rules ignore limit prices
    # Individual rationality (prices as the implementation sees them, clipped to +-PRICE_BOUND).
    p = np.clip(np.where(ok, np.asarray(price, np.float64), 0.0), -PRICE_BOUND, PRICE_BOUND)
    b, s = is_buy & ok, ~is_buy & ok
    assert np.all(pay[b] <= p[b] * m[b] + atol_pay), ("buyer pays above its bid", pay, p, m)
    assert np.all(-pay[s] >= p[s] * m[s] - atol_pay), ("seller gets below its ask", pay, p, m)
    # Every pair price lies in [ask, bid], hence within [lowest ask, highest bid] of the book.
    lo_book = p[s].min(initial=0.0)
    hi_book = p[b].max(initial=0.0)
    assert np.all(pay[b] >= lo_book * m[b] - atol_pay), ("buyer pays below every ask", pay, m)
    assert np.all(-pay[s] <= hi_book * m[s] + atol_pay), ("seller gets above every bid", pay, m)
    if vol > 0:
        traded = m > 0  # float noise can only add agents, which only widens [lo, hi]
        lo = p[traded & s].min(initial=np.inf)
        hi = p[traded & b].max(initial=-np.inf)
        tol = 1e-5 * max(1.0, abs(lo), abs(hi)) + 2 * atol_pay / vol
        assert lo - tol <= out["clearing_price"] <= hi + tol, (out["clearing_price"], lo, hi)


# --------------------------------------------------------------------------- strategies

price_grid = st.integers(-3, 12).map(float)  # small grid: many exact ties
# float32 values only. XLA on CPU flushes float32 subnormals to zero (a bid of -1e-45 ties an ask of
# 0 there), so no strategy draws subnormals.
f32 = functools.partial(st.floats, width=32, allow_subnormal=False)
price_float = f32(-20.0, 150.0)
qty_int = st.integers(1, 100).map(float)
qty_dyadic = st.integers(1, 100 * 1024).map(lambda i: i / 1024)  # float32 sums stay exact
qty_float = f32(2**-10, 100.0)


@st.composite
def books(draw, exact_qty=False, with_partner=False):
    n = draw(st.integers(1, N))
    price_el = draw(st.sampled_from([price_grid, price_float, st.one_of(price_grid, price_float)]))
    q_choices = [st.just(0.0), qty_int, qty_dyadic] + ([] if exact_qty else [qty_float])
    qty_el = st.one_of(*q_choices)
    rep_el = draw(st.sampled_from([st.just(0.0), st.integers(0, 2).map(float), f32(0, 1)]))
    price = np.zeros(N, np.float32)
    qty = np.zeros(N, np.float32)
    is_buy = np.zeros(N, bool)
    rep = np.zeros(N, np.float32)
    partner = np.full(N, -1, np.int32)
    price[:n] = draw(st.lists(price_el, min_size=n, max_size=n))
    qty[:n] = draw(st.lists(qty_el, min_size=n, max_size=n))
    is_buy[:n] = draw(st.lists(st.booleans(), min_size=n, max_size=n))
    rep[:n] = draw(st.lists(rep_el, min_size=n, max_size=n))
    if with_partner:
        # Random names (some out of range), then deliberate mutual pairs, some made compatible.
        partner[:n] = draw(st.lists(st.integers(-3, N + 2), min_size=n, max_size=n))
        perm = draw(st.permutations(range(n)))
        for t in range(draw(st.integers(0, n // 2))):
            i, j = perm[2 * t], perm[2 * t + 1]
            partner[i], partner[j] = j, i
            if draw(st.booleans()):  # force a compatible buyer/seller pair
                is_buy[i], is_buy[j] = True, False
                if price[i] < price[j]:
                    price[i], price[j] = price[j], price[i]
    return Book(price, qty, is_buy, rep, partner)


@st.composite
def dsos(draw):
    fit = np.float32(draw(st.one_of(st.integers(0, 5).map(float), f32(0, 5))))
    gap = draw(st.one_of(st.integers(1, 8).map(float), f32(0.125, 10)))
    utility = np.float32(fit + np.float32(gap))
    ref = np.float32(draw(st.one_of(price_grid, f32(-5, 15))))
    k = np.float32(draw(st.one_of(st.sampled_from([0.0, 0.5, 1.0]), f32(0, 1))))
    return Dso(fit, utility, ref, k)


# --------------------------------------------------------------------------- 1. vs reference


@pytest.mark.parametrize("rule", RULES)
@SETTINGS
@given(data=st.data())
def test_matches_reference(rule, data):
    book = data.draw(books(exact_qty=rule == "uniform"))
    dso = data.draw(dsos())
    out = run(rule, book, dso)
    ref = run_ref(rule, book, dso)
    assert_matches_reference(out, ref, book, dso, rule)
    check_invariants(out, book.price, book.qty, book.is_buy, rule)


def pad8(*arrays, fill=0.0):
    """Pad small hand-made arrays to length 8 (float32; a bool list stays bool, padded False)."""
    out = []
    for a in arrays:
        a = np.asarray(a)
        dtype = bool if a.dtype == bool else np.float32
        full = np.full(8, False if dtype is bool else fill, dtype)
        full[: len(a)] = a
        out.append(full)
    return out


# Hand-computed book: bids 10 (q3, agent 0) and 8 (q2, agent 1); asks 5 (q4, agent 2) and
# 9 (q4, agent 3). Two-pointer: (0, 2) trade 3, then (1, 2) trade 1, then 8 < 9 stops.
# Agents 4..7 have no order (quantity 0, a priced far in the money: must be ignored). Small
# hand-made books are all of size 8 so that the eager calls compile their ops for one shape only.
HAND = dict(
    bid_price=np.array([10.0, 8.0, 5.0, 9.0, 100.0, -100.0, 0.0, 0.0], np.float32),
    quantity=np.array([3.0, 2.0, 4.0, 4.0, 0.0, 0.0, 0.0, 0.0], np.float32),
    is_buy=np.array([True, True, False, False, True, False, True, False]),
)
HAND_KW = dict(fit=2.0, utility=10.0, k=0.25)  # mid (f + u)/2 = 6
HAND_EXPECTED = {
    "average": ([3, 1, 4, 0], [22.5, 6.5, -29, 0]),
    "pay_as_bid": ([3, 1, 4, 0], [30, 8, -38, 0]),
    "pay_as_ask": ([3, 1, 4, 0], [15, 5, -20, 0]),
    "k_double": ([3, 1, 4, 0], [18.75, 5.75, -24.5, 0]),  # 5 + .25*5, 5 + .25*3
    "nash": ([3, 1, 4, 0], [18, 6, -24, 0]),  # clip(6, 5, 10), clip(6, 5, 8)
    # m = 6: (10, 5): db 4, ds 1 -> 9;  (8, 5): db 2, ds 1 -> 7
    "proportional_surplus": ([3, 1, 4, 0], [27, 7, -34, 0]),
    "uniform": ([3, 1, 4, 0], [19.5, 6.5, -26, 0]),  # last pair (8, 5) -> 6.5
    # S = 8, D = 5: buyers fully served, sellers 4 * 5/8 = 2.5 each.
    "mmr": ([3, 2, 2.5, 2.5], [18, 12, -15, -15]),
    "sdr": ([3, 2, 2.5, 2.5], [6, 4, -5, -5]),  # SDR = 1.6 > 1 -> fit
    "bill_sharing": ([3, 2, 2.5, 2.5], [0, 0, 0, 0]),
}


@pytest.mark.parametrize("rule", RULES)
def test_hand_computed_book(rule):
    """Pins both the implementation and the reference to hand-computed numbers."""
    want_q, want_pay = (np.concatenate([w, np.zeros(4)]) for w in HAND_EXPECTED[rule])
    res = clear(**HAND, rule=rule, **HAND_KW)
    ref = reference_clear(*HAND.values(), rule, **HAND_KW)
    for got_q, got_pay in ((res.matched_qty, res.payment), (ref.matched_qty, ref.payment)):
        np.testing.assert_allclose(np.asarray(got_q), want_q, rtol=1e-6)
        np.testing.assert_allclose(np.asarray(got_pay), want_pay, rtol=1e-6, atol=1e-6)
    vol = sum(want_q[:2])
    np.testing.assert_allclose(float(res.volume), vol, rtol=1e-6)
    np.testing.assert_allclose(float(res.clearing_price), sum(want_pay[:2]) / vol, rtol=1e-6)
    assert float(res.supply) == 8.0 and float(res.demand) == 5.0
    assert float(res.spread) == 5.0  # best bid 10 - best ask 5


def test_sdr_below_one():
    # S = 2 < D = 5: SDR = 0.4, price f u / ((u - f) SDR + f) = 24 / (10 * 0.4 + 2) = 4.
    price, qty, is_buy = pad8([1.0, 50.0], [5.0, 2.0], [True, False])  # limit prices ignored
    res = clear(price, qty, is_buy, "sdr", fit=2.0, utility=12.0)
    np.testing.assert_allclose(np.asarray(res.matched_qty), pad8([2, 2])[0], rtol=1e-6)
    np.testing.assert_allclose(np.asarray(res.payment), pad8([8, -8])[0], rtol=1e-6)
    np.testing.assert_allclose(float(res.clearing_price), 4.0, rtol=1e-6)


def test_proportional_surplus_defaults_and_price_fallbacks():
    # Without reference_price, m = (f + u)/2 = 6: same prices as the hand book.
    res = clear(**HAND, rule="proportional_surplus", fit=2.0, utility=10.0)
    np.testing.assert_allclose(np.asarray(res.payment), pad8([27, 7, -34, 0])[0], rtol=1e-6)
    # With no trade the clearing price falls back to reference_price, then (f+u)/2, then 0.
    no_trade = dict(HAND, bid_price=pad8([1.0, 1.0, 5.0, 9.0])[0])
    for kw, want in (
        (dict(reference_price=3.5, fit=2.0, utility=10.0), 3.5),
        (dict(fit=2.0, utility=10.0), 6.0),
        ({}, 0.0),
    ):
        res = clear(**no_trade, rule="average", **kw)
        assert float(res.volume) == 0.0
        assert float(res.clearing_price) == pytest.approx(want)
        assert np.all(np.asarray(res.payment) == 0)


# --------------------------------------------------------------------------- 2. invariants


@pytest.mark.parametrize("rule", RULES)
@settings(SETTINGS, max_examples=40)
@given(data=st.data())
def test_invariants(rule, data):
    book = data.draw(books(exact_qty=False, with_partner=data.draw(st.booleans())))
    dso = data.draw(dsos())
    out = run(rule, book, dso)
    check_invariants(out, book.price, book.qty, book.is_buy, rule)


def test_invariant_checks_can_fail():
    """The invariant checker itself rejects results that break the spec."""
    price, qty, is_buy = HAND["bid_price"], HAND["quantity"], HAND["is_buy"]
    out = to_np(clear(price, qty, is_buy, "average"))
    check_invariants(out, price, qty, is_buy, "average")
    overpay = out["payment"] * pad8([1.0, 2.0, 1.0, 1.0], fill=1.0)[0]  # unbalanced, above bid
    overfill = out["matched_qty"] + pad8([1.0, 0.0, 1.0, 0.0])[0]  # exceeds quantity
    cheap = dict(out, payment=pad8([22.5, 6.5, -4.0, -25.0])[0])  # agent 2: 4 units for 4 < 5 * 4
    free = dict(out, payment=pad8([22.5, 6.5, -28.0, -1.0])[0])  # agent 3 paid for selling nothing
    for bad in (dict(out, payment=overpay), dict(out, matched_qty=overfill), cheap, free):
        with pytest.raises(AssertionError):
            check_invariants(bad, price, qty, is_buy, "average")


# --------------------------------------------------------------------------- 3. reputation


@pytest.mark.parametrize("rule", ["average", "uniform", "pay_as_ask"])
def test_reputation_breaks_ties_before_index(rule):
    # One buyer for 5 units at 10; two sellers at the same ask 8, 5 units each.
    price, qty, is_buy = pad8([10.0, 8.0, 8.0], [5.0, 5.0, 5.0], [True, False, False])
    (rep,) = pad8([0.0, 0.1, 0.9])

    def matched(p, b=is_buy, **kw):
        return np.asarray(clear(p, qty, b, rule, **kw).matched_qty)[:3]

    np.testing.assert_allclose(matched(price), [5, 5, 0])  # index order
    np.testing.assert_allclose(matched(price, reputation=rep), [5, 0, 5])  # higher reputation
    # Reputation only breaks ties: a cheaper low-reputation ask still goes first.
    (cheap,) = pad8([10.0, 7.5, 8.0])
    np.testing.assert_allclose(matched(cheap, reputation=rep), [5, 5, 0])
    # Same on the buyer side: two tied bids for 5, one seller for 5.
    price_b, buyers = pad8([9.0, 9.0, 4.0], [True, True, False])
    (rep_b,) = pad8([0.2, 0.7, 0.0])
    np.testing.assert_allclose(matched(price_b, buyers), [5, 0, 5])
    np.testing.assert_allclose(matched(price_b, buyers, reputation=rep_b), [0, 5, 5])


def test_reputation_none_equals_equal_reputation():
    rng = np.random.default_rng(0)
    price = rng.integers(0, 3, 8).astype(np.float32)
    qty = rng.integers(0, 4, 8).astype(np.float32)
    is_buy = rng.random(8) < 0.5
    for rule in ("average", "uniform"):
        a = to_np(clear(price, qty, is_buy, rule))
        b = to_np(clear(price, qty, is_buy, rule, reputation=np.full(8, 0.3), partner=-np.ones(8)))
        for f in FIELDS:
            np.testing.assert_array_equal(a[f], b[f])


# --------------------------------------------------------------------------- 4. random ties


def _group_sums(m, book):
    """Matched quantity per (side, price, reputation) class: invariant under tie order."""
    ok = _active(book.price, book.qty)
    groups = {}
    for i in np.flatnonzero(ok):
        g = (bool(book.is_buy[i]), float(book.price[i]), float(book.rep[i]))
        groups[g] = groups.get(g, 0.0) + m[i]
    return groups


@pytest.mark.parametrize("rule", KEYED_RULES)
@settings(SETTINGS, max_examples=40)
@given(data=st.data())
def test_keyed_ties_invariants(rule, data):
    book = data.draw(books(exact_qty=True))
    dso = data.draw(dsos())
    key = jax.random.PRNGKey(data.draw(st.integers(0, 2**31 - 1)))
    out = run(rule, book, dso, key)
    check_invariants(out, book.price, book.qty, book.is_buy, rule)
    # Same key -> bit-identical result.
    again = run(rule, book, dso, key)
    for f in FIELDS:
        np.testing.assert_array_equal(out[f], again[f])
    # Tie order only permutes units inside one (side, price, reputation) class.
    ref = run_ref(rule, book, dso, partner=False)
    atol_q, atol_pay, p_scale = _scales(book.price, book.qty, dso)
    got, want = _group_sums(out["matched_qty"], book), _group_sums(ref.matched_qty, book)
    assert got.keys() == want.keys()
    for g in got:
        np.testing.assert_allclose(got[g], want[g], 1e-5, atol_q, err_msg=str(g))
    np.testing.assert_allclose(out["volume"], ref.volume, 1e-5, atol_q)
    if rule in LINEAR_RULES:  # total money is linear in the class sums for these rules
        cp_tol = 1e-5 * p_scale + (2 * atol_pay / ref.volume if ref.volume > 0 else 0.0)
        np.testing.assert_allclose(out["clearing_price"], ref.clearing_price, 0, cp_tol)


def _tied_book(buyers_tied):
    """Ten tied one-unit orders on one side against a single 3-unit order on the other."""
    price = np.zeros(N, np.float32)
    qty = np.zeros(N, np.float32)
    is_buy = np.zeros(N, bool)
    price[:10], qty[:10], is_buy[:10] = (20.0 if buyers_tied else 5.0), 1.0, buyers_tied
    price[10], qty[10], is_buy[10] = (15.0 if buyers_tied else 10.0), 3.0, not buyers_tied
    return Book(price, qty, is_buy, np.zeros(N, np.float32), np.full(N, -1, np.int32))


@pytest.mark.parametrize("buyers_tied", [False, True])
@pytest.mark.parametrize("rule", ["average", "uniform"])
def test_different_keys_reorder_tied_orders(rule, buyers_tied):
    book = _tied_book(buyers_tied)
    dso = Dso(*map(np.float32, (2, 10, 6, 0.5)))
    allocs = set()
    for seed in range(8):
        out = run(rule, book, dso, jax.random.PRNGKey(seed))
        check_invariants(out, book.price, book.qty, book.is_buy, rule)
        np.testing.assert_allclose(out["matched_qty"][10], 3.0)
        np.testing.assert_allclose(out["matched_qty"][:10].sum(), 3.0)
        assert set(out["matched_qty"][:10]) <= {0.0, 1.0}
        allocs.add(tuple(out["matched_qty"][:10]))
    assert len(allocs) >= 2, "every key gave the same allocation among tied orders"
    # Without a key the lowest indices go first.
    out = run(rule, book, dso)
    np.testing.assert_array_equal(out["matched_qty"][:10], [1, 1, 1, 0, 0, 0, 0, 0, 0, 0])
    # Reputation still outranks the random order: the best-reputation orders always trade.
    rep = np.zeros(N, np.float32)
    rep[[4, 7]] = 1.0
    for seed in range(6):
        out = run(rule, book._replace(rep=rep), dso, jax.random.PRNGKey(seed))
        assert out["matched_qty"][4] == 1.0 and out["matched_qty"][7] == 1.0


# --------------------------------------------------------------------------- 5. partner stage


@pytest.mark.parametrize("rule", RULES)
@SETTINGS
@given(data=st.data())
def test_partner_stage_matches_reference(rule, data):
    book = data.draw(books(exact_qty=rule == "uniform", with_partner=True))
    dso = data.draw(dsos())
    out = run(rule, book, dso)
    ref = run_ref(rule, book, dso)
    assert_matches_reference(out, ref, book, dso, rule)
    check_invariants(out, book.price, book.qty, book.is_buy, rule)


@pytest.mark.parametrize("rule", ["uniform", "average", "mmr"])
def test_partner_stage_hand_example(rule):
    # Agent 0 (bid 10, q5) and agent 3 (ask 9, q2) name each other: 2 units at the pair price.
    # Agent 1 names 2 but 2 names nobody; 4 and 5 name each other but are both sellers;
    # 6 (bid 1) and 7 (ask 31) name each other but bid < ask.
    price = np.array([10, 8, 5, 9, 30, 30, 1, 31], np.float32)
    qty = np.array([5, 2, 4, 2, 1, 1, 1, 1], np.float32)
    is_buy = np.array([1, 1, 0, 0, 0, 0, 1, 0], bool)
    partner = np.array([3, 2, -1, 0, 5, 4, 7, 6])
    kw = dict(fit=2.0, utility=12.0)  # nash price for community rules: clip(7, 9, 10) = 9
    res = clear(price, qty, is_buy, rule, partner=partner, **kw)
    np.testing.assert_allclose(np.asarray(res.partner_qty), [2, 0, 0, 2, 0, 0, 0, 0])
    if rule == "uniform":
        # Partner trade at (10 + 9)/2 = 9.5; auction on the rest: (0, 2) 3 units, (1, 2) 1 unit,
        # last pair (8, 5) -> 6.5 for every auction unit.
        np.testing.assert_allclose(np.asarray(res.matched_qty), [5, 1, 4, 2, 0, 0, 0, 0])
        want = [19 + 19.5, 6.5, -26, -19, 0, 0, 0, 0]
    elif rule == "average":
        want = [19 + 3 * 7.5, 6.5, -29, -19, 0, 0, 0, 0]
    else:  # mmr: partners at nash 9; the rest pro rata: D = 3+2+1 = 6, S = 4+1+1+1 = 7 -> V = 6
        np.testing.assert_allclose(
            np.asarray(res.matched_qty), [5, 2, 24 / 7, 2, 6 / 7, 6 / 7, 1, 6 / 7], 1e-6
        )
        want = np.array([3, 2, -24 / 7, 0, -6 / 7, -6 / 7, 1, -6 / 7]) * 7.0
        want[0] += 18
        want[3] -= 18
    np.testing.assert_allclose(np.asarray(res.payment), want, rtol=1e-6, atol=1e-5)
    ref = reference_clear(price, qty, is_buy, rule, partner=partner, **kw)
    np.testing.assert_allclose(ref.payment, want, rtol=1e-9, atol=1e-9)


def test_partner_none_equals_no_names():
    rng = np.random.default_rng(1)
    price = rng.integers(0, 3, 8).astype(np.float32)
    qty = rng.integers(0, 4, 8).astype(np.float32)
    is_buy = rng.random(8) < 0.5
    for rule in ("average", "mmr"):
        a = to_np(clear(price, qty, is_buy, rule, fit=1.0, utility=4.0))
        b = to_np(clear(price, qty, is_buy, rule, fit=1.0, utility=4.0, partner=np.full(8, -1)))
        for f in FIELDS:
            np.testing.assert_array_equal(a[f], b[f])


# --------------------------------------------------------------------------- 6. robustness

_nan, _inf = np.nan, np.inf
ROBUST_BOOKS = {
    "nonfinite": (  # partners 0-1, 2-3, ... : only (8, 9) is a valid compatible pair
        [_nan, 5, _inf, -_inf, 4, 6, 7, 3, 5, 6],
        [1, _nan, 2, 3, _inf, -_inf, 2, -4, 2, 1],
        [1, 1, 1, 0, 0, 1, 1, 0, 0, 1],
    ),
    "huge": (
        [1e12, -1e12, 1e12, 5, 1e9, 2e9],
        [1e12, 1e12, 1, 1e12, 3, 1e12],
        [1, 0, 1, 0, 1, 0],
    ),
    "huge_qty_small_qty": ([5, 5, 4, 4], [1e12, 1e-3, 1e-3, 1e12], [1, 1, 0, 0]),
    "all_buyers": ([5, 6, 7], [1, 2, 3], [1, 1, 1]),
    "all_sellers": ([5, 6, 7], [1, 2, 3], [0, 0, 0]),
    "no_orders": ([5, 6], [0, 0], [1, 0]),
    "n1_buyer": ([5], [2], [1]),
    "n1_seller": ([5], [2], [0]),
    "n1_nan": ([_nan], [_nan], [0]),
}


@pytest.mark.parametrize("name", sorted(ROBUST_BOOKS))
def test_robust_books(name):
    p, q, b = ROBUST_BOOKS[name]
    n = len(p)
    price, qty, is_buy = np.zeros(N, np.float32), np.zeros(N, np.float32), np.zeros(N, bool)
    price[:n], qty[:n], is_buy[:n] = p, q, b
    pairs = np.where(np.arange(N) < n, np.arange(N) ^ 1, -1).astype(np.int32)  # 0-1, 2-3, ...
    dso = Dso(*map(np.float32, (0.05, 0.3, 0.1, 0.5)))
    no_trade = name in ("all_buyers", "all_sellers", "no_orders", "n1_buyer", "n1_seller", "n1_nan")
    # Padded to N through the jitted path (with and without partners / reputation) ...
    for rule in RULES:
        for rep, partner in ((np.zeros(N), np.full(N, -1)), (np.linspace(0, 1, N), pairs)):
            book = Book(price, qty, is_buy, rep.astype(np.float32), partner.astype(np.int32))
            out = run(rule, book, dso)
            check_invariants(out, price, qty, is_buy, rule)
            if not name.startswith("huge"):  # (huge prices are clipped: outside the spec)
                assert_matches_reference(out, run_ref(rule, book, dso), book, dso, rule)
            if no_trade:
                assert out["volume"] == 0 and np.all(out["payment"] == 0)
    # ... and N = 1 books at their own size through the eager call with default arguments.
    if n > 1:
        return
    price, qty, is_buy = price[:n], qty[:n], is_buy[:n]
    for rule in ("average", "uniform", "sdr"):
        out = to_np(clear(price, qty, is_buy, rule, fit=0.05, utility=0.3))
        check_invariants(out, price, qty, is_buy, rule)
        if no_trade:
            assert out["volume"] == 0 and np.all(out["payment"] == 0)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    n=st.integers(1, 40),
    levels=st.sampled_from([1, 3, 1000]),
    scale=st.sampled_from([1.0, 1e-30, 1e9]),
    with_rep=st.booleans(),
    tie_kind=st.sampled_from(["none", "random", "few"]),
    seed=st.integers(0, 2**31 - 1),
)
def test_packed_sort_is_the_lexicographic_sort(n, levels, scale, with_rep, tie_kind, seed):
    """``sort_book``'s one packed 64-bit key orders the book exactly as NumPy's lexicographic
    sort of (group, price key, -reputation, tie, index), with many ties and signed zeros."""
    rng = np.random.default_rng(seed)
    price = (rng.integers(-levels, levels + 1, n) * scale).astype(np.float32)
    price[rng.random(n) < 0.2] = -0.0
    q_buy = np.where(rng.random(n) < 0.4, rng.random(n) + 0.1, 0.0).astype(np.float32)
    q_sell = np.where((q_buy == 0) & (rng.random(n) < 0.6), 1.0, 0.0).astype(np.float32)
    rep = rng.integers(0, 3, n).astype(np.float32) / 2 if with_rep else None
    tie = {
        "none": None,
        "random": rng.integers(0, 2**32, n, dtype=np.uint64).astype(np.uint32),
        "few": rng.integers(0, 3, n).astype(np.uint32),
    }[tie_kind]
    perm, group = jax.jit(sort_book)(price, q_buy, q_sell, rep, tie)

    g = np.where(q_buy > 0, 0, np.where(q_sell > 0, 1, 2))
    key_price = np.where(g == 0, -price, np.where(g == 1, price, 0.0)).astype(np.float64)
    keys = [np.arange(n)]  # np.lexsort: the last key is the primary one
    keys += [] if tie is None else [tie.astype(np.int64)]
    keys += [] if rep is None else [np.where(g < 2, -rep, 0.0)]
    expected = np.lexsort((*keys, key_price, g))
    np.testing.assert_array_equal(np.asarray(perm), expected)
    np.testing.assert_array_equal(np.asarray(group), g[expected])


def test_float64_prices_keep_their_order():
    """In x64 mode, prices that differ below float32's resolution still sort apart (the
    packed key holds float32 prices only; float64 books take the lexicographic sort)."""
    with jax.enable_x64(True):
        price = jnp.asarray([1.0 + 1e-12, 1.0, 1.0 + 2e-12, 1.0], jnp.float64)
        q_buy = jnp.asarray([1.0, 1.0, 0.0, 0.0], jnp.float64)
        q_sell = jnp.asarray([0.0, 0.0, 1.0, 1.0], jnp.float64)
        perm, group = sort_book(price, q_buy, q_sell, None, None)
    np.testing.assert_array_equal(np.asarray(perm), [0, 1, 3, 2])
    np.testing.assert_array_equal(np.asarray(group), [0, 0, 1, 1])


# --------------------------------------------------------------------------- 7. errors


def test_errors():
    args = pad8([1.0, 1.0, 1.0], [1.0, 1.0, 1.0], [True, False, True])
    with pytest.raises(ValueError, match="rule"):
        clear(*args, "vickrey")
    for rule in ("nash", "mmr", "sdr", "bill_sharing"):
        with pytest.raises(ValueError, match="rule"):
            clear(*args, rule)
        with pytest.raises(ValueError):
            clear(*args, rule, fit=0.1)
        with pytest.raises(ValueError):
            clear(*args, rule, utility=0.3)
        clear(*args, rule, fit=0.1, utility=0.3)  # both given: fine
    with pytest.raises(ValueError):  # no reference price and no DSO prices to derive one
        clear(*args, "proportional_surplus")
    for rule in ("average", "pay_as_bid", "pay_as_ask", "k_double", "uniform"):
        clear(*args, rule)  # need no DSO prices


# --------------------------------------------------------------------------- 8. jit / vmap


@pytest.mark.parametrize("rule", ["average", "uniform", "sdr"])
def test_vmap_and_jit_match_unbatched(rule):
    rng = np.random.default_rng(7)
    bsz = 5
    price = rng.integers(0, 8, (bsz, N)).astype(np.float32)
    price[::2] += rng.random((3, N)).astype(np.float32)
    qty = (rng.integers(0, 6, (bsz, N)) * rng.random((bsz, N))).astype(np.float32)
    is_buy = rng.random((bsz, N)) < 0.5
    rep = rng.integers(0, 2, (bsz, N)).astype(np.float32)
    partner = rng.integers(-1, N, (bsz, N)).astype(np.int32)
    partner[:, 0], partner[:, 1] = 1, 0  # mutual pair in every book
    keys = jax.random.split(jax.random.PRNGKey(3), bsz)
    fit = rng.uniform(0, 2, bsz).astype(np.float32)
    utility = (fit + rng.uniform(1, 5, bsz)).astype(np.float32)
    ref = rng.uniform(0, 8, bsz).astype(np.float32)
    k = rng.uniform(0, 1, bsz).astype(np.float32)
    batched = vclear(rule)(price, qty, is_buy, rep, partner, keys, fit, utility, ref, k)
    for i in range(bsz):
        args = (price[i], qty[i], is_buy[i], rep[i], partner[i], keys[i])
        dso = (fit[i], utility[i], ref[i], k[i])
        single = to_np(jclear(rule)(*args, *dso))
        for f in FIELDS:
            np.testing.assert_allclose(np.asarray(getattr(batched, f))[i], single[f], 1e-6, 1e-5)
        check_invariants(single, price[i], qty[i], is_buy[i], rule)


# --------------------------------------------------------------------------- 9. memory scaling


def _big_shapes(jaxpr, n):
    """Shapes of every value (sub-jaxprs included) with at least two dims >= n."""
    found = []

    def visit(jp):
        if hasattr(jp, "jaxpr") and hasattr(jp.jaxpr, "eqns"):  # ClosedJaxpr
            jp = jp.jaxpr
        for var in (*jp.invars, *jp.constvars):
            shape = getattr(var.aval, "shape", ())
            if sum(d >= n for d in shape) >= 2:
                found.append(shape)
        for eqn in jp.eqns:
            for var in eqn.outvars:
                shape = getattr(var.aval, "shape", ())
                if sum(d >= n for d in shape) >= 2:
                    found.append((eqn.primitive.name, shape))
            for param in eqn.params.values():
                for sub in param if isinstance(param, (list, tuple)) else (param,):
                    if hasattr(sub, "eqns") or hasattr(getattr(sub, "jaxpr", None), "eqns"):
                        visit(sub)

    visit(jaxpr)
    return found


def test_big_shape_walker_finds_quadratic_arrays():
    n = 64
    x = jnp.ones(n)
    assert _big_shapes(jax.make_jaxpr(lambda v: jnp.outer(v, v).sum())(x), n)
    nested = lambda v: jax.lax.cond(v[0] > 0, lambda u: jnp.outer(u, u).sum(), jnp.sum, v)
    assert _big_shapes(jax.make_jaxpr(jax.jit(nested))(x), n)
    assert not _big_shapes(jax.make_jaxpr(lambda v: jnp.cumsum(v) * 2)(x), n)


@pytest.mark.parametrize("rule", RULES)
def test_no_quadratic_intermediates(rule):
    n = 2048
    args = (
        jnp.zeros(n),
        jnp.ones(n),
        jnp.zeros(n, bool),
        jnp.zeros(n),
        jnp.full(n, -1, jnp.int32),
        jax.random.PRNGKey(0),
        1.0,
        3.0,
        2.0,
        0.5,
    )
    jaxpr = jax.make_jaxpr(_positional(rule))(*args)
    assert not _big_shapes(jaxpr, n)
    # and without the optional inputs
    plain = jax.make_jaxpr(lambda p, q, b: clear(p, q, b, rule, fit=1.0, utility=3.0))(*args[:3])
    assert not _big_shapes(plain, n)
