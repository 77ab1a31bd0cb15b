"""SegNet and its layers: argmax pooling and unpooling against numpy, the model, the recipe."""

import json
import os

import numpy as np
import pytest
import keras
import tensorflow as tf

from kerasvision.layers import MaxPoolingWithArgmax2D, MaxUnpooling2D
from kerasvision.models.segnet import build_segnet
from tests.helpers import (
    assert_config_round_trip,
    assert_keras_file_round_trip,
    run_in_fresh_process,
)

VGG16_CONVOLUTIONS = 14_714_688  # keras.applications.VGG16(include_top=False).count_params()


def distinct_values(shape, seed=0):
    """Values without ties, so every pooling window has one maximum."""
    values = np.random.default_rng(seed).permutation(np.prod(shape)).astype("float32")
    return (values / values.size - 0.5).reshape(shape)


def numpy_pool_with_argmax(x, k=2):
    """2D max pooling (k x k, stride k, valid) and flat indices ((b*H + y)*W + x)*C + c."""
    batch, height, width, channels = x.shape
    out_h, out_w = height // k, width // k
    windows = x[:, : out_h * k, : out_w * k].reshape(batch, out_h, k, out_w, k, channels)
    windows = windows.transpose(0, 1, 3, 5, 2, 4).reshape(batch, out_h, out_w, channels, k * k)
    best = windows.argmax(-1)
    b, i, j, c = np.indices(best.shape)
    rows, cols = i * k + best // k, j * k + best % k
    return windows.max(-1), ((b * height + rows) * width + cols) * channels + c


def numpy_maxima_in_place(x, k=2):
    """x where it is its window's maximum, 0 elsewhere (what unpool(pool(x)) must give)."""
    _, argmax = numpy_pool_with_argmax(x, k)
    mask = np.zeros(x.size, bool)
    mask[argmax.ravel()] = True
    return np.where(mask.reshape(x.shape), x, 0.0)


def unpool_pool(x, output_shape=None):
    pooled, argmax = MaxPoolingWithArgmax2D()(x)
    return MaxUnpooling2D(2, output_shape=output_shape)([pooled, argmax])


# ----------------------------------------------------------------------------
# The layers against numpy
# ----------------------------------------------------------------------------


def test_pooling_and_unpooling_match_numpy():
    x = distinct_values((2, 6, 8, 3))
    pooled, argmax = MaxPoolingWithArgmax2D()(x)
    expected_pooled, expected_argmax = numpy_pool_with_argmax(x)
    np.testing.assert_array_equal(pooled.numpy(), expected_pooled)
    np.testing.assert_array_equal(argmax.numpy(), expected_argmax)
    # Each maximum back at its argmax position, zeros elsewhere.
    np.testing.assert_array_equal(unpool_pool(x).numpy(), numpy_maxima_in_place(x))


def test_gradient_is_the_weight_at_the_maxima_and_zero_elsewhere():
    x = tf.constant(distinct_values((2, 4, 6, 3), seed=1))
    weights = np.random.default_rng(2).normal(size=x.shape).astype("float32")
    with tf.GradientTape() as tape:
        tape.watch(x)
        loss = tf.reduce_sum(weights * unpool_pool(x))
    gradient = tape.gradient(loss, x).numpy()
    # By hand: d/dx_i of sum_j w_j [j is i's window maximum] x_j.
    _, argmax = numpy_pool_with_argmax(x.numpy())
    expected = np.zeros(x.shape.num_elements(), "float32")
    expected[argmax.ravel()] = weights.ravel()[argmax.ravel()]
    np.testing.assert_allclose(gradient, expected.reshape(x.shape), rtol=1e-6)


def test_any_batch_size_odd_sizes_and_mixed_precision():
    @tf.function(input_signature=[tf.TensorSpec([None, None, None, 3], tf.float32)])
    def dynamic(x):
        return unpool_pool(x)

    for batch in (1, 3):
        x = distinct_values((batch, 4, 6, 3), seed=batch)
        np.testing.assert_array_equal(dynamic(x).numpy(), numpy_maxima_in_place(x))
    # Odd sizes: "valid" pooling drops the last row/column; output_shape restores the size.
    x = distinct_values((2, 5, 7, 3), seed=3)
    restored = unpool_pool(x, output_shape=(5, 7)).numpy()
    assert restored.shape == (2, 5, 7, 3)
    np.testing.assert_array_equal(restored, numpy_maxima_in_place(x))

    keras.mixed_precision.set_global_policy("mixed_bfloat16")
    images = keras.Input((None, None, 3))
    pooled, argmax = MaxPoolingWithArgmax2D()(images)
    assert pooled.dtype == "bfloat16" and argmax.dtype == "int64"
    model = keras.Model(images, MaxUnpooling2D()([pooled, argmax]))
    x = distinct_values((2, 4, 4, 3), seed=4)
    variable = tf.Variable(x)
    with tf.GradientTape() as tape:
        out = model(variable)
        loss = tf.reduce_sum(tf.cast(out, "float32"))
    assert out.dtype == tf.bfloat16
    expected = numpy_maxima_in_place(x)
    np.testing.assert_allclose(out.numpy().astype("float32"), expected, atol=1e-2)
    np.testing.assert_array_equal(tape.gradient(loss, variable).numpy(), (expected != 0).astype("float32"))


