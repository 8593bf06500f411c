"""from_pandapower: pandapower's own cases, converted, against the bundled cases and against
pandapower's DC-OPF (rundcopp, PYPOWER's solver: no extra dependency)."""

import warnings

import jax
import jax.numpy as jnp
import numpy as np
import pytest

pp = pytest.importorskip("pandapower")
pn = pytest.importorskip("pandapower.networks")

from jaxlem.grid import from_pandapower, load_case, solve_dcopf  # noqa: E402

CASES = ("case5", "case14", "case30")
# pandapower's own case data predate its tap_dependency_table (its DeprecationWarning)
pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")


def _pp_case(name):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return getattr(pn, name)()


def _f64(net):
    return jax.tree_util.tree_map(
        lambda a: jnp.asarray(a, jnp.float64) if jnp.issubdtype(a.dtype, jnp.floating) else a, net
    )


def _dcopf64(net):
    with jax.enable_x64(True):
        sol = jax.jit(lambda n: solve_dcopf(n, iters=60))(_f64(net))
        return jax.tree_util.tree_map(np.asarray, sol)


def _gens(net):
    cols = (net.gen_bus, net.gen_pmin_mw, net.gen_pmax_mw, net.gen_c2, net.gen_c1, net.gen_c0)
    return np.array(sorted(zip(*(np.asarray(c, np.float64) for c in cols), strict=True)))


def _branches(net):
    frm, to = np.asarray(net.branch_from), np.asarray(net.branch_to)
    cols = (np.minimum(frm, to), np.maximum(frm, to), net.branch_x, net.branch_limit_mw)
    return np.array(sorted(zip(*(np.asarray(c, np.float64) for c in cols), strict=True)))


def _rundcopp(net):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        pp.rundcopp(net)
    return float(net.res_cost), net.res_bus.lam_p.to_numpy()


@pytest.mark.parametrize("name", CASES)
def test_converted_case_equals_bundled_case(name):
    """Same buses, loads, generators (ext_grid included), lines and transformers, ratings and
    costs as the bundled MATPOWER-derived case, up to the order of generators and branches."""
    a, b = from_pandapower(_pp_case(name)), load_case(name)
    assert (a.num_buses, a.num_branches, a.num_gens) == (b.num_buses, b.num_branches, b.num_gens)
    assert a.ref_bus == b.ref_bus and a.base_mva == b.base_mva
    np.testing.assert_allclose(a.bus_load_mw, b.bus_load_mw, rtol=1e-6)
    # pandapower pads Pmax by 1e-10 MW and rounds one case14 cost coefficient (rel. 1e-6)
    np.testing.assert_allclose(_gens(a), _gens(b), rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(_branches(a), _branches(b), rtol=1e-5)


@pytest.mark.parametrize("name", CASES)
def test_converted_case_dcopf_matches_pandapower(name):
    """Cost and LMPs against pandapower's DC-OPF (the bundled cases agree with it too: their
    data equal the converted data, above)."""
    net = _pp_case(name)
    ours = _dcopf64(from_pandapower(net))
    assert ours.converged and ours.shed.sum() < 1e-6
    cost, lam = _rundcopp(net)
    np.testing.assert_allclose(ours.objective, cost, rtol=1e-6)
    np.testing.assert_allclose(ours.lmp, lam, rtol=1e-5, atol=1e-4)
    if net.trafo.empty:  # line flows in MW (transformer taps are ignored by our DC model)
        np.testing.assert_allclose(ours.flow, net.res_line.p_from_mw, rtol=1e-5, atol=1e-3)


def test_out_of_service_elements_are_dropped():
    """A line and a generator out of service: both disappear, and the (now congested) DC-OPF
    still matches pandapower's."""
    net = _pp_case("case30")
    net.line.loc[3, "in_service"] = False
    net.gen.loc[1, "in_service"] = False
    conv = from_pandapower(net)
    assert conv.num_branches == len(net.line) - 1 and conv.num_gens == len(net.gen)  # + ext_grid
    sol = _dcopf64(conv)
    cost, lam = _rundcopp(net)
    assert np.ptp(lam) > 1e-3  # congestion: the LMPs differ between buses
    np.testing.assert_allclose(sol.objective, cost, rtol=1e-6)
    np.testing.assert_allclose(sol.lmp, lam, rtol=1e-5, atol=1e-4)
    on = net.line.in_service.to_numpy()
    np.testing.assert_allclose(sol.flow, net.res_line.p_from_mw.to_numpy()[on], atol=1e-3)


def test_missing_costs_name_the_table():
    net = _pp_case("case5")
    net.poly_cost = net.poly_cost.iloc[:0]
    with pytest.raises(ValueError, match="poly_cost: empty"):
        from_pandapower(net)
