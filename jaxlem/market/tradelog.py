"""The pairwise trade log of a cleared book (buyer, seller, quantity, price), rebuilt outside the
step for analysis and exported as CSV.

It replays exactly the matching of ``clear`` (same sort, tie-break and partner stage) and lists
every matched pair. Under the community rules every buyer shares in every seller's supply pro rata,
so the log has up to N_buy x N_sell rows: fine for analysis, never built inside the step.
"""

from __future__ import annotations

import csv
import os
from collections.abc import Sequence
from typing import Any, cast

import jax
import numpy as np
from jaxtyping import Array, ArrayLike

from jaxlem.market import pricing
from jaxlem.market.clearing import PairTerms, community_match, match_segments, prepare_book
from jaxlem.market.pricing import Num

COLUMNS = ("stage", "buyer", "seller", "quantity", "price", "loss", "fee")


def trade_log(
    bid_price: ArrayLike,
    quantity: ArrayLike,
    is_buy: ArrayLike,
    rule: str,
    *,
    reference_price: Num | None = None,
    fit: Num | None = None,
    utility: Num | None = None,
    k: Num = 0.5,
    key: Array | None = None,
    reputation: ArrayLike | None = None,
    partner: ArrayLike | None = None,
    pair_terms: PairTerms | None = None,
) -> dict[str, np.ndarray]:
    """Every matched pair of the book, as NumPy columns ``stage`` ('partner', 'auction' or
    'community'), ``buyer``, ``seller`` (agent indices), ``quantity`` (energy sent), ``price``,
    ``loss`` (energy lost in transit) and ``fee`` (network fee, both sides together) from the
    same ``pair_terms`` hook as ``clear``; the buyer pays ``price * (quantity - loss)``."""
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
    rows: list[tuple] = []
    price, is_buy_np = np.asarray(b.price), np.asarray(b.is_buy)
    p_qty = np.asarray(b.partner[0])
    if partner is not None:
        part = np.asarray(partner)
        for i in np.flatnonzero((p_qty > 0) & is_buy_np):
            j = int(part[i])
            pr = float(b.pair_price_fn(price[i], price[j]))
            rows.append(("partner", int(i), j, float(p_qty[i]), pr))
    if rule in pricing.COMMUNITY_RULES:
        matched, payment, _, _ = community_match(b.q_buy, b.q_sell, rule, fit, utility, None)
        matched, payment = np.asarray(matched), np.asarray(payment)
        buyers = np.flatnonzero(is_buy_np & (matched > 0))
        sellers = np.flatnonzero(~is_buy_np & (matched > 0))
        volume = matched[sellers].sum()
        supply, demand = np.asarray(b.q_sell).sum(), np.asarray(b.q_buy).sum()
        # the community rules need both DSO prices (``pricing.check_rule``)
        cprice = float(
            pricing.community_price(rule, supply, demand, cast(Num, fit), cast(Num, utility))
        )
        for i in buyers:
            for j in sellers:
                rows.append(
                    ("community", int(i), int(j), float(matched[i] * matched[j] / volume), cprice)
                )
    else:
        seg = jax.tree_util.tree_map(
            np.asarray,
            match_segments(b.price, b.q_buy, b.q_sell, rule, b.reputation, b.tie, b.pair_price_fn),
        )
        perm = seg["perm"]
        for s in np.flatnonzero(seg["qty"] > 0):
            rows.append(
                (
                    "auction",
                    int(perm[seg["ib"][s]]),
                    int(perm[seg["js"][s]]),
                    float(seg["qty"][s]),
                    float(seg["price"][s]),
                )
            )
    cols: list[Sequence[Any]] = list(zip(*rows, strict=True)) if rows else [[] for _ in COLUMNS[:5]]
    dtypes = (object, np.int64, np.int64, np.float64, np.float64)
    log = {c: np.asarray(v, dtype=d) for c, v, d in zip(COLUMNS, cols, dtypes, strict=False)}
    lossf = rate = np.zeros_like(log["quantity"])
    if pair_terms is not None and len(log["quantity"]):
        pool = log["stage"] == "community"  # clear prices the community rules buyer vs pool
        seller = np.where(pool, -1, log["seller"])
        lossf, rate = (
            np.clip(np.nan_to_num(np.asarray(v, np.float64)), 0.0, None)
            for v in pair_terms(log["buyer"], seller)
        )
        lossf = np.minimum(lossf, 1.0)
    log["loss"] = log["quantity"] * lossf
    log["fee"] = rate * (log["quantity"] - log["loss"])
    return log


def to_csv(log: dict[str, np.ndarray], path: str | os.PathLike) -> None:
    """Write a trade log to CSV with a header row."""
    with open(path, "w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(COLUMNS)
        for row in zip(*(log[c] for c in COLUMNS), strict=True):
            w.writerow(row)
