"""Fully convolutional networks: FCN-32s, FCN-16s and FCN-8s.

Long, Shelhamer and Darrell, "Fully Convolutional Networks for Semantic
Segmentation", CVPR 2015. The classifier's dense layers become convolutions
(VGG16 fc6 as a 7x7 convolution, fc7 as a 1x1 one), a 1x1 convolution scores
each class at stride 32, and learned upsampling (initialised to bilinear
interpolation) brings the scores back to the input resolution, fused with
finer scores from pool4 (16s) and pool3 (8s) through zero-initialised 1x1
score layers so that each finer net starts out equal to its coarser parent.
"""

import warnings

import keras
from keras import layers

from kerasvision.backbones import (
    build_backbone,
    freeze_batch_norm,
    get_backbone_spec,
    load_classifier_weights,
    resolve_weights,
)
from kerasvision import kernels
from kerasvision.layers import UPSAMPLING_METHODS, WideInputConv2D, apply_upsampling
from kerasvision.validation import (
    check_choice,
    check_float,
    check_image_shape,
    check_int,
    check_num_classes,
)

FCN_VARIANTS = ("32s", "16s", "8s")
FCN_STRIDE = 32
_FC6_KERNEL = 7


def build_fcn(
    num_classes,
    input_shape=(224, 224, 3),
    backbone="vgg16",
    variant="8s",
    weights="auto",
    upsampling="transpose",
    fc_units=4096,
    dropout=0.5,
    name=None,
):
    """Builds an FCN segmentation model on a registered backbone.

    Args:
        num_classes: int >= 2, number of classes including background.
        input_shape: tuple `(height, width, 3)`; height and width must be
            multiples of 32 (None: any multiple of 32, checked by the caller;
            fixed and >= 75 for "inceptionv3").
        backbone: a name in `kerasvision.backbones.BACKBONES`: "vgg16" (the
            paper's) or "vgg19", whose classifier becomes fc6/fc7, or another
            ("resnet50", "mobilenetv2", ...: scores from its stride-8/16/32
            levels, no fc6/fc7).
        variant: "32s", "16s" or "8s": the finest stride whose scores are fused.
        weights: "auto", "imagenet", None or a weights file path (see
            `kerasvision.backbones`). When the file or ImageNet download holds
            the VGG classifier, fc6/fc7 start from its dense weights reshaped
            into convolution kernels.
        upsampling: "transpose" (learned, bilinear-initialised) or "resize"
            (bilinear resize followed by a 3x3 convolution).
        fc_units: int, width of fc6/fc7 (4096 in the paper; VGG only).
        dropout: float in [0, 1), dropout after fc6 and fc7.
        name: str, model name (default `f"fcn{variant}_{backbone}"`).

    Returns:
        A functional `keras.Model` mapping raw RGB images `[batch, H, W, 3]` in
        [0, 255] to float32 logits `[batch, H, W, num_classes]`. The backbone is
        the sub-model named "backbone".

    Example:
        >>> model = build_fcn(5, (64, 64, 3), weights=None, fc_units=64)
        >>> model(np.zeros((2, 64, 64, 3))).shape
        (2, 64, 64, 5)
    """
    num_classes = check_num_classes(num_classes)
    spec = get_backbone_spec(backbone)
    variant = check_choice("variant", variant, FCN_VARIANTS)
    check_choice("upsampling", upsampling, UPSAMPLING_METHODS)
    check_int("fc_units", fc_units, minimum=1)
    check_float("dropout", dropout, minimum=0.0, maximum=0.99)
    input_shape = check_image_shape(input_shape, multiple_of=FCN_STRIDE, min_size=FCN_STRIDE)
    weights = resolve_weights(backbone, weights)

    images = keras.Input(input_shape, name="images")
    # Unpadded backbones (InceptionV3) get their maps resized to strides 8, 16
    # and 32 exactly, so that each fusion adds maps of one size.
    backbone_model = build_backbone(
        backbone, input_shape, weights, name="backbone", resize_to_strides=True
    )
    # Pretrained BatchNorm statistics stay frozen even when the backbone is
    # fine-tuned: small segmentation batches would ruin them. A non-trainable
    # BatchNorm runs in inference mode; `training=False` alone is overridden by
    # fit (keras-team/keras#20285).
    if weights is not None:
        freeze_batch_norm(backbone_model)
    features = backbone_model(images)

    x = features["P5"]
    if spec.classifier_layers:
        x = kernels.conv2d(
            fc_units, _FC6_KERNEL, padding="same", activation="relu",
            kernel_initializer="he_normal", name="fc6",
        )(x)
        x = layers.Dropout(dropout, name="fc6_dropout")(x)
        x = kernels.conv2d(
            fc_units, 1, activation="relu", kernel_initializer="he_normal", name="fc7"
        )(x)
        x = layers.Dropout(dropout, name="fc7_dropout")(x)
    scores = WideInputConv2D(num_classes, 1, name="score_fr")(x)

    stride = FCN_STRIDE
    for feature_key, finest in (("P4", "16s"), ("P3", "8s")):
        if FCN_VARIANTS.index(variant) < FCN_VARIANTS.index(finest):
            break
        level = feature_key.lower().replace("p", "pool")
        upscored = apply_upsampling(scores, 2, method=upsampling, name=f"upscore_{level}")
        # Zero init: the fused net starts out computing exactly its coarser parent.
        skip = layers.Conv2D(
            num_classes, 1, kernel_initializer="zeros", name=f"score_{level}"
        )(features[feature_key])
        scores = layers.Add(name=f"fuse_{level}")([upscored, skip])
        stride //= 2

    scores = apply_upsampling(scores, stride, method=upsampling, name=f"upscore{stride}")
    logits = layers.Activation("linear", dtype="float32", name="logits")(scores)
    model = keras.Model(images, logits, name=name or f"fcn{variant}_{backbone}")

    if spec.classifier_layers:
        _convolutionalize_classifier(model, backbone, weights, fc_units)
    return model


def _convolutionalize_classifier(model, backbone, weights, fc_units):
    """Copies the ImageNet classifier's fc1/fc2 into fc6/fc7 when available."""
    dense_weights = load_classifier_weights(backbone, weights)
    if dense_weights is None:
        return
    (fc1_kernel, fc1_bias), (fc2_kernel, fc2_bias) = dense_weights
    if fc1_bias.shape[0] != fc_units:
        warnings.warn(
            f"fc_units={fc_units} differs from the classifier's {fc1_bias.shape[0]}: "
            "fc6/fc7 start from random weights.",
            stacklevel=3,
        )
        return
    fc6 = model.get_layer("fc6")
    # Flatten orders (row, column, channel), so the dense kernel reshapes
    # directly into a (7, 7, channels, units) convolution kernel.
    fc6.set_weights([fc1_kernel.reshape(fc6.kernel.shape), fc1_bias])
    model.get_layer("fc7").set_weights([fc2_kernel.reshape(1, 1, *fc2_kernel.shape), fc2_bias])
