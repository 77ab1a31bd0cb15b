"""Bounding boxes: format conversion, IoU, clipping and non-maximum suppression.

The package contract for boxes: float32 `"xyxy"` in pixels `(x1, y1, x2, y2)`
with `x1 <= x2` and `y1 <= y2`, integer class ids `0..C-1`, and padding rows
(to give every image of a batch the same number of boxes) whose coordinates
and class are all -1. Ground truth per image is `{"boxes": [N, 4], "classes":
[N]}`, detections per image `{"boxes": [M, 4], "scores": [M], "classes": [M]}`.

Everything here is written with TensorFlow ops, so it runs inside a
`tf.function` and a SavedModel. Argument values (inverted or non-finite
boxes) are checked only when they are concrete (eager tensors, numpy arrays):
inside a traced function the checks would have to become graph assertions
that fail a serving request, so there only the static shapes are checked.
"""

import keras
import numpy as np
import tensorflow as tf

from kerasvision.validation import (
    check_choice,
    check_float,
    check_int,
    check_numeric_dtype,
)

FORMATS = ("xyxy", "xywh", "center_xywh", "rel_xyxy")
"""Box formats `convert_format` reads and writes.

- `"xyxy"`: `(x1, y1, x2, y2)` corners in pixels (the package contract);
- `"xywh"`: `(x1, y1, width, height)` in pixels (COCO annotations);
- `"center_xywh"`: `(center_x, center_y, width, height)` in pixels (YOLO-style);
- `"rel_xyxy"`: corners divided by the image width (x) and height (y).
"""

PADDING_VALUE = -1.0
"""Coordinate (and class id) of padding rows."""

# Formats whose last two values are a size, not a second corner.
_SIZE_FORMATS = ("xywh", "center_xywh")


def _is_symbolic(x):
    """True for tensors without values (inside a tf.function, or Keras functional inputs)."""
    if isinstance(x, (np.ndarray, np.generic, list, tuple, float, int)):
        return False
    if isinstance(x, tf.Tensor):
        return not hasattr(x, "numpy") or not tf.executing_eagerly()
    return isinstance(x, keras.KerasTensor)


def _as_float_tensor(name, x):
    check_numeric_dtype(name, x, "box coordinates (numbers)")
    try:
        tensor = tf.convert_to_tensor(x)
    except (TypeError, ValueError) as error:
        raise ValueError(
            f"`{name}` must be an array of numbers; received {name}={x!r} ({error})."
        ) from None
    check_numeric_dtype(name, tensor, "box coordinates (numbers)")
    return tf.cast(tensor, tf.float32)


def _padding_rows(boxes):
    """bool `[...]`: rows whose four coordinates are all the padding value."""
    return tf.reduce_all(tf.equal(boxes, PADDING_VALUE), axis=-1)


def _check_boxes(name, boxes, box_format="xyxy", min_rank=1):
    """Convert `boxes` to float32 and check shape `[..., 4]`; in eager, check values.

    Eager checks: every value is finite, and outside padding rows the boxes
    are not inverted (`x2 >= x1`, `y2 >= y1` for corner formats, width and
    height >= 0 for size formats).
    """
    tensor = _as_float_tensor(name, boxes)
    shape = tensor.shape
    if shape.rank is not None and (shape.rank < min_rank or shape[-1] not in (4, None)):
        raise ValueError(
            f"`{name}` must have shape [..., 4] (rank >= {min_rank}, 4 coordinates in "
            f"the last axis, format {box_format!r}); received shape {tuple(shape)}."
        )
    if _is_symbolic(tensor):
        return tensor
    values = tensor.numpy().reshape(-1, 4)
    if not np.all(np.isfinite(values)):
        bad = values[~np.all(np.isfinite(values), axis=-1)][0]
        raise ValueError(
            f"`{name}` must hold finite coordinates; received a box {bad.tolist()} "
            "(NaN or infinite)."
        )
    real = values[~np.all(values == PADDING_VALUE, axis=-1)]
    if box_format in _SIZE_FORMATS:
        inverted = (real[:, 2] < 0) | (real[:, 3] < 0)
        expected = "width and height >= 0"
    else:
        inverted = (real[:, 2] < real[:, 0]) | (real[:, 3] < real[:, 1])
        expected = "x2 >= x1 and y2 >= y1"
    if np.any(inverted):
        index = int(np.flatnonzero(inverted)[0])
        raise ValueError(
            f"`{name}` must hold {box_format!r} boxes with {expected}; received "
            f"{int(inverted.sum())} inverted box(es), the first {real[index].tolist()} "
            "(are the coordinates in another format, e.g. yxyx or xywh?)."
        )
    return tensor


