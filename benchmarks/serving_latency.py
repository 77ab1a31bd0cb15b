"""Serving speed of the exported FCN-8s: SavedModel signatures against direct Keras calls.

Builds FCN-8s/VGG16 (weights=None, fc6/fc7 at the paper's 4096 units),
exports it with `kerasvision.export.export_image_model` (the recipes'
export), loads it back with `tf.saved_model.load`, and times five ways of
segmenting the same synthetic scenes:

- `keras_call`: `model(images, training=False)`, eager (a direct Keras call);
- `keras_call_tf_function`: the same call inside a `tf.function`, traced
  once (the model's compute without Python dispatch);
- `predict`: `model.predict(images, batch_size=len(images))`;
- `serving_default`: the signature TF Serving calls, uint8 images in; it
  adds resizing to the model's size and back, softmax and argmax;
- `serving_bytes`: the base64 clients' signature, JPEG bytes in (decoding
  and resizing included).

For each: batch-1 latency (p50 and p99 over `--latency-calls` calls after
warm-up; p99 of a few dozen calls is close to their maximum) and batch-32
throughput (median of `--repeats` calls). The Keras calls return logits, the
signatures probabilities and class ids at the input size: that extra work
is part of what serving costs. The first call of each way (tracing) is
reported apart.

Then a detector (`--detector`, default yolov8 at 128x128, the detection
recipe's; `none` skips it) is exported with `kerasvision.export.export_detector`
(NMS inside the graph) and timed the same way in a second table:

- `detect_tf_function`: `kerasvision.models.detectors.detect` (network,
  decoding, NMS) inside a `tf.function`, at the model's size;
- `serving_default`: the export's signature, uint8 images in, which adds
  resizing and the boxes' rescaling to the images' pixels.

Run (times for 2 quiet cores):
    python benchmarks/serving_latency.py                    # 224x224, ~4 min
    python benchmarks/serving_latency.py --image-size 512 --methods keras_call,serving_default
    python benchmarks/serving_latency.py --detector yolov1 --detector-size 224
    python benchmarks/serving_latency.py --smoke            # 32x32, seconds (tests)

Writes --output (default benchmarks/results/serving_latency.json).
"""

import os
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from benchmarks import profiling, reporting, timing  # noqa: E402

METHODS = ("keras_call", "keras_call_tf_function", "predict", "serving_default", "serving_bytes")
DETECTION_METHODS = ("detect_tf_function", "serving_default")
DETECTORS = ("yolov8", "yolov1", "none")
NUM_CLASSES = 5
DETECTION_CLASSES = 4  # the embedded detection scenes' classes
# Targets of the issue, measured on this run.
SIGNATURE_OVERHEAD_LIMIT = 1.10  # serving_default batch-32 time / keras_call's
BATCH1_LIMIT = 1.5  # batch-1 p50 / (batch-32 time per image)


def make_inputs(image_size, batch_size, seed):
    """Synthetic shapes scenes: uint8 images, float32 images and JPEG bytes of them."""
    import tensorflow as tf

    from kerasvision.data import make_shapes_scenes

    images, _ = make_shapes_scenes(batch_size, image_size=max(16, image_size), seed=seed)
    uint8 = tf.constant(images)
    jpeg = tf.stack([tf.io.encode_jpeg(image, quality=95) for image in images])
    return {"uint8": uint8, "float32": tf.cast(uint8, tf.float32), "jpeg": jpeg}


def make_callers(model, loaded):
    """method name -> callable(inputs dict) that blocks until its result exists."""
    import tensorflow as tf

    compiled = tf.function(lambda images: model(images, training=False))
    serving_default = loaded.signatures["serving_default"]
    serving_bytes = loaded.signatures["serving_bytes"]
    return {
        "keras_call": lambda inputs: model(inputs["float32"], training=False),
        "keras_call_tf_function": lambda inputs: compiled(inputs["float32"]),
        "predict": lambda inputs: model.predict(inputs["float32"],
                                                batch_size=int(inputs["float32"].shape[0]),
                                                verbose=0),
        "serving_default": lambda inputs: serving_default(images=inputs["uint8"]),
        "serving_bytes": lambda inputs: serving_bytes(image_bytes=inputs["jpeg"]),
    }


