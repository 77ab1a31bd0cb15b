"""Segmentation quality of every segmenter at one training budget: mIoU, Dice, cost and speed.

Trains each segmenter the way its recipe trains it from random weights (no
ImageNet file is needed, so every row starts alike):

- fcn32s, fcn16s, fcn8s: `recipes/fcn_transfer.py`, VGG16 from random
  weights, fc6/fc7 at the recipe's random-weights default of 1024 units,
  transposed-convolution upsampling, dropout 0.5; Adam at 8.5e-4, batch 16;
- unet: `recipes/unet.py`, the paper's encoder from scratch (depth 4, 16
  filters); Adam at 1e-3, batch 16;
- unet_resnet50: `recipes/unet.py --backbone resnet50 --weights none`;
- deeplabv3plus: `recipes/deeplabv3plus.py`, its default small encoder from
  scratch at output stride 8, ASPP rates 2/4/6, ASPP and decoder 128 wide;
  Adam at 2e-3, batch 16;
- segnet: `recipes/segnet.py`, VGG16's layout from scratch 16 filters wide,
  max-unpooling decoder, XLA off (no argmax-pooling kernel); Adam at 1e-3,
  batch 16.

Each uses its recipe's loss (cross-entropy + soft Dice), data (the embedded
shapes scenes at 64x64: 2048 training scenes with flips and small zooms, 512
validation scenes scored after every epoch as the recipe does; no download),
epoch cap (deeplabv3plus 100, fcn 30, segnet 15, the U-Nets 10) and schedule
(`WarmupCosineToBudget`: warm-up, hold, then a cosine decay to zero over the
last 35% of the epochs or of the budget, whichever ends first), in the
recipe's precision (`--precision auto`: mixed_bfloat16 where the CPU has
native bfloat16, else float32; each row records its policy). Every model gets
the same wall-clock budget (`--budget-minutes`, counted from the start of
`fit`, tracing and per-epoch validation included, as the recipes count it);
a model whose epoch cap comes first stops there, as its recipe would
(`--epochs N` gives every model the same cap, e.g. a large one so that only
the budget ends training). `--image-size` and `--batch-size`, when given,
replace every recipe's default; otherwise each row uses its recipe's.

Then, per model:

- `miou`, `dice`: mean IoU and mean Dice of the final weights on held-out
  scenes (the "test" stream, which no run selects on; `--eval-images`);
- `epochs_to_target`, `seconds_to_target`: the first epoch whose validation
  mIoU reaches `--target-miou` (0.80) and the seconds from the start of `fit`
  to the end of that epoch (its validation included); blank if never;
- `parameters`, `gflops`: weights, and FLOPs per image at the training size
  (`kerasvision.flops.summary`: 2 per multiply-accumulate);
- `train_img_s`: training images per second over the timed epochs (all but
  the first, which traces; with a single epoch, all its steps but the first);
- `latency_ms`: batch-1 latency of the exported SavedModel
  (`kerasvision.export.export_image_model`, the recipes' export; its
  `serving_default` signature, uint8 images in, probabilities and class ids
  out): the median of `--latency-calls` calls after `--warmup` untimed ones,
  the first (tracing) call reported apart.

The table is followed by the fastest model to reach the target mIoU (fewest
seconds), or a line saying none did. A model that fails gets a row with its
error.

Run (times for 2 quiet cores):
    python benchmarks/segmentation_quality.py                    # 5 min per model, ~40 min
    python benchmarks/segmentation_quality.py --budget-minutes 10 --models unet,deeplabv3plus
    python benchmarks/segmentation_quality.py --smoke            # 2 steps on 8 scenes (tests)

Writes --output (default benchmarks/results/segmentation_quality.json): the
environment (CPU model and flags, versions, load), the flags, the date and
one row per model with its per-epoch validation mIoU. `--smoke` runs the
same code at toy sizes: it checks the script works, its numbers mean nothing.
"""

import os
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import numpy as np

from benchmarks import profiling, reporting, timing

NUM_CLASSES = 5  # the shapes scenes' classes (SHAPES_CLASS_NAMES), background included

