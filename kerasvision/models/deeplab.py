"""DeepLabV3+: atrous spatial pyramid pooling and a light decoder.

Chen, Zhu, Papandreou, Schroff and Adam, "Encoder-Decoder with Atrous
Separable Convolution for Semantic Image Segmentation", ECCV 2018
(DeepLabV3+). An encoder ends at output stride 16 (or 8) instead of 32; its
features go through ASPP (Chen et al. 2017, DeepLabV3): a 1x1 convolution,
three 3x3 atrous convolutions at rates (6, 12, 18) and image-level pooling,
run in parallel, concatenated and projected by a 1x1 convolution. The decoder
upsamples that x4, concatenates it with stride-4 low-level features reduced
to 48 channels, refines with two 3x3 convolutions, classifies and upsamples
x4 to the input size. The paper makes the 3x3 convolutions of ASPP and of the
decoder depthwise separable (depthwise, BatchNorm, ReLU, pointwise,
BatchNorm, ReLU) at little loss of accuracy and a fraction of the cost.
"""

import keras
from keras import layers

from kerasvision.backbones import (
    build_backbone,
    freeze_batch_norm,
    get_backbone_spec,
    resolve_weights,
)
from kerasvision.kernels import batch_normalization
from kerasvision.layers import ImagePreprocessing, apply_logits_head
from kerasvision.validation import (
    check_choice,
    check_float,
    check_image_shape,
    check_int,
    check_num_classes,
)

OUTPUT_STRIDES = (8, 16)
DEFAULT_ATROUS_RATES = (6, 12, 18)
# Widths of the scratch encoder's four stages, at strides 2, 4, 8 and 16.
DEFAULT_ENCODER_FILTERS = (32, 64, 128, 256)
LOW_LEVEL_STRIDE = 4
# Runs here last hundreds of steps, not the paper's 30K: with Keras's 0.99 the
# moving statistics still lag the weights when training stops.
BATCH_NORM_MOMENTUM = 0.9


def _apply_conv_bn_relu(x, filters, kernel_size=1, dilation_rate=1, strides=1, name="conv"):
    # No bias: the BatchNorm that follows has its own shift.
    x = layers.Conv2D(
        filters, kernel_size, strides=strides, padding="same", dilation_rate=dilation_rate,
        use_bias=False, kernel_initializer="he_normal", name=f"{name}_conv",
    )(x)
    x = batch_normalization(momentum=BATCH_NORM_MOMENTUM, name=f"{name}_bn")(x)
    return layers.Activation("relu", name=f"{name}_relu")(x)


def apply_separable_conv_bn_relu(x, filters, kernel_size=3, dilation_rate=1, strides=1,
                                 name="sepconv"):
    """Depthwise separable convolution with BatchNorm and ReLU after each half.

    The paper's (and its reference code's) separable convolution normalises
    and rectifies the depthwise output too, which `keras.layers.SeparableConv2D`
    cannot do, hence two layers.

    Args:
        x: tensor `[batch, height, width, channels]`.
        filters: int, output channels of the pointwise convolution.
        kernel_size: int, depthwise kernel size.
        dilation_rate: int, atrous rate of the depthwise convolution.
        strides: int, depthwise stride (1 when `dilation_rate` > 1).
        name: str, prefix of the layer names (`{name}_depthwise`, `{name}_pointwise`, ...).

    Returns:
        Tensor `[batch, height / strides, width / strides, filters]`.
    """
    x = layers.DepthwiseConv2D(
        kernel_size, strides=strides, padding="same", dilation_rate=dilation_rate,
        use_bias=False, depthwise_initializer="he_normal", name=f"{name}_depthwise",
    )(x)
    x = batch_normalization(momentum=BATCH_NORM_MOMENTUM, name=f"{name}_depthwise_bn")(x)
    x = layers.Activation("relu", name=f"{name}_depthwise_relu")(x)
    return _apply_conv_bn_relu(x, filters, 1, name=f"{name}_pointwise")


