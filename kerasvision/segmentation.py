"""The segmentation task as recipes run it: data flags, compile, two-phase fit, report, export.

`recipes/fcn_transfer.py` and `recipes/unet.py` differ only in the model they
build; everything else they share lives here.
"""

import os
import time

import numpy as np

from kerasvision import data, visualize
from kerasvision.export import export_image_model
from kerasvision.losses import SEGMENTATION_LOSSES, get_segmentation_loss
from kerasvision.optimizers import FusedAdam
from kerasvision.metrics import (
    MeanIoU,
    PixelAccuracy,
    mean_iou,
    per_class_iou,
    pixel_accuracy,
    segmentation_report,
)
from kerasvision.training import (
    fit_two_phase_from_flags,
    resolve_jit_compile,
    segmentation_confusion_matrix,
    write_json,
)

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
    group.add_argument("--max-train-minutes", type=float, default=None,
                       help="wall-clock budget for training, in minutes; stops after the "
                       "step that exceeds it (0: no limit)")
    group.add_argument("--lr-schedule", choices=("constant", "cosine"), default="cosine",
                       help="cosine: warm up, then decay to zero by the end of the epochs "
                       "or of --max-train-minutes, whichever comes first")
    group.add_argument("--decay-fraction", type=float, default=0.35,
                       help="with --lr-schedule cosine: the final share of training over which "
                       "the rate decays to zero; before it, it holds at --learning-rate")
    group.add_argument("--augment", choices=("true", "false"), default="true",
                       help="random flips and small zooms of image and mask together")
    return parser


def load_segmentation_data(args):
    """Returns `(train, validation, class_names)`: batched pipelines for the recipe's flags."""
    size = args.image_size
    if args.smoke:
        args.batch_size = min(args.batch_size, SMOKE_IMAGES // 2)
    if args.dataset == "shapes":
        num_train = SMOKE_IMAGES if args.smoke else args.num_train
        num_val = SMOKE_IMAGES if args.smoke else args.num_val
        train = data.load_shapes("train", num_train, size, seed=args.seed)
        validation = data.load_shapes("validation", num_val, size, seed=args.seed)
        class_names = data.SHAPES_CLASS_NAMES
    elif args.dataset == "oxford_iiit_pet":
        train = data.load_oxford_pets("train", size, data_dir=args.data_dir)
        validation = data.load_oxford_pets("test", size, data_dir=args.data_dir)
        class_names = data.PETS_CLASS_NAMES
    else:
        if not args.images_dir or not args.masks_dir or not args.num_classes:
            raise ValueError(
                "--dataset folder needs --images-dir, --masks-dir and --num-classes."
            )
        everything = data.load_segmentation_folder(args.images_dir, args.masks_dir, size)
        count = int(everything.cardinality())
        num_val = max(1, count // 5)
        validation, train = everything.take(num_val), everything.skip(num_val)
        class_names = tuple(f"class {index}" for index in range(args.num_classes))
    if args.smoke:
        train, validation = train.take(SMOKE_IMAGES), validation.take(SMOKE_IMAGES)
    # Checked before the pipeline caches it: a partial read of a cached dataset
    # leaves the cache incomplete (tf.data warns about it on every run).
    data.validate_dataset(train, len(class_names))
    augmenter = (
        data.build_segmentation_augmenter(flip=True, zoom=0.1, seed=args.seed)
        if args.augment == "true" else None
    )
    train = data.make_segmentation_pipeline(
        train, args.batch_size, training=True, augmenter=augmenter, seed=args.seed
    )
    validation = data.make_segmentation_pipeline(validation, args.batch_size, training=False)
    return train, validation, class_names


def compile_segmenter(model, num_classes, loss, learning_rate, jit_compile="auto"):
    """Compiles a segmenter with Adam, the named loss and mIoU / pixel accuracy.

    Runs in the scope of the strategy the model was built under (see
    `--strategy`): the optimizer and metric variables must be distributed
    like the weights. The optimizer is built here, inside that scope.
    """
    with model.distribute_strategy.scope():
        model.compile(
            optimizer=FusedAdam(learning_rate),
            loss=get_segmentation_loss(loss, num_classes=num_classes),
            metrics=[MeanIoU(num_classes, name="mean_iou"),
                     PixelAccuracy(num_classes, name="pixel_accuracy")],
            jit_compile=resolve_jit_compile(jit_compile),
        )
        model.optimizer.build(model.trainable_variables)


def train_segmenter(model, args, train, validation, class_names, backbone, pretrained, verbose):
    """Fits, reports, plots and exports a segmenter as the recipes do.

    Args:
        model: segmenter from `build_fcn`/`build_unet` (backbone sub-model
            named "backbone", or none for a scratch U-Net).
        args: parsed recipe flags.
        train, validation: batched datasets.
        class_names: tuple of str.
        backbone: registered backbone name, or None (single-phase training).
        pretrained: bool, whether the backbone holds pretrained weights.
        verbose: `fit` verbosity.

    Returns:
        dict summary: mean IoU, per-class IoU, pixel accuracy, seconds,
        export path (also written to `<output-dir>/summary.json`).
    """
    num_classes = len(class_names)
    started = time.time()

    def compile_fn(learning_rate):
        compile_segmenter(model, num_classes, args.loss, learning_rate, args.jit_compile)

    if args.smoke:
        frozen, finetune = 1, 0
    elif pretrained:
        frozen, finetune = args.frozen_epochs, args.finetune_epochs
    else:  # from random weights there is nothing to freeze: --epochs of full training
        frozen, finetune = args.epochs, 0
    history = fit_two_phase_from_flags(
        model, backbone, train, validation, compile_fn, args, "val_mean_iou",
        frozen, finetune, pretrained, verbose,
    )
    train_seconds = time.time() - started

    confusion = segmentation_confusion_matrix(model, validation, num_classes)
    report = segmentation_report(confusion, class_names)
    print(report)
    summary = _summarise(confusion, class_names, train_seconds)
    print(f"validation mIoU {summary['mean_iou']:.4f} after {train_seconds / 60:.1f} min of training")

    _plot_predictions(model, validation, class_names, os.path.join(args.output_dir, "predictions.png"))
    if history:
        visualize.plot_history(history, os.path.join(args.output_dir, "history.png"))
    summary["export_path"] = export_image_model(model, args.export_dir)
    print(f"exported to {summary['export_path']}")
    write_json(os.path.join(args.output_dir, "summary.json"), summary)
    return summary


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
    "load_segmentation_data",
    "train_segmenter",
]
