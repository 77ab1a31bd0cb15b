"""CPU detection and the oneDNN limit that keeps AMX CPUs from aborting bfloat16 FCN training."""

import os
import subprocess
import sys
import warnings

import pytest

from kerasvision import hardware

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
    "flags, environ, expected_limit, expected_environ",
    [
        ({"avx512_bf16", "amx_bf16"}, {}, "AVX512_CORE_BF16", {"ONEDNN_MAX_CPU_ISA": "AVX512_CORE_BF16"}),
        ({"avx512_bf16"}, {}, None, {}),  # AMD Zen 4: native bfloat16 without AMX
        (set(), {}, None, {}),
        ({"amx_bf16"}, {"ONEDNN_MAX_CPU_ISA": "ALL"}, None, {"ONEDNN_MAX_CPU_ISA": "ALL"}),
    ],
)
def test_limit_onednn_on_amx(flags, environ, expected_limit, expected_environ):
    assert hardware.limit_onednn_on_amx(flags, environ) == expected_limit
    assert environ == expected_environ


def _run(args, env_changes):
    env = {k: v for k, v in os.environ.items() if k != "ONEDNN_MAX_CPU_ISA"}
    env.update(env_changes)
    return subprocess.run([sys.executable, *args], cwd=ROOT, env=env, capture_output=True,
                          text=True, timeout=600)


def test_importing_kerasvision_applies_the_limit_only_on_amx():
    result = _run(["-c", "import os, kerasvision; from kerasvision import hardware; "
                   "print(os.environ.get('ONEDNN_MAX_CPU_ISA'), hardware.onednn_limit)"], {})
    assert result.returncode == 0, result.stderr
    on_amx = "amx_bf16" in hardware.cpu_info()[1]
    assert result.stdout.split() == (["AVX512_CORE_BF16"] * 2 if on_amx else ["None", "None"])


def test_fcn_with_paper_width_fc_layers_trains_in_bfloat16(tmp_path):
    """The reproducer: on an AMX CPU without the limit this aborts with SIGABRT (exit -6/134).

    It runs in a subprocess because an abort kills the process. On a CPU
    without AMX it cannot crash, and the test says so.
    """
    if "amx_bf16" not in hardware.cpu_info()[1]:
        warnings.warn("no AMX on this CPU: the bfloat16 FCN reproducer runs but cannot crash here")
    result = _run(["recipes/fcn_transfer.py", "--smoke", "--fc-units", "4096",
                   "--precision", "mixed_bfloat16", "--weights", "none",
                   "--output-dir", str(tmp_path / "run"), "--export-dir", str(tmp_path / "export")],
                  {"TF_CPP_MIN_LOG_LEVEL": "3"})
    assert result.returncode == 0, result.stderr[-2000:]
    assert "exported to" in result.stdout