def measure_method(call, single, batch, args):
    """First-call time, batch-1 latencies and batch-`args.batch_size` throughput of one way."""
    start = time.perf_counter()
    call(single)  # traces (signatures and tf.function were traced at export/first use)
    first_call = time.perf_counter() - start
    latencies = timing.summarize_times(timing.time_calls(lambda: call(single),
                                                         args.latency_warmup, args.latency_calls))
    batched = timing.summarize_times(timing.time_calls(lambda: call(batch),
                                                       args.warmup, args.repeats))
    per_image = batched["median_s"] / args.batch_size
    return {
        "first_call_s": first_call,
        "batch1_p50_ms": 1e3 * latencies["p50_s"],
        "batch1_p99_ms": 1e3 * latencies["p99_s"],
        "batch1_calls": latencies["count"],
        "batch_ms": 1e3 * batched["median_s"],
        "batch_ms_per_image": 1e3 * per_image,
        "batch_img_s": 1.0 / per_image,
        "batch1_p50_over_batch_per_image": latencies["p50_s"] / per_image,
    }


COLUMNS = [
    ("method", "method", "s"),
    ("batch1_p50_ms", "b1 p50 ms", ".1f"),
    ("batch1_p99_ms", "b1 p99 ms", ".1f"),
    ("batch_ms", "bN ms", ".0f"),
    ("batch_ms_per_image", "bN ms/img", ".1f"),
    ("batch_img_s", "bN img/s", ".2f"),
    ("vs_keras_call", "bN time / keras_call", ".2f"),
    ("batch1_p50_over_batch_per_image", "b1 p50 / bN per img", ".2f"),
    ("first_call_s", "1st call s", ".1f"),
]


def evaluate_targets(rows):
    """The issue's serving targets, checked on `serving_default` in this run."""
    by_method = {row["method"]: row for row in rows if "error" not in row}
    signature, direct = by_method.get("serving_default"), by_method.get("keras_call")
    overhead = signature["batch_ms"] / direct["batch_ms"] if signature and direct else None
    batch1 = signature["batch1_p50_over_batch_per_image"] if signature else None
    targets = [
        {"target": "serving_default at batch N within 10% of a direct Keras call",
         "value": overhead, "threshold": SIGNATURE_OVERHEAD_LIMIT, "at_most": True},
        {"target": "serving_default batch-1 p50 latency under 1.5x the batch-N time per image",
         "value": batch1, "threshold": BATCH1_LIMIT, "at_most": True},
    ]
    for target in targets:
        target["met"] = None if target["value"] is None else bool(
            target["value"] <= target["threshold"])
    return targets


def parse_args(argv):
    parser = reporting.new_parser(__doc__)
    reporting.add_common_flags(parser, "serving_latency.json")
    parser.add_argument("--image-size", type=int, default=None,
                        help="model input side, multiple of 32 (default 224; --smoke 32)")
    parser.add_argument("--batch-size", type=int, default=32, help="the throughput batch")
    parser.add_argument("--fc-units", type=int, default=None,
                        help="fc6/fc7 width (default 4096, the paper's; --smoke 64)")
    parser.add_argument("--methods", default=",".join(METHODS),
                        help="comma-separated subset of " + ", ".join(METHODS))
    parser.add_argument("--latency-calls", type=int, default=None,
                        help="timed batch-1 calls per method (default 30; --smoke 3)")
    parser.add_argument("--latency-warmup", type=int, default=None,
                        help="untimed batch-1 calls first (default 2)")
    parser.add_argument("--export-dir", default=None,
                        help="where to export (default: a temporary directory, removed after)")
    parser.add_argument("--detector", choices=DETECTORS, default="yolov8",
                        help="detector exported and timed after FCN-8s (none: skip it)")
    parser.add_argument("--detector-size", type=int, default=None,
                        help="detector input side, multiple of 32 (default 128; --smoke 64)")
    parser.add_argument("--detector-export-dir", default=None,
                        help="where to export the detector (default: a temporary directory)")
    parser.add_argument("--precision", default="float32",
                        choices=("float32", "mixed_bfloat16", "auto"),
                        help="dtype policy of the exported model (auto: what the recipes pick "
                        "on this hardware)")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    # One untimed batch-N call even in --smoke: a new batch size retraces the
    # tf.function and creates new oneDNN kernels, which must not be timed.
    reporting.check_counts(parser, args, warmup=1, repeats=1 if args.smoke else 2)
    reporting.resolve_output(args, "serving_latency.json")
    args.methods = reporting.parse_list(parser, "--methods", args.methods, METHODS)
    args.image_size = args.image_size or (32 if args.smoke else 224)
    args.fc_units = args.fc_units or (64 if args.smoke else 4096)
    if args.smoke and args.batch_size == 32:
        args.batch_size = 4
    args.latency_calls = args.latency_calls or (3 if args.smoke else 30)
    args.latency_warmup = (1 if args.smoke else 2) if args.latency_warmup is None else (
        args.latency_warmup)
    if args.image_size % 32 or args.image_size < 32:
        parser.error(f"--image-size must be a multiple of 32; received {args.image_size}")
    args.detector_size = args.detector_size or (64 if args.smoke else 128)
    if args.detector_size % 32 or args.detector_size < 32:
        parser.error(f"--detector-size must be a multiple of 32; received {args.detector_size}")
    for flag in ("batch_size", "fc_units", "latency_calls"):
        if getattr(args, flag) < 1:
            parser.error(f"--{flag.replace('_', '-')} must be >= 1; received {getattr(args, flag)}")
    return args


