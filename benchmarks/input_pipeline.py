"""Input pipelines against their models: does any recipe wait for data?

For each recipe, the training `tf.data` pipeline exactly as the recipe builds
it (its own flag defaults parsed by its `parse_args`, the shared loaders
`load_classification_data`, `load_segmentation_data` and
`load_generative_data`, augmentation included) is iterated on its own, and
its images per second are compared with the images per second its model
trains at (the recipe's model, size, batch, precision policy and XLA setting,
timed by `train_throughput.measure_training` on one batch of that pipeline,
held in memory). A pipeline is fast enough when it delivers at least 5x what
its model consumes: while training, the two share the same cores.

Each pipeline's first epoch (which fills its in-memory cache) is reported
apart; the steady rate is measured over the following epochs. Images are the
embedded synthetic shapes (`--num-train` of them: the rate per image does
not depend on how many).

Run (times for 2 quiet cores):
    python benchmarks/input_pipeline.py                     # every recipe, ~3 min
    python benchmarks/input_pipeline.py --recipes fcn_transfer,unet
    python benchmarks/input_pipeline.py --smoke             # 3 recipes at 32px, seconds (tests)

Writes --output (default benchmarks/results/input_pipeline.json).
"""

import importlib
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from benchmarks import profiling, reporting, timing  # noqa: E402

TARGET_RATIO = 5.0
SEGMENTATION_CLASSES = 5


# ---------------------------------------------------------------------------
# Each recipe's data and model, from its own flags
# ---------------------------------------------------------------------------


def _classification_data(recipe, args):
    from kerasvision.tasks.classification import build_augmenter, load_classification_data

    # cnn_classifier augments inside its model; transfer_classifier in the pipeline.
    augmenter = build_augmenter(args) if recipe == "transfer_classifier" else None
    train, _, class_names = load_classification_data(args, augmenter=augmenter)
    where = "in the pipeline" if augmenter is not None else (
        "in the model" if args.augment == "true" else "none")
    return train, len(class_names), where


def _segmentation_data(recipe, args):
    from kerasvision.tasks.segmentation import load_segmentation_data

    train, _, class_names = load_segmentation_data(args)
    return train, len(class_names), "in the pipeline" if args.augment == "true" else "none"


def _generative_data(recipe, args):
    from kerasvision.tasks.generative import load_generative_data

    train, _ = load_generative_data(args)
    return train, None, "none"


def _build_classifier(recipe, module, args, num_classes):
    from kerasvision.tasks.classification import build_augmenter, compile_classifier
    from kerasvision.models.classifier import build_cnn_classifier, build_transfer_classifier

    shape = (args.image_size, args.image_size, 3)
    if recipe == "cnn_classifier":
        model = build_cnn_classifier(
            num_classes, shape, filters=args.filters, convs_per_block=args.convs_per_block,
            pooling=args.pooling, head=args.head, batch_norm=args.batch_norm,
            dense_units=args.dense_units, dropout=args.dropout,
            augmentation=build_augmenter(args))
    else:
        # Offline (no ImageNet file) the recipe trains the whole network in one phase.
        model = build_transfer_classifier(args.backbone, num_classes, shape, weights=None,
                                          mode="fine_tuning", dropout=args.dropout)
    compile_classifier(model, args.learning_rate, args.jit_compile)
    return model


def _build_segmenter(recipe, module, args, num_classes):
    from kerasvision.models.fcn import build_fcn
    from kerasvision.models.unet import build_unet
    from kerasvision.tasks.segmentation import compile_segmenter

    shape = (args.image_size, args.image_size, 3)
    if recipe == "fcn_transfer":
        # The recipe's width from random weights (no ImageNet file offline).
        model = build_fcn(num_classes, shape, backbone=args.backbone, variant=args.variant,
                          weights=None, upsampling=args.upsampling,
                          fc_units=args.fc_units or 1024, dropout=args.dropout)
    else:
        model = build_unet(num_classes, shape, backbone=args.backbone, weights=None,
                           depth=args.depth, filters=args.filters, upsampling=args.upsampling)
    compile_segmenter(model, num_classes, args.loss, args.learning_rate, args.jit_compile)
    return model


