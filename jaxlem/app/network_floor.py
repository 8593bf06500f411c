"""The networks' floor of a PPO update, for ``jaxlem-bench train --floor``.

A PPO update cannot cost less than its networks' matrix products: one forward pass of the actor
and the critic per rollout step, and one forward and backward pass per minibatch and epoch.
This module times exactly those passes, as plain tanh MLPs with the trained networks' layer
shapes, on the update's row counts, with nothing else around them (no distribution, no loss
terms, no optimizer, no data movement). The update's time at this floor plus the env's alone
bounds the throughput any PPO update with this network, batch and number of epochs can reach
on the machine: if that bound is below a target, the target needs fewer passes or a smaller
network, not a faster implementation.
"""

from __future__ import annotations

import statistics
import time
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

REPS = 20  # passes per timed call


def kernels(params: Any) -> list[tuple[int, int, int]]:
    """``(networks, inputs, outputs)`` per Dense layer of one network's Flax params (leading
    seed axis, then optionally one network per agent type)."""
    layers = params["params"]
    out = []
    for name in sorted(layers, key=lambda s: int(s.rsplit("_", 1)[1])):
        shape = layers[name]["kernel"].shape
        nets = int(np.prod(shape[1:-2])) if len(shape) > 3 else 1
        out.append((nets, int(shape[-2]), int(shape[-1])))
    return out


def _median(fn, *args, repeats: int = 5) -> float:
    jax.block_until_ready(fn(*args))
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        jax.block_until_ready(fn(*args))
        times.append(time.perf_counter() - t0)
    return statistics.median(times) / REPS


def pass_times(layers: list[tuple[int, int, int]], rows: int) -> tuple[float, float]:
    """Seconds of one forward pass and of one forward and backward pass (gradient of a sum of
    squares with respect to every weight) over ``rows`` rows, shared evenly among the
    network's copies (one per agent type)."""
    nets = layers[0][0]
    r = max(rows // nets, 1)
    key = jax.random.PRNGKey(0)
    ws = [0.1 * jax.random.normal(jax.random.fold_in(key, i), (nets, a, b)) for i, (_, a, b) in
          enumerate(layers)]  # fmt: skip
    x = jax.random.normal(key, (nets, r, layers[0][1]))

    def mlp(ws, x):
        for w in ws[:-1]:
            x = jnp.tanh(jnp.einsum("nri,nio->nro", x, w))
        return jnp.einsum("nri,nio->nro", x, ws[-1])

    def loss(ws, x):
        return jnp.sum(mlp(ws, x) ** 2)

    @jax.jit
    def forward(ws, x):
        def body(c, _):  # each pass depends on the last, so none is hoisted out of the loop
            return c + 1e-9 * mlp(ws, x + c)[..., :1], None

        return jax.lax.scan(body, jnp.zeros((nets, r, 1)), None, REPS)[0]

    @jax.jit
    def backward(ws, x):
        def body(c, _):
            g = jax.grad(loss)(c, x)
            return [w - 1e-9 * gw for w, gw in zip(c, g, strict=True)], None

        return jax.lax.scan(body, ws, None, REPS)[0]

    return _median(forward, ws, x), _median(backward, ws, x)


def update_floor(
    params: Any, agents: int, num_envs: int, rollout_len: int, epochs: int, minibatches: int
) -> dict[str, float]:
    """Seconds per update of the actor's and critic's passes alone: ``rollout_len`` forward
    passes over ``num_envs * agents`` rows, and ``epochs * minibatches`` forward and backward
    passes over a minibatch's rows. The critic is counted on the actor's rows (one value per
    agent, as in IPPO); a centralised critic's rows differ."""
    roll_rows = num_envs * agents
    learn_rows = num_envs * rollout_len * agents // minibatches
    out = {}
    for net in ("actor", "critic"):
        layers = kernels(params[net])
        f_roll, _ = pass_times(layers, roll_rows)
        _, fb_learn = pass_times(layers, learn_rows)
        out[f"{net}_rollout_s"] = rollout_len * f_roll
        out[f"{net}_learn_s"] = epochs * minibatches * fb_learn
    out["total_s"] = sum(out.values())
    return out
