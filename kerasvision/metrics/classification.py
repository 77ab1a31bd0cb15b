"""Classification metrics: a classifier's confusion matrix over a dataset, and its report.

The matrix counts images, rows true class and columns predicted; the report
reads per-class accuracy (recall) and the overall accuracy from it.

Example:

```python
confusion = kerasvision.metrics.classification_confusion_matrix(model, val_ds, 10)
print(kerasvision.metrics.classification_report(confusion, class_names))
```
"""

import numpy as np
import tensorflow as tf

from kerasvision.validation import check_num_classes


def classification_confusion_matrix(model, dataset, num_classes):
    """Confusion matrix of a classifier over a dataset.

    Args:
        model: maps images `[batch, H, W, 3]` to logits `[batch, num_classes]`.
        dataset: `tf.data.Dataset` of batched `(images, labels [batch])`.
        num_classes: int >= 2.

    Returns:
        numpy int64 `[num_classes, num_classes]`, rows true class, columns predicted.
    """
    num_classes = check_num_classes(num_classes)

    @tf.function
    def predict(images):
        return tf.argmax(model(images, training=False), axis=-1)

    confusion = np.zeros((num_classes, num_classes), np.int64)
    for images, labels in dataset:
        # Flattened (true, predicted) index: one bincount fills the whole matrix.
        index = labels.numpy().astype(np.int64) * num_classes + predict(images).numpy()
        confusion += np.bincount(index, minlength=num_classes**2).reshape(num_classes, num_classes)
    return confusion


def per_class_accuracy(confusion):
    """Fraction of each class's images classified correctly (recall), NaN for absent classes.

    Args:
        confusion: `[C, C]` counts, rows true class.

    Returns:
        float64 numpy `[C]`.
    """
    confusion = np.asarray(confusion, dtype=np.float64)
    totals = confusion.sum(axis=1)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(totals > 0, np.diag(confusion) / totals, np.nan)


def classification_report(confusion, class_names):
    """A text table of per-class accuracy and image counts, with the overall accuracy.

    Args:
        confusion: `[C, C]` counts, rows true class.
        class_names: sequence of `C` str.

    Returns:
        str, one line per class, then the overall accuracy.
    """
    confusion = np.asarray(confusion)
    class_names = [str(name) for name in class_names]
    if confusion.ndim != 2 or confusion.shape != (len(class_names),) * 2:
        raise ValueError(
            f"`confusion` must be a [C, C] matrix with one class name per row; received "
            f"shape {confusion.shape} and {len(class_names)} class_names={class_names!r}."
        )
    accuracies = per_class_accuracy(confusion)
    width = max(len("class"), *(len(name) for name in class_names))
    lines = [f"{'class':<{width}}  images  accuracy"]
    for name, count, accuracy in zip(class_names, confusion.sum(axis=1), accuracies):
        lines.append(f"{name:<{width}}  {int(count):>6}  {accuracy:>8.4f}")
    overall = np.trace(confusion) / max(confusion.sum(), 1)
    lines.append(f"{'overall':<{width}}  {int(confusion.sum()):>6}  {overall:>8.4f}")
    return "\n".join(lines)


def window_centre_accuracy(probabilities, mask, stride, window):
    """How often a sliding classifier's window centred on a shape names that shape.

    Reads the class-score map of a convolutionalised classifier (cell
    `(i, j)` classifies the `window` x `window` patch starting at pixel
    `(i * stride, j * stride)`) against the scene's true class mask.

    Args:
        probabilities: float `[h, w, C]` class scores per cell.
        mask: int `[H, W]` true class ids of the scene, 0 = background.
        stride: int, pixels between cells.
        window: int, side of the window each cell classifies.

    Returns:
        dict: `windows`, the cells whose window centre lies on a shape, and
        `accuracy`, the share of them whose most probable class is that
        shape (NaN when there are none).
    """
    probabilities = np.asarray(probabilities)
    mask = np.asarray(mask)
    rows, cols = probabilities.shape[:2]
    centre_y = window // 2 + stride * np.arange(rows)
    centre_x = window // 2 + stride * np.arange(cols)
    truth = mask[np.ix_(centre_y, centre_x)]
    on_shape = truth > 0
    correct = np.argmax(probabilities, axis=-1) == truth
    count = int(on_shape.sum())
    return {"windows": count, "accuracy": float(correct[on_shape].mean()) if count else float("nan")}
