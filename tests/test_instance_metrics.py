"""Mask AP against pycocotools' COCOeval("segm"), and panoptic quality against a brute-force count."""

import contextlib
import io
import itertools

import numpy as np
import pytest

from kerasvision.data import make_shapes_detection
from kerasvision.metrics import (
    coco_evaluate,
    panoptic_merge,
    panoptic_quality,
    precision_recall_curve,
)

TOLERANCE = 1e-4
_WORST = {"difference": 0.0}


# ---------------------------------------------------------------- mask AP

def _blob(rng, size, min_radius=3, max_radius=12):
    """A random filled ellipse with a few holes, so that masks are not convex."""
    cy, cx = rng.uniform(0, size, 2)
    ry, rx = rng.uniform(min_radius, max_radius, 2)
    yy, xx = np.mgrid[:size, :size]
    mask = ((yy - cy) / ry) ** 2 + ((xx - cx) / rx) ** 2 <= 1
    return mask & (rng.uniform(size=mask.shape) > 0.05)


def _random_mask_case(seed, num_images=12, num_classes=3, size=32):
    rng = np.random.default_rng(seed)
    ground_truth, detections = [], []
    for _ in range(num_images):
        n, m = rng.integers(0, 6), rng.integers(1, 15)
        gt_masks = np.stack([_blob(rng, size) for _ in range(n)]) if n else np.zeros((0, size,
                                                                                    size), bool)
        gt_classes = rng.integers(0, num_classes, n)
        dt_masks = np.stack([_blob(rng, size) for _ in range(m)])
        dt_classes = rng.integers(0, num_classes, m)
        # Some detections are shifted, holed copies of the ground truth (mostly of the same
        # class), so that IoUs spread over (0, 1].
        copies = rng.integers(0, min(n, m) + 1) if n else 0
        for j, source in enumerate(rng.choice(n, copies, replace=False) if copies else []):
            shifted = np.roll(gt_masks[source], tuple(rng.integers(-1, 2, 2)), axis=(0, 1))
            dt_masks[j] = shifted & (rng.uniform(size=(size, size)) > 0.05)
            dt_classes[j] = gt_classes[source] if rng.uniform() < 0.8 else dt_classes[j]
        ground_truth.append({"masks": gt_masks, "classes": gt_classes})
        detections.append({"masks": dt_masks, "scores": rng.uniform(0, 1, m).astype(np.float32),
                           "classes": dt_classes})
    return ground_truth, detections


def _shapes_case(seed, num_images=10, size=64):
    """Scenes' visible-object masks; detections shifted, swollen, confused, duplicated, spurious.

    Some detections are float probabilities (thresholded at 0.5 by both sides).
    """
    rng = np.random.default_rng(seed)
    _, _, labels, masks = make_shapes_detection(num_images, image_size=size, seed=seed,
                                                max_objects=4)
    ground_truth, detections = [], []
    for i in range(num_images):
        keep = labels[i] >= 0
        gt_masks, gt_classes = masks[i][keep], labels[i][keep]
        # Scores as a detector gives them: found objects high, duplicates and spurious lower.
        dt_masks, dt_classes, dt_scores = [], [], []
        for mask, cls in zip(gt_masks, gt_classes):
            if rng.uniform() < 0.15:  # a miss
                continue
            shifted = np.roll(mask, tuple(rng.integers(-1, 2, 2)), axis=(0, 1))
            if rng.uniform() < 0.3:  # a swollen mask: one-pixel dilation
                shifted = shifted | np.roll(shifted, 1, axis=0) | np.roll(shifted, 1, axis=1)
            dt_masks.append(shifted)
            dt_classes.append(cls if rng.uniform() > 0.1 else rng.integers(0, 4))
            dt_scores.append(rng.uniform(0.4, 1.0))
            if rng.uniform() < 0.3:  # a duplicate
                dt_masks.append(np.roll(shifted, 2, axis=1))
                dt_classes.append(cls)
                dt_scores.append(rng.uniform(0.1, 0.8))
        for _ in range(rng.integers(1, 3)):  # spurious detections
            dt_masks.append(_blob(rng, size, 4, 16))
            dt_classes.append(rng.integers(0, 4))
            dt_scores.append(rng.uniform(0.0, 0.6))
        dt_masks = np.stack(dt_masks).astype(np.float32)
        # Probabilities: in-mask pixels in [0.5, 1], out-of-mask in [0, 0.5).
        soft = rng.uniform(size=len(dt_masks)) < 0.5
        noise = rng.uniform(0, 0.499, dt_masks.shape)
        dt_masks[soft] = np.where(dt_masks[soft] > 0, 1 - noise[soft], noise[soft])
        ground_truth.append({"masks": gt_masks, "classes": gt_classes})
        detections.append({"masks": dt_masks, "scores": np.array(dt_scores),
                           "classes": np.array(dt_classes)})
    return ground_truth, detections


