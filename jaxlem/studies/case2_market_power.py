"""``jaxlem-study case2-market-power``: heterogeneity and market power on the four case-2
structures, balanced, monopoly, oligopoly and cooperative (config:
``jaxlem/configs/study/case2-market-power.yaml``).

One cell per structure (6 agents each). Each cell trains the main job's learner with several
seeds and plays the held-out scenarios with the trained agents, the scripted baselines and the
perfect-foresight optimum (``lem_cells``), keeping per agent: return, P2P sales and receipts,
the FiT value of those sales, the energy offered against the surplus, and the surplus-weighted
ask price. From these the report computes, per size group (the large agents of the structure
against the small ones): the Lerner index ``(p - c)/p`` against the FiT, the withholding ratio
``1 - offered/surplus`` and the ask price, and answers "do the big agents mark up or withhold?"
with paired differences (large − small on the same scenarios) and their s.e.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from omegaconf import DictConfig

import jaxlem
from jaxlem import metrics
from jaxlem.studies import figures, lem_cells, tables
from jaxlem.studies.runner import header
from jaxlem.train import banks
from jaxlem.train import evaluate as ev

CLEAR_CACHES = True  # one compiled trainer, evaluator and optimum per structure
POLICIES = ["trained", "rule_based_battery", "zero_intelligence"]
KPIS = ("mean_agent_return", "gain_share", "community_cost", "hhi_sales", "cr1_sales",
        "cr3_sales", "lerner", "withholding", "clearing_price_mean", "p2p_share",
        "gini_profit")  # fmt: skip
GROUP_KPIS = ("lerner", "withholding", "ask_price", "return_per_agent")


def cells(cfg: DictConfig) -> list[str]:
    return [str(s) for s in cfg.structures]


def _env(structure: str) -> Any:
    return jaxlem.make("lem-v0", scenario=f"case2-{structure}")


def large_agents(pv_kw: np.ndarray) -> np.ndarray:
    """The large agents of each scenario (bool [S, N] from PV sizes [S, N] kW): PV at least
    half the scenario's largest; where that is every agent (balanced), the single largest."""
    kw = np.asarray(pv_kw, np.float64)
    large = kw >= 0.5 * kw.max(axis=1, keepdims=True)
    top = np.zeros_like(large)
    top[np.arange(len(kw)), kw.argmax(axis=1)] = True
    return np.where(large.all(axis=1, keepdims=True), top, large)


def agent_sums(env: Any, info: dict, rewards: jax.Array, params: Any) -> dict[str, jax.Array]:
    """Per-agent episode sums [N]: return, P2P energy sold and receipts (currency), the FiT
    value of that energy (currency), energy offered and surplus (kWh), and the ask price
    weighted by the surplus (currency/MWh x kWh)."""
    sold = info["p2p_sold_kwh"]
    surplus = jnp.maximum(info["net_position_kwh"], 0.0)
    return {
        "agent_return": jnp.sum(rewards, axis=0),
        "agent_sold": jnp.sum(sold, axis=0),
        "agent_receipts": jnp.sum(jnp.maximum(-info["p2p_payment"], 0.0) * (sold > 0), axis=0),
        "agent_fit_value": jnp.sum(sold * info["fit"][:, None], axis=0) / 1000.0,
        "agent_offered": jnp.sum(jnp.where(surplus > 0, info["order_kwh"], 0.0), axis=0),
        "agent_surplus": jnp.sum(surplus, axis=0),
        "agent_ask": jnp.sum(info["order_price"] * surplus, axis=0),
    }


def group_kpis(sample: dict, mask: np.ndarray) -> dict[str, np.ndarray]:
    """Per-scenario KPIs of the agents in ``mask`` [S, N]: Lerner index, withholding ratio,
    mean ask price (surplus-weighted), mean return per agent; NaN where the group sold nothing
    (Lerner) or had no surplus (withholding, ask)."""
    s = {k: (np.asarray(v) * mask).sum(axis=1) for k, v in sample.items() if k.startswith("agent_")}
    with np.errstate(divide="ignore", invalid="ignore"):
        return {
            "lerner": np.where(s["agent_sold"] > 1e-6,
                               1.0 - s["agent_fit_value"] / s["agent_receipts"], np.nan),
            "withholding": np.where(s["agent_surplus"] > 1e-6,
                                    1.0 - s["agent_offered"] / s["agent_surplus"], np.nan),
            "ask_price": np.where(s["agent_surplus"] > 1e-6,
                                  s["agent_ask"] / s["agent_surplus"], np.nan),
            "return_per_agent": s["agent_return"] / np.maximum(mask.sum(axis=1), 1),
        }  # fmt: skip


