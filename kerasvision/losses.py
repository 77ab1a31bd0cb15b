"""Segmentation losses with an ignore label (cross-entropy, focal, Dice), the WGAN terms, and
the metric-learning losses of verification (`ContrastiveLoss`, `TripletSemiHardLoss`).

Every loss here takes

- `y_true`: sparse integer labels `[batch, height, width]` (or
  `[batch, height, width, 1]`). Pixels equal to `ignore_label` (default 255,
  the PASCAL VOC "void" border) and labels outside `[0, num_classes)` count
  for nothing, neither in the loss nor in its normaliser.
- `y_pred`: `[batch, height, width, num_classes]` logits (`from_logits=True`,
  the default) or probabilities that sum to 1 over the last axis.

and is a `keras.losses.Loss` whose `call` returns one value per image
(`[batch]`), so Keras applies `sample_weight` per image, the reduction and the
`tf.distribute` scaling. `y_pred` is cast to float32 first, which keeps the
softmax stable under mixed precision, and no op has a data-dependent shape, so
the losses compile with `jit_compile=True`.

Example:

```python
loss = kerasvision.losses.get_segmentation_loss("ce+dice")
model.compile(optimizer="adam", loss=loss)
```
"""

import numbers

import keras
from keras import ops

from kerasvision.validation import (
    IGNORE_LABEL,
    check_float,
    check_ignore_label,
    check_label_shape,
    check_num_classes,
    fill_doc,
)

_COMMON_ARGS_DOC = """from_logits: bool, whether `y_pred` holds logits (True, the default)
            or probabilities.
        ignore_label: int or None, label value whose pixels are skipped
            (default 255); None skips nothing beyond out-of-range labels.
        reduction: Keras reduction of the per-image values; the default
            `"sum_over_batch_size"` averages them over the batch.
        name: str or None, the loss name.
        dtype: dtype of the reduced loss (default `keras.config.floatx()`);
            the computation itself always runs in float32."""


# ---------------------------------------------------------------------------
# Private helpers shared by the losses.
# ---------------------------------------------------------------------------


def _check_bool(name, value):
    if not isinstance(value, bool):
        raise ValueError(f"`{name}` must be True or False; received {name}={value!r}.")
    return value


def _check_weight_list(name, values, allow_scalar=False):
    """Validate None, a non-negative number (if allowed) or a list of them."""
    if values is None:
        return None
    if allow_scalar and isinstance(values, numbers.Real) and not isinstance(values, bool):
        return check_float(name, values, minimum=0.0)
    if isinstance(values, (str, bytes)) or not hasattr(values, "__len__"):
        expected = "a non-negative number or a list" if allow_scalar else "a list"
        raise ValueError(
            f"`{name}` must be {expected} of non-negative numbers, one per class; "
            f"received {name}={values!r}."
        )
    values = list(values)
    for value in values:
        if isinstance(value, bool) or not isinstance(value, numbers.Real) or value < 0:
            raise ValueError(
                f"`{name}` must contain non-negative numbers, one per class; "
                f"received {name}={values!r}."
            )
    if len(values) < 2 or sum(values) <= 0:
        raise ValueError(
            f"`{name}` must have one entry per class (>= 2) with a positive sum; "
            f"received {name}={values!r}."
        )
    return [float(v) for v in values]


def _check_per_class_length(name, values, num_classes):
    """`values` is a list validated by `_check_weight_list`, or a scalar, or None."""
    if isinstance(values, list) and len(values) != num_classes:
        raise ValueError(
            f"`{name}` must have one entry per class ({num_classes}); "
            f"received {len(values)} entries: {name}={values!r}."
        )


