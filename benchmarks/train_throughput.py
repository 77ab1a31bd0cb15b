"""Training speed of every model family, against the CPU's matrix-product peaks.

For each family at a realistic size (CNN classifier 64x64, transfer ResNet50
224x224, FCN-8s/VGG16 224x224, U-Net/ResNet50 256x256, DCGAN and WGAN-GP
64x64, diffusion U-Net 64x64, YOLOv8 and YOLO v1 detectors 128x128 on the
embedded shapes scenes; models from the library builders with
weights=None, compiled as the recipes compile them) and each variant
(float32 or mixed_bfloat16, XLA on or off, steps_per_execution), the script
runs `model.fit` on one in-memory batch repeated, so that the input pipeline
costs nothing, and reports:

- the median step time after warm-up and images per second; the first call
  (tracing, XLA compilation and one step) is reported apart;
- FLOPs per training step, read by TensorFlow's profiler from the graph of
  the traced step function (`model.train_step` in a `tf.function` with the
  batch's static shapes; the same count for every variant of a family);
- achieved GFLOP/s and its share of the float32 and bfloat16 peaks of
  `tf.linalg.matmul` measured at the start and at the end of the same run (the
  higher of the two: a shared host can read far below the peak);
- the speed-up over the family's float32 row and over the same variant
  without XLA, and the peak memory of the timed steps.

The profiler's count is cross-checked against `kerasvision.flops.summary`
(forward pass of the inference network, batch 1) and printed per family.
After the table, the issue's targets are checked against this run.

`--scaling` measures FCN-8s and U-Net over image sizes (128, 256, 512 at
batch 2) and batch sizes (1, 2, 8, 32 at 128x128) instead: time and peak
memory per image, and time per megapixel, to show how cost grows with
pixels. Its FLOPs are estimated as 3x the forward pass of
`kerasvision.flops` (tracing every point again would double the sweep's
time); the optimizer's per-weight arithmetic is left out of that estimate,
which matters only at the smallest sizes.

`--peer torch` adds a PyTorch U-Net with a torchvision ResNet50 encoder
(weights=None) trained in bfloat16 autocast, channels-last, at the U-Net's
size and batch (benchmarks/torch_peer.py, run with `--torch-python`, so torch
never has to be installed next to TensorFlow).

Run (times for 2 quiet cores):
    python benchmarks/train_throughput.py                    # all families, ~15 min
    python benchmarks/train_throughput.py --families fcn8s_vgg16,unet_resnet50 --batch-size 8
    python benchmarks/train_throughput.py --variants float32,mixed_bfloat16+xla+spe4
    python benchmarks/train_throughput.py --scaling          # FCN-8s and U-Net sweeps, ~6 min
    python benchmarks/train_throughput.py --families unet_resnet50 --peer torch \\
        --torch-python /path/to/venv-with-torch/bin/python
    python benchmarks/train_throughput.py --smoke            # tiny sizes, seconds (tests)

Variants are written `precision[+xla][+spe<N>]`, e.g. `float32`,
`mixed_bfloat16+xla`, `float32+spe8`. Writes --output (default
benchmarks/results/train_throughput.json, or train_scaling.json with
--scaling): environment, peaks, rows, FLOP checks and targets.
"""

import dataclasses
import json
import os
import subprocess
import sys
import tempfile
import time
import warnings

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from benchmarks import families, profiling, reporting, timing  # noqa: E402

import numpy as np  # noqa: E402