def measure_exported(args, export_dir):
    """Builds, exports, loads and times; returns (rows, export facts)."""
    import keras

    from kerasvision.export import export_image_model, load_export
    from kerasvision.models.fcn import build_fcn
    from kerasvision.training import select_precision

    keras.utils.set_random_seed(args.seed)
    args.precision = select_precision(args.precision)
    try:
        model = build_fcn(NUM_CLASSES, (args.image_size, args.image_size, 3), weights=None,
                          fc_units=args.fc_units)
        start = time.perf_counter()
        path = export_image_model(model, export_dir)
        export_s = time.perf_counter() - start
    finally:
        keras.mixed_precision.set_global_policy("float32")
    start = time.perf_counter()
    loaded = load_export(path)
    load_s = time.perf_counter() - start
    size_mb = sum(os.path.getsize(os.path.join(folder, name))
                  for folder, _, names in os.walk(path) for name in names) / 2**20
    facts = {"export_s": export_s, "load_s": load_s, "saved_model_mb": size_mb,
             "parameters": int(model.count_params())}
    print(f"exported {model.name} ({facts['parameters']:,} parameters, {size_mb:.0f} MB) in "
          f"{export_s:.1f} s, loaded in {load_s:.1f} s", flush=True)

    inputs = make_inputs(args.image_size, args.batch_size, args.seed)
    single = {key: value[:1] for key, value in inputs.items()}
    callers = make_callers(model, loaded)
    rows = []
    for method in args.methods:
        row = {"method": method, "image_size": args.image_size, "batch_size": args.batch_size}
        try:
            row.update(measure_method(callers[method], single, inputs, args))
        except Exception as error:  # one way failing must not end the run
            row["error"] = reporting.describe_error(error)
        rows.append(row)
        if "error" in row:
            print(f"  {method}: failed: {row['error']}", flush=True)
        else:
            print(f"  {method}: batch-1 p50 {row['batch1_p50_ms']:.1f} ms, batch "
                  f"{args.batch_size} {row['batch_img_s']:.2f} img/s", flush=True)
    direct = next((r for r in rows if r["method"] == "keras_call" and "error" not in r), None)
    for row in rows:
        if direct and "error" not in row:
            row["vs_keras_call"] = row["batch_ms"] / direct["batch_ms"]
    return rows, facts


