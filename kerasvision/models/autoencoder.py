"""Convolutional autoencoders: plain, denoising, sparse, and the variational autoencoder.

- `build_conv_encoder` / `build_conv_decoder`: strided-convolution encoder to a
  latent vector and its transposed-convolution mirror, images in [-1, 1].
- `Autoencoder`: reconstruction trainer (Hinton and Salakhutdinov 2006), with
  Gaussian input corruption for denoising (Vincent et al. 2008: the noisy
  image in, the clean image as the target) and an optional sparsity penalty
  on a sigmoid latent (L1, or the KL divergence to a target activation rate
  of Ng's sparse autoencoder notes, 2011).
- `VAE`: the variational autoencoder (Kingma and Welling 2014) with the
  reparameterisation trick, reconstruction and KL losses tracked separately,
  and an optional KL weight `beta` (Higgins et al. 2017).

Images follow the generative contract of kerasvision: float `[batch, H, W, 3]`
scaled to [-1, 1] (the decoders end in tanh).
"""

import tensorflow as tf
import keras
from keras import layers, ops

from kerasvision import kernels
from kerasvision.models.trainer import GenerativeTrainer
from kerasvision.validation import (
    check_choice,
    check_float,
    check_image_shape,
    check_int,
    fill_doc,
)

SPARSITY_KINDS = ("l1", "kl")
# Numerical floor for the sparse-KL logarithms (sigmoid activations reach 0 or 1 in float32).
_KL_EPSILON = 1e-6

_BUILDER_ARGS_DOC = """filters: tuple of int, channels of the stride-2 stages; their number n
            sets the spatial factor 2**n between the image and the smallest
            feature map.
        kernel_size: int, square kernel of every convolution.
        batch_norm: bool, BatchNormalization after each convolution.
        activation: str, activation of the hidden layers."""


def check_filters(filters):
    """Validates a tuple of stage widths (ints >= 1, at least one); returns it as a tuple."""
    try:
        values = tuple(filters)
    except TypeError:
        values = ()
    if not values:
        raise ValueError(
            f"`filters` must be a non-empty tuple of ints >= 1; received filters={filters!r}."
        )
    return tuple(check_int("filters", value, minimum=1) for value in values)


def check_generated_image_shape(image_shape, num_stages, name="input_shape"):
    """Validates an image shape a network with `num_stages` stride-2 stages can take or produce.

    Args:
        image_shape: `(height, width, 3)`.
        num_stages: int, number of stride-2 stages.
        name: str, the argument name for the error message.

    Returns:
        The shape as a tuple; a ValueError lists valid sizes otherwise.
    """
    stride = 2**num_stages
    try:
        return check_image_shape(image_shape, multiple_of=stride, min_size=stride, name=name)
    except ValueError as error:
        examples = ", ".join(str(stride * k) for k in (1, 2, 4, 8))
        raise ValueError(
            f"{error} With {num_stages} stride-2 stages the network works with image sizes "
            f"that are multiples of {stride} ({examples}, ...); change the image size or the "
            "number of `filters` stages."
        ) from None


def check_upsampling_network_args(latent_dim, output_shape, filters, kernel_size):
    """Validates the arguments shared by decoders and generators (latent -> image).

    Returns:
        `(filters, output_shape, latent_dim, kernel_size, base)`, checked, where
        `base` is the `(height, width)` the first projection is reshaped to
        (the output size divided by 2 per upsampling stage).
    """
    filters = check_filters(filters)
    output_shape = check_generated_image_shape(output_shape, len(filters), name="output_shape")
    latent_dim = check_int("latent_dim", latent_dim, minimum=1)
    kernel_size = check_int("kernel_size", kernel_size, minimum=1)
    base = output_shape[0] // 2 ** len(filters), output_shape[1] // 2 ** len(filters)
    return filters, output_shape, latent_dim, kernel_size, base


def _apply_norm(x, batch_norm, name):
    if batch_norm:
        return kernels.batch_normalization(name=f"{name}_bn")(x)
    return x


