"""Tests for kerasvision.metrics.detection against pycocotools' COCOeval, and the plots."""

import contextlib
import io

import numpy as np
import pytest

from kerasvision import visualize
from kerasvision.metrics import (
    coco_evaluate,
    interpolated_average_precision,
    precision_recall_curve,
    voc07_average_precision,
)

TOLERANCE = 1e-4
# The largest |ours - pycocotools| seen by any test, printed in the summary (-s).
_WORST = {"difference": 0.0}


def _boxes(rng, n, size=64.0, min_side=6.0, max_side=30.0):
    sides = rng.uniform(min_side, max_side, (n, 2))
    corners = rng.uniform(0, size - max_side, (n, 2))
    return np.concatenate([corners, corners + sides], axis=1).astype(np.float32)


def _random_case(seed, num_images=20, num_classes=3):
    rng = np.random.default_rng(seed)
    ground_truth, detections = [], []
    for _ in range(num_images):
        n, m = rng.integers(0, 6), rng.integers(0, 25)
        # Large boxes in a small image, so that random pairs often overlap.
        ground_truth.append({"boxes": _boxes(rng, n, size=48, min_side=12),
                             "classes": rng.integers(0, num_classes, n)})
        detections.append({"boxes": _boxes(rng, m, size=48, min_side=12),
                           "scores": rng.uniform(0, 1, m).astype(np.float32),
                           "classes": rng.integers(0, num_classes, m)})
    return ground_truth, detections


def _real_like_case(seed, num_images=20, num_classes=3):
    """Ground truth jittered, with class confusions, misses and false positives."""
    rng = np.random.default_rng(seed)
    ground_truth, detections = [], []
    for _ in range(num_images):
        n = rng.integers(1, 8)
        gt_boxes = _boxes(rng, n, size=128, max_side=60)
        gt_classes = rng.integers(0, num_classes, n)
        found = rng.uniform(size=n) > 0.2  # 20% misses
        jitter = rng.normal(0, 3.0, (n, 4)).astype(np.float32)
        dt_boxes = gt_boxes[found] + jitter[found]
        dt_boxes[:, 2:] = np.maximum(dt_boxes[:, 2:], dt_boxes[:, :2] + 1)
        dt_classes = np.where(rng.uniform(size=found.sum()) < 0.1,
                              rng.integers(0, num_classes, found.sum()), gt_classes[found])
        dt_scores = rng.uniform(0.4, 1.0, found.sum())
        # Duplicates of some found boxes (second detections are false positives).
        dup = rng.uniform(size=found.sum()) < 0.3
        dup_boxes = dt_boxes[dup] + rng.normal(0, 4.0, (dup.sum(), 4))
        dup_boxes[:, 2:] = np.maximum(dup_boxes[:, 2:], dup_boxes[:, :2] + 1)
        k = rng.integers(0, 5)  # background false positives
        boxes = np.concatenate([dt_boxes, dup_boxes, _boxes(rng, k, size=128, max_side=60)])
        classes = np.concatenate([dt_classes, dt_classes[dup], rng.integers(0, num_classes, k)])
        scores = np.concatenate([dt_scores, rng.uniform(0.1, 0.8, dup.sum()),
                                 rng.uniform(0.0, 0.6, k)])
        ground_truth.append({"boxes": gt_boxes, "classes": gt_classes})
        detections.append({"boxes": boxes.astype(np.float32), "scores": scores.astype(np.float32),
                           "classes": classes})
    return ground_truth, detections