def _prepare(y_true, y_pred, ignore_label, per_class_list=None):
    """Standardise inputs.

    Returns:
        labels: int32 `[batch, H, W]`, invalid pixels replaced by class 0 so
            that gathers and one-hots stay in range.
        valid: float32 `[batch, H, W]`, 1 for pixels that count, 0 otherwise.
        y_pred: float32 `[batch, H, W, C]`.
    """
    y_pred = ops.convert_to_tensor(y_pred)
    # float32 even under mixed precision: a float16 softmax/log underflows.
    y_pred = ops.cast(y_pred, "float32")
    y_true = ops.convert_to_tensor(y_true)
    if len(y_true.shape) == 4 and y_true.shape[-1] == 1:
        y_true = ops.squeeze(y_true, axis=-1)
    if len(y_pred.shape) != 4:
        raise ValueError(
            "`y_pred` must have rank 4 [batch, height, width, num_classes]; "
            f"received shape {tuple(y_pred.shape)}."
        )
    if len(y_true.shape) != 3:
        raise ValueError(
            "`y_true` must have rank 3 [batch, height, width] (or rank 4 with a "
            f"last axis of 1); received shape {tuple(y_true.shape)}."
        )
    # A mask of another size would otherwise broadcast into a shape error
    # deep inside the loss (or, where a size is 1, broadcast silently).
    check_label_shape(y_true, y_pred)
    num_classes = y_pred.shape[-1]
    if num_classes is not None and num_classes < 2:
        raise ValueError(
            "`y_pred` must have num_classes >= 2 entries on its last axis; "
            f"received shape {tuple(y_pred.shape)}."
        )
    if per_class_list is not None and num_classes is not None:
        _check_per_class_length(*per_class_list, num_classes)
    # Labels may arrive as floats (Keras casts y_true to the loss dtype);
    # rounding makes the cast exact for any float representation.
    labels = ops.cast(ops.round(ops.cast(y_true, "float32")), "int32")
    valid = ops.logical_and(
        ops.greater_equal(labels, 0), ops.less(labels, ops.shape(y_pred)[-1])
    )
    if ignore_label is not None:
        valid = ops.logical_and(valid, ops.not_equal(labels, ignore_label))
    labels = ops.where(valid, labels, 0)
    return labels, ops.cast(valid, "float32"), y_pred


def _log_probs(y_pred, from_logits):
    """Log-probabilities `[batch, H, W, C]` from logits or probabilities."""
    if from_logits:
        return ops.log_softmax(y_pred, axis=-1)
    epsilon = keras.config.epsilon()
    return ops.log(ops.clip(y_pred, epsilon, 1.0))


def _pixel_mean_per_image(pixel_loss, valid):
    """Per-image values whose batch mean is the mean over all valid pixels.

    Each image gets `sum(its valid pixel losses) * batch / (valid pixels in
    the batch)`, so Keras' default `sum_over_batch_size` reduction returns the
    mean over every non-ignored pixel of the batch (images with many ignored
    pixels are not up-weighted) while still receiving `[batch]` values.
    """
    per_image = ops.sum(pixel_loss * valid, axis=(1, 2))
    batch = ops.cast(ops.shape(valid)[0], "float32")
    # divide_no_nan: a batch where every pixel is ignored has loss 0, not NaN.
    return ops.divide_no_nan(per_image * batch, ops.sum(valid))


# ---------------------------------------------------------------------------
# Losses.
# ---------------------------------------------------------------------------


@keras.saving.register_keras_serializable(package="kerasvision")
@fill_doc(common_args=_COMMON_ARGS_DOC)
class SparseCategoricalCrossentropy(keras.losses.Loss):
    """Pixel-wise cross-entropy averaged over the non-ignored pixels.

    Args:
        {common_args}

    Shapes: `y_true` `[batch, H, W]` or `[batch, H, W, 1]` ints, `y_pred`
    `[batch, H, W, C]`; `call` returns `[batch]`, the reduced loss is a scalar
    equal to the mean cross-entropy over the non-ignored pixels of the batch.
    Each per-image value is `batch * sum(image's pixel losses) / (valid pixels
    in the batch)`, so images are weighted by their number of valid pixels;
    under `tf.distribute` the result is the mean of the replicas' pixel means.

    Example:

    ```python
    loss = SparseCategoricalCrossentropy(ignore_label=255)
    value = loss(masks, model(images))  # masks [B, H, W], logits [B, H, W, C]
    ```

    Keras's class name, not Keras's class: this one takes logits and skips
    `ignore_label` (255) by default, and returns one value per image. The name
    stays because saved models refer to it by its registered name,
    `kerasvision>SparseCategoricalCrossentropy`; in code, import it from
    `kerasvision.losses`. Keras's own,
    `keras.losses.SparseCategoricalCrossentropy(from_logits=True,
    ignore_class=255)`, gives the same mean over the non-ignored pixels on
    well-formed batches but falls short for segmentation (checked with Keras
    3.15):

    - a label outside `[0, num_classes)` other than `ignore_class` fails with
      TensorFlow's "Received a label value of 7 which is outside the valid
      range" on CPU (and gives garbage on GPU); here such pixels are skipped;
    - it returns a value per pixel, so a per-image `sample_weight` `[batch]`
      fails with "Incompatible shapes"; here `call` returns `[batch]` and
      Keras weights each image;
    - masks of another size than the logits fail inside TensorFlow; here the
      error names both shapes.
    """

    def __init__(
        self,
        from_logits=True,
        ignore_label=IGNORE_LABEL,
        reduction="sum_over_batch_size",
        name="sparse_categorical_crossentropy",
        dtype=None,
    ):
        super().__init__(name=name, reduction=reduction, dtype=dtype)
        self.from_logits = _check_bool("from_logits", from_logits)
        self.ignore_label = check_ignore_label(ignore_label)

    def call(self, y_true, y_pred):
        labels, valid, y_pred = _prepare(y_true, y_pred, self.ignore_label)
        log_probs = _log_probs(y_pred, self.from_logits)
        log_p_true = ops.take_along_axis(log_probs, labels[..., None], axis=-1)[..., 0]
        return _pixel_mean_per_image(-log_p_true, valid)

    def get_config(self):
        config = super().get_config()
        config.update({"from_logits": self.from_logits, "ignore_label": self.ignore_label})
        return config