@dataclasses.dataclass(frozen=True)
class Variant:
    """A precision policy, XLA on or off, batches per compiled call, and which kernels.

    `keras_kernels`: build and compile with the plain Keras classes in place of
    kerasvision's fused ones (FusedAdam, FusedBatchNormalization, MatmulConv2D),
    the baseline of their speed-up (`kerasvision.kernels.use_fused(False)`).
    """

    precision: str = "float32"
    xla: bool = False
    steps_per_execution: int = 1
    keras_kernels: bool = False

    @property
    def name(self):
        parts = [self.precision]
        if self.xla:
            parts.append("xla")
        if self.steps_per_execution > 1:
            parts.append(f"spe{self.steps_per_execution}")
        if self.keras_kernels:
            parts.append("keras")
        return "+".join(parts)

    @classmethod
    def parse(cls, text):
        """`precision[+xla][+spe<N>][+keras]` (aliases f32, bf16) -> Variant; ValueError otherwise."""
        aliases = {"f32": "float32", "float32": "float32",
                   "bf16": "mixed_bfloat16", "mixed_bfloat16": "mixed_bfloat16"}
        precision, *options = text.strip().split("+")
        if precision not in aliases:
            raise ValueError(f"variant {text!r}: precision must be one of {sorted(aliases)}")
        xla, steps, keras_kernels = False, 1, False
        for option in options:
            if option == "xla":
                xla = True
            elif option == "keras":
                keras_kernels = True
            elif option.startswith("spe") and option[3:].isdigit() and int(option[3:]) >= 1:
                steps = int(option[3:])
            else:
                raise ValueError(f"variant {text!r}: unknown option {option!r} "
                                 "(use +xla, +spe<N> and +keras)")
        return cls(aliases[precision], xla, steps, keras_kernels)


def default_variants(family, smoke):
    """float32 with XLA off and on, float32 with the plain Keras kernels, mixed_bfloat16,
    and float32+spe4 for short-step families.

    mixed_bfloat16+xla is left to `--variants`: one more XLA compilation per
    family (tens of seconds to minutes on 2 cores) would push the default run
    past its time budget.
    """
    if smoke:  # every knob once, at the least cost
        return [Variant(), Variant("mixed_bfloat16", True, 2, keras_kernels=True)]
    names = ["float32", "float32+keras", "float32+xla", "mixed_bfloat16"]
    if family.short_steps:
        names.insert(2, "float32+spe4")
    return [Variant.parse(name) for name in names]


# ---------------------------------------------------------------------------
# Measuring one configuration
# ---------------------------------------------------------------------------


def _call_timer():
    import keras

    class CallTimer(keras.callbacks.Callback):
        """Wall time of each call of the compiled train function (one per execution)."""

        def __init__(self):
            super().__init__()
            self.times, self._start = [], None

        def on_train_batch_begin(self, batch, logs=None):
            self._start = time.perf_counter()

        def on_train_batch_end(self, batch, logs=None):
            self.times.append(time.perf_counter() - self._start)

    return CallTimer()


def measure_training(model, data, steps_per_execution=1, warmup=1, repeats=3):
    """Times `model.fit`'s compiled step on one in-memory batch, repeated.

    The first call (tracing, XLA compilation when on, one execution) runs in
    a `fit` of its own; its time is reported apart, and memory is measured
    only over the second `fit`, so that tracing's memory is not counted.

    Args:
        model: a compiled model (or generative trainer).
        data: one batch as `fit` takes it: `(images, targets)` or `images`.
        steps_per_execution: batches per call (as compiled).
        warmup: untimed calls after the first.
        repeats: timed calls.

    Returns:
        dict: `first_call_s`, `step_s` (median call time / steps per call),
        `call_times_s`, `peak_memory_mb` (above the memory before the timed
        calls) and `memory_method`.
    """
    import tensorflow as tf

    dataset = tf.data.Dataset.from_tensors(data).repeat()
    if hasattr(model, "optimizer") and model.optimizer is not None and not model.optimizer.built:
        # Built now, so that optimizer slots count as resting memory, not as the step's.
        model.optimizer.build(model.trainable_variables)
    timer = _call_timer()
    model.fit(dataset, epochs=1, steps_per_epoch=steps_per_execution, verbose=0,
              shuffle=False, callbacks=[timer])
    first_call = timer.times[0]
    timer.times.clear()
    meter = timing.PeakMemory().start()
    model.fit(dataset, epochs=1, steps_per_epoch=steps_per_execution * (warmup + repeats),
              verbose=0, shuffle=False, callbacks=[timer])
    peak_mb = meter.stop()
    timed = timer.times[warmup:]
    return {
        "first_call_s": first_call,
        "step_s": float(np.median(timed)) / steps_per_execution,
        "call_times_s": timed,
        "peak_memory_mb": peak_mb,
        "memory_method": meter.method,
    }


