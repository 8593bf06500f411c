"""Learning study (issue: trainers): IPPO and MAPPO on lem-v0 defaults with 3 seeds against the
scripted baselines on held-out scenarios (paired standard errors), and gencos-v0 IPPO and
self-play against truthful and markup bidding with the exploitability proxy of every policy.

    python experiments/train_study.py --out experiments/results/train_study_cpu [--runs ...]

Each run is a ``jaxlem-train`` job (``jaxlem.app.job.run_job``) in ``<out>/runs/<name>/``; the
study keeps ``summary.json``, ``comparison.csv`` and the figures of each run next to a
``study.json`` and ``README.md`` table (checkpoints stay under ``runs/``, not for committing).
"""

from __future__ import annotations

import argparse
import json
import shutil
from pathlib import Path

from omegaconf import OmegaConf

from jaxlem.app.job import run_job

CONFIGS = Path(__file__).resolve().parents[1] / "jaxlem" / "configs"


def compose(env: str, algo: str, experiment: str, **over) -> dict:
    """The same config ``jaxlem-train env=<env> algo=<algo> experiment=<experiment>`` builds."""
    base = OmegaConf.load(CONFIGS / "config.yaml")
    base.pop("defaults", None)
    base.pop("hydra", None)
    cfg = OmegaConf.merge(
        base,
        {"env": OmegaConf.load(CONFIGS / "env" / f"{env}.yaml")},
        {"train": OmegaConf.load(CONFIGS / "algo" / f"{algo}.yaml")},
        {"scenario": OmegaConf.load(CONFIGS / "scenario" / "default.yaml")},
        OmegaConf.load(CONFIGS / "experiment" / f"{experiment}.yaml"),
    )
    cfg = OmegaConf.to_container(cfg, resolve=True)
    for key, value in over.items():
        node = cfg
        *path, last = key.split(".")
        for p in path:
            node = node.setdefault(p, {})
        node[last] = value
    return cfg


GENCOS = {
    "train.num_envs": 256,
    "train.rollout_len": 48,
    "train.total_timesteps": 600_000,
    "num_seeds": 2,
    "train.num_minibatches": 8,
    "train.eval_every": 10,
    "eval_scenarios": 32,
}
KEEP = ("summary.json", "comparison.csv", "learning_curve.png", "episode.png", "kpis.png")
RUNS = {
    "lem_ippo": lambda: compose("lem", "ippo", "learning"),
    "lem_mappo": lambda: compose("lem", "mappo", "learning"),
    "gencos_ippo": lambda: compose("gencos", "ippo", "learning", **GENCOS),
    "gencos_selfplay": lambda: compose("gencos", "selfplay", "learning", **GENCOS),
}


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", default="outputs/train_study")
    ap.add_argument("--runs", nargs="+", default=list(RUNS))
    args = ap.parse_args(argv)
    out = Path(args.out)
    study_file = out / "study.json"
    study = json.loads(study_file.read_text()) if study_file.exists() else {}
    for name in args.runs:
        cfg = RUNS[name]()
        run_dir = out / "runs" / name
        if run_dir.exists():
            shutil.rmtree(run_dir)
        run_dir.mkdir(parents=True)
        (run_dir / "config.yaml").write_text(OmegaConf.to_yaml(cfg))
        print(f"\n=== {name}", flush=True)
        summary = run_job(cfg, run_dir)
        keep = out / name
        keep.mkdir(parents=True, exist_ok=True)
        for f in KEEP:
            if (run_dir / f).exists():
                shutil.copy(run_dir / f, keep / f)
        study[name] = summary
        study_file.write_text(json.dumps(study, indent=2, default=float))
    write_readme(out, study)


def write_readme(out: Path, study: dict) -> None:
    lines = ["# Learning study", ""]
    for name, s in study.items():
        lines += [
            f"## {name}: {s['env']} {s['algo']} ({s['mode']}), {s['num_agents']} agents, "
            f"seeds {s['seeds']}",
            "",
            f"{s['env_steps']:,} env steps in {s['wall_s']:.0f} s "
            f"({s['env_steps_per_s']:,.0f} env-steps/s steady state, first chunk with compile "
            f"{s['first_chunk_s']:.0f} s), {s['hardware'].get('cpu', '')} "
            f"x{s['hardware'].get('cpu_count', '')}, JAX {s['hardware'].get('jax', '')}.",
            "",
        ]
        table = s["comparison"]
        keys = [k for k in next(iter(table.values())) if not k.endswith("_se")]
        lines.append("| policy | " + " | ".join(keys) + " |")
        lines.append("|---|" + "---:|" * len(keys))
        for pol, row in table.items():
            cells = " | ".join(f"{row[k]:.4g} ± {row[k + '_se']:.2g}" for k in keys)
            lines.append(f"| {pol} | {cells} |")
        lines.append("")
        for base, row in s["paired_vs_baselines"].items():
            lines.append(
                f"- trained − {base}: mean agent return {row['diff']:+.4f} ± {row['diff_se']:.4f} "
                f"(paired s.e.; {row['z']:+.1f} s.e.)"
            )
        lines.append("")
    (out / "README.md").write_text("\n".join(lines))


if __name__ == "__main__":
    main()
