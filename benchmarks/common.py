"""Measuring code shared by the speed benchmarks: timing, peaks, FLOPs, memory, tables, JSON.

- `summarize_times`, `time_calls`: median (and p50/p99) of repeated calls after warm-up.
- `measure_matmul_peak`: GFLOP/s of `tf.linalg.matmul` on large square
  matrices, float32 or bfloat16: the ceiling that convolution-heavy training
  is compared with, measured in the same run (and so under the same load).
- `profile_flops`: floating-point operations of a traced `tf.function`'s
  graph, read by TensorFlow's profiler (`tf.compat.v1.profiler`, the
  `float_operation` view); the per-op-type split comes from the same op
  statistics registry the profiler reads.
- `PeakMemory`: peak resident memory of the process over a block of work,
  above the memory in use when the block started.
- `format_table`, `write_json`, `environment`: output.

Timing rule of every benchmark: a call that traces or compiles is never timed
with the steady state; it is reported apart ("first call"), then `warmup`
calls run untimed and the median of `repeats` timed calls is the result.
"""

import argparse
import contextlib
import ctypes
import gc
import json
import math
import os
import platform
import re
import sys
import threading
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if ROOT not in sys.path:
    sys.path.insert(0, ROOT)
RESULTS_DIR = os.path.join(ROOT, "benchmarks", "results")

# kerasvision before TensorFlow: its import sets the oneDNN limit AMX CPUs need.
from kerasvision.hardware import cpu_info  # noqa: E402
import numpy as np  # noqa: E402

# Ops that call another graph function: the profiler counts only the ops of
# the graph it is given, so FLOPs inside such calls would be missed.
_FUNCTION_CALL_OPS = ("PartitionedCall", "StatefulPartitionedCall", "While", "StatelessWhile",
                      "If", "StatelessIf", "Case", "StatelessCase")
# Op types that do the multiply-accumulate work a matrix-product peak bounds.
MATMUL_LIKE_OPS = ("Conv2D", "Conv2DBackpropInput", "Conv2DBackpropFilter", "Conv3D",
                   "DepthwiseConv2dNative", "MatMul", "BatchMatMul", "BatchMatMulV2",
                   "BatchMatMulV3")


# ---------------------------------------------------------------------------
# Flags, environment
# ---------------------------------------------------------------------------


def add_common_flags(parser, output_name):
    """Adds `--smoke --output --warmup --repeats` to a benchmark's parser.

    `--output` defaults to None; `resolve_output` fills in
    `benchmarks/results/<output_name>` (a script may pick another name first).
    """
    parser.add_argument("--smoke", action="store_true",
                        help="tiny sizes and counts: checks the script runs (seconds), "
                        "numbers meaningless")
    parser.add_argument("--output", default=None,
                        help=f"JSON file written with every row (default: "
                        f"benchmarks/results/{output_name})")
    parser.add_argument("--warmup", type=int, default=None,
                        help="untimed calls after the first (tracing) call")
    parser.add_argument("--repeats", type=int, default=None, help="timed calls; the median is kept")
    return parser


def resolve_output(args, output_name):
    """`--output`, or `benchmarks/results/<output_name>` when it was not given."""
    if args.output is None:
        args.output = os.path.join(RESULTS_DIR, output_name)
    return args.output


def check_counts(parser, args, warmup, repeats):
    """Fills `--warmup`/`--repeats` defaults and rejects impossible values."""
    args.warmup = warmup if args.warmup is None else args.warmup
    args.repeats = repeats if args.repeats is None else args.repeats
    if args.warmup < 0:
        parser.error(f"--warmup must be >= 0; received {args.warmup}")
    if args.repeats < 1:
        parser.error(f"--repeats must be >= 1; received {args.repeats}")


def parse_list(parser, flag, text, choices=None, cast=str):
    """A comma-separated flag value -> list, checked against `choices`."""
    try:
        values = [cast(part.strip()) for part in str(text).split(",") if part.strip()]
    except ValueError:
        parser.error(f"{flag}: expected comma-separated values; received {text!r}")
    if not values:
        parser.error(f"{flag}: expected at least one value; received {text!r}")
    if choices is not None:
        unknown = [value for value in values if value not in choices]
        if unknown:
            parser.error(f"{flag}: unknown {unknown}; choose from {', '.join(choices)}")
    return values


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


