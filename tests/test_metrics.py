"""Tests for kerasvision.metrics.segmentation against an independent numpy implementation."""

import os
import subprocess
import sys
import textwrap

import keras
import numpy as np
import pytest
import tensorflow as tf

from kerasvision import losses, metrics
from kerasvision.validation import IGNORE_LABEL

NUM_CLASSES = 4
REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


# ---------------------------------------------------------------------------
# Numpy reference, written from the definitions (no kerasvision code).
# ---------------------------------------------------------------------------


def ref_confusion(labels, logits, num_classes=NUM_CLASSES, weights=None):
    """Pixel-by-pixel confusion matrix; weights broadcast to the labels."""
    pred = logits.argmax(axis=-1)
    weights = np.broadcast_to(1.0 if weights is None else weights, labels.shape)
    cm = np.zeros((num_classes, num_classes))
    for t, p, w in zip(labels.ravel(), pred.ravel(), weights.ravel()):
        if t != IGNORE_LABEL:
            cm[t, p] += w
    return cm


def ref_per_class_iou(cm):
    out = []
    for c in range(len(cm)):
        tp, fp, fn = cm[c, c], cm[:, c].sum() - cm[c, c], cm[c, :].sum() - cm[c, c]
        out.append(tp / (tp + fp + fn) if tp + fp + fn > 0 else np.nan)
    return np.array(out)


def ref_per_class_dice(cm):
    out = []
    for c in range(len(cm)):
        tp, fp, fn = cm[c, c], cm[:, c].sum() - cm[c, c], cm[c, :].sum() - cm[c, c]
        out.append(2 * tp / (2 * tp + fp + fn) if tp + fp + fn > 0 else np.nan)
    return np.array(out)


def ref_fw_iou(cm):
    freq = cm.sum(axis=1) / cm.sum()
    iou = np.nan_to_num(ref_per_class_iou(cm))
    return float((freq * iou).sum())


REFERENCES = {
    metrics.MeanIoU: lambda cm: np.nanmean(ref_per_class_iou(cm)),
    metrics.PerClassIoU: ref_per_class_iou,
    metrics.MeanDice: lambda cm: np.nanmean(ref_per_class_dice(cm)),
    metrics.PixelAccuracy: lambda cm: np.trace(cm) / cm.sum(),
    metrics.FrequencyWeightedIoU: ref_fw_iou,
}
METRIC_CLASSES = list(REFERENCES)


# ---------------------------------------------------------------------------
# Fixtures.
# ---------------------------------------------------------------------------


def make_batches(num_batches=3, num_classes=NUM_CLASSES, seed=0):
    """Batches of labels [2, 5, 5] (~20% ignored) and logits [2, 5, 5, C]."""
    rng = np.random.default_rng(seed)
    out = []
    for _ in range(num_batches):
        labels = rng.integers(0, num_classes, size=(2, 5, 5))
        labels[rng.random(labels.shape) < 0.2] = IGNORE_LABEL
        out.append((labels, rng.normal(size=(2, 5, 5, num_classes)).astype("float32")))
    return out


@pytest.fixture
def batches():
    return make_batches()


def total_confusion(batches, weights=None):
    return sum(ref_confusion(y, x, weights=weights) for y, x in batches)


@pytest.fixture(params=METRIC_CLASSES, ids=lambda cls: cls.__name__)
def metric_cls(request):
    return request.param


# ---------------------------------------------------------------------------
# Values.
# ---------------------------------------------------------------------------


@pytest.mark.parametrize("label_rank", [3, 4])
def test_streaming_matches_numpy(metric_cls, batches, label_rank):
    metric = metric_cls(NUM_CLASSES)
    for labels, logits in batches:
        metric.update_state(labels[..., None] if label_rank == 4 else labels, logits)
    cm = total_confusion(batches)
    np.testing.assert_allclose(metric.confusion_matrix(), cm)
    np.testing.assert_allclose(metric.result(), REFERENCES[metric_cls](cm), rtol=1e-5)
    metric.reset_state()
    assert metric.confusion_matrix().sum() == 0
    assert np.all(np.nan_to_num(np.asarray(metric.result())) == 0)


