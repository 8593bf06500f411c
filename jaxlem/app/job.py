"""One training job from a plain config mapping (what ``jaxlem-train`` composes with Hydra).

``run_job(cfg, out)``: builds the env and the trainer config (validated before anything
compiles), trains ``num_seeds`` seeds in ``num_chunks`` chunks with checkpoints, compares the
trained policy with the env's scripted baselines on held-out scenarios and writes the run folder:
``config.yaml``, ``metrics.csv``, ``summary.json``, ``comparison.csv``, figures and
``checkpoints/``. ``evaluate_run(folder)`` reloads a finished run (``jaxlem-eval``). Everything
env-specific comes from the env's evaluation spec (``env.evaluation()``).
"""

from __future__ import annotations

import dataclasses
import difflib
import json
import time
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import yaml

import jaxlem
from jaxlem import viz
from jaxlem.app import report
from jaxlem.app.hardware import hardware
from jaxlem.train import TrainConfig, banks, checkpoint, distributed, loggers, make_train
from jaxlem.train import evaluate as ev
from jaxlem.train.config import MODES
from jaxlem.train.driver import resumed_schedule, run_training, schedule, stdout_log

# the keys of a job's config; what changes the compiled program or the meaning of the history
# may not change on resume
KEYS = {
    "env": "the env (id, kwargs, params)",
    "train": "the trainer config",
    "scenario": "a lem-v0 preset",
    "seed": "first seed",
    "num_seeds": "seeds trained together",
    "num_chunks": "chunks of the scan",
    "resume": "continue from the latest checkpoint",
    "out_dir": "the run folder",
    "eval_scenarios": "held-out scenarios of the comparison",
    "loggers": "metric writers",
    "distributed": "join a jax.distributed job (one process per host)",
}
FIXED_ON_RESUME = ("env", "train", "scenario", "seed", "num_seeds", "num_chunks")
# may change on resume: more total steps extend the run as a new segment (checked by the driver)
EXTENDS_ON_RESUME = ("train.total_timesteps",)
ENV_KEYS = ("id", "kwargs", "params")


def _unknown(where: str, key: str, allowed) -> ValueError:
    close = difflib.get_close_matches(key, list(allowed), n=1)
    hint = f" (did you mean {close[0]!r}?)" if close else ""
    return ValueError(f"{where}{key}: unknown key{hint}; allowed: one of {sorted(allowed)}")


def check_config(cfg: dict) -> None:
    """Reject unknown keys (``+foo=1``) and values no run can use, before anything compiles."""
    for k in cfg:
        if k not in KEYS and k != "hydra":
            raise _unknown("", k, KEYS)
    for k in cfg.get("env") or {}:
        if k not in ENV_KEYS:
            raise _unknown("env.", k, ENV_KEYS)
    for name, lo in (("num_seeds", 1), ("num_chunks", 1), ("eval_scenarios", 2)):
        v = cfg.get(name, lo)
        if isinstance(v, bool) or not isinstance(v, int) or v < lo:
            raise ValueError(
                f"{name}: got {v!r}; allowed: an integer >= {lo}"
                + (" (a paired s.e. needs 2 scenarios)" if name == "eval_scenarios" else "")
            )
    if not isinstance(cfg.get("seed", 0), int) or isinstance(cfg.get("seed", 0), bool):
        raise ValueError(f"seed: got {cfg.get('seed')!r}; allowed: an integer")


def _flat(d: object, prefix: str = "") -> dict:
    if isinstance(d, dict):
        out = {}
        for k, v in d.items():
            out.update(_flat(v, f"{prefix}{k}."))
        return out
    return {prefix[:-1]: d}


def check_resume(stored: dict, cfg: dict) -> list[str]:
    """On resume: refuse any change of what the history depends on, naming every differing
    key; return the changes that are allowed (``eval_scenarios``, loggers, more
    ``train.total_timesteps``) for the log and the run's segments."""
    old, new = _flat(stored), _flat(cfg)
    changed = sorted(k for k in set(old) | set(new) if old.get(k) != new.get(k))
    fixed = [
        k for k in changed if k.split(".")[0] in FIXED_ON_RESUME and k not in EXTENDS_ON_RESUME
    ]
    if fixed:
        diffs = "; ".join(f"{k}: {old.get(k)!r} -> {new.get(k)!r}" for k in fixed)
        raise ValueError(
            f"resume: the config differs from the run's config.yaml in {diffs}; allowed: the "
            "same env, trainer, seeds and chunks as the run being resumed, with more "
            "train.total_timesteps to extend it (start a new run in another out_dir to change "
            "anything else)"
        )
    return [f"{k}: {old.get(k)!r} -> {new.get(k)!r}" for k in changed if k != "resume"]


