"""Peer-to-peer market clearing and DSO settlement."""

from jaxlem.market.clearing import ClearingResult, clear
from jaxlem.market.pricing import COMMUNITY_RULES, PAIR_RULES, RULES

__all__ = ["COMMUNITY_RULES", "PAIR_RULES", "RULES", "ClearingResult", "clear"]
