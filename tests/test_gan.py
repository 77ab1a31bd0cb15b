"""DCGAN networks, GAN / WGAN / WGAN-GP trainers and the Wasserstein losses."""

import json

import numpy as np
import pytest
import tensorflow as tf
import keras

from kerasvision.export import export_generator, load_export
from kerasvision.losses import gradient_penalty, wasserstein_critic_loss, wasserstein_generator_loss
from kerasvision.models.gan import (
    GAN,
    WGAN,
    WGANGP,
    build_dcgan_discriminator,
    build_dcgan_generator,
)
from tests.helpers import assert_keras_file_round_trip, run_in_fresh_process

SIZE = 16
LATENT = 8
SHAPE = (SIZE, SIZE, 3)


def images(count=8, seed=0):
    return np.random.RandomState(seed).uniform(-1, 1, (count, *SHAPE)).astype("float32")


def generator(synchronized=False, filters=(16, 8)):
    return build_dcgan_generator(LATENT, SHAPE, filters, synchronized=synchronized)


def discriminator(normalization="batch", synchronized=False, filters=(8, 16)):
    return build_dcgan_discriminator(SHAPE, filters, normalization=normalization,
                                     synchronized=synchronized)


def make_gan(seed=0, synchronized=False, filters=(8, 16)):
    return GAN(generator(synchronized, filters[::-1]), discriminator("batch", synchronized, filters),
               label_smoothing=0.1, seed=seed)


def make_wgan(seed=0, n_critic=2, clip_value=0.01):
    return WGAN(generator(), discriminator(), n_critic=n_critic, clip_value=clip_value, seed=seed)


def make_wgangp(seed=0, n_critic=2, synchronized=False, filters=(8, 16)):
    return WGANGP(generator(synchronized, filters[::-1]), discriminator("layer", filters=filters),
                  n_critic=n_critic, seed=seed)


def snapshot(model):
    return [v.numpy().copy() for v in model.trainable_variables]


# A linear critic's output bias has zero gradient under the Wasserstein losses
# (it cancels in mean(f(fake)) - mean(f(real)) and does not move the penalty),
# so it is the one variable a WGAN step cannot change.
WASSERSTEIN_CONSTANT = {"discriminator_score/bias"}


def assert_all_changed(model, before, exempt=()):
    unchanged = {
        v.path for v, old in zip(model.trainable_variables, before) if np.array_equal(v.numpy(), old)
    }
    assert unchanged <= set(exempt), f"not updated by the step: {sorted(unchanged - set(exempt))}"


def fit_one_step(model, data=None, **compile_kwargs):
    model.compile(**compile_kwargs)
    before = snapshot(model)
    data = images() if data is None else data
    history = model.fit(data, batch_size=4, epochs=1, steps_per_epoch=1, shuffle=False, verbose=0)
    return {k: v[-1] for k, v in history.history.items()}, before


# ---------------------------------------------------------------------------
# Builders and bad arguments
# ---------------------------------------------------------------------------


def test_dcgan_builders_follow_the_paper():
    g = build_dcgan_generator(16, (32, 32, 3), (32, 16, 8), name="g")
    d = build_dcgan_discriminator((32, 32, 3), (8, 16, 32), name="d")
    assert g.output_shape == (None, 32, 32, 3) and d.output_shape == (None, 1)
    assert g.get_layer("g_reshape").output.shape == (None, 4, 4, 32)  # projected to 4x4
    assert g.layers[-1].activation.__name__ == "tanh"
    # No BatchNorm on the generator output nor on the discriminator input layer.
    assert not any(isinstance(layer, keras.layers.BatchNormalization) and "output" in layer.name
                   for layer in g.layers)
    d_norms = [layer.name for layer in d.layers if isinstance(layer, keras.layers.BatchNormalization)]
    assert d_norms == ["d_conv2_bn", "d_conv3_bn"]
    assert not any(isinstance(layer, keras.layers.MaxPooling2D) for layer in d.layers)
    leaky = [layer for layer in d.layers if isinstance(layer, keras.layers.LeakyReLU)]
    assert leaky and all(layer.negative_slope == pytest.approx(0.2) for layer in leaky)
    assert np.std(g.get_layer("g_project").kernel.numpy()) == pytest.approx(0.02, rel=0.2)
    critic = build_dcgan_discriminator((32, 32, 3), normalization="layer")
    assert any(isinstance(layer, keras.layers.LayerNormalization) for layer in critic.layers)
    assert critic.layers[-1].activation.__name__ == "linear"


