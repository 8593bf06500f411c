"""Adapters to other multi-agent APIs: JaxMARL (``JaxMARLAdapter``) and PettingZoo
(``make_pettingzoo_env``; the optional dependency is imported only when it is used)."""

from jaxlem.envs.adapters.jaxmarl import JaxMARLAdapter, JaxMARLState
from jaxlem.envs.adapters.pettingzoo import make_pettingzoo_env

__all__ = ["JaxMARLAdapter", "JaxMARLState", "make_pettingzoo_env"]
