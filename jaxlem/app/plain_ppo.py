"""A plain PPO update written for the training benchmark: what the cost of one sample is when
nothing but PPO is done, so ``jaxlem-bench train`` can put our trainer's cost beside it.

One MLP actor (Gaussian, a state-independent log-std) and one MLP critic, shared by all agents
of any env (each agent's own observation in, its action columns out), no normalisation of
observations or rewards, no residual baseline, no masks, no diagnostics. A rollout of ``T``
steps over ``B`` scenarios, GAE, then ``epochs`` passes of ``minibatches`` minibatches of
the clipped surrogate plus the value loss, Adam. Actions are clipped to the env's box.
"""

from __future__ import annotations

from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
import optax


class _MLP(nn.Module):
    hidden: tuple[int, ...]
    out: int

    @nn.compact
    def __call__(self, x):
        for h in self.hidden:
            x = nn.tanh(nn.Dense(h)(x))
        return nn.Dense(self.out)(x)


def make(env: Any, num_envs: int, rollout_len: int, epochs: int, minibatches: int, hidden):
    """``(init(key) -> state, update(state, params_bank) -> (state, mean reward))``: one
    update per call (rollout + GAE + epochs), jittable and scannable."""
    space = env.action_space()
    n, a_dim = space.shape
    low, high = space.low, space.high
    gamma, lam, clip, lr = 0.99, 0.95, 0.2, 3e-4
    actor, critic = _MLP(tuple(hidden), a_dim), _MLP(tuple(hidden), 1)
    opt = optax.chain(optax.clip_by_global_norm(0.5), optax.adam(lr))

    def init(key, bank):
        k_a, k_c, k_env, k_run = jax.random.split(key, 4)
        obs, env_state = jax.vmap(env.reset)(jax.random.split(k_env, num_envs), bank)
        x = jnp.zeros((obs.shape[-1],))
        params = {
            "actor": actor.init(k_a, x),
            "critic": critic.init(k_c, x),
            "log_std": jnp.full((a_dim,), -0.5),
        }
        return params, opt.init(params), env_state, obs, k_run

    def logp(params, obs, act):
        mean = actor.apply(params["actor"], obs)
        std = jnp.exp(params["log_std"])
        z = (act - mean) / std
        return jnp.sum(-0.5 * z**2 - params["log_std"] - 0.5 * jnp.log(2 * jnp.pi), axis=-1)

    def update(state, bank):
        params, opt_state, env_state, obs, key = state

        def step(carry, _):
            env_state, obs, key = carry
            key, k_a, k_s = jax.random.split(key, 3)
            mean = actor.apply(params["actor"], obs)
            act = mean + jnp.exp(params["log_std"]) * jax.random.normal(k_a, mean.shape)
            lp = logp(params, obs, act)
            value = critic.apply(params["critic"], obs)[..., 0]
            keys = jax.random.split(k_s, num_envs)
            obs2, env_state, reward, done, _ = jax.vmap(env.step)(
                keys, env_state, jnp.clip(act, low, high), bank
            )
            return (env_state, obs2, key), (obs, act, lp, value, reward, done)

        (env_state, obs, key), (o, a, lp, v, r, d) = jax.lax.scan(
            step, (env_state, obs, key), None, rollout_len
        )
        last = critic.apply(params["critic"], obs)[..., 0]

        def gae(carry, t):
            adv, nxt = carry
            r_t, v_t, d_t = t
            nonterminal = 1.0 - d_t.astype(jnp.float32)[:, None]
            delta = r_t + gamma * nxt * nonterminal - v_t
            adv = delta + gamma * lam * nonterminal * adv
            return (adv, v_t), adv

        _, adv = jax.lax.scan(gae, (jnp.zeros_like(last), last), (r, v, d), reverse=True)
        target = adv + v
        size = rollout_len * num_envs * n
        batch = jax.tree_util.tree_map(
            lambda x: x.reshape(size, *x.shape[3:]), (o, a, lp, adv, target)
        )

        def loss(p, mb):
            ob, ac, lp_old, ad, tg = mb
            ad = (ad - ad.mean()) / (ad.std() + 1e-8)
            ratio = jnp.exp(logp(p, ob, ac) - lp_old)
            pg = -jnp.minimum(ratio * ad, jnp.clip(ratio, 1 - clip, 1 + clip) * ad).mean()
            vl = 0.5 * ((critic.apply(p["critic"], ob)[..., 0] - tg) ** 2).mean()
            return pg + 0.5 * vl

        def epoch(carry, k):
            p, s = carry
            perm = jax.random.permutation(k, size)
            mbs = jax.tree_util.tree_map(
                lambda x: x[perm].reshape(minibatches, -1, *x.shape[1:]), batch
            )

            def one(carry, mb):
                p, s = carry
                g = jax.grad(loss)(p, mb)
                u, s = opt.update(g, s, p)
                return (optax.apply_updates(p, u), s), None

            return jax.lax.scan(one, (p, s), mbs)[0], None

        key, k_ep = jax.random.split(key)
        (params, opt_state), _ = jax.lax.scan(
            epoch, (params, opt_state), jax.random.split(k_ep, epochs)
        )
        return (params, opt_state, env_state, obs, key), r.mean()

    return init, update
