"""How a community's agents are drawn: types, sizes and profile kinds as per-agent arrays.

Agent types are data, not classes: consumers (no PV), prosumers (PV, some with a battery) and
dispatchable producers are all rows of the same arrays, so one compiled step serves any mix.
Each site holds a demand kind (household, office, shop, farm, EV charging, heat pump, ...) with
a size multiplier (a shop is bigger than a home) and, if it has PV, a panel orientation; both
name kinds of :mod:`jaxlem.profiles.kinds`. ``sample`` is pure JAX, so a scenario bank is one
``vmap`` over keys. Counts are exact: ``round(prosumer_frac * N)`` sites have PV in every draw,
so every community of a bank has sellers and buyers, and the
kinds of a community follow the mixes' weights (stratified draws).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, fields

import jax
import jax.numpy as jnp
import numpy as np

from jaxlem import checks
from jaxlem.profiles.kinds import kind_index

CONSUMER, PROSUMER, STORAGE, PRODUCER = 0, 1, 2, 3
NUM_TYPES = 4

# (demand kind, weight, size multiplier): homes, small businesses, farms, flexible loads
DEFAULT_DEMAND_MIX = (
    ("h0", 0.45, 1.0),
    ("g0", 0.10, 3.0),
    ("g1", 0.10, 3.0),
    ("g4", 0.10, 3.0),
    ("l0", 0.05, 4.0),
    ("l1", 0.05, 4.0),
    ("ev", 0.08, 1.5),
    ("heat_pump", 0.07, 1.5),
)
# (PV orientation, weight)
DEFAULT_PV_MIX = (
    ("south", 0.35),
    ("east", 0.2),
    ("west", 0.2),
    ("southeast", 0.125),
    ("southwest", 0.125),
)


def _is_seq(v) -> bool:
    """A list-like value (list, tuple, Hydra's ListConfig), not a string or a mapping."""
    if isinstance(v, str | bytes | Mapping):
        return False
    return isinstance(v, Sequence) or (hasattr(v, "__len__") and hasattr(v, "__getitem__"))


def _as_mix(name: str, value, width: int) -> tuple:
    """A mix from a tuple of rows or a mapping ``kind -> weight`` / ``kind -> [weight, mult]``
    (the form Hydra gives), validated: weights >= 0 with a positive sum, multipliers > 0."""
    if isinstance(value, Mapping):
        rows = []
        for k, v in value.items():
            v = tuple(v) if _is_seq(v) else (v,)
            if width == 3 and len(v) == 1:
                v = (v[0], 1.0)
            rows.append((k, *v))
        value = rows
    try:
        rows = tuple((str(r[0]), *(float(x) for x in r[1:])) for r in value)  # type: ignore
    except (TypeError, ValueError, IndexError):
        raise ValueError(
            f"population.{name}: got {value!r}; allowed: rows (kind, weight"
            f"{', size multiplier' if width == 3 else ''}) or a mapping kind -> "
            f"{'[weight, multiplier]' if width == 3 else 'weight'}"
        ) from None
    if not rows or any(len(r) != width for r in rows):
        raise ValueError(f"population.{name}: got {value!r}; allowed: a non-empty list of rows "
                         f"with {width} entries")  # fmt: skip
    w = np.asarray([r[1] for r in rows])
    checks.check_range(f"population.{name} weights", w, 0.0, np.inf, hi_open=True)
    if w.sum() <= 0:
        raise ValueError(f"population.{name}: weights sum to 0; allowed: a positive sum")
    if width == 3:
        checks.check_range(
            f"population.{name} multipliers", [r[2] for r in rows], 0.0, np.inf,
            lo_open=True, hi_open=True,
        )  # fmt: skip
    return rows


@dataclass(frozen=True)
class Population:
    """Ranges and mixes the agents of a community are drawn from (kW, kWh, currency/MWh).

    ``pv_kw``, ``demand_kw`` and ``bat_kwh`` are the ranges of a size-1 site; a site's demand
    kind multiplies all three by its size multiplier. ``demand_mix`` rows are
    ``(kind, weight, size multiplier)``, ``pv_mix`` rows ``(orientation, weight)``; from Hydra
    both may be mappings, e.g. ``+env.kwargs.population.pv_mix={east:1,west:1}``.
    """

    prosumer_frac: float = 0.5
    producer_frac: float = 0.0
    pv_kw: tuple[float, float] = (6.0, 14.0)
    demand_kw: tuple[float, float] = (0.4, 1.2)
    battery_frac: float = 0.5  # share of prosumers with a battery
    bat_kwh: tuple[float, float] = (5.0, 13.5)
    c_rate: float = 0.5  # battery power limit, kW per kWh
    soc_min: float = 0.1
    soc_max: float = 0.9
    soc_init: float = 0.5
    eta: float = 0.95
    degradation_cost: float = 20.0
    disp_kw: tuple[float, float] = (5.0, 20.0)
    disp_cost: tuple[float, float] = (40.0, 120.0)
    demand_mix: tuple[tuple[str, float, float], ...] = DEFAULT_DEMAND_MIX
    pv_mix: tuple[tuple[str, float], ...] = DEFAULT_PV_MIX

    def __post_init__(self):
        # Hydra hands lists and mappings; store hashable tuples so the env stays hashable.
        for f in fields(self):
            v = getattr(self, f.name)
            if f.name in ("demand_mix", "pv_mix"):
                v = _as_mix(f.name, v, 3 if f.name == "demand_mix" else 2)
            elif _is_seq(v):
                v = tuple(v)
            object.__setattr__(self, f.name, v)
        for f in fields(self):
            v = getattr(self, f.name)
            if f.name in ("demand_mix", "pv_mix"):
                continue
            if isinstance(f.default, tuple):
                if not (isinstance(v, tuple) and len(v) == 2):
                    raise ValueError(f"population.{f.name}: got {v!r}; allowed: a pair [lo, hi]")
                checks.check_range(f"population.{f.name}", v, 0.0)
                checks.check_order(f"population.{f.name}[0]", v[0], f"population.{f.name}[1]", v[1])
            else:
                checks.check_number(f"population.{f.name}", v)
        for name in ("prosumer_frac", "producer_frac", "battery_frac", "soc_init"):
            checks.check_range(f"population.{name}", getattr(self, name), 0.0, 1.0)
        checks.check_range(
            "population.prosumer_frac + producer_frac",
            self.prosumer_frac + self.producer_frac,
            0.0,
            1.0,
        )
        checks.check_range("population.c_rate", self.c_rate, 0.0)
        checks.check_range("population.soc_min", self.soc_min, 0.0, 1.0)
        checks.check_range("population.soc_max", self.soc_max, 0.0, 1.0)
        checks.check_order("population.soc_min", self.soc_min, "population.soc_max", self.soc_max)
        checks.check_range("population.eta", self.eta, 0.0, 1.0, lo_open=True)
        checks.check_range("population.degradation_cost", self.degradation_cost, 0.0)

    @classmethod
    def from_config(cls, value) -> Population:
        """A Population from itself, a mapping of its fields (Hydra), or None (the default)."""
        if value is None:
            return cls()
        if isinstance(value, cls):
            return value
        if isinstance(value, Mapping):
            known = {f.name for f in fields(cls)}
            for k in value:
                if k not in known:
                    raise ValueError(
                        f"population.{k}: unknown field; allowed: {', '.join(sorted(known))}"
                    )
            return cls(**dict(value))
        raise ValueError(
            f"population: got {type(value).__name__}; allowed: Population or a mapping of fields"
        )


def check_kinds(spec: Population, pv_kinds: tuple[str, ...], demand_kinds: tuple[str, ...]):
    """Every kind the mixes name exists in the profile source (ValueError naming it otherwise)."""
    for row in spec.demand_mix:
        kind_index("population.demand_mix", row[0], demand_kinds)
    for row in spec.pv_mix:
        kind_index("population.pv_mix", row[0], pv_kinds)


def _stratified(key: jax.Array, weights: np.ndarray, n: int) -> jax.Array:
    """Mix rows for ``n`` sites in proportion to ``weights`` (counts exact up to rounding, sites
    in random order), so every drawn community holds the mix it was asked for."""
    cum = jnp.asarray(np.cumsum(weights) / np.sum(weights), jnp.float32)
    u = (jax.random.permutation(key, n).astype(jnp.float32) + 0.5) / n
    return jnp.minimum(jnp.searchsorted(cum, u, side="right"), len(weights) - 1)


def sample(
    key: jax.Array,
    num_agents: int,
    spec: Population,
    pv_kinds: tuple[str, ...],
    demand_kinds: tuple[str, ...],
) -> dict[str, jax.Array]:
    """Draw one community of ``num_agents`` agents; returns the per-agent fields of the params.
    ``pv_kinds``/``demand_kinds`` are the kinds of the env's profile source (mix names are
    resolved against them, so a missing kind is a ValueError here, in Python)."""
    n = num_agents
    d_rows = np.asarray(
        [kind_index("population.demand_mix", r[0], demand_kinds) for r in spec.demand_mix]
    )
    p_rows = np.asarray([kind_index("population.pv_mix", r[0], pv_kinds) for r in spec.pv_mix])
    d_w = np.asarray([r[1] for r in spec.demand_mix], np.float32)
    p_w = np.asarray([r[1] for r in spec.pv_mix], np.float32)
    mult = np.asarray([r[2] for r in spec.demand_mix], np.float32)
    n_prod = round(spec.producer_frac * n)
    n_pros = min(round(spec.prosumer_frac * n), n - n_prod)
    n_bat = round(spec.battery_frac * n_pros)

    ks = jax.random.split(key, 9)
    u = lambda k, rng: rng[0] + jax.random.uniform(k, (n,)) * (rng[1] - rng[0])  # noqa: E731
    rank = jax.random.permutation(ks[0], n)  # a random order of the sites: exact role counts
    is_prod = rank < n_prod
    is_pros = (rank >= n_prod) & (rank < n_prod + n_pros)
    has_bat = is_pros & (rank < n_prod + n_bat)
    d_mix = _stratified(ks[1], d_w, n)
    p_mix = _stratified(ks[2], p_w, n)
    size = jnp.asarray(mult)[d_mix]
    bat_kwh = jnp.where(has_bat, u(ks[3], spec.bat_kwh) * size, 0.0)
    agent_type = jnp.where(is_prod, PRODUCER, jnp.where(is_pros, PROSUMER, CONSUMER))
    full = lambda v: jnp.full((n,), v, jnp.float32)  # noqa: E731
    return dict(
        pv_kw=jnp.where(is_pros, u(ks[4], spec.pv_kw) * size, 0.0),
        demand_kw=u(ks[5], spec.demand_kw) * size,
        disp_kw=jnp.where(is_prod, u(ks[6], spec.disp_kw), 0.0),
        disp_cost=u(ks[7], spec.disp_cost),
        bat_kwh=bat_kwh,
        bat_kw=bat_kwh * spec.c_rate,
        soc_min=full(spec.soc_min),
        soc_max=full(spec.soc_max),
        soc_init=full(spec.soc_init),
        eta_c=full(spec.eta),
        eta_d=full(spec.eta),
        self_discharge=full(0.0),
        degradation_cost=full(spec.degradation_cost),
        export_limit_kw=full(jnp.inf),
        node=jnp.zeros((n,), jnp.int32),
        feeder=jnp.zeros((n,), jnp.int32),
        pv_kind=jnp.asarray(p_rows, jnp.int32)[p_mix],
        demand_kind=jnp.asarray(d_rows, jnp.int32)[d_mix],
        agent_type=agent_type.astype(jnp.int32),
    )
