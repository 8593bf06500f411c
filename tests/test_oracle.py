"""The perfect-foresight optimum: against SciPy HiGHS on an LP written here with plain loops,
never below any policy's mean agent return on the same episode, and the gain share."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from scipy.optimize import linprog

import jaxlem
from jaxlem.envs.lem import oracle, policies
from jaxlem.rollout import rollout


def _reference(env, params, data, individual=False) -> float:
    """Community (or individual) optimum with HiGHS: variables per agent and step c, d, e, g;
    per site and step import, export, shed, curtail. Returns the mean agent return."""
    p = jax.tree_util.tree_map(lambda x: np.asarray(x, np.float64), params)
    pv, dem = np.asarray(data["pv"], np.float64), np.asarray(data["demand"], np.float64)
    fit, util = np.asarray(data["fit"], np.float64), np.asarray(data["utility"], np.float64)
    t_len, n = pv.shape
    sites = n if individual else 1
    names = []
    for t in range(t_len):
        for i in range(n):
            names += [("c", t, i), ("d", t, i), ("e", t, i), ("g", t, i)]
        for s in range(sites):
            names += [("imp", t, s), ("exp", t, s), ("shed", t, s), ("curt", t, s)]
    col = {k: j for j, k in enumerate(names)}
    cost = np.zeros(len(names))
    bounds = []
    dt = env.dt_h
    for k in names:
        kind, t, i = k
        if kind in ("c", "d"):
            cost[col[k]] = p.degradation_cost[i] / 1000
            bounds.append((0, p.bat_kw[i] * dt))
        elif kind == "e":
            if t == t_len - 1:
                cost[col[k]] = -p.terminal_soc_value / 1000
            bounds.append((p.soc_min[i] * p.bat_kwh[i], p.soc_max[i] * p.bat_kwh[i]))
        elif kind == "g":
            cost[col[k]] = p.disp_cost[i] / 1000
            bounds.append((0, p.disp_kw[i] * dt))
        elif kind == "imp":
            cost[col[k]] = (util[t] + p.imbalance_penalty) / 1000
            lim = p.import_limit_kw * dt if env.grid_mode == "capacity" and not individual else None
            bounds.append((0, lim))
        elif kind == "exp":
            cost[col[k]] = (-fit[t] + p.imbalance_penalty) / 1000
            lim = (
                p.export_limit_kw_total * dt
                if env.grid_mode == "capacity" and not individual
                else None
            )
            bounds.append((0, lim))
        elif kind == "shed":
            cost[col[k]] = p.shed_penalty / 1000
            bounds.append((0, None))
        else:
            bounds.append((0, None))
    a_eq, b_eq = [], []
    for t in range(t_len):
        for s in range(sites):
            row = np.zeros(len(names))
            members = [s] if individual else range(n)
            for i in members:
                row[col[("c", t, i)]] -= 1
                row[col[("d", t, i)]] += 1
                row[col[("g", t, i)]] += 1
            row[col[("imp", t, s)]] += 1
            row[col[("exp", t, s)]] -= 1
            row[col[("shed", t, s)]] += 1
            row[col[("curt", t, s)]] -= 1
            a_eq.append(row)
            b_eq.append(sum(dem[t, i] - pv[t, i] for i in members))
    for t in range(t_len):
        for i in range(n):
            row = np.zeros(len(names))
            keep = 1 - p.self_discharge[i]
            has = p.bat_kwh[i] > 0
            ec, ed = (p.eta_c[i], p.eta_d[i]) if has else (1.0, 1.0)
            lo, hi = p.soc_min[i] * p.bat_kwh[i], p.soc_max[i] * p.bat_kwh[i]
            row[col[("e", t, i)]] = 1
            row[col[("c", t, i)]] = -keep * ec
            row[col[("d", t, i)]] = keep / ed
            rhs = p.self_discharge[i] * lo
            if t == 0:
                rhs += keep * np.clip(p.soc_init[i] * p.bat_kwh[i], lo, hi)
            else:
                row[col[("e", t - 1, i)]] = -keep
            a_eq.append(row)
            b_eq.append(rhs)
    res = linprog(cost, A_eq=np.array(a_eq), b_eq=np.array(b_eq), bounds=bounds, method="highs")
    assert res.status == 0, res.message
    terminal = p.terminal_soc_value / 1000 * np.sum(p.soc_min * p.bat_kwh)
    return float(p.reward_scale * -(res.fun + terminal) / n)


def _random_params(env, rng):
    p = env.make_params(jax.random.PRNGKey(int(rng.integers(1 << 30))))
    n = env.num_agents
    return p.replace(
        terminal_soc_value=np.float32(rng.uniform(0, 120)),
        self_discharge=rng.uniform(0, 0.02, n).astype(np.float32),
        degradation_cost=rng.uniform(0, 40, n).astype(np.float32),
        eta_c=rng.uniform(0.85, 1.0, n).astype(np.float32),
    )


# the capacity mode's instance (23 s) runs in the slow suite; the default suite keeps "none"
@pytest.mark.parametrize("grid_mode", ["none", pytest.param("capacity", marks=pytest.mark.slow)])
def test_optimum_matches_highs(grid_mode):
    rng = np.random.default_rng(0 if grid_mode == "none" else 1)
    env = jaxlem.make(
        "lem-v0",
        num_agents=4,
        num_steps=8,
        grid_mode=grid_mode,
        population={"producer_frac": 0.25, "prosumer_frac": 0.5, "battery_frac": 1.0},
    )
    solve = jax.jit(lambda p, d, ind: oracle.solve(env, p, d, ind), static_argnums=2)
    for trial in range(3):
        params = _random_params(env, rng)
        if grid_mode == "capacity":
            params = params.replace(
                import_limit_kw=np.float32(rng.uniform(2, 8)),
                export_limit_kw_total=np.float32(rng.uniform(2, 8)),
            )
        data = oracle.exogenous(env, params, jax.random.PRNGKey(trial))  # the env runs in f32
        with jax.enable_x64(True):  # the LP in float64 against HiGHS
            p64, d64 = jax.tree_util.tree_map(
                lambda x: (
                    np.asarray(x, np.float64)
                    if np.issubdtype(np.asarray(x).dtype, np.floating)
                    else np.asarray(x)
                ),
                (params, data),
            )
            got = {ind: solve(p64, d64, ind) for ind in (False, True)}
            for individual, opt in got.items():
                want = _reference(env, p64, d64, individual)
                assert bool(opt.converged), (trial, individual)
                assert float(opt.mean_agent_return) == pytest.approx(want, rel=1e-4, abs=1e-6)
            # sharing never earns less than every agent alone (the individual variant has no
            # community connection limit, so this holds without limits)
            if grid_mode == "none":
                community, alone = (float(got[k].mean_agent_return) for k in (False, True))
                assert community >= alone - 1e-6


def test_optimum_bounds_every_policy_on_the_same_episode():
    env = jaxlem.make("lem-v0", num_agents=6, num_steps=24)
    bank = env.sample_params(jax.random.PRNGKey(0), 16)
    keys = jax.random.split(jax.random.PRNGKey(1), 16)

    def random_policy(key, obs, env_, params):
        return jax.random.uniform(key, env_.action_space().shape, minval=-1.0, maxval=1.0)

    pols = {**policies.BASELINES, "random": random_policy}

    def episode(k, p):
        best = oracle.perfect_foresight(env, p, k)
        rets = {
            name: jnp.mean(jnp.sum(rollout(env, pol, k, p)[0], 0)) for name, pol in pols.items()
        }
        return best, rets

    best, rets = jax.jit(jax.vmap(episode))(keys, bank)
    assert np.all(np.asarray(best.converged))
    for name, r in rets.items():
        slack = np.asarray(best.mean_agent_return) - np.asarray(r)
        assert np.all(slack >= -1e-3 * (1 + np.abs(np.asarray(r)))), (name, slack.min())
    share = oracle.gain_share(rets["rule_based_battery"], rets["dso_only"], best.mean_agent_return)
    assert np.all(np.asarray(share) <= 1.0 + 1e-3)


def test_too_large_a_community_is_refused():
    env = jaxlem.make("lem-v0", num_agents=oracle.MAX_AGENTS + 1)
    with pytest.raises(ValueError, match=r"num_agents: got 201; allowed for the perfect-foresight"):
        oracle.check_size(env)
