"""Panoptic segmentation: panoptic quality (PQ = SQ x RQ) and the merge of semantic and instance outputs.

Panoptic segmentation (Kirillov et al. 2019, "Panoptic Segmentation", CVPR)
gives every pixel a class, and the pixels of countable objects ("things") an
instance number too; amorphous regions ("stuff", such as the background)
have one segment per class and image.

The contract of this module: a panoptic map is an integer array `[H, W, 2]`:

- `[..., 0]`: the class id of each pixel, `0..C-1`, or `ignore_label`
  (default 255, `kerasvision.validation.IGNORE_LABEL`) for void pixels:
  unlabelled in the ground truth, unassigned in a prediction;
- `[..., 1]`: the instance id, an integer >= 0. For a thing class, the
  pixels of one class sharing an instance id form one segment (ids only
  need to be distinct within a class and image); for a stuff class the
  instance id is not read: all its pixels in the image are one segment.

Which classes are things is an argument (`thing_classes`); all others are
stuff. `panoptic_merge` returns maps in this form, with instance ids 1, 2...
for things and 0 for stuff and void.
"""

import numpy as np

from kerasvision.metrics.detection import MASK_THRESHOLD
from kerasvision.validation import (
    IGNORE_LABEL,
    check_float,
    check_ignore_label,
    check_int,
)

MATCH_IOU = 0.5
"""Segments match when of the same class and IoU strictly above this (then the match is unique)."""

VOID_FRACTION = 0.5
"""An unmatched predicted segment more than this share void is not a false positive."""


def _to_numpy(x):
    return x.numpy() if hasattr(x, "numpy") else np.asarray(x)


def _panoptic_images(name, maps):
    """A list of int64 `[H, W, 2]` maps from a `[B, H, W, 2]` array, one `[H, W, 2]` map or a list."""
    if not isinstance(maps, (list, tuple)):
        array = _to_numpy(maps)
        maps = [array] if array.ndim == 3 else list(array) if array.ndim == 4 else [array]
    images = []
    for index, image in enumerate(maps):
        where = f"{name}[{index}]"
        image = _to_numpy(image)
        if image.ndim != 3 or image.shape[-1] != 2:
            raise ValueError(
                f"`{where}` must be a panoptic map [H, W, 2] (class ids, instance ids); "
                f"received shape {image.shape}."
            )
        if image.dtype.kind not in "iu":
            raise ValueError(
                f"`{where}` must hold integer class and instance ids; received dtype "
                f"{image.dtype}."
            )
        image = image.astype(np.int64)
        if image.size and image[..., 1].min() < 0:
            raise ValueError(
                f"`{where}[..., 1]` must hold instance ids >= 0; received "
                f"{image[..., 1].min()}."
            )
        images.append(image)
    return images


def _segments(panoptic, is_thing, ignore_label):
    """Segments of one map: (segment index per pixel, -1 on void `[H * W]`, classes `[S]`, areas `[S]`)."""
    classes = panoptic[..., 0].reshape(-1)
    instances = panoptic[..., 1].reshape(-1)
    void = classes == ignore_label if ignore_label is not None else np.zeros(classes.shape, bool)
    labelled = np.flatnonzero(~void)
    cls = classes[labelled]
    # A stuff class is one segment per image: its instance ids are not read.
    inst = np.where(is_thing[cls], instances[labelled], 0)
    stride = int(inst.max()) + 1 if inst.size else 1
    keys, index, areas = np.unique(cls * stride + inst, return_inverse=True, return_counts=True)
    segment_of_pixel = np.full(classes.shape, -1, np.int64)
    segment_of_pixel[labelled] = index.reshape(-1)
    return segment_of_pixel, keys // stride, areas


