"""The loop-free Beta sampler against SciPy's Beta law (Kolmogorov-Smirnov) and its rejection
bound; the gamma-family functions against SciPy; FastBeta's density and entropy against distrax."""

import distrax
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from scipy import special as sp
from scipy import stats

from jaxlem import threefry
from jaxlem.train import special
from jaxlem.train.distributions import FastBeta, beta_ge1, gamma_ge1


@pytest.mark.parametrize("a, b", [(1.0, 1.0), (1.0, 6.0), (2.3, 1.7), (40.0, 3.0)])
def test_beta_samples_follow_the_beta_law(a, b):
    s = np.asarray(beta_ge1(jax.random.PRNGKey(3), jnp.float32(a), jnp.float32(b), (100_000,)))
    assert np.all((s > 0) & (s < 1))
    assert stats.kstest(s, stats.beta(a, b).cdf).pvalue > 1e-3
    # a wrong law is rejected by the same test (the test can fail)
    assert stats.kstest(s, stats.beta(a * 1.1, b).cdf).pvalue < 1e-3


def test_gamma_rounds_reject_rarely_and_batched_concentrations_work():
    _, ok1 = gamma_ge1(jax.random.PRNGKey(0), jnp.float32(1.0), (200_000,), rounds=1)
    assert 0.94 < float(ok1.mean()) < 0.96  # Marsaglia-Tsang acceptance at alpha = 1
    _, ok = gamma_ge1(jax.random.PRNGKey(1), jnp.float32(1.0), (200_000,))
    assert float(ok.mean()) > 1 - 1e-4
    conc = jnp.array([[1.0, 5.0], [2.0, 30.0]])
    d = FastBeta(conc, conc[::-1])
    x = d.sample(seed=jax.random.PRNGKey(2), sample_shape=(50_000,))
    assert x.shape == (50_000, 2, 2)
    np.testing.assert_allclose(np.asarray(x).mean(0), np.asarray(d.mean()), atol=5e-3)
    assert np.isfinite(np.asarray(d.log_prob(x))).all()


def test_special_functions_match_scipy_and_their_derivatives():
    """``special``'s log-gamma, digamma and trigamma against SciPy in float64 (relative error,
    absolute near zero) over 1e-3..1e5, and the custom derivatives against the next function."""
    rng = np.random.default_rng(0)
    x = np.concatenate([np.geomspace(1e-3, 1e5, 3000), rng.uniform(0.9, 12.0, 3000)])
    x = x.astype(np.float32)
    x64 = x.astype(np.float64)
    cases = [
        (special.lgamma, sp.gammaln(x64)),
        (special.digamma, sp.digamma(x64)),
        (special.trigamma, sp.polygamma(1, x64)),
    ]
    for fn, ref in cases:
        got = np.asarray(jax.jit(fn)(x), np.float64)
        assert np.all(np.abs(got - ref) <= 1e-5 * np.maximum(np.abs(ref), 1.0)), fn.__name__
    grad_lg = np.asarray(jax.jit(jax.vmap(jax.grad(special.lgamma)))(x), np.float64)
    grad_dg = np.asarray(jax.jit(jax.vmap(jax.grad(special.digamma)))(x), np.float64)
    np.testing.assert_allclose(grad_lg, sp.digamma(x64), rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(grad_dg, sp.polygamma(1, x64), rtol=1e-5, atol=1e-5)


def test_fast_beta_density_and_entropy_equal_distrax():
    """FastBeta's log-density, entropy and their gradients equal distrax.Beta's to float32
    rounding (it swaps only the gamma-family functions)."""
    rng = np.random.default_rng(1)
    a = jnp.asarray(1.0 + rng.gamma(1.0, 3.0, 500), jnp.float32)
    b = jnp.asarray(1.0 + rng.gamma(1.0, 3.0, 500), jnp.float32)
    x = jnp.asarray(rng.uniform(1e-4, 1 - 1e-4, 500), jnp.float32)

    def terms(cls):
        def f(a, b):
            d = cls(a, b)
            return jnp.stack([d.log_prob(x), d.entropy()])

        return f(a, b), jax.grad(lambda a, b: f(a, b).sum(), (0, 1))(a, b)

    (v_fast, g_fast), (v_ref, g_ref) = terms(FastBeta), terms(distrax.Beta)
    np.testing.assert_allclose(v_fast, v_ref, rtol=1e-4, atol=1e-4)
    for gf, gr in zip(g_fast, g_ref, strict=True):
        np.testing.assert_allclose(gf, gr, rtol=1e-3, atol=1e-3)


def test_unrolled_threefry_draws_the_same_bits_without_a_loop():
    """``import jaxlem`` lowers threefry on the CPU unrolled: the same random bits as JAX's
    rolled loop for every kind of draw, vmapped and scanned, and no while loop left."""

    def draws(key):
        k1, k2 = jax.random.split(key)
        keys = jax.random.split(k2, 8)
        per = jax.vmap(lambda k: jax.random.normal(k, (5, 3)))(keys)
        scanned = jax.lax.scan(
            lambda k, _: (jax.random.fold_in(k, 7), jax.random.bits(k)), k1, None, 4
        )
        return (
            jax.random.uniform(k1, (33,)),
            per,
            scanned[1],
            jax.random.randint(key, (17,), 0, 1000),
            beta_ge1(k2, jnp.float32(2.0), jnp.float32(3.0), (64,)),
            jax.random.permutation(key, 50),
        )

    keys = jax.random.split(jax.random.PRNGKey(11), 3)
    try:
        assert threefry.set_cpu_lowering(unrolled=False)
        rolled_fn = jax.jit(jax.vmap(draws))
        rolled = rolled_fn(keys)
        assert "while" in rolled_fn.lower(keys).compile().as_text()
        threefry.set_cpu_lowering(unrolled=True)
        unrolled_fn = jax.jit(jax.vmap(draws))
        unrolled = unrolled_fn(keys)
        text = unrolled_fn.lower(keys).compile().as_text()
        # the scan's own loop stays; no threefry loop (5 iterations) is left
        assert '"n":"5"' not in text and '"n":"5"' in rolled_fn.lower(keys).compile().as_text()
    finally:
        threefry.set_cpu_lowering(unrolled=True)
    for a, b in zip(
        jax.tree_util.tree_leaves(rolled), jax.tree_util.tree_leaves(unrolled), strict=True
    ):
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
