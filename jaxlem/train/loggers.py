"""Optional metric writers for training runs: TensorBoard and Weights & Biases.

Both are extras (``pip install -e ".[tensorboard]"`` / ``".[wandb]"``) and off by default;
``metrics.csv`` always holds every per-update metric. A writer receives the rows of each
finished chunk (one row per update and seed, as in ``metrics.csv``) and logs every numeric
column as ``seed<s>/<name>`` against the update number.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

WRITERS = ("tensorboard", "wandb")
_SKIP = ("update", "seed")


def _scalars(row: dict[str, Any]) -> Iterator[tuple[str, float]]:
    for k, v in row.items():
        if k in _SKIP or isinstance(v, bool) or not isinstance(v, (int, float)):
            continue
        if math.isfinite(v):
            yield f"seed{row['seed']}/{k}", float(v)


class TensorBoardWriter:
    """Event files under ``out_dir/tensorboard`` (tensorboardX)."""

    def __init__(self, out_dir: Path, config: dict[str, Any]) -> None:
        try:
            from tensorboardX import SummaryWriter
        except ImportError as e:
            raise ValueError(
                "loggers: 'tensorboard' needs tensorboardX; allowed after "
                "pip install -e '.[tensorboard]'"
            ) from e
        self._w = SummaryWriter(str(Path(out_dir) / "tensorboard"))
        self._w.add_text("config", f"```\n{config}\n```")

    def write(self, rows: list[dict]) -> None:
        for row in rows:
            for tag, value in _scalars(row):
                self._w.add_scalar(tag, value, int(row["update"]))
        self._w.flush()

    def close(self) -> None:
        self._w.close()


class WandbWriter:
    """One W&B run in ``out_dir`` (project ``jaxlem``; ``WANDB_MODE=offline`` works as usual)."""

    def __init__(self, out_dir: Path, config: dict[str, Any]) -> None:
        try:
            import wandb
        except ImportError as e:
            raise ValueError(
                "loggers: 'wandb' needs wandb; allowed after pip install -e '.[wandb]'"
            ) from e
        self._run = wandb.init(project="jaxlem", dir=str(out_dir), config=config)

    def write(self, rows: list[dict]) -> None:
        for row in rows:
            self._run.log(dict(_scalars(row)), step=int(row["update"]))

    def close(self) -> None:
        self._run.finish()


def make_writers(
    names: Iterable[str] | None, out_dir: str | Path, config: dict[str, Any]
) -> list[TensorBoardWriter | WandbWriter]:
    """Writers for ``names`` (a subset of ``WRITERS``), validated before training starts."""
    names = list(names or [])
    for name in names:
        if name not in WRITERS:
            raise ValueError(f"loggers: got {name!r}; allowed: a list of {list(WRITERS)}")
    kinds: dict[str, type[TensorBoardWriter | WandbWriter]] = {
        "tensorboard": TensorBoardWriter,
        "wandb": WandbWriter,
    }
    return [kinds[name](Path(out_dir), config) for name in dict.fromkeys(names)]
