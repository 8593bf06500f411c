"""PV, demand and DSO price profiles: the shipped profile bank (pvlib, demandlib), synthetic
shapes, CSV loading and the random draws on top of them.

Per-unit convention: a profile value is the average power over one step divided by the agent's
size (``pv_kw`` for PV, the mean demand in kW for demand); energy in a step is
``value * size * dt_h`` kWh. Tables are built once in Python (NumPy, outside jit); the draws
and the tariff sampler are pure, jittable JAX.
"""

from jaxlem.profiles.bank import ProfileBank, load_bank, save_bank
from jaxlem.profiles.csvfile import load_profile_csv
from jaxlem.profiles.draws import draw_day_factors, sample_step
from jaxlem.profiles.kinds import DEMAND_KIND_NAMES, DEMAND_KINDS, PV_KINDS, PV_ORIENTATIONS
from jaxlem.profiles.synthetic import demand_shape, pv_shape, synthetic_tables
from jaxlem.profiles.tariff import tou_tariff

__all__ = [
    "DEMAND_KINDS",
    "DEMAND_KIND_NAMES",
    "PV_KINDS",
    "PV_ORIENTATIONS",
    "ProfileBank",
    "demand_shape",
    "draw_day_factors",
    "load_bank",
    "load_profile_csv",
    "pv_shape",
    "sample_step",
    "save_bank",
    "synthetic_tables",
    "tou_tariff",
]
