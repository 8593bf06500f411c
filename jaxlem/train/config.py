"""Trainer configuration: one frozen dataclass, validated in Python before anything compiles.

Fields split in two: *static* ones change the compiled program (shapes, switches, the number of
updates) and key the compile cache; *numeric* ones (learning rate, discount, clipping, loss
weights) travel as traced arrays (``Hyper``), so a sweep over them reuses one compiled trainer.
"""

from __future__ import annotations

import dataclasses
import difflib
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Self

import jax.numpy as jnp
from flax import struct

from jaxlem import checks

ALGOS = ("ippo", "mappo", "selfplay", "ctce", "sac", "appo", "masac")
SAC_FAMILY = ("sac", "masac")
SHARING = ("shared", "type", "independent")
DISTS = ("beta", "tanh_normal")
ACTIVATIONS = ("tanh", "relu")
REWARD_NORMS = ("batch", "agent")
# the seed framework's training modes, as named in the docs
MODES = {
    "ctce": "CTCE",
    "mappo": "CTDE",
    "ippo": "DTDE",
    "selfplay": "DTDE",
    "sac": "DTDE",
    "appo": "DTDE",
    "masac": "CTDE",
}


@struct.dataclass
class Hyper:
    """Numeric hyperparameters, traced (a sweep over them does not recompile)."""

    lr: jnp.ndarray
    gamma: jnp.ndarray
    gae_lambda: jnp.ndarray
    clip_eps: jnp.ndarray
    ent_coef: jnp.ndarray
    vf_coef: jnp.ndarray
    max_grad_norm: jnp.ndarray
    selfplay_prob: jnp.ndarray
    tau: jnp.ndarray
    init_alpha: jnp.ndarray
    vtrace_rho_bar: jnp.ndarray
    vtrace_c_bar: jnp.ndarray

    if TYPE_CHECKING:  # added by ``struct.dataclass``; declared for type checkers

        def replace(self, **updates: Any) -> Self: ...


NUMERIC = tuple(f.name for f in dataclasses.fields(Hyper))


