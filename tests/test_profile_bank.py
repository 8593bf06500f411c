"""The shipped profile bank: its shape and physics, its use by the env, the core install not
importing pvlib/demandlib, and reproducibility from the build command (``[profiles]`` extra)."""

from __future__ import annotations

import subprocess
import sys

import jax
import numpy as np
import pytest

import jaxlem
from jaxlem import profiles
from jaxlem.profiles import bank as bank_mod
from jaxlem.profiles.kinds import DEMAND_KIND_NAMES, PV_KINDS


def test_shipped_bank_shape_kinds_and_physics():
    b = profiles.load_bank("default")
    assert b.dt_h == 0.25 and b.pv_kinds == PV_KINDS and b.demand_kinds == DEMAND_KIND_NAMES
    assert b.pv.shape == (len(PV_KINDS), 365 * 96) and b.demand.shape == (13, 365 * 96)
    assert np.all(b.pv >= 0) and np.all(b.demand >= 0)
    np.testing.assert_allclose(b.demand.mean(axis=1), 1.0, rtol=2e-4)
    day = b.pv.reshape(len(PV_KINDS), 365, 96)
    assert np.all(day[:, :, :16] == 0)  # no PV between midnight and 4 h local time
    assert np.all(day.max(axis=(1, 2)) < 1.0)  # AC per kW of DC stays below 1
    summer, winter = day[:, 150:240].mean(), np.concatenate([day[:, :40], day[:, 330:]], 1).mean()
    assert summer > 1.3 * winter
    cf = b.capacity_factor()
    assert np.all((cf > 0.1) & (cf < 0.25))
    east, west = PV_KINDS.index("east"), PV_KINDS.index("west")
    peak = day.mean(axis=1).argmax(axis=1)  # quarter of the mean daily peak
    assert peak[east] < peak[PV_KINDS.index("south")] < peak[west]
    hp = b.demand[DEMAND_KIND_NAMES.index("heat_pump")].reshape(365, 96).mean(axis=1)
    assert hp[:40].mean() > 3 * hp[150:240].mean()  # heating in winter
    ev = b.demand[DEMAND_KIND_NAMES.index("ev")].reshape(365, 96)
    assert ev[:, 72:96].sum() > ev[:, 24:48].sum()  # evening charging beats morning


def test_resampling_keeps_energy_and_rejects_grids_it_cannot_serve():
    b = profiles.load_bank("default")
    h = profiles.load_bank("default", 1.0)
    assert h.pv.shape[-1] == 8760
    np.testing.assert_allclose(h.pv.mean(axis=1), b.pv.mean(axis=1), rtol=1e-5)
    with pytest.raises(ValueError, match=r"dt_h: got 0.4"):
        b.resample(0.4)
    with pytest.raises(ValueError, match=r"dt_h: got 0.4"):
        jaxlem.make("lem-v0", dt_h=0.4)
    with pytest.raises(ValueError, match=r"profile_bank: got 'nowhere'"):
        jaxlem.make("lem-v0", profile_bank="nowhere")


def test_saved_bank_round_trips_and_loads_into_the_env(tmp_path):
    b = profiles.load_bank("default")
    path = profiles.save_bank(tmp_path / "mine.npz", b)
    mine = profiles.load_bank(str(path))
    scale = b.pv.max(axis=1, keepdims=True) / 65535
    assert np.all(np.abs(mine.pv - b.pv) <= scale + 1e-7)
    env = jaxlem.make("lem-v0", num_agents=3, profile_bank=str(path))
    obs, _ = env.reset(jax.random.PRNGKey(0), env.default_params)
    assert obs.shape == (3, env.obs_dim) and np.all(np.isfinite(np.asarray(obs)))


def test_env_reads_the_bank_at_the_drawn_day():
    env = jaxlem.make("lem-v0", num_agents=4, num_steps=24)
    p = env.default_params.replace(
        day_lo=np.float32(200.0),
        day_hi=np.float32(201.0),
        pv_noise=np.float32(0.0),
        demand_noise=np.float32(0.0),
        demand_day_std=np.float32(0.0),
        pv_kind=np.asarray([0, 2, 3, 4], np.int32),
        demand_kind=np.asarray([0, 2, 11, 12], np.int32),
        pv_kw=np.full(4, 5.0, np.float32),
        demand_kw=np.full(4, 2.0, np.float32),
    )
    _, state = env.reset(jax.random.PRNGKey(5), p)
    assert int(state.day) == 200
    b = env.bank
    np.testing.assert_allclose(np.asarray(state.gen), 5.0 * b.pv[[0, 2, 3, 4], 200 * 24], atol=1e-5)
    np.testing.assert_allclose(
        np.asarray(state.demand), 2.0 * b.demand[[0, 2, 11, 12], 200 * 24], rtol=1e-5
    )


def test_core_install_does_not_import_the_profile_libraries():
    code = (
        "import sys, jax, jaxlem\n"
        "env = jaxlem.make('lem-v0', num_agents=3)\n"
        "env.reset(jax.random.PRNGKey(0), env.default_params)\n"
        "bad = [m for m in ('pvlib', 'demandlib') if m in sys.modules]\n"
        "assert not bad, bad\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True, timeout=300)


def test_bank_is_reproducible_from_the_build_command():
    pytest.importorskip("pvlib", reason="rebuilding the bank needs the [profiles] extra (pvlib)")
    pytest.importorskip("demandlib", reason="rebuilding the bank needs the [profiles] extra")
    from jaxlem.profiles import build

    shipped = profiles.load_bank("default")
    pv_kinds, dem_kinds = ("south", "east"), ("h0", "g1", "ev", "heat_pump")
    fresh = build.build_bank(pv_kinds=pv_kinds, demand_kinds=dem_kinds)
    assert fresh.meta["weather_file"] == shipped.meta["weather_file"]
    for kinds, new, old_all, names in (
        (pv_kinds, fresh.pv, shipped.pv, shipped.pv_kinds),
        (dem_kinds, fresh.demand, shipped.demand, shipped.demand_kinds),
    ):
        old = old_all[[names.index(k) for k in kinds]]
        step = old.max(axis=1, keepdims=True) / 65535  # one quantisation step per kind
        assert np.all(np.abs(new - old) <= 2 * step + 1e-6), kinds


def test_bank_files_that_are_not_banks_are_rejected(tmp_path):
    bad = tmp_path / "bad.npz"
    np.savez(bad, something=np.zeros(3))
    with pytest.raises(ValueError, match=r"profile_bank: .* is not a readable profile bank"):
        bank_mod.load_bank(str(bad))
