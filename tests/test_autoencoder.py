"""Autoencoder and VAE: builders, train steps, values against numpy, save/load, export, distribution."""

import json

import numpy as np
import pytest
import tensorflow as tf
import keras

from kerasvision.export import export_autoencoder, export_generator, load_export
from kerasvision.models.autoencoder import (
    VAE,
    Autoencoder,
    build_conv_decoder,
    build_conv_encoder,
    vae_kl_divergence,
)
from tests.helpers import assert_keras_file_round_trip

SIZE = 16
LATENT = 4
SHAPE = (SIZE, SIZE, 3)


def images(count=8, seed=0):
    return np.random.RandomState(seed).uniform(-1, 1, (count, *SHAPE)).astype("float32")


def make_autoencoder(mode="plain", seed=0, noise_stddev=None, filters=(4, 8)):
    sparse = mode in ("l1", "kl")
    encoder = build_conv_encoder(SHAPE, LATENT, filters,
                                 latent_activation="sigmoid" if sparse else None)
    decoder = build_conv_decoder(LATENT, SHAPE, filters[::-1])
    return Autoencoder(
        encoder,
        decoder,
        noise_stddev=(0.2 if mode == "denoising" else 0.0) if noise_stddev is None else noise_stddev,
        sparsity=mode if sparse else None,
        sparsity_weight=0.1,
        sparsity_target=0.1,
        seed=seed,
    )


def make_vae(seed=0, beta=1.0, filters=(4, 8)):
    encoder = build_conv_encoder(SHAPE, LATENT, filters, variational=True)
    return VAE(encoder, build_conv_decoder(LATENT, SHAPE, filters[::-1]), beta=beta, seed=seed)


def snapshot(model):
    return [v.numpy().copy() for v in model.trainable_variables]


def assert_all_changed(model, before):
    unchanged = [
        v.path for v, old in zip(model.trainable_variables, before) if np.array_equal(v.numpy(), old)
    ]
    assert not unchanged, f"not updated by the step: {unchanged}"


def fit_one_step(model, data, **compile_kwargs):
    model.compile(**compile_kwargs)
    before = snapshot(model)
    history = model.fit(data, batch_size=4, epochs=1, steps_per_epoch=1, shuffle=False, verbose=0)
    return {k: v[-1] for k, v in history.history.items()}, before


# ---------------------------------------------------------------------------
# Builders and bad arguments
# ---------------------------------------------------------------------------


def test_builders_shapes_and_layer_names():
    encoder = build_conv_encoder((32, 32, 3), 16, (8, 16, 32), batch_norm=True, name="enc")
    decoder = build_conv_decoder(16, (32, 32, 3), (32, 16, 8), batch_norm=True, name="dec")
    variational = build_conv_encoder((32, 32, 3), 16, variational=True)
    assert encoder.output_shape == (None, 16)
    assert decoder.output_shape == (None, 32, 32, 3)
    assert variational.output_shape == [(None, 16), (None, 16)]
    assert all(layer.name.startswith("enc") for layer in encoder.layers)
    assert all(layer.name.startswith("dec") for layer in decoder.layers)
    out = decoder(np.random.normal(size=(2, 16)).astype("float32"))
    assert np.all(np.abs(out) <= 1.0)


