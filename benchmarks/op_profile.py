"""Where a training step's time goes, op by op, from TensorFlow's profiler.

`train_throughput.py` says how far each family is from the matrix-product
peak, `layer_profile.py` how fast each convolution runs on its own. This one
traces the real compiled step of any family (generative trainers included:
both networks, both losses, the gradient penalty, the noise schedule) with
`tf.profiler` and sums each op's host self-time into
- categories: convolutions, matrix products, batch normalisation, the
  optimizer update, other layers (activations, pooling, resizing, adds,
  concatenations, patch extraction), and the rest (losses, metrics, random
  draws, gradient sums);
- op types (Conv2DBackpropFilter, FusedBatchNormGradV3, ResourceApplyAdam...);
- layers (ops are matched to the model's layer names in their name scopes).
With both cores busy the ops' self-times add up to more than the wall time;
shares are of the summed op time.

Run (2 quiet cores):
    python benchmarks/op_profile.py --family diffusion          # ~1 min
    python benchmarks/op_profile.py --family unet_resnet50 --keras-kernels
    python benchmarks/op_profile.py --family unet_resnet50 --precision mixed_bfloat16
    python benchmarks/op_profile.py --smoke                     # seconds (tests)

Prints the tables and writes --output JSON
(benchmarks/results/op_profile_<family>[_keras][_mixed_bfloat16].json).
"""

import argparse
import collections
import os
import re
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from benchmarks import families, profiling, reporting, timing  # noqa: E402
from benchmarks import train_throughput  # noqa: E402

CATEGORIES = ("convolutions", "matrix products", "batch normalization", "optimizer update",
              "other layers", "losses, metrics and the rest")
_CALL_SUFFIX = re.compile(r"_\d+$")
_OPTIMIZER_SCOPE = re.compile(
    r"(^|/)(fused_adam|adam|rmsprop|sgd|loss_scale_optimizer|optimizer)(_\d+)?/")


def parse_args(argv):
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--family", default="diffusion", choices=sorted(families.FAMILIES))
    parser.add_argument("--batch-size", type=int, default=None,
                        help="default: the family's batch in train_throughput.py")
    parser.add_argument("--steps", type=int, default=3, help="traced training steps")
    parser.add_argument("--precision", default="float32", choices=("float32", "mixed_bfloat16"),
                        help="dtype policy of the profiled model")
    parser.add_argument("--keras-kernels", action="store_true",
                        help="profile with the plain Keras Adam, BatchNormalization and Conv2D "
                        "in place of kerasvision's fused ones (the baseline)")
    parser.add_argument("--top", type=int, default=12, help="rows of the op-type and layer tables")
    parser.add_argument("--smoke", action="store_true", help="tiny sizes, for tests")
    parser.add_argument("--output", default=None)
    args = parser.parse_args(argv)
    if args.steps < 1 or args.top < 1 or (args.batch_size is not None and args.batch_size < 1):
        parser.error("--steps, --top and --batch-size must be positive integers")
    if args.smoke:
        args.steps, args.batch_size = 1, args.batch_size or 2
    suffix = ("_keras" if args.keras_kernels else "") + (
        "" if args.precision == "float32" else f"_{args.precision}")
    args.output = args.output or os.path.join(
        reporting.RESULTS_DIR, f"op_profile_{args.family}{suffix}.json")
    return args


def _layer_classes(model):
    """{layer name: class name} for every layer, nested models included."""
    classes = {}
    for layer in getattr(model, "layers", ()):
        classes[layer.name] = type(layer).__name__
        classes.update(_layer_classes(layer))
    for network in ("generator", "discriminator", "network", "encoder", "decoder"):
        sub = getattr(model, network, None)
        if sub is not None and hasattr(sub, "layers"):
            classes.update(_layer_classes(sub))
    return classes


def _innermost_layer(op_name, layer_classes):
    """The last scope of `op_name` that names a layer of the model, or None.

    Each call of a layer opens its scope under a uniquified name
    ("discriminator_conv1_1" for "discriminator_conv1"), so a numeric suffix
    is tried without it.
    """
    for scope in reversed(op_name.split("/")[:-1]):
        for candidate in (scope, _CALL_SUFFIX.sub("", scope)):
            if candidate in layer_classes:
                return candidate
    return None


