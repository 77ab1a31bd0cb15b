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


# oneDNN's AMX bfloat16 convolution (TensorFlow 2.21) corrupts the heap when it
# maps more than 2048 input channels to 2-15 output channels (docs/known_issues.md).
AMX_UNSAFE_MIN_INPUT_CHANNELS = 2049
AMX_SAFE_MIN_FILTERS = 16


@keras.saving.register_keras_serializable(package="kerasvision")
class WideInputConv2D(layers.Conv2D):
    """A `Conv2D` whose 1x1 narrow-from-wide case runs as a matrix product.

    Same weights, outputs and gradients as `keras.layers.Conv2D`. When a 1x1,
    stride-1 kernel maps more than 2048 input channels to 2-15 filters, the
    layer multiplies the `[pixels, channels]` matrix by the kernel instead of
    calling the convolution: oneDNN's AMX bfloat16 convolution in TensorFlow
    2.21 corrupts the heap (SIGABRT) for exactly those shapes, as FCN's
    `score_fr` (4096 -> classes) has, while its matrix product is sound.
    Every other shape runs as a plain convolution (`amx_unsafe_convolutions`
    still reports a larger kernel of that width).

    Args: those of `keras.layers.Conv2D`.

    Example:
        >>> scores = WideInputConv2D(5, 1, name="score_fr")(keras.Input((None, None, 4096)))
    """

    def runs_as_matmul(self, input_channels):
        """Whether a call on `input_channels` channels takes the matrix-product path."""
        return (tuple(self.kernel_size) == (1, 1) and tuple(self.strides) == (1, 1)
                and self.groups == 1 and self.data_format == "channels_last"
                and 1 < self.filters < AMX_SAFE_MIN_FILTERS
                and input_channels >= AMX_UNSAFE_MIN_INPUT_CHANNELS)

    def convolution_op(self, inputs, kernel):
        input_channels = kernel.shape[-2]
        if not self.runs_as_matmul(input_channels):
            return super().convolution_op(inputs, kernel)
        shape = ops.shape(inputs)
        pixels = ops.reshape(inputs, (-1, input_channels))
        outputs = ops.matmul(pixels, ops.reshape(kernel, (input_channels, self.filters)))
        return ops.reshape(outputs, (shape[0], shape[1], shape[2], self.filters))


def _walk_layers(model):
    for layer in model.layers:
        yield layer
        if hasattr(layer, "layers"):  # a nested model (a backbone)
            yield from _walk_layers(layer)


def amx_unsafe_convolutions(model):
    """Names of `model`'s convolutions that oneDNN's AMX bfloat16 kernels would corrupt.

    Those are convolutions mapping more than 2048 input channels to 2-15
    filters, except `WideInputConv2D`'s 1x1 ones, which run as a matmul. Under a bfloat16 policy on an AMX CPU
    with oneDNN unrestricted, training such a model aborts the process
    (docs/known_issues.md); elsewhere they are harmless.

    Args:
        model: a built `keras.Model` (nested models are searched too).

    Returns:
        list of str, the offending layers' names (empty when none).
    """
    found = []
    for layer in _walk_layers(model):
        kernel = getattr(layer, "kernel", None)
        filters = getattr(layer, "filters", None)
        if not isinstance(layer, layers.Conv2D) or kernel is None or filters is None:
            continue
        input_channels = kernel.shape[-2] * layer.groups
        if isinstance(layer, WideInputConv2D) and layer.runs_as_matmul(input_channels):
            continue
        if 1 < filters < AMX_SAFE_MIN_FILTERS and input_channels >= AMX_UNSAFE_MIN_INPUT_CHANNELS:
            found.append(layer.name)
    return found


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
    x = WideInputConv2D(
        num_classes, 1, kernel_initializer=kernel_initializer, name=f"{name}_conv"
    )(x)
    return layers.Activation("linear", dtype="float32", name=name)(x)


def _pair(name, value):
    """An int or a pair of ints >= 1 as a pair (pool and unpooling sizes)."""
    if isinstance(value, (tuple, list)):
        if len(value) != 2:
            raise ValueError(
                f"`{name}` must be an int or a pair (height, width) of ints; "
                f"received {name}={value!r}."
            )
        return tuple(check_int(name, item, minimum=1) for item in value)
    value = check_int(name, value, minimum=1)
    return (value, value)


def _check_rank4(name, shape):
    if len(shape) != 4:
        raise ValueError(
            f"`{name}` must be a 4D tensor [batch, height, width, channels]; "
            f"received shape {tuple(shape)}."
        )


