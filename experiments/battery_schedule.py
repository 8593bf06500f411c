"""What the trained agents do with their batteries: community charge and discharge by hour of
the day for the trained main-job policy, the rule-based battery and the perfect-foresight
optimum, averaged over the same 64 held-out scenarios and keys.

    python experiments/battery_schedule.py [--out experiments/results/learning]
"""

from __future__ import annotations

import argparse
import csv
from pathlib import Path

import jax
import matplotlib
import numpy as np

import jaxlem
from jaxlem import oracle, policies
from jaxlem.rollout import rollout
from jaxlem.train import evaluate as ev
from jaxlem.train.config import TrainConfig
from jaxlem.train.ppo import make_train

matplotlib.use("Agg")
import sys  # noqa: E402

import matplotlib.pyplot as plt  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parent))
from learning_ablation import FULL  # noqa: E402


def hourly(env, policy, bank, keys):
    """Mean over scenarios of the community's charge, discharge, P2P volume and imports [T]."""

    def episode(k, p):
        _, info = rollout(env, policy, k, p)
        return (
            info["charge_kwh"].sum(-1),
            info["discharge_kwh"].sum(-1),
            info["p2p_volume_kwh"],
            info["import_kwh"],
        )

    out = jax.jit(jax.vmap(episode))(keys, bank)
    return [np.asarray(v).mean(0) for v in out]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", default="experiments/results/learning")
    args = ap.parse_args()
    out = Path(args.out)
    env = jaxlem.make("lem-v0")
    cfg = TrainConfig(**FULL)
    train = make_train(cfg, env, env.sample_params(jax.random.PRNGKey(0), cfg.num_envs))
    runner, _ = jax.jit(train)(jax.random.PRNGKey(0))
    bank = ev.held_out_bank(env, 64, 0)
    keys = jax.random.split(jax.random.PRNGKey(1), 64)
    trained = ev.as_policy(train.core, runner)
    rows = {
        "trained": hourly(env, trained, bank, keys),
        "rule_based_battery": hourly(env, policies.rule_based_battery, bank, keys),
    }
    opt = jax.jit(jax.vmap(lambda k, p: oracle.perfect_foresight(env, p, k)))(keys, bank)
    rows["perfect_foresight"] = [
        np.asarray(opt.charge_kwh.sum(-1)).mean(0),
        np.asarray(opt.discharge_kwh.sum(-1)).mean(0),
        np.full(env.num_steps, np.nan),
        np.asarray(opt.import_kwh).mean(0),
    ]
    with (out / "battery_schedule.csv").open("w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["policy", "hour", "charge_kwh", "discharge_kwh", "p2p_kwh", "import_kwh"])
        for name, (c, d, v, i) in rows.items():
            for h in range(env.num_steps):
                w.writerow([name, h, f"{c[h]:.3f}", f"{d[h]:.3f}", f"{v[h]:.3f}", f"{i[h]:.3f}"])
    fig, axes = plt.subplots(1, 2, figsize=(9, 3.2), sharey=True)
    for name, (c, d, _, _) in rows.items():
        axes[0].plot(c, label=name)
        axes[1].plot(d, label=name)
    axes[0].set_title("community charge (kWh per step)")
    axes[1].set_title("community discharge (kWh per step)")
    for ax in axes:
        ax.set_xlabel("hour of day")
    axes[0].legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(out / "battery_schedule.png", dpi=90)
    for name, (c, d, _, i) in rows.items():
        print(
            f"{name}: throughput {c.sum() + d.sum():.1f} kWh, night discharge (0-6h) "
            f"{d[:7].sum():.1f}, peak discharge (17-21h) {d[17:22].sum():.1f}, "
            f"imports {i.sum():.1f} kWh"
        )


if __name__ == "__main__":
    main()
