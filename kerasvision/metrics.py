"""Segmentation metrics read from a streaming confusion matrix.

Every `ConfusionMatrixMetric` accumulates, over all batches since the last
`reset_state`, a float `[num_classes, num_classes]` matrix whose entry
`[t, p]` counts pixels of true class `t` predicted as `p`. Metrics take

- `y_true`: sparse integer labels `[batch, height, width]` (or
  `[batch, height, width, 1]`); pixels equal to `ignore_label` (default 255)
  and labels outside `[0, num_classes)` are skipped.
- `y_pred`: `[batch, height, width, num_classes]` logits or probabilities
  (argmax over the last axis), or already-decoded labels shaped like `y_true`.
- `sample_weight` (optional): broadcastable to `[batch, height, width]`.

Skipped pixels get weight 0 instead of being removed, so shapes stay static
and `update_state` compiles with `jit_compile=True`; the matrix variable sums
across replicas under `tf.distribute`.

After `model.evaluate`, read the matrix with `metric.confusion_matrix()` and
report it with the numpy helpers (`per_class_iou`, `segmentation_report`...).

Example:

```python
miou = kerasvision.metrics.MeanIoU(num_classes=21)
model.compile(optimizer="adam", loss=loss, metrics=[miou])
model.evaluate(val_ds)
print(kerasvision.metrics.segmentation_report(miou.confusion_matrix()))
```
"""

import keras
import numpy as np
from keras import ops

from kerasvision.validation import (
    IGNORE_LABEL,
    check_int,
    check_label_shape,
    check_num_classes,
    check_numeric_dtype,
)

_COMMON_ARGS_DOC = """num_classes: int >= 2, number of classes `C`.
        ignore_label: int or None, label whose pixels are skipped (default
            255); labels outside `[0, num_classes)` are always skipped.
        name: str, the metric name shown in Keras logs.
        dtype: float dtype of the accumulated matrix (default "float32")."""


def _fill_doc(cls):
    """Insert the shared argument docs, written once in `_COMMON_ARGS_DOC`."""
    cls.__doc__ = cls.__doc__.replace("{common_args}", _COMMON_ARGS_DOC)
    return cls


def _check_ignore_label(ignore_label):
    if ignore_label is None:
        return None
    return check_int("ignore_label", ignore_label)


def _as_labels(x):
    # Labels may come as floats (e.g. a float mask from augmentation);
    # rounding first makes the integer cast exact.
    x = ops.convert_to_tensor(x)
    if "int" in str(x.dtype):
        return ops.cast(x, "int32")
    return ops.cast(ops.round(ops.cast(x, "float32")), "int32")


# ---------------------------------------------------------------------------
# Values from a confusion matrix, in keras.ops (used inside `result()`).
# ---------------------------------------------------------------------------


def _confusion_terms(confusion):
    """True positives, true (row) and predicted (column) totals per class."""
    confusion = ops.cast(confusion, "float32")
    true_positives = ops.diagonal(confusion)
    return true_positives, ops.sum(confusion, axis=1), ops.sum(confusion, axis=0)


def _iou_and_present(confusion):
    tp, rows, cols = _confusion_terms(confusion)
    union = rows + cols - tp
    return ops.divide_no_nan(tp, union), ops.cast(ops.greater(union, 0), "float32")


def _mean_over_present(values, present):
    # Classes absent from truth and prediction are left out of the mean, as
    # keras.metrics.MeanIoU does; no class at all gives 0, not NaN.
    return ops.divide_no_nan(ops.sum(values * present), ops.sum(present))


# ---------------------------------------------------------------------------
# Streaming metrics.
# ---------------------------------------------------------------------------