def train_step_flops(model, specs):
    """Profiler FLOPs of one training step: `model.train_step` traced on static shapes."""
    return profiling.trace_flops(model.train_step, *specs)


def forward_flops_check(networks):
    """Forward FLOPs per image: TensorFlow's profiler vs `kerasvision.flops.summary`.

    Returns:
        dict with `profiler_gflop`, `kerasvision_gflop` and their `ratio`
        (summed over the family's networks), or None when there is nothing to compare.
    """
    import tensorflow as tf

    from kerasvision.flops import summary

    if not networks:
        return None
    profiler, ours = 0, 0
    for network in networks:
        shape = tuple(network.inputs[0].shape[1:])
        spec = tf.TensorSpec((1, *shape), network.inputs[0].dtype)
        profiler += profiling.trace_flops(lambda x, n=network: n(x, training=False), spec)["total"]
        ours += summary(network, print_fn=None).total_flops
    return {"profiler_gflop": profiler / 1e9, "kerasvision_gflop": ours / 1e9,
            "ratio": reporting.ratio(profiler, ours)}


def estimated_flops(model, batch_size):
    """Training FLOPs per step as 3x the forward pass (`kerasvision.flops`) times the batch.

    Forward, gradient of the inputs and gradient of the weights each cost
    about one forward pass; the profiler's counts of the supervised families
    bear this out (`train_over_forward` in the main run's FLOP checks, ~3).
    Used by `--scaling`, where tracing the step again at every point would
    double the sweep's time.
    """
    from kerasvision.flops import summary

    forward = summary(model, print_fn=None).total_flops
    return {"total": 3 * forward * batch_size, "matmul_like": None, "by_op": {},
            "uncounted_calls": 0}


def run_configuration(family, variant, image_size, batch_size, args, flops_cache,
                      flops_source="profiler"):
    """Builds, compiles and times one (family, variant, size, batch); returns a row dict.

    `flops_source`: "profiler" (the traced step, see `train_step_flops`) or
    "estimate" (`estimated_flops`, single-input models only).
    """
    import keras

    row = {"family": family.name, "variant": variant.name, "precision": variant.precision,
           "xla": variant.xla, "steps_per_execution": variant.steps_per_execution,
           "keras_kernels": variant.keras_kernels, "image_size": image_size,
           "batch_size": batch_size}
    keras.backend.clear_session()
    timing.release_free_memory()
    keras.mixed_precision.set_global_policy(variant.precision)
    keras.utils.set_random_seed(args.seed)
    try:
        with profiling.fused_kernels(not variant.keras_kernels):
            return _time_configuration(family, variant, image_size, batch_size, args,
                                       flops_cache, flops_source, row)
    finally:
        keras.mixed_precision.set_global_policy("float32")


