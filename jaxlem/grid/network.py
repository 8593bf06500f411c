"""Power networks for DC studies: the ``Network`` pytree, its matrices, and how it is checked.

Buses, branches (from, to, series reactance x in pu, MW limit; unlimited = inf) and generators
(bus, Pmin, Pmax, polynomial cost c2 P^2 + c1 P + c0 in $/h with P in MW) plus a per-bus load.
The incidence, susceptance and PTDF matrices are computed once, in NumPy, outside jit, and stored
on the pytree, so a scenario batch of networks is one vmap and nothing is rebuilt per step.
The PTDF is dense ([branches, buses]): right for transmission cases up to a few thousand buses.

DC model: flows follow reactance only. On radial distribution feeders (ieee34, case33bw) r/x is
often > 1, so the DC model is a coarse approximation there; a LinDistFlow model can be added
behind the same pytree later.
"""

from __future__ import annotations

from collections import deque
from typing import TYPE_CHECKING, Any, Self

import jax
import jax.numpy as jnp
import numpy as np
import numpy.typing as npt
from flax import struct
from jax.typing import DTypeLike


@struct.dataclass
class Network:
    """A DC network; arrays are float32 unless ``jax_enable_x64`` is on when built."""

    bus_load_mw: jax.Array  # [B] active load per bus
    branch_from: jax.Array  # [L] int
    branch_to: jax.Array  # [L] int
    branch_x: jax.Array  # [L] series reactance, pu on base_mva
    branch_limit_mw: jax.Array  # [L] thermal limit (inf = unlimited)
    gen_bus: jax.Array  # [G] int
    gen_pmin_mw: jax.Array  # [G]
    gen_pmax_mw: jax.Array  # [G]
    gen_c2: jax.Array  # [G] $/MW^2 h
    gen_c1: jax.Array  # [G] $/MWh
    gen_c0: jax.Array  # [G] $/h
    incidence: jax.Array  # [L, B] +1 at from, -1 at to
    gen_incidence: jax.Array  # [B, G] 1 where generator g sits on bus b
    ptdf: jax.Array  # [L, B] flow on l (MW) per MW injected at b, withdrawn at the ref bus
    branch_length_km: jax.Array  # [L] (nan when unknown)
    ref_bus: int = struct.field(pytree_node=False, default=0)
    base_mva: float = struct.field(pytree_node=False, default=100.0)
    name: str = struct.field(pytree_node=False, default="network")
    # branches whose limits the dispatch enforces (finite limits when built; None = all): only
    # these become constraint rows, so the solver cost does not grow with unlimited branches
    monitored: tuple[int, ...] | None = struct.field(pytree_node=False, default=None)

    if TYPE_CHECKING:  # added by ``struct.dataclass``; declared for type checkers

        def replace(self, **updates: Any) -> Self: ...

    @property
    def num_buses(self) -> int:
        return self.bus_load_mw.shape[-1]

    @property
    def num_branches(self) -> int:
        return self.branch_x.shape[-1]

    @property
    def num_gens(self) -> int:
        return self.gen_bus.shape[-1]

    def replace_limits(self, limit_mw: npt.ArrayLike) -> Network:
        """The same network with other branch limits (MW; inf = unlimited). With traced limits
        every branch becomes monitored."""
        lim = jnp.asarray(limit_mw, self.branch_x.dtype)
        try:
            monitored = tuple(int(i) for i in np.flatnonzero(np.isfinite(np.asarray(lim))))
        except jax.errors.TracerArrayConversionError:
            monitored = None
        return self.replace(branch_limit_mw=lim, monitored=monitored)


