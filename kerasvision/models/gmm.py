"""A Gaussian mixture with diagonal covariances, fitted by EM on flattened images.

The tractable baseline of the generative models: its likelihood is exact,
its fit (expectation-maximisation) provably never lowers that likelihood, and
sampling is two lines; but each component is one mean image plus independent
per-pixel noise, so samples are blurred prototypes. Reporting it on the same
FID/KID as the GANs, VAEs and diffusion models shows what their learned,
non-linear decoders buy.

References: Dempster, Laird and Rubin, "Maximum Likelihood from Incomplete
Data via the EM Algorithm", JRSS-B 1977; Bishop, "Pattern Recognition and
Machine Learning", 2006, section 9.2.

Everything is numpy float64: the log-likelihood of a 3072-dimensional image
sums thousands of terms, which float32 cannot compare across EM iterations.
"""

import numpy as np

from kerasvision.validation import check_float, check_int, check_seed

_LOG_2PI = np.log(2.0 * np.pi)


def _as_matrix(x, name="x"):
    x = np.asarray(x.numpy() if hasattr(x, "numpy") else x, dtype=np.float64)
    if x.ndim < 2 or x.shape[0] == 0:
        raise ValueError(
            f"`{name}` must be a non-empty batch [num_samples, ...]; received shape {x.shape}."
        )
    if not np.all(np.isfinite(x)):
        raise ValueError(f"`{name}` contains NaN or infinite values.")
    return x.reshape(x.shape[0], -1)


def _logsumexp(a, axis):
    peak = np.max(a, axis=axis, keepdims=True)
    return np.squeeze(peak, axis=axis) + np.log(np.sum(np.exp(a - peak), axis=axis))