@keras.saving.register_keras_serializable(package="kerasvision")
@fill_doc(common_args=_COMMON_ARGS_DOC)
class SparseFocalLoss(keras.losses.Loss):
    """Multi-class focal loss on sparse labels (Lin et al. 2017, "Focal Loss
    for Dense Object Detection").

    Per pixel: `-alpha_t * (1 - p_t) ** gamma * log(p_t)`, with `p_t` the
    predicted probability of the true class; averaged over the non-ignored
    pixels like `SparseCategoricalCrossentropy`, which it equals when
    `gamma=0` and `alpha=None`.

    Args:
        gamma: float >= 0, focusing parameter: larger values down-weight
            pixels that are already well classified (default 2.0).
        alpha: None, a float >= 0 scaling every pixel, or a list of
            `num_classes` non-negative per-class weights (`alpha_t` is the
            weight of the pixel's true class).
        {common_args}

    Shapes: as `SparseCategoricalCrossentropy`.

    Example:

    ```python
    loss = SparseFocalLoss(gamma=2.0, alpha=[0.25, 1.0, 1.0])
    ```
    """

    def __init__(
        self,
        gamma=2.0,
        alpha=None,
        from_logits=True,
        ignore_label=IGNORE_LABEL,
        reduction="sum_over_batch_size",
        name="sparse_focal_loss",
        dtype=None,
    ):
        super().__init__(name=name, reduction=reduction, dtype=dtype)
        self.gamma = check_float("gamma", gamma, minimum=0.0)
        self.alpha = _check_weight_list("alpha", alpha, allow_scalar=True)
        self.from_logits = _check_bool("from_logits", from_logits)
        self.ignore_label = check_ignore_label(ignore_label)

    def call(self, y_true, y_pred):
        labels, valid, y_pred = _prepare(
            y_true, y_pred, self.ignore_label, per_class_list=("alpha", self.alpha)
        )
        log_probs = _log_probs(y_pred, self.from_logits)
        log_p_true = ops.take_along_axis(log_probs, labels[..., None], axis=-1)[..., 0]
        pixel_loss = -log_p_true
        if self.gamma > 0:
            # Floor at epsilon: d/dx x**gamma is infinite at x=0 for gamma<1,
            # which would turn a confident pixel's gradient into NaN.
            one_minus_p = ops.maximum(1.0 - ops.exp(log_p_true), keras.config.epsilon())
            pixel_loss = pixel_loss * ops.power(one_minus_p, self.gamma)
        if isinstance(self.alpha, list):
            alpha = ops.convert_to_tensor(self.alpha, dtype="float32")
            pixel_loss = pixel_loss * ops.take(alpha, labels)
        elif self.alpha is not None:
            pixel_loss = pixel_loss * self.alpha
        return _pixel_mean_per_image(pixel_loss, valid)

    def get_config(self):
        config = super().get_config()
        config.update(
            {
                "gamma": self.gamma,
                "alpha": self.alpha,
                "from_logits": self.from_logits,
                "ignore_label": self.ignore_label,
            }
        )
        return config


