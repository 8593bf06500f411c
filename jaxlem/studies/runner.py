"""The study runner behind ``jaxlem-study NAME [quick] [key=value ...]``.

A study is a Hydra config (``jaxlem/configs/study/NAME.yaml``: the grid, the trainer, seeds,
budgets, and a ``quick`` block merged over it by ``quick``) plus a module with three functions:

- ``cells(cfg) -> list[str]``: the independent pieces of work, in order;
- ``run_cell(cfg, cell, log) -> dict``: one piece, returning JSON-able results;
- ``report(cfg, results, out, meta) -> None``: tables, CSVs, figures and ``README.md`` from
  every cell's results;
- optionally ``CLEAR_CACHES = True`` when every cell compiles programs of its own (a static
  setting per cell): they are freed after each cell;
- optionally ``groups(cfg) -> list[list[str]]`` and ``run_group(cfg, cells, log) -> {cell:
  result}``: cells that differ only in numbers (a sweep level in params) and train together,
  as lanes of one vmapped program; a group runs its cells not yet saved.

Each finished cell is saved at once under ``<out>/cells/<cell>.json`` with a hash of the config,
so a stopped study resumes where it stopped (cells of another config are run again), and the
report is written from the saved results.
"""

from __future__ import annotations

import gc
import hashlib
import importlib
import json
import shlex
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import jax
from hydra import compose, initialize_config_module
from omegaconf import DictConfig, OmegaConf

from jaxlem.app.hardware import hardware
from jaxlem.train.config import TrainConfig

# study name -> the module that defines it (the config is configs/study/<name>.yaml)
STUDIES: dict[str, str] = {
    "case1-mechanisms": "jaxlem.studies.case1_mechanisms",
    "case2-market-power": "jaxlem.studies.case2_market_power",
    "case3-dso": "jaxlem.studies.case3_dso",
    "case4-grid": "jaxlem.studies.case4_grid",
    "case5-storage": "jaxlem.studies.case5_storage",
    "case6-cooperation": "jaxlem.studies.case6_cooperation",
    "case7-scalability": "jaxlem.studies.case7_scalability",
    "gencos": "jaxlem.studies.gencos",
    "multiactor": "jaxlem.studies.multiactor",
}


def names() -> list[str]:
    return sorted(STUDIES)


def load_config(name: str, quick: bool = False, overrides: tuple[str, ...] = ()) -> DictConfig:
    """The study's config: its YAML, then its ``quick`` block (if ``quick``), then the
    command line's ``key=value`` overrides."""
    if name not in STUDIES:
        raise ValueError(f"study: got {name!r}; allowed: one of {names()}")
    with initialize_config_module("jaxlem.configs", version_base=None):
        cfg = compose(config_name=f"study/{name}")
    cfg = cfg.study if "study" in cfg and isinstance(cfg.study, DictConfig) else cfg
    cfg = OmegaConf.create(OmegaConf.to_container(cfg, resolve=True))  # a plain, open config
    quick_block = cfg.pop("quick", None)
    if quick and quick_block is not None:
        cfg = OmegaConf.merge(cfg, quick_block)
    cli = OmegaConf.from_dotlist(list(overrides))
    unknown = [
        k
        for k in _leaves(cli)
        if OmegaConf.select(cfg, k) is None and k != "out_dir" and not _train_field(cfg, k)
    ]
    if unknown:
        raise ValueError(
            f"{unknown[0]}: unknown study setting; allowed: one of {sorted(_leaves(cfg))}"
            + (" or train.<any trainer setting>" if "train" in cfg else "")
        )
    cfg = OmegaConf.merge(cfg, cli)
    cfg.quick = quick
    return cfg


def _train_field(cfg: DictConfig, key: str) -> bool:
    """``train.<field>`` of a study that trains: any trainer setting may be overridden, also
    one its YAML leaves at the trainer's default."""
    head, _, field = key.partition(".")
    return head == "train" and "train" in cfg and field in TrainConfig.__dataclass_fields__


def _leaves(cfg: Any, prefix: str = "") -> list[str]:
    out = []
    for k, v in cfg.items():
        path = f"{prefix}{k}"
        out += _leaves(v, path + ".") if isinstance(v, DictConfig) else [path]
    return out


def config_hash(cfg: DictConfig) -> str:
    plain = OmegaConf.to_container(cfg, resolve=True)
    assert isinstance(plain, dict)
    plain.pop("out_dir", None)
    return hashlib.sha256(json.dumps(plain, sort_keys=True).encode()).hexdigest()[:16]


def default_out(name: str, quick: bool) -> Path:
    """Full runs write the committed report folder; quick runs a scratch folder."""
    return (
        Path("outputs/studies") / f"{name}-quick" if quick else Path("experiments/results") / name
    )