def _connected(num_buses: int, frm: np.ndarray, to: np.ndarray) -> np.ndarray:
    """Boolean [B]: buses reachable from bus 0 (breadth-first search)."""
    adj: list[list[int]] = [[] for _ in range(num_buses)]
    for a, b in zip(frm.tolist(), to.tolist(), strict=True):
        adj[a].append(b)
        adj[b].append(a)
    seen = np.zeros(num_buses, bool)
    seen[0] = True
    queue = deque([0])
    while queue:
        u = queue.popleft()
        for v in adj[u]:
            if not seen[v]:
                seen[v] = True
                queue.append(v)
    return seen


def compute_ptdf(
    num_buses: int, frm: npt.ArrayLike, to: npt.ArrayLike, x: npt.ArrayLike, ref_bus: int
) -> np.ndarray:
    """DC power transfer distribution factors [L, B] (float64, NumPy), ref bus column zero."""
    frm, to, x = np.asarray(frm), np.asarray(to), np.asarray(x, np.float64)
    nl = len(x)
    a = np.zeros((nl, num_buses))
    a[np.arange(nl), frm] = 1.0
    a[np.arange(nl), to] = -1.0
    bf = a / x[:, None]  # branch flow per angle (pu)
    bbus = a.T @ bf
    keep = np.arange(num_buses) != ref_bus
    xred = np.linalg.inv(bbus[np.ix_(keep, keep)])
    ptdf = np.zeros((nl, num_buses))
    ptdf[:, keep] = bf[:, keep] @ xred
    return ptdf


