"""``gencos-v0``: generators bid markups into a network-constrained SCED.

Modules: ``env`` (the env, its state and params), ``policies`` (scripted bids and the myopic best
response), ``equilibrium`` (the stage game's pure Nash reference), ``evaluation`` (KPIs and
comparison spec).
"""

from jaxlem.envs.gencos.env import GencosEnv, GencosParams, GencosState

__all__ = ["GencosEnv", "GencosParams", "GencosState"]
