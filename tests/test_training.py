import os
import time
import types

import h5py
import numpy as np
import pytest
import tensorflow as tf
import keras

from kerasvision.models.fcn import build_fcn
from kerasvision.tasks.segmentation import compile_segmenter
from kerasvision.training import (
    NonFiniteLossError,
    StopOnNonFiniteLoss,
    fit_two_phase,
    read_history,
    resolve_jit_compile,
    select_precision,
)


def _tiny_data(count=4, size=32):
    rng = np.random.default_rng(0)
    images = rng.uniform(0, 255, (count, size, size, 3)).astype("float32")
    masks = (images[..., 0] > 128).astype("int32")
    return tf.data.Dataset.from_tensor_slices((images, masks)).batch(2)


def _weights_of(layer):
    return [w.numpy().copy() for w in layer.weights]


def _changed(before, after):
    return any(not np.array_equal(a, b) for a, b in zip(before, after))


def _tiny_fcn():
    # Seeded and with 32 fc units: with only a handful, all of fc7's ReLUs can
    # start dead, which leaves the backbone without gradient.
    keras.utils.set_random_seed(0)
    return build_fcn(2, (32, 32, 3), weights=None, fc_units=32, variant="32s", dropout=0.0)


def test_two_phase_freezes_then_finetunes_and_skips_finished_phases(tmp_path):
    model = _tiny_fcn()
    data = _tiny_data()
    compiled = []

    def compile_fn(learning_rate):
        compiled.append(learning_rate)
        compile_segmenter(model, 2, "ce", learning_rate)

    backbone = model.get_layer("backbone")
    head = model.get_layer("score_fr")
    backbone_start, head_start = _weights_of(backbone), _weights_of(head)
    arguments = dict(
        model=model, backbone="vgg16", train_data=data, validation_data=data,
        compile_fn=compile_fn, run_dir=str(tmp_path), monitor="val_mean_iou",
        frozen_epochs=1, finetune_epochs=0, frozen_learning_rate=1e-3,
        finetune_learning_rate=1e-4, verbose=0,
    )
    fit_two_phase(**arguments)
    assert not _changed(backbone_start, _weights_of(backbone)), "frozen phase moved the backbone"
    assert _changed(head_start, _weights_of(head))
    after_frozen = _weights_of(backbone)

    arguments["finetune_epochs"] = 1
    history = fit_two_phase(**arguments)
    assert compiled == [1e-3, 1e-4], "the finished frozen phase must be skipped on rerun"
    assert _changed(after_frozen, _weights_of(backbone))
    assert os.path.exists(tmp_path / "frozen.done") and os.path.exists(tmp_path / "finetune.done")
    assert len(history["loss"]) == 2 and "val_mean_iou" in history


def test_a_finished_run_keeps_one_weights_only_copy(tmp_path):
    model = _tiny_fcn()
    data = _tiny_data()
    fit_two_phase(
        model, "vgg16", data, data, lambda lr: compile_segmenter(model, 2, "ce", lr),
        str(tmp_path), "val_mean_iou", frozen_epochs=1, finetune_epochs=1, verbose=0,
    )
    files = sorted(os.listdir(tmp_path))
    assert [name for name in files if name.endswith((".h5", ".keras"))] == ["best.weights.h5"]
    assert not any(name.startswith("backup_") for name in files), files
    with h5py.File(tmp_path / "best.weights.h5") as handle:
        assert "optimizer" not in handle.keys()
    weight_bytes = sum(4 * int(np.prod(w.shape)) for w in model.weights)
    assert os.path.getsize(tmp_path / "best.weights.h5") <= 1.25 * weight_bytes
    # The model holds the best checkpoint's weights; rerunning trains nothing and loads them.
    reloaded = _tiny_fcn()
    history = fit_two_phase(
        reloaded, "vgg16", data, data, lambda lr: pytest.fail("a finished phase was rerun"),
        str(tmp_path), "val_mean_iou", frozen_epochs=1, finetune_epochs=1, verbose=0,
    )
    assert len(history["loss"]) == 2
    for before, after in zip(model.weights, reloaded.weights):
        np.testing.assert_array_equal(before.numpy(), after.numpy())


def test_warmup_cosine_reaches_zero_at_the_deadline_or_last_step():
    from kerasvision.training import WarmupCosineToBudget

    inputs = keras.Input((3,))
    model = keras.Model(inputs, keras.layers.Dense(1)(inputs))
    model.compile(keras.optimizers.SGD(0.1), "mse")
    schedule = WarmupCosineToBudget(0.1, total_steps=40, warmup_fraction=0.1)
    rates = []
    record = keras.callbacks.LambdaCallback(
        on_train_batch_begin=lambda batch, logs: rates.append(float(model.optimizer.learning_rate)))
    model.fit(np.ones((80, 3)), np.ones((80, 1)), batch_size=2, epochs=1,
              callbacks=[schedule, record], verbose=0)
    steps = np.arange(40) / 40
    # The closed form: linear warm-up to 0.1 over 4 steps, then 0.05 (1 + cos(pi t)).
    expected = np.where(steps < 0.1, 0.1 * (steps + 1 / 40) / (0.1 + 1 / 40),
                        0.05 * (1 + np.cos(np.pi * (steps - 0.1) / 0.9)))
    np.testing.assert_allclose(rates, expected, rtol=1e-5)
    # Past the deadline the rate is the end of the cosine at once, whatever the step.
    late = WarmupCosineToBudget(0.1, total_steps=10**6, deadline=time.time() - 1)
    late.set_model(model)
    late.on_train_begin()
    assert late.learning_rate_at(late.progress()) == pytest.approx(0.0, abs=1e-12)