def build_network(
    *,
    bus_load_mw: npt.ArrayLike,
    branch_from: npt.ArrayLike,
    branch_to: npt.ArrayLike,
    branch_x: npt.ArrayLike,
    gen_bus: npt.ArrayLike,
    gen_pmin_mw: npt.ArrayLike,
    gen_pmax_mw: npt.ArrayLike,
    gen_c1: npt.ArrayLike,
    gen_c2: npt.ArrayLike | None = None,
    gen_c0: npt.ArrayLike | None = None,
    branch_limit_mw: npt.ArrayLike | None = None,
    branch_length_km: npt.ArrayLike | None = None,
    ref_bus: int = 0,
    base_mva: float = 100.0,
    name: str = "network",
    dtype: DTypeLike | None = None,
) -> Network:
    """Validate the data (ValueError naming the element) and compute the matrices."""
    load = np.asarray(bus_load_mw, np.float64).reshape(-1)
    nb = load.size
    frm = np.asarray(branch_from, np.int64).reshape(-1)
    to = np.asarray(branch_to, np.int64).reshape(-1)
    x = np.asarray(branch_x, np.float64).reshape(-1)
    nl = x.size
    gbus = np.asarray(gen_bus, np.int64).reshape(-1)
    ng = gbus.size
    pmin = np.asarray(gen_pmin_mw, np.float64).reshape(-1)
    pmax = np.asarray(gen_pmax_mw, np.float64).reshape(-1)
    c1 = np.asarray(gen_c1, np.float64).reshape(-1)
    c2 = np.zeros(ng) if gen_c2 is None else np.asarray(gen_c2, np.float64).reshape(-1)
    c0 = np.zeros(ng) if gen_c0 is None else np.asarray(gen_c0, np.float64).reshape(-1)
    lim = np.full(nl, np.inf) if branch_limit_mw is None else np.asarray(branch_limit_mw, float)
    lim = np.where(np.isnan(lim), np.inf, lim).reshape(-1)
    length = (
        np.full(nl, np.nan)
        if branch_length_km is None
        else np.asarray(branch_length_km, np.float64).reshape(-1)
    )

    if nb < 1:
        raise ValueError(f"{name}: bus: got {nb} buses; allowed: at least 1")
    if not np.all(np.isfinite(load)):
        raise ValueError(
            f"{name}: bus {int(np.flatnonzero(~np.isfinite(load))[0])}: load "
            f"{load[~np.isfinite(load)][0]} is not finite"
        )
    for what, arr, n in (
        ("branch_from", frm, nl),
        ("branch_to", to, nl),
        ("gen_pmin_mw", pmin, ng),
        ("gen_pmax_mw", pmax, ng),
        ("gen_c1", c1, ng),
        ("gen_c2", c2, ng),
        ("gen_c0", c0, ng),
        ("branch_limit_mw", lim, nl),
        ("branch_length_km", length, nl),
    ):
        if arr.size != n:
            raise ValueError(f"{name}: {what}: {arr.size} values; allowed: {n}")
    if not 0 <= ref_bus < nb:
        raise ValueError(f"{name}: ref_bus: got {ref_bus}; allowed range [0, {nb - 1}]")
    for i in range(nl):
        for end, b in (("from", frm[i]), ("to", to[i])):
            if not 0 <= b < nb:
                raise ValueError(f"{name}: branch {i}: {end} bus {b} out of range [0, {nb - 1}]")
        if frm[i] == to[i]:
            raise ValueError(f"{name}: branch {i}: from bus = to bus = {frm[i]} (self-loop)")
        if not (np.isfinite(x[i]) and x[i] > 0):
            raise ValueError(
                f"{name}: branch {i} ({frm[i]}-{to[i]}): reactance x = {x[i]}; "
                "allowed range (0, inf)"
            )
        if lim[i] <= 0:
            raise ValueError(
                f"{name}: branch {i} ({frm[i]}-{to[i]}): limit {lim[i]} MW; allowed range (0, inf]"
            )
    for g in range(ng):
        if not 0 <= gbus[g] < nb:
            raise ValueError(f"{name}: generator {g}: bus {gbus[g]} out of range [0, {nb - 1}]")
        if not (np.isfinite(pmin[g]) and np.isfinite(pmax[g])):
            raise ValueError(
                f"{name}: generator {g}: Pmin/Pmax must be finite (got {pmin[g]}, {pmax[g]})"
            )
        if pmin[g] > pmax[g]:
            raise ValueError(
                f"{name}: generator {g}: Pmin = {pmin[g]} > Pmax = {pmax[g]} MW; "
                "allowed: Pmin <= Pmax"
            )
        if c2[g] < 0 or not np.isfinite(c2[g]) or not np.isfinite(c1[g]):
            raise ValueError(
                f"{name}: generator {g}: cost c2 = {c2[g]}, c1 = {c1[g]}; "
                "allowed: finite, c2 >= 0 (convex)"
            )
    seen = _connected(nb, frm, to)
    if not seen.all():
        lost = np.flatnonzero(~seen)
        raise ValueError(
            f"{name}: disconnected graph: bus {int(lost[0])} (and {len(lost) - 1} "
            "more) not reachable from bus 0; allowed: one connected network"
        )

    inc = np.zeros((nl, nb))
    inc[np.arange(nl), frm] = 1.0
    inc[np.arange(nl), to] = -1.0
    ginc = np.zeros((nb, ng))
    ginc[gbus, np.arange(ng)] = 1.0
    ptdf = compute_ptdf(nb, frm, to, x, ref_bus)
    f = jnp.asarray if dtype is None else (lambda a: jnp.asarray(a, dtype))
    return Network(
        bus_load_mw=f(load),
        branch_from=jnp.asarray(frm, jnp.int32),
        branch_to=jnp.asarray(to, jnp.int32),
        branch_x=f(x),
        branch_limit_mw=f(lim),
        gen_bus=jnp.asarray(gbus, jnp.int32),
        gen_pmin_mw=f(pmin),
        gen_pmax_mw=f(pmax),
        gen_c2=f(c2),
        gen_c1=f(c1),
        gen_c0=f(c0),
        incidence=f(inc),
        gen_incidence=f(ginc),
        ptdf=f(ptdf),
        branch_length_km=f(length),
        ref_bus=int(ref_bus),
        base_mva=float(base_mva),
        name=name,
        monitored=tuple(int(i) for i in np.flatnonzero(np.isfinite(lim))),
    )