def _time_configuration(family, variant, image_size, batch_size, args, flops_cache,
                        flops_source, row):
    try:
        model = family.build(image_size, args.smoke)
        with warnings.catch_warnings():
            # Keras warns and falls back when a layer cannot be XLA-compiled
            # (the random augmentation layers); the row records it instead.
            warnings.filterwarnings("ignore", message=".*jit_compile.*")
            family.compile(model, variant.xla, variant.steps_per_execution)
        row["xla_effective"] = bool(model.jit_compile)
        if variant.xla and not row["xla_effective"]:
            row["note"] = "Keras ran it without XLA: a layer of the model does not support it"
        data, specs = families.make_batch(family.kind, image_size, batch_size, args.seed,
                                          model=model)
        timing = measure_training(model, data, variant.steps_per_execution,
                                  args.warmup, args.repeats)
        key = (family.name, image_size, batch_size)
        if flops_source == "estimate":
            flops_cache[key] = estimated_flops(model, batch_size)
        elif key not in flops_cache:
            # After fit: every optimizer and metric variable exists, so tracing
            # the step creates none. Traced without XLA: the count is the
            # graph's, the same for every variant.
            flops_cache[key] = train_step_flops(model, specs)
            if args.check_flops and family.name not in flops_cache.get("checks", {}):
                flops_cache.setdefault("checks", {})[family.name] = forward_flops_check(
                    family.networks(model))
        flops = flops_cache[key]
    except Exception as error:  # one failing variant (say, XLA) must not end the run
        row["error"] = reporting.describe_error(error)
        print(f"  {family.name} {variant.name}: failed: {row['error']}", flush=True)
        return row
    step_s = timing["step_s"]
    gflop = flops["total"] / 1e9
    row.update({
        "images_per_second": batch_size / step_s,
        "step_ms": 1e3 * step_s,
        "first_call_s": timing["first_call_s"],
        "call_times_s": timing["call_times_s"],
        "gflop_per_step": gflop,
        "flops_source": flops_source,
        "gflop_per_step_matmul_like": (None if flops["matmul_like"] is None
                                       else flops["matmul_like"] / 1e9),
        "flops_by_op": {k: v for k, v in list(flops["by_op"].items())[:8]},
        "uncounted_function_calls": flops["uncounted_calls"],
        "gflops": gflop / step_s,
        "peak_memory_mb": timing["peak_memory_mb"],
        "memory_method": timing["memory_method"],
    })
    return row


def add_peak_shares(rows, peaks):
    """Adds the shares of the matmul peaks, and the speed-ups within each family."""
    for row in rows:
        if "gflops" in row:
            row["pct_float32_peak"] = 100 * row["gflops"] / peaks["float32"]["gflops"]
            row["pct_bfloat16_peak"] = 100 * row["gflops"] / peaks["bfloat16"]["gflops"]

    keras_rows = [row for row in rows if not row["variant"].startswith("torch")]

    def speed_of(row, **changes):
        """Images/s of the Keras row like `row` but for `changes`, or None."""
        keys = ("family", "precision", "xla", "steps_per_execution", "keras_kernels",
                "batch_size", "image_size")
        wanted = {key: changes.get(key, row.get(key)) for key in keys}
        for other in keras_rows:
            if all(other.get(key) == value for key, value in wanted.items()):
                return other.get("images_per_second")
        return None

    for row in rows:
        # "*": XLA was asked for but Keras ran without it (see the row's note).
        unsupported = row.get("xla") and row.get("xla_effective") is False
        row["label"] = row["variant"] + ("*" if unsupported else "")
    for row in keras_rows:
        if "images_per_second" not in row:
            continue
        speed = row["images_per_second"]
        row["vs_float32"] = reporting.ratio(speed, speed_of(
            row, precision="float32", xla=False, steps_per_execution=1, keras_kernels=False))
        if row["xla"]:
            row["vs_xla_off"] = reporting.ratio(speed, speed_of(row, xla=False))


# ---------------------------------------------------------------------------
# The PyTorch peer
# ---------------------------------------------------------------------------

TORCH_MISSING = "torch not installed: pip install torch torchvision to compare"


def run_torch_peer(args, image_size, batch_size):
    """Runs benchmarks/torch_peer.py under `--torch-python`; returns its rows (or [])."""
    python = args.torch_python or sys.executable
    probe = subprocess.run([python, "-c", "import torch"], capture_output=True)
    if probe.returncode != 0:
        print(TORCH_MISSING)
        return []
    script = os.path.join(os.path.dirname(os.path.abspath(__file__)), "torch_peer.py")
    with tempfile.TemporaryDirectory() as directory:
        output = os.path.join(directory, "peer.json")
        command = [python, script, "--image-size", str(image_size), "--batch-size", str(batch_size),
                   "--warmup", str(args.warmup), "--repeats", str(args.repeats),
                   "--output", output]
        print("torch peer: " + " ".join(command[1:]), flush=True)
        done = subprocess.run(command, capture_output=True, text=True)
        if done.returncode != 0:
            print(f"torch peer failed:\n{done.stderr.strip()[-2000:]}")
            return []
        print(done.stdout.strip())
        with open(output) as handle:
            payload = json.load(handle)
    rows = []
    for result in payload["rows"]:
        gflop = result["flops_per_step"] / 1e9 if result.get("flops_per_step") else None
        rows.append({
            "family": "unet_resnet50",
            "variant": f"torch {result['precision']} {result['memory_format']}",
            "precision": result["precision"], "xla": False, "steps_per_execution": 1,
            "image_size": image_size, "batch_size": batch_size,
            "images_per_second": batch_size / result["step_s"],
            "step_ms": 1e3 * result["step_s"],
            "first_call_s": result["first_call_s"],
            "gflop_per_step": gflop,
            "gflops": gflop / result["step_s"] if gflop else None,
            "peak_memory_mb": result.get("peak_memory_mb"),
            "peer": payload["environment"],
        })
    return rows


