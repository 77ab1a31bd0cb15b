"""The classification task as recipes run it: data flags, compile, fit, report, plots, export.

`recipes/cnn_classifier.py` (a Sequential CNN trained from scratch) and
`recipes/transfer_classifier.py` (feature extraction, then fine-tuning) differ
only in the model they build and how they train it; everything else they
share lives here, as `kerasvision.segmentation` does for segmentation.

Datasets (`--dataset`):
    shapes: the embedded one-shape images (`kerasvision.data`), generated
        offline and deterministically from `--seed`.
    mnist, fashion_mnist, cifar10, oxford_flowers102: TensorFlow Datasets
        (`--data-dir`), grayscale repeated to RGB.
    folder: `--images-dir` with one sub-directory of images per class
        (`load_image_folder`), 20% held out for validation.
"""

import os
import time

import numpy as np
import tensorflow as tf
import keras

from kerasvision import data, distribute, visualize
from kerasvision.export import export_image_model
from kerasvision.models.classifier import freeze_batch_norm
from kerasvision.optimizers import FusedAdam
from kerasvision.training import (
    fit_two_phase_from_flags,
    load_model_weights,
    make_callbacks,
    read_history,
    resolve_jit_compile,
    write_json,
)
from kerasvision.validation import check_choice, check_float, check_int

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
_FOLDER_SUBSETS = ("training", "validation", None)


def load_image_folder(directory, image_size, validation_split=None, subset=None, seed=0):
    """Loads a folder of class sub-directories with `keras.utils.image_dataset_from_directory`.

    Args:
        directory: str, a directory holding one sub-directory per class
            (`directory/cat/*.jpg`, `directory/dog/*.jpg`); classes are the
            sub-directory names in alphabetical order.
        image_size: int, side `S` images are resized to (bilinear).
        validation_split: float in (0, 1) or None, fraction held out.
        subset: "training", "validation" (needs `validation_split`) or None (all).
        seed: int, shuffles the file list before the split; use the same
            seed for both subsets so that they are disjoint.

    Returns:
        `(dataset, class_names)`: an unbatched `tf.data.Dataset` of `(image
        float32 [S, S, 3] in [0, 255], label int32 [])` and a tuple of str.
    """
    if not isinstance(directory, (str, os.PathLike)) or not os.path.isdir(directory):
        raise ValueError(
            "`directory` must be an existing directory with one sub-directory of images "
            f"per class; received directory={directory!r}."
        )
    image_size = check_int("image_size", image_size, minimum=1)
    if subset not in _FOLDER_SUBSETS:
        raise ValueError(
            f"`subset` must be 'training', 'validation' or None; received subset={subset!r}."
        )
    if validation_split is not None:
        check_float("validation_split", validation_split, minimum=0.0, maximum=0.99, strict_minimum=True)
    if (subset is None) != (validation_split is None):
        raise ValueError(
            "`subset` and `validation_split` go together; received "
            f"subset={subset!r}, validation_split={validation_split!r}."
        )
    dataset = keras.utils.image_dataset_from_directory(
        directory,
        labels="inferred",
        label_mode="int",
        color_mode="rgb",
        batch_size=None,
        image_size=(image_size, image_size),
        shuffle=True,
        seed=seed,
        validation_split=validation_split,
        subset=subset,
        verbose=False,
    )
    class_names = tuple(dataset.class_names)
    if len(class_names) < 2:
        raise ValueError(
            f"`directory` {directory!r} must hold at least 2 class sub-directories; "
            f"found {list(class_names)}."
        )
    def to_contract(image, label):
        return tf.cast(image, tf.float32), tf.cast(label, tf.int32)

    return dataset.map(to_contract, num_parallel_calls=tf.data.AUTOTUNE), class_names


def tfds_class_names(name, data_dir=None):
    """Label names of a tfds classification set (read from its builder, no download)."""
    import tensorflow_datasets as tfds

    check_choice("name", name, TFDS_DATASETS)
    return tuple(tfds.builder(name, data_dir=data_dir).info.features["label"].names)


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
    group.add_argument("--max-train-minutes", type=float, default=None,
                       help="wall-clock budget for training; stops after the step that "
                       "exceeds it (default: none)")
    return parser


