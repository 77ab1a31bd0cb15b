"""Object detection metrics: COCO box and mask mAP, PASCAL VOC 2007 AP, precision-recall curves.

Inputs follow the package contract (`kerasvision.boxes`): float xyxy boxes
in pixels, integer class ids `0..C-1`, padding rows with class -1 (dropped
here). Ground truth per image is `{"boxes": [N, 4], "classes": [N]}` and
detections per image `{"boxes": [M, 4], "scores": [M], "classes": [M]}`;
each argument is a sequence of such dicts (one per image, in the same order)
or one dict of batched, padded arrays (`[B, N, 4]`, `[B, N]`...) such as
`kerasvision.boxes.batched_non_max_suppression` returns.

Instance segmentation is evaluated the same way with `iou_type="segm"`:
entries then carry `"masks"` (full-image binary masks `[N, H, W]`, one per
object) in place of `"boxes"`, and only the overlap measure changes (mask IoU
instead of box IoU); matching and accumulation are shared.

Everything is computed in float64 numpy, following the COCO evaluation
protocol (Lin et al. 2014, "Microsoft COCO: Common Objects in Context", and
the evaluation description at https://cocodataset.org/#detection-eval)
for boxes or masks without crowd regions and over all object areas.
"""

import numpy as np

from kerasvision.validation import check_float, check_int

RECALL_POINTS = np.linspace(0.0, 1.0, 101)
"""The 101 recall levels at which COCO samples interpolated precision."""

DEFAULT_IOU_THRESHOLDS = np.linspace(0.5, 0.95, 10)
"""COCO's IoU thresholds .50:.05:.95 (computed as the reference code does, so that
an IoU exactly on a threshold is judged the same way)."""
DEFAULT_IOU_THRESHOLDS.setflags(write=False)  # a shared default: nobody may change it

IOU_TYPES = ("bbox", "segm")
"""What `coco_evaluate` can compare: boxes (`"bbox"`) or instance masks (`"segm"`), as COCO names them."""

MASK_THRESHOLD = 0.5
"""Float detection masks (per-pixel probabilities) count a pixel in when >= this, as Mask R-CNN does."""

# Detections are matched at IoU >= threshold; a threshold of 1 is lowered
# a hair so that identical boxes (IoU exactly 1 up to rounding) still match.
_MAX_MATCH_IOU = 1 - 1e-10


def _to_numpy(x):
    return x.numpy() if hasattr(x, "numpy") else np.asarray(x)


def _split_images(name, data, keys):
    """A sequence of per-image dicts, from a sequence or one dict of batched arrays."""
    if isinstance(data, dict):
        missing = [key for key in keys if key not in data]
        if missing:
            raise ValueError(f"`{name}` must have keys {list(keys)}; missing {missing}.")
        arrays = {key: _to_numpy(data[key]) for key in keys}
        batch = arrays["classes"].shape[0] if arrays["classes"].ndim == 2 else None
        if batch is None:
            raise ValueError(
                f"`{name}` given as one dict must hold batched arrays ({name}['classes'] "
                f"[B, N]); received {name}['classes'] of shape {arrays['classes'].shape}. "
                "For a single image pass a list with one dict."
            )
        return [{key: arrays[key][i] for key in keys} for i in range(batch)]
    try:
        images = list(data)
    except TypeError:
        raise ValueError(
            f"`{name}` must be a list of per-image dicts with keys {list(keys)}, or one dict "
            f"of batched arrays; received {type(data).__name__}."
        ) from None
    for index, image in enumerate(images):
        if not isinstance(image, dict) or any(key not in image for key in keys):
            raise ValueError(
                f"`{name}[{index}]` must be a dict with keys {list(keys)}; received "
                f"{image if not isinstance(image, dict) else sorted(image)!r}."
            )
    return images


