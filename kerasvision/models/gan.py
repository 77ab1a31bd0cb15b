"""Generative adversarial networks: DCGAN networks and the GAN, WGAN and WGAN-GP trainers.

- `build_dcgan_generator` / `build_dcgan_discriminator`: the DCGAN
  architecture (Radford, Metz and Chintala 2016): strided convolutions
  instead of pooling, fractionally-strided convolutions in the generator,
  BatchNorm (not on the generator's output nor the discriminator's input),
  ReLU in the generator, LeakyReLU(0.2) in the discriminator, tanh output,
  weights initialised from N(0, 0.02).
- `GAN`: the non-saturating GAN (Goodfellow et al. 2014, section 3), with
  optional one-sided label smoothing (Salimans et al. 2016).
- `WGAN`: Wasserstein GAN (Arjovsky, Chintala and Bottou 2017): linear critic,
  `n_critic` critic steps per generator step, weights clipped to
  `[-clip_value, clip_value]`, RMSprop(5e-5).
- `WGANGP`: WGAN with gradient penalty (Gulrajani et al. 2017) instead of
  clipping: lambda = 10, Adam(1e-4, 0.5, 0.9).

All three optionally keep an exponential moving average (EMA) of the
generator's weights (`ema_decay > 0`), which `generate`, `call` and the
export (`sampling_generator`) use: Yazici et al. 2019, "The Unusual
Effectiveness of Averaging in GAN Training"; Karras et al. 2018.

The three trainers share one `train_step` (in `GAN`); WGAN and WGAN-GP only
override its hooks (`discriminator_loss`, `generator_loss`,
`discriminator_losses`, `after_discriminator_step`, `default_optimizer`).
"""

import tensorflow as tf
import keras
from keras import layers, ops

from kerasvision.losses import (
    gradient_penalty,
    wasserstein_critic_loss,
    wasserstein_generator_loss,
)
from kerasvision.models.autoencoder import (
    check_filters,
    check_generated_image_shape,
    check_upsampling_network_args,
)
from kerasvision import kernels
from kerasvision.models.trainer import (
    GenerativeTrainer,
    check_ema_decay,
    clone_for_moving_average,
    update_moving_average,
    warmed_up_decay,
)
from kerasvision.validation import check_float, check_int

NORMALIZATIONS = ("batch", "layer", None)


def _dcgan_init():
    # Radford et al. 2016, section 4: "All weights were initialized from a
    # zero-centered Normal distribution with standard deviation 0.02."
    return keras.initializers.RandomNormal(stddev=0.02)


# Moving-average momentum of the BatchNorm statistics (PyTorch's 0.1 in Keras
# terms): with Keras' 0.99 the averages lag weights that change quickly early
# in GAN training, and inference-mode samples come out as noise.
_BN_MOMENTUM = 0.9


def _normalize(x, normalization, synchronized, name):
    if normalization == "batch":
        return kernels.batch_normalization(momentum=_BN_MOMENTUM, synchronized=synchronized,
                                           name=f"{name}_bn")(x)
    if normalization == "layer":
        # Over height, width and channels, per sample: keeps each sample's
        # critic gradient independent of the batch (WGAN-GP, section 4).
        return layers.LayerNormalization(axis=(1, 2, 3), name=f"{name}_ln")(x)
    return x


