"""Actor and critic MLPs (flax linen), action distributions (distrax; Beta with the loop-free
sampler of ``distributions``) and parameter sharing.

Inputs are per-agent rows ``[M, N, D]``. Parameter sharing decides how one network is applied
across the agent axis: ``shared`` (one set of weights, agent id/type features in the input),
``type`` (one set per agent type, selected by the type in params) or ``independent`` (one set per
agent, vmapped over the agent axis).
"""

from __future__ import annotations

import functools
from collections.abc import Sequence
from dataclasses import dataclass

import distrax
import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import optax

from jaxlem.train.distributions import FastBeta

_ACT = {"tanh": nn.tanh, "relu": nn.relu}
_EPS = 1e-6


def _dense(n, scale):
    return nn.Dense(
        n, kernel_init=nn.initializers.orthogonal(scale), bias_init=nn.initializers.zeros
    )


class MLP(nn.Module):
    hidden: Sequence[int]
    activation: str
    out: int
    out_scale: float = 1.0

    @nn.compact
    def __call__(self, x):
        # one 2-D matmul per layer: XLA:CPU runs the dots of [M, N, D] rows, and above all
        # their gradients, two to three times slower than those of the same rows as [M*N, D]
        lead = x.shape[:-1]
        x = x.reshape(-1, x.shape[-1])
        for h in self.hidden:
            x = _ACT[self.activation](_dense(h, np.sqrt(2.0))(x))
        return _dense(self.out, self.out_scale)(x).reshape(*lead, self.out)


def _distribution_scope(fn):
    """Label the wrapped head method's ops "distribution" (the update's stage profile)."""

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        with jax.named_scope("distribution"):
            return fn(*args, **kwargs)

    return wrapper


@dataclass(frozen=True)
class ActionHead:
    """Layout of one actor's output: ``cont`` continuous dims in [low, high] and ``num_cat``
    categorical heads of ``classes`` each (partner choice). Raw actions are floats
    ``[cont + num_cat]`` (the categorical index stored as a float).

    ``defer``: a residual actor's categorical heads have one more class, first, meaning "keep
    the baseline's choice"; ``defer_logit`` is added to its logit, so an untrained actor keeps
    the baseline's choice (probability ``e^b / (e^b + classes - 1)``) instead of choosing
    uniformly."""

    cont: int
    low: float = -1.0
    high: float = 1.0
    num_cat: int = 0
    classes: int = 1
    kind: str = "beta"
    defer: bool = False
    defer_logit: float = 0.0

    @property
    def out_dim(self) -> int:
        return 2 * self.cont + self.num_cat * self.classes

    @property
    def raw_dim(self) -> int:
        return self.cont + self.num_cat

    def _split(self, out):
        a, b = out[..., : self.cont], out[..., self.cont : 2 * self.cont]
        logits = out[..., 2 * self.cont :].reshape(*out.shape[:-1], self.num_cat, self.classes)
        if self.defer:
            logits = logits.at[..., 0].add(self.defer_logit)
        return a, b, logits

    def _cont(self, out):
        a, b, _ = self._split(out)
        if self.kind == "beta":
            return FastBeta(nn.softplus(a) + 1.0, nn.softplus(b) + 1.0)
        return distrax.Normal(a, jnp.exp(jnp.clip(b, -5.0, 2.0)))

    @_distribution_scope
    def sample(self, out, key):
        k1, k2 = jax.random.split(key)
        u = self._cont(out).sample(seed=k1)
        if self.kind == "beta":
            u = jnp.clip(u, _EPS, 1.0 - _EPS)
        if not self.num_cat:
            return u
        idx = jax.random.categorical(k2, self._split(out)[2])
        return jnp.concatenate([u, idx.astype(u.dtype)], axis=-1)

    @_distribution_scope
    def mode(self, out):
        a, b, logits = self._split(out)
        if self.kind == "beta":
            d = self._cont(out)
            u = jnp.clip(d.mean(), _EPS, 1.0 - _EPS)
        else:
            u = a
        if not self.num_cat:
            return u
        return jnp.concatenate([u, jnp.argmax(logits, -1).astype(u.dtype)], axis=-1)

    @_distribution_scope
    def log_prob(self, out, raw, mask=None):
        """Log-probability of ``raw``; ``mask`` [..., raw_dim] (1 = the column matters) leaves
        columns out of the sum."""
        u = raw[..., : self.cont]
        d = self._cont(out)
        if self.kind == "beta":
            lp = d.log_prob(jnp.clip(u, _EPS, 1.0 - _EPS))
        else:  # tanh-squashed normal, raw = pre-squash value
            lp = d.log_prob(u) - 2.0 * (np.log(2.0) - u - nn.softplus(-2.0 * u))
        if mask is not None:
            lp = lp * mask[..., : self.cont]
        lp = jnp.sum(lp, axis=-1)
        if self.num_cat:
            logits = self._split(out)[2]
            idx = raw[..., self.cont :].astype(jnp.int32)
            lp_cat = jnp.take_along_axis(jax.nn.log_softmax(logits), idx[..., None], -1)[..., 0]
            if mask is not None:
                lp_cat = lp_cat * mask[..., self.cont :]
            lp = lp + jnp.sum(lp_cat, -1)
        return lp

    @_distribution_scope
    def entropy(self, out, mask=None):
        ent = self._cont(out).entropy()
        if mask is not None:
            ent = ent * mask[..., : self.cont]
        ent = jnp.sum(ent, axis=-1)
        if self.num_cat:
            ent_cat = distrax.Categorical(logits=self._split(out)[2]).entropy()
            if mask is not None:
                ent_cat = ent_cat * mask[..., self.cont :]
            ent = ent + jnp.sum(ent_cat, -1)
        return ent

    def to_env(self, raw):
        """Raw sample -> env action: continuous part in [low, high]; categorical index k -> k - 1
        (the partner column: -1 = no partner); with ``defer``, k -> k - 2 (-2 = keep the
        baseline's choice, see ``views.Residual``)."""
        u = raw[..., : self.cont]
        squashed = u if self.kind == "beta" else 0.5 * (jnp.tanh(u) + 1.0)
        cont = self.low + (self.high - self.low) * squashed
        if not self.num_cat:
            return cont
        shift = 2.0 if self.defer else 1.0
        return jnp.concatenate([cont, raw[..., self.cont :] - shift], axis=-1)


