"""The denoiser network: a U-Net predicting the noise in `x_t`, conditioned on the timestep.

`build_denoiser` builds it from residual blocks (`apply_residual_block`)
conditioned on a sinusoidal time embedding (`SinusoidalTimeEmbedding`), as in
Ho et al. 2020 (appendix B). It is what diffusers calls the model; the
schedule (`schedules`) and the trainer/sampler (`model`) know it only as a
`[x_t, t] -> eps` network.

Papers:
    Ho, Jain and Abbeel, "Denoising Diffusion Probabilistic Models", NeurIPS
        2020 (appendix B: the U-Net, the time embedding, the residual block).
    Vaswani et al., "Attention Is All You Need", NeurIPS 2017 (section 3.5:
        the sinusoidal embedding).
"""

import math

import tensorflow as tf
import keras
from keras import layers

from kerasvision.validation import check_float, check_image_shape, check_int


@keras.saving.register_keras_serializable(package="kerasvision")
class SinusoidalTimeEmbedding(layers.Layer):
    """Transformer-style sinusoidal embedding of the diffusion timestep.

    `embedding[:, i] = sin(t * w_i)` and `embedding[:, half + i] = cos(t * w_i)`
    with `w_i = max_period ** (-i / half)`, `i = 0 .. half - 1`, `half = dim / 2`
    (Vaswani et al. 2017, section 3.5; used by Ho et al. 2020, appendix B).
    Computed in float32 even under mixed precision: `t * w_0` reaches 1000,
    where bfloat16 cannot resolve the phase.

    Args:
        dim: even int >= 2, embedding size.
        max_period: float > 1, the longest wavelength (in timesteps, over 2 pi).

    Input shape: `[batch]` timesteps (int or float).
    Output shape: `[batch, dim]`, float32.
    """

    def __init__(self, dim, max_period=10000.0, **kwargs):
        kwargs.setdefault("dtype", "float32")
        super().__init__(**kwargs)
        self.dim = check_int("dim", dim, minimum=2)
        if self.dim % 2:
            raise ValueError(f"`dim` must be even (sin and cos halves); received dim={dim}.")
        self.max_period = check_float("max_period", max_period, minimum=1.0, strict_minimum=True)

    def call(self, timesteps):
        half = self.dim // 2
        exponents = tf.range(half, dtype=tf.float32) / float(half)
        frequencies = tf.exp(-math.log(self.max_period) * exponents)
        angles = tf.cast(tf.reshape(timesteps, [-1, 1]), tf.float32) * frequencies[None, :]
        return tf.concat([tf.sin(angles), tf.cos(angles)], axis=-1)

    def compute_output_shape(self, input_shape):
        return (input_shape[0], self.dim)

    def get_config(self):
        return {**super().get_config(), "dim": self.dim, "max_period": self.max_period}


def apply_residual_block(x, embedding, filters, groups=8, dropout=0.0, name="res"):
    """A pre-activation residual block conditioned on the time embedding.

    GroupNorm -> swish -> 3x3 conv -> + Dense(embedding) -> GroupNorm -> swish
    -> dropout -> 3x3 conv, plus the input (through a 1x1 conv when the width
    changes). This is the block of Ho et al. 2020 (appendix B), taken from
    the Wide ResNet with group normalisation.

    Args:
        x: tensor `[batch, H, W, channels]`.
        embedding: tensor `[batch, embedding_dim]`.
        filters: int, output channels; `groups` must divide it.
        groups: int, GroupNormalization groups.
        dropout: float in [0, 1).
        name: str, prefix of the layer names.

    Returns:
        Tensor `[batch, H, W, filters]`.
    """
    skip = x
    if x.shape[-1] != filters:
        skip = layers.Conv2D(filters, 1, name=f"{name}_skip")(x)
    h = layers.GroupNormalization(groups=min(groups, x.shape[-1]), name=f"{name}_norm1")(x)
    h = layers.Activation("swish", name=f"{name}_swish1")(h)
    h = layers.Conv2D(filters, 3, padding="same", name=f"{name}_conv1")(h)
    # The timestep enters as a per-channel bias: every pixel learns how much
    # noise to expect at this step.
    shift = layers.Dense(filters, name=f"{name}_time")(embedding)
    shift = layers.Reshape((1, 1, filters), name=f"{name}_time_reshape")(shift)
    h = layers.Add(name=f"{name}_add_time")([h, shift])
    h = layers.GroupNormalization(groups=groups, name=f"{name}_norm2")(h)
    h = layers.Activation("swish", name=f"{name}_swish2")(h)
    if dropout:
        h = layers.Dropout(dropout, name=f"{name}_dropout")(h)
    h = layers.Conv2D(filters, 3, padding="same", name=f"{name}_conv2")(h)
    return layers.Add(name=f"{name}_add")([skip, h])


