"""The offline transfer demo: presence scenes, saved backbones, source pretraining, its flags."""

import importlib
import json
import os
import re
import warnings

import numpy as np
import pytest

from kerasvision import backbones
from kerasvision.data.shapes import (
    SHAPES_CLASSIFICATION_NAMES,
    load_shapes_presence,
    make_shapes_presence,
    make_shapes_scenes,
)
from kerasvision.models.classifier import (
    build_transfer_classifier,
    save_backbone_weights,
    set_batch_norm_momentum,
)
from kerasvision.tasks.cli import run

# --- The source dataset ------------------------------------------------------------


def test_presence_labels_are_the_shapes_visible_in_the_scene_mask():
    images, presence = make_shapes_presence(24, image_size=32, max_objects=3, min_pixels=8)
    scenes, masks = make_shapes_scenes(24, image_size=32, max_objects=3, min_scale=0.25,
                                       max_scale=0.5)
    np.testing.assert_array_equal(images, scenes)  # the scenes themselves, unchanged
    assert presence.shape == (24, len(SHAPES_CLASSIFICATION_NAMES))
    assert presence.dtype == np.float32
    # Reference by hand: per image and shape, count the mask's pixels of that class.
    for index in range(24):
        for label in range(4):
            visible = sum(int(pixel == label + 1) for pixel in masks[index].ravel())
            assert presence[index, label] == float(visible >= 8)
    assert presence.sum(axis=1).min() >= 1  # every scene shows at least one shape


def test_presence_dataset_is_a_prefix_and_splits_differ():
    small = np.stack([x.numpy() for x, _ in load_shapes_presence("train", 4, 32)])
    large, _ = make_shapes_presence(8, 32)
    np.testing.assert_array_equal(small, large[:4])
    other, _ = make_shapes_presence(4, 32, split="validation")
    assert not np.array_equal(other, large[:4])


# --- Saved backbones --------------------------------------------------------------


# resnet50 (slow run): BatchNorm, which `build_backbone` fuses and Keras would
# otherwise save under the fused class's name, unreadable by the plain network.
@pytest.mark.parametrize("backbone", ["vgg16", "shapes_cnn",
                                      pytest.param("resnet50", marks=pytest.mark.slow)])
def test_saved_backbone_loads_through_the_weights_path(backbone, tmp_path):
    source = build_transfer_classifier(backbone, 4, (32, 32, 3), weights=None)
    # Trained-looking BatchNorm state (not the initial 0/1), so that a file
    # missing it would not load as the same network by chance.
    rng = np.random.default_rng(1)
    for layer in source.get_layer("backbone").get_layer(f"{backbone}_features").layers:
        if hasattr(layer, "moving_variance"):
            layer.set_weights([rng.uniform(0.5, 2.0, w.shape).astype("float32")
                               for w in layer.get_weights()])
    path = save_backbone_weights(source, backbone, str(tmp_path / "source.weights.h5"))
    # The user's path: a file given as `weights` to a new model with another head.
    target = build_transfer_classifier(backbone, 3, (32, 32, 3), weights=path)
    images = np.random.default_rng(0).uniform(0, 255, (2, 32, 32, 3)).astype("float32")
    expected = source.get_layer("backbone")(images, training=False)["P5"]
    got = target.get_layer("backbone")(images, training=False)["P5"]
    np.testing.assert_allclose(np.asarray(got), np.asarray(expected), rtol=1e-5, atol=1e-5)
    # A pretrained backbone: BatchNorm stays frozen in the new model.
    frozen = [layer.trainable for layer in target.get_layer("backbone").get_layer(
        f"{backbone}_features").layers if layer.__class__.__name__.endswith("Normalization")]
    assert not any(frozen)


def test_save_backbone_weights_rejects_a_bad_path_and_a_model_without_backbone(tmp_path):
    model = build_transfer_classifier("vgg16", 4, (32, 32, 3), weights=None)
    with pytest.raises(ValueError, match=r"`path` must end in '\.weights\.h5'; received path="):
        save_backbone_weights(model, "vgg16", str(tmp_path / "source.h5"))
    with pytest.raises(ValueError, match=r"'resnet50_features'.*received model 'vgg16_classifier'"):
        save_backbone_weights(model, "resnet50", str(tmp_path / "source.weights.h5"))


def test_set_batch_norm_momentum_reaches_nested_layers():
    model = build_transfer_classifier("resnet50", 4, (32, 32, 3), weights=None)
    changed = set_batch_norm_momentum(model, 0.9)
    assert changed == 53  # ResNet50's BatchNorm layers, inside two nested models
    features = model.get_layer("backbone").get_layer("resnet50_features")
    assert {layer.momentum for layer in features.layers if hasattr(layer, "moving_mean")} == {0.9}
    with pytest.raises(ValueError, match=r"`momentum` must be <= 0.999; received momentum=1.5"):
        set_batch_norm_momentum(model, 1.5)


# --- The recipe -------------------------------------------------------------------


def _recipe():
    return importlib.import_module("recipes.transfer_classifier")


@pytest.fixture
def offline(monkeypatch, tmp_path):
    """No ImageNet file and no network: `weights="auto"` resolves to None."""
    monkeypatch.setenv("KERAS_HOME", str(tmp_path / "keras_home"))
    monkeypatch.setattr(backbones, "_weights_host_reachable", lambda timeout=3.0: False)


