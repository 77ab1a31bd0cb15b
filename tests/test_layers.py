import numpy as np
import pytest
import tensorflow as tf
import keras

from kerasvision.layers import (
    BilinearUpsamplingInitializer,
    ImagePreprocessing,
    apply_conv_block,
    apply_upsampling,
    bilinear_upsampling_kernel,
)
from tests.helpers import assert_config_round_trip, assert_keras_file_round_trip


@pytest.mark.parametrize("factor", [2, 4, 8])
def test_bilinear_transpose_matches_resize_in_the_interior(factor):
    rng = np.random.default_rng(0)
    x = rng.random((1, 5, 6, 3)).astype("float32")
    inputs = keras.Input((5, 6, 3))
    model = keras.Model(inputs, apply_upsampling(inputs, factor, method="transpose"))
    upsampled = model(x).numpy()
    reference = tf.image.resize(x, (5 * factor, 6 * factor), method="bilinear").numpy()
    assert upsampled.shape == reference.shape
    # Borders differ: the transposed convolution sees zeros beyond the edge.
    interior = (slice(None), slice(factor, -factor), slice(factor, -factor))
    np.testing.assert_allclose(upsampled[interior], reference[interior], atol=1e-5)


def test_bilinear_kernel_sums_to_factor_squared_per_channel():
    # Each output pixel receives weights summing to 1 from 4 inputs; over the
    # whole 2f x 2f kernel that is f^2.
    kernel = bilinear_upsampling_kernel(4, 2)
    assert kernel.shape == (8, 8, 2, 2)
    np.testing.assert_allclose(kernel[:, :, 0, 0].sum(), 16.0, rtol=1e-6)
    assert np.all(kernel[:, :, 0, 1] == 0)


def test_bilinear_initializer_rejects_wrong_kernel():
    with pytest.raises(ValueError, match="4x4 kernel"):
        BilinearUpsamplingInitializer(2)((3, 3, 2, 2))
    with pytest.raises(ValueError, match="factor"):
        BilinearUpsamplingInitializer(0)


def test_resize_upsampling_shape_and_filters():
    inputs = keras.Input((4, 4, 8))
    outputs = apply_upsampling(inputs, 4, filters=3, method="resize", name="up")
    model = keras.Model(inputs, outputs)
    assert model.output_shape == (None, 16, 16, 3)
    assert model.get_layer("up_conv").filters == 3
    with pytest.raises(ValueError, match="method"):
        apply_upsampling(inputs, 2, method="nearest")


def test_caffe_preprocessing_matches_keras_applications():
    images = np.random.default_rng(1).uniform(0, 255, (2, 8, 8, 3)).astype("float32")
    ours = ImagePreprocessing("caffe")(images).numpy()
    reference = keras.applications.vgg16.preprocess_input(images.copy())
    np.testing.assert_allclose(ours, reference, atol=1e-4)


@pytest.mark.parametrize("mode, low, high", [("tf", -1, 1), ("unit", 0, 1)])
def test_scaling_preprocessing_ranges(mode, low, high):
    out = ImagePreprocessing(mode)(np.array([[[[0, 255, 127.5]]]], "float32")).numpy()
    np.testing.assert_allclose(out[0, 0, 0, :2], [low, high], atol=1e-6)


def test_preprocessing_stays_float32_under_mixed_precision():
    keras.mixed_precision.set_global_policy("mixed_bfloat16")
    layer = ImagePreprocessing("caffe")
    assert layer(np.zeros((1, 2, 2, 3), "uint8")).dtype == "float32"


def test_custom_layers_round_trip(tmp_path):
    assert_config_round_trip(ImagePreprocessing("torch"))
    assert_config_round_trip(BilinearUpsamplingInitializer(4))
    inputs = keras.Input((8, 8, 3))
    x = ImagePreprocessing("caffe")(inputs)
    x = apply_conv_block(x, 4, batch_norm=True, name="block")
    outputs = apply_upsampling(x, 2, name="up")
    model = keras.Model(inputs, outputs)
    data = np.random.default_rng(2).uniform(0, 255, (2, 8, 8, 3)).astype("float32")
    assert_keras_file_round_trip(model, data, tmp_path / "layers.keras")


def test_conv_block_names_derive_from_prefix():
    inputs = keras.Input((8, 8, 3))
    model = keras.Model(inputs, apply_conv_block(inputs, 4, num_convs=3, batch_norm=True, name="enc1"))
    names = {layer.name for layer in model.layers}
    assert {"enc1_conv1", "enc1_conv3", "enc1_bn2", "enc1_relu3"} <= names
    assert not model.get_layer("enc1_conv1").use_bias
