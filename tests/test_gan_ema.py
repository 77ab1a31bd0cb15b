"""The moving average of the GAN generator's weights (Yazici et al. 2019; Karras et al. 2018).

The average is `kerasvision.models.trainer.update_moving_average`, the code
the diffusion model's EMA runs too; these tests check it against a numpy
average of the generator's weights after each step, and that sampling,
`.keras` files and resume backups use and keep it.
"""

import json

import keras
import numpy as np
import pytest

from kerasvision.export import load_export
from kerasvision.models.gan import (
    GAN,
    WGANGP,
    build_dcgan_discriminator,
    build_dcgan_generator,
)
from kerasvision.models.trainer import check_ema_decay
from kerasvision.training import ResumableBackup
from recipes import dcgan
from tests.helpers import assert_keras_file_round_trip

SIZE = 16
LATENT = 8
SHAPE = (SIZE, SIZE, 3)


def images(count=12, seed=0):
    return np.random.RandomState(seed).uniform(-1, 1, (count, *SHAPE)).astype("float32")


def latents(count=3, seed=1):
    return np.random.RandomState(seed).normal(size=(count, LATENT)).astype("float32")


def make_gan(ema_decay=0.5, seed=0):
    return GAN(build_dcgan_generator(LATENT, SHAPE, (16, 8)),
               build_dcgan_discriminator(SHAPE, (8, 16)), seed=seed, ema_decay=ema_decay)


def make_wgangp(ema_decay=0.5, seed=0):
    return WGANGP(build_dcgan_generator(LATENT, SHAPE, (16, 8)),
                  build_dcgan_discriminator(SHAPE, (8, 16), normalization="layer"),
                  n_critic=2, seed=seed, ema_decay=ema_decay)


def fit(model, steps=2, callbacks=(), epochs=1):
    return model.fit(images(4 * steps), batch_size=4, epochs=epochs, shuffle=False, verbose=0,
                     callbacks=list(callbacks))


class RecordGenerator(keras.callbacks.Callback):
    """The generator's weights (BatchNorm statistics included) after each step."""

    def __init__(self):
        super().__init__()
        self.weights = []

    def on_train_batch_end(self, batch, logs=None):
        self.weights.append(self.model.generator.get_weights())


# XLA on the GAN (WGAN-GP's nested tapes take 10 s to compile); WGAN-GP for
# the warm-up counted in generator updates, its critic steps excluded.
@pytest.mark.parametrize("factory, jit_compile", [(make_gan, True), (make_wgangp, False)],
                         ids=["gan-jit", "wgangp"])
def test_ema_equals_a_numpy_average_of_the_generator_after_each_step(factory, jit_compile):
    keras.utils.set_random_seed(0)
    decay = 0.2  # the warm-up (2/11) rules the first step, the decay the next two
    model = factory(ema_decay=decay)
    model.compile(jit_compile=jit_compile)
    # The copy is invisible to the optimizers and starts equal to the generator.
    assert not model.ema_generator.trainable and model.ema_generator.name == "ema_generator"
    ema_ids = {id(v) for v in model.ema_generator.weights}
    assert not ema_ids & {id(v) for v in model.trainable_variables}
    assert len(model.g_optimizer.variables) == 2 + 2 * len(model.generator.trainable_variables)
    expected = [w.copy() for w in model.generator.get_weights()]
    for got, want in zip(model.ema_generator.get_weights(), expected):
        np.testing.assert_array_equal(got, want)

    recorder = RecordGenerator()
    fit(model, steps=3, callbacks=[recorder])
    assert len(recorder.weights) == 3 == int(model.g_optimizer.iterations)
    for n, weights in enumerate(recorder.weights, start=1):
        d = min(decay, (1 + n) / (10 + n))  # n generator updates (critic steps excluded)
        expected = [d * e + (1 - d) * w for e, w in zip(expected, weights)]
    for variable, want in zip(model.ema_generator.weights, expected):
        np.testing.assert_allclose(variable.numpy(), want, rtol=1e-5, atol=1e-6,
                                   err_msg=variable.path)
    # A real average: behind the last iterate.
    assert any(not np.allclose(e, w) for e, w in zip(expected, recorder.weights[-1]))
    np.testing.assert_allclose(float(model.current_ema_decay()), decay)


def test_zero_decay_keeps_no_copy_and_samples_with_the_generator():
    model = make_gan(ema_decay=0.0)
    assert model.ema_generator is None and model.sampling_generator is model.generator
    network_weights = model.generator.weights + model.discriminator.weights
    # The trainer's weights (what `.keras` files and backups hold) are the two networks'.
    assert sorted(id(v) for v in model.weights) == sorted(id(v) for v in network_weights)
    model.compile()
    fit(model, steps=1)
    z = latents()
    expected = model.generator(z, training=False).numpy()
    np.testing.assert_array_equal(model.generate(latents=z).numpy(), expected)
    np.testing.assert_array_equal(model(z).numpy(), expected)
    # A config written without `ema_decay` (before it existed) loads without an average.
    config = model.get_config()
    assert config["ema_decay"] == 0.0
    del config["ema_decay"]
    assert GAN.from_config(config).ema_generator is None


