"""CPU detection, and the AMX bfloat16 heap corruption: its reproducer, workaround and guard."""

import os
import subprocess
import sys
import warnings

import numpy as np
import pytest
import keras
import tensorflow as tf

from tests.helpers import assert_config_round_trip
from kerasvision import hardware
from kerasvision.layers import WideInputConv2D, amx_unsafe_convolutions
from kerasvision.training.callbacks import AMXConvolutionCheck

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

CPUINFO = """processor\t: 0
model name\t: Intel(R) Xeon(R) Platinum 8480+
flags\t\t: fpu sse avx512f avx512_bf16 amx_bf16 amx_tile
"""


def test_cpu_info_reads_model_and_flags(tmp_path):
    path = tmp_path / "cpuinfo"
    path.write_text(CPUINFO)
    model, flags = hardware.cpu_info(str(path))
    assert model == "Intel(R) Xeon(R) Platinum 8480+"
    assert {"avx512_bf16", "amx_bf16", "amx_tile"} <= flags and "flags" not in flags
    assert hardware.cpu_info(str(tmp_path / "absent"))[1] == frozenset()


@pytest.mark.parametrize(
    "flags, environ, expected",
    [
        ({"avx512_bf16", "amx_bf16"}, {}, True),
        ({"amx_bf16"}, {"ONEDNN_MAX_CPU_ISA": "ALL"}, True),
        ({"amx_bf16"}, {"ONEDNN_MAX_CPU_ISA": "avx512_core_amx"}, True),
        ({"amx_bf16"}, {"ONEDNN_MAX_CPU_ISA": "AVX512_CORE_BF16"}, False),
        ({"avx512_bf16"}, {}, False),  # AMD Zen 4: native bfloat16 without AMX
        (set(), {}, False),
    ],
)
def test_onednn_uses_amx(flags, environ, expected):
    assert hardware.onednn_uses_amx(flags, environ) is expected


def _run(args, env_changes):
    env = {k: v for k, v in os.environ.items() if k != "ONEDNN_MAX_CPU_ISA"}
    env.update(env_changes)
    return subprocess.run([sys.executable, *args], cwd=ROOT, env=env, capture_output=True,
                          text=True, timeout=600)


def test_importing_kerasvision_leaves_onednn_unrestricted():
    result = _run(["-c", "import os, kerasvision; print(os.environ.get('ONEDNN_MAX_CPU_ISA'))"], {})
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == ["None"]


# The smallest reproducer: one 1x1 convolution from 4096 channels to 4, trained
# in mixed_bfloat16 with oneDNN free to use AMX.
REPRODUCER = """
import sys
import numpy as np, keras
from kerasvision.layers import WideInputConv2D
keras.mixed_precision.set_global_policy("mixed_bfloat16")
convolution = {"plain": keras.layers.Conv2D, "wide": WideInputConv2D}[sys.argv[1]]
inputs = keras.Input((2, 2, 4096))
outputs = keras.layers.Activation("linear", dtype="float32")(convolution(4, 1)(inputs))
model = keras.Model(inputs, outputs)
model.compile("sgd", "mse")
x, y = np.random.rand(2, 2, 2, 4096), np.random.rand(2, 2, 2, 4)
for _ in range(5):
    model.train_on_batch(x, y)
print("trained")
"""


def _has_amx():
    on_amx = "amx_bf16" in hardware.cpu_info()[1]
    if not on_amx:
        warnings.warn("no AMX on this CPU: the bfloat16 AMX reproducers run but cannot crash here")
    return on_amx


def test_wide_input_convolution_survives_where_a_plain_one_aborts():
    """On AMX the plain convolution aborts (the upstream bug); WideInputConv2D trains."""
    on_amx = _has_amx()
    environ = {"TF_CPP_MIN_LOG_LEVEL": "3", "ONEDNN_MAX_CPU_ISA": "ALL"}
    wide = _run(["-c", REPRODUCER, "wide"], environ)
    assert wide.returncode == 0 and "trained" in wide.stdout, wide.stderr[-2000:]
    plain = _run(["-c", REPRODUCER, "plain"], environ)
    if on_amx:  # if this starts passing, TensorFlow's oneDNN has fixed the bug
        assert plain.returncode in (-6, -11, 134, 139), (plain.returncode, plain.stdout)
    else:
        assert plain.returncode == 0, plain.stderr[-2000:]


