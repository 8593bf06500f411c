"""One training job from a plain config mapping (what ``jaxlem-train`` composes with Hydra).

``run_job(cfg, out)``: builds the env and the trainer config (validated before anything
compiles), trains ``num_seeds`` seeds in ``num_chunks`` chunks with checkpoints, compares the
trained policy with the scripted baselines on held-out scenarios and writes the run folder:
``config.yaml``, ``metrics.csv``, ``summary.json``, ``comparison.csv``, figures and
``checkpoints/``. ``evaluate_run(folder)`` reloads a finished run (``jaxlem-eval``).
"""

from __future__ import annotations

import csv
import dataclasses
import json
import time
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np

import jaxlem
from jaxlem.bench import hardware
from jaxlem.train import TrainConfig, checkpoint, loggers
from jaxlem.train import evaluate as ev
from jaxlem.train.config import MODES
from jaxlem.train.driver import run_training, stdout_log

LEM_TABLE = ("mean_agent_return", "gain_share", "community_cost", "p2p_share", "self_sufficiency")
GENCOS_TABLE = ("mean_agent_return", "mean_system_lmp", "price_volatility", "exploitability")
LEM_BASELINES = ("zero_intelligence", "rule_based_battery", "dso_only")


def make_env(cfg: dict):
    """The env from ``cfg['env']`` (id, kwargs) and ``cfg['scenario']['name']`` (lem presets)."""
    env_cfg = cfg["env"]
    # null = not set by the user: the preset's own static settings (or the env default) apply
    kwargs = {k: v for k, v in dict(env_cfg.get("kwargs") or {}).items() if v is not None}
    name = (cfg.get("scenario") or {}).get("name")
    if name:
        if env_cfg["id"] != "lem-v0":
            raise ValueError(f"scenario: got {name!r} for {env_cfg['id']}; allowed: lem-v0 only")
        kwargs["scenario"] = name
    return jaxlem.make(env_cfg["id"], **kwargs)


def env_settings(env, env_id: str) -> dict:
    """The env id and every static setting the built env actually uses (for summary.json)."""

    def plain(v):
        if dataclasses.is_dataclass(v):
            return {f.name: plain(getattr(v, f.name)) for f in dataclasses.fields(v)}
        if isinstance(v, tuple | list):
            return [plain(x) for x in v]
        return v

    out = {"id": env_id}
    if dataclasses.is_dataclass(env):
        out.update({f.name: plain(getattr(env, f.name)) for f in dataclasses.fields(env)})
    return out


def make_bank(env, overrides: dict, num: int, key: int):
    """A scenario bank with numeric ``overrides`` of params fields (validated, broadcast)."""
    bank = env.sample_params(jax.random.PRNGKey(key), num)
    if not overrides:
        return bank
    fields = set(bank.__dataclass_fields__)
    values = {}
    for k, v in overrides.items():
        if k not in fields:
            raise ValueError(f"env.params.{k}: unknown field; allowed: {sorted(fields)}")
        cur = getattr(bank, k)
        values[k] = jnp.broadcast_to(jnp.asarray(v, cur.dtype), cur.shape)
    bank = bank.replace(**values)
    env.check_params(jax.tree_util.tree_map(lambda x: x[0], bank))
    return bank


def baselines_for(env) -> dict:
    from jaxlem import policies

    if hasattr(env.default_params, "agent_type"):
        return {k: policies.BASELINES[k] for k in LEM_BASELINES}
    return dict(policies.GENCOS_BASELINES)


