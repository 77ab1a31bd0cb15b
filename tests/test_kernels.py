"""kerasvision.kernels: the fused classes compute what Keras's classes compute, the Keras
internals they rely on still exist, and `use_fused(False)` gives the plain Keras classes."""

import inspect

import keras
import numpy as np
import pytest
import tensorflow as tf

from kerasvision import kernels
from kerasvision.backbones import build_backbone
from kerasvision.kernels import FusedAdam, FusedBatchNormalization, MatmulConv2D
from kerasvision.models.classifier import build_cnn_classifier
from kerasvision.models.fcn import build_fcn
from kerasvision.models.gan import GAN, build_dcgan_discriminator, build_dcgan_generator
from kerasvision.models.unet import build_unet
from kerasvision.tasks.classification import compile_classifier
from tests.helpers import (
    assert_config_round_trip,
    assert_keras_file_round_trip,
    run_in_fresh_process,
)


@pytest.fixture(autouse=True)
def _fused_kernels_back_on():
    """Every test starts, and leaves, with the fused kernels on (the default)."""
    kernels.use_fused(True)
    yield
    kernels.use_fused(True)


def _values_and_gradients(layer, x, training=None):
    """Output, d(sum(y^3))/dx and d/dweights: a non-uniform upstream gradient."""
    x = tf.constant(x)
    with tf.GradientTape() as tape:
        tape.watch(x)
        y = layer(x, training=training) if training is not None else layer(x)
        loss = tf.reduce_sum(tf.cast(y, "float32") ** 3)
    return [y] + tape.gradient(loss, [x] + layer.trainable_variables)


def _assert_close(actual, expected, rtol=1e-4):
    for a, e in zip(actual, expected):
        a, e = np.asarray(a, "float32"), np.asarray(e, "float32")
        assert a.shape == e.shape
        # Relative to each tensor's scale: sums of products round differently per kernel.
        np.testing.assert_allclose(a, e, atol=rtol * max(1.0, float(np.abs(e).max())), rtol=rtol)


@pytest.mark.parametrize(
    "kernel_size, strides, padding, dilation_rate",
    [(7, 1, "same", 1), (1, 1, "valid", 1), (3, 2, "valid", 1), (3, 2, "same", 1), (3, 1, "same", 2)],
)
def test_matmul_conv_equals_conv2d_forward_and_gradients(kernel_size, strides, padding, dilation_rate):
    x = np.random.default_rng(0).normal(size=(2, 9, 7, 5)).astype("float32")
    kwargs = dict(filters=6, kernel_size=kernel_size, strides=strides, padding=padding,
                  dilation_rate=dilation_rate, activation="relu")
    reference, fused = keras.layers.Conv2D(**kwargs), MatmulConv2D(**kwargs)
    reference.build(x.shape)
    fused.build(x.shape)
    fused.set_weights(reference.get_weights())
    _assert_close(_values_and_gradients(fused, x), _values_and_gradients(reference, x))


def test_matmul_conv_takes_any_batch_and_compiles_under_xla():
    layer = MatmulConv2D(4, 3, padding="same")
    compiled = tf.function(layer, jit_compile=True)
    for batch in (1, 3):
        x = np.random.default_rng(batch).normal(size=(batch, 5, 5, 2)).astype("float32")
        outputs = compiled(x)
        expected = tf.nn.conv2d(x, layer.kernel, 1, "SAME") + layer.bias
        np.testing.assert_allclose(outputs, expected, atol=1e-5)


def test_fcn_uses_matmul_conv_for_fc6_fc7_and_round_trips(tmp_path):
    model = build_fcn(3, (64, 64, 3), weights=None, fc_units=8)
    assert type(model.get_layer("fc6")) is MatmulConv2D
    assert model.get_layer("fc6").kernel.shape == (7, 7, 512, 8)
    assert_config_round_trip(model.get_layer("fc7"))
    pixels = np.random.default_rng(0).uniform(0, 255, (1, 64, 64, 3)).astype("float32")
    restored = assert_keras_file_round_trip(model, pixels, tmp_path / "fcn.keras", atol=1e-4)
    assert type(restored.get_layer("fc6")) is MatmulConv2D