@keras.saving.register_keras_serializable(package="kerasvision")
@fill_doc(common_args=_COMMON_ARGS_DOC)
class DiceLoss(keras.losses.Loss):
    """Multi-class soft Dice loss, computed per image (Milletari et al. 2016,
    "V-Net").

    For each image and class `c`, with `p` the softmax (or given)
    probabilities and `g` the one-hot labels, both zeroed at ignored pixels:
    `dice_c = (2 * sum(p_c * g_c) + smooth) / (sum(p_c) + sum(g_c) + smooth)`;
    the image's loss is `1 - mean_c(dice_c)` (weighted by `class_weights`).
    A class absent from both prediction and truth scores `dice_c = 1`.

    Args:
        smooth: float >= 0, added to numerator and denominator: avoids 0/0
            for classes absent from an image and softens the gradient of
            small regions (default 1.0).
        class_weights: None or a list of `num_classes` non-negative weights
            for the mean over classes.
        {common_args}

    Shapes: `y_true` `[batch, H, W]` or `[batch, H, W, 1]` ints, `y_pred`
    `[batch, H, W, C]`; `call` returns the per-image Dice loss `[batch]`, the
    default reduction averages it over the batch.

    Example:

    ```python
    loss = DiceLoss(smooth=1.0, class_weights=[0.2, 1.0, 1.0])
    ```
    """

    def __init__(
        self,
        from_logits=True,
        smooth=1.0,
        ignore_label=IGNORE_LABEL,
        class_weights=None,
        reduction="sum_over_batch_size",
        name="dice_loss",
        dtype=None,
    ):
        super().__init__(name=name, reduction=reduction, dtype=dtype)
        self.from_logits = _check_bool("from_logits", from_logits)
        self.smooth = check_float("smooth", smooth, minimum=0.0)
        self.ignore_label = check_ignore_label(ignore_label)
        self.class_weights = _check_weight_list("class_weights", class_weights)

    def call(self, y_true, y_pred):
        labels, valid, y_pred = _prepare(
            y_true,
            y_pred,
            self.ignore_label,
            per_class_list=("class_weights", self.class_weights),
        )
        probs = ops.softmax(y_pred, axis=-1) if self.from_logits else y_pred
        num_classes = ops.shape(y_pred)[-1]
        mask = valid[..., None]
        probs = probs * mask
        one_hot = ops.one_hot(labels, num_classes, dtype="float32") * mask
        intersection = ops.sum(probs * one_hot, axis=(1, 2))
        denominator = ops.sum(probs, axis=(1, 2)) + ops.sum(one_hot, axis=(1, 2)) + self.smooth
        # With smooth=0 a class absent from an image gives 0/0: score it 1 and
        # divide by a safe denominator so no NaN reaches the gradient.
        present = ops.greater(denominator, 0.0)
        safe_denominator = ops.where(present, denominator, 1.0)
        dice = ops.where(present, (2.0 * intersection + self.smooth) / safe_denominator, 1.0)
        if self.class_weights is None:
            mean_dice = ops.mean(dice, axis=-1)
        else:
            weights = ops.convert_to_tensor(self.class_weights, dtype="float32")
            mean_dice = ops.sum(dice * weights, axis=-1) / ops.sum(weights)
        return 1.0 - mean_dice

    def get_config(self):
        config = super().get_config()
        config.update(
            {
                "from_logits": self.from_logits,
                "smooth": self.smooth,
                "ignore_label": self.ignore_label,
                "class_weights": self.class_weights,
            }
        )
        return config


@keras.saving.register_keras_serializable(package="kerasvision")
class CombinedLoss(keras.losses.Loss):
    """Weighted sum of losses, e.g. cross-entropy + Dice.

    The per-image values of each loss's `call` are summed with `weights` and
    reduced once by this loss's own `reduction` (the sub-losses' reductions
    are not used). A sub-loss whose `call` returns more than one value per
    image (e.g. a Keras core loss returning `[batch, H, W]`) is averaged over
    its non-batch axes first.

    Args:
        losses: non-empty list of `keras.losses.Loss` objects.
        weights: None (all 1.0) or a list of non-negative floats, one per loss.
        reduction: Keras reduction of the summed per-image values.
        name: str or None, the loss name.
        dtype: dtype of the reduced loss (default `keras.config.floatx()`).

    Shapes: `call` returns `[batch]`; the reduced loss is a scalar.

    Example:

    ```python
    loss = CombinedLoss([SparseCategoricalCrossentropy(), DiceLoss()], [1.0, 0.5])
    ```
    """

    def __init__(
        self,
        losses,
        weights=None,
        reduction="sum_over_batch_size",
        name="combined_loss",
        dtype=None,
    ):
        super().__init__(name=name, reduction=reduction, dtype=dtype)
        if not isinstance(losses, (list, tuple)) or not losses:
            raise ValueError(
                "`losses` must be a non-empty list of keras.losses.Loss objects; "
                f"received losses={losses!r}."
            )
        for loss in losses:
            if not isinstance(loss, keras.losses.Loss):
                raise ValueError(
                    "`losses` must contain keras.losses.Loss objects; received an "
                    f"entry {loss!r} of type {type(loss).__name__} in losses={losses!r}."
                )
        if weights is None:
            weights = [1.0] * len(losses)
        if not isinstance(weights, (list, tuple)) or len(weights) != len(losses):
            raise ValueError(
                f"`weights` must be a list with one number per loss ({len(losses)}); "
                f"received weights={weights!r}."
            )
        self.losses = list(losses)
        self.weights = [check_float("weights", w, minimum=0.0) for w in weights]

    def call(self, y_true, y_pred):
        total = None
        for loss, weight in zip(self.losses, self.weights):
            values = ops.cast(loss.call(y_true, y_pred), "float32")
            if len(values.shape) > 1:
                values = ops.mean(values, axis=tuple(range(1, len(values.shape))))
            total = weight * values if total is None else total + weight * values
        return total

    def get_config(self):
        config = super().get_config()
        config.update(
            {
                "losses": [keras.saving.serialize_keras_object(loss) for loss in self.losses],
                "weights": list(self.weights),
            }
        )
        return config

    @classmethod
    def from_config(cls, config):
        config = dict(config)
        config["losses"] = [
            keras.saving.deserialize_keras_object(loss) for loss in config["losses"]
        ]
        return cls(**config)


