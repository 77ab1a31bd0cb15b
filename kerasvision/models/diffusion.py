"""Denoising diffusion: noise schedules, a denoiser U-Net, a trainer and two samplers.

The three parts are separate, as diffusers separates schedulers, models and
pipelines:

1. Noise schedules are plain functions returning numpy arrays of betas
   (`linear_beta_schedule`, `cosine_beta_schedule`), with `schedule_terms`
   deriving every quantity the forward process and the samplers need. The
   single-step updates `q_sample`, `ddpm_step` and `ddim_step` are TensorFlow
   functions of those terms.
2. `build_denoiser` builds the noise-prediction network: a U-Net with
   residual blocks conditioned on a sinusoidal time embedding.
3. `DiffusionModel` trains the network with the epsilon-prediction loss,
   keeps an exponential moving average (EMA) copy of it, and samples with
   DDPM ancestral steps or DDIM steps (`generate`). `export_diffusion_sampler`
   writes the EMA network's DDIM sampler as a SavedModel.

Images are float32 in [-1, 1] throughout this module (the range the forward
process is defined on); `to_uint8` maps samples to displayable pixels.

Papers:
    Ho, Jain and Abbeel, "Denoising Diffusion Probabilistic Models", NeurIPS
        2020 (DDPM: linear schedule, epsilon loss, ancestral sampling).
    Song, Meng and Ermon, "Denoising Diffusion Implicit Models", ICLR 2021
        (DDIM: eta, sub-sequences of timesteps).
    Nichol and Dhariwal, "Improved Denoising Diffusion Probabilistic Models",
        ICML 2021 (cosine schedule).
    Lin, Liu, Li and Yang, "Common Diffusion Noise Schedules and Sample Steps
        are Flawed", WACV 2024 (trailing timestep spacing).
"""

import math
import os

import numpy as np
import tensorflow as tf
import keras
from keras import layers, ops

from kerasvision.models.trainer import GenerativeTrainer
from kerasvision.validation import check_choice, check_float, check_image_shape, check_int

SCHEDULES = ("linear", "cosine")
SAMPLERS = ("ddim", "ddpm")

# Two-level sub-seeds of the sampler's random stream: the initial noise and
# the per-step noise never share a seed.
_INITIAL_NOISE_STREAM = 0
_STEP_NOISE_STREAM = 1


# ---------------------------------------------------------------------------
# 1. Noise schedules (numpy) and single-step updates (TensorFlow).
# ---------------------------------------------------------------------------


def linear_beta_schedule(timesteps=1000, beta_start=None, beta_end=None):
    """Betas rising linearly from `beta_start` to `beta_end` (Ho et al. 2020, section 4).

    DDPM's endpoints 1e-4 and 0.02 are for T = 1000, where they bring
    alpha_bar_T to about 4e-5 (x_T is pure noise, as sampling assumes). For
    another T the defaults scale both by 1000 / T, as Nichol and Dhariwal's
    code does, which keeps alpha_bar_T about the same (unscaled, T = 250
    would end at alpha_bar_T = 0.08: samples would start from the wrong
    distribution). `beta_end` is capped at 0.999 for T < 21.

    Args:
        timesteps: int >= 1, number of diffusion steps `T` (paper: 1000).
        beta_start: float in (0, 1), beta_1 (default 1e-4 * 1000 / T).
        beta_end: float in (0, 1), beta_T, >= beta_start (default
            0.02 * 1000 / T).

    Returns:
        float64 numpy array `[T]`.
    """
    timesteps = check_int("timesteps", timesteps, minimum=1)
    scale = 1000.0 / timesteps
    if beta_end is None:
        beta_end = min(0.02 * scale, 0.999)
    if beta_start is None:
        beta_start = min(1e-4 * scale, beta_end)
    beta_start = check_float("beta_start", beta_start, minimum=0.0, maximum=1.0, strict_minimum=True)
    beta_end = check_float("beta_end", beta_end, minimum=beta_start, maximum=1.0)
    return check_betas(np.linspace(beta_start, beta_end, timesteps, dtype=np.float64))