def _prepare_masks(where, masks, count, binary):
    """bool `[count, H, W]` masks of one image, checked (`binary`: 0/1 only, else also [0, 1])."""
    masks = _to_numpy(masks)
    if masks.size == 0 and masks.ndim < 3:
        masks = masks.reshape(0, 0, 0)
    if masks.ndim != 3 or masks.shape[0] != count:
        raise ValueError(
            f"`{where}['masks']` must have shape [{count}, H, W] (one full-image mask per "
            f"class id); received shape {masks.shape}."
        )
    if masks.dtype == bool:
        return masks
    if masks.dtype.kind not in "iuf":
        raise ValueError(
            f"`{where}['masks']` must hold bool or numeric masks; received dtype {masks.dtype}.")
    is_binary = np.all((masks == 0) | (masks == 1))
    if is_binary:
        return masks == 1
    if binary or masks.dtype.kind != "f":
        raise ValueError(
            f"`{where}['masks']` must be binary (bool, or only 0 and 1); received values "
            f"{np.unique(masks)[:6].tolist()}."
        )
    if not np.all(np.isfinite(masks)) or masks.min() < 0 or masks.max() > 1:
        raise ValueError(
            f"`{where}['masks']` must be binary or per-pixel probabilities in [0, 1]; received "
            f"values in [{masks.min()}, {masks.max()}]."
        )
    return masks >= MASK_THRESHOLD


def _prepare(name, data, with_scores, iou_type="bbox"):
    """Per image: (regions, classes int64 [n], scores float64 [n] or None).

    Regions are float64 xyxy boxes `[n, 4]` for `iou_type="bbox"`, bool masks
    `[n, H, W]` for `"segm"` (ground truth must be binary; detections may be
    probabilities, thresholded at `MASK_THRESHOLD`).
    """
    region = "boxes" if iou_type == "bbox" else "masks"
    keys = (region, "scores", "classes") if with_scores else (region, "classes")
    prepared = []
    for index, image in enumerate(_split_images(name, data, keys)):
        where = f"{name}[{index}]"
        classes = _to_numpy(image["classes"])
        numeric = classes.dtype.kind in "iuf"
        if not numeric or (classes.size and np.any(classes != np.round(classes))):
            raise ValueError(
                f"`{where}['classes']` must hold integer class ids; received {classes!r}.")
        classes = classes.astype(np.int64).reshape(-1)
        if iou_type == "segm":
            # Boxes, if present, play no part in mask evaluation (COCO's segm protocol):
            # zero stand-ins pass the box checks below, which the two types share.
            boxes = np.zeros((classes.size, 4))
            masks = _prepare_masks(where, image["masks"], classes.size, binary=not with_scores)
        else:
            boxes = _to_numpy(image["boxes"]).astype(np.float64)
        if boxes.size == 0:
            boxes = boxes.reshape(0, 4)
        if boxes.ndim != 2 or boxes.shape[1] != 4 or boxes.shape[0] != classes.size:
            raise ValueError(
                f"`{where}['boxes']` must have shape [{classes.size}, 4] (one xyxy box per "
                f"class id); received shape {boxes.shape}."
            )
        scores = None
        if with_scores:
            scores = _to_numpy(image["scores"]).astype(np.float64).reshape(-1)
            if scores.size != classes.size:
                raise ValueError(
                    f"`{where}['scores']` must have one score per box ({classes.size}); "
                    f"received {scores.size} scores."
                )
        keep = classes != -1
        if np.any(classes < -1):
            raise ValueError(
                f"`{where}['classes']` must hold ids >= 0 (or -1 for padding rows); "
                f"received {classes[classes < -1][0]}."
            )
        boxes, classes = boxes[keep], classes[keep]
        scores = scores[keep] if scores is not None else None
        finite = np.all(np.isfinite(boxes)) and (scores is None or np.all(np.isfinite(scores)))
        if not finite:
            raise ValueError(
                f"`{where}` must hold finite boxes and scores; received NaN or inf.")
        inverted = (boxes[:, 2] < boxes[:, 0]) | (boxes[:, 3] < boxes[:, 1])
        if np.any(inverted):
            raise ValueError(
                f"`{where}['boxes']` must be xyxy with x2 >= x1 and y2 >= y1; received "
                f"{boxes[inverted][0].tolist()}."
            )
        prepared.append((masks[keep] if iou_type == "segm" else boxes, classes, scores))
    return prepared


def _box_iou(dt, gt):
    """float64 IoU `[len(dt), len(gt)]` of xyxy boxes (COCO: areas w * h, no +1)."""
    width = np.minimum(dt[:, None, 2], gt[None, :, 2]) - np.maximum(dt[:, None, 0], gt[None, :, 0])
    height = np.minimum(dt[:, None, 3], gt[None, :, 3]) - np.maximum(dt[:, None, 1], gt[None, :, 1])
    intersection = np.maximum(width, 0) * np.maximum(height, 0)
    area_dt = (dt[:, 2] - dt[:, 0]) * (dt[:, 3] - dt[:, 1])
    area_gt = (gt[:, 2] - gt[:, 0]) * (gt[:, 3] - gt[:, 1])
    union = area_dt[:, None] + area_gt[None, :] - intersection
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(union > 0, intersection / np.where(union > 0, union, 1), 0.0)


