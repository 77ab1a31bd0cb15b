"""convolutionalize: the convolutional network equals the classifier on every window."""

import numpy as np
import pytest
import keras
from keras import layers

from kerasvision.models.classifier import build_lenet5, build_transfer_classifier
from kerasvision.models.convolutionalize import convolutionalize
from tests.helpers import assert_keras_file_round_trip
from tests.test_classifier import SIZE, _images, _softmax, _tiny_cnn


@pytest.mark.parametrize(
    "kwargs",
    [
        {"head": "flatten"},
        {"head": "global_average", "batch_norm": True, "pooling": "average"},
        {"head": "global_max", "dense_units": ()},
    ],
)
def test_convolutionalized_cnn_equals_the_classifier(kwargs):
    model = _tiny_cnn(augmentation=[layers.RandomFlip(seed=0)], **kwargs)
    dense = convolutionalize(model)
    images = _images(3)
    probabilities = dense(images)
    assert probabilities.shape == (3, 1, 1, 3)
    np.testing.assert_allclose(probabilities[:, 0, 0], _softmax(model(images, training=False)), atol=1e-5)
    # Two 2x2 poolings: stride 4, so 48 pixels hold (48 - 32) / 4 + 1 = 5 windows a side.
    scores = dense(_images(1, 48))
    assert scores.shape == (1, 5, 5, 3)
    np.testing.assert_allclose(np.sum(scores, axis=-1), 1.0, atol=1e-5)


def test_convolutionalized_map_is_the_classifier_slid_over_the_image():
    """With valid padding every map cell equals the classifier on its own window."""
    model = keras.Sequential(
        [
            keras.Input((12, 12, 3)),
            layers.Conv2D(4, 3, activation="relu"),
            layers.MaxPooling2D(2),
            layers.Flatten(),
            layers.Dropout(0.5),
            layers.Dense(6, activation="relu"),
            layers.Dense(3, activation="softmax"),
        ]
    )
    image = _images(1, 20)
    probabilities = keras.ops.convert_to_numpy(convolutionalize(model)(image))
    assert probabilities.shape == (1, 5, 5, 3)
    for row in range(5):
        for column in range(5):
            window = image[:, 2 * row : 2 * row + 12, 2 * column : 2 * column + 12]
            expected = keras.ops.convert_to_numpy(model(window, training=False))
            np.testing.assert_allclose(probabilities[0, row, column], expected[0], atol=1e-5)


def test_convolutionalized_lenet_and_transfer_classifier():
    lenet = build_lenet5(4)
    images = _images(2)
    np.testing.assert_allclose(convolutionalize(lenet)(images)[:, 0, 0], _softmax(lenet(images)), atol=1e-5)
    transfer = build_transfer_classifier("vgg16", 4, (SIZE, SIZE, 3), weights=None, dense_units=(8,))
    dense = convolutionalize(transfer)
    np.testing.assert_allclose(
        dense(images)[:, 0, 0], _softmax(transfer(images, training=False)), atol=1e-5
    )
    assert dense(_images(1, 96)).shape == (1, 3, 3, 4)  # stride 32


def test_convolutionalized_model_round_trips(tmp_path):
    dense = convolutionalize(_tiny_cnn())
    assert_keras_file_round_trip(dense, _images(1, 40), tmp_path / "dense.keras")


def test_convolutionalize_names_the_layer_it_cannot_convert():
    model = keras.Sequential(
        [
            keras.Input((8, 8, 3)),
            layers.Conv2D(4, 3, padding="same"),
            layers.Flatten(),
            layers.Dense(6),
            layers.Reshape((2, 3)),
            layers.Dense(2),
        ],
        name="odd",
    )
    with pytest.raises(ValueError, match=r"cannot convert layer 'reshape' \(Reshape\) of model 'odd'"):
        convolutionalize(model)
    no_flatten = keras.Sequential([keras.Input((8, 8, 3)), layers.Conv2D(2, 8), layers.Dense(2)], name="plain")
    with pytest.raises(ValueError, match="model 'plain' has no Flatten or GlobalPooling2D"):
        convolutionalize(no_flatten)
    with pytest.raises(ValueError, match="`model` must be a built Keras classifier"):
        convolutionalize(keras.Sequential([layers.Dense(2)]))


def test_convolutionalize_a_reloaded_classifier(tmp_path):
    """Reloaded models hold their layers' calls differently; conversion must not depend on it."""
    images = _images(2)
    inputs = keras.Input((SIZE, SIZE, 3))
    features = layers.Conv2D(4, 3, strides=4)(layers.Rescaling(1 / 255)(inputs))
    functional = keras.Model(inputs, layers.Dense(3)(layers.Flatten()(features)), name="functional_cnn")
    for model in (_tiny_cnn(), functional):
        path = tmp_path / f"{model.name}.keras"
        model.save(path)
        reloaded = keras.saving.load_model(path)
        np.testing.assert_allclose(
            convolutionalize(reloaded)(images)[:, 0, 0], _softmax(model(images, training=False)), atol=1e-5
        )