def cosine_beta_schedule(timesteps=1000, offset=0.008, max_beta=0.999):
    """Betas of the cosine schedule (Nichol and Dhariwal 2021, eq. 17).

    `alpha_bar(t) = f(t) / f(0)` with `f(t) = cos(((t / T + s) / (1 + s)) * pi / 2)^2`,
    and `beta_t = 1 - alpha_bar(t) / alpha_bar(t - 1)`, clipped at `max_beta`
    so that the last steps do not divide by a vanishing alpha_bar.

    Args:
        timesteps: int >= 1, number of diffusion steps `T`.
        offset: float >= 0, the small offset `s` keeping beta_1 away from 0
            (paper: 0.008).
        max_beta: float in (0, 1), upper clip of the betas (paper: 0.999).

    Returns:
        float64 numpy array `[T]`.
    """
    timesteps = check_int("timesteps", timesteps, minimum=1)
    offset = check_float("offset", offset, minimum=0.0)
    max_beta = check_float("max_beta", max_beta, minimum=0.0, maximum=1.0, strict_minimum=True)
    if max_beta >= 1.0:
        raise ValueError(f"`max_beta` must be < 1; received max_beta={max_beta}.")
    steps = np.arange(timesteps + 1, dtype=np.float64) / timesteps
    f = np.cos((steps + offset) / (1.0 + offset) * np.pi / 2.0) ** 2
    alphas_cumprod = f / f[0]
    betas = 1.0 - alphas_cumprod[1:] / alphas_cumprod[:-1]
    return check_betas(np.clip(betas, 0.0, max_beta))


def make_beta_schedule(schedule="linear", timesteps=1000):
    """The betas of a named schedule with its paper's defaults.

    Args:
        schedule: "linear" (DDPM; endpoints scaled by 1000 / T) or "cosine"
            (improved DDPM).
        timesteps: int >= 1.

    Returns:
        float64 numpy array `[timesteps]`.
    """
    check_choice("schedule", schedule, SCHEDULES)
    if schedule == "linear":
        return linear_beta_schedule(timesteps)
    return cosine_beta_schedule(timesteps)


def check_betas(betas, name="betas"):
    """Raise unless `betas` is a non-empty 1-D sequence in (0, 1), non-decreasing.

    Non-decreasing rather than strictly increasing: the cosine schedule's
    last betas are clipped to the same `max_beta`, and a constant schedule is
    a valid (if unusual) choice.

    Returns:
        float64 numpy array `[T]`.
    """
    try:
        values = np.asarray(betas, dtype=np.float64)
    except (TypeError, ValueError):
        raise ValueError(f"`{name}` must be a 1-D sequence of floats; received {betas!r}.") from None
    if values.ndim != 1 or values.size == 0:
        raise ValueError(
            f"`{name}` must be a non-empty 1-D sequence; received shape {values.shape}."
        )
    if not np.all(np.isfinite(values)) or np.any(values <= 0.0) or np.any(values >= 1.0):
        bad = values[~((values > 0.0) & (values < 1.0))]
        raise ValueError(
            f"`{name}` must lie in the open interval (0, 1); received values such as "
            f"{bad[:3].tolist()} (min {values.min():.4g}, max {values.max():.4g})."
        )
    decreasing = np.nonzero(np.diff(values) < 0)[0]
    if decreasing.size:
        i = int(decreasing[0])
        raise ValueError(
            f"`{name}` must be non-decreasing (noise grows with t); received "
            f"{name}[{i}]={values[i]:.6g} > {name}[{i + 1}]={values[i + 1]:.6g}."
        )
    return values


