"""``jaxlem-study case1-mechanisms``: every pricing rule on the same communities
(config: ``jaxlem/configs/study/case1-mechanisms.yaml``).

One cell per rule (the rule is a static setting: one compiled trainer per rule). The held-out
communities are the same draws for every rule (the rule is not in params). Each cell trains the
main job's learner with several seeds and plays the held-out scenarios with the trained agents,
the scripted baselines and the perfect-foresight optimum (which does not depend on the rule:
P2P payments move money inside the community). Per policy: the P2P price (volume-weighted) and
its volatility, the P2P volume and share, the community's cost, buyers' and sellers' gain from
P2P trading against the DSO's prices, the gain share, and the largest absolute sum of the P2P
payments of one step (zero up to float rounding under every rule).
"""

from __future__ import annotations

import functools
from pathlib import Path
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from omegaconf import DictConfig, OmegaConf

import jaxlem
from jaxlem import viz
from jaxlem.envs.lem import policies
from jaxlem.studies import lem_cells, tables
from jaxlem.studies.runner import header
from jaxlem.train import banks
from jaxlem.train import evaluate as ev
from jaxlem.train.config import TrainConfig
from jaxlem.train.driver import run_training

CLEAR_CACHES = True  # one compiled trainer, evaluator and optimum per rule
BASELINES = ("rule_based_battery", "zero_intelligence", "dso_only")
KPIS = (
    "mean_agent_return",
    "gain_share",
    "community_cost",
    "clearing_price_mean",
    "price_volatility",
    "p2p_volume_kwh",
    "p2p_share",
    "buyers_gain",
    "sellers_gain",
    "p2p_net_max_abs",
    "self_sufficiency",
)
KWH_PER_MWH = 1000.0


def cells(cfg: DictConfig) -> list[str]:
    return [str(r) for r in cfg.rules]


@functools.lru_cache(maxsize=16)
def _env(rule: str, num_agents: int) -> Any:
    return jaxlem.make("lem-v0", scenario=f"case1-{rule}", num_agents=num_agents)


def p2p_split(env: Any, info: dict, rewards: jax.Array, params: Any) -> dict[str, jax.Array]:
    """The P2P split of an episode: buyers' gain (what they would have paid the utility minus
    what they paid peers) and sellers' gain (what peers paid them minus the FiT), currency;
    the P2P volume (kWh) and the largest |sum of P2P payments| of one step."""
    pay = info["p2p_payment"]  # [T, N] currency, > 0 pays
    bought, sold = info["p2p_bought_kwh"], info["p2p_sold_kwh"]
    util = info["utility"][:, None] / KWH_PER_MWH
    fit = info["fit"][:, None] / KWH_PER_MWH
    return {
        "buyers_gain": jnp.sum(bought * util - jnp.maximum(pay, 0.0) * (bought > 0)),
        "sellers_gain": jnp.sum(jnp.maximum(-pay, 0.0) * (sold > 0) - sold * fit),
        "p2p_volume_kwh": jnp.sum(info["p2p_volume_kwh"]),
        "p2p_net_max_abs": jnp.max(jnp.abs(jnp.sum(pay, axis=1))),
    }


def _run(env, policy, bank, seed: int, state=None) -> dict[str, np.ndarray]:
    return lem_cells.play(env, policy, bank, seed, state, extra=p2p_split)


def run_cell(cfg: DictConfig, cell: str, log) -> dict:
    env = _env(cell, int(cfg.env.num_agents))
    held = banks.held_out_bank(env, int(cfg.eval_scenarios), 0)
    ep_seed = banks.held_out_episode_seed(0)
    samples = {
        name: _run(env, ev.stateless(policies.BASELINES[name]), held, ep_seed) for name in BASELINES
    }
    best = ev.optimum_kpis(env, held, ep_seed)["mean_agent_return"]
    null = samples["dso_only"]["mean_agent_return"]
    train_cfg = TrainConfig.from_dict(OmegaConf.to_container(cfg.train))
    seeds = tuple(range(int(cfg.seeds)))
    res = run_training(
        train_cfg, env, seeds=seeds, num_chunks=int(cfg.num_chunks), log=lambda s: log("  " + s)
    )
    pol = ev.trained_policy(res["train"].core)
    trained = [_run(env, pol, held, ep_seed, ev.seed_slice(res["runners"], i)) for i in seeds]
    for s in [*samples.values(), *trained]:
        s["gain_share"] = ev.gain_share(s["mean_agent_return"], null, best)

    def mean(s: dict) -> dict[str, float]:
        return {k: float(np.mean(s[k])) for k in KPIS}

    return {
        "baselines": {n: {k: s[k].tolist() for k in KPIS} for n, s in samples.items()},
        "trained": [mean(s) for s in trained],  # per seed: means over the held-out scenarios
        "optimum_return": float(np.mean(best)),
        "train_seconds": res["wall_s"],
        "env_steps_per_s": res["env_steps_per_s"],
    }


# ---------------------------------------------------------------------------- report


def rows(results: dict) -> list[dict]:
    """One row per (rule, policy): trained mean ± s.e. over seeds, baselines over scenarios."""
    out = []
    for rule, r in results.items():
        seeds = ev.summarize({k: [s[k] for s in r["trained"]] for k in KPIS})
        out.append({"rule": rule, "policy": "trained", **seeds})
        for name, s in r["baselines"].items():
            out.append({"rule": rule, "policy": name, **ev.summarize(s)})
    return out