@contextlib.contextmanager
def quiet_tensorflow():
    """Hides TensorFlow's Python-side warnings (retracing notices across models, AutoGraph).

    A context manager, so that a test calling a benchmark's `main` gets the
    logger back as it was.
    """
    with _quiet_tensorflow_logs():
        yield


def warn_if_busy(env):
    """Prints a note when other processes already load the CPU: numbers will read low."""
    load, cores = env.get("load_average_at_start"), env.get("cores") or 1
    if load is not None and load > 0.5 * cores:
        print(f"note: load average {load:.1f} on {cores} cores before starting: other "
              "processes share the CPU, so times read high and ratios between runs drift. "
              "Run on a quiet machine for numbers worth quoting.")


# ---------------------------------------------------------------------------
# Timing
# ---------------------------------------------------------------------------


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


# ---------------------------------------------------------------------------
# Matrix-product peaks
# ---------------------------------------------------------------------------


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


# ---------------------------------------------------------------------------
# FLOPs from TensorFlow's profiler
# ---------------------------------------------------------------------------


def profile_flops(graph):
    """Floating-point operations of a graph, as TensorFlow's profiler counts them.

    The profiler (`tf.compat.v1.profiler.profile` with the `float_operation`
    options) sums, over the graph's ops, the "flops" statistic each op type
    registers: 2 per multiply-accumulate for convolutions, their two
    gradients and matrix products, one per element for element-wise ops and
    reductions; ops without a registration (casts, ReLU, fused batch norm)
    count zero. The graph must have static shapes, so trace with fully
    defined `tf.TensorSpec`s.

    Args:
        graph: a `tf.Graph`, e.g. `concrete_function.graph`.

    Returns:
        dict: `total` (int, FLOPs), `matmul_like` (the convolution and
        matrix-product part), `by_op` (op type -> FLOPs, largest first) and
        `uncounted_calls` (ops that call other graph functions, whose bodies
        the profiler does not see; 0 for the step functions measured here).
    """
    import tensorflow as tf
    from tensorflow.python.framework import ops as tf_ops

    builder = tf.compat.v1.profiler.ProfileOptionBuilder
    options = builder(builder.float_operation()).with_empty_output().build()
    with _quiet_tensorflow_logs():
        total = int(tf.compat.v1.profiler.profile(graph=graph, options=options).total_float_ops)
    by_op, uncounted = {}, 0
    for op in graph.get_operations():
        if op.type in _FUNCTION_CALL_OPS:
            uncounted += 1
            continue
        try:
            value = tf_ops.get_stats_for_node_def(graph, op.node_def, "flops").value
        except (ValueError, TypeError):  # an op whose shapes are not static
            value = None
        if value:
            by_op[op.type] = by_op.get(op.type, 0) + int(value)
    by_op = dict(sorted(by_op.items(), key=lambda item: -item[1]))
    return {
        "total": total,
        "matmul_like": sum(v for k, v in by_op.items() if k in MATMUL_LIKE_OPS),
        "by_op": by_op,
        "uncounted_calls": uncounted,
    }


def trace_flops(fn, *specs):
    """Traces `fn` as a `tf.function` on `specs` (static shapes) and profiles its graph."""
    import tensorflow as tf

    concrete = tf.function(fn).get_concrete_function(*specs)
    return profile_flops(concrete.graph)


@contextlib.contextmanager
def _quiet_tensorflow_logs():
    """Hides the v1 profiler's deprecation notice and its table on stderr."""
    import tensorflow as tf

    logger = tf.get_logger()
    level = logger.level
    logger.setLevel("ERROR")
    try:
        yield
    finally:
        logger.setLevel(level)


@contextlib.contextmanager
def fused_kernels(enabled):
    """`kerasvision.kernels.use_fused(enabled)` inside the block, the previous setting after.

    With `enabled=False` the builders and compile helpers make Keras's own
    `keras.optimizers.Adam`, `keras.layers.BatchNormalization` and
    `keras.layers.Conv2D` in place of `FusedAdam`, `FusedBatchNormalization`
    and `MatmulConv2D`: the baseline their speed-up is measured against, in
    the same run. Models must be built and compiled inside the block.
    """
    from kerasvision import kernels

    previous = kernels.fused_enabled()
    kernels.use_fused(enabled)
    try:
        yield
    finally:
        kernels.use_fused(previous)


