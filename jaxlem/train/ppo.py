"""PPO trainers compiled into one ``lax.scan``: IPPO, MAPPO, self-play and centralised CTCE.

``make_train(config, env, params)`` returns ``train(key)``: the whole run (rollouts over a batch
of scenarios, GAE, PPO epochs and minibatches, periodic evaluation, self-play pool updates) is one
jittable function, vmappable over seeds. The variants differ only in what the networks see:

- ``ippo``: actor and critic on the agent's own (normalised) observation (+ type/id features);
- ``mappo``: the critic sees a world state: own observation plus the mean and max of all agents'
  observations (permutation invariant, so it scales to thousands of agents);
- ``selfplay``: one shared policy; in each environment, with probability ``selfplay_prob`` every
  agent plays the current policy, otherwise one random agent learns against a snapshot drawn from
  the pool of past policies held in the scan state;
- ``ctce``: one joint policy and critic over the concatenated observations of all agents
  (centralised training and execution, small N), trained on the agents' mean reward;
- ``appo``: IPPO whose rollouts are played by the actor of ``behaviour_lag`` updates before
  (what asynchronous actors produce), with V-trace returns and advantages (``vtrace``); a lag
  on ``mappo`` or ``ctce`` (``off_policy_lag``) makes their APPO variant.

The compiled core is cached per (static config, env), and every number a sweep varies (the
scenario bank, learning rate, discount, clipping, ...) is an argument, so sweeps do not recompile.
"""

from __future__ import annotations

import functools
from typing import Any

import jax
import jax.numpy as jnp
import optax
from flax import struct

from jaxlem.envs.wrappers import LogWrapper
from jaxlem.train import capacity, loop, selfplay, vtrace
from jaxlem.train import networks as nets
from jaxlem.train.config import Hyper, TrainConfig
from jaxlem.train.reporter import Reporter
from jaxlem.train.views import AgentViews, Residual, action_head


@struct.dataclass
class Runner:
    params: Any  # {"actor": ..., "critic": ...}
    opt_state: Any
    env_state: Any  # LogWrapper state, batched [B]
    obs: jax.Array  # [B, N, D] last raw observation
    obs_stats: dict
    ret_stats: dict
    ret_acc: jax.Array  # [B, N'] running discounted return (reward normalisation)
    pool: Any  # self-play: stacked actor snapshots [P, ...] (None otherwise)
    pool_count: jax.Array
    update: jax.Array
    key: jax.Array
    behaviour: Any = None  # APPO: the last ``behaviour_lag`` actors [L, ...], oldest first


@functools.lru_cache(maxsize=32)
def build(config: TrainConfig, env) -> Core:
    """The compiled pieces for a static config and env (cached: sweeps reuse them)."""
    return Core(config, env)


