"""The public modules type-check: mypy, configured by ``[tool.mypy]`` in pyproject.toml (the
modules it checks and how), reports no error. Skipped when mypy is not installed (it comes with
the ``test`` and ``dev`` extras); its cache (``.mypy_cache``) makes repeated runs fast."""

from __future__ import annotations

from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def test_public_modules_type_check(monkeypatch: pytest.MonkeyPatch) -> None:
    pytest.importorskip("mypy")
    from mypy import api

    monkeypatch.chdir(ROOT)  # the config's paths and the cache are relative to the repository
    stdout, stderr, status = api.run([])
    assert status == 0, f"mypy reports errors (exit status {status}):\n{stdout}{stderr}"