def apply_aspp(x, filters=256, rates=DEFAULT_ATROUS_RATES, separable=True, dropout=0.0,
               name="aspp"):
    """Atrous spatial pyramid pooling (DeepLabV3, section 3.3; DeepLabV3+, section 3.1).

    Five parallel branches see the same features at growing fields of view:
    a 1x1 convolution, one 3x3 atrous convolution per rate, and image-level
    pooling (global average, 1x1 convolution, broadcast back to every
    position), which supplies global context once a large rate leaves only
    the centre tap of a 3x3 kernel inside a small feature map. Every branch
    has BatchNorm and ReLU; their concatenation is projected by a 1x1
    convolution with BatchNorm and ReLU, then optional dropout.

    Args:
        x: tensor `[batch, height, width, channels]` with static height and
            width, the encoder output (stride 16: rates (6, 12, 18); stride 8:
            twice those).
        filters: int, width of every branch and of the output (paper: 256).
        rates: tuple of ints >= 1, atrous rates of the 3x3 branches.
        separable: bool, depthwise separable 3x3 branches (DeepLabV3+); False
            gives plain atrous convolutions (DeepLabV3, and
            `keras_cv.layers.SpatialPyramidPooling`).
        dropout: float in [0, 1), after the projection (paper's code: 0.1).
        name: str, prefix of the layer names (`{name}_1x1`, `{name}_rate6`,
            `{name}_pool`, `{name}_projection`).

    Returns:
        Tensor `[batch, height, width, filters]`.
    """
    filters = check_int("filters", filters, minimum=1)
    rates = _check_rates(rates)
    separable = _check_bool("separable", separable)
    dropout = check_float("dropout", dropout, minimum=0.0, maximum=0.99)
    height, width = x.shape[1], x.shape[2]
    if height is None or width is None:
        raise ValueError(
            "`x` must have a static height and width (image pooling broadcasts back to "
            f"them); received x of shape {tuple(x.shape)}."
        )
    branches = [_apply_conv_bn_relu(x, filters, 1, name=f"{name}_1x1")]
    for rate in rates:
        if separable:
            branch = apply_separable_conv_bn_relu(x, filters, 3, rate, name=f"{name}_rate{rate}")
        else:
            branch = _apply_conv_bn_relu(x, filters, 3, rate, name=f"{name}_rate{rate}")
        branches.append(branch)
    pooled = layers.GlobalAveragePooling2D(keepdims=True, name=f"{name}_pool_average")(x)
    pooled = _apply_conv_bn_relu(pooled, filters, 1, name=f"{name}_pool")
    # Bilinear upsampling of a 1x1 map is a broadcast; nearest computes it exactly.
    branches.append(
        layers.UpSampling2D((height, width), interpolation="nearest",
                            name=f"{name}_pool_broadcast")(pooled)
    )
    x = layers.Concatenate(name=f"{name}_concat")(branches)
    x = _apply_conv_bn_relu(x, filters, 1, name=f"{name}_projection")
    if dropout:
        x = layers.Dropout(dropout, name=f"{name}_dropout")(x)
    return x


def apply_deeplab_decoder(high, low, num_classes, filters=256, low_level_filters=48,
                          upsample=LOW_LEVEL_STRIDE, name="decoder"):
    """The DeepLabV3+ decoder (section 3.1, figure 2), up to float32 logits at the input size.

    The ASPP output is upsampled bilinearly to the low-level features' size
    (x4 from output stride 16); the low-level features are first reduced to
    48 channels by a 1x1 convolution so that they do not outweigh the richer
    encoder features (the paper's table 1). Two 3x3 separable convolutions
    refine the concatenation, a 1x1 convolution classifies, and bilinear
    upsampling by `upsample` returns to the input size. Classifying before
    that last upsampling, as the paper does, gives the same logits (both are
    linear) while upsampling `num_classes` channels instead of `filters`.

    Args:
        high: tensor `[batch, h, w, c]`, the ASPP output.
        low: tensor `[batch, k * h, k * w, c_low]`, low-level encoder features
            (stride 4), `k` an integer.
        num_classes: int >= 2.
        filters: int, width of the two 3x3 convolutions (paper: 256).
        low_level_filters: int, width of the low-level 1x1 reduction (paper: 48).
        upsample: int, the stride of `low` relative to the input.
        name: str, prefix of the layer names; the output layer is named "logits".

    Returns:
        Float32 tensor `[batch, upsample * k * h, upsample * k * w, num_classes]`.
    """
    num_classes = check_num_classes(num_classes)
    filters = check_int("filters", filters, minimum=1)
    low_level_filters = check_int("low_level_filters", low_level_filters, minimum=1)
    upsample = check_int("upsample", upsample, minimum=1)
    sizes = [high.shape[1], high.shape[2], low.shape[1], low.shape[2]]
    factors = [0, 1] if None in sizes else [sizes[2] / sizes[0], sizes[3] / sizes[1]]
    if factors[0] != factors[1] or factors[0] < 1 or factors[0] != int(factors[0]):
        raise ValueError(
            "`low` must have static sizes, the same integer multiple of `high`'s height "
            f"and width; received high of shape {tuple(high.shape)} and low of shape "
            f"{tuple(low.shape)}."
        )
    factor = int(factors[0])
    if factor > 1:
        high = layers.UpSampling2D(factor, interpolation="bilinear", name=f"{name}_upsample")(high)
    low = _apply_conv_bn_relu(low, low_level_filters, 1, name=f"{name}_low_level")
    x = layers.Concatenate(name=f"{name}_concat")([high, low])
    for index in (1, 2):
        x = apply_separable_conv_bn_relu(x, filters, 3, name=f"{name}_sepconv{index}")
    logits = apply_logits_head(x, num_classes, name=f"{name}_logits")
    # Upsampled in float32 so that mixed precision never rounds the logits.
    return layers.UpSampling2D(upsample, interpolation="bilinear", dtype="float32",
                               name="logits")(logits)


