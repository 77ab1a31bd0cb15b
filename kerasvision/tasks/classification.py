"""The classification task as recipes run it: data flags, compile, fit, report, plots, export.

`recipes/cnn_classifier.py` (a Sequential CNN trained from scratch) and
`recipes/transfer_classifier.py` (feature extraction, then fine-tuning) differ
only in the model they build and how they train it; everything else they
share lives here, as `kerasvision.tasks.segmentation` does for segmentation.

Datasets (`--dataset`):
    shapes: the embedded one-shape images (`kerasvision.data.shapes`), generated
        offline and deterministically from `--seed`.
    mnist, fashion_mnist, cifar10, oxford_flowers102: TensorFlow Datasets
        (`--data-dir`), grayscale repeated to RGB.
    folder: `--images-dir` with one sub-directory of images per class
        (`kerasvision.data.load_image_folder`), 20% held out for validation.
"""

import os
import time

import numpy as np
import keras

from kerasvision import visualize
from kerasvision.data.augment import build_classification_augmenter
from kerasvision.data.loaders import load_image_folder, load_tfds_classification, tfds_class_names
from kerasvision.data.pipelines import make_classification_pipeline
from kerasvision.data.shapes import SHAPES_CLASSIFICATION_NAMES, load_shapes_classification
from kerasvision import kernels
from kerasvision.metrics import (
    classification_confusion_matrix,
    classification_report,
    per_class_accuracy,
)
from kerasvision.tasks.runs import image_counts
from kerasvision.training import (
    distribute,
    load_model_weights,
    make_callbacks,
    read_history,
    resolve_jit_compile,
)
from kerasvision.validation import check_int

# tfds name -> (training split, validation split).
TFDS_DATASETS = {
    "mnist": ("train", "test"),
    "fashion_mnist": ("train", "test"),
    "cifar10": ("train", "test"),
    "oxford_flowers102": ("train", "validation"),
}
DATASETS = ("shapes", *TFDS_DATASETS, "folder")
SMOKE_IMAGES = 16
MONITOR = "val_accuracy"


def add_classification_flags(parser):
    """Adds the data flags of classification recipes to a `recipe_parser`."""
    group = parser.add_argument_group("classification data")
    group.add_argument(
        "--dataset", choices=DATASETS, default="shapes",
        help="shapes: the embedded one-shape images (offline); mnist, fashion_mnist, cifar10, "
        "oxford_flowers102 via tfds; folder: --images-dir with a sub-directory per class",
    )
    group.add_argument("--images-dir",
                       help="one sub-directory of images per class, for --dataset folder")
    group.add_argument("--data-dir", help="tfds data directory")
    group.add_argument("--num-train", type=int, default=None, help="training images (shapes)")
    group.add_argument("--num-val", type=int, default=None, help="validation images (shapes)")
    group.add_argument("--augment", choices=("true", "false"), default="true",
                       help="random flips, rotations and zooms while training")
    return parser


def build_augmenter(args):
    """The recipes' augmentation: flips, small rotations and zooms, or None with --augment false."""
    if args.augment != "true":
        return None
    return build_classification_augmenter(
        flip="horizontal_and_vertical", rotation=0.05, zoom=0.1, seed=args.seed
    )


def load_classification_data(args, augmenter=None):
    """Returns `(train, validation, class_names)`: batched pipelines for the recipe's flags.

    Args:
        args: parsed recipe flags (`add_classification_flags`, `recipe_parser`).
        augmenter: optional callable on image batches, applied in the
            training pipeline (a model with its own augmentation layers needs none).

    Returns:
        `train`, `validation`: `tf.data.Dataset`s of `(images float32
        [B, S, S, 3] in [0, 255], labels int32 [B])`; `class_names`: tuple of str.
    """
    size = args.image_size
    if args.dataset == "shapes":
        num_train, num_val = image_counts(args, SMOKE_IMAGES)
        train = load_shapes_classification("train", num_train, size, seed=args.seed)
        validation = load_shapes_classification("validation", num_val, size, seed=args.seed)
        class_names = tuple(SHAPES_CLASSIFICATION_NAMES)
    elif args.dataset == "folder":
        if not args.images_dir:
            raise ValueError("--dataset folder needs --images-dir (one sub-directory per class).")
        train, class_names = load_image_folder(args.images_dir, size, 0.2, "training", args.seed)
        validation, _ = load_image_folder(args.images_dir, size, 0.2, "validation", args.seed)
    else:
        train_split, validation_split = TFDS_DATASETS[args.dataset]
        train = load_tfds_classification(args.dataset, train_split, size, data_dir=args.data_dir)
        validation = load_tfds_classification(
            args.dataset, validation_split, size, data_dir=args.data_dir
        )
        class_names = tfds_class_names(args.dataset, args.data_dir)
    if args.smoke:
        train, validation = train.take(SMOKE_IMAGES), validation.take(SMOKE_IMAGES)
    train = make_classification_pipeline(
        train, args.batch_size, training=True, augmenter=augmenter, seed=args.seed
    )
    validation = make_classification_pipeline(validation, args.batch_size, training=False)
    return train, validation, class_names