def _pycocotools_segm(ground_truth, detections, num_classes):
    """COCOeval("segm") on the same masks, RLE-encoded; (precision, recall, stats).

    Ground-truth `area` is the mask's pixel count, as COCO annotations have
    it; pycocotools computes the detections' areas itself. Detection masks
    are binarised at 0.5 the way `coco_evaluate` documents.
    """
    pytest.importorskip("pycocotools")
    from pycocotools import mask as mask_utils
    from pycocotools.coco import COCO
    from pycocotools.cocoeval import COCOeval

    def rle(mask):
        encoded = mask_utils.encode(np.asfortranarray(mask.astype(np.uint8)))
        encoded["counts"] = encoded["counts"].decode("ascii")
        return encoded

    images, annotations, results = [], [], []
    for image_id, (gt, dt) in enumerate(zip(ground_truth, detections), start=1):
        height, width = (gt["masks"] if len(gt["masks"]) else dt["masks"]).shape[1:]
        images.append({"id": image_id, "height": int(height), "width": int(width)})
        for mask, cls in zip(gt["masks"], gt["classes"]):
            annotations.append({"id": len(annotations) + 1, "image_id": image_id,
                                "category_id": int(cls) + 1, "segmentation": rle(mask),
                                "area": float(mask.sum()), "iscrowd": 0,
                                "bbox": list(mask_utils.toBbox(rle(mask)))})
        for mask, score, cls in zip(dt["masks"], dt["scores"], dt["classes"]):
            results.append({"image_id": image_id, "category_id": int(cls) + 1,
                            "segmentation": rle(np.asarray(mask) >= 0.5),
                            "score": float(score)})
    with contextlib.redirect_stdout(io.StringIO()):
        coco_gt = COCO()
        coco_gt.dataset = {"images": images, "annotations": annotations,
                           "categories": [{"id": k + 1, "name": str(k)}
                                          for k in range(num_classes)]}
        coco_gt.createIndex()
        coco_dt = coco_gt.loadRes(results)
        evaluator = COCOeval(coco_gt, coco_dt, "segm")
        evaluator.evaluate()
        evaluator.accumulate()
        evaluator.summarize()
    precision = evaluator.eval["precision"][:, :, :, 0, 2]  # area "all", 100 detections
    recall = evaluator.eval["recall"][:, :, 0, 2]
    return precision, recall, evaluator.stats


def _assert_same_as_pycocotools(ground_truth, detections, num_classes):
    ours = coco_evaluate(ground_truth, detections, iou_type="segm",
                         class_names=[f"c{k}" for k in range(num_classes)])
    precision, recall, stats = _pycocotools_segm(ground_truth, detections, num_classes)
    ours_precision = np.nan_to_num(ours["precision"], nan=-1.0)
    ours_recall = np.nan_to_num(ours["recall"], nan=-1.0)
    assert ours_precision.shape == precision.shape == (10, 101, num_classes)
    differences = [
        np.abs(ours_precision - precision).max(), np.abs(ours_recall - recall).max(),
        abs(ours["map"] - stats[0]), abs(ours["map_50"] - stats[1]),
        abs(ours["map_75"] - stats[2]), abs(ours["mar"] - stats[8]),
    ]
    worst = float(max(differences))
    _WORST["difference"] = max(_WORST["difference"], worst)
    assert worst <= TOLERANCE, differences
    for k in range(num_classes):
        expected_50 = precision[0, :, k].mean() if precision[0, 0, k] > -1 else np.nan
        np.testing.assert_allclose(ours["per_class_ap_50"][f"c{k}"], expected_50, atol=TOLERANCE)
    return ours


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_random_masks_match_pycocotools(seed):
    ground_truth, detections = _random_mask_case(seed)
    ours = _assert_same_as_pycocotools(ground_truth, detections, 3)
    assert 0 < ours["map_50"] < 1


