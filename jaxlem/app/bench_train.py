"""Training throughput (issue: trainers): end-to-end env-steps/s and agent-steps/s of the compiled
trainers, steady state after compilation, with the compile time reported apart.

    jaxlem-bench train --out experiments/results/bench_train_cpu
    python experiments/bench_train.py --out experiments/results/bench_train_cpu   # the same

Cases: lem-v0 IPPO at N=10 (target >= 2e5 agent-steps/s on a 2-core CPU), lem-v0 MAPPO at
N=10, gencos-v0 IPPO (target >= 16,000 env-steps/s). Each: one compile, a warm-up chunk, then
the median of timed chunks of ``--updates`` updates (rollouts + GAE + PPO epochs, everything).

Beside each case, in the same run: ``env only`` (the same B x T steps with random actions: the
env's share of an update) and, for the ``reference`` cases, a plain PPO update
(``jaxlem.app.plain_ppo``: Gaussian policy, no normalisation, the same network and batch)
with the settings of another JAX GenCos benchmark's IPPO (48-step rollouts, one minibatch,
4 full-batch epochs, a 128x128 MLP). Per sample (one env step of one scenario) the report
gives the whole update's cost and the learner's (the update minus the env's share), ours and
the plain one's, and their ratio. ``--floor``: the actor's and critic's passes alone at the
case's shapes (``jaxlem.app.network_floor``), and the agent-steps/s that they and the env
alone would allow.
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
from jaxlem.app import network_floor, plain_ppo, profile_update
from jaxlem.app.hardware import hardware
from jaxlem.app.random_rollout import make_runner
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
# the multi-actor study's market and learner: one network per kind (sharing=type)
CASES["multiactor-v0 mappo type"] = (
    "multiactor-v0",
    {"num_producers": 4, "num_utilities": 3, "num_consumers": 8, "num_prosumers": 8, "num_days": 2},
    {"algo": "mappo", "sharing": "type", "num_envs": 32, "rollout_len": 48, "hidden": (64, 64)},
)
# the other benchmark's IPPO settings, ours against the plain PPO update
REFERENCE = {"rollout_len": 48, "num_minibatches": 1, "update_epochs": 4, "hidden": (128, 128)}
CASES["gencos-v0 ippo reference"] = (
    "gencos-v0",
    {},
    {"algo": "ippo", "num_envs": 256, **REFERENCE},
)
CASES["lem-v0 ippo N=10 reference"] = (
    "lem-v0",
    {"num_agents": 10},
    {"algo": "ippo", "num_envs": 64, **REFERENCE},
)
# what our update does beyond the plain one, switched off one at a time (--ablate): the
# difference in cost per sample is what each buys
ABLATIONS = {
    "tanh-Gaussian instead of Beta": {"dist": "tanh_normal"},
    "no observation / reward normalisation": {"normalize_obs": False, "normalize_reward": False},
}


def _median_time(fn, state, repeats: int):
    for _ in range(2):  # warm-up: the first output's types may differ from the input's
        state = jax.block_until_ready(fn(state))
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        state = jax.block_until_ready(fn(state))
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def bench_env_only(env, bank, num_envs: int, rollout_len: int, updates: int, repeats: int):
    """Seconds per update of the env alone: ``rollout_len`` random-action steps of
    ``num_envs`` scenarios, ``updates`` times in one call."""
    runner = make_runner(env, num_envs, rollout_len * updates)
    keys = jax.random.split(jax.random.PRNGKey(0), num_envs)

    def call(k):
        runner(k, bank).block_until_ready()
        return k

    return _median_time(call, keys, repeats) / updates


def bench_plain(env, bank, cfg: TrainConfig, updates: int, repeats: int) -> float:
    """Seconds per update of the plain PPO update at ``cfg``'s batch, epochs and network."""
    init, update = plain_ppo.make(
        env, cfg.num_envs, cfg.rollout_len, cfg.update_epochs, cfg.num_minibatches, cfg.hidden
    )

    @jax.jit
    def chunk(state):
        return jax.lax.scan(lambda s, _: update(s, bank), state, None, updates)[0]

    state = jax.jit(init)(jax.random.PRNGKey(0), bank)
    return _median_time(chunk, state, repeats) / updates


