"""Sample-quality metrics for generative models: FID and KID, and the features they compare.

FID (Heusel et al. 2017, "GANs Trained by a Two Time-Scale Update Rule
Converge to a Local Nash Equilibrium") compares Gaussians fitted to the
features of real and generated images; KID (Binkowski et al. 2018,
"Demystifying MMD GANs") is an unbiased MMD^2 between the feature sets with
the cubic polynomial kernel, unbiased for small sample sizes where FID is
biased upwards. Both are computed in numpy float64 from features of any
`FeatureExtractor`: InceptionV3's pool features (`inception_feature_extractor`,
the published metric) when its ImageNet weights are available, otherwise a
small classifier trained once on the embedded shapes dataset
(`kerasvision.models.shapes_features.shapes_feature_extractor`; comparable
between our models, not with published numbers).

Image contract: RGB in [0, 255] (uint8 or float), like the rest of the
package; generators' [-1, 1] outputs are mapped with `value_range=(-1, 1)` in
`sample_quality` / `FeatureExtractor.__call__`.

Example:

```python
extractor = kerasvision.models.shapes_features.shapes_feature_extractor()
scores = kerasvision.metrics.sample_quality(real_images, generated, extractor,
                                            value_range=(-1, 1))
scores["fid"], scores["kid"]
```
"""

import os

import keras
import numpy as np
import tensorflow as tf

from kerasvision.backbones import keras_cache_dir
from kerasvision.layers import ImagePreprocessing
from kerasvision.validation import check_int, check_seed


def _as_features(features, name):
    features = np.asarray(
        features.numpy() if hasattr(features, "numpy") else features, dtype=np.float64
    )
    if features.ndim != 2 or features.shape[0] < 2:
        raise ValueError(
            f"`{name}` must be a [num_samples >= 2, num_features] array; received shape "
            f"{features.shape}."
        )
    if not np.all(np.isfinite(features)):
        raise ValueError(f"`{name}` contains NaN or infinite values.")
    return features


def _check_same_width(features_a, features_b):
    if features_a.shape[1] != features_b.shape[1]:
        raise ValueError(
            "`features_a` and `features_b` must have the same number of features; received "
            f"shapes {features_a.shape} and {features_b.shape}."
        )


def _symmetric_sqrt(matrix):
    """Square root of a symmetric positive semi-definite matrix (eigenvalues clipped at 0)."""
    eigenvalues, eigenvectors = np.linalg.eigh((matrix + matrix.T) / 2.0)
    return (eigenvectors * np.sqrt(np.maximum(eigenvalues, 0.0))) @ eigenvectors.T


def trace_sqrt_product(cov_a, cov_b):
    """`trace(sqrtm(cov_a @ cov_b))` for symmetric PSD matrices, without scipy.

    `cov_a @ cov_b` is not symmetric, but it is similar to the symmetric PSD
    `S = sqrt(cov_a) @ cov_b @ sqrt(cov_a)` (same eigenvalues), so the trace of
    its square root is the sum of the square roots of the eigenvalues of `S`,
    which `eigh` computes stably.
    """
    root_a = _symmetric_sqrt(cov_a)
    product = root_a @ cov_b @ root_a
    eigenvalues = np.linalg.eigvalsh((product + product.T) / 2.0)
    return float(np.sum(np.sqrt(np.maximum(eigenvalues, 0.0))))


