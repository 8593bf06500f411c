"""Language-model decision makers for ``multiactor-v0``: observations as prompts in words,
structured answers as actions.

``prompt(env, obs, i, params)`` renders agent ``i``'s observation row as a short text: its role
(and persona), the time, the last prices at each level, the regulator's rates, its own state,
and the decision it must answer with, as one JSON object whose keys are the kind's fields (in
the units a person would use: currency/MWh, shares in [0, 1], kW, kWh, a supplier's name).
``parse(env, answer, i, params, fallback)`` maps such an answer back to the agent's action
row; a field that is missing, not a number or out of its range keeps the ``fallback`` row's
value, an answer with no JSON object keeps the whole fallback row.

``TextPlayers(env, players, params)`` lets any ``str -> str`` callable (a language model, a
person at a prompt, a test script) play any agents through the NumPy path: ``act(obs)``
returns the joint action [N, act_dim] with the scripted policy playing everyone else, and
``act_dict`` does the same for the PettingZoo adapter's dicts. It counts the answers and the
unparseable ones. Nothing here is jitted: prompts are built on the host.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import jax
import numpy as np

from jaxlem.envs.multiactor.observation import Col
from jaxlem.envs.multiactor.params import producer_archetypes
from jaxlem.envs.multiactor.policies import BASELINES
from jaxlem.envs.multiactor.stages import marginal_cost
from jaxlem.envs.multiactor.types import CONSUMER, KINDS, PERSONAS, PROSUMER, UTILITY


@dataclass(frozen=True)
class Field:
    """One key of a kind's answer: the action column it sets and its range in plain units."""

    name: str
    column: int
    unit: str
    low: Callable[[Any, Any, int], float]
    high: Callable[[Any, Any, int], float]
    scenario: int = 0  # 0: both scenarios


def _const(name: str) -> Callable[[Any, Any, int], float]:
    return lambda env, p, j: float(np.asarray(getattr(p, name)))


def _zero(env: Any, p: Any, j: int) -> float:
    return 0.0


def _one(env: Any, p: Any, j: int) -> float:
    return 1.0


def _mc(env: Any, p: Any, j: int) -> float:
    return float(np.asarray(marginal_cost(p))[j])


def _battery(sign: float) -> Callable[[Any, Any, int], float]:
    return lambda env, p, j: sign * float(np.asarray(p.battery_kw)[j]) * env.dt_h


FIELDS: dict[int, tuple[Field, ...]] = {
    0: (
        Field("offer_price", 0, "currency/MWh", _mc, _const("price_cap")),
        Field("offer_share", 1, "share of free capacity offered", _zero, _one),
        Field(
            "invest_kw",
            2,
            "kW of new capacity (daily)",
            _zero,
            lambda env, p, j: float(np.asarray(p.prod_max_invest_kw)[j]),
        ),  # fmt: skip
        Field("contract_price", 3, "currency/MWh (daily)", _mc, _const("price_cap"), 1),
        Field(
            "contract_share", 4, "share of expected availability contracted (daily)", _zero, _one, 1
        ),  # fmt: skip
    ),
    1: (
        Field("retail_price", 0, "currency/MWh", _const("retail_min"), _const("retail_max")),
        Field("wholesale_bid", 1, "currency/MWh", _zero, _const("price_cap")),
        Field("contract_price", 2, "currency/MWh (daily)", _zero, _const("price_cap"), 1),
        Field("contract_share", 3, "share of forecast load contracted (daily)", _zero, _one, 1),
        Field("retail_offer_share", 4, "share of the residual demand offered", _zero, _one, 2),
    ),
    2: (
        Field(
            "local_price",
            0,
            "currency/MWh, limit of the local bid",
            _const("spill_price"),
            _const("balancing_price"),
        ),  # fmt: skip
        Field("local_share", 1, "share of demand bid locally", _zero, _one),
        Field(
            "retail_price",
            2,
            "currency/MWh, limit of the retail bid",
            _const("spill_price"),
            _const("balancing_price"),
            2,
        ),  # fmt: skip
    ),
    3: (
        Field(
            "battery_kwh", 0, "kWh to charge (+) or discharge (-)", _battery(-1.0), _battery(1.0)
        ),  # fmt: skip
        Field(
            "limit_price",
            1,
            "currency/MWh, limit of the local order",
            _const("spill_price"),
            _const("balancing_price"),
        ),  # fmt: skip
        Field("order_share", 2, "share of the surplus or deficit ordered locally", _zero, _one),
    ),
    4: (
        Field(
            "gouging_fine", 0, "share of excess retail revenue (daily)", _zero, _const("fine_max")
        ),  # fmt: skip
        Field(
            "output_subsidy",
            1,
            "currency/MWh of renewable output (daily)",
            _zero,
            _const("subsidy_max"),
        ),  # fmt: skip
        Field(
            "invest_subsidy",
            2,
            "currency per kW of renewable capacity (daily)",
            _zero,
            _const("invest_subsidy_max"),
        ),  # fmt: skip
    ),
}