@pytest.mark.parametrize("seed", [0, 1])
def test_shapes_scene_masks_match_pycocotools(seed):
    ground_truth, detections = _shapes_case(seed)
    ours = _assert_same_as_pycocotools(ground_truth, detections, 4)
    assert ours["map_50"] > 0.5 and ours["map"] < ours["map_50"]


def test_mask_iou_by_hand_and_perfect_masks():
    gt = np.zeros((1, 8, 8), bool)
    gt[0, :4, :4] = True  # 16 pixels
    dt = np.zeros((1, 8, 8), np.float32)
    dt[0, :4, 2:6] = 0.9  # 16 pixels, 8 shared: IoU 8 / 24 = 1/3
    dt[0, 6, 6] = 0.49  # below the 0.5 threshold: not in the mask
    ground_truth = [{"masks": gt, "classes": [0]}]
    detections = [{"masks": dt, "scores": [0.8], "classes": [0]}]
    recall, _, _ = precision_recall_curve(ground_truth, detections, 0, iou_threshold=1 / 3,
                                          iou_type="segm")
    assert recall[-1] == 1.0
    recall, _, _ = precision_recall_curve(ground_truth, detections, 0, iou_threshold=0.34,
                                          iou_type="segm")
    assert recall[-1] == 0.0
    # Boxes, when present, are not read (all-zero boxes here).
    ground_truth, _ = _shapes_case(3, num_images=4)
    perfect = [{"masks": gt["masks"], "scores": np.ones(len(gt["classes"])),
                "classes": gt["classes"], "boxes": np.zeros((len(gt["classes"]), 4))}
               for gt in ground_truth]
    report = coco_evaluate(ground_truth, perfect, iou_type="segm")
    assert report["map"] == pytest.approx(1.0) and report["mar"] == pytest.approx(1.0)


def test_batched_padded_masks_give_the_same_report():
    ground_truth, detections = _shapes_case(4, num_images=4)
    reference = coco_evaluate(ground_truth, detections, iou_type="segm")
    rows, size = 12, 64

    def pad(images, keys):
        out = {"masks": np.zeros((len(images), rows, size, size), np.float32),
               "classes": np.full((len(images), rows), -1, np.int32)}
        if "scores" in keys:
            out["scores"] = np.zeros((len(images), rows), np.float32)
        for i, image in enumerate(images):
            for key in keys:
                out[key][i, :len(image["classes"])] = image[key]
        return out

    batched = coco_evaluate(pad(ground_truth, ("masks", "classes")),
                            pad(detections, ("masks", "scores", "classes")), iou_type="segm")
    for key in ("map", "map_50", "map_75", "mar"):
        assert batched[key] == pytest.approx(reference[key], abs=1e-6)


def _one(gt_masks, dt_masks, iou_type="segm"):
    gt = [{"masks": gt_masks, "classes": [0] * len(gt_masks)}]
    dt = [{"masks": dt_masks, "scores": [0.5] * len(dt_masks), "classes": [0] * len(dt_masks)}]
    return coco_evaluate(gt, dt, iou_type=iou_type)


@pytest.mark.parametrize("call, message", [
    (lambda: _one(np.ones((1, 8, 8), bool), np.ones((1, 16, 16), bool)),
     "must cover the image of `ground_truth[0]['masks']` ([H, W] = [8, 8])"),
    (lambda: _one(np.full((1, 8, 8), 2), np.ones((1, 8, 8), bool)),
     "`ground_truth[0]['masks']` must be binary (bool, or only 0 and 1); received values [2]"),
    (lambda: _one(np.full((1, 8, 8), 0.7), np.ones((1, 8, 8), bool)),
     "`ground_truth[0]['masks']` must be binary"),
    (lambda: _one(np.ones((1, 8, 8), bool), np.full((1, 8, 8), 1.5)),
     "`detections[0]['masks']` must be binary or per-pixel probabilities in [0, 1]"),
    (lambda: _one(np.ones((2, 8, 8), bool)[:, None], np.ones((1, 8, 8), bool)),
     "`ground_truth[0]['masks']` must have shape [2, H, W]"),
    (lambda: coco_evaluate([{"boxes": [[0, 0, 1, 1]], "classes": [0]}],
                           [{"boxes": [[0, 0, 1, 1]], "scores": [1.0], "classes": [0]}],
                           iou_type="segm"), "must be a dict with keys ['masks', 'classes']"),
    (lambda: _one(np.ones((1, 8, 8), bool), np.ones((1, 8, 8), bool), iou_type="mask"),
     ("`iou_type` must be one of ['bbox', 'segm'] (boxes or instance masks); received "
      "iou_type='mask'")),
])
def test_bad_mask_inputs_raise_clear_errors(call, message):
    with pytest.raises(ValueError) as error:
        call()
    assert message in str(error.value)