def _check_image_size(height, width, needed):
    """Return (height, width) as floats, or (None, None) when not `needed`."""
    if not needed:
        return None, None
    if height is None or width is None:
        raise ValueError(
            "`height` and `width` (the image size in pixels) are needed to convert "
            f"from or to 'rel_xyxy'; received height={height!r}, width={width!r}."
        )
    if isinstance(height, tf.Tensor) or isinstance(width, tf.Tensor):
        return tf.cast(height, tf.float32), tf.cast(width, tf.float32)
    return (check_float("height", height, minimum=0, strict_minimum=True),
            check_float("width", width, minimum=0, strict_minimum=True))


def convert_format(boxes, source, target, height=None, width=None):
    """Convert boxes between `"xyxy"`, `"xywh"`, `"center_xywh"` and `"rel_xyxy"`.

    Wraps `keras.utils.bounding_boxes.convert_format` (Keras 3) and adds the
    package's checks and padding convention: padding rows (all four
    coordinates -1) stay -1 in every format instead of becoming boxes.

    Args:
        boxes: float `[..., 4]` numpy array or tensor in the `source` format.
        source: str, one of `FORMATS`, the format of `boxes`.
        target: str, one of `FORMATS`, the format to return.
        height: image height in pixels; needed when `source` or `target` is
            `"rel_xyxy"` (may be a scalar tensor inside a tf.function).
        width: image width in pixels; needed likewise.

    Returns:
        float32 `[..., 4]`: a numpy array for numpy/list input, a tensor for
        tensor input.

    Raises:
        ValueError: unknown format, a shape without 4 coordinates, missing
            image size for `"rel_xyxy"`, or (eager) inverted/non-finite boxes.

    Example:
        >>> convert_format([[10, 20, 30, 60]], "xyxy", "xywh")
        array([[10., 20., 20., 40.]], dtype=float32)
    """
    check_choice("source", source, FORMATS)
    check_choice("target", target, FORMATS)
    was_tensor = isinstance(boxes, tf.Tensor) or _is_symbolic(boxes)
    tensor = _check_boxes("boxes", boxes, box_format=source)
    height, width = _check_image_size(height, width, "rel_xyxy" in (source, target))
    if source == target:
        converted = tensor
    else:
        converted = keras.utils.bounding_boxes.convert_format(
            tensor, source=source, target=target, height=height, width=width, dtype="float32")
        converted = tf.where(_padding_rows(tensor)[..., None], PADDING_VALUE, converted)
    return converted if was_tensor else converted.numpy()


def iou_matrix(boxes_a, boxes_b):
    """Intersection over union of every box of `boxes_a` with every box of `boxes_b`.

    `IoU = area(a & b) / (area(a) + area(b) - area(a & b))` with areas
    `(x2 - x1) * (y2 - y1)` (continuous coordinates, no "+1" as in the
    PASCAL VOC devkit; the COCO convention). Pairs whose union is empty
    (two degenerate boxes, e.g. padding rows) have IoU 0.

    Args:
        boxes_a: float `[N, 4]` xyxy boxes, or `[B, N, 4]`.
        boxes_b: float `[M, 4]` xyxy boxes, or `[B, M, 4]` (same leading axes).

    Returns:
        float32 tensor `[N, M]` (or `[B, N, M]`); works inside a tf.function.
    """
    a = _check_boxes("boxes_a", boxes_a, min_rank=2)
    b = _check_boxes("boxes_b", boxes_b, min_rank=2)
    if a.shape.rank is not None and b.shape.rank is not None and a.shape.rank != b.shape.rank:
        raise ValueError(
            "`boxes_a` and `boxes_b` must have the same rank ([N, 4] and [M, 4], or "
            f"[B, N, 4] and [B, M, 4]); received shapes {tuple(a.shape)} and {tuple(b.shape)}."
        )
    a = a[..., :, None, :]
    b = b[..., None, :, :]
    width = tf.maximum(tf.minimum(a[..., 2], b[..., 2]) - tf.maximum(a[..., 0], b[..., 0]), 0.0)
    height = tf.maximum(tf.minimum(a[..., 3], b[..., 3]) - tf.maximum(a[..., 1], b[..., 1]), 0.0)
    intersection = width * height
    area_a = (a[..., 2] - a[..., 0]) * (a[..., 3] - a[..., 1])
    area_b = (b[..., 2] - b[..., 0]) * (b[..., 3] - b[..., 1])
    return tf.math.divide_no_nan(intersection, area_a + area_b - intersection)