def _fields(env: Any, kind: int) -> tuple[Field, ...]:
    return tuple(f for f in FIELDS[kind] if f.scenario in (0, env.scenario))


def _row_of_kind(env: Any, i: int) -> tuple[int, int]:
    """(kind, index of agent ``i`` within its kind)."""
    kind = env.kind_of_row[i]
    start = (env.slices.prod, env.slices.util, env.slices.cons, env.slices.pros, env.slices.reg)
    return kind, i - start[kind].start


def _choices(env: Any, kind: int) -> tuple[str, ...]:
    """Names of the options of the choice column (consumers in scenario 1, prosumers)."""
    utilities = tuple(f"utility_{k}" for k in range(env.num_utilities))
    if kind == CONSUMER and env.scenario == 1:
        return (*utilities, "local")
    if kind == PROSUMER:
        return (*utilities, "disconnect")
    return ()


def prompt(env: Any, obs: np.ndarray, i: int, params: Any) -> str:
    """Agent ``i``'s observation (a row of ``obs`` [N, D]) as a prompt in words."""
    o = np.asarray(obs)[i]
    kind, j = _row_of_kind(env, i)
    p = jax.tree_util.tree_map(np.asarray, params)
    hour = int(round(np.arctan2(o[Col.hour_sin], o[Col.hour_cos]) / (2 * np.pi) * 24)) % 24
    day = min(int(o[Col.progress] * env.num_days) + 1, env.num_days)
    role = f"the {KINDS[kind]}"
    if kind == 0:
        role = f"producer {j} ({producer_archetypes(env.num_producers)[j]})"
    elif kind == UTILITY:
        role = f"utility {j} (persona {PERSONAS[int(p.persona[j])]}, renewable quota "
        role += f"{float(p.quota[j]):.0%})"
    elif kind in (CONSUMER, PROSUMER):
        role = f"{KINDS[kind]} {j}"
    lines = [
        f"You are {role} in an electricity market (scenario {env.scenario}), hour {hour} "
        f"of day {day} of {env.num_days}.",
        f"Last prices, currency/MWh: wholesale {o[Col.wholesale_price] * 1000:.1f} (day mean "
        f"{o[Col.wholesale_mean] * 1000:.1f}), local {o[Col.local_price] * 1000:.1f}, retail "
        f"{o[Col.retail_price] * 1000:.1f}, outside grid {o[Col.balancing_price] * 1000:.1f}.",
        f"Regulator: gouging fine {o[Col.fine_rate]:.2f} of excess revenue, subsidy "
        f"{o[Col.subsidy] * 1000:.1f}/MWh renewable output, {o[Col.invest_subsidy] * 100:.2f}/kW "
        "renewable capacity built.",
        "You: " + _own(env, kind, j, o, p) + ".",
    ]
    daily = "now" if o[Col.day_start] > 0.5 else "not now (a later day's first hour)"
    keys = [
        f'"{f.name}": {f.low(env, p, j):.4g}..{f.high(env, p, j):.4g} ({f.unit})'
        for f in _fields(env, kind)
    ]
    options = _choices(env, kind)
    if options:
        keys.append(f'"supplier": one of {", ".join(options)} (daily)')
    lines.append(
        f"Daily decisions count {daily}. Answer with one JSON object with the keys "
        + "; ".join(keys)
        + ". Keys you leave out keep the default rule."
    )
    return "\n".join(lines)


def _own(env: Any, kind: int, j: int, o: np.ndarray, p: Any) -> str:
    own = [o[getattr(Col, f"own_{k}")] for k in range(8)]
    cash = own[3] * 100
    if kind == 0:
        return (
            f"capacity {own[0] * float(np.sum(p.cons_demand_kw) + np.sum(p.pros_demand_kw)):.1f} "
            f"kW, {own[1]:.0%} available now, marginal cost {own[6] * 1000:.1f}/MWh, "
            f"contracted this hour {own[4]:.0%} of capacity, cash {cash:.2f}"
        )
    if kind == UTILITY:
        return (
            f"{own[0]:.0%} of customers, forecast load {own[1] * 10:.2f} kWh this hour, "
            f"{own[2]:.0%} of it contracted, last retail price {own[7] * 1000:.1f}/MWh, "
            f"renewable share today minus quota {own[6]:+.2f}, cash {cash:.2f}"
        )
    if kind == CONSUMER:
        sup = _choices(env, kind) or tuple(f"utility_{k}" for k in range(env.num_utilities))
        current = sup[min(int(round(own[6] * env.num_utilities)), len(sup) - 1)]
        return (
            f"expected demand {own[0]:.2f} kWh, supplier {current} at "
            f"{own[2] * 1000:.1f}/MWh, cheapest retail {own[4] * 1000:.1f}/MWh, cash {cash:.2f}"
        )
    if kind == PROSUMER:
        current = _choices(env, kind)[
            min(int(round(own[5] * env.num_utilities)), env.num_utilities)
        ]
        return (
            f"expected PV {own[0]:.2f} kWh and demand {own[1]:.2f} kWh, battery "
            f"{own[4] * 10:.1f} kWh at {own[2]:.0%}, supplier {current} at "
            f"{own[6] * 1000:.1f}/MWh, cash {cash:.2f}"
        )
    return (
        f"budget {own[0] * 1000:.2f}, renewable share of output {own[1]:.0%}, mean retail "
        f"markup {own[2] * 1000:.1f}/MWh, {own[3]:.0%} of energy from the outside grid, "
        f"{own[4]:.0%} of prosumers disconnected"
    )


