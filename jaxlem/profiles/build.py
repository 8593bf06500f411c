"""Build a profile bank with the field's own libraries (extra ``[profiles]``: pvlib, demandlib).

``jaxlem-profiles --out my_bank.npz`` regenerates the shipped bank; ``--weather FILE`` builds one
for another place (a TMY3 CSV or an EPW file, e.g. from NSRDB or PVGIS) and ``--year`` sets the
calendar (weekdays and BDEW seasons). Load it with ``jaxlem.make("lem-v0", profile_bank=PATH)``.

- **PV** (pvlib): for each orientation of :data:`jaxlem.profiles.kinds.PV_ORIENTATIONS`, the
  weather file's hourly irradiance is brought to 15 minutes through pvlib's Ineichen clear-sky
  model (the hourly clear-sky index times the 15-minute clear-sky irradiance, so each hour's
  energy is kept and the sun's path is resolved), split into direct and diffuse (Erbs), transposed
  to the plane of array (Hay-Davies, albedo 0.2), derated by the Faiman cell temperature
  (PVWatts DC, -0.37 %/K, 14 % system losses) and converted by a PVWatts inverter sized at DC/AC
  1.1. Per kW of installed DC capacity.
- **Demand** (demandlib): the BDEW standard load profiles H0 (dynamised), G0-G6, L0-L2 for the
  calendar year, normalised to mean 1.
- **EV charging:** a fleet of 20 home-charged cars (seeded): weekday arrival N(18 h, 1.5 h),
  weekend N(14 h, 3 h), energy per charge lognormal around 8 kWh, 7.4 or 11 kW chargers,
  uncontrolled charging from arrival (so it runs overnight); mean 1.
- **Heat pump:** demandlib's BDEW heat profile of a single-family house (class 5, hot water
  included) driven by the weather file's air temperature, divided by an air-source COP
  ``6.08 - 0.09 dT + 0.0005 dT^2`` with ``dT = 40 C - T_air`` (floor at 1.5); mean 1.

Weather data are used in the file's local standard time, positionally mapped onto the calendar
year (typical-year files mix months of different years).
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
from pathlib import Path
from typing import Any

import numpy as np

from jaxlem.profiles.bank import BANK_DT_H, DATA_DIR, DAYS, ProfileBank, save_bank
from jaxlem.profiles.kinds import DEMAND_KIND_NAMES, PV_KINDS, PV_ORIENTATIONS

DEFAULT_WEATHER = "723170TYA.CSV"  # Greensboro, NC (TMY3, shipped with pvlib)
DEFAULT_YEAR = 2025
_STEPS = DAYS * 96
_BDEW = ("h0_dyn", "g0", "g1", "g2", "g3", "g4", "g5", "g6", "l0", "l1", "l2")


def _require() -> Any:
    try:
        import demandlib  # noqa: F401
        import pvlib
    except ImportError as err:
        raise ImportError(
            "building a profile bank needs the [profiles] extra: pip install -e '.[profiles]' "
            f"({err})"
        ) from None
    return pvlib


def read_weather(path: str | os.PathLike | None = None) -> tuple[Any, dict[str, Any]]:
    """Hourly weather of a TMY3 CSV or EPW file: (DataFrame with ghi, dni, dhi, temp_air,
    wind_speed; 8760 rows in file order), location metadata dict."""
    pvlib = _require()
    if path is None:
        path = Path(pvlib.__file__).parent / "data" / DEFAULT_WEATHER
    path = Path(path)
    if path.suffix.lower() == ".epw":
        data, meta = pvlib.iotools.read_epw(path)
        tz = float(meta["TZ"])
        name = meta.get("city", path.stem)
    else:
        data, meta = pvlib.iotools.read_tmy3(path, map_variables=True)
        tz = float(meta["TZ"])
        name = str(meta.get("Name", path.stem)).strip('"')
    cols = ["ghi", "dni", "dhi", "temp_air", "wind_speed"]
    data = data[cols].iloc[: DAYS * 24].reset_index(drop=True)
    if len(data) != DAYS * 24:
        raise ValueError(f"weather: {path} has {len(data)} hours; allowed: at least 8760")
    info = dict(
        name=name,
        latitude=float(meta["latitude"]),
        longitude=float(meta["longitude"]),
        altitude=float(meta.get("altitude", 0.0)),
        tz_hours=tz,
        weather_file=path.name,
    )
    return data, info


def _times(year: int, tz_hours: float, offset_min: float):
    import pandas as pd

    tz = dt.timezone(dt.timedelta(hours=tz_hours))
    start = pd.Timestamp(dt.datetime(year, 1, 1, tzinfo=tz)) + pd.Timedelta(minutes=offset_min)
    return pd.date_range(start, periods=_STEPS, freq="15min")


def pv_profiles(
    weather: Any, info: dict[str, Any], year: int, kinds: tuple[str, ...] = PV_KINDS
) -> np.ndarray:
    """Per-unit AC output [len(kinds), 35040] (kW per kWp, 15-minute averages)."""
    pvlib = _require()
    loc = pvlib.location.Location(info["latitude"], info["longitude"], altitude=info["altitude"])
    mid = _times(year, info["tz_hours"], 7.5)  # midpoint of each 15-minute interval
    sun = loc.get_solarposition(mid)
    cs = loc.get_clearsky(mid, model="ineichen", solar_position=sun)["ghi"].to_numpy()
    hourly_cs = cs.reshape(-1, 4).mean(axis=1)
    ghi_h = weather["ghi"].to_numpy(np.float64)
    kt = np.clip(ghi_h / np.maximum(hourly_cs, 1e-9), 0.0, 1.5)
    ghi = np.where(np.repeat(hourly_cs, 4) > 10.0, np.repeat(kt, 4) * cs, np.repeat(ghi_h, 4))
    zen = sun["apparent_zenith"].to_numpy()
    ghi = np.where(zen < 90.0, ghi, 0.0)
    erbs = pvlib.irradiance.erbs(ghi, zen, mid)
    dni_extra = pvlib.irradiance.get_extra_radiation(mid).to_numpy()
    temp = np.repeat(weather["temp_air"].to_numpy(np.float64), 4)
    wind = np.repeat(weather["wind_speed"].to_numpy(np.float64), 4)
    out = []
    for kind in kinds:
        azimuth, tilt = PV_ORIENTATIONS[kind]
        poa = pvlib.irradiance.get_total_irradiance(
            tilt, azimuth, sun["apparent_zenith"].to_numpy(), sun["azimuth"].to_numpy(),
            np.asarray(erbs["dni"]), ghi, np.asarray(erbs["dhi"]), dni_extra=dni_extra,
            model="haydavies", albedo=0.2,
        )["poa_global"]  # fmt: skip
        poa = np.nan_to_num(np.asarray(poa, np.float64), nan=0.0).clip(0.0, None)
        cell = pvlib.temperature.faiman(poa, temp, wind)
        pdc = pvlib.pvsystem.pvwatts_dc(poa, cell, pdc0=1.0, gamma_pdc=-0.0037) * (1 - 0.14)
        pac = pvlib.inverter.pvwatts(pdc, pdc0=1.0 / 1.1 / 0.96)
        out.append(np.clip(np.nan_to_num(np.asarray(pac), nan=0.0), 0.0, None))
    return np.stack(out)


def _holidays(year: int) -> list[dt.date]:
    return [dt.date(year, 1, 1), dt.date(year, 12, 25), dt.date(year, 12, 26)]


def bdew_profiles(year: int) -> np.ndarray:
    """BDEW electricity profiles h0 (dynamised), g0-g6, l0-l2 [11, 35040], mean 1."""
    _require()
    from demandlib import bdew

    slp = bdew.ElecSlp(year, holidays=_holidays(year)).get_profiles(*_BDEW)
    arr = slp.to_numpy(np.float64).T[:, :_STEPS]
    return arr / arr.mean(axis=1, keepdims=True)


def ev_profile(year: int, cars: int = 20, seed: int = 2025) -> np.ndarray:
    """Uncontrolled home charging of a small fleet, 15-minute average power [35040], mean 1."""
    rng = np.random.default_rng(seed)
    load = np.zeros(_STEPS + 96 * 2)
    start = dt.date(year, 1, 1)
    for day in range(DAYS):
        weekend = (start + dt.timedelta(days=day)).weekday() >= 5
        for _ in range(cars):
            if rng.random() > (0.6 if weekend else 0.8):
                continue
            arrive = rng.normal(14.0, 3.0) if weekend else rng.normal(18.0, 1.5)
            arrive = float(np.clip(arrive, 0.0, 23.99))
            energy = float(np.clip(rng.lognormal(np.log(8.0), 0.5), 1.0, 40.0))
            power = 7.4 if rng.random() < 0.7 else 11.0
            t = day * 24.0 + arrive  # hours since the year's start
            while energy > 1e-9:
                q = int(t * 4)
                room = (q + 1) / 4.0 - t  # hours left in this quarter
                e = min(energy, power * room)
                load[q] += e * 4.0  # kWh in the quarter -> average kW
                energy -= e
                t = (q + 1) / 4.0
    load = load[:_STEPS]
    return load / load.mean()


def heat_pump_profile(weather: Any, year: int) -> np.ndarray:
    """Electricity of an air-source heat pump [35040] (15-minute average power), mean 1."""
    _require()
    import pandas as pd
    from demandlib import bdew

    idx = pd.date_range(dt.datetime(year, 1, 1), periods=DAYS * 24, freq="h")
    temp = pd.Series(weather["temp_air"].to_numpy(np.float64), index=idx)
    heat = bdew.HeatBuilding(
        idx, holidays=_holidays(year), temperature=temp, shlp_type="EFH", building_class=5,
        wind_class=0, annual_heat_demand=10_000.0, name="EFH", ww_incl=True,
    ).get_bdew_profile().to_numpy(np.float64)  # fmt: skip
    d_t = 40.0 - temp.to_numpy()
    cop = np.maximum(6.08 - 0.09 * d_t + 0.0005 * d_t**2, 1.5)
    elec = np.repeat(heat / cop, 4)
    return elec / elec.mean()


def build_bank(
    weather_path: str | os.PathLike | None = None,
    year: int = DEFAULT_YEAR,
    pv_kinds: tuple[str, ...] = PV_KINDS,
    demand_kinds: tuple[str, ...] = DEMAND_KIND_NAMES,
) -> ProfileBank:
    """Generate a bank (all kinds by default; a subset of kinds for a quick slice)."""
    pvlib = _require()
    import demandlib

    for k in pv_kinds:
        if k not in PV_ORIENTATIONS:
            raise ValueError(f"pv_kinds: got {k!r}; allowed: one of {', '.join(PV_KINDS)}")
    for k in demand_kinds:
        if k not in DEMAND_KIND_NAMES:
            raise ValueError(
                f"demand_kinds: got {k!r}; allowed: one of {', '.join(DEMAND_KIND_NAMES)}"
            )
    weather, info = read_weather(weather_path)
    pv = pv_profiles(weather, info, year, pv_kinds)
    rows: dict[str, np.ndarray] = {}
    if any(k in DEMAND_KIND_NAMES[:11] for k in demand_kinds):
        rows.update(zip(DEMAND_KIND_NAMES[:11], bdew_profiles(year), strict=True))
    if "ev" in demand_kinds:
        rows["ev"] = ev_profile(year)
    if "heat_pump" in demand_kinds:
        rows["heat_pump"] = heat_pump_profile(weather, year)
    demand = np.stack([rows[k] for k in demand_kinds])
    meta = dict(
        info,
        year=year,
        pvlib=pvlib.__version__,
        demandlib=demandlib.__version__,
        weather_licence="TMY3 data (NREL, US public domain) as shipped with pvlib"
        if weather_path is None
        else "as given by the user",
    )
    return ProfileBank(
        pv.astype(np.float32), demand.astype(np.float32), tuple(pv_kinds), tuple(demand_kinds),
        BANK_DT_H, dt.date(year, 1, 1).weekday(), meta,
    )  # fmt: skip


def main(argv: list[str] | None = None) -> None:
    """``jaxlem-profiles``: build a profile bank (needs ``pip install -e '.[profiles]'``)."""
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--out", default=str(DATA_DIR / "default.npz"), help="output .npz")
    ap.add_argument("--weather", default=None, help="TMY3 .csv or .epw (default: pvlib's "
                    f"{DEFAULT_WEATHER}, Greensboro NC)")  # fmt: skip
    ap.add_argument("--year", type=int, default=DEFAULT_YEAR, help="calendar year (weekdays)")
    args = ap.parse_args(argv)
    bank = build_bank(args.weather, args.year)
    path = save_bank(args.out, bank)
    cf = bank.capacity_factor()
    cf = ", ".join(f"{k} {v:.3f}" for k, v in zip(bank.pv_kinds, cf, strict=True))
    print(f"wrote {path} ({path.stat().st_size / 1e6:.2f} MB): {bank.meta['name']}, {args.year}")
    print(f"PV capacity factors: {cf}")


if __name__ == "__main__":
    main()