# ---------------------------------------------------------------------------
# Targets
# ---------------------------------------------------------------------------


def _best(rows, family, precision):
    candidates = [r for r in rows if r["family"] == family and r.get("precision") == precision
                  and "images_per_second" in r and not r["variant"].startswith("torch")]
    return max(candidates, key=lambda r: r["images_per_second"], default=None)


def _plain(rows, family, precision):
    for row in rows:
        if (row["family"], row["variant"]) == (family, precision) and "images_per_second" in row:
            return row
    return None


def evaluate_targets(rows):
    """The issue's training targets, checked against this run's rows.

    Returns:
        list of dicts: `target`, `value`, `threshold`, `met` (None when not
        measured) and `detail` (which rows were compared).
    """
    targets = []

    def add(text, value, threshold, detail):
        met = None if value is None else bool(value >= threshold)
        targets.append({"target": text, "value": value, "threshold": threshold, "met": met,
                        "detail": detail})

    for family in ("fcn8s_vgg16", "unet_resnet50"):
        best = _best(rows, family, "float32")
        add(f"{family}: float32 training >= 85% of the float32 matmul peak",
            best["pct_float32_peak"] / 100 if best else None, 0.85,
            f"fastest float32 variant: {best['variant']}" if best else "")
    for family in ("dcgan", "wgan_gp", "diffusion"):
        best = _best(rows, family, "float32")
        add(f"{family}: float32 step >= 80% of the float32 matmul peak",
            best["pct_float32_peak"] / 100 if best else None, 0.80,
            f"fastest float32 variant: {best['variant']}" if best else "")
    for family in ("fcn8s_vgg16", "unet_resnet50"):
        bf16, f32 = _plain(rows, family, "mixed_bfloat16"), _plain(rows, family, "float32")
        value = bf16["images_per_second"] / f32["images_per_second"] if bf16 and f32 else None
        add(f"{family}: mixed_bfloat16 >= 1.6x float32 (both XLA off)", value, 1.6,
            "mixed_bfloat16 vs float32 rows")
    peer = [r for r in rows if r["variant"].startswith("torch bfloat16")]
    keras_bf16 = _best(rows, "unet_resnet50", "mixed_bfloat16")
    value = None
    if peer and keras_bf16:
        value = keras_bf16["images_per_second"] / peer[0]["images_per_second"]
    add("unet_resnet50: mixed_bfloat16 >= 1.0x PyTorch U-Net bf16 channels-last", value, 1.0,
        f"fastest Keras bf16 variant ({keras_bf16['variant']}) vs {peer[0]['variant']}"
        if value is not None else "run with --peer torch and a mixed_bfloat16 variant")
    return targets


def print_targets(targets):
    """One line per target: measured value, threshold and whether this run meets it."""
    print("\ntargets (this run):")
    for target in targets:
        if target["value"] is None:
            verdict, value = "not measured", "-"
        else:
            verdict = "met" if target["met"] else "NOT met"
            value = f"{target['value']:.2f}"
        detail = f" [{target['detail']}]" if target["detail"] else ""
        print(f"  {target['target']}: {value} (>= {target['threshold']}) {verdict}{detail}")


