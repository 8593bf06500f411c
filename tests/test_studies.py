"""The study runner: configs with a quick block and overrides, cells saved as they finish, a
stopped study resumed, cells of another config run again."""

from __future__ import annotations

import json
import sys
import types

import pytest
from omegaconf import OmegaConf

from jaxlem.studies import runner


def _fake_study(monkeypatch, fail_on: str | None):
    calls: list[str] = []
    reports: list[dict] = []
    mod = types.ModuleType("jaxlem_fake_study")
    mod.cells = lambda cfg: [f"c{i}" for i in range(cfg.n)]

    def run_cell(cfg, cell, log):
        if cell == fail_on:
            raise RuntimeError("stopped")
        calls.append(cell)
        return {"value": cfg.scale * int(cell[1:])}

    mod.run_cell = run_cell
    mod.report = lambda cfg, results, out, meta: reports.append(dict(results))
    monkeypatch.setitem(sys.modules, "jaxlem_fake_study", mod)
    monkeypatch.setitem(runner.STUDIES, "fake", "jaxlem_fake_study")
    return calls, reports


def _config(scale: int):
    def load(name, quick=False, overrides=()):
        cfg = OmegaConf.create({"n": 3, "scale": scale})
        cfg.quick = quick
        return cfg

    return load


def test_a_stopped_study_resumes_and_a_changed_config_reruns(monkeypatch, tmp_path):
    monkeypatch.setattr(runner, "load_config", _config(2))
    calls, reports = _fake_study(monkeypatch, fail_on="c1")
    with pytest.raises(RuntimeError, match="stopped"):
        runner.run_study("fake", out_dir=tmp_path, log=lambda s: None)
    assert calls == ["c0"] and (tmp_path / "cells" / "c0.json").exists()
    assert not (tmp_path / "cells" / "c1.json").exists() and not reports

    calls, reports = _fake_study(monkeypatch, fail_on=None)
    lines: list[str] = []
    runner.run_study("fake", out_dir=tmp_path, log=lines.append)
    assert calls == ["c1", "c2"]  # c0 was not run again
    assert any("c0: done earlier" in s for s in lines)
    assert reports[-1] == {"c0": {"value": 0}, "c1": {"value": 2}, "c2": {"value": 4}}
    meta = json.loads((tmp_path / "study.json").read_text())
    assert meta["command"] == "jaxlem-study fake" and set(meta["cell_seconds"]) == {
        "c0",
        "c1",
        "c2",
    }

    monkeypatch.setattr(runner, "load_config", _config(3))
    calls, reports = _fake_study(monkeypatch, fail_on=None)
    runner.run_study("fake", out_dir=tmp_path, log=lambda s: None)
    assert calls == ["c0", "c1", "c2"]  # another config: every cell again
    assert reports[-1]["c2"] == {"value": 6}


def test_groups_run_their_unsaved_cells_together(monkeypatch, tmp_path):
    """A study with groups: a group runs the cells not yet saved in one ``run_group`` call, a
    lone unsaved cell through ``run_cell``; the report sees the cells in their own order."""
    monkeypatch.setattr(runner, "load_config", _config(2))
    calls, reports = _fake_study(monkeypatch, fail_on=None)
    mod = sys.modules["jaxlem_fake_study"]
    groups: list[list[str]] = []
    mod.groups = lambda cfg: [["c2", "c0"], ["c1"]]

    def run_group(cfg, cells, log):
        groups.append(list(cells))
        return {c: {"value": cfg.scale * int(c[1:])} for c in cells}

    mod.run_group = run_group
    runner.run_study("fake", out_dir=tmp_path, log=lambda s: None)
    assert groups == [["c2", "c0"]] and calls == ["c1"]
    assert list(reports[-1]) == ["c0", "c1", "c2"] and reports[-1]["c2"] == {"value": 4}
    (tmp_path / "cells" / "c0.json").unlink()  # one cell of the group lost: it alone reruns
    groups.clear()
    calls.clear()
    runner.run_study("fake", out_dir=tmp_path, log=lambda s: None)
    assert groups == [] and calls == ["c0"]
    mod.groups = lambda cfg: [["c0", "c1"]]  # a cell left out of every group is refused
    with pytest.raises(ValueError, match="groups"):
        runner.run_study("fake", out_dir=tmp_path, log=lambda s: None)