def schedule_terms(betas):
    """Every per-timestep quantity of the forward process and its posterior.

    With `alpha_t = 1 - beta_t` and `alpha_bar_t = prod_{s <= t} alpha_s`
    (Ho et al. 2020, eqs. 4, 6, 7):

    - `q(x_t | x_0) = N(sqrt(alpha_bar_t) x_0, (1 - alpha_bar_t) I)`;
    - the posterior `q(x_{t-1} | x_t, x_0) = N(mean, posterior_variance)` with
      `mean = posterior_mean_coef1 * x_0 + posterior_mean_coef2 * x_t`,
      `posterior_variance = beta_t (1 - alpha_bar_{t-1}) / (1 - alpha_bar_t)`.

    Index 0 is the first diffusion step (t = 1 in the paper); `alpha_bar`
    before it is 1.

    Args:
        betas: 1-D sequence `[T]` (validated by `check_betas`).

    Returns:
        dict of float64 numpy arrays `[T]`: betas, alphas, alphas_cumprod,
        alphas_cumprod_prev, sqrt_alphas_cumprod, sqrt_one_minus_alphas_cumprod,
        posterior_variance, posterior_mean_coef1, posterior_mean_coef2.
    """
    betas = check_betas(betas)
    alphas = 1.0 - betas
    alphas_cumprod = np.cumprod(alphas)
    alphas_cumprod_prev = np.concatenate([[1.0], alphas_cumprod[:-1]])
    return {
        "betas": betas,
        "alphas": alphas,
        "alphas_cumprod": alphas_cumprod,
        "alphas_cumprod_prev": alphas_cumprod_prev,
        "sqrt_alphas_cumprod": np.sqrt(alphas_cumprod),
        "sqrt_one_minus_alphas_cumprod": np.sqrt(1.0 - alphas_cumprod),
        "posterior_variance": betas * (1.0 - alphas_cumprod_prev) / (1.0 - alphas_cumprod),
        "posterior_mean_coef1": betas * np.sqrt(alphas_cumprod_prev) / (1.0 - alphas_cumprod),
        "posterior_mean_coef2": (1.0 - alphas_cumprod_prev) * np.sqrt(alphas) / (1.0 - alphas_cumprod),
    }


def sampling_timesteps(timesteps, steps):
    """The `steps` timesteps a sampler visits, ascending, "trailing" spacing.

    `t_i = floor((i + 1) * T / steps) - 1` for `i = 0 .. steps - 1`: always
    ends at the last training timestep `T - 1` (pure noise, where sampling
    starts; Lin et al. 2024, table 2), and gives every timestep when
    `steps == T`. The values are distinct because the spacing `T / steps` is
    at least 1.

    Args:
        timesteps: int, training timesteps `T`.
        steps: int in [1, T].

    Returns:
        int64 numpy array `[steps]`.
    """
    timesteps = check_int("timesteps", timesteps, minimum=1)
    steps = _check_steps(steps, timesteps)
    return (np.arange(1, steps + 1, dtype=np.int64) * timesteps) // steps - 1


def _check_steps(steps, timesteps):
    steps = check_int("steps", steps, minimum=1)
    if steps > timesteps:
        raise ValueError(
            f"`steps` must be <= the model's training timesteps ({timesteps}); "
            f"received steps={steps}."
        )
    return steps


def _per_image(value, like):
    """A scalar or `[batch]` schedule value shaped `[batch, 1, 1, 1]` (or `[]`) in `like`'s dtype."""
    value = tf.cast(value, like.dtype)
    if value.shape.rank == 1:
        value = tf.reshape(value, [-1] + [1] * (like.shape.rank - 1))
    return value


def q_sample(images, alpha_cumprod_t, noise):
    """Samples the forward process `x_t ~ q(x_t | x_0)` (Ho et al. 2020, eq. 4).

    `x_t = sqrt(alpha_bar_t) x_0 + sqrt(1 - alpha_bar_t) noise`.

    Args:
        images: float `[batch, H, W, C]`, the clean images `x_0` in [-1, 1].
        alpha_cumprod_t: float scalar or `[batch]`, `alpha_bar_t` per image.
        noise: float `[batch, H, W, C]`, standard normal.

    Returns:
        `x_t`, float `[batch, H, W, C]`.
    """
    images = tf.convert_to_tensor(images)
    a = _per_image(alpha_cumprod_t, images)
    return tf.sqrt(a) * images + tf.sqrt(1.0 - a) * tf.cast(noise, images.dtype)


def predict_x0(x_t, predicted_noise, alpha_cumprod_t, clip_denoised=False):
    """The clean image implied by a noise prediction: inverts `q_sample`.

    `x0 = (x_t - sqrt(1 - alpha_bar_t) eps) / sqrt(alpha_bar_t)`, optionally
    clipped to the data range [-1, 1] (keeps early, very noisy predictions
    from pushing samples out of range).
    """
    a = _per_image(alpha_cumprod_t, x_t)
    x0 = (x_t - tf.sqrt(1.0 - a) * predicted_noise) / tf.sqrt(a)
    return tf.clip_by_value(x0, -1.0, 1.0) if clip_denoised else x0