def categorize(op_type, op_name, layer_class):
    """The category of one op (see `CATEGORIES`), from its type, scope and layer's class."""
    lowered = op_type.lower()
    if "conv2d" in lowered or "conv3d" in lowered:
        return "convolutions"
    if "matmul" in lowered or "einsum" in lowered:
        return "matrix products"
    if op_type.startswith("ResourceApply") or _OPTIMIZER_SCOPE.search(op_name.lower()):
        return "optimizer update"
    if "batchnorm" in lowered or (layer_class or "").endswith("BatchNormalization"):
        return "batch normalization"
    if layer_class is not None:
        return "other layers"
    return "losses, metrics and the rest"


def summarize(ops, layer_classes, steps):
    """Per-step milliseconds by category, by op type and by layer."""
    by_category = collections.Counter()
    by_type = collections.Counter()
    by_layer = collections.Counter()
    layer_types = collections.defaultdict(collections.Counter)
    for op in ops:
        layer = _innermost_layer(op["name"], layer_classes)
        category = categorize(op["type"], op["name"], layer_classes.get(layer))
        ms = op["self_us"] / 1e3 / steps
        by_category[category] += ms
        by_type[op["type"]] += ms
        if layer is not None:
            by_layer[layer] += ms
            layer_types[layer][op["type"]] += ms
    total = sum(by_category.values())

    def rows(counter, key, extra=lambda name: {}):
        return [{key: name, "ms": ms, "share": ms / total, **extra(name)}
                for name, ms in counter.most_common()]

    return {
        "total_op_ms": total,
        "categories": [{"category": c, "ms": by_category.get(c, 0.0),
                        "share": by_category.get(c, 0.0) / total} for c in CATEGORIES],
        "op_types": rows(by_type, "op_type"),
        "layers": rows(by_layer, "layer", lambda name: {
            "class": layer_classes[name],
            "top_ops": ", ".join(t for t, _ in layer_types[name].most_common(3))}),
    }


def run_benchmark(args):
    import keras

    started = time.perf_counter()
    env = timing.environment()
    family = families.FAMILIES[args.family]
    size = family.smoke_image_size if args.smoke else family.image_size
    batch_size = args.batch_size or (family.smoke_batch_size if args.smoke else family.batch_size)
    keras.mixed_precision.set_global_policy(args.precision)
    keras.utils.set_random_seed(0)
    try:
        with profiling.fused_kernels(not args.keras_kernels):
            model = family.build(size, args.smoke)
            family.compile(model, False, 1)
            batch, _ = families.make_batch(family.kind, size, batch_size)
            step_s = train_throughput.measure_training(model, batch, repeats=args.steps)["step_s"]
            import tensorflow as tf

            dataset = iter(tf.data.Dataset.from_tensors(batch).repeat())
            train_function = model.make_train_function()
            with tempfile.TemporaryDirectory() as logdir:
                ops = profiling.trace_op_times(lambda: train_function(dataset), args.steps, logdir)
    finally:
        keras.mixed_precision.set_global_policy("float32")
    summary = summarize(ops, _layer_classes(model), args.steps)

    kernels_name = "plain Keras kernels" if args.keras_kernels else "kerasvision kernels"
    print(f"{args.family} at {size}px, batch {batch_size}, {args.precision}, {kernels_name}: "
          f"step {1e3 * step_s:.0f} ms wall, {summary['total_op_ms']:.0f} ms of op self-time")
    share = ("share", "of op time", ".1%")
    print(reporting.format_table(summary["categories"],
                              [("category", "category", "s"), ("ms", "ms/step", ".1f"), share]))
    print(reporting.format_table(summary["op_types"][:args.top],
                              [("op_type", "op type", "s"), ("ms", "ms/step", ".1f"), share]))
    print(reporting.format_table(summary["layers"][:args.top], [
        ("layer", "layer", "s"), ("class", "class", "s"), ("ms", "ms/step", ".1f"), share,
        ("top_ops", "its costliest ops", "s")]))
    payload = {"benchmark": "op_profile", "environment": env, "config": reporting.args_dict(args),
               "image_size": size, "batch_size": batch_size, "step_ms": 1e3 * step_s, **summary}
    return reporting.finish_run(payload, args.output, started)


def main(argv=None):
    """Parses `argv` (None: the command line), runs, prints the tables and writes the JSON."""
    args = parse_args(argv)
    with profiling.quiet_tensorflow():
        return run_benchmark(args)


if __name__ == "__main__":
    main()
