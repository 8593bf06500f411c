"""``jaxlem-bench``: env throughput for agent counts N and scenario batches B.

``--agents`` sets lem-v0's ``num_agents`` and multiactor-v0's consumers plus prosumers (half
each; producers, utilities and the regulator stay as configured); gencos-v0 has a fixed count.

Random-action rollouts under ``lax.scan``, vmapped over B scenarios. Compile time is measured
separately (lower + compile); steady state is the median of repeated calls after
``block_until_ready``. Reports env-steps/s, agent-steps/s, the compiled program's memory (XLA's
own accounting) and the process peak RSS, with JAX version and hardware; saves JSON and a
log-log plot of time per step against N.
"""

from __future__ import annotations

import argparse
import json
import resource
import statistics
import sys
import time
from pathlib import Path
from typing import Any

import jax
import numpy as np

import jaxlem
from jaxlem.app import profile_step
from jaxlem.app.bench_train import main as train_main
from jaxlem.app.hardware import hardware
from jaxlem.app.random_rollout import make_runner
from jaxlem.app.reference_step import ReferenceStep

DEFAULT_N = (1, 10, 100, 1000, 10000, 100000)
DEFAULT_B = (1, 64, 1024)
# how ``--agents N`` sizes each env (envs missing here have a fixed agent count)
SCALE = {
    "lem-v0": lambda n: {"num_agents": n},
    "multiactor-v0": lambda n: {"num_consumers": n // 2, "num_prosumers": n - n // 2},
}


def bench_one(env_id: str, n: int, b: int, steps: int, repeats: int, seed: int = 0) -> dict:
    if env_id == "reference":
        env = ReferenceStep(n)
    elif env_id in SCALE:
        env = jaxlem.make(env_id, **SCALE[env_id](n))
    else:
        env = jaxlem.make(env_id)
    scaled = n if env_id in SCALE or env_id == "reference" else env.num_agents
    n = env.num_agents  # envs with a fixed agent count (gencos-v0: 5) ignore --agents
    key = jax.random.PRNGKey(seed)
    params = env.sample_params(key, b)
    keys = jax.random.split(key, b)
    runner = make_runner(env, b, steps)
    t0 = time.perf_counter()
    compiled = runner.lower(keys, params).compile()
    compile_s = time.perf_counter() - t0
    mem = xla_memory(compiled)
    jax.block_until_ready(compiled(keys, params))  # warm-up
    times = []
    for r in range(repeats):
        ks = jax.random.split(jax.random.PRNGKey(seed + 1 + r), b)
        t0 = time.perf_counter()
        jax.block_until_ready(compiled(ks, params))
        times.append(time.perf_counter() - t0)
    med = statistics.median(times)
    out = {
        "env": env_id,
        "num_agents": n,
        "scaled": scaled,
        "batch": b,
        "steps_per_call": steps,
        "compile_s": compile_s,
        "median_call_s": med,
        "step_time_s": med / steps,
        "env_steps_per_s": b * steps / med,
        "agent_steps_per_s": n * b * steps / med,
        "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
    }
    if mem:
        out["xla_temp_mb"] = mem["temp_bytes"] / 2**20
        out["xla_args_mb"] = mem["argument_bytes"] / 2**20
    return out


def xla_memory(compiled: Any) -> dict[str, float]:
    """XLA's memory analysis of a compiled program (bytes): arguments, outputs, temporaries,
    and their sum less what outputs alias from arguments (the program's peak); empty where the
    backend has no analysis."""
    try:
        m = compiled.memory_analysis()
    except Exception:  # a backend without the analysis
        return {}
    if m is None:
        return {}
    out = {
        "argument_bytes": float(m.argument_size_in_bytes),
        "output_bytes": float(m.output_size_in_bytes),
        "temp_bytes": float(m.temp_size_in_bytes),
        "alias_bytes": float(m.alias_size_in_bytes),
    }
    out["peak_bytes"] = (
        out["argument_bytes"] + out["output_bytes"] + out["temp_bytes"] - out["alias_bytes"]
    )
    return out


def growth(points: list[tuple[float, float]], n_min: float = 0.0) -> float | None:
    """Least-squares slope of log(y) against log(N) over the points with N >= ``n_min``
    (1: y grows in proportion to N; 0: constant); None without two distinct N."""
    pts = [(n, y) for n, y in points if n >= n_min and y > 0 and np.isfinite(y)]
    if len({n for n, _ in pts}) < 2:
        return None
    x, y = np.log([p[0] for p in pts]), np.log([p[1] for p in pts])
    return float(np.polyfit(x, y, 1)[0])


def growth_exponent(rows: list[dict], batch: int, n_lo: int = 1000, n_hi: int = 100000):
    """``growth`` of the step time over the ``--agents`` values N in [n_lo, n_hi] at ``batch``
    (an N log N step gives 1 + 1/ln N: about 1.1 to 1.2)."""
    return growth(
        [
            (r.get("scaled", r["num_agents"]), r["step_time_s"])
            for r in rows
            if r["batch"] == batch and n_lo <= r.get("scaled", r["num_agents"]) <= n_hi
        ]
    )


def plot(rows: list[dict], hw: dict, path: Path, env_id: str = "lem-v0") -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 4.2))
    for b in sorted({r["batch"] for r in rows}):
        pts = sorted((r["scaled"], r["step_time_s"]) for r in rows if r["batch"] == b)
        ax.loglog(*zip(*pts, strict=True), "o-", label=f"B = {b}")
    ns = np.array(sorted({r["scaled"] for r in rows}), float)
    ref = [r for r in rows if r["batch"] == min(r2["batch"] for r2 in rows)]
    if ref:
        n0, t0 = max((r["scaled"], r["step_time_s"]) for r in ref)
        ax.loglog(ns, t0 * (ns / n0), "k:", lw=1, label="∝ N")
    ax.set_xlabel("agents N" if env_id != "multiactor-v0" else "consumers + prosumers N")
    ax.set_ylabel("time per batched step (s)")
    where = hw["cpu"] if hw["backend"] == "cpu" else hw["device"]
    ax.set_title(
        f"{env_id} step time: {where}, {hw['cpu_count']} cores, {hw['backend']}, jax {hw['jax']}",
        fontsize=8,
    )
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def main(argv: list[str] | None = None) -> None:
    """``jaxlem-bench [env options]`` times env rollouts; ``jaxlem-bench train [options]`` times
    the compiled trainers (``jaxlem.app.bench_train``)."""
    argv = sys.argv[1:] if argv is None else list(argv)
    if argv[:1] == ["train"]:
        return train_main(argv[1:])
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--env", default="lem-v0")
    ap.add_argument("--agents", type=int, nargs="+", default=list(DEFAULT_N))
    ap.add_argument("--batch", type=int, nargs="+", default=list(DEFAULT_B))
    ap.add_argument(
        "--max-agent-slots",
        type=float,
        default=1.1e7,
        help="skip N*B above this (memory budget; ~0.4 kB per agent slot)",
    )
    ap.add_argument("--work", type=float, default=2e6, help="agent-steps per timed call")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--out", default="outputs/bench")
    ap.add_argument(
        "--reference",
        action="store_true",
        help="also time the plain-JAX two-sort reference step at every point (ratios)",
    )
    ap.add_argument(
        "--stages",
        action="store_true",
        help="lem-v0 only: time each stage of the step alone at every point (breakdown)",
    )
    args = ap.parse_args(argv)

    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    hw = hardware()
    print(f"hardware: {hw}", flush=True)
    rows, skipped = [], []
    print(
        f"{'N':>7} {'B':>5} {'steps':>5} {'compile s':>9} {'step ms':>9} "
        f"{'env-steps/s':>12} {'agent-steps/s':>14} {'xla MB':>8}",
        flush=True,
    )
    for n in args.agents:
        for b in args.batch:
            if n * b > args.max_agent_slots:
                skipped.append({"num_agents": n, "batch": b, "reason": "over memory budget"})
                print(f"{n:>7} {b:>5}  skipped: N*B = {n * b:.0e} > {args.max_agent_slots:.0e}")
                continue
            steps = int(np.clip(args.work / (n * b), 8, 480))
            r = bench_one(args.env, n, b, steps, args.repeats)
            rows.append(r)
            mem = r.get("xla_temp_mb", 0.0) + r.get("xla_args_mb", 0.0)
            print(
                f"{n:>7} {b:>5} {steps:>5} {r['compile_s']:>9.2f} {1e3 * r['step_time_s']:>9.3f} "
                f"{r['env_steps_per_s']:>12.4g} {r['agent_steps_per_s']:>14.4g} {mem:>8.1f}",
                flush=True,
            )
            if args.reference:
                ref = bench_one("reference", n, b, steps, args.repeats)
                r["reference_agent_steps_per_s"] = ref["agent_steps_per_s"]
                r["ratio_to_reference"] = r["agent_steps_per_s"] / ref["agent_steps_per_s"]
                print(
                    f"{'':>7} {'':>5} {'':>5} {'reference':>9} {1e3 * ref['step_time_s']:>9.3f} "
                    f"{ref['env_steps_per_s']:>12.4g} {ref['agent_steps_per_s']:>14.4g}   "
                    f"ratio {r['ratio_to_reference']:.2f}",
                    flush=True,
                )
            if args.stages and args.env == "lem-v0":
                env = jaxlem.make("lem-v0", num_agents=n)
                r["stages"] = profile_step.table(profile_step.breakdown(env, b), b, n)
                for st in r["stages"]:
                    print(
                        f"{'':>13} {st['stage']:<48} {st['us_per_step']:>10.1f} us/step "
                        f"{st['ns_per_agent_step']:>8.2f} ns/agent-step "
                        f"{100 * st['share_of_step']:>5.1f} %",
                        flush=True,
                    )
    big = [n for n in args.agents if n >= 100]
    lo, hi = (min(big), max(big)) if len(big) > 1 else (1000, 100000)
    summary = {
        "env": args.env,
        "hardware": hw,
        "rows": rows,
        "skipped": skipped,
        "growth_exponent_B1_N1e3_1e5": growth_exponent(rows, 1),
        "growth_exponent_B1": {
            "n_lo": lo,
            "n_hi": hi,
            "exponent": growth_exponent(rows, 1, lo, hi),
        },
    }
    (out / "bench_env.json").write_text(json.dumps(summary, indent=2))
    if rows:
        plot(rows, hw, out / "bench_env.png", args.env)
    g = summary["growth_exponent_B1"]
    print(f"step-time growth exponent N={lo}..{hi} at B=1: {g['exponent']}")
    print(f"wrote {out / 'bench_env.json'} and {out / 'bench_env.png'}")


if __name__ == "__main__":
    main()
