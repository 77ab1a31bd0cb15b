"""`AdversarialClassifier`: trains any logits classifier on clean and adversarial images.

Adversarial training (Goodfellow, Shlens and Szegedy 2015, section 6; Madry
et al. 2018) builds attacks against the current weights inside every
training step and fits the classifier to them too:

    loss = (1 - w) * CE(f(x), y) + w * CE(f(x_adv), y)

with `x_adv` from FGSM (one signed-gradient step, Goodfellow et al.'s
`w = 0.5`) or PGD (several projected steps from a random start; Madry et
al. train on adversarial images only, `w = 1`). Both parts are logged:
`clean_loss`, `adversarial_loss`, `accuracy` (clean) and
`adversarial_accuracy`, for training and validation alike, so the
classification recipes' `val_accuracy` checkpointing works unchanged.

The classifier is any `build_*` classifier of this package (raw RGB in
[0, 255] to float32 logits); `epsilon` is a fraction of that range
(`kerasvision.adversarial`). Export `trainer.classifier`, not the trainer.
"""

import keras
import tensorflow as tf
from keras import ops

from kerasvision.adversarial import (
    ATTACKS,
    check_fraction,
    check_pixel_range,
    fgsm_step,
    pgd_steps,
)
from kerasvision.models.trainer import GenerativeTrainer
from kerasvision.validation import check_choice, check_float, check_int