def ddpm_step(x_t, predicted_noise, alpha_cumprod_t, alpha_cumprod_prev, noise=None,
              clip_denoised=False):
    """One DDPM ancestral step `x_t -> x_{t-1}` (Ho et al. 2020, algorithm 2).

    With `alpha_t = alpha_bar_t / alpha_bar_prev` and `beta_t = 1 - alpha_t`
    (which also covers re-spaced sub-sequences of timesteps, Nichol and
    Dhariwal 2021, section 4):

        mean = (x_t - beta_t / sqrt(1 - alpha_bar_t) * eps) / sqrt(alpha_t)
        x_{t-1} = mean + sqrt(posterior_variance) * noise,
        posterior_variance = beta_t (1 - alpha_bar_prev) / (1 - alpha_bar_t).

    With `clip_denoised`, the mean is the posterior mean of the clipped x0
    prediction instead (equal to the formula above when nothing is clipped).
    The last step (`alpha_bar_prev = 1`) adds no noise.

    Args:
        x_t: float `[batch, H, W, C]`.
        predicted_noise: float `[batch, H, W, C]`, the network's epsilon.
        alpha_cumprod_t, alpha_cumprod_prev: float scalars or `[batch]`.
        noise: float `[batch, H, W, C]` standard normal, or None for the mean.
        clip_denoised: bool.

    Returns:
        `x_{t-1}`, float `[batch, H, W, C]`.
    """
    x_t = tf.convert_to_tensor(x_t)
    predicted_noise = tf.cast(predicted_noise, x_t.dtype)
    a_t = _per_image(alpha_cumprod_t, x_t)
    a_prev = _per_image(alpha_cumprod_prev, x_t)
    alpha = a_t / a_prev
    beta = 1.0 - alpha
    if clip_denoised:
        x0 = predict_x0(x_t, predicted_noise, a_t, clip_denoised=True)
        mean = (beta * tf.sqrt(a_prev) * x0 + (1.0 - a_prev) * tf.sqrt(alpha) * x_t) / (1.0 - a_t)
    else:
        mean = (x_t - beta / tf.sqrt(1.0 - a_t) * predicted_noise) / tf.sqrt(alpha)
    if noise is None:
        return mean
    variance = beta * (1.0 - a_prev) / (1.0 - a_t)
    return mean + tf.sqrt(variance) * tf.cast(noise, x_t.dtype)


def ddim_step(x_t, predicted_noise, alpha_cumprod_t, alpha_cumprod_prev, eta=0.0, noise=None,
              clip_denoised=False):
    """One DDIM step `x_t -> x_prev` (Song et al. 2021, eq. 12).

        x0 = (x_t - sqrt(1 - alpha_bar_t) eps) / sqrt(alpha_bar_t)
        sigma = eta * sqrt((1 - alpha_bar_prev) / (1 - alpha_bar_t))
                    * sqrt(1 - alpha_bar_t / alpha_bar_prev)
        x_prev = sqrt(alpha_bar_prev) x0 + sqrt(1 - alpha_bar_prev - sigma^2) eps
                 + sigma * noise

    `eta = 0` is the deterministic DDIM sampler; `eta = 1` is the DDPM
    ancestral step. With `clip_denoised`, x0 is clipped to [-1, 1] and eps
    recomputed from it so that both terms stay consistent.

    Args:
        x_t: float `[batch, H, W, C]`.
        predicted_noise: float `[batch, H, W, C]`.
        alpha_cumprod_t, alpha_cumprod_prev: float scalars or `[batch]`;
            `alpha_bar_prev = 1` for the final step to x_0.
        eta: float >= 0.
        noise: float `[batch, H, W, C]` standard normal; needed when eta > 0.
        clip_denoised: bool.

    Returns:
        `x_prev`, float `[batch, H, W, C]`.
    """
    x_t = tf.convert_to_tensor(x_t)
    predicted_noise = tf.cast(predicted_noise, x_t.dtype)
    a_t = _per_image(alpha_cumprod_t, x_t)
    a_prev = _per_image(alpha_cumprod_prev, x_t)
    x0 = predict_x0(x_t, predicted_noise, a_t, clip_denoised=clip_denoised)
    if clip_denoised:
        predicted_noise = (x_t - tf.sqrt(a_t) * x0) / tf.sqrt(1.0 - a_t)
    eta = tf.cast(eta, x_t.dtype)
    sigma = eta * tf.sqrt((1.0 - a_prev) / (1.0 - a_t) * (1.0 - a_t / a_prev))
    # max(., 0): round-off can make the radicand a hair negative at eta = 1.
    direction = tf.sqrt(tf.maximum(1.0 - a_prev - sigma**2, 0.0)) * predicted_noise
    x_prev = tf.sqrt(a_prev) * x0 + direction
    if noise is not None:
        x_prev = x_prev + sigma * tf.cast(noise, x_t.dtype)
    return x_prev


