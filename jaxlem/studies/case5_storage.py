"""``jaxlem-study case5-storage``: the six storage presets of case 5 (config:
``jaxlem/configs/study/case5-storage.yaml``).

One cell per preset (the agent count is a static setting: one compiled trainer per preset).
Each cell trains the main job's learner with several seeds on the preset's scenario bank and
plays the held-out scenarios with the trained agents, the scripted baselines and the
perfect-foresight optimum (``lem_cells``). The report gives, per preset and policy: community
cost, self-sufficiency, peak-to-average import, battery throughput and cycles, price
volatility, storage alignment (does storage absorb the community's surplus?), gain share and
deadweight loss; the storage table of each preset (battery ratio, agents with storage, average
efficiency, SOC window, diversity); and figures: KPIs by preset, the storage configuration,
the market over one episode, price and volume distributions, trade heatmaps and a trading
network, SOC trajectories, learning curves.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import jax
import numpy as np
from omegaconf import DictConfig

import jaxlem
from jaxlem.envs.lem import scenarios
from jaxlem.studies import figures, lem_cells, tables
from jaxlem.studies.runner import header
from jaxlem.train import banks
from jaxlem.train import evaluate as ev

CLEAR_CACHES = True  # one compiled trainer, evaluator and optimum per preset (agent count)
POLICIES = ["trained", "rule_based_battery", "zero_intelligence", "optimum"]
KPIS = (
    "mean_agent_return",
    "gain_share",
    "community_cost",
    "self_sufficiency",
    "peak_to_average_import",
    "battery_throughput_kwh",
    "cycles",
    "price_volatility",
    "storage_alignment",
    "p2p_share",
    "deadweight_loss",
)


def cells(cfg: DictConfig) -> list[str]:
    return [str(p) for p in cfg.presets]


def _env(preset: str) -> Any:
    return jaxlem.make("lem-v0", scenario=f"case5-{preset}")


def storage_table(env: Any, bank: Any) -> dict[str, float]:
    """The preset's storage as the held-out bank draws it: battery ratio (storage kWh per kW of
    PV, community total), agents with storage, their mean round-trip efficiency, mean SOC
    window, mean degradation cost (currency/MWh) and diversity (distinct battery technologies:
    ratio, efficiency, SOC window, degradation cost)."""
    p = jax.tree_util.tree_map(np.asarray, bank)
    has = p.bat_kwh[0] > 0
    sites = scenarios.sites(env.scenario)
    tech = {(s.ratio, s.eta, tuple(s.soc), s.deg) for s in sites if s.ratio > 0}
    rt = (p.eta_c * p.eta_d)[:, has]
    return {
        "agents": int(env.num_agents),
        "with_storage": int(has.sum()),
        "pv_kw": float(p.pv_kw.sum(1).mean()),
        "storage_kwh": float(p.bat_kwh.sum(1).mean()),
        "battery_ratio": float((p.bat_kwh.sum(1) / p.pv_kw.sum(1)).mean()),
        "round_trip_eff": float(rt.mean()) if has.any() else 0.0,
        "soc_window": float((p.soc_max - p.soc_min)[:, has].mean()) if has.any() else 0.0,
        "degradation_cost": float(p.degradation_cost[:, has].mean()) if has.any() else 0.0,
        "technologies": len(tech),
    }


def run_cell(cfg: DictConfig, cell: str, log) -> dict:
    env = _env(cell)
    out = lem_cells.run(cfg, env, log)
    held = banks.held_out_bank(env, int(cfg.eval_scenarios), 0)
    out["storage"] = storage_table(env, held)
    out["pv_kw"] = np.asarray(held.pv_kw[0]).tolist()
    return out


# ---------------------------------------------------------------------------- report


def rows(results: dict) -> list[dict]:
    """One row per (preset, policy): trained mean ± s.e. over seeds (each seed's mean over the
    scenarios), baselines and the optimum mean ± s.e. over scenarios."""
    out = []
    for preset, r in results.items():
        out.append({"preset": preset, "policy": "trained", **lem_cells.seed_means(r, KPIS)})
        for name in POLICIES[1:3]:
            s = r["baselines"][name]
            out.append({"preset": preset, "policy": name, **ev.summarize({k: s[k] for k in KPIS})})
        best = r["optimum"]
        out.append(
            {
                "preset": preset,
                "policy": "optimum",
                **ev.summarize({k: best[k] for k in KPIS if k in best}),
            }
        )
    return out


def report(cfg: DictConfig, results: dict, out: Path, meta: dict) -> None:
    table = rows(results)
    tables.write_csv(out / "kpis.csv", table)
    storage = {p: r["storage"] for p, r in results.items()}
    tables.write_csv(out / "storage.csv", [{"preset": p, **s} for p, s in storage.items()])
    diffs = []
    for p, r in results.items():
        row = {"preset": p}
        for base in ("rule_based_battery", "zero_intelligence"):
            m, se = lem_cells.paired(r, "gain_share", base)
            row[f"trained − {base}"] = tables.fmt(m, se)
        diffs.append(row)

    figures.grouped_bars(
        table,
        "preset",
        ["gain_share", "community_cost", "self_sufficiency", "peak_to_average_import"],
        POLICIES,
        out / "storage_kpis.png",
    )
    figures.grouped_bars(
        table,
        "preset",
        ["cycles", "storage_alignment", "price_volatility", "deadweight_loss"],
        POLICIES[:3],
        out / "storage_coordination.png",
    )
    figures.table_bars(
        storage,
        ["battery_ratio", "with_storage", "round_trip_eff", "soc_window"],
        out / "storage_config.png",
    )
    traces = {p: r["traces"] for p, r in results.items()}
    figures.market_over_time(traces, out / "market.png")
    figures.violins(
        _steps(results, "step_price", positive_volume=True),
        "P2P price (currency/MWh, steps with trade)",
        out / "price_violins.png",
    )
    figures.violins(
        _steps(results, "step_volume"), "P2P volume per step (kWh)", out / "volume_violins.png"
    )
    figures.trade_heatmaps(
        {p: t["trained"]["trades"] for p, t in traces.items()}, out / "trades.png"
    )
    net = "mixed" if "mixed" in results else next(iter(results))
    figures.trade_network(
        np.asarray(traces[net]["trained"]["trades"]),
        np.asarray(results[net]["pv_kw"]),
        [f"{i}" for i in range(len(results[net]["pv_kw"]))],
        f"case5-{net}: trained agents' trades (marker: PV kW)",
        out / "network.png",
    )
    figures.soc_trajectories({p: t["trained"]["soc"] for p, t in traces.items()}, out / "soc.png")
    figures.seed_band_curves(lem_cells.curves(results), out / "learning.png")

    first = next(iter(results.values()))
    what = (
        f"The case-5 storage presets ({len(results)}: "
        f"{', '.join(results)}), each on the same {cfg.eval_scenarios} held-out scenarios for "
        f"every policy (one day of hourly steps; sizes drawn per scenario from the preset's "
        f"ranges). Per preset, {cfg.train.algo.upper()} (the main job's learner) trains "
        f"{cfg.seeds} seeds for {cfg.train.total_timesteps:,} env steps; the trained agents, "
        "the scripted baselines and the perfect-foresight optimum play the same episodes. "
        "Money in currency per episode, energy in kWh, prices in currency/MWh. Gain share: "
        "(R − R_dso_only)/(R* − R_dso_only). Storage alignment: the correlation over the day "
        "of the community's net battery charging and its surplus before batteries. "
        f"Training ran at about {first['env_steps_per_s']:,.0f} env-steps/s for the "
        "seeds together."
    )
    lines = [
        header("Case 5: storage and coordination", meta, what),
        "## Findings",
        "",
        *[f"- {s}" for s in findings(table, results)],
        "",
        "## Storage of each preset",
        "",
        "Battery ratio: storage kWh per kW of PV (community totals, mean over scenarios); "
        "round-trip efficiency η_c·η_d, SOC window and degradation cost (currency/MWh) "
        "averaged over the agents with storage; technologies: distinct battery types.",
        "",
        tables.markdown_plain(
            [{"preset": p, **{k: tables.fmt(v) for k, v in s.items()}} for p, s in storage.items()]
        ),
        "",
        "## Every preset, every policy",
        "",
        "Trained: mean ± s.e. over seeds (each seed's mean over the held-out scenarios). "
        "Baselines and the optimum: mean ± s.e. over scenarios.",
        "",
        tables.markdown(table, ["preset", "policy"], list(KPIS)),
        "",
        "## Gain share of the trained agents against the scripted baselines",
        "",
        "Paired on the same scenarios, pooled over seeds (mean ± s.e.):",
        "",
        tables.markdown_plain(diffs),
        "",
        "## Figures",
        "",
        "KPIs by preset and policy (error bars: s.e.):",
        "",
        "![kpis](storage_kpis.png)",
        "",
        "Coordination: battery cycles, storage alignment, price volatility, deadweight loss:",
        "",
        "![coordination](storage_coordination.png)",
        "",
        "Storage configuration of each preset:",
        "",
        "![config](storage_config.png)",
        "",
        "The market over the first held-out day (trained agents, first seed, and the rule-based "
        "battery): P2P price against the FiT-utility band; P2P volume and DSO import:",
        "",
        "![market](market.png)",
        "",
        "Distributions over every step of every held-out scenario (trained: first seed):",
        "",
        "![prices](price_violins.png)",
        "",
        "![volumes](volume_violins.png)",
        "",
        "Who sold to whom on the first held-out day (trained agents), and the trading network "
        f"of case5-{net}:",
        "",
        "![trades](trades.png)",
        "",
        "![network](network.png)",
        "",
        "Each battery's state of charge on that day (trained agents):",
        "",
        "![soc](soc.png)",
        "",
        "Training curves (mean over seeds, band: min-max over seeds), with the held-out mean "
        "return of the rule-based battery and of the optimum:",
        "",
        "![learning](learning.png)",
        "",
        tables.files_line("kpis.csv", "storage.csv"),
        "",
    ]
    (out / "README.md").write_text("\n".join(lines))


def _steps(results: dict, key: str, positive_volume: bool = False) -> dict:
    out = {}
    for p, r in results.items():
        out[p] = {}
        for pol, s in (
            ("trained", r["trained"][0]),
            ("rule_based_battery", r["baselines"]["rule_based_battery"]),
        ):
            v = np.asarray(s[key]).reshape(-1)
            if positive_volume:
                v = v[np.asarray(s["step_volume"]).reshape(-1) > 0]
            out[p][pol] = v
    return out


def findings(table: list[dict], results: dict) -> list[str]:
    """Sentences computed from the table."""
    out = []
    by = {(r["preset"], r["policy"]): r for r in table}
    presets = list(results)
    tr = [by[(p, "trained")] for p in presets]
    rb = [by[(p, "rule_based_battery")] for p in presets]
    ahead = [
        p
        for p in presets
        if lem_cells.paired(results[p], "gain_share", "rule_based_battery")[0]
        > 2 * lem_cells.paired(results[p], "gain_share", "rule_based_battery")[1]
    ]
    behind = [
        p
        for p in presets
        if lem_cells.paired(results[p], "gain_share", "rule_based_battery")[0]
        < -2 * lem_cells.paired(results[p], "gain_share", "rule_based_battery")[1]
    ]
    out.append(
        "Gain share (share of the perfect-foresight gain over DSO-only reached): trained "
        + ", ".join(f"{r['preset']} {r['gain_share']:.2f}" for r in tr)
        + "; rule-based battery "
        + ", ".join(f"{r['preset']} {r['gain_share']:.2f}" for r in rb)
        + f". Trained agents are ahead of the rule (paired, > 2 s.e.) on {len(ahead)} of "
        f"{len(presets)} presets"
        + (f" ({', '.join(ahead)})" if ahead else "")
        + f" and behind on {len(behind)}"
        + (f" ({', '.join(behind)})." if behind else ".")
    )
    st = {p: results[p]["storage"] for p in presets}
    opt = {p: by[(p, "optimum")] for p in presets}
    nob = [p for p in presets if st[p]["with_storage"] == 0]
    if nob and len(nob) < len(presets):
        b = nob[0]
        gains = {p: opt[p]["mean_agent_return"] - opt[b]["mean_agent_return"] for p in presets}
        most = max(presets, key=lambda p: gains[p])
        out.append(
            f"What storage is worth at best: the optimum's mean agent return is "
            f"{opt[b]['mean_agent_return']:.3f} without batteries ({b}) and up to "
            f"{opt[most]['mean_agent_return']:.3f} ({most}, battery ratio "
            f"{st[most]['battery_ratio']:.2f} kWh/kW); its peak-to-average import goes from "
            f"{opt[b]['peak_to_average_import']:.2f} to {opt[most]['peak_to_average_import']:.2f}."
        )
    align = [
        (
            p,
            by[(p, "rule_based_battery")]["storage_alignment"],
            by[(p, "trained")]["storage_alignment"],
            opt[p]["storage_alignment"],
        )
        for p in presets
        if st[p]["with_storage"] > 0
    ]
    if align:
        out.append(
            "Coordination (correlation of the community's net charging with its surplus; 1 = "
            "storage absorbs the community's surplus): "
            + "; ".join(
                f"{p} rule {a:.2f}, trained {b:.2f}, optimum {c:.2f}" for p, a, b, c in align
            )
            + "."
        )
    cyc = [
        (p, by[(p, "trained")]["cycles"], by[(p, "rule_based_battery")]["cycles"], opt[p]["cycles"])
        for p in presets
        if st[p]["with_storage"] > 0
    ]
    if cyc:
        out.append(
            "Battery use (equivalent full cycles per day): "
            + "; ".join(f"{p} trained {a:.2f}, rule {b:.2f}, optimum {c:.2f}" for p, a, b, c in cyc)
            + "."
        )
    return out
