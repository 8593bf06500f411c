"""Networks: bundled cases, PTDF against an independent B-theta solve, validation, MATPOWER,
topologies; DC-OPF and SCED against SciPy HiGHS (reference_opf) on random instances."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxlem.grid import (
    BUNDLED,
    QP,
    TOPOLOGIES,
    build_network,
    distance_km,
    load_case,
    make_topology,
    read_matpower,
    solve_dcopf,
    solve_qp,
    solve_sced,
)
from jaxlem.grid.highs import dcopf_highs
from jaxlem.grid.qp.ipm import UNROLL_MAX, chol_inverse


@pytest.mark.parametrize("name", BUNDLED)
def test_bundled_cases_and_ptdf(name):
    net = load_case(name)
    assert net.ptdf.shape == (net.num_branches, net.num_buses)
    assert net.gen_incidence.shape == (net.num_buses, net.num_gens)
    # PTDF flows equal the B-theta solution for a random balanced injection (NumPy, float64)
    rng = np.random.default_rng(0)
    inj = rng.normal(size=net.num_buses)
    inj[net.ref_bus] -= inj.sum()
    frm, to = np.asarray(net.branch_from), np.asarray(net.branch_to)
    x = np.asarray(net.branch_x, np.float64)
    nb = net.num_buses
    bbus = np.zeros((nb, nb))
    for f, t, xx in zip(frm, to, x, strict=True):
        bbus[f, f] += 1 / xx
        bbus[t, t] += 1 / xx
        bbus[f, t] -= 1 / xx
        bbus[t, f] -= 1 / xx
    keep = np.arange(nb) != net.ref_bus
    theta = np.zeros(nb)
    theta[keep] = np.linalg.solve(bbus[np.ix_(keep, keep)], inj[keep])
    flow_ref = (theta[frm] - theta[to]) / x
    flow = np.asarray(net.ptdf, np.float64) @ inj
    scale = 1 + np.abs(flow_ref).max()
    np.testing.assert_allclose(flow, flow_ref, atol=1e-4 * scale)


def test_case5_data():
    net = load_case("case5")
    np.testing.assert_allclose(net.gen_c1, [14, 15, 30, 40, 10])
    np.testing.assert_allclose(net.gen_pmax_mw, [40, 170, 520, 200, 600])
    assert net.ref_bus == 3
    lim = np.asarray(net.branch_limit_mw)
    assert lim[0] == 400 and lim[5] == 240 and np.isinf(lim[1:5]).all()


def _line(**over):
    kw = dict(
        bus_load_mw=[0, 10, 5],
        branch_from=[0, 1],
        branch_to=[1, 2],
        branch_x=[0.1, 0.1],
        gen_bus=[0],
        gen_pmin_mw=[0],
        gen_pmax_mw=[100],
        gen_c1=[10],
    )
    kw.update(over)
    return build_network(**kw)


@pytest.mark.parametrize(
    ("over", "pattern"),
    [
        (dict(branch_from=[0], branch_to=[1], branch_x=[0.1]), "disconnected graph: bus 2"),
        (dict(branch_x=[0.1, 0.0]), r"branch 1 \(1-2\): reactance x = 0.0"),
        (dict(branch_x=[-0.1, 0.1]), r"branch 0 \(0-1\): reactance x = -0.1"),
        (dict(branch_to=[1, 7]), "branch 1: to bus 7 out of range"),
        (dict(gen_bus=[5]), "generator 0: bus 5 out of range"),
        (dict(gen_pmin_mw=[50], gen_pmax_mw=[10]), "generator 0: Pmin = 50.0 > Pmax = 10.0"),
        (dict(ref_bus=3), "ref_bus: got 3"),
        (dict(branch_to=[1, 1]), "self-loop"),
    ],
)
def test_bad_network_data(over, pattern):
    with pytest.raises(ValueError, match=pattern):
        _line(**over)


def test_no_reference_bus(tmp_path):
    text = MATPOWER_CASE5.replace("4\t3\t400", "4\t2\t400")
    path = tmp_path / "noref.m"
    path.write_text(text)
    with pytest.raises(ValueError, match="ref bus"):
        read_matpower(path)


@pytest.mark.parametrize(
    ("edit", "pattern"),
    [
        (("\t1\t2\t0.00281", "\t1\tx\t0.00281"), r"mpc\.branch: line .* is not numeric"),
        (("\t2\t0\t0\t2\t15\t0;", "\t2\t0\t0\t2\t15;"), r"mpc\.gencost: rows of different"),
        (("mpc.gen = [", "mpc.gen_ = ["), r"mpc\.gen: not found or empty"),
    ],
)
def test_malformed_matpower_files_name_the_matrix(tmp_path, edit, pattern):
    path = tmp_path / "bad.m"
    path.write_text(MATPOWER_CASE5.replace(*edit, 1))
    with pytest.raises(ValueError, match=pattern):
        read_matpower(path)


def test_matpower_matrices_with_too_few_columns_are_refused(tmp_path):
    lines = MATPOWER_CASE5.split("\n")
    start = lines.index("mpc.branch = [")
    for i in range(start + 1, start + 7):
        lines[i] = "\t".join(lines[i].split("\t")[:8]) + ";"
    path = tmp_path / "short.m"
    path.write_text("\n".join(lines))
    with pytest.raises(ValueError, match=r"mpc\.branch: 7 columns; allowed: at least 11"):
        read_matpower(path)


MATPOWER_CASE5 = """function mpc = case5
mpc.version = '2';
mpc.baseMVA = 100;
%% bus data
mpc.bus = [
\t1\t2\t0\t0\t0\t0\t1\t1\t0\t230\t1\t1.1\t0.9;
\t2\t1\t300\t98.61\t0\t0\t1\t1\t0\t230\t1\t1.1\t0.9;
\t3\t2\t300\t98.61\t0\t0\t1\t1\t0\t230\t1\t1.1\t0.9;
\t4\t3\t400\t131.47\t0\t0\t1\t1\t0\t230\t1\t1.1\t0.9;
\t5\t2\t0\t0\t0\t0\t1\t1\t0\t230\t1\t1.1\t0.9;
];
mpc.gen = [
\t1\t40\t0\t30\t-30\t1\t100\t1\t40\t0\t0\t0\t0\t0\t0\t0\t0\t0\t0\t0\t0;
\t1\t170\t0\t127.5\t-127.5\t1\t100\t1\t170\t0\t0\t0\t0\t0\t0\t0\t0\t0\t0\t0\t0;
\t3\t323.49\t0\t390\t-390\t1\t100\t1\t520\t0\t0\t0\t0\t0\t0\t0\t0\t0\t0\t0\t0;
\t4\t0\t0\t150\t-150\t1\t100\t1\t200\t0\t0\t0\t0\t0\t0\t0\t0\t0\t0\t0\t0;
\t5\t466.51\t0\t450\t-450\t1\t100\t1\t600\t0\t0\t0\t0\t0\t0\t0\t0\t0\t0\t0\t0;
];
mpc.branch = [
\t1\t2\t0.00281\t0.0281\t0.00712\t400\t400\t400\t0\t0\t1\t-360\t360;
\t1\t4\t0.00304\t0.0304\t0.00658\t0\t0\t0\t0\t0\t1\t-360\t360;
\t1\t5\t0.00064\t0.0064\t0.03126\t0\t0\t0\t0\t0\t1\t-360\t360;
\t2\t3\t0.00108\t0.0108\t0.01852\t0\t0\t0\t0\t0\t1\t-360\t360;
\t3\t4\t0.00297\t0.0297\t0.00674\t0\t0\t0\t0\t0\t1\t-360\t360;
\t4\t5\t0.00297\t0.0297\t0.00674\t240\t240\t240\t0\t0\t1\t-360\t360;
];
mpc.gencost = [
\t2\t0\t0\t2\t14\t0;
\t2\t0\t0\t2\t15\t0;
\t2\t0\t0\t2\t30\t0;
\t2\t0\t0\t2\t40\t0;
\t2\t0\t0\t2\t10\t0;
];
"""


def test_read_matpower_matches_bundled(tmp_path):
    path = tmp_path / "case5.m"
    path.write_text(MATPOWER_CASE5)
    a, b = read_matpower(path), load_case("case5")
    for field in ("bus_load_mw", "branch_x", "branch_limit_mw", "gen_c1", "gen_pmax_mw", "ptdf"):
        np.testing.assert_allclose(getattr(a, field), getattr(b, field), rtol=1e-6)
    assert a.ref_bus == b.ref_bus


@pytest.mark.parametrize("kind", TOPOLOGIES)
def test_topologies(kind):
    net = make_topology(kind, 7, seed=3, length_km=0.5)
    expected = {"mesh": 21, "ring": 7, "line": 6, "star": 6, "radial": 6}[kind]
    assert net.num_branches == expected and net.num_buses == 7
    d = distance_km(net)
    assert np.all(np.isfinite(d)) and np.allclose(d, d.T) and np.all(np.diag(d) == 0)
    if kind == "line":
        np.testing.assert_allclose(d, 0.5 * np.abs(np.arange(7)[:, None] - np.arange(7)))
    with pytest.raises(ValueError, match="topology: got 'grid'"):
        make_topology("grid", 4)


def test_ieee34_distances_use_lengths():
    net = load_case("ieee34")
    d = distance_km(net)
    assert np.all(np.isfinite(d)) and d.max() > 50  # the feeder is ~57 km long end to end


# --------------------------------------------------------------------------------- DC-OPF
def _linear(name):
    net = load_case(name)
    return net.replace(gen_c2=jnp.zeros_like(net.gen_c2))


def _f64(net):
    return jax.tree_util.tree_map(
        lambda a: jnp.asarray(a, jnp.float64) if jnp.issubdtype(a.dtype, jnp.floating) else a, net
    )


def _compare(sol, ref, *, rel, lmp_abs, mw_abs, unique=True):
    """Cost, LMPs and (where unique) dispatch against HiGHS. When load is shed, every shedding
    bus prices at VOLL and the split of shed among them is not unique: total shed is compared,
    and LMPs (which then reach thousands of $/MWh) relative to their size."""
    obj_scale = 1 + abs(ref["objective"])
    assert abs(float(sol.objective) - ref["objective"]) <= rel * obj_scale
    lmp, lref = np.asarray(sol.lmp, np.float64), ref["lmp"]
    shedding = ref["shed"].sum() > 1e-6
    if shedding:  # float32 duals are accurate relative to the largest price (VOLL) in play
        lmp_abs = max(lmp_abs, 3e-5 * np.abs(lref).max())  # 0.3 $/MWh at VOLL 10,000
    np.testing.assert_allclose(lmp, lref, rtol=max(rel, 5e-5) if shedding else rel, atol=lmp_abs)
    np.testing.assert_allclose(float(np.sum(sol.shed)), ref["shed"].sum(), atol=mw_abs)
    if unique and not shedding:
        np.testing.assert_allclose(sol.p_gen, ref["p_gen"], rtol=rel, atol=mw_abs)
        np.testing.assert_allclose(sol.shed, ref["shed"], atol=mw_abs)


@pytest.fixture(scope="module")
def case5_instances():
    """200 random load profiles on case5, half with tightened lines."""
    rng = np.random.default_rng(1)
    net = load_case("case5")
    base = np.asarray(net.bus_load_mw, np.float64)
    loads = base * rng.uniform(0.3, 1.4, size=(200, 5))
    lims = np.tile(np.asarray(net.branch_limit_mw, np.float64), (200, 1))
    tight = rng.random(200) < 0.5
    lims[tight, 0] = rng.uniform(100, 400, tight.sum())
    lims[tight, 5] = rng.uniform(80, 240, tight.sum())
    lims[tight, 2] = np.where(
        rng.random(tight.sum()) < 0.5, rng.uniform(150, 400, tight.sum()), np.inf
    )
    return net, loads, lims


def test_dcopf_case5_float64_matches_highs(case5_instances):
    net0, loads, lims = case5_instances
    with jax.enable_x64(True):
        net = _f64(net0)
        solve = jax.jit(jax.vmap(lambda ld, lm: solve_dcopf(net, ld, line_limit_mw=lm)))
        sols = jax.tree_util.tree_map(np.asarray, solve(jnp.asarray(loads), jnp.asarray(lims)))
    assert sols.converged.all()
    for i in range(len(loads)):
        ref = dcopf_highs(net0, loads[i], line_limit_mw=lims[i])
        one = jax.tree_util.tree_map(lambda a, i=i: a[i], sols)
        _compare(one, ref, rel=1e-4, lmp_abs=1e-4, mw_abs=1e-3)


def test_dcopf_case5_float32_matches_highs(case5_instances):
    net, loads, lims = case5_instances
    solve = jax.jit(jax.vmap(lambda ld, lm: solve_dcopf(net, ld, line_limit_mw=lm)))
    sols = jax.tree_util.tree_map(
        np.asarray, solve(jnp.asarray(loads, jnp.float32), jnp.asarray(lims, jnp.float32))
    )
    assert sols.converged.all()
    for i in range(len(loads)):
        ref = dcopf_highs(net, loads[i], line_limit_mw=lims[i])
        one = jax.tree_util.tree_map(lambda a, i=i: a[i], sols)
        _compare(one, ref, rel=1e-4, lmp_abs=1e-2, mw_abs=0.1)


def test_shed_and_curtail_exactly_when_needed():
    net = load_case("case5")
    net = net.replace_limits(np.full(net.num_branches, np.inf))  # copper plate: no congestion
    total = float(np.sum(net.gen_pmax_mw))
    ok = solve_dcopf(net)
    assert float(ok.shed.sum()) < 1e-3 and float(ok.curtail.sum()) < 1e-3
    short = solve_dcopf(net, net.bus_load_mw * (total + 300.0) / float(net.bus_load_mw.sum()))
    np.testing.assert_allclose(float(short.shed.sum()), 300.0, rtol=1e-3)
    assert float(short.lmp.max()) > 1000  # at the value of lost load
    must_run = net.replace(gen_pmin_mw=net.gen_pmax_mw * 0.9)
    over = solve_dcopf(must_run, net.bus_load_mw * 0.5)
    assert float(over.curtail.sum()) > 1.0 and float(over.shed.sum()) < 1e-3


@pytest.mark.parametrize("name", ["case14", "case30", "case118"])
def test_dcopf_linear_cases_cost_and_lmp(name):
    """Linear-cost LPs: dispatch may be non-unique (equal costs), so cost and LMPs are checked."""
    net = _linear(name)
    with jax.enable_x64(True):
        net64 = _f64(net)
        sol = jax.jit(lambda n: solve_dcopf(n, iters=60))(net64)
        sol = jax.tree_util.tree_map(np.asarray, sol)
    ref = dcopf_highs(net, np.asarray(net.bus_load_mw))
    assert bool(sol.converged)
    _compare(sol, ref, rel=1e-4, lmp_abs=1e-3, mw_abs=1e-2, unique=False)


# ---------------------------------------------------------------------------------- SCED
def _random_offers(net, seed: int, n: int):
    """n case5 instances: loads 0.4-1.3x base, three sorted offer blocks per unit priced 1-3x
    its cost. Returns (loads [n, B], prices [n, G, 3], mw [n, G, 3], pmin [G])."""
    rng = np.random.default_rng(seed)
    base = np.asarray(net.bus_load_mw, np.float64)
    cost = np.asarray(net.gen_c1, np.float64)
    pmin, pmax = np.asarray(net.gen_pmin_mw), np.asarray(net.gen_pmax_mw)
    ng = len(cost)
    prices = cost[None, :, None] * (1 + 2 * np.sort(rng.random((n, ng, 3)), axis=-1))
    mw = np.broadcast_to(((pmax - pmin) / 3)[None, :, None], (n, ng, 3)).copy()
    loads = base * rng.uniform(0.4, 1.3, size=(n, len(base)))
    return loads, prices, mw, pmin


def test_sced_case5_random_offers_match_highs():
    net = load_case("case5")
    n = 50
    loads, prices, mw, pmin = _random_offers(net, seed=2, n=n)
    with jax.enable_x64(True):
        net64 = _f64(net)
        solve = jax.jit(jax.vmap(lambda ld, p, q: solve_sced(net64, ld, p, q, pmin_mw=pmin)))
        sols = jax.tree_util.tree_map(np.asarray, solve(loads, prices, mw))
    assert sols.converged.all()
    for i in range(n):
        ref = dcopf_highs(net, loads[i], offers=(prices[i], mw[i], pmin))
        one = jax.tree_util.tree_map(lambda a, i=i: a[i], sols)
        _compare(one, ref, rel=1e-4, lmp_abs=1e-3, mw_abs=1e-2)


def test_sced_price_responsive_demand():
    """A demand block valued above the marginal offer is served; one valued below is not."""
    net = load_case("case5")
    price = jnp.asarray(net.gen_c1)[:, None] * jnp.ones((1, 1))
    mw = jnp.asarray(net.gen_pmax_mw)[:, None]
    sol = solve_sced(
        net,
        net.bus_load_mw,
        price,
        mw,
        demand_bus=jnp.array([1, 2]),
        demand_price=jnp.array([1000.0, 1.0]),
        demand_mw=jnp.array([50.0, 50.0]),
    )
    assert float(sol.demand_mw[0]) > 49.9 and float(sol.demand_mw[1]) < 0.1


# ------------------------------------------------------------------------- differentiation
def _central(f, x, h):
    out = np.zeros(x.shape)
    for i in range(x.size):
        e = np.zeros(x.shape)
        e.flat[i] = h
        out.flat[i] = (f(x + e) - f(x - e)) / (2 * h)
    return out


def test_gradients_match_finite_differences_float64():
    """Implicit (KKT) gradients vs central differences where the solution is locally unique:
    case5 with small quadratic costs, so the dispatch moves smoothly with the load."""
    with jax.enable_x64(True):
        net = _f64(load_case("case5")).replace(gen_c2=jnp.array([0.02, 0.03, 0.01, 0.04, 0.015]))
        load0 = net.bus_load_mw * 0.9
        c10 = net.gen_c1
        lim0 = jnp.array([200.0, jnp.inf, jnp.inf, jnp.inf, jnp.inf, 150.0])
        w = jnp.array([1.0, -2.0, 0.5, 1.5, -1.0])

        def outputs(load, c1, lim):
            sol = solve_dcopf(net.replace(gen_c1=c1), load, line_limit_mw=lim, iters=80, tol=1e-12)
            return jnp.stack([sol.objective, w @ sol.p_gen, w @ sol.lmp, jnp.sum(sol.flow)]), sol

        f = jax.jit(lambda ld, c, lm: outputs(ld, c, lm)[0])
        jac = jax.jit(jax.jacrev(f, argnums=(0, 1, 2)))
        j_load, j_c1, j_lim = (np.asarray(a) for a in jac(load0, c10, lim0))
        sol = jax.tree_util.tree_map(np.asarray, jax.jit(outputs)(load0, c10, lim0)[1])

        def central(arg, h, idx=None):
            """Central differences of the 4 outputs w.r.t. argument ``arg`` at ``idx``."""
            x = np.asarray([load0, c10, lim0][arg])
            idx = range(x.size) if idx is None else idx
            out = np.zeros((4, len(idx)))
            for col, i in enumerate(idx):
                e = np.zeros(x.shape)
                e[i] = h
                args = [load0, c10, lim0]
                args[arg] = jnp.asarray(x + e)
                hi = np.asarray(f(*args))
                args[arg] = jnp.asarray(x - e)
                out[:, col] = (hi - np.asarray(f(*args))) / (2 * h)
            return out

        # d objective / d load = LMP (both are the same duals) and = finite differences
        np.testing.assert_allclose(j_load[0], sol.lmp, rtol=1e-7)
        np.testing.assert_allclose(j_load, central(0, 0.1), rtol=1e-4, atol=1e-7)
        # envelope theorem d objective / d c1 = dispatch; and the rest against differences
        np.testing.assert_allclose(j_c1[0], sol.p_gen, rtol=1e-6, atol=1e-5)
        np.testing.assert_allclose(j_c1, central(1, 0.01), rtol=1e-4, atol=1e-6)
        # line limits: the binding 4-5 line has a negative shadow price; unlimited lines none
        fd_lim = central(2, 0.1, idx=[5])
        assert j_lim[0, 5] < 0
        np.testing.assert_allclose(j_lim[:, 5], fd_lim[:, 0], rtol=1e-4, atol=1e-7)
        assert np.all(j_lim[:, 1:5] == 0)


def test_linear_lp_objective_gradient_is_the_lmp():
    with jax.enable_x64(True):
        net = _f64(load_case("case5"))
        load0 = net.bus_load_mw * 0.9
        sol = jax.jit(lambda ld: solve_dcopf(net, ld, iters=60))(load0)
        g = jax.jit(jax.grad(lambda ld: solve_dcopf(net, ld, iters=60).objective))(load0)
        np.testing.assert_allclose(g, sol.lmp, rtol=1e-7)
        ref = dcopf_highs(net, np.asarray(load0))
        np.testing.assert_allclose(g, ref["lmp"], rtol=1e-5)


def test_welfare_gradient_through_sced_in_vmap_and_jit():
    net = load_case("case5")
    price = jnp.asarray(net.gen_c1)[:, None] * jnp.array([[1.0, 1.5, 2.0]])
    mw = jnp.asarray((net.gen_pmax_mw - net.gen_pmin_mw) / 3)[:, None] * jnp.ones((1, 3))

    def welfare(markup, load):
        sol = solve_sced(
            net,
            load,
            price * (1 + markup),
            mw,
            pmin_mw=net.gen_pmin_mw,
            demand_bus=jnp.array([1, 2, 3]),
            demand_price=jnp.array([80.0, 60.0, 50.0]),
            demand_mw=jnp.array([60.0, 60.0, 60.0]),
        )
        true_cost = jnp.sum(price * sol.block_mw)
        return jnp.sum(jnp.array([80.0, 60.0, 50.0]) * sol.demand_mw) - true_cost

    loads = jnp.stack([net.bus_load_mw * s for s in (0.6, 0.8, 1.0)])
    markups = jnp.full((3, 5, 1), 0.2)
    grads = jax.jit(jax.vmap(jax.grad(welfare)))(markups, loads)
    assert grads.shape == (3, 5, 1) and bool(jnp.all(jnp.isfinite(grads)))
    assert float(jnp.abs(grads).sum()) > 0


def test_diagonal_and_dense_q_paths_agree():
    """The normal-equations path (Q given as its diagonal) and the dense-KKT path solve the same
    random bounded QPs with equality and inequality rows to the same solution (float64)."""
    rng = np.random.default_rng(7)
    with jax.enable_x64(True):
        solve_diag = jax.jit(lambda qp: solve_qp(qp, iters=60))
        solve_dense = jax.jit(lambda qp: solve_qp(qp.replace(Q=jnp.diag(qp.Q)), iters=60))
        for _ in range(20):
            n, me, mi = 8, 2, 5
            x_feas = rng.uniform(-1, 1, n)
            a = rng.normal(size=(me, n))
            g = rng.normal(size=(mi, n))
            q = rng.uniform(0, 2, n) * (rng.random(n) < 0.5)  # LP in some coordinates
            lb = np.where(rng.random(n) < 0.7, x_feas - rng.uniform(0.1, 1, n), -np.inf)
            ub = np.where(rng.random(n) < 0.7, x_feas + rng.uniform(0.1, 1, n), np.inf)
            lb[~np.isfinite(lb) & ~np.isfinite(ub)] = -2.0  # bounded below where no box
            qp = QP(
                Q=jnp.asarray(q),
                c=jnp.asarray(rng.normal(size=n)),
                A=jnp.asarray(a),
                b=jnp.asarray(a @ x_feas),
                G=jnp.asarray(g),
                h=jnp.asarray(g @ x_feas + rng.uniform(0, 0.5, mi)),
                lb=jnp.asarray(lb),
                ub=jnp.asarray(ub),
            )
            diag, dense = solve_diag(qp), solve_dense(qp)
            assert bool(diag.converged) and bool(dense.converged)
            np.testing.assert_allclose(diag.objective, dense.objective, rtol=1e-6, atol=1e-8)
            np.testing.assert_allclose(diag.x, dense.x, atol=1e-4)
            assert np.all(np.asarray(g @ np.asarray(diag.x)) <= np.asarray(qp.h) + 1e-6)


def test_only_monitored_branches_become_rows():
    net = load_case("case5")
    assert net.monitored == (0, 5)  # the two rated branches of the PJM case
    free = net.replace_limits(np.full(net.num_branches, np.inf))
    assert free.monitored == ()
    assert jax.jit(lambda lim: net.replace_limits(lim).branch_limit_mw)(
        jnp.ones(net.num_branches)
    ).shape == (net.num_branches,)
    traced = []
    jax.jit(lambda lim: traced.append(net.replace_limits(lim).monitored) or lim)(
        jnp.ones(net.num_branches)
    )
    assert traced == [None]  # traced limits: every branch is monitored
    # tightening an unrated branch through replace_limits makes it bind
    lim = np.asarray(net.branch_limit_mw).copy()
    lim[2] = 50.0
    sol = solve_dcopf(net.replace_limits(lim))
    assert abs(float(sol.flow[2])) <= 50.0 + 0.05
    assert abs(float(solve_dcopf(net).flow[2])) > 50.0


# ------------------------------------------------------------------------ boxosqp backend
def _as(net, dtype):
    return jax.tree_util.tree_map(
        lambda a: jnp.asarray(a, dtype) if jnp.issubdtype(a.dtype, jnp.floating) else a, net
    )


def _dcopf_batch(net, loads, lims, **kw):
    solve = jax.jit(jax.vmap(lambda ld, lm: solve_dcopf(net, ld, line_limit_mw=lm, **kw)))
    dtype = net.ptdf.dtype
    out = solve(jnp.asarray(loads, dtype), jnp.asarray(lims, dtype))
    return jax.tree_util.tree_map(np.asarray, out)


def test_boxosqp_case5_float32_matches_highs(case5_instances):
    """100 random instances (loads, tightened lines, some shedding): float32 BoxOSQP agrees
    with HiGHS to 1e-3 $/MWh and 0.1 MW, and flags every solve converged."""
    pytest.importorskip("jaxopt")
    net, loads, lims = case5_instances
    loads, lims = loads[:100], lims[:100]
    sols = _dcopf_batch(net, loads, lims, backend="boxosqp")
    assert sols.converged.all()
    for i in range(len(loads)):
        ref = dcopf_highs(net, loads[i], line_limit_mw=lims[i])
        one = jax.tree_util.tree_map(lambda a, i=i: a[i], sols)
        _compare(one, ref, rel=1e-4, lmp_abs=1e-3, mw_abs=0.1)


def test_boxosqp_case5_float64_matches_highs(case5_instances):
    pytest.importorskip("jaxopt")
    net0, loads, lims = case5_instances
    loads, lims = loads[100:160], lims[100:160]
    with jax.enable_x64(True):
        sols = _dcopf_batch(_as(net0, jnp.float64), loads, lims, backend="boxosqp")
    assert sols.converged.all() and sols.residual.max() < 1e-6
    for i in range(len(loads)):
        ref = dcopf_highs(net0, loads[i], line_limit_mw=lims[i])
        one = jax.tree_util.tree_map(lambda a, i=i: a[i], sols)
        _compare(one, ref, rel=1e-4, lmp_abs=1e-4, mw_abs=1e-3)


def test_boxosqp_sced_random_offers_float32_match_highs():
    pytest.importorskip("jaxopt")
    net = load_case("case5")
    n = 40
    loads, prices, mw, pmin = _random_offers(net, seed=3, n=n)
    solve = jax.jit(
        jax.vmap(lambda ld, p, q: solve_sced(net, ld, p, q, pmin_mw=pmin, backend="boxosqp"))
    )
    f32 = [jnp.asarray(a, jnp.float32) for a in (loads, prices, mw)]
    sols = jax.tree_util.tree_map(np.asarray, solve(*f32))
    assert sols.converged.all()
    for i in range(n):
        ref = dcopf_highs(net, loads[i], offers=(prices[i], mw[i], pmin))
        one = jax.tree_util.tree_map(lambda a, i=i: a[i], sols)
        _compare(one, ref, rel=1e-4, lmp_abs=1e-3, mw_abs=0.1)


def test_boxosqp_gradients_equal_ipm_gradients_float64():
    """The VJP uses only the solution, so both backends give the same gradients."""
    pytest.importorskip("jaxopt")
    with jax.enable_x64(True):
        net = _f64(load_case("case5")).replace(gen_c2=jnp.array([0.02, 0.03, 0.01, 0.04, 0.015]))
        load0, c10 = net.bus_load_mw * 0.9, net.gen_c1
        lim0 = jnp.array([200.0, jnp.inf, jnp.inf, jnp.inf, jnp.inf, 150.0])
        w = jnp.array([1.0, -2.0, 0.5, 1.5, -1.0])

        def jac(backend, **kw):
            def f(load, c1, lim):
                sol = solve_dcopf(
                    net.replace(gen_c1=c1), load, line_limit_mw=lim, backend=backend, **kw
                )
                return jnp.stack([sol.objective, w @ sol.p_gen, w @ sol.lmp, jnp.sum(sol.flow)])

            return [np.asarray(a) for a in jax.jit(jax.jacrev(f, (0, 1, 2)))(load0, c10, lim0)]

        ref = jac("ipm", iters=80, tol=1e-12)
        box = jac("boxosqp")
    for a, b in zip(box, ref, strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-6, atol=1e-8)
    assert np.abs(ref[0]).max() > 1  # not trivially zero


def test_bad_backend_names_the_field():
    with pytest.raises(ValueError, match="backend: got 'cvxpy'; allowed: one of ipm, boxosqp"):
        solve_dcopf(load_case("case5"), backend="cvxpy")


def test_lmps_stay_uniform_with_a_near_zero_load_and_no_binding_line():
    """Regression: a bus whose load is below the solver's resolution pinned its shed
    variable between bounds 0 and ~0, and the arbitrary split of their duals moved that
    bus's LMP by up to 200 $/MWh (seen in lem-v0's dcopf mode when an agent's position was
    ~0). Without binding lines every LMP is the supply cost."""
    net = load_case("case33bw")
    supply = net.replace(gen_c1=jnp.full_like(net.gen_c1, 150.0))
    solve = jax.jit(
        lambda load: (
            solve_dcopf(
                supply,
                load,
                line_limit_mw=jnp.full(net.num_branches, jnp.inf),
                voll=1000.0,
                spill_cost=10.0,
                iters=40,
            ).lmp
        )
    )
    for tiny in (0.0, 1e-9, 1e-7, 1e-5):
        load = jnp.asarray(np.r_[0.0, np.full(32, 0.002)], jnp.float32).at[8].set(tiny)
        np.testing.assert_allclose(np.asarray(solve(load)), 150.0, atol=0.05, err_msg=str(tiny))


@pytest.mark.parametrize("k", [1, 2, 5, 10, 11])
def test_cholesky_inverse_matches_numpy(k):
    """The IPM's factor inverse (entry by entry up to UNROLL_MAX rows, LAPACK above) against
    NumPy's float64 Cholesky on random SPD matrices, batched as the IPM runs it."""
    rng = np.random.default_rng(k)
    a = rng.normal(size=(64, k, k))
    spd = a @ a.transpose(0, 2, 1) + 0.1 * np.eye(k)
    got = np.asarray(jax.jit(jax.vmap(chol_inverse))(jnp.asarray(spd, jnp.float32)), np.float64)
    ref = np.linalg.inv(np.linalg.cholesky(spd))
    scale = np.abs(ref).max(axis=(1, 2), keepdims=True)
    assert np.all(np.abs(got - ref) <= 2e-3 * scale), (k, k <= UNROLL_MAX)
    assert np.all(np.triu(got, 1) == 0)
    inv = got.transpose(0, 2, 1) @ got  # m^-1 = L^-T L^-1
    np.testing.assert_allclose(inv @ spd, np.broadcast_to(np.eye(k), spd.shape), atol=5e-2)