def measure_detector(args, export_dir):
    """Builds, exports (`export_detector`), loads and times a detector; returns (rows, facts).

    Untrained weights: the time of NMS depends on how many boxes pass the
    score threshold, so a trained detector's NMS can cost a little more or less.
    """
    import keras
    import tensorflow as tf

    from kerasvision.export import export_detector, load_export
    from kerasvision.models.detectors import build_detector, detect

    keras.utils.set_random_seed(args.seed)
    size = args.detector_size
    # measure_exported resolved --precision ("auto" -> a policy name) already.
    keras.mixed_precision.set_global_policy(args.precision)
    try:
        model = build_detector(args.detector, DETECTION_CLASSES, (size, size, 3), weights=None)
        start = time.perf_counter()
        path = export_detector(model, export_dir)
        export_s = time.perf_counter() - start
    finally:
        keras.mixed_precision.set_global_policy("float32")
    start = time.perf_counter()
    loaded = load_export(path)
    facts = {"model": args.detector, "image_size": size, "export_s": export_s,
             "load_s": time.perf_counter() - start, "parameters": int(model.count_params())}
    print(f"exported {args.detector} ({facts['parameters']:,} parameters) in {export_s:.1f} s, "
          f"loaded in {facts['load_s']:.1f} s", flush=True)

    # Both ways use the export's NMS settings (export_detector's defaults).
    compiled = tf.function(lambda images: detect(model, images))
    serving_default = loaded.signatures["serving_default"]
    callers = {
        "detect_tf_function": lambda inputs: compiled(inputs["float32"]),
        "serving_default": lambda inputs: serving_default(images=inputs["uint8"]),
    }
    inputs = make_inputs(size, args.batch_size, args.seed)
    single = {key: value[:1] for key, value in inputs.items()}
    rows = []
    for method in DETECTION_METHODS:
        row = {"method": method, "model": args.detector, "image_size": size,
               "batch_size": args.batch_size}
        try:
            row.update(measure_method(callers[method], single, inputs, args))
        except Exception as error:  # one way failing must not end the run
            row["error"] = reporting.describe_error(error)
        rows.append(row)
        if "error" in row:
            print(f"  {args.detector} {method}: failed: {row['error']}", flush=True)
        else:
            print(f"  {args.detector} {method}: batch-1 p50 {row['batch1_p50_ms']:.1f} ms, batch "
                  f"{args.batch_size} {row['batch_img_s']:.2f} img/s", flush=True)
    direct = next((r for r in rows if r["method"] == "detect_tf_function" and "error" not in r),
                  None)
    for row in rows:
        if direct and "error" not in row:
            row["vs_detect"] = row["batch_ms"] / direct["batch_ms"]
    return rows, facts


DETECTION_COLUMNS = [
    ("method", "method", "s"),
    ("batch1_p50_ms", "b1 p50 ms", ".1f"),
    ("batch1_p99_ms", "b1 p99 ms", ".1f"),
    ("batch_ms", "bN ms", ".0f"),
    ("batch_img_s", "bN img/s", ".2f"),
    ("vs_detect", "bN time / detect", ".2f"),
    ("first_call_s", "1st call s", ".1f"),
]


def run_detection(args):
    """The detector's rows and export facts, or `([], None)` with `--detector none`."""
    if args.detector == "none":
        return [], None
    if args.detector_export_dir:
        return measure_detector(args, args.detector_export_dir)
    with tempfile.TemporaryDirectory(prefix="kerasvision_serving_detector_") as directory:
        return measure_detector(args, directory)


def run_benchmark(args):
    """Runs the benchmark for parsed flags; returns the JSON payload."""
    started = time.perf_counter()
    env = timing.environment()
    timing.warn_if_busy(env)
    if args.export_dir:
        rows, facts = measure_exported(args, args.export_dir)
    else:
        with tempfile.TemporaryDirectory(prefix="kerasvision_serving_") as directory:
            rows, facts = measure_exported(args, directory)
    detection_rows, detection_facts = run_detection(args)
    print()
    print(f"FCN-8s/VGG16 at {args.image_size}x{args.image_size}, fc {args.fc_units}: batch 1 "
          f"over {args.latency_calls} calls, batch N={args.batch_size} median of {args.repeats}")
    print(reporting.format_table(rows, COLUMNS))
    targets = evaluate_targets(rows)
    print("\ntargets (this run):")
    for target in targets:
        verdict = "not measured" if target["met"] is None else "met" if target["met"] else "NOT met"
        value = "-" if target["value"] is None else f"{target['value']:.2f}"
        print(f"  {target['target']}: {value} (<= {target['threshold']}) {verdict}")
    if detection_facts:
        print()
        print(f"{args.detector} detector at {args.detector_size}x{args.detector_size} "
              f"(export_detector, NMS inside): batch 1 over {args.latency_calls} calls, batch "
              f"N={args.batch_size} median of {args.repeats}")
        print(reporting.format_table(detection_rows, DETECTION_COLUMNS))
    payload = {"benchmark": "serving_latency", "environment": env,
               "config": reporting.args_dict(args), "export": facts, "rows": rows,
               "targets": targets,
               "detection": {"export": detection_facts, "rows": detection_rows}}
    return reporting.finish_run(payload, args.output, started)


def main(argv=None):
    """Parses `argv` (None: the command line), runs, prints the table and writes the JSON."""
    args = parse_args(argv)
    with profiling.quiet_tensorflow():
        return run_benchmark(args)


if __name__ == "__main__":
    main()
