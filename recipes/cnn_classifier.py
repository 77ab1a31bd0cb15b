"""A Sequential CNN image classifier trained from scratch, with augmentation, dropout and early stopping.

Trains `build_cnn_classifier`: blocks of 3x3 convolutions with 2x2 max pooling,
then Flatten, dropout and dense layers. Random flips, rotations and zooms run
inside the model, in training only. With no arguments it trains on the
embedded one-shape images (disk, square, triangle, cross at 32x32; no
download needed) in a few minutes on 2 CPU cores.

Run:
    python recipes/cnn_classifier.py                    # embedded data, defaults below
    python recipes/cnn_classifier.py --smoke --export-dir /tmp/cnn
    python recipes/cnn_classifier.py --dataset cifar10 --epochs 30 --filters 32 64 128

Writes to --output-dir (runs/cnn_classifier): best.weights.h5, history.csv,
history.png (training curves), confusion_matrix.png, summary.json (accuracy
and per-class accuracy); and a SavedModel for TF Serving to
<export-dir>/<next version>/ whose serving_default takes uint8 images and
returns probabilities and class_ids. Rerunning the same command after a crash
resumes from the last finished epoch.
"""

import os
import time

from kerasvision.export import export_image_model
from kerasvision.models.classifier import (
    HEAD_TYPES,
    POOLING_TYPES,
    build_cnn_classifier,
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
        image_size=32,  # the embedded shapes' native size
        batch_size=64,
        epochs=8,  # early stopping usually ends sooner
        learning_rate=2e-3,
    )
    parser.add_argument("--filters", type=int, nargs="+", default=[16, 32, 64],
                        help="width of each conv block (one 2x2 pooling per block)")
    parser.add_argument("--convs-per-block", type=int, default=2, help="3x3 convolutions per block")
    parser.add_argument("--pooling", choices=POOLING_TYPES, default="max",
                        help="pooling after each block")
    parser.add_argument("--head", choices=HEAD_TYPES, default="flatten",
                        help="flatten + dense (classic), or global pooling + dense")
    parser.add_argument("--dense-units", type=int, nargs="*", default=[128], help="hidden dense layers")
    parser.add_argument("--dropout", type=float, default=0.3, help="before each dense layer")
    parser.add_argument("--batch-norm", action="store_true", help="BatchNormalization after each conv")
    parser.add_argument("--patience", type=int, default=3,
                        help="early stopping: epochs without better val_accuracy (0: off)")
    add_classification_flags(parser)
    return parser.parse_args(argv)


def main(argv=None):
    args = parse_args(argv)
    verbose = setup_run(args, "cnn_classifier")

    # Data: batched (images, labels) pipelines; the embedded one-shape images by default.
    train, validation, class_names = load_classification_data(args)

    # Model: conv blocks, then a dense head; augmentation layers inside the model.
    with args.distribute_strategy.scope():  # --strategy: variables distributed at creation
        model = build_cnn_classifier(
            len(class_names),
            (args.image_size, args.image_size, 3),
            filters=args.filters,
            convs_per_block=args.convs_per_block,
            pooling=args.pooling,
            head=args.head,
            batch_norm=args.batch_norm,
            dense_units=args.dense_units,
            dropout=args.dropout,
            augmentation=build_augmenter(args),
        )
    print(f"{model.name}: {model.count_params():,} parameters")

    # Compile and fit, with early stopping on the validation accuracy.
    compile_classifier(model, args.learning_rate, args.jit_compile)
    started = time.time()
    history = fit_classifier(
        model, train, validation, args.output_dir, epochs=1 if args.smoke else args.epochs,
        verbose=verbose, patience=args.patience, steps_per_epoch=2 if args.smoke else None,
        max_minutes=args.max_train_minutes,
    )

    # Report, plots and the export for TF Serving (uint8 images -> probabilities).
    train_seconds = time.time() - started
    after_phase = print_phase_accuracies(history, [("training", len(history["val_accuracy"]))])
    summary = evaluate_classifier(model, validation, class_names, train_seconds)
    summary["accuracy_after_phase"] = after_phase
    plot_classification_run(summary, class_names, history, args.output_dir)
    summary["export_path"] = export_image_model(model, args.export_dir, outputs="logits")
    print(f"exported to {summary['export_path']}")
    write_json(os.path.join(args.output_dir, "summary.json"), summary)
    return summary


if __name__ == "__main__":
    run(main)