@pytest.mark.parametrize(
    "build, match",
    [
        (lambda: build_dcgan_generator(8, (30, 30, 3), (16, 8)),
         r"output_shape.*multiples of 4 \(4, 8, 16, 32"),
        (lambda: build_dcgan_generator(0, SHAPE), r"latent_dim.*>= 1.*latent_dim=0"),
        (lambda: build_dcgan_discriminator((20, 20, 3), (8, 16, 32)), r"multiples of 8"),
        (lambda: build_dcgan_discriminator(SHAPE, normalization="group"), r"normalization"),
        (lambda: WGAN(generator(), discriminator(), n_critic=0), r"n_critic.*>= 1.*n_critic=0"),
        (lambda: WGAN(generator(), discriminator(), clip_value=0.0), r"clip_value.*> 0.*clip_value=0"),
        (lambda: WGAN(generator(), discriminator(), clip_value=-1), r"clip_value.*> 0"),
        (lambda: WGANGP(generator(), discriminator(), gp_weight=0), r"gp_weight.*> 0"),
        (lambda: WGANGP(generator(), discriminator(), n_critic=1.5), r"n_critic.*integer"),
        (lambda: GAN(generator(), discriminator(), label_smoothing=1.0), r"label_smoothing"),
        (lambda: GAN(generator(), build_dcgan_discriminator((32, 32, 3))),
         r"discriminator.*\(16, 16, 3\)"),
        (lambda: GAN(generator(), generator()), r"discriminator"),
        (lambda: GAN(None, discriminator()), r"generator.*keras.Model"),
    ],
)
def test_bad_arguments(build, match):
    with pytest.raises(ValueError, match=match):
        build()


def test_bad_data_and_compile_arguments():
    gan = make_gan()
    with pytest.raises(ValueError, match=r"d_optimizer"):
        gan.compile(d_optimizer="no_such_optimizer")
    gan.compile()
    with pytest.raises(ValueError, match=r"\[batch, 16, 16, 3\].*\(2, 32, 32, 3\)"):
        gan.fit(np.zeros((2, 32, 32, 3), "float32"), verbose=0)
    with pytest.raises(ValueError, match=r"latents.*\[batch, 8\]"):
        gan.generate(latents=np.zeros((2, 4), "float32"))


def test_default_optimizers_follow_the_papers():
    gan, wgan, wgangp = make_gan(), make_wgan(), make_wgangp()
    for model in (gan, wgan, wgangp):
        model.compile()
    assert model.optimizer is None  # two optimizers, none shared
    for optimizer in (gan.d_optimizer, gan.g_optimizer):
        assert isinstance(optimizer, keras.optimizers.Adam)
        assert float(optimizer.learning_rate) == pytest.approx(2e-4) and optimizer.beta_1 == 0.5
    for optimizer in (wgan.d_optimizer, wgan.g_optimizer):
        assert isinstance(optimizer, keras.optimizers.RMSprop)
        assert float(optimizer.learning_rate) == pytest.approx(5e-5)
    for optimizer in (wgangp.d_optimizer, wgangp.g_optimizer):
        assert isinstance(optimizer, keras.optimizers.Adam)
        assert float(optimizer.learning_rate) == pytest.approx(1e-4)
        assert (optimizer.beta_1, optimizer.beta_2) == (0.5, 0.9)
    assert gan.d_optimizer is not gan.g_optimizer


# ---------------------------------------------------------------------------
# Train steps
# ---------------------------------------------------------------------------


def test_gan_fit_step_jit_compiled():
    model = make_gan(filters=(8,))  # one stage: XLA compilation is the slow part on CPU
    logs, before = fit_one_step(model, jit_compile=True)
    assert set(logs) == {"loss", "d_loss", "g_loss"}
    assert all(np.isfinite(value) for value in logs.values())
    np.testing.assert_allclose(logs["loss"], logs["d_loss"] + logs["g_loss"], rtol=1e-5)
    assert_all_changed(model, before)
    assert int(model.d_optimizer.iterations) == 1 and int(model.g_optimizer.iterations) == 1