def test_study_configs_merge_quick_and_refuse_unknown_settings():
    full = runner.load_config("multiactor")
    quick = runner.load_config("multiactor", quick=True)
    assert not full.quick and quick.quick
    assert quick.train.total_timesteps < full.train.total_timesteps
    assert list(quick.grid.personas) == ["mixed"] and list(full.grid.personas) == [
        "mixed",
        "greedy",
    ]
    assert quick.train.sharing == "type"  # the quick block changes only what it names
    over = runner.load_config("multiactor", True, ("seeds=5", "train.lr=0.01"))
    assert over.seeds == 5 and over.train.lr == 0.01
    # any trainer setting, also one the study's YAML leaves at its default
    over = runner.load_config("multiactor", True, ("train.actor_lr_scale_by_type=[1,1,1,1,0.1]",))
    assert list(over.train.actor_lr_scale_by_type) == [1, 1, 1, 1, 0.1]
    with pytest.raises(ValueError, match="train.lrr: unknown study setting"):
        runner.load_config("multiactor", False, ("train.lrr=1",))
    with pytest.raises(ValueError, match="study: got 'nope'"):
        runner.load_config("nope")
    assert runner.default_out("multiactor", False).as_posix() == "experiments/results/multiactor"


# ------------------------------------------------------------- study helpers and figures


def test_large_agents_per_scenario():
    """Large: PV at least half the scenario's largest; where every agent is (balanced), only
    the scenario's single largest."""
    import numpy as np

    from jaxlem.studies.case2_market_power import large_agents

    kw = np.asarray([[300, 20, 35, 30], [120, 140, 30, 25], [50, 55, 45, 52]], float)
    np.testing.assert_array_equal(
        large_agents(kw),
        [[1, 0, 0, 0], [1, 1, 0, 0], [0, 1, 0, 0]],
    )


def test_group_kpis_hand_computed():
    """Two scenarios, two agents; the group is agent 0 in the first scenario and both in the
    second. Lerner = 1 - FiT value / receipts; withholding = 1 - offered / surplus; ask price
    weighted by the surplus; NaN where the group sold nothing or had no surplus."""
    import numpy as np

    from jaxlem.studies.case2_market_power import group_kpis

    sample = {
        "agent_return": [[1.0, 3.0], [2.0, 4.0]],
        "agent_sold": [[2.0, 0.0], [0.0, 0.0]],
        "agent_receipts": [[0.4, 0.0], [0.0, 0.0]],
        "agent_fit_value": [[0.1, 0.0], [0.0, 0.0]],
        "agent_offered": [[3.0, 1.0], [0.0, 0.0]],
        "agent_surplus": [[4.0, 1.0], [0.0, 0.0]],
        "agent_ask": [[400.0, 50.0], [0.0, 0.0]],
        "gain_share": [0.5, 0.5],  # not a per-agent key: ignored
    }
    mask = np.asarray([[True, False], [True, True]])
    g = group_kpis(sample, mask)
    np.testing.assert_allclose(g["lerner"][0], 0.75)
    np.testing.assert_allclose(g["withholding"][0], 0.25)
    np.testing.assert_allclose(g["ask_price"][0], 100.0)
    np.testing.assert_allclose(g["return_per_agent"], [1.0, 3.0])
    assert np.isnan(g["lerner"][1]) and np.isnan(g["withholding"][1])


def test_paired_differences_and_seed_means():
    import numpy as np

    from jaxlem.studies import lem_cells

    cell = {
        "baselines": {"rule": {"x": [1.0, 2.0, 3.0]}},
        "trained": [{"x": [2.0, 2.0, 5.0]}, {"x": [1.0, 3.0, 4.0]}],
    }
    d = np.asarray([1.0, 0.0, 2.0, 0.0, 1.0, 1.0])
    m, se = lem_cells.paired(cell, "x", "rule")
    assert m == pytest.approx(d.mean()) and se == pytest.approx(d.std(ddof=1) / np.sqrt(6))
    s = lem_cells.seed_means(cell, ("x",))
    assert s["x"] == pytest.approx(2.833333, rel=1e-5)
    assert s["x_se"] == pytest.approx(np.std([3.0, 8 / 3], ddof=1) / np.sqrt(2))