def _mask_iou(dt, gt):
    """float64 IoU `[len(dt), len(gt)]` of bool masks `[n, H, W]` (COCO segm: areas are pixel counts).

    Two empty masks have IoU 0, as in the reference implementation.
    """
    dt = dt.reshape(len(dt), -1)
    gt = gt.reshape(len(gt), -1)
    # Intersections as one matrix product of 0/1 values. Every partial sum is an
    # integer pixel count, which float32 holds exactly below 2**24 pixels.
    dtype = np.float32 if dt.shape[1] < 2**24 else np.float64
    intersection = (dt.astype(dtype) @ gt.astype(dtype).T).astype(np.float64)
    union = dt.sum(axis=1, dtype=np.float64)[:, None] + gt.sum(axis=1, dtype=np.float64)[None, :]
    union -= intersection
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(union > 0, intersection / np.where(union > 0, union, 1), 0.0)


# The only step that differs between box and mask evaluation.
_REGION_IOU = {"bbox": _box_iou, "segm": _mask_iou}


def _match(ious, thresholds):
    """Greedy COCO matching of score-sorted detections to ground truth of one image and class.

    Each detection, best score first, takes the still unmatched ground-truth
    object of highest IoU, provided that IoU >= the threshold (ties go to the
    later object, as in the reference evaluation).

    Args:
        ious: float64 `[D, G]`, IoU of each score-sorted detection with each
            ground-truth box or mask.
        thresholds: float `[T]`.

    Returns:
        bool `[T, D]`: whether each detection is a true positive.
    """
    num_dt, num_gt = ious.shape
    matched_dt = np.zeros((len(thresholds), num_dt), bool)
    if num_dt == 0 or num_gt == 0:
        return matched_dt
    limits = np.minimum(thresholds, _MAX_MATCH_IOU)[:, None]
    taken = np.zeros((len(thresholds), num_gt), bool)
    for d in range(num_dt):
        candidates = np.where(taken | (ious[d][None, :] < limits), -np.inf, ious[d][None, :])
        # argmax over the reversed axis: the last of equal maxima wins.
        best = candidates.shape[1] - 1 - np.argmax(candidates[:, ::-1], axis=1)
        found = np.isfinite(candidates[np.arange(len(thresholds)), best])
        matched_dt[found, d] = True
        taken[np.flatnonzero(found), best[found]] = True
    return matched_dt


def _sorted_by_score(scores):
    # A stable sort keeps input order among equal scores, like the reference code.
    return np.argsort(-scores, kind="mergesort")


def _class_matches(ground_truth, detections, class_id, thresholds, max_detections,
                   iou_type="bbox"):
    """(scores [D], true positive flags [T, D], number of ground-truth objects) of one class.

    Detections of every image are limited to the `max_detections` best of
    this class, then concatenated over images and sorted by score. Boxes or
    masks (`iou_type`) are compared by `_REGION_IOU`; the rest is shared.
    """
    region_iou = _REGION_IOU[iou_type]
    all_scores, all_matches, num_gt = [], [], 0
    for (gt_boxes, gt_classes, _), (dt_boxes, dt_classes, dt_scores) in zip(ground_truth,
                                                                          detections):
        gt = gt_boxes[gt_classes == class_id]
        num_gt += len(gt)
        mine = dt_classes == class_id
        order = _sorted_by_score(dt_scores[mine])
        if max_detections is not None:
            order = order[:max_detections]
        dt, scores = dt_boxes[mine][order], dt_scores[mine][order]
        all_scores.append(scores)
        ious = region_iou(dt, gt) if len(dt) and len(gt) else np.zeros((len(dt), len(gt)))
        all_matches.append(_match(ious, thresholds))
    scores = np.concatenate(all_scores) if all_scores else np.zeros(0)
    matches = (np.concatenate(all_matches, axis=1) if all_matches
               else np.zeros((len(thresholds), 0), bool))
    order = _sorted_by_score(scores)
    return scores[order], matches[:, order], num_gt


def _curve(matches, num_gt):
    """Cumulative (recall, precision) along score-sorted detections, `[..., D]`."""
    true_positives = np.cumsum(matches, axis=-1, dtype=np.float64)
    ranks = np.arange(1, matches.shape[-1] + 1, dtype=np.float64)
    return true_positives / num_gt, true_positives / ranks


