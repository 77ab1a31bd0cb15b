"""The classic CNNs side by side: accuracy after a fixed budget, parameters, GFLOPs, images/s.

For each model of `kerasvision.models.classic.CLASSIC_MODELS` (LeNet-5,
AlexNet, VGG16/19, ResNet-18/34/50/101/152, GoogLeNet, built from the
package's blocks) the script reports:

- what the papers compare, at ImageNet's size: parameters with 1000 classes
  and GFLOPs per 224x224 image (2 x the multiply-accumulates of
  `kerasvision.flops.summary`, inference network only; LeNet-5 at 32x32);
- what a CPU makes of them on the embedded one-shape images (4 classes, no
  download): each model is built at the smallest multiple of 32 it accepts
  (32 px; AlexNet 64, GoogLeNet 96, with its auxiliary heads), compiled as
  `recipes/classic_cnns.py` compiles it (Adam 1e-3, cross-entropy on
  logits) and trained with the recipe's augmentation for the same wall-clock
  budget (`--seconds`, counted from the start of `fit`, tracing included);
  then its validation accuracy, the training images/s (after the first step,
  which traces) and the inference images/s of the inference network in a `tf.function` at
  `--batch-size` (first call apart, then `--warmup` untimed calls and the
  median of `--repeats`, `benchmarks/timing.py`).

A fixed budget favours small, fast models: the table shows what each
architecture learns in the same CPU time, not its accuracy at convergence.
A model that fails gets a row with its error.

Run (times for 2 quiet cores):
    python benchmarks/classic_cnns.py                          # 45 s per model, ~15 min
    python benchmarks/classic_cnns.py --models resnet18,googlenet --seconds 120
    python benchmarks/classic_cnns.py --output benchmarks/results/classic_cnns.json
    python benchmarks/classic_cnns.py --smoke                  # seconds (tests)

Prints one table. Writes JSON (environment, flags, rows) only when --output
is given.
"""

import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import numpy as np

from benchmarks import profiling, reporting, timing

# --smoke's defaults; flags given explicitly still win. Two small models and a
# few steps exercise every column without meaning anything.
SMOKE_DEFAULTS = {"models": "lenet5,resnet18", "seconds": 3.0, "train_images": 32,
                  "eval_images": 16, "batch_size": 8, "imagenet_size": 32}


def parse_args(argv):
    """Parses the flags; `--smoke` swaps in `SMOKE_DEFAULTS` for the flags not given."""
    from kerasvision.models.classic import CLASSIC_MODELS

    parser = reporting.new_parser(__doc__)
    parser.add_argument("--smoke", action="store_true",
                        help="tiny sizes and counts: checks the script runs (seconds), "
                        "numbers meaningless")
    parser.add_argument("--output", default=None,
                        help="JSON file to write (default: none, the table is printed only)")
    parser.add_argument("--warmup", type=int, default=None,
                        help="untimed inference calls after the first (default 2; --smoke 0)")
    parser.add_argument("--repeats", type=int, default=None,
                        help="timed inference calls; the median is kept (default 5; --smoke 1)")
    parser.add_argument("--models", default=",".join(CLASSIC_MODELS),
                        help="comma-separated subset of " + ", ".join(CLASSIC_MODELS))
    parser.add_argument("--seconds", type=float, default=45.0,
                        help="training wall-clock per model, tracing included (default 45)")
    parser.add_argument("--batch-size", type=int, default=64,
                        help="training and inference batch (default 64, the recipe's)")
    parser.add_argument("--train-images", type=int, default=8192, help="training images")
    parser.add_argument("--eval-images", type=int, default=1024, help="validation images scored")
    parser.add_argument("--imagenet-size", type=int, default=224,
                        help="input side of the parameter and GFLOP columns (default 224)")
    parser.add_argument("--precision", default="auto",
                        choices=("float32", "mixed_bfloat16", "auto"),
                        help="dtype policy (auto, the recipe's: mixed_bfloat16 where the CPU "
                        "computes bfloat16 natively, else float32)")
    parser.add_argument("--seed", type=int, default=0)
    # Parsed twice: the smoke defaults must be in place before the real parse
    # so that flags given explicitly override them.
    if parser.parse_known_args(argv)[0].smoke:
        parser.set_defaults(**SMOKE_DEFAULTS)
    args = parser.parse_args(argv)
    reporting.check_counts(parser, args, warmup=0 if args.smoke else 2,
                           repeats=1 if args.smoke else 5)
    args.models = reporting.parse_list(parser, "--models", args.models, CLASSIC_MODELS)
    for flag in ("batch_size", "train_images", "eval_images"):
        if getattr(args, flag) < 1:
            parser.error(f"--{flag.replace('_', '-')} must be >= 1; received {getattr(args, flag)}")
    if args.seconds <= 0:
        parser.error(f"--seconds must be > 0; received {args.seconds}")
    return args


