"""The classic CNNs from blocks: blocks, parameter counts and outputs against keras.applications,
GoogLeNet's training-only auxiliary heads, the recipe and the benchmark."""

import importlib.util
import os

import keras
import numpy as np
import pytest

from kerasvision.layers import (
    apply_inception_block,
    apply_residual_block,
    apply_vgg_block,
)
from kerasvision.models.classic import (
    APPLICATIONS,
    AuxiliaryHeadsClassifier,
    build_classic,
    inference_network,
    load_applications_weights,
    smallest_input_size,
)
from tests.helpers import (
    assert_config_round_trip,
    assert_export_round_trip,
    assert_keras_file_round_trip,
)

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

# The issue's figures, measured with keras.applications(weights=None).
ISSUE_COUNTS = {"vgg16": 138_357_544, "vgg19": 143_667_240, "resnet50": 25_636_712,
                "resnet101": 44_707_176, "resnet152": 60_419_944}
# Building 140M-parameter models takes seconds each: ResNet50 stays in the default run.
HEAVY = {"vgg16", "vgg19", "resnet101", "resnet152"}
APPLICATION_NAMES = [pytest.param(name, marks=pytest.mark.slow) if name in HEAVY else name
                     for name in APPLICATIONS]


def _recipe():
    path = os.path.join(ROOT, "recipes", "classic_cnns.py")
    spec = importlib.util.spec_from_file_location("recipe_classic_cnns", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _conv_params(kernel, channels_in, filters):
    return kernel * kernel * channels_in * filters + filters


def _softmax_cross_entropy(logits, labels):
    logits = logits - logits.max(axis=-1, keepdims=True)
    log_probabilities = logits - np.log(np.exp(logits).sum(axis=-1, keepdims=True))
    return -log_probabilities[np.arange(len(labels)), labels].mean()


# ---------------------------------------------------------------------------
# Blocks
# ---------------------------------------------------------------------------


def test_vgg_block_halves_the_map_and_counts_its_weights():
    x = keras.Input((32, 32, 3))
    y = apply_vgg_block(x, 8, 3, name="blk")
    model = keras.Model(x, y)
    assert tuple(y.shape) == (None, 16, 16, 8)
    assert model.count_params() == _conv_params(3, 3, 8) + 2 * _conv_params(3, 8, 8)
    assert all(layer.name.startswith("blk_") for layer in model.layers[1:])
    assert [layer.name for layer in model.layers if "conv" in layer.name] == [
        "blk_conv1", "blk_conv2", "blk_conv3"]


# (input channels, filters, stride, bottleneck, output channels, projection expected)
RESIDUAL_CASES = [
    (8, 8, 1, False, 8, False),  # same shape: identity
    (8, 16, 1, False, 16, True),  # more channels
    (8, 8, 2, False, 8, True),  # stride 2
    (32, 8, 1, True, 32, False),  # bottleneck 32 -> 8 -> 32: identity
    (8, 8, 1, True, 32, True),  # bottleneck expands 8 -> 32 (ResNet50's conv2_block1)
    (32, 8, 2, True, 32, True),
]


def test_residual_block_projects_only_when_the_shape_changes():
    for channels, filters, stride, bottleneck, out_channels, projection in RESIDUAL_CASES:
        x = keras.Input((8, 8, channels))
        y = apply_residual_block(x, filters, stride=stride, bottleneck=bottleneck, name="res")
        model = keras.Model(x, y)
        case = (channels, filters, stride, bottleneck)
        assert tuple(y.shape) == (None, 8 // stride, 8 // stride, out_channels), case
        names = {layer.name for layer in model.layers[1:]}  # after the input
        assert ("res_0_conv" in names) == projection == ("res_0_bn" in names), case
        assert all(name.startswith("res_") for name in names), case
        # Basic blocks: 2 convolutions; bottlenecks: 3; plus the projection.
        convs = sum(1 for layer in model.layers if isinstance(layer, keras.layers.Conv2D))
        assert convs == (3 if bottleneck else 2) + projection, case


def test_identity_shortcut_passes_the_input_when_the_residual_is_zero():
    # The last BatchNorm's gamma and beta at zero make F(x) = 0: the block is relu(x).
    for bottleneck in (False, True):
        channels = 16 if bottleneck else 4
        x = keras.Input((6, 6, channels))
        model = keras.Model(x, apply_residual_block(x, 4, bottleneck=bottleneck, name="res"))
        last_bn = model.get_layer("res_3_bn" if bottleneck else "res_2_bn")
        gamma, beta, mean, variance = last_bn.get_weights()
        last_bn.set_weights([np.zeros_like(gamma), np.zeros_like(beta), mean, variance])
        inputs = np.random.default_rng(0).normal(size=(2, 6, 6, channels)).astype("float32")
        np.testing.assert_allclose(model(inputs, training=False), np.maximum(inputs, 0),
                                   atol=1e-6)


def test_inception_block_concatenates_its_four_branches():
    channels, widths = 12, (4, 3, 5, 2, 6, 7)
    x = keras.Input((7, 7, channels))
    y = apply_inception_block(x, *widths, name="inc")
    model = keras.Model(x, y)
    one, reduce3, three, reduce5, five, pool = widths
    assert tuple(y.shape) == (None, 7, 7, one + three + five + pool)
    expected = (_conv_params(1, channels, one) + _conv_params(1, channels, reduce3)
                + _conv_params(3, reduce3, three) + _conv_params(1, channels, reduce5)
                + _conv_params(5, reduce5, five) + _conv_params(1, channels, pool))
    assert model.count_params() == expected
    # Branch order in the concatenation: 1x1, 3x3, 5x5, pool projection.
    branches = [model.get_layer(f"inc_{branch}").output
                for branch in ("1x1_relu", "3x3_relu", "5x5_relu", "pool_proj_relu")]
    probe = keras.Model(x, [y, *branches])
    outputs = probe(np.random.default_rng(1).normal(size=(1, 7, 7, channels)).astype("float32"))
    np.testing.assert_allclose(outputs[0], np.concatenate(outputs[1:], axis=-1))


def test_inception_3a_has_the_papers_widths():
    x = keras.Input((28, 28, 192))
    y = apply_inception_block(x, 64, 96, 128, 16, 32, 32, name="inception_3a")
    assert y.shape[-1] == 256  # Szegedy et al. 2015, table 1
    # 163,696 with biases (the table's 159K rounds and leaves some out).
    assert keras.Model(x, y).count_params() == 163_696


# ---------------------------------------------------------------------------
# Parameter counts and the same function as keras.applications
# ---------------------------------------------------------------------------


@pytest.mark.parametrize("name", APPLICATION_NAMES)
def test_parameter_counts_equal_keras_applications(name):
    reference = getattr(keras.applications, APPLICATIONS[name])(weights=None)
    ours = build_classic(name)
    assert ours.count_params() == reference.count_params() == ISSUE_COUNTS[name]
    weighted = [layer.name for layer in reference.layers if layer.weights]
    assert [layer.name for layer in ours.layers if layer.weights] == weighted


@pytest.mark.parametrize("name", APPLICATION_NAMES)
def test_weights_copied_from_keras_applications_give_the_same_outputs(name):
    # Random weights at 64 px with a 10-class top: the same function, layer by layer.
    reference = getattr(keras.applications, APPLICATIONS[name])(
        weights=None, input_shape=(64, 64, 3), classes=10, classifier_activation=None)
    ours = load_applications_weights(build_classic(name, 10, (64, 64, 3)), name, reference)
    images = np.random.default_rng(0).uniform(0, 255, (2, 64, 64, 3)).astype("float32")
    # keras.applications takes preprocessed input; ours preprocesses raw pixels itself.
    preprocessed = keras.applications.imagenet_utils.preprocess_input(images.copy(), mode="caffe")
    expected = keras.ops.convert_to_numpy(reference(preprocessed, training=False))
    np.testing.assert_allclose(ours(images, training=False), expected, atol=1e-4, rtol=1e-4)


def test_weights_of_a_headless_keras_application_load_into_a_headless_model():
    reference = keras.applications.VGG16(weights=None, include_top=False, input_shape=(32, 32, 3))
    ours = build_classic("vgg16", input_shape=(32, 32, 3), include_top=False, preprocessing=None)
    load_applications_weights(ours, "vgg16", reference)
    images = np.random.default_rng(2).normal(size=(1, 32, 32, 3)).astype("float32")
    np.testing.assert_allclose(ours(images), reference(images), atol=1e-4, rtol=1e-4)


def test_load_applications_weights_names_the_layer_that_does_not_fit():
    reference = keras.applications.VGG16(weights=None, include_top=False, input_shape=(32, 32, 3))
    model = build_classic("vgg16", 10, (32, 32, 3), include_top=False, batch_norm=True)
    with pytest.raises(ValueError, match="block1_conv1.*weight shapes"):
        load_applications_weights(model, "vgg16", reference)
    with pytest.raises(ValueError, match="`name` must be one of"):
        load_applications_weights(model, "alexnet", reference)


def test_resnet18_34_alexnet_and_lenet5_counts_by_hand():
    # ResNet-18: torchvision's 11,689,512 trainable, plus 2 x 4,800 BatchNorm statistics.
    resnet18 = build_classic("resnet18")
    trainable = sum(int(np.prod(w.shape)) for w in resnet18.trainable_weights)
    assert (trainable, resnet18.count_params()) == (11_689_512, 11_699_112)
    # AlexNet at 64 px: 15 -> 7 -> 3 -> 1 pixels, so fc6 reads 256 values.
    alexnet = build_classic("alexnet", 10, (64, 64, 3))
    convs = (_conv_params(11, 3, 96) + _conv_params(5, 96, 256) + _conv_params(3, 256, 384)
             + _conv_params(3, 384, 384) + _conv_params(3, 384, 256))
    dense = (256 * 4096 + 4096) + (4096 * 4096 + 4096) + (4096 * 10 + 10)
    assert alexnet.count_params() == convs + dense
    assert tuple(alexnet.get_layer("pool5").output.shape) == (None, 1, 1, 256)
    # LeNet-5 is classifier.build_lenet5's.
    assert build_classic("lenet5", 10).count_params() == 62_006


# ---------------------------------------------------------------------------
# GoogLeNet: auxiliary classifiers in training only
# ---------------------------------------------------------------------------


def test_googlenet_parameter_count_against_the_paper():
    model = build_classic("googlenet")
    main = model.inference_network.count_params()
    assert main == 6_998_552 and model.count_params() == 6_998_552 + 6_379_728
    assert abs(main - 6.8e6) / 6.8e6 < 0.03  # the paper's table 1 sums to ~6.8M
    assert not any(layer.name.startswith("aux") for layer in model.inference_network.layers)
    shapes = {name: tuple(model.network.get_layer(name).output.shape[1:])
              for name in ("pool2", "inception_3b_concat", "inception_4e_concat", "aux1_pool")}
    assert shapes == {"pool2": (28, 28, 192), "inception_3b_concat": (28, 28, 480),
                      "inception_4e_concat": (14, 14, 832), "aux1_pool": (4, 4, 512)}


def _tiny_aux_network(num_classes=3):
    """A functional network with a main head and two auxiliary heads, small enough to fit fast."""
    images = keras.Input((8, 8, 3))
    x = keras.layers.Conv2D(4, 3, activation="relu", name="conv")(images)
    pooled = keras.layers.GlobalAveragePooling2D()(x)
    heads = [keras.layers.Dense(num_classes, name=name)(pooled) for name in ("main", "aux1")]
    heads.append(keras.layers.Dense(num_classes, name="aux2")(keras.layers.Flatten()(x)))
    return keras.Model(images, heads)


def test_auxiliary_heads_add_their_weighted_loss_in_training_only():
    keras.utils.set_random_seed(0)
    model = AuxiliaryHeadsClassifier(_tiny_aux_network(), aux_loss_weight=0.3)
    rng = np.random.default_rng(0)
    images = rng.normal(size=(6, 8, 8, 3)).astype("float32")
    labels = np.array([0, 1, 2, 0, 1, 2], dtype="int32")
    assert tuple(model(images).shape) == (6, 3)  # inference: the main head
    heads = model(images, training=True)
    assert len(heads) == 3
    model.compile(optimizer=keras.optimizers.Adam(1e-2),
                  loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
                  metrics=[keras.metrics.SparseCategoricalAccuracy(name="accuracy")])
    # The training loss: main + 0.3 x each auxiliary cross-entropy, by hand in numpy.
    logits = [keras.ops.convert_to_numpy(h) for h in heads]
    expected = _softmax_cross_entropy(logits[0], labels) + 0.3 * (
        _softmax_cross_entropy(logits[1], labels) + _softmax_cross_entropy(logits[2], labels))
    loss = model.compute_loss(images, labels, tuple(heads), training=True)
    np.testing.assert_allclose(float(loss), expected, rtol=1e-5)
    # evaluate's loss: the main head only.
    np.testing.assert_allclose(model.evaluate(images, labels, verbose=0)[0],
                               _softmax_cross_entropy(logits[0], labels), rtol=1e-5)

    variables = model.network.trainable_variables
    before = [keras.ops.convert_to_numpy(v).copy() for v in variables]
    history = model.fit(images, labels, batch_size=6, epochs=1, verbose=0)
    assert set(history.history) == {"loss", "accuracy"}
    np.testing.assert_allclose(history.history["loss"][0], expected, rtol=1e-5)
    unchanged = [v.path for v, b in zip(variables, before)
                 if np.array_equal(b, keras.ops.convert_to_numpy(v))]
    assert not unchanged  # the auxiliary heads trained too: their loss reached them


def test_googlenet_returns_its_auxiliary_heads_in_training_only():
    model = build_classic("googlenet", 4, (65, 65, 3))
    assert isinstance(model, AuxiliaryHeadsClassifier)
    assert inference_network(model) is model.inference_network
    assert model.network.output_names == ["logits", "aux1_logits", "aux2_logits"]
    images = np.random.default_rng(0).uniform(0, 255, (2, 65, 65, 3)).astype("float32")
    assert tuple(model(images).shape) == (2, 4)
    heads = model(images, training=True)
    assert len(heads) == 3 and all(tuple(h.shape) == (2, 4) for h in heads)


@pytest.mark.slow
def test_googlenet_fit_step_trains_every_head():
    keras.utils.set_random_seed(0)
    model = build_classic("googlenet", 4, (65, 65, 3))
    model.compile(optimizer=keras.optimizers.Adam(1e-3),
                  loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
                  metrics=[keras.metrics.SparseCategoricalAccuracy(name="accuracy")])
    images = np.random.default_rng(0).uniform(0, 255, (4, 65, 65, 3)).astype("float32")
    labels = np.array([0, 1, 2, 3], dtype="int32")
    variables = model.network.trainable_variables
    before = [keras.ops.convert_to_numpy(v).copy() for v in variables]
    history = model.fit(images, labels, batch_size=4, epochs=1, verbose=0)
    assert set(history.history) == {"loss", "accuracy"} and np.isfinite(history.history["loss"][0])
    assert not [v.path for v, b in zip(variables, before)
                if np.array_equal(b, keras.ops.convert_to_numpy(v))]
    np.testing.assert_allclose(model.predict(images, verbose=0),
                               model.inference_network(images, training=False), atol=1e-5)


def test_auxiliary_heads_classifier_round_trips_its_config_and_keras_file(tmp_path):
    model = AuxiliaryHeadsClassifier(_tiny_aux_network(), aux_loss_weight=0.5)
    restored = assert_config_round_trip(model)
    assert restored.aux_loss_weight == 0.5
    images = np.random.default_rng(3).normal(size=(2, 8, 8, 3)).astype("float32")
    assert_keras_file_round_trip(model, images, tmp_path / "aux.keras")


@pytest.mark.slow
def test_googlenet_round_trips_its_keras_file(tmp_path):
    model = build_classic("googlenet", 3, (65, 65, 3))
    images = np.random.default_rng(3).uniform(0, 255, (2, 65, 65, 3)).astype("float32")
    assert_keras_file_round_trip(model, images, tmp_path / "googlenet.keras")


def test_a_small_classic_model_learns_a_tiny_task():
    from kerasvision.data import make_shapes_classification
    from kerasvision.tasks.classification import compile_classifier

    keras.utils.set_random_seed(0)
    images, labels = make_shapes_classification(32, image_size=32, seed=0)
    model = build_classic("resnet18", 4, (32, 32, 3))
    compile_classifier(model, 1e-3)
    # The training loss (BatchNorm's moving statistics need more steps than this).
    losses = model.fit(images.astype("float32"), labels, batch_size=16, epochs=4,
                       verbose=0).history["loss"]
    assert losses[-1] < 0.5 * losses[0], losses


# ---------------------------------------------------------------------------
# Bad input
# ---------------------------------------------------------------------------


def test_bad_names_sizes_and_arguments_are_named():
    with pytest.raises(ValueError, match=r"`name` must be one of .*received name='resnet19'"):
        build_classic("resnet19")
    too_small = (r"`input_shape` is too small for googlenet: its sides must be >= 65 "
                 r"\(the auxiliary.*received input_shape=\(64, 64, 3\)")
    with pytest.raises(ValueError, match=too_small):
        build_classic("googlenet", 4, (64, 64, 3))
    assert smallest_input_size("googlenet", aux_classifiers=False) == 32
    build_classic("googlenet", 4, (32, 32, 3), aux_classifiers=False)
    with pytest.raises(ValueError, match=r"`input_shape` is too small for alexnet: .* >= 63"):
        build_classic("alexnet", 4, (32, 32, 3))
    with pytest.raises(ValueError, match=r"`include_top` applies to vgg16.*name='alexnet'"):
        build_classic("alexnet", 4, (64, 64, 3), include_top=False)
    with pytest.raises(ValueError, match=r"`dropout` must be <= 0.99"):
        build_classic("vgg16", 4, (32, 32, 3), dropout=1.5)
    assert [smallest_input_size(n, multiple_of=32) for n in ("lenet5", "alexnet", "googlenet")] == [
        32, 64, 96]


# ---------------------------------------------------------------------------
# The recipe and the benchmark
# ---------------------------------------------------------------------------


def test_recipe_summary_prints_the_cost_table(capsys):
    result = _recipe().main(["--model", "lenet5", "--summary"])
    assert result["params"] == build_classic("lenet5", 1000).count_params()
    out = capsys.readouterr().out
    assert "c1 (Conv2D)" in out and "Total multiply-accumulates" in out


@pytest.mark.parametrize("name", ["lenet5", pytest.param("resnet18", marks=pytest.mark.slow)])
def test_recipe_smoke_trains_and_exports(tmp_path, name):
    output_dir, export_dir = str(tmp_path / "run"), str(tmp_path / "export")
    summary = _recipe().main(["--smoke", "--model", name, "--output-dir", output_dir,
                              "--export-dir", export_dir, "--precision", "float32"])
    assert summary["image_size"] == 32 and 0.0 <= summary["accuracy"] <= 1.0
    for filename in ("best.weights.h5", "history.csv", "summary.json", "confusion_matrix.png"):
        assert os.path.exists(os.path.join(output_dir, filename)), filename
    # The export serves the trained weights: rebuild, load the best checkpoint, compare.
    from kerasvision.data import make_shapes_classification

    model = build_classic(name, 4, (32, 32, 3), preprocessing="unit")
    model.load_weights(os.path.join(output_dir, "best.weights.h5"))
    images, _ = make_shapes_classification(3, 32, split="test")
    expected = keras.ops.softmax(model(images.astype("float32"), training=False))
    assert_export_round_trip(summary["export_path"], images, keras.ops.convert_to_numpy(expected))


@pytest.mark.slow
def test_recipe_smoke_of_googlenet_exports_the_main_head_only(tmp_path):
    summary = _recipe().main(["--smoke", "--model", "googlenet", "--output-dir",
                              str(tmp_path / "run"), "--export-dir", str(tmp_path / "export"),
                              "--precision", "float32"])
    assert summary["image_size"] == 96
    import tensorflow as tf

    loaded = tf.saved_model.load(summary["export_path"])
    out = loaded.signatures["serving_default"](images=tf.zeros((2, 96, 96, 3), tf.uint8))
    assert tuple(out["probabilities"].shape) == (2, 4)
