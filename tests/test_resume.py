"""Resuming after a kill: the same batches, the same random draws, the same final weights."""

import json
import os
import signal
import subprocess
import sys

import h5py
import numpy as np
import pytest
import keras
import tensorflow as tf

from kerasvision import data
from kerasvision.training import KILL_POINTS, ResumableBackup, read_history

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _epoch_batches(pipeline, epoch):
    data.training_epoch().assign(epoch)
    return [tuple(part.numpy() for part in batch) for batch in pipeline]


def _segmentation_pipeline():
    images, masks = data.make_shapes_scenes(12, image_size=32, seed=5)
    augmenter = data.build_segmentation_augmenter(flip=True, zoom=0.2, seed=3)
    return data.make_segmentation_pipeline(
        tf.data.Dataset.from_tensor_slices((images, masks)), 4, training=True,
        augmenter=augmenter, seed=7)


def test_training_pipeline_draws_depend_on_epoch_not_on_history():
    first_process = _segmentation_pipeline()
    epoch0 = _epoch_batches(first_process, 0)
    epoch1 = _epoch_batches(first_process, 1)
    assert first_process.cardinality() == 3
    # A restarted process builds the pipeline anew and starts at epoch 1.
    restarted = _epoch_batches(_segmentation_pipeline(), 1)
    for (image, mask), (image_again, mask_again) in zip(epoch1, restarted):
        np.testing.assert_array_equal(image, image_again)
        np.testing.assert_array_equal(mask, mask_again)
    # ... while each epoch still draws its own order and augmentation.
    assert not all(np.array_equal(a[0], b[0]) for a, b in zip(epoch0, epoch1))


def _tiny_model():
    model = keras.Sequential([
        keras.Input((3,)), keras.layers.Dense(8), keras.layers.Dropout(0.5, seed=1),
        keras.layers.Dense(1),
    ])
    model.compile("adam", "mse")
    return model


def test_resumable_backup_restores_weights_optimizer_epoch_and_random_states(tmp_path):
    x, y = np.ones((8, 3), "float32"), np.ones((8, 1), "float32")
    model = _tiny_model()

    class StopAfterSecondEpoch(keras.callbacks.Callback):
        def on_epoch_end(self, epoch, logs=None):
            if epoch == 1:
                raise KeyboardInterrupt  # a crash: fit stops, the backup stays

    with pytest.raises(KeyboardInterrupt):
        model.fit(x, y, epochs=4, batch_size=4, verbose=0,
                  callbacks=[ResumableBackup(str(tmp_path)), StopAfterSecondEpoch()])
    with open(tmp_path / "latest") as handle:
        assert handle.read().startswith("epoch00002")
    assert sorted(os.listdir(tmp_path)) == sorted(["latest", open(tmp_path / "latest").read()])

    restarted = _tiny_model()
    seen = []

    class RecordStart(keras.callbacks.Callback):
        def on_epoch_begin(self, epoch, logs=None):
            seen.append((epoch, int(self.model.optimizer.iterations.numpy())))
            if len(seen) == 1:
                for before, after in zip(model.weights, restarted.weights):
                    np.testing.assert_array_equal(before.numpy(), after.numpy())
                dropout_state = restarted.layers[1].seed_generator.state.numpy()
                np.testing.assert_array_equal(
                    dropout_state, model.layers[1].seed_generator.state.numpy())

    restarted.fit(x, y, epochs=4, batch_size=4, verbose=0,
                  callbacks=[ResumableBackup(str(tmp_path)), RecordStart()])
    assert seen[0] == (2, 4)  # resumed at epoch 3 with 2 steps x 2 epochs already taken
    assert not tmp_path.exists()  # a finished run removes its backup


def test_a_backup_with_another_number_of_random_states_warns_with_both_counts(tmp_path):
    x, y = np.ones((8, 3), "float32"), np.ones((8, 1), "float32")

    class StopAfterFirstEpoch(keras.callbacks.Callback):
        def on_epoch_end(self, epoch, logs=None):
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        _tiny_model().fit(x, y, epochs=2, batch_size=4, verbose=0,
                          callbacks=[ResumableBackup(str(tmp_path)), StopAfterFirstEpoch()])
    states_file = tmp_path / open(tmp_path / "latest").read() / "random_states.json"
    states = json.loads(states_file.read_text())
    states_file.write_text(json.dumps(states + states))
    with pytest.warns(UserWarning, match=f"holds {2 * len(states)} random-generator states "
                                         f"but the model has {len(states)}"):
        _tiny_model().fit(x, y, epochs=2, batch_size=4, verbose=0,
                          callbacks=[ResumableBackup(str(tmp_path))])


