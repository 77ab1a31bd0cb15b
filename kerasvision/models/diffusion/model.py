"""The diffusion trainer and sampler: what diffusers calls a pipeline.

`DiffusionModel` trains a denoiser (`denoiser.build_denoiser`, or any
`[x_t, t] -> eps` network) with the epsilon-prediction loss at uniformly drawn
timesteps, keeps an exponential moving average (EMA) copy of it, and samples
with DDPM ancestral steps or DDIM steps (`generate`). `sample_loop` is the
sampling loop as TensorFlow ops, shared by `generate` and
`kerasvision.export.export_diffusion_sampler`; `to_uint8` maps samples to
displayable pixels.

Images are float32 in [-1, 1].

Papers:
    Ho, Jain and Abbeel, "Denoising Diffusion Probabilistic Models", NeurIPS
        2020 (algorithm 1: training; algorithm 2: ancestral sampling).
    Song, Meng and Ermon, "Denoising Diffusion Implicit Models", ICLR 2021
        (DDIM sampling).
    Nichol and Dhariwal, "Improved Denoising Diffusion Probabilistic Models",
        ICML 2021 (DDPM with fewer, re-spaced steps).
"""

import numpy as np
import tensorflow as tf
import keras
from keras import ops

from kerasvision.models.diffusion.schedules import (
    SAMPLERS,
    SCHEDULES,
    check_betas,
    check_sampling_steps,
    ddim_step,
    ddpm_step,
    make_beta_schedule,
    q_sample,
    schedule_terms,
)
from kerasvision.models.trainer import (
    GenerativeTrainer,
    clone_for_moving_average,
    update_moving_average,
    warmed_up_decay,
)
from kerasvision.validation import check_choice, check_float, check_int

# Two-level sub-seeds of the sampler's random stream: the initial noise and
# the per-step noise never share a seed.
_INITIAL_NOISE_STREAM = 0
_STEP_NOISE_STREAM = 1


# ---------------------------------------------------------------------------
# 1. The sampling loop (graph mode; shared by `generate` and the export).
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
# 2. The trainer.
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
        # Not trainable: the optimizer must neither update nor count it.
        self.ema_network = clone_for_moving_average(network)

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
        return warmed_up_decay(self.ema_decay, self.optimizer.iterations)

    def _update_ema(self):
        update_moving_average(self.ema_network, self.network, self.current_ema_decay())

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
        steps = check_sampling_steps(steps, self.timesteps)
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
