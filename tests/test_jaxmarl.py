"""JaxMARL conformance of ``JaxMARLAdapter``: a JaxMARL-style IPPO loop trains lem-v0 through it,
drawing each episode's community from a scenario bank; its spaces pass JaxMARL's
``get_space_dim``; gencos truncation stays truncation; and the XLA-flag import order it documents.

The IPPO loop is written here in JaxMARL's style (not copied): dict obs are batchified to
``[NUM_ACTORS, obs_dim]`` agent-major, every ``info`` leaf is reshaped to ``[NUM_ACTORS]`` after a
LogWrapper that, like JaxMARL's default ``LogWrapper(env)`` (``replace_info=False``), keeps the
env's info and adds per-agent episode returns. The tests that need jaxmarl itself are skipped
when it is not installed (it is not a jaxlem dependency).
"""

from __future__ import annotations

import importlib.util
import math
import os
import subprocess
import sys
from typing import Any, NamedTuple

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from flax import struct
from flax.training.train_state import TrainState

import jaxlem
from jaxlem.envs.adapters import JaxMARLAdapter, JaxMARLState
from jaxlem.envs.spaces import Box

HAS_JAXMARL = importlib.util.find_spec("jaxmarl") is not None
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


# --------------------------------------------------------------------------------- IPPO loop


@struct.dataclass
class _LogState:
    env_state: Any
    episode_returns: jax.Array  # [N]
    episode_lengths: jax.Array  # [N]
    returned_episode_returns: jax.Array  # [N]
    returned_episode_lengths: jax.Array  # [N]


class _JaxMARLStyleLogWrapper:
    """Episode returns per agent, the way JaxMARL's default LogWrapper reports them: the env's
    ``info`` is kept and gains ``returned_episode_returns``, ``returned_episode_lengths`` and
    ``returned_episode``, each ``[num_agents]``."""

    def __init__(self, env):
        self._env = env

    def __getattr__(self, name):
        return getattr(self._env, name)

    def reset(self, key):
        obs, env_state = self._env.reset(key)
        zero = jnp.zeros((self._env.num_agents,))
        return obs, _LogState(env_state, zero, zero, zero, zero)

    def step(self, key, state, actions):
        obs, env_state, reward, done, info = self._env.step(key, state.env_state, actions)
        end = done["__all__"]
        ret = state.episode_returns + jnp.stack([reward[a] for a in self._env.agents])
        length = state.episode_lengths + 1
        state = _LogState(
            env_state=env_state,
            episode_returns=jnp.where(end, 0.0, ret),
            episode_lengths=jnp.where(end, 0.0, length),
            returned_episode_returns=jnp.where(end, ret, state.returned_episode_returns),
            returned_episode_lengths=jnp.where(end, length, state.returned_episode_lengths),
        )
        info["returned_episode_returns"] = state.returned_episode_returns
        info["returned_episode_lengths"] = state.returned_episode_lengths
        info["returned_episode"] = jnp.full((self._env.num_agents,), end)
        return obs, state, reward, done, info


class _ActorCritic(nn.Module):
    act_dim: int
    hidden: int = 32

    @nn.compact
    def __call__(self, x):
        init = nn.initializers.orthogonal(math.sqrt(2.0))
        h = nn.tanh(nn.Dense(self.hidden, kernel_init=init)(x))
        h = nn.tanh(nn.Dense(self.hidden, kernel_init=init)(h))
        mean = nn.Dense(self.act_dim, kernel_init=nn.initializers.orthogonal(0.01))(h)
        log_std = self.param("log_std", nn.initializers.constant(-0.5), (self.act_dim,))
        v = nn.tanh(nn.Dense(self.hidden, kernel_init=init)(x))
        v = nn.Dense(1, kernel_init=nn.initializers.orthogonal(1.0))(v)
        return mean, jnp.broadcast_to(log_std, mean.shape), v[..., 0]


def _gaussian_logp(mean, log_std, action, mask):
    """Diagonal Gaussian log-density over the available columns (``mask`` 1.0/0.0)."""
    z = (action - mean) * jnp.exp(-log_std)
    per_col = -0.5 * z**2 - log_std - 0.5 * math.log(2.0 * math.pi)
    return jnp.sum(per_col * mask, axis=-1)