def test_offline_recipe_pretrains_a_source_and_compares_with_random_weights(offline, tmp_path,
                                                                            capsys):
    # The default backbone: offline, --backbone auto takes shapes_cnn.
    output_dir, export_dir = str(tmp_path / "run"), str(tmp_path / "export")
    summary = _recipe().main(["--smoke", "--output-dir", output_dir, "--export-dir", export_dir])
    out = capsys.readouterr().out
    assert "backbone: shapes_cnn (--backbone auto: no ImageNet weights of resnet50" in out
    assert "shapes_cnn_classifier" in out
    source_file = os.path.join(output_dir, "source", "backbone.weights.h5")
    assert os.path.exists(source_file)
    # The transferred run took the two-phase path of a pretrained backbone.
    assert list(summary["accuracy_after_phase"]) == ["feature_extraction", "fine_tuning"]
    assert summary["source"]["task"] == "shapes_presence"
    assert 0.0 <= summary["without_transfer"]["accuracy"] <= 1.0
    assert os.path.exists(os.path.join(export_dir, "1", "saved_model.pb"))
    with open(os.path.join(output_dir, "summary.json")) as handle:
        written = json.load(handle)
    assert written["without_transfer"]["accuracy"] == summary["without_transfer"]["accuracy"]
    assert written["source"]["val_accuracy"]  # the source's per-epoch validation


def test_source_pretraining_only_when_auto_finds_no_weights():
    from kerasvision.tasks.transfer_demo import wants_source_pretraining

    args = _recipe().parse_args([])
    assert wants_source_pretraining(args, None)
    assert not wants_source_pretraining(args, "imagenet")
    for flags in (["--weights", "none"], ["--source-pretraining", "off"],
                  ["--dataset", "mnist"]):
        assert not wants_source_pretraining(_recipe().parse_args(flags), None), flags


BAD_FLAGS = [
    pytest.param(["--source-pretraining", "always"],
                 r"--source-pretraining must be one of \['auto', 'off'\]; received 'always'",
                 id="unknown-source-pretraining"),
    pytest.param(["--source-images", "0"], r"--source-images must be >= 1; received 0",
                 id="zero-source-images"),
    pytest.param(["--source-epochs", "0"], r"--source-epochs must be >= 1; received 0",
                 id="zero-source-epochs"),
    pytest.param(["--source-learning-rate", "nan"],
                 r"--source-learning-rate must be > 0; received nan",
                 id="nan-source-learning-rate"),
    pytest.param(["--source-minutes", "-1"],
                 r"--source-minutes must be >= 0 \(0: no limit\); received -1.0",
                 id="negative-source-minutes"),
]


@pytest.mark.parametrize("argv, match", BAD_FLAGS)
def test_bad_source_flag_is_a_one_line_error(argv, match, tmp_path, capsys):
    argv = argv + ["--output-dir", str(tmp_path / "run")]
    with pytest.raises(SystemExit) as exit_info:
        run(_recipe().main, argv)
    assert exit_info.value.code == 2
    stderr = capsys.readouterr().err
    assert "Traceback" not in stderr
    error_lines = [line for line in stderr.splitlines() if "error:" in line]
    assert len(error_lines) == 1, stderr
    assert re.search(match, error_lines[0]), error_lines[0]


# --- --backbone auto and the weights of the target ------------------------------------


@pytest.mark.parametrize("weights, expected", [
    ("auto", "shapes_cnn"), ("none", "shapes_cnn"), ("imagenet", "resnet50"),
    ("/data/mine.weights.h5", "resnet50")])
def test_backbone_auto_offline(offline, capsys, weights, expected):
    from kerasvision.tasks.transfer_demo import choose_backbone

    assert _recipe().parse_args([]).backbone == "auto"
    assert choose_backbone("auto", weights) == expected
    lines = capsys.readouterr().out.splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"backbone: {expected} (--backbone auto: ")
    if weights == "auto":
        assert "no ImageNet weights of resnet50" in lines[0]


def test_backbone_auto_takes_resnet50_when_imagenet_weights_resolve(monkeypatch, tmp_path,
                                                                    capsys):
    from kerasvision.tasks.transfer_demo import choose_backbone

    monkeypatch.setenv("KERAS_HOME", str(tmp_path))
    monkeypatch.setattr(backbones, "_weights_host_reachable", lambda timeout=3.0: False)
    cached = tmp_path / "models" / backbones.BACKBONES["resnet50"].weight_files[1]
    cached.parent.mkdir()
    cached.write_bytes(b"")  # a cached file: "auto" resolves to ImageNet without the network
    assert choose_backbone("auto", "auto") == "resnet50"
    assert "cached or downloadable" in capsys.readouterr().out
    # A named backbone is kept, silently.
    assert choose_backbone("vgg16", "auto") == "vgg16"
    assert capsys.readouterr().out == ""


def test_offline_target_weights_warn_only_without_source_pretraining(offline):
    # With source pretraining the target trains from the source file: no
    # "training from random initialisation" warning before it.
    from kerasvision.tasks.transfer_demo import resolve_target_weights

    with warnings.catch_warnings():
        warnings.simplefilter("error")
        for backbone in ("resnet50", "shapes_cnn"):
            assert resolve_target_weights(_recipe().parse_args(["--backbone", backbone])) is None
    args = _recipe().parse_args(["--backbone", "resnet50", "--source-pretraining", "off"])
    with pytest.warns(UserWarning, match="random initialisation"):
        assert resolve_target_weights(args) is None
