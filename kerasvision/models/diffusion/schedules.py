"""Noise schedules and single-step updates: what diffusers calls a scheduler.

No network here: the betas of a schedule (`linear_beta_schedule`,
`cosine_beta_schedule`, `make_beta_schedule`) are numpy arrays, and
`schedule_terms` derives from them every quantity the forward process and the
samplers need. The single-step updates are TensorFlow functions of those
terms and of a noise prediction: `q_sample` noises clean images,
`ddpm_step` and `ddim_step` take one reverse step.

Images are float32 in [-1, 1] (the range the forward process is defined on).

Papers:
    Ho, Jain and Abbeel, "Denoising Diffusion Probabilistic Models", NeurIPS
        2020 (DDPM: linear schedule, ancestral step).
    Song, Meng and Ermon, "Denoising Diffusion Implicit Models", ICLR 2021
        (DDIM: eta, sub-sequences of timesteps).
    Nichol and Dhariwal, "Improved Denoising Diffusion Probabilistic Models",
        ICML 2021 (cosine schedule, re-spaced DDPM steps).
    Lin, Liu, Li and Yang, "Common Diffusion Noise Schedules and Sample Steps
        are Flawed", WACV 2024 (trailing timestep spacing).
"""

import numpy as np
import tensorflow as tf

from kerasvision.validation import check_choice, check_float, check_int

SCHEDULES = ("linear", "cosine")
# The reverse steps a sampler can take: `ddim_step` or `ddpm_step`.
SAMPLERS = ("ddim", "ddpm")


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
    steps = check_sampling_steps(steps, timesteps)
    return (np.arange(1, steps + 1, dtype=np.int64) * timesteps) // steps - 1


def check_sampling_steps(steps, timesteps):
    """Returns `steps` as an int after checking it lies in [1, timesteps]."""
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