@fill_doc(builder_args=_BUILDER_ARGS_DOC)
def build_conv_encoder(input_shape=(32, 32, 3), latent_dim=64, filters=(32, 64), kernel_size=3,
                       batch_norm=False, activation="relu", latent_activation=None,
                       variational=False, name="encoder"):
    """Convolutional encoder: images to a latent vector (or a Gaussian's mean and log-variance).

    Each stage is a stride-2 same-padded convolution (no pooling), so a
    `[S, S, 3]` image becomes a `[S / 2**n, S / 2**n, filters[-1]]` map that a
    dense layer projects to the latent vector.

    Args:
        input_shape: `(S, S, 3)`, S a multiple of `2 ** len(filters)`.
        latent_dim: int >= 1, size of the latent vector.
        {builder_args}
        latent_activation: None (linear) or an activation name; "sigmoid" keeps
            latents in (0, 1), as the sparsity penalties of `Autoencoder` need.
        variational: bool; True returns `[z_mean, z_log_var]` (VAE encoder).
        name: str, model name and prefix of the layer names.

    Returns:
        Functional `keras.Model` `[batch, S, S, 3] -> [batch, latent_dim]`
        (float32), or `-> [z_mean, z_log_var]`, each `[batch, latent_dim]`.

    Example:
        >>> encoder = build_conv_encoder((32, 32, 3), latent_dim=16)
        >>> encoder.output_shape
        (None, 16)
    """
    filters = check_filters(filters)
    input_shape = check_generated_image_shape(input_shape, len(filters))
    latent_dim = check_int("latent_dim", latent_dim, minimum=1)
    kernel_size = check_int("kernel_size", kernel_size, minimum=1)
    images = keras.Input(input_shape, name=f"{name}_images")
    x = images
    for index, channels in enumerate(filters, start=1):
        x = layers.Conv2D(channels, kernel_size, strides=2, padding="same",
                          use_bias=not batch_norm, name=f"{name}_conv{index}")(x)
        x = _apply_norm(x, batch_norm, f"{name}_conv{index}")
        x = layers.Activation(activation, name=f"{name}_{activation}{index}")(x)
    x = layers.Flatten(name=f"{name}_flatten")(x)
    # Latent layers in float32: exp(z_log_var) and the KL terms overflow in float16.
    if variational:
        z_mean = layers.Dense(latent_dim, dtype="float32", name=f"{name}_z_mean")(x)
        z_log_var = layers.Dense(latent_dim, dtype="float32", name=f"{name}_z_log_var")(x)
        return keras.Model(images, [z_mean, z_log_var], name=name)
    latents = layers.Dense(latent_dim, activation=latent_activation, dtype="float32",
                           name=f"{name}_latents")(x)
    return keras.Model(images, latents, name=name)


@fill_doc(builder_args=_BUILDER_ARGS_DOC)
def build_conv_decoder(latent_dim=64, output_shape=(32, 32, 3), filters=(64, 32), kernel_size=3,
                       batch_norm=False, activation="relu", name="decoder"):
    """Convolutional decoder: latent vectors to images in [-1, 1].

    A dense layer projects the latent vector to a `[S / 2**n, S / 2**n,
    filters[0]]` map; each stage is a stride-2 transposed convolution; a final
    3x3-style convolution maps to RGB and tanh to [-1, 1].

    Args:
        latent_dim: int >= 1.
        output_shape: `(S, S, 3)`, S a multiple of `2 ** len(filters)`.
        {builder_args}
        name: str, model name and prefix of the layer names.

    Returns:
        Functional `keras.Model` `[batch, latent_dim] -> [batch, S, S, 3]`,
        float32 in [-1, 1].

    Example:
        >>> decoder = build_conv_decoder(16, (32, 32, 3))
        >>> decoder.output_shape
        (None, 32, 32, 3)
    """
    filters, output_shape, latent_dim, kernel_size, base = check_upsampling_network_args(
        latent_dim, output_shape, filters, kernel_size
    )
    latents = keras.Input((latent_dim,), name=f"{name}_latents")
    x = layers.Dense(base[0] * base[1] * filters[0], use_bias=not batch_norm,
                     name=f"{name}_project")(latents)
    x = _apply_norm(x, batch_norm, f"{name}_project")
    x = layers.Activation(activation, name=f"{name}_project_{activation}")(x)
    x = layers.Reshape((*base, filters[0]), name=f"{name}_reshape")(x)
    for index, channels in enumerate(filters, start=1):
        x = layers.Conv2DTranspose(channels, kernel_size, strides=2, padding="same",
                                   use_bias=not batch_norm, name=f"{name}_up{index}")(x)
        x = _apply_norm(x, batch_norm, f"{name}_up{index}")
        x = layers.Activation(activation, name=f"{name}_{activation}{index}")(x)
    x = layers.Conv2D(output_shape[-1], kernel_size, padding="same", name=f"{name}_output_conv")(x)
    # tanh in float32: matches the [-1, 1] data and keeps the loss in full precision.
    images = layers.Activation("tanh", dtype="float32", name=f"{name}_images")(x)
    return keras.Model(latents, images, name=name)


