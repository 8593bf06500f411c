"""Deviations from the rules in ``multiactor-v0``, for the multi-actor study: every agent's
episode return when chosen rows play a trained policy or a deviating rule, one agent's gain
when it alone deviates (is a policy a better response to the rules than the rule itself?),
and the consumers' bid dilemma (one consumer gains by outbidding the others; all lose when
all do)."""

from __future__ import annotations

import functools
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from jaxlem.envs.multiactor import policies
from jaxlem.envs.multiactor.types import KINDS
from jaxlem.rollout import rollout
from jaxlem.train import evaluate as ev

SCRIPTED = "scripted_regulated"  # the regulator's fixed rule acts only where it is on


@functools.lru_cache(maxsize=16)
def agent_returns(env: Any, policy: Any):
    """``f(keys [M], bank, state, rows [J, N]) -> [J, M, N]``: every agent's episode return
    (currency) on each scenario, for each set of trained rows."""

    def one(key, params, state, rows):
        def act(k, obs, e, p):
            return policy(k, obs, e, p, (state[0], rows))

        rewards, _ = rollout(env, act, key, params)
        return jnp.sum(rewards, 0) / params.reward_scale[jnp.asarray(env.kind_of_row)]

    bank_axis = jax.vmap(one, in_axes=(0, 0, None, None))
    return jax.jit(jax.vmap(bank_axis, in_axes=(None, None, None, 0)))


def unilateral(
    env: Any, policy: Any, keys, bank, state, among_trained: bool = False
) -> dict[str, list[float]]:
    """Per kind and scenario: the mean over the kind's agents of one agent's return with
    ``state``'s trained policy minus with its rule, every other agent playing its rule
    (``among_trained=False``: is the policy a better response to the rules than the rule?) or
    its trained policy (``True``: is it a better response than the rule in the trained
    market?)."""
    n = env.num_agents
    f = agent_returns(env, policy)
    eye = jnp.eye(n, dtype=bool)
    alone = np.asarray(f(keys, bank, state, ~eye if among_trained else eye))  # [N, M, N]
    base = np.asarray(f(keys, bank, state, jnp.full((1, n), among_trained)))[0]  # [M, N]
    own = np.diagonal(alone, axis1=0, axis2=2) - base  # agent j's return, j deviating: [M, N]
    if among_trained:
        own = -own
    kinds = np.asarray(env.kind_of_row)
    return {
        name: own[:, kinds == k].mean(axis=1).tolist()
        for k, name in enumerate(KINDS)
        if env.counts[k]
    }


MARKETS = {  # kind_gains' markets, as the report's findings word them
    "trained": "in the market it was trained in",
    "scripted": "trained alone among scripted agents",
    "one": "one agent trained among agents all playing their rules",
    "one_trained": "as one agent among agents all trained",
}


def kind_gains(result: dict, algo: str, market: str) -> dict[str, dict]:
    """Per kind: its trained agents' return minus its rule's, mean over seeds x scenarios with
    the paired s.e. (per scenario) and the s.e. over seeds. ``market="scripted"``: the kind
    trained alone among scripted agents against all scripted; ``"trained"``: all trained
    against the kind playing its rule among the other trained kinds; ``"one"``: one agent
    trained among agents all playing their rules; ``"one_trained"``: one agent trained against
    that agent alone playing its rule, every other agent trained (both: mean over the kind's
    agents). A multi-actor study cell's results (``result``) hold every market's episodes."""
    res = result["algos"][algo]
    out: dict[str, dict] = {}
    if market == "one_trained" and market not in res:  # results of an older study version
        return out
    for kind in res["rule_in_trained"]:
        key = f"return_{kind}"
        if market in ("one", "one_trained"):
            mine = [np.asarray(s) for s in res["one_alone" if market == "one" else market][kind]]
            ref = [np.zeros_like(m) for m in mine]
        elif market == "scripted":
            mine = [np.asarray(s[key]) for s in res["episodes"][kind]]
            ref = [np.asarray(result["scripted"][key])] * len(mine)
        else:
            mine = [np.asarray(s[key]) for s in res["episodes"]["all"]]
            ref = [np.asarray(s[key]) for s in res["rule_in_trained"][kind]]
        diffs = np.asarray([m - r for m, r in zip(mine, ref, strict=True)])
        seed_means = diffs.mean(axis=1)
        if market == "one":
            rule = np.mean(result["scripted"][key])
        elif market == "one_trained":  # the kind's mean return, each agent on its rule alone
            rule = np.mean([s[key] for s in res["episodes"]["all"]]) - diffs.mean()
        else:
            rule = np.mean(ref)
        out[kind] = {
            "diff": float(diffs.mean()),
            "paired_se": float(diffs.std(ddof=1) / np.sqrt(diffs.size)),
            "seed_se": float(seed_means.std(ddof=1) / np.sqrt(seed_means.size))
            if seed_means.size > 1
            else 0.0,
            "rule": float(rule),
            "wins": int((seed_means > 0).sum()),
            "seeds": int(seed_means.size),
        }
    return out


