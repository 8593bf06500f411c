"""``lem-v0``: a local energy market of N prosumers trading peer to peer.

Modules: ``types`` (state and params), ``params`` (defaults, validation), ``population`` (drawn
communities), ``scenarios`` (presets), ``exogenous`` (PV, demand, tariff), ``observation``
(named columns), ``stages`` and ``grid`` (one step), ``env`` (the env), ``policies`` (scripted
baselines), ``oracle`` (perfect-foresight optimum), ``evaluation`` (KPIs and comparison spec).
"""

from jaxlem.envs.lem.env import LEMEnv, with_overrides
from jaxlem.envs.lem.observation import Col
from jaxlem.envs.lem.population import Population
from jaxlem.envs.lem.types import LEMParams, LEMState

__all__ = ["Col", "LEMEnv", "LEMParams", "LEMState", "Population", "with_overrides"]
