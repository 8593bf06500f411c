"""SAC compiled into one ``lax.scan`` with the replay buffer inside: independent (``sac``,
DTDE) or with centralised critics (``masac``, CTDE).

One update = one env step of every environment in the batch, stored in a ring buffer of whole
env steps (all N agents of a row share the row), then ``gradient_steps`` SAC updates on uniformly
sampled rows: a tanh-Gaussian actor and twin Q critics on each agent's own observation and
action (parameters shared with type/id features, per type, or per agent), target critics by
Polyak averaging (``tau``), and the entropy temperature tuned to -act_dim. Observations are stored
raw and normalised with the current statistics when sampled. Interface as ``ppo.Core``.

``masac``: each agent's critics see MAPPO's world state (own observation plus the mean and max
of all agents' observations) and, besides the agent's own action, the mean and max of every
agent's action (the buffer's in the critic loss, the current policy's in the actor loss and the
target): permutation invariant, so it scales with N as the decentralised critics do.
"""

from __future__ import annotations

import functools
from typing import Any

import jax
import jax.numpy as jnp
import optax
from flax import struct

from jaxlem.envs.wrappers import LogWrapper
from jaxlem.train import loop
from jaxlem.train import networks as nets
from jaxlem.train.config import Hyper, TrainConfig
from jaxlem.train.reporter import Reporter
from jaxlem.train.views import AgentViews, action_head


@struct.dataclass
class SACRunner:
    params: Any  # {"actor", "q1", "q2"}
    target: Any  # {"q1", "q2"}
    log_alpha: jax.Array
    opt_state: Any  # {"actor", "q", "alpha"}
    buffer: dict  # obs [C, N, D], act [C, N, A], rew [C, N], next_obs, term [C], types [C, N]
    size: jax.Array  # filled rows
    ptr: jax.Array
    env_state: Any
    obs: jax.Array
    obs_stats: dict
    update: jax.Array
    key: jax.Array


@functools.lru_cache(maxsize=16)
def build(config: TrainConfig, env) -> SACCore:
    return SACCore(config, env)