def test_finetune_blocks_limits_what_trains(tmp_path):
    model = _tiny_fcn()
    features = model.get_layer("backbone").get_layer("vgg16_features")
    first, last = features.get_layer("block1_conv1"), features.get_layer("block5_conv3")
    first_start, last_start = _weights_of(first), _weights_of(last)
    fit_two_phase(
        model, "vgg16", _tiny_data(), None,
        lambda lr: compile_segmenter(model, 2, "ce", lr), str(tmp_path), "loss", "min",
        frozen_epochs=0, finetune_epochs=1, finetune_blocks=1, verbose=0,
    )
    assert not _changed(first_start, _weights_of(first))
    assert _changed(last_start, _weights_of(last))


def test_non_finite_loss_stops_with_epoch_step_and_key():
    inputs = keras.Input((3,))
    model = keras.Model(inputs, keras.layers.Dense(1)(inputs))
    model.compile("sgd", "mse")
    x = np.ones((8, 3), "float32")
    x[5] = np.nan
    with pytest.raises(NonFiniteLossError, match=r"loss became nan at epoch 1, step 3"):
        model.fit(x, np.ones((8, 1)), batch_size=2, shuffle=False, callbacks=[StopOnNonFiniteLoss()], verbose=0)


def test_non_finite_guard_reads_every_loss_key():
    guard = StopOnNonFiniteLoss()
    guard.set_model(keras.Sequential([keras.Input((1,)), keras.layers.Dense(1)]))
    guard.on_train_batch_end(0, {"loss": 1.0, "d_loss": 0.5, "accuracy": float("nan")})
    with pytest.raises(NonFiniteLossError, match="g_loss"):
        guard.on_train_batch_end(1, {"loss": 1.0, "g_loss": float("inf")})


def test_read_history_keeps_the_last_row_of_a_repeated_epoch(tmp_path):
    path = tmp_path / "history.csv"
    path.write_text("epoch,loss\n0,3.0\n1,2.0\n1,1.5\n2,1.0\n")
    assert read_history(str(path)) == {"loss": [3.0, 1.5, 1.0]}
    assert read_history(str(tmp_path / "absent.csv")) == {}


@pytest.mark.hardware_detection
@pytest.mark.parametrize(
    "cpu_flags, gpu_capability, expected",
    [
        ({"avx512f"}, None, "float32"),
        ({"avx512f", "avx512_bf16"}, None, "mixed_bfloat16"),
        ({"amx_bf16", "amx_tile"}, None, "mixed_bfloat16"),
        ({"avx2"}, (7, 5), "float32"),  # Turing: no native bfloat16
        ({"avx2"}, (8, 0), "mixed_bfloat16"),  # Ampere
    ],
)
def test_auto_precision_follows_the_hardware(monkeypatch, cpu_flags, gpu_capability, expected):
    from kerasvision import hardware
    from kerasvision.training import precision as precision_module

    monkeypatch.setattr(hardware, "cpu_info", lambda *args: ("a CPU", frozenset(cpu_flags)))
    gpus = [types.SimpleNamespace(name="/physical_device:GPU:0")] if gpu_capability else []
    monkeypatch.setattr(precision_module.tf.config, "list_physical_devices",
                        lambda kind=None: gpus if kind == "GPU" else [])
    monkeypatch.setattr(precision_module.tf.config.experimental, "get_device_details",
                        lambda device: {"compute_capability": gpu_capability,
                                        "device_name": "a GPU"})
    assert select_precision("auto", verbose=False) == expected
    assert keras.mixed_precision.global_policy().name == expected


def test_precision_policies():
    assert select_precision("mixed_bfloat16", verbose=False) == "mixed_bfloat16"
    assert keras.mixed_precision.global_policy().name == "mixed_bfloat16"
    assert select_precision("float32", verbose=False) == "float32"
    with pytest.raises(ValueError, match="precision"):
        select_precision("float16")


def test_jit_compile_flag():
    assert resolve_jit_compile("true") is True and resolve_jit_compile("false") is False
    assert resolve_jit_compile("auto") == "auto"
    with pytest.raises(ValueError, match="jit_compile"):
        resolve_jit_compile("yes")


def test_time_budget_stops_after_the_step_that_exceeds_it():
    from kerasvision.training import TimeBudget

    inputs = keras.Input((3,))
    model = keras.Model(inputs, keras.layers.Dense(1)(inputs))
    model.compile("sgd", "mse")
    budget = TimeBudget(deadline=0.0)  # already past
    history = model.fit(np.ones((8, 3)), np.ones((8, 1)), batch_size=2, epochs=5,
                        callbacks=[budget], verbose=0)
    assert budget.expired and len(history.history["loss"]) == 1
    assert model.optimizer.iterations.numpy() == 1