@keras.saving.register_keras_serializable(package="kerasvision")
@_fill_doc
class ConfusionMatrixMetric(keras.metrics.Metric):
    """Base class: accumulates a `[C, C]` confusion matrix (rows true, columns
    predicted). Subclasses implement `_from_confusion(confusion)`, which maps
    the matrix tensor to the metric value.

    Args:
        {common_args}

    Shapes: `update_state(y_true [B, H, W] or [B, H, W, 1], y_pred [B, H, W, C]
    or [B, H, W], sample_weight broadcastable to [B, H, W])`.
    `confusion_matrix()` returns a numpy `[C, C]` float64 array.

    Example:

    ```python
    metric = MeanIoU(num_classes=3)
    metric.update_state(masks, logits)
    metric.result(), metric.confusion_matrix(), metric.per_class()
    ```
    """

    def __init__(self, num_classes, ignore_label=IGNORE_LABEL, name="confusion_matrix", dtype=None):
        super().__init__(name=name, dtype=dtype or "float32")
        self.num_classes = check_num_classes(num_classes)
        self.ignore_label = _check_ignore_label(ignore_label)
        if "float" not in str(self.dtype):
            raise ValueError(
                f"`dtype` must be a float dtype for the confusion matrix; received dtype={dtype!r}."
            )
        self.total_confusion = self.add_variable(
            shape=(self.num_classes, self.num_classes),
            initializer="zeros",
            dtype=self.dtype,
            name="total_confusion",
        )

    def update_state(self, y_true, y_pred, sample_weight=None):
        """Add a batch to the confusion matrix (shapes in the class docstring)."""
        num_classes = self.num_classes
        y_true = ops.convert_to_tensor(y_true)
        # Checked before any cast, which would fail with "Cast string to float".
        check_numeric_dtype("y_true", y_true, "integer class ids")
        if len(y_true.shape) == 4 and y_true.shape[-1] == 1:
            y_true = ops.squeeze(y_true, axis=-1)
        y_pred = ops.convert_to_tensor(y_pred)
        check_numeric_dtype("y_pred", y_pred, "scores or class ids")
        if len(y_pred.shape) == len(y_true.shape) + 1:
            # float32 argmax: a float16 tie-break would differ from the
            # float32 reference, and argmax needs no more precision.
            pred_labels = ops.cast(ops.argmax(ops.cast(y_pred, "float32"), axis=-1), "int32")
        elif len(y_pred.shape) == len(y_true.shape):
            pred_labels = _as_labels(y_pred)
        else:
            raise ValueError(
                "`y_pred` must be scores [batch, height, width, num_classes] or labels "
                f"shaped like `y_true`; received y_pred shape {tuple(y_pred.shape)} "
                f"with y_true shape {tuple(y_true.shape)}."
            )
        if y_pred.shape[-1] is not None and len(y_pred.shape) == len(y_true.shape) + 1:
            if y_pred.shape[-1] != num_classes:
                raise ValueError(
                    f"`y_pred` must have num_classes={num_classes} entries on its last "
                    f"axis; received shape {tuple(y_pred.shape)}."
                )
        # Masks of another size would fail later with "Incompatible shapes".
        check_label_shape(y_true, y_pred)
        true_labels = _as_labels(y_true)

        valid = ops.logical_and(
            ops.logical_and(ops.greater_equal(true_labels, 0), ops.less(true_labels, num_classes)),
            ops.logical_and(ops.greater_equal(pred_labels, 0), ops.less(pred_labels, num_classes)),
        )
        if self.ignore_label is not None:
            valid = ops.logical_and(valid, ops.not_equal(true_labels, self.ignore_label))
        weights = ops.cast(valid, self.dtype)
        if sample_weight is not None:
            sample_weight = ops.cast(ops.convert_to_tensor(sample_weight), self.dtype)
            if len(sample_weight.shape) == len(weights.shape) + 1 and sample_weight.shape[-1] == 1:
                sample_weight = ops.squeeze(sample_weight, axis=-1)
            if len(sample_weight.shape) == 1:
                # One weight per image.
                sample_weight = ops.reshape(sample_weight, (-1,) + (1,) * (len(weights.shape) - 1))
            weights = weights * sample_weight

        # A segment sum over the flat cell index true * C + pred is the
        # confusion matrix; skipped pixels add weight 0 to cell 0, which keeps
        # every shape static for XLA. Memory is O(pixels), unlike a one-hot
        # matmul that is O(pixels * C).
        cell = ops.where(valid, true_labels * num_classes + pred_labels, 0)
        batch_confusion = ops.segment_sum(
            ops.reshape(ops.broadcast_to(weights, ops.shape(cell)), (-1,)),
            ops.reshape(cell, (-1,)),
            num_segments=num_classes * num_classes,
        )
        self.total_confusion.assign_add(
            ops.reshape(ops.cast(batch_confusion, self.dtype), (num_classes, num_classes))
        )

    def reset_state(self):
        """Zero the accumulated confusion matrix."""
        self.total_confusion.assign(ops.zeros_like(self.total_confusion))

    def result(self):
        """The metric value computed from the accumulated matrix."""
        return self._from_confusion(self.total_confusion)

    def _from_confusion(self, confusion):
        raise NotImplementedError(
            f"{type(self).__name__} must implement `_from_confusion(confusion)`."
        )

    def confusion_matrix(self):
        """The accumulated matrix as a numpy float64 `[C, C]` array (rows true)."""
        return np.asarray(ops.convert_to_numpy(self.total_confusion), dtype=np.float64)

    def per_class(self):
        """Per-class IoU as a numpy `[C]` array, NaN for classes never seen."""
        return per_class_iou(self.confusion_matrix())

    def get_config(self):
        config = super().get_config()
        config.update({"num_classes": self.num_classes, "ignore_label": self.ignore_label})
        return config