# ---------------------------------------------------------------------------
# Factory.
# ---------------------------------------------------------------------------

SEGMENTATION_LOSSES = ("ce", "focal", "dice", "ce+dice", "focal+dice")
"""Names accepted by `get_segmentation_loss`."""


def get_segmentation_loss(
    name,
    num_classes=None,
    from_logits=True,
    ignore_label=IGNORE_LABEL,
    gamma=2.0,
    alpha=None,
    smooth=1.0,
    class_weights=None,
    dice_weight=1.0,
):
    """Build a segmentation loss from its name (e.g. a recipe's `--loss` flag).

    Args:
        name: one of `"ce"`, `"focal"`, `"dice"`, `"ce+dice"`, `"focal+dice"`
            (case-insensitive), or a `keras.losses.Loss`, returned unchanged.
        num_classes: int >= 2 or None; when given, the lengths of `alpha` and
            `class_weights` are checked against it.
        from_logits: bool, whether predictions are logits (default True).
        ignore_label: int or None, label whose pixels are skipped (255).
        gamma: float >= 0, focal focusing parameter (focal losses only).
        alpha: None, float or per-class list, focal weighting (focal only).
        smooth: float >= 0, Dice smoothing (Dice losses only).
        class_weights: None or per-class list, Dice class weights (Dice only).
        dice_weight: float >= 0, weight of the Dice term in the "+dice"
            combinations; the other term has weight 1.

    Returns:
        A `keras.losses.Loss` taking sparse `[batch, H, W]` labels and
        `[batch, H, W, num_classes]` predictions.

    Example:

    ```python
    loss = get_segmentation_loss("focal+dice", num_classes=21, gamma=2.0)
    ```
    """
    if isinstance(name, keras.losses.Loss):
        return name
    if not isinstance(name, str):
        raise ValueError(
            f"`name` must be one of {list(SEGMENTATION_LOSSES)}; received name={name!r}."
        )
    key = name.strip().lower().replace(" ", "")
    if key not in SEGMENTATION_LOSSES:
        raise ValueError(
            f"`name` must be one of {list(SEGMENTATION_LOSSES)}; received name={name!r}."
        )
    if num_classes is not None:
        check_num_classes(num_classes)
        _check_per_class_length("alpha", _check_weight_list("alpha", alpha, True), num_classes)
        _check_per_class_length(
            "class_weights", _check_weight_list("class_weights", class_weights), num_classes
        )
    dice_weight = check_float("dice_weight", dice_weight, minimum=0.0)
    common = {"from_logits": from_logits, "ignore_label": ignore_label}

    def make(part):
        if part == "ce":
            return SparseCategoricalCrossentropy(**common)
        if part == "focal":
            return SparseFocalLoss(gamma=gamma, alpha=alpha, **common)
        return DiceLoss(smooth=smooth, class_weights=class_weights, **common)

    parts = key.split("+")
    if len(parts) == 1:
        return make(parts[0])
    return CombinedLoss(
        [make(p) for p in parts], [1.0, dice_weight], name=key.replace("+", "_plus_")
    )