def run_study(
    name: str,
    quick: bool = False,
    overrides: tuple[str, ...] = (),
    out_dir: str | Path | None = None,
    log: Callable[[str], None] = print,
) -> Path:
    """Run (or resume) study ``name`` and write its report; returns the output folder."""
    cfg = load_config(name, quick, overrides)
    module = importlib.import_module(STUDIES[name])
    out = Path(out_dir or cfg.get("out_dir") or default_out(name, quick))
    (out / "cells").mkdir(parents=True, exist_ok=True)
    digest = config_hash(cfg)
    cells = list(module.cells(cfg))
    results: dict[str, Any] = {}
    t0 = time.perf_counter()
    log(f"study {name}{' (quick)' if quick else ''}: {len(cells)} cells -> {out}/")
    done_s = 0.0
    ran = 0
    index = {c: i + 1 for i, c in enumerate(cells)}
    groups = module.groups(cfg) if hasattr(module, "groups") else [[c] for c in cells]
    if sorted(c for g in groups for c in g) != sorted(cells):
        raise ValueError(f"study {name}: groups(cfg) must hold every cell once")
    for group in groups:
        todo = []
        for cell in group:
            path = out / "cells" / f"{cell}.json"
            saved = json.loads(path.read_text()) if path.exists() else {}
            if saved.get("config_hash") == digest:
                results[cell] = saved["result"]
                log(f"[{index[cell]}/{len(cells)}] {cell}: done earlier (resumed)")
            else:
                todo.append(cell)
        if not todo:
            continue
        tc = time.perf_counter()
        if len(todo) > 1:
            span = f"{index[todo[0]]}-{index[todo[-1]]}/{len(cells)}"
            log(f"[{span}] {', '.join(todo)} (together) ...")
            group_results = module.run_group(cfg, todo, log)
        else:
            log(f"[{index[todo[0]]}/{len(cells)}] {todo[0]} ...")
            group_results = {todo[0]: module.run_cell(cfg, todo[0], log)}
        spent = time.perf_counter() - tc
        done_s += spent
        ran += len(todo)
        for cell in todo:
            # a group's time is shared evenly by its cells
            payload = {
                "config_hash": digest,
                "seconds": spent / len(todo),
                "result": group_results[cell],
            }
            path = out / "cells" / f"{cell}.json"
            tmp = path.with_suffix(".tmp")
            tmp.write_text(json.dumps(payload, indent=1))
            tmp.replace(path)  # a cell is saved whole or not at all
            results[cell] = group_results[cell]
        if getattr(module, "CLEAR_CACHES", False):
            # cells that compile their own programs: free them, or a long study runs out of
            # memory for new code (LLVM "Unable to allocate section memory")
            jax.clear_caches()
            gc.collect()
        left = len(cells) - len(results)
        eta = f", about {done_s / ran * left / 60:.0f} min left" if left else ""
        log(f"[{index[todo[-1]]}/{len(cells)}] {', '.join(todo)}: {spent:.0f} s{eta}")
    results = {c: results[c] for c in cells}  # the report reads cells in their order
    command = "jaxlem-study " + " ".join(
        [name] + (["quick"] if quick else []) + [shlex.quote(o) for o in overrides]
    )
    seconds = {c: json.loads((out / "cells" / f"{c}.json").read_text())["seconds"] for c in cells}
    meta = {
        "name": name,
        "command": command,
        "quick": quick,
        "hardware": hardware(),
        "cell_seconds": seconds,
        "total_seconds": sum(seconds.values()),
        "wall_seconds_this_call": time.perf_counter() - t0,
        "date": time.strftime("%Y-%m-%d"),
        "config": OmegaConf.to_container(cfg, resolve=True),
    }
    module.report(cfg, results, out, meta)
    (out / "study.json").write_text(json.dumps(meta, indent=1))
    log(f"report: {out}/README.md")
    return out


def hardware_line(meta: dict) -> str:
    h = meta["hardware"]
    return (
        f"{h['cpu']} ({h['cpu_count']} cores), JAX {h['jax']} on {h['backend']} "
        f"({h['device']}), Python {h['python']}"
    )


def header(title: str, meta: dict, what: str) -> str:
    """The README's opening: title, what was run, the command, how to regenerate, hardware."""
    mins = meta["total_seconds"] / 60
    return "\n".join(
        [
            f"# {title}",
            "",
            what,
            "",
            "Regenerate this folder (it resumes if stopped; `quick` runs a short smoke version "
            "into `outputs/studies/`):",
            "",
            "```bash",
            meta["command"],
            "```",
            "",
            f"Measured on {hardware_line(meta)}, {meta['date']}; the cells took {mins:.1f} min "
            "in all.",
            "",
        ]
    )


def main(argv: list[str] | None = None) -> None:
    """``jaxlem-study NAME [quick] [key=value ...]`` (``jaxlem-study --list``)."""
    args = list(sys.argv[1:] if argv is None else argv)
    if not args or args[0] in ("-h", "--help", "--list"):
        print(main.__doc__)
        print("studies: " + ", ".join(names()))
        return
    name, rest = args[0], args[1:]
    quick = "quick" in rest
    overrides = tuple(a for a in rest if a != "quick")
    bad = [a for a in overrides if "=" not in a]
    if bad:
        raise SystemExit(f"jaxlem-study: {bad[0]!r}: expected quick or key=value")
    run_study(name, quick, overrides, log=lambda s: print(s, flush=True))