def _image_statistics(true_map, pred_map, is_thing, ignore_label, num_classes):
    """Per-class (true positives, false positives, false negatives, summed IoU) of one image."""
    true_index, true_classes, true_areas = _segments(true_map, is_thing, ignore_label)
    pred_index, pred_classes, pred_areas = _segments(pred_map, is_thing, ignore_label)
    num_true, num_pred = len(true_classes), len(pred_classes)
    # Joint pixel counts; row 0 is ground-truth void, column 0 predicted void.
    joint = np.bincount((true_index + 1) * (num_pred + 1) + pred_index + 1,
                        minlength=(num_true + 1) * (num_pred + 1)).reshape(num_true + 1,
                                                                           num_pred + 1)
    intersection = joint[1:, 1:].astype(np.float64)
    void_in_pred = joint[0, 1:].astype(np.float64)
    # Void pixels are removed from the prediction: they count in neither area.
    union = true_areas[:, None] + pred_areas[None, :] - intersection - void_in_pred[None, :]
    same_class = true_classes[:, None] == pred_classes[None, :]
    with np.errstate(divide="ignore", invalid="ignore"):
        iou = np.where(same_class & (union > 0), intersection / np.where(union > 0, union, 1), 0.0)
    # IoU > 0.5 makes the match unique (Kirillov et al. 2019, Theorem 1): no assignment needed.
    matched = iou > MATCH_IOU
    true_matched, pred_matched = matched.any(axis=1), matched.any(axis=0)
    mostly_void = void_in_pred / pred_areas > VOID_FRACTION
    stats = np.zeros((4, num_classes))
    np.add.at(stats[0], true_classes[true_matched], 1)
    np.add.at(stats[1], pred_classes[~pred_matched & ~mostly_void], 1)
    np.add.at(stats[2], true_classes[~true_matched], 1)
    np.add.at(stats[3], true_classes[true_matched], iou.max(axis=1)[true_matched])
    return stats


def _quality(tp, fp, fn, iou_sum):
    """(PQ, SQ, RQ) arrays from per-class counts; NaN where a class has no segment at all."""
    present = (tp + fp + fn) > 0
    with np.errstate(divide="ignore", invalid="ignore"):
        denominator = tp + 0.5 * fp + 0.5 * fn
        rq = np.where(present, tp / np.where(present, denominator, 1), np.nan)
        sq = np.where(tp > 0, iou_sum / np.where(tp > 0, tp, 1), 0.0)
    sq = np.where(present, sq, np.nan)
    return sq * rq, sq, rq