def build_dcgan_generator(latent_dim=128, output_shape=(32, 32, 3), filters=(256, 128, 64),
                          kernel_size=4, synchronized=False, name="generator"):
    """DCGAN generator: latent vectors to images in [-1, 1] (Radford et al. 2016).

    The latent vector is projected to a `[S / 2**n, S / 2**n, filters[0]]` map
    (n = `len(filters)`), each of the following stages doubles the size with
    a stride-2 transposed convolution + BatchNorm + ReLU, and a last stride-2
    transposed convolution produces RGB through tanh.

    Args:
        latent_dim: int >= 1, size of the latent vectors.
        output_shape: `(S, S, 3)`, S a multiple of `2 ** len(filters)` (32 or
            64 with the default filters; 4x4 at the start as in the paper).
        filters: tuple of int, channels of the projected map and of the
            stages that follow (the paper halves them: 1024, 512, 256, 128).
        kernel_size: int, transposed-convolution kernel (4: a multiple of the
            stride, which avoids checkerboard artefacts).
        synchronized: bool, BatchNorm statistics over the global batch under
            `tf.distribute` (a step then equals the single-device step).
        name: str, model name and prefix of the layer names.

    Returns:
        Functional `keras.Model` `[batch, latent_dim] -> [batch, S, S, 3]`,
        float32 in [-1, 1].

    Example:
        >>> generator = build_dcgan_generator(64, (32, 32, 3))
        >>> generator.output_shape
        (None, 32, 32, 3)
    """
    filters, output_shape, latent_dim, kernel_size, base = check_upsampling_network_args(
        latent_dim, output_shape, filters, kernel_size
    )
    latents = keras.Input((latent_dim,), name=f"{name}_latents")
    # BatchNorm follows every hidden layer, so their biases would be redundant.
    x = layers.Dense(base[0] * base[1] * filters[0], use_bias=False,
                     kernel_initializer=_dcgan_init(), name=f"{name}_project")(latents)
    x = layers.Reshape((*base, filters[0]), name=f"{name}_reshape")(x)
    x = _normalize(x, "batch", synchronized, f"{name}_project")
    x = layers.ReLU(name=f"{name}_project_relu")(x)
    for index, channels in enumerate(filters[1:], start=1):
        x = layers.Conv2DTranspose(channels, kernel_size, strides=2, padding="same",
                                   use_bias=False, kernel_initializer=_dcgan_init(),
                                   name=f"{name}_up{index}")(x)
        x = _normalize(x, "batch", synchronized, f"{name}_up{index}")
        x = layers.ReLU(name=f"{name}_relu{index}")(x)
    # No BatchNorm on the output layer (the paper: it made samples oscillate).
    x = layers.Conv2DTranspose(output_shape[-1], kernel_size, strides=2, padding="same",
                               kernel_initializer=_dcgan_init(), name=f"{name}_output_up")(x)
    images = layers.Activation("tanh", dtype="float32", name=f"{name}_images")(x)
    return keras.Model(latents, images, name=name)


def build_dcgan_discriminator(input_shape=(32, 32, 3), filters=(64, 128, 256), kernel_size=4,
                              normalization="batch", synchronized=False, name="discriminator"):
    """DCGAN discriminator (or WGAN critic): images to one unbounded score.

    Stride-2 convolutions with LeakyReLU(0.2), normalised except the first
    (the paper: no BatchNorm on the discriminator input), then a dense layer
    to one linear output: logits for `GAN`, critic scores for `WGAN`/`WGANGP`.

    Args:
        input_shape: `(S, S, 3)`, S a multiple of `2 ** len(filters)`.
        filters: tuple of int, channels of the stride-2 stages (the paper
            doubles them: 128, 256, 512, 1024).
        kernel_size: int, convolution kernel.
        normalization: "batch" (DCGAN, WGAN), "layer" (WGAN-GP: the gradient
            penalty is per sample, which BatchNorm's batch coupling breaks) or
            None.
        synchronized: bool, BatchNorm over the global batch under `tf.distribute`.
        name: str, model name and prefix of the layer names.

    Returns:
        Functional `keras.Model` `[batch, S, S, 3] -> [batch, 1]`, float32.

    Example:
        >>> critic = build_dcgan_discriminator((32, 32, 3), normalization="layer")
        >>> critic.output_shape
        (None, 1)
    """
    filters = check_filters(filters)
    input_shape = check_generated_image_shape(input_shape, len(filters))
    if normalization not in NORMALIZATIONS:
        raise ValueError(
            f"`normalization` must be one of {list(NORMALIZATIONS)}; received "
            f"normalization={normalization!r}."
        )
    kernel_size = check_int("kernel_size", kernel_size, minimum=1)
    images = keras.Input(input_shape, name=f"{name}_images")
    x = images
    for index, channels in enumerate(filters, start=1):
        normalized = index > 1 and normalization is not None
        x = layers.Conv2D(channels, kernel_size, strides=2, padding="same",
                          use_bias=not normalized, kernel_initializer=_dcgan_init(),
                          name=f"{name}_conv{index}")(x)
        if normalized:
            x = _normalize(x, normalization, synchronized, f"{name}_conv{index}")
        x = layers.LeakyReLU(negative_slope=0.2, name=f"{name}_lrelu{index}")(x)
    x = layers.Flatten(name=f"{name}_flatten")(x)
    # Linear float32 score: the losses apply the sigmoid (or none) themselves.
    scores = layers.Dense(1, kernel_initializer=_dcgan_init(), dtype="float32",
                          name=f"{name}_score")(x)
    return keras.Model(images, scores, name=name)