# Each recipe's defaults (its parser's), from random weights. `builder` names
# the function and `options` its keyword arguments besides the classes, the
# input shape and the weights.
RECIPES = {
    **{
        f"fcn{variant}": {
            "builder": "fcn",
            "options": {"backbone": "vgg16", "variant": variant, "fc_units": 1024,
                        "upsampling": "transpose", "dropout": 0.5},
            "image_size": 64, "batch_size": 16, "learning_rate": 8.5e-4, "epochs": 30, "xla": True,
        }
        for variant in ("32s", "16s", "8s")
    },
    "unet": {
        "builder": "unet",
        "options": {"backbone": None, "depth": 4, "filters": 16, "upsampling": "transpose"},
        "image_size": 64, "batch_size": 16, "learning_rate": 1e-3, "epochs": 10, "xla": True,
    },
    "unet_resnet50": {
        "builder": "unet",
        "options": {"backbone": "resnet50", "depth": 4, "filters": 16, "upsampling": "transpose"},
        "image_size": 64, "batch_size": 16, "learning_rate": 1e-3, "epochs": 10, "xla": True,
    },
    "deeplabv3plus": {
        "builder": "deeplabv3plus",
        "options": {"backbone": None, "output_stride": 8, "atrous_rates": (2, 4, 6),
                    "aspp_filters": 128, "decoder_filters": 128},
        "image_size": 64, "batch_size": 16, "learning_rate": 2e-3, "epochs": 100, "xla": True,
    },
    # The argmax pooling has no XLA kernel: the recipe keeps XLA off.
    "segnet": {
        "builder": "segnet",
        "options": {"backbone": None, "filters": 16},
        "image_size": 64, "batch_size": 16, "learning_rate": 1e-3, "epochs": 15, "xla": False,
    },
}
DEFAULT_MODELS = tuple(RECIPES)

# --smoke's defaults; flags given explicitly still win. Two optimizer steps on
# 8 scenes of 64 px exercise the whole path (schedule, budget, per-epoch
# validation, scoring, FLOPs, export and its timing) without meaning anything.
# The budget is generous so that the step cap, not a loaded machine's slow
# tracing, ends training.
SMOKE_DEFAULTS = {
    "image_size": 64, "batch_size": 4, "train_images": 8, "val_images": 4, "eval_images": 4,
    "max_steps": 2, "latency_calls": 2, "budget_minutes": 10.0,
}


