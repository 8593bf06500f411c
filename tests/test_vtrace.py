"""V-trace against a plain NumPy loop written from the paper's definition, and its on-policy
limit: the GAE lambda-return."""

from __future__ import annotations

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from jaxlem.train.vtrace import vtrace


def _reference(values, last, rewards, discounts, log_ratio, lam, rho_bar, c_bar):
    """v_s = V(x_s) + sum_t (prod_{i<t} gamma_i c_i) rho_t delta_t, each sum written out."""
    t_len = len(values)
    ratio = np.exp(log_ratio)
    rho, c = np.minimum(rho_bar, ratio), lam * np.minimum(c_bar, ratio)
    nxt = np.append(values[1:], last)
    vs = np.zeros(t_len)
    for s in range(t_len):
        total, weight = 0.0, 1.0
        for t in range(s, t_len):
            total += weight * rho[t] * (rewards[t] + discounts[t] * nxt[t] - values[t])
            weight *= discounts[t] * c[t]
        vs[s] = values[s] + total
    next_vs = np.append(vs[1:], last)
    adv = rho * (rewards + discounts * next_vs - values)
    return vs, adv


@settings(max_examples=25, deadline=None)
@given(
    seed=st.integers(0, 10_000),
    t_len=st.integers(1, 12),
    lam=st.floats(0.0, 1.0),
    rho_bar=st.floats(0.1, 3.0),
    c_bar=st.floats(0.1, 3.0),
)
def test_vtrace_matches_the_definition(seed, t_len, lam, rho_bar, c_bar):
    rng = np.random.default_rng(seed)
    values, rewards = rng.normal(size=(2, t_len))
    last = rng.normal()
    discounts = 0.9 * (rng.random(t_len) > 0.2)  # some terminal steps
    log_ratio = rng.normal(0.0, 0.7, t_len)
    got = vtrace(
        values.astype(np.float32), np.float32(last), rewards.astype(np.float32),
        discounts.astype(np.float32), log_ratio.astype(np.float32), lam, rho_bar, c_bar,
    )  # fmt: skip
    want = _reference(values, last, rewards, discounts, log_ratio, lam, rho_bar, c_bar)
    for g, w in zip(got, want, strict=True):
        np.testing.assert_allclose(np.asarray(g), w, rtol=1e-4, atol=1e-4)


def test_on_policy_vtrace_is_the_gae_lambda_return():
    rng = np.random.default_rng(0)
    t_len, b = 16, 5
    values, rewards = rng.normal(size=(2, t_len, b)).astype(np.float32)
    last = rng.normal(size=b).astype(np.float32)
    done = rng.random((t_len, b)) < 0.1
    gamma, lam = 0.97, 0.9
    vs, _ = vtrace(values, last, rewards, gamma * (1.0 - done), np.zeros((t_len, b)), lam)
    gae, nxt_v, adv = np.zeros(b), last, np.zeros((t_len, b))
    for t in reversed(range(t_len)):
        nonterminal = 1.0 - done[t]
        delta = rewards[t] + gamma * nxt_v * nonterminal - values[t]
        gae = delta + gamma * lam * nonterminal * gae
        adv[t], nxt_v = gae, values[t]
    np.testing.assert_allclose(np.asarray(vs), adv + values, rtol=1e-5, atol=1e-5)
