"""Tests for kerasvision.metrics.classification against counts made by hand."""

import keras
import numpy as np
import pytest
import tensorflow as tf

from kerasvision.metrics import (
    classification_confusion_matrix,
    classification_report,
    per_class_accuracy,
    window_centre_accuracy,
)


def test_confusion_matrix_and_per_class_accuracy_by_hand():
    # A "model" whose logits are the images' first pixel values: predictions known in advance.
    model = keras.Sequential([keras.Input((1, 1, 3)), keras.layers.Reshape((3,))])
    logits = np.array([[9, 0, 0], [0, 9, 0], [0, 9, 0], [0, 0, 9], [9, 0, 0]], "float32")
    labels = np.array([0, 1, 0, 2, 2], "int32")
    dataset = tf.data.Dataset.from_tensor_slices((logits.reshape(5, 1, 1, 3), labels)).batch(2)
    confusion = classification_confusion_matrix(model, dataset, 3)
    np.testing.assert_array_equal(confusion, [[1, 1, 0], [0, 1, 0], [1, 0, 1]])
    np.testing.assert_allclose(per_class_accuracy(confusion), [0.5, 1.0, 0.5])
    assert "overall       5    0.6000" in classification_report(confusion, ("a", "b", "c"))
    assert np.isnan(per_class_accuracy(np.zeros((2, 2)))).all()


def test_bad_arguments_raise():
    with pytest.raises(ValueError, match="num_classes"):
        classification_confusion_matrix(None, None, 1)
    with pytest.raises(ValueError, match="one class name per row"):
        classification_report(np.eye(3, dtype=int), ("a", "b"))


def test_window_centre_accuracy_by_hand():
    # Cells at stride 4 classify 4x4 windows: their centres are pixels 2, 6 and 10.
    mask = np.zeros((12, 12), np.int32)
    mask[2:6, 2:6] = 1  # under the centre of cell (0, 0)
    mask[6:10, 6:10] = 2  # under the centre of cell (1, 1)
    probabilities = np.zeros((3, 3, 3), np.float32)
    probabilities[..., 0] = 1.0  # background everywhere...
    probabilities[0, 0] = [0.1, 0.8, 0.1]  # ...but shape 1, right
    probabilities[1, 1] = [0.1, 0.8, 0.1]  # ...and shape 1 where shape 2 is: wrong
    result = window_centre_accuracy(probabilities, mask, stride=4, window=4)
    assert result == {"windows": 2, "accuracy": 0.5}
    empty = window_centre_accuracy(probabilities, np.zeros_like(mask), stride=4, window=4)
    assert empty["windows"] == 0 and np.isnan(empty["accuracy"])