def capacity_table(bank: Any) -> dict[str, float]:
    """PV capacity of the structure as the held-out bank draws it (means over scenarios)."""
    kw = np.asarray(bank.pv_kw, np.float64)  # [S, N]
    return {
        "agents": int(kw.shape[1]),
        "large_agents": float(large_agents(kw).sum(axis=1).mean()),
        "total_kw": float(kw.sum(1).mean()),
        "min_kw": float(kw.min(1).mean()),
        "max_kw": float(kw.max(1).mean()),
        "ratio": float((kw.max(1) / kw.min(1)).mean()),
        "largest_share": float((kw.max(1) / kw.sum(1)).mean()),
        "hhi_capacity": float(np.mean(metrics.hhi(jnp.asarray(kw)))),
        "cr1_capacity": float(np.mean(metrics.concentration_ratio(jnp.asarray(kw), 1))),
        "cr3_capacity": float(np.mean(metrics.concentration_ratio(jnp.asarray(kw), 3))),
    }


def run_cell(cfg: DictConfig, cell: str, log) -> dict:
    env = _env(cell)
    out = lem_cells.run(cfg, env, log, extra=agent_sums)
    held = banks.held_out_bank(env, int(cfg.eval_scenarios), 0)
    out["capacity"] = capacity_table(held)
    out["pv_kw"] = np.asarray(held.pv_kw).tolist()  # [S, N]
    return out


# ---------------------------------------------------------------------------- report


def _samples(r: dict, policy: str) -> list[dict]:
    return r["trained"] if policy == "trained" else [r["baselines"][policy]]


def group_rows(results: dict) -> list[dict]:
    """Per (structure, policy): each group KPI of the large and of the small agents (mean ±
    s.e. over scenarios and seeds, scenarios where the group has no value left out) and the
    paired difference large − small on the same scenarios."""
    out = []
    for st, r in results.items():
        large = large_agents(np.asarray(r["pv_kw"]))
        for pol in POLICIES:
            row: dict[str, Any] = {"structure": st, "policy": pol}
            for key in GROUP_KPIS:
                big, small = [], []
                for s in _samples(r, pol):
                    big.append(group_kpis(s, large)[key])
                    small.append(group_kpis(s, ~large)[key])
                b, sm = np.concatenate(big), np.concatenate(small)
                for name, v in (("large", b), ("small", sm), ("diff", b - sm)):
                    v = v[np.isfinite(v)]
                    row[f"{key}_{name}"] = float(v.mean()) if v.size else float("nan")
                    row[f"{key}_{name}_se"] = (
                        float(v.std(ddof=1) / np.sqrt(v.size)) if v.size > 1 else 0.0
                    )
            out.append(row)
    return out


def rows(results: dict) -> list[dict]:
    out = []
    for st, r in results.items():
        out.append({"structure": st, "policy": "trained", **lem_cells.seed_means(r, KPIS)})
        for name in POLICIES[1:]:
            s = r["baselines"][name]
            out.append({"structure": st, "policy": name, **ev.summarize({k: s[k] for k in KPIS})})
        best = r["optimum"]
        out.append({"structure": st, "policy": "optimum",
                    **ev.summarize({k: best[k] for k in ("mean_agent_return", "gain_share",
                                                         "community_cost")})})  # fmt: skip
    return out


def agent_rows(results: dict) -> list[dict]:
    """Per structure and agent: mean PV kW, how often it is large, and the return of the
    trained agents (mean ± s.e. over seeds) and of the rule-based battery (over scenarios)."""
    out = []
    for st, r in results.items():
        trained = np.asarray([np.mean(s["agent_return"], axis=0) for s in r["trained"]])
        rule = np.asarray(r["baselines"]["rule_based_battery"]["agent_return"])
        n = trained.shape[0]
        kws = np.asarray(r["pv_kw"])
        share_large = large_agents(kws).mean(axis=0)
        for i, kw in enumerate(kws.mean(axis=0)):
            se = trained[:, i].std(ddof=1) / np.sqrt(n) if n > 1 else 0.0
            out.append({
                "structure": st, "agent": i, "pv_kw": f"{kw:.0f}",
                "large in": f"{share_large[i]:.0%}",
                "trained return": tables.fmt(float(trained[:, i].mean()), float(se)),
                "rule return": tables.fmt(float(rule[:, i].mean()),
                                          float(rule[:, i].std(ddof=1) / np.sqrt(len(rule)))),
            })  # fmt: skip
    return out


