"""R-CNN (Girshick et al. 2014): proposals, labelling, box targets, training data, detection."""

import sys

import numpy as np
import keras
import pytest
import tensorflow as tf

from kerasvision.data import load_shapes_detection, make_shapes_detection
from kerasvision.models import rcnn
from kerasvision.models.detectors import (
    DETECTORS,
    build_detector,
    compile_detector,
    detect,
    detector_targets,
    detector_training_data,
)


@pytest.fixture(scope="module")
def scenes():
    images, boxes, labels, _ = make_shapes_detection(4, split="validation")
    return images, boxes, labels


def test_selective_search_gives_boxes_inside_the_image(scenes):
    pytest.importorskip("cv2")
    image = scenes[0][0]
    proposals = rcnn.selective_search(image, max_proposals=500, min_size=8)
    assert proposals.dtype == np.float32 and proposals.ndim == 2 and proposals.shape[1] == 4
    assert 1 <= len(proposals) <= 500
    assert np.all(proposals >= 0) and np.all(proposals[:, [0, 2]] <= image.shape[1])
    assert np.all(proposals[:, [1, 3]] <= image.shape[0])
    sizes = proposals[:, 2:] - proposals[:, :2]
    assert np.all(sizes >= 8)
    assert len(np.unique(proposals, axis=0)) == len(proposals)
    assert len(rcnn.selective_search(image, max_proposals=3)) <= 3


def test_proposal_cache_reuses_proposals(scenes):
    pytest.importorskip("cv2")
    cache = {}
    first = rcnn.cached_selective_search(scenes[0][0], cache, mode="fast", max_proposals=50,
                                         min_size=8)
    again = rcnn.cached_selective_search(scenes[0][0].astype(np.float32), cache, mode="fast",
                                         max_proposals=50, min_size=8)
    assert again is first and len(cache) == 1


def test_selective_search_rejects_bad_arguments():
    with pytest.raises(ValueError, match=r"`image`.*\(128, 128\)"):
        rcnn.selective_search(np.zeros((128, 128)))
    with pytest.raises(ValueError, match=r"mode.*'slow'"):
        rcnn.selective_search(np.zeros((8, 8, 3)), mode="slow")
    with pytest.raises(ValueError, match="max_proposals"):
        rcnn.selective_search(np.zeros((8, 8, 3)), max_proposals=0)


def test_missing_opencv_names_the_extra(monkeypatch):
    monkeypatch.setitem(sys.modules, "cv2", None)  # `import cv2` now raises ImportError
    with pytest.raises(ImportError, match=r"pip install kerasvision\[rcnn\]"):
        rcnn.selective_search(np.zeros((16, 16, 3), np.uint8))


def test_label_proposals_by_iou():
    gt_boxes = np.array([[0, 0, 10, 10], [20, 20, 40, 40], [-1, -1, -1, -1]], np.float32)
    gt_labels = np.array([2, 0, -1])
    proposals = np.array([
        [0, 0, 10, 10],    # IoU 1 with box 0          -> class 2 (+1)
        [0, 0, 10, 20],    # IoU 0.5 with box 0        -> class 2 (+1)
        [0, 0, 10, 30],    # IoU 1/3: ambiguous        -> ignored
        [50, 50, 60, 60],  # no overlap                -> background
        [20, 20, 40, 30],  # IoU 0.5 with box 1        -> class 0 (+1)
        [0, 0, 10, 40],    # IoU 0.25 < 0.3            -> background
    ], np.float32)
    labels, matched, best = rcnn.label_proposals(proposals, gt_boxes, gt_labels)
    np.testing.assert_array_equal(labels, [3, 3, -1, 0, 1, 0])
    np.testing.assert_allclose(best, [1, 0.5, 1 / 3, 0, 0.5, 0.25], atol=1e-6)
    np.testing.assert_array_equal(matched[4], [20, 20, 40, 40])
    np.testing.assert_array_equal(matched[0], [0, 0, 10, 10])
    # No ground truth: everything is background.
    labels, _, _ = rcnn.label_proposals(proposals, np.full((1, 4), -1.0), [-1])
    np.testing.assert_array_equal(labels, np.zeros(6))
    with pytest.raises(ValueError, match="background_iou"):
        rcnn.label_proposals(proposals, gt_boxes, gt_labels, background_iou=0.7)


