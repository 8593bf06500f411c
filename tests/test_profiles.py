"""Tests for jaxlem.profiles: synthetic shapes, CSV loading, random draws and DSO tariffs."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from jaxlem.profiles import (
    demand_shape,
    draw_day_factors,
    load_profile_csv,
    pv_shape,
    sample_step,
    tou_tariff,
)


def _hours(num_steps: int, dt_h: float) -> np.ndarray:
    return np.mod((np.arange(num_steps) + 0.5) * dt_h, 24.0)


# --------------------------------------------------------------------------- synthetic shapes


@pytest.mark.parametrize("num_steps, dt_h", [(24, 1.0), (96, 0.25), (48, 1.0)])
def test_shapes_dtypes(num_steps, dt_h):
    for arr in (pv_shape(num_steps, dt_h), demand_shape(num_steps, dt_h)):
        assert isinstance(arr, np.ndarray)
        assert arr.shape == (num_steps,)
        assert arr.dtype == np.float32
        assert np.all(np.isfinite(arr))


@pytest.mark.parametrize("num_steps, dt_h", [(24, 1.0), (96, 0.25)])
def test_pv_zero_outside_daylight_and_peak_at_noon(num_steps, dt_h):
    pv = pv_shape(num_steps, dt_h)
    h = _hours(num_steps, dt_h)
    night = (h < 6.0) | (h > 18.0)
    assert np.all(pv[night] == 0.0)
    assert np.all(pv[~night] > 0.0)
    assert np.all(pv <= 1.0)
    assert pv.max() > 0.95
    assert abs(h[np.argmax(pv)] - 12.0) <= dt_h
    # Custom window: nothing before sunrise or after sunset.
    pv2 = pv_shape(num_steps, dt_h, sunrise_h=8.0, sunset_h=16.0, width_h=2.0)
    assert np.all(pv2[(h < 8.0) | (h > 16.0)] == 0.0)


def test_pv_multi_day_wraps():
    pv = pv_shape(48, 1.0)
    np.testing.assert_array_equal(pv[:24], pv[24:])


def test_pv_shape_rejects_bad_arguments():
    with pytest.raises(ValueError, match="dt_h"):
        pv_shape(24, 0.0)
    with pytest.raises(ValueError, match="num_steps"):
        pv_shape(0, 1.0)
    with pytest.raises(ValueError, match="sunrise_h"):
        pv_shape(24, 1.0, sunrise_h=19.0, sunset_h=18.0)
    with pytest.raises(ValueError, match="width_h"):
        pv_shape(24, 1.0, width_h=-1.0)


@pytest.mark.parametrize("num_steps, dt_h", [(24, 1.0), (96, 0.25)])
def test_demand_mean_one_and_peaks(num_steps, dt_h):
    d = demand_shape(num_steps, dt_h)
    h = _hours(num_steps, dt_h)
    assert np.all(d > 0.0)
    assert d.mean() == pytest.approx(1.0, abs=1e-5)
    morning = d[(h >= 7.0) & (h <= 9.0)].max()
    evening = d[(h >= 19.0) & (h <= 21.0)].max()
    trough = d[(h >= 1.0) & (h <= 6.0)].max()
    assert morning > 1.3 * trough
    assert evening > 1.3 * trough
    assert evening > morning
    assert d.min() == pytest.approx(d[(h >= 1.0) & (h <= 6.0)].min(), abs=1e-3)


def test_demand_day_mean_over_several_days():
    assert demand_shape(72, 1.0).mean() == pytest.approx(1.0, abs=1e-5)
    # A step that does not divide the day is still normalised to about 1.
    assert demand_shape(48, 0.5).mean() == pytest.approx(1.0, abs=1e-5)
    assert demand_shape(35, 24.0 / 35).mean() == pytest.approx(1.0, abs=0.02)


def test_quarter_hour_consistent_with_hourly():
    for fn in (pv_shape, demand_shape):
        fine = fn(96, 0.25).reshape(24, 4).mean(axis=1)
        coarse = fn(24, 1.0)
        np.testing.assert_allclose(fine, coarse, atol=0.06)


# --------------------------------------------------------------------------- CSV loader


def _write(tmp_path, text: str, name: str = "p.csv"):
    path = tmp_path / name
    path.write_text(text)
    return path


def _csv_text(values: np.ndarray) -> str:
    k = values.shape[1]
    lines = [",".join(f"profile_{j + 1}" for j in range(k))]
    lines += [",".join(repr(float(v)) for v in row) for row in values]
    return "\n".join(lines) + "\n"


def test_csv_round_trip(tmp_path):
    rng = np.random.default_rng(0)
    values = rng.uniform(0.0, 2.0, size=(24, 3)).astype(np.float32)
    path = _write(tmp_path, _csv_text(values))
    out = load_profile_csv(path, 24, 1.0)
    assert out.shape == (3, 24)
    assert out.dtype == np.float32
    np.testing.assert_array_equal(out, values.T)
    # str paths work too, and a single column is K = 1.
    single = _write(tmp_path, _csv_text(values[:, :1]), "single.csv")
    assert load_profile_csv(str(single), 24, 1.0).shape == (1, 24)


def test_csv_quarter_hour_file_into_hourly_env_averages(tmp_path):
    rng = np.random.default_rng(1)
    values = rng.uniform(0.0, 1.0, size=(96, 2))
    out = load_profile_csv(_write(tmp_path, _csv_text(values)), 24, 1.0)
    assert out.shape == (2, 24)
    np.testing.assert_allclose(out, values.reshape(24, 4, 2).mean(axis=1).T, rtol=1e-6)
    # Energy is kept: mean power is unchanged.
    np.testing.assert_allclose(out.mean(axis=1), values.mean(axis=0), rtol=1e-5)


def test_csv_hourly_file_into_quarter_hour_env_repeats(tmp_path):
    rng = np.random.default_rng(2)
    values = rng.uniform(0.0, 1.0, size=(24, 2))
    out = load_profile_csv(_write(tmp_path, _csv_text(values)), 96, 0.25)
    assert out.shape == (2, 96)
    np.testing.assert_allclose(out, np.repeat(values, 4, axis=0).T, rtol=1e-6)


def test_csv_half_hour_factor_two(tmp_path):
    values = np.arange(48, dtype=np.float64).reshape(48, 1)
    out = load_profile_csv(_write(tmp_path, _csv_text(values)), 24, 1.0)
    np.testing.assert_allclose(out[0], values.reshape(24, 2).mean(axis=1))


def test_csv_tolerates_trailing_blank_lines_and_whitespace(tmp_path):
    path = _write(tmp_path, "profile_1, profile_2\n1.0, 2.0\n3.0,4.0\n\n\n")
    out = load_profile_csv(path, 2, 1.0)
    np.testing.assert_array_equal(out, [[1.0, 3.0], [2.0, 4.0]])


@pytest.mark.parametrize(
    "text, match",
    [
        ("", "empty"),
        ("profile_1,profile_2\n", "rows"),
        ("p1,p2\n1,2\n", "header"),
        ("profile_2,profile_1\n1,2\n", "header"),
        ("profile_1,profile_3\n1,2\n", "header"),
        ("profile_1,profile_2\n1\n", r"row 1 .*cells"),
        ("profile_1,profile_2\n1,2\n3,\n", r"row 2 .*column 'profile_2'.*missing"),
        ("profile_1,profile_2\n1,abc\n", r"row 1 .*column 'profile_2'.*'abc'.*numeric"),
        ("profile_1,profile_2\n1,nan\n", r"column 'profile_2'.*not finite"),
        ("profile_1,profile_2\ninf,1\n", r"column 'profile_1'.*not finite"),
        ("profile_1,profile_2\n1,-0.5\n", r"column 'profile_2'.*-0\.5.*>= 0"),
    ],
)
def test_csv_bad_content_raises(tmp_path, text, match):
    path = _write(tmp_path, text)
    # One-row files are fine for the row count (T = 1), so the content error is what fires.
    with pytest.raises(ValueError, match=match):
        load_profile_csv(path, 1, 1.0)


@pytest.mark.parametrize("rows, num_steps", [(23, 24), (72, 24), (24, 72), (8, 96), (192, 24)])
def test_csv_bad_row_count_raises(tmp_path, rows, num_steps):
    path = _write(tmp_path, _csv_text(np.ones((rows, 1))))
    with pytest.raises(ValueError, match=rf"rows = {rows}.*allowed"):
        load_profile_csv(path, num_steps, 24.0 / num_steps)


def test_csv_missing_file(tmp_path):
    with pytest.raises((FileNotFoundError, ValueError), match="path"):
        load_profile_csv(tmp_path / "nope.csv", 24, 1.0)


# --------------------------------------------------------------------------- random draws


def test_draw_day_factors_shapes_ranges_and_independence():
    key = jax.random.key(0)
    pv_peak, demand_day = draw_day_factors(key, 64, 0.4, 0.2)
    assert pv_peak.shape == demand_day.shape == (64,)
    assert pv_peak.dtype == demand_day.dtype == jnp.float32
    assert jnp.all((pv_peak >= 0.6) & (pv_peak <= 1.0))
    assert jnp.all((demand_day >= 0.2) & (demand_day <= 3.0))
    assert len(np.unique(np.asarray(pv_peak))) > 60
    assert len(np.unique(np.asarray(demand_day))) > 60
    again = draw_day_factors(key, 64, 0.4, 0.2)
    np.testing.assert_array_equal(pv_peak, again[0])
    np.testing.assert_array_equal(demand_day, again[1])
    other = draw_day_factors(jax.random.key(1), 64, 0.4, 0.2)
    assert not np.array_equal(pv_peak, other[0])


def test_draw_day_factors_extremes_and_jit():
    fn = jax.jit(draw_day_factors, static_argnums=1)
    pv_peak, demand_day = fn(jax.random.key(3), 16, 0.0, 0.0)
    np.testing.assert_array_equal(pv_peak, np.ones(16))
    np.testing.assert_array_equal(demand_day, np.ones(16))
    pv_peak, demand_day = fn(jax.random.key(3), 16, 1.0, 1e30)
    assert jnp.all(jnp.isfinite(pv_peak)) and jnp.all(jnp.isfinite(demand_day))
    assert jnp.all((pv_peak >= 0.0) & (pv_peak <= 1.0))
    assert jnp.all((demand_day >= 0.2) & (demand_day <= 3.0))


def test_sample_step_basic():
    key = jax.random.key(4)
    shape = jnp.full((32,), 0.8, jnp.float32)
    day = jnp.linspace(0.5, 1.5, 32, dtype=jnp.float32)
    out = sample_step(key, shape, day, 0.1)
    assert out.shape == (32,)
    assert out.dtype == jnp.float32
    assert jnp.all(out >= 0.0)
    np.testing.assert_array_equal(out, sample_step(key, shape, day, 0.1))
    # Same mean for every agent -> still different realisations.
    same = sample_step(key, shape, jnp.ones(32), 0.1)
    assert len(np.unique(np.asarray(same))) > 30
    # No noise -> exactly the product.
    np.testing.assert_allclose(sample_step(key, shape, day, 0.0), shape * day, rtol=1e-6)


def test_sample_step_extremes_never_nan_and_jit():
    fn = jax.jit(sample_step)
    key = jax.random.key(5)
    shape = jnp.asarray([0.0, 1.0, 1e30, 3e38, 1e-30, 0.0], jnp.float32)
    day = jnp.asarray([1e30, 3.0, 1e30, 3e38, 1e-30, jnp.inf], jnp.float32)
    for noise in (0.0, 1.0, 100.0, 1e30):
        out = fn(key, shape, day, noise)
        assert out.shape == (6,)
        assert not jnp.any(jnp.isnan(out))
        assert jnp.all(out >= 0.0)


# --------------------------------------------------------------------------- DSO tariffs


def _tou_24(key, lo, hi, gap, jitter):
    return tou_tariff(key, 24, 1.0, lo, hi, gap, jitter)


_tou_24_jit = jax.jit(_tou_24)


# XLA's CPU code flushes subnormal floats to zero (whether an op does depends on how it is
# fused), so a bound of 1e-44 may come back as 0; prices that small never occur
@settings(max_examples=25, deadline=None)
@given(
    seed=st.integers(0, 2**31 - 1),
    lo=st.floats(-200.0, 500.0, width=32, allow_subnormal=False),
    span=st.floats(1.0, 1000.0),
    gap=st.floats(0.0, 0.5),
    jitter=st.floats(0.0, 5.0),
)
def test_tou_tariff_bounds_and_gap(seed, lo, span, gap, jitter):
    hi = lo + span
    fit, util = _tou_24_jit(jax.random.key(seed), lo, hi, gap, jitter)
    fit, util = np.asarray(fit), np.asarray(util)
    r = np.float32(hi) - np.float32(lo)
    assert fit.shape == util.shape == (24,)
    assert fit.dtype == util.dtype == np.float32
    assert np.all(np.isfinite(fit)) and np.all(np.isfinite(util))
    assert np.all(fit >= np.float32(lo))
    assert np.all(util <= np.float32(hi))
    assert np.all(fit + gap * r <= util + 1e-4 * r)


def test_tou_tariff_vmap_over_keys_and_params():
    keys = jax.random.split(jax.random.key(6), 8)
    lo = jnp.linspace(10.0, 50.0, 8)
    hi = jnp.linspace(200.0, 400.0, 8)
    gap = jnp.full((8,), 0.05)
    jitter = jnp.ones((8,))
    fit, util = jax.vmap(_tou_24)(keys, lo, hi, gap, jitter)
    assert fit.shape == util.shape == (8, 24)
    assert jnp.all(fit >= lo[:, None]) and jnp.all(util <= hi[:, None])
    assert jnp.all(fit + 0.05 * (hi - lo)[:, None] <= util + 1e-3)
    # Key-only vmap with scalar prices; different keys give different profiles.
    fit_k, util_k = jax.vmap(lambda k: tou_tariff(k, 24, 1.0, 30.0, 300.0))(keys)
    assert fit_k.shape == (8, 24)
    assert len({tuple(np.asarray(u)) for u in util_k}) > 1


def test_tou_tariff_zero_jitter_is_key_independent_default():
    f0, u0 = tou_tariff(jax.random.key(0), 24, 1.0, 30.0, 300.0, jitter=0.0)
    f1, u1 = tou_tariff(jax.random.key(99), 24, 1.0, 30.0, 300.0, jitter=0.0)
    np.testing.assert_array_equal(f0, f1)
    np.testing.assert_array_equal(u0, u1)
    h = _hours(24, 1.0)
    # Default blocks: night [0, 7), day [7, 17), peak [17, 21), late [21, 24).
    for lo_h, hi_h in [(0, 7), (7, 17), (17, 21), (21, 24)]:
        block = u0[(h >= lo_h) & (h < hi_h)]
        assert np.all(block == block[0])
    assert len(np.unique(np.asarray(u0))) == 4


@pytest.mark.parametrize("jitter", [0.0, 1.0])
def test_tou_tariff_evening_peak_above_night(jitter):
    for seed in range(5):
        fit, util = tou_tariff(jax.random.key(seed), 96, 0.25, 30.0, 300.0, jitter=jitter)
        assert util.shape == fit.shape == (96,)
        h = _hours(96, 0.25)
        peak = util[(h >= 18.0) & (h < 19.0)]  # inside the peak block for edge shifts <= 1 h
        night = util[(h >= 1.0) & (h < 4.0)]
        assert jnp.min(peak) > jnp.max(night)
        assert jnp.all(fit < util)  # FiT sits below utility at every step
