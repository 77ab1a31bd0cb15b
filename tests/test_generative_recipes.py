"""Generative recipes run end to end with --smoke, and the shared generative task module."""

import importlib.util
import json
import os

import numpy as np
import pytest
import tensorflow as tf

from kerasvision import data
from kerasvision.export import load_export
from kerasvision.tasks import generative

RECIPES_DIR = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "recipes")


def load_recipe(name):
    spec = importlib.util.spec_from_file_location(f"recipe_{name}", os.path.join(RECIPES_DIR, f"{name}.py"))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def run_smoke(name, tmp_path, *flags):
    output_dir, export_dir = tmp_path / "run", tmp_path / "export"
    summary = load_recipe(name).main(
        ["--smoke", "--output-dir", str(output_dir), "--export-dir", str(export_dir), *flags]
    )
    for file in ("samples_epoch001.png", "samples.png", "history.csv", "history.png",
                 "model.keras", "summary.json"):
        assert (output_dir / file).exists(), file
    assert json.loads((output_dir / "summary.json").read_text())["export_path"] == summary["export_path"]
    assert all(np.isfinite(value) for key, value in summary.items() if key.endswith("loss"))
    return summary, load_export(summary["export_path"])


def check_generator_export(loaded, latent_dim, size=32):
    latents = np.random.RandomState(0).normal(size=(3, latent_dim)).astype("float32")
    out = loaded.signatures["serving_default"](latents=tf.constant(latents))["images"]
    assert out.dtype == tf.uint8 and out.shape == (3, size, size, 3)
    single = loaded.signatures["serving_default"](latents=tf.constant(latents[:1]))["images"]
    np.testing.assert_array_equal(single.numpy()[0], out.numpy()[0])


@pytest.mark.parametrize("mode", ["denoising", "sparse"])
def test_autoencoder_recipe_smoke(mode, tmp_path):
    _, loaded = run_smoke("autoencoder", tmp_path, "--mode", mode)
    pixels = np.random.RandomState(0).randint(0, 256, (2, 40, 40, 3)).astype("uint8")
    out = loaded.signatures["serving_default"](images=tf.constant(pixels))["reconstructions"]
    assert out.dtype == tf.uint8 and out.shape == (2, 40, 40, 3)  # any input size


def test_vae_recipe_smoke(tmp_path):
    summary, loaded = run_smoke("vae", tmp_path, "--latent-dim", "8")
    assert {"kl_loss", "reconstruction_loss", "val_kl_loss"} <= set(summary)
    assert os.path.exists(summary["prior_samples"])
    check_generator_export(loaded, 8)


def test_dcgan_recipe_smoke(tmp_path):
    summary, loaded = run_smoke("dcgan", tmp_path, "--latent-dim", "16")
    assert {"d_loss", "g_loss", "loss"} <= set(summary)
    check_generator_export(loaded, 16)
    seeded = loaded.signatures["serving_seed"](seed=tf.constant([0, 1]), num_images=tf.constant(2))
    assert seeded["images"].shape == (2, 32, 32, 3)


def test_wgan_gp_recipe_smoke(tmp_path):
    summary, loaded = run_smoke("wgan", tmp_path, "--gradient-penalty", "--n-critic", "2",
                                "--latent-dim", "16")
    assert "gradient_penalty" in summary
    check_generator_export(loaded, 16)


@pytest.mark.parametrize(
    "recipe, flags, match",
    [
        ("dcgan", ["--image-size", "30"], r"multiples of 8 \(8, 16, 32, 64"),
        ("vae", ["--latent-dim", "0"], r"latent_dim.*>= 1"),
        ("wgan", ["--n-critic", "0"], r"n_critic.*>= 1"),
        ("wgan", ["--clip-value", "0"], r"clip_value.*> 0"),
        ("autoencoder", ["--filters", "32,x"], r"--filters"),
        ("dcgan", ["--num-train", "4", "--batch-size", "8"], r"--num-train \(4\).*--batch-size"),
        ("vae", ["--dataset", "celeb_a", "--data-dir", "/nonexistent"], r"--dataset celeb_a"),
    ],
)
def test_recipes_reject_bad_flags(recipe, flags, match, tmp_path):
    argv = ["--output-dir", str(tmp_path / "run"), "--export-dir", str(tmp_path / "export"), *flags]
    with pytest.raises(ValueError, match=match):
        load_recipe(recipe).main(argv)