def interpolated_precision(recall, precision, recall_points=RECALL_POINTS):
    """COCO interpolated precision: the precision envelope sampled at recall levels.

    The envelope at each detection is the highest precision at that or any
    later (higher recall) detection; at each level `r` of `recall_points`
    it is read at the first detection whose recall is >= r, and is 0 when
    no detection reaches r (COCO evaluation protocol, Lin et al. 2014).

    Args:
        recall: float `[D]`, non-decreasing, along score-sorted detections.
        precision: float `[D]`, the precision at each detection.
        recall_points: float `[R]` recall levels (COCO: 101 from 0 to 1).

    Returns:
        float64 `[R]`.
    """
    recall = np.asarray(recall, np.float64).reshape(-1)
    precision = np.asarray(precision, np.float64).reshape(-1)
    if recall.shape != precision.shape:
        raise ValueError(
            "`recall` and `precision` must have the same length; received "
            f"{recall.size} and {precision.size} values."
        )
    envelope = np.maximum.accumulate(precision[::-1])[::-1]
    index = np.searchsorted(recall, recall_points, side="left")
    sampled = np.zeros(len(recall_points))
    inside = index < len(recall)
    sampled[inside] = envelope[index[inside]]
    return sampled


def interpolated_average_precision(recall, precision):
    """COCO 101-point interpolated average precision of one precision-recall curve.

    The mean of `interpolated_precision` over the recall levels 0, 0.01, ...,
    1 (COCO evaluation protocol, Lin et al. 2014). This is the per-class,
    per-IoU-threshold AP that `coco_evaluate` averages.

    Args:
        recall: float `[D]`, non-decreasing, e.g. from `precision_recall_curve`.
        precision: float `[D]`.

    Returns:
        float in [0, 1].
    """
    return float(np.mean(interpolated_precision(recall, precision)))


def _class_ids(ground_truth, detections, class_names):
    if class_names is not None:
        class_names = [str(name) for name in class_names]
        if not class_names:
            raise ValueError("`class_names` must name at least one class; received [].")
    used = [c for _, classes, _ in ground_truth + detections for c in classes]
    largest = max(used) if used else -1
    if class_names is not None:
        if largest >= len(class_names):
            raise ValueError(
                f"class ids must be < len(class_names) ({len(class_names)}); received class "
                f"id {largest}."
            )
        return len(class_names), class_names
    return largest + 1, None


def _check_iou_type(iou_type):
    if iou_type not in IOU_TYPES:
        raise ValueError(
            f"`iou_type` must be one of {list(IOU_TYPES)} (boxes or instance masks); received "
            f"iou_type={iou_type!r}."
        )
    return iou_type


def _prepare_pair(ground_truth, detections, iou_type="bbox"):
    """`_prepare`d ground truth and detections, checked to describe the same images."""
    _check_iou_type(iou_type)
    gt = _prepare("ground_truth", ground_truth, with_scores=False, iou_type=iou_type)
    dt = _prepare("detections", detections, with_scores=True, iou_type=iou_type)
    if len(gt) != len(dt):
        raise ValueError(
            "`ground_truth` and `detections` must describe the same images; received "
            f"{len(gt)} ground-truth entries and {len(dt)} detection entries."
        )
    if iou_type == "segm":
        for index, ((gt_masks, _, _), (dt_masks, _, _)) in enumerate(zip(gt, dt)):
            if len(gt_masks) and len(dt_masks) and gt_masks.shape[1:] != dt_masks.shape[1:]:
                raise ValueError(
                    f"`detections[{index}]['masks']` must cover the image of "
                    f"`ground_truth[{index}]['masks']` ([H, W] = {list(gt_masks.shape[1:])}); "
                    f"received masks of [H, W] = {list(dt_masks.shape[1:])}."
                )
    return gt, dt