def parse_args(argv):
    """Parses the flags; `--smoke` swaps in `SMOKE_DEFAULTS` for the flags not given."""
    from kerasvision.losses import SEGMENTATION_LOSSES

    parser = reporting.new_parser(__doc__)
    reporting.add_common_flags(parser, "segmentation_quality.json")
    parser.add_argument("--models", default=",".join(DEFAULT_MODELS),
                        help="comma-separated subset of " + ", ".join(RECIPES))
    parser.add_argument("--budget-minutes", type=float, default=5.0,
                        help="training wall-clock per model from the start of fit, tracing and "
                        "per-epoch validation included (default 5)")
    parser.add_argument("--image-size", type=int, default=None,
                        help="square side for every model, a multiple of 32 (default: each "
                        "recipe's, 64)")
    parser.add_argument("--batch-size", type=int, default=None,
                        help="training batch for every model (default: each recipe's, 8 for "
                        "FCN, 16 for the others)")
    parser.add_argument("--epochs", type=int, default=None,
                        help="epoch cap for every model (default: each recipe's; the budget "
                        "may end training first)")
    parser.add_argument("--train-images", type=int, default=2048,
                        help="training scenes (default 2048, the recipes')")
    parser.add_argument("--val-images", type=int, default=512,
                        help="validation scenes scored after every epoch (default 512, the "
                        "recipes')")
    parser.add_argument("--eval-images", type=int, default=512,
                        help="held-out scenes scored after training (default 512)")
    parser.add_argument("--target-miou", type=float, default=0.80,
                        help="validation mIoU whose first epoch is reported (default 0.80)")
    parser.add_argument("--loss", choices=SEGMENTATION_LOSSES, default="ce+dice",
                        help="training loss (the recipes': ce+dice)")
    parser.add_argument("--decay-fraction", type=float, default=0.35,
                        help="final share of training over which the rate decays (the recipes')")
    parser.add_argument("--max-steps", type=int, default=None,
                        help="stop after this many optimizer steps (one epoch); --smoke: 2")
    parser.add_argument("--no-augment", dest="augment", action="store_false",
                        help="train without the recipes' flips and zooms")
    parser.add_argument("--latency-calls", type=int, default=20,
                        help="timed batch-1 calls of the export (default 20; --smoke 2)")
    parser.add_argument("--precision", default="auto",
                        choices=("float32", "mixed_bfloat16", "auto"),
                        help="dtype policy (auto, the recipes': mixed_bfloat16 where the CPU "
                        "computes bfloat16 natively, else float32)")
    parser.add_argument("--seed", type=int, default=0)
    # Parsed twice: the smoke defaults must be in place before the real parse
    # so that flags given explicitly override them.
    if parser.parse_known_args(argv)[0].smoke:
        parser.set_defaults(**SMOKE_DEFAULTS)
    args = parser.parse_args(argv)
    reporting.check_counts(parser, args, warmup=0 if args.smoke else 3, repeats=1)
    reporting.resolve_output(args, "segmentation_quality.json")
    args.models = reporting.parse_list(parser, "--models", args.models, RECIPES)
    if args.image_size is not None and (args.image_size % 32 or args.image_size < 32):
        parser.error(f"--image-size must be a multiple of 32 (>= 32); received {args.image_size}")
    for flag in ("batch_size", "epochs", "max_steps"):
        if getattr(args, flag) is not None and getattr(args, flag) < 1:
            parser.error(f"--{flag.replace('_', '-')} must be >= 1; received {getattr(args, flag)}")
    for flag in ("train_images", "val_images", "eval_images", "latency_calls"):
        if getattr(args, flag) < 1:
            parser.error(f"--{flag.replace('_', '-')} must be >= 1; received {getattr(args, flag)}")
    if not args.budget_minutes > 0:
        parser.error(f"--budget-minutes must be > 0; received {args.budget_minutes}")
    if not 0.0 < args.target_miou <= 1.0:
        parser.error(f"--target-miou must be in (0, 1]; received {args.target_miou}")
    if not 0.0 < args.decay_fraction <= 1.0:
        parser.error(f"--decay-fraction must be in (0, 1]; received {args.decay_fraction}")
    return args


def settings(name, args):
    """The recipe's size, batch, learning rate, epoch cap and XLA switch, with the common overrides."""
    recipe = RECIPES[name]
    return {
        "image_size": args.image_size or recipe["image_size"],
        "batch_size": args.batch_size or recipe["batch_size"],
        "learning_rate": recipe["learning_rate"],
        "epochs": args.epochs or recipe["epochs"],
        "jit_compile": "auto" if recipe["xla"] else False,
    }


# ---------------------------------------------------------------------------
# Data, model, training, scoring, timing
# ---------------------------------------------------------------------------


def load_data(image_size, batch_size, args):
    """`(train, validation, held_out)`: batched `(images, masks)` pipelines, as the recipes make them."""
    from kerasvision.data import (
        build_segmentation_augmenter,
        load_shapes,
        make_segmentation_pipeline,
    )

    augmenter = (build_segmentation_augmenter(flip=True, zoom=0.1, seed=args.seed)
                 if args.augment else None)
    train = make_segmentation_pipeline(
        load_shapes("train", args.train_images, image_size, seed=args.seed), batch_size,
        training=True, augmenter=augmenter, seed=args.seed)
    validation, held_out = (
        make_segmentation_pipeline(load_shapes(split, count, image_size, seed=args.seed),
                                   batch_size, training=False)
        for split, count in (("validation", args.val_images), ("test", args.eval_images)))
    return train, validation, held_out


