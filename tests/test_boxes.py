"""Tests for kerasvision.boxes: formats, IoU, clipping and NMS against numpy references."""

import numpy as np
import pytest
import tensorflow as tf

from kerasvision import boxes as kb


def _random_boxes(rng, n, size=100.0, min_side=4.0, max_side=40.0):
    """float32 `[n, 4]` xyxy boxes inside a `size` x `size` image."""
    sides = rng.uniform(min_side, max_side, (n, 2))
    corners = rng.uniform(0, size - max_side, (n, 2))
    return np.concatenate([corners, corners + sides], axis=1).astype(np.float32)


def _iou_np(a, b):
    """IoU of two xyxy boxes written out by hand, in float64."""
    ix = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    iy = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = ix * iy
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    return inter / union if union > 0 else 0.0


def _greedy_nms_np(boxes, scores, classes, iou_threshold, score_threshold, max_detections):
    """Reference greedy NMS: indices kept, by decreasing score.

    Boxes are visited by score; one is kept unless it overlaps (IoU > threshold)
    a kept box of the same class. Scores must exceed `score_threshold`.
    """
    boxes = boxes.astype(np.float64)
    order = [i for i in np.argsort(-scores, kind="stable") if scores[i] > score_threshold]
    kept = []
    for i in order:
        if all(classes[i] != classes[j] or _iou_np(boxes[i], boxes[j]) <= iou_threshold
               for j in kept):
            kept.append(i)
    return kept[:max_detections]


# ---------------------------------------------------------------- formats

def test_known_conversions():
    xyxy = np.array([[10, 20, 30, 60]], np.float32)
    np.testing.assert_allclose(kb.convert_format(xyxy, "xyxy", "xywh"), [[10, 20, 20, 40]])
    np.testing.assert_allclose(kb.convert_format(xyxy, "xyxy", "center_xywh"), [[20, 40, 20, 40]])
    np.testing.assert_allclose(
        kb.convert_format(xyxy, "xyxy", "rel_xyxy", height=200, width=100),
        [[0.1, 0.1, 0.3, 0.3]], rtol=1e-6)


@pytest.mark.parametrize("fmt", kb.FORMATS)
def test_format_round_trip(fmt):
    rng = np.random.default_rng(0)
    xyxy = _random_boxes(rng, 50, size=300)
    converted = kb.convert_format(xyxy, "xyxy", fmt, height=240, width=320)
    assert isinstance(converted, np.ndarray) and converted.dtype == np.float32
    back = kb.convert_format(converted, fmt, "xyxy", height=240, width=320)
    np.testing.assert_allclose(back, xyxy, atol=1e-4)


def test_conversion_keeps_padding_rows_and_batch_axes():
    boxes = np.array([[[0, 0, 10, 10], [-1, -1, -1, -1]]], np.float32)
    out = kb.convert_format(boxes, "xyxy", "center_xywh")
    np.testing.assert_array_equal(out, [[[5, 5, 10, 10], [-1, -1, -1, -1]]])
    np.testing.assert_array_equal(kb.convert_format(out, "center_xywh", "xyxy"), boxes)


def test_conversion_of_tensors_in_a_tf_function():
    @tf.function(input_signature=[tf.TensorSpec([None, 4]), tf.TensorSpec([], tf.int32)])
    def to_rel(boxes, height):
        return kb.convert_format(boxes, "xyxy", "rel_xyxy", height=height, width=50)

    out = to_rel(tf.constant([[5.0, 10.0, 25.0, 20.0]]), tf.constant(40))
    assert isinstance(out, tf.Tensor)
    np.testing.assert_allclose(out.numpy(), [[0.1, 0.25, 0.5, 0.5]], rtol=1e-6)


# ---------------------------------------------------------------- IoU and clipping

def test_iou_matrix_matches_hand_computation():
    rng = np.random.default_rng(1)
    a, b = _random_boxes(rng, 7), _random_boxes(rng, 5)
    b[0] = a[0]  # an identical pair: IoU 1
    b[1] = [0, 0, 0, 0]  # a degenerate box: IoU 0, not NaN
    expected = np.array([[_iou_np(x, y) for y in b] for x in a])
    got = kb.iou_matrix(a, b).numpy()
    assert got.shape == (7, 5)
    np.testing.assert_allclose(got, expected, atol=1e-6)
    assert got[0, 0] == pytest.approx(1.0) and np.all(got[:, 1] == 0)
    # Two hand-made cases: half overlap, and disjoint.
    two = kb.iou_matrix([[0, 0, 10, 10]], [[5, 0, 15, 10], [20, 20, 30, 30]]).numpy()
    np.testing.assert_allclose(two, [[50 / 150, 0.0]], rtol=1e-6)