def test_layers_serialize():
    for layer in (MaxPoolingWithArgmax2D(3, strides=2, padding="same"),
                  MaxUnpooling2D((2, 3), output_shape=(5, 7))):
        restored = assert_config_round_trip(layer)
        assert restored.get_config() == layer.get_config()


DISTRIBUTED_CODE = """
    import json
    import numpy as np, tensorflow as tf
    cpu = tf.config.list_physical_devices("CPU")[0]
    tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * 2)
    import keras
    from kerasvision.layers import MaxPoolingWithArgmax2D, MaxUnpooling2D

    rng = np.random.default_rng(0)
    pixels = rng.uniform(0, 255, (4, 32, 32, 3)).astype("float32")
    masks = rng.integers(0, 3, (4, 32, 32)).astype("int32")
    data = tf.data.Dataset.from_tensor_slices((pixels, masks)).batch(4)  # 2 per replica

    def tiny_segnet():
        # Two pooling/unpooling levels: SegNet's wiring at a fraction of its tracing
        # time. No BatchNorm: per-replica batch statistics legitimately differ.
        images = keras.Input((32, 32, 3))
        x = keras.layers.Conv2D(4, 3, padding="same", activation="relu")(images / 255.0)
        x, argmax1 = MaxPoolingWithArgmax2D()(x)
        x = keras.layers.Conv2D(8, 3, padding="same", activation="relu")(x)
        x, argmax2 = MaxPoolingWithArgmax2D()(x)
        x = keras.layers.Conv2D(8, 3, padding="same", activation="relu")(x)
        x = MaxUnpooling2D()([x, argmax2])
        x = keras.layers.Conv2D(4, 3, padding="same", activation="relu")(x)
        x = MaxUnpooling2D()([x, argmax1])
        return keras.Model(images, keras.layers.Conv2D(3, 3, padding="same")(x))

    def one_step(strategy):
        keras.utils.set_random_seed(0)
        with strategy.scope():
            model = tiny_segnet()
            # SGD: the update is linear in the gradient, so a wrong replica scaling shows.
            model.compile(keras.optimizers.SGD(0.1),
                          keras.losses.SparseCategoricalCrossentropy(from_logits=True), jit_compile=False)
        before = [v.numpy() for v in model.trainable_variables]
        model.fit(data, epochs=1, verbose=0)
        return [v.numpy() - b for v, b in zip(model.trainable_variables, before)]

    single = one_step(tf.distribute.get_strategy())
    mirrored = tf.distribute.MirroredStrategy(["/cpu:0", "/cpu:1"])
    distributed = one_step(mirrored)
    worst = max(float(np.max(np.abs(d - s) / (1e-6 + 1e-4 * np.abs(s)))) for d, s in zip(distributed, single))
    changed = sum(bool(np.any(s)) for s in single)
    print("RESULT " + json.dumps({"worst": worst, "changed": changed, "variables": len(single),
                                  "replicas": mirrored.num_replicas_in_sync}))
"""


@pytest.mark.slow  # a fresh process with two logical CPUs
def test_mirrored_step_over_two_cpus_equals_one_device():
    output = run_in_fresh_process(DISTRIBUTED_CODE, timeout=300)
    result = json.loads(next(line for line in output.splitlines() if line.startswith("RESULT "))[7:])
    assert result["replicas"] == 2
    assert result["changed"] == result["variables"], result  # the gradient reaches every weight
    assert result["worst"] <= 1.0, result


# ----------------------------------------------------------------------------
# The model
# ----------------------------------------------------------------------------


def test_scratch_segnet_mirrors_the_encoder():
    model = build_segnet(3, (32, 32, 3), backbone=None, filters=4)
    assert model(np.zeros((2, 32, 32, 3), "float32")).shape == (2, 32, 32, 3)
    assert model.output.dtype == "float32"
    pools = [layer for layer in model.layers if isinstance(layer, MaxPoolingWithArgmax2D)]
    unpools = [layer for layer in model.layers if isinstance(layer, MaxUnpooling2D)]
    assert len(pools) == len(unpools) == 5
    # Each stage's last convolution gives the next unpooling the channels its indices count.
    assert model.get_layer("decoder5_conv3").filters == 32 and model.get_layer("decoder2_conv2").filters == 4
    assert not any(isinstance(layer, keras.layers.MaxPooling2D) for layer in model.layers)