# ---------------------------------------------------------------------------
# Wasserstein GAN losses (Arjovsky et al. 2017; Gulrajani et al. 2017).
# ---------------------------------------------------------------------------


def wasserstein_critic_loss(real_scores, fake_scores):
    """The WGAN critic's loss: mean fake score minus mean real score.

    Minimising it maximises mean(f(real)) - mean(f(fake)), the critic's
    estimate of the Wasserstein-1 distance (Arjovsky et al. 2017, Algorithm 1).

    Args:
        real_scores: critic outputs on real images, `[batch]` or `[batch, 1]`.
        fake_scores: critic outputs on generated images, same shape.

    Returns:
        float32 scalar.
    """
    real_scores = ops.cast(real_scores, "float32")
    fake_scores = ops.cast(fake_scores, "float32")
    return ops.mean(fake_scores) - ops.mean(real_scores)


def wasserstein_generator_loss(fake_scores):
    """The WGAN generator's loss: minus the mean critic score of its images.

    Args:
        fake_scores: critic outputs on generated images, `[batch]` or `[batch, 1]`.

    Returns:
        float32 scalar.
    """
    return -ops.mean(ops.cast(fake_scores, "float32"))


def gradient_penalty(critic, real_images, fake_images, alpha, epsilon=1e-12, training=True):
    """The WGAN-GP penalty E[(||grad_x f(x_hat)||_2 - 1)^2] (Gulrajani et al. 2017, Algorithm 1).

    x_hat = alpha * real + (1 - alpha) * fake, with `alpha` drawn by the caller
    from Uniform(0, 1) per sample (not from a Normal).

    Args:
        critic: callable `[batch, H, W, C] -> [batch, 1]` scores (a `keras.Model`).
        real_images, fake_images: `[batch, H, W, C]`.
        alpha: `[batch, 1, 1, 1]` (or broadcastable) interpolation weights in [0, 1].
        epsilon: float > 0 added inside the square root: the norm's gradient
            is infinite at 0, which NaNs the step if a gradient vanishes.
        training: bool, the critic's training flag.

    Returns:
        float32 scalar, the penalty averaged over the batch (unweighted: the
        caller multiplies by lambda, 10 in the paper). Differentiable with
        respect to the critic's weights (the inner gradient is recorded on
        the caller's tape).
    """
    import tensorflow as tf  # an input gradient needs TensorFlow's tape (local: the rest is backend-neutral)

    epsilon = check_float("epsilon", epsilon, minimum=0.0, strict_minimum=True)
    real_images = ops.cast(real_images, "float32")
    fake_images = ops.cast(fake_images, "float32")
    alpha = ops.cast(alpha, "float32")
    interpolates = alpha * real_images + (1.0 - alpha) * fake_images
    with tf.GradientTape() as tape:
        tape.watch(interpolates)
        scores = ops.cast(critic(interpolates, training=training), "float32")
    gradients = tape.gradient(scores, interpolates)
    gradients = ops.reshape(gradients, (ops.shape(gradients)[0], -1))
    norms = ops.sqrt(ops.sum(ops.square(gradients), axis=-1) + epsilon)
    return ops.mean(ops.square(norms - 1.0))


# ---------------------------------------------------------------------------
# Metric learning: losses on (identity labels, embeddings) for verification.
# ---------------------------------------------------------------------------

_METRIC_LEARNING_SHAPES_DOC = """Shapes: `y_true` `[batch]` (or `[batch, 1]`) integer identity labels
    (Keras passes them as floats; they are rounded back), `y_pred` `[batch, D]`
    embeddings, usually L2-normalised (`build_embedding_network`). `call`
    returns `[batch]` values whose batch mean is the mean over the pairs the
    loss is defined on, so Keras's default reduction gives that mean and
    `model.fit` on `(images, identities)` batches trains the embedding network
    directly."""


def _metric_learning_inputs(y_true, y_pred):
    """Labels int32 `[B]` and float32 embeddings `[B, D]`, shapes checked."""
    y_pred = ops.cast(ops.convert_to_tensor(y_pred), "float32")
    y_true = ops.convert_to_tensor(y_true)
    if len(y_true.shape) == 2 and y_true.shape[-1] == 1:
        y_true = ops.squeeze(y_true, axis=-1)
    if len(y_pred.shape) != 2:
        raise ValueError(
            "`y_pred` must be embeddings of rank 2 [batch, embedding_dim]; received shape "
            f"{tuple(y_pred.shape)}."
        )
    if len(y_true.shape) != 1:
        raise ValueError(
            "`y_true` must be identity labels of rank 1 [batch]; received shape "
            f"{tuple(y_true.shape)}."
        )
    if None not in (y_true.shape[0], y_pred.shape[0]) and y_true.shape[0] != y_pred.shape[0]:
        raise ValueError(
            f"`y_true` and `y_pred` must have the same batch size; received y_true shape "
            f"{tuple(y_true.shape)} and y_pred shape {tuple(y_pred.shape)}."
        )
    labels = ops.cast(ops.round(ops.cast(y_true, "float32")), "int32")
    return labels, y_pred


