import numpy as np
import pytest

from kerasvision.models.gmm import GMM


def toy_mixture(n=600, seed=0):
    """Two well-separated diagonal Gaussians in 4-D, weights 0.3 / 0.7."""
    rng = np.random.default_rng(seed)
    means = np.array([[-2.0, 0.0, 1.0, 3.0], [2.0, 1.0, -1.0, 0.0]])
    stds = np.array([[0.5, 0.3, 0.4, 0.6], [0.3, 0.5, 0.2, 0.4]])
    labels = (rng.uniform(size=n) < 0.7).astype(int)
    return means[labels] + stds[labels] * rng.standard_normal((n, 4)), means, stds


def test_em_increases_log_likelihood_and_recovers_the_components():
    x, means, stds = toy_mixture()
    gmm = GMM(num_components=2, max_iterations=50, tolerance=0.0, seed=1).fit(x)
    history = np.array(gmm.log_likelihood_history_)
    assert len(history) >= 3
    assert np.all(np.diff(history) >= -1e-9), history
    order = np.argsort(gmm.means_[:, 0])
    np.testing.assert_allclose(gmm.means_[order], means, atol=0.1)
    np.testing.assert_allclose(np.sqrt(gmm.variances_[order]), stds, atol=0.08)
    np.testing.assert_allclose(gmm.weights_[order], [0.3, 0.7], atol=0.06)
    assert gmm.log_likelihood(x) == pytest.approx(history[-1])


def test_log_likelihood_matches_a_direct_density():
    x, _, _ = toy_mixture(50)
    gmm = GMM(num_components=2, max_iterations=5).fit(x)
    densities = np.zeros(len(x))
    for weight, mean, variance in zip(gmm.weights_, gmm.means_, gmm.variances_):
        exponent = -0.5 * np.sum((x - mean) ** 2 / variance, axis=1)
        densities += weight * np.exp(exponent) / np.sqrt(np.prod(2 * np.pi * variance))
    np.testing.assert_allclose(gmm.score_samples(x), np.log(densities), rtol=1e-10)


def test_images_fit_sample_save_and_load(tmp_path):
    rng = np.random.default_rng(0)
    images = np.clip(rng.normal(0, 0.3, (40, 8, 8, 3)), -1, 1)
    gmm = GMM(num_components=3, max_iterations=10, seed=0).fit(images)
    samples, components = gmm.sample(5, seed=3, return_components=True)
    assert samples.shape == (5, 8, 8, 3) and components.shape == (5,)
    generated = gmm.generate(4, seed=1)
    assert generated.dtype == np.float32 and generated.min() >= -1 and generated.max() <= 1
    assert np.all(np.isfinite(gmm.bits_per_dim(images)))
    restored = GMM.load(gmm.save(str(tmp_path / "gmm.npz")))
    np.testing.assert_array_equal(restored.sample(5, seed=3), samples)
    np.testing.assert_allclose(restored.score_samples(images), gmm.score_samples(images))


def test_bad_input():
    with pytest.raises(ValueError, match="num_components"):
        GMM(num_components=0)
    with pytest.raises(ValueError, match="at least num_components=5 samples; received 3"):
        GMM(num_components=5).fit(np.zeros((3, 2)))
    with pytest.raises(ValueError, match="not fitted"):
        GMM().sample(2)
    gmm = GMM(num_components=1).fit(np.random.default_rng(0).normal(size=(10, 4)))
    with pytest.raises(ValueError, match="4 values"):
        gmm.score_samples(np.zeros((2, 5)))
    with pytest.raises(ValueError, match="NaN"):
        GMM().fit(np.full((20, 2), np.nan))