@pytest.mark.parametrize("training", [True, False])
@pytest.mark.parametrize("center, scale", [(True, True), (False, True), (True, False)])
def test_fused_batch_norm_equals_keras_batch_norm(training, center, scale):
    rng = np.random.default_rng(1)
    x = rng.normal(2.0, 3.0, (4, 6, 5, 8)).astype("float32")
    reference = keras.layers.BatchNormalization(momentum=0.8, center=center, scale=scale)
    fused = FusedBatchNormalization(momentum=0.8, center=center, scale=scale)
    reference.build(x.shape)
    # Moving statistics and affine weights away from their initial values.
    reference.set_weights([rng.uniform(0.5, 2.0, w.shape).astype("float32")
                           for w in reference.get_weights()])
    fused.build(x.shape)
    fused.set_weights(reference.get_weights())
    _assert_close(_values_and_gradients(fused, x, training), _values_and_gradients(reference, x, training))
    # Moving averages keep Keras's biased batch variance (the fused op reports the unbiased one).
    _assert_close(fused.get_weights(), reference.get_weights(), rtol=1e-6)
    if training:
        assert not np.allclose(fused.moving_variance.numpy(), 1.0)


@pytest.mark.parametrize("case", ["rank2", "channels_first", "mask_free_rank3"])
def test_fused_batch_norm_falls_back_where_the_fused_op_does_not_apply(case):
    rng = np.random.default_rng(2)
    shape, axis = {"rank2": ((6, 4), -1), "channels_first": ((2, 4, 3, 3), 1),
                   "mask_free_rank3": ((2, 5, 4), -1)}[case]
    x = rng.normal(size=shape).astype("float32")
    reference, fused = keras.layers.BatchNormalization(axis=axis), FusedBatchNormalization(axis=axis)
    reference.build(shape)
    fused.build(shape)
    _assert_close(_values_and_gradients(fused, x, True), _values_and_gradients(reference, x, True))


@pytest.mark.parametrize("training", [True, False])
def test_fused_batch_norm_under_mixed_precision_equals_keras(training):
    # 16-bit activations go into the fused op as they are (float32 statistics inside).
    keras.mixed_precision.set_global_policy("mixed_bfloat16")  # conftest restores float32
    rng = np.random.default_rng(3)
    x = rng.normal(1.0, 2.0, (2, 6, 5, 8)).astype("float32")
    fused, reference = FusedBatchNormalization(momentum=0.5), keras.layers.BatchNormalization(momentum=0.5)
    reference.build(x.shape)
    reference.set_weights([rng.uniform(0.5, 2.0, w.shape).astype("float32")
                           for w in reference.get_weights()])
    initial = reference.get_weights()
    fused.build(x.shape)
    fused.set_weights(initial)
    fused_results = _values_and_gradients(fused, x, training)
    reference_results = _values_and_gradients(reference, x, training)
    assert fused_results[0].dtype == reference_results[0].dtype == tf.bfloat16
    assert fused.moving_mean.dtype == "float32" and fused.gamma.dtype == "float32"
    # bfloat16 keeps 8 bits of mantissa: about 1% of each tensor's scale.
    _assert_close(fused_results, reference_results, rtol=3e-2)
    _assert_close(fused.get_weights(), reference.get_weights(), rtol=1e-2)
    moved = not np.allclose(fused.moving_mean.numpy(), initial[2])
    assert moved == training


def test_resnet50_backbone_runs_fused_batch_norm_with_its_weights(tmp_path):
    backbone = build_backbone("resnet50", (32, 32, 3), weights=None)
    batch_norms = [layer for layer in backbone.get_layer("resnet50_features").layers
                   if isinstance(layer, keras.layers.BatchNormalization)]
    assert len(batch_norms) == 53
    assert all(type(layer) is FusedBatchNormalization for layer in batch_norms)
    # A checkpoint written by the fused model loads into a plain Keras ResNet50 and back.
    path = str(tmp_path / "backbone.weights.h5")
    backbone.save_weights(path)
    plain = keras.applications.ResNet50(include_top=False, weights=None, input_shape=(32, 32, 3))
    features = backbone.get_layer("resnet50_features")
    plain.set_weights(features.get_weights())
    x = np.random.default_rng(4).normal(size=(2, 32, 32, 3)).astype("float32")
    _assert_close([features(x, training=False)["P5"]], [plain(x, training=False)])
    backbone.load_weights(path)


