import numpy as np
import pytest
import tensorflow as tf
import keras
from keras import layers

import kerasvision
from kerasvision.flops import summary
from kerasvision.models.classifier import build_cnn_classifier, build_transfer_classifier
from kerasvision.models.convolutionalize import convolutionalize


def _single_layer(input_shape, layer):
    return keras.Sequential([keras.Input(input_shape), layer])


def test_summary_is_exposed_at_package_level():
    assert kerasvision.summary is summary


def test_worked_example_strided_convolution():
    """256x256x3 input, stride 2, 64 3x3 filters: a 128x128x64 output, k'(k h^2 + 1) weights."""
    k, h, k_out = 3, 3, 64
    cost = summary(_single_layer((256, 256, 3), layers.Conv2D(k_out, h, strides=2, padding="same")), print_fn=None)
    row = cost.row("conv2d")
    assert row.output_shape == (128, 128, 64)
    assert row.params == k_out * (k * h**2 + 1) == 1_792
    # Every weight (bias included) is used once per output position.
    assert row.macs == 128 * 128 * k_out * (k * h**2 + 1)


def test_worked_example_5x5x64_to_128_at_64x64_positions():
    """A 5x5x64 -> 128 layer evaluated at 64x64 positions: 64*64*1601*128 multiplications."""
    conv = summary(_single_layer((64, 64, 64), layers.Conv2D(128, 5, padding="same")), print_fn=None)
    assert conv.total_macs == 64 * 64 * 1601 * 128
    # The same layer as Dense on a flattened 5x5x64 window: 1601 x 128 per position ...
    dense = summary(_single_layer((5 * 5 * 64,), layers.Dense(128)), print_fn=None)
    assert dense.total_macs == 1601 * 128
    # ... and its convolutionalized form slid over a 68x68 map: 64x64 positions.
    classifier = keras.Sequential([keras.Input((5, 5, 64)), layers.Flatten(), layers.Dense(128, name="fc")])
    slid = summary(convolutionalize(classifier, softmax=False), (68, 68, 64), print_fn=None)
    assert slid.row("fc").output_shape == (64, 64, 128)
    assert slid.row("fc").macs == 64 * 64 * 1601 * 128


@pytest.mark.parametrize(
    "input_shape, layer, expected_shape, expected_macs",
    [
        # Transposed convolution: every input value x every tap x filter, + bias per output.
        ((8, 8, 4), layers.Conv2DTranspose(6, 3, strides=2, padding="same"), (16, 16, 6), 8 * 8 * 4 * 9 * 6 + 16 * 16 * 6),
        # Depthwise: each output value from a 3x3 window of one channel, + bias.
        ((8, 8, 4), layers.DepthwiseConv2D(3, depth_multiplier=2), (6, 6, 8), 6 * 6 * 8 * (9 + 1)),
        # Separable: depthwise (no bias) then 1x1 pointwise with bias.
        ((8, 8, 4), layers.SeparableConv2D(5, 3), (6, 6, 5), 6 * 6 * 4 * 9 + 6 * 6 * 5 * (4 + 1)),
        ((8, 8, 4), layers.MaxPooling2D(2), (4, 4, 4), 4 * 4 * 4 * 4),
        ((9, 9, 4), layers.AveragePooling2D(3), (3, 3, 4), 3 * 3 * 4 * 9),
        ((8, 8, 4), layers.GlobalAveragePooling2D(), (4,), 8 * 8 * 4),
        ((8, 8, 4), layers.Conv2D(6, 3, groups=2, use_bias=False), (6, 6, 6), 6 * 6 * 6 * 3 * 3 * 2),
        ((8, 8, 4), layers.ReLU(), (8, 8, 4), 0),
    ],
)
def test_layer_formulas_by_hand(input_shape, layer, expected_shape, expected_macs):
    row = summary(_single_layer(input_shape, layer), print_fn=None).rows[0]
    assert row.output_shape == expected_shape
    assert row.macs == expected_macs


def _profiler_flops_by_op_type(model, input_shape):
    function = tf.function(lambda images: model(images, training=False))
    graph = function.get_concrete_function(tf.TensorSpec((1, *input_shape), tf.float32)).graph
    options = tf.compat.v1.profiler.ProfileOptionBuilder.float_operation()
    options["output"] = "none"
    profile = tf.compat.v1.profiler.profile(graph=graph, cmd="op", options=options)
    by_type, pending = {}, list(profile.children)
    while pending:  # the "op" view nests op types in a chain; each node has its own float_ops
        node = pending.pop()
        by_type[node.name] = node.float_ops
        pending.extend(node.children)
    return profile.total_float_ops, by_type


