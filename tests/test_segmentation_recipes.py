"""The segmentation recipes end to end on tiny smoke runs (in-process, as `main(argv)`)."""

import json
import os

import numpy as np
import pytest
import tensorflow as tf

from kerasvision.tasks.cli import run
from recipes import fcn_transfer, unet


def _smoke(module, tmp_path, *flags):
    output_dir, export_dir = str(tmp_path / "run"), str(tmp_path / "export")
    summary = module.main(["--smoke", "--output-dir", output_dir, "--export-dir", export_dir, "--weights", "none", *flags])
    return summary, output_dir, export_dir


def test_fcn_transfer_smoke_writes_report_plots_and_export(tmp_path):
    summary, output_dir, export_dir = _smoke(fcn_transfer, tmp_path)
    for name in ("predictions.png", "history.png", "history.csv", "best.weights.h5", "summary.json"):
        assert os.path.exists(os.path.join(output_dir, name)), name
    assert summary["export_path"] == os.path.join(export_dir, "1")
    assert os.path.exists(os.path.join(export_dir, "1", "saved_model.pb"))
    loaded = tf.saved_model.load(os.path.join(export_dir, "1"))
    assert {"serving_default", "serving_bytes"} <= set(loaded.signatures)
    out = loaded.signatures["serving_default"](images=tf.zeros((2, 64, 64, 3), tf.uint8))
    assert out["class_ids"].shape == (2, 64, 64) and out["probabilities"].shape == (2, 64, 64, 5)
    with open(os.path.join(output_dir, "summary.json")) as handle:
        saved = json.load(handle)
    assert 0.0 <= saved["mean_iou"] <= 1.0 and set(saved["per_class_iou"]) == {
        "background", "disk", "square", "triangle", "cross"}


def test_unet_smoke_from_scratch(tmp_path):
    summary, _, export_dir = _smoke(unet, tmp_path, "--image-size", "32", "--depth", "2", "--filters", "4")
    assert os.path.exists(os.path.join(export_dir, "1", "saved_model.pb"))
    assert np.isfinite(summary["mean_iou"])


@pytest.mark.parametrize(
    "module, flags, message",
    [
        (fcn_transfer, ["--image-size", "50"], "multiples of the network stride 32"),
        (fcn_transfer, ["--batch-size", "0"], "--batch-size"),
        (fcn_transfer, ["--weights", "/no/such/weights.h5"], "does not exist"),
        (unet, ["--dataset", "folder"], "--images-dir"),
    ],
)
def test_bad_flags_exit_2_with_one_line(module, flags, message, tmp_path, capsys):
    with pytest.raises(SystemExit) as exit_info:
        run(module.main, ["--smoke", "--output-dir", str(tmp_path), *flags])
    assert exit_info.value.code == 2
    error = capsys.readouterr().err.strip().splitlines()
    assert len(error) == 1 and message in error[0]
