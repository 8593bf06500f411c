"""GenCos: a Nash reference for the stage game, and how exploitable trained bidders are against it.

1. For a few load levels (base load times 0.6, 0.8, 1.0, 1.15: the range the scenario bank and
   the daily profile cover), every profile of uniform markups on the 11-level grid of
   ``policies.best_response`` is cleared (``jaxlem.envs.gencos.equilibrium``, 11^5 SCEDs per
   level): the
   grid floor of exploitability, the number of pure Nash profiles, the Nash markups and LMP.
2. IPPO and self-play are trained (the study budget of ``train_study.py``: 256 scenarios x 48
   steps per update, 600k env steps, 2 seeds) with both offer parametrisations of gencos-v0
   (``sort`` and ``increments``), then scored on held-out scenarios (the mean exploitability per
   step of the episodes) and at each load level's stage-game state (the exploitability of the
   policy's action there, against the grid floor).

    python experiments/gencos_nash.py [--out experiments/results/gencos_nash] [--quick]
"""

from __future__ import annotations

import argparse
import csv
import json
import sys
import time
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np

import jaxlem
from jaxlem import metrics
from jaxlem.app.hardware import hardware
from jaxlem.envs.gencos import equilibrium, policies
from jaxlem.train import TrainConfig, banks, make_train
from jaxlem.train import evaluate as ev

sys.path.insert(0, str(Path(__file__).resolve().parent))
from train_study import GENCOS, compose  # noqa: E402

LOADS = (0.6, 0.8, 1.0, 1.15)


def references(env, params) -> list[dict]:
    rows = []
    for mult in LOADS:
        t0 = time.perf_counter()
        state = equilibrium.state_at_load(env, params, mult)
        ref = equilibrium.stage_reference(env, params, state, grid=11)
        rows.append(
            {
                "load_mult": mult,
                "load_mw": float(jnp.sum(state.load_next)),
                "grid_floor": ref.floor,
                "pure_nash_profiles": ref.num_pure_nash,
                "nash_markups": " ".join(f"{m:.1f}" for m in ref.best_profile),
                "nash_lmp": ref.nash_lmp,
                "nash_profit_total": float(np.sum(ref.nash_profit)),
                "truthful_exploitability": ref.truthful_exploitability,
                "seconds": time.perf_counter() - t0,
            }
        )
        print(json.dumps(rows[-1]), flush=True)
    return rows


def stage_exploitability(env, params, core, runner) -> list[float]:
    """Exploitability of the trained deterministic action at each load level's state."""
    pol = ev.as_policy(core, runner)
    out = []
    for mult in LOADS:
        state = equilibrium.state_at_load(env, params, mult)
        obs = env.observe(state, params)
        action = pol(jax.random.PRNGKey(0), obs, env, params)
        _, br, profit = policies.best_response(env, params, state, action)
        out.append(float(metrics.exploitability_proxy(br, profit)))
    return out


def train_and_score(algo: str, offer: str, quick: bool) -> dict:
    over = dict(GENCOS)
    if quick:
        over.update({"train.total_timesteps": 50_000, "train.num_envs": 32, "num_seeds": 1})
    cfg = compose("gencos", algo, "learning", **over)
    env = jaxlem.make("gencos-v0", offer_param=offer)
    config = TrainConfig.from_dict(dict(cfg["train"]))
    seeds = int(cfg["num_seeds"])
    t0 = time.perf_counter()
    train = make_train(config, env, env.sample_params(jax.random.PRNGKey(0), config.num_envs))
    keys = jnp.stack([jax.random.PRNGKey(s) for s in range(seeds)])
    runners, _ = jax.jit(jax.vmap(train))(keys)
    jax.block_until_ready(runners)
    wall = time.perf_counter() - t0
    bank = banks.held_out_bank(env, int(cfg["eval_scenarios"]), 0)
    pol = ev.trained_policy(train.core)
    episode, stage = [], []
    for i in range(seeds):
        runner = ev.seed_slice(runners, i)
        k = ev.episode_kpis(env, {"p": (pol, runner)}, bank, 1)["p"]
        episode.append(k)
        stage.append(stage_exploitability(env, env.default_params, train.core, runner))
    pooled = {name: np.concatenate([e[name] for e in episode]) for name in episode[0]}
    stage = np.asarray(stage)
    row = {
        "algo": algo,
        "offer_param": offer,
        "seeds": seeds,
        "env_steps": config.num_updates * config.env_steps_per_update * seeds,
        "train_s": wall,
    }
    for name in ("exploitability", "mean_agent_return", "mean_system_lmp"):
        v = pooled[name]
        row[name] = float(v.mean())
        row[name + "_se"] = float(v.std(ddof=1) / np.sqrt(v.size))
    for j, mult in enumerate(LOADS):
        row[f"stage_expl_{mult}"] = float(stage[:, j].mean())
    print(json.dumps(row), flush=True)
    return row


def write_csv(rows: list[dict], path: Path) -> None:
    with path.open("w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=list(rows[0]))
        w.writeheader()
        w.writerows(rows)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", default="experiments/results/gencos_nash")
    ap.add_argument("--quick", action="store_true", help="a short smoke run")
    args = ap.parse_args()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    env = jaxlem.make("gencos-v0")
    refs = references(env, env.default_params)
    write_csv(refs, out / "stage_reference.csv")
    rows = []
    for algo in ("ippo", "selfplay"):
        for offer in ("sort", "increments"):
            rows.append(train_and_score(algo, offer, args.quick))
            write_csv(rows, out / "trained.csv")
    base = ev.episode_kpis(env, dict(policies.BASELINES), banks.held_out_bank(env, 32, 0), 1)
    baselines = {k: float(v["exploitability"].mean()) for k, v in base.items()}
    meta = {
        "hardware": hardware(),
        "baseline_exploitability": baselines,
    }
    (out / "meta.json").write_text(json.dumps(meta, indent=2))


if __name__ == "__main__":
    main()