@keras.saving.register_keras_serializable(package="kerasvision")
@_fill_doc
class MeanIoU(ConfusionMatrixMetric):
    """Mean intersection-over-union over the classes present in truth or
    prediction (classes with an empty union are left out, as in
    `keras.metrics.MeanIoU`).

    `IoU_c = TP_c / (TP_c + FP_c + FN_c)`; `result()` is a scalar.

    Args:
        {common_args}
    """

    def __init__(self, num_classes, ignore_label=IGNORE_LABEL, name="mean_iou", dtype=None):
        super().__init__(num_classes, ignore_label=ignore_label, name=name, dtype=dtype)

    def _from_confusion(self, confusion):
        return _mean_over_present(*_iou_and_present(confusion))


@keras.saving.register_keras_serializable(package="kerasvision")
@_fill_doc
class PerClassIoU(ConfusionMatrixMetric):
    """IoU of every class: `result()` is a `[C]` vector, NaN for classes
    absent from both truth and prediction.

    It works in `compile(metrics=...)`: `evaluate(return_dict=True)` returns
    the array, but progress bars and callbacks that expect scalars print its
    mean (NaN as soon as one class is absent), so prefer `MeanIoU` for
    monitoring and read per-class values with `per_class()` (numpy) or
    `per_class_iou(metric.confusion_matrix())` after `evaluate`.

    Args:
        {common_args}
    """

    def __init__(self, num_classes, ignore_label=IGNORE_LABEL, name="per_class_iou", dtype=None):
        super().__init__(num_classes, ignore_label=ignore_label, name=name, dtype=dtype)

    def _from_confusion(self, confusion):
        iou, present = _iou_and_present(confusion)
        return ops.where(ops.greater(present, 0), iou, float("nan"))


@keras.saving.register_keras_serializable(package="kerasvision")
@_fill_doc
class MeanDice(ConfusionMatrixMetric):
    """Mean Dice (F1) over the classes present in truth or prediction.

    `Dice_c = 2 TP_c / (2 TP_c + FP_c + FN_c)`, from the matrix accumulated
    over the whole dataset (not averaged per image); `result()` is a scalar.
    `per_class()` returns the per-class Dice.

    Args:
        {common_args}
    """

    def __init__(self, num_classes, ignore_label=IGNORE_LABEL, name="mean_dice", dtype=None):
        super().__init__(num_classes, ignore_label=ignore_label, name=name, dtype=dtype)

    def _from_confusion(self, confusion):
        tp, rows, cols = _confusion_terms(confusion)
        total = rows + cols
        dice = ops.divide_no_nan(2.0 * tp, total)
        return _mean_over_present(dice, ops.cast(ops.greater(total, 0), "float32"))

    def per_class(self):
        """Per-class Dice as a numpy `[C]` array, NaN for classes never seen."""
        return per_class_dice(self.confusion_matrix())


