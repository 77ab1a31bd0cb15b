import h5py
import numpy as np
import pytest
import keras
from keras.src.legacy.saving import legacy_h5_format

from kerasvision import backbones
from kerasvision.backbones import (
    BACKBONES,
    STRIDES,
    build_backbone,
    load_classifier_weights,
    resolve_weights,
    set_trainable_blocks,
)


@pytest.mark.parametrize("name", sorted(BACKBONES))
def test_every_registered_layer_exists_with_its_stride(name):
    spec = BACKBONES[name]
    application = spec.constructor(include_top=False, weights=None, input_shape=(64, 64, 3))
    layer_names = {layer.name for layer in application.layers}
    for key, layer in spec.feature_layers.items():
        assert layer in layer_names, f"{name}: {layer} missing"
        assert application.get_layer(layer).output.shape[1] == 64 // STRIDES[key]
    for block in spec.blocks:
        assert any(n.startswith(block + "_") for n in layer_names), block


@pytest.mark.parametrize("name", sorted(BACKBONES))
def test_backbone_returns_pyramid_and_preprocesses_raw_rgb(name):
    model = build_backbone(name, (64, 64, 3), weights=None)
    features = model(np.zeros((2, 64, 64, 3), "float32"))
    assert sorted(features) == ["P1", "P2", "P3", "P4", "P5"]
    for key, value in features.items():
        assert value.shape[:3] == (2, 64 // STRIDES[key], 64 // STRIDES[key])
    assert model.get_layer("preprocessing").mode == "caffe"


def _save_vgg_weights(path, include_top):
    """Writes random VGG16 weights in Keras 3 format, or in the legacy `.h5`
    layout of the published ImageNet files."""
    kwargs = {} if include_top else {"input_shape": (32, 32, 3)}
    source = keras.applications.VGG16(include_top=include_top, weights=None, **kwargs)
    if path.endswith(".weights.h5"):
        source.save_weights(path)
    else:
        with h5py.File(path, "w") as handle:
            legacy_h5_format.save_weights_to_hdf5_group(handle, source)
    return source


@pytest.mark.parametrize("suffix", [".weights.h5", ".h5"])
def test_weights_from_a_local_headless_file(tmp_path, suffix):
    path = str(tmp_path / f"vgg16_notop{suffix}")
    source = _save_vgg_weights(path, include_top=False)
    model = build_backbone("vgg16", (32, 32, 3), weights=path)
    features = model.get_layer("vgg16_features")
    np.testing.assert_array_equal(
        features.get_layer("block5_conv3").get_weights()[0],
        source.get_layer("block5_conv3").get_weights()[0],
    )
    assert load_classifier_weights("vgg16", path) is None


@pytest.mark.parametrize("suffix", [".weights.h5", ".h5"])
def test_weights_and_classifier_from_a_full_classifier_file(tmp_path, suffix):
    path = str(tmp_path / f"vgg16_full{suffix}")
    source = _save_vgg_weights(path, include_top=True)
    model = build_backbone("vgg16", (64, 64, 3), weights=path)
    np.testing.assert_array_equal(
        model.get_layer("vgg16_features").get_layer("block1_conv1").get_weights()[0],
        source.get_layer("block1_conv1").get_weights()[0],
    )
    (fc1_kernel, fc1_bias), (fc2_kernel, _) = load_classifier_weights("vgg16", path)
    assert fc1_kernel.shape == (25088, 4096) and fc2_kernel.shape == (4096, 4096)
    np.testing.assert_array_equal(fc1_bias, source.get_layer("fc1").get_weights()[1])


def test_missing_and_corrupt_weights_files_have_clear_errors(tmp_path):
    with pytest.raises(ValueError, match="does not exist"):
        build_backbone("vgg16", (32, 32, 3), weights=str(tmp_path / "absent.h5"))
    corrupt = tmp_path / "corrupt.weights.h5"
    corrupt.write_bytes(b"not an hdf5 file at all")
    with pytest.raises(ValueError, match="not an HDF5 weights file"):
        build_backbone("vgg16", (32, 32, 3), weights=str(corrupt))
    other = tmp_path / "resnet.weights.h5"
    keras.applications.ResNet50(include_top=False, weights=None, input_shape=(32, 32, 3)).save_weights(other)
    with pytest.raises(ValueError, match="does not hold `vgg16` weights"):
        build_backbone("vgg16", (32, 32, 3), weights=str(other))


def _offline_get_file(*args, **kwargs):
    raise Exception("URL fetch failure on https://example.invalid: no network")


def test_imagenet_offline_fails_at_the_first_attempt_naming_the_cache(monkeypatch, tmp_path):
    attempts = []

    def offline_get_file(*args, **kwargs):
        attempts.append(args)
        _offline_get_file()

    monkeypatch.setenv("KERAS_HOME", str(tmp_path))
    monkeypatch.setattr(keras.utils, "get_file", offline_get_file)
    monkeypatch.setattr("keras.src.applications.vgg16.file_utils.get_file", offline_get_file)
    with pytest.raises(RuntimeError) as error:
        build_backbone("vgg16", (32, 32, 3), weights="imagenet")
    assert len(attempts) == 1  # no retries
    message = str(error.value)
    assert str(tmp_path / "models") in message and "weights=" in message


def _no_download(*args, **kwargs):
    raise AssertionError("weights='auto' attempted a download")


def test_auto_offline_falls_back_to_random_without_a_download_attempt(monkeypatch, tmp_path):
    monkeypatch.setenv("KERAS_HOME", str(tmp_path))
    monkeypatch.setattr(backbones, "_weights_host_reachable", lambda: False)
    monkeypatch.setattr("keras.src.applications.vgg16.file_utils.get_file", _no_download)
    with pytest.warns(UserWarning, match="random initialisation"):
        assert resolve_weights("vgg16", "auto") is None


def test_auto_takes_a_cached_file_without_asking_the_network(monkeypatch, tmp_path):
    monkeypatch.setenv("KERAS_HOME", str(tmp_path))
    monkeypatch.setattr(backbones, "_weights_host_reachable", _no_download)
    (tmp_path / "models").mkdir()
    (tmp_path / "models" / backbones.BACKBONES["vgg16"].weight_files[1]).write_bytes(b"")
    assert resolve_weights("vgg16", "auto") == "imagenet"


def test_auto_downloads_when_the_weights_host_answers(monkeypatch, tmp_path):
    monkeypatch.setenv("KERAS_HOME", str(tmp_path))
    monkeypatch.setattr(backbones, "_weights_host_reachable", lambda: True)
    assert resolve_weights("vgg16", "auto") == "imagenet"


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"backbone": "vgg19"}, "backbone"),
        ({"input_shape": (32, 32, 1)}, "3 channels"),
        ({"input_shape": (16, 16, 3)}, ">= 32"),
        ({"weights": 3}, "weights"),
    ],
)
def test_bad_arguments(kwargs, match):
    arguments = {"backbone": "vgg16", "input_shape": (32, 32, 3), "weights": None, **kwargs}
    with pytest.raises(ValueError, match=match):
        build_backbone(**arguments)