def _check_pair(encoder, decoder, encoder_outputs):
    """Checks that the decoder inverts the encoder's shapes; returns (image_shape, latent_dim)."""
    for arg, network in (("encoder", encoder), ("decoder", decoder)):
        if not isinstance(network, keras.Model):
            raise ValueError(
                f"`{arg}` must be a keras.Model (e.g. from build_conv_{arg}); received "
                f"{type(network).__name__}."
            )
    image_shape = tuple(encoder.input_shape[1:])
    outputs = encoder.output_shape
    outputs = outputs if isinstance(outputs, list) else [outputs]
    if len(outputs) != encoder_outputs:
        kind = "[z_mean, z_log_var] (build_conv_encoder(variational=True))" if (
            encoder_outputs == 2) else "one latent tensor"
        raise ValueError(
            f"`encoder` must output {kind}; received outputs of shapes {outputs}."
        )
    latent_dim = outputs[0][-1]
    if tuple(decoder.input_shape[1:]) != (latent_dim,):
        raise ValueError(
            f"`decoder` must take latent vectors [batch, {latent_dim}] (the encoder's output); "
            f"received a decoder with input shape {decoder.input_shape}."
        )
    if tuple(decoder.output_shape[1:]) != image_shape:
        raise ValueError(
            f"`decoder` must produce images of the encoder's input shape {image_shape}; "
            f"received a decoder with output shape {decoder.output_shape}."
        )
    return image_shape, latent_dim


def _per_image_squared_error(images, reconstructions):
    """Sum of squared errors over pixels and channels: `[batch]`."""
    error = ops.square(ops.cast(reconstructions, "float32") - images)
    return ops.sum(ops.reshape(error, (ops.shape(error)[0], -1)), axis=-1)