def _build_generative(recipe, module, args, num_classes):

    from kerasvision import kernels
    from kerasvision.training import resolve_jit_compile

    jit_compile = resolve_jit_compile(args.jit_compile)
    if recipe == "diffusion":
        module.check_args(args)
        return module.build_model(args)  # compiles, as the recipe does
    model = module.build_model(args)
    if recipe == "dcgan":
        model.compile(d_optimizer=kernels.adam(args.learning_rate, beta_1=args.beta_1),
                      g_optimizer=kernels.adam(args.learning_rate, beta_1=args.beta_1),
                      jit_compile=jit_compile)
    elif recipe == "wgan":
        model.compile(d_optimizer=module.optimizer(args), g_optimizer=module.optimizer(args),
                      jit_compile=jit_compile)
    else:  # autoencoder, vae
        model.compile(kernels.adam(args.learning_rate), jit_compile=jit_compile)
    return model


RECIPES = {
    "cnn_classifier": ("classification", _classification_data, _build_classifier),
    "transfer_classifier": ("classification", _classification_data, _build_classifier),
    "fcn_transfer": ("segmentation", _segmentation_data, _build_segmenter),
    "unet": ("segmentation", _segmentation_data, _build_segmenter),
    "autoencoder": ("generative", _generative_data, _build_generative),
    "vae": ("generative", _generative_data, _build_generative),
    "dcgan": ("generative", _generative_data, _build_generative),
    "wgan": ("generative", _generative_data, _build_generative),
    "diffusion": ("generative", _generative_data, _build_generative),
}
SMOKE_RECIPES = ("cnn_classifier", "unet", "dcgan")  # one per pipeline kind


# ---------------------------------------------------------------------------
# Measuring
# ---------------------------------------------------------------------------


def _batch_size(element):
    images = element[0] if isinstance(element, tuple) else element
    return int(images.shape[0])


def pipeline_rate(dataset, min_images):
    """Images/s of iterating `dataset` alone: the first epoch, then whole epochs up to `min_images`.

    Returns:
        dict: `first_epoch_img_s`, `img_s` (steady: epochs after the first),
        `images` and `epochs` counted in the steady part.
    """
    start, first = time.perf_counter(), 0
    for element in dataset:
        first += _batch_size(element)
    first_seconds = time.perf_counter() - start
    images, epochs = 0, 0
    start = time.perf_counter()
    while images < min_images or epochs == 0:
        for element in dataset:
            images += _batch_size(element)
        epochs += 1
    seconds = time.perf_counter() - start
    return {"first_epoch_img_s": first / first_seconds, "img_s": images / seconds,
            "images": images, "epochs": epochs}


# --smoke: smaller networks than the recipes', so that tracing takes a second.
SMOKE_FLAGS = {
    "cnn_classifier": ["--filters", "8", "16", "--dense-units", "32"],
    "unet": ["--depth", "2", "--filters", "8"],
    "dcgan": ["--latent-dim", "16", "--generator-filters", "32,16",
              "--discriminator-filters", "16,32"],
}


def recipe_argv(name, args):
    """The recipe flags this benchmark sets: dataset size, and --smoke's small sizes."""
    argv = ["--num-train", str(args.num_train), "--num-val", str(args.num_val)]
    if args.smoke:
        argv += ["--image-size", "32", "--batch-size", "4", *SMOKE_FLAGS.get(name, [])]
    return argv


def measure_recipe(name, args):
    """One row: the recipe's pipeline rate and its model's training rate."""
    import keras

    from benchmarks.train_throughput import measure_training
    from kerasvision.training import select_precision

    kind, load_data, build_model = RECIPES[name]
    module = importlib.import_module(f"recipes.{name}")
    recipe_args = module.parse_args(recipe_argv(name, args))
    row = {"recipe": name, "pipeline": kind, "image_size": recipe_args.image_size}
    keras.backend.clear_session()
    keras.utils.set_random_seed(args.seed)
    try:
        # The recipe's precision policy ("auto": mixed_bfloat16 only where the
        # hardware computes bfloat16 natively), set first as the recipe does:
        # the augmentation layers compute in it too.
        row["precision"] = select_precision(getattr(recipe_args, "precision", "auto"),
                                            verbose=False)
        train, num_classes, augmentation = load_data(name, recipe_args)
        row.update(batch_size=recipe_args.batch_size, augmentation=augmentation)
        row.update(pipeline_rate(train, args.min_images))
        model = build_model(name, module, recipe_args, num_classes)
        row["xla"] = bool(model.jit_compile)
        batch = next(iter(train))
        timing = measure_training(model, batch, 1, args.warmup, args.repeats)
    except Exception as error:  # one recipe failing must not end the run
        row["error"] = reporting.describe_error(error)
        print(f"  {name}: failed: {row['error']}", flush=True)
        return row
    finally:
        keras.mixed_precision.set_global_policy("float32")
    row["model_img_s"] = row["batch_size"] / timing["step_s"]
    row["model_step_ms"] = 1e3 * timing["step_s"]
    row["pipeline_over_model"] = row["img_s"] / row["model_img_s"]
    row["meets_target"] = bool(row["pipeline_over_model"] >= TARGET_RATIO)
    return row


