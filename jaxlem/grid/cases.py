"""Bundled cases, MATPOWER ``.m`` files, pandapower networks and generated topologies.

Bundled (``load_case``): case5 (PJM 5-bus), case14, case30, case118 (MATPOWER), case33bw
(Baran-Wu feeder) and ieee34 (positive-sequence IEEE 34-node feeder); see data/ for sources and
licences. Generated (``make_topology``): mesh (complete graph), ring, line, star and random
radial trees of any size, with one supply point at bus 0.
"""

from __future__ import annotations

import copy
import json
import re
from importlib import resources
from pathlib import Path
from typing import Any, cast

import numpy as np
from jax.typing import DTypeLike

from jaxlem.grid.network import Network, build_network

BUNDLED = ("case5", "case14", "case30", "case118", "case33bw", "ieee34")
TOPOLOGIES = ("mesh", "ring", "line", "star", "radial")


def _from_schema(d: dict[str, Any], dtype: DTypeLike | None = None) -> Network:
    buses, gens, branches = d["bus"], d["gen"], d["branch"]
    refs = [b["id"] for b in buses if b["type"] == "ref"]
    if len(refs) != 1:
        raise ValueError(f"{d.get('name', 'case')}: ref bus: found {len(refs)}; allowed: exactly 1")
    return build_network(
        bus_load_mw=[b["pd_mw"] for b in buses],
        branch_from=[br["from"] for br in branches],
        branch_to=[br["to"] for br in branches],
        branch_x=[br["x_pu"] for br in branches],
        branch_limit_mw=[np.inf if br["rate_a_mw"] is None else br["rate_a_mw"] for br in branches],
        branch_length_km=[br.get("length_km", np.nan) for br in branches],
        gen_bus=[g["bus"] for g in gens],
        gen_pmin_mw=[g["pmin_mw"] for g in gens],
        gen_pmax_mw=[g["pmax_mw"] for g in gens],
        gen_c2=[g["cost"]["c2"] for g in gens],
        gen_c1=[g["cost"]["c1"] for g in gens],
        gen_c0=[g["cost"]["c0"] for g in gens],
        ref_bus=refs[0],
        base_mva=d["base_mva"],
        name=d["name"],
        dtype=dtype,
    )


def load_case(name: str, dtype: DTypeLike | None = None) -> Network:
    """One of the bundled cases by name (``BUNDLED``)."""
    if name not in BUNDLED:
        raise ValueError(f"case: got {name!r}; allowed: one of {', '.join(BUNDLED)}")
    text = resources.files("jaxlem.grid").joinpath("data", f"{name}.json").read_text()
    return _from_schema(json.loads(text), dtype)


def _matrix(text: str, field: str) -> np.ndarray | None:
    m = re.search(rf"mpc\.{field}\s*=\s*\[(.*?)\]\s*;", text, re.S)
    if m is None:
        return None
    rows = []
    for i, line in enumerate(m.group(1).splitlines()):
        line = line.split("%", 1)[0].strip().rstrip(";").strip()
        if line:
            try:
                rows.append([float(v) for v in line.replace(",", " ").split()])
            except ValueError:
                raise ValueError(
                    f"mpc.{field}: line {i + 1} of the matrix is not numeric: {line!r}"
                ) from None
    if len({len(r) for r in rows}) > 1:
        raise ValueError(f"mpc.{field}: rows of different lengths; allowed: a full matrix")
    return np.array(rows, np.float64)


# columns each matrix must have (MATPOWER version 2: the columns read here)
_MIN_COLUMNS = {"bus": 3, "gen": 10, "branch": 11, "gencost": 4}


def _poly_costs(gencost: np.ndarray, num_gens: int, name: str) -> np.ndarray:
    """[G, 3] ascending polynomial coefficients (c0, c1, c2) from MATPOWER gencost rows (the
    first ``num_gens`` rows: active power costs)."""
    cost = gencost[:num_gens]
    if np.any(cost[:, 0] != 2):
        raise ValueError(f"{name}: gencost: only polynomial costs (MODEL 2) are supported")
    coef = np.zeros((num_gens, 3))
    for i, row in enumerate(cost):
        n = int(row[3])
        coef[i, : min(n, 3)] = row[4 : 4 + n][::-1][:3]  # ascending powers
    return coef


