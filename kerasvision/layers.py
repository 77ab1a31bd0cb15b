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


def _describe(x):
    """`x` for an error message: type and shape of a tensor, else its (short) repr."""
    shape = getattr(x, "shape", None)
    if shape is not None:
        return f"{type(x).__name__} of shape {tuple(shape)}"
    return f"{type(x).__name__} {x!r:.80}"


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
            # Shapes, not values: a tensor's repr would print its numbers.
            received = (
                [_describe(item) for item in inputs] if isinstance(inputs, (tuple, list))
                else _describe(inputs)
            )
            raise ValueError(
                "`inputs` of MaxUnpooling2D must be a pair [values, argmax] (argmax: the "
                "indices MaxPoolingWithArgmax2D returned with the pooled values); "
                f"received {received}."
            )
        values, argmax = inputs
        _check_rank4("values", values.shape)
        values_shape, argmax_shape = tuple(values.shape), tuple(argmax.shape)
        # Axis by axis, so a batch of unknown size (None) still has its height,
        # width and channels compared when the layer is built.
        if len(values_shape) != len(argmax_shape) or any(
            got is not None and want is not None and got != want
            for got, want in zip(argmax_shape, values_shape)
        ):
            raise ValueError(
                "`values` and `argmax` must have the same shape; received values shape "
                f"{values_shape} and argmax shape {argmax_shape}."
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
        indices = tf.reshape(tf.cast(argmax, tf.int64), [-1, 1])
        size = tf.reduce_prod(shape)
        # Indices taken from a larger tensor than this output (another pooling,
        # or `output_shape` smaller than the pooled input) fail inside scatter_nd
        # with a message naming neither `argmax` nor the expected size.
        check = tf.debugging.Assert(
            tf.reduce_all((indices >= 0) & (indices < size)),
            [("`argmax` must hold flat indices in [0, batch * height * width * channels) of "
              "the unpooled output, as MaxPoolingWithArgmax2D returns for the tensor it "
              "pooled; unpooled output shape"),
             shape, "received argmax from", tf.reduce_min(indices), "to", tf.reduce_max(indices)],
            summarize=4,
        )
        with tf.control_dependencies([check]):
            indices = tf.identity(indices)
        flat = tf.scatter_nd(
            indices,
            tf.reshape(values, [-1]),
            tf.reshape(size, [1]),
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


# ---------------------------------------------------------------------------
# Blocks of the classic ImageNet CNNs (kerasvision.models.classic)
# ---------------------------------------------------------------------------

# keras.applications' ResNets use this BatchNorm epsilon: cuDNN's smallest
# allowed value plus a margin. Kept so that their weights give the same outputs.
RESNET_BN_EPSILON = 1.001e-5
# BatchNorm momentum of the classic blocks: Torch's 0.1 update (He et al.'s
# models, torchvision). Keras' default 0.99 averages over ~100 steps, and when
# training from scratch at a high learning rate its moving statistics lag the
# weights so far that inference scored 33% where batch statistics gave 65%
# (ResNet-18 after 3 minutes on the shapes images). Not a weight: ImageNet
# weights load and compute the same either way.
CLASSIC_BN_MOMENTUM = 0.9


def apply_conv_bn_relu(x, filters, kernel_size, name, strides=1, padding="same",
                       batch_norm=False, use_bias=None, epsilon=1e-3, activation=True,
                       bn_name=None, relu_name=None, momentum=CLASSIC_BN_MOMENTUM):
    """A convolution, optional BatchNormalization, optional ReLU: the unit of the classic blocks.

    Args:
        x: tensor `[batch, height, width, channels]`.
        filters: int, output channels.
        kernel_size: int, square kernel size.
        name: str, the convolution's name.
        strides: int, the convolution's stride.
        padding: "same" or "valid".
        batch_norm: bool, BatchNormalization after the convolution.
        use_bias: bool or None (None: a bias only without BatchNorm, whose
            offset makes it redundant).
        epsilon: float, BatchNormalization epsilon.
        activation: bool, a ReLU at the end.
        bn_name, relu_name: str or None, names of the BatchNorm and ReLU
            layers (default `{name}_bn`, `{name}_relu`).
        momentum: float, BatchNormalization momentum of the moving statistics.

    Returns:
        Tensor `[batch, height', width', filters]`.
    """
    conv_bias = (not batch_norm) if use_bias is None else use_bias
    x = layers.Conv2D(filters, kernel_size, strides=strides, padding=padding,
                      use_bias=conv_bias, name=name)(x)
    if batch_norm:
        x = batch_normalization(epsilon=epsilon, momentum=momentum,
                                name=bn_name or f"{name}_bn")(x)
    if activation:
        x = layers.Activation("relu", name=relu_name or f"{name}_relu")(x)
    return x


def apply_vgg_block(x, filters, num_convs, name, batch_norm=False):
    """A VGG block: `num_convs` same-padded 3x3 convolutions with ReLU, then 2x2 max pooling.

    Simonyan and Zisserman, "Very Deep Convolutional Networks for Large-Scale
    Image Recognition", ICLR 2015: two stacked 3x3 convolutions see a 5x5
    window and three a 7x7 one, with fewer weights (3 * 9 C^2 against 49 C^2)
    and a ReLU between each. The convolutions are `apply_conv_block`'s.

    Args:
        x: tensor `[batch, height, width, channels]`.
        filters: int, output channels of every convolution.
        num_convs: int >= 1 (2 in VGG's first two blocks, 3 or 4 after).
        name: str, prefix of the layer names: `{name}_conv1`... (the names of
            keras.applications' VGG16/VGG19 when `name` is "block1"...) and
            `{name}_pool`.
        batch_norm: bool, BatchNormalization before each ReLU (not in the
            paper; the convolutions then have no bias).

    Returns:
        Tensor `[batch, height // 2, width // 2, filters]`.

    Example:
        >>> x = keras.Input((32, 32, 3))
        >>> apply_vgg_block(x, 64, 2, name="block1").shape
        (None, 16, 16, 64)
    """
    check_int("num_convs", num_convs, minimum=1)
    check_int("filters", filters, minimum=1)
    x = apply_conv_block(x, filters, num_convs=num_convs, kernel_size=3, batch_norm=batch_norm,
                         name=name)
    return layers.MaxPooling2D(2, strides=2, name=f"{name}_pool")(x)


def apply_residual_block(x, filters, stride=1, bottleneck=False, name="block", use_bias=True,
                         epsilon=RESNET_BN_EPSILON, expansion=4, momentum=CLASSIC_BN_MOMENTUM):
    """A ResNet block: `relu(F(x) + shortcut(x))`, basic or bottleneck (He et al. 2016).

    He, Zhang, Ren and Sun, "Deep Residual Learning for Image Recognition",
    CVPR 2016, section 3 and figure 5:

    - basic (ResNet-18/34): 3x3 (stride) -> BN -> ReLU -> 3x3 -> BN;
    - bottleneck (ResNet-50/101/152): 1x1 (stride) reduces to `filters`
      channels -> 3x3 -> 1x1 expands to `expansion * filters`, each with BN,
      ReLU between. The stride sits on the first 1x1, as in the paper's
      Caffe models and keras.applications' ResNet50 ("v1"; torchvision's
      "v1.5" moves it to the 3x3).

    The shortcut is the identity when the output has the input's shape, and a
    projection (1x1 convolution with the block's stride, then BN; the paper's
    option B) only when the stride or the channel count changes it.

    Layer names follow keras.applications' ResNet50 (`{name}_0_conv` and
    `{name}_0_bn` for the projection, `{name}_1_conv`, `{name}_1_bn`,
    `{name}_1_relu`, ..., `{name}_add`, `{name}_out`), so its weights load by name.

    Args:
        x: tensor `[batch, height, width, channels]`.
        filters: int, the block's width (bottleneck: its inner width; the
            output has `expansion * filters` channels).
        stride: int, 1 or 2, applied by the block's first convolution and the projection.
        bottleneck: bool, bottleneck (True) or basic (False) block.
        name: str, prefix of the layer names.
        use_bias: bool, biases on the convolutions (keras.applications' ResNets
            have them although BN follows; the paper's and torchvision's do not).
        epsilon: float, BatchNormalization epsilon.
        expansion: int, bottleneck output channels / `filters` (4 in the paper).
        momentum: float, BatchNormalization momentum (`CLASSIC_BN_MOMENTUM`).

    Returns:
        Tensor `[batch, ceil(height / stride), ceil(width / stride), out]`, `out`
        = `filters` (basic) or `expansion * filters` (bottleneck).

    Example:
        >>> x = keras.Input((32, 32, 64))
        >>> apply_residual_block(x, 64, bottleneck=True, name="conv2_block1").shape
        (None, 32, 32, 256)
    """
    check_int("filters", filters, minimum=1)
    check_choice("stride", stride, (1, 2))
    expansion = check_int("expansion", expansion, minimum=1)
    out_channels = expansion * filters if bottleneck else filters
    unit = {"batch_norm": True, "use_bias": use_bias, "epsilon": epsilon, "momentum": momentum}

    if stride != 1 or x.shape[-1] != out_channels:
        shortcut = apply_conv_bn_relu(x, out_channels, 1, f"{name}_0_conv", strides=stride,
                                 padding="valid", activation=False, bn_name=f"{name}_0_bn", **unit)
    else:
        shortcut = x

    def names(index):
        return {"name": f"{name}_{index}_conv", "bn_name": f"{name}_{index}_bn",
                "relu_name": f"{name}_{index}_relu"}

    if bottleneck:
        y = apply_conv_bn_relu(x, filters, 1, strides=stride, padding="valid", **names(1), **unit)
        y = apply_conv_bn_relu(y, filters, 3, **names(2), **unit)
        y = apply_conv_bn_relu(y, out_channels, 1, activation=False, **names(3), **unit)
    else:
        if stride != 1:
            # Symmetric padding, as the paper's Caffe/Torch models: a 3x3 window
            # at stride 2 is then centred on pixels 0, 2, 4... which the 1x1
            # projection samples ("same" would pad only after, shifting it by one).
            x = layers.ZeroPadding2D(1, name=f"{name}_1_pad")(x)
        y = apply_conv_bn_relu(x, filters, 3, strides=stride, padding="valid" if stride != 1 else "same",
                          **names(1), **unit)
        y = apply_conv_bn_relu(y, filters, 3, activation=False, **names(2), **unit)
    y = layers.Add(name=f"{name}_add")([shortcut, y])
    return layers.Activation("relu", name=f"{name}_out")(y)


def apply_inception_block(x, filters_1x1, filters_3x3_reduce, filters_3x3, filters_5x5_reduce,
                          filters_5x5, filters_pool_proj, name, batch_norm=False):
    """An Inception module with dimension reductions (Szegedy et al. 2015, figure 2b).

    Szegedy et al., "Going Deeper with Convolutions", CVPR 2015. Four
    branches see the same input and are concatenated along channels:

    1. a 1x1 convolution;
    2. a 1x1 reduction, then a 3x3 convolution;
    3. a 1x1 reduction, then a 5x5 convolution;
    4. 3x3 max pooling (stride 1), then a 1x1 projection.

    The 1x1 reductions are what make the module affordable: they shrink the
    channels the 3x3 and 5x5 convolutions read (in 3a from 192 to 96 and 16).
    Every convolution is followed by a ReLU. The column names of the paper's
    table 1 ("#1x1", "#3x3 reduce", ...) are the argument names.

    Args:
        x: tensor `[batch, height, width, channels]`.
        filters_1x1, filters_3x3_reduce, filters_3x3, filters_5x5_reduce,
            filters_5x5, filters_pool_proj: ints >= 1, the branch widths.
        name: str, prefix of the layer names (`{name}_1x1`, `{name}_3x3_reduce`,
            `{name}_3x3`, `{name}_5x5_reduce`, `{name}_5x5`, `{name}_pool`,
            `{name}_pool_proj`, `{name}_concat`).
        batch_norm: bool, BatchNormalization before each ReLU (Inception v2's
            addition, not in the paper; the convolutions then have no bias).

    Returns:
        Tensor `[batch, height, width, filters_1x1 + filters_3x3 + filters_5x5
        + filters_pool_proj]`.

    Example:
        >>> x = keras.Input((28, 28, 192))
        >>> apply_inception_block(x, 64, 96, 128, 16, 32, 32, name="inception_3a").shape
        (None, 28, 28, 256)
    """
    widths = {"filters_1x1": filters_1x1, "filters_3x3_reduce": filters_3x3_reduce,
              "filters_3x3": filters_3x3, "filters_5x5_reduce": filters_5x5_reduce,
              "filters_5x5": filters_5x5, "filters_pool_proj": filters_pool_proj}
    for argument, width in widths.items():
        check_int(argument, width, minimum=1)
    unit = {"batch_norm": batch_norm}
    branch_1x1 = apply_conv_bn_relu(x, filters_1x1, 1, f"{name}_1x1", **unit)
    branch_3x3 = apply_conv_bn_relu(x, filters_3x3_reduce, 1, f"{name}_3x3_reduce", **unit)
    branch_3x3 = apply_conv_bn_relu(branch_3x3, filters_3x3, 3, f"{name}_3x3", **unit)
    branch_5x5 = apply_conv_bn_relu(x, filters_5x5_reduce, 1, f"{name}_5x5_reduce", **unit)
    branch_5x5 = apply_conv_bn_relu(branch_5x5, filters_5x5, 5, f"{name}_5x5", **unit)
    branch_pool = layers.MaxPooling2D(3, strides=1, padding="same", name=f"{name}_pool")(x)
    branch_pool = apply_conv_bn_relu(branch_pool, filters_pool_proj, 1, f"{name}_pool_proj", **unit)
    return layers.Concatenate(axis=-1, name=f"{name}_concat")(
        [branch_1x1, branch_3x3, branch_5x5, branch_pool]
    )
