"""Two worker processes on 127.0.0.1 train what one process trains, and survive a killed worker.

`cnn_classifier.py` runs 12 steps (2 epochs of 6) with the same global batch
in one process and as a two-worker `MultiWorkerMirroredStrategy` cluster:
the chief's best weights must equal the single process's within 1e-5 and its
export must answer the same. Then one worker is killed by SIGKILL in the
middle of epoch 2; the other, waiting in a collective, is killed by the
test; both are restarted with the same command, resume from their backups
and must finish with the uninterrupted pair's weights. Both are marked slow (CI runs
them); the default suite covers MirroredStrategy in tests/test_distribute.py.
"""

import os
import signal
import subprocess
import sys
import time

import h5py
import numpy as np
import pytest
import tensorflow as tf

from kerasvision.training import distribute, read_history
from tests.test_distribute import free_ports

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
# No dropout and no augmentation: both draw per replica, so they would differ
# from one process by design, not by error.
FLAGS = ["--num-train", "96", "--num-val", "32", "--epochs", "2", "--batch-size", "16",
         "--filters", "4", "--dense-units", "8", "--dropout", "0", "--augment", "false",
         "--patience", "0", "--seed", "5", "--learning-rate", "0.01", "--deterministic",
         "--precision", "float32", "--verbose", "2"]
TIMEOUT = 240  # seconds for a whole cluster run, however loaded the machine


def _command(run_dir, *extra):
    return [sys.executable, os.path.join(ROOT, "recipes", "cnn_classifier.py"), *FLAGS, *extra,
            "--output-dir", str(run_dir / "run"), "--export-dir", str(run_dir / "export")]


def _env(**changes):
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3", CUDA_VISIBLE_DEVICES="")
    env.pop("KERASVISION_KILL_AT", None)
    env.update(changes)
    return env


def _run_cluster(run_dir, ports, kill_worker_at=None, attempt=1):
    """Runs both workers; returns their return codes and logs. Stops every process it starts."""
    command = _command(run_dir, "--strategy", "multi_worker")
    processes, logs = [], []
    try:
        for index in range(2):
            changes = {"TF_CONFIG": distribute.tf_config(2, index, ports),
                       "TMPDIR": str(run_dir)}  # the non-chief's backup lands here, reruns find it
            if kill_worker_at and index == 1:
                changes["KERASVISION_KILL_AT"] = kill_worker_at
            log = open(run_dir / f"worker{index}_attempt{attempt}.log", "w")
            logs.append(log)
            processes.append(subprocess.Popen(command, env=_env(**changes), cwd=str(run_dir),
                                              stdout=log, stderr=subprocess.STDOUT))
        deadline = time.time() + TIMEOUT
        if kill_worker_at:
            processes[1].wait(timeout=TIMEOUT)
            # The chief now waits in a collective for a worker that is gone.
            time.sleep(1.0)
            processes[0].send_signal(signal.SIGKILL)
        for process in processes:
            process.wait(timeout=max(1.0, deadline - time.time()))
    finally:
        for process in processes:
            if process.poll() is None:
                process.kill()
                process.wait()
        for log in logs:
            log.close()
    texts = [(run_dir / f"worker{index}_attempt{attempt}.log").read_text() for index in range(2)]
    return [process.returncode for process in processes], texts


def _weights(path):
    arrays = {}
    with h5py.File(path, "r") as handle:
        handle.visititems(lambda name, item: arrays.__setitem__(name, item[()])
                          if isinstance(item, h5py.Dataset) else None)
    return arrays


def _answers(export_root):
    serve = tf.saved_model.load(os.path.join(export_root, "1")).signatures["serving_default"]
    images = np.random.default_rng(1).integers(0, 256, (4, 32, 32, 3), dtype=np.uint8)
    return serve(images=tf.constant(images))["probabilities"].numpy()


@pytest.fixture(scope="module")
def single_process(tmp_path_factory):
    run_dir = tmp_path_factory.mktemp("single")
    result = subprocess.run(_command(run_dir), env=_env(), cwd=str(run_dir), capture_output=True,
                            text=True, timeout=TIMEOUT)
    assert result.returncode == 0, result.stderr[-3000:]
    return run_dir


@pytest.fixture(scope="module")
def uninterrupted_pair(tmp_path_factory):
    run_dir = tmp_path_factory.mktemp("pair")
    codes, logs = _run_cluster(run_dir, free_ports(2))
    assert codes == [0, 0], logs[0][-3000:] + logs[1][-3000:]
    return run_dir


@pytest.mark.slow  # about 20 s on 2 cores: two cluster runs
def test_two_workers_train_what_one_process_trains(single_process, uninterrupted_pair):
    single = read_history(single_process / "run" / "history.csv")
    pair = read_history(uninterrupted_pair / "run" / "history.csv")
    assert len(pair["loss"]) == 2
    np.testing.assert_allclose(pair["loss"], single["loss"], rtol=1e-5)
    np.testing.assert_allclose(pair["val_accuracy"], single["val_accuracy"], atol=1e-6)
    expected = _weights(single_process / "run" / "best.weights.h5")
    actual = _weights(uninterrupted_pair / "run" / "best.weights.h5")
    assert actual.keys() == expected.keys()
    for key, value in expected.items():
        np.testing.assert_allclose(actual[key], value, rtol=0, atol=1e-5, err_msg=key)
    np.testing.assert_allclose(_answers(uninterrupted_pair / "export"),
                               _answers(single_process / "export"), atol=1e-5)
    assert sorted(os.listdir(uninterrupted_pair / "export")) == ["1"]  # the chief alone exports


@pytest.mark.slow  # three cluster runs: about 50 s on 2 cores
def test_a_killed_worker_and_its_restarted_cluster_finish_like_the_uninterrupted_pair(
        uninterrupted_pair, tmp_path):
    ports = free_ports(2)
    codes, logs = _run_cluster(tmp_path, ports, kill_worker_at="mid_epoch:2")
    assert codes == [-signal.SIGKILL, -signal.SIGKILL], logs
    assert not (tmp_path / "export").exists()
    codes, logs = _run_cluster(tmp_path, free_ports(2), attempt=2)
    assert codes == [0, 0], logs[0][-3000:] + logs[1][-3000:]
    for log in logs:  # both resumed from their backups at epoch 2
        assert "Epoch 2/2" in log and "Epoch 1/2" not in log, log[-3000:]
    assert read_history(tmp_path / "run" / "history.csv") == read_history(
        uninterrupted_pair / "run" / "history.csv")
    expected = _weights(uninterrupted_pair / "run" / "best.weights.h5")
    actual = _weights(tmp_path / "run" / "best.weights.h5")
    for key, value in expected.items():
        np.testing.assert_array_equal(actual[key], value, err_msg=key)
    np.testing.assert_array_equal(_answers(tmp_path / "export"),
                                  _answers(uninterrupted_pair / "export"))