def denoiser_stride(widths):
    """The U-Net's total downsampling factor: 2 per level after the first."""
    return 2 ** (len(tuple(widths)) - 1)


def build_denoiser(input_shape=(32, 32, 3), widths=(32, 64, 128), blocks_per_level=2,
                   groups=8, dropout=0.0, name="denoiser"):
    """A noise-prediction U-Net with sinusoidal time embedding and residual blocks.

    The layout of Ho et al. 2020 (appendix B, without self-attention, which
    these small images do not need): a 3x3 stem, then per level
    `blocks_per_level` residual blocks and a stride-2 convolution; two middle
    blocks; an upward path whose `blocks_per_level + 1` blocks per level each
    concatenate one skip from the downward path, with nearest upsampling and a
    3x3 convolution between levels; GroupNorm, swish and a 3x3 output
    convolution initialised to zero (training starts from "predict no noise").

    Args:
        input_shape: `(height, width, 3)`; sizes must be multiples of the
            stride `2 ** (len(widths) - 1)`.
        widths: sequence of ints, channels per level (each divisible by `groups`).
        blocks_per_level: int >= 1.
        groups: int >= 1, GroupNormalization groups.
        dropout: float in [0, 1), inside every residual block.
        name: str, model name.

    Returns:
        A functional `keras.Model` with inputs `[noisy_images float32
        [batch, H, W, 3] in about [-1, 1] scaled as in `q_sample`, timesteps
        int32 [batch]]` and output the predicted noise, float32 `[batch, H, W, 3]`.

    Example:
        >>> network = build_denoiser((32, 32, 3), widths=(16, 32), blocks_per_level=1)
        >>> network([np.zeros((2, 32, 32, 3)), np.array([0, 999])]).shape
        TensorShape([2, 32, 32, 3])
    """
    widths = tuple(widths)
    if not widths:
        raise ValueError(f"`widths` must name at least one level; received widths={widths!r}.")
    groups = check_int("groups", groups, minimum=1)
    for width in widths:
        check_int("widths", width, minimum=1)
        if width % groups:
            raise ValueError(
                f"`widths` must all be multiples of groups={groups} (GroupNormalization); "
                f"received widths={widths!r}."
            )
    blocks_per_level = check_int("blocks_per_level", blocks_per_level, minimum=1)
    dropout = check_float("dropout", dropout, minimum=0.0, maximum=0.99)
    stride = denoiser_stride(widths)
    input_shape = check_image_shape(input_shape, multiple_of=stride, min_size=stride)
    if None in input_shape[:2]:
        raise ValueError(
            f"`input_shape` needs a fixed height and width; received input_shape={input_shape!r}."
        )

    images = keras.Input(input_shape, name="noisy_images")
    timesteps = keras.Input((), dtype="int32", name="timesteps")
    embedding_dim = 4 * widths[0]
    embedding = SinusoidalTimeEmbedding(widths[0], name="time_embedding")(timesteps)
    embedding = layers.Dense(embedding_dim, activation="swish", name="time_dense1")(embedding)
    embedding = layers.Dense(embedding_dim, name="time_dense2")(embedding)

    x = layers.Conv2D(widths[0], 3, padding="same", name="stem")(images)
    skips = [x]
    for level, width in enumerate(widths):
        for block in range(blocks_per_level):
            x = apply_residual_block(x, embedding, width, groups, dropout,
                                     name=f"down{level}_block{block}")
            skips.append(x)
        if level < len(widths) - 1:
            x = layers.Conv2D(width, 3, strides=2, padding="same", name=f"down{level}_downsample")(x)
            skips.append(x)
    x = apply_residual_block(x, embedding, widths[-1], groups, dropout, name="middle_block1")
    x = apply_residual_block(x, embedding, widths[-1], groups, dropout, name="middle_block2")
    for level in reversed(range(len(widths))):
        for block in range(blocks_per_level + 1):
            x = layers.Concatenate(name=f"up{level}_concat{block}")([x, skips.pop()])
            x = apply_residual_block(x, embedding, widths[level], groups, dropout,
                                     name=f"up{level}_block{block}")
        if level > 0:
            x = layers.UpSampling2D(2, interpolation="nearest", name=f"up{level}_upsample")(x)
            x = layers.Conv2D(widths[level], 3, padding="same", name=f"up{level}_upsample_conv")(x)
    x = layers.GroupNormalization(groups=groups, name="output_norm")(x)
    x = layers.Activation("swish", name="output_swish")(x)
    outputs = layers.Conv2D(
        input_shape[-1], 3, padding="same", dtype="float32",
        kernel_initializer=keras.initializers.VarianceScaling(0.01, "fan_avg", "uniform"),
        name="predicted_noise",
    )(x)
    return keras.Model([images, timesteps], outputs, name=name)