def test_iou_matrix_batched_and_in_graph():
    rng = np.random.default_rng(2)
    a = np.stack([_random_boxes(rng, 4) for _ in range(3)])
    b = np.stack([_random_boxes(rng, 6) for _ in range(3)])
    graph = tf.function(kb.iou_matrix)(tf.constant(a), tf.constant(b)).numpy()
    assert graph.shape == (3, 4, 6)
    for i in range(3):
        np.testing.assert_allclose(graph[i], kb.iou_matrix(a[i], b[i]).numpy(), atol=1e-6)


def test_clip_boxes_keeps_padding():
    boxes = np.array([[-5, 3, 50, 70], [10, 10, 20, 20], [-1, -1, -1, -1]], np.float32)
    np.testing.assert_array_equal(
        kb.clip_boxes(boxes, height=40, width=30),
        [[0, 3, 30, 40], [10, 10, 20, 20], [-1, -1, -1, -1]])


# ---------------------------------------------------------------- NMS

@pytest.mark.parametrize("per_class", [False, True])
@pytest.mark.parametrize("max_detections", [5, 100])
def test_nms_matches_numpy_greedy_nms(per_class, max_detections):
    rng = np.random.default_rng(3 + max_detections)
    for _ in range(5):
        n = 80
        boxes = _random_boxes(rng, n)
        scores = rng.uniform(0, 1, n).astype(np.float32)
        classes = rng.integers(0, 3, n).astype(np.int32)
        out = kb.non_max_suppression(boxes, scores, classes if per_class else None,
                                     iou_threshold=0.4, score_threshold=0.1,
                                     max_detections=max_detections)
        expected = _greedy_nms_np(boxes, scores, classes if per_class else np.zeros(n), 0.4,
                                  0.1, max_detections)
        np.testing.assert_allclose(out["boxes"].numpy(), boxes[expected])
        np.testing.assert_allclose(out["scores"].numpy(), scores[expected])
        if per_class:
            np.testing.assert_array_equal(out["classes"].numpy(), classes[expected])
        assert out["classes"].dtype == tf.int32


def test_nms_thresholds_are_strict():
    boxes = np.array([[0, 0, 10, 10], [5, 0, 15, 10]], np.float32)  # IoU 1/3
    out = kb.non_max_suppression(boxes, [0.9, 0.5], iou_threshold=1 / 3, score_threshold=0.5)
    np.testing.assert_allclose(out["scores"].numpy(), [0.9])  # 0.5 is not > 0.5
    out = kb.non_max_suppression(boxes, [0.9, 0.6], iou_threshold=0.3)
    np.testing.assert_allclose(out["scores"].numpy(), [0.9])  # IoU 1/3 > 0.3
    out = kb.non_max_suppression(boxes, [0.9, 0.6], classes=[0, 1], iou_threshold=0.3)
    np.testing.assert_array_equal(out["classes"].numpy(), [0, 1])  # other class: kept


def test_nms_of_no_boxes():
    out = kb.non_max_suppression(np.zeros((0, 4), np.float32), np.zeros(0), classes=np.zeros(0))
    assert out["boxes"].shape == (0, 4) and out["scores"].shape == (0,)


def _batched_reference(boxes, scores, iou_threshold, score_threshold, max_detections):
    """Per image: every (box, class) score is a candidate; per-class greedy NMS."""
    num_boxes, num_classes = scores.shape
    flat_boxes = np.repeat(boxes, num_classes, axis=0)
    flat_scores = scores.reshape(-1)
    flat_classes = np.tile(np.arange(num_classes), num_boxes)
    kept = _greedy_nms_np(flat_boxes, flat_scores, flat_classes, iou_threshold,
                          score_threshold, max_detections)
    return flat_boxes[kept], flat_scores[kept], flat_classes[kept]


def test_batched_nms_in_a_tf_function_equals_per_image_results():
    rng = np.random.default_rng(4)
    batch, n, num_classes, max_det = 3, 40, 3, 12
    boxes = np.stack([_random_boxes(rng, n) for _ in range(batch)])
    scores = rng.uniform(0, 1, (batch, n, num_classes)).astype(np.float32)
    scores[2] = 0.01  # an image where nothing passes the threshold

    @tf.function(input_signature=[tf.TensorSpec([None, None, 4]),
                                  tf.TensorSpec([None, None, None])])
    def detect(b, s):
        return kb.batched_non_max_suppression(b, s, iou_threshold=0.5, score_threshold=0.3,
                                              max_detections=max_det)

    out = {key: value.numpy() for key, value in detect(boxes, scores).items()}
    assert out["boxes"].shape == (batch, max_det, 4)
    assert out["classes"].dtype == np.int32 and out["num_detections"].dtype == np.int32
    for i in range(batch):
        ref_boxes, ref_scores, ref_classes = _batched_reference(boxes[i], scores[i], 0.5, 0.3,
                                                                max_det)
        k = out["num_detections"][i]
        assert k == len(ref_scores)
        np.testing.assert_allclose(out["boxes"][i, :k], ref_boxes)
        np.testing.assert_allclose(out["scores"][i, :k], ref_scores)
        np.testing.assert_array_equal(out["classes"][i, :k], ref_classes)
        # Padding rows: boxes 0, scores 0, classes -1.
        assert np.all(out["boxes"][i, k:] == 0) and np.all(out["scores"][i, k:] == 0)
        assert np.all(out["classes"][i, k:] == -1)
    assert out["num_detections"][2] == 0


