"""``multiactor-v0``: producers, utilities, consumers, prosumers and a regulator in one market."""

from jaxlem.envs.multiactor.env import ACTION_COLUMNS, MultiActorEnv, make_multiactor
from jaxlem.envs.multiactor.types import KINDS, PERSONAS, MAParams, MAState

__all__ = [
    "ACTION_COLUMNS",
    "KINDS",
    "PERSONAS",
    "MAParams",
    "MAState",
    "MultiActorEnv",
    "make_multiactor",
]