def coco_evaluate(ground_truth, detections, iou_thresholds=DEFAULT_IOU_THRESHOLDS,
                  max_detections=100, class_names=None, iou_type="bbox"):
    """COCO box or mask evaluation: mean average precision over IoU thresholds and classes.

    Implements the COCO detection protocol (Lin et al. 2014; the reference
    implementation is pycocotools' `COCOeval` with `iouType="bbox"` or
    `"segm"`) for objects without crowd regions, over all object areas
    (COCO's area range "all"; an object's area is `w * h` of its box, or the
    pixel count of its mask for `"segm"`):

    1. per image and class, detections are sorted by score and the best
       `max_detections` kept (the limit applies per image *and class*, as in
       the reference implementation);
    2. at each IoU threshold, detections are greedily matched, best score
       first, to the unmatched ground-truth box of highest IoU >= threshold
       (box IoU with areas `w * h`, no "+1"; for `"segm"` mask IoU, shared
       pixels over pixels in either mask, as for Mask R-CNN, He et al. 2017);
    3. per class, detections of all images are ranked by score; precision
       is made monotone (the precision envelope) and sampled at 101 recall
       levels 0, 0.01, ..., 1, whose mean is the class' AP;
    4. mAP averages AP over the thresholds and over the classes that have
       ground truth (classes without ground truth are NaN and left out).

    Args:
        ground_truth: per-image dicts `{"boxes": [N, 4], "classes": [N]}`
            (xyxy pixels), or one dict of batched padded arrays. For
            `iou_type="segm"`: `{"masks": [N, H, W], "classes": [N]}`, binary
            full-image masks (bool, or 0/1 numbers), one per object.
        detections: per-image dicts `{"boxes": [M, 4], "scores": [M],
            "classes": [M]}`, in the order of `ground_truth`, or one dict of
            batched padded arrays. Rows with class -1 are padding. For
            `"segm"`: `{"masks": [M, H, W], "scores": [M], "classes": [M]}`,
            binary masks or per-pixel probabilities in [0, 1], where a pixel
            is in the mask when its value is >= 0.5 (`MASK_THRESHOLD`), on the
            same `[H, W]` as the image's ground-truth masks. Boxes may be
            present and are then not used.
        iou_thresholds: float `[T]` in (0, 1]; default COCO's .50:.05:.95
            (`DEFAULT_IOU_THRESHOLDS`, the values of `np.arange(0.5, 0.96, 0.05)`).
        max_detections: int >= 1, detections kept per image and class.
        class_names: optional sequence of `C` names; the per-class dicts are
            keyed by these names, else by class id (C = largest id + 1).
        iou_type: `"bbox"` (boxes) or `"segm"` (instance masks; mask AP).

    Returns:
        dict with
        - `"map"`: float, AP averaged over `iou_thresholds` and classes;
        - `"map_50"`, `"map_75"`: float, AP at IoU 0.5 and 0.75;
        - `"mar"`: float, recall averaged over thresholds and classes (COCO's
          AR at `max_detections`);
        - `"per_class_ap"`, `"per_class_ap_50"`: dict class -> AP (mean over
          `iou_thresholds`; at 0.5);
        - `"precision"`: float64 `[T, 101, C]` interpolated precision;
        - `"recall"`: float64 `[T, C]` final recall;
        - `"iou_thresholds"`: float64 `[T]`.
        Entries of classes without ground truth are NaN; mean values are NaN
        when no class has ground truth.

    Example:
        >>> report = coco_evaluate(ground_truth, detections, class_names=["cat", "dog"])
        >>> report["map"], report["per_class_ap_50"]["dog"]
        >>> mask_report = coco_evaluate(
        ...     [{"masks": true_masks, "classes": true_classes}],  # bool [N, H, W], [N]
        ...     [{"masks": mask_probs, "scores": scores, "classes": classes}],
        ...     iou_type="segm")
        >>> mask_report["map"]  # COCO mask AP
    """
    thresholds = np.asarray(iou_thresholds, np.float64).reshape(-1)
    if thresholds.size == 0 or np.any(~np.isfinite(thresholds)) or np.any(
            (thresholds <= 0) | (thresholds > 1)):
        raise ValueError(
            "`iou_thresholds` must be a non-empty list of numbers in (0, 1]; received "
            f"iou_thresholds={iou_thresholds!r}."
        )
    max_detections = check_int("max_detections", max_detections, minimum=1)
    gt, dt = _prepare_pair(ground_truth, detections, iou_type)
    num_classes, names = _class_ids(gt, dt, class_names)
    # 0.5 and 0.75 are always evaluated, for map_50 and map_75.
    extra = [t for t in (0.5, 0.75) if not np.any(np.isclose(thresholds, t, atol=1e-9))]
    evaluated = np.concatenate([thresholds, extra])
    precision = np.full((len(evaluated), len(RECALL_POINTS), num_classes), np.nan)
    recall = np.full((len(evaluated), num_classes), np.nan)
    for k in range(num_classes):
        _, matches, num_gt = _class_matches(gt, dt, k, evaluated, max_detections, iou_type)
        if num_gt == 0:
            continue
        rec, prec = _curve(matches, num_gt)
        for t in range(len(evaluated)):
            precision[t, :, k] = interpolated_precision(rec[t], prec[t])
            recall[t, k] = rec[t, -1] if rec.shape[1] else 0.0
    ap = precision.mean(axis=1)  # [T', C]
    has_gt = ~np.isnan(recall[0])

    def mean_over_classes(values):
        return float(np.mean(values[..., has_gt])) if np.any(has_gt) else float("nan")

    def at(threshold):
        return int(np.flatnonzero(np.isclose(evaluated, threshold, atol=1e-9))[0])

    user = slice(0, len(thresholds))
    keys = names if names is not None else list(range(num_classes))
    return {
        "map": mean_over_classes(ap[user]),
        "map_50": mean_over_classes(ap[at(0.5)]),
        "map_75": mean_over_classes(ap[at(0.75)]),
        "mar": mean_over_classes(recall[user]),
        "per_class_ap": {key: float(value) for key, value in zip(keys, ap[user].mean(axis=0))},
        "per_class_ap_50": {key: float(value) for key, value in zip(keys, ap[at(0.5)])},
        "precision": precision[user],
        "recall": recall[user],
        "iou_thresholds": thresholds,
    }