@pytest.mark.parametrize(
    "build, match",
    [
        (lambda: build_conv_encoder((30, 30, 3), 8, (4, 8)), r"multiples of 4 \(4, 8, 16, 32"),
        (lambda: build_conv_decoder(8, (20, 20, 3), (8, 4, 4)), r"output_shape.*multiples of 8"),
        (lambda: build_conv_encoder(SHAPE, 0), r"latent_dim.*>= 1.*latent_dim=0"),
        (lambda: build_conv_decoder(-2, SHAPE), r"latent_dim.*>= 1"),
        (lambda: build_conv_encoder(SHAPE, 4, ()), r"filters"),
        (lambda: Autoencoder(*_pair(), noise_stddev=-0.1), r"noise_stddev.*>= 0.*-0.1"),
        (lambda: Autoencoder(*_pair(), sparsity="l2"), r"sparsity.*\['kl', 'l1'\].*'l2'"),
        (lambda: Autoencoder(*_pair(), sparsity="kl"), r"latent_activation='sigmoid'"),
        (lambda: Autoencoder(*_pair(), sparsity="kl", sparsity_target=1.0), r"sparsity_target"),
        (lambda: Autoencoder(build_conv_encoder(SHAPE, 4), build_conv_decoder(5, SHAPE)),
         r"decoder.*\[batch, 4\]"),
        (lambda: Autoencoder(build_conv_encoder(SHAPE, 4), build_conv_decoder(4, (32, 32, 3))),
         r"decoder.*\(16, 16, 3\)"),
        (lambda: VAE(*_pair()), r"z_mean, z_log_var"),
        (lambda: VAE(*_pair(variational=True), beta=0.0), r"beta.*> 0"),
        (lambda: Autoencoder("encoder", build_conv_decoder(4, SHAPE)), r"encoder.*keras.Model"),
        (lambda: make_vae(seed=-1), r"seed.*>= 0"),
    ],
)
def test_bad_arguments(build, match):
    with pytest.raises(ValueError, match=match):
        build()


def _pair(variational=False):
    return (build_conv_encoder(SHAPE, 4, (4, 8), variational=variational),
            build_conv_decoder(4, SHAPE, (8, 4)))


def test_data_of_the_wrong_shape_is_rejected_before_training():
    vae = make_vae()
    vae.compile()
    wrong = np.zeros((4, 32, 32, 3), "float32")
    with pytest.raises(ValueError, match=r"\[batch, 16, 16, 3\].*\(4, 32, 32, 3\)"):
        vae.fit(wrong, verbose=0)
    dataset = tf.data.Dataset.from_tensor_slices(wrong).batch(2)
    with pytest.raises(ValueError, match=r"\[batch, 16, 16, 3\]"):
        vae.fit(dataset, verbose=0)
    with pytest.raises(ValueError, match=r"unbatched"):
        vae.fit(tf.data.Dataset.from_tensor_slices(images(4)), verbose=0)
    with pytest.raises(ValueError, match=r"validation_data"):
        vae.fit(images(4), validation_data=wrong, verbose=0)
    with pytest.raises(ValueError, match=r"latents.*\[batch, 4\]"):
        vae.generate(latents=np.zeros((2, 3), "float32"))
    with pytest.raises(ValueError, match=r"num_images.*>= 1"):
        vae.generate(0)


# ---------------------------------------------------------------------------
# Train steps
# ---------------------------------------------------------------------------


# Execution modes: graph (the default path), XLA, and eager where the mode is
# not the point (tracing costs more than a tiny eager step). XLA and
# MirroredStrategy are exercised separately (they cannot run together on
# logical CPUs; tests/test_distribute.py runs the mirrored steps).
@pytest.mark.parametrize(
    "mode, execution",
    [("plain", "graph"), ("denoising", "xla"), ("l1", "eager"), ("kl", "eager")],
)
def test_autoencoder_fit_step(mode, execution):
    # One stage under XLA: compiling is what costs time on CPU.
    model = make_autoencoder(mode, filters=(4,) if execution == "xla" else (4, 8))
    model.compile(jit_compile=execution == "xla", run_eagerly=execution == "eager")
    before = snapshot(model)
    # Validation (the default test_step) once, on the cheapest variant.
    validation = images(4, seed=1) if mode == "plain" else None
    history = model.fit(images(), validation_data=validation, batch_size=4, epochs=1,
                        steps_per_epoch=1, verbose=0).history
    expected = {"loss", "reconstruction_loss"} | ({"sparsity_loss"} if mode in ("l1", "kl") else set())
    if validation is not None:
        expected |= {f"val_{name}" for name in expected}
    assert set(history) == expected
    assert all(np.isfinite(values[-1]) for values in history.values())
    assert_all_changed(model, before)
    assert int(model.optimizer.iterations) == 1