def _pycocotools(ground_truth, detections, num_classes, max_detections=100):
    """COCOeval ("bbox") on the same data: (precision [T, R, K], recall [T, K], stats).

    COCO boxes are xywh; `area` (w * h) and `iscrowd` = 0 are set for the
    ground truth as COCO annotations have them. Ids start at 1 since
    pycocotools reads a matched ground-truth id of 0 as "unmatched".
    """
    pytest.importorskip("pycocotools")
    from pycocotools.coco import COCO
    from pycocotools.cocoeval import COCOeval

    def xywh(box):
        x1, y1, x2, y2 = (float(v) for v in box)
        return [x1, y1, x2 - x1, y2 - y1]

    annotations, results = [], []
    for image_id, (gt, dt) in enumerate(zip(ground_truth, detections), start=1):
        for box, cls in zip(gt["boxes"], gt["classes"]):
            bbox = xywh(box)
            annotations.append({"id": len(annotations) + 1, "image_id": image_id,
                                "category_id": int(cls) + 1, "bbox": bbox,
                                "area": bbox[2] * bbox[3], "iscrowd": 0})
        for box, score, cls in zip(dt["boxes"], dt["scores"], dt["classes"]):
            results.append({"image_id": image_id, "category_id": int(cls) + 1,
                            "bbox": xywh(box), "score": float(score)})
    with contextlib.redirect_stdout(io.StringIO()):
        coco_gt = COCO()
        coco_gt.dataset = {
            "images": [{"id": i + 1} for i in range(len(ground_truth))],
            "annotations": annotations,
            "categories": [{"id": k + 1, "name": str(k)} for k in range(num_classes)],
        }
        coco_gt.createIndex()
        coco_dt = coco_gt.loadRes(results)
        evaluator = COCOeval(coco_gt, coco_dt, "bbox")
        # Three distinct limits, the largest last (summarize() looks them up by value).
        evaluator.params.maxDets = [1, 2 if max_detections <= 10 else 10, max_detections]
        evaluator.evaluate()
        evaluator.accumulate()
        evaluator.summarize()
    precision = evaluator.eval["precision"][:, :, :, 0, 2]  # area "all", max_detections
    recall = evaluator.eval["recall"][:, :, 0, 2]
    return precision, recall, evaluator.stats


def _assert_same_as_pycocotools(ground_truth, detections, num_classes, max_detections=100):
    ours = coco_evaluate(ground_truth, detections, max_detections=max_detections,
                         class_names=[f"c{k}" for k in range(num_classes)])
    precision, recall, stats = _pycocotools(ground_truth, detections, num_classes,
                                            max_detections)
    # pycocotools marks classes without ground truth with -1; we use NaN.
    ours_precision = np.nan_to_num(ours["precision"], nan=-1.0)
    ours_recall = np.nan_to_num(ours["recall"], nan=-1.0)
    assert ours_precision.shape == precision.shape == (10, 101, num_classes)
    # summarize() computes stats[0] at 100 detections whatever maxDets says;
    # at other limits mAP is the mean of the valid precision entries, as there.
    valid = precision[precision > -1]
    map_reference = stats[0] if max_detections == 100 else (valid.mean() if valid.size else -1)
    differences = [
        np.abs(ours_precision - precision).max(),
        np.abs(ours_recall - recall).max(),
        abs(ours["map"] - map_reference), abs(ours["map_50"] - stats[1]),
        abs(ours["map_75"] - stats[2]), abs(ours["mar"] - stats[8]),
    ]
    worst = float(max(differences))
    _WORST["difference"] = max(_WORST["difference"], worst)
    assert worst <= TOLERANCE, differences
    # Per-class AP: the mean of the class' interpolated precision.
    for k in range(num_classes):
        expected = precision[:, :, k].mean() if precision[0, 0, k] > -1 else np.nan
        np.testing.assert_allclose(ours["per_class_ap"][f"c{k}"], expected, atol=TOLERANCE)
        expected_50 = precision[0, :, k].mean() if precision[0, 0, k] > -1 else np.nan
        np.testing.assert_allclose(ours["per_class_ap_50"][f"c{k}"], expected_50, atol=TOLERANCE)
    return ours


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_random_boxes_match_pycocotools(seed):
    ground_truth, detections = _random_case(seed)
    ours = _assert_same_as_pycocotools(ground_truth, detections, 3)
    assert 0 < ours["map_50"] < 1


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_real_like_predictions_match_pycocotools(seed):
    ground_truth, detections = _real_like_case(seed)
    ours = _assert_same_as_pycocotools(ground_truth, detections, 3)
    assert ours["map_50"] > 0.5 and ours["map"] < ours["map_50"]


def test_max_detections_per_image_and_class_matches_pycocotools():
    ground_truth, detections = _real_like_case(3)
    _assert_same_as_pycocotools(ground_truth, detections, 3, max_detections=3)


