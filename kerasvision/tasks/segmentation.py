"""The segmentation task as recipes run it: data flags, compile, two-phase fit, report, export.

`recipes/fcn_transfer.py` and `recipes/unet.py` differ only in the model they
build; everything else they share lives here.
"""

import os

import numpy as np

from kerasvision import visualize
from kerasvision.data.augment import build_segmentation_augmenter
from kerasvision.data.checks import validate_dataset
from kerasvision.data.loaders import PETS_CLASS_NAMES, load_oxford_pets, load_segmentation_folder
from kerasvision.data.pipelines import make_segmentation_pipeline
from kerasvision.data.shapes import SHAPES_CLASS_NAMES, load_shapes
from kerasvision.losses import SEGMENTATION_LOSSES, get_segmentation_loss
from kerasvision import kernels
from kerasvision.metrics import (
    MeanIoU,
    PixelAccuracy,
    mean_iou,
    per_class_iou,
    pixel_accuracy,
    segmentation_confusion_matrix,
    segmentation_report,
)
from kerasvision.tasks.cli import add_schedule_flags
from kerasvision.tasks.runs import image_counts
from kerasvision.training import resolve_jit_compile

DATASETS = ("shapes", "oxford_iiit_pet", "folder")
SMOKE_IMAGES = 8


def add_segmentation_flags(parser, frozen_epochs, finetune_epochs, finetune_learning_rate):
    """Adds the flags of segmentation recipes to a `recipe_parser`."""
    group = parser.add_argument_group("segmentation")
    group.add_argument(
        "--dataset", choices=DATASETS, default="shapes",
        help="shapes: the embedded synthetic scenes (offline); oxford_iiit_pet via tfds; "
        "folder: --images-dir/--masks-dir",
    )
    group.add_argument("--images-dir", help="image files, for --dataset folder")
    group.add_argument("--masks-dir", help="mask PNGs of class ids, for --dataset folder")
    group.add_argument("--num-classes", type=int, help="classes of --dataset folder")
    group.add_argument("--data-dir", help="tfds data directory")
    group.add_argument("--num-train", type=int, default=None, help="training images (shapes)")
    group.add_argument("--num-val", type=int, default=None, help="validation images (shapes)")
    group.add_argument(
        "--loss", choices=SEGMENTATION_LOSSES, default="ce+dice",
        help="Dice counters class imbalance: with cross-entropy alone a net from random "
        "weights predicts background everywhere for epochs",
    )
    group.add_argument("--frozen-epochs", type=int, default=frozen_epochs,
                       help="with pretrained weights: epochs with the backbone frozen, at "
                       "--learning-rate (from random weights, --epochs of full training instead)")
    group.add_argument("--finetune-epochs", type=int, default=finetune_epochs,
                       help="epochs with the backbone unfrozen")
    group.add_argument("--finetune-learning-rate", type=float, default=finetune_learning_rate,
                       help="learning rate while fine-tuning (lower: keeps pretrained features)")
    group.add_argument("--finetune-blocks", type=int, default=None,
                       help="backbone stages unfrozen for fine-tuning (default: all)")
    add_schedule_flags(group, decay_fraction=0.35)
    group.add_argument("--augment", choices=("true", "false"), default="true",
                       help="random flips and small zooms of image and mask together")
    return parser


