"""`--strategy` and `--deterministic`: MirroredStrategy for every family, two-process training, reproducibility.

Distribution needs a fresh TensorFlow (logical devices, collective ops are
configured before TF starts), so the heavy checks run in subprocesses: one
for the mirrored comparison of all families (TF start-up paid once), two for
the multi-worker cluster, one for the deterministic runs.
"""

import glob
import importlib.util
import json
import os
import socket
import subprocess
import sys
import time

import h5py
import numpy as np
import pytest
import tensorflow as tf

from kerasvision.training import distribute
from kerasvision.training import read_history
from tests.helpers import run_in_fresh_process

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
RECIPES = ("autoencoder", "cnn_classifier", "dcgan", "diffusion", "fcn_transfer", "heatmap",
           "transfer_classifier", "unet", "vae", "wgan")
# The tiny cnn_classifier smoke run that the process-level tests repeat.
SMOKE_FLAGS = ["--smoke", "--filters", "4", "--dense-units", "8", "--verbose", "0",
               "--precision", "float32"]


def load_recipe(name):
    spec = importlib.util.spec_from_file_location(
        f"recipe_{name}", os.path.join(ROOT, "recipes", f"{name}.py"))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def read_weights(path):
    """Every array of a `.weights.h5` file, by its path inside the file."""
    arrays = {}
    with h5py.File(path, "r") as handle:
        handle.visititems(
            lambda name, item: arrays.__setitem__(name, item[()])
            if isinstance(item, h5py.Dataset) else None)
    return arrays


def assert_same_weights(path_a, path_b):
    a, b = read_weights(path_a), read_weights(path_b)
    assert sorted(a) == sorted(b) and a
    for name in a:
        np.testing.assert_array_equal(a[name], b[name], err_msg=name)


# ----------------------------------------------------------------------------
# Flags and the strategy helper (in-process, no distribution)
# ----------------------------------------------------------------------------


@pytest.mark.parametrize("name", RECIPES)
def test_every_recipe_takes_strategy_and_deterministic_flags(name):
    parse_args = load_recipe(name).parse_args
    args = parse_args([])
    assert args.strategy == "default" and args.deterministic is False
    args = parse_args(["--strategy", "multi_worker", "--deterministic"])
    assert args.strategy == "multi_worker" and args.deterministic is True
    with pytest.raises(SystemExit):
        parse_args(["--strategy", "horovod"])


def test_default_strategy_single_process_helpers():
    strategy = distribute.get_strategy("default")
    assert strategy is tf.distribute.get_strategy() and strategy.num_replicas_in_sync == 1
    with pytest.raises(ValueError, match="strategy"):
        distribute.get_strategy("horovod")
    assert distribute.is_chief(strategy) and not distribute.is_multi_worker(strategy)
    assert distribute.worker_directory("runs/x", strategy) == "runs/x"
    config = json.loads(distribute.tf_config(2, 1, [4001, 4002]))
    assert config == {"cluster": {"worker": ["127.0.0.1:4001", "127.0.0.1:4002"]},
                      "task": {"type": "worker", "index": 1}}
    with pytest.raises(ValueError, match="index"):
        distribute.tf_config(2, 2, [4001, 4002])


# ----------------------------------------------------------------------------
# MirroredStrategy over two logical CPUs: one step equals the one-device step
# ----------------------------------------------------------------------------

# The GAN and diffusion trainers have their own such test (test_gan.py,
# test_diffusion.py). No BatchNorm and no dropout in these configurations:
# per-replica batch statistics and per-replica dropout masks legitimately
# differ from the single-device ones. Everything else (losses, metrics, the
# trainers' replica-aware noise) must give the global batch's update.
MIRRORED_FAMILIES = ("fcn", "unet", "cnn_classifier", "autoencoder", "vae",
                     "cnn_classifier_train_loop")

