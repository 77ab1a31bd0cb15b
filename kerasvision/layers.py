"""Registered custom layers, initializers and the `apply_*` blocks shared by models.

Every block takes a `name` prefix and derives each layer's name from it
(`f"{name}_conv1"`), so feature taps and weights stay addressable by name.
"""

import numpy as np
import keras
from keras import layers, ops

from kerasvision.kernels import batch_normalization
from kerasvision.validation import check_choice, check_int

# Per-channel ImageNet statistics of the caffe-style backbones (VGG16, ResNet50),
# in BGR order, as their `preprocess_input` uses them.
_CAFFE_BGR_MEAN = (103.939, 116.779, 123.68)
_TORCH_MEAN = (0.485, 0.456, 0.406)
_TORCH_STD = (0.229, 0.224, 0.225)


@keras.saving.register_keras_serializable(package="kerasvision")
class ImagePreprocessing(layers.Layer):
    """Maps raw RGB images in [0, 255] to what a backbone was trained on.

    Placing the backbone's `preprocess_input` inside the model means every
    kerasvision model (and its SavedModel export) takes raw pixels, so a
    serving client never has to know the backbone's convention.

    Args:
        mode: str, one of
            `"caffe"`: RGB -> BGR, minus the ImageNet BGR mean (VGG16, ResNet50);
            `"torch"`: scale to [0, 1], normalise by the ImageNet mean/std;
            `"tf"`: scale to [-1, 1];
            `"unit"`: scale to [0, 1] (models trained from scratch).

    Input shape: `[batch, height, width, 3]`, any real dtype.
    Output shape: the same, float32 (computed in float32 even under mixed
    precision: bfloat16 cannot hold 255 - 123.68 exactly).
    """

    MODES = ("caffe", "torch", "tf", "unit")

    def __init__(self, mode="caffe", **kwargs):
        kwargs.setdefault("dtype", "float32")
        super().__init__(**kwargs)
        self.mode = check_choice("mode", mode, self.MODES)

    def call(self, images):
        images = ops.cast(images, "float32")
        if self.mode == "caffe":
            bgr = ops.flip(images, axis=-1)
            return bgr - ops.convert_to_tensor(_CAFFE_BGR_MEAN, "float32")
        if self.mode == "torch":
            mean = ops.convert_to_tensor(_TORCH_MEAN, "float32")
            std = ops.convert_to_tensor(_TORCH_STD, "float32")
            return (images / 255.0 - mean) / std
        if self.mode == "tf":
            return images / 127.5 - 1.0
        return images / 255.0

    def compute_output_shape(self, input_shape):
        return input_shape

    def get_config(self):
        return {**super().get_config(), "mode": self.mode}


def bilinear_upsampling_kernel(factor, channels):
    """Kernel that makes a transposed convolution a bilinear upsampler.

    Args:
        factor: int, the upsampling factor (the transposed convolution's stride).
        channels: int, number of channels (input and output; channel c only
            feeds channel c).

    Returns:
        float32 numpy array `[2 * factor, 2 * factor, channels, channels]`, the
        `Conv2DTranspose` kernel layout `(height, width, out, in)`.
    """
    size = 2 * factor
    # Tap k of a size-2f kernel sits (k - f + 0.5) / f input pixels from the
    # output pixel's source position; the bilinear weight is 1 - |distance|.
    center = factor - 0.5
    taps = 1.0 - np.abs(np.arange(size) - center) / factor
    kernel_2d = np.outer(taps, taps).astype("float32")
    kernel = np.zeros((size, size, channels, channels), dtype="float32")
    for channel in range(channels):
        kernel[:, :, channel, channel] = kernel_2d
    return kernel


