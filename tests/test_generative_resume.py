"""Generative recipes killed at each point of an epoch resume to the uninterrupted result.

Each recipe runs in a subprocess with `--deterministic`; `KERASVISION_KILL_AT`
sends it SIGKILL in epoch 2 (in the middle, after the CSV row, after the
backup). Rerunning the same command must give what an uninterrupted run
gives: the whole `history.csv`, every weight of the saved trainer (both GAN
networks, the VAE, the diffusion model's EMA copy) and the export's outputs.
`dcgan.py` killed mid-epoch runs by default; the others are marked `slow`.
"""

import os
import signal
import subprocess
import sys
import zipfile

import h5py
import numpy as np
import pytest
import tensorflow as tf

from kerasvision.training import read_history

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
COMMON = ["--num-train", "48", "--num-val", "16", "--epochs", "3", "--batch-size", "16",
          "--image-size", "16", "--num-samples", "4", "--eval-images", "0", "--seed", "1",
          "--deterministic", "--precision", "float32", "--max-train-minutes", "0",
          "--verbose", "2"]
RECIPES = {
    "dcgan": ["--generator-filters", "16,8", "--discriminator-filters", "8,16",
              "--latent-dim", "8"],
    "vae": ["--filters", "8,16", "--latent-dim", "4"],
    "diffusion": ["--widths", "8,16", "--blocks-per-level", "1", "--timesteps", "20",
                  "--sample-steps", "2", "--ema-decay", "0.9"],
}
# The default suite keeps one case (the suite's time budget); the rest are slow.
DEFAULT_CASES = {("dcgan", "mid_epoch")}
KILL_EPOCH = 2


def _command(recipe, run_dir):
    return [sys.executable, os.path.join(REPO, "recipes", f"{recipe}.py"), *COMMON,
            *RECIPES[recipe], "--output-dir", str(run_dir / "run"),
            "--export-dir", str(run_dir / "export")]


def _run(command, kill_at=None):
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3", CUDA_VISIBLE_DEVICES="")
    env.pop("KERASVISION_KILL_AT", None)
    if kill_at:
        env["KERASVISION_KILL_AT"] = kill_at
    return subprocess.run(command, capture_output=True, text=True, timeout=300, env=env,
                          cwd=REPO)


def _trainer_weights(keras_file):
    """Every array of a `.keras` archive's weights (networks and optimizers)."""
    with zipfile.ZipFile(keras_file) as archive, archive.open("model.weights.h5") as handle:
        arrays = {}
        with h5py.File(handle, "r") as weights:
            weights.visititems(lambda name, item: arrays.__setitem__(name, item[()])
                               if isinstance(item, h5py.Dataset) else None)
    return arrays


def _export_outputs(export_root):
    loaded = tf.saved_model.load(os.path.join(export_root, "1"))
    outputs = {}
    for name, signature in sorted(loaded.signatures.items()):
        arguments = {}
        for key, spec in signature.structured_input_signature[1].items():
            shape = [2 if dim is None else dim for dim in spec.shape]
            if spec.dtype.is_integer:
                arguments[key] = tf.constant(np.arange(int(np.prod(shape))).reshape(shape) + 7,
                                             spec.dtype)
            else:
                arguments[key] = tf.constant(
                    np.random.default_rng(0).normal(size=shape), spec.dtype)
        outputs.update({f"{name}/{key}": value.numpy()
                        for key, value in signature(**arguments).items()})
    return outputs


@pytest.fixture(scope="module")
def uninterrupted(tmp_path_factory):
    runs = {}

    def get(recipe):
        if recipe not in runs:
            root = tmp_path_factory.mktemp(f"{recipe}_uninterrupted")
            result = _run(_command(recipe, root))
            assert result.returncode == 0, result.stderr[-3000:]
            runs[recipe] = root
        return runs[recipe]

    return get


CASES = [
    pytest.param(recipe, point, id=f"{recipe}-{point}",
                 marks=() if (recipe, point) in DEFAULT_CASES else pytest.mark.slow)
    for recipe in RECIPES for point in ("mid_epoch", "after_history_row", "after_backup")
]


@pytest.mark.parametrize("recipe, kill_point", CASES)
def test_generative_recipe_killed_resumes_to_the_uninterrupted_result(
        recipe, kill_point, uninterrupted, tmp_path):
    command = _command(recipe, tmp_path)
    killed = _run(command, kill_at=f"{kill_point}:{KILL_EPOCH}")
    assert killed.returncode == -signal.SIGKILL, killed.stderr[-3000:]
    assert not (tmp_path / "export").exists()
    resumed = _run(command)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    first_epoch = KILL_EPOCH + 1 if kill_point == "after_backup" else KILL_EPOCH
    assert f"Epoch {first_epoch}/3" in resumed.stdout and "Epoch 1/3" not in resumed.stdout

    reference = uninterrupted(recipe)
    assert read_history(tmp_path / "run" / "history.csv") == read_history(
        reference / "run" / "history.csv")
    resumed_weights = _trainer_weights(tmp_path / "run" / "model.keras")
    reference_weights = _trainer_weights(reference / "run" / "model.keras")
    assert resumed_weights.keys() == reference_weights.keys()
    for key, value in reference_weights.items():
        np.testing.assert_array_equal(resumed_weights[key], value, err_msg=key)
    resumed_outputs = _export_outputs(tmp_path / "export")
    for key, value in _export_outputs(reference / "export").items():
        np.testing.assert_array_equal(resumed_outputs[key], value, err_msg=key)
    assert not (tmp_path / "run" / "backup").exists()