def frechet_distance_from_statistics(mean_a, cov_a, mean_b, cov_b):
    """Frechet distance between `N(mean_a, cov_a)` and `N(mean_b, cov_b)`.

    `||mean_a - mean_b||^2 + trace(cov_a + cov_b - 2 sqrtm(cov_a cov_b))`.

    Args:
        mean_a, mean_b: `[F]` arrays.
        cov_a, cov_b: `[F, F]` symmetric PSD arrays.

    Returns:
        float >= 0 (round-off below zero is clipped).
    """
    mean_a, mean_b = np.asarray(mean_a, np.float64), np.asarray(mean_b, np.float64)
    cov_a, cov_b = np.atleast_2d(cov_a).astype(np.float64), np.atleast_2d(cov_b).astype(np.float64)
    if mean_a.shape != mean_b.shape or cov_a.shape != cov_b.shape or cov_a.shape != (mean_a.size,) * 2:
        raise ValueError(
            "Statistics must be means [F] and covariances [F, F] of the same F; received "
            f"mean_a {mean_a.shape}, cov_a {cov_a.shape}, mean_b {mean_b.shape}, cov_b {cov_b.shape}."
        )
    difference = float(np.sum((mean_a - mean_b) ** 2))
    trace = np.trace(cov_a) + np.trace(cov_b) - 2.0 * trace_sqrt_product(cov_a, cov_b)
    return max(difference + float(trace), 0.0)


def frechet_distance(features_a, features_b):
    """Frechet distance (FID when the features are InceptionV3's) of two feature sets.

    Fits a Gaussian to each set (mean, covariance with `N - 1` normalisation)
    and returns `frechet_distance_from_statistics`.

    Args:
        features_a, features_b: `[N_a, F]` and `[N_b, F]` arrays, N >= 2. FID
            is biased upwards for small N; compare models at equal N.

    Returns:
        float >= 0; 0 for identical sets.
    """
    features_a = _as_features(features_a, "features_a")
    features_b = _as_features(features_b, "features_b")
    _check_same_width(features_a, features_b)
    return frechet_distance_from_statistics(
        features_a.mean(axis=0), np.cov(features_a, rowvar=False),
        features_b.mean(axis=0), np.cov(features_b, rowvar=False),
    )


def _unbiased_mmd2(kernel_aa, kernel_bb, kernel_ab):
    """Unbiased MMD^2 from kernel matrices: within-set terms skip the diagonal."""
    m, n = kernel_aa.shape[0], kernel_bb.shape[0]
    within_a = (kernel_aa.sum() - np.trace(kernel_aa)) / (m * (m - 1))
    within_b = (kernel_bb.sum() - np.trace(kernel_bb)) / (n * (n - 1))
    return within_a + within_b - 2.0 * kernel_ab.mean()


def kernel_distance(features_a, features_b, degree=3, coef0=1.0, num_subsets=100,
                    subset_size=1000, seed=0, return_std=False):
    """Kernel distance (KID when the features are InceptionV3's): unbiased MMD^2.

    Kernel `k(x, y) = (x . y / F + coef0) ** degree` (Binkowski et al. 2018,
    eq. 4, with the default cubic kernel). The unbiased estimator leaves out
    the `k(x, x)` terms, so its expectation is exactly MMD^2: about 0 (it can
    be slightly negative) for two samples of one distribution, at any sample
    size. It is averaged over `num_subsets` random subsets of `subset_size`
    samples of each set (fewer if a set is smaller), which bounds the cost.

    Args:
        features_a, features_b: `[N_a, F]` and `[N_b, F]` arrays, N >= 2.
        degree: int >= 1.
        coef0: float.
        num_subsets: int >= 1.
        subset_size: int >= 2.
        seed: int, seed of the subset draws.
        return_std: bool, also return the standard deviation over subsets.

    Returns:
        float (and its standard deviation over subsets if `return_std`).
    """
    features_a = _as_features(features_a, "features_a")
    features_b = _as_features(features_b, "features_b")
    _check_same_width(features_a, features_b)
    degree = check_int("degree", degree, minimum=1)
    num_subsets = check_int("num_subsets", num_subsets, minimum=1)
    subset_size = check_int("subset_size", subset_size, minimum=2)
    size = min(subset_size, features_a.shape[0], features_b.shape[0])
    width = features_a.shape[1]
    rng = np.random.default_rng(check_seed(seed))

    def kernel(x, y):
        return (x @ y.T / width + coef0) ** degree

    full = size == features_a.shape[0] == features_b.shape[0]
    values = []
    # One subset covering both whole sets is deterministic: compute it once.
    for _ in range(1 if full else num_subsets):
        a = features_a[rng.choice(features_a.shape[0], size, replace=False)]
        b = features_b[rng.choice(features_b.shape[0], size, replace=False)]
        values.append(_unbiased_mmd2(kernel(a, a), kernel(b, b), kernel(a, b)))
    mean = float(np.mean(values))
    return (mean, float(np.std(values))) if return_std else mean


