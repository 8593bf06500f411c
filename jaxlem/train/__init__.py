"""Trainers compiled into one ``lax.scan`` (IPPO, MAPPO, self-play, CTCE, SAC) and their driver."""

from jaxlem.train.config import ALGOS, MODES, Hyper, TrainConfig
from jaxlem.train.ppo import make_train as make_ppo_train


def make_train(config: TrainConfig, env, params=None, eval_params=None):
    """``train(key) -> (runner, metrics)``: the whole run for one seed as one jittable scan
    (vmap it over seeds). Dispatches on ``config.algo``."""
    if config.algo == "sac":
        from jaxlem.train.sac import make_train as make_sac_train

        return make_sac_train(config, env, params, eval_params)
    return make_ppo_train(config, env, params, eval_params)


__all__ = ["ALGOS", "MODES", "Hyper", "TrainConfig", "make_train"]