def test_vgg16_segnet_loads_registry_weights_and_counts_parameters(tmp_path):
    source = keras.applications.VGG16(include_top=False, weights=None, input_shape=(32, 32, 3))
    assert source.count_params() == VGG16_CONVOLUTIONS
    path = str(tmp_path / "vgg16_notop.weights.h5")
    source.save_weights(path)
    model = build_segnet(21, (32, 32, 3), backbone="vgg16", weights=path)
    encoder = model.get_layer("backbone")
    assert isinstance(encoder.get_layer("block3_pool"), MaxPoolingWithArgmax2D)
    for name in ("block1_conv1", "block5_conv3"):
        for copied, original in zip(encoder.get_layer(name).get_weights(), source.get_layer(name).get_weights()):
            np.testing.assert_array_equal(copied, original)
    assert model(np.zeros((1, 32, 32, 3), "float32")).shape == (1, 32, 32, 21)

    # The docstring's count, from the parts: the paper's decoder widths, 3x3
    # convolutions without bias, BatchNorm's 4 vectors, a 1x1 head with bias.
    decoder = [(512, 512), (512, 512), (512, 512),   # stage 5, then unpool to stage 4
               (512, 512), (512, 512), (512, 256),
               (256, 256), (256, 256), (256, 128),
               (128, 128), (128, 64),
               (64, 64), (64, 64)]
    convolutions = sum(9 * cin * cout for cin, cout in decoder)
    batch_norm = sum(4 * cout for _, cout in decoder)
    head = 64 * 21 + 21
    assert model.count_params() == VGG16_CONVOLUTIONS + convolutions + batch_norm + head == 29_476_757


def test_keras_file_round_trip(tmp_path):
    model = build_segnet(3, (32, 32, 3), backbone=None, filters=4)
    images = np.random.default_rng(1).uniform(0, 255, (2, 32, 32, 3)).astype("float32")
    assert_keras_file_round_trip(model, images, tmp_path / "segnet.keras")


def test_loss_falls_on_a_tiny_task():
    keras.utils.set_random_seed(0)
    model = build_segnet(2, (32, 32, 3), backbone=None, filters=8)
    rng = np.random.default_rng(0)
    images = rng.uniform(0, 80, (8, 32, 32, 3)).astype("float32")
    masks = np.zeros((8, 32, 32), "int32")
    for index in range(8):
        top, left = rng.integers(0, 16, 2)
        images[index, top : top + 12, left : left + 12] += 150
        masks[index, top : top + 12, left : left + 12] = 1
    model.compile(keras.optimizers.Adam(3e-3), keras.losses.SparseCategoricalCrossentropy(from_logits=True),
                  jit_compile=False)
    history = model.fit(images, masks, epochs=10, batch_size=4, verbose=0)
    assert history.history["loss"][-1] < 0.5 * history.history["loss"][0]


# ----------------------------------------------------------------------------
# The recipe
# ----------------------------------------------------------------------------


def test_recipe_smoke_run_exports(tmp_path):
    from recipes import segnet

    output_dir, export_dir = str(tmp_path / "run"), str(tmp_path / "export")
    summary = segnet.main(["--smoke", "--image-size", "32", "--filters", "4", "--verbose", "0",
                           "--output-dir", output_dir, "--export-dir", export_dir])
    assert np.isfinite(summary["mean_iou"]) and summary["export_path"] == os.path.join(export_dir, "1")
    for name in ("predictions.png", "summary.json", "best.weights.h5"):
        assert os.path.exists(os.path.join(output_dir, name)), name
    loaded = tf.saved_model.load(summary["export_path"])
    out = loaded.signatures["serving_default"](images=tf.zeros((3, 32, 32, 3), tf.uint8))
    assert out["class_ids"].shape == (3, 32, 32) and out["probabilities"].shape == (3, 32, 32, 5)


# ----------------------------------------------------------------------------
# Bad arguments
# ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"input_shape": (48, 48, 3)}, "multiples of the network stride 32"),
        ({"num_classes": 1}, "num_classes"),
        ({"backbone": "resnet50"}, "backbone"),
        ({"filters": 0}, "filters"),
        ({"decoder_filters": (8, 8)}, "decoder_filters"),
        ({"batch_norm": "yes"}, "batch_norm"),
        ({"backbone": "vgg16", "weights": "/no/such.h5"}, "does not exist"),
    ],
)
def test_bad_model_arguments(kwargs, match):
    arguments = {"num_classes": 3, "input_shape": (32, 32, 3), "backbone": None, "filters": 4}
    with pytest.raises(ValueError, match=match):
        build_segnet(**{**arguments, **kwargs})


@pytest.mark.parametrize(
    "make, match",
    [
        (lambda: MaxPoolingWithArgmax2D(0), "pool_size"),
        (lambda: MaxPoolingWithArgmax2D(2, padding="full"), "padding"),
        (lambda: MaxPoolingWithArgmax2D()(np.zeros((4, 4, 3), "float32")), "4D"),
        (lambda: MaxUnpooling2D(output_shape=(4,)), "output_shape"),
        (lambda: MaxUnpooling2D()(np.zeros((1, 2, 2, 3), "float32")), r"pair \[values, argmax\]"),
        (lambda: MaxUnpooling2D()([np.zeros((1, 2, 2, 3), "float32")] * 2), "argmax"),
        (lambda: MaxUnpooling2D()([np.zeros((1, 2, 2, 3), "float32"), np.zeros((1, 2, 3, 3), "int64")]),
         "same shape"),
    ],
)
def test_bad_layer_arguments(make, match):
    with pytest.raises(ValueError, match=match):
        make()
