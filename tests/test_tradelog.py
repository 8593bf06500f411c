"""Tests for jaxlem.market.tradelog: the pairwise log of a cleared book must add up to ``clear``.

For random books (up to 12 agents, many price ties, partner arrays, random tie keys and
reputation) and every pricing rule: summing the log's quantities per buyer (buyer column) and
per seller (seller column) gives ``clear(...).matched_qty``; summing quantity * price gives
``|clear(...).payment|``; every auction row pairs a buyer with a seller at a price between the
seller's ask and the buyer's bid; partner rows are mutual compatible pairs; community rows all
carry the community price. Also a hand-computed book and a CSV round trip.

Numerics: float32 books; the implementation sums float32 prefix sums, so quantity errors scale
with the book's total quantity and money errors additionally with the largest price. Tolerances:
rtol 1e-4 and atol 1e-5 * total quantity (times the price scale for money).

``clear`` runs eagerly here (every book is padded with inactive orders to 12 agents, so the eager
ops are compiled once): a jit per (rule, None-pattern of the optional arguments) would cost more
compile time than the whole file's examples.
"""

from __future__ import annotations

import csv
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from jaxlem.market import COMMUNITY_RULES, RULES, clear, pricing
from jaxlem.market.tradelog import COLUMNS, to_csv, trade_log

SETTINGS = settings(
    max_examples=40,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)


class Book(NamedTuple):
    price: np.ndarray  # float32 [N]
    qty: np.ndarray  # float32 [N]
    is_buy: np.ndarray  # bool [N]
    partner: np.ndarray | None  # int32 [N] or None
    reputation: np.ndarray | None  # float32 [N] or None
    seed: int | None  # tie-break key seed, None = index order
    fit: float
    utility: float
    ref: float
    k: float

    def kwargs(self):
        return dict(
            reference_price=np.float32(self.ref),
            fit=np.float32(self.fit),
            utility=np.float32(self.utility),
            k=np.float32(self.k),
            key=None if self.seed is None else jax.random.PRNGKey(self.seed),
            reputation=self.reputation,
            partner=self.partner,
        )


def run_both(book: Book, rule: str):
    kw = book.kwargs()
    res = clear(book.price, book.qty, book.is_buy, rule, **kw)
    log = trade_log(book.price, book.qty, book.is_buy, rule, **kw)
    out = {
        "matched": np.asarray(res.matched_qty, np.float64),
        "payment": np.asarray(res.payment, np.float64),
        "partner_qty": np.asarray(res.partner_qty, np.float64),
        "clearing_price": float(res.clearing_price),
    }
    return out, log


# --------------------------------------------------------------------------- strategies

price_grid = st.integers(0, 25).map(float)  # small grid: many exact ties
price_any = st.one_of(
    price_grid,
    st.floats(0.0, 30.0, width=32, allow_subnormal=False),
    st.sampled_from([float("nan"), float("inf"), -5.0, 1e12]),  # sanitised (dropped / clipped)
)
qty_any = st.one_of(
    st.just(0.0),
    st.integers(1, 20).map(float),
    st.floats(0.125, 20.0, width=32, allow_subnormal=False),
    st.sampled_from([float("nan"), -3.0]),  # dropped
)


N = 12  # every book is padded with inactive orders to this size, so eager ops compile once


def pad(*arrays, fill=0):
    """Pad per-agent arrays to N agents with inactive orders (quantity 0, no partner)."""
    return tuple(np.concatenate([a, np.full(N - a.shape[0], fill, a.dtype)]) for a in arrays)