@pytest.mark.parametrize("weight_kind", ["per_image", "per_pixel"])
def test_sample_weight(batches, weight_kind):
    rng = np.random.default_rng(3)
    metric = metrics.MeanIoU(NUM_CLASSES)
    expected = np.zeros((NUM_CLASSES, NUM_CLASSES))
    for labels, logits in batches:
        shape = (2,) if weight_kind == "per_image" else labels.shape
        weights = rng.random(shape).astype("float32")
        metric.update_state(labels, logits, sample_weight=weights)
        pixel_weights = weights.reshape((2, 1, 1)) if weights.ndim == 1 else weights
        expected += ref_confusion(labels, logits, weights=pixel_weights)
    np.testing.assert_allclose(metric.confusion_matrix(), expected, rtol=1e-5)


def test_label_predictions_accepted(batches):
    labels, logits = batches[0]
    from_scores = metrics.PixelAccuracy(NUM_CLASSES)
    from_labels = metrics.PixelAccuracy(NUM_CLASSES)
    from_scores.update_state(labels, logits)
    from_labels.update_state(labels, logits.argmax(-1))
    np.testing.assert_array_equal(from_scores.confusion_matrix(), from_labels.confusion_matrix())


def test_absent_classes_are_left_out_of_means():
    # 5 classes, class 4 never in truth nor prediction.
    labels, logits = make_batches(1)[0]
    logits = np.concatenate([logits, np.full(logits.shape[:-1] + (1,), -10.0, "float32")], axis=-1)
    miou, per_class, dice = metrics.MeanIoU(5), metrics.PerClassIoU(5), metrics.MeanDice(5)
    for metric in (miou, per_class, dice):
        metric.update_state(labels, logits)
    cm = ref_confusion(labels, logits, num_classes=5)
    assert np.isnan(per_class.result().numpy()[4]) and np.isnan(per_class.per_class()[4])
    np.testing.assert_allclose(per_class.per_class(), ref_per_class_iou(cm), rtol=1e-5)
    np.testing.assert_allclose(float(miou.result()), np.nanmean(ref_per_class_iou(cm)), rtol=1e-5)
    np.testing.assert_allclose(dice.per_class(), ref_per_class_dice(cm), rtol=1e-5)
    np.testing.assert_allclose(float(dice.result()), np.nanmean(ref_per_class_dice(cm)), rtol=1e-5)


def test_ignored_and_out_of_range_labels_are_skipped(batches):
    labels, logits = batches[0]
    ignored = labels == IGNORE_LABEL
    noisy = logits.copy()
    noisy[ignored] = np.random.default_rng(4).normal(size=noisy[ignored].shape)
    a, b = metrics.MeanIoU(NUM_CLASSES), metrics.MeanIoU(NUM_CLASSES)
    a.update_state(labels, logits)
    b.update_state(labels, noisy)
    np.testing.assert_array_equal(a.confusion_matrix(), b.confusion_matrix())
    out_of_range = np.where(ignored, 7, labels)
    c = metrics.MeanIoU(NUM_CLASSES, ignore_label=None)
    c.update_state(out_of_range, logits)
    np.testing.assert_array_equal(c.confusion_matrix(), a.confusion_matrix())


def test_custom_ignore_label(batches):
    labels, logits = batches[0]
    metric = metrics.PixelAccuracy(NUM_CLASSES, ignore_label=0)
    metric.update_state(labels, logits)
    expected = ref_confusion(np.where(labels == 0, IGNORE_LABEL, labels), logits)
    np.testing.assert_allclose(metric.confusion_matrix(), expected)


def test_xla_update_matches_eager(metric_cls, batches):
    eager, compiled = metric_cls(NUM_CLASSES), metric_cls(NUM_CLASSES)
    update = tf.function(compiled.update_state, jit_compile=True)
    for labels, logits in batches:
        eager.update_state(labels, logits)
        update(tf.constant(labels), tf.constant(logits))
    np.testing.assert_allclose(compiled.confusion_matrix(), eager.confusion_matrix())
    np.testing.assert_allclose(compiled.result(), eager.result(), rtol=1e-6)


def test_mixed_precision_scores(batches):
    labels, logits = batches[0]
    metric = metrics.MeanIoU(NUM_CLASSES)
    metric.update_state(labels, tf.constant(logits, dtype="float16"))
    assert metric.result().dtype == tf.float32
    np.testing.assert_allclose(metric.confusion_matrix(), ref_confusion(labels, logits))


