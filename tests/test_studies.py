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
    with pytest.raises(ValueError, match="train.lrr: unknown study setting"):
        runner.load_config("multiactor", False, ("train.lrr=1",))
    with pytest.raises(ValueError, match="study: got 'nope'"):
        runner.load_config("nope")
    assert runner.default_out("multiactor", False).as_posix() == "experiments/results/multiactor"
