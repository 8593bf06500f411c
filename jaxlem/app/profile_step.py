"""Where the time of one ``lem-v0`` step goes: each stage of ``LEMEnv.step_env`` timed alone,
vmapped over a batch of scenarios, on the inputs a real step gives it.

``stage_calls(env, key, state, action, params)`` follows ``step_env`` stage by stage and
returns, per stage, a function and the arguments it received (a test checks that chaining
them reproduces ``step_env`` exactly). ``breakdown(env, batch, ...)`` times each of them,
``repeats`` applications in one compiled loop (each application depends on the last, so XLA
cannot hoist it), against the whole step (``env.step``: with the auto-reset). The clearing
is split three ways: the order-book sort alone (``clearing.sort_book``, as the clearing does),
``match_segments`` (sort plus matching) and ``clear`` (everything, pricing and payments
included), so matching = segments - sort and pricing = clear - segments.
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp

from jaxlem.envs.lem import observation, stages
from jaxlem.market import clearing, pricing

Stage = tuple[str, Callable[..., Any], tuple]


def _sort_only(price, q_buy, q_sell, tie):
    """The clearing's sort of the book (its tie rank and the packed-key sort)."""
    return clearing.sort_book(price, q_buy, q_sell, None, tie)[0]


def stage_calls(env: Any, key: jax.Array, state: Any, action: jax.Array, params: Any) -> dict:
    """``{"stages": [(name, fn, args)], "out": (obs, state, reward)}`` for one step."""
    k_tie, k_draw = jax.random.split(key)
    a, partner = stages.sanitize_action(env, action)
    t = state.t
    fit_t, util_base = state.fit[t], state.utility[t]
    last = t >= env.num_steps - 1
    out: list[Stage] = []

    def run(name, fn, *args):
        out.append((name, fn, args))
        return fn(*args)

    bat = run(
        "battery", lambda s, sp, p: stages.battery_stage(env, s, sp, p), state, a[:, 0], params
    )
    pos = run(
        "net position and grid",
        lambda s, b, u, p: stages.net_position(env, s, b, u, p),
        state,
        bat,
        util_base,
        params,
    )
    util_t = run(
        "tariff",
        lambda x, u, f, p: stages.utility_price(env, x, u, f, p),
        pos.x,
        util_base,
        fit_t,
        params,
    )
    book = run("orders", stages.orders, a, pos.x, params)
    q_buy = jnp.where(book.is_buy, book.qty, 0.0)
    q_sell = jnp.where(book.is_buy, 0.0, book.qty)
    tie = jax.random.bits(k_tie, (env.num_agents,), jnp.uint32)
    run("order book sort", _sort_only, book.price, q_buy, q_sell, tie)

    def segments(pr, qb, qs, tb, m, f, u, k):
        pair = pricing.pair_price_fn(env.rule, k=k, reference=m, fit=f, utility=u)
        return clearing.match_segments(pr, qb, qs, env.rule, None, tb, pair)

    run(
        "sort + matching",
        segments,
        book.price,
        q_buy,
        q_sell,
        tie,
        state.last_price,
        fit_t,
        util_t,
        params.k,
    )
    trades = run(
        "clearing (sort, matching, pricing, payments)",
        lambda bk, s, f, u, pa, lmp, k, p: stages.clearing(env, bk, s, (f, u), pa, lmp, k, p),
        book,
        state,
        fit_t,
        util_t,
        partner,
        pos.lmp,
        k_tie,
        params,
    )
    money = run(
        "settlement and reward",
        lambda ps, bk, tr, b, f, u, la, p: _settle(env, ps, bk, tr, b, (f, u), la, p),
        pos,
        book,
        trades,
        bat,
        fit_t,
        util_t,
        last,
        params,
    )
    run(
        "KPIs",
        lambda s, ps, bk, tr, mo, b, f, u, ub, la, p: stages.kpis(
            s, ps, bk, tr, mo[0], b, (f, u, ub), la, p
        ),
        state,
        pos,
        book,
        trades,
        money,
        bat,
        fit_t,
        util_t,
        util_base,
        last,
        params,
    )
    nxt = run(
        "profiles, randomness, next state",
        lambda k, s, bk, tr, b, lmp, p: stages.next_state(env, k, s, bk, tr, b, lmp, p),
        k_draw,
        state,
        book,
        trades,
        bat,
        pos.lmp,
        params,
    )
    res = trades.result
    sd_ratio = res.supply / jnp.maximum(res.demand, stages.EPS)
    obs = run(
        "observation",
        lambda s, p, x, sd: observation.observe(env, s, p, x, sd),
        nxt,
        params,
        jnp.sum(pos.x),
        sd_ratio,
    )
    return {"stages": out, "out": (obs, nxt, money[1])}


