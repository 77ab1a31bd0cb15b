"""Tests for kerasvision.losses against an independent numpy implementation."""

import os
import subprocess
import sys
import textwrap

import keras
import numpy as np
import pytest
import tensorflow as tf

from kerasvision import losses
from kerasvision.validation import IGNORE_LABEL

NUM_CLASSES = 4
REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


# ---------------------------------------------------------------------------
# Numpy reference, written from the formulas (no kerasvision code).
# ---------------------------------------------------------------------------


def np_softmax(logits):
    shifted = logits - logits.max(axis=-1, keepdims=True)
    e = np.exp(shifted)
    return e / e.sum(axis=-1, keepdims=True)


def np_pixel_terms(labels, logits, ignore_label=IGNORE_LABEL):
    """Flattened valid labels and their class probabilities (float64)."""
    probs = np_softmax(logits.astype(np.float64)).reshape(-1, logits.shape[-1])
    labels = labels.reshape(-1)
    keep = labels != ignore_label
    return labels[keep], probs[keep]


def np_cross_entropy(labels, logits):
    labels, probs = np_pixel_terms(labels, logits)
    return float(np.mean([-np.log(p[t]) for t, p in zip(labels, probs)]))


def np_focal(labels, logits, gamma, alpha=None):
    labels, probs = np_pixel_terms(labels, logits)
    values = []
    for t, p in zip(labels, probs):
        a = 1.0 if alpha is None else (alpha[t] if isinstance(alpha, list) else alpha)
        values.append(-a * (1.0 - p[t]) ** gamma * np.log(p[t]))
    return float(np.mean(values))


def np_dice(labels, logits, smooth, class_weights=None):
    probs = np_softmax(logits.astype(np.float64))
    per_image = []
    for image_labels, image_probs in zip(labels, probs):
        keep = image_labels != IGNORE_LABEL
        dices = []
        for c in range(logits.shape[-1]):
            p = image_probs[..., c][keep]
            g = (image_labels[keep] == c).astype(np.float64)
            den = p.sum() + g.sum() + smooth
            dices.append((2 * (p * g).sum() + smooth) / den if den > 0 else 1.0)
        w = np.ones(len(dices)) if class_weights is None else np.asarray(class_weights)
        per_image.append(1.0 - np.sum(w * dices) / w.sum())
    return float(np.mean(per_image))


# ---------------------------------------------------------------------------
# Fixtures.
# ---------------------------------------------------------------------------


@pytest.fixture
def batch():
    """Labels [2, 6, 6] with ~20% ignored pixels and logits [2, 6, 6, 4]."""
    rng = np.random.default_rng(0)
    labels = rng.integers(0, NUM_CLASSES, size=(2, 6, 6))
    labels[rng.random(labels.shape) < 0.2] = IGNORE_LABEL
    logits = (3.0 * rng.normal(size=(2, 6, 6, NUM_CLASSES))).astype("float32")
    return labels, logits


ALL_LOSSES = {
    "ce": lambda: losses.SparseCategoricalCrossentropy(),
    "focal": lambda: losses.SparseFocalLoss(gamma=2.0, alpha=[0.5, 1.0, 1.0, 2.0]),
    "dice": lambda: losses.DiceLoss(smooth=1.0, class_weights=[0.5, 1.0, 1.0, 1.0]),
    "combined": lambda: losses.get_segmentation_loss("focal+dice", num_classes=NUM_CLASSES),
}


@pytest.fixture(params=sorted(ALL_LOSSES))
def any_loss(request):
    return ALL_LOSSES[request.param]()


# ---------------------------------------------------------------------------
# Values.
# ---------------------------------------------------------------------------


@pytest.mark.parametrize("label_rank", [3, 4])
@pytest.mark.parametrize("from_logits", [True, False])
def test_cross_entropy_matches_numpy(batch, label_rank, from_logits):
    labels, logits = batch
    y_true = labels[..., None] if label_rank == 4 else labels
    y_pred = logits if from_logits else np_softmax(logits.astype(np.float64)).astype("float32")
    loss = losses.SparseCategoricalCrossentropy(from_logits=from_logits)
    expected = np_cross_entropy(labels, logits)
    np.testing.assert_allclose(float(loss(y_true, y_pred)), expected, rtol=1e-5)


