"""A third env, written here, registered and trained end to end with no trainer edit: the env
contract is all the trainers, the evaluation and the job need."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import struct

import jaxlem
from jaxlem.app import cli
from jaxlem.app.job import run_job
from jaxlem.envs.base import ActionLayout, Column, Environment, EvalSpec
from jaxlem.envs.registry import unregister
from jaxlem.envs.spaces import Box
from jaxlem.rollout import rollout
from jaxlem.testing import check_action_mask, check_env
from jaxlem.train import TrainConfig, make_train
from jaxlem.train.driver import read_csv


@struct.dataclass
class PostedParams:
    target: jax.Array  # [N] price each agent should post, in [-1, 1]
    kind: jax.Array  # [N] int32 agent type (0 buyer, 1 seller)


@struct.dataclass
class PostedState:
    t: jax.Array
    noise: jax.Array  # [N]


def _posted_kpis(env, policy, key, params):
    rewards, infos = rollout(env, policy, key, params)
    return {
        "mean_agent_return": jnp.mean(jnp.sum(rewards, axis=0)),
        "mean_error": jnp.mean(infos["error"]),
    }


def _zero(key, obs, env, params):
    return jnp.zeros((env.num_agents, 2))


def _oracle(key, obs, env, params):
    return jnp.stack([obs[:, 0], jnp.zeros(env.num_agents)], axis=-1)


def _optimum(env, params, key):
    return {"mean_agent_return": jnp.zeros(())}


SPEC = EvalSpec(
    episode_kpis=_posted_kpis,
    baselines={"zero": _zero, "oracle": _oracle},
    table=("mean_agent_return", "gain_share", "mean_error"),
    traces=("error",),
    optimum=_optimum,
    null_policy="zero",
)


@dataclass(frozen=True)
class PostedPriceEnv(Environment[PostedState, PostedParams]):
    """Each agent posts a price; its reward is minus the squared distance to its target (seen
    with noise). Two agent types, a 2-column action whose second column only matters to
    sellers, truncation at the end of the episode."""

    num_agents: int = 3
    num_steps: int = 4
    num_agent_types = 2
    reference_policy = "zero"

    @property
    def default_params(self) -> PostedParams:
        return PostedParams(
            target=jnp.linspace(-0.5, 0.5, self.num_agents),
            kind=jnp.arange(self.num_agents, dtype=jnp.int32) % 2,
        )

    def sample_params(self, key, num):
        target = jax.random.uniform(key, (num, self.num_agents), minval=-0.8, maxval=0.8)
        kind = jnp.broadcast_to(jnp.arange(self.num_agents, dtype=jnp.int32) % 2, target.shape)
        return PostedParams(target=target, kind=kind)

    def _obs(self, state, params):
        t = jnp.full((self.num_agents,), state.t / self.num_steps)
        return jnp.stack([params.target + state.noise, t], axis=-1).astype(jnp.float32)

    def reset_env(self, key, params):
        state = PostedState(
            t=jnp.zeros((), jnp.int32), noise=0.05 * jax.random.normal(key, (self.num_agents,))
        )
        return self._obs(state, params), state

    def step_env(self, key, state, action, params):
        a = jnp.clip(jnp.where(jnp.isfinite(action), action, 0.0), -1.0, 1.0)
        error = (a[:, 0] - params.target) ** 2 + 0.1 * params.kind * a[:, 1] ** 2
        state = PostedState(t=state.t + 1, noise=0.05 * jax.random.normal(key, (self.num_agents,)))
        last = state.t >= self.num_steps
        info = {"terminated": jnp.zeros((), bool), "truncated": last, "error": jnp.mean(error)}
        return self._obs(state, params), state, -error, last, info

    def observation_space(self, params=None):
        return Box(-np.inf, np.inf, (self.num_agents, 2))

    def action_space(self, params=None):
        return Box(-1.0, 1.0, (self.num_agents, 2))

    def action_layout(self):
        return ActionLayout(2)

    def agent_types(self, params):
        return params.kind

    def action_mask(self, params=None):
        p = self.default_params if params is None else params
        return jnp.stack([jnp.ones(self.num_agents, bool), p.kind == 1], axis=-1)

    def observation_columns(self):
        return (Column("target", "noisy target"), Column("progress", "t / T"))

    def action_columns(self):
        return (Column("price", "posted price"), Column("effort", "sellers' effort"))

    def evaluation(self):
        return SPEC


@pytest.fixture()
def registered():
    jaxlem.register("posted-v0", PostedPriceEnv)
    yield "posted-v0"
    unregister("posted-v0")


TINY = dict(num_envs=8, rollout_len=4, num_minibatches=2, update_epochs=2, hidden=(16,))


def test_a_third_env_passes_the_conformance_suite(registered):
    check_env(jaxlem.make(registered), episode_kpis=True)


def test_a_third_env_trains_is_compared_and_runs_as_a_job(registered, tmp_path: Path):
    """MAPPO with one network per agent type, residual on the env's reference policy and
    evaluation inside the scan, through the main job: no trainer edit for a new env."""
    cfg = {
        "env": {"id": registered, "kwargs": {}, "params": {}},
        "train": dict(
            algo="mappo",
            residual="auto",
            sharing="type",
            total_timesteps=8 * 4 * 4,
            eval_every=2,
            **TINY,
        ),  # fmt: skip
        "seed": 0,
        "num_seeds": 1,
        "num_chunks": 2,
        "eval_scenarios": 4,
    }
    summary = run_job(cfg, tmp_path, log=lambda s: None)
    table = summary["comparison"]
    assert set(table) == {"trained", "untrained", "zero", "oracle", "optimum"}
    assert table["zero"]["gain_share"] == 0.0
    assert np.isfinite(table["trained"]["mean_error"])
    rows = read_csv(tmp_path / "metrics.csv")
    assert any(np.isfinite(r.get("eval_return", np.nan)) for r in rows)  # in-scan evaluation
    for f in ("metrics.csv", "comparison.csv", "learning_curve.png", "checkpoints/latest.json"):
        assert (tmp_path / f).exists(), f
    segments = json.loads((tmp_path / "segments.json").read_text())
    assert [s["kind"] for s in segments] == ["start"] and segments[0]["last_update"] == 4
    # jaxlem-eval RUN_DIR: the run folder alone rebuilds the env, the trainer and the comparison
    cli.eval_main([str(tmp_path), "--scenarios", "4"])
    again = json.loads((tmp_path / "eval" / "eval.json").read_text())
    assert set(again["comparison"]) == set(summary["comparison"])


@dataclass(frozen=True)
class SilentPostedPriceEnv(PostedPriceEnv):
    """Declares that no action column is ever read (``action_mask_at`` all False), although
    the price column is: the conformance suite must catch it, and PPO must leave the actor
    alone (no log-probability, no entropy, so no actor gradient)."""

    def action_mask_at(self, state, params):
        return jnp.zeros((self.num_agents, 2), bool)


def test_the_state_mask_is_checked_and_reaches_the_learners_loss():
    env = SilentPostedPriceEnv()
    with pytest.raises(AssertionError, match="action_mask_at leaves out changed the reward"):
        check_action_mask(env, env.default_params)
    cfg = TrainConfig(algo="ippo", total_timesteps=64, eval_every=0, **TINY)
    train = make_train(cfg, env)
    init = train.init(jax.random.PRNGKey(0))
    runner, _ = jax.block_until_ready(train.run(init, cfg.num_updates))
    same = jax.tree_util.tree_map(np.array_equal, init.params["actor"], runner.params["actor"])
    assert all(jax.tree_util.tree_leaves(same))
    moved = jax.tree_util.tree_map(np.array_equal, init.params["critic"], runner.params["critic"])
    assert not all(jax.tree_util.tree_leaves(moved))
