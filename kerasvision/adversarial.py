"""Adversarial examples for any classifier passed in: FGSM and PGD (L-infinity).

- `fgsm`: Goodfellow, Shlens and Szegedy, "Explaining and Harnessing
  Adversarial Examples", ICLR 2015: one step of size epsilon along the sign
  of the loss gradient, `x + epsilon * sign(grad_x L(f(x), y))`.
- `pgd`: Madry et al., "Towards Deep Learning Models Resistant to Adversarial
  Attacks", ICLR 2018: projected gradient ascent on the loss from a random
  start in the epsilon-ball, each step followed by a projection back onto
  the ball and the valid pixel range.
- `attacked_accuracy`: a classifier's accuracy on clean or attacked images.

Units. kerasvision classifiers take raw RGB pixels in [0, 255] (their
`Rescaling(1/255)` or `ImagePreprocessing` layer is inside the model), so
images stay in `pixel_range=(0, 255)`. `epsilon` and `step_size` are
fractions of that range, as the papers quote them for [0, 1] images:
`epsilon=8/255` lets every pixel move by 8 grey levels. The perturbation is
then `epsilon * (high - low)` pixels.

The attacks run the model in inference mode (`training=False`), return
float32 tensors, leave the model unchanged and work inside a `tf.function`
(the adversarial trainer `kerasvision.models.classifier.AdversarialClassifier`
calls them inside its `train_step`).
"""

import numbers

import keras
import numpy as np
import tensorflow as tf
from keras import ops

from kerasvision.validation import check_choice, check_int, check_pixel_range, fill_doc

ATTACKS = ("fgsm", "pgd")

_DOC_ARGS = """model: a `keras.Model` mapping images to class scores `[batch, num_classes]`.
        images: `[batch, H, W, C]` images in `pixel_range` (numpy or tensor, any
            real dtype).
        labels: int `[batch]` true classes (the loss the attack raises is the
            sparse cross-entropy against them).
        epsilon: float in [0, 1], the L-infinity budget as a fraction of the
            pixel range (8/255: 8 grey levels of [0, 255] images)."""

_DOC_COMMON = """from_logits: bool, whether the model returns logits (all kerasvision
            classifiers do) rather than probabilities.
        pixel_range: `(low, high)` of the model's input pixels; adversarial
            images are clipped to it (kerasvision models: (0, 255))."""


# ----------------------------------------------------------------------------
# Argument checks
# ----------------------------------------------------------------------------


def check_fraction(name, value, strict=False):
    """Raise unless `value` is a real number in [0, 1] ((0, 1] when `strict`); nan rejected."""
    bound = "(0, 1]" if strict else "[0, 1]"
    if isinstance(value, bool) or not isinstance(value, numbers.Real) or not (
        (value > 0 if strict else value >= 0) and value <= 1
    ):
        raise ValueError(
            f"`{name}` must be a number in {bound}, a fraction of the pixel range (e.g. 8/255); "
            f"received {name}={value!r}."
        )
    return float(value)


def _check_from_logits(from_logits):
    if not isinstance(from_logits, bool):
        raise ValueError(  # noqa: TRY004 (argument checks raise ValueError throughout)
            f"`from_logits` must be True or False; received from_logits={from_logits!r}."
        )
    return from_logits


def _check_inputs(model, images, labels, pixel_range):
    """float32 images and int32 labels as tensors, checked when their values are known."""
    if not isinstance(model, keras.Model):
        raise ValueError(  # noqa: TRY004 (argument checks raise ValueError throughout)
            f"`model` must be a keras.Model; received model={model!r}."
        )
    for name, value in (("images", images), ("labels", labels)):
        dtype = getattr(value, "dtype", None)
        if dtype is not None and not str(getattr(dtype, "name", dtype)).startswith(
            ("int", "uint", "float", "bfloat", "bool")
        ):
            raise ValueError(f"`{name}` must hold numbers; received {name} of dtype {dtype}.")
    images = ops.cast(ops.convert_to_tensor(images), "float32")
    labels = ops.convert_to_tensor(labels)
    shape = tuple(images.shape)
    if len(shape) != 4 or shape[0] == 0:
        raise ValueError(
            f"`images` must be a non-empty batch [batch, height, width, channels]; received "
            f"shape {shape}."
        )
    if tuple(labels.shape) != shape[:1]:
        raise ValueError(
            f"`labels` must hold one class id per image, shape ({shape[0]},); received shape "
            f"{tuple(labels.shape)} (sparse labels, not one-hot)."
        )
    if "float" in str(labels.dtype):
        values = ops.convert_to_numpy(labels) if tf.executing_eagerly() else None
        if values is not None and np.any(values != np.round(values)):
            raise ValueError("`labels` must be integer class ids; received fractional values.")
    labels = ops.cast(labels, "int32")
    low, high = pixel_range
    if tf.executing_eagerly():  # values are known: reject what clipping would silently change
        values = ops.convert_to_numpy(images)
        if not np.all(np.isfinite(values)):
            raise ValueError("`images` must be finite; received NaN or infinite values.")
        if values.min() < low or values.max() > high:
            raise ValueError(
                f"`images` must lie in pixel_range ({low:g}, {high:g}); received values from "
                f"{values.min():g} to {values.max():g}. Pass the range the model takes."
            )
    return images, labels


