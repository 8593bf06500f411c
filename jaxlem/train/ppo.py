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
  (centralised training and execution, small N), trained on the agents' mean reward.

The compiled core is cached per (static config, env), and every number a sweep varies (the
scenario bank, learning rate, discount, clipping, ...) is an argument, so sweeps do not recompile.
"""

from __future__ import annotations

import collections
import functools
from typing import Any

import jax
import jax.numpy as jnp
import optax
from flax import struct

from jaxlem import policies
from jaxlem.envs.wrappers import LogWrapper
from jaxlem.rollout import rollout
from jaxlem.train import networks as nets
from jaxlem.train.config import Hyper, TrainConfig

# how many times each compiled core was traced (a sweep over numbers must not add any)
TRACE_COUNT: collections.Counter = collections.Counter()

_SKIP_INFO = ("terminated", "truncated", "returned_episode", "returned_episode_lengths")


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


def num_agent_types(env) -> int:
    return 4 if hasattr(env.default_params, "agent_type") else 1


def agent_types(env, params) -> jax.Array:
    """[N] int agent types from params (LEM), zeros for envs without types."""
    t = getattr(params, "agent_type", None)
    return jnp.zeros((env.num_agents,), jnp.int32) if t is None else t.astype(jnp.int32)


def action_head(config: TrainConfig, env) -> nets.ActionHead:
    space = env.action_space()
    n = env.num_agents
    partner = bool(getattr(env, "partner_stage", False))
    cont = space.shape[-1] - int(partner)
    low = float(jnp.min(jnp.asarray(space.low)))
    high = float(jnp.max(jnp.asarray(space.high))) if not partner else 1.0
    if config.algo == "ctce":
        return nets.ActionHead(n * cont, low, high, n * int(partner), n + 1, config.dist)
    return nets.ActionHead(cont, low, high, int(partner), n + 1, config.dist)


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
        n, d = env.num_agents, env.observation_space().shape[-1]
        self.num_agents, self.obs_dim = n, d
        self.num_types = num_agent_types(env)
        self.central = c.algo == "ctce"
        self.head = action_head(c, env)
        self.residual = c.residual_policy(env)
        self.actor = nets.MLP(c.hidden, c.activation, self.head.out_dim, 0.01)
        self.critic = nets.MLP(c.hidden, c.activation, 1, 1.0)
        self.views = 1 if self.central else n  # agent axis as the networks see it
        self.run = jax.jit(self._run, static_argnums=(4,))
        self.init = jax.jit(jax.vmap(self._init, in_axes=(0, None, None)))

    # ------------------------------------------------------------------ network inputs
    def _inputs(self, obs_n, types):
        """Normalised obs [M, N, D] -> (actor input, critic input), agent axis N' = views."""
        m = obs_n.shape[0]
        if self.central:
            flat = obs_n.reshape(m, 1, -1)
            return flat, flat
        feats = nets.agent_features(
            jnp.broadcast_to(types, (m, self.num_agents)),
            self.num_agents,
            self.num_types,
            self.config.sharing == "shared",
        )
        own = jnp.concatenate([obs_n, feats], axis=-1)
        if self.config.algo != "mappo":
            return own, own
        pooled = jnp.concatenate([obs_n.mean(axis=1), obs_n.max(axis=1)], axis=-1)
        world = jnp.concatenate(
            [own, jnp.broadcast_to(pooled[:, None], (m, self.num_agents, pooled.shape[-1]))], -1
        )
        return own, world

    def _head_mask(self, bank):
        """[B, N', raw_dim] float: 1 where an action column matters (``env.action_mask``)."""
        b = jax.tree_util.tree_leaves(bank)[0].shape[0]
        if not self.config.action_mask:
            return jnp.ones((b, self.views, self.head.raw_dim), jnp.float32)
        mask = jax.vmap(self.env.action_mask)(bank).astype(jnp.float32)  # [B, N, A]
        if not self.central:
            return mask
        h = self.head
        cont = mask[..., : h.cont // self.num_agents].reshape(b, 1, -1)
        cat = mask[..., h.cont // self.num_agents :].reshape(b, 1, -1)
        return jnp.concatenate([cont, cat], axis=-1)

    def _view_types(self, types, m):
        """Agent types [M, N'] as the networks see them (one joint "agent" under CTCE)."""
        if self.central:
            return jnp.zeros((m, 1), jnp.int32)
        return jnp.broadcast_to(types, (m, self.num_agents))

    def _actor(self, params, x, t):
        sharing = "shared" if self.central else self.config.sharing
        return nets.apply_shared(self.actor, params, x, t, sharing, self.num_types)

    def _value(self, params, x, t):
        sharing = "shared" if self.central else self.config.sharing
        return nets.apply_shared(self.critic, params, x, t, sharing, self.num_types)[..., 0]

    def _to_env(self, raw, obs=None, bank=None, key=None):
        """Raw actions [M, N', raw] -> env actions [M, N, act_dim]. With a residual baseline,
        each continuous column moves the baseline's action towards the box edge it points to:
        0 plays the baseline, -1 and +1 the edges."""
        act = self.head.to_env(raw)
        h = self.head
        if self.central:
            m = act.shape[0]
            parts = [act[..., : h.cont].reshape(m, self.num_agents, -1)]
            if h.num_cat:
                parts.append(act[..., h.cont :].reshape(m, self.num_agents, -1))
            act = jnp.concatenate(parts, axis=-1)
        if not self.residual:
            return act
        k = act.shape[-1] - (1 if h.num_cat else 0)
        d = 2.0 * (act[..., :k] - h.low) / (h.high - h.low) - 1.0  # in [-1, 1]
        b = self._baseline(obs, bank, key)[..., :k]
        moved = jnp.where(d >= 0, b + d * (h.high - b), b + d * (b - h.low))
        return jnp.concatenate([moved, act[..., k:]], axis=-1)

    def _baseline(self, obs, bank, key):
        """The residual baseline's actions [M, N, act_dim] for raw observations [M, N, D]."""
        pol = {**policies.BASELINES, **policies.GENCOS_BASELINES}[self.residual]
        m = obs.shape[0]
        keys = jax.random.split(jax.random.fold_in(key, 1), m)
        return jax.vmap(lambda k, o, p: pol(k, o, self.env, p))(keys, obs, bank)

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
        return optax.multi_transform(
            {"actor": one, "critic": one}, {"actor": "actor", "critic": "critic"}
        )

    # ------------------------------------------------------------------ init
    def _init(self, key, bank, hyper: Hyper) -> Runner:
        c = self.config
        key, k_env, k_a, k_c = jax.random.split(key, 4)
        keys = jax.random.split(k_env, c.num_envs)
        obs, env_state = jax.vmap(self.log_env.reset)(keys, bank)
        types = agent_types(self.env, jax.tree_util.tree_map(lambda x: x[0], bank))
        x_a, x_c = self._inputs(jnp.zeros((1, self.num_agents, self.obs_dim)), types)
        sharing = "shared" if self.central else c.sharing
        params = {
            "actor": nets.init_shared(
                self.actor, k_a, x_a[0, 0], sharing, self.num_agents, self.num_types
            ),
            "critic": nets.init_shared(
                self.critic, k_c, x_c[0, 0], sharing, self.num_agents, self.num_types
            ),
        }
        pool = None
        if c.algo == "selfplay":
            pool = jax.tree_util.tree_map(
                lambda p: jnp.broadcast_to(p, (c.pool_size, *p.shape)), params["actor"]
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
        c, env = self.config, self.env
        b, n, v = c.num_envs, self.num_agents, self.views
        types_b = jax.vmap(lambda p: agent_types(env, p))(bank)  # [B, N]
        vt = self._view_types(types_b, b)
        amask = self._head_mask(bank)  # [B, N', raw]
        key, k_opp, k_learn, k_self = jax.random.split(runner.key, 4)

        # self-play: which agents learn in each env, and which snapshot plays the others
        if c.algo == "selfplay":
            opp_idx = jax.random.randint(k_opp, (b,), 0, runner.pool_count)
            learner = jax.random.randint(k_learn, (b,), 0, n)
            all_self = jax.random.uniform(k_self, (b,)) < hyper.selfplay_prob
            mask = all_self[:, None] | (jnp.arange(n)[None] == learner[:, None])
            opp_params = jax.tree_util.tree_map(lambda p: p[opp_idx], runner.pool)
        else:
            mask = jnp.ones((b, v), bool)

        def env_step(carry, _):
            env_state, obs, obs_stats, ret_stats, ret_acc, key = carry
            key, k_act, k_opp_act, k_step = jax.random.split(key, 4)
            if c.normalize_obs:
                obs_stats = nets.stats_update(obs_stats, obs.reshape(-1, self.obs_dim))
            obs_n = nets.normalize(obs_stats, obs)
            x_a, x_c = self._inputs(obs_n, types_b)
            out = self._actor(runner.params["actor"], x_a, vt)
            raw = self.head.sample(out, k_act)
            if c.algo == "selfplay":
                opp_out = jax.vmap(lambda p, x: self.actor.apply(p, x))(opp_params, x_a)
                opp_raw = self.head.sample(opp_out, k_opp_act)
                raw = jnp.where(mask[..., None], raw, opp_raw)
            logp = self.head.log_prob(out, raw, amask)
            value = self._value(runner.params["critic"], x_c, vt)
            keys = jax.random.split(k_step, b)
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
            fin_a, fin_c = self._inputs(nets.normalize(obs_stats, info["final_obs"]), types_b)
            v_final = self._value(runner.params["critic"], fin_c, vt)
            reward_t = reward / scale + hyper.gamma * v_final * trunc[:, None]
            ended = info["returned_episode"]
            stats = {
                k: val.mean()
                for k, val in info.items()
                if k not in _SKIP_INFO and k != "final_obs" and val.ndim == 1
            }
            stats["episode_return_sum"] = jnp.sum(
                jnp.where(ended, info["returned_episode_returns"].mean(axis=1), 0.0)
            )
            stats["episodes"] = jnp.sum(ended.astype(jnp.float32))
            traj = (x_a, x_c, raw, logp, value, reward_t, done, stats)
            return (env_state, obs2, obs_stats, ret_stats, ret_acc, key), traj

        carry = (
            runner.env_state,
            runner.obs,
            runner.obs_stats,
            runner.ret_stats,
            runner.ret_acc,
            key,
        )
        carry, traj = jax.lax.scan(env_step, carry, None, c.rollout_len)
        env_state, obs, obs_stats, ret_stats, ret_acc, key = carry
        x_a, x_c, raw, logp, value, reward, done, step_stats = traj

        # GAE
        _, last_c = self._inputs(nets.normalize(obs_stats, obs), types_b)
        last_value = self._value(runner.params["critic"], last_c, vt)

        def gae_step(carry, t):
            gae, next_value = carry
            r, val, d = t
            nonterminal = 1.0 - d.astype(jnp.float32)[:, None]
            delta = r + hyper.gamma * next_value * nonterminal - val
            gae = delta + hyper.gamma * hyper.gae_lambda * nonterminal * gae
            return (gae, val), gae

        _, adv = jax.lax.scan(
            gae_step, (jnp.zeros_like(last_value), last_value), (reward, value, done), reverse=True
        )
        targets = adv + value

        # PPO epochs over shuffled minibatches of env steps (the agent axis stays whole)
        def flat(x):
            return x.reshape(c.rollout_len * b, *x.shape[2:])

        masks = (jnp.broadcast_to(mask, value.shape), jnp.broadcast_to(amask, raw.shape))
        batch = jax.tree_util.tree_map(flat, (x_a, x_c, raw, logp, value, adv, targets, *masks))
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
            perm = jax.random.permutation(k, size)[: mb * c.num_minibatches]
            shuffled = jax.tree_util.tree_map(
                lambda x: x[perm].reshape(c.num_minibatches, mb, *x.shape[1:]), batch
            )
            t_sh = types_flat[perm].reshape(c.num_minibatches, mb, -1)

            def minibatch(carry, inp):
                params, opt_state = carry
                mbatch, t = inp
                grads, aux = jax.grad(loss_fn, has_aux=True)(params, mbatch, t)
                aux["grad_norm_actor"] = optax.tree.norm(grads["actor"])
                aux["grad_norm_critic"] = optax.tree.norm(grads["critic"])
                updates, opt_state = optimizer.update(grads, opt_state, params)
                return (optax.apply_updates(params, updates), opt_state), aux

            return jax.lax.scan(minibatch, (params, opt_state), (shuffled, t_sh))

        key, k_ep = jax.random.split(key)
        (params, opt_state), losses = jax.lax.scan(
            epoch, (runner.params, runner.opt_state), jax.random.split(k_ep, c.update_epochs)
        )

        # self-play: push a snapshot of the actor into the pool every snapshot_every updates
        pool, pool_count = runner.pool, runner.pool_count
        update = runner.update + 1
        if c.algo == "selfplay":
            slot = (update // c.snapshot_every) % c.pool_size
            push = (update % c.snapshot_every) == 0
            pool = jax.tree_util.tree_map(
                lambda pl, p: pl.at[slot].set(jnp.where(push, p, pl[slot])), pool, params["actor"]
            )
            pool_count = jnp.where(push, jnp.minimum(pool_count + 1, c.pool_size), pool_count)

        metrics = {k: val.mean() for k, val in losses.items()}
        # how much of the return variance the critic explains, on this update's rollout
        m_all = jnp.broadcast_to(mask, value.shape).astype(jnp.float32)
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
        )
        return new, metrics

    # ------------------------------------------------------------------ evaluation
    def policy(self, runner: Runner, obs, types, key, deterministic: bool = True, params=None):
        """Env actions [M, N, act_dim] for raw observations [M, N, D] (one seed's runner)."""
        obs_n = nets.normalize(runner.obs_stats, obs)
        x_a, _ = self._inputs(obs_n, types)
        out = self._actor(runner.params["actor"], x_a, self._view_types(types, obs.shape[0]))
        raw = self.head.mode(out) if deterministic else self.head.sample(out, key)
        return self._to_env(raw, obs, params, key)

    def evaluate(self, runner: Runner, eval_bank, key):
        """Mean agent return of the deterministic policy over one episode per eval scenario.

        Scenario ``i`` plays ``rollout(env, policy, split(key, M)[i], params_i)``, the episodes
        that ``evaluate.episode_kpis`` gives every baseline and ``oracle.perfect_foresight``
        solves for the same key, so reference lines on the eval bank are comparable."""
        m = jax.tree_util.tree_leaves(eval_bank)[0].shape[0]

        def episode(k, params):
            types = agent_types(self.env, params)[None]
            batched = jax.tree_util.tree_map(lambda x: x[None], params)

            def policy(kk, obs, env, p):
                return self.policy(runner, obs[None], types, kk, True, batched)[0]

            rewards, _ = rollout(self.env, policy, k, params)
            return jnp.mean(jnp.sum(rewards, axis=0))

        return jnp.mean(jax.vmap(episode)(jax.random.split(key, m), eval_bank))

    # ------------------------------------------------------------------ the scan
    def _run(self, runners: Runner, bank, eval_bank, hyper: Hyper, num_updates: int):
        """``num_updates`` updates of every seed (leading axis S of ``runners``) as one scan."""
        TRACE_COUNT[type(self).__name__] += 1
        c = self.config

        def body(runners, _):
            runners, metrics = jax.vmap(self._update, in_axes=(0, None, None))(runners, bank, hyper)
            if c.eval_every and eval_bank is not None:
                due = (runners.update[0] % c.eval_every) == 0
                metrics["eval_return"] = jax.lax.cond(
                    due,
                    lambda r: jax.vmap(self.evaluate, in_axes=(0, None, None))(
                        r, eval_bank, jax.random.PRNGKey(0)
                    ),
                    lambda r: jnp.full((r.update.shape[0],), jnp.nan),
                    runners,
                )
            jax.debug.callback(_report, runners.update, metrics)
            return runners, metrics

        return jax.lax.scan(body, runners, None, num_updates)


# progress leaves the device only through this callback; the driver sets the sink
_SINK: list = []


def _report(update, metrics):
    for sink in _SINK:
        sink(update, metrics)


def make_train(config: TrainConfig, env, params=None, eval_params=None):
    """``train(key) -> (runner, metrics)`` for one seed: init plus all updates in one scan.

    ``params``: a scenario bank with a leading axis of ``config.num_envs`` (default: sampled from
    the env with key 0), or one params pytree broadcast to every environment. ``eval_params``: a
    held-out bank for the periodic evaluation (default: sampled with key 1). ``jax.vmap(train)``
    runs several seeds; ``train.init`` and ``train.run`` split the scan for chunked drivers.
    """
    return wrap(build(config.static(), env), config, env, params, eval_params)


def wrap(core, config: TrainConfig, env, params=None, eval_params=None):
    """``train(key)`` for one seed around a compiled core (shared by the PPO and SAC trainers)."""
    bank = scenario_bank(env, params, config.num_envs, 0)
    eval_bank = scenario_bank(env, eval_params, config.eval_envs, 1)
    hyper = config.hyper()

    def init(key):
        return jax.tree_util.tree_map(lambda x: x[0], core.init(key[None], bank, hyper))

    def run(runner, num_updates: int):
        batched = jax.tree_util.tree_map(lambda x: x[None], runner)
        out, metrics = core.run(batched, bank, eval_bank, hyper, num_updates)
        return (
            jax.tree_util.tree_map(lambda x: x[0], out),
            jax.tree_util.tree_map(lambda x: x[:, 0], metrics),
        )

    def train(key):
        return run(init(key), config.num_updates)

    train.init, train.run, train.core = init, run, core
    train.bank, train.eval_bank, train.hyper = bank, eval_bank, hyper
    return train


def scenario_bank(env, params, num: int, seed: int):
    """A bank of ``num`` scenarios: sampled (params None), broadcast (one pytree) or as given."""
    if params is None:
        return env.sample_params(jax.random.PRNGKey(seed), num)
    lead = jax.tree_util.tree_leaves(params)[0]
    ref = jax.tree_util.tree_leaves(env.default_params)[0]
    if jnp.ndim(lead) == jnp.ndim(ref):
        return jax.tree_util.tree_map(lambda x: jnp.broadcast_to(x, (num, *jnp.shape(x))), params)
    if jnp.shape(lead)[0] != num:
        raise ValueError(
            f"params: bank of {jnp.shape(lead)[0]} scenarios; allowed: {num} (num_envs/eval_envs)"
        )
    return params
