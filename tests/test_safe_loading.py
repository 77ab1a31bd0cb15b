"""Safe loading: our models load in safe mode, unsafe or broken files are refused before loading.

`kerasvision.export.load_model` checks a `.keras` file (exists, complete zip,
readable config, no `Lambda` layer) and loads it with `safe_mode=True`;
`kerasvision.backbones.check_weights_file` checks a weights file before
anything loads it.
"""

import zipfile

import numpy as np
import pytest
import keras

from kerasvision.backbones import check_weights_file
from kerasvision.export import load_model
from kerasvision.models import autoencoder, classifier, gan
from kerasvision.models.unet import build_unet


def _images(shape, seed=0):
    return np.random.default_rng(seed).uniform(0, 255, (2, *shape)).astype("float32")


def _unet():
    return build_unet(3, (32, 32, 3), depth=1, filters=2), _images((32, 32, 3))


def _classifier():
    model = classifier.build_cnn_classifier(
        3, (16, 16, 3), filters=(2,), dense_units=(), dropout=0.0)
    return model, _images((16, 16, 3))


def _vae():
    shape = (8, 8, 3)
    model = autoencoder.VAE(
        autoencoder.build_conv_encoder(shape, 2, filters=(2,), variational=True),
        autoencoder.build_conv_decoder(2, shape, filters=(2,)),
        seed=0,
    )
    return model, _images(shape) / 127.5 - 1.0


def _wgan_gp():
    shape = (8, 8, 3)
    model = gan.WGANGP(gan.build_dcgan_generator(2, shape, filters=(2,)),
                       gan.build_dcgan_discriminator(shape, filters=(2,)), seed=0)
    model.compile()  # the optimizers' state is part of the file
    return model, np.random.default_rng(0).normal(size=(2, 2)).astype("float32")


@pytest.mark.parametrize("make", [_unet, _classifier, _vae, _wgan_gp],
                         ids=["unet", "cnn_classifier", "vae", "wgan_gp"])
def test_our_models_load_in_safe_mode(make, tmp_path):
    keras.utils.set_random_seed(0)
    model, inputs = make()
    expected = keras.ops.convert_to_numpy(model(inputs, training=False))
    path = tmp_path / "model.keras"
    model.save(path)

    for restored in (load_model(path), keras.saving.load_model(path, safe_mode=True)):
        assert type(restored) is type(model)
        np.testing.assert_allclose(
            keras.ops.convert_to_numpy(restored(inputs, training=False)), expected, atol=1e-5)


_MARKER_VARIABLE = "KERASVISION_TEST_LAMBDA_MARKER"


def _marker_lambda():
    """A Lambda layer whose Python lambda creates the file `$_MARKER_VARIABLE` names.

    A lambda, not a named function: Keras saves a lambda's bytecode in the
    file (a named function only by name), which is what lets loading such a
    file run arbitrary code. The path comes from the environment because a
    lambda's defaults and closures do not survive Keras' serialization.
    """
    return keras.layers.Lambda(
        lambda x: (open(__import__("os").environ["KERASVISION_TEST_LAMBDA_MARKER"], "a").close(),
                   x * 2.0)[1],
        name="double",
    )


@pytest.mark.parametrize("nested", [False, True], ids=["top-level", "inside-a-sub-model"])
def test_a_lambda_layer_is_refused_without_running_it(nested, tmp_path, monkeypatch):
    marker = tmp_path / "lambda_ran"
    monkeypatch.setenv(_MARKER_VARIABLE, str(marker))
    inputs = keras.Input((4,))
    model = keras.Model(inputs, _marker_lambda()(inputs), name="unsafe")
    if nested:
        outer_inputs = keras.Input((4,))
        model = keras.Model(outer_inputs, model(keras.layers.Dense(4)(outer_inputs)))
    path = tmp_path / "unsafe.keras"
    model.save(path)
    marker.unlink()  # written while the model was built: the lambda does run when called

    refused = r"`path` must hold a model without `Lambda` layers.*'double'"
    with pytest.raises(ValueError, match=refused):
        load_model(path)
    # Keras' own default refuses it as well (safe_mode=True by default).
    with pytest.raises(ValueError, match=r"Lambda"):
        keras.saving.load_model(path)
    assert not marker.exists(), "the Lambda's code ran while loading"
    # The check is meaningful: an unsafe load does run the file's code.
    keras.saving.load_model(path, safe_mode=False)
    assert marker.exists()


def test_a_keras_file_with_a_corrupt_config_is_refused(tmp_path):
    path = tmp_path / "corrupt.keras"
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr("config.json", "{ not json")
        archive.writestr("metadata.json", "{}")
    with pytest.raises(ValueError, match=r"`path` must be a readable `\.keras` archive, but its "
                                         r"config\.json is corrupt .*; "
                                         r"received path=.*corrupt\.keras"):
        load_model(path)


def test_a_zip_without_a_config_is_refused(tmp_path):
    path = tmp_path / "other.keras"
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr("model.weights.h5", b"")
    with pytest.raises(ValueError,
                       match=r"`path` must be a `\.keras` archive holding a config\.json; "
                             r"received path=.*other\.keras"):
        load_model(path)


@pytest.fixture
def weights_file(tmp_path):
    """A valid `.weights.h5` file of a small Dense model."""
    model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(3)])
    path = tmp_path / "model.weights.h5"
    model.save_weights(path)
    return path


def test_a_valid_weights_file_passes_the_check(weights_file):
    assert check_weights_file(str(weights_file)) == str(weights_file)


def test_a_text_file_named_like_weights_is_refused(tmp_path):
    path = tmp_path / "renamed.weights.h5"
    path.write_text("model: unet\nepochs: 10\n")
    with pytest.raises(ValueError, match=r"`weights` is not an HDF5 weights file .* does not "
                                         r"start with the HDF5 signature"):
        check_weights_file(str(path))


@pytest.mark.parametrize("keep", [0.5, 0.95], ids=["half", "last-bytes-missing"])
def test_a_truncated_weights_file_is_refused(weights_file, keep, tmp_path):
    complete = weights_file.read_bytes()
    path = tmp_path / "truncated.weights.h5"
    path.write_bytes(complete[: int(len(complete) * keep)])
    with pytest.raises(ValueError, match=r"`weights` must be a readable HDF5 weights file .*"
                                         r"truncated or corrupt"):
        check_weights_file(str(path))


def test_a_missing_weights_file_or_a_directory_is_refused(tmp_path):
    with pytest.raises(ValueError,
                       match=r"`weights` file does not exist: weights='.*missing\.weights\.h5'"):
        check_weights_file(str(tmp_path / "missing.weights.h5"))
    with pytest.raises(ValueError, match=r"`weights` must be a weights file, not a directory"):
        check_weights_file(str(tmp_path))