class GMM:
    """Gaussian mixture model with diagonal covariances, fitted by EM.

    `p(x) = sum_k pi_k N(x; mu_k, diag(var_k))` over flattened samples. The
    E-step computes responsibilities `r_nk` (posterior of component k for
    sample n); the M-step sets `pi_k = mean_n r_nk`, `mu_k` the
    responsibility-weighted mean and `var_k` the weighted variance, floored
    at `min_variance`. The floor is the exact maximiser of the M-step
    objective under the constraint `var >= min_variance` (the objective is
    unimodal in each variance), so the log-likelihood still never decreases.

    Args:
        num_components: int >= 1, `K`.
        min_variance: float > 0, variance floor (units of the data squared):
            keeps a component that collapses on one sample, or on a pixel
            that never varies, from an infinite likelihood.
        max_iterations: int >= 1, EM iterations of `fit`.
        tolerance: float >= 0, `fit` stops when the mean log-likelihood per
            sample improves by less than this.
        seed: int, seed of the initial means (K distinct training samples)
            and of `sample`.

    Attributes after `fit`: `weights_` `[K]`, `means_` `[K, D]`,
    `variances_` `[K, D]`, `log_likelihood_history_` (mean log-likelihood per
    sample at initialisation and after each iteration), `sample_shape_` (shape of one sample).

    Example:
        >>> gmm = GMM(num_components=20).fit(images)     # images [N, H, W, 3] in [-1, 1]
        >>> gmm.sample(16).shape
        (16, H, W, 3)
    """

    def __init__(self, num_components=10, min_variance=1e-3, max_iterations=100, tolerance=1e-4,
                 seed=0):
        self.num_components = check_int("num_components", num_components, minimum=1)
        self.min_variance = check_float("min_variance", min_variance, minimum=0.0,
                                        strict_minimum=True)
        self.max_iterations = check_int("max_iterations", max_iterations, minimum=1)
        self.tolerance = check_float("tolerance", tolerance, minimum=0.0)
        self.seed = check_seed(seed)
        self._rng = np.random.default_rng(self.seed)
        self.weights_ = self.means_ = self.variances_ = None
        self.log_likelihood_history_ = []
        self.sample_shape_ = None

    # -- likelihood -----------------------------------------------------------

    def _component_log_densities(self, x):
        """`log pi_k + log N(x_n; mu_k, var_k)`, `[N, K]`, by three matrix products."""
        inverse = 1.0 / self.variances_  # [K, D]
        # sum_d (x - mu)^2 / var = x^2 . (1/var) - 2 x . (mu/var) + sum mu^2/var
        squared = (x**2) @ inverse.T - 2.0 * x @ (self.means_ * inverse).T
        squared += np.sum(self.means_**2 * inverse, axis=1)
        log_det = np.sum(np.log(self.variances_), axis=1)
        dims = x.shape[1]
        return np.log(self.weights_) - 0.5 * (dims * _LOG_2PI + log_det + squared)

    def _check_fitted(self):
        if self.means_ is None:
            raise ValueError("This GMM is not fitted yet: call `fit(x)` first.")

    def _check_input(self, x, name="x"):
        self._check_fitted()
        x = _as_matrix(x, name)
        if x.shape[1] != self.means_.shape[1]:
            raise ValueError(
                f"`{name}` samples must have {self.means_.shape[1]} values (shape "
                f"{self.sample_shape_}) to match the fitted model; received shape "
                f"{np.shape(x)}."
            )
        return x

    def score_samples(self, x):
        """Log-likelihood `log p(x_n)` of each sample: float64 `[N]` (nats)."""
        x = self._check_input(x)
        return _logsumexp(self._component_log_densities(x), axis=1)

    def log_likelihood(self, x):
        """Mean log-likelihood per sample (nats), a float."""
        return float(np.mean(self.score_samples(x)))

    def bits_per_dim(self, x, value_range=2.0):
        """Negative log-likelihood in bits per dimension of data discretised to 256 levels.

        `value_range` is the width of the data interval (2 for [-1, 1]): a
        density over it gives each of the 256 bins a width of `range / 256`.
        """
        x = self._check_input(x)
        dims = x.shape[1]
        nll = -np.mean(self.score_samples(x)) / dims
        return float((nll - np.log(value_range / 256.0)) / np.log(2.0))

    def predict_proba(self, x):
        """Responsibilities: posterior probability of each component, `[N, K]`."""
        x = self._check_input(x)
        log_densities = self._component_log_densities(x)
        return np.exp(log_densities - _logsumexp(log_densities, axis=1)[:, None])

    # -- fitting --------------------------------------------------------------

    def _initialise(self, x):
        # Means on K distinct samples: every component starts where data is,
        # so none starts with zero responsibility. Variances start at the
        # data's own, the broadest reasonable guess.
        n = x.shape[0]
        if n < self.num_components:
            raise ValueError(
                f"`x` must hold at least num_components={self.num_components} samples; "
                f"received {n}."
            )
        chosen = self._rng.choice(n, self.num_components, replace=False)
        self.means_ = x[chosen].copy()
        self.variances_ = np.tile(np.maximum(x.var(axis=0), self.min_variance),
                                  (self.num_components, 1))
        self.weights_ = np.full(self.num_components, 1.0 / self.num_components)

    def _em_step(self, x):
        """One E-step and M-step; returns the mean log-likelihood *before* the M-step."""
        log_densities = self._component_log_densities(x)
        log_norm = _logsumexp(log_densities, axis=1)
        responsibilities = np.exp(log_densities - log_norm[:, None])  # [N, K]
        counts = responsibilities.sum(axis=0)  # [K]
        # A component with (numerically) no responsibility keeps its
        # parameters rather than dividing by zero.
        alive = counts > 1e-10
        safe = np.where(alive, counts, 1.0)[:, None]
        means = responsibilities.T @ x / safe
        # E[x^2] - mean^2, from the same responsibilities.
        variances = responsibilities.T @ (x**2) / safe - means**2
        self.means_ = np.where(alive[:, None], means, self.means_)
        self.variances_ = np.where(alive[:, None], np.maximum(variances, self.min_variance),
                                   self.variances_)
        self.weights_ = np.maximum(counts / x.shape[0], 1e-300)
        self.weights_ /= self.weights_.sum()
        return float(np.mean(log_norm))

    def fit(self, x, max_iterations=None):
        """Fits the mixture by EM.

        Args:
            x: array `[N, ...]` (e.g. images `[N, H, W, 3]`, ideally scaled to
                [-1, 1]), flattened per sample; N >= num_components.
            max_iterations: int, overrides the constructor's value.

        Returns:
            self. `log_likelihood_history_` holds the mean log-likelihood per
            sample of the initial parameters, then of the parameters after
            each iteration (non-decreasing).
        """
        raw_shape = np.shape(x)
        x = _as_matrix(x)
        iterations = self.max_iterations if max_iterations is None else check_int(
            "max_iterations", max_iterations, minimum=1)
        self.sample_shape_ = tuple(raw_shape[1:])
        self._initialise(x)
        # Each E-step gives the likelihood of the current parameters for
        # free, so the history costs one extra E-step in total.
        history = []
        for _ in range(iterations):
            history.append(self._em_step(x))
            if len(history) > 1 and history[-1] - history[-2] < self.tolerance:
                break
        history.append(float(np.mean(_logsumexp(self._component_log_densities(x), axis=1))))
        self.log_likelihood_history_ = history
        return self

    # -- sampling -------------------------------------------------------------

    def sample(self, num_samples, seed=None, return_components=False):
        """Draws new samples: a component by its weight, then independent normal pixels.

        Args:
            num_samples: int >= 1.
            seed: optional int; None continues the model's own random stream.
            return_components: bool, also return the component of each sample.

        Returns:
            float64 numpy array `[num_samples, *sample_shape_]` (unclipped; clip
            to the data range before display), and the int `[num_samples]`
            component ids if requested.
        """
        self._check_fitted()
        num_samples = check_int("num_samples", num_samples, minimum=1)
        rng = self._rng if seed is None else np.random.default_rng(check_seed(seed))
        components = rng.choice(self.num_components, size=num_samples, p=self.weights_)
        noise = rng.standard_normal((num_samples, self.means_.shape[1]))
        samples = self.means_[components] + np.sqrt(self.variances_[components]) * noise
        samples = samples.reshape((num_samples,) + self.sample_shape_)
        return (samples, components) if return_components else samples

    def generate(self, num_images, seed=None):
        """Samples images clipped to [-1, 1] as float32 (the other generators' contract)."""
        return np.clip(self.sample(num_images, seed=seed), -1.0, 1.0).astype(np.float32)

    # -- persistence ------------------------------------------------------------

    def save(self, path):
        """Writes the fitted parameters to a `.npz` file; returns the path."""
        self._check_fitted()
        np.savez(
            path, weights=self.weights_, means=self.means_, variances=self.variances_,
            sample_shape=np.asarray(self.sample_shape_, dtype=np.int64),
            config=np.asarray([self.num_components, self.min_variance, self.max_iterations,
                               self.tolerance, self.seed], dtype=np.float64),
            history=np.asarray(self.log_likelihood_history_, dtype=np.float64),
        )
        return path

    @classmethod
    def load(cls, path):
        """Reads a model written by `save`."""
        with np.load(path) as data:
            k, min_variance, max_iterations, tolerance, seed = data["config"].tolist()
            gmm = cls(int(k), min_variance, int(max_iterations), tolerance, int(seed))
            gmm.weights_, gmm.means_, gmm.variances_ = data["weights"], data["means"], data["variances"]
            gmm.sample_shape_ = tuple(int(s) for s in data["sample_shape"])
            gmm.log_likelihood_history_ = data["history"].tolist()
        return gmm