def test_sample_proposals_keeps_the_foreground_fraction():
    rng = np.random.default_rng(0)
    labels = np.array([1] * 10 + [0] * 40 + [-1] * 5)
    picked = rcnn.sample_proposals(labels, 16, 0.25, rng)
    assert len(picked) == 16 and np.sum(labels[picked] > 0) == 4
    assert np.all(labels[picked] >= 0)
    few = np.array([2] + [0] * 40)
    picked = rcnn.sample_proposals(few, 16, 0.25, rng)
    assert len(picked) == 16 and np.sum(few[picked] > 0) == 1
    only_foreground = np.array([1, 1, -1])
    picked = rcnn.sample_proposals(only_foreground, 16, 0.25, rng)
    assert len(picked) == 16 and np.all(only_foreground[picked] == 1)
    assert len(rcnn.sample_proposals(np.array([-1, -1]), 16, 0.25, rng)) == 0


def _numpy_encode(proposals, boxes, scale):
    pw, ph = proposals[:, 2] - proposals[:, 0], proposals[:, 3] - proposals[:, 1]
    px, py = proposals[:, 0] + pw / 2, proposals[:, 1] + ph / 2
    gw, gh = boxes[:, 2] - boxes[:, 0], boxes[:, 3] - boxes[:, 1]
    gx, gy = boxes[:, 0] + gw / 2, boxes[:, 1] + gh / 2
    return np.stack([(gx - px) / pw, (gy - py) / ph, np.log(gw / pw), np.log(gh / ph)],
                    axis=1) * np.asarray(scale)


def test_box_deltas_match_the_paper_and_round_trip():
    rng = np.random.default_rng(1)
    corners = rng.uniform(0, 100, (50, 2))
    proposals = np.concatenate([corners, corners + rng.uniform(5, 60, (50, 2))], axis=1)
    corners = rng.uniform(0, 100, (50, 2))
    boxes = np.concatenate([corners, corners + rng.uniform(5, 60, (50, 2))], axis=1)
    deltas = rcnn.encode_box_deltas(proposals, boxes).numpy()
    np.testing.assert_allclose(deltas, _numpy_encode(proposals, boxes, rcnn.DELTA_SCALE),
                               rtol=1e-4, atol=1e-4)
    np.testing.assert_allclose(rcnn.decode_box_deltas(proposals, deltas).numpy(), boxes,
                               rtol=1e-4, atol=1e-3)
    np.testing.assert_allclose(rcnn.encode_box_deltas(proposals, proposals).numpy(), 0,
                               atol=1e-6)


def test_warp_proposals_samples_the_box():
    image = np.zeros((1, 32, 32, 3), np.float32)
    image[:, :, 16:] = 200.0  # right half bright
    boxes = np.array([[0, 0, 16, 32], [16, 8, 32, 24]], np.float32)
    crops = rcnn.warp_proposals(image, boxes, [0, 0], crop_size=16, context_pixels=0).numpy()
    assert crops.shape == (2, 16, 16, 3)
    np.testing.assert_allclose(crops[0], 0.0, atol=1e-4)
    np.testing.assert_allclose(crops[1], 200.0, atol=1e-3)
    # Context dilates the box: the crop of the left half now reaches the bright side.
    padded = rcnn.warp_proposals(image, boxes[:1], [0], crop_size=16, context_pixels=4).numpy()
    assert padded[0, :, -1].mean() > 100


def test_build_rcnn_outputs_and_bad_arguments():
    model = rcnn.build_rcnn(3, crop_size=32, fc_units=16)
    outputs = model(np.zeros((5, 32, 32, 3), np.float32))
    assert outputs["classes"].shape == (5, 4) and outputs["deltas"].shape == (5, 12)
    assert rcnn.is_rcnn(model) and model.rcnn_config["num_classes"] == 3
    with pytest.raises(ValueError, match=r"crop_size.*multiple of 16.*received crop_size=40"):
        rcnn.build_rcnn(3, crop_size=40)
    with pytest.raises(ValueError, match="num_classes"):
        rcnn.build_rcnn(0)
    assert "rcnn" in DETECTORS
    with pytest.raises(ValueError, match="detector_training_data"):
        detector_targets(model)


