"""Case 5 (storage presets): the main job's learner on every case-5 preset, against the
rule-based battery, zero intelligence and the perfect-foresight optimum.

Each preset trains the main job's configuration (``learning_ablation.FULL``) with ``--seeds``
seeds on its own scenario bank and plays 64 held-out scenarios of the preset with the same keys
as the baselines. Writes ``case5.csv`` and ``case5.md`` under ``--out``.

    python experiments/case5_learning.py [--seeds 2] [--out experiments/results/learning]
"""

from __future__ import annotations

import argparse
import csv
import json
import sys
from pathlib import Path

import numpy as np

import jaxlem
from jaxlem.envs.lem import oracle, policies, scenarios
from jaxlem.train import banks
from jaxlem.train import evaluate as ev
from jaxlem.train.config import TrainConfig

sys.path.insert(0, str(Path(__file__).resolve().parent))
from learning_ablation import FULL, references, train_and_score  # noqa: E402

PRESETS = [n for n in scenarios.names() if n.startswith("case5-")]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seeds", type=int, default=2)
    ap.add_argument("--scenarios", type=int, default=64)
    ap.add_argument("--out", default="experiments/results/learning")
    ap.add_argument("--quick", action="store_true", help="a short smoke run")
    args = ap.parse_args()
    cfg = TrainConfig(**{**FULL, **({"total_timesteps": 2 * 64 * 24} if args.quick else {})})
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    rows = []
    for name in PRESETS[:1] if args.quick else PRESETS:
        env = jaxlem.make("lem-v0", scenario=name)
        bank = banks.held_out_bank(env, args.scenarios, 0)
        refs = references(env, bank, 1)
        zi = ev.episode_kpis(env, {"zi": policies.zero_intelligence}, bank, 1)["zi"]
        has_bat = bool(np.asarray(env.default_params.bat_kwh).sum() > 0)
        row = {"preset": name, "batteries": has_bat, "num_agents": env.num_agents}
        row.update(train_and_score(env, cfg, args.seeds, bank, refs))
        row["zi_gain_share"] = float(
            np.asarray(oracle.gain_share(zi["mean_agent_return"], refs["dso"], refs["best"])).mean()
        )
        rows.append(row)
        print(json.dumps(row), flush=True)
        with (out / "case5.csv").open("w", newline="") as f:
            w = csv.DictWriter(f, fieldnames=list(row))
            w.writeheader()
            w.writerows(rows)
    lines = [
        "| preset | batteries | trained gain share | rule-based battery | zero intelligence | "
        "trained − rule (paired z) |",
        "|---|---|---|---|---|---|",
    ]
    for r in rows:
        lines.append(
            f"| {r['preset']} | {'yes' if r['batteries'] else 'no'} | {r['gain_share']:.3f} ± "
            f"{r['gain_share_se']:.3f} | {r['rule_gain_share']:.3f} | {r['zi_gain_share']:.3f} "
            f"| {r['vs_rule']:+.3f} ({r['vs_rule_z']:+.1f}) |"
        )
    (out / "case5.md").write_text("\n".join(lines) + "\n")


if __name__ == "__main__":
    main()