def _check_networks(generator, discriminator):
    """Checks that the discriminator scores the generator's images.

    Returns:
        (image_shape, latent_dim).
    """
    for arg, network in (("generator", generator), ("discriminator", discriminator)):
        if not isinstance(network, keras.Model):
            raise ValueError(
                f"`{arg}` must be a keras.Model (e.g. from build_dcgan_{arg}); received "
                f"{type(network).__name__}."
            )
    if len(generator.input_shape) != 2:
        raise ValueError(
            "`generator` must take latent vectors [batch, latent_dim]; received a generator with "
            f"input shape {generator.input_shape}."
        )
    image_shape = tuple(generator.output_shape[1:])
    if tuple(discriminator.input_shape[1:]) != image_shape:
        raise ValueError(
            f"`discriminator` must take the generator's images {image_shape}; received a "
            f"discriminator with input shape {discriminator.input_shape}."
        )
    if tuple(discriminator.output_shape[1:]) != (1,):
        raise ValueError(
            "`discriminator` must return one score per image [batch, 1]; received output "
            f"shape {discriminator.output_shape}."
        )
    return image_shape, generator.input_shape[-1]


def _sigmoid_cross_entropy(logits, target):
    """Per-example binary cross-entropy of logits `[batch, 1]` against a constant target."""
    logits = ops.cast(logits, "float32")
    labels = ops.full_like(logits, target)
    return ops.mean(ops.binary_crossentropy(labels, logits, from_logits=True), axis=-1)