def test_batched_nms_equals_single_image_nms_for_one_class_per_box():
    rng = np.random.default_rng(5)
    batch, n, num_classes = 2, 30, 4
    boxes = np.stack([_random_boxes(rng, n) for _ in range(batch)])
    classes = rng.integers(0, num_classes, (batch, n))
    box_scores = rng.uniform(0, 1, (batch, n)).astype(np.float32)
    scores = np.zeros((batch, n, num_classes), np.float32)
    np.put_along_axis(scores, classes[..., None], box_scores[..., None], axis=-1)
    out = kb.batched_non_max_suppression(boxes, scores, max_detections=20)
    for i in range(batch):
        single = kb.non_max_suppression(boxes[i], box_scores[i], classes[i], max_detections=20)
        k = out["num_detections"][i].numpy()
        for key in ("boxes", "scores", "classes"):
            np.testing.assert_allclose(out[key][i, :k].numpy(), single[key].numpy())


def test_batched_nms_in_a_saved_model(tmp_path):
    module = tf.Module()
    module.detect = tf.function(
        lambda b, s: kb.batched_non_max_suppression(b, s, max_detections=5),
        input_signature=[tf.TensorSpec([None, None, 4]), tf.TensorSpec([None, None, 2])])
    tf.saved_model.save(module, str(tmp_path / "nms"))
    restored = tf.saved_model.load(str(tmp_path / "nms"))
    boxes = tf.constant([[[0, 0, 10, 10], [1, 1, 10, 10], [20, 20, 30, 30]]], tf.float32)
    scores = tf.constant([[[0.9, 0.0], [0.8, 0.0], [0.0, 0.7]]])
    out = restored.detect(boxes, scores)
    assert int(out["num_detections"][0]) == 2
    np.testing.assert_array_equal(out["classes"][0].numpy(), [0, 1, -1, -1, -1])


# ---------------------------------------------------------------- bad inputs

@pytest.mark.parametrize("call, message", [
    (lambda: kb.iou_matrix([[10, 0, 5, 10]], [[0, 0, 1, 1]]), "x2 >= x1"),
    (lambda: kb.non_max_suppression([[0, 10, 5, 2]], [0.5]), "inverted"),
    (lambda: kb.clip_boxes([[0, 0, np.nan, 1]], 10, 10), "finite"),
    (lambda: kb.convert_format([[0, 0, -2, 3]], "xywh", "xyxy"), "width and height >= 0"),
    (lambda: kb.convert_format([[0, 0, 1, 1]], "xyxy", "yolo"), "`target` must be one of"),
    (lambda: kb.convert_format([[0, 0, 1, 1]], "xyxy", "rel_xyxy"), "`height` and `width`"),
    (lambda: kb.convert_format([[0, 0, 1]], "xyxy", "xywh"), "shape [..., 4]"),
    (lambda: kb.convert_format(np.array([["a", "b", "c", "d"]]), "xyxy", "xywh"), "numbers"),
    (lambda: kb.clip_boxes([[0, 0, 1, 1]], height=0, width=5), "`height` must be > 0"),
    (lambda: kb.non_max_suppression([[0, 0, 1, 1]], [0.5, 0.4]), "one entry per box"),
    (lambda: kb.non_max_suppression([[0, 0, 1, 1]], [0.5], classes=[-1]), "class ids >= 0"),
    (lambda: kb.non_max_suppression([[0, 0, 1, 1]], [0.5], iou_threshold=1.5),
     "`iou_threshold` must be <= 1.0"),
    (lambda: kb.non_max_suppression([[0, 0, 1, 1]], [0.5], max_detections=0),
     "`max_detections` must be >= 1"),
    (lambda: kb.batched_non_max_suppression(np.zeros((1, 3, 4)), np.zeros((1, 3))),
     "[B, N, C]"),
    (lambda: kb.batched_non_max_suppression(np.zeros((1, 3, 4)), np.zeros((1, 2, 2))),
     "number of boxes N"),
])
def test_bad_inputs_raise_clear_errors(call, message):
    with pytest.raises(ValueError) as error:
        call()
    assert message in str(error.value)
