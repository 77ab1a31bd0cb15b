"""SegNet: an encoder-decoder whose decoder unpools with the encoder's max-pooling indices.

Badrinarayanan, Kendall and Cipolla, "SegNet: A Deep Convolutional
Encoder-Decoder Architecture for Image Segmentation", TPAMI 2017. The encoder
is VGG16's 13 convolutions; each of its 5 max poolings records where its
maxima were (`MaxPoolingWithArgmax2D`). The decoder mirrors the encoder: each
stage unpools with the indices of the same-resolution encoder pooling
(`MaxUnpooling2D`: values back at the maxima, zeros elsewhere) and densifies
the sparse map with 3x3 convolutions. Only indices cross from encoder to
decoder, not whole feature maps as in U-Net, and the upsampling has no
weights. DeconvNet (Noh, Hong and Han, ICCV 2015) unpools the same way but
with deconvolution layers and a fully connected bottleneck; it is not built
here.

Parameter counts (`input_shape=(224, 224, 3)`, 21 classes, the paper's
decoder widths, `batch_norm=True`): on VGG16, 29,476,757 = the 14,714,688 of
VGG16's 13 convolutions + 14,745,600 in the decoder's 13 convolutions (no
bias) + 15,104 in their BatchNormalization (half of it moving statistics) +
1,365 in the 1x1 logits head; the paper reports 29.5M. From scratch with
`filters=64` (BatchNorm in the encoder too, convolutions without bias):
29,489,429. The input size does not change these counts.
"""

import keras
from keras import layers

from kerasvision.backbones import build_backbone, freeze_batch_norm, resolve_weights
from kerasvision.kernels import batch_normalization
from kerasvision.layers import (
    ImagePreprocessing,
    MaxPoolingWithArgmax2D,
    MaxUnpooling2D,
    apply_conv_block,
    apply_logits_head,
)
from kerasvision.validation import (
    check_choice,
    check_image_shape,
    check_int,
    check_num_classes,
)

SEGNET_STRIDE = 32
SEGNET_BACKBONES = ("vgg16",)
# VGG16's stages: convolutions per stage, and widths as multiples of the first.
STAGE_CONVS = (2, 2, 3, 3, 3)
STAGE_WIDTH_MULTIPLIERS = (1, 2, 4, 8, 8)
VGG16_FILTERS = 64


def build_segnet(
    num_classes,
    input_shape=(224, 224, 3),
    backbone="vgg16",
    weights="auto",
    filters=VGG16_FILTERS,
    decoder_filters=None,
    batch_norm=True,
    name=None,
):
    """Builds a SegNet.

    Args:
        num_classes: int >= 2.
        input_shape: tuple `(height, width, 3)`, sizes multiples of 32 (5 poolings).
        backbone: "vgg16" (the paper's encoder, from the backbone registry, so
            ImageNet weights load) or None (the same layout trained from
            scratch, `filters` wide: small enough to train on a CPU).
        weights: encoder weights, "auto", "imagenet", None or a file path
            (ignored without a backbone).
        filters: int, width of the first scratch encoder stage, doubled per
            stage up to 8x (VGG16: 64); ignored with a backbone.
        decoder_filters: None (mirror the encoder, as the paper) or 5 ints, the
            widths of the decoder stages at strides 16, 8, 4, 2 and 1. The last
            convolution of the first four stages always outputs the channels of
            the encoder stage below, because the next unpooling scatters into
            that stage's argmax positions, which count its channels.
        batch_norm: bool, BatchNormalization after every decoder convolution
            (and every scratch encoder convolution), as in the paper.
        name: str, model name (default "segnet" or "segnet_vgg16").

    Returns:
        A functional `keras.Model` mapping raw RGB images `[batch, H, W, 3]` in
        [0, 255] to float32 logits `[batch, H, W, num_classes]`. With a backbone,
        the encoder is the sub-model named "backbone" (VGG16's layer names,
        `block<i>_pool` being `MaxPoolingWithArgmax2D`). Holds
        `MaxPoolingWithArgmax2D`, which has no XLA kernel: compile with
        `jit_compile=False`.

    Example:
        >>> model = build_segnet(3, (32, 32, 3), backbone=None, filters=4)
        >>> model(np.zeros((2, 32, 32, 3))).shape
        (2, 32, 32, 3)
    """
    num_classes = check_num_classes(num_classes)
    if backbone is not None:
        check_choice("backbone", backbone, SEGNET_BACKBONES)
    check_int("filters", filters, minimum=1)
    if not isinstance(batch_norm, bool):
        raise ValueError(f"`batch_norm` must be True or False; received batch_norm={batch_norm!r}.")
    input_shape = check_image_shape(input_shape, multiple_of=SEGNET_STRIDE, min_size=SEGNET_STRIDE)
    encoder_widths = tuple(
        (VGG16_FILTERS if backbone else filters) * multiplier
        for multiplier in STAGE_WIDTH_MULTIPLIERS
    )
    decoder_filters = _check_decoder_filters(decoder_filters, encoder_widths)

    images = keras.Input(input_shape, name="images")
    if backbone is None:
        x, switches = _scratch_encoder(images, encoder_widths, batch_norm)
    else:
        encoder = build_vgg16_argmax_encoder(input_shape, weights)
        outputs = encoder(images)
        x, switches = outputs["P5"], [outputs[f"argmax{stage}"] for stage in range(1, 6)]

    # Deepest stage first; stage s unpools to the resolution of encoder stage s.
    for stage in range(5, 0, -1):
        x = MaxUnpooling2D(2, name=f"decoder{stage}_unpool")([x, switches[stage - 1]])
        width = decoder_filters[5 - stage]
        widths = [width] * STAGE_CONVS[stage - 1]
        if stage > 1:
            widths[-1] = encoder_widths[stage - 2]
        x = _apply_decoder_convs(x, widths, batch_norm, name=f"decoder{stage}")
    logits = apply_logits_head(x, num_classes, name="logits")
    default_name = f"segnet_{backbone}" if backbone else "segnet"
    return keras.Model(images, logits, name=name or default_name)


