"""Where a training step's time goes: each convolution timed alone against the whole step.

`train_throughput.py` says how far a model is from the matrix-product peak;
this says why. For one model family it times every convolution (and dense)
layer on its own, forward plus both gradients (input and kernel) as training
runs it, at the input shape it has inside the model, and reports its
GFLOP/s. The sum of those times against the measured step time leaves what
the rest costs: activations, pooling, normalisation, upsampling, the loss and
the optimizer update (memory-bound work that runs far below the peak).

Run (2 quiet cores):
    python benchmarks/layer_profile.py                                # FCN-8s/VGG16 224, ~3 min
    python benchmarks/layer_profile.py --family unet_resnet50 --batch-size 4
    python benchmarks/layer_profile.py --forward-only --batch-size 1  # serving at batch 1
    python benchmarks/layer_profile.py --smoke                        # seconds (tests)

Prints one table, sorted by time, and writes --output JSON
(benchmarks/results/layer_profile_<family>.json).
"""

import argparse
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from benchmarks import families, profiling, reporting, timing  # noqa: E402
from benchmarks import train_throughput  # noqa: E402

import numpy as np  # noqa: E402



def parse_args(argv):
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--family", default="fcn8s_vgg16",
                        choices=("fcn8s_vgg16", "unet_resnet50"))
    parser.add_argument("--batch-size", type=int, default=4)
    parser.add_argument("--repeats", type=int, default=5, help="timed calls per layer (median)")
    parser.add_argument("--forward-only", action="store_true",
                        help="inference: time the forward pass of each layer and of the model "
                        "(what serving runs) instead of the training step")
    parser.add_argument("--smoke", action="store_true", help="tiny sizes, for tests")
    parser.add_argument("--output", default=None)
    args = parser.parse_args(argv)
    if args.smoke:
        args.batch_size, args.repeats = 1, 1
    suffix = "_forward" if args.forward_only else ""
    args.output = args.output or os.path.join(
        reporting.RESULTS_DIR, f"layer_profile_{args.family}{suffix}_b{args.batch_size}.json")
    return args


def _layers_with_inputs(model):
    """(layer, input shape) for every timed layer, nested models included."""
    for layer in model.layers:
        if hasattr(layer, "layers") and layer.layers:
            yield from _layers_with_inputs(layer)
        elif isinstance(layer, _timed_classes()):
            yield layer, tuple(layer.input.shape[1:])


def _timed_classes():
    """Convolutions (MatmulConv2D included), transposed convolutions and dense layers."""
    from keras import layers

    return (layers.Conv2D, layers.Conv2DTranspose, layers.Dense)


def _median_seconds(fn, x, repeats):
    fn(x)  # trace and warm up
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        outputs = fn(x)
        [output.numpy() for output in (outputs if isinstance(outputs, list) else [outputs])]
        times.append(time.perf_counter() - start)
    return float(np.median(times))


def _time_layer(layer, input_shape, batch_size, repeats, forward_only=False):
    """Median seconds of one forward (+ input and kernel gradients) of a copy of `layer`."""
    import tensorflow as tf

    clone = type(layer).from_config(layer.get_config())
    x = tf.random.normal((batch_size, *input_shape))
    clone.build(x.shape)

    @tf.function
    def step(x):
        if forward_only:
            return clone(x)
        with tf.GradientTape() as tape:
            tape.watch(x)
            y = clone(x)
            # Any scalar works: the backward pass costs the same for every upstream gradient.
            loss = tf.reduce_sum(y)
        return tape.gradient(loss, [x] + clone.trainable_variables)

    return _median_seconds(step, x, repeats)


def run_benchmark(args):
    import keras
    from kerasvision import flops

    started = time.perf_counter()
    env = timing.environment()
    keras.mixed_precision.set_global_policy("float32")
    peak = timing.measure_matmul_peak("float32", 512 if args.smoke else 2048)["gflops"]
    family = families.FAMILIES[args.family]
    size = family.smoke_image_size if args.smoke else family.image_size
    model = family.build(size, args.smoke)
    cost = flops.summary(model, (size, size, 3), print_fn=None)
    macs = {row.name.rsplit("/", 1)[-1]: row.macs for row in cost.rows if not row.is_model}
    batch, _ = families.make_batch(family.kind, size, args.batch_size)
    if args.forward_only:
        import tensorflow as tf

        forward = tf.function(lambda images: model(images, training=False))
        step_ms = 1e3 * _median_seconds(forward, tf.constant(batch[0]), args.repeats)
    else:
        family.compile(model, False, 1)
        step_ms = 1e3 * train_throughput.measure_training(
            model, batch, repeats=args.repeats)["step_s"]
    products = 1 if args.forward_only else 3

    rows = []
    for layer, input_shape in _layers_with_inputs(model):
        seconds = _time_layer(layer, input_shape, args.batch_size, args.repeats,
                              args.forward_only)
        # Training: forward, input gradient and kernel gradient, three products of one size.
        gflop = products * 2 * macs.get(layer.name, 0) * args.batch_size / 1e9
        rows.append({"layer": layer.name, "type": type(layer).__name__,
                     "input": "x".join(map(str, input_shape)), "gflop": gflop,
                     "ms": 1e3 * seconds, "gflops_per_s": gflop / seconds,
                     "share_of_peak": gflop / seconds / peak, "share_of_step": 1e3 * seconds / step_ms})
    rows.sort(key=lambda row: -row["ms"])
    layer_ms = sum(row["ms"] for row in rows)
    layer_gflop = sum(row["gflop"] for row in rows)
    totals = [
        {"layer": "all timed layers", "gflop": layer_gflop, "ms": layer_ms,
         "gflops_per_s": layer_gflop / layer_ms * 1e3,
         "share_of_peak": layer_gflop / layer_ms * 1e3 / peak, "share_of_step": layer_ms / step_ms},
        {"layer": "everything else", "ms": step_ms - layer_ms,
         "share_of_step": (step_ms - layer_ms) / step_ms},
        {"layer": "whole forward pass" if args.forward_only else "whole training step",
         "ms": step_ms, "share_of_step": 1.0},
    ]
    print(f"{args.family} at {size}px, batch {args.batch_size}, float32, "
          f"{'forward pass' if args.forward_only else 'training step'}; "
          f"matmul peak {peak:.0f} GFLOP/s")
    print(reporting.format_table(rows + totals, [
        ("layer", "layer", "s"), ("type", "type", "s"), ("input", "input", "s"),
        ("gflop", "GFLOP", ".2f"), ("ms", "ms", ".1f"), ("gflops_per_s", "GFLOP/s", ".0f"),
        ("share_of_peak", "of peak", ".0%"), ("share_of_step", "of step", ".1%"),
    ]))
    payload = {"benchmark": "layer_profile", "environment": env,
               "config": reporting.args_dict(args), "matmul_peak_float32": peak,
               "rows": rows, "totals": totals}
    return reporting.finish_run(payload, args.output, started)


def main(argv=None):
    """Parses `argv` (None: the command line), runs, prints the table and writes the JSON."""
    args = parse_args(argv)
    with profiling.quiet_tensorflow():
        return run_benchmark(args)


if __name__ == "__main__":
    main()
