"""Which levers make PPO learn lem-v0: each lever of the main job switched off in turn.

Every variant trains ``--seeds`` seeds (vmapped) for the main job's budget on the same training
bank, then plays the same 64 held-out scenarios with the same keys as the rule-based battery,
DSO only and the perfect-foresight optimum. Reported per variant: gain share (mean over seeds of
each seed's mean over scenarios, +- s.e. over seeds), the paired difference to the rule-based
battery (z over seeds x scenarios), battery throughput, and the held-out return per quarter of
the budget (does the curve still rise at the end?). Writes ``ablation.csv`` and ``ablation.md``
under ``--out``.

    python experiments/learning_ablation.py                 # all variants, 3 seeds
    python experiments/learning_ablation.py --only full,mappo --seeds 1
"""

from __future__ import annotations

import argparse
import csv
import json
import time
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np

import jaxlem
from jaxlem.app.hardware import hardware
from jaxlem.envs.lem import oracle, policies
from jaxlem.train import banks
from jaxlem.train import evaluate as ev
from jaxlem.train.config import TrainConfig
from jaxlem.train.ppo import make_train

# the main job (configs/algo/ippo.yaml, configs/experiment/default.yaml)
FULL = dict(
    algo="ippo",
    total_timesteps=500_000,
    num_envs=64,
    rollout_len=24,
    lr=1e-3,
    reward_norm="agent",
    residual="auto",
    action_mask=True,
    eval_every=10,
    eval_envs=16,
)
# name: (train overrides, env overrides, what is switched)
VARIANTS = {
    "full": ({}, {}, "main job: every lever on"),
    "mappo": ({"algo": "mappo"}, {}, "MAPPO critic (pooled world state)"),
    "no_residual": ({"residual": ""}, {}, "actor acts alone (no rule to adjust)"),
    "batch_reward_norm": ({"reward_norm": "batch"}, {}, "one return scale for all agents"),
    "no_action_mask": ({"action_mask": False}, {}, "irrelevant columns stay in the loss"),
    "no_day_ahead_obs": ({}, {"day_ahead_obs": False}, "no rest-of-day tariff and forecasts"),
    "lr_3e-4": ({"lr": 3e-4}, {}, "learning rate 3e-4 instead of 1e-3"),
    "before_mappo": (
        {"algo": "mappo", "residual": "", "reward_norm": "batch", "action_mask": False, "lr": 3e-4},
        {"day_ahead_obs": False},
        "every lever off, MAPPO (does the critic change anything there?)",
    ),
    "before": (
        {"residual": "", "reward_norm": "batch", "action_mask": False, "lr": 3e-4},
        {"day_ahead_obs": False},
        "every lever off (the trainer before this study)",
    ),
}


def references(env, bank, seed: int) -> dict[str, np.ndarray]:
    s = ev.episode_kpis(
        env,
        {"dso_only": policies.dso_only, "rule": policies.rule_based_battery},
        bank,
        seed,
    )
    return {
        "dso": s["dso_only"]["mean_agent_return"],
        "rule": s["rule"]["mean_agent_return"],
        "best": ev.optimum_kpis(env, bank, seed)["mean_agent_return"],
    }