def report(cfg: DictConfig, results: dict, out: Path, meta: dict) -> None:
    table = rows(results)
    groups = group_rows(results)
    cap = {st: r["capacity"] for st, r in results.items()}
    tables.write_csv(out / "kpis.csv", table)
    tables.write_csv(out / "groups.csv", groups)
    tables.write_csv(out / "capacity.csv", [{"structure": s, **c} for s, c in cap.items()])
    agents = agent_rows(results)
    tables.write_csv(out / "agents.csv", agents)
    figures.market_power(cap, table, out / "market_power.png")
    figures.performance(cap, table, out / "performance.png")
    bars = [
        {"structure": g["structure"], "policy": f"{grp} ({g['policy']})",
         **{k: g[f"{k}_{grp}"] for k in GROUP_KPIS[:3]},
         **{f"{k}_se": g[f"{k}_{grp}_se"] for k in GROUP_KPIS[:3]}}
        for g in groups if g["policy"] != "zero_intelligence" for grp in ("large", "small")
    ]  # fmt: skip
    labels = [f"{grp} ({p})" for p in POLICIES[:2] for grp in ("large", "small")]
    figures.grouped_bars(bars, "structure", list(GROUP_KPIS[:3]), labels, out / "groups.png")
    figures.market_over_time({s: r["traces"] for s, r in results.items()}, out / "market.png")
    figures.trade_heatmaps(
        {s: r["traces"]["trained"]["trades"] for s, r in results.items()}, out / "trades.png"
    )
    figures.seed_band_curves(lem_cells.curves(results), out / "learning.png")
    shown = []
    for g in groups:
        if g["policy"] == "zero_intelligence":
            continue
        row = {"structure": g["structure"], "policy": g["policy"]}
        for k in GROUP_KPIS:
            for grp in ("large", "small", "diff"):
                row[f"{k} {grp if grp != 'diff' else 'large − small'}"] = tables.fmt(
                    g[f"{k}_{grp}"], g[f"{k}_{grp}_se"]
                )
        shown.append(row)
    what = (
        f"The case-2 structures ({', '.join(results)}; 6 agents each, sizes drawn per "
        f"scenario from the preset's ranges) on the same {cfg.eval_scenarios} held-out days "
        f"for every policy. Per structure, {cfg.train.algo.upper()} (the main job's learner) "
        f"trains {cfg.seeds} seeds for {cfg.train.total_timesteps:,} env steps; the trained "
        "agents, the scripted baselines and the perfect-foresight optimum play the same "
        "episodes. Large agents: PV at least half the scenario's largest (where that is "
        "every agent, as in balanced: the scenario's single largest). Lerner index "
        "(p − c)/p: p the realised P2P price of a group's sales, c the FiT those sales "
        "would have earned from the DSO. Withholding: 1 − "
        "offered/surplus after the agents' own battery decisions. Ask price: the limit price "
        "of sell orders, weighted by the surplus (currency/MWh)."
    )
    lines = [
        header("Case 2: heterogeneity and market power", meta, what),
        "## Findings",
        "",
        *[f"- {s}" for s in findings(groups, table, cap)],
        "",
        "## Capacity",
        "",
        "PV capacity (kW, means over the held-out scenarios); HHI on the 0–10,000 scale "
        "(1,500 moderately, 2,500 highly concentrated).",
        "",
        tables.markdown_plain(
            [{"structure": s, **{k: tables.fmt(v) for k, v in c.items()}} for s, c in cap.items()]
        ),
        "",
        "## Do the large agents mark up or withhold?",
        "",
        "Mean ± s.e. over scenarios (and seeds for the trained agents); `large − small`: the "
        "paired difference on the same scenarios.",
        "",
        tables.markdown_plain(shown),
        "",
        "## Market KPIs per structure and policy",
        "",
        "Trained: mean ± s.e. over seeds; baselines and the optimum: over scenarios. "
        "Concentration on realised P2P sales.",
        "",
        tables.markdown(table, ["structure", "policy"], list(KPIS)),
        "",
        "## Per-agent returns",
        "",
        tables.markdown_plain(agents),
        "",
        "## Figures",
        "",
        "Market power: HHI on capacity and on sales (trained agents) with the thresholds, CR1 "
        "and CR3, capacity range, HHI coloured by concentration class:",
        "",
        "![market power](market_power.png)",
        "",
        "Performance: mean agent return against HHI and CR1, by structure, and the ranking:",
        "",
        "![performance](performance.png)",
        "",
        "Lerner index, withholding and ask price of the large and small agents (trained and "
        "rule-based battery; error bars: s.e.):",
        "",
        "![groups](groups.png)",
        "",
        "The market over the first held-out day, and who sold to whom (trained agents):",
        "",
        "![market](market.png)",
        "",
        "![trades](trades.png)",
        "",
        "Training curves (band: min-max over seeds) with the rule's and the optimum's "
        "held-out mean return:",
        "",
        "![learning](learning.png)",
        "",
        tables.files_line("kpis.csv", "groups.csv", "capacity.csv", "agents.csv"),
        "",
    ]
    (out / "README.md").write_text("\n".join(lines))