@st.composite
def books(draw):
    n = draw(st.integers(1, N))
    price = np.asarray(draw(st.lists(price_any, min_size=n, max_size=n)), np.float32)
    qty = np.asarray(draw(st.lists(qty_any, min_size=n, max_size=n)), np.float32)
    is_buy = np.asarray(draw(st.lists(st.booleans(), min_size=n, max_size=n)), bool)
    price, qty, is_buy = pad(price, qty, is_buy)
    partner = None
    if draw(st.booleans()):
        partner = np.asarray(
            draw(st.lists(st.integers(-1, n - 1), min_size=n, max_size=n)), np.int32
        )
        # force some mutual, compatible (bid >= ask, both active) buyer-seller pairs so the
        # partner stage actually trades
        buyers, sellers = np.flatnonzero(is_buy[:n]), np.flatnonzero(~is_buy[:n])
        if buyers.size and sellers.size:
            pairs = st.tuples(st.sampled_from(buyers.tolist()), st.sampled_from(sellers.tolist()))
            for i, j in draw(st.lists(pairs, min_size=1, max_size=3)):
                partner[i], partner[j] = j, i
                if np.isfinite(price[i]) and np.isfinite(price[j]):
                    price[i], price[j] = max(price[i], price[j]), min(price[i], price[j])
                for a in (i, j):
                    if not qty[a] > 0:
                        qty[a] = 1.0
        (partner,) = pad(partner, fill=-1)
    reputation = None
    if draw(st.booleans()):
        reputation = np.asarray(
            draw(st.lists(st.sampled_from([0.2, 0.5, 0.9]), min_size=N, max_size=N)), np.float32
        )
    seed = draw(st.one_of(st.none(), st.integers(0, 2**31 - 1)))
    fit = float(draw(st.integers(0, 10)))
    utility = fit + float(draw(st.integers(1, 20)))
    ref = float(draw(st.integers(0, 30)))
    k = draw(st.sampled_from([0.0, 0.25, 0.5, 1.0]))
    return Book(price, qty, is_buy, partner, reputation, seed, fit, utility, ref, k)


def scales(book: Book):
    """(atol for quantities, atol for money) of one book (see module docstring)."""
    ok = np.isfinite(book.price) & np.isfinite(book.qty) & (book.qty > 0)
    total = float(np.sum(np.where(ok, book.qty, 0.0), dtype=np.float64))
    p = np.where(ok, np.clip(np.nan_to_num(book.price), -1e9, 1e9), 0.0).astype(np.float64)
    p_scale = max(1.0, float(np.abs(p).max(initial=0.0)), book.utility, book.ref)
    atol_q = 1e-5 * total + 1e-9
    return atol_q, atol_q * p_scale


def per_agent(log, n, column, values):
    return np.bincount(log[column].astype(np.int64), weights=values, minlength=n)[:n]


# --------------------------------------------------------------------------- properties


def check_log_matches_clear(book: Book, rule: str):
    out, log = run_both(book, rule)
    n = book.price.shape[0]
    ctx = f"rule={rule}\nbook={book}\nlog={log}\nclear={out}"
    atol_q, atol_pay = scales(book)

    assert set(log) == set(COLUMNS)
    lens = {c: len(log[c]) for c in COLUMNS}
    assert len(set(lens.values())) == 1, lens
    assert log["buyer"].dtype == np.int64 and log["seller"].dtype == np.int64
    assert log["quantity"].dtype == np.float64 and log["price"].dtype == np.float64
    assert np.all(np.isfinite(log["quantity"])) and np.all(np.isfinite(log["price"])), ctx
    assert np.all(log["quantity"] > 0), ctx
    buyers, sellers = log["buyer"], log["seller"]
    assert np.all((0 <= buyers) & (buyers < n) & (0 <= sellers) & (sellers < n)), ctx
    assert np.all(book.is_buy[buyers]) and not np.any(book.is_buy[sellers]), ("sides", ctx)

    allowed = {"partner", "community" if rule in COMMUNITY_RULES else "auction"}
    assert set(log["stage"].tolist()) <= allowed, ctx

    # quantities: buyers through the buyer column, sellers through the seller column
    q = log["quantity"]
    bought = per_agent(log, n, "buyer", q)
    sold = per_agent(log, n, "seller", q)
    want = np.where(book.is_buy, bought, sold)
    np.testing.assert_allclose(want, out["matched"], rtol=1e-4, atol=atol_q, err_msg=ctx)
    # partner stage rows = partner_qty
    part = log["stage"] == "partner"
    pq = per_agent({"b": buyers[part]}, n, "b", q[part]) + per_agent(
        {"s": sellers[part]}, n, "s", q[part]
    )
    np.testing.assert_allclose(pq, out["partner_qty"], rtol=1e-4, atol=atol_q, err_msg=ctx)

    # money: quantity * price per agent = |payment|, buyers pay and sellers receive
    money = q * log["price"]
    paid = per_agent(log, n, "buyer", money)
    got = per_agent(log, n, "seller", money)
    np.testing.assert_allclose(
        np.where(book.is_buy, paid, -got), out["payment"], rtol=1e-4, atol=atol_pay, err_msg=ctx
    )
    return out, log


