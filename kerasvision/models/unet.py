"""U-Net, from scratch or on a pretrained encoder.

Ronneberger, Fischer and Brox, "U-Net: Convolutional Networks for Biomedical
Image Segmentation", MICCAI 2015. A contracting path of 3x3 convolutions and
2x2 max pooling, then an expanding path where each 2x2 up-convolution is
concatenated with the contracting features of the same resolution and refined
by two 3x3 convolutions. Unlike the paper, convolutions are same-padded, so the
output has the input's size and no cropping is needed.
"""

import keras
from keras import layers

from kerasvision.backbones import (
    build_backbone,
    freeze_batch_norm,
    get_backbone_spec,
    resolve_weights,
)
from kerasvision.layers import (
    UPSAMPLING_METHODS,
    ImagePreprocessing,
    apply_conv_block,
    apply_logits_head,
    apply_upsampling,
)
from kerasvision.validation import (
    check_choice,
    check_float,
    check_image_shape,
    check_int,
    check_num_classes,
)

BACKBONE_STRIDE = 32
# Decoder widths at strides 16, 8, 4, 2 and 1 for pretrained encoders (as in
# segmentation_models' U-Net decoders).
DEFAULT_DECODER_FILTERS = (256, 128, 64, 32, 16)


def _apply_up_block(x, skip, filters, batch_norm, upsampling, name):
    """2x up-convolution, concatenation with `skip` (if any), two 3x3 convolutions."""
    x = apply_upsampling(x, 2, filters=filters, method=upsampling, kernel_size=2, name=f"{name}_up")
    if skip is not None:
        x = layers.Concatenate(name=f"{name}_concat")([x, skip])
    return apply_conv_block(x, filters, batch_norm=batch_norm, name=name)


def build_unet(
    num_classes,
    input_shape=(256, 256, 3),
    backbone=None,
    weights="auto",
    depth=4,
    filters=64,
    decoder_filters=DEFAULT_DECODER_FILTERS,
    batch_norm=True,
    upsampling="transpose",
    dropout=0.0,
    name=None,
):
    """Builds a U-Net.

    Args:
        num_classes: int >= 2.
        input_shape: tuple `(height, width, 3)`; sizes must be multiples of the
            network stride: `2**depth` from scratch, 32 with a backbone (fixed
            and >= 75 for "inceptionv3").
        backbone: None (the paper's encoder, trained from scratch) or a name
            in `kerasvision.backbones.BACKBONES` ("vgg16", "resnet50",
            "mobilenetv2", ...: its P1..P4 features are the skip connections,
            P5 the bottleneck).
        weights: backbone weights, "auto", "imagenet", None or a file path
            (ignored without a backbone).
        depth: int >= 1, number of poolings of the scratch encoder (paper: 4).
        filters: int, width of the first scratch stage, doubled per stage (paper: 64).
        decoder_filters: 5 ints, decoder widths at strides 16..1 (backbone only).
        batch_norm: bool, BatchNormalization in every 3x3 convolution block
            (not in the 2015 paper; it makes training from scratch reliable).
        upsampling: "transpose" (2x2 up-convolution, the paper's) or "resize"
            (bilinear resize followed by a 3x3 convolution).
        dropout: float in [0, 1), dropout before the bottleneck block.
        name: str, model name.

    Returns:
        A functional `keras.Model` mapping raw RGB images `[batch, H, W, 3]` in
        [0, 255] to float32 logits `[batch, H, W, num_classes]`.

    Example:
        >>> model = build_unet(3, (32, 32, 3), depth=2, filters=4)
        >>> model(np.zeros((1, 32, 32, 3))).shape
        (1, 32, 32, 3)
    """
    num_classes = check_num_classes(num_classes)
    check_choice("upsampling", upsampling, UPSAMPLING_METHODS)
    check_float("dropout", dropout, minimum=0.0, maximum=0.99)
    images = keras.Input(check_image_shape(input_shape), name="images")
    if backbone is None:
        decoded = _scratch_unet(images, depth, filters, batch_norm, upsampling, dropout)
        default_name = "unet"
    else:
        decoded = _backbone_unet(
            images, backbone, weights, decoder_filters, batch_norm, upsampling, dropout
        )
        default_name = f"unet_{backbone}"
    logits = apply_logits_head(decoded, num_classes, name="logits")
    return keras.Model(images, logits, name=name or default_name)


def _scratch_unet(images, depth, filters, batch_norm, upsampling, dropout):
    depth = check_int("depth", depth, minimum=1, maximum=8)
    filters = check_int("filters", filters, minimum=1)
    check_image_shape(images.shape[1:], multiple_of=2**depth, min_size=2**depth)
    x = ImagePreprocessing("unit", name="preprocessing")(images)
    skips = []
    for level in range(depth):
        x = apply_conv_block(x, filters * 2**level, batch_norm=batch_norm, name=f"encoder{level + 1}")
        skips.append(x)
        x = layers.MaxPooling2D(2, name=f"encoder{level + 1}_pool")(x)
    if dropout:
        x = layers.Dropout(dropout, name="bottleneck_dropout")(x)
    x = apply_conv_block(x, filters * 2**depth, batch_norm=batch_norm, name="bottleneck")
    for level in reversed(range(depth)):
        x = _apply_up_block(
            x, skips[level], filters * 2**level, batch_norm, upsampling, name=f"decoder{level + 1}"
        )
    return x


def _backbone_unet(images, backbone, weights, decoder_filters, batch_norm, upsampling, dropout):
    get_backbone_spec(backbone)
    if len(decoder_filters) != 5:
        raise ValueError(
            "`decoder_filters` must list 5 widths (strides 16, 8, 4, 2, 1); "
            f"received decoder_filters={decoder_filters!r}."
        )
    check_image_shape(images.shape[1:], multiple_of=BACKBONE_STRIDE, min_size=BACKBONE_STRIDE)
    weights = resolve_weights(backbone, weights)
    # Unpadded backbones (InceptionV3) get their maps resized to strides 2..32
    # exactly, so that each 2x up-convolution meets a skip of its size.
    encoder = build_backbone(
        backbone, images.shape[1:], weights, name="backbone", resize_to_strides=True
    )
    # Pretrained BatchNorm statistics stay frozen while fine-tuning (a
    # non-trainable BatchNorm runs in inference mode; keras-team/keras#20285).
    if weights is not None:
        freeze_batch_norm(encoder)
    features = encoder(images)
    x = features["P5"]
    if dropout:
        x = layers.Dropout(dropout, name="bottleneck_dropout")(x)
    skip_keys = ("P4", "P3", "P2", "P1", None)
    for index, (skip_key, width) in enumerate(zip(skip_keys, decoder_filters)):
        skip = features[skip_key] if skip_key else None
        x = _apply_up_block(x, skip, width, batch_norm, upsampling, name=f"decoder{5 - index}")
    return x


__all__ = ["BACKBONE_STRIDE", "DEFAULT_DECODER_FILTERS", "build_unet"]