def test_wgan_fit_step_clips_the_critic():
    model = make_wgan(n_critic=3, clip_value=0.01)
    # Eager: graph mode runs in the MirroredStrategy test, XLA in the GAN/WGAN-GP tests.
    logs, before = fit_one_step(model, run_eagerly=True)
    assert set(logs) == {"loss", "d_loss", "g_loss"}
    assert all(np.isfinite(value) for value in logs.values())
    assert_all_changed(model, before, exempt=WASSERSTEIN_CONSTANT)
    assert int(model.d_optimizer.iterations) == 3 and int(model.g_optimizer.iterations) == 1
    for variable in model.discriminator.trainable_variables:
        assert np.abs(variable.numpy()).max() <= 0.01 + 1e-7, variable.path


def test_wgangp_fit_step_jit_compiled_and_evaluate():
    model = make_wgangp(n_critic=1, filters=(8,))
    logs, before = fit_one_step(model, jit_compile=True)
    assert set(logs) == {"loss", "d_loss", "g_loss", "gradient_penalty"}
    assert all(np.isfinite(value) for value in logs.values())
    assert_all_changed(model, before, exempt=WASSERSTEIN_CONSTANT)
    assert model.clip_value is None
    # The default test_step (evaluate and fit(validation_data=...)).
    model.compile(run_eagerly=True)
    results = model.evaluate(images(4), batch_size=4, verbose=0, return_dict=True)
    assert set(results) == set(logs) and all(np.isfinite(v) for v in results.values())


def test_gan_trains_under_mixed_float16_with_loss_scaling():
    keras.mixed_precision.set_global_policy("mixed_float16")
    model = make_gan(filters=(8,))
    model.compile()
    assert isinstance(model.d_optimizer, keras.optimizers.LossScaleOptimizer)
    assert isinstance(model.g_optimizer, keras.optimizers.LossScaleOptimizer)
    # A moderate initial scale, so that the first step is finite (not skipped).
    scaled = lambda: keras.optimizers.LossScaleOptimizer(keras.optimizers.Adam(2e-4, beta_1=0.5),
                                                         initial_scale=2.0**4)
    logs, before = fit_one_step(model, d_optimizer=scaled(), g_optimizer=scaled(), run_eagerly=True)
    assert model.generator.layers[1].compute_dtype == "float16"
    assert all(np.isfinite(value) for value in logs.values())
    assert float(model.d_optimizer.dynamic_scale) == float(model.g_optimizer.dynamic_scale) == 16.0
    assert_all_changed(model, before)


# ---------------------------------------------------------------------------
# Values against references computed another way
# ---------------------------------------------------------------------------


def test_logged_loss_is_the_sum_of_the_logged_terms_means():
    """`loss` is d_loss + g_loss of the means, in the step logs and the epoch logs."""
    gan = make_gan()
    d_losses, g_losses = [1.25, 0.5, 2.0], [0.75, 0.125, 3.0]
    for d_loss, g_loss in zip(d_losses, g_losses):
        # A per-step "loss" unrelated to the terms: the log must not average it.
        logs = gan._update_trackers({"loss": tf.constant(-100.0), "d_loss": tf.constant(d_loss),
                                     "g_loss": tf.constant(g_loss)})
    means = {name: np.float32(np.mean(values, dtype="float32"))
             for name, values in (("d_loss", d_losses), ("g_loss", g_losses))}
    assert float(logs["d_loss"]) == means["d_loss"]
    assert float(logs["loss"]) == np.float32(means["d_loss"] + means["g_loss"])
    # The epoch's logs (what History records) are read from the trackers after the step.
    epoch_logs = gan.get_metrics_result()
    assert epoch_logs["loss"] == float(means["d_loss"]) + float(means["g_loss"])
    assert epoch_logs["g_loss"] == means["g_loss"]


def test_wasserstein_losses_by_hand():
    real = np.array([[1.0], [3.0], [-2.0]], "float32")
    fake = np.array([[0.5], [-1.5], [4.0]], "float32")
    # mean(fake) - mean(real) = 1.0 - 0.6667; generator: -mean(fake) = -1.0
    assert float(wasserstein_critic_loss(real, fake)) == pytest.approx(1.0 - 2.0 / 3.0)
    assert float(wasserstein_generator_loss(fake)) == pytest.approx(-1.0)


def test_gan_losses_by_hand_with_label_smoothing():
    model = make_gan()
    real = np.array([[2.0], [-1.0]], "float32")
    fake = np.array([[0.5], [-3.0]], "float32")

    def bce(logits, target):
        p = 1.0 / (1.0 + np.exp(-logits.astype("float64")))
        return -(target * np.log(p) + (1 - target) * np.log(1 - p))

    expected_d = bce(real, 0.9).mean() + bce(fake, 0.0).mean()
    assert float(model.discriminator_loss(real, fake)) == pytest.approx(expected_d, rel=1e-5)
    assert float(model.generator_loss(fake)) == pytest.approx(bce(fake, 1.0).mean(), rel=1e-5)