@keras.saving.register_keras_serializable(package="kerasvision")
class Autoencoder(GenerativeTrainer):
    """Reconstruction trainer: plain, denoising or sparse autoencoder.

    Losses (all means over the batch):
        reconstruction_loss: mean squared error between the decoder's output
            and the clean image, per pixel and channel.
        sparsity_loss (when `sparsity` is set): `sparsity_weight` times
            "l1": the mean absolute latent activation (Ng 2011, L1 form), or
            "kl": sum over latent units j of KL(rho || rho_hat_j), rho_hat_j
            the unit's mean activation over the global batch and rho =
            `sparsity_target` (Ng 2011).
        loss: their sum.

    Args:
        encoder: `keras.Model` `[batch, S, S, 3] -> [batch, latent_dim]`
            (`build_conv_encoder`); with `sparsity` its latent must be sigmoid
            (`latent_activation="sigmoid"`).
        decoder: `keras.Model` `[batch, latent_dim] -> [batch, S, S, 3]` in
            [-1, 1] (`build_conv_decoder`).
        noise_stddev: float >= 0; > 0 trains a denoising autoencoder (Vincent
            et al. 2008): Gaussian noise of this standard deviation is added
            to the input (on the [-1, 1] scale), the clean image is the target.
        sparsity: None, "l1" or "kl".
        sparsity_weight: float >= 0, weight of the sparsity penalty.
        sparsity_target: float in (0, 1), the target activation rate rho of "kl".
        seed: int or None, seed of the input noise.

    Call: images `[batch, S, S, 3]` in [-1, 1] -> reconstructions, same shape.

    Example:
        >>> ae = Autoencoder(build_conv_encoder((32, 32, 3), 16),
        ...                  build_conv_decoder(16, (32, 32, 3)), noise_stddev=0.1)
        >>> ae.compile(keras.optimizers.Adam(1e-3))
        >>> ae.fit(images_in_minus1_1, epochs=1)   # doctest: +SKIP
    """

    NETWORKS = ("encoder", "decoder")

    def __init__(self, encoder, decoder, noise_stddev=0.0, sparsity=None, sparsity_weight=1e-3,
                 sparsity_target=0.05, seed=None, **kwargs):
        if sparsity is not None:
            check_choice("sparsity", sparsity, SPARSITY_KINDS)
        names = ("loss", "reconstruction_loss") + (("sparsity_loss",) if sparsity else ())
        super().__init__(seed=seed, loss_names=names, **kwargs)
        self.image_shape, self.latent_dim = _check_pair(encoder, decoder, encoder_outputs=1)
        self.encoder = encoder
        self.decoder = decoder
        self.noise_stddev = check_float("noise_stddev", noise_stddev, minimum=0.0)
        self.sparsity = sparsity
        self.sparsity_weight = check_float("sparsity_weight", sparsity_weight, minimum=0.0)
        self.sparsity_target = check_float("sparsity_target", sparsity_target, minimum=0.0,
                                           maximum=1.0, strict_minimum=True)
        if self.sparsity_target >= 1.0:
            raise ValueError(
                f"`sparsity_target` must be < 1; received sparsity_target={sparsity_target}."
            )
        if sparsity is not None:
            last = encoder.layers[-1]
            activation = getattr(getattr(last, "activation", None), "__name__", None)
            if activation != "sigmoid":
                raise ValueError(
                    f"`sparsity`={sparsity!r} penalises activation rates, which needs latents in "
                    "(0, 1): build the encoder with latent_activation='sigmoid'; received an "
                    f"encoder whose last layer {last.name!r} has activation {activation!r}."
                )

    def expected_image_shape(self):
        return self.image_shape

    def encode(self, images, training=False):
        """Images `[batch, S, S, 3]` in [-1, 1] -> latents `[batch, latent_dim]`."""
        return self.encoder(images, training=training)

    def decode(self, latents, training=False):
        """Latents `[batch, latent_dim]` -> images `[batch, S, S, 3]` in [-1, 1]."""
        return self.decoder(latents, training=training)

    def call(self, images, training=False):
        return self.decode(self.encode(images, training=training), training=training)

    def _sparsity_penalty(self, latents):
        latents = ops.cast(latents, "float32")
        if self.sparsity == "l1":
            return ops.mean(ops.abs(latents))
        # rho_hat is a statistic of the whole (global) batch: under a
        # distribution strategy each replica averages the all-reduced sums, so
        # the penalty and its gradient match the single-device step.
        total = ops.sum(latents, axis=0)
        count = ops.cast(ops.shape(latents)[0], "float32")
        context = tf.distribute.get_replica_context()
        if context is not None and context.num_replicas_in_sync > 1:
            total = context.all_reduce("sum", total)
            count = context.all_reduce("sum", count)
        rho_hat = ops.clip(total / count, _KL_EPSILON, 1.0 - _KL_EPSILON)
        rho = self.sparsity_target
        kl = rho * ops.log(rho / rho_hat) + (1.0 - rho) * ops.log((1.0 - rho) / (1.0 - rho_hat))
        # No division by the replica count is needed here: each replica's loss
        # is divided by it, and the gradient of the all-reduce sums the
        # replicas' (identical) contributions back.
        return ops.sum(kl)

    def compute_losses(self, data, training=False):
        images = self._images_from(data)
        inputs = images
        if training and self.noise_stddev > 0:
            # Denoising: corrupt the input only; the target stays clean.
            inputs = images + self.noise_stddev * self._random_normal(ops.shape(images))
        latents = self.encode(inputs, training=training)
        reconstructions = ops.cast(self.decode(latents, training=training), "float32")
        reconstruction = ops.mean(ops.square(reconstructions - images))
        losses = {"reconstruction_loss": reconstruction}
        total = reconstruction
        if self.sparsity is not None:
            penalty = self.sparsity_weight * self._sparsity_penalty(latents)
            losses["sparsity_loss"] = penalty
            total = total + penalty
        losses["loss"] = total
        return losses

    def train_step(self, data):
        with tf.GradientTape() as tape:
            losses = self.compute_losses(data, training=True)
        variables = self._variables_for("optimizer")
        grads = self._scaled_gradients(tape, losses["loss"], variables, self.optimizer)
        self.optimizer.apply(grads, variables)
        return self._update_trackers(losses)

    def get_config(self):
        return {
            **super().get_config(),
            "noise_stddev": self.noise_stddev,
            "sparsity": self.sparsity,
            "sparsity_weight": self.sparsity_weight,
            "sparsity_target": self.sparsity_target,
        }


def vae_kl_divergence(z_mean, z_log_var):
    """KL(N(z_mean, exp(z_log_var)) || N(0, I)) per example (Kingma and Welling 2014, appendix B).

    Args:
        z_mean, z_log_var: `[batch, latent_dim]`.

    Returns:
        float32 `[batch]`: -0.5 * sum_j (1 + log s_j^2 - m_j^2 - s_j^2).
    """
    z_mean = ops.cast(z_mean, "float32")
    z_log_var = ops.cast(z_log_var, "float32")
    return -0.5 * ops.sum(1.0 + z_log_var - ops.square(z_mean) - ops.exp(z_log_var), axis=-1)