def test_vae_fit_step_jit_compiled():
    model = make_vae(filters=(4,))
    logs, before = fit_one_step(model, images(4), jit_compile=True)
    assert model.jit_compile is True
    assert set(logs) == {"loss", "reconstruction_loss", "kl_loss"}
    assert all(np.isfinite(value) for value in logs.values())
    assert_all_changed(model, before)
    np.testing.assert_allclose(logs["loss"], logs["reconstruction_loss"] + logs["kl_loss"], rtol=1e-5)


def test_vae_trains_under_mixed_float16_with_loss_scaling():
    keras.mixed_precision.set_global_policy("mixed_float16")
    model = make_vae()
    assert model.decoder.layers[2].compute_dtype == "float16"
    # A moderate initial scale: the default 2**15 overflows float16 gradients
    # on the first steps, which the optimizer then (correctly) skips.
    optimizer = keras.optimizers.LossScaleOptimizer(keras.optimizers.Adam(), initial_scale=2.0**4)
    logs, before = fit_one_step(model, images(), optimizer=optimizer, run_eagerly=True)
    assert all(np.isfinite(value) for value in logs.values())
    assert float(model.optimizer.dynamic_scale) == 2.0**4  # the step was finite, not skipped
    assert_all_changed(model, before)
    model.compile()  # a plain optimizer is wrapped for float16
    assert isinstance(model.optimizer, keras.optimizers.LossScaleOptimizer)


def test_noise_is_fresh_each_step():
    model = make_vae(seed=3)
    first = model._random_normal((2, LATENT)).numpy()
    second = model._random_normal((2, LATENT)).numpy()
    assert not np.allclose(first, second)


# ---------------------------------------------------------------------------
# Values against references computed another way
# ---------------------------------------------------------------------------


def test_vae_logged_loss_is_the_beta_weighted_sum_of_the_terms_means():
    vae = make_vae(beta=0.25)
    for reconstruction, kl in ((0.5, 4.0), (1.5, 8.0)):
        logs = vae._update_trackers({"loss": tf.constant(-100.0),
                                     "reconstruction_loss": tf.constant(reconstruction),
                                     "kl_loss": tf.constant(kl)})
    assert float(logs["loss"]) == 1.0 + 0.25 * 6.0
    assert vae.get_metrics_result()["loss"] == 1.0 + 0.25 * 6.0


def test_vae_kl_matches_numpy_closed_form():
    rng = np.random.RandomState(0)
    mean = rng.normal(size=(5, 3)).astype("float32")
    log_var = rng.normal(scale=0.5, size=(5, 3)).astype("float32")
    variance = np.exp(log_var.astype("float64"))
    # KL(N(m, s^2) || N(0, 1)) = log(1 / s) + (s^2 + m^2) / 2 - 1/2, per dimension.
    expected = np.sum(-0.5 * log_var + 0.5 * (variance + mean.astype("float64") ** 2) - 0.5, axis=-1)
    np.testing.assert_allclose(vae_kl_divergence(mean, log_var).numpy(), expected, rtol=1e-5)


def test_vae_losses_match_numpy():
    model = make_vae(seed=7, beta=2.0)
    x = images(4)
    losses = {k: float(v) for k, v in model.compute_losses(x, training=False).items()}
    z_mean, z_log_var = (t.numpy() for t in model.encoder(x))
    # The first draw of a fresh SeedGenerator with the trainer's seed is the
    # trainer's first reparameterisation noise.
    eps = keras.random.normal((4, LATENT), seed=keras.random.SeedGenerator(7)).numpy()
    z = z_mean + np.exp(0.5 * z_log_var) * eps
    reconstruction = np.mean(np.sum((model.decoder(z).numpy() - x) ** 2, axis=(1, 2, 3)))
    kl = np.mean(np.sum(-0.5 * (1 + z_log_var - z_mean**2 - np.exp(z_log_var)), axis=-1))
    np.testing.assert_allclose(losses["reconstruction_loss"], reconstruction, rtol=1e-4)
    np.testing.assert_allclose(losses["kl_loss"], kl, rtol=1e-4)
    np.testing.assert_allclose(losses["loss"], reconstruction + 2.0 * kl, rtol=1e-4)