def report(cfg: DictConfig, results: dict, out: Path, meta: dict) -> None:
    table = rows(results)
    tables.write_csv(out / "kpis.csv", table)
    shown = ("gain_share", "community_cost", "clearing_price_mean", "price_volatility",
             "p2p_volume_kwh", "buyers_gain", "sellers_gain", "p2p_net_max_abs")  # fmt: skip
    for policy in ("trained", "rule_based_battery"):
        sub = {r["rule"]: r for r in table if r["policy"] == policy}
        keys = ["clearing_price_mean", "p2p_volume_kwh", "community_cost", "buyers_gain",
                "sellers_gain", "gain_share"]  # fmt: skip
        viz.kpi_bars(sub, keys, out / f"rules_{policy}.png")
    what = (
        f"Every pricing rule of lem-v0 ({len(results)} rules) on the same {cfg.eval_scenarios} "
        f"held-out communities of {cfg.env.num_agents} agents (one day of hourly steps each). "
        f"Per rule, {cfg.train.algo.upper()} (the main job's learner) trains {cfg.seeds} seeds "
        f"for {cfg.train.total_timesteps:,} env steps; the trained agents, the scripted "
        "baselines and the perfect-foresight optimum play the same episodes. Money in currency "
        "per episode, prices in currency/MWh, energy in kWh. Buyers' gain: what P2P buyers "
        "would have paid the utility minus what they paid peers; sellers' gain: what peers "
        "paid them minus the feed-in tariff."
    )
    lines = [
        header("Case 1: pricing mechanisms", meta, what),
        "## Findings",
        "",
        *[f"- {s}" for s in findings(table)],
        "",
        "## Every rule, every policy",
        "",
        "Trained: mean ± s.e. over seeds (each seed's mean over the held-out scenarios). "
        "Baselines: mean ± s.e. over scenarios. `p2p_net_max_abs`: the largest absolute sum "
        "of one step's P2P payments over the community (currency).",
        "",
        tables.markdown(table, ["rule", "policy"], shown),
        "",
        "## Figures",
        "",
        "Per rule, trained agents: P2P price, P2P volume, community cost, buyers' and sellers' "
        "gain, gain share (error bars: s.e. over seeds):",
        "",
        "![trained](rules_trained.png)",
        "",
        "The same for the rule-based battery (s.e. over scenarios):",
        "",
        "![rule-based battery](rules_rule_based_battery.png)",
        "",
        "Files: `kpis.csv` (every KPI with its s.e.), `cells/*.json` (raw per-scenario "
        "results of the baselines, per-seed means of the trained agents; written by the "
        "command, not committed), `study.json`.",
        "",
    ]
    (out / "README.md").write_text("\n".join(lines))


def findings(table: list[dict]) -> list[str]:
    """Sentences computed from the table."""
    out = []
    worst = max(r["p2p_net_max_abs"] for r in table)
    out.append(
        f"P2P payments net to zero under every rule and policy: the largest absolute sum of "
        f"one step's payments over the community is {worst:.1e} currency (float rounding)."
    )
    for policy in ("rule_based_battery", "trained"):
        sub = [r for r in table if r["policy"] == policy]
        if len(sub) < 2:
            continue
        cheap = min(sub, key=lambda r: r["community_cost"])
        dear = max(sub, key=lambda r: r["community_cost"])
        vol_c, vol_d = cheap["p2p_volume_kwh"], dear["p2p_volume_kwh"]
        out.append(
            f"{policy}: community cost ranges from {cheap['community_cost']:.2f} "
            f"({cheap['rule']}) to {dear['community_cost']:.2f} ({dear['rule']}); P2P volume "
            f"{vol_c:.1f} vs {vol_d:.1f} kWh and P2P price {cheap['clearing_price_mean']:.1f} vs "
            f"{dear['clearing_price_mean']:.1f} currency/MWh. The P2P price only moves money "
            "between members; the community's cost differs through the volume the rule lets "
            "the members match (and the fees and losses of the rule's matching)."
        )
        buyers = max(sub, key=lambda r: r["buyers_gain"] - r["sellers_gain"])
        sellers = min(sub, key=lambda r: r["buyers_gain"] - r["sellers_gain"])
        out.append(
            f"{policy}: who gains: buyers most under {buyers['rule']} (buyers "
            f"{buyers['buyers_gain']:.2f} vs sellers {buyers['sellers_gain']:.2f}), sellers most "
            f"under {sellers['rule']} (buyers {sellers['buyers_gain']:.2f} vs sellers "
            f"{sellers['sellers_gain']:.2f})."
        )
    tr = [r for r in table if r["policy"] == "trained"]
    rb = {r["rule"]: r for r in table if r["policy"] == "rule_based_battery"}
    if tr:
        ahead = [
            r["rule"]
            for r in tr
            if r["gain_share"] - r["gain_share_se"] > rb[r["rule"]]["gain_share"]
        ]
        out.append(
            f"Trained agents' gain share {min(r['gain_share'] for r in tr):.2f} to "
            f"{max(r['gain_share'] for r in tr):.2f} across rules; above the rule-based battery "
            f"(by more than one s.e.) under {len(ahead)} of {len(tr)} rules"
            + (f" ({', '.join(ahead)})." if ahead else ".")
        )
    return out