def build_model(name, image_size):
    """The recipe's network from random weights, everything trainable (its single phase)."""
    from kerasvision.backbones import get_backbone_spec, set_trainable_blocks
    from kerasvision.models.deeplab import build_deeplabv3plus
    from kerasvision.models.fcn import build_fcn
    from kerasvision.models.segnet import build_segnet
    from kerasvision.models.unet import build_unet

    recipe = RECIPES[name]
    builder = {"fcn": build_fcn, "unet": build_unet, "deeplabv3plus": build_deeplabv3plus,
               "segnet": build_segnet}[recipe["builder"]]
    model = builder(NUM_CLASSES, (image_size, image_size, 3), weights=None, **recipe["options"])
    backbone = recipe["options"].get("backbone")
    if backbone is not None:
        # As fit_two_phase does for a random backbone: every stage trains, and
        # BatchNorm too (there are no pretrained statistics to protect).
        set_trainable_blocks(model.get_layer("backbone"), backbone,
                             len(get_backbone_spec(backbone).blocks), keep_batch_norm_frozen=False)
    return model


def _epoch_clock():
    """A callback recording, per epoch, the training steps, their times and the validation mIoU."""
    import keras

    class EpochClock(keras.callbacks.Callback):
        """Per epoch: steps, begin / first-step / last-step / end times and `val_mean_iou`."""

        def __init__(self):
            super().__init__()
            self.epochs = []

        def on_train_begin(self, logs=None):
            self.started = time.perf_counter()

        def on_epoch_begin(self, epoch, logs=None):
            self.epochs.append({"begin": time.perf_counter(), "steps": 0})

        def on_train_batch_end(self, batch, logs=None):
            now, epoch = time.perf_counter(), self.epochs[-1]
            if epoch["steps"] == 0:
                epoch["first_step_end"] = now
            epoch["steps"] += 1
            epoch["last_step_end"] = now

        def on_epoch_end(self, epoch, logs=None):
            self.epochs[-1]["end"] = time.perf_counter()
            self.epochs[-1]["val_mean_iou"] = float((logs or {}).get("val_mean_iou", np.nan))

    return EpochClock()


def training_throughput(epochs, batch_size, images_per_epoch):
    """Training images/s over all epochs but the first (it traces); with one epoch, all its steps
    but the first. Validation time is left out: it runs after an epoch's last step.

    Returns:
        `(images per second or None, what was timed)`.
    """
    def images(steps):  # the last batch of a full epoch may be partial
        return min(steps * batch_size, images_per_epoch) if steps else 0

    timed = [epoch for epoch in epochs[1:] if epoch["steps"]]
    if timed:
        seconds = sum(epoch["last_step_end"] - epoch["begin"] for epoch in timed)
        count = sum(images(epoch["steps"]) for epoch in timed)
        return (count / seconds if seconds > 0 else None), f"epochs 2-{len(epochs)}"
    first = epochs[0] if epochs else {"steps": 0}
    if first["steps"] < 2:
        return None, "one step only"
    seconds = first["last_step_end"] - first["first_step_end"]
    count = images(first["steps"]) - batch_size
    return (count / seconds if seconds > 0 else None), "epoch 1 after its first step"


def train_for_budget(model, train, validation, config, args):
    """Fits a compiled segmenter until the budget, the step cap or the epoch cap; returns facts.

    The callbacks are the recipe's training ones without its checkpoints and
    resume backup: a benchmark row keeps the last weights (the schedule has
    annealed them), and its held-out scoring is outside the budget.
    """
    from kerasvision.training import (
        KeyPipelinesByEpoch,
        StopOnNonFiniteLoss,
        TimeBudget,
        WarmupCosineToBudget,
    )
    from kerasvision.training.callbacks import AMXConvolutionCheck

    steps_per_epoch = int(train.cardinality())
    epochs = config["epochs"]
    if args.max_steps is not None:
        steps_per_epoch, epochs = min(args.max_steps, steps_per_epoch), 1
    clock = _epoch_clock()
    started = time.time()
    deadline = started + 60 * args.budget_minutes
    schedule = WarmupCosineToBudget(config["learning_rate"], epochs * steps_per_epoch, deadline,
                                    decay_fraction=args.decay_fraction)
    budget = TimeBudget(deadline)
    # KeyPipelinesByEpoch: without it every epoch would repeat epoch 0's
    # shuffle order and augmentation draws (the pipeline keys them by epoch).
    model.fit(train, validation_data=validation, epochs=epochs, steps_per_epoch=steps_per_epoch,
              shuffle=False, verbose=0,
              callbacks=[schedule, KeyPipelinesByEpoch(), AMXConvolutionCheck(),
                         StopOnNonFiniteLoss(), budget, clock])
    train_seconds = time.time() - started
    curve = [epoch["val_mean_iou"] for epoch in clock.epochs]
    reached = next((index for index, value in enumerate(curve) if value >= args.target_miou), None)
    img_s, timed = training_throughput(clock.epochs, config["batch_size"], args.train_images)
    return {
        "train_minutes": train_seconds / 60,
        "epochs": len(clock.epochs),
        "steps": int(model.optimizer.iterations),
        "budget_expired": bool(budget.expired),
        "final_learning_rate": float(model.optimizer.learning_rate),
        "val_miou_per_epoch": curve,
        "best_val_miou": max(curve) if curve else None,
        "epochs_to_target": None if reached is None else reached + 1,
        "seconds_to_target": (None if reached is None
                              else clock.epochs[reached]["end"] - clock.started),
        "train_img_s": img_s,
        "train_img_s_timed": timed,
    }