def panoptic_quality(true_panoptic, pred_panoptic, thing_classes, class_names=None,
                     ignore_label=IGNORE_LABEL):
    """Panoptic quality PQ = SQ x RQ over a set of images (Kirillov et al. 2019).

    1. In each image, a ground-truth and a predicted segment match when they
       have the same class and IoU > 0.5; such a match is unique, so no
       assignment is solved. Void pixels (class `ignore_label`) are removed
       from the prediction first: a predicted segment's pixels on ground-truth
       void count in neither its area nor the union.
    2. Matched pairs are true positives (TP), unmatched ground-truth segments
       false negatives (FN), unmatched predicted segments false positives
       (FP), except predicted segments more than half void, which are not
       counted at all (as in the paper and the COCO panoptic API).
       Crowd regions are not supported: every ground-truth segment counts.
    3. Per class, over all images: SQ = mean IoU of the TPs (0 without TP),
       RQ = TP / (TP + FP/2 + FN/2) (an F1 score), PQ = SQ x RQ.
    4. PQ, SQ and RQ are averaged over the classes that have at least one
       segment (ground truth or predicted), over all of them and over the
       thing and stuff classes separately. (The average PQ is therefore not
       the product of the average SQ and RQ.)

    Args:
        true_panoptic: ground-truth panoptic maps: int `[B, H, W, 2]`, one
            `[H, W, 2]` map, or a list of `[H, W, 2]` maps (sizes may differ
            between images). `[..., 0]` class ids `0..C-1` or `ignore_label`,
            `[..., 1]` instance ids >= 0 (see the module docstring).
        pred_panoptic: predicted maps in the same form and order, each of
            its image's size (e.g. from `panoptic_merge`). Predicted void
            pixels are unassigned: they lower the IoU of the ground truth
            they cover.
        thing_classes: sequence of class ids that are things (segmented by
            instance id); every other class is stuff (one segment per image).
        class_names: optional sequence of `C` names keying `per_class`; else
            keys are class ids and C = the largest class id seen + 1.
        ignore_label: int class id of void pixels, or None (no void).

    Returns:
        dict with
        - `"pq"`, `"sq"`, `"rq"`: floats averaged over classes present;
        - `"things"`, `"stuff"`: dicts `{"pq", "sq", "rq", "num_classes"}`
          averaged over the thing or stuff classes present;
        - `"num_classes"`: number of classes present (in the averages);
        - `"per_class"`: dict class -> `{"pq", "sq", "rq", "tp", "fp", "fn",
          "is_thing"}` (PQ, SQ, RQ NaN for classes with no segment).
        Averages are NaN when no class of the group is present.

    Example:
        >>> report = panoptic_quality(true_maps, pred_maps, thing_classes=[1, 2, 3, 4])
        >>> report["pq"], report["things"]["pq"], report["per_class"][0]["sq"]
    """
    ignore_label = check_ignore_label(ignore_label)
    true_maps = _panoptic_images("true_panoptic", true_panoptic)
    pred_maps = _panoptic_images("pred_panoptic", pred_panoptic)
    if len(true_maps) != len(pred_maps):
        raise ValueError(
            "`true_panoptic` and `pred_panoptic` must describe the same images; received "
            f"{len(true_maps)} and {len(pred_maps)} maps."
        )
    for index, (true_map, pred_map) in enumerate(zip(true_maps, pred_maps)):
        if true_map.shape != pred_map.shape:
            raise ValueError(
                f"`pred_panoptic[{index}]` must have the shape of `true_panoptic[{index}]` "
                f"{true_map.shape}; received shape {pred_map.shape}."
            )
    thing_ids = _check_thing_classes(thing_classes)
    labelled = [m[..., 0][m[..., 0] != ignore_label] for m in true_maps + pred_maps]
    used = np.concatenate([ids.reshape(-1) for ids in labelled]) if labelled else np.zeros(0)
    if used.size and used.min() < 0:
        raise ValueError(
            f"panoptic class ids must be >= 0 (or ignore_label={ignore_label} for void); "
            f"received class id {used.min()}."
        )
    largest = max(int(used.max()) if used.size else -1, max(thing_ids, default=-1))
    if class_names is not None:
        class_names = [str(name) for name in class_names]
        if largest >= len(class_names):
            raise ValueError(
                f"class ids must be < len(class_names) ({len(class_names)}); received class "
                f"id {largest}."
            )
        num_classes = len(class_names)
    else:
        num_classes = largest + 1
    is_thing = np.zeros(num_classes, bool)
    is_thing[list(thing_ids)] = True

    tp, fp, fn, iou_sum = np.zeros((4, num_classes))
    for true_map, pred_map in zip(true_maps, pred_maps):
        image_tp, image_fp, image_fn, image_iou = _image_statistics(
            true_map, pred_map, is_thing, ignore_label, num_classes)
        tp, fp, fn, iou_sum = tp + image_tp, fp + image_fp, fn + image_fn, iou_sum + image_iou
    pq, sq, rq = _quality(tp, fp, fn, iou_sum)
    present = (tp + fp + fn) > 0

    def averages(group):
        chosen = present & group
        if not np.any(chosen):
            return {"pq": float("nan"), "sq": float("nan"), "rq": float("nan"),
                    "num_classes": 0}
        return {"pq": float(pq[chosen].mean()), "sq": float(sq[chosen].mean()),
                "rq": float(rq[chosen].mean()), "num_classes": int(chosen.sum())}

    overall = averages(np.ones(num_classes, bool))
    keys = class_names if class_names is not None else list(range(num_classes))
    return {
        "pq": overall["pq"], "sq": overall["sq"], "rq": overall["rq"],
        "things": averages(is_thing),
        "stuff": averages(~is_thing),
        "num_classes": overall["num_classes"],
        "per_class": {
            key: {"pq": float(pq[c]), "sq": float(sq[c]), "rq": float(rq[c]),
                  "tp": int(tp[c]), "fp": int(fp[c]), "fn": int(fn[c]),
                  "is_thing": bool(is_thing[c])}
            for c, key in enumerate(keys)
        },
    }


def _check_thing_classes(thing_classes):
    try:
        ids = list(thing_classes)
    except TypeError:
        raise ValueError(
            "`thing_classes` must be a sequence of class ids (possibly empty); received "
            f"thing_classes={thing_classes!r}."
        ) from None
    for value in ids:
        if isinstance(value, (bool, np.bool_)) or not isinstance(value, (int, np.integer)) or (
                value < 0):
            raise ValueError(
                "`thing_classes` must hold class ids >= 0; received "
                f"thing_classes={thing_classes!r}."
            )
    return {int(value) for value in ids}


