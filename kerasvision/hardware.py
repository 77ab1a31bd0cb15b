"""What the CPU can do, read without importing TensorFlow, and the settings that follow from it."""

import os
import platform
import re

# oneDNN's ISA names: AVX512_CORE_BF16 keeps native bfloat16 (AVX512-BF16
# instructions) but not the AMX tile kernels.
AMX_SAFE_ISA = "AVX512_CORE_BF16"


def cpu_info(path="/proc/cpuinfo"):
    """The CPU's model name and feature flags.

    Args:
        path: str, a Linux `cpuinfo` file.

    Returns:
        `(model, flags)`: str (`platform.processor()` where the file has no
        model name) and a frozenset of flag names such as "avx512_bf16" and
        "amx_bf16" (empty where the file cannot be read, e.g. not on Linux).
    """
    try:
        with open(path) as handle:
            text = handle.read()
    except OSError:
        return platform.processor(), frozenset()
    model = re.search(r"model name\s*:\s*(.*)", text)
    flags = re.search(r"^flags\s*:\s*(.*)$", text, re.MULTILINE)
    return (model.group(1).strip() if model else platform.processor(),
            frozenset(flags.group(1).split()) if flags else frozenset())


def onednn_uses_amx(flags=None, environ=None):
    """Whether oneDNN may run its AMX kernels in this process.

    True on a CPU with `amx_bf16` unless `ONEDNN_MAX_CPU_ISA` caps oneDNN
    below AMX (for example `AVX512_CORE_BF16`, which keeps native bfloat16
    through AVX512-BF16 instructions).

    Args:
        flags: CPU flags (default: `cpu_info()`'s).
        environ: the environment (default: `os.environ`).

    Returns:
        bool.
    """
    environ = os.environ if environ is None else environ
    flags = cpu_info()[1] if flags is None else flags
    limit = environ.get("ONEDNN_MAX_CPU_ISA", "ALL").upper()
    return "amx_bf16" in flags and (limit == "ALL" or "AMX" in limit)