# ---------------------------------------------------------------------------
# Main
# ---------------------------------------------------------------------------

TABLE_COLUMNS = [
    ("family", "model", "s"),
    ("label", "variant", "s"),
    ("batch_size", "batch", "d"),
    ("image_size", "size", "d"),
    ("images_per_second", "img/s", ".2f"),
    ("step_ms", "step ms", ".1f"),
    ("first_call_s", "1st call s", ".1f"),
    ("gflop_per_step", "GFLOP/step", ".2f"),
    ("gflops", "GFLOP/s", ".1f"),
    ("pct_float32_peak", "% f32 peak", ".1f"),
    ("pct_bfloat16_peak", "% bf16 peak", ".1f"),
    ("vs_float32", "x f32", ".2f"),
    ("vs_xla_off", "x XLA-off", ".2f"),
    ("peak_memory_mb", "peak MB", ".0f"),
]
SCALING_COLUMNS = [
    ("family", "model", "s"),
    ("image_size", "size", "d"),
    ("batch_size", "batch", "d"),
    ("step_ms", "step ms", ".1f"),
    ("ms_per_image", "ms/img", ".1f"),
    ("ms_per_megapixel", "ms/Mpx", ".0f"),
    ("images_per_second", "img/s", ".2f"),
    ("gflop_per_step", "GFLOP/step", ".1f"),
    ("gflops", "GFLOP/s", ".1f"),
    ("pct_float32_peak", "% f32 peak", ".1f"),
    ("peak_memory_mb", "peak MB", ".0f"),
    ("mb_per_image", "MB/img", ".1f"),
]


def parse_args(argv):
    parser = reporting.new_parser(__doc__)
    reporting.add_common_flags(parser, "train_throughput.json")
    parser.add_argument("--families", default=None,
                        help="comma-separated subset of " + ", ".join(families.FAMILIES)
                        + " (default: all; with --scaling: " + ", ".join(families.SCALING_FAMILIES)
                        + "; with --smoke: cnn_classifier)")
    parser.add_argument("--variants", default=None,
                        help="comma-separated precision[+xla][+spe<N>] (default: float32, "
                        "float32+xla, mixed_bfloat16, and float32+spe4 for cnn_classifier and "
                        "dcgan)")
    parser.add_argument("--batch-size", type=int, default=None,
                        help="batch size for every family (default: each family's own)")
    parser.add_argument("--image-size", type=int, default=None,
                        help="image side for every family (default: each family's own)")
    parser.add_argument("--matmul-size", type=int, default=None,
                        help="side of the square matrices of the peak measurement (default 2048)")
    parser.add_argument("--no-flops-check", dest="check_flops", action="store_false",
                        help="skip the profiler vs kerasvision.flops cross-check")
    parser.add_argument("--seed", type=int, default=0)
    scaling = parser.add_argument_group("scaling (--scaling)")
    scaling.add_argument("--scaling", action="store_true",
                         help="FCN-8s and U-Net over image sizes and batch sizes instead")
    scaling.add_argument("--scaling-sizes", default=None,
                         help="image sides at --scaling-batch (default 128,256,512), "
                         "multiples of 32")
    scaling.add_argument("--scaling-batch", type=int, default=None, help="default 2")
    scaling.add_argument("--scaling-batches", default=None,
                         help="batch sizes at --scaling-size (default 1,2,8,32)")
    scaling.add_argument("--scaling-size", type=int, default=None, help="default 128")
    scaling.add_argument("--scaling-variant", default="float32", help="default float32")
    peer = parser.add_argument_group("PyTorch peer")
    peer.add_argument("--peer", choices=("none", "torch"), default="none",
                      help="torch: also time a PyTorch U-Net/ResNet50 in bfloat16 autocast, "
                      "channels-last (needs torch under --torch-python)")
    peer.add_argument("--torch-python", default=None,
                      help="Python interpreter that has torch (default: this one)")
    args = parser.parse_args(argv)

    if args.scaling:
        reporting.check_counts(parser, args, warmup=0, repeats=2)
    else:
        reporting.check_counts(parser, args, warmup=0 if args.smoke else 1,
                            repeats=1 if args.smoke else 3)
    reporting.resolve_output(args, "train_scaling.json" if args.scaling else "train_throughput.json")
    # --smoke measures the cheapest family by default (both tables run the
    # same code for every family); the others by --families.
    if args.smoke:
        default_families = ["cnn_classifier"]
    else:
        default_families = list(families.SCALING_FAMILIES if args.scaling else families.FAMILIES)
    args.families = (reporting.parse_list(parser, "--families", args.families, tuple(families.FAMILIES))
                     if args.families else default_families)
    if args.variants:
        try:
            args.variants = [Variant.parse(v) for v in reporting.parse_list(
                parser, "--variants", args.variants)]
        except ValueError as error:
            parser.error(f"--variants: {error}")
    try:
        args.scaling_variant = Variant.parse(args.scaling_variant)
    except ValueError as error:
        parser.error(f"--scaling-variant: {error}")
    for flag in ("batch_size", "image_size", "scaling_batch", "scaling_size"):
        value = getattr(args, flag)
        if value is not None and value < 1:
            parser.error(f"--{flag.replace('_', '-')} must be >= 1; received {value}")
    args.matmul_size = args.matmul_size or (256 if args.smoke else 2048)
    smoke = args.smoke
    args.scaling_sizes = reporting.parse_list(
        parser, "--scaling-sizes", args.scaling_sizes or ("32" if smoke else "128,256,512"),
        cast=int)
    args.scaling_batches = reporting.parse_list(
        parser, "--scaling-batches", args.scaling_batches or ("1,2" if smoke else "1,2,8,32"),
        cast=int)
    args.scaling_batch = args.scaling_batch or (1 if smoke else 2)
    args.scaling_size = args.scaling_size or (32 if smoke else 128)
    if set(args.families) & {"transfer_resnet50", "fcn8s_vgg16", "unet_resnet50",
                             *families.DETECTION_FAMILIES}:
        sizes = [args.image_size or 32]
        if args.scaling:
            sizes += [*args.scaling_sizes, args.scaling_size]
        for size in sizes:
            if size % 32:
                parser.error(f"image sizes must be multiples of 32 (the backbones' stride); "
                             f"received {size}")
    return args