def test_report_worst_difference():
    """Runs after the comparisons: prints the largest difference to pycocotools seen."""
    print(f"\nmax |ours - pycocotools (segm)| = {_WORST['difference']:.3g}")


# ---------------------------------------------------------------- panoptic quality

VOID = 255


def _reference_pq(true_maps, pred_maps, thing_classes, void=VOID):
    """Panoptic quality by brute force: pixel sets in dicts, every pair of segments tried.

    Written independently of the package: segments are dicts (class,
    instance) -> set of pixel coordinates; IoU of a same-class pair is
    |g & p| / |g | (p - void)|; pairs above 0.5 are TPs.
    """
    stats = {}

    def segments(panoptic):
        found = {}
        height, width, _ = panoptic.shape
        for y, x in itertools.product(range(height), range(width)):
            cls, inst = int(panoptic[y, x, 0]), int(panoptic[y, x, 1])
            if cls == void:
                continue
            found.setdefault((cls, inst if cls in thing_classes else 0), set()).add((y, x))
        return found

    for true_map, pred_map in zip(true_maps, pred_maps):
        gts, preds = segments(true_map), segments(pred_map)
        void_pixels = {(y, x) for y, x in zip(*np.nonzero(true_map[..., 0] == void))}
        matched_g, matched_p = set(), set()
        for (g_key, g), (p_key, p) in itertools.product(gts.items(), preds.items()):
            if g_key[0] != p_key[0]:
                continue
            iou = len(g & p) / len(g | (p - void_pixels))
            if iou > 0.5:
                entry = stats.setdefault(g_key[0], {"tp": 0, "fp": 0, "fn": 0, "iou": 0.0})
                entry["tp"] += 1
                entry["iou"] += iou
                matched_g.add(g_key)
                matched_p.add(p_key)
        for g_key in gts:
            if g_key not in matched_g:
                stats.setdefault(g_key[0], {"tp": 0, "fp": 0, "fn": 0, "iou": 0.0})["fn"] += 1
        for p_key, p in preds.items():
            entry = stats.setdefault(p_key[0], {"tp": 0, "fp": 0, "fn": 0, "iou": 0.0})
            if p_key not in matched_p and len(p & void_pixels) <= 0.5 * len(p):
                entry["fp"] += 1
    per_class = {}
    for cls, s in stats.items():
        if s["tp"] + s["fp"] + s["fn"] == 0:
            continue
        sq = s["iou"] / s["tp"] if s["tp"] else 0.0
        rq = s["tp"] / (s["tp"] + s["fp"] / 2 + s["fn"] / 2)
        per_class[cls] = {"pq": sq * rq, "sq": sq, "rq": rq, **s}
    return per_class


def _assert_same_as_reference(true_maps, pred_maps, thing_classes):
    ours = panoptic_quality(true_maps, pred_maps, thing_classes=thing_classes)
    expected = _reference_pq(true_maps, pred_maps, set(thing_classes))
    for cls, entry in ours["per_class"].items():
        if cls not in expected:
            assert np.isnan(entry["pq"]) and entry["tp"] + entry["fp"] + entry["fn"] == 0
            continue
        for key in ("tp", "fp", "fn"):
            assert entry[key] == expected[cls][key], (cls, key)
        for key in ("pq", "sq", "rq"):
            assert entry[key] == pytest.approx(expected[cls][key], abs=1e-12), (cls, key)
    for group, chosen in (("things", [c for c in expected if c in thing_classes]),
                          ("stuff", [c for c in expected if c not in thing_classes])):
        for key in ("pq", "sq", "rq"):
            values = [expected[c][key] for c in chosen]
            if values:
                assert ours[group][key] == pytest.approx(np.mean(values), abs=1e-12)
            else:
                assert np.isnan(ours[group][key])
    assert ours["pq"] == pytest.approx(np.mean([e["pq"] for e in expected.values()]), abs=1e-12)
    return ours


def _scene(height=12, width=12):
    """Background (stuff 0) with two things of class 1 (ids 1, 2) and a sky band (stuff 3)."""
    panoptic = np.zeros((height, width, 2), np.int32)
    panoptic[:2, :, 0] = 3
    panoptic[4:8, 1:5] = (1, 1)  # 16 pixels
    panoptic[4:10, 7:10] = (1, 2)  # 18 pixels
    return panoptic


