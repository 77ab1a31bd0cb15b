"""Explanations and adversarial robustness as the recipes run them.

`recipes/explain.py` (Grad-CAM and saliency of a shapes classifier) and
`recipes/adversarial.py` (FGSM/PGD against a plain and an adversarially
trained classifier) train their classifiers with
`kerasvision.tasks.classification`; what they add lives here: the flags'
checks, the explanation examples with object masks, the adversarial fit,
the accuracy-versus-epsilon table and the figures.
"""

import os
import time

import keras
import numpy as np

from kerasvision import adversarial, explain, visualize
from kerasvision.data.shapes import make_shapes_scenes
from kerasvision.tasks.classification import SMOKE_IMAGES
from kerasvision.training import (
    distribute,
    load_model_weights,
    make_callbacks,
    read_history,
)
from kerasvision.validation import check_int

# `make_shapes_classification`'s defaults: object size 40-70% of the side, noise 6.
_CLASSIFICATION_SCALE = (0.4, 0.7)
_CLASSIFICATION_NOISE = 6.0
ADVERSARIAL_MONITOR = "val_adversarial_accuracy"


# ----------------------------------------------------------------------------
# Flags
# ----------------------------------------------------------------------------


def _positive_int(flag, value, minimum=1):
    if value < minimum:
        raise ValueError(f"{flag} must be >= {minimum}; received {value}.")


def check_explain_args(args):
    """Validates the explain recipe's own flags; raises ValueError naming the flag."""
    _positive_int("--num-explain", args.num_explain)
    _positive_int("--num-plot", args.num_plot)
    _positive_int("--samples", args.samples)
    if not args.noise >= 0:
        raise ValueError(f"--noise must be >= 0 (a fraction of the pixel range); received {args.noise}.")
    if args.weights and not os.path.exists(args.weights):
        raise FileNotFoundError(f"--weights file not found: {args.weights}")


def check_adversarial_args(args):
    """Validates the adversarial recipe's own flags (epsilons in grey levels); raises ValueError."""
    checks = [("--epsilons", value) for value in args.epsilons]
    for flag, value in [*checks, ("--train-epsilon", args.train_epsilon)]:
        if not 0 <= value <= 255:  # also rejects nan
            raise ValueError(
                f"{flag} must be in [0, 255] grey levels (epsilon x 255, e.g. 8); received {value}.")
    _positive_int("--pgd-steps", args.pgd_steps)
    _positive_int("--train-steps", args.train_steps)
    _positive_int("--adversarial-epochs", args.adversarial_epochs, minimum=0)
    _positive_int("--num-eval", args.num_eval)
    if not 0 <= args.adversarial_weight <= 1:
        raise ValueError(f"--adversarial-weight must be in [0, 1]; received {args.adversarial_weight}.")


# ----------------------------------------------------------------------------
# Explanations
# ----------------------------------------------------------------------------


def shapes_with_masks(count, image_size=32, seed=0, split="test"):
    """One-shape images like the embedded classification set, with their object masks.

    `make_shapes_classification` returns no masks, so the scene generator is
    asked for exactly one object at the classification set's scales and
    noise (another random stream, the same kind of image); each label is the
    class of the mask's one shape.

    Returns:
        images uint8 `[N, S, S, 3]`, labels int32 `[N]` (0..3), masks bool `[N, S, S]`.
    """
    images, masks = make_shapes_scenes(
        count, image_size=image_size, seed=seed, split=split, min_objects=1, max_objects=1,
        min_scale=_CLASSIFICATION_SCALE[0], max_scale=_CLASSIFICATION_SCALE[1],
        noise_std=_CLASSIFICATION_NOISE)
    labels = masks.reshape(count, -1).max(axis=1).astype(np.int32) - 1
    return images, labels, masks > 0


def explanation_examples(args, validation):
    """`(images, labels, masks or None)` to explain: masked shapes, or validation images.

    Args:
        args: parsed flags (`--dataset`, `--num-explain`, `--image-size`, `--seed`, `--smoke`).
        validation: the batched validation pipeline (used for other datasets, which have no masks).
    """
    count = min(args.num_explain, SMOKE_IMAGES) if args.smoke else args.num_explain
    if args.dataset == "shapes":
        return shapes_with_masks(count, args.image_size, seed=args.seed)
    images, labels = as_arrays(validation, count)
    return images, labels, None


def as_arrays(dataset, count):
    """The first `count` examples of a batched `(images, labels)` dataset as numpy arrays."""
    images, labels = [], []
    for batch_images, batch_labels in dataset:
        images.append(np.asarray(batch_images))
        labels.append(np.asarray(batch_labels))
        if sum(len(batch) for batch in images) >= count:
            break
    return np.concatenate(images)[:count], np.concatenate(labels)[:count].astype(np.int32)