def _gaussian_entropy(log_std, mask):
    return jnp.sum((log_std + 0.5 * (1.0 + math.log(2.0 * math.pi))) * mask, axis=-1)


def _batchify(x: dict, agents: list[str], num_actors: int) -> jax.Array:
    """``{agent: [NUM_ENVS, ...]}`` -> ``[NUM_ACTORS, -1]``, agent-major (JaxMARL's layout)."""
    return jnp.stack([x[a] for a in agents]).reshape((num_actors, -1))


def _unbatchify(x: jax.Array, agents: list[str], num_envs: int) -> dict:
    x = x.reshape((len(agents), num_envs, -1))
    return {a: x[i] for i, a in enumerate(agents)}


class _Transition(NamedTuple):
    done: jax.Array
    action: jax.Array
    value: jax.Array
    reward: jax.Array
    log_prob: jax.Array
    obs: jax.Array
    avail: jax.Array
    info: dict


def make_ippo(adapter: JaxMARLAdapter, cfg: dict):
    """A JaxMARL-style IPPO trainer (parameter sharing over agents): ``train(key)`` is one
    jittable function of nested ``lax.scan``s."""
    env = _JaxMARLStyleLogWrapper(adapter)
    agents, n_env, t_len = env.agents, cfg["NUM_ENVS"], cfg["NUM_STEPS"]
    num_actors = env.num_agents * n_env
    batch = num_actors * t_len
    act_dim = env.action_space(agents[0]).shape[0]
    obs_dim = env.observation_space(agents[0]).shape[0]
    net = _ActorCritic(act_dim)
    tx = optax.chain(optax.clip_by_global_norm(0.5), optax.adam(cfg["LR"], eps=1e-5))

    def train(key):
        key, k_net, k_reset = jax.random.split(key, 3)
        ts = TrainState.create(
            apply_fn=net.apply, params=net.init(k_net, jnp.zeros((obs_dim,))), tx=tx
        )
        obs, env_state = jax.vmap(env.reset)(jax.random.split(k_reset, n_env))

        def update(runner, _):
            def env_step(runner, _):
                ts, env_state, last_obs, key = runner
                obs_b = _batchify(last_obs, agents, num_actors)
                avail = jax.vmap(adapter.get_avail_actions)(env_state.env_state)
                avail = _batchify(avail, agents, num_actors).astype(jnp.float32)
                mean, log_std, value = net.apply(ts.params, obs_b)
                key, k_act, k_step = jax.random.split(key, 3)
                action = mean + jnp.exp(log_std) * jax.random.normal(k_act, mean.shape)
                log_prob = _gaussian_logp(mean, log_std, action, avail)
                env_act = _unbatchify(action, agents, n_env)
                obs, env_state, reward, done, info = jax.vmap(env.step)(
                    jax.random.split(k_step, n_env), env_state, env_act
                )
                info = jax.tree_util.tree_map(lambda x: x.reshape((num_actors,)), info)
                tr = _Transition(
                    _batchify(done, agents, num_actors).squeeze(-1),
                    action,
                    value,
                    _batchify(reward, agents, num_actors).squeeze(-1),
                    log_prob,
                    obs_b,
                    avail,
                    info,
                )
                return (ts, env_state, obs, key), tr

            runner, traj = jax.lax.scan(env_step, runner, None, t_len)
            ts, env_state, last_obs, key = runner
            _, _, last_val = net.apply(ts.params, _batchify(last_obs, agents, num_actors))

            def gae_step(carry, tr):
                gae, next_value = carry
                nonterminal = 1.0 - tr.done.astype(jnp.float32)
                delta = tr.reward + cfg["GAMMA"] * next_value * nonterminal - tr.value
                gae = delta + cfg["GAMMA"] * cfg["GAE_LAMBDA"] * nonterminal * gae
                return (gae, tr.value), gae

            _, adv = jax.lax.scan(
                gae_step, (jnp.zeros_like(last_val), last_val), traj, reverse=True
            )
            targets = adv + traj.value

            def loss_fn(params, tr, adv, targets):
                mean, log_std, value = net.apply(params, tr.obs)
                log_prob = _gaussian_logp(mean, log_std, tr.action, tr.avail)
                v_clip = tr.value + jnp.clip(value - tr.value, -cfg["CLIP"], cfg["CLIP"])
                v_loss = (
                    0.5
                    * jnp.maximum(jnp.square(value - targets), jnp.square(v_clip - targets)).mean()
                )
                ratio = jnp.exp(log_prob - tr.log_prob)
                adv = (adv - adv.mean()) / (adv.std() + 1e-8)
                pi_loss = -jnp.minimum(
                    ratio * adv, jnp.clip(ratio, 1.0 - cfg["CLIP"], 1.0 + cfg["CLIP"]) * adv
                ).mean()
                entropy = _gaussian_entropy(log_std, tr.avail).mean()
                total = pi_loss + cfg["VF_COEF"] * v_loss - cfg["ENT_COEF"] * entropy
                return total, (v_loss, pi_loss, entropy)

            def epoch(carry, _):
                ts, key = carry
                key, k_perm = jax.random.split(key)
                perm = jax.random.permutation(k_perm, batch)
                flat = jax.tree_util.tree_map(
                    lambda x: x.reshape((batch, *x.shape[2:])), (traj, adv, targets)
                )
                mbs = jax.tree_util.tree_map(
                    lambda x: jnp.take(x, perm, axis=0).reshape(
                        (cfg["NUM_MINIBATCHES"], -1, *x.shape[1:])
                    ),
                    flat,
                )

                def minibatch(ts, mb):
                    (loss, aux), grads = jax.value_and_grad(loss_fn, has_aux=True)(ts.params, *mb)
                    return ts.apply_gradients(grads=grads), (loss, *aux)

                ts, losses = jax.lax.scan(minibatch, ts, mbs)
                return (ts, key), losses

            (ts, key), losses = jax.lax.scan(epoch, (ts, key), None, cfg["UPDATE_EPOCHS"])
            return (ts, env_state, last_obs, key), (traj.info, traj.reward, losses)

        runner = (ts, env_state, obs, key)
        runner, (info, reward, losses) = jax.lax.scan(update, runner, None, cfg["NUM_UPDATES"])
        return runner[0].params, info, reward, losses

    return train


