"""Tradable share and demand diversity of every preset (batteries idle), for the scenarios table.

    python experiments/community_table.py

Runs 64 episodes per preset (a scenario bank drawn by ``sample_params``, batteries idle, no P2P:
the ``dso_only`` policy, so only PV and demand matter) and reports the share of demand that peers
could trade, ``sum_t min(sum_i surplus_it, sum_i deficit_it) / sum_it demand_it``, and the mean
pairwise correlation of the agents' demand over an episode. Writes
``experiments/results/communities/tradable_share.csv`` and rewrites the table in
``docs/scenarios.md`` between its markers.
"""

from __future__ import annotations

import csv
import re
from pathlib import Path

import jax
import numpy as np

import jaxlem
from jaxlem import metrics
from jaxlem.envs.lem import policies, scenarios
from jaxlem.rollout import rollout

EPISODES = 64
ROOT = Path(__file__).resolve().parents[1]
OUT = ROOT / "experiments" / "results" / "communities"
DOC = ROOT / "docs" / "scenarios.md"
MARK = ("<!-- tradable-share:start -->", "<!-- tradable-share:end -->")


def stats(env, bank, key) -> tuple[float, float]:
    keys = jax.random.split(key, EPISODES)

    def episode(k, p):
        _, infos = rollout(env, policies.dso_only, k, p)
        return infos["gen_kwh"], infos["demand_kwh"]

    gen, dem = jax.jit(jax.vmap(episode))(keys, bank)
    x = np.asarray(gen, np.float64) - np.asarray(dem, np.float64)
    tradable = np.minimum(np.maximum(x, 0).sum(-1), np.maximum(-x, 0).sum(-1)).sum()
    corr = jax.vmap(metrics.mean_pairwise_correlation)(dem)
    return float(tradable / np.asarray(dem, np.float64).sum()), float(np.mean(corr))


def main() -> None:
    rows = []
    names = [n for n in scenarios.names() if not n.startswith("case1-")]  # case 1 = default
    for i, name in enumerate(names):
        env = jaxlem.make("lem-v0", scenario=name) if name != "default" else jaxlem.make("lem-v0")
        bank = env.sample_params(jax.random.PRNGKey(1000 + i), EPISODES)
        share, corr = stats(env, bank, jax.random.PRNGKey(2000 + i))
        rows.append(dict(scenario=name, agents=env.num_agents, grid_mode=env.grid_mode,
                         tradable_share=share, demand_correlation=corr))  # fmt: skip
        print(f"{name:<22} N={env.num_agents:<3} tradable share {share:6.1%}  corr {corr:.2f}")
    OUT.mkdir(parents=True, exist_ok=True)
    with open(OUT / "tradable_share.csv", "w", newline="") as fh:
        w = csv.DictWriter(fh, fieldnames=list(rows[0]))
        w.writeheader()
        w.writerows(rows)
    table = [
        "| scenario | agents | grid mode | tradable share of demand "
        "| mean pairwise demand correlation |",
        "|---|---:|---|---:|---:|",
    ]
    for r in rows:
        table.append(
            f"| `{r['scenario']}` | {r['agents']} | {r['grid_mode']} | "
            f"{r['tradable_share']:.1%} | {r['demand_correlation']:.2f} |"
        )
    text = DOC.read_text()
    pattern = re.escape(MARK[0]) + ".*?" + re.escape(MARK[1])
    block = MARK[0] + "\n" + "\n".join(table) + "\n" + MARK[1]
    DOC.write_text(re.sub(pattern, lambda _: block, text, flags=re.S))
    print(f"wrote {OUT / 'tradable_share.csv'} and the table in {DOC}")


if __name__ == "__main__":
    main()
