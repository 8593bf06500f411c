"""The loop-free Beta sampler against SciPy's Beta law (Kolmogorov-Smirnov) and its rejection
bound."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from scipy import stats

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