def test_generative_pipeline_crops_scales_and_keeps_batches_full():
    # A wide 0..255 ramp: centre crop then resize, scaled to [-1, 1].
    image = np.tile(np.linspace(0, 255, 40, dtype="float32")[None, :, None], (20, 1, 3))
    ds = tf.data.Dataset.from_tensor_slices((np.stack([image] * 5), np.arange(5)))
    batches = list(data.make_generative_pipeline(ds, 2, training=True, image_size=10, seed=0))
    assert len(batches) == 2 and all(b.shape == (2, 10, 10, 3) for b in batches)
    values = batches[0].numpy()
    assert values.min() >= -1.0 and values.max() <= 1.0
    # The central 20 columns of the ramp span about 64..191, i.e. about -0.5..0.5.
    assert -0.6 < values.min() < -0.4 and 0.4 < values.max() < 0.6
    with pytest.raises(ValueError, match=r"unbatched"):
        data.make_generative_pipeline(ds.batch(2), 2, training=False)


def test_sample_grid_callback_and_grids(tmp_path):
    with pytest.raises(ValueError, match=r"\{epoch\}"):
        generative.SampleGridCallback(lambda: None, str(tmp_path / "grid.png"))
    images = np.random.RandomState(0).uniform(-1, 1, (4, 8, 8, 3)).astype("float32")
    callback = generative.SampleGridCallback(lambda: images, str(tmp_path / "grid_{epoch:02d}.png"))
    callback.set_params({"epochs": 3})
    for epoch in range(3):
        callback.on_epoch_end(epoch)
    assert [os.path.basename(p) for p in callback.paths] == ["grid_01.png", "grid_02.png", "grid_03.png"]
    grid, rows = generative.reconstruction_grid(lambda x, training: -x, images, noise_stddev=0.1)
    assert rows == 3 and grid.shape == (12, 8, 8, 3)
    np.testing.assert_allclose(grid[:4], images)
    walk = generative.latent_walk(lambda z: z, latent_dim=2, num_rows=3, steps=5)
    assert walk.shape == (15, 2)
    # Evenly spaced points on each row's line.
    np.testing.assert_allclose(np.diff(walk.reshape(3, 5, 2), 2, axis=1), 0, atol=1e-6)


@pytest.fixture(scope="module")
def small_shapes_extractor(tmp_path_factory):
    from kerasvision.models.shapes_features import shapes_feature_extractor

    return shapes_feature_extractor(tmp_path_factory.mktemp("features"), image_size=16,
                                    num_images=4096, epochs=4, width=16)


def _real_shapes(count, split, size=16):
    from kerasvision.data import load_shapes_classification

    images = np.stack([x.numpy() for x, _ in load_shapes_classification(split, count, size)])
    return images / 127.5 - 1.0


def test_evaluate_samples_scores_real_images_near_the_floor_and_noise_far_above(
        small_shapes_extractor):
    heldout = _real_shapes(128, "validation")
    other_real = _real_shapes(64, "test")
    noise = np.random.default_rng(0).uniform(-1, 1, (64, 16, 16, 3)).astype("float32")
    as_generated = generative.evaluate_samples(lambda n: other_real[:n], heldout, 64,
                                               extractor=small_shapes_extractor)
    noisy = generative.evaluate_samples(lambda n: noise[:n], heldout, 64,
                                        extractor=small_shapes_extractor)
    assert as_generated["count"] == 64
    # Real images from another split score like the floor; noise far worse.
    assert as_generated["fid_ratio"] < 2.0
    assert noisy["fid_ratio"] > 5 * as_generated["fid_ratio"]
    assert noisy["fid"] == pytest.approx(noisy["fid_ratio"] * noisy["fid_floor"])
    # The share recognised is the share whose top softmax probability is >= 0.9, by hand:
    probabilities = tf.nn.softmax(small_shapes_extractor.classifier(
        tf.image.resize((other_real[:64] + 1) / 2, (16, 16))), axis=-1).numpy()
    expected = np.mean(probabilities.max(axis=-1) >= 0.9)
    assert as_generated["recognised_share"] == pytest.approx(expected, abs=1 / 64)
    with pytest.raises(ValueError, match="heldout_images"):
        generative.evaluate_samples(lambda n: noise[:n], heldout[:100], 64,
                                    extractor=small_shapes_extractor)