def margin(g: dict) -> float:
    """What a difference must exceed to count as ahead or behind: 2 paired s.e., and a
    millionth of the rule's return (identical play differs by float rounding only)."""
    return max(2 * g["paired_se"], 1e-6 * abs(g["rule"]))


@functools.lru_cache(maxsize=8)
def deviation(markup: float):
    """``policy(key, obs, env, params, (_, rows))``: the scripted market with the consumers on
    ``rows`` bidding ``markup`` times their supplier's retail price locally."""
    scripted = policies.BASELINES[SCRIPTED]

    def policy(key, obs, env, params, state):
        a = scripted(key, obs, env, params)
        dev = policies.consumers(obs, env, params, bid_markup=markup)
        cons = env.slices.cons
        return a.at[cons].set(jnp.where(state[1][cons, None], dev, a[cons]))

    return policy


def consumer_dilemma(env: Any, keys, bank, markups) -> dict[str, dict[str, list[float]]]:
    """Per bid markup: the consumers' return (per scenario, mean over consumers) when one
    consumer deviates (its own gain, averaged over which one) and when all do, minus the
    rule's."""
    n, cons = env.num_agents, env.slices.cons
    out = {}
    for m in markups:
        f = agent_returns(env, deviation(float(m)))
        c = env.num_consumers
        rows = np.zeros((c + 2, n), bool)
        rows[:c, cons] = np.eye(c, dtype=bool)  # each consumer alone
        rows[-1, cons] = True  # all consumers; row -2 stays all-rule
        r = np.asarray(f(keys, bank, (None, None), jnp.asarray(rows)))  # [C + 2, M, N]
        base = r[-2][:, cons]
        one = np.diagonal(r[:c, :, cons], axis1=0, axis2=2)  # [M, C]
        out[f"{m:g}"] = {
            "one": (one - base).mean(axis=1).tolist(),
            "all": (r[-1][:, cons] - base).mean(axis=1).tolist(),
        }
    return out


def dilemma_rows(results: dict) -> list[dict]:
    """The dilemma table: per cell and bid markup, one consumer's gain and all consumers'."""
    rows = []
    for cell, r in results.items():
        for m, d in r.get("consumer_dilemma", {}).items():
            g = ev.summarize({"one": d["one"], "all": d["all"]})
            rows.append(
                {
                    "cell": cell,
                    "bid / retail price": m,
                    "one consumer": f"{g['one']:+.3f} ± {g['one_se']:.3f}",
                    "all consumers": f"{g['all']:+.3f} ± {g['all_se']:.3f}",
                }  # fmt: skip
            )
    return rows


def dilemma_findings(results: dict) -> list[str]:
    """The dilemma in one sentence, mean over the cells."""
    dilemma = [r["consumer_dilemma"] for r in results.values() if "consumer_dilemma" in r]
    markups = sorted({m for d in dilemma for m in d}, key=float)
    if not markups:
        return []
    parts = []
    for m in markups:
        one = np.mean([np.mean(d[m]["one"]) for d in dilemma])
        every = np.mean([np.mean(d[m]["all"]) for d in dilemma])
        parts.append(f"at {m}x the retail price one gains {one:+.3f}, all {every:+.3f}")
    return [
        "Consumers' local bids, scripted market, mean over the cells (currency per episode "
        "per consumer, against the rule): " + "; ".join(parts) + ". Where one consumer gains "
        "by bidding above the retail price and the consumers together lose when all do, "
        "outbidding each other for the prosumers' surplus is a dilemma: a learner that "
        "finds the individual gain cannot keep it once every consumer learns it."
    ]