@pytest.mark.parametrize("gamma", [0.5, 2.0])
@pytest.mark.parametrize("alpha", [None, 0.25, [0.25, 1.0, 0.5, 2.0]])
def test_focal_matches_numpy(batch, gamma, alpha):
    labels, logits = batch
    loss = losses.SparseFocalLoss(gamma=gamma, alpha=alpha)
    expected = np_focal(labels, logits, gamma, alpha)
    np.testing.assert_allclose(float(loss(labels, logits)), expected, rtol=1e-5)


@pytest.mark.parametrize("from_logits", [True, False])
def test_focal_with_gamma_zero_equals_cross_entropy(batch, from_logits):
    labels, logits = batch
    y_pred = logits if from_logits else np_softmax(logits.astype(np.float64)).astype("float32")
    focal = losses.SparseFocalLoss(gamma=0.0, from_logits=from_logits)(labels, y_pred)
    ce = losses.SparseCategoricalCrossentropy(from_logits=from_logits)(labels, y_pred)
    np.testing.assert_allclose(float(focal), float(ce), rtol=1e-6)


@pytest.mark.parametrize("smooth", [1.0, 0.0])
@pytest.mark.parametrize("class_weights", [None, [0.1, 1.0, 2.0, 1.0]])
def test_dice_matches_numpy(batch, smooth, class_weights):
    labels, logits = batch
    loss = losses.DiceLoss(smooth=smooth, class_weights=class_weights)
    expected = np_dice(labels, logits, smooth, class_weights)
    np.testing.assert_allclose(float(loss(labels, logits)), expected, rtol=1e-5, atol=1e-6)


def test_dice_from_probabilities_matches_logits(batch):
    labels, logits = batch
    probs = np_softmax(logits.astype(np.float64)).astype("float32")
    from_probs = losses.DiceLoss(from_logits=False)(labels, probs)
    from_logits = losses.DiceLoss()(labels, logits)
    np.testing.assert_allclose(float(from_probs), float(from_logits), rtol=1e-5)


def test_dice_of_perfect_prediction_is_zero(batch):
    labels, _ = batch
    one_hot = np.eye(NUM_CLASSES, dtype="float32")[np.where(labels == IGNORE_LABEL, 0, labels)]
    logits = 30.0 * one_hot
    assert float(losses.DiceLoss()(labels, logits)) < 1e-4


def test_combined_loss_is_weighted_sum(batch):
    labels, logits = batch
    ce, dice = losses.SparseCategoricalCrossentropy(), losses.DiceLoss()
    combined = losses.CombinedLoss([ce, dice], [1.0, 0.5])
    expected = np_cross_entropy(labels, logits) + 0.5 * np_dice(labels, logits, 1.0)
    np.testing.assert_allclose(float(combined(labels, logits)), expected, rtol=1e-5)


def test_per_image_values_and_fully_ignored_batch(any_loss, batch):
    labels, logits = batch
    values = any_loss.call(labels.astype("float32"), logits)
    assert tuple(values.shape) == (2,)
    all_ignored = np.full_like(labels, IGNORE_LABEL)
    assert float(any_loss(all_ignored, logits)) == pytest.approx(0.0, abs=1e-6)


def test_ignored_pixels_have_no_effect(any_loss, batch):
    labels, logits = batch
    ignored = labels == IGNORE_LABEL
    noisy = logits.copy()
    noisy[ignored] = 50.0 * np.random.default_rng(1).normal(size=noisy[ignored].shape)
    expected = float(any_loss(labels, logits))
    np.testing.assert_allclose(float(any_loss(labels, noisy)), expected, rtol=1e-6)
    # No gradient flows to ignored pixels either.
    x = tf.Variable(logits)
    with tf.GradientTape() as tape:
        value = any_loss(labels, x)
    grad = tape.gradient(value, x).numpy()
    assert np.all(np.isfinite(grad))
    assert np.all(grad[ignored] == 0.0)
    assert np.any(grad[~ignored] != 0.0)


