"""``jaxlem-study case7-scalability``: how the env and every training mode and algorithm scale
with the number of agents N (config: ``jaxlem/configs/study/case7-scalability.yaml``).

Two kinds of cell:

- ``env-N<n>``: random-action rollouts of ``lem-v0`` (``jaxlem.app.bench``): compile time,
  steady env-steps/s and agent-steps/s, XLA's memory of the compiled rollout. For N in the
  training grid it also plays the held-out scenarios with the scripted baselines and, up to the
  optimum's size limit, the perfect-foresight optimum (the references of the KPIs).
- ``<mode>-<algo>-N<n>``: one training cell. Modes: DTDE (one policy per agent's own view),
  CTDE (centralised critic), CTCE (one joint policy); algorithms: PPO, APPO (V-trace, a
  behaviour lag of one update), SAC (MASAC under CTDE). A cell compiles the trainer's chunk of
  updates (``lower`` + ``compile``: the compile time, and XLA's memory analysis of the compiled
  program: arguments, outputs and temporaries), runs a warm-up chunk and timed chunks (median:
  the steady state), then plays the held-out scenarios with the trained policy (KPIs against
  N). A cell whose compiled update needs more than ``memory_fraction`` of the device's memory
  is listed, not run; so is a CTCE cell above its joint networks' limit, with the reason.

The scenario batch shrinks as N grows (``batch``), so that an update moves a similar number of
agent-steps; each cell's batch is in the report.
"""

from __future__ import annotations

import functools
import statistics
import time
from typing import Any

import jax
import numpy as np
from omegaconf import DictConfig, OmegaConf

import jaxlem
from jaxlem.app import bench
from jaxlem.envs.lem import oracle, policies
from jaxlem.studies import case7_report, lem_cells
from jaxlem.train import banks, capacity, make_train
from jaxlem.train import evaluate as ev
from jaxlem.train.config import TrainConfig
from jaxlem.train.views import action_head

CLEAR_CACHES = True  # every cell compiles programs of its own shapes
ENV_ID = "lem-v0"
# mode -> algorithm -> trainer settings
MODES: dict[str, dict[str, dict[str, Any]]] = {
    "DTDE": {"PPO": {"algo": "ippo"}, "APPO": {"algo": "appo"}, "SAC": {"algo": "sac"}},
    "CTDE": {
        "PPO": {"algo": "mappo"},
        "APPO": {"algo": "mappo", "off_policy_lag": 1},
        "SAC": {"algo": "masac"},
    },
    "CTCE": {"PPO": {"algo": "ctce"}, "APPO": {"algo": "ctce", "off_policy_lag": 1}},
}
# mode x algorithm cells jaxlem does not have, with the reason (listed in the report)
ABSENT = {("CTCE", "SAC"): "not implemented: jaxlem has no joint-action SAC"}
KPIS = ("mean_agent_return", "p2p_share", "self_sufficiency", "price_volatility")
REFERENCES = ("rule_based_battery", "dso_only")
# the perfect-foresight optimum (the gain share's reference) is solved up to this N: its LP is
# dense ([T (N + 1), 4 T (N + 1)]), and on a 2-core CPU 16 scenarios take about 2 min at
# N = 50 and, growing as N^3, about 15 min at N = 100
OPTIMUM_AGENTS = 50


def cells(cfg: DictConfig) -> list[str]:
    out = [f"env-N{int(n)}" for n in cfg.env_agents]
    for n in cfg.train_agents:
        for mode in cfg.modes:
            for algo in cfg.algos:
                if (mode, algo) not in ABSENT:
                    out.append(f"{mode}-{algo}-N{int(n)}")
    return out


def parse(cell: str) -> tuple[str, str, int]:
    """(mode, algo, N); mode is "env" for the env cells."""
    head, _, n = cell.rpartition("-N")
    mode, _, algo = head.partition("-")
    return mode, algo, int(n)