def panoptic_merge(semantic, instance_masks, instance_classes, instance_scores, thing_classes,
                   score_threshold=0.5, max_overlap=0.5, min_area=0, ignore_label=IGNORE_LABEL):
    """One image's panoptic map from a semantic and an instance output (Panoptic FPN's heuristic).

    Following Kirillov et al. 2019 ("Panoptic Feature Pyramid Networks",
    CVPR; the merge of section 3 also used for the baselines of "Panoptic
    Segmentation"):

    1. instances with score >= `score_threshold` are pasted in decreasing
       score order; each takes only the pixels still free, and is dropped
       when more than `max_overlap` of its mask is already taken (overlaps
       are resolved by score) or when fewer than `min_area` pixels remain;
    2. every still free pixel whose semantic class is a stuff class joins
       that class' segment; a stuff segment smaller than `min_area` pixels
       is dropped (its pixels become void);
    3. free pixels the semantic output gives a thing class become void:
       things come only from instances.

    Args:
        semantic: float `[H, W, C]` logits or probabilities (the argmax is
            taken), or int `[H, W]` class ids.
        instance_masks: `[K, H, W]` binary masks (bool or 0/1) or per-pixel
            probabilities in [0, 1] (a pixel is in when >= 0.5, as in
            `coco_evaluate(iou_type="segm")`); K may be 0.
        instance_classes: int `[K]`, each one of `thing_classes`.
        instance_scores: float `[K]`.
        thing_classes: sequence of class ids that are things.
        score_threshold: float in [0, 1], lowest score pasted.
        max_overlap: float in [0, 1], largest share of an instance's mask
            that may already be taken by better instances.
        min_area: int >= 0, smallest segment kept, in pixels.
        ignore_label: int class id written on void pixels.

    Returns:
        int32 `[H, W, 2]` panoptic map (see the module docstring): class ids
        (or `ignore_label`) and instance ids 1, 2, ... in paste order for
        things, 0 for stuff and void. Pass it to `panoptic_quality`.

    Example:
        >>> panoptic = panoptic_merge(semantic_logits, masks, classes, scores,
        ...                           thing_classes=[1, 2, 3, 4], min_area=16)
        >>> panoptic.shape  # (H, W, 2)
    """
    ignore_label = check_int("ignore_label", ignore_label)
    score_threshold = check_float("score_threshold", score_threshold, minimum=0.0, maximum=1.0)
    max_overlap = check_float("max_overlap", max_overlap, minimum=0.0, maximum=1.0)
    min_area = check_int("min_area", min_area, minimum=0)
    thing_ids = _check_thing_classes(thing_classes)
    semantic = _to_numpy(semantic)
    if semantic.ndim == 3 and semantic.dtype.kind in "iuf":
        semantic = np.argmax(semantic, axis=-1)
    elif semantic.ndim != 2 or semantic.dtype.kind not in "iu":
        raise ValueError(
            "`semantic` must be float logits [H, W, C] or integer class ids [H, W]; received "
            f"shape {semantic.shape} and dtype {semantic.dtype}."
        )
    height, width = semantic.shape
    masks = _to_numpy(instance_masks)
    if masks.size == 0 and masks.ndim < 3:
        masks = masks.reshape(0, height, width)
    if masks.ndim != 3 or masks.shape[1:] != (height, width):
        raise ValueError(
            f"`instance_masks` must have shape [K, {height}, {width}] (full-image masks on "
            f"the semantic map's grid); received shape {masks.shape}."
        )
    if masks.dtype != bool:
        if masks.dtype.kind not in "iuf" or (masks.size and (
                masks.min() < 0 or masks.max() > 1 or not np.all(np.isfinite(masks)))):
            raise ValueError(
                "`instance_masks` must be binary or per-pixel probabilities in [0, 1]; "
                f"received dtype {masks.dtype}"
                + (f" with values in [{masks.min()}, {masks.max()}]." if masks.size else ".")
            )
        masks = masks >= MASK_THRESHOLD
    classes = _to_numpy(instance_classes).reshape(-1)
    scores = _to_numpy(instance_scores).astype(np.float64).reshape(-1)
    if classes.size != len(masks) or scores.size != len(masks):
        raise ValueError(
            f"`instance_classes` and `instance_scores` must have one entry per mask "
            f"({len(masks)}); received {classes.size} classes and {scores.size} scores."
        )
    not_things = [int(c) for c in classes if int(c) not in thing_ids]
    if not_things:
        raise ValueError(
            f"`instance_classes` must hold thing classes {sorted(thing_ids)}; received class "
            f"{not_things[0]}."
        )

    panoptic = np.zeros((height, width, 2), np.int32)
    panoptic[..., 0] = ignore_label
    free = np.ones((height, width), bool)
    next_id = 1
    # 1. Instances, best score first (a stable sort keeps input order among ties).
    for k in np.argsort(-scores, kind="mergesort"):
        if scores[k] < score_threshold:
            break
        area = masks[k].sum()
        if area == 0:
            continue
        visible = masks[k] & free
        kept = visible.sum()
        if (area - kept) > max_overlap * area or kept < min_area:
            continue
        panoptic[visible] = (int(classes[k]), next_id)
        free &= ~visible
        next_id += 1
    # 2. Stuff from the semantic map on the free pixels; 3. the rest stays void.
    for class_id in np.unique(semantic[free]):
        if int(class_id) in thing_ids:
            continue
        region = free & (semantic == class_id)
        if region.sum() >= max(min_area, 1):
            panoptic[region] = (int(class_id), 0)
    return panoptic
