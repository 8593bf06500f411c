"""Console entry points: ``jaxlem-train``, ``jaxlem-eval`` and ``jaxlem-baselines``.

``jaxlem-baselines``: the env's scripted baselines (and its optimum, if it declares one) on a
bank of held-out scenarios; prints a KPI table and writes ``config.json``, ``kpis.csv``,
``summary.json`` and figures to a results folder.
"""

from __future__ import annotations

import argparse
import json
import time
from datetime import datetime
from pathlib import Path

import hydra
import jax
from hydra.core.hydra_config import HydraConfig
from omegaconf import OmegaConf

import jaxlem
from jaxlem import (
    configs,  # noqa: F401  (registers the run-folder resolver of config.yaml)
    viz,
)
from jaxlem.app import report
from jaxlem.app.job import evaluate_run, run_job
from jaxlem.train import banks
from jaxlem.train import evaluate as ev

# KPIs shown after the env's own table columns when the policies report them
EXTRA_KEYS = (
    "savings",
    "clearing_price_mean",
    "price_volatility",
    "hhi_sales",
    "gini_profit",
)


def run_baselines(env, bank, seed: int, policies: dict, log=print) -> tuple[dict, dict]:
    """Each policy for one episode per scenario of ``bank`` (episodes of ``seed``); returns
    (KPI table with the optimum row and gain shares if the env declares them, the traces of
    the first episode per policy)."""
    spec = env.evaluation()
    params0 = jax.tree_util.tree_map(lambda x: x[0], bank)
    key0 = ev.episode_keys(bank, seed)[0]
    num = jax.tree_util.tree_leaves(bank)[0].shape[0]
    samples, traces = {}, {}
    for i, (name, policy) in enumerate(policies.items()):
        t0 = time.perf_counter()
        samples[name] = ev.episode_kpis(env, {name: policy}, bank, seed)[name]
        infos = ev.trace_fn(env, ev.stateless(policy), spec.traces)(key0, params0, None)
        traces[name] = {k: jax.device_get(v) for k, v in infos.items()}
        ret = float(samples[name]["mean_agent_return"].mean())
        log(
            f"[{i + 1}/{len(policies)}] {name:<20} {num} episodes, {num * env.num_steps} "
            f"env-steps in {time.perf_counter() - t0:5.1f} s (incl. compile) | "
            f"mean agent return {ret:+.3f}"
        )
    t0 = time.perf_counter()
    best = ev.optimum_row(env, bank, seed, samples)
    table = {name: ev.summarize(v) for name, v in samples.items()}
    if best is not None:
        table[spec.optimum_name] = best
        log(
            f"{spec.optimum_name}: mean agent return {best['mean_agent_return']:+.3f} "
            f"({time.perf_counter() - t0:.1f} s incl. compile)"
        )
    return table, traces


def baselines_main(argv: list[str] | None = None) -> None:
    """``jaxlem-baselines``: scripted baselines on held-out scenarios of an env."""
    ap = argparse.ArgumentParser(description=baselines_main.__doc__)
    ap.add_argument("--env", default="lem-v0", help="a registered env id")
    ap.add_argument("--num-agents", type=int, default=10, help="lem-v0 only")
    ap.add_argument("--scenarios", type=int, default=64, help="held-out scenarios (batch)")
    ap.add_argument("--rule", default=None, help="lem-v0 pricing rule (default: the preset's)")
    ap.add_argument("--scenario", default=None, help="lem-v0 preset name, e.g. case2-monopoly")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", default=None, help="results folder (default outputs/baselines/<time>)")
    args = ap.parse_args(argv)

    kwargs = {"rule": args.rule} if args.rule else {}
    if args.env != "lem-v0":
        env = jaxlem.make(args.env)
    elif args.scenario:
        env = jaxlem.make("lem-v0", scenario=args.scenario, **kwargs)
    else:
        env = jaxlem.make("lem-v0", num_agents=args.num_agents, **kwargs)
    spec = env.evaluation()
    out = Path(args.out or f"outputs/baselines/{datetime.now():%Y-%m-%d/%H-%M-%S}")
    out.mkdir(parents=True, exist_ok=True)
    config = {
        **vars(args),
        "num_agents": env.num_agents,
        "jax": jax.__version__,
        "backend": jax.default_backend(),
    }
    (out / "config.json").write_text(json.dumps(config, indent=2))
    ep_seed = banks.held_out_episode_seed(args.seed)
    print(
        f"{args.env}: {env.num_agents} agents, {args.scenarios} held-out scenarios "
        f"(seed {ep_seed}), backend {jax.default_backend()}",
        flush=True,
    )
    bank = banks.held_out_bank(env, args.scenarios, args.seed)
    table, traces = run_baselines(
        env, bank, ep_seed, spec.policies, log=lambda s: print(s, flush=True)
    )
    first = next(iter(table.values()))
    keys = list(spec.table) + [k for k in EXTRA_KEYS if k in first and k not in spec.table]
    print()
    print(report.format_table(table, keys, width=20))
    report.write_table_csv(out / "kpis.csv", table)
    (out / "summary.json").write_text(json.dumps({"config": config, "kpis": table}, indent=2))
    if spec.plot_episode is not None:
        spec.plot_episode({k: traces[k] for k in spec.baselines}, out / "episode.png", env)
    bars = list(spec.table)
    viz.kpi_bars(
        {n: r for n, r in table.items() if all(k in r for k in bars)}, bars, out / "kpis.png"
    )
    print(f"\nwrote {out}/: config.json kpis.csv summary.json episode.png kpis.png")


def train_main() -> None:
    """``jaxlem-train``: Hydra entry point (``configs/config.yaml``; see the README)."""

    @hydra.main(version_base=None, config_path="pkg://jaxlem.configs", config_name="config")
    def _main(cfg) -> None:
        out = Path(cfg.out_dir or HydraConfig.get().runtime.output_dir)
        container = OmegaConf.to_container(cfg, resolve=True)
        assert isinstance(container, dict)
        existed = out.exists() and any(out.iterdir())
        try:
            run_job({str(k): v for k, v in container.items()}, out)
        except Exception:
            if not existed and out.exists() and not any(out.iterdir()):
                out.rmdir()  # a run that failed before writing anything leaves no folder
            raise

    _main()


def eval_main(argv: list[str] | None = None) -> None:
    """``jaxlem-eval RUN_DIR``: a trained checkpoint against the baselines on held-out scenarios."""
    ap = argparse.ArgumentParser(description=eval_main.__doc__)
    ap.add_argument("run_dir", help="a jaxlem-train run folder (config.yaml + checkpoints/)")
    ap.add_argument("--scenarios", type=int, default=None, help="held-out scenarios")
    args = ap.parse_args(argv)
    evaluate_run(args.run_dir, args.scenarios)