def record_segment(
    out: Path, resume: bool, changes: list[str], updates: int, write: bool = True
) -> list[dict]:
    """Append this start or resume to ``segments.json`` (the run's history of starts, resumes
    and extensions: when, the changed keys, the update count planned) and return the list."""
    path = out / "segments.json"
    segments = json.loads(path.read_text()) if resume and path.exists() else []
    kind = "start"
    if resume:
        kind = "extend" if any(c.startswith(EXTENDS_ON_RESUME) for c in changes) else "resume"
    segments.append(
        {
            "segment": len(segments) + 1,
            "kind": kind,
            "time": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
            "changes": changes,
            "updates": updates,
        }
    )
    if write:
        write_segments(out, segments)
    return segments


def write_segments(out: Path, segments: list[dict]) -> None:
    """Write ``segments.json`` atomically."""
    tmp = out / "segments.json.tmp"
    tmp.write_text(json.dumps(segments, indent=2))
    tmp.replace(out / "segments.json")


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
    try:
        return jaxlem.make(env_cfg["id"], **kwargs)
    except TypeError as err:
        bad = str(err).split("keyword argument")[-1].strip(" '\"")
        raise ValueError(
            f"env.kwargs.{bad}: not a static setting of {env_cfg['id']} ({err})"
        ) from None


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


def make_bank(env, overrides: dict, num: int, key: jax.Array):
    """A scenario bank with numeric ``overrides`` of params fields (validated, broadcast)."""
    bank = env.sample_params(key, num)
    if not overrides:
        return bank
    fields = set(bank.__dataclass_fields__)
    values = {}
    for k, v in overrides.items():
        if k not in fields:
            raise ValueError(f"env.params.{k}: unknown field; allowed: {sorted(fields)}")
        cur = getattr(bank, k)
        try:
            values[k] = jnp.broadcast_to(jnp.asarray(v, cur.dtype), cur.shape)
        except (TypeError, ValueError):
            raise ValueError(
                f"env.params.{k}: got {v!r}; allowed: a number or an array broadcastable to "
                f"{tuple(cur.shape[1:])} ({cur.dtype})"
            ) from None
    bank = bank.replace(**values)
    env.check_params(jax.tree_util.tree_map(lambda x: x[0], bank))
    return bank


