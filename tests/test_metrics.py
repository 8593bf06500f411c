"""Tests for jaxlem.metrics against plain-NumPy formulas.

References: shares = max(x, 0) / sum; HHI = 10,000 * sum(shares^2); CR_k = sum of the k largest
shares; Gini = sum_ij |x_i - x_j| / (2 n^2 mean) (non-negative values; the library shifts a vector
with negative entries up by its minimum first); volatility = std / |mean| (population std);
peak-to-average = max / mean of the positive part; battery cycles = throughput / (2 capacity).
Degenerate inputs (all zero, zero capacity, zero mean) give 0, never NaN.

Drawn values are 0 or at least 1e-3: the library treats a denominator below 1e-9 as zero (an
absolute threshold), so for vectors whose total is below 1e-9 it deliberately returns 0.
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from jaxlem import metrics

SETTINGS = settings(
    max_examples=60,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
N = 12  # drawn vectors are padded / cut to shapes from a small fixed set so eager ops are cached


# --------------------------------------------------------------------------- references


def ref_shares(x):
    v = np.maximum(np.asarray(x, np.float64), 0.0)
    tot = v.sum()
    return v / tot if tot > 0 else np.zeros_like(v)


def ref_hhi(x):
    return 1e4 * np.sum(ref_shares(x) ** 2)


def ref_cr(x, k):
    return np.sort(ref_shares(x))[::-1][:k].sum()


def ref_gini(x):
    """Mean absolute difference over twice the mean (after shifting negatives up to 0)."""
    x = np.asarray(x, np.float64)
    x = x - min(x.min(), 0.0)
    n, mean = x.size, x.mean()
    if mean <= 0:
        return 0.0
    return np.abs(x[:, None] - x[None, :]).sum() / (2 * n * n * mean)


def ref_volatility(x):
    x = np.asarray(x, np.float64)
    m = abs(x.mean())
    return x.std() / m if m > 0 else 0.0


def ref_par(x):
    s = np.maximum(np.asarray(x, np.float64), 0.0)
    return s.max() / s.mean() if s.mean() > 0 else 0.0


# --------------------------------------------------------------------------- strategies


def f32(lo: float, hi: float) -> st.SearchStrategy[float]:
    return st.floats(float(np.float32(lo)), float(np.float32(hi)), width=32)


nonneg = st.one_of(st.just(0.0), f32(1e-3, 1e6))
signed = st.one_of(st.just(0.0), f32(1e-3, 1e6), f32(-1e6, -1e-3))
sizes = st.sampled_from([1, 2, 3, 5, 8, N])


@st.composite
def vectors(draw, elements=nonneg):
    n = draw(sizes)
    return np.asarray(draw(st.lists(elements, min_size=n, max_size=n)), np.float32)


def f64(x):
    return np.asarray(x, np.float64)


# --------------------------------------------------------------------------- shares, HHI, CR


@SETTINGS
@given(vectors(signed))
def test_shares_hhi_cr_match_numpy(x):
    s = f64(metrics.shares(jnp.asarray(x)))
    np.testing.assert_allclose(s, ref_shares(x), rtol=1e-5, atol=1e-7)
    assert np.all(s >= 0)
    if np.any(x > 0):
        assert s.sum() == pytest.approx(1.0, rel=1e-5)
    else:
        np.testing.assert_array_equal(s, 0.0)
    h = float(metrics.hhi(jnp.asarray(x)))
    assert h == pytest.approx(ref_hhi(x), rel=1e-4, abs=1e-3)
    if np.any(x > 0):
        # 10,000 / (number of positive holders) <= HHI <= 10,000
        assert 1e4 / np.count_nonzero(x > 0) * (1 - 1e-5) <= h <= 1e4 * (1 + 1e-6)
    prev = 0.0
    for k in (1, 2, 3, N + 5):
        cr = float(metrics.concentration_ratio(jnp.asarray(x), k))
        assert cr == pytest.approx(ref_cr(x, k), rel=1e-5, abs=1e-7), k
        assert cr >= prev - 1e-6  # monotone in k
        prev = cr
    assert prev == pytest.approx(1.0 if np.any(x > 0) else 0.0, abs=1e-5)  # k > n: everything


@pytest.mark.parametrize("n", [1, 2, 4, 6, 10])
def test_hhi_equal_firms_and_monopoly(n):
    equal = jnp.full((n,), 7.5)
    assert float(metrics.hhi(equal)) == pytest.approx(1e4 / n, rel=1e-5)
    assert float(metrics.concentration_ratio(equal, 1)) == pytest.approx(1.0 / n, rel=1e-5)
    assert float(metrics.concentration_ratio(equal, 3)) == pytest.approx(min(3, n) / n, rel=1e-5)
    mono = jnp.zeros((n,)).at[n // 2].set(42.0)
    assert float(metrics.hhi(mono)) == pytest.approx(1e4, rel=1e-6)
    assert float(metrics.concentration_ratio(mono, 1)) == pytest.approx(1.0, rel=1e-6)
    assert float(metrics.gini(mono)) == pytest.approx((n - 1) / n, abs=1e-6)
    assert float(metrics.gini(equal)) == pytest.approx(0.0, abs=1e-6)


def test_concentration_hand_computed():
    x = jnp.asarray([1.0, 2.0, 3.0, 10.0, -4.0])  # negative values count as 0
    assert float(metrics.concentration_ratio(x, 1)) == pytest.approx(10 / 16)
    assert float(metrics.concentration_ratio(x, 3)) == pytest.approx(15 / 16)
    assert float(metrics.hhi(x)) == pytest.approx(1e4 * (1 + 4 + 9 + 100) / 256)


# --------------------------------------------------------------------------- Gini


@SETTINGS
@given(vectors(nonneg))
def test_gini_matches_mean_absolute_difference(x):
    g = float(metrics.gini(jnp.asarray(x)))
    assert g == pytest.approx(ref_gini(x), rel=1e-4, abs=1e-5)
    assert -1e-6 <= g <= (x.size - 1) / x.size + 1e-6


@SETTINGS
@given(vectors(signed), st.floats(1e-2, 1e2))
def test_gini_negative_values_shift_and_scale_invariance(x, c):
    g = float(metrics.gini(jnp.asarray(x)))
    assert g == pytest.approx(ref_gini(x), rel=1e-4, abs=1e-5)
    assert np.isfinite(g)
    nonneg_x = np.abs(x)
    g1 = float(metrics.gini(jnp.asarray(nonneg_x)))
    g2 = float(metrics.gini(jnp.asarray(nonneg_x * np.float32(c))))
    assert g2 == pytest.approx(g1, rel=1e-4, abs=1e-5)


def test_gini_hand_computed():
    # |3-0| + |3-4| + |0-4| = 8 over unordered pairs -> 16 over ordered; 2 n^2 mean = 2*9*7/3 = 42
    assert float(metrics.gini(jnp.asarray([3.0, 0.0, 4.0]))) == pytest.approx(16 / 42, rel=1e-6)
    # negative profits: [-1, 1] is shifted to [0, 2] -> Gini of a two-agent monopoly = 1/2
    assert float(metrics.gini(jnp.asarray([-1.0, 1.0]))) == pytest.approx(0.5, rel=1e-6)


# --------------------------------------------------------------------------- other KPIs


@SETTINGS
@given(vectors(signed))
def test_volatility_and_peak_to_average_match_numpy(x):
    v = float(metrics.volatility(jnp.asarray(x)))
    mean = abs(float(np.mean(f64(x))))
    if mean > 1e-3 * max(1.0, float(np.max(np.abs(f64(x))))):  # away from the 0/0 edge
        assert v == pytest.approx(ref_volatility(x), rel=1e-3, abs=1e-5)
    assert np.isfinite(v) and v >= 0
    p = float(metrics.peak_to_average(jnp.asarray(x)))
    assert p == pytest.approx(ref_par(x), rel=1e-4, abs=1e-6)
    pos = np.count_nonzero(x > 0)
    if pos:
        assert 1.0 - 1e-5 <= p <= x.size * (1 + 1e-5)


def test_volatility_hand_computed():
    assert float(metrics.volatility(jnp.asarray([50.0, 50.0, 50.0]))) == 0.0
    # mean 100, population std 50
    assert float(metrics.volatility(jnp.asarray([50.0, 150.0]))) == pytest.approx(0.5)
    assert float(metrics.peak_to_average(jnp.asarray([1.0, 3.0, -2.0]))) == pytest.approx(2.25)


@SETTINGS
@given(vectors(nonneg), st.integers(0, 2**31 - 1))
def test_battery_cycles(throughput, seed):
    rng = np.random.default_rng(seed)
    cap = np.where(rng.random(throughput.size) < 0.3, 0.0, rng.uniform(1, 500, throughput.size))
    cap = cap.astype(np.float32)
    out = f64(metrics.battery_cycles(jnp.asarray(throughput), jnp.asarray(cap)))
    want = np.where(cap > 0, f64(throughput) / np.maximum(2 * f64(cap), 1e-30), 0.0)
    np.testing.assert_allclose(out, want, rtol=1e-5)
    assert np.all(np.isfinite(out))


# --------------------------------------------------------------------------- degenerate inputs


ALL_FNS = {
    "hhi": metrics.hhi,
    "cr1": lambda x: metrics.concentration_ratio(x, 1),
    "cr3": lambda x: metrics.concentration_ratio(x, 3),
    "gini": metrics.gini,
    "volatility": metrics.volatility,
    "peak_to_average": metrics.peak_to_average,
}


@pytest.mark.parametrize("name", list(ALL_FNS))
@pytest.mark.parametrize("n", [1, 5])
def test_all_zero_inputs_give_zero(name, n):
    out = np.asarray(ALL_FNS[name](jnp.zeros((n,))))
    assert np.all(np.isfinite(out)) and np.all(out == 0.0), out
    np.testing.assert_array_equal(np.asarray(metrics.shares(jnp.zeros((n,)))), 0.0)
    cyc = np.asarray(metrics.battery_cycles(jnp.zeros((n,)), jnp.zeros((n,))))
    np.testing.assert_array_equal(cyc, 0.0)


def test_zero_capacity_with_throughput_gives_zero_cycles():
    out = np.asarray(metrics.battery_cycles(jnp.asarray([5.0, 0.0]), jnp.asarray([0.0, 0.0])))
    np.testing.assert_array_equal(out, 0.0)


@pytest.mark.parametrize("name", ["hhi", "cr1", "cr3", "volatility"])
def test_empty_input_safe(name):
    """The module docstring promises 'safe on empty ... inputs'."""
    out = np.asarray(ALL_FNS[name](jnp.zeros((0,))))
    assert np.all(np.isfinite(out)) and np.all(out == 0.0)


@pytest.mark.parametrize("name", ["gini", "peak_to_average"])
def test_empty_input_safe_gini_par(name):
    out = np.asarray(ALL_FNS[name](jnp.zeros((0,))))
    assert np.all(np.isfinite(out)) and np.all(out == 0.0)


# --------------------------------------------------------------------------- axes and jit


@functools.cache
def _jitted():
    def f(x):
        return {
            "hhi0": metrics.hhi(x, axis=0),
            "hhi1": metrics.hhi(x, axis=-1),
            "cr1_0": metrics.concentration_ratio(x, 1, axis=0),
            "cr3_1": metrics.concentration_ratio(x, 3, axis=-1),
            "gini0": metrics.gini(x, axis=0),
            "gini1": metrics.gini(x, axis=1),
            "vol0": metrics.volatility(x, axis=0),
            "par1": metrics.peak_to_average(x, axis=-1),
        }

    return jax.jit(f)


@SETTINGS
@given(st.lists(st.lists(nonneg, min_size=5, max_size=5), min_size=4, max_size=4))
def test_axis_argument_under_jit(rows):
    """Every KPI along axis 0 and axis -1 of a [4, 5] batch equals the 1-D KPI per column / row."""
    x = np.asarray(rows, np.float32)
    out = {k: f64(v) for k, v in _jitted()(jnp.asarray(x)).items()}
    cols, rws = x.T, x
    np.testing.assert_allclose(out["hhi0"], [ref_hhi(c) for c in cols], rtol=1e-4, atol=1e-3)
    np.testing.assert_allclose(out["hhi1"], [ref_hhi(r) for r in rws], rtol=1e-4, atol=1e-3)
    np.testing.assert_allclose(out["cr1_0"], [ref_cr(c, 1) for c in cols], rtol=1e-5, atol=1e-7)
    np.testing.assert_allclose(out["cr3_1"], [ref_cr(r, 3) for r in rws], rtol=1e-5, atol=1e-7)
    np.testing.assert_allclose(out["gini0"], [ref_gini(c) for c in cols], rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(out["gini1"], [ref_gini(r) for r in rws], rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(out["par1"], [ref_par(r) for r in rws], rtol=1e-4, atol=1e-6)
    vol = [ref_volatility(c) for c in cols]
    np.testing.assert_allclose(out["vol0"], vol, rtol=1e-3, atol=1e-5)


# --------------------------------------------------------------------------- episode KPIs


def _info():
    """T = 3 steps, N = 3 agents, numbers chosen so every KPI is easy to compute by hand."""
    a = lambda v: jnp.asarray(v, jnp.float32)  # noqa: E731
    info = {
        "demand_kwh": a([[1, 2, 3], [2, 2, 2], [0, 1, 1]]),  # total 14
        "p2p_sold_kwh": a([[2, 0, 0], [0, 0, 0], [3, 2, 0]]),  # per agent 5, 2, 0
        "profit": a([[1, -1, 0], [2, 0, 1], [0, 1, 3]]),  # per agent 3, 0, 4
        "p2p_volume_kwh": a([2, 0, 5]),
        "clearing_price": a([100, 999, 60]),  # the 999 at zero volume must not count
        "community_cost": a([10, 20, 30]),
        "baseline_cost": a([12, 25, 31]),
        "savings": a([2, 5, 1]),
        "import_kwh": a([1, 3, 0]),
        "net_import_kwh": a([1, 3, -2]),
        "curtail_kwh": a([[0, 0.5, 0], [0, 0, 0], [1, 0, 0]]),
        "battery_throughput_kwh": a([4, 0, 2.5]),
    }
    reward = a([[1, 2, 3], [0, 0, 0], [2, 1, 0]])  # per agent 3, 3, 3
    return info, reward


def test_lem_episode_kpis_hand_computed():
    info, reward = _info()
    k = {name: float(v) for name, v in metrics.lem_episode_kpis(info, reward).items()}
    pmean = (2 * 100 + 5 * 60) / 7
    pstd = np.sqrt((2 * (100 - pmean) ** 2 + 5 * (60 - pmean) ** 2) / 7)
    expected = {
        "community_cost": 60.0,
        "baseline_cost": 68.0,
        "savings": 8.0,
        "p2p_share": 7 / 14,
        "self_sufficiency": 1 - 4 / 14,
        "mean_agent_return": 3.0,
        "clearing_price_mean": pmean,
        "price_volatility": pstd / pmean,
        "trading_steps": 2 / 3,
        "peak_to_average_import": 3 / (4 / 3),
        "hhi_sales": 1e4 * (25 + 4) / 49,
        "cr1_sales": 5 / 7,
        "cr3_sales": 1.0,
        "gini_profit": 16 / 42,
        "curtailment_kwh": 1.5,
        "battery_throughput_kwh": 6.5,
    }
    assert set(k) == set(expected)
    for name, want in expected.items():
        assert k[name] == pytest.approx(want, rel=1e-5, abs=1e-6), name


def test_lem_episode_kpis_all_zero_is_finite():
    info, reward = _info()
    info = {name: jnp.zeros_like(v) for name, v in info.items()}
    k = {
        name: float(v) for name, v in metrics.lem_episode_kpis(info, jnp.zeros_like(reward)).items()
    }
    assert all(np.isfinite(v) for v in k.values()), k
    for name in (
        "p2p_share",
        "clearing_price_mean",
        "price_volatility",
        "trading_steps",
        "peak_to_average_import",
        "hhi_sales",
        "cr1_sales",
        "cr3_sales",
        "gini_profit",
    ):
        assert k[name] == 0.0, name


# ------------------------------------------------------------ market power and coordination


def ref_lerner(receipts, sold, c):
    """Per seller: (p - c) / p with p = 1000 receipts / sold and c the volume-weighted FiT."""
    out = np.zeros(sold.shape[1])
    for i in range(sold.shape[1]):
        q = sold[:, i].sum()
        if q > 0:
            p = 1000.0 * receipts[:, i].sum() / q
            cbar = (sold[:, i] * c).sum() / q
            out[i] = (p - cbar) / p
    return out


@SETTINGS
@given(st.integers(0, 2**31 - 1))
def test_lerner_withholding_group_mean_correlation_match_numpy(seed):
    rng = np.random.default_rng(seed)
    t, n = 6, 5
    sold = rng.uniform(0, 3, (t, n)) * (rng.random((t, n)) < 0.6)
    sold[:, 0] = 0.0  # a seller that never sells
    price = rng.uniform(40, 300, (t, n))  # currency/MWh
    receipts = sold * price / 1000.0
    fit = rng.uniform(20, 60, t)
    got = np.asarray(
        metrics.lerner_index(jnp.asarray(receipts), jnp.asarray(sold), jnp.asarray(fit))
    )
    np.testing.assert_allclose(got, ref_lerner(receipts, sold, fit), rtol=1e-4, atol=1e-5)
    assert got[0] == 0.0

    avail = rng.uniform(0, 4, (t, n)) * (rng.random((t, n)) < 0.7)
    avail[:, 1] = 0.0
    offered = avail * rng.uniform(0, 1, (t, n))
    w = np.asarray(metrics.withholding_ratio(jnp.asarray(offered), jnp.asarray(avail)))
    for i in range(n):
        a = avail[:, i].sum()
        assert w[i] == pytest.approx(1 - offered[:, i].sum() / a if a > 0 else 0.0, abs=1e-5)

    groups = rng.integers(0, 3, n)
    vals, wts = rng.normal(size=n), rng.uniform(0, 2, n)
    gm = np.asarray(metrics.group_mean(jnp.asarray(vals), groups, 3, jnp.asarray(wts)))
    for g in range(3):
        m = groups == g
        want = (vals[m] * wts[m]).sum() / wts[m].sum() if m.any() else 0.0
        assert gm[g] == pytest.approx(want, rel=1e-4, abs=1e-5)

    a, b = rng.normal(size=24), rng.normal(size=24)
    assert float(metrics.correlation(jnp.asarray(a), jnp.asarray(b))) == pytest.approx(
        np.corrcoef(a, b)[0, 1], abs=1e-5
    )


def test_lerner_hand_computed_and_degenerate_inputs():
    # one seller: 2 kWh at 150 and 2 kWh at 50 currency/MWh, FiT 50 both steps:
    # p = 100, c = 50, L = 0.5
    sold = jnp.asarray([[2.0], [2.0]])
    receipts = jnp.asarray([[0.3], [0.1]])
    assert float(metrics.lerner_index(receipts, sold, jnp.asarray([50.0, 50.0]))[0]) == (
        pytest.approx(0.5)
    )
    zeros = jnp.zeros((3, 4))
    for v in (
        metrics.lerner_index(zeros, zeros, jnp.zeros(3)),
        metrics.withholding_ratio(zeros, zeros),
        metrics.group_mean(jnp.zeros(4), np.zeros(4, int), 2),
        metrics.correlation(jnp.zeros(5), jnp.ones(5)),
    ):
        assert np.all(np.asarray(v) == 0.0)


def test_market_power_kpis_on_a_lem_episode():
    """On a real episode: the rule-based battery offers its whole surplus (withholding 0) and
    never sells below the FiT in expectation of the average rule (Lerner in (0, 1)); a policy
    offering half of every surplus withholds one half."""
    import jaxlem
    from jaxlem.envs.lem import policies
    from jaxlem.rollout import rollout

    env = jaxlem.make("lem-v0", scenario="case2-monopoly")
    params = env.default_params

    def half(key, obs, e, p):
        a = policies.rule_based_battery(key, obs, e, p)
        return a.at[:, 2].set(0.0)  # offered share 0.5 of the surplus

    for policy, want in ((policies.rule_based_battery, 0.0), (half, 0.5)):
        r, info = jax.jit(lambda k, pol=policy: rollout(env, pol, k, params))(jax.random.key(3))
        k = metrics.market_power_kpis(info)
        assert float(k["withholding"]) == pytest.approx(want, abs=1e-5)
        assert 0.0 < float(k["lerner"]) < 1.0
        assert -1.0 <= float(k["storage_alignment"]) <= 1.0
