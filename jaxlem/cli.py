"""Console entry points.

``jaxlem-baselines``: the scripted baselines (random, zero intelligence, ZI-C,
rule-based battery, DSO only) on a bank of held-out scenarios of the default market; prints a KPI
table and writes ``config.json``, ``kpis.csv``, ``summary.json`` and figures to a results folder.
"""

from __future__ import annotations

import argparse
import csv
import json
import time
from datetime import datetime
from pathlib import Path

import jax
import numpy as np

from jaxlem.train import evaluate as ev

TABLE_KEYS = (
    "mean_agent_return",
    "gain_share",
    "community_cost",
    "savings",
    "p2p_share",
    "self_sufficiency",
    "clearing_price_mean",
    "price_volatility",
    "hhi_sales",
    "gini_profit",
)


def run_baselines(
    env, params_bank, seed: int, policies: dict, log=print
) -> tuple[dict[str, dict[str, float]], dict[str, dict]]:
    """Evaluate each policy for one episode per scenario; returns (KPI table, scenario-0 traces)."""
    from jaxlem import metrics
    from jaxlem.rollout import rollout

    num = jax.tree_util.tree_leaves(params_bank)[0].shape[0]
    keys = jax.random.split(jax.random.PRNGKey(seed), num)
    table, traces, returns = {}, {}, {}
    for i, (name, policy) in enumerate(policies.items()):
        t0 = time.perf_counter()

        def episode(k, p, policy=policy):
            rewards, infos = rollout(env, policy, k, p)
            return metrics.lem_episode_kpis(infos, rewards), {k: infos[k] for k in _TRACE_KEYS}

        kpis, trace = jax.block_until_ready(jax.jit(jax.vmap(episode))(keys, params_bank))
        dt = time.perf_counter() - t0
        row = {}
        for k, v in kpis.items():
            v = np.asarray(v, np.float64)
            row[k] = float(v.mean())
            row[k + "_se"] = float(v.std(ddof=1) / np.sqrt(len(v))) if len(v) > 1 else 0.0
        table[name] = row
        returns[name] = np.asarray(kpis["mean_agent_return"], np.float64)
        traces[name] = {k: np.asarray(v[0]) for k, v in trace.items()}
        steps = num * env.num_steps
        log(
            f"[{i + 1}/{len(policies)}] {name:<20} {num} episodes, {steps} env-steps in "
            f"{dt:5.1f} s (incl. compile) | mean agent return {row['mean_agent_return']:+.3f}"
        )
    if "dso_only" in returns:
        t0 = time.perf_counter()
        samples = {name: {"mean_agent_return": r} for name, r in returns.items()}
        table["perfect_foresight"] = ev.optimum_row(env, params_bank, seed, samples)
        for name, v in samples.items():
            table[name].update(ev.summarize({"gain_share": v["gain_share"]}))
        log(
            f"perfect foresight (community LP): mean agent return "
            f"{table['perfect_foresight']['mean_agent_return']:+.3f} "
            f"({time.perf_counter() - t0:.1f} s incl. compile)"
        )
    return table, traces


_TRACE_KEYS = ("fit", "utility", "clearing_price", "p2p_volume_kwh", "soc")


def format_table(table: dict[str, dict[str, float]], keys=TABLE_KEYS) -> str:
    head = f"{'policy':<20}" + "".join(f"{k:>20}" for k in keys)
    lines = [head, "-" * len(head)]
    for name, row in table.items():
        cells = "".join(
            f"{row[k]:>13.4g} ±{row[k + '_se']:<6.2g}" if k in row else f"{'-':>20}" for k in keys
        )
        lines.append(f"{name:<20}{cells}")
    return "\n".join(lines)