class Core:
    """Pure functions of (runner, scenario bank, hyperparameters); see ``make_train``."""

    def __init__(self, config: TrainConfig, env):
        config.check_env(env)
        self.config = c = config
        self.env = env
        self.log_env = LogWrapper(env)
        self.head = action_head(c, env)
        self.agents = AgentViews(c, env, self.head)
        self.num_agents, self.obs_dim = self.agents.num_agents, self.agents.obs_dim
        self.central, self.views = self.agents.central, self.agents.views
        scale = c.residual_scale_by_type or c.residual_scale
        self.residual = Residual(env, c.residual_policy(env), self.head, scale)
        if self.central:  # before anything is built for a joint network that cannot fit
            capacity.check_joint(
                self.num_agents,
                self.obs_dim,
                self.head.out_dim // self.num_agents,
                c.hidden,
                c.ctce_memory_fraction,
            )
        self.actor = nets.MLP(c.hidden, c.activation, self.head.out_dim, 0.01)
        self.critic = nets.MLP(c.hidden, c.activation, 1, 1.0)
        self.reporter = Reporter()
        self.run = loop.compile_run(
            type(self).__name__, c, self._update, self.evaluate, self.reporter
        )
        self.init = loop.unbatched_init(self._init)

    # The named scopes (actor, critic, env, normalize; rollout, advantages, learn, optimizer)
    # label the compiled ops for the update's stage profile (``jaxlem.app.profile_update``).
    def _actor(self, params, x, t):
        with jax.named_scope("actor"):
            return self.agents.apply(self.actor, params, x, t)

    def _value(self, params, x, t):
        with jax.named_scope("critic"):
            return self.agents.apply(self.critic, params, x, t)[..., 0]

    def _to_env(self, raw, obs, bank, key):
        """Raw actions [M, N', raw] -> env actions [M, N, act_dim] (residual baseline moved
        towards the edges the continuous columns point to, if any)."""
        act = self.agents.joint_to_agents(self.head.to_env(raw))
        return self.residual(act, obs, bank, key)

    def _lr_at(self, hyper: Hyper, update):
        """The learning rate during update number ``update`` (linear decay to 0 if annealed)."""
        if not self.config.anneal_lr:
            return hyper.lr
        return hyper.lr * jnp.maximum(1.0 - update / self.config.num_updates, 0.0)

    def _optimizer(self, hyper: Hyper):
        c = self.config
        steps_per_update = c.update_epochs * c.num_minibatches

        def lr(count):
            return self._lr_at(hyper, count // steps_per_update)

        # actor and critic clipped separately: a large value-loss gradient must not shrink the
        # policy step (with one global norm the policy barely moved)
        one = optax.chain(optax.clip_by_global_norm(hyper.max_grad_norm), optax.adam(lr, eps=1e-5))
        actor = one
        if c.actor_lr_scale_by_type:
            actor = optax.chain(one, nets.scale_by_type(c.actor_lr_scale_by_type))
        return optax.multi_transform(
            {"actor": actor, "critic": one}, {"actor": "actor", "critic": "critic"}
        )

    # ------------------------------------------------------------------ init
    def _init(self, key, bank, hyper: Hyper) -> Runner:
        c = self.config
        key, k_env, k_a, k_c = jax.random.split(key, 4)
        keys = jax.random.split(k_env, c.num_envs)
        obs, env_state = jax.vmap(self.log_env.reset)(keys, bank)
        types = self.agents.types(jax.tree_util.tree_map(lambda x: x[0], bank))
        x_a, x_c = self.agents.inputs(jnp.zeros((1, self.num_agents, self.obs_dim)), types)
        params = {
            "actor": self.agents.init(self.actor, k_a, x_a[0, 0]),
            "critic": self.agents.init(self.critic, k_c, x_c[0, 0]),
        }
        pool = selfplay.init(params["actor"], c.pool_size) if c.algo == "selfplay" else None
        behaviour = None
        if c.behaviour_lag:
            behaviour = jax.tree_util.tree_map(
                lambda x: jnp.broadcast_to(x, (c.behaviour_lag, *x.shape)), params["actor"]
            )
        return Runner(
            params=params,
            opt_state=self._optimizer(hyper).init(params),
            env_state=env_state,
            obs=obs,
            obs_stats=nets.stats_init(self.obs_dim),
            ret_stats=self._ret_stats_init(),
            ret_acc=jnp.zeros((c.num_envs, self.views), jnp.float32),
            pool=pool,
            pool_count=jnp.ones((), jnp.int32),
            update=jnp.zeros((), jnp.int32),
            key=key,
            behaviour=behaviour,
        )

    def _ret_stats_init(self):
        """Running variance of the discounted return: one scale for the whole batch, or one per
        (environment, agent) slot, so small and large sites weigh alike in the gradient."""
        if self.config.reward_norm == "agent":
            return jax.tree_util.tree_map(
                lambda x: jnp.broadcast_to(x, (self.config.num_envs, self.views)),
                nets.stats_init(1),
            )
        return nets.stats_init(1)

    # ------------------------------------------------------------------ one update
    def _update(self, runner: Runner, bank, hyper: Hyper):
        c = self.config
        b, n, v = c.num_envs, self.num_agents, self.views
        types_b = self.agents.bank_types(bank)  # [B, N]
        vt = self.agents.view_types(types_b, b)
        key, *k_pool = jax.random.split(runner.key, 4)

        # self-play: which agents learn in each env, and which snapshot plays the others
        if c.algo == "selfplay":
            mask, opp_params = selfplay.draw(
                k_pool, runner.pool, runner.pool_count, b, n, hyper.selfplay_prob
            )
        else:
            mask = jnp.ones((b, v), bool)
        acting = runner.params["actor"]
        if c.behaviour_lag:  # APPO: the oldest actor of the lag acts
            acting = jax.tree_util.tree_map(lambda x: x[0], runner.behaviour)

        def env_step(carry, _):
            env_state, obs, obs_stats, ret_stats, ret_acc, key = carry
            key, k_act, k_opp_act, k_step = jax.random.split(key, 4)
            with jax.named_scope("normalize"):
                if c.normalize_obs:
                    obs_stats = nets.stats_update(obs_stats, obs.reshape(-1, self.obs_dim))
                obs_n = nets.normalize(obs_stats, obs)
            x_a, x_c = self.agents.inputs(obs_n, types_b)
            out = self._actor(acting, x_a, vt)
            raw = self.head.sample(out, k_act)
            if c.algo == "selfplay":
                opp_out = jax.vmap(lambda p, x: self.actor.apply(p, x))(opp_params, x_a)
                opp_raw = self.head.sample(opp_out, k_opp_act)
                raw = jnp.where(mask[..., None], raw, opp_raw)
            # the columns that matter in the state this action is taken in [B, N', raw]
            amask = self.agents.head_mask(bank, env_state.env_state)
            logp = self.head.log_prob(out, raw, amask)
            value = self._value(runner.params["critic"], x_c, vt)
            keys = jax.random.split(k_step, b)
            with jax.named_scope("env"):
                obs2, env_state, reward, done, info = jax.vmap(self.log_env.step)(
                    keys, env_state, self._to_env(raw, obs, bank, k_act), bank
                )
            reward = reward.astype(jnp.float32)
            if self.central:
                reward = reward.mean(axis=1, keepdims=True)
            # a time limit is not a terminal state: bootstrap from the pre-reset observation
            trunc = (info["truncated"] & ~info["terminated"]).astype(jnp.float32)
            ret_acc = ret_acc * hyper.gamma * (1.0 - done[:, None]) + reward
            if c.normalize_reward and c.reward_norm == "agent":
                ret_stats = nets.stats_update(ret_stats, ret_acc[None])
                scale = jnp.sqrt(ret_stats["var"] + 1e-8)
            elif c.normalize_reward:
                ret_stats = nets.stats_update(ret_stats, ret_acc.reshape(-1, 1))
                scale = jnp.sqrt(ret_stats["var"][0] + 1e-8)
            else:
                scale = 1.0
            fin_a, fin_c = self.agents.inputs(nets.normalize(obs_stats, info["final_obs"]), types_b)
            v_final = self._value(runner.params["critic"], fin_c, vt)
            reward_t = reward / scale + hyper.gamma * v_final * trunc[:, None]
            stats = loop.step_metrics(info)
            stats["episode_return_sum"], stats["episodes"] = loop.episode_metrics(info)
            traj = (x_a, x_c, raw, amask, logp, value, reward_t, done, stats)
            return (env_state, obs2, obs_stats, ret_stats, ret_acc, key), traj

        carry = (
            runner.env_state,
            runner.obs,
            runner.obs_stats,
            runner.ret_stats,
            runner.ret_acc,
            key,
        )
        with jax.named_scope("rollout"):
            carry, traj = jax.lax.scan(env_step, carry, None, c.rollout_len)
        env_state, obs, obs_stats, ret_stats, ret_acc, key = carry
        x_a, x_c, raw, amask, logp, value, reward, done, step_stats = traj

        with jax.named_scope("advantages"):
            targets, adv, logp, extra = self._advantages(
                runner,
                obs,
                obs_stats,
                types_b,
                vt,
                amask,
                (x_a, raw, logp, value, reward, done),
                hyper,
            )

        # PPO epochs over shuffled minibatches of env steps (the agent axis stays whole)
        def flat(x):
            return x.reshape(c.rollout_len * b, *x.shape[2:])

        learners = jnp.broadcast_to(mask, value.shape)
        batch = jax.tree_util.tree_map(
            flat, (x_a, x_c, raw, logp, value, adv, targets, learners, amask)
        )
        types_flat = jnp.broadcast_to(vt, (c.rollout_len, *vt.shape)).reshape(-1, vt.shape[-1])
        optimizer = self._optimizer(hyper)
        size = c.rollout_len * b
        mb = size // c.num_minibatches

        def loss_fn(params, mbatch, t):
            xa, xc, rw, lp_old, v_old, a, tgt, m, am = mbatch
            m = m.astype(jnp.float32)
            cnt = jnp.maximum(m.sum(), 1.0)
            out = self._actor(params["actor"], xa, t)
            lp = self.head.log_prob(out, rw, am)
            a_mean = (a * m).sum() / cnt
            a_std = jnp.sqrt(((a - a_mean) ** 2 * m).sum() / cnt + 1e-8)
            a = (a - a_mean) / a_std
            ratio = jnp.exp(jnp.clip(lp - lp_old, -20.0, 20.0))
            pg = -jnp.minimum(
                ratio * a, jnp.clip(ratio, 1 - hyper.clip_eps, 1 + hyper.clip_eps) * a
            )
            pg = (pg * m).sum() / cnt
            val = self._value(params["critic"], xc, t)
            v_clip = v_old + jnp.clip(val - v_old, -hyper.clip_eps, hyper.clip_eps)
            vl = 0.5 * jnp.maximum((val - tgt) ** 2, (v_clip - tgt) ** 2)
            vl = (vl * m).sum() / cnt
            ent = (self.head.entropy(out, am) * m).sum() / cnt
            kl = (((ratio - 1.0) - (lp - lp_old)) * m).sum() / cnt
            clipped = (jnp.abs(ratio - 1.0) > hyper.clip_eps).astype(jnp.float32)
            total = pg + hyper.vf_coef * vl - hyper.ent_coef * ent
            return total, {
                "policy_loss": pg,
                "value_loss": vl,
                "entropy": ent,
                "approx_kl": kl,
                "clip_frac": (clipped * m).sum() / cnt,
            }

        def epoch(carry, k):
            params, opt_state = carry
            with jax.named_scope("shuffle"):
                perm = jax.random.permutation(k, size)[: mb * c.num_minibatches]
                shuffled = jax.tree_util.tree_map(
                    lambda x: x[perm].reshape(c.num_minibatches, mb, *x.shape[1:]), batch
                )
                t_sh = types_flat[perm].reshape(c.num_minibatches, mb, -1)

            def minibatch(carry, inp):
                params, opt_state = carry
                mbatch, t = inp
                grads, aux = jax.grad(loss_fn, has_aux=True)(params, mbatch, t)
                with jax.named_scope("optimizer"):
                    aux["grad_norm_actor"] = optax.tree.norm(grads["actor"])
                    aux["grad_norm_critic"] = optax.tree.norm(grads["critic"])
                    updates, opt_state = optimizer.update(grads, opt_state, params)
                    params = optax.apply_updates(params, updates)
                return (params, opt_state), aux

            return jax.lax.scan(minibatch, (params, opt_state), (shuffled, t_sh))

        key, k_ep = jax.random.split(key)
        with jax.named_scope("learn"):
            (params, opt_state), losses = jax.lax.scan(
                epoch, (runner.params, runner.opt_state), jax.random.split(k_ep, c.update_epochs)
            )

        # self-play: push a snapshot of the actor into the pool every snapshot_every updates
        pool, pool_count = runner.pool, runner.pool_count
        update = runner.update + 1
        if c.algo == "selfplay":
            pool, pool_count = selfplay.push(
                pool, pool_count, params["actor"], update, c.snapshot_every, c.pool_size
            )

        behaviour = runner.behaviour
        if c.behaviour_lag:  # the newest actor joins the lag; the oldest leaves
            behaviour = jax.tree_util.tree_map(
                lambda old, new: jnp.concatenate([old[1:], new[None]]),
                runner.behaviour,
                params["actor"],
            )

        metrics = {k: val.mean() for k, val in losses.items()}
        metrics.update(extra)
        # how much of the return variance the critic explains, on this update's rollout
        m_all = learners.astype(jnp.float32)
        cnt_all = jnp.maximum(m_all.sum(), 1.0)

        def _var(x):
            mu = (x * m_all).sum() / cnt_all
            return ((x - mu) ** 2 * m_all).sum() / cnt_all

        metrics["explained_variance"] = 1.0 - _var(targets - value) / jnp.maximum(
            _var(targets), 1e-8
        )
        metrics["lr"] = self._lr_at(hyper, runner.update)
        for k, val in step_stats.items():
            if k not in ("episode_return_sum", "episodes"):
                metrics[k] = val.mean()
        metrics["episode_return"] = step_stats["episode_return_sum"].sum() / jnp.maximum(
            step_stats["episodes"].sum(), 1.0
        )
        metrics["episodes"] = step_stats["episodes"].sum()
        new = Runner(
            params=params,
            opt_state=opt_state,
            env_state=env_state,
            obs=obs,
            obs_stats=obs_stats,
            ret_stats=ret_stats,
            ret_acc=ret_acc,
            pool=pool,
            pool_count=pool_count,
            update=update,
            key=key,
            behaviour=behaviour,
        )
        return new, metrics

    def _advantages(self, runner, obs, obs_stats, types_b, vt, amask, traj, hyper: Hyper):
        """GAE (or, with a behaviour lag, V-trace) targets and advantages of one rollout;
        returns ``(targets, advantages, log_probs, extra_metrics)``: V-trace replaces the
        rollout's log-probs by the learner's, against which the surrogate's ratio is taken."""
        c = self.config
        x_a, raw, logp, value, reward, done = traj
        _, last_c = self.agents.inputs(nets.normalize(obs_stats, obs), types_b)
        last_value = self._value(runner.params["critic"], last_c, vt)

        def gae_step(carry, t):
            gae, next_value = carry
            r, val, d = t
            nonterminal = 1.0 - d.astype(jnp.float32)[:, None]
            delta = r + hyper.gamma * next_value * nonterminal - val
            gae = delta + hyper.gamma * hyper.gae_lambda * nonterminal * gae
            return (gae, val), gae

        extra = {}
        if c.behaviour_lag:
            # V-trace against the learner's actor as it is now; the surrogate's ratio is then
            # taken against that actor (the rollout's log-probs are the behaviour's)
            def learner_logp(xa, rw, am):
                return self.head.log_prob(self._actor(runner.params["actor"], xa, vt), rw, am)

            lp_learner = jax.vmap(learner_logp)(x_a, raw, amask)
            log_ratio = lp_learner - logp
            discounts = hyper.gamma * (1.0 - done.astype(jnp.float32))[..., None]
            targets, adv = vtrace.vtrace(
                value,
                last_value,
                reward,
                jnp.broadcast_to(discounts, value.shape),
                log_ratio,
                hyper.gae_lambda,
                hyper.vtrace_rho_bar,
                hyper.vtrace_c_bar,
            )
            logp = lp_learner
            extra["is_ratio"] = jnp.exp(jnp.clip(log_ratio, -20.0, 20.0)).mean()
        else:
            _, adv = jax.lax.scan(
                gae_step,
                (jnp.zeros_like(last_value), last_value),
                (reward, value, done),
                reverse=True,
            )
            targets = adv + value
        return targets, adv, logp, extra

    # ------------------------------------------------------------------ evaluation
    def policy(self, runner: Runner, obs, types, key, deterministic: bool = True, params=None):
        """Env actions [M, N, act_dim] for raw observations [M, N, D] (one seed's runner)."""
        obs_n = nets.normalize(runner.obs_stats, obs)
        x_a, _ = self.agents.inputs(obs_n, types)
        out = self._actor(runner.params["actor"], x_a, self.agents.view_types(types, obs.shape[0]))
        raw = self.head.mode(out) if deterministic else self.head.sample(out, key)
        return self._to_env(raw, obs, params, key)

    def evaluate(self, runner: Runner, eval_bank, key):
        """Mean agent return of the deterministic policy (``loop.evaluate_return``)."""

        def policy(k, obs, batched):
            types = self.agents.types(jax.tree_util.tree_map(lambda x: x[0], batched))[None]
            return self.policy(runner, obs, types, k, True, batched)

        return loop.evaluate_return(self.env, policy, eval_bank, key)


def make_train(config: TrainConfig, env, params=None, eval_params=None):
    """``train(key) -> (runner, metrics)`` for one seed: init plus all updates in one scan.

    ``params``: a scenario bank with a leading axis of ``config.num_envs`` (default: the
    training bank of seed 0, ``jaxlem.train.banks``), or one params pytree broadcast to every
    environment. ``eval_params``: a held-out bank for the periodic evaluation (default: the
    evaluation bank of seed 0). ``jax.vmap(train)`` runs several seeds; ``train.init`` and
    ``train.run`` split the scan for chunked drivers.
    """
    return loop.wrap(build(config.static(), env), config, env, params, eval_params)