def test_set_trainable_blocks_unfreezes_the_last_stages():
    model = build_backbone("resnet50", (32, 32, 3), weights=None)
    set_trainable_blocks(model, "resnet50", 1)
    inner = model.get_layer("resnet50_features")
    assert inner.get_layer("conv5_block3_2_conv").trainable
    assert not inner.get_layer("conv4_block6_2_conv").trainable
    assert not inner.get_layer("conv1_conv").trainable
    set_trainable_blocks(model, "resnet50", 0)
    assert not model.trainable_weights
    with pytest.raises(ValueError, match="from 0 to 5"):
        set_trainable_blocks(model, "resnet50", 6)


def test_cache_dir_follows_keras_home(monkeypatch, tmp_path):
    monkeypatch.setenv("KERAS_HOME", str(tmp_path))
    assert backbones.keras_home() == str(tmp_path)
    assert backbones.keras_cache_dir() == str(tmp_path / "models")
    assert backbones.kerasvision_cache_dir() == str(tmp_path / "kerasvision")


def test_random_backbones_use_he_initialisation():
    features = build_backbone("vgg16", (32, 32, 3), weights=None).get_layer("vgg16_features")
    kernel = features.get_layer("block4_conv2").get_weights()[0]
    fan_in = 3 * 3 * 512
    # He-normal: std sqrt(2 / fan_in). Glorot would give sqrt(1 / fan_in), a ratio of 0.71.
    assert abs(kernel.std() / np.sqrt(2.0 / fan_in) - 1.0) < 0.05


def test_fine_tuning_keeps_pretrained_batch_norm_frozen():
    model = build_backbone("resnet50", (32, 32, 3), weights=None)
    inner = model.get_layer("resnet50_features")
    set_trainable_blocks(model, "resnet50", 5)
    assert inner.get_layer("conv5_block3_2_conv").trainable
    assert not inner.get_layer("conv5_block3_2_bn").trainable
    set_trainable_blocks(model, "resnet50", 5, keep_batch_norm_frozen=False)
    assert inner.get_layer("conv5_block3_2_bn").trainable


def test_classifier_file_whose_dense_layers_do_not_fit_is_an_error(tmp_path):
    # fc1/fc2 present but sized for another input: the carry-over must not leave them random.
    inputs = keras.Input((2, 2, 512))
    hidden = keras.layers.Dense(8, name="fc1")(keras.layers.Flatten()(inputs))
    wrong = keras.Model(inputs, keras.layers.Dense(8, name="fc2")(hidden))
    path = str(tmp_path / "wrong_classifier.weights.h5")
    wrong.save_weights(path)
    with pytest.raises(ValueError, match="does not load into `vgg16`") as error:
        load_classifier_weights("vgg16", path)
    assert path in str(error.value)


def test_a_corrupt_cached_imagenet_file_is_an_error_naming_it(monkeypatch, tmp_path):
    monkeypatch.setenv("KERAS_HOME", str(tmp_path))
    monkeypatch.setattr(backbones, "_weights_host_reachable", _no_download)
    cached = tmp_path / "models" / backbones.BACKBONES["vgg16"].weight_files[1]
    cached.parent.mkdir()
    cached.write_bytes(b"\x89HDF\r\n\x1a\n" + b"cut short")
    with pytest.raises(ValueError, match="corrupt, truncated") as error:
        build_backbone("vgg16", (32, 32, 3), weights="auto")
    assert str(cached) in str(error.value) and "Delete it" in str(error.value)