def test_denoising_corrupts_the_input_and_targets_the_clean_image():
    model = make_autoencoder("denoising", seed=5)
    x = images(4)
    noisy_loss = float(model.compute_losses(x, training=True)["reconstruction_loss"])
    noise = keras.random.normal(x.shape, seed=keras.random.SeedGenerator(5)).numpy()
    expected = np.mean((model(x + 0.2 * noise).numpy() - x) ** 2)
    np.testing.assert_allclose(noisy_loss, expected, rtol=1e-5)
    clean_loss = float(model.compute_losses(x, training=False)["reconstruction_loss"])
    np.testing.assert_allclose(clean_loss, np.mean((model(x).numpy() - x) ** 2), rtol=1e-5)


@pytest.mark.parametrize("kind", ["l1", "kl"])
def test_sparsity_penalty_matches_numpy(kind):
    model = make_autoencoder(kind)
    x = images(6)
    latents = model.encoder(x).numpy().astype("float64")
    if kind == "l1":
        expected = np.mean(np.abs(latents))
    else:
        rho, rho_hat = 0.1, latents.mean(axis=0)
        expected = np.sum(rho * np.log(rho / rho_hat) + (1 - rho) * np.log((1 - rho) / (1 - rho_hat)))
    penalty = float(model.compute_losses(x, training=False)["sparsity_loss"])
    np.testing.assert_allclose(penalty, 0.1 * expected, rtol=1e-4)


# ---------------------------------------------------------------------------
# Save/load, export
# ---------------------------------------------------------------------------


@pytest.mark.parametrize("factory", [lambda: make_autoencoder("kl"), make_vae])
def test_keras_file_round_trip_restores_networks_and_optimizer(factory, tmp_path):
    model = factory()
    fit_one_step(model, images(), optimizer=keras.optimizers.Adam(3e-3), run_eagerly=True)
    restored = assert_keras_file_round_trip(model, images(4, seed=2), tmp_path / "model.keras")
    # JSON-normalised: the reloaded nested configs hold lists where the originals hold tuples.
    assert json.loads(json.dumps(restored.get_config())) == json.loads(json.dumps(model.get_config()))
    assert int(restored.optimizer.iterations) == 1
    assert restored.optimizer.get_config()["learning_rate"] == pytest.approx(3e-3)
    for saved, loaded in zip(model.optimizer.variables, restored.optimizer.variables):
        np.testing.assert_array_equal(saved.numpy(), loaded.numpy())


def test_export_decoder_and_autoencoder(tmp_path):
    vae = make_vae()
    path = export_generator(vae.decoder, str(tmp_path / "decoder"), LATENT)
    loaded = load_export(path)
    latents = np.random.RandomState(0).normal(size=(3, LATENT)).astype("float32")
    out = loaded.signatures["serving_default"](latents=tf.constant(latents))["images"]
    assert out.dtype == tf.uint8 and out.shape == (3, *SHAPE)
    expected = np.clip(np.round((vae.decode(latents).numpy() + 1) * 127.5), 0, 255)
    assert np.abs(out.numpy().astype(int) - expected).max() <= 1
    single = loaded.signatures["serving_default"](latents=tf.constant(latents[:1]))["images"]
    np.testing.assert_array_equal(single.numpy(), out.numpy()[:1])

    autoencoder = make_autoencoder()
    inputs = keras.Input(SHAPE)
    network = keras.Model(inputs, autoencoder.decoder(autoencoder.encoder(inputs)))
    loaded = load_export(export_autoencoder(network, str(tmp_path / "autoencoder")))
    pixels = np.random.RandomState(1).randint(0, 256, (2, *SHAPE)).astype("uint8")
    out = loaded.signatures["serving_default"](images=tf.constant(pixels))["reconstructions"]
    assert out.dtype == tf.uint8 and out.shape == pixels.shape
    expected = np.round((autoencoder(pixels / 127.5 - 1.0).numpy() + 1) * 127.5)
    assert np.abs(out.numpy().astype(int) - expected).max() <= 1