def build_deeplabv3plus(
    num_classes,
    input_shape=(512, 512, 3),
    backbone="resnet50",
    weights="auto",
    output_stride=16,
    aspp_filters=256,
    atrous_rates=None,
    separable=True,
    decoder_filters=256,
    low_level_filters=48,
    encoder_filters=DEFAULT_ENCODER_FILTERS,
    dropout=0.1,
    name=None,
):
    """Builds DeepLabV3+ on a registered backbone or a small encoder trained from scratch.

    Output stride. The paper dilates the last stages of its encoder (rates 2
    or 4 instead of stride 2) to keep ImageNet weights while stopping at
    stride 16 or 8. A `keras.applications` network cannot be re-dilated
    without rebuilding it layer by layer, so with a registered backbone the
    encoder output is its stride-16 feature map "P4" (ResNet50: conv4_block6_out,
    1024 channels; VGG16: block4_pool, 512) and the stride-32 stage is not
    built at all; the low-level features are "P2" (stride 4). Only
    `output_stride=16` is available there. InceptionV3's unpadded maps are
    resized to strides 4 and 16 (`build_backbone(resize_to_strides=True)`).
    The scratch encoder (`backbone=None`) is the paper's scheme in miniature: four stages of a
    strided separable convolution and a 3x3 separable convolution, where
    stages past `output_stride` keep their resolution and dilate instead.

    Args:
        num_classes: int >= 2, classes including background.
        input_shape: tuple `(height, width, 3)`, sizes multiples of
            `output_stride` and at least 32 (75 for "inceptionv3").
        backbone: a name in `kerasvision.backbones.BACKBONES` ("resnet50",
            "mobilenetv2", ...) or None (the small scratch encoder, which
            trains in minutes on a CPU).
        weights: backbone weights: "auto", "imagenet", None or a file path
            (ignored when `backbone` is None).
        output_stride: 16, or 8 with the scratch encoder (the paper's two settings).
        aspp_filters: int, width of ASPP's branches and output (paper: 256).
        atrous_rates: tuple of ints, ASPP rates; None gives (6, 12, 18) at
            output stride 16 and (12, 24, 36) at 8, the paper's for 513x513
            crops; scale them down for small images, since a rate beyond the
            feature map's size leaves only the kernel's centre tap.
        separable: bool, separable 3x3 convolutions in ASPP (DeepLabV3+) or
            plain atrous ones (DeepLabV3); the decoder's are always separable.
        decoder_filters: int, width of the decoder's 3x3 convolutions (paper: 256).
        low_level_filters: int, channels the low-level features are reduced to (48).
        encoder_filters: 4 ints, widths of the scratch encoder's stages.
        dropout: float in [0, 1), after ASPP's projection.
        name: str, model name (default "deeplabv3plus" or "deeplabv3plus_<backbone>").

    Returns:
        A functional `keras.Model` mapping raw RGB images `[batch, H, W, 3]` in
        [0, 255] to float32 logits `[batch, H, W, num_classes]`. A registered
        backbone is the sub-model named "backbone".

    Example:
        >>> model = build_deeplabv3plus(3, (64, 64, 3), backbone=None, aspp_filters=16,
        ...                             atrous_rates=(1, 2, 3), decoder_filters=16)
        >>> model(np.zeros((1, 64, 64, 3))).shape
        (1, 64, 64, 3)
    """
    num_classes = check_num_classes(num_classes)
    output_stride = check_choice("output_stride", output_stride, OUTPUT_STRIDES)
    if backbone is not None:
        get_backbone_spec(backbone)
        if output_stride != 16:
            raise ValueError(
                "`output_stride` must be 16 with a registered backbone (its stride-16 "
                "features are used; keras.applications networks cannot be re-dilated "
                f"to stride 8); received output_stride={output_stride} with "
                f"backbone={backbone!r}. Use backbone=None for output stride 8."
            )
    if atrous_rates is None:
        atrous_rates = tuple(rate * 16 // output_stride for rate in DEFAULT_ATROUS_RATES)
    _check_rates(atrous_rates, name="atrous_rates")
    check_float("dropout", dropout, minimum=0.0, maximum=0.99)
    input_shape = check_image_shape(input_shape, multiple_of=output_stride, min_size=32)

    images = keras.Input(input_shape, name="images")
    if backbone is None:
        low, high = _scratch_encoder(images, encoder_filters, output_stride)
        default_name = "deeplabv3plus"
    else:
        low, high = _backbone_encoder(images, backbone, weights)
        default_name = f"deeplabv3plus_{backbone}"
    x = apply_aspp(high, aspp_filters, atrous_rates, separable=separable, dropout=dropout)
    logits = apply_deeplab_decoder(
        x, low, num_classes, filters=decoder_filters, low_level_filters=low_level_filters
    )
    return keras.Model(images, logits, name=name or default_name)


def _scratch_encoder(images, encoder_filters, output_stride):
    """Returns (stride-4 features, stride-`output_stride` features)."""
    encoder_filters = tuple(encoder_filters)
    if len(encoder_filters) != 4:
        raise ValueError(
            "`encoder_filters` must list 4 widths (stages at strides 2, 4, 8, 16); "
            f"received encoder_filters={encoder_filters!r}."
        )
    for index, width in enumerate(encoder_filters):
        check_int(f"encoder_filters[{index}]", width, minimum=1)
    x = ImagePreprocessing("unit", name="preprocessing")(images)
    # A full 3x3 convolution first: a depthwise one on 3 channels learns little.
    x = _apply_conv_bn_relu(x, encoder_filters[0], 3, strides=2, name="stem")
    stride, dilation, low = 2, 1, None
    for index, width in enumerate(encoder_filters[1:], start=2):
        if stride < output_stride:
            stride *= 2
            x = apply_separable_conv_bn_relu(x, width, 3, strides=2, name=f"stage{index}_down")
        else:
            # Past the output stride, atrous convolution keeps the resolution
            # while the receptive field grows as if the stride had doubled.
            dilation *= 2
            x = apply_separable_conv_bn_relu(x, width, 3, dilation, name=f"stage{index}_atrous")
        x = apply_separable_conv_bn_relu(x, width, 3, dilation, name=f"stage{index}_conv")
        if stride == LOW_LEVEL_STRIDE and low is None:
            low = x
    return low, x


def _backbone_encoder(images, backbone, weights):
    """Returns ("P2", "P4") of a registered backbone built up to its stride-16 stage."""
    weights = resolve_weights(backbone, weights)
    # Built up to P4: the stride-32 stage (ResNet50's conv5, 15M parameters) is
    # neither computed nor saved. P1 and P3 are returned too, unused, so that
    # `set_trainable_blocks` finds every stage's end. Unpadded backbones
    # (InceptionV3) get their maps resized to strides 4 and 16 exactly.
    encoder = build_backbone(
        backbone, images.shape[1:], weights, name="backbone", max_level="P4",
        resize_to_strides=True,
    )
    # Pretrained BatchNorm statistics stay frozen while fine-tuning (a
    # non-trainable BatchNorm runs in inference mode; keras-team/keras#20285).
    if weights is not None:
        freeze_batch_norm(encoder)
    features = encoder(images)
    return features["P2"], features["P4"]


def _check_rates(rates, name="rates"):
    try:
        rates = tuple(rates)
    except TypeError:
        raise ValueError(
            f"`{name}` must be a tuple of integers >= 1; received {name}={rates!r}."
        ) from None
    if not rates or len(set(rates)) != len(rates):
        raise ValueError(
            f"`{name}` must be a non-empty tuple of distinct integers >= 1; "
            f"received {name}={rates!r}."
        )
    for rate in rates:
        check_int(name, rate, minimum=1)
    return tuple(int(rate) for rate in rates)


def _check_bool(name, value):
    if not isinstance(value, bool):
        raise ValueError(f"`{name}` must be True or False; received {name}={value!r}.")
    return value


__all__ = [
    "DEFAULT_ATROUS_RATES",
    "DEFAULT_ENCODER_FILTERS",
    "OUTPUT_STRIDES",
    "apply_aspp",
    "apply_deeplab_decoder",
    "apply_separable_conv_bn_relu",
    "build_deeplabv3plus",
]