# ----------------------------------------------------------------------------
# The attacks (unchecked cores, usable inside a train_step)
# ----------------------------------------------------------------------------


def loss_gradient(model, images, labels, from_logits=True):
    """Gradient of the summed sparse cross-entropy with respect to the images.

    The sum (not the mean) keeps each image's gradient independent of the
    batch size; the attacks only use its sign.

    Args:
        model: a `keras.Model` returning class scores, run with `training=False`.
        images: float32 tensor `[batch, H, W, C]`.
        labels: int tensor `[batch]`.
        from_logits: bool.

    Returns:
        `(gradient [batch, H, W, C], per-image loss [batch])`.
    """
    with tf.GradientTape() as tape:
        tape.watch(images)
        outputs = ops.cast(model(images, training=False), "float32")
        losses = keras.losses.sparse_categorical_crossentropy(
            labels, outputs, from_logits=from_logits)
        total = ops.sum(losses)
    return tape.gradient(total, images), losses


def fgsm_step(model, images, labels, epsilon, from_logits=True, pixel_range=(0.0, 255.0)):
    """FGSM without argument checks (for `train_step`s); see `fgsm`."""
    low, high = pixel_range
    gradient, _ = loss_gradient(model, images, labels, from_logits)
    adversarial = images + (epsilon * (high - low)) * ops.sign(gradient)
    return ops.stop_gradient(ops.clip(adversarial, low, high))


def pgd_steps(model, images, labels, epsilon, step_size, steps, random_start=True, seed=None,
              from_logits=True, pixel_range=(0.0, 255.0)):
    """PGD without argument checks (for `train_step`s); see `pgd`.

    `seed` may be a `keras.random.SeedGenerator` (fresh noise at every call
    inside a compiled step), an int or None.
    """
    low, high = pixel_range
    radius = epsilon * (high - low)
    step = step_size * (high - low)
    lower, upper = ops.maximum(images - radius, low), ops.minimum(images + radius, high)
    adversarial = images
    if random_start:  # (epsilon may be a tensor: a zero radius draws zero noise)
        noise = keras.random.uniform(ops.shape(images), seed=seed) * 2.0 - 1.0
        adversarial = ops.clip(images + radius * noise, lower, upper)
    for _ in range(steps):  # a Python loop: `steps` is small and fixed, so it unrolls
        gradient, _ = loss_gradient(model, adversarial, labels, from_logits)
        # Ascend, then project onto the epsilon-ball around the image and the
        # pixel range (their intersection is a box: clipping is the projection).
        adversarial = ops.clip(adversarial + step * ops.sign(gradient), lower, upper)
    return ops.stop_gradient(adversarial)


# ----------------------------------------------------------------------------
# Public, checked attacks
# ----------------------------------------------------------------------------


def _fgsm_arguments(epsilon, from_logits=True, pixel_range=(0.0, 255.0)):
    """`fgsm_step`'s keyword arguments, checked."""
    return {
        "epsilon": check_fraction("epsilon", epsilon),
        "from_logits": _check_from_logits(from_logits),
        "pixel_range": check_pixel_range(pixel_range),
    }


def _pgd_arguments(epsilon, step_size=None, steps=10, random_start=True, seed=None,
                   from_logits=True, pixel_range=(0.0, 255.0)):
    """`pgd_steps`' keyword arguments, checked (`step_size` None: `2.5 * epsilon / steps`)."""
    epsilon = check_fraction("epsilon", epsilon)
    steps = check_int("steps", steps, minimum=1)
    if step_size is None:
        step_size = 2.5 * epsilon / steps if epsilon > 0 else 1.0 / 255
    if not isinstance(random_start, bool):
        raise ValueError(  # noqa: TRY004 (argument checks raise ValueError throughout)
            f"`random_start` must be True or False; received random_start={random_start!r}.")
    if not (seed is None or isinstance(seed, keras.random.SeedGenerator)):
        seed = check_int("seed", seed, minimum=0)
    return {
        "epsilon": epsilon,
        "step_size": check_fraction("step_size", step_size, strict=True),
        "steps": steps,
        "random_start": random_start,
        "seed": seed,
        "from_logits": _check_from_logits(from_logits),
        "pixel_range": check_pixel_range(pixel_range),
    }