def precision_recall_curve(ground_truth, detections, class_id, iou_threshold=0.5,
                           max_detections=100, iou_type="bbox"):
    """Precision and recall of one class along its detections ranked by score.

    Detections are matched to ground truth as in `coco_evaluate` (greedy,
    best score first, IoU >= `iou_threshold`, at most `max_detections` per
    image for this class). The curve is not interpolated; pass it to
    `interpolated_average_precision` (COCO AP, equal to `coco_evaluate`'s
    `per_class_ap_50` at 0.5) or `voc07_average_precision`.

    Args:
        ground_truth: as in `coco_evaluate`.
        detections: as in `coco_evaluate`.
        class_id: int, the class to evaluate.
        iou_threshold: float in (0, 1].
        max_detections: int >= 1 or None (no limit).
        iou_type: `"bbox"` or `"segm"`, as in `coco_evaluate`.

    Returns:
        `(recall, precision, scores)`, float64 arrays `[D]` over the `D`
        detections of the class, by decreasing score. Recall is NaN when the
        class has no ground truth.
    """
    class_id = check_int("class_id", class_id, minimum=0)
    iou_threshold = check_float("iou_threshold", iou_threshold, minimum=0.0, maximum=1.0,
                                strict_minimum=True)
    if max_detections is not None:
        max_detections = check_int("max_detections", max_detections, minimum=1)
    gt, dt = _prepare_pair(ground_truth, detections, iou_type)
    scores, matches, num_gt = _class_matches(gt, dt, class_id, np.array([iou_threshold]),
                                             max_detections, iou_type)
    recall, precision = _curve(matches[0], max(num_gt, 1))
    if num_gt == 0:
        recall = np.full_like(recall, np.nan)
    return recall, precision, scores


def voc07_average_precision(recalls, precisions):
    """PASCAL VOC 2007 11-point interpolated average precision.

    `AP = 1/11 * sum over r in {0, 0.1, ..., 1} of max(precision at recall >= r)`
    (0 when no point reaches r), as defined for VOC2007 in Everingham et al.
    2010, "The PASCAL Visual Object Classes (VOC) Challenge", IJCV 88(2),
    section 4.2. The levels are the decimals k / 10, so a recall of exactly
    3/10 counts for r = 0.3.

    Args:
        recalls: float `[D]` recall of each ranked detection (e.g. from
            `precision_recall_curve` at IoU 0.5).
        precisions: float `[D]` precision of each ranked detection.

    Returns:
        float in [0, 1].
    """
    recalls = np.asarray(recalls, np.float64).reshape(-1)
    precisions = np.asarray(precisions, np.float64).reshape(-1)
    if recalls.shape != precisions.shape:
        raise ValueError(
            "`recalls` and `precisions` must have the same length; received "
            f"{recalls.size} and {precisions.size} values."
        )
    if np.any(np.isnan(recalls)) or np.any(np.isnan(precisions)):
        raise ValueError(
            "`recalls` and `precisions` must not hold NaN (a class without ground truth "
            "has no recall); received NaN values."
        )
    levels = np.arange(11) / 10.0
    best = [precisions[recalls >= level].max() if np.any(recalls >= level) else 0.0
            for level in levels]
    return float(np.mean(best))
