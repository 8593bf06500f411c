"""Training throughput (issue: trainers): end-to-end env-steps/s and agent-steps/s of the compiled
trainers, steady state after compilation, with the compile time reported apart.

    jaxlem-bench train --out experiments/results/bench_train_cpu
    python experiments/bench_train.py --out experiments/results/bench_train_cpu   # the same

Cases: lem-v0 IPPO at N=10 (target >= 50,000 agent-steps/s on a 2-core CPU), lem-v0 MAPPO at
N=10, gencos-v0 IPPO (target >= 10,000 env-steps/s). Each: one compile, a warm-up chunk, then
the median of timed chunks of ``--updates`` updates (rollouts + GAE + PPO epochs, everything).
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from pathlib import Path

import jax
import numpy as np

import jaxlem
from jaxlem.app.hardware import hardware
from jaxlem.train import TrainConfig, make_train

CASES = {
    "lem-v0 ippo N=10": ("lem-v0", {"num_agents": 10}, {"algo": "ippo"}),
    "lem-v0 mappo N=10": ("lem-v0", {"num_agents": 10}, {"algo": "mappo"}),
    "gencos-v0 ippo": (
        "gencos-v0",
        {},
        {
            "algo": "ippo",
            "num_envs": 2048,
            "rollout_len": 8,
            "update_epochs": 2,
            "num_minibatches": 4,
        },
    ),
}


def bench(env_id: str, env_kw: dict, cfg_kw: dict, updates: int, repeats: int) -> dict:
    env = jaxlem.make(env_id, **env_kw)
    cfg = TrainConfig(**{"total_timesteps": 10**9, "eval_every": 0, **cfg_kw})
    train = make_train(cfg, env)
    core = train.core
    keys = np.stack([np.asarray(jax.random.PRNGKey(0))])
    runners = jax.block_until_ready(core.init(keys, train.bank, train.hyper))
    args = (train.bank, train.eval_bank, train.hyper, updates)
    t0 = time.perf_counter()
    compiled = core.run.lower(runners, *args).compile()
    compile_s = time.perf_counter() - t0
    runners, _ = jax.block_until_ready(compiled(runners, *args[:3]))  # warm-up chunk
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        runners, m = jax.block_until_ready(compiled(runners, *args[:3]))
        times.append(time.perf_counter() - t0)
    med = statistics.median(times)
    env_steps = updates * cfg.env_steps_per_update
    return {
        "case": f"{env_id} {cfg.algo}",
        "num_agents": env.num_agents,
        "num_envs": cfg.num_envs,
        "rollout_len": cfg.rollout_len,
        "update_epochs": cfg.update_epochs,
        "num_minibatches": cfg.num_minibatches,
        "hidden": list(cfg.hidden),
        "updates_per_chunk": updates,
        "compile_s": compile_s,
        "median_chunk_s": med,
        "env_steps_per_s": env_steps / med,
        "agent_steps_per_s": env_steps * env.num_agents / med,
        "final_return": float(np.nanmean(np.asarray(m["episode_return"]))),
    }


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", default="outputs/bench_train")
    ap.add_argument("--updates", type=int, default=10)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--cases", nargs="+", default=list(CASES))
    args = ap.parse_args(argv)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    hw = hardware()
    print(f"hardware: {hw}", flush=True)
    rows = []
    for name in args.cases:
        env_id, env_kw, cfg_kw = CASES[name]
        r = bench(env_id, env_kw, cfg_kw, args.updates, args.repeats)
        rows.append(r)
        print(
            f"{name:<20} {r['env_steps_per_s']:>10,.0f} env-steps/s "
            f"{r['agent_steps_per_s']:>12,.0f} agent-steps/s | compile {r['compile_s']:.1f} s | "
            f"B={r['num_envs']} T={r['rollout_len']} epochs={r['update_epochs']} "
            f"minibatches={r['num_minibatches']}",
            flush=True,
        )
    (out / "bench_train.json").write_text(json.dumps({"hardware": hw, "rows": rows}, indent=2))
    print(f"wrote {out / 'bench_train.json'}")


if __name__ == "__main__":
    main()