def run_job(cfg: dict, out: str | Path, log=stdout_log) -> dict:
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    env = make_env(cfg)
    config = TrainConfig.from_dict(dict(cfg["train"]))
    config.check_env(env)
    seed, num_seeds = int(cfg.get("seed", 0)), int(cfg.get("num_seeds", 1))
    overrides = dict(cfg["env"].get("params") or {})
    bank = make_bank(env, overrides, config.num_envs, seed)
    eval_bank = make_bank(env, overrides, config.eval_envs, 5_000 + seed)
    seeds = tuple(range(seed, seed + num_seeds))
    log(
        f"{cfg['env']['id']}: {env.num_agents} agents | {config.algo} ({MODES[config.algo]}, "
        f"sharing={config.sharing}) | {config.num_updates} updates x "
        f"{config.env_steps_per_update} env-steps | seeds {list(seeds)} | "
        f"backend {jax.default_backend()} x{jax.device_count()}"
    )
    writers = loggers.make_writers(cfg.get("loggers") or [], out, {"train": dict(cfg["train"])})
    res = run_training(
        config,
        env,
        seeds=seeds,
        writers=writers,
        params=bank,
        eval_params=eval_bank,
        num_chunks=int(cfg.get("num_chunks", 1)),
        out_dir=out,
        resume=bool(cfg.get("resume", False)),
        log=log,
    )
    core, runners = res["train"].core, res["runners"]
    agent_steps = res["env_steps_per_s"] * env.num_agents
    log(
        f"trained in {res['wall_s']:.1f} s (first chunk incl. compile {res['first_chunk_s']:.1f} s)"
        f" | steady state {res['env_steps_per_s']:,.0f} env-steps/s = {agent_steps:,.0f} "
        "agent-steps/s"
    )
    summary = {
        "env": env_settings(env, cfg["env"]["id"]),
        "num_agents": env.num_agents,
        "algo": config.algo,
        "mode": MODES[config.algo],
        "seeds": list(seeds),
        "updates": res["updates"],
        "env_steps": res["updates"] * config.env_steps_per_update * num_seeds,
        "wall_s": res["wall_s"],
        "first_chunk_s": res["first_chunk_s"],
        "env_steps_per_s": res["env_steps_per_s"],
        "agent_steps_per_s": agent_steps,
        "hardware": hardware(),
    }
    keys = np.stack([np.asarray(jax.random.PRNGKey(s)) for s in seeds])
    initial = core.init(keys, res["train"].bank, res["train"].hyper)
    summary.update(
        evaluate_and_report(
            core, runners, env, cfg, out, res["rows"], log, initial, res["train"].eval_bank
        )
    )
    (out / "summary.json").write_text(json.dumps(summary, indent=2, default=float))
    log(f"wrote {out}/: config.yaml metrics.csv summary.json comparison.csv figures checkpoints/")
    return summary


def eval_bank_references(env, eval_bank) -> dict[str, float]:
    """Mean agent return of every baseline (and, for lem-v0, the perfect-foresight optimum) on
    the periodic evaluation's scenarios and episodes: the learning curve's reference lines."""
    kpis = ev.episode_kpis(env, baselines_for(env), eval_bank, 0)
    refs = {f"{k} (eval scenarios)": float(v["mean_agent_return"].mean()) for k, v in kpis.items()}
    if ev.is_lem(env):
        best = ev.optimum_kpis(env, eval_bank, 0)["mean_agent_return"]
        refs = {"perfect_foresight (eval scenarios)": float(best.mean()), **refs}
    return refs