def test_perfect_prediction_has_pq_one():
    truth = _scene()
    pred = truth.copy()
    pred[..., 1] = np.where(pred[..., 0] == 1, pred[..., 1] + 40, 7)  # ids need not agree
    report = _assert_same_as_reference([truth], [pred], thing_classes=[1])
    assert report["pq"] == report["sq"] == report["rq"] == 1.0
    assert report["per_class"][1]["tp"] == 2 and report["things"]["num_classes"] == 1
    assert report["stuff"]["num_classes"] == 2 and np.isnan(report["per_class"][2]["pq"])


def test_partial_overlap_sets_sq():
    truth = _scene()
    pred = truth.copy()
    # Instance 1 (16 px) shifted right by one column: 12 shared, union 20 -> IoU 0.6.
    pred[pred[..., 1] == 1] = (0, 0)
    pred[4:8, 2:6] = (1, 1)
    report = _assert_same_as_reference([truth], [pred], thing_classes=[1])
    assert report["per_class"][1]["sq"] == pytest.approx((0.6 + 1.0) / 2)
    assert report["per_class"][1]["rq"] == 1.0


def test_unmatched_segments_set_rq():
    truth = _scene()
    pred = truth.copy()
    pred[pred[..., 1] == 2] = (0, 0)  # instance 2 missed: a FN
    pred[9:11, 1:4] = (1, 5)  # a spurious thing: a FP
    pred[:2, :, 0] = 2  # the sky called class 2: a FN of 3 and a FP of 2
    report = _assert_same_as_reference([truth], [pred], thing_classes=[1])
    things = report["per_class"][1]
    assert (things["tp"], things["fp"], things["fn"]) == (1, 1, 1)
    assert things["rq"] == pytest.approx(1 / (1 + 0.5 + 0.5))
    assert report["per_class"][3]["pq"] == 0.0 and report["per_class"][2]["fp"] == 1


def test_iou_of_exactly_one_half_is_not_a_match():
    truth = np.zeros((8, 8, 2), np.int32)
    truth[2:4, 0:6] = (1, 1)  # 12 pixels
    pred = np.zeros((8, 8, 2), np.int32)
    pred[2:4, 2:8] = (1, 1)  # 12 pixels, 8 shared: IoU 8 / 16 = 0.5
    report = _assert_same_as_reference([truth], [pred], thing_classes=[1])
    assert (report["per_class"][1]["tp"], report["per_class"][1]["fp"],
            report["per_class"][1]["fn"]) == (0, 1, 1)
    pred[2:4, 1] = (1, 1)  # one more column: IoU 10 / 16
    report = _assert_same_as_reference([truth], [pred], thing_classes=[1])
    assert report["per_class"][1]["sq"] == pytest.approx(10 / 16)


def test_void_pixels_are_ignored():
    truth = np.zeros((8, 8, 2), np.int32)
    truth[:, 6:, 0] = VOID
    truth[1:5, 1:5] = (1, 1)  # 16 pixels
    pred = np.zeros((8, 8, 2), np.int32)
    # The thing spills 4 pixels onto void: they leave the union, IoU stays 1.
    pred[1:5, 1:5] = (1, 1)
    pred[1:3, 6:8] = (1, 1)
    # A spurious thing mostly on void (3 of 4 pixels): not a false positive.
    pred[6, 5:8] = (1, 2)
    # Another half on void (1 of 2 pixels: not more than half): a false positive.
    pred[7, 5:7] = (1, 3)
    report = _assert_same_as_reference([truth], [pred], thing_classes=[1])
    things = report["per_class"][1]
    assert (things["tp"], things["fp"], things["fn"]) == (1, 1, 0)
    assert things["sq"] == 1.0


def test_random_maps_match_brute_force():
    rng = np.random.default_rng(0)
    truths, preds = [], []
    for _ in range(4):
        # Coarse random blocks, upsampled, so segments are large and overlap partly.
        truth = np.stack([rng.integers(0, 4, (4, 4)), rng.integers(0, 3, (4, 4))], -1)
        truth = truth.repeat(4, 0).repeat(4, 1)
        pred = truth.copy()
        flip = rng.uniform(size=truth.shape[:2]) < 0.2
        pred[flip] = np.stack([rng.integers(0, 4, flip.sum()), rng.integers(0, 3, flip.sum())],
                              -1)
        truth[rng.uniform(size=truth.shape[:2]) < 0.05, 0] = VOID
        truths.append(truth)
        preds.append(pred)
    report = _assert_same_as_reference(truths, np.stack(preds), thing_classes=[2, 3])
    assert 0 < report["pq"] < 1