def test_edge_cases_match_pycocotools():
    rng = np.random.default_rng(7)
    ground_truth, detections = _real_like_case(4, num_images=6, num_classes=4)
    # Class 3: ground truth but no detections at all; class 2: no ground truth.
    for gt, dt in zip(ground_truth, detections):
        gt["classes"] = np.where(gt["classes"] == 2, 3, gt["classes"])
        keep = dt["classes"] != 3
        dt.update({key: value[keep] for key, value in dt.items()})
    # An image with detections but no ground truth, and one with neither.
    ground_truth.append({"boxes": np.zeros((0, 4), np.float32), "classes": np.zeros(0, int)})
    detections.append({"boxes": _boxes(rng, 3), "scores": np.array([0.9, 0.5, 0.2]),
                       "classes": np.array([0, 1, 2])})
    ground_truth.append({"boxes": np.zeros((0, 4), np.float32), "classes": np.zeros(0, int)})
    detections.append({"boxes": np.zeros((0, 4), np.float32), "scores": np.zeros(0),
                       "classes": np.zeros(0, int)})
    ours = _assert_same_as_pycocotools(ground_truth, detections, 4)
    assert np.isnan(ours["per_class_ap"]["c2"]) and ours["per_class_ap"]["c3"] == 0.0


def test_perfect_detections_score_one():
    ground_truth, _ = _real_like_case(5)
    detections = [{"boxes": gt["boxes"], "scores": np.ones(len(gt["classes"])),
                   "classes": gt["classes"]} for gt in ground_truth]
    ours = _assert_same_as_pycocotools(ground_truth, detections, 3)
    assert ours["map"] == pytest.approx(1.0) and ours["map_50"] == pytest.approx(1.0)
    assert ours["map_75"] == pytest.approx(1.0) and ours["mar"] == pytest.approx(1.0)


def test_padding_rows_and_batched_dicts_give_the_same_report():
    ground_truth, detections = _real_like_case(6, num_images=4)
    reference = coco_evaluate(ground_truth, detections)
    size = 30

    def pad(rows, keys):
        out = {}
        for key in keys:
            fill = -1 if key in ("boxes", "classes") else 0
            shape = (len(rows), size, 4) if key == "boxes" else (len(rows), size)
            out[key] = np.full(shape, fill, np.float32 if key != "classes" else np.int32)
            for i, row in enumerate(rows):
                out[key][i, :len(row[key])] = row[key]
        return out

    batched = coco_evaluate(pad(ground_truth, ("boxes", "classes")),
                            pad(detections, ("boxes", "scores", "classes")))
    for key in ("map", "map_50", "map_75", "mar"):
        assert batched[key] == pytest.approx(reference[key], abs=1e-12)
    assert set(reference["per_class_ap"]) == {0, 1, 2}


def test_precision_recall_curve_by_hand_and_against_coco_ap():
    ground_truth = [{"boxes": np.array([[0, 0, 10, 10], [20, 20, 30, 30]]),
                     "classes": np.array([0, 0])}]
    detections = [{"boxes": np.array([[0, 0, 10, 10], [50, 50, 60, 60], [21, 20, 30, 30]]),
                   "scores": np.array([0.9, 0.8, 0.7]), "classes": np.array([0, 0, 0])}]
    recall, precision, scores = precision_recall_curve(ground_truth, detections, class_id=0)
    np.testing.assert_allclose(recall, [0.5, 0.5, 1.0])
    np.testing.assert_allclose(precision, [1.0, 0.5, 2 / 3])
    np.testing.assert_allclose(scores, [0.9, 0.8, 0.7])
    # COCO AP at 0.5: precision 1 up to recall 0.5 (51 levels), 2/3 after (50 levels).
    expected = (51 * 1.0 + 50 * 2 / 3) / 101
    assert interpolated_average_precision(recall, precision) == pytest.approx(expected)
    report = coco_evaluate(ground_truth, detections)
    assert report["per_class_ap_50"][0] == pytest.approx(expected)
    # The third detection has IoU 0.9 with its box: a miss at 0.95.
    strict, _, _ = precision_recall_curve(ground_truth, detections, 0, iou_threshold=0.95)
    np.testing.assert_allclose(strict, [0.5, 0.5, 0.5])
    ground_truth2, detections2 = _real_like_case(8)
    report = coco_evaluate(ground_truth2, detections2)
    for k in range(3):
        r, p, _ = precision_recall_curve(ground_truth2, detections2, k)
        assert interpolated_average_precision(r, p) == pytest.approx(
            report["per_class_ap_50"][k], abs=1e-12)