# ---------------------------------------------------------------------------
# 2. The denoiser network.
# ---------------------------------------------------------------------------


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


# ---------------------------------------------------------------------------
# 3. Sampling loops (graph mode; shared by `generate` and the export).
# ---------------------------------------------------------------------------


def _normal(shape, seed, stream, index=0):
    """Stateless standard normal draw from `seed` [2], a stream id and a step index."""
    seed = tf.random.experimental.stateless_fold_in(tf.cast(seed, tf.int64), stream)
    seed = tf.random.experimental.stateless_fold_in(seed, tf.cast(index, tf.int64))
    return tf.random.stateless_normal(shape, seed)


def sample_loop(network, alphas_cumprod, seed, num_images, steps, sampler="ddim", eta=0.0,
                clip_denoised=True):
    """Runs a sampler from pure noise to images, as TensorFlow ops.

    Call it inside a `tf.function` (`num_images` and `steps` may be tensors:
    one trace serves every value). Step `i` goes from timestep `t_i` to
    `t_{i-1}` of `sampling_timesteps(T, steps)` (alpha_bar 1 after the last).

    Args:
        network: the denoiser, `[x_t, t] -> eps`.
        alphas_cumprod: float `[T]` (numpy or tensor).
        seed: int `[2]`, seed of every draw (same seed, same images).
        num_images: int scalar.
        steps: int scalar in [1, T].
        sampler: "ddim" or "ddpm".
        eta: float, DDIM's stochasticity (ignored by "ddpm").
        clip_denoised: bool, clip each x0 prediction to [-1, 1].

    Returns:
        float32 `[num_images, H, W, C]` in [-1, 1].
    """
    check_choice("sampler", sampler, SAMPLERS)
    alphas_cumprod = tf.constant(np.asarray(alphas_cumprod), tf.float32) if isinstance(
        alphas_cumprod, np.ndarray) else tf.cast(alphas_cumprod, tf.float32)
    timesteps = tf.shape(alphas_cumprod, out_type=tf.int32)[0]
    steps = tf.cast(steps, tf.int32)
    num_images = tf.cast(num_images, tf.int32)
    tf.debugging.assert_less_equal(steps, timesteps,
                                   message="`steps` must be <= the training timesteps")
    tf.debugging.assert_positive(steps, message="`steps` must be >= 1")
    # The trailing spacing of `sampling_timesteps`, in graph ops.
    schedule = (tf.range(1, steps + 1) * timesteps) // steps - 1
    height, width, channels = network.inputs[0].shape[1:]
    shape = tf.stack([num_images, height, width, channels])
    x = _normal(shape, seed, _INITIAL_NOISE_STREAM)

    def body(i, x):
        t = schedule[i]
        a_t = tf.gather(alphas_cumprod, t)
        a_prev = tf.where(i > 0, tf.gather(alphas_cumprod, schedule[tf.maximum(i - 1, 0)]), 1.0)
        eps = network([x, tf.fill([num_images], t)], training=False)
        eps = tf.cast(eps, tf.float32)
        # Deterministic DDIM (eta = 0) needs no per-step noise: skip the draw.
        noise = _normal(shape, seed, _STEP_NOISE_STREAM, i) if sampler == "ddpm" or eta else None
        if sampler == "ddpm":
            x = ddpm_step(x, eps, a_t, a_prev, noise, clip_denoised=clip_denoised)
        else:
            x = ddim_step(x, eps, a_t, a_prev, eta=eta, noise=noise, clip_denoised=clip_denoised)
        return i - 1, x

    invariants = (tf.TensorShape([]), tf.TensorShape([None, height, width, channels]))
    _, x = tf.while_loop(lambda i, x: i >= 0, body, (steps - 1, x), shape_invariants=invariants)
    return tf.clip_by_value(x, -1.0, 1.0)


