"""V-trace (Espeholt et al., 2018, IMPALA): value targets and policy-gradient advantages for
a rollout played by a behaviour policy mu that lags the learner's policy pi.

With the importance ratio ``r_t = pi(a_t | x_t) / mu(a_t | x_t)``, ``rho_t = min(rho_bar, r_t)``
and ``c_t = lambda * min(c_bar, r_t)``:

    v_t = V(x_t) + delta_t + gamma_t c_t (v_{t+1} - V(x_{t+1})),
    delta_t = rho_t (r_t + gamma_t V(x_{t+1}) - V(x_t)),
    A_t = rho_t (r_t + gamma_t v_{t+1} - V(x_t)),

where ``gamma_t`` is the discount times 0 after a terminal step and ``v_T = V(x_T)`` (the
bootstrap value). On-policy (``r_t = 1``) ``v_t`` is the lambda-return of GAE; APPO trains the
critic towards ``v_t`` and the actor's clipped surrogate on ``A_t``.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp


def vtrace(
    values: jax.Array,
    last_value: jax.Array,
    rewards: jax.Array,
    discounts: jax.Array,
    log_ratio: jax.Array,
    lam: jax.Array | float = 1.0,
    rho_bar: jax.Array | float = 1.0,
    c_bar: jax.Array | float = 1.0,
) -> tuple[jax.Array, jax.Array]:
    """``(v [T, ...], A [T, ...])`` from values, rewards, per-step discounts (gamma, 0 after a
    terminal step) and ``log pi - log mu`` [T, ...] of the actions taken; ``last_value``
    [...] is V after the last step."""
    ratio = jnp.exp(jnp.clip(log_ratio, -20.0, 20.0))
    rho = jnp.minimum(rho_bar, ratio)
    c = lam * jnp.minimum(c_bar, ratio)
    next_values = jnp.concatenate([values[1:], last_value[None]], axis=0)
    deltas = rho * (rewards + discounts * next_values - values)

    def back(acc, t):
        delta, disc, ct = t
        acc = delta + disc * ct * acc
        return acc, acc

    _, corr = jax.lax.scan(back, jnp.zeros_like(last_value), (deltas, discounts, c), reverse=True)
    vs = values + corr
    next_vs = jnp.concatenate([vs[1:], last_value[None]], axis=0)
    adv = rho * (rewards + discounts * next_vs - values)
    return vs, adv