def test_gradient_penalty_of_a_linear_critic_has_the_known_norm():
    # f(x) = <w, x> + b: its input gradient is w everywhere, so the penalty is
    # (sqrt(|w|^2 + eps) - 1)^2 whatever the interpolates.
    inputs = keras.Input((2, 2, 3))
    critic = keras.Model(inputs, keras.layers.Dense(1)(keras.layers.Flatten()(inputs)))
    w = np.random.RandomState(0).normal(scale=0.3, size=(12, 1)).astype("float32")
    critic.layers[-1].set_weights([w, np.array([0.7], "float32")])
    real, fake = (np.random.RandomState(s).normal(size=(4, 2, 2, 3)).astype("float32") for s in (1, 2))
    alpha = np.random.RandomState(3).uniform(size=(4, 1, 1, 1)).astype("float32")
    penalty = float(gradient_penalty(critic, real, fake, alpha, epsilon=1e-12))
    expected = (np.sqrt(np.sum(w.astype("float64") ** 2) + 1e-12) - 1.0) ** 2
    assert penalty == pytest.approx(expected, rel=1e-5)
    # Zero gradient: the epsilon keeps the norm's gradient finite.
    critic.layers[-1].set_weights([np.zeros_like(w), np.zeros(1, "float32")])
    with tf.GradientTape() as tape:
        value = gradient_penalty(critic, real, fake, alpha)
    kernel_gradient = tape.gradient(value, critic.layers[-1].kernel)  # the bias has none
    assert float(value) == pytest.approx(1.0, rel=1e-5)
    assert np.all(np.isfinite(kernel_gradient))


def test_gradient_penalty_of_a_nonlinear_critic_matches_numpy():
    # f(x) = v . tanh(W x): grad_x f = W^T (v * (1 - tanh(W x)^2)), evaluated at
    # the interpolates, which checks that alpha weighs the real images.
    inputs = keras.Input((1, 2, 3))
    hidden = keras.layers.Dense(5, activation="tanh")(keras.layers.Flatten()(inputs))
    critic = keras.Model(inputs, keras.layers.Dense(1, use_bias=False)(hidden))
    rng = np.random.RandomState(0)
    W, v = rng.normal(size=(6, 5)), rng.normal(size=(5, 1))
    critic.layers[2].set_weights([W.astype("float32"), np.zeros(5, "float32")])
    critic.layers[3].set_weights([v.astype("float32")])
    real, fake = rng.normal(size=(2, 3, 1, 2, 3))
    alpha = rng.uniform(size=(3, 1, 1, 1))
    x_hat = (alpha * real + (1 - alpha) * fake).reshape(3, 6)
    grads = (v[:, 0] * (1 - np.tanh(x_hat @ W) ** 2)) @ W.T
    expected = np.mean((np.sqrt(np.sum(grads**2, axis=1) + 1e-12) - 1.0) ** 2)
    penalty = float(gradient_penalty(critic, real.astype("float32"), fake.astype("float32"),
                                     alpha.astype("float32")))
    assert penalty == pytest.approx(expected, rel=1e-4)


def test_wgangp_interpolation_weights_are_uniform_per_sample():
    model = make_wgangp(seed=1)
    alpha = model.interpolation_weights(4000).numpy()
    assert alpha.shape == (4000, 1, 1, 1)
    alpha = alpha.ravel()
    assert alpha.min() >= 0.0 and alpha.max() <= 1.0
    assert len(np.unique(alpha)) > 3990  # one weight per sample
    # Uniform(0, 1): mean 1/2, variance 1/12, and flat deciles (a Normal fails all three).
    assert alpha.mean() == pytest.approx(0.5, abs=0.02)
    assert alpha.var() == pytest.approx(1 / 12, abs=0.005)
    counts = np.histogram(alpha, bins=10, range=(0, 1))[0]
    assert counts.min() > 330 and counts.max() < 470