def run_families(args):
    """The main table: every family and variant at its realistic (or --smoke) size."""
    rows, flops_cache = [], {}
    for name in args.families:
        family = families.FAMILIES[name]
        size = args.image_size or (family.smoke_image_size if args.smoke else family.image_size)
        batch = args.batch_size or (family.smoke_batch_size if args.smoke else family.batch_size)
        for variant in args.variants or default_variants(family, args.smoke):
            start = time.perf_counter()
            row = run_configuration(family, variant, size, batch, args, flops_cache)
            rows.append(row)
            check = flops_cache.get("checks", {}).get(name)
            if check and "gflop_per_step" in row and family.kind != "generative":
                # Training step / forward pass, both from the profiler: ~3 expected.
                check["train_over_forward"] = row["gflop_per_step"] / (
                    batch * check["profiler_gflop"])
            if "error" not in row:
                print(f"  {name} {variant.name} b{batch} {size}px: "
                      f"{row['images_per_second']:.2f} img/s, {row['step_ms']:.0f} ms/step "
                      f"({time.perf_counter() - start:.0f} s)", flush=True)
    return rows, flops_cache.get("checks", {})


def run_scaling(args):
    """FCN-8s and U-Net: an image-size sweep at one batch, a batch sweep at one size."""
    points = [(size, args.scaling_batch) for size in args.scaling_sizes]
    points += [(args.scaling_size, batch) for batch in args.scaling_batches
               if (args.scaling_size, batch) not in points]
    rows, flops_cache = [], {}
    for name in args.families:
        for size, batch in points:
            start = time.perf_counter()
            row = run_configuration(families.FAMILIES[name], args.scaling_variant, size, batch, args,
                                    flops_cache, flops_source="estimate")
            if "step_ms" in row:
                row["ms_per_image"] = row["step_ms"] / batch
                row["ms_per_megapixel"] = row["step_ms"] / (batch * size * size / 1e6)
                if row.get("peak_memory_mb") is not None:
                    row["mb_per_image"] = row["peak_memory_mb"] / batch
                print(f"  {name} {size}px b{batch}: {row['ms_per_image']:.0f} ms/img, "
                      f"peak {row['peak_memory_mb'] or 0:.0f} MB "
                      f"({time.perf_counter() - start:.0f} s)", flush=True)
            rows.append(row)
    return rows