def test_ignore_label_none_and_custom_value(batch):
    labels, logits = batch
    # Class 0 ignored: same as marking its pixels with 255.
    relabelled = np.where(labels == 0, IGNORE_LABEL, labels)
    custom = losses.SparseCategoricalCrossentropy(ignore_label=0)(labels, logits)
    np.testing.assert_allclose(float(custom), np_cross_entropy(relabelled, logits), rtol=1e-5)
    valid_labels = np.where(labels == IGNORE_LABEL, 1, labels)
    no_ignore = losses.SparseCategoricalCrossentropy(ignore_label=None)(valid_labels, logits)
    np.testing.assert_allclose(float(no_ignore), np_cross_entropy(valid_labels, logits), rtol=1e-5)


def test_mixed_precision_logits(any_loss, batch):
    labels, logits = batch
    value = any_loss(labels, tf.constant(logits, dtype="float16"))
    assert value.dtype == tf.float32
    np.testing.assert_allclose(float(value), float(any_loss(labels, logits)), rtol=2e-2)


def test_xla_matches_eager(any_loss, batch):
    labels, logits = batch

    @tf.function(jit_compile=True)
    def loss_and_grad(y, x):
        with tf.GradientTape() as tape:
            tape.watch(x)
            value = any_loss(y, x)
        return value, tape.gradient(value, x)

    value, grad = loss_and_grad(tf.constant(labels), tf.constant(logits))
    np.testing.assert_allclose(float(value), float(any_loss(labels, logits)), rtol=1e-5)
    assert np.all(np.isfinite(grad.numpy()))


# ---------------------------------------------------------------------------
# Factory and serialization.
# ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    "name, expected",
    [
        ("ce", losses.SparseCategoricalCrossentropy),
        ("focal", losses.SparseFocalLoss),
        ("dice", losses.DiceLoss),
        ("CE+Dice", losses.CombinedLoss),
        ("focal+dice", losses.CombinedLoss),
    ],
)
def test_get_segmentation_loss(name, expected, batch):
    loss = losses.get_segmentation_loss(name, num_classes=NUM_CLASSES, dice_weight=0.5)
    assert type(loss) is expected
    if expected is losses.CombinedLoss:
        assert loss.weights == [1.0, 0.5]
        assert type(loss.losses[1]) is losses.DiceLoss
    assert losses.get_segmentation_loss(loss) is loss


def test_config_round_trip(any_loss, batch):
    labels, logits = batch
    restored = keras.saving.deserialize_keras_object(keras.saving.serialize_keras_object(any_loss))
    assert type(restored) is type(any_loss)
    assert restored.get_config() == any_loss.get_config()
    expected = float(any_loss(labels, logits))
    np.testing.assert_allclose(float(restored(labels, logits)), expected, rtol=1e-6)


def test_keras_save_load_round_trip(tmp_path):
    rng = np.random.default_rng(2)
    images = rng.normal(size=(2, 8, 8, 3)).astype("float32")
    labels = rng.integers(0, 3, size=(2, 8, 8))
    labels[:, 0] = IGNORE_LABEL
    model = keras.Sequential([keras.Input((8, 8, 3)), keras.layers.Conv2D(3, 1)])
    model.compile(optimizer="adam", loss=losses.get_segmentation_loss("focal+dice", gamma=1.5))
    model.optimizer.build(model.trainable_variables)
    expected = float(model.loss(labels, model(images)))
    model.save(tmp_path / "m.keras")
    loaded = keras.saving.load_model(tmp_path / "m.keras")
    assert type(loaded.loss) is losses.CombinedLoss
    assert loaded.loss.losses[0].gamma == 1.5
    np.testing.assert_allclose(loaded.evaluate(images, labels, verbose=0), expected, rtol=1e-5)