@keras.saving.register_keras_serializable(package="kerasvision")
class GAN(GenerativeTrainer):
    """Non-saturating GAN trainer (Goodfellow et al. 2014), the base of `WGAN` and `WGANGP`.

    Each step (one batch of real images in [-1, 1]):
        1. `n_critic` discriminator updates (1 here), each against freshly
           generated images: minimise `discriminator_losses(...)["d_loss"]`.
        2. One generator update through the updated discriminator:
           minimise `generator_loss(D(G(z)))`.
        3. With `ema_decay > 0`, every weight of `ema_generator` moves
           toward the generator's: `ema <- d_n * ema + (1 - d_n) * w`,
           `d_n = min(ema_decay, (1 + n) / (10 + n))` after `n` generator
           updates (the warm-up of `DiffusionModel`).
    With the GAN hooks, d_loss = BCE(D(x), 1 - label_smoothing) + BCE(D(G(z)), 0)
    and g_loss = BCE(D(G(z)), 1): the non-saturating generator loss, whose
    gradient does not vanish while the discriminator rejects the samples.

    Logs: `d_loss`, `g_loss` and `loss` = d_loss + g_loss, a sum reported so
    that `TerminateOnNaN` (which reads only `loss`) stops training when either
    becomes non-finite; it is not an objective.

    Args:
        generator: `keras.Model` `[batch, latent_dim] -> [batch, S, S, 3]` in
            [-1, 1] (`build_dcgan_generator`).
        discriminator: `keras.Model` `[batch, S, S, 3] -> [batch, 1]` logits
            (`build_dcgan_discriminator`).
        label_smoothing: float in [0, 1), one-sided smoothing of the real
            labels to 1 - label_smoothing (Salimans et al. 2016, section 3.4:
            keeps the discriminator from becoming overconfident).
        seed: int or None, seed of the latent draws.
        ema_decay: float in [0, 1), decay of the exponential moving average
            of the generator's weights (Yazici et al. 2019, "The Unusual
            Effectiveness of Averaging in GAN Training": the averaged
            generator gives samples of steadier quality than the last
            iterate; Karras et al. 2018 use 0.999). 0 keeps no average.

    Attributes:
        ema_generator: with `ema_decay > 0`, a `trainable=False` copy of the
            generator holding the average (saved and restored with the
            trainer's weights); None otherwise.
        sampling_generator: the network `generate`, `call` and exports use:
            `ema_generator` when there is one, else `generator`.

    Compile: `compile(d_optimizer=None, g_optimizer=None, jit_compile=...)`;
    defaults Adam(2e-4, beta_1=0.5) for both (Radford et al. 2016).

    Call: latents `[batch, latent_dim]` -> images `[batch, S, S, 3]` in [-1, 1],
    from `sampling_generator`.

    Example:
        >>> gan = GAN(build_dcgan_generator(64), build_dcgan_discriminator(), ema_decay=0.999,
        ...           seed=0)
        >>> gan.compile()
        >>> gan.fit(images_in_minus1_1, epochs=1)   # doctest: +SKIP
        >>> samples = gan.generate(16)               # from the EMA generator
    """

    NETWORKS = ("generator", "discriminator")
    OPTIMIZERS = {"d_optimizer": ("discriminator",), "g_optimizer": ("generator",)}
    STEP_OPTIMIZER = "g_optimizer"  # the critic's takes n_critic updates per step
    LOSS_NAMES = ("loss", "d_loss", "g_loss")

    def __init__(self, generator, discriminator, label_smoothing=0.0, seed=None, ema_decay=0.0,
                 **kwargs):
        super().__init__(seed=seed, **kwargs)
        self.image_shape, self.latent_dim = _check_networks(generator, discriminator)
        self.generator = generator
        self.discriminator = discriminator
        self.label_smoothing = check_float("label_smoothing", label_smoothing, minimum=0.0)
        if self.label_smoothing >= 1.0:
            raise ValueError(
                f"`label_smoothing` must be in [0, 1); received label_smoothing={label_smoothing}."
            )
        self.ema_decay = check_ema_decay(ema_decay)
        # Without averaging no copy exists: the trainer's weights are exactly
        # the two networks', as in `.keras` files written without `ema_decay`.
        self.ema_generator = (clone_for_moving_average(generator) if self.ema_decay > 0.0
                              else None)
        self.n_critic = 1

    # -- compile ---------------------------------------------------------

    def compile(self, d_optimizer=None, g_optimizer=None, *, jit_compile="auto",
                steps_per_execution=1, run_eagerly=False):
        """Configures training with one optimizer per network.

        Args:
            d_optimizer: optimizer of the discriminator (critic), its name or
                config, or None for the trainer's default.
            g_optimizer: optimizer of the generator, likewise.
            jit_compile, steps_per_execution, run_eagerly: as `keras.Model.compile`.
        """
        self._compile_trainer(
            {"d_optimizer": d_optimizer, "g_optimizer": g_optimizer},
            jit_compile=jit_compile,
            steps_per_execution=steps_per_execution,
            run_eagerly=run_eagerly,
        )

    def default_optimizer(self, name):
        # Radford et al. 2016: Adam, learning rate 2e-4, beta_1 0.5 (0.9 oscillated).
        return kernels.adam(learning_rate=2e-4, beta_1=0.5)

    # -- hooks overridden by WGAN / WGANGP ---------------------------------

    def discriminator_loss(self, real_scores, fake_scores):
        """Scalar loss of the discriminator from its scores `[batch, 1]` on real and fake images."""
        real = _sigmoid_cross_entropy(real_scores, 1.0 - self.label_smoothing)
        fake = _sigmoid_cross_entropy(fake_scores, 0.0)
        return ops.mean(real) + ops.mean(fake)

    def generator_loss(self, fake_scores):
        """Scalar loss of the generator from the discriminator's scores on its images."""
        return ops.mean(_sigmoid_cross_entropy(fake_scores, 1.0))

    def discriminator_losses(self, real_images, fake_images, training=True):
        """dict with "d_loss" (the minimised value) and any extra tracked terms."""
        real_scores = self.discriminator(real_images, training=training)
        fake_scores = self.discriminator(fake_images, training=training)
        return {"d_loss": self.discriminator_loss(real_scores, fake_scores)}

    def after_discriminator_step(self):
        """Runs after each discriminator update (WGAN clips the weights here)."""

    # -- steps -------------------------------------------------------------

    def expected_image_shape(self):
        return self.image_shape

    @property
    def sampling_generator(self):
        """The generator to sample and export: `ema_generator` if kept, else `generator`.

        A `keras.Model` `[batch, latent_dim] -> [batch, S, S, 3]` in [-1, 1].
        """
        return self.generator if self.ema_generator is None else self.ema_generator

    def current_ema_decay(self):
        """The decay of the next EMA update, given the generator updates taken so far.

        Returns:
            float32 scalar tensor `min(ema_decay, (1 + n) / (10 + n))`, n =
            `g_optimizer.iterations` (the optimizer must be compiled).
        """
        return warmed_up_decay(self.ema_decay, self.g_optimizer.iterations)

    def call(self, latents, training=False):
        """Images `[batch, S, S, 3]` from latents `[batch, latent_dim]` (`sampling_generator`)."""
        return self.sampling_generator(latents, training=training)

    def generate(self, num_images=None, latents=None):
        """Images of `sampling_generator` from latents drawn from N(0, I) (or given).

        Args:
            num_images: int >= 1, number of latent draws (from the trainer's
                seed generator); ignored when `latents` is given.
            latents: optional `[batch, latent_dim]`.

        Returns:
            float32 `[batch, S, S, 3]` in [-1, 1].
        """
        latents = self._latents_for(num_images, latents, self.latent_dim)
        return self.sampling_generator(latents, training=False)

    def _fake_images(self, batch_size, training):
        latents = self._random_normal((batch_size, self.latent_dim))
        return self.generator(latents, training=training)

    def train_step(self, data):
        real = self._images_from(data)
        batch_size = ops.shape(real)[0]
        d_variables = self._variables_for("d_optimizer")
        g_variables = self._variables_for("g_optimizer")

        # 1. Discriminator (critic) updates. The fakes are generated outside the
        #    tape: this update must not differentiate through the generator.
        #    All n_critic updates see this step's real batch (fit delivers one
        #    batch per step), each with new fakes.
        for _ in range(self.n_critic):
            fake = self._fake_images(batch_size, training=True)
            with tf.GradientTape() as tape:
                d_losses = self.discriminator_losses(real, fake, training=True)
            grads = self._scaled_gradients(tape, d_losses["d_loss"], d_variables,
                                           self.d_optimizer)
            self.d_optimizer.apply(grads, d_variables)
            self.after_discriminator_step()

        # 2. Generator update through the just-updated discriminator; only the
        #    generator's variables are updated.
        latents = self._random_normal((batch_size, self.latent_dim))
        with tf.GradientTape() as tape:
            fake = self.generator(latents, training=True)
            g_loss = self.generator_loss(self.discriminator(fake, training=True))
        grads = self._scaled_gradients(tape, g_loss, g_variables, self.g_optimizer)
        self.g_optimizer.apply(grads, g_variables)

        # 3. The average follows the generator after its update, with the
        #    warm-up counted in generator updates (WGAN's critic steps excluded).
        if self.ema_generator is not None:
            update_moving_average(self.ema_generator, self.generator, self.current_ema_decay())

        return self._update_trackers(
            {"loss": d_losses["d_loss"] + g_loss, **d_losses, "g_loss": g_loss}
        )

    def logged_loss(self, means):
        return means["d_loss"] + means["g_loss"]

    def compute_losses(self, data, training=False):
        real = self._images_from(data)
        fake = self._fake_images(ops.shape(real)[0], training=training)
        d_losses = self.discriminator_losses(real, fake, training=training)
        g_loss = self.generator_loss(self.discriminator(fake, training=training))
        return {"loss": d_losses["d_loss"] + g_loss, **d_losses, "g_loss": g_loss}

    # -- serialization -----------------------------------------------------

    def _hyperparameters(self):
        return {"label_smoothing": self.label_smoothing}

    def get_config(self):
        # `ema_decay` here, not in `_hyperparameters`: WGAN and WGAN-GP
        # replace those, and all three accept it.
        return {**super().get_config(), **self._hyperparameters(), "ema_decay": self.ema_decay}