@fill_doc(args=_DOC_ARGS, common=_DOC_COMMON)
def fgsm(model, images, labels, epsilon, from_logits=True, pixel_range=(0.0, 255.0)):
    """Fast gradient sign method (Goodfellow et al. 2015), an L-infinity attack.

    `x_adv = clip(x + epsilon * (high - low) * sign(grad_x L(f(x), y)), low, high)`
    with `L` the sparse cross-entropy of the true labels.

    Args:
        {args}
        {common}

    Returns:
        float32 tensor `[batch, H, W, C]`, within `epsilon * (high - low)` of
        `images` (L-infinity) and inside `pixel_range`.

    Raises:
        ValueError: epsilon outside [0, 1], images outside `pixel_range`, or
            labels not one int per image.

    Example:
        >>> adversarial = fgsm(model, images, labels, epsilon=8 / 255)
        >>> float(np.abs(adversarial - images).max()) <= 8.0 + 1e-3
        True
    """
    arguments = _fgsm_arguments(epsilon, from_logits, pixel_range)
    images, labels = _check_inputs(model, images, labels, arguments["pixel_range"])
    return fgsm_step(model, images, labels, **arguments)


@fill_doc(args=_DOC_ARGS, common=_DOC_COMMON)
def pgd(model, images, labels, epsilon, step_size=None, steps=10, random_start=True, seed=None,
        from_logits=True, pixel_range=(0.0, 255.0)):
    """Projected gradient descent on the loss (Madry et al. 2018), L-infinity.

    From `x_0 = x + U(-eps, eps)` (`random_start`) or `x_0 = x`, repeats
    `steps` times `x_{t+1} = Proj(x_t + step_size * sign(grad_x L(f(x_t), y)))`,
    where `Proj` clips to the epsilon-ball around `x` and to `pixel_range`
    (with `eps` and `step_size` times `high - low`).

    Args:
        {args}
        step_size: float in (0, 1], each step as a fraction of the pixel
            range; None: `2.5 * epsilon / steps`, so that the steps together
            can cross the ball and come back (Madry et al.'s CIFAR-10 attack,
            7 steps of 2/255 at epsilon 8/255, moves 1.75 epsilon in total).
        steps: int >= 1, gradient steps.
        random_start: bool, start from a uniform random point of the ball.
        seed: None, an int >= 0 (the same start for the same call) or a
            `keras.random.SeedGenerator`.
        {common}

    Returns:
        float32 tensor `[batch, H, W, C]`, within `epsilon * (high - low)` of
        `images` and inside `pixel_range`.

    Raises:
        ValueError: epsilon outside [0, 1], step_size outside (0, 1], steps < 1,
            images outside `pixel_range`, or labels not one int per image.

    Example:
        >>> adversarial = pgd(model, images, labels, epsilon=8 / 255, steps=7, seed=0)
    """
    arguments = _pgd_arguments(epsilon, step_size, steps, random_start, seed, from_logits,
                               pixel_range)
    images, labels = _check_inputs(model, images, labels, arguments["pixel_range"])
    return pgd_steps(model, images, labels, **arguments)


def attacked_accuracy(model, images, labels, attack=None, batch_size=128, **attack_args):
    """Accuracy of a classifier on clean images or on their adversarial versions.

    Args:
        model: a `keras.Model` returning class scores `[batch, num_classes]`.
        images: `[N, H, W, C]` numpy images in the attack's `pixel_range`.
        labels: int `[N]` true classes.
        attack: None (clean accuracy), "fgsm" or "pgd".
        batch_size: int >= 1, images attacked at a time.
        **attack_args: arguments of `fgsm` / `pgd` (`epsilon`, `steps`, ...);
            an int PGD `seed` seeds a generator, so each batch starts elsewhere.

    Returns:
        `(accuracy: float, adversarial images: float32 numpy [N, H, W, C])`
        (the images themselves for `attack=None`).

    Example:
        >>> accuracy, _ = attacked_accuracy(model, images, labels, "fgsm", epsilon=8 / 255)
    """
    images, labels, batch_size = _check_evaluation_set(images, labels, batch_size)
    if attack is None:
        if attack_args:
            raise ValueError(
                f"Attack arguments {sorted(attack_args)} need an `attack`; received attack=None.")
        return _evaluate(_compiled_attack(model, None, {}), images, labels, batch_size)
    arguments = _checked_attack_arguments(model, images, labels, attack, attack_args)
    step = _compiled_attack(model, attack, arguments)
    return _evaluate(step, images, labels, batch_size, arguments["epsilon"],
                     arguments.get("step_size", 0.0))