def clip_boxes(boxes, height, width):
    """Clip xyxy boxes to the image `[0, width] x [0, height]`; padding rows stay -1.

    A box entirely outside the image becomes degenerate (zero area) on its
    border; callers that need to drop such boxes can test `x2 > x1 and y2 > y1`.

    Args:
        boxes: float `[..., 4]` xyxy boxes in pixels.
        height: image height in pixels (number or scalar tensor).
        width: image width in pixels (number or scalar tensor).

    Returns:
        float32 `[..., 4]`: a numpy array for numpy/list input, a tensor for
        tensor input.
    """
    was_tensor = isinstance(boxes, tf.Tensor) or _is_symbolic(boxes)
    tensor = _check_boxes("boxes", boxes)
    height, width = _check_image_size(height, width, True)
    limits = tf.stack([width, height, width, height])
    clipped = tf.clip_by_value(tensor, 0.0, tf.cast(limits, tf.float32))
    clipped = tf.where(_padding_rows(tensor)[..., None], PADDING_VALUE, clipped)
    return clipped if was_tensor else clipped.numpy()


def _check_nms_arguments(iou_threshold, score_threshold, max_detections):
    return (check_float("iou_threshold", iou_threshold, minimum=0.0, maximum=1.0),
            check_float("score_threshold", score_threshold),
            check_int("max_detections", max_detections, minimum=1))


# A score below any finite `score_threshold`: tf.image's NMS ops keep only
# scores strictly greater than the threshold, so these entries never survive.
_NEVER = float(np.finfo(np.float32).min)


def non_max_suppression(boxes, scores, classes=None, iou_threshold=0.5, score_threshold=0.0,
                        max_detections=100):
    """Greedy non-maximum suppression of one image's boxes, per class or class-agnostic.

    Greedy NMS (as in Felzenszwalb et al. 2010 and the R-CNN detectors):
    boxes are visited by decreasing score; a box is kept unless its IoU with
    an already kept box (of the same class, when `classes` is given) is
    greater than `iou_threshold`. Boxes with score <= `score_threshold` are
    dropped first, and at most `max_detections` boxes (the best scores over
    all classes) are returned. Implemented with
    `tf.image.non_max_suppression` (class-agnostic) and
    `tf.image.combined_non_max_suppression` (per class), so it traces into a
    tf.function; for a batch of images with a fixed output size use
    `batched_non_max_suppression`.

    Args:
        boxes: float `[N, 4]` xyxy boxes in pixels.
        scores: float `[N]`.
        classes: optional int `[N]` class ids in `0..C-1`; boxes of different
            classes never suppress each other. None: class-agnostic NMS.
        iou_threshold: float in [0, 1].
        score_threshold: float; scores must be greater than this to be kept.
        max_detections: int >= 1.

    Returns:
        dict of tensors for the `K <= max_detections` kept boxes, sorted by
        decreasing score: `"boxes"` float32 `[K, 4]`, `"scores"` float32 `[K]`,
        `"classes"` int32 `[K]` (all 0 when `classes` is None).
    """
    iou_threshold, score_threshold, max_detections = _check_nms_arguments(
        iou_threshold, score_threshold, max_detections)
    boxes = _check_boxes("boxes", boxes, min_rank=2)
    scores = _as_float_tensor("scores", scores)
    if boxes.shape.rank != 2:
        raise ValueError(f"`boxes` must have shape [N, 4]; received shape {tuple(boxes.shape)}.")
    _check_same_length("scores", scores, boxes, rank=1)
    if classes is None:
        keep = tf.image.non_max_suppression(
            boxes, scores, max_detections, iou_threshold=iou_threshold,
            score_threshold=score_threshold)
        return {"boxes": tf.gather(boxes, keep), "scores": tf.gather(scores, keep),
                "classes": tf.zeros_like(keep, dtype=tf.int32)}
    check_numeric_dtype("classes", classes, "integer class ids")
    classes = tf.cast(tf.convert_to_tensor(classes), tf.int32)
    _check_same_length("classes", classes, boxes, rank=1)
    if not _is_symbolic(classes) and tf.size(classes) > 0 and tf.reduce_min(classes) < 0:
        raise ValueError(
            "`classes` must hold class ids >= 0 (drop padding rows first); received "
            f"min(classes)={int(tf.reduce_min(classes))}."
        )
    # One score column per class, the box's own score in its class' column:
    # combined NMS then suppresses only within a class, with exact IoUs
    # (no coordinate offsets per class, which lose float32 precision).
    num_classes = tf.reduce_max(tf.concat([classes, [0]], axis=0)) + 1
    own = tf.equal(classes[:, None], tf.range(num_classes)[None, :])
    class_scores = tf.where(own, scores[:, None], _NEVER)
    result = batched_non_max_suppression(
        boxes[None], class_scores[None], iou_threshold=iou_threshold,
        score_threshold=score_threshold, max_detections=max_detections)
    count = result["num_detections"][0]
    return {key: result[key][0, :count] for key in ("boxes", "scores", "classes")}


