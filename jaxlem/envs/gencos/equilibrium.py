"""A Nash reference for the ``gencos-v0`` stage game: exhaustive search on the markup grid.

At a fixed state (the coming step's load and the previous dispatch) every unit offers one
uniform markup from a grid of ``grid`` levels in [0, 1] (the deviations of
``jaxlem.envs.gencos.policies.best_response``). All ``grid ** G`` profiles are cleared in
vmapped SCEDs, which gives each unit's profit in every profile; a profile's exploitability is
the largest gain a single unit could get by moving to another level,
``max_i [max_l P_i(l, m_-i) - P_i(m)]`` ($ per step, the quantity of
``jaxlem.metrics.exploitability_proxy``). Profiles with exploitability 0 are pure Nash
equilibria of the grid game; the lowest exploitability over all profiles is the floor that no
policy restricted to the grid can go below, and the reference for the exploitability of trained
bidders at the same state.
"""

from __future__ import annotations

import itertools
from typing import TYPE_CHECKING

import jax
import jax.numpy as jnp
import numpy as np
from flax import struct

if TYPE_CHECKING:
    from jaxlem.envs.gencos.env import GencosEnv, GencosParams, GencosState

MAX_PROFILES = 2_000_000  # grid ** G profiles are cleared: refuse beyond this


@struct.dataclass
class StageReference:
    """The grid game at one state ($ per step; markups in [0, 1])."""

    levels: np.ndarray  # [L] markup levels
    profit: np.ndarray  # [L] * G + [G] profit of every unit in every profile
    exploitability: np.ndarray  # [L] * G
    floor: float  # lowest exploitability over all profiles
    best_profile: np.ndarray  # [G] markups of a profile at the floor
    num_pure_nash: int  # profiles whose exploitability is <= tol
    nash_profit: np.ndarray  # [G] profits at ``best_profile``
    nash_lmp: float  # system-mean LMP at ``best_profile``, $/MWh
    truthful_exploitability: float  # exploitability of everyone at markup 0


def stage_reference(
    env: GencosEnv,
    params: GencosParams,
    state: GencosState,
    grid: int = 11,
    tol: float = 1e-3,
    chunk: int = 4096,
) -> StageReference:
    """Exhaustive search over uniform markups on ``grid`` levels for every unit at ``state``."""
    g = env.num_agents
    num = grid**g
    if grid < 2 or num > MAX_PROFILES:
        raise ValueError(
            f"grid: got {grid} ({num} profiles for {g} units); allowed: 2 <= grid and "
            f"grid ** {g} <= {MAX_PROFILES}"
        )
    levels = np.linspace(0.0, 1.0, grid, dtype=np.float32)
    idx = np.asarray(list(itertools.product(range(grid), repeat=g)), np.int32)  # [num, G]

    def clear(markups):
        action = env.action_for_markups(markups[:, None])
        _, price = env.offers(action, params)
        sol, _ = env.sced(params, price, state.p_prev, state.load_next)
        lmp = sol.lmp[params.network.gen_bus]
        at_load = (params.base_load_mw > 0).astype(sol.lmp.dtype)
        mean_lmp = jnp.sum(sol.lmp * at_load) / jnp.maximum(jnp.sum(at_load), 1.0)
        return (lmp - params.cost) * sol.p_gen * env.dt_h, mean_lmp

    batched = jax.jit(jax.vmap(clear))
    pad = (-num) % chunk
    marks = jnp.asarray(levels)[np.concatenate([idx, idx[:pad]])]
    profit, lmp = [], []
    for start in range(0, num + pad, chunk):
        p, m = batched(marks[start : start + chunk])
        profit.append(np.asarray(p))
        lmp.append(np.asarray(m))
    profit = np.concatenate(profit)[:num].reshape((grid,) * g + (g,))
    lmp = np.concatenate(lmp)[:num].reshape((grid,) * g)
    gains = np.stack(
        [profit[..., i].max(axis=i, keepdims=True) - profit[..., i] for i in range(g)], axis=-1
    )
    expl = gains.max(axis=-1)
    best = np.unravel_index(int(np.argmin(expl)), expl.shape)
    return StageReference(
        levels=levels,
        profit=profit,
        exploitability=expl,
        floor=float(expl[best]),
        best_profile=levels[list(best)],
        num_pure_nash=int(np.sum(expl <= tol)),
        nash_profit=profit[best],
        nash_lmp=float(lmp[best]),
        truthful_exploitability=float(expl[(0,) * g]),
    )


def state_at_load(env: GencosEnv, params: GencosParams, load_mult: float) -> GencosState:
    """A stage-game state: the coming step's load is the base load times ``load_mult`` and the
    previous dispatch is the truthful SCED at that load (so ramp limits sit around it)."""
    _, state = env.reset(jax.random.PRNGKey(0), params)
    load = params.base_load_mw * load_mult
    truthful = jnp.broadcast_to(params.cost[:, None], (env.num_agents, env.num_blocks))
    wide = params.replace(ramp_scale=jnp.asarray(1e6, jnp.float32))
    sol, _ = env.sced(wide, truthful, params.pmin, load)
    p_prev = jnp.clip(sol.p_gen, params.pmin, params.pmax)
    return state.replace(load_next=load, p_prev=p_prev)