def _fit_small_model(optimizer, batch_norm=keras.layers.BatchNormalization, jit_compile=False, seed=0):
    keras.utils.set_random_seed(seed)
    model = keras.Sequential([
        keras.Input((6, 6, 2)),
        # No bias before BatchNorm: its true gradient is zero, and Adam would
        # scale the rounding noise of that zero up to full-size steps.
        keras.layers.Conv2D(4, 3, padding="same", use_bias=False),
        batch_norm(),
        keras.layers.ReLU(),
        keras.layers.GlobalAveragePooling2D(),
        keras.layers.Dense(1),
    ])
    model.compile(optimizer, loss="mse", jit_compile=jit_compile)
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(32, 6, 6, 2)).astype("float32")
    y = x.mean(axis=(1, 2, 3))[:, None] * 3.0
    history = model.fit(x, y, batch_size=8, epochs=3, shuffle=False, verbose=0)
    return model, history.history["loss"]


@pytest.mark.parametrize("jit_compile", [False, True])
def test_fused_adam_and_batch_norm_train_as_keras_adam_and_batch_norm(jit_compile):
    reference, reference_loss = _fit_small_model(keras.optimizers.Adam(1e-2), jit_compile=jit_compile)
    fused, fused_loss = _fit_small_model(FusedAdam(1e-2), FusedBatchNormalization, jit_compile)
    assert fused_loss[-1] < fused_loss[0]
    np.testing.assert_allclose(fused_loss, reference_loss, rtol=1e-4)
    _assert_close(fused.get_weights(), reference.get_weights(), rtol=1e-4)
    _assert_close([v.numpy() for v in fused.optimizer.variables],
                  [v.numpy() for v in reference.optimizer.variables], rtol=1e-4)


@pytest.mark.parametrize("options", [
    dict(beta_1=0.5, beta_2=0.9, epsilon=1e-3),
    dict(learning_rate=keras.optimizers.schedules.ExponentialDecay(1e-2, 4, 0.5)),
    dict(clipnorm=0.01),
    dict(amsgrad=True),  # falls back to the Keras update
])
def test_fused_adam_matches_keras_adam_with_options(options):
    options = {"learning_rate": 1e-2, **options}
    reference, _ = _fit_small_model(keras.optimizers.Adam(**options))
    fused, _ = _fit_small_model(FusedAdam(**options))
    _assert_close(fused.get_weights(), reference.get_weights(), rtol=1e-4)


def test_fused_adam_under_loss_scaling_and_its_config_round_trip():
    reference, _ = _fit_small_model(keras.optimizers.LossScaleOptimizer(keras.optimizers.Adam(1e-2)))
    fused, _ = _fit_small_model(keras.optimizers.LossScaleOptimizer(FusedAdam(1e-2)))
    _assert_close(fused.get_weights(), reference.get_weights(), rtol=1e-4)
    restored = assert_config_round_trip(FusedAdam(3e-4, beta_1=0.5))
    assert restored.beta_1 == 0.5