def imagenet_cost(name, args):
    """Parameters (1000 classes) and GFLOPs per image of the inference network at `--imagenet-size`."""
    import keras

    from kerasvision.flops import summary
    from kerasvision.models.classic import (
        build_classic,
        inference_network,
        smallest_input_size,
    )

    keras.backend.clear_session()
    # LeNet-5 is a 32x32 network; the others are measured where their papers are.
    size = 32 if name == "lenet5" else max(args.imagenet_size, smallest_input_size(name))
    network = inference_network(build_classic(name, 1000, (size, size, 3)))
    cost = summary(network, print_fn=None)
    return {"imagenet_size": size, "params_1000": cost.total_params,
            "gflops": cost.total_flops / 1e9}


def load_data(size, args):
    """`(train, validation)` pipelines of the shapes images at `size`, as the recipe makes them."""
    from kerasvision.data import (
        load_shapes_classification,
        make_classification_pipeline,
    )
    from kerasvision.data.augment import build_classification_augmenter

    augmenter = build_classification_augmenter(flip="horizontal_and_vertical", rotation=0.05,
                                               zoom=0.1, seed=args.seed)
    train = load_shapes_classification("train", args.train_images, size, seed=args.seed)
    validation = load_shapes_classification("validation", args.eval_images, size, seed=args.seed)
    train = make_classification_pipeline(train, args.batch_size, training=True,
                                         augmenter=augmenter, seed=args.seed)
    return train, make_classification_pipeline(validation, args.batch_size, training=False)


def _first_step_timer():
    import keras

    class FirstStepTimer(keras.callbacks.Callback):
        """When the first training step ended: the steps after it ran without tracing."""

        def __init__(self):
            super().__init__()
            self.first_step_end = None

        def on_train_batch_end(self, batch, logs=None):
            if self.first_step_end is None:
                self.first_step_end = time.time()

    return FirstStepTimer()


def train_for_budget(model, train, args):
    """Fits until `--seconds` have passed (tracing included); returns steps and images/s.

    Training images/s count the steps after the first (which traces the step
    function) over the time after it, so that tracing does not weigh on the
    speed of short budgets.
    """
    from kerasvision.training import KeyPipelinesByEpoch, TimeBudget

    started = time.time()
    budget, timer = TimeBudget(started + args.seconds), _first_step_timer()
    # Epochs are capped far beyond what the budget allows: the budget ends training.
    model.fit(train, epochs=1000, shuffle=False, verbose=0,
              callbacks=[KeyPipelinesByEpoch(), budget, timer])
    ended = time.time()
    steps = int(model.optimizer.iterations)
    after_first = ended - timer.first_step_end
    return {"train_s": ended - started, "steps": steps,
            "first_step_s": timer.first_step_end - started,
            "train_img_s": ((steps - 1) * args.batch_size / after_first
                            if steps > 1 and after_first > 0 else None)}


def accuracy(network, validation):
    """Validation accuracy of the inference network."""
    correct = total = 0
    for images, labels in validation:
        predicted = np.argmax(network(images, training=False), axis=-1)
        correct += int(np.sum(predicted == labels.numpy()))
        total += len(predicted)
    return correct / total