@pytest.mark.parametrize("rule", RULES)
@SETTINGS
@given(book=books())
def test_log_adds_up_to_clear_and_prices_within_limits(rule, book):
    """The log sums to ``clear``; pairwise rows (auction and partner stage) trade at a price in
    [seller's ask, buyer's bid]; ``uniform`` has one auction price; community rows all carry the
    community price of the pool left after the partner stage."""
    out, log = check_log_matches_clear(book, rule)
    # limit prices as the market sees them (only active orders appear in the log)
    p = np.clip(np.nan_to_num(book.price.astype(np.float64)), -1e9, 1e9)
    b, s = log["buyer"], log["seller"]
    tol = 1e-5 * max(1.0, float(np.abs(p[np.concatenate([b, s])]).max(initial=0.0)))
    ctx = f"rule={rule}\nbook={book}\nlog={log}"
    pair = log["stage"] != "community"
    assert np.all(p[b][pair] >= p[s][pair] - tol), ("bid below ask", ctx)
    assert np.all(log["price"][pair] >= p[s][pair] - tol), ("below the ask", ctx)
    assert np.all(log["price"][pair] <= p[b][pair] + tol), ("above the bid", ctx)
    if rule == "uniform":
        auction = log["stage"] == "auction"
        assert np.unique(log["price"][auction]).size <= 1, ("uniform: one price", ctx)
    if rule in COMMUNITY_RULES:
        com = log["stage"] == "community"
        if np.any(com):
            ok = np.isfinite(book.price) & np.isfinite(book.qty) & (book.qty > 0)
            q = np.where(ok, book.qty, 0.0).astype(np.float64) - out["partner_qty"]
            supply = float(q[~book.is_buy].sum())
            demand = float(q[book.is_buy].sum())
            cp = float(pricing.community_price(rule, supply, demand, book.fit, book.utility))
            np.testing.assert_allclose(log["price"][com], cp, rtol=1e-4, err_msg=ctx)
    # partner rows are mutual choices
    part = log["stage"] == "partner"
    if np.any(part):
        assert book.partner is not None
        assert np.all(book.partner[b[part]] == s[part]) and np.all(book.partner[s[part]] == b[part])


# --------------------------------------------------------------------------- hand-computed


def test_hand_computed_average_book():
    """Bids A 50 x 3, B 40 x 2; asks C 30 x 4, D 45 x 5. Units 0-3 go A-C at (50+30)/2, unit
    3-4 goes B-C at (40+30)/2; B-D does not trade (40 < 45)."""
    price, qty, is_buy = pad(
        np.asarray([50, 40, 30, 45], np.float32),
        np.asarray([3, 2, 4, 5], np.float32),
        np.asarray([True, True, False, False]),
    )
    log = trade_log(price, qty, is_buy, "average")
    rows = sorted(zip(*(log[c].tolist() for c in COLUMNS[:5]), strict=True))
    assert rows == [("auction", 0, 2, 3.0, 40.0), ("auction", 1, 2, 1.0, 35.0)]
    log = trade_log(price, qty, is_buy, "pay_as_ask")
    assert sorted(log["price"].tolist()) == [30.0, 30.0]
    log = trade_log(price, qty, is_buy, "k_double", k=0.25)  # a + k (b - a)
    assert sorted(log["price"].tolist()) == [32.5, 35.0]