def build_augmenter(args):
    """The recipes' augmentation: flips, small rotations and zooms, or None with --augment false."""
    if args.augment != "true":
        return None
    return data.build_classification_augmenter(
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
    if args.smoke:
        args.batch_size = min(args.batch_size, SMOKE_IMAGES // 2)
    if args.dataset == "shapes":
        num_train = SMOKE_IMAGES if args.smoke else args.num_train
        num_val = SMOKE_IMAGES if args.smoke else args.num_val
        train = data.load_shapes_classification("train", num_train, size, seed=args.seed)
        validation = data.load_shapes_classification("validation", num_val, size, seed=args.seed)
        class_names = tuple(data.SHAPES_CLASSIFICATION_NAMES)
    elif args.dataset == "folder":
        if not args.images_dir:
            raise ValueError("--dataset folder needs --images-dir (one sub-directory per class).")
        train, class_names = load_image_folder(args.images_dir, size, 0.2, "training", args.seed)
        validation, _ = load_image_folder(args.images_dir, size, 0.2, "validation", args.seed)
    else:
        train_split, validation_split = TFDS_DATASETS[args.dataset]
        train = data.load_tfds_classification(args.dataset, train_split, size, data_dir=args.data_dir)
        validation = data.load_tfds_classification(
            args.dataset, validation_split, size, data_dir=args.data_dir
        )
        class_names = tfds_class_names(args.dataset, args.data_dir)
    if args.smoke:
        train, validation = train.take(SMOKE_IMAGES), validation.take(SMOKE_IMAGES)
    train = data.make_classification_pipeline(
        train, args.batch_size, training=True, augmenter=augmenter, seed=args.seed
    )
    validation = data.make_classification_pipeline(validation, args.batch_size, training=False)
    return train, validation, class_names


def compile_classifier(model, learning_rate, jit_compile="auto"):
    """Compiles a logits classifier with Adam, sparse cross-entropy and accuracy.

    Runs in the scope of the strategy the model was built under (see
    `--strategy`), where the optimizer is also built.
    """
    with model.distribute_strategy.scope():
        model.compile(
            optimizer=FusedAdam(learning_rate),
            loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
            metrics=[keras.metrics.SparseCategoricalAccuracy(name="accuracy")],
            jit_compile=resolve_jit_compile(jit_compile),
        )
        model.optimizer.build(model.trainable_variables)


def classification_confusion_matrix(model, dataset, num_classes):
    """Confusion matrix of a classifier over a dataset.

    Args:
        model: maps images `[batch, H, W, 3]` to logits `[batch, num_classes]`.
        dataset: `tf.data.Dataset` of batched `(images, labels [batch])`.
        num_classes: int.

    Returns:
        numpy int64 `[num_classes, num_classes]`, rows true class, columns predicted.
    """
    num_classes = check_int("num_classes", num_classes, minimum=2)

    @tf.function
    def predict(images):
        return tf.argmax(model(images, training=False), axis=-1)

    confusion = np.zeros((num_classes, num_classes), np.int64)
    for images, labels in dataset:
        # Flattened (true, predicted) index: one bincount fills the whole matrix.
        index = labels.numpy().astype(np.int64) * num_classes + predict(images).numpy()
        confusion += np.bincount(index, minlength=num_classes**2).reshape(num_classes, num_classes)
    return confusion


def per_class_accuracy(confusion):
    """Fraction of each class's images classified correctly (recall), NaN for absent classes.

    Args:
        confusion: `[C, C]` counts, rows true class.

    Returns:
        float64 numpy `[C]`.
    """
    confusion = np.asarray(confusion, dtype=np.float64)
    totals = confusion.sum(axis=1)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(totals > 0, np.diag(confusion) / totals, np.nan)


def classification_report(confusion, class_names):
    """A text table of per-class accuracy and image counts, with the overall accuracy."""
    confusion = np.asarray(confusion)
    accuracies = per_class_accuracy(confusion)
    width = max(len("class"), *(len(name) for name in class_names))
    lines = [f"{'class':<{width}}  images  accuracy"]
    for name, count, accuracy in zip(class_names, confusion.sum(axis=1), accuracies):
        lines.append(f"{name:<{width}}  {int(count):>6}  {accuracy:>8.4f}")
    overall = np.trace(confusion) / max(confusion.sum(), 1)
    lines.append(f"{'overall':<{width}}  {int(confusion.sum()):>6}  {overall:>8.4f}")
    return "\n".join(lines)


def fit_classifier(model, train, validation, run_dir, epochs, verbose=2, patience=None,
                   steps_per_epoch=None, max_minutes=None):
    """Trains a classifier in one phase, with checkpoints, logs and optional early stopping.

    Rerunning after a kill resumes from the last finished epoch (`BackupAndRestore`).

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


def train_classifier(
    model,
    args,
    train,
    validation,
    class_names,
    verbose,
    backbone=None,
    pretrained=False,
    patience=None,
):
    """Fits, reports, plots and exports a classifier as the recipes do.

    One phase for a model without a backbone; with one, the two phases of
    `kerasvision.training.fit_two_phase` (feature extraction, then fine-tuning
    from `--finetune-learning-rate`), or a single phase when the backbone is
    not pretrained. Prints the validation accuracy after each phase, then
    reloads the best checkpoint (best validation accuracy of the last phase)
    and reports per-class accuracy.

    Args:
        model: classifier mapping raw RGB images to logits `[batch, num_classes]`.
        args: parsed recipe flags.
        train, validation: batched datasets.
        class_names: tuple of str.
        verbose: `fit` verbosity.
        backbone: registered backbone name (model has a sub-model "backbone"), or None.
        pretrained: bool, whether the backbone holds pretrained weights.
        patience: int or None, early stopping patience (single phase only).

    Returns:
        dict summary (also in `<output-dir>/summary.json`): accuracy,
        per-class accuracy, accuracy after each phase, training seconds,
        export path. Writes `confusion_matrix.png` and `history.png`.
    """
    num_classes = len(class_names)
    steps = 2 if args.smoke else None
    started = time.time()
    if backbone is None:
        compile_classifier(model, args.learning_rate, args.jit_compile)
        epochs = 1 if args.smoke else args.epochs
        history = fit_classifier(
            model, train, validation, args.output_dir, epochs, verbose, patience, steps,
            max_minutes=args.max_train_minutes,
        )
        phases = [("training", len(history.get(MONITOR, [])))]
    else:
        frozen, finetune = (1, 1) if args.smoke else (args.frozen_epochs, args.finetune_epochs)

        def compile_fn(learning_rate):
            # fit_two_phase has just (un)frozen the backbone's stages: refreeze
            # pretrained BatchNorm layers so they stay in inference mode.
            if pretrained:
                freeze_batch_norm(model.get_layer("backbone"))
            compile_classifier(model, learning_rate, args.jit_compile)

        history = fit_two_phase_from_flags(
            model, backbone, train, validation, compile_fn, args, MONITOR,
            frozen, finetune, pretrained, verbose,
        )
        phases = (
            [("feature_extraction", frozen), ("fine_tuning", finetune)]
            if pretrained else [("scratch", frozen + finetune)]
        )
    train_seconds = time.time() - started
    after_phase = phase_accuracies(history, phases)
    for phase, accuracy in after_phase.items():
        print(f"validation accuracy after {phase.replace('_', ' ')}: {accuracy:.4f}")

    best = os.path.join(args.output_dir, "best.weights.h5")
    if os.path.exists(best):
        load_model_weights(model, best)
    confusion = classification_confusion_matrix(model, validation, num_classes)
    print(classification_report(confusion, class_names))
    accuracy = float(np.trace(confusion) / max(confusion.sum(), 1))
    print(f"validation accuracy {accuracy:.4f} after {train_seconds / 60:.1f} min of training")
    summary = {
        "accuracy": accuracy,
        "per_class_accuracy": dict(zip(class_names, map(float, per_class_accuracy(confusion)))),
        "accuracy_after_phase": after_phase,
        "train_seconds": train_seconds,
    }
    visualize.plot_confusion_matrix(
        confusion, class_names, os.path.join(args.output_dir, "confusion_matrix.png")
    )
    if history:
        visualize.plot_history(history, os.path.join(args.output_dir, "history.png"))
    summary["export_path"] = export_image_model(model, args.export_dir, outputs="logits")
    print(f"exported to {summary['export_path']}")
    write_json(os.path.join(args.output_dir, "summary.json"), summary)
    return summary


__all__ = [
    "DATASETS",
    "TFDS_DATASETS",
    "add_classification_flags",
    "build_augmenter",
    "classification_confusion_matrix",
    "classification_report",
    "compile_classifier",
    "fit_classifier",
    "load_classification_data",
    "load_image_folder",
    "per_class_accuracy",
    "phase_accuracies",
    "tfds_class_names",
    "train_classifier",
]