MIRRORED_CODE = """
    import json, traceback
    import numpy as np, tensorflow as tf
    cpu = tf.config.list_physical_devices("CPU")[0]
    tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * 2)
    import keras
    from kerasvision.training.distribute import train_loop
    from kerasvision.losses import get_segmentation_loss
    from kerasvision.metrics import MeanIoU
    from kerasvision.models.autoencoder import VAE, Autoencoder, build_conv_decoder, build_conv_encoder
    from kerasvision.models.classifier import build_cnn_classifier
    from kerasvision.models.fcn import build_fcn
    from kerasvision.models.unet import build_unet

    rng = np.random.default_rng(0)
    pixels = rng.uniform(0, 255, (4, 32, 32, 3)).astype("float32")
    masks = rng.integers(0, 3, (4, 32, 32)).astype("int32")
    labels = np.array([0, 1, 2, 1], "int32")
    images = rng.uniform(-1, 1, (4, 32, 32, 3)).astype("float32")
    # One global batch of 4: two examples per replica.
    batch = lambda *arrays: tf.data.Dataset.from_tensor_slices(arrays if len(arrays) > 1 else arrays[0]).batch(4)

    def segmenter(build):
        model = build()
        # SGD: the update is linear in the gradient (Adam's first step is about
        # sign(g) and would hide a gradient off by the number of replicas).
        model.compile(keras.optimizers.SGD(0.1), loss=get_segmentation_loss("ce+dice", num_classes=3),
                      metrics=[MeanIoU(3, name="mean_iou")], jit_compile=False)
        return model

    def classifier():
        model = build_cnn_classifier(3, (32, 32, 3), filters=(4, 8), dense_units=(8,), dropout=0.0)
        model.compile(keras.optimizers.SGD(0.1), keras.losses.SparseCategoricalCrossentropy(from_logits=True),
                      metrics=[keras.metrics.SparseCategoricalAccuracy(name="accuracy")], jit_compile=False)
        return model

    def autoencoder():
        # Denoising with a KL sparsity penalty: the replica-sliced noise and the
        # penalty's batch statistic, all-reduced over the replicas.
        model = Autoencoder(build_conv_encoder((32, 32, 3), 8, (4, 8), latent_activation="sigmoid"),
                            build_conv_decoder(8, (32, 32, 3), (8, 4)), noise_stddev=0.1,
                            sparsity="kl", sparsity_weight=0.1, sparsity_target=0.1, seed=1)
        model.compile(keras.optimizers.SGD(0.1), jit_compile=False)
        return model

    def vae():
        model = VAE(build_conv_encoder((32, 32, 3), 8, (4, 8), variational=True),
                    build_conv_decoder(8, (32, 32, 3), (8, 4)), seed=1)
        model.compile(keras.optimizers.SGD(1e-3), jit_compile=False)
        return model

    families = {
        "fcn": (lambda: segmenter(lambda: build_fcn(3, (32, 32, 3), weights=None, fc_units=16, dropout=0.0)),
                batch(pixels, masks)),
        "unet": (lambda: segmenter(lambda: build_unet(3, (32, 32, 3), depth=2, filters=4, batch_norm=False)),
                 batch(pixels, masks)),
        "cnn_classifier": (classifier, batch(pixels, labels)),
        "autoencoder": (autoencoder, batch(images)),
        "vae": (vae, batch(images)),
        "cnn_classifier_train_loop": (classifier, batch(pixels, labels)),
    }

    def one_step(make, data, strategy, loop=False):
        keras.utils.set_random_seed(0)  # same initial weights in both runs
        with strategy.scope():
            model = make()
        before = [v.numpy() for v in model.trainable_variables]
        fit = train_loop if loop else (lambda model, *args, **kwargs: model.fit(*args, **kwargs))
        history = fit(model, data, epochs=1, verbose=0).history
        updates = [v.numpy() - b for v, b in zip(model.trainable_variables, before)]
        names = [v.path for v in model.trainable_variables]
        return updates, names, {key: float(values[-1]) for key, values in history.items()}

    mirrored = tf.distribute.MirroredStrategy(["/cpu:0", "/cpu:1"])
    results = {}
    for name, (make, data) in families.items():
        try:
            single, names, single_logs = one_step(make, data, tf.distribute.get_strategy())
            distributed, _, distributed_logs = one_step(make, data, mirrored, loop=name.endswith("train_loop"))
            # |distributed - single| / (atol + rtol |single|), worst over all weights: <= 1 passes.
            worst = max(float(np.max(np.abs(d - s) / (1e-6 + 1e-4 * np.abs(s))))
                        for d, s in zip(distributed, single))
            results[name] = {
                "worst_ratio": worst,
                "unchanged": [n for n, s in zip(names, single) if not np.any(s)],
                "single_logs": single_logs,
                "distributed_logs": distributed_logs,
                "replicas": mirrored.num_replicas_in_sync,
            }
        except Exception:
            results[name] = {"error": traceback.format_exc()[-3000:]}
    print("RESULTS " + json.dumps(results))
"""


@pytest.fixture(scope="module")
def mirrored_results():
    """Runs every family once on one device and once mirrored over two logical CPUs."""
    output = run_in_fresh_process(MIRRORED_CODE, timeout=600)
    line = next(line for line in output.splitlines() if line.startswith("RESULTS "))
    return json.loads(line[len("RESULTS "):])


@pytest.mark.parametrize("family", MIRRORED_FAMILIES)
def test_mirrored_step_matches_single_device(mirrored_results, family):
    result = mirrored_results[family]
    assert "error" not in result, result.get("error")
    assert result["replicas"] == 2
    assert result["unchanged"] == [], "variables the step did not train"
    assert result["worst_ratio"] <= 1.0, result["worst_ratio"]
    assert result["single_logs"].keys() == result["distributed_logs"].keys()
    for key, value in result["single_logs"].items():
        np.testing.assert_allclose(result["distributed_logs"][key], value, rtol=1e-4, err_msg=key)


# ----------------------------------------------------------------------------
# MultiWorkerMirroredStrategy: two worker processes on 127.0.0.1
# ----------------------------------------------------------------------------


