"""FLOPs and op times of traced TensorFlow functions, for the speed benchmarks.

- `profile_flops`, `trace_flops`: floating-point operations of a traced
  `tf.function`'s graph, read by TensorFlow's profiler (`tf.compat.v1.profiler`,
  the `float_operation` view); the per-op-type split comes from the same op
  statistics registry the profiler reads.
- `trace_op_times`: time per op of a few steps under the profiler.
- `fused_kernels`: kerasvision's fused kernels on or off inside a block.
"""

import contextlib
import json
import os



_FUNCTION_CALL_OPS = ("PartitionedCall", "StatefulPartitionedCall", "While", "StatelessWhile",
                      "If", "StatelessIf", "Case", "StatelessCase")


MATMUL_LIKE_OPS = ("Conv2D", "Conv2DBackpropInput", "Conv2DBackpropFilter", "Conv3D",
                   "DepthwiseConv2dNative", "MatMul", "BatchMatMul", "BatchMatMulV2",
                   "BatchMatMulV3")


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


@contextlib.contextmanager
def quiet_tensorflow():
    """Hides TensorFlow's Python-side warnings (retracing notices across models, AutoGraph).

    A context manager, so that a test calling a benchmark's `main` gets the
    logger back as it was.
    """
    with _quiet_tensorflow_logs():
        yield


def run_training_benchmark(run_benchmark, args):
    """`run_benchmark(args)` with TensorFlow quiet, the global dtype policy float32 afterwards.

    The training benchmarks set the recipes' precision policy globally (models
    and pipelines are built under it, as in the recipes); a caller, such as a
    test that calls `main`, gets the default policy back.
    """
    import keras

    with quiet_tensorflow():
        try:
            return run_benchmark(args)
        finally:
            keras.mixed_precision.set_global_policy("float32")