def bench(
    env_id: str,
    env_kw: dict,
    cfg_kw: dict,
    updates: int,
    repeats: int,
    plain: bool = False,
    stages: bool = False,
    floor: bool = False,
) -> dict:
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
    if stages:  # one more chunk under XLA's profiler: op time per stage, per update
        op = profile_update.op_times(compiled, lambda: compiled(runners, *args[:3]))
        extra_stages = {"stages_s_per_update": {k: v / updates for k, v in op.items()}}
    else:
        extra_stages = {}
    per_update = med / updates
    env_s = bench_env_only(env, train.bank, cfg.num_envs, cfg.rollout_len, updates, repeats)
    samples = cfg.env_steps_per_update
    extra = {
        **extra_stages,
        "env_only_update_s": env_s,
        "us_per_sample": 1e6 * per_update / samples,
        "learner_us_per_sample": 1e6 * (per_update - env_s) / samples,
    }
    if floor:  # the networks' passes alone, and the throughput bound they set with the env
        fl = network_floor.update_floor(
            runners.params, env.num_agents, cfg.num_envs, cfg.rollout_len, cfg.update_epochs,
            cfg.num_minibatches,
        )  # fmt: skip
        extra["network_floor_s"] = fl
        extra["floor_agent_steps_per_s"] = samples * env.num_agents / (env_s + fl["total_s"])
    if plain:
        plain_s = bench_plain(env, train.bank, cfg, updates, repeats)
        extra.update(
            plain_update_s=plain_s,
            plain_us_per_sample=1e6 * plain_s / samples,
            plain_learner_us_per_sample=1e6 * (plain_s - env_s) / samples,
            plain_env_steps_per_s=samples / plain_s,
        )
        extra["ratio_update"] = per_update / plain_s
        extra["ratio_learner"] = (per_update - env_s) / max(plain_s - env_s, 1e-12)
    return {
        **extra,
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


def _print_stages(stages: dict[str, float], wall_s: float) -> None:
    total = sum(stages.values())
    print(f"    op time per update {1e3 * total:.1f} ms (wall {1e3 * wall_s:.1f} ms):", flush=True)
    for k, v in stages.items():
        print(f"      {k:<50} {1e3 * v:8.2f} ms {100 * v / max(total, 1e-12):5.1f} %")


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", default="outputs/bench_train")
    ap.add_argument("--updates", type=int, default=10)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--cases", nargs="+", default=list(CASES))
    ap.add_argument(
        "--ablate", action="store_true", help="reference cases: also time ours with each of "
        "ABLATIONS switched off"
    )  # fmt: skip
    ap.add_argument(
        "--stages", action="store_true", help="also profile one chunk of each case with XLA's "
        "profiler: op time per stage of the update (jaxlem.app.profile_update)"
    )  # fmt: skip
    ap.add_argument(
        "--floor", action="store_true", help="also time the actor's and critic's passes alone "
        "at each case's shapes: the update's floor, and with the env's time the most "
        "agent-steps/s any PPO update with that network and batch reaches here "
        "(jaxlem.app.network_floor)"
    )  # fmt: skip
    args = ap.parse_args(argv)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    hw = hardware()
    print(f"hardware: {hw}", flush=True)
    rows = []
    for name in args.cases:
        env_id, env_kw, cfg_kw = CASES[name]
        r = bench(
            env_id, env_kw, cfg_kw, args.updates, args.repeats, "reference" in name, args.stages,
            args.floor,
        )  # fmt: skip
        r["name"] = name
        rows.append(r)
        print(
            f"{name:<28} {r['env_steps_per_s']:>10,.0f} env-steps/s "
            f"{r['agent_steps_per_s']:>12,.0f} agent-steps/s | compile {r['compile_s']:.1f} s | "
            f"B={r['num_envs']} T={r['rollout_len']} epochs={r['update_epochs']} "
            f"minibatches={r['num_minibatches']} | per sample {r['us_per_sample']:.1f} us "
            f"(learner {r['learner_us_per_sample']:.1f})",
            flush=True,
        )
        if "network_floor_s" in r:
            fl = r["network_floor_s"]
            print(
                f"    networks alone: {1e3 * fl['total_s']:.1f} ms per update (actor "
                f"{1e3 * (fl['actor_rollout_s'] + fl['actor_learn_s']):.1f}, critic "
                f"{1e3 * (fl['critic_rollout_s'] + fl['critic_learn_s']):.1f}); env alone "
                f"{1e3 * r['env_only_update_s']:.1f} ms; bound "
                f"{r['floor_agent_steps_per_s']:,.0f} agent-steps/s",
                flush=True,
            )
        if "stages_s_per_update" in r:
            _print_stages(r["stages_s_per_update"], r["median_chunk_s"] / args.updates)
        if args.ablate and "reference" in name:
            r["ablations"] = {}
            for what, kw in ABLATIONS.items():
                a = bench(env_id, env_kw, {**cfg_kw, **kw}, args.updates, args.repeats)
                r["ablations"][what] = a["us_per_sample"]
                print(f"{'  ours, ' + what:<44} per sample {a['us_per_sample']:.1f} us", flush=True)
        if "plain_update_s" in r:
            print(
                f"{'  plain PPO, same batch':<28} {r['plain_env_steps_per_s']:>10,.0f} env-steps/s"
                f" | per sample {r['plain_us_per_sample']:.1f} us (learner "
                f"{r['plain_learner_us_per_sample']:.1f}) | ours / plain: update "
                f"{r['ratio_update']:.2f}x, learner {r['ratio_learner']:.2f}x",
                flush=True,
            )
    (out / "bench_train.json").write_text(json.dumps({"hardware": hw, "rows": rows}, indent=2))
    print(f"wrote {out / 'bench_train.json'}")


if __name__ == "__main__":
    main()