def train_and_score(env, cfg: TrainConfig, seeds: int, bank, refs: dict) -> dict:
    """Train ``seeds`` seeds of ``cfg`` on ``env`` and score them on the held-out ``bank``
    against the references (``dso``, ``rule``, ``best`` per scenario)."""
    t0 = time.perf_counter()
    train = make_train(cfg, env, env.sample_params(jax.random.PRNGKey(0), cfg.num_envs))
    keys = jnp.stack([jax.random.PRNGKey(s) for s in range(seeds)])
    runners, metrics = jax.jit(jax.vmap(train))(keys)
    jax.block_until_ready(runners)
    wall = time.perf_counter() - t0
    pol = ev.trained_policy(train.core)
    gains, diffs, thr = [], [], []
    for i in range(seeds):
        k = ev.episode_kpis(env, {"p": (pol, ev.seed_slice(runners, i))}, bank, 1)["p"]
        ret = k["mean_agent_return"]
        gains.append(np.asarray(oracle.gain_share(ret, refs["dso"], refs["best"])).mean())
        diffs.append(ret - refs["rule"])
        thr.append(k["battery_throughput_kwh"].mean())
    d = np.concatenate(diffs)
    curve = np.asarray(metrics["eval_return"])
    curve = curve[:, ~np.isnan(curve[0])]
    q = max(curve.shape[1] // 4, 1)
    quarters = [float(curve[:, j * q : (j + 1) * q].mean()) for j in range(4)]
    gains = np.asarray(gains)
    last = max(curve.shape[1] // 10, 1)
    tail = {
        k: float(np.mean(np.asarray(metrics[k])[:, -10 * last :]))
        for k in ("explained_variance", "approx_kl", "clip_frac", "entropy")
    }
    se = float(d.std(ddof=1) / np.sqrt(d.size)) if d.size > 1 else 0.0
    return {
        "seeds": seeds,
        "gain_share": float(gains.mean()),
        "gain_share_se": float(gains.std(ddof=1) / np.sqrt(seeds)) if seeds > 1 else 0.0,
        "vs_rule": float(d.mean()),
        "vs_rule_z": float(d.mean() / se) if se > 0 else 0.0,
        "battery_throughput_kwh": float(np.mean(thr)),
        **{f"eval_q{j + 1}": quarters[j] for j in range(4)},
        "rule_gain_share": float(
            np.asarray(oracle.gain_share(refs["rule"], refs["dso"], refs["best"])).mean()
        ),
        **{f"final_{k}": v for k, v in tail.items()},
        "train_s": wall,
    }


def run_variant(name: str, seeds: int, scenarios: int, refs_cache: dict) -> dict:
    train_kw, env_kw, what = VARIANTS[name]
    env = jaxlem.make("lem-v0", **env_kw)
    bank = banks.held_out_bank(env, scenarios, 0)
    key = json.dumps(env_kw, sort_keys=True)
    if key not in refs_cache:
        refs_cache[key] = references(env, bank, 1)
    cfg = TrainConfig(**{**FULL, **train_kw})
    row = train_and_score(env, cfg, seeds, bank, refs_cache[key])
    return {"variant": name, "switched": what, **row}


def write_markdown(rows: list[dict], path: Path) -> None:
    head = (
        "| variant | what is switched | gain share | vs rule (paired z) | battery kWh | "
        "held-out return q1 → q4 | critic expl. var. |\n|---|---|---|---|---|---|---|\n"
    )
    lines = [
        f"| {r['variant']} | {r['switched']} | {r['gain_share']:.3f} ± {r['gain_share_se']:.3f} "
        f"| {r['vs_rule']:+.3f} ({r['vs_rule_z']:+.1f}) | {r['battery_throughput_kwh']:.0f} | "
        f"{r['eval_q1']:.3f} → {r['eval_q4']:.3f} | {r['final_explained_variance']:.3f} |"
        for r in rows
    ]
    path.write_text(head + "\n".join(lines) + "\n")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seeds", type=int, default=3)
    ap.add_argument("--scenarios", type=int, default=64)
    ap.add_argument("--only", default="", help="comma-separated variants (default: all)")
    ap.add_argument("--out", default="experiments/results/learning")
    args = ap.parse_args()
    names = [n for n in args.only.split(",") if n] or list(VARIANTS)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    csv_path = out / "ablation.csv"
    rows = []
    if csv_path.exists():  # resume: keep finished variants
        with csv_path.open() as f:
            rows = [
                {k: (v if k in ("variant", "switched") else float(v)) for k, v in r.items()}
                for r in csv.DictReader(f)
            ]
    done = {r["variant"] for r in rows}
    cache: dict = {}
    for name in names:
        if name in done:
            continue
        row = run_variant(name, args.seeds, args.scenarios, cache)
        rows.append(row)
        print(json.dumps(row), flush=True)
        with csv_path.open("w", newline="") as f:
            w = csv.DictWriter(f, fieldnames=list(row))
            w.writeheader()
            w.writerows(rows)
        write_markdown(rows, out / "ablation.md")
    meta = {
        "hardware": hardware(),
        "config": FULL,
    }
    (out / "ablation_meta.json").write_text(json.dumps(meta, indent=2))


if __name__ == "__main__":
    main()
