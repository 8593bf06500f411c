"""Each study's ``quick`` variant end to end (``pytest -m slow``): the command runs, resumes
without redoing a cell, and writes its report folder."""

from __future__ import annotations

import json

import pytest

from jaxlem.studies import runner

pytestmark = pytest.mark.slow


@pytest.mark.parametrize("name", runner.names())
def test_quick_study_runs_resumes_and_reports(name, tmp_path):
    lines: list[str] = []
    out = runner.run_study(name, quick=True, out_dir=tmp_path, log=lines.append)
    readme = (out / "README.md").read_text()
    assert "jaxlem-study " + name + " quick" in readme and "## Findings" in readme
    meta = json.loads((out / "study.json").read_text())
    cells = list(meta["cell_seconds"])
    assert cells and all((out / "cells" / f"{c}.json").exists() for c in cells)
    assert any(p.suffix == ".png" for p in out.iterdir())
    assert any(p.suffix == ".csv" for p in out.iterdir())
    again: list[str] = []
    runner.run_study(name, quick=True, out_dir=tmp_path, log=again.append)
    assert sum("done earlier" in s for s in again) == len(cells)