def score(model, held_out):
    """Mean IoU, mean Dice and pixel accuracy on the held-out scenes."""
    from kerasvision.metrics import (
        mean_dice,
        mean_iou,
        pixel_accuracy,
        segmentation_confusion_matrix,
    )

    start = time.perf_counter()
    confusion = segmentation_confusion_matrix(model, held_out, NUM_CLASSES)
    return {"miou": mean_iou(confusion), "dice": mean_dice(confusion),
            "pixel_accuracy": pixel_accuracy(confusion),
            "eval_s": time.perf_counter() - start}


def cost(model, image_size):
    """Parameters and GFLOPs per image at the training size (`kerasvision.flops`)."""
    from kerasvision.flops import summary

    measured = summary(model, (image_size, image_size, 3), print_fn=None)
    return {"parameters": int(model.count_params()), "gflops": measured.total_flops / 1e9}


def time_export(model, image_size, args):
    """Exports the segmenter (`export_image_model`) and times batch-1 calls of `serving_default`."""
    import tensorflow as tf

    from kerasvision.data import make_shapes_scenes
    from kerasvision.export import export_image_model, load_export

    # One held-out scene as a client sends it: uint8 at the model's size.
    image = tf.constant(make_shapes_scenes(1, image_size, seed=args.seed, split="test")[0])
    with tempfile.TemporaryDirectory(prefix="kerasvision_segmentation_") as directory:
        start = time.perf_counter()
        path = export_image_model(model, directory)
        export_s = time.perf_counter() - start
        signature = load_export(path).signatures["serving_default"]
        start = time.perf_counter()
        signature(images=image)  # the first call of the loaded signature
        first_call_s = time.perf_counter() - start
        stats = timing.summarize_times(
            timing.time_calls(lambda: signature(images=image), args.warmup, args.latency_calls))
    return {"export_s": export_s, "latency_first_call_s": first_call_s,
            "latency_ms": 1e3 * stats["median_s"], "latency_p99_ms": 1e3 * stats["p99_s"]}


def run_model(name, args):
    """Builds, trains, scores, measures and times one segmenter; returns its row."""
    import keras

    from kerasvision.tasks.segmentation import compile_segmenter

    keras.backend.clear_session()
    # clear_session also resets the global dtype policy to float32: set the
    # run's policy again, or every model after the first would train in float32.
    keras.mixed_precision.set_global_policy(args.precision)
    timing.release_free_memory()
    keras.utils.set_random_seed(args.seed)
    config = settings(name, args)
    row = {"model": name, "image_size": config["image_size"], "batch_size": config["batch_size"],
           "learning_rate": config["learning_rate"], "epoch_cap": config["epochs"],
           "precision": args.precision}
    try:
        # Built per model, after clear_session: the augmenter's layers and
        # random state belong to this model's session, and every model sees
        # the same batches in the same order.
        train, validation, held_out = load_data(config["image_size"], config["batch_size"], args)
        model = build_model(name, config["image_size"])
        row["precision"] = model.dtype_policy.name  # the policy it was built (and trains) under
        compile_segmenter(model, NUM_CLASSES, args.loss, config["learning_rate"],
                          config["jit_compile"])
        row.update(cost(model, config["image_size"]))
        row.update(train_for_budget(model, train, validation, config, args))
        row.update(score(model, held_out), eval_images=args.eval_images)
        row.update(time_export(model, config["image_size"], args))
    except Exception as error:  # noqa: BLE001 (one failing model must not end the run)
        row["error"] = reporting.describe_error(error)
        # TensorFlow's first line ("in user code:") hides the cause: keep its tail too.
        row["error_detail"] = str(error)[-2000:]
        print(f"  {name}: failed: {row['error']}", flush=True)
    return row