def _settle(env, pos, book, trades, bat, prices, last, params):
    money = stages.settle(env, pos, book, trades, bat, prices, last, params)
    return money, stages.reward(money.profit, params)


def _time_loop(fn: Callable, args: tuple, repeats: int, calls: int) -> float:
    """Median seconds of one application of ``fn`` (batched) over ``calls`` calls of a loop of
    ``repeats`` dependent applications."""
    leaves, tree = jax.tree_util.tree_flatten(args)
    first = next(i for i, x in enumerate(leaves) if jnp.issubdtype(x.dtype, jnp.floating))

    def loop(leaves):
        def body(i, acc):
            ls = list(leaves)
            ls[first] = ls[first] + acc * 0.0  # a dependency on the last application
            out = fn(*jax.tree_util.tree_unflatten(tree, ls))
            total = sum(jnp.sum(x.astype(jnp.float32)) for x in jax.tree_util.tree_leaves(out))
            return acc + jnp.where(jnp.isfinite(total), total, 0.0) * 1e-30

        return jax.lax.fori_loop(0, repeats, body, jnp.zeros(()))

    compiled = jax.jit(loop).lower(leaves).compile()
    compiled(leaves).block_until_ready()
    times = []
    for _ in range(calls):
        t0 = time.perf_counter()
        compiled(leaves).block_until_ready()
        times.append(time.perf_counter() - t0)
    return statistics.median(times) / repeats


def breakdown(env: Any, batch: int, repeats: int = 50, calls: int = 5, seed: int = 0) -> dict:
    """Seconds per batched application of each stage and of the whole step, at a state a few
    random steps into an episode (so the book has buyers and sellers)."""
    key = jax.random.PRNGKey(seed)
    params = env.sample_params(key, batch)
    keys = jax.random.split(key, batch)
    obs, state = jax.vmap(env.reset)(keys, params)
    act_shape = env.action_space().shape

    def random_action(k):
        return jax.random.uniform(k, (batch, *act_shape), minval=-1.0, maxval=1.0)

    step = jax.jit(jax.vmap(env.step))
    for i in range(10):  # into the day: PV on, trades on both sides
        k = jax.random.fold_in(key, i)
        obs, state, *_ = step(jax.random.split(k, batch), state, random_action(k), params)
    k_act, k_step = jax.random.split(jax.random.fold_in(key, 99))
    action = random_action(k_act)
    step_keys = jax.random.split(k_step, batch)
    one = stage_calls(env, step_keys[0], _first(state), action[0], _first(params))["stages"]
    rows = {}
    for j, (name, fn, _) in enumerate(one):

        def stage_args(k, s, a, p, j=j):
            return stage_calls(env, k, s, a, p)["stages"][j][2]

        args = jax.jit(jax.vmap(stage_args))(step_keys, state, action, params)
        rows[name] = _time_loop(jax.vmap(fn), args, repeats, calls)
    whole = jax.vmap(lambda k, s, a, p: env.step(k, s, a, p)[:3])
    rows["whole step (env.step, with auto-reset)"] = _time_loop(
        whole, (step_keys, state, action, params), repeats, calls
    )
    return rows


def _first(tree):
    return jax.tree_util.tree_map(lambda x: x[0], tree)


def table(rows: dict, batch: int, num_agents: int) -> list[dict]:
    """Rows of the breakdown: microseconds per batched step and per agent-step, and the share
    of the whole step."""
    whole = [v for k, v in rows.items() if k.startswith("whole")][0]
    out = []
    for name, sec in rows.items():
        out.append(
            {
                "stage": name,
                "us_per_step": 1e6 * sec,
                "ns_per_agent_step": 1e9 * sec / (batch * num_agents),
                "share_of_step": sec / whole,
            }
        )
    return out