def robustness_curve(model, images, labels, epsilons, attack="fgsm", batch_size=128,
                     **attack_args):
    """Accuracy under an attack at each budget: the accuracy-versus-epsilon curve.

    The attack is traced once and run at every epsilon.

    Args:
        model: a `keras.Model` returning class scores.
        images: `[N, H, W, C]` numpy images in the attack's `pixel_range`.
        labels: int `[N]`.
        epsilons: sequence of floats in [0, 1] (fractions of the pixel range).
        attack: "fgsm" or "pgd".
        batch_size: int >= 1.
        **attack_args: other arguments of the attack (`steps`, `seed`, ...);
            PGD's `step_size` defaults to `2.5 * epsilon / steps` at each epsilon.

    Returns:
        list of floats, the accuracy at each epsilon (epsilon 0: clean).

    Example:
        >>> robustness_curve(model, images, labels, [0, 4 / 255, 8 / 255], "pgd", steps=10)
    """
    images, labels, batch_size = _check_evaluation_set(images, labels, batch_size)
    epsilons = [check_fraction("epsilons", value) for value in epsilons]
    arguments = _checked_attack_arguments(model, images, labels, attack,
                                          dict(attack_args, epsilon=max(epsilons, default=0.0)))
    step = _compiled_attack(model, attack, arguments)
    accuracies = []
    for epsilon in epsilons:
        step_size = 0.0
        if attack == "pgd":
            step_size = attack_args.get("step_size") or 2.5 * epsilon / arguments["steps"]
        accuracies.append(_evaluate(step, images, labels, batch_size, epsilon, step_size)[0])
    return accuracies


def _check_evaluation_set(images, labels, batch_size):
    batch_size = check_int("batch_size", batch_size, minimum=1)
    images, labels = np.asarray(images), np.asarray(labels)
    if images.ndim != 4 or len(images) == 0 or labels.shape != images.shape[:1]:
        raise ValueError(
            "`images` [N, H, W, C] and `labels` [N] must describe the same non-empty batch; "
            f"received shapes {images.shape} and {labels.shape}."
        )
    return images.astype(np.float32), labels.astype(np.int32), batch_size


def _checked_attack_arguments(model, images, labels, attack, attack_args):
    """The attack's keyword arguments, checked as `fgsm`/`pgd` check them, with the whole set."""
    check_choice("attack", attack, ATTACKS)
    arguments = (_fgsm_arguments if attack == "fgsm" else _pgd_arguments)(**attack_args)
    if attack == "pgd" and not isinstance(arguments["seed"], keras.random.SeedGenerator):
        # A generator: each batch (and each epsilon) gets its own random start.
        arguments["seed"] = keras.random.SeedGenerator(arguments["seed"])
    _check_inputs(model, images, labels, arguments["pixel_range"])
    return arguments


def _compiled_attack(model, attack, arguments):
    """A `tf.function` (images, labels, epsilon, step_size) -> (attacked images, outputs).

    Epsilon and the step size are tensors, so one trace serves every budget;
    compiled, a PGD batch runs several times faster than eagerly.
    """
    fixed = {key: value for key, value in arguments.items() if key not in ("epsilon", "step_size")}

    @tf.function(reduce_retracing=True)  # a smaller last batch reuses the trace
    def step(batch, batch_labels, epsilon, step_size):
        if attack == "fgsm":
            batch = fgsm_step(model, batch, batch_labels, epsilon, **fixed)
        elif attack == "pgd":
            batch = pgd_steps(model, batch, batch_labels, epsilon, step_size, **fixed)
        return batch, model(batch, training=False)

    return step


def _evaluate(step, images, labels, batch_size, epsilon=0.0, step_size=0.0):
    """`(accuracy, attacked images)` of a compiled attack over a numpy set, by batches."""
    epsilon, step_size = np.float32(epsilon), np.float32(step_size)
    attacked, correct = [], 0
    for start in range(0, len(images), batch_size):
        batch_labels = labels[start:start + batch_size]
        batch, outputs = step(images[start:start + batch_size], batch_labels, epsilon, step_size)
        predicted = np.argmax(ops.convert_to_numpy(outputs), axis=-1)
        correct += int(np.sum(predicted == batch_labels))
        attacked.append(ops.convert_to_numpy(batch))
    return correct / len(images), np.concatenate(attacked)


__all__ = [
    "ATTACKS",
    "attacked_accuracy",
    "check_fraction",
    "check_pixel_range",
    "fgsm",
    "fgsm_step",
    "loss_gradient",
    "pgd",
    "pgd_steps",
    "robustness_curve",
]