def summarise_explanations(maps, masks):
    """Prints and returns each method's mean heatmap mass inside the object masks.

    Args:
        maps: dict method -> `[N, H, W]` maps in [0, 1].
        masks: bool `[N, H, W]`, or None (nothing to measure).

    Returns:
        dict: `mass_inside_mask` (method -> mean share), `object_area_share`,
        `pointing_game` (method -> share of maps whose peak is on the object,
        Zhang et al. 2016); empty without masks.
    """
    if masks is None:
        return {}
    area = float(masks.mean())
    summary = {"object_area_share": area, "mass_inside_mask": {}, "pointing_game": {}}
    print(f"objects cover {area:.1%} of the pixels; heatmap mass inside the object masks:")
    for name, values in maps.items():
        mass = float(np.nanmean(explain.heatmap_mass_inside(values, masks)))
        peaks = values.reshape(len(values), -1).argmax(axis=1)
        pointing = float(np.mean(masks.reshape(len(masks), -1)[np.arange(len(masks)), peaks]))
        summary["mass_inside_mask"][name] = mass
        summary["pointing_game"][name] = pointing
        print(f"  {name:<12} {mass:.1%} inside ({mass / area:.1f}x the area share); "
              f"peak on the object in {pointing:.0%} of images")
    return summary


# ----------------------------------------------------------------------------
# Adversarial training and evaluation
# ----------------------------------------------------------------------------


def fit_adversarial(trainer, train, validation, run_dir, epochs, verbose=2, steps_per_epoch=None,
                    max_minutes=None):
    """Trains an `AdversarialClassifier`, keeping the epoch of best validation accuracy under attack.

    As `kerasvision.tasks.classification.fit_classifier` (resume after a kill,
    non-finite stop, time budget, `history.csv`), with `val_adversarial_accuracy`
    choosing `best.weights.h5`, which the trainer ends with.

    Returns:
        dict metric -> per-epoch values.
    """
    check_int("epochs", epochs, minimum=1)
    deadline = time.time() + 60 * max_minutes if max_minutes else None
    callbacks = make_callbacks(run_dir, ADVERSARIAL_MONITOR, "max", deadline=deadline)
    distribute.fit(trainer, train, validation_data=validation, epochs=epochs,
                   steps_per_epoch=steps_per_epoch, shuffle=False, callbacks=callbacks,
                   verbose=verbose)
    best = os.path.join(run_dir, "best.weights.h5")
    if os.path.exists(best):
        load_model_weights(trainer, best)
    return read_history(os.path.join(run_dir, "history.csv"))


def robustness_table(models, images, labels, epsilons, pgd_steps=10, seed=0):
    """Accuracy of each model under FGSM and PGD at each epsilon, printed as a table.

    Args:
        models: dict name -> classifier.
        images, labels: numpy evaluation set, pixels in [0, 255].
        epsilons: list of budgets in grey levels (0-255).
        pgd_steps: int, PGD steps (step size `2.5 * epsilon / steps`, random start).
        seed: int, PGD's random start.

    Returns:
        dict model -> {"fgsm": [accuracy per epsilon], "pgd": [...]}.
    """
    fractions = [value / 255.0 for value in epsilons]
    table = {}
    header = " ".join(f"{value:>6g}" for value in epsilons)
    print(f"accuracy under attack; epsilon in grey levels of 255:\n{'':<28}{header}")
    for name, model in models.items():
        table[name] = {
            "fgsm": adversarial.robustness_curve(model, images, labels, fractions, "fgsm"),
            "pgd": adversarial.robustness_curve(model, images, labels, fractions, "pgd",
                                                steps=pgd_steps, seed=seed),
        }
        for attack, values in table[name].items():
            row = " ".join(f"{value:6.3f}" for value in values)
            print(f"{name + ' / ' + attack:<28}{row}")
    return table


def plot_robustness(model, images, labels, epsilon, class_names, table, epsilons, path,
                    pgd_steps=10, count=4):
    """Attacks the first `count` images and draws them with `visualize.plot_robustness_curves`.

    Args:
        model: the classifier whose attacks are shown.
        images, labels: numpy images (0-255) and labels; the first `count` are shown.
        epsilon: float, the shown attacks' budget in grey levels (0: clean images only).
        class_names: names of the classes.
        table: `robustness_table`'s result.
        epsilons: its epsilons (grey levels).
        path: output PNG path.
        pgd_steps: int, PGD steps of the shown attack.
        count: int, images shown.

    Returns:
        `path`.
    """
    images, labels = images[:count].astype(np.float32), labels[:count]
    shown = {"clean": images}
    if epsilon > 0:
        shown[f"FGSM {epsilon:g}/255"] = keras.ops.convert_to_numpy(
            adversarial.fgsm(model, images, labels, epsilon / 255.0))
        shown[f"PGD {epsilon:g}/255"] = keras.ops.convert_to_numpy(
            adversarial.pgd(model, images, labels, epsilon / 255.0, steps=pgd_steps, seed=0))
    predictions = {
        name: np.argmax(keras.ops.convert_to_numpy(model(batch, training=False)), axis=-1)
        for name, batch in shown.items()}
    return visualize.plot_robustness_curves(shown, predictions, labels, class_names, table,
                                            epsilons, path)


__all__ = [
    "ADVERSARIAL_MONITOR",
    "as_arrays",
    "check_adversarial_args",
    "check_explain_args",
    "explanation_examples",
    "fit_adversarial",
    "plot_robustness",
    "robustness_table",
    "shapes_with_masks",
    "summarise_explanations",
]
