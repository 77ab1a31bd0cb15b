"""Eigen-images: principal component analysis of raw pixels, the verification baseline.

Turk and Pentland, "Eigenfaces for Recognition", J. Cognitive Neuroscience
1991: flatten every training image, subtract the mean image, and keep the
leading principal directions of what remains (the "eigenfaces"); an image is
then described by its coordinates along them, and recognised by the nearest
known image in that space. Here the directions come from the singular value
decomposition of the centred data matrix (its right singular vectors are the
eigenvectors of the pixel covariance, without forming that `D x D` matrix).

The projections are embeddings like any network's: pass them to
`kerasvision.metrics.verification.evaluate_verification` to compare the
baseline with a learned embedding (`kerasvision.models.siamese`).
"""

import numpy as np
from keras import ops

from kerasvision.validation import (
    check_choice,
    check_image_batch,
    check_int,
    check_seed,
)

SOLVERS = ("auto", "full", "randomized")
# Randomized SVD: extra random directions beyond k and power iterations; with
# these the leading directions match the full SVD's to round-off on image data,
# whose spectrum falls fast (Halko, Martinsson and Tropp 2011, section 4.5).
_OVERSAMPLING = 10
_POWER_ITERATIONS = 4


def _leading_svd(data, k, solver, seed):
    """The leading `k` singular values and right singular vectors of `data` `[N, D]`.

    "full" is the SVD of the whole matrix, O(N D min(N, D)). "randomized"
    (Halko et al. 2011) finds the range of `data` on `k + 10` random directions
    sharpened by power iterations, then takes the exact SVD of that small
    matrix: a few matmuls instead, seconds rather than minutes for 2048
    images of 32x32. "auto" picks the randomized one when `k + 10` is under
    half of `min(N, D)`.

    The algebra runs in Keras ops (TensorFlow's kernels), in float64: numpy's
    OpenBLAS, left at two threads on two cores that other processes also
    use, was measured 20 to 80 times slower on the same products.

    Returns:
        `(s [k], vt [k, D], total)`: numpy float64 singular values, right
        singular vectors as rows, and the sum of all squared singular values.
    """
    x = ops.convert_to_tensor(data, dtype="float64")
    total = float(ops.sum(ops.square(x)))
    small = min(data.shape)
    if solver == "auto":
        solver = "randomized" if k + _OVERSAMPLING < small // 2 else "full"
    if solver == "full":
        _, s, vt = ops.svd(x, full_matrices=False)
    else:
        width = min(k + _OVERSAMPLING, small)
        directions = np.random.default_rng(seed).standard_normal((data.shape[1], width))
        basis, _ = ops.qr(ops.matmul(x, ops.convert_to_tensor(directions, dtype="float64")))
        for _ in range(_POWER_ITERATIONS):
            # Re-orthonormalised each time, or round-off merges the directions.
            basis, _ = ops.qr(ops.matmul(ops.transpose(x), basis))
            basis, _ = ops.qr(ops.matmul(x, basis))
        _, s, vt = ops.svd(ops.matmul(ops.transpose(basis), x), full_matrices=False)
    s, vt = ops.convert_to_numpy(s)[:k], ops.convert_to_numpy(vt)[:k]
    return s, vt, total