def test_hand_computed_partner_and_community():
    """Agent 0 (buy 4 @ 20) and 3 (sell 3 @ 10) name each other and trade 3 at Nash
    (u + f)/2 = 11 first; the rest goes through the community pool under mmr at 11."""
    price, qty, is_buy = pad(
        np.asarray([20, 25, 5, 10], np.float32),
        np.asarray([4, 2, 6, 3], np.float32),
        np.asarray([True, True, False, False]),
    )
    (partner,) = pad(np.asarray([3, -1, -1, 0], np.int32), fill=-1)
    log = trade_log(price, qty, is_buy, "mmr", fit=2.0, utility=20.0, partner=partner)
    rows = [r for r in zip(*(log[c].tolist() for c in COLUMNS[:5]), strict=True)]
    assert rows[0] == ("partner", 0, 3, 3.0, 11.0)
    com = sorted(r for r in rows if r[0] == "community")
    # pool: demand 1 (agent 0) + 2 (agent 1) = 3 < supply 6 (agent 2): buyers fully served
    assert com == [("community", 0, 2, 1.0, 11.0), ("community", 1, 2, 2.0, 11.0)]


def test_hand_computed_partner_then_sdr():
    """The SDR of the community stage is that of the pool left after the partner stage: agents
    0 and 3 trade 3 bilaterally, leaving demand 1 + 2 = 3 and supply 2 (SDR 2/3, not 5/6):
    sellers get f u / ((u - f) SDR + f) = 40 / 14 with f = 2, u = 20."""
    price, qty, is_buy = pad(
        np.asarray([20, 25, 5, 10], np.float32),
        np.asarray([4, 2, 2, 3], np.float32),
        np.asarray([True, True, False, False]),
    )
    (partner,) = pad(np.asarray([3, -1, -1, 0], np.int32), fill=-1)
    kw = dict(fit=2.0, utility=20.0, partner=partner)
    log = trade_log(price, qty, is_buy, "sdr", **kw)
    com = log["stage"] == "community"
    np.testing.assert_allclose(log["price"][com], 40.0 / 14.0, rtol=1e-6)
    np.testing.assert_allclose(log["quantity"][com].sum(), 2.0, rtol=1e-6)
    res = clear(price, qty, is_buy, "sdr", **kw)
    paid = np.bincount(log["buyer"], log["quantity"] * log["price"], minlength=N)
    np.testing.assert_allclose(paid[:2], np.asarray(res.payment)[:2], rtol=1e-5)


@pytest.mark.parametrize("rule", ["average", "mmr"])
def test_empty_book(rule):
    z = np.zeros(N, np.float32)
    log = trade_log(z, z, np.arange(N) % 2 == 0, rule, fit=2.0, utility=20.0)
    assert set(log) == set(COLUMNS)
    assert all(len(v) == 0 for v in log.values())
    assert log["buyer"].dtype == np.int64 and log["quantity"].dtype == np.float64


def test_unknown_rule_raises():
    z = np.ones(N, np.float32)
    with pytest.raises(ValueError, match="rule"):
        trade_log(z, z, np.arange(N) % 2 == 0, "no_such_rule")
    with pytest.raises(ValueError, match="rule"):
        trade_log(z, z, np.arange(N) % 2 == 0, "nash")  # needs fit and utility


# --------------------------------------------------------------------------- CSV