def test_wide_input_convolution_equals_conv2d():
    """Same outputs and gradients as keras.layers.Conv2D with the same weights."""
    rng = np.random.default_rng(0)
    images = rng.normal(size=(2, 3, 3, 2304)).astype("float32")
    plain = keras.layers.Conv2D(5, 1)
    wide = WideInputConv2D(5, 1)
    plain.build(images.shape)
    wide.build(images.shape)
    wide.set_weights([rng.normal(size=w.shape).astype("float32") * 0.02 for w in plain.get_weights()])
    plain.set_weights(wide.get_weights())
    assert wide.runs_as_matmul(2304) and not wide.runs_as_matmul(2048)
    gradients = []
    for layer in (plain, wide):
        with tf.GradientTape() as tape:
            outputs = layer(images)
            loss = tf.reduce_sum(outputs * np.arange(5, dtype="float32"))
        gradients.append((outputs.numpy(), *[g.numpy() for g in tape.gradient(loss, layer.weights)]))
    for expected, got in zip(*gradients):
        np.testing.assert_allclose(got, expected, rtol=1e-4, atol=1e-4)
    assert assert_config_round_trip(wide).get_config() == wide.get_config()


def test_amx_unsafe_convolutions_finds_plain_narrow_heads_in_nested_models():
    inner_inputs = keras.Input((4, 4, 2100))
    inner = keras.Model(inner_inputs, keras.layers.Conv2D(3, 1, name="inner_head")(inner_inputs))
    inputs = keras.Input((4, 4, 2100))
    outputs = [inner(inputs), WideInputConv2D(3, 1, name="safe_head")(inputs),
               keras.layers.Conv2D(16, 1, name="wide_enough")(inputs),
               keras.layers.Conv2D(1, 1, name="single_filter")(inputs),
               WideInputConv2D(3, 3, name="wide_3x3")(inputs)]
    model = keras.Model(inputs, outputs)
    assert amx_unsafe_convolutions(model) == ["inner_head", "wide_3x3"]
    from kerasvision.models.fcn import build_fcn
    fcn = build_fcn(3, (64, 64, 3), weights=None, fc_units=64)
    assert isinstance(fcn.get_layer("score_fr"), WideInputConv2D)


def test_training_stops_with_a_message_before_an_amx_abort(monkeypatch):
    monkeypatch.setattr(hardware, "onednn_uses_amx", lambda *args: True)
    inputs = keras.Input((2, 2, 2100))
    model = keras.Model(inputs, keras.layers.Conv2D(3, 1, name="narrow_head")(inputs))
    model.compile("sgd", "mse")
    data = (np.zeros((2, 2, 2, 2100)), np.zeros((2, 2, 2, 3)))
    keras.mixed_precision.set_global_policy("mixed_bfloat16")
    try:
        with pytest.raises(RuntimeError, match=r"narrow_head.*WideInputConv2D"):
            model.fit(*data, epochs=1, verbose=0, callbacks=[AMXConvolutionCheck()])
    finally:
        keras.mixed_precision.set_global_policy("float32")
    model.fit(*data, epochs=1, verbose=0, callbacks=[AMXConvolutionCheck()])  # float32: no check


@pytest.mark.slow  # the default suite runs the smallest reproducer above
def test_fcn_with_paper_width_fc_layers_trains_in_bfloat16(tmp_path):
    """The main job at the paper's width, oneDNN unrestricted: aborted on AMX before WideInputConv2D.

    It runs in a subprocess because an abort kills the process (SIGABRT, exit
    134). On a CPU without AMX it cannot crash, and the test says so.
    """
    _has_amx()
    result = _run(["recipes/fcn_transfer.py", "--smoke", "--fc-units", "4096",
                   "--precision", "mixed_bfloat16", "--weights", "none",
                   "--output-dir", str(tmp_path / "run"), "--export-dir", str(tmp_path / "export")],
                  {"TF_CPP_MIN_LOG_LEVEL": "3"})
    assert result.returncode == 0, result.stderr[-2000:]
    assert "exported to" in result.stdout