FUSED_MIRRORED_CODE = """
    import numpy as np, tensorflow as tf
    cpu = tf.config.list_physical_devices("CPU")[0]
    tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * 2)
    import keras
    from kerasvision.kernels import FusedAdam, FusedBatchNormalization

    rng = np.random.default_rng(0)
    x = rng.normal(size=(16, 6, 6, 2)).astype("float32")
    y = x.mean(axis=(1, 2, 3))[:, None]
    data = tf.data.Dataset.from_tensor_slices((x, y)).batch(8)

    def train(optimizer, batch_norm):
        keras.utils.set_random_seed(0)
        with tf.distribute.MirroredStrategy(["/cpu:0", "/cpu:1"]).scope():
            model = keras.Sequential([keras.Input((6, 6, 2)), keras.layers.Conv2D(4, 3, use_bias=False),
                                      batch_norm(),
                                      keras.layers.GlobalAveragePooling2D(), keras.layers.Dense(1)])
            model.compile(optimizer(1e-2), loss="mse", jit_compile=False)
        model.fit(data, epochs=2, verbose=0)
        return model.get_weights()

    reference = train(keras.optimizers.Adam, keras.layers.BatchNormalization)
    fused = train(FusedAdam, FusedBatchNormalization)
    worst = max(float(np.max(np.abs(f - r) / (1e-6 + 1e-4 * np.abs(r)))) for f, r in zip(fused, reference))
    moved = float(np.max(np.abs(reference[4] - 1.0)))  # the moving variance
    print(f"WORST {worst} MOVED {moved}")
"""


def test_fused_adam_and_batch_norm_under_mirrored_strategy_equal_keras():
    output = run_in_fresh_process(FUSED_MIRRORED_CODE, timeout=300)
    line = next(line for line in output.splitlines() if line.startswith("WORST "))
    _, worst, _, moved = line.split()
    assert float(worst) <= 1.0, line
    assert float(moved) > 0.0, line  # the step did update the BatchNorm statistics


# ---------------------------------------------------------------------------
# The Keras internals the fused classes rely on
# ---------------------------------------------------------------------------


def _parameters(function):
    return list(inspect.signature(function).parameters)


def test_keras_members_the_fused_classes_rely_on_still_exist():
    # Beyond Keras's documented API, the fused classes override hooks and read
    # private state. A Keras release that renames one fails here, by name,
    # rather than deep inside a training step (setup.cfg pins the tested minor).
    # FusedAdam: the update hook TensorFlow's optimizer calls per variable,
    # the variable -> slot index and the slot lists Adam.build fills.
    assert _parameters(keras.optimizers.Adam.update_step) == [
        "self", "gradient", "variable", "learning_rate"]
    variables = [keras.Variable(np.ones((2, 3), "float32")), keras.Variable(np.ones(4, "float32"))]
    optimizer = keras.optimizers.Adam()
    optimizer.build(variables)
    for index, variable in enumerate(variables):
        assert optimizer._get_variable_index(variable.value) == index
        for slots in (optimizer._momentums, optimizer._velocities):
            assert slots[index].shape == variable.shape
            assert slots[index].value.handle.dtype == tf.resource
        assert variable.value.handle.dtype == tf.resource
    for name in ("amsgrad", "beta_1", "beta_2", "epsilon", "iterations"):
        assert hasattr(optimizer, name), name
    # MatmulConv2D: the hook Conv2D.call computes the convolution with.
    assert _parameters(keras.layers.Conv2D.convolution_op) == ["self", "inputs", "kernel"]
    conv = keras.layers.Conv2D(2, 3, strides=1)
    conv.build((1, 5, 5, 3))
    assert conv.data_format == "channels_last" and conv.groups == 1 and conv.padding == "valid"
    assert conv.strides == (1, 1) and conv.dilation_rate == (1, 1)  # tuples, compared as such
    # FusedBatchNormalization: call's signature and the attributes it reads.
    assert _parameters(keras.layers.BatchNormalization.call) == ["self", "inputs", "training", "mask"]
    norm = keras.layers.BatchNormalization()
    norm.build((1, 4, 4, 2))
    assert norm.renorm is False and norm.synchronized is False and norm.axis == -1
    for name in ("center", "scale", "momentum", "epsilon", "gamma", "beta", "moving_mean",
                 "moving_variance"):
        assert hasattr(norm, name), name
    # The TensorFlow kernels themselves.
    for name in ("ResourceApplyAdam", "FusedBatchNormV3"):
        assert hasattr(tf.raw_ops, name), name


def _op_types(function, *specs):
    graph = tf.function(function).get_concrete_function(*specs).graph
    return {op.type for op in graph.get_operations()}