@settings(max_examples=15, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(book=books(), rule=st.sampled_from(["average", "k_double", "uniform", "nash", "mmr", "sdr"]))
def test_csv_round_trip(tmp_path_factory, book, rule):
    path = tmp_path_factory.mktemp("csv") / "log.csv"
    log = trade_log(book.price, book.qty, book.is_buy, rule, **book.kwargs())
    to_csv(log, path)
    with open(path, newline="") as fh:
        reader = csv.DictReader(fh)
        assert tuple(reader.fieldnames) == COLUMNS
        rows = list(reader)
    assert len(rows) == len(log["quantity"])
    for i, row in enumerate(rows):
        assert row["stage"] == log["stage"][i]
        assert int(row["buyer"]) == log["buyer"][i]
        assert int(row["seller"]) == log["seller"][i]
        assert float(row["quantity"]) == log["quantity"][i]  # repr of a float64 round-trips
        assert float(row["price"]) == log["price"][i]


def test_csv_empty_log_is_header_only(tmp_path):
    z = np.zeros(N, np.float32)
    to_csv(trade_log(z, z, np.arange(N) % 2 == 0, "average"), tmp_path / "e.csv")
    assert (tmp_path / "e.csv").read_text().splitlines() == [",".join(COLUMNS)]


@pytest.mark.parametrize("rule", ["average", "k_double", "mmr"])
def test_pair_terms_reconcile_with_clear(rule):
    """With losses and fees on, the log's delivered money and losses add up to clear's."""
    p = jnp.array([10.0, 8, 5, 3, 9, 12.0])
    q = jnp.array([2.0, 3, 1, 2, 4, 1])
    b = jnp.array([1, 1, 1, 0, 0, 0], bool)
    partner = jnp.array([4, -1, -1, -1, 0, -1])

    def terms(i, j):
        j = jnp.asarray(j)
        return jnp.where(j >= 0, 0.1, 0.05) + 0.0 * jnp.asarray(i), 2.0 + 0.0 * j

    kw = dict(fit=2.0, utility=11.0, partner=partner, pair_terms=terms)
    log = trade_log(p, q, b, rule, **kw)
    res = clear(p, q, b, rule, **kw)
    pay, loss = np.zeros(6), np.zeros(6)
    for i, j, qty, price, lost in zip(
        log["buyer"], log["seller"], log["quantity"], log["price"], log["loss"], strict=True
    ):
        pay[i] += price * (qty - lost)
        pay[j] -= price * (qty - lost)
        loss[i] += lost
    np.testing.assert_allclose(pay, res.payment, atol=1e-4)
    np.testing.assert_allclose(loss, res.loss, atol=1e-5)
    np.testing.assert_allclose(log["fee"].sum(), float(res.fee.sum()), rtol=1e-5)


def test_episode_trades_replays_the_env_clearing():
    """The [seller, buyer] matrix rebuilt from an episode's info adds up to every agent's P2P
    sales and purchases of that episode (same tie-break key, reference price and transfer
    limit as the step); an env whose actions carry partners is refused."""
    import jaxlem
    from jaxlem.envs.lem import policies, trades
    from jaxlem.rollout import rollout

    # a community rule (every buyer against the pool) under the P2P transfer limit (capacity)
    env = jaxlem.make("lem-v0", scenario="case5-mixed", rule="bill_sharing")
    p = env.default_params
    _, info = jax.jit(lambda k: rollout(env, policies.zero_intelligence, k, p))(jax.random.key(1))
    m = trades.episode_trades(env, p, info)
    sold = np.asarray(info["p2p_sold_kwh"]).sum(0)
    bought = np.asarray(info["p2p_bought_kwh"]).sum(0)
    assert sold.sum() > 1.0
    np.testing.assert_allclose(m.sum(axis=1), sold, atol=1e-4 * sold.sum())
    np.testing.assert_allclose(m.sum(axis=0), bought, atol=1e-4 * sold.sum())
    assert np.all(np.diagonal(m) == 0.0)
    with pytest.raises(ValueError, match="partner_stage"):
        trades.episode_trades(jaxlem.make("lem-v0", partner_stage=True), p, info)