IPPO_CONFIG = dict(
    NUM_ENVS=4,
    NUM_STEPS=8,
    NUM_UPDATES=3,
    UPDATE_EPOCHS=2,
    NUM_MINIBATCHES=2,
    LR=3e-4,
    GAMMA=0.99,
    GAE_LAMBDA=0.95,
    CLIP=0.2,
    VF_COEF=0.5,
    ENT_COEF=0.0,
)


@pytest.mark.slow  # a second IPPO compile (about 20 s); the adapter's API: test_wrappers.py
def test_ippo_trains_lem_through_the_adapter_on_a_scenario_bank():
    """JaxMARL-style IPPO, jitted, over lem-v0 (3 agents, 8 steps) drawing episodes from a bank
    of 4 communities; the info layout passes the per-actor reshape without replace_info."""
    env = jaxlem.make("lem-v0", num_agents=3, num_steps=8)
    bank = env.sample_params(jax.random.PRNGKey(0), 4)
    adapter = JaxMARLAdapter(env, bank=bank)
    cfg = IPPO_CONFIG
    params, info, reward, losses = jax.jit(make_ippo(adapter, cfg))(jax.random.PRNGKey(1))
    params, info, reward, losses = jax.device_get((params, info, reward, losses))

    u, t, e, n = cfg["NUM_UPDATES"], cfg["NUM_STEPS"], cfg["NUM_ENVS"], env.num_agents
    assert reward.shape == (u, t, e * n)
    # every info leaf arrived per actor: the env's KPIs, terminated/truncated, scenario, returns
    for k in ("terminated", "truncated", "scenario", "profit", "returned_episode_returns"):
        assert info[k].shape == (u, t, e * n), k
    assert "final_obs" not in info  # [N, D]: only with info="full"

    # info leaves are [NUM_ENVS, N] reshaped: env-major; one scenario per env and step
    scenario = info["scenario"].reshape(u * t, e, n)
    ended = info["returned_episode"].reshape(u * t, e, n)
    assert np.all(scenario == scenario[..., :1]) and np.all(ended == ended[..., :1])
    scenario, ended = scenario[..., 0], ended[..., 0]
    assert np.all((scenario >= 0) & (scenario < 4))
    # episodes came from more than one community of the bank ...
    assert len(np.unique(scenario)) > 1, np.unique(scenario)
    # ... and a community only changes at an episode boundary (8-step episodes)
    changed = scenario[1:] != scenario[:-1]
    assert not np.any(changed & ~ended[:-1])
    np.testing.assert_array_equal(ended, np.tile((np.arange(u * t) % t == t - 1)[:, None], e))
    lengths = info["returned_episode_lengths"].reshape(u * t, e, n)[ended]
    np.testing.assert_array_equal(lengths, t)
    assert not np.any(info["truncated"]) and np.all(info["terminated"] == info["returned_episode"])

    for name, tree in (("params", params), ("info", info), ("reward", reward), ("loss", losses)):
        for leaf in jax.tree_util.tree_leaves(tree):
            leaf = np.asarray(leaf)
            if np.issubdtype(leaf.dtype, np.floating):
                assert np.all(np.isfinite(leaf)), name