@keras.saving.register_keras_serializable(package="kerasvision")
@_fill_doc
class PixelAccuracy(ConfusionMatrixMetric):
    """Fraction of non-ignored pixels whose predicted class is right:
    `trace(confusion) / sum(confusion)`; `result()` is a scalar (0 before any
    pixel is counted).

    Args:
        {common_args}
    """

    def __init__(self, num_classes, ignore_label=IGNORE_LABEL, name="pixel_accuracy", dtype=None):
        super().__init__(num_classes, ignore_label=ignore_label, name=name, dtype=dtype)

    def _from_confusion(self, confusion):
        tp, rows, _ = _confusion_terms(confusion)
        return ops.divide_no_nan(ops.sum(tp), ops.sum(rows))


@keras.saving.register_keras_serializable(package="kerasvision")
@_fill_doc
class FrequencyWeightedIoU(ConfusionMatrixMetric):
    """IoU averaged over classes weighted by their share of true pixels:
    `sum_c (rows_c / total) * IoU_c` (Long et al. 2015, "Fully Convolutional
    Networks for Semantic Segmentation"); `result()` is a scalar.

    Args:
        {common_args}
    """

    def __init__(
        self, num_classes, ignore_label=IGNORE_LABEL, name="frequency_weighted_iou", dtype=None
    ):
        super().__init__(num_classes, ignore_label=ignore_label, name=name, dtype=dtype)

    def _from_confusion(self, confusion):
        iou, _ = _iou_and_present(confusion)
        _, rows, _ = _confusion_terms(confusion)
        return ops.divide_no_nan(ops.sum(rows * iou), ops.sum(rows))


# ---------------------------------------------------------------------------
# Numpy helpers for reports (float64; NaN marks classes never seen).
# ---------------------------------------------------------------------------


def confusion_matrix_np(y_true, y_pred_labels, num_classes, ignore_label=IGNORE_LABEL):
    """Confusion matrix of label arrays, in numpy.

    Args:
        y_true: int array of labels, any shape (e.g. `[batch, H, W]`).
        y_pred_labels: int array of predicted labels, same shape as `y_true`
            (take `argmax(-1)` of scores first).
        num_classes: int >= 2.
        ignore_label: int or None; pixels with this true label are skipped,
            as are labels outside `[0, num_classes)`.

    Returns:
        int64 `[num_classes, num_classes]` array, rows true, columns predicted.
    """
    num_classes = check_num_classes(num_classes)
    ignore_label = _check_ignore_label(ignore_label)
    y_true = np.asarray(y_true)
    y_pred_labels = np.asarray(y_pred_labels)
    if y_true.ndim == y_pred_labels.ndim + 1 and y_true.shape[-1] == 1:
        y_true = y_true[..., 0]
    if y_true.shape != y_pred_labels.shape:
        raise ValueError(
            "`y_pred_labels` must have the shape of `y_true`; received "
            f"y_true shape {y_true.shape} and y_pred_labels shape {y_pred_labels.shape}."
        )
    y_true = y_true.astype(np.int64).ravel()
    y_pred_labels = y_pred_labels.astype(np.int64).ravel()
    keep = (y_true >= 0) & (y_true < num_classes)
    keep &= (y_pred_labels >= 0) & (y_pred_labels < num_classes)
    if ignore_label is not None:
        keep &= y_true != ignore_label
    cells = y_true[keep] * num_classes + y_pred_labels[keep]
    return np.bincount(cells, minlength=num_classes**2).reshape(num_classes, num_classes)


def _np_terms(confusion):
    confusion = np.asarray(confusion, dtype=np.float64)
    if confusion.ndim != 2 or confusion.shape[0] != confusion.shape[1]:
        raise ValueError(
            f"`confusion` must be a square [C, C] matrix; received shape {confusion.shape}."
        )
    return np.diag(confusion), confusion.sum(axis=1), confusion.sum(axis=0)


def per_class_iou(confusion):
    """Per-class IoU `[C]` from a `[C, C]` confusion matrix, NaN where the
    class is absent from both truth and prediction."""
    tp, rows, cols = _np_terms(confusion)
    union = rows + cols - tp
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(union > 0, tp / np.where(union > 0, union, 1.0), np.nan)


def per_class_dice(confusion):
    """Per-class Dice `[C]` from a `[C, C]` confusion matrix, NaN where the
    class is absent from both truth and prediction."""
    tp, rows, cols = _np_terms(confusion)
    total = rows + cols
    return np.where(total > 0, 2.0 * tp / np.where(total > 0, total, 1.0), np.nan)