def _check_identities_in_batch(labels, need_positive):
    """Eagerly (outside `tf.function`) raise when a batch cannot form the loss's pairs.

    Inside `fit` the labels are symbolic; there the loss skips what it cannot
    form, and the identity pipeline guarantees batches of several identities.
    """
    import numpy as np
    import tensorflow as tf  # eagerness is a TensorFlow notion (local: the rest is backend-neutral)

    if not tf.executing_eagerly():
        return
    values = np.asarray(ops.convert_to_numpy(labels)).reshape(-1)
    found, counts = np.unique(values, return_counts=True)
    if found.size < 2:
        raise ValueError(
            "`y_true` must hold at least two identities per batch (a negative for every "
            f"anchor); received a batch of {values.size} with identities {found.tolist()}."
        )
    if need_positive and counts.max() < 2:
        raise ValueError(
            "`y_true` must hold some identity twice per batch (an anchor-positive pair); "
            f"received {values.size} distinct identities. Batch P identities x K >= 2 images."
        )


def pairwise_distances(embeddings, squared=False):
    """Euclidean distances between every two rows of `embeddings`.

    Args:
        embeddings: float tensor `[batch, D]`.
        squared: bool, return squared distances.

    Returns:
        float32 `[batch, batch]`, zero on the diagonal. Computed as
        `|a|^2 + |b|^2 - 2 a.b` (one matmul), clipped at 0 against round-off;
        the square root is taken of at least 1e-12, so its gradient stays finite
        for identical rows.
    """
    embeddings = ops.cast(embeddings, "float32")
    dot = ops.matmul(embeddings, ops.transpose(embeddings))
    norms = ops.diagonal(dot)
    squared_distances = ops.maximum(norms[:, None] - 2.0 * dot + norms[None, :], 0.0)
    if squared:
        return squared_distances
    return ops.sqrt(ops.maximum(squared_distances, 1e-12))


@keras.saving.register_keras_serializable(package="kerasvision")
@fill_doc(shapes=_METRIC_LEARNING_SHAPES_DOC)
class ContrastiveLoss(keras.losses.Loss):
    """Contrastive loss over every pair of a batch (Hadsell, Chopra and LeCun 2006).

    For two embeddings at Euclidean distance `D`, the paper's loss (its eq. 4)
    is `1/2 D^2` when they show the same identity and `1/2 max(0, margin - D)^2`
    otherwise: same identities are pulled together, different ones pushed
    apart until they are `margin` away, and no further. The siamese pair of
    the paper (two copies of one network) is here the whole batch: every
    image goes through the one embedding network once and all `B (B - 1) / 2`
    pairs of the batch count; the loss is their mean.

    Args:
        margin: float > 0, the distance beyond which a different-identity
            pair costs nothing (1.0: half the diameter of the unit sphere
            that L2-normalised embeddings live on).
        reduction, name, dtype: as for any `keras.losses.Loss`.

    {shapes}

    Example:

    ```python
    model = build_embedding_network((32, 32, 3))
    model.compile(optimizer="adam", loss=ContrastiveLoss(margin=1.0))
    model.fit(images, identities, batch_size=64)
    ```
    """

    def __init__(self, margin=1.0, reduction="sum_over_batch_size", name="contrastive_loss",
                 dtype=None):
        super().__init__(name=name, reduction=reduction, dtype=dtype)
        self.margin = check_float("margin", margin, minimum=0.0, strict_minimum=True)

    def call(self, y_true, y_pred):
        labels, embeddings = _metric_learning_inputs(y_true, y_pred)
        _check_identities_in_batch(labels, need_positive=False)
        distances = pairwise_distances(embeddings)
        same = ops.cast(ops.equal(labels[:, None], labels[None, :]), "float32")
        batch = ops.shape(labels)[0]
        off_diagonal = 1.0 - ops.eye(batch, dtype="float32")
        pair_loss = 0.5 * (same * ops.square(distances)
                           + (1.0 - same) * ops.square(ops.relu(self.margin - distances)))
        # Each anchor's mean over the others: the batch mean of these is the
        # mean over ordered pairs, which equals the mean over unordered ones.
        others = ops.cast(batch - 1, "float32")
        return ops.divide_no_nan(ops.sum(pair_loss * off_diagonal, axis=1), others)

    def get_config(self):
        config = super().get_config()
        config.update({"margin": self.margin})
        return config