def read_matpower(path: str | Path, dtype: DTypeLike | None = None) -> Network:
    """A MATPOWER case file (version 2): bus, gen, branch and polynomial gencost matrices.

    Out-of-service generators and branches are dropped; RATE_A = 0 means unlimited; bus numbers
    are mapped to 0-based ids in file order.
    """
    text = Path(path).read_text()
    name = Path(path).stem
    base = re.search(r"mpc\.baseMVA\s*=\s*([0-9.eE+-]+)", text)
    try:
        bus, gen, branch = (_matrix(text, f) for f in ("bus", "gen", "branch"))
        cost = _matrix(text, "gencost")
    except ValueError as err:
        raise ValueError(f"{name}: {err} (in {path})") from None
    for field, mat in (("bus", bus), ("gen", gen), ("branch", branch), ("gencost", cost)):
        if mat is None or mat.size == 0:
            raise ValueError(f"{name}: mpc.{field}: not found or empty in {path}")
        if mat.shape[1] < _MIN_COLUMNS[field]:
            raise ValueError(
                f"{name}: mpc.{field}: {mat.shape[1]} columns; allowed: at least "
                f"{_MIN_COLUMNS[field]} (MATPOWER case format version 2) in {path}"
            )
    bus, gen, branch, cost = (cast(np.ndarray, m) for m in (bus, gen, branch, cost))  # found
    ids = {int(b): i for i, b in enumerate(bus[:, 0])}
    refs = np.flatnonzero(bus[:, 1] == 3)
    if len(refs) != 1:
        raise ValueError(f"{name}: ref bus (BUS_TYPE 3): found {len(refs)}; allowed: exactly 1")

    def bus_id(v: float, what: str) -> int:
        if int(v) not in ids:
            raise ValueError(f"{name}: {what}: bus {int(v)} not in mpc.bus")
        return ids[int(v)]

    on_g = gen[:, 7] > 0
    on_b = branch[:, 10] > 0
    coef = _poly_costs(cost, len(gen), name)
    g, br = gen[on_g], branch[on_b]
    rate = br[:, 5]
    return build_network(
        bus_load_mw=bus[:, 2],
        branch_from=[bus_id(v, f"branch {i} from") for i, v in enumerate(br[:, 0])],
        branch_to=[bus_id(v, f"branch {i} to") for i, v in enumerate(br[:, 1])],
        branch_x=br[:, 3],
        branch_limit_mw=np.where(rate > 0, rate, np.inf),
        gen_bus=[bus_id(v, f"generator {i}") for i, v in enumerate(g[:, 0])],
        gen_pmin_mw=g[:, 9],
        gen_pmax_mw=g[:, 8],
        gen_c0=coef[on_g, 0],
        gen_c1=coef[on_g, 1],
        gen_c2=coef[on_g, 2],
        ref_bus=int(refs[0]),
        base_mva=float(base.group(1)) if base else 100.0,
        name=name,
        dtype=dtype,
    )


