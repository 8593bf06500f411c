"""One small QP interface for the grid solvers, with swappable backends.

    minimise  1/2 x'Qx + c'x   subject to   A x = b,   G x <= h,   lb <= x <= ub

``solve_qp(qp, backend=...)`` with ``backend`` in ``BACKENDS``: ``"ipm"`` (our own primal-dual
interior point method, the default) or ``"boxosqp"`` (OSQP's ADMM through jaxopt). Both are
jittable and vmappable, float32 or float64; gradients come from implicit differentiation of the
KKT conditions at the solution, whatever the backend. Modules: ``kkt`` (types, shared KKT
helpers), ``ipm`` and ``boxosqp`` (backends), ``solve`` (dispatch and VJP).
"""

from jaxlem.grid.qp.kkt import QP, QPSolution
from jaxlem.grid.qp.solve import BACKENDS, DEFAULT_ITERS, solve_qp

__all__ = ["BACKENDS", "DEFAULT_ITERS", "QP", "QPSolution", "solve_qp"]
