"""The regulator's rates in the trained multi-actor market, for the multi-actor study.

In a market whose other agents were trained, the trained regulator's rates change welfare only
through how those agents answer them (fines and subsidies are transfers, and the scripted rules
ignore the rates). This module replaces the trained regulator by fixed rates from a grid (the
fixed rule is one of its points) while every other agent keeps its trained policy, and reports
each point's welfare against the trained regulator's on the same held-out scenarios: where the
trained regulator sits on that landscape, and how far the best fixed rates lie above it.
"""

from __future__ import annotations

import functools
import itertools
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from jaxlem.envs.multiactor import policies, stages
from jaxlem.studies import multiactor_deviations as deviations
from jaxlem.train import evaluate as ev

LEVELS = (0.0, 0.5, 1.0)  # each rate as a share of its largest value
GRID = np.asarray(list(itertools.product(LEVELS, LEVELS, LEVELS)), np.float32)  # [27, 3]
RULE = (1.0, 0.5, 0.5)  # policies.FIXED_RULE
RULE_INDEX = int(np.flatnonzero((GRID == np.asarray(RULE, np.float32)).all(axis=1))[0])
NAMES = ("gouging fine", "output subsidy", "investment subsidy")


@functools.lru_cache(maxsize=16)
def fixed_rates(core: Any):
    """``policy(key, obs, env, params, (runner, rates [3]))``: every agent trained, the
    regulator too where ``rates`` is NaN; elsewhere the regulator sets ``rates`` (shares of their
    largest values) every day."""
    trained = ev.trained_policy(core)

    def policy(key, obs, env, params, state):
        runner, rates = state
        a = trained(key, obs, env, params, runner)
        fixed = policies.regulator(rates[0], rates[1], rates[2])(key, obs, env, params)
        reg = env.slices.reg
        return a.at[reg].set(jnp.where(jnp.isnan(rates[0]), a[reg], fixed))

    return policy


@functools.lru_cache(maxsize=16)
def _first_day(env: Any, core: Any):
    """jit: the trained regulator's rates on the first day of each scenario ([M, 3])."""
    trained = ev.trained_policy(core)

    def one(key, params, runner):
        obs, _ = env.reset(key, params)
        return stages.unit(trained(key, obs, env, params, runner)[env.slices.reg][0, :3])

    return jax.jit(jax.vmap(one, in_axes=(0, 0, None)))


def landscape(env: Any, core: Any, keys, bank, runner) -> dict[str, list]:
    """``rates``: the trained regulator's first-day rates, mean over the held-out scenarios;
    ``gain``: per grid point and scenario, the regulator's return (welfare, currency per
    episode) with those fixed rates minus with the trained regulator, on the same episodes."""
    f = deviations.agent_returns(env, fixed_rates(core))
    rows = jnp.asarray(np.vstack([GRID, np.full((1, 3), np.nan, np.float32)]))
    welfare = np.asarray(f(keys, bank, (runner, None), rows))[:, :, env.num_agents - 1]
    rates = np.asarray(_first_day(env, core)(keys, bank, runner)).mean(axis=0)
    return {"rates": rates.tolist(), "gain": (welfare[:-1] - welfare[-1]).tolist()}


def summary(per_seed: list[dict]) -> dict[str, Any]:
    """Over seeds: the trained regulator's mean rates; per grid point the mean gain with its
    paired s.e. (seeds x scenarios) and the seeds whose mean gain is positive."""
    gain = np.asarray([s["gain"] for s in per_seed], np.float64)  # [S, J, M]
    s, _, m = gain.shape
    flat = gain.transpose(1, 0, 2).reshape(len(GRID), s * m)
    mean = flat.mean(axis=1)
    se = flat.std(axis=1, ddof=1) / np.sqrt(flat.shape[1])
    best = int(np.argmax(mean))
    return {
        "rates": np.mean([p["rates"] for p in per_seed], axis=0).tolist(),
        "mean": mean.tolist(),
        "se": se.tolist(),
        "seeds_above": (gain.mean(axis=2) > 0).sum(axis=0).tolist(),
        "ahead": int((mean > 2 * se).sum()),
        "behind": int((mean < -2 * se).sum()),
        "best": best,
        "rule": RULE_INDEX,
    }


def _rates(u) -> str:
    return "(" + ", ".join(f"{x:.2f}" for x in u) + ")"


def rows(results: dict) -> list[dict]:
    """One table row per regulated cell and algorithm."""
    out = []
    for cell, r in results.items():
        for algo, a in r["algos"].items():
            if "rates" not in a:
                continue
            g = summary(a["rates"])
            b, k = g["best"], g["rule"]
            out.append(
                {
                    "cell": cell,
                    "algo": algo,
                    "trained regulator's rates": _rates(g["rates"]),
                    "fixed rule - trained": f"{g['mean'][k]:+.2f} ± {g['se'][k]:.2f}",
                    "best fixed rates": _rates(GRID[b]),
                    "best - trained": f"{g['mean'][b]:+.2f} ± {g['se'][b]:.2f}",
                    "worst - trained": f"{min(g['mean']):+.2f}",
                    "points ahead / behind": f"{g['ahead']} / {g['behind']} of {len(GRID)}",
                }
            )
    return out


def findings(results: dict) -> list[str]:
    """Sentences on where the trained regulators sit among the fixed rates."""
    per = [
        (cell, algo, summary(a["rates"]))
        for cell, r in results.items()
        for algo, a in r["algos"].items()
        if "rates" in a
    ]
    if not per:
        return []
    n = len(GRID)
    ahead = [g["ahead"] for _, _, g in per]
    behind = [g["behind"] for _, _, g in per]
    spread = [max(g["mean"]) - min(g["mean"]) for _, _, g in per]
    return [
        f"The trained regulator against {n} fixed rates (each of {', '.join(NAMES)} at "
        f"{', '.join(f'{x:g}' for x in LEVELS)} of its largest value), every other agent "
        "trained: per (cell, algorithm), the fixed points ahead of the trained regulator beyond "
        f"2 paired s.e. number {min(ahead)}-{max(ahead)} and those behind it "
        f"{min(behind)}-{max(behind)}; the welfare of the fixed points spans "
        f"{min(spread):.1f}-{max(spread):.1f} per episode around it. "
        + "; ".join(
            f"{cell} {algo}: rates {_rates(g['rates'])}, best fixed {_rates(GRID[g['best']])} "
            f"{g['mean'][g['best']]:+.2f} ± {g['se'][g['best']]:.2f}"
            for cell, algo, g in per
        )
        + ". The rates matter here only through the trained agents' answers to them, which "
        "they learned against the trained regulator's own rates."
    ]