def batch(n: int, agent_steps: int, steps: int, max_batch: int, min_batch: int = 1) -> int:
    """Scenarios per call: the largest power of two <= agent_steps / (N * steps), in
    [min_batch, max_batch]."""
    b = max(1, agent_steps // (n * steps))
    return int(min(max_batch, max(min_batch, 2 ** int(np.floor(np.log2(b))))))


@functools.lru_cache(maxsize=2)
def _env(n: int) -> Any:
    return jaxlem.make(ENV_ID, num_agents=n)


def _eval_scenarios(cfg: DictConfig, n: int) -> int:
    return int(max(2, min(int(cfg.eval_scenarios), int(cfg.eval_agents) // n)))


def _held_out(cfg: DictConfig, env: Any) -> Any:
    sub = OmegaConf.create({"eval_scenarios": _eval_scenarios(cfg, env.num_agents)})
    return lem_cells.held_out(env, sub)


def _kpis(samples: dict[str, np.ndarray]) -> dict[str, list[float]]:
    return {k: np.asarray(samples[k], np.float64).tolist() for k in KPIS}


def run_cell(cfg: DictConfig, cell: str, log) -> dict:
    mode, algo, n = parse(cell)
    if mode == "env":
        return run_env(cfg, n, log)
    return run_train(cfg, mode, algo, n, log)


def run_env(cfg: DictConfig, n: int, log) -> dict:
    b = batch(n, int(cfg.env_agent_steps), int(cfg.env_steps), int(cfg.max_batch), 2)
    row = bench.bench_one(ENV_ID, n, b, int(cfg.env_steps), int(cfg.repeats))
    log(
        f"  env N={n} B={b}: {row['agent_steps_per_s']:,.0f} agent-steps/s, compile "
        f"{row['compile_s']:.1f} s"
    )
    out: dict[str, Any] = {"bench": row}
    if n in [int(x) for x in cfg.train_agents]:
        env = _env(n)
        held = _held_out(cfg, env)
        seed = banks.held_out_episode_seed(0)
        out["baselines"] = {
            name: _kpis(lem_cells.play(env, ev.stateless(policies.BASELINES[name]), held, seed))
            for name in REFERENCES
        }
        if n <= min(OPTIMUM_AGENTS, oracle.MAX_AGENTS):
            best = lem_cells.optimum(env, held, seed)
            out["optimum"] = {"mean_agent_return": best["mean_agent_return"].tolist()}
    return out


def train_config(cfg: DictConfig, mode: str, algo: str, n: int) -> TrainConfig:
    """The cell's trainer: the study's PPO or SAC block, the mode's overrides, the N-sized
    batch and a budget of ``warmup_calls + timed_calls`` chunks."""
    settings = dict(MODES[mode][algo])
    sac = settings["algo"] in ("sac", "masac")
    base = OmegaConf.to_container(cfg.sac if sac else cfg.ppo)
    extra = OmegaConf.to_container(cfg.get(mode.lower(), OmegaConf.create({})))
    steps = int(cfg.rollout_len)
    b = batch(n, int(cfg.train_agent_steps), steps, int(cfg.max_batch))
    calls = int(cfg.warmup_calls) + int(cfg.timed_calls)
    total = calls * int(cfg.updates_per_call) * b * steps
    if sac:  # replay rows hold all N agents: a gradient step's batch of rows shrinks with N
        rows = int(cfg.sac_batch_agents) // n
        base["batch_size"] = int(min(int(base.get("batch_size", 256)), max(1, rows)))
    return TrainConfig.from_dict(
        {
            **base,
            **extra,
            **settings,
            "num_envs": b,
            "rollout_len": steps,
            "total_timesteps": total,
            "eval_every": 0,
        }  # fmt: skip
    )


def chunk_updates(tc: TrainConfig, cfg: DictConfig) -> int:
    """Updates per timed call: SAC's update is one env step of the batch, PPO's a rollout, so
    a SAC chunk has ``rollout_len`` times as many (the same env steps per call)."""
    per = int(cfg.updates_per_call)
    return per * tc.rollout_len if tc.is_sac else per


def run_train(cfg: DictConfig, mode: str, algo: str, n: int, log) -> dict:
    env = _env(n)
    tc = train_config(cfg, mode, algo, n)
    try:
        train = make_train(tc, env)
    except ValueError as e:  # CTCE above its joint networks' memory limit
        log(f"  not run: {e}")
        return {"skipped": "agent limit", "reason": str(e), "batch": tc.num_envs}
    core = train.core
    runners = core.init(np.asarray(jax.random.PRNGKey(0))[None], train.bank, train.hyper)
    chunk = chunk_updates(tc, cfg)
    t0 = time.perf_counter()
    compiled = core.run.lower(runners, train.bank, train.eval_bank, train.hyper, chunk).compile()
    compile_s = time.perf_counter() - t0
    mem = bench.xla_memory(compiled)
    budget = float(cfg.memory_fraction) * capacity.device_memory_bytes()
    base = {"batch": tc.num_envs, "rollout_len": tc.rollout_len, "chunk_updates": chunk,
            "compile_s": compile_s, **mem}  # fmt: skip
    if mem.get("peak_bytes", 0.0) > budget:
        reason = (
            f"memory: the compiled update needs {mem['peak_bytes'] / 2**30:.1f} GiB, above "
            f"memory_fraction={float(cfg.memory_fraction):g} of this device's "
            f"{capacity.device_memory_bytes() / 2**30:.1f} GiB"
        )
        log(f"  not run: {reason}")
        return {"skipped": "memory", "reason": reason, **base}
    calls = []
    for _ in range(int(cfg.warmup_calls) + int(cfg.timed_calls)):
        tc0 = time.perf_counter()
        runners, metrics = compiled(runners, train.bank, train.eval_bank, train.hyper)
        jax.block_until_ready(runners)
        calls.append(time.perf_counter() - tc0)
    med = statistics.median(calls[int(cfg.warmup_calls) :])
    env_steps = chunk * tc.env_steps_per_update
    te = time.perf_counter()
    held = _held_out(cfg, env)
    seed = banks.held_out_episode_seed(0)
    trained = lem_cells.play(env, ev.trained_policy(core), held, seed, ev.seed_slice(runners, 0))
    eval_s = time.perf_counter() - te
    rate = env_steps / med
    log(
        f"  {mode} {algo} N={n} B={tc.num_envs}: compile {compile_s:.1f} s, "
        f"{rate:,.0f} env-steps/s = {rate * n:,.0f} agent-steps/s, "
        f"memory {mem.get('peak_bytes', float('nan')) / 2**20:,.0f} MiB"
    )
    return {
        **base,
        "median_call_s": med,
        "env_steps_per_call": env_steps,
        "env_steps_per_s": rate,
        "agent_steps_per_s": rate * n,
        "train_wall_s": compile_s + sum(calls),
        "eval_s": eval_s,
        "final_return": float(np.mean(np.asarray(metrics.get("episode_return", np.nan))[-1])),
        "kpis": _kpis(trained),
    }


# ---------------------------------------------------------------------------- report


def _mean_se(x: np.ndarray) -> tuple[float, float]:
    x = np.asarray(x, np.float64)
    return float(x.mean()), float(x.std(ddof=1) / np.sqrt(x.size)) if x.size > 1 else 0.0


def env_rows(results: dict) -> list[dict]:
    out = []
    for cell, r in results.items():
        mode, _, n = parse(cell)
        if mode != "env":
            continue
        b = r["bench"]
        mem = (b.get("xla_temp_mb", 0.0) + b.get("xla_args_mb", 0.0)) * 2**20
        out.append({"N": n, "batch": b["batch"], "compile_s": b["compile_s"],
                    "env_steps_per_s": b["env_steps_per_s"],
                    "agent_steps_per_s": b["agent_steps_per_s"],
                    "step_time_s": b["step_time_s"], "memory_bytes": mem,
                    "memory_per_agent_bytes": mem / (n * b["batch"])})  # fmt: skip
    return sorted(out, key=lambda r: r["N"])


def train_rows(results: dict) -> list[dict]:
    """One row per training cell: timings, memory, status and the KPIs (mean, s.e. over the
    held-out scenarios; the gain share against the same episodes' optimum where it exists)."""
    refs = {parse(c)[2]: r for c, r in results.items() if parse(c)[0] == "env"}
    out = []
    for cell, r in results.items():
        mode, algo, n = parse(cell)
        if mode == "env":
            continue
        row: dict[str, Any] = {"mode": mode, "algo": algo, "N": n, "batch": r.get("batch"),
                               "status": r.get("skipped", "run")}  # fmt: skip
        if "skipped" in r:
            row["reason"] = r["reason"]
            out.append(row)
            continue
        row.update(
            {
                k: r[k]
                for k in (
                    "compile_s",
                    "env_steps_per_s",
                    "agent_steps_per_s",
                    "train_wall_s",
                    "median_call_s",
                    "env_steps_per_call",
                )
            }
        )
        row["time_per_agent_s"] = r["train_wall_s"] / n
        # one PPO update's worth of env steps (B x rollout_len), for every algorithm
        row["update_s"] = (
            r["median_call_s"] * r["batch"] * r["rollout_len"] / r["env_steps_per_call"]
        )
        row["memory_bytes"] = r.get("peak_bytes", float("nan"))
        row["memory_per_agent_bytes"] = row["memory_bytes"] / n
        for k in KPIS:
            row[k], row[k + "_se"] = _mean_se(r["kpis"][k])
        ref = refs.get(n, {})
        if "optimum" in ref:
            null = np.asarray(ref["baselines"]["dso_only"]["mean_agent_return"])
            best = np.asarray(ref["optimum"]["mean_agent_return"])
            gain = ev.gain_share(np.asarray(r["kpis"]["mean_agent_return"]), null, best)
            row["gain_share"], row["gain_share_se"] = _mean_se(gain)
        out.append(row)
    return sorted(out, key=lambda r: (r["mode"], r["algo"], r["N"]))


def reference_rows(results: dict) -> list[dict]:
    """The rule-based battery's KPIs per N (and its gain share), from the env cells."""
    out = []
    for cell, r in results.items():
        mode, _, n = parse(cell)
        if mode != "env" or "baselines" not in r:
            continue
        rule = r["baselines"]["rule_based_battery"]
        row: dict[str, Any] = {"N": n}
        for k in KPIS:
            row[k], row[k + "_se"] = _mean_se(rule[k])
        if "optimum" in r:
            gain = ev.gain_share(np.asarray(rule["mean_agent_return"]),
                                 np.asarray(r["baselines"]["dso_only"]["mean_agent_return"]),
                                 np.asarray(r["optimum"]["mean_agent_return"]))  # fmt: skip
            row["gain_share"], row["gain_share_se"] = _mean_se(gain)
        out.append(row)
    return sorted(out, key=lambda r: r["N"])


def ctce_limit(cfg: DictConfig) -> dict[str, Any]:
    """CTCE's agent limit on this device for the study's joint networks (lem-v0)."""
    env = _env(1)
    tc = train_config(cfg, "CTCE", "PPO", 1)
    obs = env.observation_space().shape[-1]
    out_per_agent = action_head(tc, env).out_dim  # one agent: the joint head's share per agent
    memory = capacity.device_memory_bytes()
    budget = tc.ctce_memory_fraction * memory
    return {"max_agents": capacity.max_joint_agents(obs, out_per_agent, tc.hidden, budget),
            "fraction": tc.ctce_memory_fraction, "memory_bytes": memory,
            "hidden": list(tc.hidden)}  # fmt: skip


def report(cfg: DictConfig, results: dict, out, meta: dict) -> None:
    case7_report.write(
        cfg, out, meta,
        env=env_rows(results), train=train_rows(results), refs=reference_rows(results),
        absent=[{"mode": m, "algo": a, "reason": why} for (m, a), why in ABSENT.items()
                if m in cfg.modes and a in cfg.algos],
        ctce=ctce_limit(cfg), kpis=(*KPIS, "gain_share"),
    )  # fmt: skip