def test_box_loss_reads_the_true_class_only():
    loss = rcnn.RCNNBoxLoss(2)
    y_pred = np.array([[0, 0, 0, 0, 1, 1, 1, 1], [5, 5, 5, 5, 5, 5, 5, 5]], np.float32)
    y_true = np.array([[2, 1, 1, 1, 1], [0, 0, 0, 0, 0]], np.float32)  # class 1 (+1); background
    assert float(loss(y_true, y_pred)) == pytest.approx(0.0)
    y_true[0, 0] = 1  # class 0's regressor predicts zeros: 4 * smooth_l1(1) = 2, mean over 2
    assert float(loss(y_true, y_pred)) == pytest.approx(1.0)


def test_training_data_and_a_short_fit_lower_the_loss():
    pytest.importorskip("cv2")
    keras.utils.set_random_seed(0)
    model = build_detector("rcnn", 4, (128, 128, 3), crop_size=32, fc_units=64,
                           scratch_filters=(16, 32, 32, 32), max_proposals=100)
    compile_detector(model, 2e-3)
    batches = load_shapes_detection("train", 8).batch(4)
    cache = {}
    data = detector_training_data(model, batches, batch_size=32, samples_per_image=16,
                                  proposal_cache=cache, rounds=2)
    crops, targets = next(iter(data))
    assert crops.shape == (32, 32, 32, 3) and crops.dtype == tf.float32
    assert targets["classes"].dtype == tf.int32 and targets["deltas"].shape == (32, 5)
    assert len(cache) == 8  # one selective search per image, whatever the rounds
    classes = np.concatenate([t["classes"].numpy() for _, t in data])
    assert len(classes) == 8 * 16 * 2
    assert 0.2 <= np.mean(classes > 0) <= 0.3 and classes.max() <= 4
    history = model.fit(data, epochs=6, verbose=0, shuffle=False).history["loss"]
    assert history[-1] < 0.8 * history[0], history


def test_detect_on_an_rcnn_returns_the_contract():
    pytest.importorskip("cv2")
    model = rcnn.build_rcnn(4, crop_size=32, fc_units=16, scratch_filters=(8, 8, 8, 8),
                            max_proposals=40)
    images = make_shapes_detection(2, split="validation")[0].astype(np.float32)
    timings = {}
    found = rcnn.rcnn_detect(model, images, score_threshold=0.0, max_detections=10,
                             timings=timings)
    assert timings["images"] == 2 and timings["proposal_seconds"] > 0
    via_detect = detect(model, images, score_threshold=0.0, max_detections=10)
    for result in (found, via_detect):
        assert result["boxes"].shape == (2, 10, 4) and result["boxes"].dtype == tf.float32
        assert result["scores"].shape == (2, 10) and result["scores"].dtype == tf.float32
        assert result["classes"].shape == (2, 10) and result["classes"].dtype == tf.int32
        assert result["num_detections"].shape == (2,)
        assert result["num_detections"].dtype == tf.int32
        counts = result["num_detections"].numpy()
        assert np.all(counts >= 1)
        for index, count in enumerate(counts):
            assert np.all(result["classes"].numpy()[index, count:] == -1)
            assert np.all(result["classes"].numpy()[index, :count] >= 0)
            kept = result["boxes"].numpy()[index, :count]
            assert np.all(kept >= 0) and np.all(kept <= 128)
    with pytest.raises(ValueError, match="images"):
        rcnn.rcnn_detect(model, images[0])


def test_proposal_recall_counts_covered_boxes():
    proposals = [np.array([[0, 0, 10, 10]], np.float32), np.zeros((0, 4), np.float32)]
    gt_boxes = [np.array([[0, 0, 10, 10], [50, 50, 60, 60], [-1, -1, -1, -1]], np.float32),
                np.array([[0, 0, 5, 5]], np.float32)]
    gt_labels = [np.array([0, 1, -1]), np.array([2])]
    recall, found, total = rcnn.proposal_recall(proposals, gt_boxes, gt_labels)
    assert (found, total) == (1, 3) and recall == pytest.approx(1 / 3)