def run_benchmark(args):
    """Runs the benchmark for parsed flags; returns the JSON payload."""
    started = time.perf_counter()
    env = timing.environment()
    timing.warn_if_busy(env)
    peak_options = dict(size=args.matmul_size, warmup=1 if args.smoke else 2,
                        repeats=3 if args.smoke else 7)
    peaks_before = timing.measure_peaks(**peak_options)
    payload = {"benchmark": "train_scaling" if args.scaling else "train_throughput",
               "environment": env, "config": reporting.args_dict(args)}
    payload["config"]["variants"] = [v.name for v in args.variants] if args.variants else "default"
    payload["config"]["scaling_variant"] = args.scaling_variant.name

    if args.scaling:
        args.check_flops = False
        rows = run_scaling(args)
        peaks = timing.higher_peaks(peaks_before, timing.measure_peaks(**peak_options, verbose=False))
        payload["peaks"] = peaks
        add_peak_shares(rows, peaks)
        print()
        print(f"scaling, {args.scaling_variant.name}: image sizes at batch {args.scaling_batch}, "
              f"batch sizes at {args.scaling_size}px; GFLOP/step = 3 x forward "
              "(kerasvision.flops) x batch; peak MB is resident memory above the model's "
              "before the timed steps")
        print(reporting.format_table(rows, SCALING_COLUMNS))
        payload["rows"] = rows
    else:
        rows, checks = run_families(args)
        if args.peer == "torch":
            unet = families.FAMILIES["unet_resnet50"]
            size = args.image_size or (unet.smoke_image_size if args.smoke else unet.image_size)
            batch = args.batch_size or (unet.smoke_batch_size if args.smoke else unet.batch_size)
            rows += run_torch_peer(args, size, batch)
        peaks = timing.higher_peaks(peaks_before, timing.measure_peaks(**peak_options, verbose=False))
        payload["peaks"] = peaks
        add_peak_shares(rows, peaks)
        print()
        print(f"training throughput: median of {args.repeats} timed calls after {args.warmup} "
              f"warm-up; matmul peaks float32 {peaks['float32']['gflops']:.1f}, bfloat16 "
              f"{peaks['bfloat16']['gflops']:.1f} GFLOP/s")
        print(reporting.format_table(rows, TABLE_COLUMNS))
        for row in rows:
            if "error" in row:
                print(f"failed: {row['family']} {row['variant']}: {row['error']}")
            elif row.get("note"):
                print(f"* {row['family']} {row['variant']}: {row['note']}")
        for name, check in checks.items():
            if check:
                print(f"FLOPs check {name}: forward pass per image, profiler "
                      f"{check['profiler_gflop']:.3f} vs kerasvision.flops "
                      f"{check['kerasvision_gflop']:.3f} GFLOP (ratio {check['ratio']:.3f})"
                      + (f"; training step = {check['train_over_forward']:.2f} x batch x forward"
                         if check.get("train_over_forward") else ""))
        payload["rows"], payload["flops_checks"] = rows, checks
        payload["targets"] = evaluate_targets(rows)
        print_targets(payload["targets"])
    return reporting.finish_run(payload, args.output, started)


def main(argv=None):
    """Parses `argv` (None: the command line), runs, prints the table and writes the JSON."""
    args = parse_args(argv)
    with profiling.quiet_tensorflow():
        return run_benchmark(args)


if __name__ == "__main__":
    main()