@keras.saving.register_keras_serializable(package="kerasvision")
class AdversarialClassifier(GenerativeTrainer):
    """Adversarial training of a classifier: clean and attacked batches in every step.

    Each step (1) attacks the batch with the current weights in inference
    mode (FGSM or PGD, no gradient flows through the attack), then (2) runs
    the classifier in training mode on the clean and the adversarial images
    and (3) descends on `(1 - adversarial_weight) * clean_loss +
    adversarial_weight * adversarial_loss`. Validation attacks the same way.

    Tracked (per epoch, also as `val_*`): `loss`, `clean_loss`,
    `adversarial_loss` (sparse cross-entropy means), `accuracy` (clean) and
    `adversarial_accuracy`.

    Args:
        classifier: a `keras.Model` mapping images `[batch, H, W, C]` in
            `pixel_range` to `[batch, num_classes]` logits (or probabilities
            with `from_logits=False`), e.g. `build_cnn_classifier`.
        attack: "fgsm" (Goodfellow et al. 2015) or "pgd" (Madry et al. 2018).
        epsilon: float in [0, 1], L-infinity budget as a fraction of the
            pixel range (8/255: 8 grey levels).
        step_size: PGD step as a fraction of the pixel range, float in
            (0, 1]; None: `2.5 * epsilon / steps`.
        steps: int >= 1, PGD steps (each costs a forward and backward pass).
        random_start: bool, PGD starts from a random point of the ball.
        adversarial_weight: float in [0, 1], `w` above (0.5: Goodfellow et
            al.'s mix; 1: adversarial images only, as Madry et al.).
        from_logits: bool, whether the classifier returns logits.
        pixel_range: `(low, high)` of the classifier's input pixels.
        seed: int >= 0 or None, seed of PGD's random starts.
        **kwargs: `keras.Model` arguments (`name`).

    Call: images -> the classifier's outputs (inference path).

    Example:
        >>> classifier = build_cnn_classifier(4, (32, 32, 3), filters=(8, 16))
        >>> trainer = AdversarialClassifier(classifier, attack="fgsm", epsilon=8 / 255)
        >>> trainer.compile(keras.optimizers.Adam(1e-3))
        >>> trainer.fit(dataset_of_images_and_labels, epochs=5)  # doctest: +SKIP
        >>> export_image_model(trainer.classifier, "saved_models/robust")  # doctest: +SKIP
    """

    NETWORKS = ("classifier",)
    LOSS_NAMES = ("loss", "clean_loss", "adversarial_loss", "accuracy", "adversarial_accuracy")

    def __init__(self, classifier, attack="fgsm", epsilon=8 / 255, step_size=None, steps=7,
                 random_start=True, adversarial_weight=0.5, from_logits=True,
                 pixel_range=(0.0, 255.0), seed=None, **kwargs):
        super().__init__(seed=seed, **kwargs)
        if not isinstance(classifier, keras.Model) or len(classifier.outputs) != 1 or len(
            classifier.outputs[0].shape
        ) != 2:
            raise ValueError(
                "`classifier` must be a keras.Model with one output [batch, num_classes]; "
                f"received classifier={classifier!r}."
            )
        self.classifier = classifier
        self.attack = check_choice("attack", attack, ATTACKS)
        self.epsilon = check_fraction("epsilon", epsilon)
        self.steps = check_int("steps", steps, minimum=1)
        if step_size is not None:
            step_size = check_fraction("step_size", step_size, strict=True)
        self.step_size = step_size
        if not isinstance(random_start, bool):
            raise ValueError(  # noqa: TRY004 (argument checks raise ValueError throughout)
                f"`random_start` must be True or False; received {random_start!r}."
            )
        self.random_start = random_start
        self.adversarial_weight = check_float("adversarial_weight", adversarial_weight,
                                              minimum=0.0, maximum=1.0)
        if not isinstance(from_logits, bool):
            raise ValueError(  # noqa: TRY004 (argument checks raise ValueError throughout)
                f"`from_logits` must be True or False; received {from_logits!r}."
            )
        self.from_logits = from_logits
        self.pixel_range = check_pixel_range(pixel_range)

    def expected_image_shape(self):
        return tuple(self.classifier.inputs[0].shape[1:])

    def call(self, images, training=False):
        return self.classifier(images, training=training)

    def attack_images(self, images, labels):
        """Adversarial versions of a batch against the current weights (no gradient through them).

        Args:
            images: float32 `[batch, H, W, C]` in `pixel_range`.
            labels: int `[batch]`.

        Returns:
            float32 `[batch, H, W, C]`.
        """
        if self.attack == "fgsm":
            return fgsm_step(self.classifier, images, labels, self.epsilon, self.from_logits,
                             self.pixel_range)
        step_size = self.step_size or 2.5 * self.epsilon / self.steps
        # The trainer's SeedGenerator: a fresh random start at every step.
        return pgd_steps(self.classifier, images, labels, self.epsilon, step_size, self.steps,
                         self.random_start, self.seed_generator, self.from_logits,
                         self.pixel_range)

    def _unpack(self, data):
        if not isinstance(data, (tuple, list)) or len(data) < 2:
            raise ValueError(
                f"{type(self).__name__} trains on (images, labels) batches; received a batch "
                "without labels."
            )
        labels = ops.cast(ops.reshape(data[1], (-1,)), "int32")
        return self._images_from(data), labels

    def _batch_values(self, images, adversarial, labels, training):
        """The tracked values of one batch, clean and adversarial."""
        values = {}
        for prefix, batch in (("clean", images), ("adversarial", adversarial)):
            outputs = ops.cast(self.classifier(batch, training=training), "float32")
            losses = keras.losses.sparse_categorical_crossentropy(
                labels, outputs, from_logits=self.from_logits)
            values[f"{prefix}_loss"] = ops.mean(losses)
            # Per-example hits: the Mean tracker then weighs every image equally.
            hits = ops.cast(ops.equal(ops.argmax(outputs, axis=-1), labels), "float32")
            values["accuracy" if prefix == "clean" else "adversarial_accuracy"] = hits
        weight = self.adversarial_weight
        values["loss"] = (1.0 - weight) * values["clean_loss"] + weight * values["adversarial_loss"]
        return values

    def compute_losses(self, data, training=False):
        images, labels = self._unpack(data)
        return self._batch_values(images, self.attack_images(images, labels), labels, training)

    def train_step(self, data):
        images, labels = self._unpack(data)
        # 1. The attack, before the tape: its own gradient (with respect to the
        #    images) must not be recorded into the weights' gradient.
        adversarial = self.attack_images(images, labels)
        # 2-3. Clean and adversarial losses in training mode, one update.
        with tf.GradientTape() as tape:
            values = self._batch_values(images, adversarial, labels, training=True)
        variables = self._variables_for("optimizer")
        grads = self._scaled_gradients(tape, values["loss"], variables, self.optimizer)
        self.optimizer.apply(grads, variables)
        return self._update_trackers(values)

    def get_config(self):
        return {
            **super().get_config(),
            "attack": self.attack,
            "epsilon": self.epsilon,
            "step_size": self.step_size,
            "steps": self.steps,
            "random_start": self.random_start,
            "adversarial_weight": self.adversarial_weight,
            "from_logits": self.from_logits,
            "pixel_range": list(self.pixel_range),
        }


__all__ = ["AdversarialClassifier"]
