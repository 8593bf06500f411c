"""DC-OPF / SCED benchmark (issue: grid and GenCos): solves/s per QP backend (ipm, boxosqp),
case and batch, compile time, worst error against SciPy HiGHS; and gencos-v0 env-steps/s for B
in {1, 64, 1024, 4096}. Saves JSON; prints a table with the hardware and JAX version.

    python experiments/bench_opf.py --out experiments/results/bench_opf_cpu
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np

import jaxlem
from jaxlem.app.hardware import hardware
from jaxlem.app.random_rollout import make_runner
from jaxlem.grid import load_case, solve_dcopf
from jaxlem.grid.highs import dcopf_highs


def timed(fn, *args, repeats=3):
    """(output, compile s, median s of ``repeats`` calls after a warm-up; 1 call if slow)."""
    t0 = time.perf_counter()
    compiled = jax.jit(fn).lower(*args).compile()
    compile_s = time.perf_counter() - t0
    t0 = time.perf_counter()
    jax.block_until_ready(compiled(*args))
    if time.perf_counter() - t0 > 2.0:
        repeats = 1
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        out = jax.block_until_ready(compiled(*args))
        times.append(time.perf_counter() - t0)
    return out, compile_s, statistics.median(times)


def bench_dcopf(case: str, batch: int, backend: str = "ipm", seed: int = 0) -> dict:
    net = load_case(case)
    if case == "case118":  # linear costs and tightened lines: the LP the issue describes
        net = net.replace(gen_c2=jnp.zeros_like(net.gen_c2))
    rng = np.random.default_rng(seed)
    loads = np.asarray(net.bus_load_mw, np.float64) * rng.uniform(0.6, 1.2, (batch, net.num_buses))
    fn = jax.vmap(lambda ld: solve_dcopf(net, ld, backend=backend))
    sols, compile_s, med = timed(fn, jnp.asarray(loads, jnp.float32))
    err_lmp = err_p = 0.0
    for i in range(min(batch, 16)):
        ref = dcopf_highs(net, loads[i])
        if ref["shed"].sum() > 1e-6:
            continue
        err_lmp = max(err_lmp, float(np.abs(np.asarray(sols.lmp[i]) - ref["lmp"]).max()))
        if case != "case118":  # the linear case118 LP has a non-unique dispatch
            err_p = max(err_p, float(np.abs(np.asarray(sols.p_gen[i]) - ref["p_gen"]).max()))
    return {
        "case": case,
        "batch": batch,
        "backend": backend,
        "dtype": "float32",
        "compile_s": compile_s,
        "median_batch_s": med,
        "solves_per_s": batch / med,
        "max_lmp_err": err_lmp,
        "max_dispatch_err_mw": err_p,
        "converged_frac": float(np.mean(np.asarray(sols.converged))),
    }


def bench_gencos(batch: int, steps: int = 48) -> dict:
    env = jaxlem.make("gencos-v0")
    bank = env.sample_params(jax.random.PRNGKey(0), batch)
    keys = jax.random.split(jax.random.PRNGKey(1), batch)
    _, compile_s, med = timed(make_runner(env, batch, steps), keys, bank, repeats=2)
    return {
        "batch": batch,
        "steps": steps,
        "compile_s": compile_s,
        "median_call_s": med,
        "env_steps_per_s": batch * steps / med,
    }


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", default="outputs/bench_opf")
    ap.add_argument("--gencos-batch", type=int, nargs="+", default=[1, 64, 1024, 4096])
    args = ap.parse_args(argv)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    hw = hardware()
    print(f"hardware: {hw}", flush=True)
    rows = []
    runs = (
        ("ipm", "case5", (1, 64, 1024)),
        ("boxosqp", "case5", (1, 64, 1024)),
        ("ipm", "case118", (1, 16)),
        ("boxosqp", "case118", (1,)),  # thousands of ADMM steps on a 290-variable LP: slow
    )
    for backend, case, batches in runs:
        for b in batches:
            r = bench_dcopf(case, b, backend)
            rows.append(r)
            print(
                f"dcopf {backend:>7} {case:>8} B={b:>5}: {r['solves_per_s']:10.2f} solves/s "
                f"({1e3 * r['median_batch_s']:8.2f} ms/batch), compile {r['compile_s']:.1f} s, "
                f"max |LMP err| {r['max_lmp_err']:.2e} $/MWh, max |P err| "
                f"{r['max_dispatch_err_mw']:.2e} MW, converged {r['converged_frac']:.2f}",
                flush=True,
            )
    gencos = []
    for b in args.gencos_batch:
        g = bench_gencos(b)
        gencos.append(g)
        print(
            f"gencos-v0 B={b:>5}: {g['env_steps_per_s']:10.1f} env-steps/s, "
            f"compile {g['compile_s']:.1f} s",
            flush=True,
        )
    (out / "bench_opf.json").write_text(
        json.dumps({"hardware": hw, "dcopf": rows, "gencos": gencos}, indent=2)
    )
    print(f"wrote {out / 'bench_opf.json'}")


if __name__ == "__main__":
    main()