def _images_to_unit_range(images, value_range):
    """float32 images mapped from `value_range` to [0, 255], as numpy."""
    low, high = value_range
    if not high > low:
        raise ValueError(
            f"`value_range` must be (low, high) with high > low; received {value_range!r}."
        )
    images = np.asarray(images.numpy() if hasattr(images, "numpy") else images, dtype=np.float32)
    if images.ndim != 4 or images.shape[-1] not in (1, 3) or images.shape[0] == 0:
        raise ValueError(
            "`images` must be a non-empty batch [N, height, width, 3] (or 1 channel); "
            f"received shape {images.shape}."
        )
    if images.shape[-1] == 1:
        images = np.repeat(images, 3, axis=-1)
    return (images - low) * (255.0 / (high - low))


class FeatureExtractor:
    """Maps images to feature vectors for FID/KID.

    Args:
        model: a `keras.Model` from images `[N, size, size, 3]` (already
            preprocessed) to features `[N, F]`.
        image_size: int, the side images are resized to (bilinear).
        preprocessing: str, an `ImagePreprocessing` mode applied to [0, 255]
            pixels before `model` ("tf" for InceptionV3, "unit" for the
            shapes classifier).
        name: str, names the extractor in reports (e.g. "inception_v3").

    Call: `extractor(images, value_range=(0, 255), batch_size=64)` with
    images `[N, H, W, 3]` whose values span `value_range`; returns float64
    numpy features `[N, F]`.
    """

    def __init__(self, model, image_size, preprocessing="unit", name="features"):
        self.model = model
        self.image_size = check_int("image_size", image_size, minimum=1)
        self.preprocessing = ImagePreprocessing(preprocessing)
        self.name = name
        self._predict = None

    def __call__(self, images, value_range=(0, 255), batch_size=64):
        images = _images_to_unit_range(images, value_range)
        batch_size = check_int("batch_size", batch_size, minimum=1)
        if self._predict is None:
            size = (self.image_size, self.image_size)

            # One traced function for every batch: resize, preprocess, embed.
            @tf.function(reduce_retracing=True)
            def predict(batch):
                batch = tf.image.resize(batch, size, method="bilinear")
                return self.model(self.preprocessing(batch), training=False)

            self._predict = predict
        outputs = [
            np.asarray(self._predict(tf.constant(images[i:i + batch_size])), dtype=np.float64)
            for i in range(0, images.shape[0], batch_size)
        ]
        return np.concatenate(outputs, axis=0).reshape(images.shape[0], -1)

    def __repr__(self):
        return f"FeatureExtractor({self.name}, image_size={self.image_size})"


# The headless InceptionV3 weights file, as keras.applications fetches it.
_INCEPTION_NOTOP_FILE = "inception_v3_weights_tf_dim_ordering_tf_kernels_notop.h5"
_INCEPTION_NOTOP_URL = (
    "https://storage.googleapis.com/tensorflow/keras-applications/inception_v3/"
    + _INCEPTION_NOTOP_FILE
)
_INCEPTION_NOTOP_HASH = "bcbd6486424b2319ff4ef7d526e38f63"


