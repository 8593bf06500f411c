"""The case-7 scalability study's pieces without compiling: its grid, batch sizes, trainer
settings, growth exponents, and a report written from synthetic cells of known power laws
(the study end to end: ``pytest -m slow``, test_slow_studies.py)."""

from __future__ import annotations

import numpy as np
import pytest

from jaxlem.studies import case7_report as rep
from jaxlem.studies import case7_scalability as c7
from jaxlem.studies import runner


def test_growth_exponent_and_scaling_factor_of_power_laws():
    ns = [1, 10, 100, 1000]
    assert rep.growth([(n, 3.0 * n**1.5) for n in ns]) == pytest.approx(1.5)
    assert rep.growth([(n, 2.0 * n) for n in ns], n_min=100) == pytest.approx(1.0)
    assert rep.growth([(5, 1.0)]) is None
    assert rep.scaling_factor([(n, 0.5 * n) for n in ns]) == pytest.approx(1.0)
    assert rep.scaling_factor([(n, np.sqrt(n)) for n in ns]) == pytest.approx(1000**-0.5)


def test_grid_batches_and_trainer_settings():
    cfg = runner.load_config("case7-scalability")
    cells = c7.cells(cfg)
    assert len(cells) == len(cfg.env_agents) + len(cfg.train_agents) * 8  # no CTCE x SAC
    assert not any(c.startswith("CTCE-SAC") for c in cells)
    for cell in cells:
        mode, algo, n = c7.parse(cell)
        assert f"{mode}-{algo}-N{n}" == cell or (mode == "env" and cell == f"env-N{n}")
    assert c7.batch(1, 65_536, 24, 256) == 256
    assert c7.batch(100, 65_536, 24, 256) == 16  # 27 -> the power of two below
    assert c7.batch(10_000, 65_536, 24, 256) == 1
    assert c7.batch(10_000, 65_536, 24, 256, min_batch=2) == 2
    ctce = c7.train_config(cfg, "CTCE", "APPO", 10)
    assert ctce.algo == "ctce" and ctce.off_policy_lag == 1 and ctce.hidden == (128, 128)
    assert c7.train_config(cfg, "CTDE", "SAC", 10).algo == "masac"
    small = c7.train_config(cfg, "DTDE", "SAC", 1)
    big = c7.train_config(cfg, "DTDE", "SAC", 10_000)
    assert small.batch_size == cfg.sac.batch_size and big.batch_size == 1
    # a SAC chunk moves the same env steps as a PPO chunk
    ppo = c7.train_config(cfg, "DTDE", "PPO", 10)
    assert c7.chunk_updates(small, cfg) * small.env_steps_per_update == (
        c7.chunk_updates(ppo, cfg) * ppo.env_steps_per_update * small.num_envs // ppo.num_envs
    )


def _synthetic(cfg) -> dict:
    """Cells whose update time grows as N^0.8 and memory as N^1 (DTDE PPO), one CTCE cell
    skipped at the agent limit and one SAC cell skipped for memory."""
    out = {}
    rng = np.random.default_rng(0)
    for n in cfg.train_agents:
        out[f"env-N{n}"] = {
            "bench": {"batch": 4, "compile_s": 1.0, "env_steps_per_s": 1e5 / n,
                      "agent_steps_per_s": 1e5, "step_time_s": 4e-5 * n, "xla_temp_mb": n,
                      "xla_args_mb": 0.0},
            "baselines": {k: {kpi: rng.normal(size=4).tolist() for kpi in c7.KPIS}
                          for k in c7.REFERENCES},
            "optimum": {"mean_agent_return": (rng.normal(size=4) + 5).tolist()},
        }  # fmt: skip
        for mode, algo in (("DTDE", "PPO"), ("CTDE", "APPO")):
            t = 0.01 * n**0.8
            out[f"{mode}-{algo}-N{n}"] = {
                "batch": 4, "rollout_len": 24, "chunk_updates": 2, "compile_s": 5.0,
                "peak_bytes": 1e6 * n, "median_call_s": 2 * t, "env_steps_per_call": 192,
                "env_steps_per_s": 192 / (2 * t), "agent_steps_per_s": 192 * n / (2 * t),
                "train_wall_s": 5.0 + 8 * t, "eval_s": 1.0, "final_return": 0.0,
                "kpis": {k: rng.normal(size=4).tolist() for k in c7.KPIS},
            }  # fmt: skip
    n = cfg.train_agents[-1]
    out[f"CTCE-PPO-N{n}"] = {"skipped": "agent limit", "reason": "num_agents: got ...",
                             "batch": 1}  # fmt: skip
    out[f"DTDE-SAC-N{n}"] = {"skipped": "memory", "reason": "memory: the compiled ...",
                             "batch": 1, "compile_s": 3.0}  # fmt: skip
    return out


def test_report_from_synthetic_cells(tmp_path):
    cfg = runner.load_config("case7-scalability", overrides=("train_agents=[1,10,100,1000]",))
    results = _synthetic(cfg)
    meta = {"command": "jaxlem-study case7-scalability", "total_seconds": 60.0,
            "date": "2026-11-30", "hardware": {"cpu": "test CPU", "cpu_count": 2, "jax": "x",
            "backend": "cpu", "device": "cpu", "python": "3"}}  # fmt: skip
    c7.report(cfg, results, tmp_path, meta)
    readme = (tmp_path / "README.md").read_text()
    for section in ("## Findings", "## The env alone", "## Growth exponents", "## KPIs"):
        assert section in readme
    assert "num_agents: got" in readme
    assert "memory: the compiled" in readme and "no joint-action SAC" in readme
    assert "No GPU figures exist yet" in readme
    for f in ("timing.png", "heatmap.png", "kpis.png", "env.png", "train.csv", "exponents.csv"):
        assert (tmp_path / f).stat().st_size > 0, f
    expo = {r["cell"]: r for r in rep.exponent_rows(c7.train_rows(results), 100)}
    assert float(expo["DTDE PPO"]["time/update exponent"]) == pytest.approx(0.8, abs=0.01)
    assert float(expo["CTDE APPO"]["memory exponent"]) == pytest.approx(1.0, abs=0.01)
    rows = c7.train_rows(results)
    assert all("gain_share" in r for r in rows if r["status"] == "run")