def test_generate_call_and_sampling_generator_use_the_ema_network():
    keras.utils.set_random_seed(0)
    model = make_gan(ema_decay=0.5)
    model.compile()
    fit(model, steps=2)
    assert model.sampling_generator is model.ema_generator
    z = latents()
    averaged = model.ema_generator(z, training=False).numpy()
    assert not np.allclose(averaged, model.generator(z, training=False).numpy())
    np.testing.assert_array_equal(model.generate(latents=z).numpy(), averaged)
    np.testing.assert_array_equal(model(z).numpy(), averaged)
    assert model.generate(5).shape == (5, *SHAPE)


def test_keras_file_round_trip_keeps_the_average_and_its_decay(tmp_path):
    keras.utils.set_random_seed(0)
    model = make_wgangp(ema_decay=0.75)
    model.compile()
    fit(model, steps=2)
    restored = assert_keras_file_round_trip(model, latents(), tmp_path / "gan.keras", atol=1e-6)
    assert restored.ema_decay == 0.75 and not restored.ema_generator.trainable
    assert json.loads(json.dumps(restored.get_config())) == json.loads(json.dumps(model.get_config()))
    for name in ("generator", "ema_generator"):
        for a, b in zip(getattr(model, name).weights, getattr(restored, name).weights):
            np.testing.assert_array_equal(a.numpy(), b.numpy(), err_msg=f"{name}: {a.path}")
    # Optimizer state reloads: the non-trainable copy adds no slots.
    assert int(restored.g_optimizer.iterations) == int(model.g_optimizer.iterations) == 2
    for a, b in zip(model.g_optimizer.variables, restored.g_optimizer.variables):
        np.testing.assert_array_equal(a.numpy(), b.numpy())


class _Interrupt(keras.callbacks.Callback):
    def on_epoch_begin(self, epoch, logs=None):
        if epoch == 1:
            raise RuntimeError("interrupted")


def test_resume_backup_restores_the_average(tmp_path):
    backup_dir = str(tmp_path / "backup")
    keras.utils.set_random_seed(0)
    model = make_gan(ema_decay=0.5)
    model.compile()
    with pytest.raises(RuntimeError, match="interrupted"):
        fit(model, steps=2, epochs=2, callbacks=[ResumableBackup(backup_dir), _Interrupt()])
    saved = model.ema_generator.get_weights()

    keras.utils.set_random_seed(1)  # other initial weights: only the backup can match
    resumed = make_gan(ema_decay=0.5)
    resumed.compile()
    assert any(not np.array_equal(a, b) for a, b in zip(resumed.ema_generator.get_weights(), saved))
    # The backup marks epoch 1 done, so this fit only restores.
    fit(resumed, steps=2, epochs=1, callbacks=[ResumableBackup(backup_dir)])
    assert int(resumed.g_optimizer.iterations) == 2
    for variable, want in zip(resumed.ema_generator.weights, saved):
        np.testing.assert_array_equal(variable.numpy(), want, err_msg=variable.path)


@pytest.mark.parametrize("value, shown", [(1.0, "1.0"), (-0.1, "-0.1"), (float("nan"), "nan")])
def test_invalid_ema_decay_is_rejected_by_name(value, shown):
    with pytest.raises(ValueError, match=rf"`ema_decay` must be in \[0, 1\).*received "
                                         rf"ema_decay={shown}"):
        make_gan(ema_decay=value)
    with pytest.raises(ValueError, match=r"`ema_decay` must be a number; received ema_decay='0.9'"):
        make_wgangp(ema_decay="0.9")
    with pytest.raises(ValueError, match=r"`--ema-decay` must be in \[0, 1\)"):
        check_ema_decay(value, name="--ema-decay")


def test_dcgan_recipe_exports_the_averaged_generator(tmp_path):
    summary = dcgan.main(["--smoke", "--latent-dim", "8", "--ema-decay", "0.5",
                          "--output-dir", str(tmp_path / "run"),
                          "--export-dir", str(tmp_path / "export")])
    model = keras.saving.load_model(tmp_path / "run" / "model.keras", safe_mode=True)
    assert model.ema_decay == 0.5
    # The SavedModel holds the average's weights, which differ from the last iterate's
    # (a smoke run's images are too alike to tell the two apart in uint8).
    exported = [v.numpy() for v in load_export(summary["export_path"]).variables]
    averaged, last = model.ema_generator.get_weights(), model.generator.get_weights()
    assert len(exported) == len(averaged)
    for got, want in zip(exported, averaged):
        np.testing.assert_array_equal(got, want)
    assert any(not np.allclose(a, b) for a, b in zip(averaged, last))