# ------------------------------------------------------------------------ parameter sharing


def init_shared(net: nn.Module, key, x, sharing: str, num_agents: int, num_types: int):
    """Parameters for ``sharing``: one set, one per type ([T, ...]) or one per agent ([N, ...])."""
    if sharing == "shared":
        return net.init(key, x)
    n = num_agents if sharing == "independent" else num_types
    # lax.map, not vmap: see ``unbatched_init``
    return jax.lax.map(lambda k: net.init(k, x), jax.random.split(key, n))


def apply_shared(net: nn.Module, params, x, types, sharing: str, num_types: int):
    """Apply to ``x`` [M, N, D] -> [M, N, out]; ``types`` [M, N] int selects the per-type net."""
    if sharing == "shared":
        return net.apply(params, x)
    if sharing == "independent":
        return jax.vmap(net.apply, in_axes=(0, 1), out_axes=1)(params, x)
    outs = jax.vmap(net.apply, in_axes=(0, None))(params, x)  # [T, M, N, out]
    w = jax.nn.one_hot(types, num_types, dtype=outs.dtype)  # [M, N, T]
    return jnp.einsum("mnt,tmno->mno", w, outs)


def apply_by_type(net: nn.Module, params, x, rows_of_type: tuple[np.ndarray, ...]):
    """``sharing=type`` with static types: apply to ``x`` [..., N, D] -> [..., N, out], each
    type's network (``params`` [T, ...]) on the rows ``rows_of_type[t]`` only, so the cost is
    one network's, not T networks' on every row as in :func:`apply_shared`."""
    outs, order = [], []
    for t, rows in enumerate(rows_of_type):
        if len(rows):
            p_t = jax.tree_util.tree_map(lambda p, t=t: p[t], params)
            outs.append(net.apply(p_t, x[..., rows, :]))
            order.append(rows)
    out = jnp.concatenate(outs, axis=-2)
    perm = np.concatenate(order)
    if np.array_equal(perm, np.arange(perm.size)):
        return out
    return jnp.take(out, np.argsort(perm), axis=-2)


def scale_by_type(scales: tuple[float, ...]) -> optax.GradientTransformation:
    """Multiply the updates of per-type parameters (``sharing=type``: every leaf [T, ...]) by
    ``scales[t]`` along the type axis: one learning rate per type after the shared
    optimizer."""
    s = np.asarray(scales, np.float32)

    def update(updates, state, params=None):
        del params
        return jax.tree_util.tree_map(
            lambda u: u * s.reshape((-1,) + (1,) * (u.ndim - 1)).astype(u.dtype), updates
        ), state

    return optax.GradientTransformation(lambda params: optax.EmptyState(), update)


def agent_features(types, num_agents: int, num_types: int, with_id: bool):
    """Per-agent input features [..., N, F]: agent-type one-hot, plus an agent id (one-hot up to
    32 agents, else the index scaled to [0, 1]) when parameters are shared."""
    feats = [jax.nn.one_hot(types, num_types, dtype=jnp.float32)]
    if with_id:
        ids = jnp.broadcast_to(jnp.arange(num_agents), types.shape)
        if num_agents <= 32:
            feats.append(jax.nn.one_hot(ids, num_agents, dtype=jnp.float32))
        else:
            feats.append((ids / max(num_agents - 1, 1))[..., None].astype(jnp.float32))
    return jnp.concatenate(feats, axis=-1)


# ------------------------------------------------------------------------ normalisation


def stats_init(dim: int):
    return {
        "mean": jnp.zeros((dim,), jnp.float32),
        "var": jnp.ones((dim,), jnp.float32),
        "count": jnp.asarray(1e-4, jnp.float32),
    }


def stats_update(stats, batch):
    """Parallel (Chan) update of running mean/variance with a batch [M, dim]."""
    b_mean = jnp.mean(batch, axis=0)
    b_var = jnp.var(batch, axis=0)
    b_count = jnp.asarray(batch.shape[0], jnp.float32)
    delta = b_mean - stats["mean"]
    tot = stats["count"] + b_count
    mean = stats["mean"] + delta * b_count / tot
    m2 = stats["var"] * stats["count"] + b_var * b_count + delta**2 * stats["count"] * b_count / tot
    return {"mean": mean, "var": m2 / tot, "count": tot}


def normalize(stats, x, clip: float = 10.0):
    return jnp.clip((x - stats["mean"]) / jnp.sqrt(stats["var"] + 1e-8), -clip, clip)
