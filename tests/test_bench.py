"""The benchmark script runs end to end on a tiny grid and writes its JSON and plot."""

import json

from jaxlem.app import bench


def test_bench_tiny(tmp_path, capsys):
    args = "--agents 3 30 --batch 1 --work 200 --repeats 1 --max-agent-slots 10"
    bench.main([*args.split(), "--out", str(tmp_path)])
    data = json.loads((tmp_path / "bench_env.json").read_text())
    assert (tmp_path / "bench_env.png").stat().st_size > 0
    assert [(r["num_agents"], r["batch"]) for r in data["rows"]] == [(3, 1)]
    assert data["skipped"] == [{"num_agents": 30, "batch": 1, "reason": "over memory budget"}]
    for r in data["rows"]:
        assert r["compile_s"] > 0 and r["agent_steps_per_s"] > 0
        rel = abs(r["agent_steps_per_s"] - r["env_steps_per_s"] * r["num_agents"])
        assert rel < 1e-6 * r["agent_steps_per_s"]
    assert data["hardware"]["jax"]
    assert "skipped" in capsys.readouterr().out


def test_growth_exponent():
    rows = [{"batch": 1, "num_agents": n, "step_time_s": 1e-6 * n} for n in (1000, 10000, 100000)]
    assert abs(bench.growth_exponent(rows, 1) - 1.0) < 1e-9
