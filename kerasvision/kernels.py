"""Fused kernels: Keras classes computed with fewer, larger TensorFlow ops, and their switch.

Three registered classes compute what a Keras class computes, with the same
weights, arguments and outputs, in fewer passes over memory:

- `FusedAdam`: `keras.optimizers.Adam`, each variable's update one
  `ResourceApplyAdam` kernel (3.3x faster on FCN's fc6/fc7 weights);
- `FusedBatchNormalization`: `keras.layers.BatchNormalization` through
  `FusedBatchNormV3` (2.2x faster on a training step);
- `MatmulConv2D`: `keras.layers.Conv2D` as one matrix product over image
  patches on a CPU (FCN's fc6 and fc7).

Builders never name these classes: they call the factories `adam`,
`batch_normalization`, `conv2d` and `fuse_batch_normalization`, which return
the fused class while `fused_enabled()` and Keras's own class after
`use_fused(False)`. The switch is read when a layer or optimizer is created:
build and compile after setting it. Benchmarks turn it off to measure the
baseline; a Keras change that breaks a fused class can be worked around the
same way.

The classes rely on Keras internals (`Optimizer._get_variable_index`, Adam's
`_momentums`/`_velocities`, the `convolution_op` hook of convolutions,
BatchNormalization's `renorm`/`synchronized` attributes):
`tests/test_kernels.py` checks they exist, and setup.cfg pins Keras to the
minor release tested.

Example:
    >>> from kerasvision import kernels
    >>> from kerasvision.models.unet import build_unet
    >>> kernels.use_fused(False)  # Keras's own classes from here on
    >>> model = build_unet(3, (64, 64, 3))
    >>> kernels.use_fused(True)
"""

import keras
from keras import layers, ops

_fused = True


def use_fused(enabled):
    """Turns the fused kernels on (the default) or off for layers and optimizers created later.

    Args:
        enabled: bool. False makes `adam`, `batch_normalization`, `conv2d` and
            `fuse_batch_normalization` (and so every kerasvision builder and
            compile helper) use `keras.optimizers.Adam`,
            `keras.layers.BatchNormalization` and `keras.layers.Conv2D`.
            Models built before the call keep their classes.
    """
    global _fused
    if not isinstance(enabled, bool):
        raise ValueError(f"`enabled` must be True or False; received enabled={enabled!r}.")
    _fused = enabled


def fused_enabled():
    """True when the factories return the fused classes (see `use_fused`)."""
    return _fused


def adam(learning_rate=0.001, **kwargs):
    """Adam: `FusedAdam` when fused kernels are enabled, else `keras.optimizers.Adam`.

    Args:
        learning_rate: float or a `keras.optimizers.schedules` schedule.
        **kwargs: any other argument of `keras.optimizers.Adam`.
    """
    optimizer_class = FusedAdam if _fused else keras.optimizers.Adam
    return optimizer_class(learning_rate, **kwargs)


def batch_normalization(**kwargs):
    """A `FusedBatchNormalization` when enabled, else a `keras.layers.BatchNormalization`.

    Args:
        **kwargs: arguments of `keras.layers.BatchNormalization` (`name`, `momentum`, ...).
    """
    layer_class = FusedBatchNormalization if _fused else layers.BatchNormalization
    return layer_class(**kwargs)


def conv2d(filters, kernel_size, **kwargs):
    """A `MatmulConv2D` when enabled, else a `keras.layers.Conv2D`.

    Pays only where the output map is tiny and the kernel huge (FCN's fc6 and
    fc7); other convolutions should stay `keras.layers.Conv2D`.

    Args:
        filters: int, output channels.
        kernel_size: int or tuple of 2 ints.
        **kwargs: any other argument of `keras.layers.Conv2D`.
    """
    layer_class = MatmulConv2D if _fused else layers.Conv2D
    return layer_class(filters, kernel_size, **kwargs)


def fuse_batch_normalization(model):
    """Switches a built model's plain BatchNormalization layers to `FusedBatchNormalization`.

    For models another library builds (keras.applications' ResNet50 has 53).
    `FusedBatchNormalization` adds no state or argument, so the class is
    switched in place: weights, names and arguments stay as they are (cloning
    ResNet50's 175-layer graph instead would double its build time). Does
    nothing after `use_fused(False)`.

    Args:
        model: a built `keras.Model`; its direct layers are switched.

    Returns:
        `model`.
    """
    if _fused:
        for layer in model.layers:
            if type(layer) is layers.BatchNormalization:
                layer.__class__ = FusedBatchNormalization
    return model


