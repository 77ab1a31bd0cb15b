"""Segmentation metrics read from a streaming confusion matrix, and their numpy twins.

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
report it with the numpy helpers (`per_class_iou`, `segmentation_report`...);
`segmentation_confusion_matrix` runs a model over a whole dataset to get it.

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
import tensorflow as tf
from keras import ops

from kerasvision.validation import (
    IGNORE_LABEL,
    check_ignore_label,
    check_label_shape,
    check_num_classes,
    check_numeric_dtype,
    fill_doc,
)

_COMMON_ARGS_DOC = """num_classes: int >= 2, number of classes `C`.
        ignore_label: int or None, label whose pixels are skipped (default
            255); labels outside `[0, num_classes)` are always skipped.
        name: str, the metric name shown in Keras logs.
        dtype: float dtype of the accumulated matrix (default "float32")."""


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
@fill_doc(common_args=_COMMON_ARGS_DOC)
class ConfusionMatrixMetric(keras.metrics.Metric):
    """Base class: accumulates a `[C, C]` confusion matrix (rows true, columns
    predicted). Subclasses implement `_from_confusion(confusion)`, which maps
    the matrix tensor to the metric value. Keras's `keras.metrics.IoU` family
    keeps a similar matrix; `MeanIoU`'s docstring says why these classes do
    not build on it.

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
        self.ignore_label = check_ignore_label(ignore_label)
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
@fill_doc(common_args=_COMMON_ARGS_DOC)
class MeanIoU(ConfusionMatrixMetric):
    """Mean intersection-over-union over the classes present in truth or
    prediction (classes with an empty union are left out, as in
    `keras.metrics.MeanIoU`).

    `IoU_c = TP_c / (TP_c + FP_c + FN_c)`; `result()` is a scalar.

    Keras's class name, not Keras's class: this one takes scores (logits or
    probabilities) and skips `ignore_label` (255) by default. The name stays
    because saved models refer to it by its registered name,
    `kerasvision>MeanIoU`; in code, import it from `kerasvision.metrics`.
    Keras's own, `keras.metrics.MeanIoU(num_classes, ignore_class=255,
    sparse_y_pred=False)`, gives the same value on well-formed batches but
    falls short for segmentation (checked with Keras 3.15):

    - scores whose last axis is not `num_classes` pass silently: argmax ids
      `>= num_classes` are dropped as out of range, so a 4-class head on a
      3-class metric may count no pixel at all; here that raises, naming the
      shapes;
    - masks of another size than the scores fail with TensorFlow's
      "Incompatible shapes" between the flattened tensors;
    - its matrix is an integer variable: float `sample_weight`s are
      truncated (0.5 counts as 0) and a per-image weight `[batch]` is
      rejected;
    - nothing else reads its matrix (no Dice, pixel accuracy or
      frequency-weighted IoU); here `confusion_matrix()`, `per_class()` and
      the sibling classes of `ConfusionMatrixMetric` do.

    Args:
        {common_args}
    """

    def __init__(self, num_classes, ignore_label=IGNORE_LABEL, name="mean_iou", dtype=None):
        super().__init__(num_classes, ignore_label=ignore_label, name=name, dtype=dtype)

    def _from_confusion(self, confusion):
        return _mean_over_present(*_iou_and_present(confusion))


@keras.saving.register_keras_serializable(package="kerasvision")
@fill_doc(common_args=_COMMON_ARGS_DOC)
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
@fill_doc(common_args=_COMMON_ARGS_DOC)
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
@fill_doc(common_args=_COMMON_ARGS_DOC)
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
@fill_doc(common_args=_COMMON_ARGS_DOC)
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
    ignore_label = check_ignore_label(ignore_label)
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


# ---------------------------------------------------------------------------
# A model over a whole dataset.
# ---------------------------------------------------------------------------


def segmentation_confusion_matrix(model, dataset, num_classes, ignore_label=IGNORE_LABEL):
    """Confusion matrix of a segmentation model over a dataset.

    Args:
        model: maps images `[batch, H, W, 3]` to logits `[batch, H, W, C]`.
        dataset: `tf.data.Dataset` of batched `(images, masks [batch, H, W])`.
        num_classes: int >= 2.
        ignore_label: int or None, label whose pixels are skipped (default 255).

    Returns:
        numpy int64 `[num_classes, num_classes]`, rows true class, columns predicted.
    """
    metric = ConfusionMatrixMetric(num_classes, ignore_label=ignore_label)
    predict = tf.function(lambda images: model(images, training=False))
    for images, masks in dataset:
        metric.update_state(masks, predict(images))
    return np.rint(metric.confusion_matrix()).astype("int64")
