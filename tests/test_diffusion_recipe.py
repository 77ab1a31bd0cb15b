"""The diffusion recipe end to end on a smoke run (in-process, as `main(argv)`)."""

import json
import os

import numpy as np
import pytest
import tensorflow as tf

from recipes import diffusion


def test_diffusion_smoke_writes_grids_curves_model_and_export(tmp_path):
    output_dir, export_dir = str(tmp_path / "run"), str(tmp_path / "export")
    summary = diffusion.main(["--smoke", "--output-dir", output_dir, "--export-dir", export_dir])
    for name in ("samples_epoch001.png", "samples.png", "history.png", "history.csv",
                 "model.keras", "summary.json"):
        assert os.path.exists(os.path.join(output_dir, name)), name
    assert summary["export_path"] == os.path.join(export_dir, "1")
    assert np.isfinite(summary["loss"]) and np.isfinite(summary["val_loss"])
    with open(os.path.join(output_dir, "summary.json")) as handle:
        assert set(json.load(handle)) >= {"loss", "val_loss", "export_path"}
    loaded = tf.saved_model.load(summary["export_path"])
    out = loaded.signatures["serving_default"](
        seed=tf.constant([0, 1]), num_images=tf.constant(2), steps=tf.constant(2))
    assert out["images"].dtype == tf.uint8 and out["images"].shape == (2, 16, 16, 3)


@pytest.mark.parametrize(
    "flags, message",
    [
        (["--image-size", "30"], "multiples of the network stride 4"),
        (["--sample-steps", "2000"], "--sample-steps must be <= --timesteps"),
        (["--widths", "8,x"], "--widths must be comma-separated positive ints"),
        (["--num-train", "8", "--batch-size", "16"], "--num-train"),
    ],
)
def test_bad_flags(tmp_path, flags, message):
    with pytest.raises(ValueError, match=message):
        diffusion.main(["--output-dir", str(tmp_path), *flags])