@dataclass(frozen=True)
class TrainConfig:
    """Everything a training run needs besides the env. Defaults: IPPO on a short budget."""

    algo: str = "ippo"
    sharing: str = "shared"  # shared (agent id/type features) | type | independent
    total_timesteps: int = 100_000  # env steps (each moves all N agents)
    num_envs: int = 64  # scenarios stepped in parallel (the batch axis)
    rollout_len: int = 24  # env steps per environment per update
    update_epochs: int = 4
    num_minibatches: int = 4
    hidden: tuple[int, ...] = (64, 64)
    activation: str = "tanh"
    dist: str = "beta"  # continuous action distribution (PPO); SAC uses tanh_normal
    normalize_obs: bool = True
    normalize_reward: bool = True
    # residual policy learning: the actor adjusts a scripted baseline's action (one of the
    # env's evaluation().policies);
    # "auto" = the env's reference_policy, "" = the actor acts alone
    residual: str = ""
    # a residual actor's categorical heads get a first class "keep the baseline's choice" with
    # this logit added (4: kept with probability 0.93 among 5 classes before training)
    residual_keep_logit: float = 4.0
    # how far a residual actor may move a continuous column: the share of the way from the
    # baseline's action to the box edge at |d| = 1 (1: the whole box; 0.2: a bounded correction,
    # so exploration noise stays near the baseline where the box is wide)
    residual_scale: float = 1.0
    # ... per agent type (env.agent_type_names order), overriding residual_scale: kinds whose
    # gain lies far from their rule (a utility's markup) and kinds whose gain lies near it (a
    # prosumer's battery timing) get their own bound. Empty: residual_scale for every type
    residual_scale_by_type: tuple[float, ...] = ()
    # PPO with sharing=type: each type's actor steps at lr times its factor (agent_type_names
    # order; critics at lr). Two timescales: a leader (a regulator whose rates the others
    # answer) learning slower than its followers sees answers, not a moving target; and a type
    # whose gradient is mostly noise (one agent, few decisions) moves less with Adam, whose
    # step size does not shrink with the gradient. Empty: 1 for every type
    actor_lr_scale_by_type: tuple[float, ...] = ()
    action_mask: bool = True  # leave the columns env.action_mask marks irrelevant out of the loss
    reward_norm: str = "batch"  # "batch": one return scale for all; "agent": one per agent slot
    anneal_lr: bool = True
    # numeric (traced)
    lr: float = 3e-4
    gamma: float = 0.99
    gae_lambda: float = 0.95
    clip_eps: float = 0.2
    ent_coef: float = 0.0
    vf_coef: float = 0.5
    max_grad_norm: float = 0.5
    # evaluation inside the scan: deterministic policy on a held-out bank every eval_every updates
    eval_every: int = 10
    eval_envs: int = 16
    # self-play: pool of past snapshots held in the scan state
    pool_size: int = 8
    snapshot_every: int = 5
    selfplay_prob: float = 0.5  # probability that an env's opponents are the current policy
    # APPO: the behaviour policy acting in the rollouts is the learner's of this many updates
    # before (what asynchronous actors produce), and V-trace corrects returns and advantages
    # for the lag. algo="appo" is IPPO so corrected (lag at least 1); with ippo, mappo or ctce
    # a lag > 0 makes their APPO variant (DTDE, CTDE, CTCE)
    off_policy_lag: int = 0
    vtrace_rho_bar: float = 1.0  # V-trace truncation of the importance ratio (rho)
    vtrace_c_bar: float = 1.0  # ... and of the traces (c)
    # centralised (CTCE): one joint policy over all agents, allowed while its joint networks'
    # parameters, gradients and Adam moments take at most this share of the device's memory
    ctce_memory_fraction: float = 0.5
    # SAC
    buffer_size: int = 50_000  # replay rows, one per env step of one environment (all agents)
    batch_size: int = 256
    learning_starts: int = 1_000  # env steps before the first gradient step
    gradient_steps: int = 1  # per env step of the whole batch
    tau: float = 0.005
    init_alpha: float = 0.1

    def __post_init__(self) -> None:
        checks.check_choice("algo", self.algo, ALGOS)
        checks.check_choice("sharing", self.sharing, SHARING)
        checks.check_choice("dist", self.dist, DISTS)
        checks.check_choice("activation", self.activation, ACTIVATIONS)
        checks.check_choice("reward_norm", self.reward_norm, REWARD_NORMS)
        for f in (
            "total_timesteps",
            "num_envs",
            "rollout_len",
            "update_epochs",
            "num_minibatches",
            "eval_envs",
            "pool_size",
            "snapshot_every",
            "buffer_size",
            "batch_size",
            "gradient_steps",
        ):
            checks.check_int(f, getattr(self, f), 1)
        checks.check_int("eval_every", self.eval_every, 0)
        checks.check_int("learning_starts", self.learning_starts, 0)
        checks.check_int("off_policy_lag", self.off_policy_lag, 0)
        checks.check_range("vtrace_rho_bar", self.vtrace_rho_bar, 0.0, 100.0, lo_open=True)
        checks.check_range("vtrace_c_bar", self.vtrace_c_bar, 0.0, 100.0, lo_open=True)
        if self.off_policy_lag and self.algo in ("selfplay", *SAC_FAMILY):
            raise ValueError(
                f"off_policy_lag: got {self.off_policy_lag} with algo={self.algo!r}; allowed: 0 "
                "(a behaviour lag with V-trace is for appo, ippo, mappo and ctce)"
            )
        if not self.hidden or any(int(h) < 1 for h in self.hidden):
            raise ValueError(f"hidden: got {self.hidden}; allowed: one or more sizes >= 1")
        checks.check_range("lr", self.lr, 0.0, 1.0, lo_open=True)
        checks.check_range("gamma", self.gamma, 0.0, 1.0)
        checks.check_range("gae_lambda", self.gae_lambda, 0.0, 1.0)
        checks.check_range("clip_eps", self.clip_eps, 0.0, 10.0, lo_open=True)
        checks.check_range("ent_coef", self.ent_coef, 0.0, 10.0)
        checks.check_range("vf_coef", self.vf_coef, 0.0, 100.0)
        checks.check_range("max_grad_norm", self.max_grad_norm, 0.0, 1e6, lo_open=True)
        checks.check_range("selfplay_prob", self.selfplay_prob, 0.0, 1.0)
        checks.check_range("tau", self.tau, 0.0, 1.0, lo_open=True)
        checks.check_range("init_alpha", self.init_alpha, 0.0, 100.0, lo_open=True)
        checks.check_range("residual_keep_logit", self.residual_keep_logit, -20.0, 20.0)
        checks.check_range("residual_scale", self.residual_scale, 0.0, 1.0, lo_open=True)
        checks.check_range(
            "ctce_memory_fraction", self.ctce_memory_fraction, 0.0, 1.0, lo_open=True
        )
        for i, v in enumerate(self.residual_scale_by_type):
            checks.check_range(f"residual_scale_by_type[{i}]", v, 0.0, 1.0, lo_open=True)
        for i, v in enumerate(self.actor_lr_scale_by_type):
            checks.check_range(f"actor_lr_scale_by_type[{i}]", v, 0.0, 1.0)
        if self.actor_lr_scale_by_type and (self.sharing != "type" or self.algo == "ctce"):
            raise ValueError(
                f"actor_lr_scale_by_type: set with sharing={self.sharing!r}, algo="
                f"{self.algo!r}; allowed: only with sharing='type' and a per-agent algo (one "
                "actor per type to scale)"
            )
        if self.actor_lr_scale_by_type and self.is_sac:
            raise ValueError(
                f"actor_lr_scale_by_type: set with algo={self.algo!r}; allowed: the PPO family only"
            )
        batch = self.num_envs * self.rollout_len
        if not self.is_sac and (self.num_minibatches > batch or batch % self.num_minibatches):
            raise ValueError(
                f"num_minibatches: got {self.num_minibatches} for a batch of num_envs * "
                f"rollout_len = {batch}; allowed: a divisor of {batch} (no sample left out)"
            )
        if self.is_sac and self.batch_size > self.buffer_size:
            raise ValueError(
                f"batch_size: got {self.batch_size}, larger than the replay buffer "
                f"(buffer_size = {self.buffer_size} env steps); allowed range "
                f"[1, {self.buffer_size}]"
            )
        if self.is_sac and self.residual:
            raise ValueError(
                f"residual: got {self.residual!r} with algo={self.algo!r}; allowed: '' (residual "
                "actors are built into the PPO trainers)"
            )
        if self.algo == "selfplay" and self.sharing != "shared":
            raise ValueError(
                f"sharing: got {self.sharing!r} with algo='selfplay'; allowed: 'shared' "
                "(self-play plays one policy against its own snapshots)"
            )
        if self.algo == "ctce" and self.sharing != "shared":
            raise ValueError(
                f"sharing: got {self.sharing!r} with algo='ctce'; allowed: 'shared' "
                "(CTCE has one joint policy)"
            )

    @property
    def is_sac(self) -> bool:
        """SAC (decentralised critics) or MASAC (centralised critics): replay, one env step
        per update."""
        return self.algo in SAC_FAMILY

    @property
    def centralised_critic(self) -> bool:
        """Whether the critic sees the world state (CTDE: mappo, masac)."""
        return self.algo in ("mappo", "masac")

    @property
    def behaviour_lag(self) -> int:
        """Updates by which the rollouts' policy lags the learner (0: on-policy PPO)."""
        return max(self.off_policy_lag, 1) if self.algo == "appo" else self.off_policy_lag

    @property
    def num_updates(self) -> int:
        per_update = self.num_envs * (1 if self.is_sac else self.rollout_len)
        return max(1, self.total_timesteps // per_update)

    @property
    def env_steps_per_update(self) -> int:
        return self.num_envs * (1 if self.is_sac else self.rollout_len)

    def hyper(self) -> Hyper:
        return Hyper(**{k: jnp.asarray(getattr(self, k), jnp.float32) for k in NUMERIC})

    def static(self) -> TrainConfig:
        """The same config with the numeric fields at their defaults: the compile-cache key."""
        base = TrainConfig()
        return dataclasses.replace(self, **{k: getattr(base, k) for k in NUMERIC})

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> TrainConfig:
        """Build from a plain mapping (Hydra): unknown fields are named with the closest known
        one, and each value is converted to its field's type or named (``train.lr``)."""
        fields = {f.name: f for f in dataclasses.fields(cls)}
        for k in values:
            if k not in fields:
                close = difflib.get_close_matches(k, list(fields), n=1)
                hint = f" (did you mean {close[0]!r}?)" if close else ""
                raise ValueError(
                    f"train.{k}: unknown field{hint}; allowed: one of {sorted(fields)}"
                )
        out: dict[str, Any] = {}
        for k, v in values.items():
            kind = str(fields[k].type)
            try:
                if k == "hidden":
                    if isinstance(v, str | bytes) or not isinstance(v, Sequence):
                        raise TypeError(v)
                    out[k] = tuple(_as_int(h) for h in v)
                elif k in ("residual_scale_by_type", "actor_lr_scale_by_type"):
                    if isinstance(v, str | bytes) or not isinstance(v, Sequence):
                        raise TypeError(v)
                    if any(isinstance(x, bool) for x in v):
                        raise TypeError(v)
                    out[k] = tuple(float(x) for x in v)
                elif kind == "bool":
                    if not isinstance(v, bool):
                        raise TypeError(v)
                    out[k] = v
                elif kind == "int":
                    out[k] = _as_int(v)
                elif kind == "float":
                    if isinstance(v, bool) or not isinstance(v, int | float | str):
                        raise TypeError(v)
                    out[k] = float(v)
                else:
                    if not isinstance(v, str):
                        raise TypeError(v)
                    out[k] = v
            except (TypeError, ValueError):
                raise ValueError(
                    f"train.{k}: got {v!r}; allowed: a value of type {kind}"
                    + (" (a list of ints)" if k == "hidden" else "")
                    + (" (a list of floats)" if k.endswith("_by_type") else "")
                ) from None
        return cls(**out)

    def residual_policy(self, env: Any) -> str:
        """The baseline a residual actor adjusts for ``env`` ("" = none), validated."""
        name = env.reference_policy if self.residual == "auto" else self.residual
        allowed = sorted(env.evaluation().policies)
        if name and name not in allowed:
            raise ValueError(f"residual: got {name!r}; allowed: '', 'auto' or one of {allowed}")
        return name

    def check_env(self, env: Any) -> None:
        """Checks that need the env (agent counts, action layout), still before compiling."""
        self.residual_policy(env)
        types = env.num_agent_types
        if self.residual_scale_by_type and len(self.residual_scale_by_type) != types:
            raise ValueError(
                f"residual_scale_by_type: got {len(self.residual_scale_by_type)} values; "
                f"allowed: one per agent type ({types}: {', '.join(env.agent_type_names)})"
            )
        if self.actor_lr_scale_by_type and len(self.actor_lr_scale_by_type) != types:
            raise ValueError(
                f"actor_lr_scale_by_type: got {len(self.actor_lr_scale_by_type)} values; "
                f"allowed: one per agent type ({types}: {', '.join(env.agent_type_names)})"
            )
        categorical = env.action_layout().categorical
        if self.is_sac and categorical:
            raise ValueError(
                f"action_layout: {len(categorical)} categorical column(s) with algo="
                f"{self.algo!r}; "
                "allowed: continuous actions only (e.g. lem-v0 partner_stage=False; use a PPO "
                "algorithm for categorical heads)"
            )


def _as_int(v: Any) -> int:
    """An int from an int, an integral float or a numeric string (never a bool)."""
    if isinstance(v, bool):
        raise TypeError(v)
    f = float(v)
    if not f.is_integer():
        raise ValueError(v)
    return int(f)
