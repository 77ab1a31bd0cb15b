"""The classic CNNs (LeNet-5, AlexNet, VGG, ResNet, GoogLeNet), built from blocks and trained from scratch.

Builds one of `kerasvision.models.classic.CLASSIC_MODELS` with `build_classic`
(VGG blocks, residual blocks, Inception modules from `kerasvision.layers`)
and trains it on the embedded one-shape images (disk, square, triangle,
cross; no download), with random flips, rotations and zooms in the input
pipeline. Small inputs keep it quick on a CPU: 32x32 by default, 64x64 for
AlexNet and 96x96 for GoogLeNet, whose auxiliary classifiers (trained with
weight 0.3, dropped at inference) need a 5x5 map at stride 16. With no
arguments it trains ResNet-18 for at most 3 minutes (--max-train-minutes),
about 4 epochs on 2 busy cores: validation accuracy reached 0.48 (chance is
0.25) and still swings between epochs. These ImageNet networks need more
time than that: their stems shrink 32 pixels to 8 at once, and they hold
millions of weights, so the small CNN of recipes/cnn_classifier.py does
better in the same minutes (benchmarks/classic_cnns.py compares them all).

`--summary` prints the per-layer table of output shapes, parameters and
multiply-accumulates (`kerasvision.flops.summary`) with 1000 classes, and
exits without training: `--model vgg16 --summary --image-size 224` gives the
notes' worked example (138,357,544 parameters, 15.5 G multiply-accumulates).

Run:
    python recipes/classic_cnns.py --model resnet18
    python recipes/classic_cnns.py --model googlenet --max-train-minutes 10
    python recipes/classic_cnns.py --model vgg16 --summary --image-size 224
    python recipes/classic_cnns.py --smoke --model alexnet --export-dir /tmp/alexnet

Writes to --output-dir (runs/classic_<model>): best.weights.h5, history.csv,
history.png, confusion_matrix.png, summary.json; and a SavedModel of the
inference network to <export-dir>/<next version>/ whose serving_default takes
uint8 images and returns probabilities and class_ids. Rerunning the same
command after a crash resumes from the last finished epoch.
"""

import os
import time

from kerasvision.export import export_image_model
from kerasvision.flops import summary as cost_summary
from kerasvision.models.classic import (
    CLASSIC_MODELS,
    build_classic,
    inference_network,
    smallest_input_size,
)
from kerasvision.tasks.classification import (
    add_classification_flags,
    build_augmenter,
    compile_classifier,
    evaluate_classifier,
    fit_classifier,
    load_classification_data,
    plot_classification_run,
    print_phase_accuracies,
)
from kerasvision.tasks.cli import recipe_parser, run, setup_run
from kerasvision.tasks.runs import write_json


def parse_args(argv):
    parser = recipe_parser(
        __doc__,
        image_size=None,  # None: the smallest multiple of 32 the model accepts
        batch_size=64,
        epochs=15,  # the time budget usually ends training sooner
        learning_rate=1e-3,
        max_train_minutes=3.0,  # keeps the default run under 5 minutes on 2 cores
    )
    parser.add_argument("--model", choices=CLASSIC_MODELS, default="resnet18",
                        help="architecture, built by kerasvision.models.classic.build_classic")
    parser.add_argument("--summary", action="store_true",
                        help="print the per-layer cost table (1000 classes) and exit")
    parser.add_argument("--patience", type=int, default=4,
                        help="early stopping: epochs without better val_accuracy (0: off)")
    add_classification_flags(parser)
    args = parser.parse_args(argv)
    if args.image_size is None:
        args.image_size = smallest_input_size(args.model, multiple_of=32)
    return args


def main(argv=None):
    args = parse_args(argv)
    input_shape = (args.image_size, args.image_size, 3)

    # --summary: the network's cost per layer, with ImageNet's 1000 classes as in the papers.
    if args.summary:
        model = build_classic(args.model, num_classes=1000, input_shape=input_shape)
        cost = cost_summary(inference_network(model), input_shape)
        return {"model": args.model, "params": cost.total_params, "macs": cost.total_macs}

    verbose = setup_run(args, f"classic_{args.model}")

    # Data: batched (images, labels) pipelines, augmented in the training pipeline.
    train, validation, class_names = load_classification_data(args, augmenter=build_augmenter(args))

    # Model: the architecture from its blocks (GoogLeNet with its training-only auxiliary heads).
    with args.distribute_strategy.scope():  # --strategy: variables distributed at creation
        model = build_classic(args.model, num_classes=len(class_names), input_shape=input_shape,
                              preprocessing="unit")  # from scratch: pixels scaled to [0, 1]
    network = inference_network(model)  # what predicts and is exported
    print(f"{args.model} at {args.image_size}x{args.image_size}: {network.count_params():,} "
          f"parameters for inference, {model.count_params():,} trained")

    # Compile and fit, with early stopping on the validation accuracy and a time budget.
    compile_classifier(model, args.learning_rate, args.jit_compile)
    started = time.time()
    history = fit_classifier(
        model, train, validation, args.output_dir, epochs=1 if args.smoke else args.epochs,
        verbose=verbose, patience=args.patience, steps_per_epoch=2 if args.smoke else None,
        max_minutes=args.max_train_minutes,
    )

    # Report, plots and the export of the inference network (uint8 images -> probabilities).
    train_seconds = time.time() - started
    after_phase = print_phase_accuracies(history, [("training", len(history["val_accuracy"]))])
    summary = evaluate_classifier(network, validation, class_names, train_seconds)
    summary["accuracy_after_phase"] = after_phase
    summary["model"], summary["image_size"] = args.model, args.image_size
    plot_classification_run(summary, class_names, history, args.output_dir)
    summary["export_path"] = export_image_model(network, args.export_dir, outputs="logits")
    print(f"exported to {summary['export_path']}")
    write_json(os.path.join(args.output_dir, "summary.json"), summary)
    return summary


if __name__ == "__main__":
    run(main)