@keras.saving.register_keras_serializable(package="kerasvision")
class VAE(GenerativeTrainer):
    """Variational autoencoder (Kingma and Welling 2014) trained by the reparameterisation trick.

    The encoder gives q(z|x) = N(z_mean, exp(z_log_var)); a latent is drawn as
    z = z_mean + exp(z_log_var / 2) * eps, eps ~ N(0, I), so the sample is a
    differentiable function of the encoder's outputs. The negative ELBO is

        loss = reconstruction_loss + beta * kl_loss,

    reconstruction_loss: the squared error summed over pixels and channels
    (a Gaussian decoder likelihood, up to constants), kl_loss:
    `vae_kl_divergence` summed over latent units; both averaged over the batch.

    Args:
        encoder: `keras.Model` `[batch, S, S, 3] -> [z_mean, z_log_var]`
            (`build_conv_encoder(..., variational=True)`).
        decoder: `keras.Model` `[batch, latent_dim] -> [batch, S, S, 3]` in [-1, 1].
        beta: float > 0, weight of the KL term (1: the ELBO; > 1: beta-VAE,
            Higgins et al. 2017).
        seed: int or None, seed of the reparameterisation noise.

    Call: images `[batch, S, S, 3]` in [-1, 1] -> reconstructions decoded from
    `z_mean` (deterministic).

    Example:
        >>> vae = VAE(build_conv_encoder((32, 32, 3), 8, variational=True),
        ...           build_conv_decoder(8, (32, 32, 3)), seed=0)
        >>> vae.compile()
        >>> samples = vae.generate(16)   # [16, 32, 32, 3] in [-1, 1]
    """

    NETWORKS = ("encoder", "decoder")
    LOSS_NAMES = ("loss", "reconstruction_loss", "kl_loss")

    def __init__(self, encoder, decoder, beta=1.0, seed=None, **kwargs):
        super().__init__(seed=seed, **kwargs)
        self.image_shape, self.latent_dim = _check_pair(encoder, decoder, encoder_outputs=2)
        self.encoder = encoder
        self.decoder = decoder
        self.beta = check_float("beta", beta, minimum=0.0, strict_minimum=True)

    def expected_image_shape(self):
        return self.image_shape

    def encode(self, images, training=False):
        """Images `[batch, S, S, 3]` -> `(z_mean, z_log_var)`, each `[batch, latent_dim]`."""
        z_mean, z_log_var = self.encoder(images, training=training)
        return z_mean, z_log_var

    def decode(self, latents, training=False):
        """Latents `[batch, latent_dim]` -> images `[batch, S, S, 3]` in [-1, 1]."""
        return self.decoder(latents, training=training)

    def sample_latents(self, z_mean, z_log_var):
        """The reparameterisation trick: z_mean + exp(z_log_var / 2) * eps, eps from the seed."""
        eps = self._random_normal(ops.shape(z_mean))
        return z_mean + ops.exp(0.5 * z_log_var) * eps

    def generate(self, num_images=None, latents=None):
        """Images decoded from latents drawn from the prior N(0, I) (or given).

        Args:
            num_images: int >= 1, number of prior samples (drawn from the
                trainer's seed generator); ignored when `latents` is given.
            latents: optional `[batch, latent_dim]`.

        Returns:
            float32 `[batch, S, S, 3]` in [-1, 1].
        """
        latents = self._latents_for(num_images, latents, self.latent_dim)
        return self.decode(latents, training=False)

    def call(self, images, training=False):
        z_mean, _ = self.encode(images, training=training)
        return self.decode(z_mean, training=training)

    def logged_loss(self, means):
        return means["reconstruction_loss"] + self.beta * means["kl_loss"]

    def compute_losses(self, data, training=False):
        images = self._images_from(data)
        z_mean, z_log_var = self.encode(images, training=training)
        # Sampled during evaluation too: the reported loss is the negative ELBO
        # estimate in both cases.
        latents = self.sample_latents(z_mean, z_log_var)
        reconstructions = self.decode(latents, training=training)
        reconstruction = ops.mean(_per_image_squared_error(images, reconstructions))
        kl = ops.mean(vae_kl_divergence(z_mean, z_log_var))
        return {
            "loss": reconstruction + self.beta * kl,
            "reconstruction_loss": reconstruction,
            "kl_loss": kl,
        }

    def train_step(self, data):
        with tf.GradientTape() as tape:
            losses = self.compute_losses(data, training=True)
        variables = self._variables_for("optimizer")
        grads = self._scaled_gradients(tape, losses["loss"], variables, self.optimizer)
        self.optimizer.apply(grads, variables)
        return self._update_trackers(losses)

    def get_config(self):
        return {**super().get_config(), "beta": self.beta}


__all__ = [
    "Autoencoder",
    "SPARSITY_KINDS",
    "VAE",
    "build_conv_decoder",
    "build_conv_encoder",
    "check_filters",
    "check_generated_image_shape",
    "check_upsampling_network_args",
    "vae_kl_divergence",
]