@keras.saving.register_keras_serializable(package="kerasvision")
@fill_doc(shapes=_METRIC_LEARNING_SHAPES_DOC)
class TripletSemiHardLoss(keras.losses.Loss):
    """Triplet loss with semi-hard negatives mined within the batch (Schroff et al. 2015, FaceNet).

    Every anchor-positive pair `(a, p)` of the batch (same identity, `a != p`)
    is paired with one negative `n` (another identity) and costs
    `max(0, d(a, p) - d(a, n) + margin)`. FaceNet's semi-hard negative is the
    closest negative still farther from the anchor than the positive,
    `d(a, n) > d(a, p)`: hard enough to teach, but not the hardest, whose
    gradients collapse training early on (FaceNet, section 3.2). When no
    negative is farther than the positive, the farthest negative is taken
    (as TensorFlow Addons' `TripletSemiHardLoss` did; written anew here, since
    Addons is no longer maintained). The loss is the mean over all
    anchor-positive pairs; batches should hold P identities with K >= 2
    images each (FaceNet, section 3.2: "around 40 faces per identity").

    Args:
        margin: float > 0, the gap `alpha` wanted between negative and positive
            distances (FaceNet: 0.2 with squared distances on the unit sphere).
        squared: bool, use squared Euclidean distances, as FaceNet does
            (True), or plain ones (False).
        reduction, name, dtype: as for any `keras.losses.Loss`.

    {shapes}

    A batch with one identity only, or with no identity twice, has no
    triplets: called eagerly that raises a ValueError naming `y_true`; inside
    `fit` such anchors count for nothing (a batch without triplets has loss 0).

    Example:

    ```python
    model.compile(optimizer="adam", loss=TripletSemiHardLoss(margin=0.2))
    model.fit(identity_batches)  # (images, identities), P identities x K images
    ```
    """

    def __init__(self, margin=0.2, squared=True, reduction="sum_over_batch_size",
                 name="triplet_semi_hard_loss", dtype=None):
        super().__init__(name=name, reduction=reduction, dtype=dtype)
        self.margin = check_float("margin", margin, minimum=0.0, strict_minimum=True)
        self.squared = _check_bool("squared", squared)

    def call(self, y_true, y_pred):
        labels, embeddings = _metric_learning_inputs(y_true, y_pred)
        _check_identities_in_batch(labels, need_positive=True)
        distances = pairwise_distances(embeddings, squared=self.squared)  # [a, n]
        batch = ops.shape(labels)[0]
        same = ops.equal(labels[:, None], labels[None, :])
        positive = ops.logical_and(same, ops.logical_not(ops.eye(batch, dtype="bool")))
        negative = ops.logical_not(same)
        d_ap = distances[:, :, None]  # [a, p, 1]
        d_an = distances[:, None, :]  # [a, 1, n]
        # 1. Semi-hard: negatives farther than the positive; take the closest.
        farther = ops.logical_and(negative[:, None, :], ops.greater(d_an, d_ap))  # [a, p, n]
        large = ops.max(distances) + 1.0
        closest_farther = ops.min(ops.where(farther, d_an, large), axis=2)  # [a, p]
        # 2. None farther: the farthest negative of the anchor.
        farthest = ops.max(ops.where(negative, distances, 0.0), axis=1)  # [a]
        chosen = ops.where(ops.any(farther, axis=2), closest_farther, farthest[:, None])
        # 3. Hinge over anchor-positive pairs whose anchor has a negative at all.
        valid = ops.logical_and(positive, ops.any(negative, axis=1)[:, None])
        valid = ops.cast(valid, "float32")
        pair_loss = ops.relu(distances - chosen + self.margin) * valid  # [a, p]
        # Per-anchor sums scaled so that their batch mean is the mean over pairs.
        scale = ops.cast(batch, "float32")
        return ops.divide_no_nan(ops.sum(pair_loss, axis=1) * scale, ops.sum(valid))

    def get_config(self):
        config = super().get_config()
        config.update({"margin": self.margin, "squared": self.squared})
        return config