def test_study_figures_write_pngs(tmp_path):
    """Every study figure renders from small synthetic inputs (a PNG file each)."""
    import numpy as np

    from jaxlem.studies import figures

    rng = np.random.default_rng(0)
    cap = {s: {"hhi_capacity": h, "cr1_capacity": c, "cr3_capacity": 0.8, "min_kw": 20.0,
               "max_kw": 60.0 + h / 100, "total_kw": 300.0}
           for s, h, c in (("a", 1200.0, 0.2), ("b", 5000.0, 0.7))}  # fmt: skip
    table = [
        {"structure": s, "policy": p, "mean_agent_return": -r, "mean_agent_return_se": 0.1,
         "hhi_sales": 3000.0, "hhi_sales_se": 50.0, "cr1_sales": 0.5, "cr1_sales_se": 0.01,
         "cr3_sales": 0.9, "cr3_sales_se": 0.01}
        for s in cap
        for r, p in enumerate(("trained", "rule_based_battery", "zero_intelligence", "optimum"))
    ]  # fmt: skip
    tr = {"fit": [50.0] * 4, "utility": [150.0] * 4, "clearing_price": [0, 100, 110, 0],
          "p2p_volume_kwh": [0, 2, 3, 0], "import_kwh": [5, 1, 0, 4]}  # fmt: skip
    calls = {
        "mp.png": lambda p: figures.market_power(cap, table, p),
        "perf.png": lambda p: figures.performance(cap, table, p),
        "bars.png": lambda p: figures.grouped_bars(
            table, "structure", ["mean_agent_return"], ["trained", "optimum"], p
        ),
        "tbl.png": lambda p: figures.table_bars(cap, ["hhi_capacity", "total_kw"], p),
        "mkt.png": lambda p: figures.market_over_time({"a": {"trained": tr}}, p),
        "vio.png": lambda p: figures.violins({"a": {"trained": rng.normal(size=50)}}, "x", p),
        "heat.png": lambda p: figures.trade_heatmaps({"a": rng.random((3, 3))}, p),
        "net.png": lambda p: figures.trade_network(
            rng.random((3, 3)), np.ones(3), ["0", "1", "2"], "t", p
        ),
        "soc.png": lambda p: figures.soc_trajectories({"a": rng.random((4, 3))}, p),
        "curves.png": lambda p: figures.seed_band_curves(
            {"a": {"seeds": rng.normal(size=(2, 5)), "refs": {"optimum": 1.0}}}, p
        ),
    }
    for name, draw in calls.items():
        draw(tmp_path / name)
        assert (tmp_path / name).read_bytes()[:4] == b"\x89PNG", name


def test_cell_names_round_trip():
    """Cell names encode the static setting and the swept number, and parse back."""
    from jaxlem.studies import case3_dso, case4_grid, case6_cooperation, runner

    cfg = runner.load_config("case4-grid")
    for cell in case4_grid.cells(cfg):
        feeder, limit = case4_grid.parse(cell)
        assert cell == f"{feeder}-{case4_grid._limit_name(limit)}"
    assert case4_grid.parse("ieee34-unlimited") == ("ieee34", float("inf"))
    assert case6_cooperation.parse("community-alpha0.5") == ("community", 0.5)
    cfg = runner.load_config("case3-dso")
    cells = case3_dso.cells(cfg)
    assert cells[0] == "none" and case3_dso.parse("p2p_fee=20") == ("p2p_fee", 20.0)
    bad = runner.load_config("case3-dso", overrides=("sweeps.dynamic_tariff=[1.0]",))
    bad.sweeps["unknown"] = [1.0]
    with pytest.raises(ValueError, match="sweeps.unknown"):
        case3_dso.cells(bad)


