"""Resuming after a kill: the same batches, the same random draws, the same final weights."""

import json
import os
import signal
import subprocess
import sys
import time

import h5py
import numpy as np
import pytest
import keras
import tensorflow as tf

from kerasvision import data
from kerasvision.training import ResumableBackup, read_history

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


def _recipe_command(output_dir, export_dir):
    return [
        sys.executable, os.path.join(REPO, "recipes", "cnn_classifier.py"),
        "--num-train", "768", "--num-val", "64", "--epochs", "3", "--batch-size", "32",
        "--filters", "8", "16", "--dense-units", "16", "--patience", "0", "--seed", "3",
        "--output-dir", str(output_dir), "--export-dir", str(export_dir), "--verbose", "2",
    ]


def _run(command, timeout=240):
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3", CUDA_VISIBLE_DEVICES="")
    return subprocess.run(command, capture_output=True, text=True, timeout=timeout, env=env,
                          cwd=REPO)


def _h5_arrays(path):
    arrays = {}
    with h5py.File(path, "r") as handle:
        handle.visititems(lambda name, item: arrays.__setitem__(name, item[()])
                          if isinstance(item, h5py.Dataset) else None)
    return arrays


def test_recipe_killed_mid_epoch_resumes_to_the_uninterrupted_result(tmp_path):
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3", CUDA_VISIBLE_DEVICES="")
    # The uninterrupted reference runs alongside the run that gets killed.
    reference = subprocess.Popen(
        _recipe_command(tmp_path / "reference", tmp_path / "reference_export"),
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, env=env, cwd=REPO)
    output_dir = tmp_path / "killed"
    command = _recipe_command(output_dir, tmp_path / "export")
    process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                               env=env, cwd=REPO)
    pointer = output_dir / "backup_train" / "latest"
    try:
        deadline = time.time() + 180
        while not pointer.exists() and process.poll() is None and time.time() < deadline:
            time.sleep(0.05)
        assert pointer.exists(), "the first epoch never finished"
        time.sleep(0.5)  # a few batches into the second epoch
        process.send_signal(signal.SIGKILL)
        process.wait(timeout=30)
        _, reference_errors = reference.communicate(timeout=240)
        assert reference.returncode == 0, reference_errors[-2000:]
    finally:
        for child in (process, reference):
            if child.poll() is None:
                child.kill()
    assert process.returncode == -signal.SIGKILL
    saved = pointer.read_text()
    saved_epoch = int(saved[len("epoch"):].split("-")[0])
    assert 1 <= saved_epoch < 3, saved

    resumed = _run(command)
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    # It starts from the saved epoch rather than from scratch.
    assert f"Epoch {saved_epoch + 1}/3" in resumed.stdout
    assert "Epoch 1/3" not in resumed.stdout

    # No file is corrupt: every checkpoint opens, the log has each epoch once.
    history = read_history(output_dir / "history.csv")
    assert len(history["val_accuracy"]) == 3
    json.loads((output_dir / "summary.json").read_text())
    resumed_weights = _h5_arrays(output_dir / "best.weights.h5")
    reference_weights = _h5_arrays(tmp_path / "reference" / "best.weights.h5")
    assert resumed_weights.keys() == reference_weights.keys()
    # The best checkpoint is weights only; equal weights show the optimizer state carried over.
    assert not [key for key in resumed_weights if key.startswith("optimizer")]
    for key, value in reference_weights.items():
        np.testing.assert_allclose(resumed_weights[key], value, rtol=1e-5, atol=1e-6,
                                   err_msg=key)
    assert not (output_dir / "backup_train").exists()


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