def _nanmean_or_zero(values):
    present = ~np.isnan(values)
    return float(values[present].mean()) if present.any() else 0.0


def mean_iou(confusion):
    """Mean IoU over present classes (0.0 for an empty matrix), as `MeanIoU`."""
    return _nanmean_or_zero(per_class_iou(confusion))


def mean_dice(confusion):
    """Mean Dice over present classes (0.0 for an empty matrix), as `MeanDice`."""
    return _nanmean_or_zero(per_class_dice(confusion))


def pixel_accuracy(confusion):
    """`trace / sum` of a `[C, C]` confusion matrix (0.0 when empty)."""
    tp, rows, _ = _np_terms(confusion)
    total = rows.sum()
    return float(tp.sum() / total) if total > 0 else 0.0


def frequency_weighted_iou(confusion):
    """IoU weighted by each class's share of true pixels (0.0 when empty)."""
    _, rows, _ = _np_terms(confusion)
    total = rows.sum()
    if total <= 0:
        return 0.0
    return float(np.nansum(rows / total * per_class_iou(confusion)))


def segmentation_report(confusion, class_names=None):
    """A plain-text table of per-class IoU/Dice and the summary metrics.

    Args:
        confusion: `[C, C]` confusion matrix (rows true), e.g.
            `metric.confusion_matrix()`.
        class_names: None or a list of `C` names (default "class_<i>").

    Returns:
        str, one line per class then mIoU, mean Dice, pixel accuracy and
        frequency-weighted IoU; "n/a" marks classes never seen.
    """
    confusion = np.asarray(confusion, dtype=np.float64)
    _np_terms(confusion)
    num_classes = confusion.shape[0]
    if class_names is None:
        class_names = [f"class_{i}" for i in range(num_classes)]
    class_names = [str(n) for n in class_names]
    if len(class_names) != num_classes:
        raise ValueError(
            f"`class_names` must have one name per class ({num_classes}); "
            f"received {len(class_names)} names: class_names={class_names!r}."
        )
    width = max(len("class"), *(len(n) for n in class_names))
    ious, dices, pixels = per_class_iou(confusion), per_class_dice(confusion), confusion.sum(axis=1)

    def fmt(value):
        return "   n/a" if np.isnan(value) else f"{value:6.4f}"

    lines = [f"{'class':<{width}}  {'IoU':>6}  {'Dice':>6}  {'pixels':>10}"]
    for name, iou, dice, count in zip(class_names, ious, dices, pixels):
        lines.append(f"{name:<{width}}  {fmt(iou)}  {fmt(dice)}  {count:10.0f}")
    lines.append(f"mIoU {mean_iou(confusion):.4f}  mean Dice {mean_dice(confusion):.4f}  "
                 f"pixel accuracy {pixel_accuracy(confusion):.4f}  "
                 f"FW IoU {frequency_weighted_iou(confusion):.4f}")
    return "\n".join(lines)


