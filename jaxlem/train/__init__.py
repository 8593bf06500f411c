"""Trainers compiled into one ``lax.scan`` (IPPO, MAPPO, self-play, CTCE, SAC) and their driver.

The trainers import no env module: everything env-specific comes through the env contract
(``jaxlem.envs.base.Environment``).
"""

from jaxlem.train.config import ALGOS, MODES, Hyper, TrainConfig
from jaxlem.train.trainers import make_train

__all__ = ["ALGOS", "MODES", "Hyper", "TrainConfig", "make_train"]