# --------------------------------------------------------------------------------- spaces


def _get_space_dim_like(space, box_types: tuple[type, ...]) -> int:
    """JaxMARL's ``get_space_dim`` for boxes: an isinstance check, then ``prod(shape)``."""
    if isinstance(space, box_types):
        return int(np.prod(space.shape))
    raise NotImplementedError(f"not a Box: {type(space)}")


def _check_box_attributes(space, shape) -> None:
    assert tuple(space.shape) == shape
    assert np.dtype(space.dtype) == np.float32
    assert np.all(np.asarray(space.low) <= np.asarray(space.high))
    for attr in ("low", "high", "shape", "dtype", "sample", "contains"):
        assert hasattr(space, attr), attr


def test_spaces_without_jaxmarl_are_jaxlem_boxes(monkeypatch):
    for name in [m for m in sys.modules if m.startswith("jaxmarl.")]:
        monkeypatch.delitem(sys.modules, name)
    monkeypatch.setitem(sys.modules, "jaxmarl", None)  # jaxmarl not importable
    env = jaxlem.make("lem-v0", num_agents=3, num_steps=8)
    adapter = JaxMARLAdapter(env)
    for a in adapter.agents:
        obs_space, act_space = adapter.observation_space(a), adapter.action_space(a)
        assert type(obs_space) is Box and type(act_space) is Box
        assert _get_space_dim_like(obs_space, (Box,)) == env.obs_dim
        assert _get_space_dim_like(act_space, (Box,)) == env.act_dim
        _check_box_attributes(obs_space, (env.obs_dim,))
        _check_box_attributes(act_space, (env.act_dim,))
        sample = act_space.sample(jax.random.PRNGKey(0))
        assert sample.shape == (env.act_dim,) and bool(act_space.contains(sample))
    with pytest.raises(ImportError, match="pip install jaxmarl"):
        JaxMARLAdapter(env, spaces="jaxmarl")
    with pytest.raises(ValueError, match="spaces"):
        JaxMARLAdapter(env, spaces="gym")
    assert type(JaxMARLAdapter(env, spaces="jaxlem").action_space("agent_0")) is Box