RECIPES = {
    "cnn_classifier": (
        ["--num-train", "768", "--num-val", "64", "--epochs", "4", "--batch-size", "32",
         "--filters", "8", "16", "--dense-units", "16", "--patience", "0", "--seed", "3",
         "--learning-rate", "0.01"],
        "val_accuracy", "backup_train"),
    "unet": (
        ["--image-size", "32", "--num-train", "32", "--num-val", "16", "--batch-size", "8",
         "--depth", "2", "--filters", "4", "--epochs", "4", "--learning-rate", "0.01",
         "--max-train-minutes", "0", "--seed", "2"],
        "val_mean_iou", "backup_scratch"),
    "detect": (
        ["--image-size", "64", "--num-train", "32", "--num-val", "8", "--batch-size", "8",
         "--epochs", "4", "--learning-rate", "0.002", "--max-train-minutes", "0", "--seed", "1"],
        "val_map_50", "backup_train"),
}
# Recipes whose tiny run may not improve at epoch 2: only kill points that need no new best.
NO_IMPROVEMENT_PREMISE = ("detect",)
COMMON_FLAGS = ["--deterministic", "--precision", "float32", "--verbose", "2"]
# Epoch 2 of these runs improves the monitored metric, so it rewrites the best checkpoint.
_KILL_EPOCH = 2


def _recipe_command(recipe, output_dir, export_dir):
    return [sys.executable, os.path.join(REPO, "recipes", f"{recipe}.py"), *RECIPES[recipe][0],
            *COMMON_FLAGS, "--output-dir", str(output_dir), "--export-dir", str(export_dir)]


def _run(command, timeout=240, env=None):
    env = dict(env or os.environ, TF_CPP_MIN_LOG_LEVEL="3", CUDA_VISIBLE_DEVICES="")
    return subprocess.run(command, capture_output=True, text=True, timeout=timeout, env=env,
                          cwd=REPO)


def _h5_arrays(path):
    arrays = {}
    with h5py.File(path, "r") as handle:
        handle.visititems(lambda name, item: arrays.__setitem__(name, item[()])
                          if isinstance(item, h5py.Dataset) else None)
    return arrays


def _csv_rows(path):
    with open(path) as handle:
        return [line.strip().split(",") for line in handle if line.strip()]


def _export_outputs(export_root):
    versions = sorted(os.listdir(export_root), key=int)
    serve = tf.saved_model.load(os.path.join(export_root, versions[-1])).signatures[
        "serving_default"]
    (name, spec), = serve.structured_input_signature[1].items()
    images = np.random.default_rng(0).integers(0, 256, (4, 32, 32, 3)).astype("uint8")
    return {key: value.numpy() for key, value in serve(**{name: tf.constant(images, spec.dtype)}).items()}


@pytest.fixture(scope="module")
def uninterrupted(tmp_path_factory):
    runs = {}

    def get(recipe):
        if recipe not in runs:
            root = tmp_path_factory.mktemp(f"{recipe}_uninterrupted")
            result = _run(_recipe_command(recipe, root / "run", root / "export"))
            assert result.returncode == 0, result.stderr[-2000:]
            monitored = read_history(root / "run" / "history.csv")[RECIPES[recipe][1]]
            if recipe not in NO_IMPROVEMENT_PREMISE:
                assert monitored[_KILL_EPOCH - 1] > max(monitored[: _KILL_EPOCH - 1])
            runs[recipe] = root
        return runs[recipe]

    return get


# By default the point that the old order failed at first; the rest are slow.
DEFAULT_POINTS = ("after_best_checkpoint",)
CASES = [pytest.param("cnn_classifier", point, id=f"cnn_classifier-{point}",
                      marks=() if point in DEFAULT_POINTS else pytest.mark.slow)
         for point in KILL_POINTS] + [
    pytest.param("unet", point, id=f"unet-{point}", marks=pytest.mark.slow)
    for point in KILL_POINTS] + [
    pytest.param("detect", point, id=f"detect-{point}", marks=pytest.mark.slow)
    for point in ("mid_epoch", "after_history_row")]