def from_pandapower(
    net: Any, dtype: DTypeLike | None = None, *, unlimited_mva: float = 9_000.0
) -> Network:
    """A pandapower network (optional extra ``pandapower``), through pandapower's own
    MATPOWER-style conversion (``to_ppc``, pi transformer model): in-service elements only,
    buses renumbered in order, ext_grids and gens (and controllable sgens) as generators with
    their ``poly_cost``, lines and transformers as branches (series reactance in pu on
    ``sn_mva``; tap ratios are ignored, as in ``read_matpower``), loads and static generation as
    net bus load. Ratings come from ``max_loading_percent``; 0 or at least ``unlimited_mva``
    (pandapower writes MATPOWER's "no limit" as 99999 kA, or 9900 MVA in case14) means unlimited.
    The first ref bus (ext_grid or slack gen) is the reference."""
    try:
        from pandapower.converter.pypower import to_ppc
    except ImportError as e:  # pragma: no cover - optional
        raise ImportError("from_pandapower needs pandapower: pip install jaxlem[pandapower]") from e
    name = str(getattr(net, "name", "") or "pandapower")
    if net.poly_cost.empty:
        raise ValueError(
            f"{name}: poly_cost: empty; allowed: polynomial costs for the generators"
            " (pwl_cost is not supported)"
        )
    ppc = to_ppc(copy.deepcopy(net), init="flat", trafo_model="pi", mode="opf")
    bus, gen, branch = (np.real(ppc[k]) for k in ("bus", "gen", "branch"))
    gen_on, branch_on = gen[:, 7] > 0, branch[:, 10] > 0
    coef = _poly_costs(np.real(ppc["gencost"]), len(gen), name)[gen_on]
    gen, branch = gen[gen_on], branch[branch_on]
    rate = branch[:, 5]
    refs = np.flatnonzero(bus[:, 1] == 3)
    if len(refs) == 0:
        raise ValueError(f"{name}: ref bus: found none; allowed: an ext_grid or a slack gen")
    return build_network(
        bus_load_mw=bus[:, 2],
        branch_from=branch[:, 0].astype(int),
        branch_to=branch[:, 1].astype(int),
        branch_x=branch[:, 3],
        branch_limit_mw=np.where((rate > 0) & (rate < unlimited_mva), rate, np.inf),
        gen_bus=gen[:, 0].astype(int),
        gen_pmin_mw=gen[:, 9],
        gen_pmax_mw=gen[:, 8],
        gen_c0=coef[:, 0],
        gen_c1=coef[:, 1],
        gen_c2=coef[:, 2],
        ref_bus=int(refs[0]),
        base_mva=float(ppc["baseMVA"]),
        name=name,
        dtype=dtype,
    )


def make_topology(
    kind: str,
    num_buses: int,
    *,
    seed: int = 0,
    x_pu: float = 0.01,
    length_km: float = 1.0,
    limit_mw: float = np.inf,
    supply_mw: float = 1e3,
    supply_cost: float = 50.0,
    dtype: DTypeLike | None = None,
) -> Network:
    """A generated network: ``mesh`` (complete graph), ``ring``, ``line``, ``star`` (hub at bus
    0) or ``radial`` (random tree, each new bus attached to a uniformly chosen earlier one).
    Every branch has reactance ``x_pu`` and length ``length_km``; one supply point at bus 0."""
    if kind not in TOPOLOGIES:
        raise ValueError(f"topology: got {kind!r}; allowed: one of {', '.join(TOPOLOGIES)}")
    if not isinstance(num_buses, int) or num_buses < 2:
        raise ValueError(f"num_buses: got {num_buses!r}; allowed: an integer >= 2")
    n = num_buses
    if kind == "line":
        edges = [(i, i + 1) for i in range(n - 1)]
    elif kind == "ring":
        edges = [(i, (i + 1) % n) for i in range(n)] if n > 2 else [(0, 1)]
    elif kind == "star":
        edges = [(0, i) for i in range(1, n)]
    elif kind == "mesh":
        edges = [(i, j) for i in range(n) for j in range(i + 1, n)]
    else:
        rng = np.random.default_rng(seed)
        edges = [(int(rng.integers(0, i)), i) for i in range(1, n)]
    frm, to = np.array(edges).T
    nl = len(edges)
    return build_network(
        bus_load_mw=np.zeros(n),
        branch_from=frm,
        branch_to=to,
        branch_x=np.full(nl, x_pu),
        branch_limit_mw=np.full(nl, limit_mw),
        branch_length_km=np.full(nl, length_km),
        gen_bus=[0],
        gen_pmin_mw=[-supply_mw],
        gen_pmax_mw=[supply_mw],
        gen_c1=[supply_cost],
        ref_bus=0,
        name=f"{kind}{n}",
        dtype=dtype,
    )


def distance_km(net: Network, default_length_km: float = 1.0) -> np.ndarray:
    """Shortest-path distances [B, B] along branches (NumPy, outside jit); branches of unknown
    length count ``default_length_km``. Floyd-Warshall: fine up to a few thousand buses."""
    nb = net.num_buses
    length = np.asarray(net.branch_length_km, np.float64)
    length = np.where(np.isfinite(length), length, default_length_km)
    d = np.full((nb, nb), np.inf)
    np.fill_diagonal(d, 0.0)
    frm, to = np.asarray(net.branch_from), np.asarray(net.branch_to)
    np.minimum.at(d, (frm, to), length)
    np.minimum.at(d, (to, frm), length)
    for k in range(nb):
        d = np.minimum(d, d[:, k : k + 1] + d[k : k + 1, :])
    return d