def test_the_fused_paths_are_taken():
    # Were a hook no longer called, outputs would still equal Keras's (the
    # base class computes them) and only the speed would go: check the ops.
    conv = MatmulConv2D(4, 3, padding="same")
    conv.build((None, 5, 5, 2))
    conv_ops = _op_types(conv, tf.TensorSpec((None, 5, 5, 2)))
    assert "MatMul" in conv_ops and "Conv2D" not in conv_ops
    norm = FusedBatchNormalization()
    norm.build((None, 5, 5, 2))
    assert "FusedBatchNormV3" in _op_types(lambda x: norm(x, training=True),
                                           tf.TensorSpec((None, 5, 5, 2)))
    variable = keras.Variable(np.ones((2, 3), "float32"))
    optimizer = FusedAdam(1e-2)
    optimizer.build([variable])
    assert "ResourceApplyAdam" in _op_types(
        lambda gradient: optimizer.apply_gradients([(gradient, variable)]), tf.TensorSpec((2, 3)))


def test_matmul_conv_is_a_plain_conv2d_off_the_cpu(monkeypatch):
    conv = MatmulConv2D(4, 3, padding="same")
    conv.build((None, 5, 5, 2))

    def on_gpu(x):
        with tf.device("/GPU:0"):  # only traced here, never run
            return conv(tf.identity(x))

    gpu_ops = _op_types(on_gpu, tf.TensorSpec((None, 5, 5, 2)))
    assert "Conv2D" in gpu_ops and "MatMul" not in gpu_ops

    def on_cpu(x):
        with tf.device("/CPU:0"):
            return conv(tf.identity(x))

    assert "MatMul" in _op_types(on_cpu, tf.TensorSpec((None, 5, 5, 2)))
    # No device asked for: the matrix product only when TensorFlow sees no accelerator.
    visible = tf.config.list_logical_devices
    monkeypatch.setattr(tf.config, "list_logical_devices",
                        lambda kind=None: ["/GPU:0"] if kind == "GPU" else visible(kind))
    default_ops = _op_types(conv, tf.TensorSpec((None, 5, 5, 2)))
    assert "Conv2D" in default_ops and "MatMul" not in default_ops


# ---------------------------------------------------------------------------
# The switch
# ---------------------------------------------------------------------------


def test_use_fused_switch_and_its_argument_check():
    assert kernels.fused_enabled() is True
    kernels.use_fused(False)
    assert kernels.fused_enabled() is False
    assert type(kernels.adam(1e-3, beta_1=0.5)) is keras.optimizers.Adam
    assert type(kernels.batch_normalization(momentum=0.9)) is keras.layers.BatchNormalization
    assert type(kernels.conv2d(4, 3, padding="same")) is keras.layers.Conv2D
    kernels.use_fused(True)
    optimizer = kernels.adam(1e-3, beta_1=0.5)
    assert type(optimizer) is FusedAdam and optimizer.beta_1 == 0.5
    assert type(kernels.batch_normalization(momentum=0.9)) is FusedBatchNormalization
    assert type(kernels.conv2d(4, 3, padding="same")) is MatmulConv2D
    with pytest.raises(ValueError, match="enabled"):
        kernels.use_fused("false")
    assert kernels.fused_enabled() is True


def _layer_types(model):
    """Types of every layer, nested models included."""
    types = []
    for layer in model.layers:
        types.append(type(layer))
        if isinstance(layer, keras.Model):
            types.extend(_layer_types(layer))
    return types


_FUSED_CLASSES = {FusedBatchNormalization, MatmulConv2D}


def _tiny_cnn_classifier():
    return build_cnn_classifier(3, (16, 16, 3), filters=(4, 8), batch_norm=True,
                                dense_units=(8,), dropout=0.0)


def _tiny_unet():
    return build_unet(3, (16, 16, 3), depth=2, filters=4)


def _tiny_fcn():
    return build_fcn(3, (64, 64, 3), weights=None, fc_units=8, dropout=0.0)