@pytest.mark.parametrize("recipe, kill_point", CASES)
def test_recipe_killed_at_any_point_resumes_to_the_uninterrupted_result(
        recipe, kill_point, uninterrupted, tmp_path):
    output_dir, export_dir = tmp_path / "run", tmp_path / "export"
    command = _recipe_command(recipe, output_dir, export_dir)
    env = dict(os.environ, KERASVISION_KILL_AT=f"{kill_point}:{_KILL_EPOCH}")
    killed = _run(command, env=env)
    assert killed.returncode == -signal.SIGKILL, killed.stderr[-2000:]
    assert not export_dir.exists()

    resumed = _run(command)
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    # It starts from the last committed epoch rather than from scratch.
    first_epoch = _KILL_EPOCH + 1 if kill_point == "after_backup" else _KILL_EPOCH
    assert f"Epoch {first_epoch}/4" in resumed.stdout
    assert "Epoch 1/4" not in resumed.stdout

    # Everything equals the uninterrupted run: the log, the best weights, the export.
    reference = uninterrupted(recipe)
    assert read_history(output_dir / "history.csv") == read_history(
        reference / "run" / "history.csv")
    assert _csv_rows(output_dir / "history.csv")[0] == _csv_rows(
        reference / "run" / "history.csv")[0]
    resumed_weights = _h5_arrays(output_dir / "best.weights.h5")
    reference_weights = _h5_arrays(reference / "run" / "best.weights.h5")
    assert resumed_weights.keys() == reference_weights.keys()
    assert not [key for key in resumed_weights if key.startswith("optimizer")]
    for key, value in reference_weights.items():
        np.testing.assert_array_equal(resumed_weights[key], value, err_msg=key)
    resumed_outputs = _export_outputs(export_dir)
    for key, value in _export_outputs(reference / "export").items():
        np.testing.assert_array_equal(resumed_outputs[key], value, err_msg=key)
    summaries = [json.loads((run / "summary.json").read_text())
                 for run in (output_dir, reference / "run")]
    # Timings and the run's own file paths (exports, plots) differ by design.
    assert summaries[0] == {**summaries[1], **{key: summaries[0][key] for key in summaries[0]
                                               if "seconds" in key or "path" in key
                                               or key.endswith("_plot")}}
    assert not (output_dir / RECIPES[recipe][2]).exists()


def test_gan_resumes_with_both_optimizers_and_its_noise_state(tmp_path):
    from kerasvision.models.gan import GAN, build_dcgan_discriminator, build_dcgan_generator

    def make_gan():
        keras.utils.set_random_seed(0)
        shape = (16, 16, 3)
        gan = GAN(build_dcgan_generator(8, shape, (8, 4)),
                  build_dcgan_discriminator(shape, (4, 8)), seed=0)
        gan.compile()
        return gan

    images = np.random.default_rng(0).uniform(-1, 1, (8, 16, 16, 3)).astype("float32")
    uninterrupted = make_gan()
    uninterrupted.fit(images, batch_size=4, epochs=2, shuffle=False, verbose=0)

    class CrashAfterFirstEpoch(keras.callbacks.Callback):
        def on_epoch_end(self, epoch, logs=None):
            raise KeyboardInterrupt

    crashed = make_gan()
    with pytest.raises(KeyboardInterrupt):
        crashed.fit(images, batch_size=4, epochs=2, shuffle=False, verbose=0,
                    callbacks=[ResumableBackup(str(tmp_path)), CrashAfterFirstEpoch()])
    resumed = make_gan()
    resumed.fit(images, batch_size=4, epochs=2, shuffle=False, verbose=0,
                callbacks=[ResumableBackup(str(tmp_path))])
    for optimizer in ("d_optimizer", "g_optimizer"):
        assert int(getattr(resumed, optimizer).iterations.numpy()) == 4
    for expected, actual in zip(uninterrupted.weights, resumed.weights):
        np.testing.assert_allclose(actual.numpy(), expected.numpy(), rtol=1e-5, atol=1e-6,
                                   err_msg=expected.path)
