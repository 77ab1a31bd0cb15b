"""Timing, matrix-product peaks and memory for the speed benchmarks.

- `summarize_times`, `time_calls`: median (and p50/p99) of repeated calls after warm-up.
- `measure_matmul_peak`: GFLOP/s of `tf.linalg.matmul` on large square
  matrices, float32 or bfloat16: the ceiling that convolution-heavy training
  is compared with, measured in the same run (and so under the same load).
- `PeakMemory`: peak resident memory of the process over a block of work,
  above the memory in use when the block started.
- `environment`, `cpu_flags`, `warn_if_busy`: what machine a figure comes from.

Timing rule of every benchmark: a call that traces or compiles is never timed
with the steady state; it is reported apart ("first call"), then `warmup`
calls run untimed and the median of `repeats` timed calls is the result.
"""

import contextlib
import ctypes
import gc
import os
import platform
import re
import threading
import time

import numpy as np

# kerasvision before TensorFlow: its import silences TensorFlow's C++ start-up log.
from kerasvision.hardware import cpu_info


def cpu_flags():
    """The CPU feature flags that decide bfloat16 speed, from /proc/cpuinfo."""
    model, flags = cpu_info()
    info = {"model": model}
    info.update({flag: flag in flags
                 for flag in ("avx512f", "avx512_vnni", "avx512_bf16", "amx_bf16")})
    info["onednn_max_cpu_isa"] = os.environ.get("ONEDNN_MAX_CPU_ISA")
    return info


def environment():
    """Versions, CPU, cores and load: what a reader needs to judge the numbers."""
    import keras
    import tensorflow as tf

    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    return {
        "python": platform.python_version(),
        "tensorflow": tf.__version__,
        "keras": keras.__version__,
        "cpu": cpu_flags(),
        "cores": cores,
        "gpus": len(tf.config.list_physical_devices("GPU")),
        "load_average_at_start": os.getloadavg()[0] if hasattr(os, "getloadavg") else None,
        "onednn": os.environ.get("TF_ENABLE_ONEDNN_OPTS", "default (on for x86)"),
        "time": time.strftime("%Y-%m-%d %H:%M:%S"),
    }



def warn_if_busy(env):
    """Prints a note when other processes already load the CPU: numbers will read low."""
    load, cores = env.get("load_average_at_start"), env.get("cores") or 1
    if load is not None and load > 0.5 * cores:
        print(f"note: load average {load:.1f} on {cores} cores before starting: other "
              "processes share the CPU, so times read high and ratios between runs drift. "
              "Run on a quiet machine for numbers worth quoting.")


def summarize_times(seconds):
    """Median, p50, p99, min, mean (seconds) and count of a list of durations."""
    values = np.asarray(seconds, dtype=np.float64)
    if values.size == 0:
        raise ValueError("No timings to summarise.")
    return {
        "median_s": float(np.median(values)),
        "p50_s": float(np.percentile(values, 50)),
        "p99_s": float(np.percentile(values, 99)),
        "min_s": float(values.min()),
        "mean_s": float(values.mean()),
        "count": int(values.size),
    }


def time_calls(fn, warmup, repeats):
    """Calls `fn()` `warmup` times untimed, then `repeats` times; returns the durations (s).

    `fn` must block until its work is done: TensorFlow's eager calls do on CPU
    (synchronous execution is the default), and callers that get tensors back
    from a SavedModel signature or a `tf.function` get them computed.
    """
    for _ in range(warmup):
        fn()
    durations = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        durations.append(time.perf_counter() - start)
    return durations


def measure_matmul_peak(dtype="float32", size=2048, warmup=2, repeats=7):
    """GFLOP/s of one `tf.linalg.matmul` of two `size` x `size` matrices.

    Large square products are the best case of the CPU's GEMM kernels (oneDNN
    or Eigen), so they stand for the machine's attainable peak in that dtype;
    convolutions and their gradients run on the same kernels. Without
    AVX512-BF16 or AMX, bfloat16 is converted to float32 inside the kernel and
    its "peak" is lower than float32's.

    Args:
        dtype: "float32" or "bfloat16".
        size: int, matrix side (2 size^3 FLOPs per product).
        warmup, repeats: untimed and timed calls.

    Returns:
        dict: `gflops` (from the median time), `best_gflops` (from the
        fastest), `median_s`, `size`, `dtype`.
    """
    import tensorflow as tf

    generator = tf.random.Generator.from_seed(0)
    a = tf.cast(generator.normal((size, size)), dtype)
    b = tf.cast(generator.normal((size, size)), dtype)
    product = tf.function(lambda x, y: tf.linalg.matmul(x, y))
    product(a, b)  # traces
    stats = summarize_times(time_calls(lambda: product(a, b), warmup, repeats))
    flops = 2.0 * size**3
    return {
        "dtype": dtype,
        "size": size,
        "gflops": flops / stats["median_s"] / 1e9,
        "best_gflops": flops / stats["min_s"] / 1e9,
        "median_s": stats["median_s"],
    }