_JSON = re.compile(r"\{.*?\}", re.DOTALL)


def parse(
    env: Any, answer: str, i: int, params: Any, fallback: np.ndarray
) -> tuple[np.ndarray, int, bool]:
    """Agent ``i``'s action row from ``answer``: (row, fields rejected, whether any JSON
    object was found). Rejected or missing fields keep ``fallback``'s values."""
    row = np.array(fallback, np.float32, copy=True)
    match = _JSON.search(answer or "")
    try:
        data = json.loads(match.group(0)) if match else None
    except json.JSONDecodeError:
        data = None
    if not isinstance(data, dict):
        return row, 0, False
    kind, j = _row_of_kind(env, i)
    p = jax.tree_util.tree_map(np.asarray, params)
    rejected = 0
    for f in _fields(env, kind):
        if f.name not in data:
            continue
        lo, hi = f.low(env, p, j), f.high(env, p, j)
        v = data[f.name]
        if isinstance(v, bool) or not isinstance(v, int | float) or not np.isfinite(v):
            rejected += 1
            continue
        if v < lo - 1e-6 * (1 + abs(lo)) or v > hi + 1e-6 * (1 + abs(hi)):
            rejected += 1
            continue
        u = 0.0 if hi <= lo else (float(v) - lo) / (hi - lo)
        row[f.column] = 2.0 * np.clip(u, 0.0, 1.0) - 1.0
    options = _choices(env, kind)
    if options and "supplier" in data:
        if data["supplier"] in options:
            row[-1] = options.index(data["supplier"]) - 1.0
        else:
            rejected += 1
    return row, rejected, True


def value(env: Any, row: np.ndarray, i: int, params: Any) -> dict[str, Any]:
    """The plain-unit answer an action row stands for (the inverse of ``parse``)."""
    kind, j = _row_of_kind(env, i)
    p = jax.tree_util.tree_map(np.asarray, params)
    out: dict[str, Any] = {}
    for f in _fields(env, kind):
        u = 0.5 * (np.clip(float(row[f.column]), -1.0, 1.0) + 1.0)
        lo, hi = f.low(env, p, j), f.high(env, p, j)
        out[f.name] = lo + u * max(hi - lo, 0.0)
    options = _choices(env, kind)
    if options:
        out["supplier"] = options[int(np.clip(np.round(row[-1]) + 1, 0, len(options) - 1))]
    return out


@dataclass
class TextPlayers:
    """``players`` (agent index -> ``str -> str``) play through prompts; ``fallback`` (a
    policy of the env, default the scripted one) plays everyone else and fills rejected
    answers. ``answers``, ``unparseable`` and ``rejected_fields`` count what came back."""

    env: Any
    players: Mapping[int, Callable[[str], str]]
    params: Any = None
    fallback: Any = None
    answers: int = 0
    unparseable: int = 0
    rejected_fields: int = 0
    transcript: list[tuple[int, str, str]] = field(default_factory=list)
    keep_transcript: bool = False

    def __post_init__(self) -> None:
        self.params = self.env.default_params if self.params is None else self.params
        self.fallback = BASELINES["scripted"] if self.fallback is None else self.fallback
        for i in self.players:
            if not 0 <= int(i) < self.env.num_agents:
                raise ValueError(f"players: agent {i}; allowed: 0..{self.env.num_agents - 1}")
        self._key = jax.random.PRNGKey(0)

    def act(self, obs: np.ndarray) -> np.ndarray:
        """The joint action [N, act_dim] for ``obs`` [N, D]."""
        self._key, k = jax.random.split(self._key)
        base = np.asarray(self.fallback(k, np.asarray(obs), self.env, self.params), np.float32)
        out = base.copy()
        for i, player in self.players.items():
            text = prompt(self.env, obs, i, self.params)
            answer = player(text)
            row, rejected, found = parse(self.env, answer, i, self.params, base[i])
            self.answers += 1
            self.unparseable += int(not found)
            self.rejected_fields += rejected
            if self.keep_transcript:
                self.transcript.append((i, text, answer))
            out[i] = row
        return out

    def act_dict(self, obs: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        """The same for the PettingZoo adapter: ``{"agent_i": obs row}`` -> actions."""
        names = [f"agent_{i}" for i in range(self.env.num_agents)]
        joint = self.act(np.stack([np.asarray(obs[n]) for n in names]))
        return {n: joint[i] for i, n in enumerate(names)}