def _check_decoder_filters(decoder_filters, encoder_widths):
    if decoder_filters is None:
        return tuple(reversed(encoder_widths))
    if not isinstance(decoder_filters, (tuple, list)) or len(decoder_filters) != 5:
        raise ValueError(
            "`decoder_filters` must be None or list 5 widths (strides 16, 8, 4, 2, 1); "
            f"received decoder_filters={decoder_filters!r}."
        )
    return tuple(check_int("decoder_filters", width, minimum=1) for width in decoder_filters)


def _apply_decoder_convs(x, widths, batch_norm, name):
    """3x3 convolutions of the given widths, each optionally batch-normalised, then ReLU."""
    for index, width in enumerate(widths, start=1):
        x = layers.Conv2D(
            width, 3, padding="same", use_bias=not batch_norm,
            kernel_initializer="he_normal", name=f"{name}_conv{index}",
        )(x)
        if batch_norm:
            x = batch_normalization(name=f"{name}_bn{index}")(x)
        x = layers.Activation("relu", name=f"{name}_relu{index}")(x)
    return x


def _scratch_encoder(images, widths, batch_norm):
    x = ImagePreprocessing("unit", name="preprocessing")(images)
    switches = []
    for stage, (width, num_convs) in enumerate(zip(widths, STAGE_CONVS), start=1):
        x = apply_conv_block(x, width, num_convs, batch_norm=batch_norm, name=f"encoder{stage}")
        x, argmax = MaxPoolingWithArgmax2D(2, name=f"encoder{stage}_pool")(x)
        switches.append(argmax)
    return x, switches


def build_vgg16_argmax_encoder(input_shape, weights="auto", name="backbone"):
    """VGG16's convolutions with argmax-recording poolings, weights from the registry.

    keras.applications' VGG16 pools with `MaxPooling2D`, which forgets where
    the maxima were. This rebuilds the same graph with `MaxPoolingWithArgmax2D`
    in their place and copies every convolution's weights, by layer name, from
    the registry's backbone, so "imagenet", weight files and "auto" behave as
    for every other VGG16 model.

    Args:
        input_shape: tuple `(height, width, 3)`, multiples of 32.
        weights: "auto", "imagenet", None or a path (see `kerasvision.backbones`).
        name: str, model name ("backbone", which `fit_two_phase` unfreezes by stage).

    Returns:
        A functional `keras.Model` mapping raw RGB `[batch, H, W, 3]` in [0, 255]
        to `{"P5": [batch, H/32, W/32, 512], "argmax1": [batch, H/2, W/2, 64],
        ..., "argmax5": [batch, H/32, W/32, 512]}` (int64 indices of each
        pooling, `MaxPoolingWithArgmax2D`'s layout).
    """
    weights = resolve_weights("vgg16", weights)
    source = build_backbone("vgg16", input_shape, weights, name="vgg16_source")
    source_layers = {}
    for layer in source.get_layer("vgg16_features").layers:
        source_layers[layer.name] = layer

    images = keras.Input(input_shape, name="images")
    x = ImagePreprocessing("caffe", name="preprocessing")(images)
    outputs = {}
    for stage, num_convs in enumerate(STAGE_CONVS, start=1):
        for index in range(1, num_convs + 1):
            original = source_layers[f"block{stage}_conv{index}"]
            # Same class and config, so the copied weights mean the same thing.
            conv = type(original).from_config(original.get_config())
            x = conv(x)
            conv.set_weights(original.get_weights())
        x, outputs[f"argmax{stage}"] = MaxPoolingWithArgmax2D(2, name=f"block{stage}_pool")(x)
    outputs["P5"] = x
    encoder = keras.Model(images, outputs, name=name)
    # Pretrained statistics stay frozen while fine-tuning (none in VGG16 today;
    # kept so a batch-normalised registry entry behaves as in fcn.py and unet.py).
    if weights is not None:
        freeze_batch_norm(encoder)
    return encoder


__all__ = [
    "SEGNET_BACKBONES",
    "SEGNET_STRIDE",
    "build_segnet",
    "build_vgg16_argmax_encoder",
]