def to_uint8(images):
    """Maps images in [-1, 1] to uint8 pixels in [0, 255] (rounded, clipped)."""
    images = (tf.cast(images, tf.float32) + 1.0) * 127.5
    return tf.cast(tf.clip_by_value(tf.round(images), 0.0, 255.0), tf.uint8)


# ---------------------------------------------------------------------------
# 4. The trainer.
# ---------------------------------------------------------------------------


@keras.saving.register_keras_serializable(package="kerasvision")
class DiffusionModel(GenerativeTrainer):
    """Trains a denoiser with the DDPM epsilon loss and samples with DDPM or DDIM.

    Each `train_step` (Ho et al. 2020, algorithm 1):
    1. draws one timestep per image uniformly from `[0, T)` and standard
       normal noise (replica-aware draws of `GenerativeTrainer`: a
       `MirroredStrategy` step sees the noise of the single-device step),
    2. noises the images with `q_sample`,
    3. regresses the network's output on the noise (mean squared error over
       pixels and images; `GenerativeTrainer._scaled_gradients` turns the
       per-replica mean into the global-batch average and applies the
       mixed-precision loss scale),
    4. applies the gradients, then moves every weight of the EMA network
       toward the trained network: `ema <- decay_n * ema + (1 - decay_n) * w`.

    The EMA network is `trainable=False`, so the optimizer never sees it and
    `.keras` files reload its optimizer state. With `ema_warmup=True`,
    `decay_n = min(ema_decay, (1 + n) / (10 + n))` after `n` optimizer steps
    (the schedule of `tf.train.ExponentialMovingAverage(num_updates=n)`):
    short runs still get an average of trained weights rather than of the
    initialisation.

    Args:
        network: the denoiser (`build_denoiser`): `[x_t, t] -> eps`.
        timesteps: int >= 1, training timesteps `T` (ignored if `betas` is given).
        schedule: "linear" (DDPM: 1e-4 to 0.02 at T = 1000, scaled by 1000 / T
            otherwise) or "cosine".
        betas: optional 1-D sequence of betas in (0, 1), non-decreasing;
            overrides `schedule` and `timesteps`.
        ema_decay: float in [0, 1).
        ema_warmup: bool, see above.
        seed: int >= 0 or None, seed of the training noise and timesteps (and
            of `generate` without a seed).

    Data: `fit` takes images float32 `[batch, H, W, 3]` in [-1, 1], alone or
    as the first element of a tuple. `call([x_t, t])` runs the EMA network.
    Logs: `loss`.

    Example:
        >>> model = DiffusionModel(build_denoiser((32, 32, 3)), timesteps=1000)
        >>> model.compile(keras.optimizers.Adam(2e-4))
        >>> model.fit(images, epochs=10, batch_size=32)
        >>> samples = model.generate(16, steps=50)            # DDIM, eta = 0
        >>> samples = model.generate(16, sampler="ddpm")      # 1000 ancestral steps
    """

    NETWORKS = ("network",)
    OPTIMIZERS = {"optimizer": ("network",)}

    def __init__(self, network, timesteps=1000, schedule="linear", betas=None, ema_decay=0.999,
                 ema_warmup=True, seed=None, **kwargs):
        super().__init__(seed=seed, **kwargs)
        if not isinstance(network, keras.Model) or len(network.inputs) != 2:
            raise ValueError(
                "`network` must be a keras.Model taking [noisy_images, timesteps] (see "
                f"build_denoiser); received {network!r}."
            )
        self.schedule = check_choice("schedule", schedule, SCHEDULES)
        if betas is None:
            self.timesteps = check_int("timesteps", timesteps, minimum=1)
            self.betas = make_beta_schedule(schedule, self.timesteps)
            self._custom_betas = False
        else:
            self.betas = check_betas(betas)
            self.timesteps = int(self.betas.size)
            self._custom_betas = True
        self.ema_decay = check_float("ema_decay", ema_decay, minimum=0.0, maximum=1.0)
        if self.ema_decay >= 1.0:
            raise ValueError(f"`ema_decay` must be < 1; received ema_decay={ema_decay}.")
        self.ema_warmup = bool(ema_warmup)
        self.terms = schedule_terms(self.betas)
        self.image_shape = tuple(network.inputs[0].shape[1:])

        self.network = network
        self.ema_network = keras.models.clone_model(network)
        self.ema_network.name = f"ema_{network.name}"
        self.ema_network.set_weights(network.get_weights())
        # Not trainable: the optimizer must neither update nor count it.
        self.ema_network.trainable = False

    def expected_image_shape(self):
        return self.image_shape

    # -- training -----------------------------------------------------------

    def _draw(self, images):
        """Uniform timesteps `[batch]` in [0, T) and standard normal noise like `images`."""
        batch = ops.shape(images)[0]
        uniform = self._random_uniform((batch,), 0.0, float(self.timesteps))
        # floor(U[0, T)) is uniform on the integers; the clip guards float
        # round-off at the top end.
        timesteps = ops.clip(ops.cast(ops.floor(uniform), "int32"), 0, self.timesteps - 1)
        return timesteps, self._random_normal(ops.shape(images))

    def _loss(self, network, images, timesteps, noise, training):
        alphas_cumprod = tf.constant(self.terms["alphas_cumprod"], tf.float32)
        noisy = q_sample(images, tf.gather(alphas_cumprod, timesteps), noise)
        predicted = tf.cast(network([noisy, timesteps], training=training), tf.float32)
        return tf.reduce_mean(tf.square(predicted - noise))

    def compute_losses(self, data, training=False):
        """The epsilon loss of the trained network on one batch (fresh draws)."""
        images = self._images_from(data)
        timesteps, noise = self._draw(images)
        return {"loss": self._loss(self.network, images, timesteps, noise, training)}

    def train_step(self, data):
        images = self._images_from(data)
        timesteps, noise = self._draw(images)
        with tf.GradientTape() as tape:
            loss = self._loss(self.network, images, timesteps, noise, training=True)
        variables = self.network.trainable_variables
        gradients = self._scaled_gradients(tape, loss, variables, self.optimizer)
        self.optimizer.apply(gradients, variables)
        self._update_ema()
        return self._update_trackers({"loss": loss})

    def current_ema_decay(self):
        """The decay of the next EMA update, given the optimizer steps taken so far."""
        if not self.ema_warmup:
            return tf.constant(self.ema_decay, tf.float32)
        steps = tf.cast(self.optimizer.iterations, tf.float32)
        return tf.minimum(self.ema_decay, (1.0 + steps) / (10.0 + steps))

    def _update_ema(self):
        decay = self.current_ema_decay()
        pairs = [
            (ema.value, weight.value)
            for ema, weight in zip(self.ema_network.weights, self.network.weights)
        ]

        def update(strategy, pairs):
            for ema, weight in pairs:
                # Under MirroredStrategy the EMA variables are mirrored: they
                # are assigned on every device from the cross-replica context
                # (a replica-context assign of an aggregation-"none" variable
                # is an error). Without a strategy this is a plain assign.
                strategy.extended.update(
                    ema, lambda e, w: e.assign(decay * e + (1.0 - decay) * w), args=(weight,),
                    group=False,
                )

        context = tf.distribute.get_replica_context()
        if context is None:  # already in the cross-replica context
            update(tf.distribute.get_strategy(), pairs)
        else:
            context.merge_call(update, args=(pairs,))

    # -- inference ----------------------------------------------------------

    def call(self, inputs, training=False):
        """Predicts the noise with the EMA network: `inputs = [x_t, timesteps]`."""
        return self.ema_network(inputs, training=training)

    def generate(self, num_images, steps=None, sampler="ddim", eta=0.0, seed=None,
                 clip_denoised=True, use_ema=True):
        """Samples images from pure noise.

        Args:
            num_images: int >= 1.
            steps: int in [1, T]; default 50 for "ddim", T for "ddpm". "ddpm"
                with fewer than T steps uses the re-spaced schedule of the
                visited timesteps (Nichol and Dhariwal 2021, section 4).
            sampler: "ddim" (Song et al. 2021) or "ddpm" (ancestral).
            eta: float >= 0, DDIM noise (0: deterministic; 1: same as DDPM).
            seed: int, or None for a fresh draw from the model's seed generator.
            clip_denoised: bool, clip each x0 prediction to [-1, 1].
            use_ema: bool, sample with the EMA network (default) or the
                trained network.

        Returns:
            float32 numpy array `[num_images, H, W, 3]` in [-1, 1].
        """
        num_images = check_int("num_images", num_images, minimum=1)
        check_choice("sampler", sampler, SAMPLERS)
        if steps is None:
            steps = self.timesteps if sampler == "ddpm" else min(50, self.timesteps)
        steps = _check_steps(steps, self.timesteps)
        eta = check_float("eta", eta, minimum=0.0)
        if seed is None:
            seed = keras.ops.convert_to_numpy(self.seed_generator.next())
        else:
            seed = [check_int("seed", seed), 0]
        network = self.ema_network if use_ema else self.network
        function = _compiled_sampler(self, network, sampler, float(eta), bool(clip_denoised))
        images = function(
            tf.constant(self.terms["alphas_cumprod"], tf.float32),
            tf.constant(np.asarray(seed, np.int64)),
            tf.constant(num_images, tf.int32),
            tf.constant(steps, tf.int32),
        )
        return images.numpy()

    # -- serialisation --------------------------------------------------------

    def get_config(self):
        return {
            **super().get_config(),
            "timesteps": self.timesteps,
            "schedule": self.schedule,
            "betas": self.betas.tolist() if self._custom_betas else None,
            "ema_decay": self.ema_decay,
            "ema_warmup": self.ema_warmup,
        }