@keras.saving.register_keras_serializable(package="kerasvision")
class WGAN(GAN):
    """Wasserstein GAN with weight clipping (Arjovsky, Chintala and Bottou 2017, Algorithm 1).

    The `GAN` step with the Wasserstein hooks: critic loss
    mean(f(G(z))) - mean(f(x)) (`kerasvision.losses.wasserstein_critic_loss`),
    generator loss -mean(f(G(z))), `n_critic` critic updates per generator
    update, and after each critic update every critic weight clipped to
    [-clip_value, clip_value] (a crude way to keep f Lipschitz). The
    `n_critic` updates of one step share the step's real batch (`fit` hands
    one batch per step) with new fakes each; the paper draws a new real
    batch for every critic update.

    Args:
        generator: as in `GAN`.
        discriminator: the critic, `[batch, S, S, 3] -> [batch, 1]` with a
            linear output (`build_dcgan_discriminator`).
        n_critic: int >= 1, critic updates per generator update (paper: 5).
        clip_value: float > 0, the clipping bound c (paper: 0.01).
        seed: int or None.
        ema_decay: float in [0, 1), as in `GAN` (0: no average).

    Compile defaults: RMSprop(5e-5) for both (the paper: momentum-based
    optimizers made the critic unstable).

    Logs: `d_loss` (minus the critic's Wasserstein estimate), `g_loss`, `loss`.
    """

    def __init__(self, generator, discriminator, n_critic=5, clip_value=0.01, seed=None, **kwargs):
        super().__init__(generator, discriminator, seed=seed, **kwargs)
        self.n_critic = check_int("n_critic", n_critic, minimum=1)
        # None is used by WGANGP only: the penalty replaces clipping.
        self.clip_value = None if clip_value is None else check_float(
            "clip_value", clip_value, minimum=0.0, strict_minimum=True)

    def default_optimizer(self, name):
        return keras.optimizers.RMSprop(learning_rate=5e-5)

    def discriminator_loss(self, real_scores, fake_scores):
        return wasserstein_critic_loss(real_scores, fake_scores)

    def generator_loss(self, fake_scores):
        return wasserstein_generator_loss(fake_scores)

    def after_discriminator_step(self):
        if self.clip_value is None:
            return
        for variable in self.discriminator.trainable_variables:
            variable.assign(ops.clip(variable, -self.clip_value, self.clip_value))

    def _hyperparameters(self):
        return {"n_critic": self.n_critic, "clip_value": self.clip_value}


