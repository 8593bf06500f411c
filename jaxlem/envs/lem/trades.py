"""Who traded with whom: the pairwise trades of a ``lem-v0`` episode, rebuilt outside the step.

The step keeps per-agent totals only (no N x N array). Its ``info`` carries what the clearing
saw: every agent's order (``order_price``, ``order_kwh``, the sign of ``net_position_kwh``), the
reference price and the tie-break key. :func:`episode_trades` replays each step's book through
``jaxlem.market.tradelog.trade_log`` (the same sort, tie-break and pricing as ``clear``) and
sums the matched energy per (seller, buyer) pair: the data of trade heatmaps and trading
networks. Meant for small communities (the community rules list every buyer-seller pair).
"""

from __future__ import annotations

from typing import Any

import jax
import numpy as np

from jaxlem.envs.lem import grid
from jaxlem.market.tradelog import trade_log


def episode_trades(env: Any, params: Any, info: dict[str, Any]) -> np.ndarray:
    """Energy (kWh) sold by agent ``j`` to agent ``i`` over an episode, as ``[seller, buyer]``
    [N, N], from the ``info`` of one episode stacked on a leading time axis (``rollout``).

    Each step's log is scaled to the step's delivered volume, as the env scales every trade
    under the P2P transfer limit (``grid_mode='capacity'``). Envs with a partner stage or
    reputation tie-breaks are refused (their actions and state are not in ``info``)."""
    if env.partner_stage or env.use_reputation:
        raise ValueError(
            "env: got partner_stage or use_reputation; allowed: neither (the trade replay needs "
            "only the order book in info)"
        )
    info = jax.tree_util.tree_map(np.asarray, info)
    n = env.num_agents
    out = np.zeros((n, n))
    for t in range(info["order_kwh"].shape[0]):
        lmp = info["lmp"][t] if "lmp" in info else None
        log = trade_log(
            info["order_price"][t],
            info["order_kwh"][t],
            info["net_position_kwh"][t] < 0,
            env.rule,
            reference_price=info["reference_price"][t],
            fit=info["fit"][t],
            utility=info["utility"][t],
            k=params.k,
            key=jax.random.wrap_key_data(info["tie_key"][t]),
            pair_terms=grid.pair_terms(env, params, lmp),
        )
        sent = log["quantity"]
        if not len(sent):
            continue
        total = np.sum(sent)  # the log's volume before the env's transfer limit
        scale = info["p2p_volume_kwh"][t] / total if total > 0 else 0.0
        np.add.at(out, (log["seller"], log["buyer"]), sent * scale)
    return out