def _compiled_sampler(model, network, sampler, eta, clip_denoised):
    """One traced sampler per (network, sampler, eta, clip), kept on the model.

    `num_images` and `steps` are tensors, so changing them never retraces.
    The cache is set with `object.__setattr__`: Keras would otherwise track
    the dict as model state.
    """
    cache = model.__dict__.get("_sampler_functions")
    if cache is None:
        cache = {}
        object.__setattr__(model, "_sampler_functions", cache)
    key = (id(network), sampler, eta, clip_denoised)
    if key not in cache:

        def function(alphas_cumprod, seed, num_images, steps):
            return sample_loop(network, alphas_cumprod, seed, num_images, steps, sampler=sampler,
                               eta=eta, clip_denoised=clip_denoised)

        cache[key] = tf.function(function)
    return cache[key]


# ---------------------------------------------------------------------------
# 5. Export.
# ---------------------------------------------------------------------------


def export_diffusion_sampler(model, export_dir, eta=0.0, clip_denoised=True, version=None):
    """Exports the EMA denoiser's DDIM sampler as a versioned SavedModel for TF Serving.

    Args:
        model: a trained `DiffusionModel`.
        export_dir: str, the model base path; the export goes to
            `<export_dir>/<version>`.
        eta: float >= 0, DDIM noise (0: deterministic given the seed).
        clip_denoised: bool.
        version: int, version to write (default: next free number).

    Returns:
        str, the directory written. `serving_default` takes `seed` int32 `[2]`,
        `num_images` int32 `[]` and `steps` int32 `[]` (1..T; more is an
        InvalidArgumentError) and returns `images`, uint8 `[num_images, H, W, 3]`.
        The same seed gives the same images as `model.generate(..., seed=s)`
        with `seed=[s, 0]`.
    """
    from kerasvision.export import next_version_dir

    if not isinstance(model, DiffusionModel):
        raise ValueError(f"`model` must be a DiffusionModel; received {type(model).__name__}.")
    eta = check_float("eta", eta, minimum=0.0)
    network = model.ema_network
    alphas_cumprod = tf.constant(model.terms["alphas_cumprod"], tf.float32)

    def serve(seed, num_images, steps):
        images = sample_loop(network, alphas_cumprod, tf.cast(seed, tf.int64), num_images, steps,
                             sampler="ddim", eta=eta, clip_denoised=clip_denoised)
        return {"images": to_uint8(images)}

    archive = keras.export.ExportArchive()
    archive.track(network)
    archive.add_endpoint(
        "serving_default",
        serve,
        input_signature=[
            tf.TensorSpec([2], tf.int32, name="seed"),
            tf.TensorSpec([], tf.int32, name="num_images"),
            tf.TensorSpec([], tf.int32, name="steps"),
        ],
    )
    if version is None:
        path = next_version_dir(export_dir)
    else:
        path = os.path.join(export_dir, str(check_int("version", version, minimum=0)))
        if os.path.exists(path):
            raise ValueError(
                f"`version` {version} already exists in {export_dir!r}; pass another "
                "version or None for the next free one."
            )
    archive.write_out(path, verbose=False)
    return path