def test_voc07_average_precision_by_hand():
    recalls = [0.2, 0.4, 0.4, 0.6]
    precisions = [1.0, 1.0, 2 / 3, 0.75]
    # Levels 0..0.4 reach precision 1, 0.5 and 0.6 reach 0.75, 0.7..1 nothing.
    assert voc07_average_precision(recalls, precisions) == pytest.approx((5 + 2 * 0.75) / 11)
    # A recall of exactly 3/10 counts at the 0.3 level.
    recalls = np.arange(1, 4) / 10
    assert voc07_average_precision(recalls, [1.0, 2 / 3, 0.5]) == pytest.approx(
        (1 + 1 + 2 / 3 + 0.5) / 11)
    assert voc07_average_precision([], []) == 0.0
    assert voc07_average_precision([1.0], [1.0]) == pytest.approx(1.0)


@pytest.mark.parametrize("call, message", [
    (lambda: coco_evaluate([{"boxes": [[5, 0, 1, 1]], "classes": [0]}],
                           [{"boxes": np.zeros((0, 4)), "scores": [], "classes": []}]),
     "x2 >= x1"),
    (lambda: coco_evaluate([{"boxes": [[0, 0, 1, 1]], "classes": [0]}], []),
     "same images"),
    (lambda: coco_evaluate([{"boxes": [[0, 0, 1, 1]]}], [{}]), "keys"),
    (lambda: coco_evaluate([{"boxes": [[0, 0, 1, 1]], "classes": [4]}],
                           [{"boxes": np.zeros((0, 4)), "scores": [], "classes": []}],
                           class_names=["a", "b"]), "len(class_names)"),
    (lambda: coco_evaluate([], [], iou_thresholds=[0.5, 1.5]), "`iou_thresholds`"),
    (lambda: coco_evaluate([], [], max_detections=0), "`max_detections` must be >= 1"),
    (lambda: coco_evaluate([{"boxes": [[0, 0, 1, 1]], "classes": [0]}],
                           [{"boxes": [[0, 0, 1, 1]], "scores": [0.5, 0.2], "classes": [0]}]),
     "one score per box"),
    (lambda: voc07_average_precision([0.1, 0.2], [1.0]), "same length"),
    (lambda: precision_recall_curve([], [], class_id=-1), "`class_id` must be >= 0"),
])
def test_bad_inputs_raise_clear_errors(call, message):
    with pytest.raises(ValueError) as error:
        call()
    assert message in str(error.value)


def test_report_worst_difference():
    """Runs last in this file: prints the largest difference to pycocotools seen."""
    print(f"\nmax |ours - pycocotools| = {_WORST['difference']:.3g}")


# ---------------------------------------------------------------- plots

def _png_size(path):
    with open(path, "rb") as f:
        header = f.read(24)
    assert header[:8] == b"\x89PNG\r\n\x1a\n"
    return int.from_bytes(header[16:20], "big"), int.from_bytes(header[20:24], "big")


@pytest.mark.parametrize("count, ncols, expected", [(5, 2, (400, 640)), (3, 4, (600, 240))])
def test_plot_detections_writes_a_png_of_the_expected_size(tmp_path, count, ncols, expected):
    ground_truth, detections = _real_like_case(9, num_images=count)
    images = np.random.default_rng(0).uniform(0, 255, (count, 128, 128, 3))
    detections[0]["classes"][0] = -1  # a padding row is skipped
    path = visualize.plot_detections(images, detections, ["a", "b", "c"], tmp_path / "det.png",
                                     ground_truth=ground_truth, ncols=ncols)
    assert _png_size(path) == expected


def test_plot_precision_recall_writes_a_png_of_the_expected_size(tmp_path):
    ground_truth, detections = _real_like_case(10)
    report = coco_evaluate(ground_truth, detections, class_names=["a", "b", "c"])
    curves = {}
    for k, name in enumerate(["a", "b", "c"]):
        recall, precision, _ = precision_recall_curve(ground_truth, detections, k)
        curves[name] = {"recall": recall, "precision": precision,
                        "ap": report["per_class_ap_50"][name]}
    path = visualize.plot_precision_recall(curves, tmp_path / "pr.png")
    assert _png_size(path) == (400, 320)


def test_plots_reject_bad_arguments(tmp_path):
    with pytest.raises(ValueError, match="`curves`"):
        visualize.plot_precision_recall({}, tmp_path / "pr.png")
    with pytest.raises(ValueError, match="one entry per image"):
        visualize.plot_detections(np.zeros((2, 8, 8, 3)), [], ["a"], tmp_path / "d.png")