@keras.saving.register_keras_serializable(package="kerasvision")
class BilinearUpsamplingInitializer(keras.initializers.Initializer):
    """Initialises a `Conv2DTranspose(kernel_size=2f, strides=f)` to bilinear upsampling.

    The FCN paper (Long et al. 2015, section 3.3) initialises its learned
    upsampling layers this way so training starts from plain interpolation.

    Args:
        factor: int, the transposed convolution's stride.
    """

    def __init__(self, factor):
        self.factor = check_int("factor", factor, minimum=1)

    def __call__(self, shape, dtype=None):
        kernel_h, kernel_w, out_channels, in_channels = shape
        if kernel_h != 2 * self.factor or kernel_w != 2 * self.factor:
            raise ValueError(
                f"BilinearUpsamplingInitializer(factor={self.factor}) needs a "
                f"{2 * self.factor}x{2 * self.factor} kernel; received shape {shape}."
            )
        if out_channels != in_channels:
            raise ValueError(
                "BilinearUpsamplingInitializer needs as many output as input "
                f"channels; received shape {shape}."
            )
        kernel = bilinear_upsampling_kernel(self.factor, in_channels)
        return ops.convert_to_tensor(kernel, dtype=dtype or "float32")

    def get_config(self):
        return {"factor": self.factor}


UPSAMPLING_METHODS = ("transpose", "resize")


def apply_upsampling(
    x, factor, filters=None, method="transpose", kernel_size=None, name="upsample"
):
    """Upsamples a feature map by an integer factor.

    Args:
        x: tensor `[batch, height, width, channels]`.
        factor: int, the upsampling factor.
        filters: int, output channels (default: the input's channels).
        method: `"transpose"`: a learned `Conv2DTranspose` with stride f and a
            2f x 2f kernel (FCN), initialised to bilinear interpolation when
            `filters` equals the input channels; `"resize"`: bilinear resize
            followed by a 3x3 convolution (no checkerboard artefacts).
        kernel_size: int, the transposed convolution's kernel size (default
            2f; U-Net's "up-convolution" uses f). Bilinear initialisation only
            applies to the default.
        name: str, prefix of the layer names.

    Returns:
        Tensor `[batch, factor * height, factor * width, filters]`.
    """
    check_choice("method", method, UPSAMPLING_METHODS)
    check_int("factor", factor, minimum=1)
    in_channels = x.shape[-1]
    filters = in_channels if filters is None else filters
    kernel_size = 2 * factor if kernel_size is None else kernel_size
    if method == "transpose":
        bilinear = filters == in_channels and kernel_size == 2 * factor
        initializer = BilinearUpsamplingInitializer(factor) if bilinear else "glorot_uniform"
        return layers.Conv2DTranspose(
            filters,
            kernel_size=kernel_size,
            strides=factor,
            padding="same",
            use_bias=False,
            kernel_initializer=initializer,
            name=f"{name}_transpose",
        )(x)
    x = layers.UpSampling2D(size=factor, interpolation="bilinear", name=f"{name}_resize")(x)
    return layers.Conv2D(filters, 3, padding="same", name=f"{name}_conv")(x)


def apply_conv_block(
    x, filters, num_convs=2, kernel_size=3, batch_norm=False, activation="relu", name="block"
):
    """A stack of same-padded convolutions, each optionally batch-normalised.

    Args:
        x: tensor `[batch, height, width, channels]`.
        filters: int, output channels of every convolution.
        num_convs: int, number of convolutions.
        kernel_size: int, square kernel size.
        batch_norm: bool, insert BatchNormalization before each activation
            (the convolution then has no bias).
        activation: str, activation after each convolution.
        name: str, prefix of the layer names (`{name}_conv1`, `{name}_bn1`, ...).

    Returns:
        Tensor `[batch, height, width, filters]`.
    """
    for index in range(1, num_convs + 1):
        x = layers.Conv2D(
            filters,
            kernel_size,
            padding="same",
            use_bias=not batch_norm,
            kernel_initializer="he_normal",
            name=f"{name}_conv{index}",
        )(x)
        if batch_norm:
            x = batch_normalization(name=f"{name}_bn{index}")(x)
        x = layers.Activation(activation, name=f"{name}_{activation}{index}")(x)
    return x


def apply_logits_head(x, num_classes, name="logits", kernel_initializer="glorot_uniform"):
    """1x1 convolution to class scores, returned in float32.

    The cast to float32 keeps softmax and the loss numerically stable under
    mixed precision.

    Args:
        x: tensor `[batch, height, width, channels]`.
        num_classes: int.
        name: str, name of the float32 output; the convolution is `{name}_conv`.

    Returns:
        Tensor `[batch, height, width, num_classes]`, float32 logits.
    """
    x = layers.Conv2D(
        num_classes, 1, kernel_initializer=kernel_initializer, name=f"{name}_conv"
    )(x)
    return layers.Activation("linear", dtype="float32", name=name)(x)