def trace_op_times(fn, steps, logdir):
    """Runs `fn()` `steps` times under TensorFlow's profiler; returns per-op host self-times.

    Returns:
        A list of dicts `{"type", "name", "occurrences", "self_us"}`, one per
        TensorFlow op of the traced runs (idle time excluded), from the
        profiler's "framework_op_stats" tool: what TensorBoard's profile
        plugin shows.
    """
    import glob
    import shutil

    import tensorflow as tf
    from tensorflow.python.profiler.internal import _pywrap_profiler_plugin

    shutil.rmtree(logdir, ignore_errors=True)
    tf.profiler.experimental.start(logdir)
    try:
        for _ in range(steps):
            fn()
    finally:
        tf.profiler.experimental.stop()
    paths = glob.glob(os.path.join(logdir, "**", "*.xplane.pb"), recursive=True)
    if not paths:
        raise RuntimeError(f"the profiler wrote no trace under {logdir}")
    data, ok = _pywrap_profiler_plugin.xspace_to_tools_data(paths, "framework_op_stats", {})
    if not ok:
        raise RuntimeError(f"the profiler could not read {paths}: {data[:200]!r}")
    table = json.loads(data)[0]
    columns = [column["id"] for column in table["cols"]]
    ops = []
    for row in table["rows"]:
        values = dict(zip(columns, (cell.get("v") for cell in row["c"])))
        if values["type"] == "IDLE":
            continue
        ops.append({"type": values["type"], "name": values["operation"],
                    "occurrences": int(values["occurrences"]),
                    "self_us": float(values["total_self_time"])})
    return ops


# ---------------------------------------------------------------------------
# Memory
# ---------------------------------------------------------------------------


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


# ---------------------------------------------------------------------------
# Output
# ---------------------------------------------------------------------------


def format_value(value, spec):
    """Formats a number, or "-" for None / NaN / an error row's blanks."""
    if value is None or (isinstance(value, float) and not math.isfinite(value)):
        return "-"
    if isinstance(value, str):
        return value
    return format(value, spec)


def format_table(rows, columns):
    """A Markdown table of `rows` (dicts).

    Args:
        rows: list of dicts.
        columns: list of `(key, header, format spec)`; a spec of "s" left-aligns text.

    Returns:
        str, one line per row after the header and rule.
    """
    cells = [[format_value(row.get(key), spec) for key, _, spec in columns] for row in rows]
    headers = [header for _, header, _ in columns]
    widths = [max([len(headers[i])] + [len(line[i]) for line in cells])
              for i in range(len(columns))]
    left = [spec == "s" for _, _, spec in columns]

    def line(values):
        parts = [f"{v:<{w}}" if is_left else f"{v:>{w}}"
                 for v, w, is_left in zip(values, widths, left)]
        return "| " + " | ".join(parts) + " |"

    rule = "|" + "|".join("-" * (w + 2) for w in widths) + "|"
    return "\n".join([line(headers), rule, *map(line, cells)])


def _jsonable(value):
    """numpy scalars to Python numbers, NaN/inf to None (strict JSON has neither)."""
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def write_json(path, payload):
    """Writes `payload` as indented, strict JSON (non-finite numbers as null); returns the path."""
    directory = os.path.dirname(os.path.abspath(path))
    os.makedirs(directory, exist_ok=True)
    with open(path, "w") as handle:
        json.dump(_jsonable(payload), handle, indent=2, allow_nan=False)
    print(f"wrote {path}")
    return path


def finish_run(payload, path, started):
    """Adds the closing load average and the run's seconds, prints the total, writes the JSON.

    Returns:
        `payload`.
    """
    payload["environment"]["load_average_at_end"] = os.getloadavg()[0]
    payload["seconds"] = time.perf_counter() - started
    print(f"total {payload['seconds']:.0f} s")
    write_json(path, payload)
    return payload


def args_dict(args):
    """The parsed flags as a JSON-friendly dict."""
    return {key: value for key, value in vars(args).items() if not key.startswith("_")}


def describe_error(error):
    """One line naming an exception: its type and the first line of its message."""
    lines = str(error).strip().splitlines()
    return f"{type(error).__name__}: {lines[0][:200]}" if lines else type(error).__name__


def ratio(numerator, denominator):
    """numerator / denominator, or None when either is missing or the denominator is 0."""
    if numerator is None or denominator in (None, 0):
        return None
    return numerator / denominator


def new_parser(doc):
    """An `ArgumentParser` showing the script's docstring."""
    return argparse.ArgumentParser(description=doc,
                                   formatter_class=argparse.RawDescriptionHelpFormatter)