def baselines_main(argv: list[str] | None = None) -> None:
    """``jaxlem-baselines``: scripted baselines on held-out scenarios of ``lem-v0``."""
    import jaxlem
    from jaxlem import policies, viz

    ap = argparse.ArgumentParser(description=baselines_main.__doc__)
    ap.add_argument("--num-agents", type=int, default=10)
    ap.add_argument("--scenarios", type=int, default=64, help="held-out scenarios (batch)")
    ap.add_argument("--rule", default=None, help="pricing rule (default: the preset's or average)")
    ap.add_argument("--scenario", default=None, help="preset name, e.g. case2-monopoly")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", default=None, help="results folder (default outputs/baselines/<time>)")
    args = ap.parse_args(argv)

    kwargs = {"rule": args.rule} if args.rule else {}
    if args.scenario:
        env = jaxlem.make("lem-v0", scenario=args.scenario, **kwargs)
    else:
        env = jaxlem.make("lem-v0", num_agents=args.num_agents, **kwargs)
    out = Path(args.out or f"outputs/baselines/{datetime.now():%Y-%m-%d/%H-%M-%S}")
    out.mkdir(parents=True, exist_ok=True)
    config = {
        **vars(args),
        "num_agents": env.num_agents,
        "jax": jax.__version__,
        "backend": jax.default_backend(),
    }
    (out / "config.json").write_text(json.dumps(config, indent=2))
    print(
        f"lem-v0: {env.num_agents} agents, rule={env.rule}, {args.scenarios} held-out scenarios "
        f"(seed {args.seed + 1}), backend {jax.default_backend()}",
        flush=True,
    )
    # held-out: the scenario bank is drawn from a key the default params never use
    bank = env.sample_params(jax.random.PRNGKey(10_000 + args.seed), args.scenarios)
    table, traces = run_baselines(
        env, bank, args.seed + 1, policies.BASELINES, log=lambda s: print(s, flush=True)
    )
    print()
    print(format_table(table))

    with open(out / "kpis.csv", "w", newline="") as fh:
        keys = sorted(next(iter(table.values())))
        w = csv.writer(fh)
        w.writerow(["policy", *keys])
        for name, row in table.items():
            w.writerow([name, *(row.get(k, "") for k in keys)])
    (out / "summary.json").write_text(json.dumps({"config": config, "kpis": table}, indent=2))
    viz.lem_episode(
        {k: traces[k] for k in ("zero_intelligence", "rule_based_battery", "dso_only")},
        out / "episode.png",
        env.dt_h,
    )
    bars = ["mean_agent_return", "gain_share", "p2p_share", "self_sufficiency"]
    viz.kpi_bars(
        {n: r for n, r in table.items() if all(k in r for k in bars)}, bars, out / "kpis.png"
    )
    print(f"\nwrote {out}/: config.json kpis.csv summary.json episode.png kpis.png")


def train_main() -> None:
    """``jaxlem-train``: Hydra entry point (``configs/config.yaml``; see the README)."""
    import hydra

    @hydra.main(version_base=None, config_path="configs", config_name="config")
    def _main(cfg) -> None:
        from hydra.core.hydra_config import HydraConfig
        from omegaconf import OmegaConf

        from jaxlem.train.job import run_job

        out = Path(cfg.out_dir or HydraConfig.get().runtime.output_dir)
        out.mkdir(parents=True, exist_ok=True)
        (out / "config.yaml").write_text(OmegaConf.to_yaml(cfg, resolve=True))
        run_job(OmegaConf.to_container(cfg, resolve=True), out)

    _main()


def eval_main(argv: list[str] | None = None) -> None:
    """``jaxlem-eval RUN_DIR``: a trained checkpoint against the baselines on held-out scenarios."""
    from jaxlem.train.job import evaluate_run

    ap = argparse.ArgumentParser(description=eval_main.__doc__)
    ap.add_argument("run_dir", help="a jaxlem-train run folder (config.yaml + checkpoints/)")
    ap.add_argument("--scenarios", type=int, default=None, help="held-out scenarios")
    args = ap.parse_args(argv)
    evaluate_run(args.run_dir, args.scenarios)