@pytest.mark.parametrize("build, fused_class", [
    (_tiny_cnn_classifier, FusedBatchNormalization),
    (_tiny_unet, FusedBatchNormalization),
    (_tiny_fcn, MatmulConv2D),
], ids=["cnn_classifier", "unet", "fcn"])
def test_use_fused_false_builds_plain_keras_classes_with_the_same_outputs(build, fused_class):
    keras.utils.set_random_seed(0)
    fused = build()
    assert fused_class in _layer_types(fused)
    kernels.use_fused(False)
    plain = build()
    kernels.use_fused(True)
    assert not _FUSED_CLASSES & set(_layer_types(plain))
    # Same layers by name, each fused one replaced by the Keras class it derives from.
    plain_types = {layer.name: type(layer) for layer in plain.layers}
    for layer in fused.layers:
        if type(layer) in _FUSED_CLASSES:
            assert plain_types[layer.name] is type(layer).__bases__[0], layer.name
    plain.set_weights(fused.get_weights())
    images = np.random.default_rng(5).uniform(0, 255, (2, *fused.input_shape[1:]))
    images = images.astype("float32")
    for training in (False, True):  # moving statistics, then the batch's own
        _assert_close([plain(images, training=training)], [fused(images, training=training)])


def test_use_fused_false_compiles_with_keras_adam_and_trains_alike():
    def train(fused):
        kernels.use_fused(fused)
        keras.utils.set_random_seed(0)
        model = build_cnn_classifier(3, (16, 16, 3), filters=(4, 8), batch_norm=True,
                                     dense_units=(8,), dropout=0.0)
        compile_classifier(model, 1e-2, jit_compile=False)
        rng = np.random.default_rng(6)
        images = rng.uniform(0, 255, (8, 16, 16, 3)).astype("float32")
        model.fit(images, rng.integers(0, 3, 8), batch_size=4, epochs=2, shuffle=False, verbose=0)
        return model

    fused, plain = train(True), train(False)
    assert type(fused.optimizer) is FusedAdam and type(plain.optimizer) is keras.optimizers.Adam
    _assert_close(plain.get_weights(), fused.get_weights(), rtol=1e-3)


def test_use_fused_false_reaches_backbones_and_trainer_default_optimizers():
    kernels.use_fused(False)
    backbone = build_backbone("resnet50", (32, 32, 3), weights=None)
    types = _layer_types(backbone)
    assert keras.layers.BatchNormalization in types and FusedBatchNormalization not in types
    gan = GAN(build_dcgan_generator(8, (16, 16, 3), filters=(8, 4)),
                build_dcgan_discriminator((16, 16, 3), filters=(4, 8)))
    gan.compile()
    assert {type(gan.d_optimizer), type(gan.g_optimizer)} == {keras.optimizers.Adam}
    assert FusedBatchNormalization not in _layer_types(gan.generator)


def test_saved_fused_models_load_under_either_setting(tmp_path):
    # Loading goes by the registered names, whatever the switch says.
    for cls in (FusedAdam, FusedBatchNormalization, MatmulConv2D):
        assert keras.saving.get_registered_name(cls) == f"kerasvision>{cls.__name__}"
    # Configs written when the classes lived in kerasvision.layers / kerasvision.optimizers.
    config = keras.saving.serialize_keras_object(FusedAdam(3e-4))
    config["module"] = "kerasvision.optimizers"
    assert type(keras.saving.deserialize_keras_object(config)) is FusedAdam
    inputs = keras.Input((8, 8, 3))
    x = kernels.conv2d(4, 3, name="conv")(inputs)
    outputs = kernels.batch_normalization(name="bn")(x)
    model = keras.Model(inputs, outputs)
    model.compile(kernels.adam(1e-3), loss="mse")
    model.optimizer.build(model.trainable_variables)  # its slots are saved too
    kernels.use_fused(False)
    images = np.random.default_rng(7).normal(size=(2, 8, 8, 3)).astype("float32")
    restored = assert_keras_file_round_trip(model, images, tmp_path / "fused.keras")
    assert type(restored.get_layer("conv")) is MatmulConv2D
    assert type(restored.get_layer("bn")) is FusedBatchNormalization
    assert type(restored.optimizer) is FusedAdam