class SACCore:
    """Pure functions of (runner, scenario bank, hyperparameters), as ``ppo.Core``; built from
    the same blocks (views, networks, normalisation, the shared scan)."""

    def __init__(self, config: TrainConfig, env):
        config.check_env(env)
        self.config = config
        self.env = env
        self.log_env = LogWrapper(env)
        self.head = action_head(config, env, kind="tanh_normal")
        self.agents = AgentViews(config, env, self.head)
        self.num_agents, self.obs_dim = self.agents.num_agents, self.agents.obs_dim
        self.actor = nets.MLP(config.hidden, config.activation, self.head.out_dim, 0.01)
        self.qnet = nets.MLP(config.hidden, config.activation, 1, 1.0)
        self.act_dim = self.head.cont
        self.reporter = Reporter()
        self.run = loop.compile_run(
            type(self).__name__, config, self._update, self.evaluate, self.reporter
        )
        self.init = loop.unbatched_init(self._init)

    def _actor(self, params, x, t):
        return self.agents.apply(self.actor, params, x, t)

    def _opt(self, hyper: Hyper):
        return optax.chain(optax.clip_by_global_norm(hyper.max_grad_norm), optax.adam(hyper.lr))

    def _q(self, params, x, a, t):
        """Q [M, N] of critic inputs x [M, N, .] and every agent's actions a [M, N, A]."""
        parts = [x, a]
        if self.config.centralised_critic:
            pooled = jnp.concatenate([a.mean(axis=1), a.max(axis=1)], axis=-1)
            parts.append(jnp.broadcast_to(pooled[:, None], (*a.shape[:2], pooled.shape[-1])))
        xa = jnp.concatenate(parts, axis=-1)
        return self.agents.apply(self.qnet, params, xa, t)[..., 0]

    def _init(self, key, bank, hyper: Hyper) -> SACRunner:
        c = self.config
        n, d, a = self.num_agents, self.obs_dim, self.act_dim
        key, k_env, k_a, k1, k2 = jax.random.split(key, 5)
        obs, env_state = jax.vmap(self.log_env.reset)(jax.random.split(k_env, c.num_envs), bank)
        types = self.agents.types(jax.tree_util.tree_map(lambda x: x[0], bank))
        x, xc = self.agents.inputs(jnp.zeros((1, n, d)), types)
        acts = a * (3 if self.config.centralised_critic else 1)
        xa = jnp.concatenate([xc[0, 0], jnp.zeros((acts,))])
        params = {
            "actor": self.agents.init(self.actor, k_a, x[0, 0]),
            "q1": self.agents.init(self.qnet, k1, xa),
            "q2": self.agents.init(self.qnet, k2, xa),
        }
        opt = self._opt(hyper)
        log_alpha = jnp.log(hyper.init_alpha)
        cap = c.buffer_size
        buffer = {
            "obs": jnp.zeros((cap, n, d), jnp.float32),
            "act": jnp.zeros((cap, n, a), jnp.float32),
            "rew": jnp.zeros((cap, n), jnp.float32),
            "next_obs": jnp.zeros((cap, n, d), jnp.float32),
            "term": jnp.zeros((cap,), jnp.float32),
            "types": jnp.zeros((cap, n), jnp.int32),
        }
        return SACRunner(
            params=params,
            target={"q1": params["q1"], "q2": params["q2"]},
            log_alpha=log_alpha,
            opt_state={
                "actor": opt.init(params["actor"]),
                "q": opt.init((params["q1"], params["q2"])),
                "alpha": opt.init(log_alpha),
            },
            buffer=buffer,
            size=jnp.zeros((), jnp.int32),
            ptr=jnp.zeros((), jnp.int32),
            env_state=env_state,
            obs=obs,
            obs_stats=nets.stats_init(d),
            update=jnp.zeros((), jnp.int32),
            key=key,
        )

    def _update(self, runner: SACRunner, bank, hyper: Hyper):
        c = self.config
        b = c.num_envs
        types_b = self.agents.bank_types(bank)
        key, k_act, k_rand, k_step, k_grad = jax.random.split(runner.key, 5)

        # act (uniform random before learning_starts) and step every environment
        obs_stats = runner.obs_stats
        if c.normalize_obs:
            obs_stats = nets.stats_update(obs_stats, runner.obs.reshape(-1, self.obs_dim))
        x, _ = self.agents.inputs(nets.normalize(obs_stats, runner.obs), types_b)
        raw = self.head.sample(self._actor(runner.params["actor"], x, types_b), k_act)
        warm = runner.update * b < c.learning_starts
        rand = jnp.arctanh(jax.random.uniform(k_rand, raw.shape, minval=-0.999, maxval=0.999))
        raw = jnp.where(warm, rand, raw)
        obs2, env_state, reward, done, info = jax.vmap(self.log_env.step)(
            jax.random.split(k_step, b), runner.env_state, self.head.to_env(raw), bank
        )
        rows = (runner.ptr + jnp.arange(b)) % c.buffer_size
        new = {
            "obs": runner.obs,
            "act": jnp.tanh(raw),
            "rew": reward.astype(jnp.float32),
            "next_obs": info["final_obs"],
            "term": info["terminated"].astype(jnp.float32),
            "types": types_b,
        }
        buffer = jax.tree_util.tree_map(lambda buf, v: buf.at[rows].set(v), runner.buffer, new)
        size = jnp.minimum(runner.size + b, c.buffer_size)
        ptr = (runner.ptr + b) % c.buffer_size

        opt = self._opt(hyper)
        target_entropy = -float(self.act_dim)

        def grad_step(carry, k):
            params, target, log_alpha, opt_state = carry
            k_idx, k_next, k_new = jax.random.split(k, 3)
            idx = jax.random.randint(k_idx, (c.batch_size,), 0, jnp.maximum(size, 1))
            bt = jax.tree_util.tree_map(lambda v: v[idx], buffer)
            xs, cs = self.agents.inputs(nets.normalize(obs_stats, bt["obs"]), bt["types"])
            xn, cn = self.agents.inputs(nets.normalize(obs_stats, bt["next_obs"]), bt["types"])
            t = bt["types"]
            alpha = jnp.exp(log_alpha)
            out_n = self._actor(params["actor"], xn, t)
            raw_n = self.head.sample(out_n, k_next)
            lp_n = self.head.log_prob(out_n, raw_n)
            a_n = jnp.tanh(raw_n)
            q_n = jnp.minimum(self._q(target["q1"], cn, a_n, t), self._q(target["q2"], cn, a_n, t))
            y = bt["rew"] + hyper.gamma * (1.0 - bt["term"])[:, None] * (q_n - alpha * lp_n)
            y = jax.lax.stop_gradient(y)

            def q_loss(qs):
                q1 = self._q(qs[0], cs, bt["act"], t)
                q2 = self._q(qs[1], cs, bt["act"], t)
                return jnp.mean((q1 - y) ** 2) + jnp.mean((q2 - y) ** 2)

            ql, g_q = jax.value_and_grad(q_loss)((params["q1"], params["q2"]))
            upd, opt_q = opt.update(g_q, opt_state["q"], (params["q1"], params["q2"]))
            q1, q2 = optax.apply_updates((params["q1"], params["q2"]), upd)

            def actor_loss(pa):
                out = self._actor(pa, xs, t)
                r = self.head.sample(out, k_new)
                lp = self.head.log_prob(out, r)
                a = jnp.tanh(r)
                q = jnp.minimum(self._q(q1, cs, a, t), self._q(q2, cs, a, t))
                return jnp.mean(alpha * lp - q), lp

            (al, lp), g_a = jax.value_and_grad(actor_loss, has_aux=True)(params["actor"])
            upd, opt_a = opt.update(g_a, opt_state["actor"], params["actor"])
            actor = optax.apply_updates(params["actor"], upd)

            def alpha_loss(la):
                return -la * jnp.mean(jax.lax.stop_gradient(lp) + target_entropy)

            g_al = jax.grad(alpha_loss)(log_alpha)
            upd, opt_al = opt.update(g_al, opt_state["alpha"], log_alpha)
            log_alpha = optax.apply_updates(log_alpha, upd)

            target = jax.tree_util.tree_map(
                lambda tg, p: (1 - hyper.tau) * tg + hyper.tau * p, target, {"q1": q1, "q2": q2}
            )
            new_params = {"actor": actor, "q1": q1, "q2": q2}
            opt_state = {"actor": opt_a, "q": opt_q, "alpha": opt_al}
            return (new_params, target, log_alpha, opt_state), {
                "q_loss": ql,
                "actor_loss": al,
                "entropy": -jnp.mean(lp),
            }

        carry = (runner.params, runner.target, runner.log_alpha, runner.opt_state)
        new_carry, losses = jax.lax.scan(
            grad_step, carry, jax.random.split(k_grad, c.gradient_steps)
        )
        learn = (runner.update + 1) * b >= c.learning_starts
        params, target, log_alpha, opt_state = jax.tree_util.tree_map(
            lambda new, old: jnp.where(learn, new, old), new_carry, carry
        )
        ended = info["returned_episode"]
        metrics = {k: v.mean() for k, v in losses.items()}
        metrics["alpha"] = jnp.exp(log_alpha)
        metrics.update(loop.step_metrics(info))
        metrics["episodes"] = jnp.sum(ended.astype(jnp.float32))
        metrics["episode_return"] = jnp.where(
            metrics["episodes"] > 0,
            jnp.sum(jnp.where(ended, info["returned_episode_returns"].mean(axis=1), 0.0))
            / jnp.maximum(metrics["episodes"], 1.0),
            jnp.nan,
        )
        return (
            SACRunner(
                params=params,
                target=target,
                log_alpha=log_alpha,
                opt_state=opt_state,
                buffer=buffer,
                size=size,
                ptr=ptr,
                env_state=env_state,
                obs=obs2,
                obs_stats=obs_stats,
                update=runner.update + 1,
                key=key,
            ),
            metrics,
        )

    # ------------------------------------------------------------------ evaluation
    def policy(self, runner: SACRunner, obs, types, key, deterministic: bool = True, params=None):
        """Env actions [M, N, act_dim] for raw observations [M, N, D] (one seed's runner)."""
        obs_n = nets.normalize(runner.obs_stats, obs)
        x, _ = self.agents.inputs(obs_n, types)
        out = self._actor(runner.params["actor"], x, self.agents.view_types(types, obs.shape[0]))
        raw = self.head.mode(out) if deterministic else self.head.sample(out, key)
        return self.head.to_env(raw)

    def evaluate(self, runner: SACRunner, eval_bank, key):
        """Mean agent return of the deterministic policy (``loop.evaluate_return``)."""

        def policy(k, obs, batched):
            types = self.agents.types(jax.tree_util.tree_map(lambda x: x[0], batched))[None]
            return self.policy(runner, obs, types, k, True, batched)

        return loop.evaluate_return(self.env, policy, eval_bank, key)


def make_train(config: TrainConfig, env, params=None, eval_params=None):
    """As ``ppo.make_train``, for ``algo='sac'`` and ``algo='masac'``."""
    return loop.wrap(build(config.static(), env), config, env, params, eval_params)