# ---------------------------------------------------------------------------
# Numpy helpers.
# ---------------------------------------------------------------------------


def test_numpy_helpers_match_reference(batches):
    labels = np.concatenate([y for y, _ in batches])
    logits = np.concatenate([x for _, x in batches])
    cm = metrics.confusion_matrix_np(labels, logits.argmax(-1), NUM_CLASSES)
    assert cm.dtype == np.int64
    np.testing.assert_array_equal(cm, ref_confusion(labels, logits))
    np.testing.assert_allclose(metrics.per_class_iou(cm), ref_per_class_iou(cm))
    np.testing.assert_allclose(metrics.per_class_dice(cm), ref_per_class_dice(cm))
    assert metrics.mean_iou(cm) == pytest.approx(np.nanmean(ref_per_class_iou(cm)))
    assert metrics.mean_dice(cm) == pytest.approx(np.nanmean(ref_per_class_dice(cm)))
    assert metrics.pixel_accuracy(cm) == pytest.approx(np.trace(cm) / cm.sum())
    assert metrics.frequency_weighted_iou(cm) == pytest.approx(ref_fw_iou(cm))
    assert metrics.mean_iou(np.zeros((3, 3))) == 0.0


def test_segmentation_report():
    cm = np.array([[5, 1, 0], [2, 3, 0], [0, 0, 0]])
    report = metrics.segmentation_report(cm, ["background", "cat", "dog"])
    assert "background" in report and "mIoU" in report
    assert "n/a" in report.splitlines()[3]  # "dog" never seen
    with pytest.raises(ValueError, match="class_names"):
        metrics.segmentation_report(cm, ["a", "b"])


def test_segmentation_confusion_matrix_over_a_dataset(batches):
    # An identity "model": its inputs are the logits, so the reference is known.
    labels = np.concatenate([y for y, _ in batches])
    logits = np.concatenate([x for _, x in batches])
    model = keras.Sequential([keras.Input(logits.shape[1:]), keras.layers.Identity()])
    dataset = tf.data.Dataset.from_tensor_slices((logits, labels)).batch(4)
    cm = metrics.segmentation_confusion_matrix(model, dataset, NUM_CLASSES)
    assert cm.dtype == np.int64
    np.testing.assert_array_equal(cm, ref_confusion(labels, logits))


# ---------------------------------------------------------------------------
# Docstrings: shared argument docs are filled in, Keras's names explained.
# ---------------------------------------------------------------------------


def test_fill_doc():
    from kerasvision.validation import fill_doc

    @fill_doc(args="x: int.")
    def documented():
        """Example: {"P1": 1}.

        Args:
            {args}
        """

    assert "x: int." in documented.__doc__ and '{"P1": 1}' in documented.__doc__
    undocumented = fill_doc(args="x")(lambda: None)  # no docstring (python -OO): left alone
    assert undocumented.__doc__ is None
    with pytest.raises(ValueError, match=r"no \{args\} to fill"):
        fill_doc(args="x")(make_batches)


def test_metric_docstrings_are_filled(metric_cls):
    assert "{common_args}" not in metric_cls.__doc__
    assert "num_classes: int >= 2" in metric_cls.__doc__


def test_classes_with_keras_names_say_why_keras_falls_short():
    assert "keras.metrics.MeanIoU(num_classes, ignore_class=255" in metrics.MeanIoU.__doc__
    assert "keras.losses.SparseCategoricalCrossentropy(" in (
        losses.SparseCategoricalCrossentropy.__doc__)


# ---------------------------------------------------------------------------
# Serialization.
# ---------------------------------------------------------------------------


def test_config_round_trip(metric_cls):
    metric = metric_cls(3, ignore_label=0, name="my_metric")
    restored = keras.saving.deserialize_keras_object(keras.saving.serialize_keras_object(metric))
    assert type(restored) is metric_cls
    assert restored.get_config() == metric.get_config()
    assert (restored.num_classes, restored.ignore_label, restored.name) == (3, 0, "my_metric")


