"""Random-action rollouts of any env of the contract, timed by the benchmarks: the env's own
cost with no policy in the loop."""

from __future__ import annotations

import jax
import jax.numpy as jnp


def make_runner(env, num_batch: int, steps: int):
    """A jitted function (key, params) -> summed reward running ``steps`` random steps per env."""
    act_shape = env.action_space().shape

    def one(key, params):
        k0, k1 = jax.random.split(key)
        obs, state = env.reset(k0, params)

        def body(carry, k):
            state, acc = carry
            ka, ks = jax.random.split(k)
            action = jax.random.uniform(ka, act_shape, minval=-1.0, maxval=1.0)
            _, state, reward, _, _ = env.step(ks, state, action, params)
            return (state, acc + jnp.sum(reward)), None

        (state, acc), _ = jax.lax.scan(body, (state, jnp.zeros(())), jax.random.split(k1, steps))
        return acc

    return jax.jit(jax.vmap(one))