def test_wgangp_penalty_uses_the_trainer_interpolates():
    model = make_wgangp(seed=4)
    real, fake = images(4), images(4, seed=1)
    losses = model.discriminator_losses(real, fake, training=False)
    alpha = keras.random.uniform((4, 1, 1, 1), seed=keras.random.SeedGenerator(4))
    expected = gradient_penalty(model.discriminator, real, fake, alpha, training=False)
    np.testing.assert_allclose(float(losses["gradient_penalty"]), float(expected), rtol=1e-5)
    critic = float(wasserstein_critic_loss(model.discriminator(real), model.discriminator(fake)))
    np.testing.assert_allclose(float(losses["d_loss"]), critic + 10.0 * float(expected), rtol=1e-5)


# ---------------------------------------------------------------------------
# Save/load, export
# ---------------------------------------------------------------------------


@pytest.mark.parametrize("factory", [make_gan, make_wgangp])
def test_keras_file_round_trip_restores_networks_and_both_optimizers(factory, tmp_path):
    model = factory()
    fit_one_step(model, g_optimizer=keras.optimizers.Adam(3e-4), run_eagerly=True)
    latents = np.random.RandomState(0).normal(size=(2, LATENT)).astype("float32")
    restored = assert_keras_file_round_trip(model, latents, tmp_path / "gan.keras")
    assert json.loads(json.dumps(restored.get_config())) == json.loads(json.dumps(model.get_config()))
    np.testing.assert_allclose(restored.discriminator(images(2)), model.discriminator(images(2)),
                               atol=1e-6)
    for name in ("d_optimizer", "g_optimizer"):
        saved, loaded = getattr(model, name), getattr(restored, name)
        assert type(loaded) is type(saved)
        assert int(loaded.iterations) == int(saved.iterations) > 0
        for a, b in zip(saved.variables, loaded.variables):
            np.testing.assert_array_equal(a.numpy(), b.numpy())
    assert float(restored.g_optimizer.learning_rate) == pytest.approx(3e-4)


def test_export_generator_round_trip(tmp_path):
    model = make_gan()
    path = export_generator(model.generator, str(tmp_path / "generator"), LATENT)
    loaded = load_export(path)
    latents = np.random.RandomState(0).normal(size=(4, LATENT)).astype("float32")
    out = loaded.signatures["serving_default"](latents=tf.constant(latents))["images"]
    assert out.dtype == tf.uint8 and out.shape == (4, *SHAPE)
    expected = np.clip(np.round((model.generate(latents=latents).numpy() + 1) * 127.5), 0, 255)
    assert np.abs(out.numpy().astype(int) - expected).max() <= 1
    single = loaded.signatures["serving_default"](latents=tf.constant(latents[1:2]))["images"]
    np.testing.assert_array_equal(single.numpy()[0], out.numpy()[1])
    seeded = loaded.signatures["serving_seed"](seed=tf.constant([1, 2]), num_images=tf.constant(3))
    assert seeded["images"].shape == (3, *SHAPE) and seeded["images"].dtype == tf.uint8


# ---------------------------------------------------------------------------
# MirroredStrategy over two logical CPUs
# ---------------------------------------------------------------------------


def test_mirrored_strategy_step_matches_single_device():
    code = """
        import numpy as np, tensorflow as tf
        cpu = tf.config.list_physical_devices("CPU")[0]
        tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * 2)
        import keras
        from tests.test_gan import images, make_wgangp

        data = tf.data.Dataset.from_tensor_slices(images(4)).batch(4)

        def update(factory, strategy):
            keras.utils.set_random_seed(0)  # same initial weights for both runs
            with strategy.scope():
                model = factory()
                model.compile(keras.optimizers.SGD(0.05), keras.optimizers.SGD(0.05))
            before = [v.numpy() for v in model.trainable_variables]
            logs = model.fit(data, epochs=1, verbose=0).history
            return [v.numpy() - b for v, b in zip(model.trainable_variables, before)], logs

        # WGAN-GP covers the shared GAN step plus nested tapes and uniform draws;
        # the generator's BatchNorm is synchronized (per-replica statistics
        # would legitimately differ from the single-device step). One stage per
        # network keeps the (slow) mirrored tracing short.
        factory = lambda: make_wgangp(n_critic=1, synchronized=True, filters=(8,))
        single, single_logs = update(factory, tf.distribute.get_strategy())
        distributed, distributed_logs = update(factory, tf.distribute.MirroredStrategy(["/cpu:0", "/cpu:1"]))
        for a, b in zip(single, distributed):
            np.testing.assert_allclose(a, b, atol=1e-5)
        for key in single_logs:
            np.testing.assert_allclose(single_logs[key], distributed_logs[key], rtol=1e-4)
        print("ok")
    """
    assert run_in_fresh_process(code).strip().endswith("ok")
