import warnings

import h5py
import keras
import numpy as np
import pytest
from keras.src.legacy.saving import legacy_h5_format

from kerasvision import backbones
from kerasvision.backbones import (
    BACKBONES,
    IMAGENET_MEAN,
    IMAGENET_STD,
    LEVELS,
    STRIDES,
    _layer_stages,
    build_backbone,
    build_shapes_cnn,
    get_feature_layer,
    imagenet_weights_available,
    load_classifier_weights,
    resolve_weights,
    set_trainable_blocks,
)
from kerasvision.layers import ImagePreprocessing

HEAVY_BACKBONES = ("inceptionv3", "resnet101", "resnet152", "vgg19")
# Level sizes of InceptionV3 at 96 px: unpadded stem and reductions.
INCEPTION_SIZES_AT_96 = {"P1": 45, "P2": 20, "P3": 9, "P4": 4, "P5": 1}


def _size(name):
    return 96 if name == "inceptionv3" else 64


def _every_backbone(default=None):
    """All registered backbones; those outside `default` (by default, the heavy
    ones, 5-10 s to build here) run as slow."""
    def slow(name):
        return name in HEAVY_BACKBONES if default is None else name not in default

    return [
        pytest.param(name, marks=(pytest.mark.slow,) if slow(name) else ())
        for name in sorted(BACKBONES)
    ]


def _expected_size(name, key):
    if BACKBONES[name].exact_strides:
        return _size(name) // STRIDES[key]
    return INCEPTION_SIZES_AT_96[key]


@pytest.mark.parametrize("name", _every_backbone())
def test_every_registered_layer_exists_with_its_stride(name):
    spec = BACKBONES[name]
    size = _size(name)
    application = spec.constructor(include_top=False, weights=None, input_shape=(size, size, 3))
    layer_names = {layer.name for layer in application.layers}
    assert sorted(spec.feature_layers) == list(LEVELS) and len(spec.blocks) == len(LEVELS)
    for key, layer in spec.feature_layers.items():
        if isinstance(layer, int):  # unnamed: an index into the layer list
            assert 0 < layer < len(application.layers), f"{name}: {key} index {layer}"
        else:
            assert layer in layer_names, f"{name}: {layer} missing"
        assert get_feature_layer(application, name, key).output.shape[1] == _expected_size(name, key)
    # Stages end at the levels: P5 is the network's last layer, nothing is left out.
    assert get_feature_layer(application, name, "P5") is application.layers[-1]


@pytest.mark.parametrize("name", _every_backbone(default=()))
def test_stages_are_the_layers_each_level_depends_on(name):
    # set_trainable_blocks reads stages off the layer order; check them
    # against the graph: stage <= n is exactly what level P(n+1) is computed from.
    model = build_backbone(name, (_size(name),) * 2 + (3,), weights=None)
    features = model.get_layer(f"{name}_features")
    stages = {layer.name: stage for layer, stage in _layer_stages(features)}
    assert len(stages) == len(features.layers) - 1  # every layer but the input
    for level, key in enumerate(LEVELS):
        ancestors = keras.Model(features.input, features.output[key]).layers
        assert {layer.name for layer in ancestors[1:]} == {
            layer_name for layer_name, stage in stages.items() if stage <= level
        }, f"{name}: stage of {key}"


@pytest.mark.parametrize("name", _every_backbone(
    default=("efficientnetb0", "resnet50", "shapes_cnn", "vgg16")))
def test_backbone_returns_pyramid_and_preprocesses_raw_rgb(name):
    size = _size(name)
    model = build_backbone(name, (size, size, 3), weights=None)
    features = model(np.zeros((2, size, size, 3), "float32"))
    assert sorted(features) == ["P1", "P2", "P3", "P4", "P5"]
    for key, value in features.items():
        expected = _expected_size(name, key)
        assert value.shape[:3] == (2, expected, expected)
    if BACKBONES[name].preprocessing is None:
        assert "preprocessing" not in {layer.name for layer in model.layers}
    else:
        assert model.get_layer("preprocessing").mode == BACKBONES[name].preprocessing


