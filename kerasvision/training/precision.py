"""Numeric precision and compilation: the mixed-precision policy for this hardware, and XLA.

`select_precision("auto")` picks mixed_bfloat16 where the device computes
bfloat16 natively (a GPU of compute capability >= 8, a CPU with AVX512-BF16
or AMX) and float32 elsewhere.
"""


import tensorflow as tf
import keras

from kerasvision import hardware
from kerasvision.validation import check_choice


PRECISIONS = ("auto", "float32", "mixed_bfloat16", "mixed_float16")


def native_bfloat16_device():
    """Names the device that computes bfloat16 natively, or returns None.

    GPUs of compute capability 8.0 and up (Ampere+), and CPUs with AVX512-BF16
    or AMX instructions, run bfloat16 matrix products faster than float32;
    elsewhere bfloat16 is emulated and slower.
    """
    for gpu in tf.config.list_physical_devices("GPU"):
        details = tf.config.experimental.get_device_details(gpu)
        if details.get("compute_capability", (0, 0)) >= (8, 0):
            return f"GPU {details.get('device_name', gpu.name)}"
    flags = hardware.cpu_info()[1] & {"avx512_bf16", "amx_bf16"}
    if flags:
        return f"CPU with {'/'.join(sorted(flags))}"
    return None


def select_precision(precision="auto", verbose=True):
    """Sets the global Keras dtype policy and returns its name.

    Args:
        precision: "auto" (mixed_bfloat16 where the hardware computes bfloat16
            natively, float32 elsewhere), "float32", "mixed_bfloat16" or
            "mixed_float16".
        verbose: bool, print which policy was chosen and why.

    Returns:
        str, the policy set.
    """
    check_choice("precision", precision, PRECISIONS)
    reason = "requested"
    if precision == "auto":
        device = native_bfloat16_device()
        precision = "mixed_bfloat16" if device else "float32"
        reason = f"auto: {device} computes bfloat16 natively" if device else (
            "auto: no native bfloat16 on this hardware"
        )
    keras.mixed_precision.set_global_policy(precision)
    if verbose:
        print(f"precision: {precision} ({reason})")
    return precision


def resolve_jit_compile(value):
    """Maps a `--jit-compile` flag ("auto", "true", "false" or a bool) to `compile`'s argument."""
    if isinstance(value, bool) or value == "auto":
        return value
    return check_choice("jit_compile", value, ("auto", "true", "false")) == "true"