def fastest_to_target(rows):
    """The row that reached the target mIoU in the fewest seconds, or None."""
    reached = [row for row in rows if row.get("seconds_to_target") is not None]
    return min(reached, key=lambda row: row["seconds_to_target"]) if reached else None


COLUMNS = [
    ("model", "model", "s"),
    ("miou", "mIoU", ".3f"),
    ("dice", "Dice", ".3f"),
    ("best_val_miou", "best val mIoU", ".3f"),
    ("epochs", "epochs", "d"),
    ("epochs_to_target", "ep to target", "d"),
    ("seconds_to_target", "s to target", ".0f"),
    ("parameters", "params", ",d"),
    ("gflops", "GFLOPs", ".2f"),
    ("train_img_s", "train img/s", ".1f"),
    ("latency_ms", "b1 export ms", ".1f"),
    ("precision", "precision", "s"),
]


def run_benchmark(args):
    """Runs the benchmark for parsed flags; returns the JSON payload."""
    from kerasvision.training import select_precision

    started = time.perf_counter()
    env = timing.environment()
    timing.warn_if_busy(env)
    args.precision = select_precision(args.precision)
    rows = []
    for name in args.models:
        print(f"{name} ...", flush=True)
        row = run_model(name, args)
        rows.append(row)
        if "error" not in row:
            print(f"  {name}: mIoU {row['miou']:.3f}, Dice {row['dice']:.3f} after "
                  f"{row['epochs']} epochs ({row['steps']} steps) in "
                  f"{row['train_minutes']:.1f} min; {row['gflops']:.2f} GFLOPs/image, "
                  f"batch-1 export {row['latency_ms']:.1f} ms", flush=True)
    print()
    sizes = sorted({(row["image_size"], row["batch_size"]) for row in rows})
    print(f"shapes scenes ({', '.join(f'{s}x{s} batch {b}' for s, b in sizes)}), "
          f"{args.train_images} training, {args.val_images} validation (per epoch) and "
          f"{args.eval_images} held-out (mIoU, Dice); budget {args.budget_minutes:g} min per "
          f"model; target: validation mIoU {args.target_miou:.2f}; GFLOPs per image at the "
          f"training size; b1 export = serving_default of the SavedModel at batch 1, median of "
          f"{args.latency_calls}")
    print(reporting.format_table(rows, COLUMNS))
    for row in rows:
        if "error" in row:
            print(f"failed: {row['model']}: {row['error']}")
    fastest = fastest_to_target(rows)
    if fastest is None:
        verdict = f"no segmenter reached validation mIoU {args.target_miou:.2f} within the budget"
    else:
        verdict = (f"fastest to validation mIoU {args.target_miou:.2f}: {fastest['model']}, "
                   f"{fastest['seconds_to_target']:.0f} s ({fastest['epochs_to_target']} epochs)")
    print(verdict)
    payload = {"benchmark": "segmentation_quality", "date": time.strftime("%Y-%m-%d"),
               "environment": env, "config": reporting.args_dict(args), "rows": rows,
               "fastest_to_target": None if fastest is None else fastest["model"],
               "verdict": verdict}
    return reporting.finish_run(payload, args.output, started)


def main(argv=None):
    """Parses `argv` (None: the command line), runs, prints the table and writes the JSON."""
    return profiling.run_training_benchmark(run_benchmark, parse_args(argv))


if __name__ == "__main__":
    main()