class EigenImages:
    """PCA by SVD on flattened images: fit on training images, project any image.

    Args:
        num_components: int >= 1, principal directions kept `k` (at most
            `min(N, H * W * 3)` of the training set).
        whiten: bool, divide each coordinate by its standard deviation over
            the training set, so all directions weigh alike in distances
            (False: plain eigenfaces, where the leading, often lighting-driven,
            directions dominate).
        solver: "auto", "full" or "randomized": how the SVD is computed
            (see `_leading_svd`; "full" is exact, "randomized" matches it on
            image data and is many times faster for few components).
        seed: int >= 0, the random directions of the randomized solver.

    Attributes (after `fit`):
        mean: float64 `[H * W * 3]`, the mean training image (in [0, 1]).
        components: float64 `[k, H * W * 3]`, orthonormal rows, leading first.
        singular_values: float64 `[k]`.
        explained_variance_ratio: float64 `[k]`, each direction's share of
            the training set's total variance.
        image_shape: `(H, W, 3)` of the training images.
        num_images: int, the number of training images `N`.

    Example:
        >>> pca = EigenImages(num_components=32).fit(train_images)
        >>> embeddings = pca.transform(validation_images)  # [N, 32]
    """

    def __init__(self, num_components=32, whiten=False, solver="auto", seed=0):
        self.num_components = check_int("num_components", num_components, minimum=1)
        self.solver = check_choice("solver", solver, SOLVERS)
        self.seed = check_seed(seed)
        if not isinstance(whiten, bool):
            raise ValueError(f"`whiten` must be True or False; received whiten={whiten!r}.")
        self.whiten = whiten
        self.mean = None
        self.components = None
        self.singular_values = None
        self.explained_variance_ratio = None
        self.image_shape = None
        self.num_images = None

    def _flatten(self, images, name):
        check_image_batch(images, name)
        images = np.asarray(images, dtype=np.float64)
        # Pixels in [0, 1]: the scale does not change the directions, only
        # keeps the numbers readable.
        return images.reshape(images.shape[0], -1) / 255.0

    def fit(self, images):
        """Learn the mean image and the principal directions.

        Args:
            images: `[N, H, W, 3]` RGB in [0, 255] (uint8 or float), N >= 2.

        Returns:
            `self`.
        """
        data = self._flatten(images, "images")
        limit = min(data.shape)
        if data.shape[0] < 2 or self.num_components > limit:
            raise ValueError(
                f"`num_components` must be at most min(images, pixels x 3) = {limit} of the "
                f"training set (and it needs 2 images or more); received "
                f"num_components={self.num_components} for images of shape {np.shape(images)}."
            )
        self.image_shape = tuple(np.shape(images)[1:])
        self.num_images = data.shape[0]
        self.mean = data.mean(axis=0)
        # SVD of the centred N x D matrix: the rows of vt are the eigenvectors
        # of its covariance, s^2 / (N - 1) their variances.
        s, vt, total = _leading_svd(data - self.mean, self.num_components, self.solver,
                                    self.seed)
        self.components = vt
        self.singular_values = s
        self.explained_variance_ratio = s ** 2 / total
        return self

    def transform(self, images):
        """Project images on the principal directions.

        Args:
            images: `[M, H, W, 3]` at the training images' size.

        Returns:
            float64 `[M, k]` coordinates (divided by each direction's standard
            deviation when `whiten`).
        """
        if self.components is None:
            raise ValueError("EigenImages.transform needs a fitted model: call fit(images) first.")
        if tuple(np.shape(images)[1:]) != self.image_shape:
            raise ValueError(
                "`images` must have the training images' shape [M, "
                f"{', '.join(map(str, self.image_shape))}]; received shape {np.shape(images)}."
            )
        centred = ops.convert_to_tensor(self._flatten(images, "images") - self.mean)
        codes = ops.convert_to_numpy(ops.matmul(centred, ops.transpose(self.components)))
        if self.whiten:
            codes = codes / np.maximum(self._standard_deviations(), 1e-12)
        return codes

    def _standard_deviations(self):
        # A direction's variance over the training set is s^2 / (N - 1).
        return self.singular_values / np.sqrt(max(self.num_images - 1, 1))

    def reconstruct(self, codes):
        """Images back from their coordinates (the best rank-k approximation).

        Args:
            codes: float `[M, k]` from `transform`.

        Returns:
            float64 `[M, H, W, 3]` in about [0, 255] (not clipped).
        """
        if self.components is None:
            raise ValueError("EigenImages.reconstruct needs a fitted model: call fit first.")
        codes = np.asarray(codes, dtype=np.float64)
        if self.whiten:
            codes = codes * self._standard_deviations()
        flat = ops.convert_to_numpy(ops.matmul(codes, self.components)) + self.mean
        return (flat * 255.0).reshape(-1, *self.image_shape)