def inception_feature_extractor(weights="imagenet"):
    """InceptionV3's 2048-d pool features at 299x299: the published FID/KID features.

    Args:
        weights: "imagenet" (the Keras cache `~/.keras/models`, downloaded
            when the network allows) or a path to the headless InceptionV3
            weights file (`inception_v3_weights_tf_dim_ordering_tf_kernels_notop.h5`).

    Returns:
        A `FeatureExtractor`. Fails fast with a RuntimeError naming the cache
        file when the weights are not available (an offline machine): use
        `kerasvision.models.shapes_features.shapes_feature_extractor` instead.
    """
    if weights != "imagenet" and not (isinstance(weights, (str, os.PathLike))
                                      and os.path.isfile(weights)):
        raise ValueError(
            "`weights` must be 'imagenet' or the path of an existing InceptionV3 weights "
            f"file; received weights={weights!r}."
        )
    if weights == "imagenet":
        # Fetch (or find in the cache) the file first, the way
        # keras.applications does, so an offline machine fails before the
        # 300-layer network is built.
        try:
            weights = keras.utils.get_file(
                _INCEPTION_NOTOP_FILE, _INCEPTION_NOTOP_URL, cache_subdir="models",
                file_hash=_INCEPTION_NOTOP_HASH,
            )
        except Exception as error:  # keras raises a bare Exception when the fetch fails
            raise RuntimeError(
                f"Could not get the InceptionV3 ImageNet weights ({error}). Keras looks for "
                f"them in {os.path.join(keras_cache_dir(), _INCEPTION_NOTOP_FILE)} and "
                "downloads them there when the network allows. Offline, copy that file "
                "there, pass weights='/path/to/file.h5', or use "
                "kerasvision.models.shapes_features.shapes_feature_extractor() for features "
                "trained on the embedded data."
            ) from error
    model = keras.applications.InceptionV3(
        include_top=False, weights=weights, input_shape=(299, 299, 3), pooling="avg"
    )
    return FeatureExtractor(model, 299, preprocessing="tf", name="inception_v3")


def sample_quality(real_images, fake_images, extractor, value_range=(0, 255), kid_subset_size=1000,
                   kid_subsets=100, batch_size=64, seed=0):
    """FID and KID of generated images against real ones, on `extractor`'s features.

    Args:
        real_images, fake_images: `[N, H, W, 3]` arrays whose values span
            `value_range` (default [0, 255], the package's image contract; pass
            `(-1, 1)` for generator outputs). Sizes may differ from the
            extractor's (images are resized).
        extractor: a `FeatureExtractor` (`inception_feature_extractor()` or
            `kerasvision.models.shapes_features.shapes_feature_extractor()`),
            or a callable images -> features.
        value_range: `(low, high)` of both image sets.
        kid_subset_size, kid_subsets, seed: as in `kernel_distance`.
        batch_size: int, feature extraction batch size.

    Returns:
        dict `{"fid": float, "kid": float, "kid_std": float}`.

    Example:
        >>> extractor = inception_feature_extractor()
        >>> real = real_uint8 / 127.5 - 1.0  # both sets share one value range
        >>> fake = gan.generate(500)  # [-1, 1]
        >>> sample_quality(real, fake, extractor, value_range=(-1, 1))  # doctest: +SKIP
    """
    if isinstance(extractor, FeatureExtractor):
        real = extractor(real_images, value_range=value_range, batch_size=batch_size)
        fake = extractor(fake_images, value_range=value_range, batch_size=batch_size)
    elif callable(extractor):
        real = np.asarray(extractor(_images_to_unit_range(real_images, value_range)))
        fake = np.asarray(extractor(_images_to_unit_range(fake_images, value_range)))
    else:
        raise ValueError(
            f"`extractor` must be a FeatureExtractor or a callable; received {extractor!r}."
        )
    kid, kid_std = kernel_distance(real, fake, num_subsets=kid_subsets,
                                   subset_size=kid_subset_size, seed=seed, return_std=True)
    return {"fid": frechet_distance(real, fake), "kid": kid, "kid_std": kid_std}