@keras.saving.register_keras_serializable(package="kerasvision")
class FusedAdam(keras.optimizers.Adam):
    """`keras.optimizers.Adam` whose per-variable update is TensorFlow's fused kernel.

    Keras 3's Adam updates each variable with about a dozen element-wise ops,
    each a pass over the variable, its gradient and its two moments in memory.
    For FCN-8s's 134M weights that is the bulk of the non-convolution time of a
    training step on a CPU. TensorFlow's `ResourceApplyAdam` kernel makes the
    same update in one pass: 3.3x faster on fc6 and fc7's weights here.

    Same arguments, variables (`momentum`, `velocity`) and update rule as Keras's
    Adam (Kingma and Ba 2015, with epsilon added to sqrt(v) as Keras does), so
    checkpoints of either load into the other and the weights after each step
    agree to float32 rounding. Learning-rate schedules, gradient clipping,
    weight decay, EMA, loss scaling and tf.distribute work through the base
    class. Falls back to the Keras update for other backends, `amsgrad=True`
    and sparse (`IndexedSlices`) gradients.

    Example:
        >>> model.compile(FusedAdam(1e-3), loss="sparse_categorical_crossentropy")
    """

    def update_step(self, gradient, variable, learning_rate):
        import tensorflow as tf

        if (keras.backend.backend() != "tensorflow" or self.amsgrad
                or isinstance(gradient, tf.IndexedSlices)):
            return super().update_step(gradient, variable, learning_rate)
        if isinstance(variable, keras.Variable):
            variable = variable.value
        dtype = variable.dtype
        index = self._get_variable_index(variable)
        step = tf.cast(self.iterations + 1, dtype)
        tf.raw_ops.ResourceApplyAdam(
            var=variable.handle,
            m=self._momentums[index].value.handle,
            v=self._velocities[index].value.handle,
            beta1_power=tf.pow(tf.cast(self.beta_1, dtype), step),
            beta2_power=tf.pow(tf.cast(self.beta_2, dtype), step),
            lr=tf.cast(learning_rate, dtype),
            beta1=tf.cast(self.beta_1, dtype),
            beta2=tf.cast(self.beta_2, dtype),
            epsilon=tf.cast(self.epsilon, dtype),
            grad=tf.cast(gradient, dtype),
        )


def _runs_on_cpu(inputs):
    """Whether TensorFlow runs the ops computing on `inputs` on a CPU.

    A graph tensor made under a device scope names the device asked for.
    Otherwise TensorFlow places the ops on a GPU or TPU when it sees one (an
    eager tensor's own device does not decide: a batch from `tf.data` lives
    on the host and its ops still run on the GPU), and on the CPU when not.
    """
    import tensorflow as tf

    device = "" if tf.executing_eagerly() else getattr(inputs, "device", "")
    if device:
        return tf.DeviceSpec.from_string(device).device_type == "CPU"
    return not any(tf.config.list_logical_devices(kind) for kind in ("GPU", "TPU"))


@keras.saving.register_keras_serializable(package="kerasvision")
class MatmulConv2D(layers.Conv2D):
    """A `Conv2D` computed as one matrix product over image patches on a CPU.

    Same weights, arguments and outputs as `keras.layers.Conv2D` (kernel
    `[kh, kw, in_channels, filters]`), so ImageNet classifier weights and
    checkpoints load unchanged. It pays where the output map is tiny and the
    kernel huge, as in FCN's fc6 (7x7x512 -> 4096 on a 7x7 map, 103M weights)
    and fc7 (1x1, 4096 -> 4096): there the convolution kernels of TensorFlow's
    CPU backend run fc6's training step at 31% of the float32 matrix-product
    peak and its batch-1 forward pass at 18% (benchmarks/layer_profile.py),
    while one `[batch * positions, kh * kw * in] x [kh * kw * in, filters]`
    product and its two gradients run near the peak. Patches come from
    `tf.image.extract_patches`, whose depth order (row, column, channel) is
    the kernel's own.

    The matrix product is taken only where it was measured: the TensorFlow
    backend on a CPU, channels last, `groups=1`. On a GPU or TPU (cuDNN's
    convolutions are not the CPU's), on other backends and for other
    arguments the layer is a plain `Conv2D`.

    Input shape: `[batch, height, width, in_channels]` (channels_last).
    Output shape: `[batch, out_height, out_width, filters]`, as `Conv2D`.
    """

    def convolution_op(self, inputs, kernel):
        if (keras.backend.backend() != "tensorflow" or self.data_format != "channels_last"
                or self.groups != 1 or not _runs_on_cpu(inputs)):
            return super().convolution_op(inputs, kernel)
        import tensorflow as tf

        kernel_height, kernel_width, in_channels, filters = kernel.shape
        if (kernel_height, kernel_width) == (1, 1) and self.strides == (1, 1):
            patches = inputs
        else:
            patches = tf.image.extract_patches(
                inputs,
                sizes=[1, kernel_height, kernel_width, 1],
                strides=[1, *self.strides, 1],
                rates=[1, *self.dilation_rate, 1],
                padding=self.padding.upper(),
            )
        output_shape = tf.concat([tf.shape(patches)[:-1], [filters]], axis=0)
        depth = kernel_height * kernel_width * in_channels
        outputs = tf.matmul(tf.reshape(patches, [-1, depth]), tf.reshape(kernel, [depth, filters]))
        return tf.reshape(outputs, output_shape)