@pytest.mark.skipif(not HAS_JAXMARL, reason="jaxmarl is not installed")
def test_real_jaxmarl_spaces_and_log_wrapper():
    """With jaxmarl installed: its get_space_dim accepts the spaces and its default LogWrapper
    (replace_info=False) plus the IPPO per-actor info reshape run through the adapter."""
    from jaxmarl.environments.spaces import Box as JaxMARLBox
    from jaxmarl.wrappers.baselines import LogWrapper, get_space_dim

    env = jaxlem.make("lem-v0", num_agents=3, num_steps=8)
    adapter = JaxMARLAdapter(env, bank=env.sample_params(jax.random.PRNGKey(0), 4))
    for a in adapter.agents:
        assert isinstance(adapter.action_space(a), JaxMARLBox)
        assert get_space_dim(adapter.observation_space(a)) == env.obs_dim
        assert get_space_dim(adapter.action_space(a)) == env.act_dim
    wrapped = LogWrapper(adapter)
    n_env, num_actors = 2, 2 * env.num_agents

    def run(key):
        obs, state = jax.vmap(wrapped.reset)(jax.random.split(key, n_env))

        def body(state, k):
            actions = {a: jnp.zeros((n_env, env.act_dim)) for a in adapter.agents}
            _, state, _, _, info = jax.vmap(wrapped.step)(
                jax.random.split(k, n_env), state, actions
            )
            return state, jax.tree_util.tree_map(lambda x: x.reshape((num_actors,)), info)

        return jax.lax.scan(body, state, jax.random.split(key, 9))

    _, info = jax.jit(run)(jax.random.PRNGKey(2))
    assert info["returned_episode"].shape == (9, num_actors)
    assert bool(np.all(np.asarray(info["returned_episode"])[7]))


# --------------------------------------------------------------------------------- truncation


@pytest.mark.parametrize("info_mode", ["agent", "full"])
def test_gencos_truncation_is_not_termination(info_mode):
    env = jaxlem.make("gencos-v0", num_steps=3)
    adapter = JaxMARLAdapter(env, info=info_mode)
    obs, state = adapter.reset(jax.random.PRNGKey(0))
    for t in range(env.num_steps):
        actions = {a: jnp.zeros(adapter.action_space(a).shape) for a in adapter.agents}
        obs, state, rewards, dones, info = adapter.step(jax.random.PRNGKey(t), state, actions)
        last = t == env.num_steps - 1
        assert bool(dones["__all__"]) == last
        trunc, term = np.asarray(info["truncated"]), np.asarray(info["terminated"])
        if info_mode == "agent":
            assert trunc.shape == term.shape == (env.num_agents,)
        assert np.all(trunc == last) and not np.any(term)
    assert isinstance(state, JaxMARLState)


# --------------------------------------------------------------------------------- XLA flags


def _run(code: str) -> subprocess.CompletedProcess:
    env_vars = {**os.environ, "PYTHONPATH": ROOT + os.pathsep + os.environ.get("PYTHONPATH", "")}
    return subprocess.run(
        [sys.executable, "-c", code], env=env_vars, capture_output=True, text=True, timeout=120
    )


_BOGUS = " --xla_jaxlem_test_no_such_flag=1"


def test_xla_flags_are_read_at_the_first_computation_not_at_import():
    """What the adapter documents: XLA parses XLA_FLAGS once, when JAX starts its backend. A
    flag added after ``import jax`` but before any computation is read (here: an unknown flag
    aborts), so ``import jax; import jaxlem`` keeps jaxlem's scheduler flag; one added after a
    computation (importing jaxmarl runs some) is silently ignored."""
    read = _run(
        "import os, jax, jax.numpy as jnp\n"
        "import jaxlem\n"
        "assert 'xla_cpu_enable_concurrency_optimized_scheduler=false' in os.environ['XLA_FLAGS']\n"
        f"os.environ['XLA_FLAGS'] += {_BOGUS!r}\n"
        "jnp.ones(3).block_until_ready()\n"
    )
    assert read.returncode != 0 and "xla_jaxlem_test_no_such_flag" in read.stderr, read.stderr
    ignored = _run(
        "import os, jax, jax.numpy as jnp\n"
        "jnp.ones(3).block_until_ready()\n"
        f"os.environ['XLA_FLAGS'] = os.environ.get('XLA_FLAGS', '') + {_BOGUS!r}\n"
        "import jaxlem\n"
        "jax.jit(lambda x: 2 * x + 1)(jnp.ones(3)).block_until_ready()\n"
    )
    assert ignored.returncode == 0, ignored.stderr
