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
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from kerasvision.classification import (  # noqa: E402
    add_classification_flags,
    build_augmenter,
    load_classification_data,
    train_classifier,
)
from kerasvision.cli import recipe_parser, run, setup_run  # noqa: E402
from kerasvision.models.classifier import HEAD_TYPES, POOLING_TYPES, build_cnn_classifier  # noqa: E402


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
    train, validation, class_names = load_classification_data(args)
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
    return train_classifier(
        model, args, train, validation, class_names, verbose, patience=args.patience
    )


if __name__ == "__main__":
    run(main)