# ---------------------------------------------------------------------------
# Argument validation.
# ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    "build, argument",
    [
        (lambda: losses.SparseFocalLoss(gamma=-1.0), "gamma"),
        (lambda: losses.SparseFocalLoss(alpha=[1.0, -1.0]), "alpha"),
        (lambda: losses.DiceLoss(smooth=-0.5), "smooth"),
        (lambda: losses.DiceLoss(class_weights="uniform"), "class_weights"),
        (lambda: losses.SparseCategoricalCrossentropy(from_logits="yes"), "from_logits"),
        (lambda: losses.SparseCategoricalCrossentropy(ignore_label=2.5), "ignore_label"),
        (lambda: losses.CombinedLoss([losses.DiceLoss()], [1.0, 2.0]), "weights"),
        (lambda: losses.CombinedLoss(["dice"]), "losses"),
        (lambda: losses.get_segmentation_loss("lovasz"), "name"),
        (lambda: losses.get_segmentation_loss("dice", num_classes=1), "num_classes"),
        (
            lambda: losses.get_segmentation_loss("dice", num_classes=3, class_weights=[1, 1]),
            "class_weights",
        ),
        (lambda: losses.get_segmentation_loss("focal", dice_weight=-1), "dice_weight"),
    ],
)
def test_bad_arguments_raise(build, argument):
    with pytest.raises(ValueError, match=argument):
        build()


def test_unknown_name_lists_choices():
    with pytest.raises(ValueError, match="focal\\+dice"):
        losses.get_segmentation_loss("bce")


@pytest.mark.parametrize(
    "loss, labels_shape, logits_shape, argument",
    [
        (losses.DiceLoss(), (2, 6, 6), (2, 6, 6), "y_pred"),
        (losses.SparseCategoricalCrossentropy(), (2, 6), (2, 6, 6, 4), "y_true"),
        (losses.DiceLoss(class_weights=[1.0, 1.0, 1.0]), (2, 6, 6), (2, 6, 6, 4), "class_weights"),
        (losses.SparseFocalLoss(alpha=[1.0, 1.0]), (2, 6, 6), (2, 6, 6, 4), "alpha"),
    ],
)
def test_bad_shapes_raise(loss, labels_shape, logits_shape, argument):
    with pytest.raises(ValueError, match=argument):
        loss(np.zeros(labels_shape, "int32"), np.zeros(logits_shape, "float32"))


# ---------------------------------------------------------------------------
# tf.distribute (subprocess: logical CPUs must be set before TF starts).
# ---------------------------------------------------------------------------


@pytest.mark.slow
def test_mirrored_strategy_averages_replica_pixel_means():
    script = textwrap.dedent(
        """
        import numpy as np, tensorflow as tf
        cpu = tf.config.list_physical_devices("CPU")[0]
        tf.config.set_logical_device_configuration(
            cpu, [tf.config.LogicalDeviceConfiguration()] * 2)
        from kerasvision import losses
        rng = np.random.default_rng(0)
        labels = rng.integers(0, 3, size=(4, 4, 4))
        labels[0, :3] = 255
        logits = rng.normal(size=(4, 4, 4, 3)).astype("float32")
        strategy = tf.distribute.MirroredStrategy(["/cpu:0", "/cpu:1"])
        loss = losses.SparseCategoricalCrossentropy()
        dataset = strategy.experimental_distribute_dataset(
            tf.data.Dataset.from_tensor_slices((labels, logits)).batch(4))
        y, x = next(iter(dataset))
        per_replica = strategy.run(loss, args=(y, x))
        total = strategy.reduce("SUM", per_replica, axis=None)
        halves = [losses.SparseCategoricalCrossentropy()(labels[i:i + 2], logits[i:i + 2])
                  for i in (0, 2)]
        print("RESULT", float(total), float(np.mean(halves)))
        """
    )
    env = dict(os.environ, PYTHONPATH=REPO_ROOT, TF_CPP_MIN_LOG_LEVEL="3")
    out = subprocess.run(
        [sys.executable, "-c", script], env=env, capture_output=True, text=True, timeout=300
    )
    assert out.returncode == 0, out.stderr[-2000:]
    total, expected = map(float, out.stdout.split("RESULT")[-1].split())
    np.testing.assert_allclose(total, expected, rtol=1e-5)