def test_keras_save_load_round_trip(tmp_path):
    rng = np.random.default_rng(5)
    images = rng.normal(size=(2, 8, 8, 3)).astype("float32")
    labels = rng.integers(0, 3, size=(2, 8, 8))
    labels[:, :2] = IGNORE_LABEL
    model = keras.Sequential([keras.Input((8, 8, 3)), keras.layers.Conv2D(3, 1)])
    model.compile(
        optimizer="adam",
        loss=losses.SparseCategoricalCrossentropy(),
        metrics=[metrics.MeanIoU(3), metrics.MeanDice(3), metrics.PixelAccuracy(3)],
    )
    model.optimizer.build(model.trainable_variables)
    cm = ref_confusion(labels, model.predict(images, verbose=0), num_classes=3)
    model.save(tmp_path / "m.keras")
    loaded = keras.saving.load_model(tmp_path / "m.keras")
    logs = loaded.evaluate(images, labels, verbose=0, return_dict=True)
    assert logs["mean_iou"] == pytest.approx(np.nanmean(ref_per_class_iou(cm)), rel=1e-5)
    assert logs["mean_dice"] == pytest.approx(np.nanmean(ref_per_class_dice(cm)), rel=1e-5)
    assert logs["pixel_accuracy"] == pytest.approx(np.trace(cm) / cm.sum(), rel=1e-5)


# ---------------------------------------------------------------------------
# Argument validation.
# ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    "build, argument",
    [
        (lambda: metrics.MeanIoU(1), "num_classes"),
        (lambda: metrics.MeanIoU(2.5), "num_classes"),
        (lambda: metrics.PerClassIoU(3, ignore_label="void"), "ignore_label"),
        (lambda: metrics.PixelAccuracy(3, dtype="int32"), "dtype"),
        (lambda: metrics.confusion_matrix_np([0, 1], [0, 1], 1), "num_classes"),
        (lambda: metrics.confusion_matrix_np([0, 1], [0, 1, 1], 2), "y_pred_labels"),
        (lambda: metrics.per_class_iou(np.zeros((2, 3))), "confusion"),
    ],
)
def test_bad_arguments_raise(build, argument):
    with pytest.raises(ValueError, match=argument):
        build()


@pytest.mark.parametrize(
    "labels_shape, pred_shape",
    [((2, 5, 5), (2, 5, 5, 3)), ((2, 5, 5), (2, 5, 5, 4, 1))],
)
def test_bad_shapes_raise(labels_shape, pred_shape):
    with pytest.raises(ValueError, match="y_pred"):
        metrics.MeanIoU(NUM_CLASSES).update_state(
            np.zeros(labels_shape, "int32"), np.zeros(pred_shape, "float32")
        )


# ---------------------------------------------------------------------------
# tf.distribute (subprocess: logical CPUs must be set before TF starts).
# ---------------------------------------------------------------------------


@pytest.mark.slow
def test_mirrored_strategy_sums_replica_confusion():
    script = textwrap.dedent(
        """
        import numpy as np, tensorflow as tf
        cpu = tf.config.list_physical_devices("CPU")[0]
        tf.config.set_logical_device_configuration(
            cpu, [tf.config.LogicalDeviceConfiguration()] * 2)
        from kerasvision import metrics
        rng = np.random.default_rng(0)
        labels = rng.integers(0, 3, size=(4, 4, 4))
        labels[0, :2] = 255
        logits = rng.normal(size=(4, 4, 4, 3)).astype("float32")
        strategy = tf.distribute.MirroredStrategy(["/cpu:0", "/cpu:1"])
        with strategy.scope():
            metric = metrics.MeanIoU(3)
        dataset = strategy.experimental_distribute_dataset(
            tf.data.Dataset.from_tensor_slices((labels, logits)).batch(4))
        y, x = next(iter(dataset))
        strategy.run(tf.function(metric.update_state), args=(y, x))
        expected = metrics.confusion_matrix_np(labels, logits.argmax(-1), 3)
        print("RESULT", int(np.array_equal(metric.confusion_matrix(), expected)))
        """
    )
    env = dict(os.environ, PYTHONPATH=REPO_ROOT, TF_CPP_MIN_LOG_LEVEL="3")
    out = subprocess.run(
        [sys.executable, "-c", script], env=env, capture_output=True, text=True, timeout=300
    )
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.split("RESULT")[-1].split() == ["1"]