def measure_peaks(size, warmup=2, repeats=7, verbose=True):
    """float32 and bfloat16 matmul peaks, as {"float32": {...}, "bfloat16": {...}}."""
    peaks = {}
    for dtype in ("float32", "bfloat16"):
        peaks[dtype] = measure_matmul_peak(dtype, size, warmup, repeats)
        if verbose:
            print(f"matmul peak {dtype}: {peaks[dtype]['gflops']:.1f} GFLOP/s "
                  f"({size}x{size}, median of {repeats})", flush=True)
    return peaks


def higher_peaks(before, after, verbose=True):
    """Per dtype, the higher of two `measure_peaks` results, both readings kept.

    A benchmark measures the peaks before and after its rows: on a shared
    host one reading can fall far below the machine's peak (87 against 149
    GFLOP/s minutes apart here), which would overstate every share of it.
    """
    peaks = {}
    for dtype in before:
        best = max(before[dtype], after[dtype], key=lambda peak: peak["gflops"])
        peaks[dtype] = {**best, "readings_gflops": [before[dtype]["gflops"],
                                                    after[dtype]["gflops"]]}
        if verbose:
            print(f"matmul peak {dtype}: {best['gflops']:.1f} GFLOP/s, the higher of "
                  f"{before[dtype]['gflops']:.1f} (before) and {after[dtype]['gflops']:.1f} "
                  "(after)", flush=True)
    return peaks


def _status_mb(field):
    """A `VmRSS`/`VmHWM` line of /proc/self/status, in MiB (None off Linux)."""
    try:
        with open("/proc/self/status") as handle:
            match = re.search(rf"^{field}:\s+(\d+)\s+kB", handle.read(), re.MULTILINE)
    except OSError:
        return None
    return int(match.group(1)) / 1024 if match else None


def rss_mb():
    """Resident memory of this process now, MiB."""
    return _status_mb("VmRSS")


def release_free_memory():
    """Collects garbage and hands freed heap pages back to the OS.

    Without `malloc_trim`, memory a previous model freed stays resident, so
    the next model's peak would hide inside the baseline and read too low.
    """
    gc.collect()
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL("libc.so.6").malloc_trim(0)


class PeakMemory:
    """Peak resident memory over a block of work, above the resident memory at its start.

    Linux resets the process's high-water mark (`VmHWM`) when "5" is written
    to /proc/self/clear_refs; where that is not allowed, a thread samples
    `VmRSS` every 5 ms instead (which can miss a very short peak).

    Usage:
        meter = PeakMemory()
        meter.start()
        ... work ...
        extra_mb = meter.stop()
    """

    def __init__(self, interval=0.005):
        self.interval = interval
        self.method = None
        self._baseline = None
        self._sampled = 0.0
        self._stop = None
        self._thread = None

    def start(self):
        release_free_memory()
        self._baseline = rss_mb()
        if self._baseline is None:
            self.method = "unavailable"
            return self
        try:
            with open("/proc/self/clear_refs", "w") as handle:
                handle.write("5")
            self.method = "VmHWM"
        except OSError:
            self.method = "sampled VmRSS"
            self._sampled = self._baseline
            self._stop = threading.Event()
            self._thread = threading.Thread(target=self._sample, daemon=True)
            self._thread.start()
        return self

    def _sample(self):
        while not self._stop.wait(self.interval):
            self._sampled = max(self._sampled, rss_mb() or 0.0)

    def stop(self):
        """Returns the peak above the start, MiB (None where memory cannot be read)."""
        if self.method == "unavailable":
            return None
        if self._thread is not None:
            self._stop.set()
            self._thread.join()
            peak = self._sampled
        else:
            peak = _status_mb("VmHWM")
        return max(0.0, peak - self._baseline)