def test_panoptic_merge_by_hand():
    # Classes: 0 background (stuff), 1 road (stuff), 2 and 3 things.
    semantic = np.zeros((8, 8), np.int64)
    semantic[6:, :] = 1
    semantic[1:3, 5:7] = 2  # thing pixels no instance claims: void
    semantic[7, 7] = 3
    masks = np.zeros((4, 8, 8), np.float32)
    masks[0, 1:5, 1:5] = 0.9  # score 0.6, pasted second: loses the overlap with mask 1
    masks[1, 3:6, 3:6] = 1.0  # score 0.9, pasted first
    masks[2, 3:6, 2:6] = 0.8  # score 0.7, 12 pixels, 9 under mask 1: 75% taken -> dropped
    masks[3, 0, 0] = 1.0  # score 0.2: under the threshold
    classes, scores = np.array([2, 3, 2, 3]), np.array([0.6, 0.9, 0.7, 0.2])
    merged = panoptic_merge(semantic, masks, classes, scores, thing_classes=[2, 3],
                            min_area=2, ignore_label=VOID)
    expected = np.zeros((8, 8, 2), np.int32)
    expected[6:, :] = (1, 0)
    expected[1:3, 5:7] = (VOID, 0)
    expected[7, 7] = (VOID, 0)
    expected[1:5, 1:5] = (2, 2)
    expected[3:6, 3:6] = (3, 1)
    np.testing.assert_array_equal(merged, expected)
    # With logits, and a min_area of 13 that drops mask 1 (9 pixels) and mask 2 (12): mask 0
    # then keeps all 16 of its pixels, and mask 1's others fall back to the semantic map.
    logits = np.eye(4)[semantic]
    merged = panoptic_merge(logits, masks, classes, scores, thing_classes=[2, 3], min_area=13,
                            ignore_label=VOID)
    expected[1:5, 1:5] = (2, 1)
    expected[5, 3:6] = (0, 0)
    expected[3:5, 5] = (0, 0)
    np.testing.assert_array_equal(merged, expected)
    # The merge feeds PQ: the by-hand map against itself is perfect.
    assert panoptic_quality([expected], [expected], thing_classes=[2, 3])["pq"] == 1.0


@pytest.mark.parametrize("call, message", [
    (lambda: panoptic_quality([np.zeros((4, 4, 2), int)], [np.zeros((4, 5, 2), int)], []),
     ("`pred_panoptic[0]` must have the shape of `true_panoptic[0]` (4, 4, 2); received shape "
      "(4, 5, 2)")),
    (lambda: panoptic_quality(np.zeros((4, 4, 2)), np.zeros((4, 4, 2)), []),
     "`true_panoptic[0]` must hold integer class and instance ids; received dtype float64"),
    (lambda: panoptic_quality([np.zeros((4, 4), int)], [np.zeros((4, 4), int)], []),
     "must be a panoptic map [H, W, 2]"),
    (lambda: panoptic_quality([np.zeros((4, 4, 2), int)], [], []), "same images"),
    (lambda: panoptic_quality([np.zeros((4, 4, 2), int)], [np.zeros((4, 4, 2), int)], [-1]),
     "`thing_classes` must hold class ids >= 0"),
    (lambda: panoptic_merge(np.zeros((4, 4), int), np.zeros((1, 5, 5)), [1], [0.9], [1]),
     "`instance_masks` must have shape [K, 4, 4]"),
    (lambda: panoptic_merge(np.zeros((4, 4), int), np.ones((1, 4, 4)), [0], [0.9], [1]),
     "`instance_classes` must hold thing classes [1]; received class 0"),
    (lambda: panoptic_merge(np.zeros((4, 4), int), np.full((1, 4, 4), 3), [1], [0.9], [1]),
     "`instance_masks` must be binary or per-pixel probabilities in [0, 1]"),
    (lambda: panoptic_merge(np.zeros((4, 4), float), np.ones((1, 4, 4)), [1], [0.9], [1]),
     "`semantic` must be float logits [H, W, C] or integer class ids [H, W]"),
])
def test_bad_panoptic_inputs_raise_clear_errors(call, message):
    with pytest.raises(ValueError) as error:
        call()
    assert message in str(error.value)