@pytest.mark.slow  # three multiactor compiles (about 20 s); pytest -m slow
def test_consumer_dilemma_matches_episode_kpis():
    """The dilemma probe's "all consumers" gain is the consumers' mean return of the deviating
    market minus the scripted one, as the env's own episode KPIs compute it."""
    import jax.numpy as jnp
    import numpy as np

    import jaxlem
    from jaxlem.studies import multiactor_deviations as study
    from jaxlem.train import banks
    from jaxlem.train import evaluate as ev

    env = jaxlem.make(
        "multiactor-v0", num_producers=2, num_utilities=2, num_consumers=3, num_prosumers=2,
        num_days=1,
    )  # fmt: skip
    bank = banks.held_out_bank(env, 4, 0)
    keys = ev.episode_keys(bank, 7)
    got = study.consumer_dilemma(env, keys, bank, [1.2])
    rows = jnp.zeros(env.num_agents, bool).at[env.slices.cons].set(True)
    dev, rule = study.deviation(1.2), study.deviation(1.0)
    kpis = ev.episode_kpis(env, {"dev": (dev, (None, rows)), "rule": (rule, (None, rows))}, bank, 7)
    want = kpis["dev"]["return_consumer"] - kpis["rule"]["return_consumer"]
    np.testing.assert_allclose(got["1.2"]["all"], want, rtol=1e-5, atol=1e-5)


def test_kind_gains_every_market():
    """Each kind against its rule: the mean and paired s.e. of the per-scenario differences
    pooled over seeds, the s.e. of the seeds' means, the rule's return and the seeds ahead, in
    the four markets; results without the newest market give no rows for it."""
    import numpy as np

    from jaxlem.studies import multiactor_deviations as dev

    rng = np.random.default_rng(1)
    s, m = 3, 8

    def eps(shift):
        return {"return_consumer": (shift + rng.normal(size=m)).tolist()}

    res = {
        "episodes": {"all": [eps(2.0) for _ in range(s)], "consumer": [eps(1.0) for _ in range(s)]},
        "rule_in_trained": {"consumer": [eps(3.0) for _ in range(s)]},
        "one_alone": {"consumer": [(0.5 + rng.normal(size=m)).tolist() for _ in range(s)]},
        "one_trained": {"consumer": [(-0.5 + rng.normal(size=m)).tolist() for _ in range(s)]},
    }
    result = {"scripted": eps(0.0), "algos": {"mappo": res}}
    allr = np.asarray([e["return_consumer"] for e in res["episodes"]["all"]])
    want = {
        "trained": allr - [e["return_consumer"] for e in res["rule_in_trained"]["consumer"]],
        "scripted": np.asarray([e["return_consumer"] for e in res["episodes"]["consumer"]])
        - np.asarray(result["scripted"]["return_consumer"]),
        "one": np.asarray(res["one_alone"]["consumer"]),
        "one_trained": np.asarray(res["one_trained"]["consumer"]),
    }
    assert set(dev.MARKETS) == set(want)
    for market, d in want.items():
        g = dev.kind_gains(result, "mappo", market)["consumer"]
        np.testing.assert_allclose(g["diff"], d.mean(), rtol=1e-12)
        np.testing.assert_allclose(g["paired_se"], d.std(ddof=1) / np.sqrt(s * m), rtol=1e-12)
        np.testing.assert_allclose(g["seed_se"], d.mean(1).std(ddof=1) / np.sqrt(s), rtol=1e-12)
        assert g["wins"] == int((d.mean(1) > 0).sum()) and g["seeds"] == s
    rules = {m_: dev.kind_gains(result, "mappo", m_)["consumer"]["rule"] for m_ in want}
    np.testing.assert_allclose(rules["one_trained"], allr.mean() - want["one_trained"].mean())
    np.testing.assert_allclose(rules["one"], np.mean(result["scripted"]["return_consumer"]))
    assert dev.margin({"paired_se": 0.1, "rule": 5.0}) == 0.2
    del res["one_trained"]
    assert dev.kind_gains(result, "mappo", "one_trained") == {}


