"""Action distributions with samplers built for large batched rollouts.

``jax.random.beta`` draws each gamma variate with a per-element rejection ``while_loop`` and
per-element key splits; in a rollout of thousands of environments it costs ~25x a normal draw and
dominated gencos-v0 training. The actor's Beta concentrations are always >= 1 (softplus + 1), where
Marsaglia and Tsang's gamma sampler accepts a proposal with probability > 0.95. ``FastBeta`` draws
``rounds`` proposals for every element at once and keeps the first accepted one, with no loop. The
law differs from Beta(a, b) only on the event that every round rejects (probability < 1e-5 per
element at 4 rounds); there the last proposal is kept. Log-probabilities, entropy and moments are
distrax's.
"""

from __future__ import annotations

import distrax
import jax
import jax.numpy as jnp

ROUNDS = 4


def gamma_ge1(key: jax.Array, alpha: jax.Array, shape: tuple[int, ...], rounds: int = ROUNDS):
    """Gamma(alpha, 1) variates for ``alpha >= 1`` (smaller values are raised to 1), shape
    ``shape`` (broadcast with alpha). Returns ``(sample, accepted)``: ``accepted`` is False where
    every one of the ``rounds`` proposals was rejected."""
    alpha = jnp.maximum(jnp.broadcast_to(alpha, shape), 1.0)
    d = alpha - 1.0 / 3.0
    c = jax.lax.rsqrt(9.0 * d)
    kx, ku = jax.random.split(key)
    x = jax.random.normal(kx, (rounds, *shape), alpha.dtype)
    u = jax.random.uniform(ku, (rounds, *shape), alpha.dtype, minval=1e-30, maxval=1.0)
    v = (1.0 + c * x) ** 3
    v_pos = jnp.maximum(v, 1e-30)
    ok = (v > 0) & (jnp.log(u) < 0.5 * x * x + d - d * v_pos + d * jnp.log(v_pos))
    first = jnp.where(ok.any(0), jnp.argmax(ok, axis=0), rounds - 1)
    chosen = jnp.take_along_axis(v_pos, first[None], axis=0)[0]
    return d * chosen, ok.any(0)


def beta_ge1(key: jax.Array, a: jax.Array, b: jax.Array, shape: tuple[int, ...]) -> jax.Array:
    """Beta(a, b) variates for concentrations >= 1 as the ratio of two gamma variates."""
    ka, kb = jax.random.split(key)
    ga, _ = gamma_ge1(ka, a, shape)
    gb, _ = gamma_ge1(kb, b, shape)
    return ga / (ga + gb)


class FastBeta(distrax.Beta):
    """``distrax.Beta`` for concentrations >= 1 with the loop-free sampler above."""

    def _sample_n(self, key: jax.Array, n: int) -> jax.Array:
        dtype = jnp.result_type(self._alpha, self._beta)
        return beta_ge1(
            key, self._alpha.astype(dtype), self._beta.astype(dtype), (n, *self.batch_shape)
        )