def test_generative_callbacks_stop_at_the_deadline(tmp_path):
    import keras

    inputs = keras.Input((3,))
    model = keras.Model(inputs, keras.layers.Dense(1)(inputs))
    model.compile("sgd", "mse")
    callbacks = generative.generative_callbacks(str(tmp_path), lambda: np.zeros((1, 8, 8, 3)),
                                                deadline=0.0)
    history = model.fit(np.ones((8, 3)), np.ones((8, 1)), batch_size=2, epochs=4,
                        callbacks=callbacks, verbose=0)
    assert len(history.history["loss"]) == 1 and model.optimizer.iterations.numpy() == 1
    assert len((tmp_path / "history.csv").read_text().strip().splitlines()) == 2


def _cosine_rates(peak, total_steps, warmup_fraction=0.03, decay_fraction=1.0):
    """The `WarmupCosineToBudget` rates at each step, from its closed form in numpy."""
    progress = np.arange(total_steps) / total_steps
    warm = peak * (progress + 1 / total_steps) / (warmup_fraction + 1 / total_steps)
    decay_start = max(warmup_fraction, 1 - decay_fraction)
    span = np.clip((progress - decay_start) / (1 - decay_start), 0.0, 1.0)
    return np.where(progress < warmup_fraction, warm, peak * 0.5 * (1 + np.cos(np.pi * span)))


def test_fit_generative_schedules_both_gan_optimizers_by_generator_steps(tmp_path, monkeypatch):
    import keras

    from kerasvision.models.gan import WGAN, build_dcgan_discriminator, build_dcgan_generator

    shape = (8, 8, 3)
    model = WGAN(build_dcgan_generator(4, shape, (8,)), build_dcgan_discriminator(shape, (8,)),
                 n_critic=3, seed=0)
    model.compile(keras.optimizers.RMSprop(1.0), keras.optimizers.RMSprop(1.0))
    images = np.random.default_rng(0).uniform(-1, 1, (40, *shape)).astype("float32")
    train = tf.data.Dataset.from_tensor_slices(images).batch(4, drop_remainder=True)
    rates = []
    record = keras.callbacks.LambdaCallback(on_train_batch_end=lambda batch, logs: rates.append(
        (float(model.g_optimizer.learning_rate), float(model.d_optimizer.learning_rate))))
    original = generative.generative_callbacks
    monkeypatch.setattr(generative, "generative_callbacks",
                        lambda *args, **kwargs: [*original(*args, **kwargs), record])
    history = generative.fit_generative(
        model, train, train.take(1), str(tmp_path), 2, lambda: images[:4], verbose=0,
        learning_rate=2e-3, decay_fraction=0.5)
    # 10 steps per epoch, 20 in all; the critic took 60 updates, which must not count.
    assert int(model.g_optimizer.iterations) == 20 and int(model.d_optimizer.iterations) == 60
    expected = _cosine_rates(2e-3, 20, decay_fraction=0.5)
    np.testing.assert_allclose(np.array(rates), np.stack([expected, expected], 1), rtol=1e-5)
    np.testing.assert_allclose(history["learning_rate"], expected[[9, 19]], rtol=1e-5)


def test_lr_schedule_constant_leaves_the_compiled_rates():
    recipe = load_recipe("dcgan")
    assert generative.schedule_settings(recipe.parse_args(["--lr-schedule", "constant"])) == {
        "learning_rate": None, "decay_fraction": None}
    cosine = generative.schedule_settings(recipe.parse_args(["--decay-fraction", "0.25"]))
    assert cosine == {"learning_rate": 2e-4, "decay_fraction": 0.25}