def test_regulator_rates_summary_and_table():
    """The rates landscape's summary: mean and paired s.e. over seeds x scenarios per grid
    point, the fixed rule's point, the best point, points ahead and behind beyond 2 s.e."""
    import numpy as np

    from jaxlem.studies import multiactor_rates as mr

    rng = np.random.default_rng(0)
    j, m = len(mr.GRID), 16
    shift = np.zeros(j)
    rule = int(np.flatnonzero((mr.GRID == np.asarray(mr.RULE, np.float32)).all(1))[0])
    shift[rule], shift[0] = 5.0, -5.0  # the rule far ahead, the no-rates point far behind
    seeds = [
        {"rates": [0.1 * s, 0.2, 0.3], "gain": (shift[:, None] + rng.normal(size=(j, m))).tolist()}
        for s in range(3)
    ]
    g = mr.summary(seeds)
    flat = np.asarray([s["gain"] for s in seeds]).transpose(1, 0, 2).reshape(j, -1)
    np.testing.assert_allclose(g["mean"], flat.mean(1))
    np.testing.assert_allclose(g["se"], flat.std(1, ddof=1) / np.sqrt(3 * m))
    assert g["rule"] == rule and g["best"] == rule
    assert tuple(mr.GRID[g["rule"]]) == mr.RULE
    assert g["ahead"] >= 1 and g["behind"] >= 1
    assert g["seeds_above"][rule] == 3 and g["seeds_above"][0] == 0
    np.testing.assert_allclose(g["rates"], [0.1, 0.2, 0.3])
    results = {"s1-regulator_on-mixed": {"algos": {"mappo": {"rates": seeds}}}}
    (row,) = mr.rows(results)
    assert row["best fixed rates"] == "(1.00, 0.50, 0.50)"
    assert row["fixed rule - trained"] == f"{g['mean'][rule]:+.2f} ± {g['se'][rule]:.2f}"
    (text,) = mr.findings(results)
    assert "27 fixed rates" in text and "s1-regulator_on-mixed mappo" in text
    assert mr.rows({"c": {"algos": {"mappo": {}}}}) == [] and mr.findings({}) == []


@pytest.mark.slow  # a tiny multiactor training and two evaluations (about 40 s); pytest -m slow
def test_regulator_rates_landscape_matches_episode_kpis():
    """Each grid point's gain is the regulator's episode return with those fixed rates minus
    with the trained regulator, every other agent trained, as the env's own episode KPIs
    compute it; NaN rates leave the trained regulator in place; the regulator's unilateral
    deviation to its rule in the trained market is the rule point's gain with its sign turned."""
    import jax.numpy as jnp
    import numpy as np

    import jaxlem
    from jaxlem.studies import multiactor_rates as mr
    from jaxlem.train import banks
    from jaxlem.train import evaluate as ev
    from jaxlem.train.config import TrainConfig
    from jaxlem.train.driver import run_training

    env = jaxlem.make(
        "multiactor-v0", num_producers=2, num_utilities=2, num_consumers=2, num_prosumers=2,
        num_days=1,
    )  # fmt: skip
    cfg = TrainConfig(
        total_timesteps=2 * 24, num_envs=2, rollout_len=24, hidden=(8,), eval_every=0,
        eval_envs=2, sharing="type", residual="scripted_regulated",
    )  # fmt: skip
    res = run_training(cfg, env, seeds=(0,), log=lambda s: None)
    core, runner = res["train"].core, ev.seed_slice(res["runners"], 0)
    bank = banks.held_out_bank(env, 3, 0)
    seed = 7
    keys = ev.episode_keys(bank, seed)
    got = mr.landscape(env, core, keys, bank, runner)
    assert np.asarray(got["gain"]).shape == (len(mr.GRID), 3)
    assert all(0.0 <= r <= 1.0 for r in got["rates"])
    pol = mr.fixed_rates(core)
    rule = int(np.flatnonzero((mr.GRID == np.asarray(mr.RULE, np.float32)).all(1))[0])
    nan = jnp.full((3,), jnp.nan)
    kpis = ev.episode_kpis(
        env,
        {
            "rule": (pol, (runner, jnp.asarray(mr.RULE))),
            "trained": (pol, (runner, nan)),
            "plain": (ev.trained_policy(core), runner),
        },
        bank,
        seed,
    )
    want = kpis["rule"]["return_regulator"] - kpis["trained"]["return_regulator"]
    np.testing.assert_allclose(got["gain"][rule], want, rtol=1e-4, atol=1e-4)
    np.testing.assert_allclose(
        kpis["trained"]["return_regulator"], kpis["plain"]["return_regulator"], rtol=1e-6
    )
    # the single regulator alone on its rule among trained agents is the rule point, signed
    # as trained minus rule
    from jaxlem.studies import multiactor, multiactor_deviations

    one = multiactor_deviations.unilateral(
        env, multiactor._mixed(core), keys, bank, (runner, None), among_trained=True
    )
    assert set(one) == {"producer", "utility", "consumer", "prosumer", "regulator"}
    assert all(len(v) == 3 for v in one.values())
    np.testing.assert_allclose(one["regulator"], -want, rtol=1e-4, atol=1e-4)
