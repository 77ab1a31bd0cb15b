import importlib.util
import json
import os

import numpy as np
import pytest
from PIL import Image

from kerasvision.data import load_image_folder
from kerasvision.tasks.classification import phase_accuracies
from tests.helpers import assert_export_round_trip

RECIPES = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "recipes")


def _recipe(name):
    spec = importlib.util.spec_from_file_location(f"recipe_{name}", os.path.join(RECIPES, f"{name}.py"))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_cnn_classifier_recipe_smoke_and_export(tmp_path):
    output_dir, export_dir = str(tmp_path / "run"), str(tmp_path / "export")
    summary = _recipe("cnn_classifier").main(
        # float32 pinned: "auto" picks mixed_bfloat16 on CPUs with AVX512-BF16,
        # whose graph and eager kernels round differently (about 3e-3 here).
        ["--smoke", "--output-dir", output_dir, "--export-dir", export_dir, "--filters", "4", "8",
         "--precision", "float32"]
    )
    assert os.path.exists(os.path.join(export_dir, "1", "saved_model.pb"))
    for name in ("confusion_matrix.png", "history.png", "history.csv", "best.weights.h5"):
        assert os.path.exists(os.path.join(output_dir, name)), name
    with open(os.path.join(output_dir, "summary.json")) as handle:
        written = json.load(handle)
    assert set(written["per_class_accuracy"]) == {"disk", "square", "triangle", "cross"}
    assert 0.0 <= summary["accuracy"] <= 1.0 and "training" in summary["accuracy_after_phase"]

    import argparse

    import keras

    from kerasvision.tasks.classification import build_augmenter
    from kerasvision.data import make_shapes_classification
    from kerasvision.models.classifier import build_cnn_classifier

    # The export serves the trained weights: rebuild the model, load the best
    # checkpoint and compare probabilities on uint8 images.
    augmentation = build_augmenter(argparse.Namespace(augment="true", seed=0))
    model = build_cnn_classifier(
        4, (32, 32, 3), filters=(4, 8), dense_units=(128,), dropout=0.3, augmentation=augmentation
    )
    model.load_weights(os.path.join(output_dir, "best.weights.h5"))
    images, _ = make_shapes_classification(3, 32, split="test")
    expected = keras.ops.convert_to_numpy(keras.ops.softmax(model(images.astype("float32"), training=False)))
    assert_export_round_trip(summary["export_path"], images, expected)


def test_transfer_classifier_recipe_smoke(tmp_path):
    output_dir, export_dir = str(tmp_path / "run"), str(tmp_path / "export")
    summary = _recipe("transfer_classifier").main(
        ["--smoke", "--backbone", "vgg16", "--weights", "none",
         "--output-dir", output_dir, "--export-dir", export_dir]
    )
    assert os.path.exists(os.path.join(export_dir, "1", "saved_model.pb"))
    assert os.path.exists(os.path.join(output_dir, "confusion_matrix.png"))
    # Random weights: the two phases become one that trains everything.
    assert list(summary["accuracy_after_phase"]) == ["scratch"]


def test_transfer_recipe_rejects_too_many_finetune_blocks(tmp_path):
    with pytest.raises(ValueError, match=r"`finetune_blocks` must be an integer from 1 to 5.*finetune_blocks=6"):
        _recipe("transfer_classifier").main(["--smoke", "--finetune-blocks", "6", "--output-dir", str(tmp_path)])


def test_heatmap_recipe_smoke(tmp_path):
    summary = _recipe("heatmap").main(["--smoke", "--scene-size", "64", "--output-dir", str(tmp_path)])
    assert os.path.exists(summary["heatmap"])
    assert set(summary["classes"]) == {"background", "disk", "square", "triangle", "cross"}


def test_phase_accuracies():
    history = {"val_accuracy": [0.1, 0.5, 0.6, 0.9]}
    assert phase_accuracies(history, [("feature_extraction", 2), ("fine_tuning", 2)]) == {
        "feature_extraction": 0.5, "fine_tuning": 0.9,
    }
    # Cut short by a time budget: fine-tuning ran 1 of its 3 epochs, a third phase none.
    assert phase_accuracies(history, [("a", 3), ("b", 3), ("c", 1)]) == {"a": 0.6, "b": 0.9}


def test_load_image_folder(tmp_path):
    rng = np.random.default_rng(0)
    for class_name in ("cat", "dog"):
        os.makedirs(tmp_path / class_name)
        for index in range(5):
            pixels = rng.integers(0, 255, (10, 12, 3), dtype=np.uint8)
            Image.fromarray(pixels).save(tmp_path / class_name / f"{index}.png")
    dataset, class_names = load_image_folder(str(tmp_path), image_size=16)
    assert class_names == ("cat", "dog")
    elements = list(dataset)
    assert len(elements) == 10
    assert elements[0][0].shape == (16, 16, 3) and elements[0][0].dtype == "float32"
    assert sorted(int(label) for _, label in elements) == [0] * 5 + [1] * 5
    train, _ = load_image_folder(str(tmp_path), 16, validation_split=0.2, subset="training", seed=1)
    validation, _ = load_image_folder(str(tmp_path), 16, validation_split=0.2, subset="validation", seed=1)
    assert (len(list(train)), len(list(validation))) == (8, 2)
    with pytest.raises(ValueError, match="`directory` must be an existing directory.*no_such_dir"):
        load_image_folder(str(tmp_path / "no_such_dir"), 16)
    with pytest.raises(ValueError, match="`subset` and `validation_split` go together"):
        load_image_folder(str(tmp_path), 16, subset="training")
