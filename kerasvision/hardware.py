"""What the CPU can do, read without importing TensorFlow, and the settings that follow from it.

`kerasvision/__init__.py` calls `limit_onednn_on_amx()` before TensorFlow is
imported: oneDNN reads `ONEDNN_MAX_CPU_ISA` once, when it first runs.
"""

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


def limit_onednn_on_amx(flags=None, environ=None):
    """Keeps oneDNN off AMX, where its bfloat16 kernels corrupt the heap in FCN training.

    On Intel CPUs with AMX, TensorFlow 2.21's oneDNN aborts FCN-8s/VGG16
    training with 4096-wide fc6/fc7 under mixed_bfloat16 ("malloc():
    unaligned tcache chunk detected", SIGABRT) within its first steps;
    capping oneDNN at AVX512_CORE_BF16 avoids it and still computes bfloat16
    natively (docs/known_issues.md). float32 never uses AMX, so it is
    unaffected. A user who sets `ONEDNN_MAX_CPU_ISA` keeps their setting.

    Args:
        flags: CPU flags (default: `cpu_info()`'s).
        environ: the environment to change (default: `os.environ`).

    Returns:
        The ISA limit now in force for this reason, or None.
    """
    environ = os.environ if environ is None else environ
    flags = cpu_info()[1] if flags is None else flags
    if "amx_bf16" not in flags or "ONEDNN_MAX_CPU_ISA" in environ:
        return None
    environ["ONEDNN_MAX_CPU_ISA"] = AMX_SAFE_ISA
    return AMX_SAFE_ISA


# Set by kerasvision's import: the ISA limit `limit_onednn_on_amx` applied, or None.
onednn_limit = None