# The module whose `preprocess_input` each backbone reproduces.
PREPROCESS_MODULES = {
    "vgg16": keras.applications.vgg16,
    "vgg19": keras.applications.vgg19,
    "resnet50": keras.applications.resnet,
    "resnet101": keras.applications.resnet,
    "resnet152": keras.applications.resnet,
    "inceptionv3": keras.applications.inception_v3,
    "mobilenetv2": keras.applications.mobilenet_v2,
    "efficientnetb0": keras.applications.efficientnet,
    # Ours: scaled to [-1, 1], which is MobileNetV2's preprocess_input.
    "shapes_cnn": keras.applications.mobilenet_v2,
}


def test_every_backbone_has_its_preprocess_input_reference():
    assert sorted(PREPROCESS_MODULES) == sorted(BACKBONES)


@pytest.mark.parametrize("name", sorted(PREPROCESS_MODULES))
def test_preprocessing_matches_keras_applications_preprocess_input(name):
    images = np.random.default_rng(0).uniform(0, 255, (2, 8, 8, 3)).astype("float32")
    expected = PREPROCESS_MODULES[name].preprocess_input(images.copy())
    mode = BACKBONES[name].preprocessing
    if mode is None:
        # EfficientNet normalises inside the network; its preprocess_input is the identity.
        np.testing.assert_array_equal(expected, images)
        return
    actual = keras.ops.convert_to_numpy(ImagePreprocessing(mode)(images))
    np.testing.assert_allclose(actual, expected, rtol=1e-6, atol=1e-4)


def _normalized_input(model):
    """What EfficientNet's stem convolution sees (after its own normalisation), as numpy."""
    features = model.get_layer("efficientnetb0_features")
    probe = keras.Model(features.input, features.get_layer("stem_conv_pad").input)
    return lambda images: keras.ops.convert_to_numpy(probe(images))


def _torch_normalization(images):
    return (images / 255.0 - np.array(IMAGENET_MEAN)) / np.array(IMAGENET_STD)


def test_efficientnet_random_weights_normalise_like_imagenet():
    images = np.random.default_rng(1).uniform(0, 255, (2, 32, 32, 3)).astype("float32")
    model = build_backbone("efficientnetb0", (32, 32, 3), weights=None)
    np.testing.assert_allclose(_normalized_input(model)(images), _torch_normalization(images),
                               rtol=1e-5, atol=1e-5)


@pytest.mark.slow
def test_efficientnet_normalisation_and_stages_survive_a_round_trip(tmp_path):
    # The statistics are variables: a saved model keeps them, and its stages
    # are still found after reloading.
    images = np.random.default_rng(1).uniform(0, 255, (2, 32, 32, 3)).astype("float32")
    model = build_backbone("efficientnetb0", (32, 32, 3), weights=None)
    model.save(tmp_path / "efficientnet.keras")
    restored = keras.saving.load_model(tmp_path / "efficientnet.keras", safe_mode=True)
    np.testing.assert_allclose(_normalized_input(restored)(images), _torch_normalization(images),
                               rtol=1e-5, atol=1e-5)
    set_trainable_blocks(restored, "efficientnetb0", 1)
    inner = restored.get_layer("efficientnetb0_features")
    assert inner.get_layer("top_conv").trainable and not inner.get_layer("stem_conv").trainable


def _save_efficientnet_like_the_published_file(path):
    """Random EfficientNetB0 weights in the legacy `.h5` layout of the ImageNet file,
    whose Normalization layer holds the standard deviation as its "variance"."""
    source = keras.applications.EfficientNetB0(include_top=False, weights=None, input_shape=(32, 32, 3))
    normalization = next(l for l in source.layers if isinstance(l, keras.layers.Normalization))
    normalization.set_weights([np.array(IMAGENET_MEAN), np.array(IMAGENET_STD), np.array(0)])
    with h5py.File(path, "w") as handle:
        legacy_h5_format.save_weights_to_hdf5_group(handle, source)
    return source