COLUMNS = [
    ("recipe", "recipe", "s"),
    ("pipeline", "pipeline", "s"),
    ("augmentation", "augmentation", "s"),
    ("image_size", "size", "d"),
    ("batch_size", "batch", "d"),
    ("img_s", "pipeline img/s", ".0f"),
    ("first_epoch_img_s", "1st epoch img/s", ".0f"),
    ("model_img_s", "model img/s", ".1f"),
    ("pipeline_over_model", "pipeline/model", ".1f"),
    ("verdict", f">= {TARGET_RATIO:g}x", "s"),
]


def parse_args(argv):
    parser = reporting.new_parser(__doc__)
    reporting.add_common_flags(parser, "input_pipeline.json")
    parser.add_argument("--recipes", default=None,
                        help="comma-separated subset of " + ", ".join(RECIPES)
                        + " (default: all; --smoke: " + ", ".join(SMOKE_RECIPES) + ")")
    parser.add_argument("--num-train", type=int, default=None,
                        help="training images generated per recipe (default 1024; --smoke 16)")
    parser.add_argument("--min-images", type=int, default=None,
                        help="images iterated after the first epoch (default 4096; --smoke 16)")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    reporting.check_counts(parser, args, warmup=0 if args.smoke else 1,
                        repeats=1 if args.smoke else 3)
    reporting.resolve_output(args, "input_pipeline.json")
    args.recipes = (reporting.parse_list(parser, "--recipes", args.recipes, tuple(RECIPES))
                    if args.recipes else list(SMOKE_RECIPES if args.smoke else RECIPES))
    args.num_train = args.num_train or (16 if args.smoke else 1024)
    args.min_images = args.min_images or (16 if args.smoke else 4096)
    # Generative pipelines keep batches full: at least one batch of held-out images.
    args.num_val = max(8, min(args.num_train, 64))
    if args.num_train < 8:
        parser.error(f"--num-train must be >= 8; received {args.num_train}")
    return args


def run_benchmark(args):
    """Runs the benchmark for parsed flags; returns the JSON payload."""
    started = time.perf_counter()
    env = timing.environment()
    timing.warn_if_busy(env)
    rows = []
    for name in args.recipes:
        start = time.perf_counter()
        row = measure_recipe(name, args)
        rows.append(row)
        if "error" not in row:
            row["verdict"] = "yes" if row["meets_target"] else "NO"
            print(f"  {name}: pipeline {row['img_s']:.0f} img/s, model {row['model_img_s']:.1f} "
                  f"img/s ({time.perf_counter() - start:.0f} s)", flush=True)
    print()
    print(f"input pipelines alone vs training steps on one in-memory batch "
          f"({args.num_train} shapes images per recipe; steady rate after the first epoch)")
    print(reporting.format_table(rows, COLUMNS))
    for row in rows:
        if "error" in row:
            print(f"failed: {row['recipe']}: {row['error']}")
    measured = [row for row in rows if "error" not in row]
    met = all(row["meets_target"] for row in measured) if measured else None
    print(f"\ntarget: every recipe's pipeline >= {TARGET_RATIO:g}x what its model consumes: "
          + ("not measured" if met is None else "met" if met else "NOT met")
          + (" [" + ", ".join(r["recipe"] for r in measured if not r["meets_target"]) + "]"
             if met is False else ""))
    payload = {
        "benchmark": "input_pipeline", "environment": env, "config": reporting.args_dict(args),
        "rows": rows,
        "targets": [{"target": f"every recipe's input pipeline >= {TARGET_RATIO:g}x faster than "
                     "its model consumes", "threshold": TARGET_RATIO, "met": met,
                     "value": min((r["pipeline_over_model"] for r in measured), default=None)}],
    }
    return reporting.finish_run(payload, args.output, started)


def main(argv=None):
    """Parses `argv` (None: the command line), runs, prints the table and writes the JSON."""
    args = parse_args(argv)
    with profiling.quiet_tensorflow():
        return run_benchmark(args)


if __name__ == "__main__":
    main()