def free_ports(count):
    sockets = [socket.socket() for _ in range(count)]
    try:
        for sock in sockets:
            sock.bind(("127.0.0.1", 0))
        return [sock.getsockname()[1] for sock in sockets]
    finally:
        for sock in sockets:
            sock.close()


@pytest.mark.slow  # tests/test_multi_worker.py runs a two-worker cluster by default
def test_multi_worker_recipe_trains_both_workers_identically_and_only_the_chief_exports(tmp_path):
    output_dir, export_dir = str(tmp_path / "run"), str(tmp_path / "export")
    ports = free_ports(2)
    # A budget that runs out at the first step: the workers must agree to stop
    # there (a worker that stopped alone would leave the other waiting).
    command = [sys.executable, os.path.join(ROOT, "recipes", "cnn_classifier.py"), *SMOKE_FLAGS,
               "--strategy", "multi_worker", "--max-train-minutes", "0.0001",
               "--output-dir", output_dir, "--export-dir", export_dir]
    workers = []
    deadline = time.time() + 300  # the whole cluster, however loaded the machine
    try:
        for index in range(2):
            env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3",
                   "TF_CONFIG": distribute.tf_config(2, index, ports),
                   "TMPDIR": str(tmp_path)}  # the non-chief's directory lands under tmp_path
            log = open(tmp_path / f"worker{index}.log", "w")
            workers.append((subprocess.Popen(command, env=env, cwd=str(tmp_path), stdout=log,
                                             stderr=subprocess.STDOUT), log))
        for process, _ in workers:
            process.wait(timeout=max(1.0, deadline - time.time()))
    finally:
        for process, log in workers:
            if process.poll() is None:
                process.kill()
                process.wait()
            log.close()
    logs = [(tmp_path / f"worker{index}.log").read_text() for index in range(2)]
    for (process, _), text in zip(workers, logs):
        assert process.returncode == 0, text[-3000:]

    # Only the chief wrote to --output-dir and --export-dir: one export version.
    assert sorted(os.listdir(export_dir)) == ["1"]
    assert os.path.exists(os.path.join(export_dir, "1", "saved_model.pb"))
    worker_line = next(line for line in logs[1].splitlines() if line.startswith("not the chief"))
    worker_output = worker_line.split("writing to ")[1].split(" and ")[0]
    assert worker_output.startswith(str(tmp_path)) and worker_output != output_dir
    assert "not the chief" not in logs[0]
    # Synchronous data parallelism: both workers end with the same weights,
    # after the same single step.
    assert_same_weights(os.path.join(output_dir, "best.weights.h5"),
                        os.path.join(worker_output, "best.weights.h5"))
    weights = read_weights(os.path.join(output_dir, "best.weights.h5"))
    assert not any(name.startswith("optimizer") for name in weights)  # weights only
    history = read_history(os.path.join(output_dir, "history.csv"))
    assert len(history["loss"]) == 1 and np.isfinite(history["loss"][0])


# ----------------------------------------------------------------------------
# --deterministic
# ----------------------------------------------------------------------------

DETERMINISTIC_CODE = """
    import importlib.util, sys
    import keras, tensorflow as tf
    spec = importlib.util.spec_from_file_location("recipe", {recipe!r})
    recipe = importlib.util.module_from_spec(spec); spec.loader.exec_module(recipe)
    flags = {flags!r}
    recipe.main(flags + ["--deterministic", "--output-dir", {run1!r}, "--export-dir", {export1!r}])
    from tensorflow.python.framework.config import is_op_determinism_enabled  # no public getter
    assert is_op_determinism_enabled()
    keras.backend.clear_session()  # same layer names, hence same weight-file paths
    # --jit-compile true is overridden (op determinism turns XLA off anyway).
    recipe.main(flags + ["--deterministic", "--jit-compile", "true",
                         "--output-dir", {run2!r}, "--export-dir", {export2!r}])
    try:
        recipe.main(flags + ["--strategy", "tpu", "--output-dir", {run1!r}])
    except ValueError as error:
        assert "no TPU" in str(error), error
        print("tpu:", error)
    else:
        raise AssertionError("--strategy tpu without a TPU did not fail")
"""


def test_deterministic_runs_give_identical_weights(tmp_path):
    run1, run2 = str(tmp_path / "run1"), str(tmp_path / "run2")
    output = run_in_fresh_process(DETERMINISTIC_CODE.format(
        recipe=os.path.join(ROOT, "recipes", "cnn_classifier.py"), flags=SMOKE_FLAGS,
        run1=run1, run2=run2, export1=str(tmp_path / "export1"), export2=str(tmp_path / "export2"),
    ), timeout=300)
    assert "--jit-compile true ignored" in output
    assert "tpu: --strategy tpu: no TPU found" in output
    assert_same_weights(os.path.join(run1, "best.weights.h5"), os.path.join(run2, "best.weights.h5"))
    # Both runs trained (the --smoke steps) and exported.
    for run in (run1, run2):
        assert len(read_history(os.path.join(run, "history.csv"))["loss"]) == 1
    assert len(glob.glob(os.path.join(tmp_path, "export*", "1", "saved_model.pb"))) == 2