@pytest.mark.slow
def test_efficientnet_imagenet_and_path_policies_agree(monkeypatch, tmp_path):
    # Keras loads the ImageNet file with an extra Rescaling that corrects its
    # std-as-variance; loaded from a path, kerasvision sets the statistics
    # instead. Same file, same features, both normalising like ImageNet.
    path = str(tmp_path / "efficientnetb0_notop.h5")
    source = _save_efficientnet_like_the_published_file(path)
    monkeypatch.setattr(
        "keras.src.applications.efficientnet.file_utils.get_file", lambda *args, **kwargs: path
    )
    from_imagenet = build_backbone("efficientnetb0", (32, 32, 3), weights="imagenet")
    from_path = build_backbone("efficientnetb0", (32, 32, 3), weights=path)
    images = np.random.default_rng(2).uniform(0, 255, (2, 32, 32, 3)).astype("float32")
    for model in (from_imagenet, from_path):
        np.testing.assert_allclose(_normalized_input(model)(images), _torch_normalization(images),
                                   rtol=1e-5, atol=1e-5)
    np.testing.assert_array_equal(
        from_path.get_layer("efficientnetb0_features").get_layer("block7a_project_conv").get_weights()[0],
        source.get_layer("block7a_project_conv").get_weights()[0],
    )
    for key, value in from_imagenet(images).items():
        np.testing.assert_allclose(value, from_path(images)[key], rtol=1e-4, atol=1e-4)


def _save_application_weights(name, path, include_top, input_shape=(64, 64, 3)):
    """Writes random weights of a registered backbone's application, headless or whole."""
    kwargs = {} if include_top else {"input_shape": input_shape}
    source = BACKBONES[name].constructor(include_top=include_top, weights=None, **kwargs)
    if path.endswith(".weights.h5"):
        source.save_weights(path)
    else:
        with h5py.File(path, "w") as handle:
            legacy_h5_format.save_weights_to_hdf5_group(handle, source)
    return source


def _weighted_layers(model):
    return [layer for layer in model.layers if layer.weights and not isinstance(layer, keras.layers.Dense)]


def _weights_file_cases():
    # Default run: MobileNetV2's classifier file (the pairing in order); the
    # rest, 5-20 s each here, run as slow.
    for name in sorted(BACKBONES):
        for include_top in (False, True):
            default = (name, include_top) == ("mobilenetv2", True)
            yield pytest.param(
                name, include_top, marks=() if default else (pytest.mark.slow,),
                id=f"{'classifier' if include_top else 'headless'}-{name}",
            )