def load_segmentation_data(args):
    """Returns `(train, validation, class_names)`: batched pipelines for the recipe's flags."""
    size = args.image_size
    if args.dataset == "shapes":
        num_train, num_val = image_counts(args, SMOKE_IMAGES)
        train = load_shapes("train", num_train, size, seed=args.seed)
        validation = load_shapes("validation", num_val, size, seed=args.seed)
        class_names = SHAPES_CLASS_NAMES
    elif args.dataset == "oxford_iiit_pet":
        train = load_oxford_pets("train", size, data_dir=args.data_dir)
        validation = load_oxford_pets("test", size, data_dir=args.data_dir)
        class_names = PETS_CLASS_NAMES
    else:
        if not args.images_dir or not args.masks_dir or not args.num_classes:
            raise ValueError(
                "--dataset folder needs --images-dir, --masks-dir and --num-classes."
            )
        everything = load_segmentation_folder(args.images_dir, args.masks_dir, size)
        count = int(everything.cardinality())
        num_val = max(1, count // 5)
        validation, train = everything.take(num_val), everything.skip(num_val)
        class_names = tuple(f"class {index}" for index in range(args.num_classes))
    if args.smoke:
        train, validation = train.take(SMOKE_IMAGES), validation.take(SMOKE_IMAGES)
    # Checked before the pipeline caches it: a partial read of a cached dataset
    # leaves the cache incomplete (tf.data warns about it on every run).
    validate_dataset(train, len(class_names))
    augmenter = (
        build_segmentation_augmenter(flip=True, zoom=0.1, seed=args.seed)
        if args.augment == "true" else None
    )
    train = make_segmentation_pipeline(
        train, args.batch_size, training=True, augmenter=augmenter, seed=args.seed
    )
    validation = make_segmentation_pipeline(validation, args.batch_size, training=False)
    return train, validation, class_names


def compile_segmenter(model, num_classes, loss, learning_rate, jit_compile="auto"):
    """Compiles a segmenter with Adam, the named loss and mIoU / pixel accuracy.

    Runs in the scope of the strategy the model was built under (see
    `--strategy`): the optimizer and metric variables must be distributed
    like the weights. The optimizer is built here, inside that scope.
    """
    with model.distribute_strategy.scope():
        model.compile(
            optimizer=kernels.adam(learning_rate),
            loss=get_segmentation_loss(loss, num_classes=num_classes),
            metrics=[MeanIoU(num_classes, name="mean_iou"),
                     PixelAccuracy(num_classes, name="pixel_accuracy")],
            jit_compile=resolve_jit_compile(jit_compile),
        )
        model.optimizer.build(model.trainable_variables)


def evaluate_segmenter(model, dataset, class_names, train_seconds=None):
    """Prints the per-class report of a segmenter on a dataset and returns its figures.

    Args:
        model: maps images `[batch, H, W, 3]` to logits `[batch, H, W, C]`.
        dataset: batched `(images, masks [batch, H, W])`, usually the validation split.
        class_names: tuple of `C` str.
        train_seconds: float or None, training time, printed and kept in the summary.

    Returns:
        dict: `mean_iou`, `per_class_iou` (class name -> IoU), `pixel_accuracy`,
        `train_seconds`.
    """
    confusion = segmentation_confusion_matrix(model, dataset, len(class_names))
    print(segmentation_report(confusion, class_names))
    summary = _summarise(confusion, class_names, train_seconds)
    minutes = "" if train_seconds is None else f" after {train_seconds / 60:.1f} min of training"
    print(f"validation mIoU {summary['mean_iou']:.4f}{minutes}")
    return summary


def plot_segmentation_run(model, dataset, class_names, history, output_dir, count=4):
    """Writes `predictions.png` (`count` examples of `dataset`) and `history.png` to `output_dir`."""
    _plot_predictions(model, dataset, class_names, os.path.join(output_dir, "predictions.png"),
                      count)
    if history:
        visualize.plot_history(history, os.path.join(output_dir, "history.png"))


def _summarise(confusion, class_names, seconds):
    return {
        "mean_iou": float(mean_iou(confusion)),
        "per_class_iou": dict(zip(class_names, map(float, per_class_iou(confusion)))),
        "pixel_accuracy": float(pixel_accuracy(confusion)),
        "train_seconds": seconds,
    }


def _plot_predictions(model, dataset, class_names, path, count=4):
    # Read to the end: an iterator left part-way through a cached pipeline
    # leaves its cache incomplete (tf.data warns about it).
    images, masks = [np.concatenate(parts)[:count] for parts in zip(
        *((x.numpy(), y.numpy()) for x, y in dataset))]
    predicted = np.argmax(model.predict(images, verbose=0), axis=-1)
    visualize.plot_segmentation_examples(images, masks, predicted, class_names, path)


__all__ = [
    "DATASETS",
    "add_segmentation_flags",
    "compile_segmenter",
    "evaluate_segmenter",
    "load_segmentation_data",
    "plot_segmentation_run",
]