@keras.saving.register_keras_serializable(package="kerasvision")
class FusedBatchNormalization(layers.BatchNormalization):
    """`keras.layers.BatchNormalization` through TensorFlow's fused kernel.

    Keras 3 normalises with separate moment, subtraction, scaling and shift
    ops, each a pass over the activation map (and as many again for the
    gradient); TensorFlow's `FusedBatchNormV3` does the forward pass in one
    kernel and the backward pass in another, 2.2x faster on a training
    step over a 4x64x64x256 map on this CPU. Same weights, arguments,
    moving-average rule (Keras's biased batch variance, not the fused op's
    Bessel-corrected one) and outputs to float32 rounding. Under mixed
    precision the bfloat16/float16 activations go into the fused op as they
    are (it accumulates in float32), which saves Keras's cast to float32 and
    back: 9% of a bfloat16 U-Net/ResNet50 step. Falls back to the
    Keras computation for anything the fused op does not cover: other
    backends, inputs not of rank 4 with channels last, masks, renorm and
    synchronized statistics.

    Input shape: any; fused for `[batch, height, width, channels]` with `axis=-1`.
    Output shape: the input's.
    """

    def _fusable(self, inputs, mask):
        return (keras.backend.backend() == "tensorflow" and mask is None and not self.renorm
                and not self.synchronized and len(inputs.shape) == 4
                and self.axis in (-1, 3)
                and keras.backend.standardize_dtype(inputs.dtype) != "float64")

    def call(self, inputs, training=None, mask=None):
        if not self._fusable(inputs, mask):
            return super().call(inputs, training=training, mask=mask)
        import tensorflow as tf

        # As Keras, statistics and parameters are float32 even under mixed
        # precision. The fused op takes 16-bit activations as they are and
        # accumulates in float32 itself, which saves a cast pass each way.
        if keras.backend.standardize_dtype(inputs.dtype) not in ("bfloat16", "float16"):
            inputs = ops.cast(inputs, "float32")
        channels = inputs.shape[-1]
        scale = ops.cast(self.gamma, "float32") if self.scale else tf.ones([channels], "float32")
        offset = ops.cast(self.beta, "float32") if self.center else tf.zeros([channels], "float32")
        moving_mean = ops.cast(self.moving_mean, "float32")
        moving_variance = ops.cast(self.moving_variance, "float32")
        if training and self.trainable:
            outputs, mean, corrected_variance, *_ = tf.raw_ops.FusedBatchNormV3(
                x=inputs, scale=scale, offset=offset, mean=tf.zeros([0], "float32"),
                variance=tf.zeros([0], "float32"), epsilon=self.epsilon, is_training=True)
            # The op returns the variance times n / (n - 1); Keras keeps the biased one.
            count = tf.cast(tf.reduce_prod(tf.shape(inputs)[:-1]), "float32")
            variance = corrected_variance * tf.maximum(count - 1.0, 0.0) / count
            self.moving_mean.assign(moving_mean * self.momentum + mean * (1.0 - self.momentum))
            self.moving_variance.assign(
                moving_variance * self.momentum + variance * (1.0 - self.momentum))
        else:
            outputs = tf.raw_ops.FusedBatchNormV3(
                x=inputs, scale=scale, offset=offset, mean=moving_mean, variance=moving_variance,
                epsilon=self.epsilon, is_training=False)[0]
        return ops.cast(outputs, self.compute_dtype)