def compile_classifier(model, learning_rate, jit_compile="auto"):
    """Compiles a logits classifier with Adam, sparse cross-entropy and accuracy.

    Runs in the scope of the strategy the model was built under (see
    `--strategy`), where the optimizer is also built.
    """
    with model.distribute_strategy.scope():
        model.compile(
            optimizer=kernels.adam(learning_rate),
            loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
            metrics=[keras.metrics.SparseCategoricalAccuracy(name="accuracy")],
            jit_compile=resolve_jit_compile(jit_compile),
        )
        model.optimizer.build(model.trainable_variables)


def fit_classifier(model, train, validation, run_dir, epochs, verbose=2, patience=None,
                   steps_per_epoch=None, max_minutes=None):
    """Trains a classifier in one phase, with checkpoints, logs and optional early stopping.

    Rerunning after a kill resumes from the last finished epoch (`ResumableBackup`).
    The model ends with the weights of its best epoch (`best.weights.h5`).

    Args:
        model: a compiled classifier.
        train, validation: batched datasets.
        run_dir: str, directory for `best.weights.h5`, `history.csv` and the backup.
        epochs: int >= 1.
        verbose: `fit` verbosity.
        patience: int or None, epochs without a better `val_accuracy` before stopping.
        steps_per_epoch: int or None.
        max_minutes: float or None, wall-clock training budget (`TimeBudget`).

    Returns:
        dict metric -> per-epoch values, read back from `history.csv`.
    """
    check_int("epochs", epochs, minimum=1)
    deadline = time.time() + 60 * max_minutes if max_minutes else None
    callbacks = make_callbacks(run_dir, MONITOR, "max", deadline=deadline)
    if patience:
        callbacks.append(
            keras.callbacks.EarlyStopping(
                monitor=MONITOR, mode="max", patience=patience, restore_best_weights=True
            )
        )
    distribute.fit(  # model.fit, or the multi-worker loop (keras#20585)
        model,
        train,
        validation_data=validation,
        epochs=epochs,
        steps_per_epoch=steps_per_epoch,
        shuffle=False,  # the tf.data pipeline shuffles
        callbacks=callbacks,
        verbose=verbose,
    )
    best = os.path.join(run_dir, "best.weights.h5")
    if os.path.exists(best):  # as `fit_two_phase` does: end with the best epoch's weights
        load_model_weights(model, best)
    return read_history(os.path.join(run_dir, "history.csv"))


def phase_accuracies(history, phases):
    """Validation accuracy at the end of each phase, from a history over all phases.

    Args:
        history: dict with a per-epoch `val_accuracy` list.
        phases: list of `(phase name, planned epochs)` in training order.

    Returns:
        dict phase name -> accuracy at the phase's last logged epoch (phases
        that logged no epoch left out).
    """
    values = history.get(MONITOR, [])
    result, first_epoch = {}, 0
    for phase, epochs in phases:
        # A phase cut short (time budget, early stopping) ends at its last logged epoch.
        last_epoch = min(first_epoch + epochs, len(values))
        if last_epoch > first_epoch:
            result[phase] = values[last_epoch - 1]
        first_epoch += epochs
    return result


def print_phase_accuracies(history, phases):
    """Prints and returns the validation accuracy after each phase (`phase_accuracies`)."""
    after_phase = phase_accuracies(history, phases)
    for phase, accuracy in after_phase.items():
        print(f"validation accuracy after {phase.replace('_', ' ')}: {accuracy:.4f}")
    return after_phase


def evaluate_classifier(model, dataset, class_names, train_seconds=None):
    """Prints the per-class report of a classifier on a dataset and returns its figures.

    Args:
        model: maps images `[batch, H, W, 3]` to logits `[batch, C]`.
        dataset: batched `(images, labels [batch])`, usually the validation split.
        class_names: tuple of `C` str.
        train_seconds: float or None, training time, printed and kept in the summary.

    Returns:
        dict: `accuracy`, `per_class_accuracy` (class name -> accuracy),
        `confusion_matrix` (`C` lists of `C` counts, rows true class),
        `train_seconds`.
    """
    confusion = classification_confusion_matrix(model, dataset, len(class_names))
    print(classification_report(confusion, class_names))
    accuracy = float(np.trace(confusion) / max(confusion.sum(), 1))
    minutes = "" if train_seconds is None else f" after {train_seconds / 60:.1f} min of training"
    print(f"validation accuracy {accuracy:.4f}{minutes}")
    return {
        "accuracy": accuracy,
        "per_class_accuracy": dict(zip(class_names, map(float, per_class_accuracy(confusion)))),
        "confusion_matrix": confusion.tolist(),
        "train_seconds": train_seconds,
    }


def plot_classification_run(summary, class_names, history, output_dir):
    """Writes `confusion_matrix.png` (from `evaluate_classifier`'s summary) and `history.png`."""
    visualize.plot_confusion_matrix(np.asarray(summary["confusion_matrix"]), class_names,
                                    os.path.join(output_dir, "confusion_matrix.png"))
    if history:
        visualize.plot_history(history, os.path.join(output_dir, "history.png"))


__all__ = [
    "DATASETS",
    "TFDS_DATASETS",
    "add_classification_flags",
    "build_augmenter",
    "compile_classifier",
    "evaluate_classifier",
    "fit_classifier",
    "load_classification_data",
    "phase_accuracies",
    "plot_classification_run",
    "print_phase_accuracies",
]