def run_job(cfg: dict, out: str | Path, log=stdout_log) -> dict:
    """Validate ``cfg`` (and, on resume, compare it with the run's ``config.yaml``), then train,
    compare and write the run folder ``out``."""
    check_config(cfg)
    if cfg.get("distributed"):
        distributed.initialize()  # before anything runs on a device
    main = distributed.is_main()
    if not main:  # process 0 logs and writes the run folder
        log = lambda s: None  # noqa: E731
    env = make_env(cfg)
    config = TrainConfig.from_dict(dict(cfg["train"]))
    config.check_env(env)
    out = Path(out)
    stored_file = out / "config.yaml"
    stored = {k: v for k, v in cfg.items() if k != "hydra"}
    seed, num_seeds = int(cfg.get("seed", 0)), int(cfg.get("num_seeds", 1))
    num_chunks = int(cfg.get("num_chunks", 1))
    per_chunk = schedule(config.num_updates, num_chunks)
    updates = per_chunk * num_chunks
    changes: list[str] = []
    if cfg.get("resume"):
        if not stored_file.exists():
            raise ValueError(f"resume: {out} has no config.yaml; allowed: a jaxlem-train folder")
        previous = yaml.safe_load(stored_file.read_text()) or {}
        previous = {k: v for k, v in previous.items() if k != "hydra"}
        changes = check_resume(previous, stored)
        manifest = checkpoint.latest(out / "checkpoints")
        if manifest is None:
            raise ValueError(
                f"resume: no checkpoint under {out / 'checkpoints'}; allowed: a run folder"
            )
        per_chunk, chunks = resumed_schedule(manifest, config.num_updates, num_chunks)
        updates = per_chunk * chunks
        for change in changes:
            log(f"resume: {change}")
    overrides = dict(cfg["env"].get("params") or {})
    bank = make_bank(env, overrides, config.num_envs, banks.train_key(seed))
    eval_bank = make_bank(env, overrides, config.eval_envs, banks.eval_key(seed))
    if main:
        out.mkdir(parents=True, exist_ok=True)
    segments = record_segment(out, bool(cfg.get("resume")), changes, updates, write=main)
    if main and (changes or not cfg.get("resume")):
        # config.yaml describes the checkpoints and the next resume; segments.json the history
        stored_file.write_text(yaml.safe_dump(stored, sort_keys=False))
    seeds = tuple(range(seed, seed + num_seeds))
    log(
        f"{cfg['env']['id']}: {env.num_agents} agents | {config.algo} ({MODES[config.algo]}, "
        f"sharing={config.sharing}) | {updates} updates x "
        f"{config.env_steps_per_update} env-steps | seeds {list(seeds)} | "
        f"backend {jax.default_backend()} x{jax.device_count()}"
    )
    writers = (
        loggers.make_writers(cfg.get("loggers") or [], out, {"train": dict(cfg["train"])})
        if main
        else ()
    )
    res = run_training(
        config,
        env,
        seeds=seeds,
        writers=writers,
        params=bank,
        eval_params=eval_bank,
        num_chunks=num_chunks,
        out_dir=out,
        resume=bool(cfg.get("resume", False)),
        log=log,
    )
    core, runners = res["train"].core, res["runners"]
    if jax.process_count() > 1:
        runners = distributed.to_host(runners)  # every process gathers; process 0 evaluates
        if not main:
            return {}
    segments[-1].update(first_update=res["first_update"], last_update=res["updates"])
    write_segments(out, segments)
    agent_steps = res["env_steps_per_s"] * env.num_agents
    if res["first_chunk_s"] is None:  # resumed after the last chunk: nothing left to train
        log("every chunk was already trained; evaluating the final checkpoint")
    else:
        log(
            f"trained in {res['wall_s']:.1f} s (first chunk incl. compile "
            f"{res['first_chunk_s']:.1f} s) | steady state {res['env_steps_per_s']:,.0f} "
            f"env-steps/s = {agent_steps:,.0f} agent-steps/s"
        )
    summary = {
        "env": env_settings(env, cfg["env"]["id"]),
        "num_agents": env.num_agents,
        "algo": config.algo,
        "mode": MODES[config.algo],
        "seeds": list(seeds),
        "updates": res["updates"],
        "segments": segments,
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
    """Mean agent return of every baseline (and the optimum, if the env declares one) on the
    periodic evaluation's scenarios and episodes: the learning curve's reference lines."""
    spec = env.evaluation()
    kpis = ev.episode_kpis(env, dict(spec.baselines), eval_bank, 0)
    refs = {f"{k} (eval scenarios)": float(v["mean_agent_return"].mean()) for k, v in kpis.items()}
    if spec.optimum is not None:
        best = ev.optimum_kpis(env, eval_bank, 0)["mean_agent_return"]
        refs = {f"{spec.optimum_name} (eval scenarios)": float(best.mean()), **refs}
    return refs


def evaluate_and_report(
    core, runners, env, cfg, out: Path, rows, log, initial=None, eval_bank=None
) -> dict:
    """The comparison table with the baselines (printed, CSV, figures); returns it for JSON."""
    spec = env.evaluation()
    n = int(cfg.get("eval_scenarios", 64))
    seed = int(cfg.get("seed", 0))
    t0 = time.perf_counter()
    comp = ev.compare(core, runners, env, n, seed, initial=initial)
    seeds = jax.tree_util.tree_leaves(runners)[0].shape[0]
    log(
        f"\nheld-out comparison: {n} scenarios x {seeds} seed(s) ({time.perf_counter() - t0:.1f} s)"
    )
    log(
        report.format_table(comp["table"], spec.table)
        + "\n\n"
        + report.format_paired(comp["paired"])
    )
    report.write_table_csv(out / "comparison.csv", comp["table"])
    if rows:
        refs = eval_bank_references(env, eval_bank) if eval_bank is not None else None
        viz.learning_curve(rows, out / "learning_curve.png", references=refs)
    if spec.plot_episode is not None:
        spec.plot_episode(episode_traces(core, runners, env, n, seed), out / "episode.png", env)
    viz.kpi_bars(
        {name: row for name, row in comp["table"].items() if all(k in row for k in spec.table)},
        list(spec.table),
        out / "kpis.png",
    )
    return {"comparison": comp["table"], "paired_vs_baselines": comp["paired"]}


def episode_traces(core, runners, env, n: int, seed: int) -> dict:
    """Traces of the first held-out episode: the trained policy (seed 0) and the baselines."""
    spec = env.evaluation()
    bank = banks.held_out_bank(env, n, seed)
    params = jax.tree_util.tree_map(lambda x: x[0], bank)
    key = ev.episode_keys(bank, banks.held_out_episode_seed(seed))[0]
    pols = {"trained": (ev.trained_policy(core), ev.seed_slice(runners, 0))}
    pols.update({name: (ev.stateless(p), None) for name, p in spec.baselines.items()})
    out = {}
    for name, (pol, state) in pols.items():
        infos = ev.trace_fn(env, pol, spec.traces)(key, params, state)
        out[name] = {k: np.asarray(v) for k, v in infos.items()}
    return out


def evaluate_run(folder: str | Path, num_scenarios: int | None = None, log=stdout_log) -> dict:
    """Reload a run folder's config and latest checkpoint and compare it with the baselines."""
    folder = Path(folder)
    cfg_file = folder / "config.yaml"
    if not cfg_file.exists():
        raise ValueError(f"run_dir: {folder} has no config.yaml; allowed: a jaxlem-train folder")
    cfg = yaml.safe_load(cfg_file.read_text())
    if num_scenarios is not None:
        cfg["eval_scenarios"] = int(num_scenarios)
    env = make_env(cfg)
    config = TrainConfig.from_dict(dict(cfg["train"]))
    seed, num_seeds = int(cfg.get("seed", 0)), int(cfg.get("num_seeds", 1))
    bank = make_bank(
        env, dict(cfg["env"].get("params") or {}), config.num_envs, banks.train_key(seed)
    )
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