# ===========================================================================
# Sample-quality metrics (FID / KID) for generative models.
# Reserved: another engineer adds them below this line. Keep the section last.
# ===========================================================================
#
# FID (Heusel et al. 2017, "GANs Trained by a Two Time-Scale Update Rule
# Converge to a Local Nash Equilibrium") compares Gaussians fitted to the
# features of real and generated images; KID (Binkowski et al. 2018,
# "Demystifying MMD GANs") is an unbiased MMD^2 between the feature sets with
# the cubic polynomial kernel, unbiased for small sample sizes where FID is
# biased upwards. Both are computed in numpy float64 from features of any
# `FeatureExtractor`: InceptionV3's pool features (the published metric) when
# its ImageNet weights are available, otherwise a small classifier trained
# once on the embedded shapes dataset (comparable between our models, not
# with published numbers).
#
# Image contract of this section: RGB in [0, 255] (uint8 or float), like the
# rest of the package; generators' [-1, 1] outputs are mapped with
# `value_range=(-1, 1)` in `sample_quality` / `FeatureExtractor.__call__`.


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
    rng = np.random.default_rng(check_int("seed", seed, minimum=0))

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
        from kerasvision.layers import ImagePreprocessing

        self.model = model
        self.image_size = check_int("image_size", image_size, minimum=1)
        self.preprocessing = ImagePreprocessing(preprocessing)
        self.name = name
        self._predict = None

    def __call__(self, images, value_range=(0, 255), batch_size=64):
        import tensorflow as tf

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
        `shapes_feature_extractor` instead.
    """
    import os

    from kerasvision.backbones import keras_cache_dir

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
                "there, pass weights='/path/to/file.h5', or use shapes_feature_extractor() "
                "for features trained on the embedded data."
            ) from error
    model = keras.applications.InceptionV3(
        include_top=False, weights=weights, input_shape=(299, 299, 3), pooling="avg"
    )
    return FeatureExtractor(model, 299, preprocessing="tf", name="inception_v3")


def _default_cache_dir():
    import os

    home = os.environ.get("KERAS_HOME", os.path.join(os.path.expanduser("~"), ".keras"))
    return os.path.join(home, "kerasvision")


def build_shapes_feature_classifier(image_size=32, width=32, num_classes=4, feature_dim=128):
    """The small CNN whose penultimate layer gives `shapes_feature_extractor`'s features.

    Three stages of two 3x3 ReLU convolutions and 2x2 max pooling (no batch
    normalisation: this small network trains well on the shapes without it),
    global average pooling, a `feature_dim` dense layer named "features"
    (ReLU) and the class logits.

    Args:
        image_size: int, multiple of 8.
        width: int, channels of the first stage (doubled per stage).
        num_classes: int >= 2.
        feature_dim: int >= 1.

    Returns:
        A functional `keras.Model`, images `[N, S, S, 3]` in [0, 1] -> logits.
    """
    from kerasvision.layers import apply_conv_block
    from kerasvision.validation import check_image_shape

    check_image_shape((image_size, image_size, 3), multiple_of=8, name="image_size")
    width = check_int("width", width, minimum=1)
    feature_dim = check_int("feature_dim", feature_dim, minimum=1)
    inputs = keras.Input((image_size, image_size, 3), name="images")
    x = inputs
    for stage in range(3):
        x = apply_conv_block(x, width * 2**stage, name=f"stage{stage + 1}")
        x = keras.layers.MaxPooling2D(2, name=f"stage{stage + 1}_pool")(x)
    x = keras.layers.GlobalAveragePooling2D(name="pool")(x)
    x = keras.layers.Dense(feature_dim, activation="relu", name="features")(x)
    outputs = keras.layers.Dense(num_classes, name="logits")(x)
    return keras.Model(inputs, outputs, name="shapes_feature_classifier")


def shapes_feature_extractor(cache_dir=None, image_size=32, num_images=8192, epochs=12,
                             batch_size=64, width=32, seed=0, verbose=0):
    """Features of a classifier trained on `load_shapes_classification`, cached.

    The offline substitute for InceptionV3: the first call trains a small CNN
    to tell the four shapes apart (12 epochs, about 100 s on 2 cores: held-out
    accuracy 0.999, and 99% of real test images get a top probability >= 0.9,
    against 0.978 and 82% after 4 epochs; the generative recipes count samples
    it recognises) (held-out accuracy is printed when
    `verbose`); its 128-d "features" layer (the penultimate), rescaled so that
    real images' features have root-mean-square 1, embeds images. That
    feature model is saved to `<cache_dir>/shapes_features_<settings>.keras`,
    and later calls with the same settings load it. The numbers are only
    comparable between runs that use the same cached model.

    Args:
        cache_dir: str, default `$KERAS_HOME/kerasvision` (`~/.keras/kerasvision`).
        image_size: int, multiple of 8, the classifier's input side (images of
            other sizes are resized).
        num_images, epochs, batch_size, width, seed: training settings (part of
            the cache file name).
        verbose: int, `fit` verbosity; > 0 also prints the held-out accuracy.

    Returns:
        A `FeatureExtractor` with `trained` (bool: trained by this call),
        `accuracy` (held-out accuracy, or None when loaded from the cache),
        `path` (the cache file) and `classifier` (the whole classifier,
        images `[N, S, S, 3]` in [0, 1] -> logits of the four shapes, cached
        beside it) attributes.
    """
    import os

    from kerasvision.data import load_shapes_classification

    image_size = check_int("image_size", image_size, minimum=16)
    num_images = check_int("num_images", num_images, minimum=1)
    epochs = check_int("epochs", epochs, minimum=1)
    batch_size = check_int("batch_size", batch_size, minimum=1)
    cache_dir = os.fspath(cache_dir) if cache_dir is not None else _default_cache_dir()
    path = os.path.join(
        cache_dir,
        f"shapes_features_s{image_size}_n{num_images}_e{epochs}_w{width}_seed{seed}.keras",
    )
    classifier_path = path.replace("shapes_features_", "shapes_classifier_")
    accuracy, trained = None, False
    if os.path.exists(path) and os.path.exists(classifier_path):
        features = keras.saving.load_model(path, safe_mode=True)
        classifier = keras.saving.load_model(classifier_path, safe_mode=True)
    else:
        keras.utils.set_random_seed(seed)
        classifier = build_shapes_feature_classifier(image_size, width=width)
        # Scale to [0, 1] outside the model: the extractor applies the same
        # "unit" preprocessing at feature time.
        train = load_shapes_classification("train", num_images, image_size, seed)
        train = train.map(lambda x, y: (x / 255.0, y)).shuffle(4096, seed=seed).batch(batch_size)
        classifier.compile(
            keras.optimizers.Adam(1e-3),
            keras.losses.SparseCategoricalCrossentropy(from_logits=True),
            metrics=["accuracy"],
        )
        classifier.fit(train, epochs=epochs, shuffle=False, verbose=verbose)  # the dataset shuffles
        validation = load_shapes_classification(
            "validation", min(1024, num_images), image_size, seed
        ).map(lambda x, y: (x / 255.0, y)).batch(256)
        accuracy = float(classifier.evaluate(validation, verbose=0, return_dict=True)["accuracy"])
        # ReLU features have an arbitrary scale, which the cubic KID kernel
        # raises to the third power: rescale so real images' features have
        # root-mean-square 1, about the scale of InceptionV3's pool features.
        pooled = classifier.get_layer("features").output
        raw = keras.Model(classifier.inputs, pooled)
        values = np.concatenate([np.asarray(raw(x, training=False)) for x, _ in validation])
        scale = float(np.sqrt(np.mean(values**2))) or 1.0
        features = keras.Model(
            classifier.inputs,
            keras.layers.Rescaling(1.0 / scale, name="features_rms1")(pooled),
            name="shapes_features",
        )
        if verbose:
            print(f"shapes feature classifier: held-out accuracy {accuracy:.3f}, saved to {path}")
        os.makedirs(cache_dir, exist_ok=True)
        # Write then rename: a concurrent reader never sees half a file.
        for model, final in ((classifier, classifier_path), (features, path)):
            temporary = f"{final}.{os.getpid()}.tmp.keras"
            model.save(temporary)
            os.replace(temporary, final)
        trained = True
    extractor = FeatureExtractor(features, image_size, preprocessing="unit", name="shapes_cnn")
    extractor.trained, extractor.accuracy, extractor.path = trained, accuracy, path
    extractor.classifier = classifier
    return extractor


def sample_quality(real_images, fake_images, extractor, value_range=(0, 255), kid_subset_size=1000,
                   kid_subsets=100, batch_size=64, seed=0):
    """FID and KID of generated images against real ones, on `extractor`'s features.

    Args:
        real_images, fake_images: `[N, H, W, 3]` arrays whose values span
            `value_range` (default [0, 255], the package's image contract; pass
            `(-1, 1)` for generator outputs). Sizes may differ from the
            extractor's (images are resized).
        extractor: a `FeatureExtractor` (`inception_feature_extractor()` or
            `shapes_feature_extractor()`), or a callable images -> features.
        value_range: `(low, high)` of both image sets.
        kid_subset_size, kid_subsets, seed: as in `kernel_distance`.
        batch_size: int, feature extraction batch size.

    Returns:
        dict `{"fid": float, "kid": float, "kid_std": float}`.

    Example:
        >>> extractor = shapes_feature_extractor()
        >>> sample_quality(real_uint8, model.generate(500), extractor)  # doctest: +SKIP
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