@keras.saving.register_keras_serializable(package="kerasvision")
class WGANGP(WGAN):
    """WGAN with gradient penalty (Gulrajani et al. 2017, Algorithm 1).

    The `WGAN` step without clipping; the critic loss adds
    `gp_weight * kerasvision.losses.gradient_penalty(...)` at interpolates
    x_hat = a * x + (1 - a) * G(z), a ~ Uniform(0, 1) per sample, with an
    epsilon inside the gradient norm's square root.

    Args:
        generator: as in `GAN`.
        discriminator: the critic; use `normalization="layer"` or None in
            `build_dcgan_discriminator` (BatchNorm couples samples, which the
            per-sample penalty assumes they are not).
        n_critic: int >= 1 (paper: 5).
        gp_weight: float > 0, lambda (paper: 10).
        seed: int or None, seed of the latents and interpolation weights.
        ema_decay: float in [0, 1), as in `GAN` (0: no average).

    Compile defaults: Adam(1e-4, beta_1=0.5, beta_2=0.9) for both.

    Logs: `d_loss` (including the penalty), `gradient_penalty` (unweighted),
    `g_loss`, `loss`.
    """

    LOSS_NAMES = ("loss", "d_loss", "g_loss", "gradient_penalty")

    def __init__(self, generator, discriminator, n_critic=5, gp_weight=10.0, seed=None,
                 **kwargs):
        super().__init__(generator, discriminator, n_critic=n_critic, clip_value=None, seed=seed,
                         **kwargs)
        self.gp_weight = check_float("gp_weight", gp_weight, minimum=0.0, strict_minimum=True)

    def default_optimizer(self, name):
        return kernels.adam(learning_rate=1e-4, beta_1=0.5, beta_2=0.9)

    def interpolation_weights(self, batch_size):
        """Per-sample weights a ~ Uniform(0, 1), shape `[batch, 1, 1, 1]`."""
        return self._random_uniform((batch_size, 1, 1, 1))

    def discriminator_losses(self, real_images, fake_images, training=True):
        losses = super().discriminator_losses(real_images, fake_images, training=training)
        alpha = self.interpolation_weights(ops.shape(real_images)[0])
        penalty = gradient_penalty(self.discriminator, real_images, fake_images, alpha,
                                   training=training)
        return {"d_loss": losses["d_loss"] + self.gp_weight * penalty,
                "gradient_penalty": penalty}

    def _hyperparameters(self):
        return {"n_critic": self.n_critic, "gp_weight": self.gp_weight}


__all__ = [
    "GAN",
    "NORMALIZATIONS",
    "WGAN",
    "WGANGP",
    "build_dcgan_discriminator",
    "build_dcgan_generator",
]
