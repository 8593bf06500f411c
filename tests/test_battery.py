"""Tests for jaxlem.battery.step against a plain-NumPy reference written from the battery model.

Spec: a charge request ``c > 0`` is clipped to ``c' = min(c, P dt, (soc_max E - e) / eta_c)`` and
stores ``eta_c c'``; a discharge request ``d = -request > 0`` delivers
``d' = min(d, P dt, eta_d (e - soc_min E))`` and removes ``d' / eta_d``; then self-discharge removes
``self_discharge * (e - soc_min E)``. The SOC never leaves its window, a battery of capacity 0 does
nothing and a NaN request counts as 0. Requests are clipped, never refused.

Numerics: inputs are float32 (the library's dtype); the reference re-reads them in float64. Every
output is a continuous function of the inputs (a composition of min/max/clip and products), so
float32 rounding moves it by a few ulps of the largest energy involved: we compare with
atol = 1e-5 * (E + P dt + 1).
"""

from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from jaxlem import battery

N = 8  # agents per drawn example: every array has this shape, so ``jstep`` compiles once
SETTINGS = settings(
    max_examples=80,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
FIELDS = ("energy", "charge", "discharge", "throughput", "degradation_cost")

jstep = jax.jit(battery.step)


class Bat(NamedTuple):
    """One batch of N batteries, float32 (``dt`` is a float32 scalar)."""

    energy: np.ndarray
    request: np.ndarray
    capacity: np.ndarray
    power: np.ndarray
    soc_min: np.ndarray
    soc_max: np.ndarray
    eta_c: np.ndarray
    eta_d: np.ndarray
    dt: np.float32
    self_discharge: np.ndarray
    degradation: np.ndarray


def run(b: Bat) -> dict[str, np.ndarray]:
    out = jstep(
        b.energy,
        b.request,
        b.capacity,
        b.power,
        b.soc_min,
        b.soc_max,
        b.eta_c,
        b.eta_d,
        b.dt,
        b.self_discharge,
        b.degradation,
    )
    return {f: np.asarray(getattr(out, f), np.float64) for f in FIELDS}


def reference(b: Bat) -> dict[str, np.ndarray]:
    """The battery model in float64, one agent at a time (no code shared with jaxlem)."""
    f64 = lambda v: np.asarray(v, np.float64)  # noqa: E731
    res = {f: np.zeros(N) for f in FIELDS}
    dt = float(b.dt)
    for i in range(N):
        cap, p = f64(b.capacity[i]), f64(b.power[i])
        lo, hi = f64(b.soc_min[i]) * cap, f64(b.soc_max[i]) * cap
        e = min(max(f64(b.energy[i]), lo), hi)
        req = f64(b.request[i])
        if np.isnan(req):
            req = 0.0
        ec, ed = f64(b.eta_c[i]), f64(b.eta_d[i])
        limit = max(p * dt, 0.0)
        c = d = 0.0
        if req > 0:
            c = min(req, limit, max(hi - e, 0.0) / ec)
        elif req < 0:
            d = min(-req, limit, ed * max(e - lo, 0.0))
        new = e + ec * c - d / ed
        new -= f64(b.self_discharge[i]) * max(new - lo, 0.0)
        new = min(max(new, lo), hi)
        res["energy"][i] = new
        res["charge"][i] = c
        res["discharge"][i] = d
        res["throughput"][i] = c + d
        res["degradation_cost"][i] = f64(b.degradation[i]) * (c + d)
    return res


def atol(b: Bat) -> np.ndarray:
    cap = np.asarray(b.capacity, np.float64)
    lim = np.maximum(np.asarray(b.power, np.float64) * float(b.dt), 0.0)
    return 1e-5 * (cap + lim + 1.0)


def assert_close(got, want, atol, rtol=1e-5, msg=""):
    """Elementwise |got - want| <= atol + rtol |want| with a per-element ``atol``."""
    got, want = np.asarray(got, np.float64), np.asarray(want, np.float64)
    bad = ~(np.abs(got - want) <= atol + rtol * np.abs(want))
    assert not np.any(bad), f"{msg}\ngot  {got}\nwant {want}\nbad at {np.flatnonzero(bad)}"


def window(b: Bat, tol: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    cap = np.asarray(b.capacity, np.float64)
    return np.asarray(b.soc_min, np.float64) * cap - tol, np.asarray(
        b.soc_max, np.float64
    ) * cap + tol


# --------------------------------------------------------------------------- strategies


def f32(lo: float, hi: float) -> st.SearchStrategy[float]:
    """float32 values in [lo, hi] (bounds rounded to float32 first), no subnormals (XLA on CPU
    flushes them to zero)."""
    return st.floats(float(np.float32(lo)), float(np.float32(hi)), width=32, allow_subnormal=False)


finite_request = st.one_of(
    f32(-2000.0, 2000.0),
    st.sampled_from([0.0, 1e30, -1e30, 3e38, -3e38, 1e-6, -1e-6]),
)
nan_or_finite_request = st.one_of(finite_request, st.just(float("nan")))
extreme_request = st.sampled_from(
    [float("inf"), float("-inf"), float("nan"), 1e30, -1e30, 3.4e38, -3.4e38, 0.0]
)


@st.composite
def agent(draw, request, self_discharge=True, inside=True):
    cap = draw(st.one_of(st.just(0.0), f32(0.0, 1000.0)))
    power = draw(st.one_of(st.just(0.0), f32(0.0, 1000.0)))
    smin = draw(f32(0.0, 0.5))
    smax = draw(f32(smin, 1.0))
    u = draw(f32(0.0, 1.0)) if inside else draw(f32(-0.5, 1.5))
    energy = (smin + u * (smax - smin)) * cap if inside else u * cap
    return (
        energy,
        draw(request),
        cap,
        power,
        smin,
        smax,
        draw(f32(0.5, 1.0)),
        draw(f32(0.5, 1.0)),
        draw(f32(0.0, 0.2)) if self_discharge else 0.0,
        draw(f32(0.0, 0.5)),
    )


@st.composite
def batteries(draw, request=nan_or_finite_request, self_discharge=True, inside=True):
    rows = draw(
        st.lists(agent(request, self_discharge, inside), min_size=N, max_size=N)  # type: ignore
    )
    cols = [np.asarray(c, np.float32) for c in zip(*rows, strict=True)]
    e, req, cap, p, smin, smax, ec, ed, sd, deg = cols
    dt = np.float32(draw(st.sampled_from([0.25, 0.5, 1.0]) | f32(0.05, 2.0)))
    return Bat(e, req, cap, p, smin, smax, ec, ed, dt, sd, deg)


# --------------------------------------------------------------------------- reference


@SETTINGS
@given(batteries())
def test_matches_numpy_reference(b):
    out, ref = run(b), reference(b)
    tol = atol(b)
    for f in FIELDS:
        scale = np.maximum(np.asarray(b.degradation, np.float64), 1.0) if f[0] == "d" else 1.0
        assert_close(out[f], ref[f], tol * scale, msg=f"{f} {b}")


# --------------------------------------------------------------------------- invariants


@SETTINGS
@given(batteries(request=extreme_request, inside=False) | batteries(inside=False))
def test_soc_stays_in_window_for_any_request(b):
    """Any request (NaN, +-inf, +-1e30, float32 max) and any start energy ends inside the window."""
    out = run(b)
    tol = atol(b)
    lo, hi = window(b, tol)
    for f in FIELDS:
        assert np.all(np.isfinite(out[f])), (f, out[f], b)
    assert np.all(out["energy"] >= lo), (out["energy"], lo, b)
    assert np.all(out["energy"] <= hi), (out["energy"], hi, b)
    assert np.all(out["charge"] >= 0) and np.all(out["discharge"] >= 0)


@SETTINGS
@given(batteries(self_discharge=False))
def test_energy_accounting_without_self_discharge(b):
    out = run(b)
    e0 = np.asarray(b.energy, np.float64)
    ec, ed = np.asarray(b.eta_c, np.float64), np.asarray(b.eta_d, np.float64)
    expected = e0 + ec * out["charge"] - out["discharge"] / ed
    assert_close(out["energy"], expected, 2 * atol(b) / ed, msg=str(b))


@SETTINGS
@given(batteries())
def test_flows_signs_power_limit_and_costs(b):
    out = run(b)
    tol = atol(b)
    c, d = out["charge"], out["discharge"]
    assert np.all(c >= 0) and np.all(d >= 0), (c, d)
    assert not np.any((c > 0) & (d > 0)), ("charge and discharge in one step", c, d)
    limit = np.maximum(np.asarray(b.power, np.float64) * float(b.dt), 0.0)
    assert np.all(c <= limit * (1 + 1e-6) + tol), (c, limit)
    assert np.all(d <= limit * (1 + 1e-6) + tol), (d, limit)
    req = np.nan_to_num(np.asarray(b.request, np.float64), nan=0.0)
    # Clipped, never enlarged, and in the direction requested.
    assert np.all(c <= np.maximum(req, 0.0) * (1 + 1e-6) + tol)
    assert np.all(d <= np.maximum(-req, 0.0) * (1 + 1e-6) + tol)
    assert_close(out["throughput"], c + d, 1e-6 * tol, 1e-6, msg=str(b))
    deg = np.asarray(b.degradation, np.float64)
    assert_close(out["degradation_cost"], deg * (c + d), 1e-6 * tol, msg=str(b))


@SETTINGS
@given(batteries(request=nan_or_finite_request | extreme_request))
def test_zero_capacity_does_nothing(b):
    b = b._replace(capacity=np.zeros(N, np.float32), energy=np.zeros(N, np.float32))
    out = run(b)
    for f in FIELDS:
        np.testing.assert_array_equal(out[f], 0.0, err_msg=f)


@SETTINGS
@given(batteries())
def test_nan_request_is_idle(b):
    nan = b._replace(request=np.full(N, np.nan, np.float32))
    idle = b._replace(request=np.zeros(N, np.float32))
    out_nan, out_idle = run(nan), run(idle)
    for f in FIELDS:
        np.testing.assert_array_equal(out_nan[f], out_idle[f], err_msg=f)
    # Idle: only self-discharge moves the energy, and it never goes up.
    assert np.all(out_idle["energy"] <= np.asarray(b.energy, np.float64) + atol(b))
    np.testing.assert_array_equal(out_idle["throughput"], 0.0)


# --------------------------------------------------------------------------- hand-computed cases


def _one(energy, request, cap=100.0, power=10.0, smin=0.1, smax=0.9, eta=0.9, dt=1.0, sd=0.0):
    """A batch of N identical batteries with the given numbers (reuses the compiled ``jstep``)."""
    full = lambda v: np.full(N, v, np.float32)  # noqa: E731
    b = Bat(
        full(energy),
        full(request),
        full(cap),
        full(power),
        full(smin),
        full(smax),
        full(eta),
        full(eta),
        np.float32(dt),
        full(sd),
        full(0.05),
    )
    return {f: float(v[0]) for f, v in run(b).items()}


@pytest.mark.parametrize(
    "energy, req, kwargs, energy_after, charge, discharge",
    [
        (50.0, 5.0, {}, 54.5, 5.0, 0.0),  # plain charge: stores eta * c
        (50.0, 1e30, {}, 59.0, 10.0, 0.0),  # power limit P dt = 10
        (50.0, 1e30, {"dt": 0.25}, 52.25, 2.5, 0.0),  # power limit P dt = 2.5
        (88.0, 10.0, {}, 90.0, 2.0 / 0.9, 0.0),  # headroom: (90 - 88) / eta
        (90.0, 10.0, {}, 90.0, 0.0, 0.0),  # full
        (50.0, -5.0, {}, 50.0 - 5.0 / 0.9, 0.0, 5.0),  # plain discharge removes d / eta
        (50.0, -1e30, {}, 50.0 - 10.0 / 0.9, 0.0, 10.0),  # power limit
        (12.0, -10.0, {}, 10.0, 0.0, 0.9 * 2.0),  # floor: eta (12 - 10)
        (10.0, -10.0, {}, 10.0, 0.0, 0.0),  # empty
        (50.0, 0.0, {"sd": 0.1}, 46.0, 0.0, 0.0),  # self-discharge of 10% above the floor
        (50.0, 5.0, {"sd": 0.1}, 54.5 - 0.1 * 44.5, 5.0, 0.0),  # after the charge
        (50.0, 5.0, {"power": 0.0}, 50.0, 0.0, 0.0),  # no power
    ],
)
def test_hand_computed(energy, req, kwargs, energy_after, charge, discharge):
    out = _one(energy, req, **kwargs)
    assert out["energy"] == pytest.approx(energy_after, rel=1e-5)
    assert out["charge"] == pytest.approx(charge, rel=1e-5, abs=1e-6)
    assert out["discharge"] == pytest.approx(discharge, rel=1e-5, abs=1e-6)
    assert out["degradation_cost"] == pytest.approx(0.05 * (charge + discharge), rel=1e-5, abs=1e-7)


@pytest.mark.parametrize("sign", [1.0, -1.0])
def test_infinite_request_is_clipped_like_a_huge_one(sign):
    huge = _one(50.0, sign * 1e30)
    inf = _one(50.0, sign * np.inf)
    assert inf == huge


def test_differentiable_inside_the_window():
    """Inside the window and below the power limit, d e' / d request = eta_c (charge) and
    1 / eta_d (discharge): the clipping is piecewise linear with the right slopes."""

    def e_after(req):
        one = jnp.ones(())
        return battery.step(
            50.0 * one,
            req,
            100.0 * one,
            10.0 * one,
            0.1 * one,
            0.9 * one,
            0.9 * one,
            0.8 * one,
            1.0,
        ).energy

    g = jax.jit(jax.vmap(jax.grad(e_after)))(jnp.asarray([3.0, -3.0, 1e30, -1e30], jnp.float32))
    np.testing.assert_allclose(np.asarray(g), [0.9, 1.0 / 0.8, 0.0, 0.0], rtol=1e-6)
