import numpy as np
import pytest
import keras

from kerasvision.models.fcn import build_fcn
from kerasvision.layers import bilinear_upsampling_kernel
from tests.helpers import assert_keras_file_round_trip


def _tiny_fcn(**kwargs):
    arguments = {"num_classes": 3, "input_shape": (64, 64, 3), "weights": None, "fc_units": 16}
    return build_fcn(**{**arguments, **kwargs})


@pytest.mark.parametrize("variant, skips", [("32s", set()), ("16s", {"score_pool4"}), ("8s", {"score_pool4", "score_pool3"})])
def test_variants_fuse_the_paper_skips(variant, skips):
    model = _tiny_fcn(variant=variant)
    assert model(np.zeros((2, 64, 64, 3), "float32")).shape == (2, 64, 64, 3)
    names = {layer.name for layer in model.layers}
    assert {name for name in names if name.startswith("score_pool")} == skips
    for name in skips:  # zero-initialised: the finer net starts as its parent
        assert not np.any(model.get_layer(name).get_weights()[0])
    final = {"32s": "upscore32", "16s": "upscore16", "8s": "upscore8"}[variant]
    kernel = model.get_layer(f"{final}_transpose").get_weights()[0]
    np.testing.assert_array_equal(kernel, bilinear_upsampling_kernel(int(variant[:-1]), 3))


def test_resnet50_variant_and_resize_upsampling():
    model = _tiny_fcn(backbone="resnet50", upsampling="resize", variant="8s")
    assert model(np.zeros((1, 64, 64, 3), "float32")).shape == (1, 64, 64, 3)
    assert "fc6" not in {layer.name for layer in model.layers}
    assert model.get_layer("score_pool3").input.shape[-1] == 512


def test_fc_layers_are_the_convolutionalised_classifier(tmp_path):
    """At 224x224, fc7 at the centre cell equals the VGG16 classifier's fc2 output."""
    classifier = keras.applications.VGG16(include_top=True, weights=None)
    path = str(tmp_path / "vgg16_full.weights.h5")
    classifier.save_weights(path)
    model = build_fcn(3, (224, 224, 3), weights=path, variant="32s")
    images = np.random.default_rng(0).uniform(0, 255, (1, 224, 224, 3)).astype("float32")
    fc7 = keras.Model(model.input, model.get_layer("fc7").output)(images).numpy()
    preprocessed = keras.applications.vgg16.preprocess_input(images.copy())
    reference = keras.Model(classifier.input, classifier.get_layer("fc2").output)(preprocessed).numpy()
    np.testing.assert_allclose(fc7[0, 3, 3], reference[0], rtol=1e-3, atol=1e-3)


def test_loss_falls_on_a_tiny_task():
    keras.utils.set_random_seed(0)
    model = _tiny_fcn(variant="8s", input_shape=(32, 32, 3), dropout=0.0)
    images = np.zeros((4, 32, 32, 3), "float32")
    masks = np.zeros((4, 32, 32), "int32")
    images[:, 8:24, 8:24] = 255.0
    masks[:, 8:24, 8:24] = 1
    model.compile(keras.optimizers.Adam(1e-3), keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    history = model.fit(images, masks, epochs=8, verbose=0)
    assert history.history["loss"][-1] < 0.7 * history.history["loss"][0]


def test_keras_file_round_trip(tmp_path):
    model = _tiny_fcn()
    images = np.random.default_rng(1).uniform(0, 255, (2, 64, 64, 3)).astype("float32")
    assert_keras_file_round_trip(model, images, tmp_path / "fcn.keras")


def test_mixed_precision_gives_float32_logits():
    keras.mixed_precision.set_global_policy("mixed_bfloat16")
    model = _tiny_fcn(input_shape=(32, 32, 3))
    assert model(np.zeros((1, 32, 32, 3), "float32")).dtype == "float32"
    assert model.get_layer("score_fr").compute_dtype == "bfloat16"


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"backbone": "vgg11"}, "backbone"),
        ({"variant": "4s"}, "variant"),
        ({"num_classes": 1}, "num_classes"),
        ({"input_shape": (48, 48, 3)}, "multiples of the network stride 32"),
        ({"input_shape": (64, 64, 1)}, "3 channels"),
        ({"upsampling": "nearest"}, "upsampling"),
        ({"fc_units": 0}, "fc_units"),
        ({"weights": "/no/such/file.h5"}, "does not exist"),
    ],
)
def test_bad_arguments(kwargs, match):
    with pytest.raises(ValueError, match=match):
        _tiny_fcn(**kwargs)
