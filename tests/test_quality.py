import numpy as np
import pytest

from kerasvision.metrics import (
    FeatureExtractor,
    frechet_distance,
    frechet_distance_from_statistics,
    inception_feature_extractor,
    kernel_distance,
    sample_quality,
    trace_sqrt_product,
)
from kerasvision.models.shapes_features import shapes_feature_extractor


def test_frechet_distance_of_identical_sets_is_zero():
    features = np.random.default_rng(0).normal(size=(200, 16))
    assert frechet_distance(features, features) == pytest.approx(0.0, abs=1e-8)


def test_frechet_distance_closed_form_for_diagonal_gaussians():
    # Diagonal covariances commute: FD = |m1 - m2|^2 + sum (s1 - s2)^2 with
    # s the standard deviations.
    mean_a, mean_b = np.array([0.0, 1.0, -2.0]), np.array([1.0, 1.0, 0.5])
    var_a, var_b = np.array([1.0, 4.0, 0.25]), np.array([9.0, 1.0, 0.25])
    expected = np.sum((mean_a - mean_b) ** 2) + np.sum((np.sqrt(var_a) - np.sqrt(var_b)) ** 2)
    value = frechet_distance_from_statistics(mean_a, np.diag(var_a), mean_b, np.diag(var_b))
    assert value == pytest.approx(expected, rel=1e-10)


def test_trace_sqrt_product_of_non_commuting_covariances():
    rng = np.random.default_rng(1)
    a, b = rng.normal(size=(5, 5)), rng.normal(size=(5, 5))
    cov_a, cov_b = a @ a.T, b @ b.T
    # Reference: tr sqrtm(A B) = sum sqrt(eig(A B)) (real, non-negative).
    expected = np.sum(np.sqrt(np.linalg.eigvals(cov_a @ cov_b).real))
    assert trace_sqrt_product(cov_a, cov_b) == pytest.approx(expected, rel=1e-8)


def test_frechet_distance_from_samples_approaches_the_closed_form():
    rng = np.random.default_rng(2)
    a = rng.normal([0, 0], [1, 2], size=(20000, 2))
    b = rng.normal([1, 0], [3, 2], size=(20000, 2))
    assert frechet_distance(a, b) == pytest.approx(1 + (3 - 1) ** 2, rel=0.03)


def test_kernel_distance_is_unbiased_and_detects_a_shift():
    rng = np.random.default_rng(3)
    same = [kernel_distance(rng.normal(size=(100, 8)), rng.normal(size=(100, 8)), num_subsets=1)
            for _ in range(30)]
    # Unbiased: the mean over draws is ~0 (and individual values go negative).
    assert abs(np.mean(same)) < 3 * np.std(same) / np.sqrt(len(same)) + 1e-3
    assert min(same) < 0
    shifted = kernel_distance(rng.normal(size=(100, 8)), rng.normal(1.0, 1.0, size=(100, 8)))
    assert shifted > 10 * np.std(same)


def test_kernel_distance_matches_a_direct_double_sum():
    rng = np.random.default_rng(4)
    x, y = rng.normal(size=(5, 3)), rng.normal(size=(5, 3))
    k = lambda u, v: (u @ v / 3 + 1) ** 3  # noqa: E731
    pairs = [(i, j) for i in range(5) for j in range(5)]
    xx = sum(k(x[i], x[j]) for i, j in pairs if i != j) / 20
    yy = sum(k(y[i], y[j]) for i, j in pairs if i != j) / 20
    xy = sum(k(x[i], y[j]) for i, j in pairs) / 25
    assert kernel_distance(x, y) == pytest.approx(xx + yy - 2 * xy, rel=1e-10)


def test_bad_features():
    with pytest.raises(ValueError, match="same number of features"):
        frechet_distance(np.zeros((4, 3)), np.zeros((4, 2)))
    with pytest.raises(ValueError, match="features_a.*num_samples >= 2"):
        kernel_distance(np.zeros((1, 3)), np.zeros((4, 3)))


def test_inception_extractor_fails_fast_without_weights():
    with pytest.raises(ValueError, match="existing InceptionV3 weights file"):
        inception_feature_extractor("/nonexistent/inception.h5")
    try:
        extractor = inception_feature_extractor("imagenet")
    except RuntimeError as error:  # offline, nothing cached: the expected case here
        assert "inception_v3_weights_tf_dim_ordering_tf_kernels_notop.h5" in str(error)
        assert "shapes_feature_extractor" in str(error)
    else:  # weights cached on this machine
        assert extractor.image_size == 299


def test_shapes_extractor_computes_in_float32_under_a_mixed_policy(tmp_path):
    import keras

    keras.mixed_precision.set_global_policy("mixed_bfloat16")  # conftest resets it
    extractor = shapes_feature_extractor(cache_dir=tmp_path, image_size=16, num_images=64,
                                         epochs=1, width=4)
    assert keras.mixed_precision.global_policy().name == "mixed_bfloat16"
    for model in (extractor.model, extractor.classifier):
        assert {layer.dtype_policy.name for layer in model.layers} == {"float32"}
    images = np.random.default_rng(0).uniform(0, 255, (4, 16, 16, 3))
    assert extractor(images).dtype == np.float64
    # Unrounded features: the RMS-1 scale holds on the images it was computed on.
    assert np.unique(extractor(images)).size > 64


def test_shapes_extractor_trains_once_then_loads_from_cache(tmp_path):
    settings = dict(cache_dir=tmp_path, image_size=16, num_images=128, epochs=1, width=4)
    first = shapes_feature_extractor(**settings)
    assert first.trained and first.path.startswith(str(tmp_path))
    second = shapes_feature_extractor(**settings)
    assert not second.trained
    images = np.random.default_rng(0).uniform(0, 255, (6, 24, 24, 3))  # resized to 16
    np.testing.assert_allclose(second(images), first(images), rtol=1e-5, atol=1e-6)
    assert first(images).shape == (6, 128)

    real, fake = images[:3], images[3:]
    scores = sample_quality(real, real, second)
    assert scores["fid"] == pytest.approx(0.0, abs=1e-6)
    scores = sample_quality(real / 127.5 - 1, fake / 127.5 - 1, second, value_range=(-1, 1))
    assert set(scores) == {"fid", "kid", "kid_std"} and scores["fid"] > 0
    with pytest.raises(ValueError, match="value_range"):
        sample_quality(real, fake, second, value_range=(1, -1))
    assert isinstance(second, FeatureExtractor)