@keras.saving.register_keras_serializable(package="kerasvision")
class MaxPoolingWithArgmax2D(layers.Layer):
    """Max pooling that also returns where each maximum was (the pooling "switches").

    SegNet (Badrinarayanan, Kendall and Cipolla, "SegNet: A Deep Convolutional
    Encoder-Decoder Architecture for Image Segmentation", TPAMI 2017) and
    DeconvNet (Noh, Hong and Han, "Learning Deconvolution Network for Semantic
    Segmentation", ICCV 2015) record these positions in the encoder so that
    `MaxUnpooling2D` can put the decoder's values back where the maxima were:
    boundaries stay sharp, and only the indices (not U-Net's feature maps)
    cross from encoder to decoder.

    Computed by `tf.nn.max_pool_with_argmax` with `include_batch_in_index=True`,
    so indices count from the start of the whole (per-replica) batch and the
    unpooling needs no batch offsets. The op has no XLA kernel: compile models
    holding this layer with `jit_compile=False`.

    Args:
        pool_size: int or pair of ints, the pooling window (default 2).
        strides: int, pair of ints or None (= `pool_size`).
        padding: "valid" or "same".

    Input shape: `[batch, height, width, channels]`, any float dtype (cast to
    the layer's compute dtype, so bfloat16 under mixed precision).
    Output: a pair `(pooled, argmax)`, both `[batch, out_height, out_width,
    channels]`: the maxima (compute dtype), and int64 flat indices into the
    input, `((b * height + y) * width + x) * channels + c`.
    """

    PADDINGS = ("valid", "same")

    def __init__(self, pool_size=2, strides=None, padding="valid", **kwargs):
        super().__init__(**kwargs)
        self.pool_size = _pair("pool_size", pool_size)
        self.strides = self.pool_size if strides is None else _pair("strides", strides)
        self.padding = check_choice("padding", padding, self.PADDINGS)

    def call(self, inputs):
        import tensorflow as tf

        _check_rank4("inputs", inputs.shape)
        pooled, argmax = tf.nn.max_pool_with_argmax(
            inputs,
            ksize=self.pool_size,
            strides=self.strides,
            padding=self.padding.upper(),
            include_batch_in_index=True,
        )
        # The op's gradient only flows through `pooled`; the indices are data.
        return pooled, tf.stop_gradient(argmax)

    def _pooled_size(self, size, axis):
        if size is None:
            return None
        if self.padding == "same":
            return -(-size // self.strides[axis])
        return (size - self.pool_size[axis]) // self.strides[axis] + 1

    def compute_output_shape(self, input_shape):
        _check_rank4("inputs", input_shape)
        batch, height, width, channels = input_shape
        shape = (batch, self._pooled_size(height, 0), self._pooled_size(width, 1), channels)
        return shape, shape

    def compute_output_spec(self, inputs):
        shape, _ = self.compute_output_shape(inputs.shape)
        return (
            keras.KerasTensor(shape, dtype=self.compute_dtype),
            keras.KerasTensor(shape, dtype="int64"),
        )

    def get_config(self):
        return {
            **super().get_config(),
            "pool_size": self.pool_size,
            "strides": self.strides,
            "padding": self.padding,
        }


@keras.saving.register_keras_serializable(package="kerasvision")
class MaxUnpooling2D(layers.Layer):
    """Scatters values to the positions a `MaxPoolingWithArgmax2D` recorded; zeros elsewhere.

    The unpooling of SegNet (Badrinarayanan et al. 2017, section 3) and
    DeconvNet (Noh et al. 2015, section 3.2): a sparse, parameter-free
    upsampling that puts each value where its encoder maximum was. Its
    gradient is a gather at those positions, so it trains anywhere a
    scatter does (any batch size, mixed precision, `tf.distribute`: indices
    are per replica, as the pooling computed them on the replica's batch).

    Args:
        size: int or pair of ints, the pooling's strides: the output is
            `size` times the input's height and width.
        output_shape: None or `(height, width)` of the tensor the indices
            were taken from, when it is not `size` times the input's (odd
            sizes); it must be that size exactly, since the flat indices
            count its rows and columns.

    Input: a pair `[values, argmax]`, both `[batch, height, width, channels]`:
    values (any float dtype, cast to the compute dtype) and the integer
    indices returned with them by `MaxPoolingWithArgmax2D`.
    Output shape: `[batch, size * height, size * width, channels]` (or
    `[batch, *output_shape, channels]`). Indices that repeat (overlapping
    pooling windows) add their values.
    """

    def __init__(self, size=2, output_shape=None, **kwargs):
        super().__init__(**kwargs)
        self.size = _pair("size", size)
        if output_shape is not None:
            if not isinstance(output_shape, (tuple, list)) or len(output_shape) != 2:
                raise ValueError(
                    "`output_shape` must be None or a pair (height, width) of ints; "
                    f"received output_shape={output_shape!r}."
                )
            output_shape = tuple(check_int("output_shape", side, minimum=1) for side in output_shape)
        # Not `self.output_shape`: keep clear of any attribute Keras gives layers.
        self.unpooled_shape = output_shape

    def _check_inputs(self, inputs):
        if not isinstance(inputs, (tuple, list)) or len(inputs) != 2:
            raise ValueError(
                "`inputs` of MaxUnpooling2D must be a pair [values, argmax]; "
                f"received {type(inputs).__name__} {inputs!r:.200}."
            )
        values, argmax = inputs
        _check_rank4("values", values.shape)
        if tuple(values.shape) != tuple(argmax.shape) and None not in tuple(values.shape) + tuple(argmax.shape):
            raise ValueError(
                "`values` and `argmax` must have the same shape; received values shape "
                f"{tuple(values.shape)} and argmax shape {tuple(argmax.shape)}."
            )
        if "int" not in str(argmax.dtype):
            raise ValueError(
                f"`argmax` must hold integer indices; received argmax of dtype {argmax.dtype}."
            )
        return values, argmax

    def call(self, inputs):
        import tensorflow as tf

        values, argmax = self._check_inputs(inputs)
        # Static sizes where known, so the next layer sees its channels at trace time.
        dynamic = tf.shape(values, out_type=tf.int64)
        factors = (1, *self.size, 1) if self.unpooled_shape is None else (1, 1, 1, 1)
        shape = tf.stack([
            dynamic[axis] * factors[axis] if size is None else tf.constant(size, tf.int64)
            for axis, size in enumerate(self.compute_output_shape(values.shape))
        ])
        flat = tf.scatter_nd(
            tf.reshape(tf.cast(argmax, tf.int64), [-1, 1]),
            tf.reshape(values, [-1]),
            tf.reshape(tf.reduce_prod(shape), [1]),
        )
        return tf.reshape(flat, shape)

    def compute_output_shape(self, input_shape):
        if isinstance(input_shape, (tuple, list)) and input_shape and isinstance(
            input_shape[0], (tuple, list)
        ):
            input_shape = input_shape[0]  # [values shape, argmax shape]
        _check_rank4("values", input_shape)
        batch, height, width, channels = input_shape
        if self.unpooled_shape is not None:
            height, width = self.unpooled_shape
        else:
            height = None if height is None else height * self.size[0]
            width = None if width is None else width * self.size[1]
        return (batch, height, width, channels)

    def compute_output_spec(self, inputs):
        values, _ = self._check_inputs(inputs)
        return keras.KerasTensor(self.compute_output_shape(values.shape), dtype=self.compute_dtype)

    def get_config(self):
        return {
            **super().get_config(),
            "size": self.size,
            "output_shape": self.unpooled_shape,
        }


def apply_scratch_encoder(images, filters, num_stages, batch_norm=True, name="stage"):
    """A small encoder trained from scratch: per stage, two 3x3 convolutions and 2x2 max pooling.

    What detectors and classifiers use instead of a registered backbone when
    they must train in minutes on a CPU (raw pixels scaled to [0, 1] first).

    Args:
        images: tensor `[batch, H, W, 3]` of raw RGB in [0, 255].
        filters: sequence of `num_stages` ints, each stage's width.
        num_stages: int, the number of stride-2 stages the caller needs.
        batch_norm: bool, batch normalisation after each convolution.
        name: str, layer-name prefix (`{name}1_conv1`, `{name}1_pool`, ...).

    Returns:
        Tensor `[batch, H / 2**num_stages, W / 2**num_stages, filters[-1]]`.
    """
    filters = tuple(filters)
    if len(filters) != num_stages:
        raise ValueError(f"`scratch_filters` must hold {num_stages} widths (one per stride-2 "
                         f"stage); received scratch_filters={filters!r}.")
    x = ImagePreprocessing("unit", name="preprocessing")(images)
    for stage, width in enumerate(filters, start=1):
        x = apply_conv_block(x, check_int("scratch_filters", width, minimum=1),
                             batch_norm=batch_norm, name=f"{name}{stage}")
        x = layers.MaxPooling2D(2, name=f"{name}{stage}_pool")(x)
    return x

