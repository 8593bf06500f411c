"""``make_train``: the trainer for ``config.algo`` (PPO family or SAC)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import jax

from jaxlem.train import ppo, sac
from jaxlem.train.config import TrainConfig


def make_train(
    config: TrainConfig, env: Any, params: Any = None, eval_params: Any = None
) -> Callable[[jax.Array], tuple[Any, Any]]:
    """``train(key) -> (runner, metrics)``: the whole run for one seed as one jittable scan
    (vmap it over seeds). ``params`` / ``eval_params``: scenario banks (default: the training
    and evaluation banks of seed 0, ``jaxlem.train.banks``)."""
    if config.is_sac:
        return sac.make_train(config, env, params, eval_params)
    return ppo.make_train(config, env, params, eval_params)