def findings(groups: list[dict], table: list[dict], cap: dict) -> list[str]:
    """Sentences computed from the tables."""
    out = []
    for g in groups:
        if g["policy"] != "trained":
            continue
        st = g["structure"]
        parts = []
        for key, label in (("lerner", "Lerner index"), ("withholding", "withholding"),
                           ("ask_price", "ask price")):  # fmt: skip
            d, se = g[f"{key}_diff"], g[f"{key}_diff_se"]
            verdict = "higher" if d > 2 * se else "lower" if d < -2 * se else "no different"
            parts.append(
                f"{label} {g[f'{key}_large']:.3g} vs {g[f'{key}_small']:.3g} "
                f"({verdict}: {d:+.3g} ± {se:.2g})"
            )
        out.append(f"{st} (trained, large vs small agents): " + "; ".join(parts) + ".")
    trained = [g for g in groups if g["policy"] == "trained"]

    def higher(key: str) -> list[str]:
        return [g["structure"] for g in trained
                if g[f"{key}_diff"] > 2 * g[f"{key}_diff_se"]]  # fmt: skip

    mark, hold = higher("lerner"), higher("withholding")
    out.insert(
        0,
        "Do the large agents mark up or withhold? Their Lerner index is higher than the small "
        f"agents' (paired, > 2 s.e.) in {len(mark)} of {len(trained)} structures"
        + (f" ({', '.join(mark)})" if mark else "")
        + f" and their withholding in {len(hold)}"
        + (f" ({', '.join(hold)})" if hold else "")
        + "; the differences are at most "
        + f"{max((abs(g['lerner_diff']) for g in trained), default=0.0):.3f} in the Lerner "
        + f"index and {max((abs(g['withholding_diff']) for g in trained), default=0.0):.3f} in "
        + "withholding. The rule-based battery offers everything (withholding 0) at the DSO "
        + "mid price.",
    )
    by = {(r["structure"], r["policy"]): r for r in table}
    sts = list(cap)
    conc = sorted(sts, key=lambda s: cap[s]["hhi_capacity"])
    out.append(
        "Capacity concentration (HHI) from "
        + ", ".join(f"{s} {cap[s]['hhi_capacity']:.0f}" for s in conc)
        + "; concentration of realised sales with trained agents "
        + ", ".join(f"{s} {by[(s, 'trained')]['hhi_sales']:.0f}" for s in conc)
        + " (rule-based battery "
        + ", ".join(f"{s} {by[(s, 'rule_based_battery')]['hhi_sales']:.0f}" for s in conc)
        + ")."
    )
    out.append(
        "Gain share of the trained agents "
        + ", ".join(
            f"{s} {by[(s, 'trained')]['gain_share']:.2f} (rule "
            f"{by[(s, 'rule_based_battery')]['gain_share']:.2f})"
            for s in sts
        )
        + "."
    )
    return out