def _check_same_length(name, values, boxes, rank):
    if values.shape.rank is not None and values.shape.rank != rank:
        raise ValueError(
            f"`{name}` must have rank {rank} (one value per box); received shape "
            f"{tuple(values.shape)}."
        )
    got, want = values.shape[0], boxes.shape[0]
    if got is not None and want is not None and got != want:
        raise ValueError(
            f"`{name}` must have one entry per box ({want}); received shape {tuple(values.shape)}."
        )


def batched_non_max_suppression(boxes, scores, iou_threshold=0.5, score_threshold=0.0,
                                max_detections=100):
    """Per-class greedy NMS over a batch, with a fixed output size (for SavedModels).

    Every box has one score per class (e.g. a detection head's sigmoid
    outputs); each (box, class) pair with score > `score_threshold` is a
    candidate, greedy NMS runs per image and class (a box is dropped when its
    IoU with a kept box of the same class is greater than `iou_threshold`),
    and the `max_detections` best-scoring survivors of each image are kept.
    Wraps `tf.image.combined_non_max_suppression` with `clip_boxes=False`
    (boxes are pixels, not [0, 1]).

    Args:
        boxes: float `[B, N, 4]` xyxy boxes in pixels.
        scores: float `[B, N, C]` class scores.
        iou_threshold: float in [0, 1].
        score_threshold: float; scores must be greater than this to be kept.
        max_detections: int >= 1, the output size per image.

    Returns:
        dict: `"boxes"` float32 `[B, max_detections, 4]`, `"scores"` float32
        `[B, max_detections]`, `"classes"` int32 `[B, max_detections]` and
        `"num_detections"` int32 `[B]`. Rows are sorted by decreasing score;
        rows past `num_detections` are padding (boxes 0, scores 0, classes -1).
    """
    iou_threshold, score_threshold, max_detections = _check_nms_arguments(
        iou_threshold, score_threshold, max_detections)
    boxes = _check_boxes("boxes", boxes, min_rank=3)
    scores = _as_float_tensor("scores", scores)
    if boxes.shape.rank != 3:
        raise ValueError(f"`boxes` must have shape [B, N, 4]; received shape {tuple(boxes.shape)}.")
    if scores.shape.rank != 3:
        raise ValueError(
            f"`scores` must have shape [B, N, C] (one score per class); received shape "
            f"{tuple(scores.shape)}."
        )
    for axis, axis_name in ((0, "batch size B"), (1, "number of boxes N")):
        got, want = scores.shape[axis], boxes.shape[axis]
        if got is not None and want is not None and got != want:
            raise ValueError(
                f"`scores` [B, N, C] must have the {axis_name} of `boxes` {tuple(boxes.shape)}; "
                f"received shape {tuple(scores.shape)}."
            )
    nmsed_boxes, nmsed_scores, nmsed_classes, valid = tf.image.combined_non_max_suppression(
        boxes[:, :, None, :], scores,
        max_output_size_per_class=max_detections, max_total_size=max_detections,
        iou_threshold=iou_threshold, score_threshold=score_threshold,
        pad_per_class=False, clip_boxes=False)
    is_real = tf.range(max_detections)[None, :] < valid[:, None]
    return {
        "boxes": tf.where(is_real[..., None], nmsed_boxes, 0.0),
        "scores": tf.where(is_real, nmsed_scores, 0.0),
        "classes": tf.where(is_real, tf.cast(nmsed_classes, tf.int32), -1),
        "num_detections": tf.cast(valid, tf.int32),
    }
