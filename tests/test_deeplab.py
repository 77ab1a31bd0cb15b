import os

import keras
import numpy as np
import pytest
import tensorflow as tf

from kerasvision.models.deeplab import apply_aspp, build_deeplabv3plus
from kerasvision.tasks.cli import run
from recipes import deeplabv3plus
from tests.helpers import assert_keras_file_round_trip

SMALL = {"aspp_filters": 8, "decoder_filters": 8, "low_level_filters": 4,
         "encoder_filters": (4, 8, 8, 8), "atrous_rates": (1, 2, 3)}


@pytest.mark.parametrize("output_stride", [8, 16])
def test_scratch_encoder_shapes_and_output_stride(output_stride):
    model = build_deeplabv3plus(3, (64, 64, 3), backbone=None, output_stride=output_stride, **SMALL)
    logits = model(np.zeros((2, 64, 64, 3), "float32"))
    assert logits.shape == (2, 64, 64, 3) and logits.dtype == "float32"
    assert model.get_layer("aspp_projection_relu").output.shape[1:3] == (64 // output_stride,) * 2
    assert model.get_layer("decoder_concat").output.shape[1:3] == (16, 16)  # stride 4
    dilations = [layer.dilation_rate for layer in model.layers
                 if isinstance(layer, keras.layers.DepthwiseConv2D) and layer.name.startswith("stage")]
    # Past the output stride, the encoder's last stage dilates instead of striding.
    assert dilations[-2:] == ([(2, 2)] * 2 if output_stride == 8 else [(1, 1)] * 2)


def test_backbone_encoder_stops_at_stride_16():
    model = build_deeplabv3plus(4, (64, 64, 3), backbone="resnet50", weights=None,
                                aspp_filters=8, decoder_filters=8)
    assert model(np.zeros((1, 64, 64, 3), "float32")).shape == (1, 64, 64, 4)
    assert model.get_layer("aspp_projection_relu").output.shape[1:3] == (4, 4)
    names = {layer.name for layer in model.get_layer("backbone").get_layer("resnet50_features").layers}
    assert "conv4_block6_out" in names and not any(name.startswith("conv5") for name in names)
    # Separable ASPP branches by default: a depthwise atrous layer per rate.
    assert model.get_layer("aspp_rate6_depthwise").dilation_rate == (6, 6)


def test_aspp_matches_keras_cv_on_shared_weights():
    keras_cv = pytest.importorskip("keras_cv")
    rates, channels, filters = (2, 4, 6), 6, 8
    inputs = keras.Input((12, 12, channels))
    ours = keras.Model(inputs, apply_aspp(inputs, filters, rates, separable=False))
    reference = keras_cv.layers.SpatialPyramidPooling(dilation_rates=list(rates), num_channels=filters)
    reference.build((None, 12, 12, channels))
    rng = np.random.default_rng(0)
    prefixes = ["aspp_1x1"] + [f"aspp_rate{rate}" for rate in rates] + ["aspp_pool"]
    for prefix, branch in zip(prefixes + ["aspp_projection"],
                              reference.aspp_parallel_channels + [reference.projection]):
        for layer in branch.layers:
            if not layer.weights:
                continue
            # Random BatchNorm statistics, so that a swapped mean and variance would show.
            values = [rng.uniform(0.5, 1.5, w.shape) if "variance" in w.path
                      else rng.normal(0, 0.5, w.shape) for w in layer.weights]
            layer.set_weights(values)
            suffix = "conv" if isinstance(layer, keras.layers.Conv2D) else "bn"
            ours.get_layer(f"{prefix}_{suffix}").set_weights(values)
    features = rng.normal(0, 1, (3, 12, 12, channels)).astype("float32")
    for training in (False, True):
        expected = keras.ops.convert_to_numpy(reference(features, training=training))
        got = keras.ops.convert_to_numpy(ours(features, training=training))
        assert np.abs(expected).max() > 0.1
        np.testing.assert_allclose(got, expected, atol=1e-5)


def test_atrous_depthwise_layer_matches_a_numpy_dilated_convolution():
    rate, rng = 3, np.random.default_rng(1)
    x = rng.normal(size=(1, 9, 9, 2)).astype("float32")
    layer = keras.layers.DepthwiseConv2D(3, padding="same", dilation_rate=rate, use_bias=False)
    got = keras.ops.convert_to_numpy(layer(x))
    kernel = keras.ops.convert_to_numpy(layer.kernel)[..., 0]  # [3, 3, channels]
    padded = np.pad(x[0], ((rate, rate), (rate, rate), (0, 0)))
    expected = np.zeros_like(x[0])
    for i in range(3):
        for j in range(3):
            expected += kernel[i, j] * padded[i * rate : i * rate + 9, j * rate : j * rate + 9]
    np.testing.assert_allclose(got[0], expected, atol=1e-5)


def test_keras_file_round_trip(tmp_path):
    model = build_deeplabv3plus(3, (32, 32, 3), backbone=None, **SMALL)
    images = np.random.default_rng(2).uniform(0, 255, (2, 32, 32, 3)).astype("float32")
    assert_keras_file_round_trip(model, images, tmp_path / "deeplab.keras")


@pytest.mark.slow  # about 12 s of tracing; the layers' equality with keras-cv runs by default
def test_loss_falls_on_a_tiny_task():
    keras.utils.set_random_seed(0)
    model = build_deeplabv3plus(2, (32, 32, 3), backbone=None, dropout=0.0, **SMALL)
    rng = np.random.default_rng(0)
    images = rng.uniform(0, 80, (8, 32, 32, 3)).astype("float32")
    masks = np.zeros((8, 32, 32), "int32")
    for index in range(8):
        top, left = rng.integers(0, 16, 2)
        images[index, top : top + 12, left : left + 12] += 150
        masks[index, top : top + 12, left : left + 12] = 1
    model.compile(keras.optimizers.Adam(1e-2),
                  keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    history = model.fit(images, masks, epochs=12, batch_size=4, verbose=0)
    assert history.history["loss"][-1] < 0.5 * history.history["loss"][0]


def test_recipe_smoke_exports(tmp_path):
    export_dir = str(tmp_path / "export")
    summary = deeplabv3plus.main(["--smoke", "--output-dir", str(tmp_path / "run"),
                                  "--export-dir", export_dir, "--image-size", "32",
                                  "--aspp-filters", "8", "--decoder-filters", "8",
                                  "--encoder-filters", "4,8,8,8"])
    assert np.isfinite(summary["mean_iou"]) and summary["export_path"] == os.path.join(export_dir, "1")
    loaded = tf.saved_model.load(summary["export_path"])
    out = loaded.signatures["serving_default"](images=tf.zeros((1, 32, 32, 3), tf.uint8))
    assert out["class_ids"].shape == (1, 32, 32) and out["probabilities"].shape == (1, 32, 32, 5)


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"num_classes": 1}, "num_classes"),
        ({"input_shape": (40, 40, 3)}, "multiples of the network stride 16"),
        ({"output_stride": 32}, "output_stride"),
        ({"backbone": "resnet18"}, "backbone"),
        ({"backbone": "resnet50", "output_stride": 8}, "must be 16 with a registered backbone"),
        ({"atrous_rates": (6, 0)}, "atrous_rates"),
        ({"atrous_rates": (6, 6)}, "distinct"),
        ({"encoder_filters": (8, 8)}, "encoder_filters"),
        ({"separable": "yes"}, "separable"),
        ({"dropout": 1.5}, "dropout"),
    ],
)
def test_bad_arguments(kwargs, match):
    arguments = {"num_classes": 3, "input_shape": (64, 64, 3), "backbone": None, "weights": None,
                 **{key: value for key, value in SMALL.items()}}
    with pytest.raises(ValueError, match=match):
        build_deeplabv3plus(**{**arguments, **kwargs})


def test_aspp_rejects_a_dynamic_size():
    with pytest.raises(ValueError, match="static height and width"):
        apply_aspp(keras.Input((None, None, 8)), 4, (1, 2))


@pytest.mark.parametrize("flags, message", [(["--atrous-rates", "2,x"], "--atrous-rates"),
                                            (["--encoder-filters", "0,8"], "--encoder-filters"),
                                            (["--output-stride", "4"], "--output-stride")])
def test_recipe_bad_flags_exit_2_naming_the_flag(flags, message, tmp_path, capsys):
    with pytest.raises(SystemExit) as exit_info:
        run(deeplabv3plus.main, ["--smoke", "--output-dir", str(tmp_path), *flags])
    assert exit_info.value.code == 2
    # argparse prints its usage first; the error is the last line.
    assert message in capsys.readouterr().err.strip().splitlines()[-1]
