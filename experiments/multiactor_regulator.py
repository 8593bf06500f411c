"""Multi-actor market: why the trained regulator trails its fixed rule in scenario 1.

One cell of ``jaxlem-study multiactor`` (scenario 1, regulator on, mixed personas, MAPPO, the
study's budget and seeds) is trained with the regulator's actor stepping at ``--reg-lr-scale``
times the learning rate (``actor_lr_scale_by_type``; the other kinds at 1). In the trained
market every agent keeps its policy while the regulator is replaced by a fixed gouging fine
(both subsidies at half their largest value, as in the fixed rule), on the study's held-out
scenarios:

- ``deterministic``: every agent acts at its policy's mean, as the study evaluates;
- ``stochastic``: every agent samples its action, as in training.

Each fine's welfare is reported against the fine 0.5 (paired over seeds x scenarios), and the
trained regulator's own rates (``trained``) on the same footing; ``vs_rule`` is the trained
regulator against its fixed rule (the study's first table).

    python experiments/multiactor_regulator.py [--reg-lr-scale 1] [--out DIR]
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
from omegaconf import OmegaConf

from jaxlem.app.hardware import hardware
from jaxlem.envs.multiactor import policies
from jaxlem.studies import multiactor as study
from jaxlem.studies.runner import load_config
from jaxlem.train import banks
from jaxlem.train import evaluate as ev
from jaxlem.train.config import TrainConfig
from jaxlem.train.driver import run_training

FINES = (0.5, 0.8, 0.9, 0.95, 0.97, 0.99, 1.0)
REGULATOR = 4  # index of the regulator in the kinds' order


def fixed_fine_policy(core, deterministic: bool):
    """``policy(key, obs, env, params, (runner, rates [3]))``: the trained agents (acting at
    their mean or sampling), the regulator at ``rates`` (NaN: its trained policy)."""

    def policy(key, obs, env, params, state):
        runner, rates = state
        types = core.agents.types(params)[None]
        batched = jax.tree_util.tree_map(lambda x: x[None], params)
        a = core.policy(runner, obs[None], types, key, deterministic, batched)[0]
        fixed = policies.regulator(rates[0], rates[1], rates[2])(key, obs, env, params)
        reg = env.slices.reg
        return a.at[reg].set(jnp.where(jnp.isnan(rates[0]), a[reg], fixed))

    return policy


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--reg-lr-scale", type=float, default=1.0)
    ap.add_argument("--out", default="experiments/results/multiactor_regulator")
    args = ap.parse_args()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    scales = [1.0] * 4 + [args.reg_lr_scale]
    cfg = load_config(
        "multiactor",
        False,
        (
            "grid.scenario=[1]",
            'grid.regulator=["on"]',
            "grid.personas=[mixed]",
            f"train.actor_lr_scale_by_type={scales}",
        ),
    )
    counts = tuple(sorted((k, int(v)) for k, v in cfg.env.items()))
    env = study._env(1, counts)
    setting = (True, list(cfg.persona_mixes.mixed))
    held = study._cell_bank(env, banks.held_out_bank(env, int(cfg.eval_scenarios), 0), *setting)
    tc = TrainConfig.from_dict({**OmegaConf.to_container(cfg.train), "algo": "mappo"})
    bank = study._cell_bank(env, env.sample_params(banks.train_key(0), tc.num_envs), *setting)
    eval_bank = study._cell_bank(env, env.sample_params(banks.eval_key(0), tc.eval_envs), *setting)
    seeds = tuple(range(int(cfg.seeds)))
    t0 = time.perf_counter()
    res = run_training(
        tc,
        env,
        seeds=seeds,
        params=bank,
        eval_params=eval_bank,
        num_chunks=int(cfg.num_chunks),
        log=print,
    )
    core = res["train"].core
    ep_seed = banks.held_out_episode_seed(0)
    runners = [ev.seed_slice(res["runners"], i) for i in seeds]

    kinds = np.asarray(env.kind_of_row)
    mixed = study._mixed(core)
    every = np.ones(env.num_agents, bool)
    gap = []
    for r in runners:
        trained = ev.episode_kpis(env, {"p": (mixed, (r, every))}, held, ep_seed)["p"]
        rule = ev.episode_kpis(env, {"p": (mixed, (r, kinds != REGULATOR))}, held, ep_seed)["p"]
        gap.append(np.asarray(trained["return_regulator"]) - np.asarray(rule["return_regulator"]))
    gap = np.stack(gap).ravel()
    vs_rule = {"mean": float(gap.mean()), "se": float(gap.std(ddof=1) / np.sqrt(gap.size))}
    print(f"trained regulator - fixed rule: {vs_rule['mean']:+.3f} +- {vs_rule['se']:.3f}")

    rows = []
    points = [(f, 0.5, 0.5) for f in FINES] + [(np.nan, 0.0, 0.0)]
    for deterministic in (True, False):
        policy = fixed_fine_policy(core, deterministic)
        welfare = []
        for pt in points:
            per_seed = [
                np.asarray(
                    ev.episode_kpis(
                        env, {"p": (policy, (r, jnp.asarray(pt, jnp.float32)))}, held, ep_seed
                    )["p"]["welfare"]
                )
                for r in runners
            ]
            welfare.append(np.stack(per_seed).ravel())
        for pt, w in zip(points, welfare, strict=True):
            d = w - welfare[0]
            row = {
                "play": "deterministic" if deterministic else "stochastic",
                "regulator": "trained" if np.isnan(pt[0]) else f"fine {pt[0]:g}",
                "welfare": float(w.mean()),
                "vs_fine_0.5": float(d.mean()),
                "se": float(d.std(ddof=1) / np.sqrt(d.size)),
            }
            rows.append(row)
            print(
                f"{row['play']:>13} {row['regulator']:>10}: welfare {row['welfare']:.3f}, "
                f"vs fine 0.5 {row['vs_fine_0.5']:+.3f} +- {row['se']:.3f}"
            )
    tag = f"reg_lr_{args.reg_lr_scale:g}"
    with open(out / f"{tag}.csv", "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=list(rows[0]))
        w.writeheader()
        w.writerows(rows)
    meta = {
        "hardware": hardware(),
        "cell": "s1-regulator_on-mixed",
        "algo": "mappo",
        "seeds": len(seeds),
        "held_out_scenarios": int(cfg.eval_scenarios),
        "actor_lr_scale_by_type": scales,
        "updates": res["updates"],
        "trained_minus_rule": vs_rule,
        "seconds": time.perf_counter() - t0,
    }
    (out / f"{tag}.json").write_text(json.dumps(meta, indent=2))


if __name__ == "__main__":
    main()