def test_totals_agree_with_the_tensorflow_profiler():
    model = keras.Sequential(
        [
            keras.Input((16, 16, 3)),
            layers.Conv2D(8, 3, strides=2, padding="same"),
            layers.DepthwiseConv2D(3, padding="same", depth_multiplier=2),
            layers.Conv2DTranspose(4, 3, strides=2, padding="same"),
            layers.MaxPooling2D(2),
            layers.AveragePooling2D(2),
            layers.Conv2D(6, 3, use_bias=False),
            layers.Flatten(),
            layers.Dense(5),
        ]
    )
    cost = summary(model, print_fn=None)
    total, by_type = _profiler_flops_by_op_type(model, (16, 16, 3))
    # The profiler counts 2 FLOPs per multiply-accumulate of weights, 1 per
    # bias addition and 1 per pooled value; we count biases as MACs.
    weight_flops = sum(by_type.get(op, 0) for op in ("Conv2D", "DepthwiseConv2dNative", "Conv2DBackpropInput", "MatMul"))
    bias_flops = by_type.get("BiasAdd", 0) + by_type.get("AddV2", 0)
    pool_flops = by_type.get("MaxPool", 0) + by_type.get("AvgPool", 0)
    assert total == weight_flops + bias_flops + pool_flops  # nothing else was counted
    assert cost.total_macs == weight_flops // 2 + bias_flops + pool_flops
    assert cost.total_flops == total + bias_flops + pool_flops


def test_published_imagenet_totals():
    """VGG16 at 224x224: ~15.5 G multiply-accumulates, ResNet50: ~3.9 G."""
    printed = []
    vgg16 = summary(keras.applications.VGG16(weights=None), print_fn=printed.append)
    assert vgg16.total_params == 138_357_544
    assert vgg16.total_macs / 1e9 == pytest.approx(15.5, rel=0.01)
    assert "block5_conv3 (Conv2D)" in printed[0] and "15.49 G MACs" in printed[0]
    keras.backend.clear_session()
    resnet50 = summary(keras.applications.ResNet50(weights=None), print_fn=None)
    assert resnet50.total_params == 25_636_712
    assert resnet50.total_macs / 1e9 == pytest.approx(3.9, rel=0.02)


def test_nested_models_and_other_input_sizes():
    model = build_transfer_classifier("vgg16", 4, (32, 32, 3), weights=None)
    at_32 = summary(model, print_fn=None)
    assert at_32.row("backbone").is_model and at_32.row("block1_conv1").name == "backbone/vgg16_features/block1_conv1"
    assert at_32.row("backbone").macs == sum(row.macs for row in at_32.rows if row.name.startswith("backbone/") and not row.is_model)
    assert at_32.total_params == model.count_params()
    assert at_32.trainable_params == 512 * 4 + 4  # feature extraction: the head only
    # Convolutions cost in proportion to the image area (global pooling head).
    at_64 = summary(model, (64, 64, 3), print_fn=None)
    assert at_64.row("block1_conv1").macs == 4 * at_32.row("block1_conv1").macs


def test_bad_input_shapes():
    flatten_model = build_cnn_classifier(3, (32, 32, 3), filters=(4,), dense_units=())
    with pytest.raises(ValueError, match=r"layer 'predictions' \(Dense\) expects 1024 input features and would receive 4096"):
        summary(flatten_model, (64, 64, 3), print_fn=None)
    with pytest.raises(ValueError, match="has 1 channels; model 'cnn_classifier' takes 3"):
        summary(flatten_model, (32, 32, 1), print_fn=None)
    with pytest.raises(ValueError, match="must have 3 entries"):
        summary(flatten_model, (32, 32), print_fn=None)
    with pytest.raises(ValueError, match="positive integers"):
        summary(flatten_model, (0, 32, 3), print_fn=None)
    dense = convolutionalize(flatten_model)
    with pytest.raises(ValueError, match=r"accepts inputs of shape \(None, None, 3\): pass `input_shape`"):
        summary(dense, print_fn=None)
    assert summary(dense, (40, 40, 3), print_fn=None).row("predictions").output_shape == (5, 5, 3)
    assert np.isclose(summary(dense, (32, 32, 3), print_fn=None).total_macs, summary(flatten_model, print_fn=None).total_macs)
