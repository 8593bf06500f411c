"""Power networks, the QP interface and DC-OPF / SCED."""

from jaxlem.grid.cases import (
    BUNDLED,
    TOPOLOGIES,
    distance_km,
    from_pandapower,
    load_case,
    make_topology,
    read_matpower,
)
from jaxlem.grid.network import Network, build_network, compute_ptdf
from jaxlem.grid.opf import DISPATCH_STATUS, DispatchSolution, solve_dcopf, solve_sced
from jaxlem.grid.qp import QP, QPSolution, solve_qp

__all__ = [
    "BUNDLED",
    "DISPATCH_STATUS",
    "QP",
    "TOPOLOGIES",
    "DispatchSolution",
    "Network",
    "QPSolution",
    "build_network",
    "compute_ptdf",
    "distance_km",
    "from_pandapower",
    "load_case",
    "make_topology",
    "read_matpower",
    "solve_dcopf",
    "solve_qp",
    "solve_sced",
]