def evaluate_and_report(
    core, runners, env, cfg, out: Path, rows, log, initial=None, eval_bank=None
) -> dict:
    """The comparison table with the baselines (printed, CSV, figures); returns it for JSON."""
    from jaxlem import viz

    lem = hasattr(env.default_params, "agent_type")
    keys = LEM_TABLE if lem else GENCOS_TABLE
    n = int(cfg.get("eval_scenarios", 64))
    t0 = time.perf_counter()
    comp = ev.compare(
        core, runners, env, baselines_for(env), n, int(cfg.get("seed", 0)), initial=initial
    )
    seeds = jax.tree_util.tree_leaves(runners)[0].shape[0]
    log(
        f"\nheld-out comparison: {n} scenarios x {seeds} seed(s) ({time.perf_counter() - t0:.1f} s)"
    )
    head = f"{'policy':<20}" + "".join(f"{k:>24}" for k in keys)
    lines = [head, "-" * len(head)]
    for name, row in comp["table"].items():
        lines.append(f"{name:<20}" + "".join(_cell(row, k) for k in keys))
    lines.append("")
    for name, row in comp["paired"].items():
        lines.append(
            f"trained - {name:<18} mean agent return {row['diff']:+.4f} ± {row['diff_se']:.4f} "
            f"(paired s.e.; {row['z']:+.1f} s.e.)"
        )
    log("\n".join(lines))
    with open(out / "comparison.csv", "w", newline="") as fh:
        w = csv.writer(fh)
        cols = sorted(next(iter(comp["table"].values())))
        w.writerow(["policy", *cols])
        for name, row in comp["table"].items():
            w.writerow([name, *(row.get(c, "") for c in cols)])
    if rows:
        refs = eval_bank_references(env, eval_bank) if eval_bank is not None else None
        viz.learning_curve(rows, out / "learning_curve.png", references=refs)
    traces = episode_traces(core, runners, env, n, int(cfg.get("seed", 0)))
    if lem:
        viz.lem_episode(traces, out / "episode.png", env.dt_h)
    else:
        viz.gencos_episode(traces, out / "episode.png", env.dt_h)
    viz.kpi_bars(
        {name: row for name, row in comp["table"].items() if all(k in row for k in keys)},
        list(keys),
        out / "kpis.png",
    )
    return {"comparison": comp["table"], "paired_vs_baselines": comp["paired"]}


def _cell(row: dict, key: str) -> str:
    """One table cell: mean ± s.e., or a dash where the policy has no such KPI."""
    if key not in row:
        return f"{'-':>24}"
    return f"{row[key]:>15.4g} ±{row[key + '_se']:<7.2g}"


def episode_traces(core, runners, env, n: int, seed: int) -> dict:
    """Scenario-0 traces of the trained policy (seed 0) and the baselines, for the figures."""
    params = jax.tree_util.tree_map(lambda x: x[0], ev.held_out_bank(env, n, seed))
    key = jax.random.split(jax.random.PRNGKey(seed + 1), n)[0]
    lem = hasattr(env.default_params, "agent_type")
    keys = (
        ("fit", "utility", "clearing_price", "p2p_volume_kwh", "soc")
        if lem
        else ("p_gen", "system_lmp", "lmp")
    )
    pols = {"trained": (ev.trained_policy(core), ev.seed_slice(runners, 0))}
    pols.update({name: (ev.stateless(p), None) for name, p in baselines_for(env).items()})
    out = {}
    for name, (pol, state) in pols.items():
        infos = ev.trace_fn(env, pol, keys)(key, params, state)
        out[name] = {k: np.asarray(v) for k, v in infos.items()}
    return out


def evaluate_run(folder: str | Path, num_scenarios: int | None = None, log=stdout_log) -> dict:
    """Reload a run folder's config and latest checkpoint and compare it with the baselines."""
    import yaml

    folder = Path(folder)
    cfg_file = folder / "config.yaml"
    if not cfg_file.exists():
        raise ValueError(f"run_dir: {folder} has no config.yaml; allowed: a jaxlem-train folder")
    cfg = yaml.safe_load(cfg_file.read_text())
    if num_scenarios is not None:
        cfg["eval_scenarios"] = int(num_scenarios)
    env = make_env(cfg)
    config = TrainConfig.from_dict(dict(cfg["train"]))
    from jaxlem.train import make_train

    seed, num_seeds = int(cfg.get("seed", 0)), int(cfg.get("num_seeds", 1))
    bank = make_bank(env, dict(cfg["env"].get("params") or {}), config.num_envs, seed)
    train = make_train(config, env, bank)
    keys = np.stack([np.asarray(jax.random.PRNGKey(s)) for s in range(seed, seed + num_seeds)])
    like = train.core.init(keys, train.bank, train.hyper)
    runners, manifest = checkpoint.restore(folder / "checkpoints", like)
    log(f"loaded {folder / 'checkpoints' / manifest['path']}")
    out = folder / "eval"
    out.mkdir(exist_ok=True)
    result = evaluate_and_report(train.core, runners, env, cfg, out, None, log, initial=like)
    (out / "eval.json").write_text(json.dumps(result, indent=2, default=float))
    return result