@pytest.mark.parametrize("name, include_top", _weights_file_cases())
def test_weights_from_a_file_of_each_backbone(tmp_path, name, include_top):
    # Headless files in Keras 3 format, whole classifiers in the legacy
    # layout of the published files; layers paired in order, since
    # InceptionV3's generated names differ between two builds.
    suffix = ".h5" if include_top else ".weights.h5"
    path = str(tmp_path / f"{name}{suffix}")
    size = _size(name)
    source = _save_application_weights(name, path, include_top, (size, size, 3))
    model = build_backbone(name, (size, size, 3), weights=path)
    loaded = _weighted_layers(model.get_layer(f"{name}_features"))
    expected = _weighted_layers(source)
    assert len(loaded) == len(expected)
    for index in (0, len(loaded) // 2, len(loaded) - 1):
        for actual, wanted in zip(loaded[index].get_weights(), expected[index].get_weights()):
            if BACKBONES[name].preprocessing is None and index == 0:
                continue  # EfficientNet's normalisation is set, not loaded
            np.testing.assert_array_equal(actual, wanted)


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


@pytest.mark.parametrize("suffix", [".weights.h5", pytest.param(".h5", marks=pytest.mark.slow)])
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
    raise Exception("URL fetch failure on https://example.invalid: no network")  # noqa: TRY002 (as Keras does)


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
        ({"backbone": "vgg11"}, "backbone"),
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


@pytest.mark.parametrize(
    "name, pairs",
    [
        ("mobilenetv2", [("block_13_depthwise", "block_13_expand")]),
        ("efficientnetb0", [("block6a_dwconv", "block6a_expand_conv"),
                            ("top_conv", "block5c_project_conv")]),
    ],
)
def test_set_trainable_blocks_splits_stages_at_the_levels(name, pairs):
    # The last stage starts after P4 (an expansion): the rest of that block trains with it.
    model = build_backbone(name, (32, 32, 3), weights=None)
    inner = model.get_layer(f"{name}_features")
    set_trainable_blocks(model, name, 1)
    for last_stage_layer, earlier_layer in pairs:
        assert inner.get_layer(last_stage_layer).trainable
        assert not inner.get_layer(earlier_layer).trainable
    set_trainable_blocks(model, name, 5, keep_batch_norm_frozen=False)
    assert all(layer.trainable for layer in inner.layers)


def test_inception_needs_75_pixels_and_a_fixed_size_to_resize():
    with pytest.raises(ValueError, match=r">= 75 for backbone='inceptionv3'"):
        build_backbone("inceptionv3", (64, 64, 3), weights=None)
    with pytest.raises(ValueError, match="fixed height and width"):
        build_backbone("inceptionv3", (None, None, 3), weights=None, resize_to_strides=True)


@pytest.mark.slow
def test_inception_maps_resize_to_the_nominal_strides():
    model = build_backbone("inceptionv3", (96, 96, 3), weights=None, resize_to_strides=True)
    features = model(np.zeros((1, 96, 96, 3), "float32"))
    assert {key: value.shape[1:3] for key, value in features.items()} == {
        key: (96 // STRIDES[key],) * 2 for key in LEVELS
    }
    truncated = build_backbone("inceptionv3", (96, 96, 3), weights=None, max_level="P4")
    assert sorted(truncated.output) == ["P1", "P2", "P3", "P4"]
    assert "mixed10" not in {layer.name for layer in truncated.get_layer("inceptionv3_features").layers}


def test_mobilenet_v2_takes_the_224_pixel_imagenet_file_at_any_size(monkeypatch, tmp_path):
    path = str(tmp_path / "mobilenet_notop.h5")
    source = _save_application_weights("mobilenetv2", path, include_top=False)
    requested = []

    def cached_get_file(file_name, *args, **kwargs):
        requested.append(file_name)
        return path

    monkeypatch.setattr(keras.utils, "get_file", cached_get_file)
    model = build_backbone("mobilenetv2", (96, 96, 3), weights="imagenet")
    assert requested == [BACKBONES["mobilenetv2"].weight_files[1]]
    assert requested[0].endswith("_1.0_224_no_top.h5")
    np.testing.assert_array_equal(
        model.get_layer("mobilenetv2_features").get_layer("Conv_1").get_weights()[0],
        source.get_layer("Conv_1").get_weights()[0],
    )


# --- shapes_cnn: the small backbone that learns from random weights ----------------

SHAPES_CNN_WIDTHS = (32, 64, 128, 256, 256)


@pytest.mark.parametrize("size", [32, 64])
def test_shapes_cnn_levels_halve_the_side_at_each_stage(size):
    model = build_backbone("shapes_cnn", (size, size, 3), weights=None)
    features = model(np.zeros((2, size, size, 3), "float32"))
    for n, (key, width) in enumerate(zip(LEVELS, SHAPES_CNN_WIDTHS), start=1):
        assert tuple(features[key].shape) == (2, size // 2**n, size // 2**n, width), key
    inner = model.get_layer("shapes_cnn_features")
    for n in range(1, 6):
        for name in (f"stage{n}_conv1", f"stage{n}_bn2", f"stage{n}_relu2", f"stage{n}_pool"):
            inner.get_layer(name)  # raises when missing
    assert not inner.get_layer("stage3_conv1").use_bias  # BatchNorm's offset replaces it


def test_shapes_cnn_parameter_count_follows_from_its_widths():
    # By hand: two 3x3 convolutions per stage without bias (9 * c_in * c_out
    # each) and a BatchNorm after each (gamma, beta, moving mean and variance:
    # 4 per channel, 2 of them not trained).
    convolutions, batch_norm, c_in = 0, 0, 3
    for width in SHAPES_CNN_WIDTHS:
        convolutions += 9 * c_in * width + 9 * width * width
        batch_norm += 2 * 4 * width
        c_in = width
    assert convolutions + batch_norm == 2_356_832
    application = build_shapes_cnn(include_top=False, input_shape=(32, 32, 3))
    assert application.count_params() == 2_356_832
    non_trainable = sum(int(np.prod(w.shape)) for w in application.non_trainable_weights)
    assert non_trainable == batch_norm // 2
    with_top = build_shapes_cnn(include_top=True, classes=10)
    assert with_top.count_params() == 2_356_832 + 256 * 10 + 10


def test_shapes_cnn_has_no_imagenet_weights():
    match = (r"`weights`='imagenet' is not available for backbone='shapes_cnn': it has no "
             r"ImageNet weights\. Pass weights=None .*; received weights='imagenet'")
    for call in (lambda: build_backbone("shapes_cnn", (32, 32, 3), weights="imagenet"),
                 lambda: build_shapes_cnn(include_top=False, weights="imagenet"),
                 lambda: resolve_weights("shapes_cnn", "imagenet")):
        with pytest.raises(ValueError, match=match):
            call()


def test_shapes_cnn_auto_is_random_without_looking_for_files_or_the_network(monkeypatch):
    monkeypatch.setattr(backbones, "_weights_host_reachable", _no_download)
    monkeypatch.setattr(backbones, "keras_cache_dir", _no_download)
    monkeypatch.setattr(backbones.os.path, "exists", _no_download)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no "training from random initialisation" warning
        assert resolve_weights("shapes_cnn", "auto") is None
        assert imagenet_weights_available("shapes_cnn") is False


@pytest.mark.parametrize("include_top, suffix", [(False, ".weights.h5"), (True, ".h5")],
                         ids=["headless", "classifier"])
def test_shapes_cnn_weights_file_round_trip(tmp_path, include_top, suffix):
    # A trained-looking network (BatchNorm statistics not 0/1) saved to a
    # file; built from it, the backbone's P5 equals the saved network's
    # output on images scaled to [-1, 1] by hand.
    rng = np.random.default_rng(3)
    path = str(tmp_path / f"shapes_cnn{suffix}")
    source = build_shapes_cnn(include_top=include_top, input_shape=(32, 32, 3))
    for layer in source.layers:
        if isinstance(layer, keras.layers.BatchNormalization):
            layer.set_weights([rng.uniform(0.5, 2.0, w.shape).astype("float32")
                               for w in layer.get_weights()])
    _rewrite(source, path)
    model = build_backbone("shapes_cnn", (32, 32, 3), weights=path)
    images = rng.uniform(0, 255, (2, 32, 32, 3)).astype("float32")
    headless = keras.Model(source.input, source.get_layer("stage5_pool").output)
    expected = keras.ops.convert_to_numpy(headless(images / 127.5 - 1.0, training=False))
    got = keras.ops.convert_to_numpy(model(images, training=False)["P5"])
    np.testing.assert_allclose(got, expected, rtol=1e-4, atol=1e-4)


def _rewrite(model, path):
    if path.endswith(".weights.h5"):
        model.save_weights(path)
    else:
        with h5py.File(path, "w") as handle:
            legacy_h5_format.save_weights_to_hdf5_group(handle, model)