def inference_speed(network, size, args):
    """Images/s of the inference network in a `tf.function` at `--batch-size`."""
    import tensorflow as tf

    images = tf.random.stateless_uniform((args.batch_size, size, size, 3), (args.seed, 0), 0, 255)
    forward = tf.function(lambda x: network(x, training=False))
    start = time.perf_counter()
    forward(images)  # traces
    first_call = time.perf_counter() - start
    stats = timing.summarize_times(
        timing.time_calls(lambda: forward(images), args.warmup, args.repeats))
    return {"infer_first_call_s": first_call, "infer_img_s": args.batch_size / stats["median_s"]}


def run_model(name, args):
    """Builds, trains, scores and times one model; returns its row."""
    import keras

    from kerasvision.models.classic import (
        build_classic,
        inference_network,
        smallest_input_size,
    )
    from kerasvision.tasks.classification import compile_classifier

    size = smallest_input_size(name, multiple_of=32)
    row = {"model": name, "image_size": size, "batch_size": args.batch_size,
           "precision": args.precision}
    try:
        row.update(imagenet_cost(name, args))
        keras.backend.clear_session()
        timing.release_free_memory()
        keras.utils.set_random_seed(args.seed)
        train, validation = load_data(size, args)
        model = build_classic(name, 4, (size, size, 3), preprocessing="unit")  # as the recipe
        network = inference_network(model)
        row["params_trained"] = int(network.count_params())
        compile_classifier(model, 1e-3)
        row.update(train_for_budget(model, train, args))
        row["accuracy"] = accuracy(network, validation)
        row.update(inference_speed(network, size, args))
    except Exception as error:  # noqa: BLE001  (one failing model must not end the run)
        row["error"] = reporting.describe_error(error)
        print(f"  {name}: failed: {row['error']}", flush=True)
    return row


COLUMNS = [
    ("model", "model", "s"),
    ("params_1000", "params (1000 cl.)", ",d"),
    ("gflops", "GFLOPs", ".3g"),
    ("imagenet_size", "at px", "d"),
    ("image_size", "train px", "d"),
    ("accuracy", "accuracy", ".3f"),
    ("steps", "steps", "d"),
    ("train_img_s", "train img/s", ".1f"),
    ("infer_img_s", "infer img/s", ".1f"),
]


def run_benchmark(args):
    """Runs the benchmark for parsed flags; returns the payload (written only with --output)."""
    from kerasvision.training import select_precision

    started = time.perf_counter()
    args.precision = select_precision(args.precision)
    env = timing.environment()
    timing.warn_if_busy(env)
    rows = []
    for name in args.models:
        print(f"{name} ...", flush=True)
        row = run_model(name, args)
        rows.append(row)
        if "error" not in row:
            print(f"  {name}: accuracy {row['accuracy']:.3f} after {row['steps']} steps in "
                  f"{row['train_s']:.0f} s (first step {row['first_step_s']:.1f} s); "
                  f"{reporting.format_value(row['train_img_s'], '.1f')} img/s training, "
                  f"{row['infer_img_s']:.1f} inference", flush=True)
    print()
    print(f"shapes images (4 classes), {args.train_images} training and {args.eval_images} "
          f"validation, batch {args.batch_size}, {args.precision}, {args.seconds:g} s of "
          "training per model; "
          f"params and GFLOPs: inference network with 1000 classes at 'at px'")
    print(reporting.format_table(rows, COLUMNS))
    for row in rows:
        if "error" in row:
            print(f"failed: {row['model']}: {row['error']}")
    payload = {"benchmark": "classic_cnns", "date": time.strftime("%Y-%m-%d"),
               "environment": env, "config": reporting.args_dict(args), "rows": rows}
    if args.output is None:
        payload["environment"]["load_average_at_end"] = os.getloadavg()[0]
        payload["seconds"] = time.perf_counter() - started
        print(f"total {payload['seconds']:.0f} s (no --output: nothing written)")
        return payload
    return reporting.finish_run(payload, args.output, started)


def main(argv=None):
    """Parses `argv` (None: the command line), runs, prints the table (and writes the JSON)."""
    return profiling.run_training_benchmark(run_benchmark, parse_args(argv))


if __name__ == "__main__":
    main()
