"""A compact two-stage Mask R-CNN: region proposals, box and class heads, per-class masks.

Mask R-CNN (He et al. 2017, "Mask R-CNN", ICCV) adds a small fully
convolutional mask branch to Faster R-CNN (Ren et al. 2015, "Faster R-CNN:
Towards Real-Time Object Detection with Region Proposal Networks", NIPS):

1. a backbone turns the image into one feature map (here stride 8, from the
   small from-scratch encoder `kerasvision.layers.apply_scratch_encoder`);
2. a region proposal network (RPN) slides a 3x3 convolution over it and, for
   each of A anchors per cell (a few sizes times a few aspect ratios),
   predicts an objectness logit and box deltas; proposals are the decoded,
   clipped anchors that survive non-maximum suppression;
3. RoIAlign (bilinear sampling at bin centres, no quantisation; here
   `tf.image.crop_and_resize` with boxes shifted so that its samples fall
   on the bin centres) cuts a 7x7 feature window per proposal for the box
   head (class logits over C + 1 classes, background first, and per-class
   box deltas) and a 14x14 window for the mask head (3x3 convolutions, a 2x
   transposed convolution, C mask logits of 28x28, one per class).

Training (`MaskRCNN.train_step`) follows the papers' approximate joint
training: proposals are treated as constants. Losses: RPN objectness
(binary cross-entropy on sampled anchors) and RPN deltas (Huber, positives);
head classes (softmax cross-entropy on sampled RoIs, the ground-truth boxes
appended to the proposals) and head deltas (Huber, positives, the true
class's deltas); mask (per-pixel sigmoid cross-entropy of the true class's
28x28 logits on positive RoIs, against the ground-truth instance mask cut
out of the image by the same RoIAlign). Inference (`detect_instances`) runs
the mask head on the final detections and pastes each 28x28 mask into its
box at the image's resolution.

Boxes follow `kerasvision.boxes`: float32 xyxy pixels, padding rows -1.
Training batches are the detection contract plus instance masks:
`{"images": [B, H, W, 3] in [0, 255], "bounding_boxes": {"boxes": [B, K, 4],
"labels": [B, K]}, "masks": [B, K, H, W]}` (binary, uint8 or bool).
"""

import copy

import keras
import numpy as np
import tensorflow as tf
from keras import layers

from kerasvision.boxes import batched_non_max_suppression, clip_boxes, iou_matrix
from kerasvision.layers import apply_scratch_encoder
from kerasvision.models.rcnn import DELTA_SCALE, decode_box_deltas, encode_box_deltas
from kerasvision.models.trainer import GenerativeTrainer
from kerasvision.validation import check_float, check_image_shape, check_int

MASK_SIZE = 28
"""Side of the predicted per-class masks (He et al. 2017: 28x28 from 14x14 RoI features)."""

BOX_ROI_SIZE = 7
MASK_ROI_SIZE = 14
# The RPN regresses unscaled deltas (Ren et al. 2015); the box head's are
# scaled as in `kerasvision.models.rcnn`, where their variance is smaller.
RPN_DELTA_SCALE = (1.0, 1.0, 1.0, 1.0)
# Huber transition of the smooth-L1 box losses (Girshick 2015 uses 1; on
# scaled deltas a smaller one keeps the loss near L1 for typical errors).
HUBER_DELTA = 1.0 / 9.0


# ---------------------------------------------------------------------------
# Anchors, RoIAlign and mask pasting: plain functions of tensors
# ---------------------------------------------------------------------------


def generate_anchors(feature_size, stride, sizes, ratios):
    """The RPN's anchors: every (size, ratio) pair centred on every feature-map cell.

    Cell `(i, j)` of a stride-`s` map covers image pixels `[j*s, (j+1)*s)` x
    `[i*s, (i+1)*s)`, so its anchors are centred on `((j + 0.5) s, (i + 0.5) s)`.
    An anchor of size `a` and ratio `r` (height / width) has width
    `a / sqrt(r)` and height `a * sqrt(r)` (area `a**2`).

    Args:
        feature_size: `(height, width)` of the feature map, in cells.
        stride: int, image pixels per cell.
        sizes: sequence of anchor sides in pixels.
        ratios: sequence of height / width ratios.

    Returns:
        float32 numpy `[height * width * A, 4]` xyxy pixels, `A = len(sizes) *
        len(ratios)`, ordered by row, then column, then (size, ratio) with the
        ratio varying fastest: the order of an RPN output `[h, w, A]` flattened.

    Example:
        >>> generate_anchors((2, 2), 8, sizes=(8,), ratios=(1.0,))[0]
        array([0., 0., 8., 8.], dtype=float32)
    """
    height, width = (check_int("feature_size", int(v), minimum=1) for v in feature_size)
    stride = check_int("stride", stride, minimum=1)
    shapes = []
    for size in sizes:
        size = check_float("sizes", size, minimum=0.0, strict_minimum=True)
        for ratio in ratios:
            ratio = check_float("ratios", ratio, minimum=0.0, strict_minimum=True)
            shapes.append((size / np.sqrt(ratio), size * np.sqrt(ratio)))
    shapes = np.asarray(shapes, np.float64)  # [A, 2] (width, height)
    cy, cx = np.meshgrid((np.arange(height) + 0.5) * stride, (np.arange(width) + 0.5) * stride,
                         indexing="ij")
    centres = np.stack([cx, cy], axis=-1).reshape(-1, 1, 2)  # [h*w, 1, 2]
    half = shapes[None] / 2
    anchors = np.concatenate([centres - half, centres + half], axis=-1)
    return anchors.reshape(-1, 4).astype(np.float32)


def _aligned_crop_boxes(boxes, stride, crop_size, source_height, source_width):
    """`crop_and_resize` boxes whose samples fall on the centres of `crop_size` bins of `boxes`.

    A value of a source map at index `i` lives at continuous coordinate
    `(i + 0.5) * stride` in image pixels. `crop_and_resize` samples the
    normalised box `[y1, x1, y2, x2]` at indices `y1 * (H - 1) + k * (y2 -
    y1) * (H - 1) / (S - 1)`, k = 0..S-1; solving for the bin centres
    `b1 + (k + 0.5) (b2 - b1) / S` (in map units) gives the box below. This
    is RoIAlign with one sample per bin (He et al. 2017 use 4; at the
    small RoIs of our images one is enough).
    """
    boxes = tf.cast(boxes, tf.float32) / float(stride)
    x1, y1, x2, y2 = tf.unstack(boxes, axis=-1)
    bin_w = (x2 - x1) / crop_size
    bin_h = (y2 - y1) / crop_size
    height = tf.maximum(tf.cast(source_height, tf.float32) - 1.0, 1.0)
    width = tf.maximum(tf.cast(source_width, tf.float32) - 1.0, 1.0)
    ny1 = (y1 + 0.5 * bin_h - 0.5) / height
    nx1 = (x1 + 0.5 * bin_w - 0.5) / width
    ny2 = ny1 + bin_h * (crop_size - 1) / height
    nx2 = nx1 + bin_w * (crop_size - 1) / width
    return tf.stack([ny1, nx1, ny2, nx2], axis=-1)


def roi_align(features, boxes, output_size, stride, box_indices=None):
    """RoIAlign (He et al. 2017) of xyxy pixel boxes on a feature map, via `tf.image.crop_and_resize`.

    Each box is divided into `output_size x output_size` bins and the map is
    bilinearly interpolated at each bin's centre (no rounding of the box to
    cells, the fix RoIAlign brought over RoIPool). Samples outside the map
    read 0.

    Args:
        features: float `[B, h, w, C]` map of stride `stride`.
        boxes: float `[B, R, 4]` xyxy image pixels (R boxes per image), or
            `[N, 4]` with `box_indices`.
        output_size: int, side of each output window.
        stride: int, image pixels per map cell (1 for an image-resolution map,
            e.g. a ground-truth mask).
        box_indices: optional int `[N]`, the image of each of `[N, 4]` boxes.

    Returns:
        float32 `[B * R, output_size, output_size, C]` (or `[N, ...]`), boxes of
        image 0 first.
    """
    features = tf.cast(features, tf.float32)
    boxes = tf.cast(boxes, tf.float32)
    if box_indices is None:
        count = tf.shape(boxes)[1]
        box_indices = tf.repeat(tf.range(tf.shape(boxes)[0]), count)
        boxes = tf.reshape(boxes, [-1, 4])
    shape = tf.shape(features)
    crop_boxes = _aligned_crop_boxes(boxes, stride, output_size, shape[1], shape[2])
    return tf.image.crop_and_resize(features, crop_boxes, tf.cast(box_indices, tf.int32),
                                    [output_size, output_size], method="bilinear",
                                    extrapolation_value=0.0)


def mask_targets(instance_masks, boxes, instance_indices, mask_size=MASK_SIZE):
    """Mask R-CNN's mask targets: each RoI's ground-truth instance mask, RoIAligned to `mask_size`.

    Args:
        instance_masks: `[B, K, H, W]` binary masks (bool or numbers) at the
            image resolution.
        boxes: float `[B, R, 4]` xyxy pixel RoIs.
        instance_indices: int `[B, R]`, the instance `0..K-1` of each RoI.
        mask_size: int, target side.

    Returns:
        float32 `[B * R, mask_size, mask_size]` of 0/1: the bilinear crop of the
        mask thresholded at 0.5.
    """
    masks = tf.cast(instance_masks, tf.float32)
    shape = tf.shape(masks)
    flat = tf.reshape(masks, [shape[0] * shape[1], shape[2], shape[3], 1])
    count = tf.shape(boxes)[1]
    images = tf.repeat(tf.range(shape[0]), count)
    indices = images * shape[1] + tf.reshape(tf.cast(instance_indices, tf.int32), [-1])
    crops = roi_align(flat, tf.reshape(boxes, [-1, 4]), mask_size, 1, box_indices=indices)
    return tf.cast(crops[..., 0] >= 0.5, tf.float32)


def paste_masks(masks, boxes, height, width):
    """Pastes each small mask into its box of a `height x width` image (bilinear, zero outside).

    Image pixel `x` (centre `x + 0.5`) reads the mask at the continuous
    coordinate `(x + 0.5 - x1) / (x2 - x1) * m`, interpolated bilinearly
    between mask-cell centres (edge cells extended to the box border); pixels
    whose centre lies outside the box are 0. Degenerate (padding) boxes give
    empty masks.

    Args:
        masks: float `[B, D, m, m]` per-pixel probabilities.
        boxes: float `[B, D, 4]` xyxy pixels of the output image.
        height, width: ints or scalar int tensors, the output size.

    Returns:
        float32 `[B, D, height, width]`.
    """
    masks = tf.cast(masks, tf.float32)
    boxes = tf.cast(boxes, tf.float32)
    size = masks.shape[-1] if masks.shape[-1] is not None else tf.shape(masks)[-1]
    size = tf.cast(size, tf.float32)
    batch, count = tf.shape(masks)[0], tf.shape(masks)[1]
    flat = tf.reshape(masks, [batch * count, tf.shape(masks)[2], tf.shape(masks)[3], 1])
    # One replicated cell around the mask: pixels between the outermost cell
    # centres and the box border read the edge value, not a blend with 0.
    padded = tf.pad(flat, [[0, 0], [1, 1], [1, 1], [0, 0]], mode="SYMMETRIC")
    last = size + 1.0  # index of the padded mask's last cell
    x1, y1, x2, y2 = tf.unstack(tf.reshape(boxes, [-1, 4]), axis=-1)
    box_w = tf.maximum(x2 - x1, 1e-6)
    box_h = tf.maximum(y2 - y1, 1e-6)
    height_f = tf.cast(height, tf.float32)
    width_f = tf.cast(width, tf.float32)
    # Padded index read by pixel 0, and the index step per pixel.
    start_x = (0.5 - x1) / box_w * size - 0.5 + 1.0
    start_y = (0.5 - y1) / box_h * size - 0.5 + 1.0
    end_x = start_x + size / box_w * (width_f - 1.0)
    end_y = start_y + size / box_h * (height_f - 1.0)
    crop_boxes = tf.stack([start_y / last, start_x / last, end_y / last, end_x / last], axis=-1)
    pasted = tf.image.crop_and_resize(padded, crop_boxes, tf.range(batch * count),
                                      tf.stack([height, width]), extrapolation_value=0.0)
    pasted = tf.reshape(pasted[..., 0], [batch, count, height, width])
    centres_x = tf.range(width_f) + 0.5
    centres_y = tf.range(height_f) + 0.5
    boxes = tf.reshape(boxes, [batch, count, 4])
    inside_x = ((centres_x[None, None, :] >= boxes[..., 0:1])
                & (centres_x[None, None, :] <= boxes[..., 2:3]))
    inside_y = ((centres_y[None, None, :] >= boxes[..., 1:2])
                & (centres_y[None, None, :] <= boxes[..., 3:4]))
    inside = tf.cast(inside_y[..., :, None] & inside_x[..., None, :], tf.float32)
    return pasted * inside


# ---------------------------------------------------------------------------
# Target assignment and sampling
# ---------------------------------------------------------------------------


def _ranks(values):
    """Rank of each entry of `values` `[B, N]` in decreasing order (0: the largest)."""
    order = tf.argsort(values, axis=-1, direction="DESCENDING", stable=True)
    return tf.argsort(order, axis=-1, stable=True)


def sample_subset(candidates, count, random):
    """A uniformly random subset of at most `count` of the `candidates` of each row.

    Args:
        candidates: bool `[B, N]`.
        count: int, or int `[B]` (one limit per row).
        random: float `[B, N]` uniform draws in [0, 1) that decide the choice.

    Returns:
        bool `[B, N]`, a subset of `candidates` with `min(count, candidates)` entries per row.
    """
    keys = tf.where(candidates, random, -1.0)
    count = tf.cast(count, tf.int32)
    if count.shape.rank == 1:
        count = count[:, None]
    return candidates & (_ranks(keys) < count)


def _gt_ious(boxes, gt_boxes, gt_valid):
    """IoU `[B, N, K]` of boxes with ground truth; -1 in the columns of padding rows."""
    ious = iou_matrix(boxes, gt_boxes)
    return tf.where(gt_valid[:, None, :], ious, -1.0)


def assign_anchor_targets(anchors, gt_boxes, gt_valid, positive_iou=0.7, negative_iou=0.3):
    """The RPN's anchor labels of Ren et al. 2015 (section 3.1.2).

    An anchor is positive when its IoU with some ground-truth box is >=
    `positive_iou`, or when it is (one of) the anchor(s) of highest IoU with
    some box (so that every object has an anchor even when no IoU reaches the
    threshold); negative when its highest IoU is < `negative_iou` and it is
    not positive; ignored otherwise.

    Args:
        anchors: float `[N, 4]` xyxy pixels.
        gt_boxes: float `[B, K, 4]` xyxy pixels, padding rows -1.
        gt_valid: bool `[B, K]`, False on padding rows.
        positive_iou, negative_iou: floats, the IoU thresholds.

    Returns:
        `(positive, negative, matched)`: bool `[B, N]`, bool `[B, N]`, and int32
        `[B, N]` the index of each anchor's best ground-truth box.
    """
    gt_boxes = tf.cast(gt_boxes, tf.float32)
    anchors = tf.broadcast_to(tf.cast(anchors, tf.float32)[None],
                              [tf.shape(gt_boxes)[0], tf.shape(anchors)[0], 4])
    ious = _gt_ious(anchors, gt_boxes, gt_valid)
    best = tf.reduce_max(ious, axis=-1)
    matched = tf.argmax(ious, axis=-1, output_type=tf.int32)
    best_per_gt = tf.reduce_max(ious, axis=1, keepdims=True)  # [B, 1, K]
    is_best = tf.reduce_any((ious >= best_per_gt) & (best_per_gt > 0.0), axis=-1)
    # The anchor kept for a box through "best for this box" must point at that box.
    best_gt_for_anchor = tf.argmax(tf.where((ious >= best_per_gt) & (best_per_gt > 0.0),
                                            ious, -2.0), axis=-1, output_type=tf.int32)
    matched = tf.where(is_best & (best < positive_iou), best_gt_for_anchor, matched)
    positive = (best >= positive_iou) | is_best
    negative = (best < negative_iou) & ~positive
    return positive, negative, matched


def _check_instance_masks(masks, boxes, images):
    """Raise unless `masks` is `[B, K, H, W]`: one mask per box row, at the image's size.

    Static shapes only (this runs while `fit` traces the step), which is
    where a mismatch would otherwise surface as a gather or reshape error.
    """
    shape = tuple(masks.shape)
    expected = (boxes.shape[0], boxes.shape[1], images.shape[1], images.shape[2])
    if len(shape) != 4 or any(got is not None and want is not None and got != want
                              for got, want in zip(shape, expected)):
        raise ValueError(
            "`masks` must have shape [batch, K, height, width]: one instance mask per box row "
            f"(K = {expected[1]}, padding rows included) at the images' size "
            f"{tuple(images.shape[1:3])}; received masks of shape {shape} for boxes of shape "
            f"{tuple(boxes.shape)}.")


def _gather_boxes(gt_boxes, indices):
    return tf.gather(gt_boxes, indices, batch_dims=1)


def _huber(error, delta=HUBER_DELTA):
    """Smooth-L1 (Huber) per element: quadratic below `delta`, linear above, slope 1."""
    error = tf.abs(error)
    return tf.where(error < delta, 0.5 * tf.square(error) / delta, error - 0.5 * delta)


def _global_sum(value):
    """`value` summed over the replicas in sync (itself outside a multi-replica step)."""
    context = tf.distribute.get_replica_context()
    if context is None or context.num_replicas_in_sync == 1:
        return value
    return context.all_reduce(tf.distribute.ReduceOp.SUM, value)


# ---------------------------------------------------------------------------
# Networks
# ---------------------------------------------------------------------------


def build_mask_rcnn_networks(num_classes, input_shape=(128, 128, 3), scratch_filters=(32, 64, 128),
                             num_anchors=9, rpn_filters=128, fc_units=256, mask_filters=64,
                             mask_convs=2):
    """The four networks of a compact Mask R-CNN, as functional models.

    Args:
        num_classes: int C >= 1, object classes (background excluded).
        input_shape: `(H, W, 3)`, sides multiples of 8.
        scratch_filters: three ints, widths of the from-scratch encoder's
            stride-2 stages (the feature map has stride 8).
        num_anchors: int A, anchors per feature cell.
        rpn_filters: int, width of the RPN's 3x3 convolution.
        fc_units: int, width of the box head's two dense layers.
        mask_filters: int, width of the mask head's convolutions.
        mask_convs: int >= 1, 3x3 convolutions of the mask head before the
            2x transposed convolution (the paper's C4 head uses 4 at 256).

    Returns:
        dict of `keras.Model`s:
        - `"backbone"`: images `[B, H, W, 3]` in [0, 255] -> features `[B, H/8, W/8, F]`;
        - `"rpn"`: features -> `[B, h*w*A]` objectness logits and `[B, h*w*A, 4]` deltas;
        - `"box_head"`: RoI features `[R, 7, 7, F]` -> class logits `[R, C + 1]`
          (background first) and deltas `[R, C, 4]`;
        - `"mask_head"`: RoI features `[R, 14, 14, F]` -> mask logits `[R, 28, 28, C]`.
    """
    num_classes = check_int("num_classes", num_classes, minimum=1)
    input_shape = check_image_shape(input_shape, multiple_of=8, min_size=16)
    filters = tuple(scratch_filters)
    images = keras.Input(input_shape, name="images")
    features = apply_scratch_encoder(images, filters, 3, batch_norm=True, name="stage")
    backbone = keras.Model(images, features, name="backbone")

    feature_shape = tuple(features.shape[1:])
    height, width, channels = feature_shape
    small = keras.initializers.RandomNormal(stddev=0.01)
    inputs = keras.Input(feature_shape, name="features")
    x = layers.Conv2D(rpn_filters, 3, padding="same", activation="relu",
                      kernel_initializer=small, name="rpn_conv")(inputs)
    objectness = layers.Conv2D(num_anchors, 1, kernel_initializer=small,
                               name="rpn_objectness")(x)
    deltas = layers.Conv2D(4 * num_anchors, 1, kernel_initializer=small, name="rpn_deltas")(x)
    # Flattened in the order of `generate_anchors`: row, column, anchor.
    objectness = layers.Reshape((height * width * num_anchors,), name="rpn_objectness_flat")(
        objectness)
    deltas = layers.Reshape((height * width * num_anchors, 4), name="rpn_deltas_flat")(deltas)
    rpn = keras.Model(inputs, [objectness, deltas], name="rpn")

    roi = keras.Input((BOX_ROI_SIZE, BOX_ROI_SIZE, channels), name="box_roi_features")
    x = layers.Flatten(name="box_flatten")(roi)
    x = layers.Dense(fc_units, activation="relu", name="box_fc1")(x)
    x = layers.Dense(fc_units, activation="relu", name="box_fc2")(x)
    class_logits = layers.Dense(num_classes + 1, kernel_initializer=small,
                                name="box_class_logits")(x)
    box_deltas = layers.Dense(4 * num_classes,
                              kernel_initializer=keras.initializers.RandomNormal(stddev=0.001),
                              name="box_deltas")(x)
    box_deltas = layers.Reshape((num_classes, 4), name="box_deltas_per_class")(box_deltas)
    box_head = keras.Model(roi, [class_logits, box_deltas], name="box_head")

    roi = keras.Input((MASK_ROI_SIZE, MASK_ROI_SIZE, channels), name="mask_roi_features")
    x = roi
    for index in range(1, check_int("mask_convs", mask_convs, minimum=1) + 1):
        x = layers.Conv2D(mask_filters, 3, padding="same", activation="relu",
                          kernel_initializer="he_normal", name=f"mask_conv{index}")(x)
    x = layers.Conv2DTranspose(mask_filters, 2, strides=2, activation="relu",
                               kernel_initializer="he_normal", name="mask_upsample")(x)
    mask_logits = layers.Conv2D(num_classes, 1, name="mask_logits")(x)
    mask_head = keras.Model(roi, mask_logits, name="mask_head")
    return {"backbone": backbone, "rpn": rpn, "box_head": box_head, "mask_head": mask_head}


def build_mask_rcnn(num_classes, input_shape=(128, 128, 3), scratch_filters=(32, 64, 128),
                    anchor_sizes=(16.0, 32.0, 64.0), anchor_ratios=(0.5, 1.0, 2.0),
                    rpn_filters=128, fc_units=256, mask_filters=64, mask_convs=2, seed=None,
                    **kwargs):
    """A compact Mask R-CNN (He et al. 2017) on a stride-8 from-scratch encoder.

    Args:
        num_classes: int C >= 1, object classes (background excluded).
        input_shape: `(H, W, 3)`, sides multiples of 8.
        scratch_filters, rpn_filters, fc_units, mask_filters, mask_convs: see
            `build_mask_rcnn_networks`.
        anchor_sizes: anchor sides in pixels (the shapes scenes' objects are
            12%-40% of the image side: 15-51 px at 128).
        anchor_ratios: anchor height / width ratios.
        seed: int or None, seeds the samplers of the training step.
        **kwargs: `MaskRCNN` hyperparameters (sampling sizes, IoU thresholds,
            proposal counts, loss weights).

    Returns:
        `MaskRCNN`, to be compiled with an optimizer (`model.compile(optimizer)`).

    Example:
        >>> model = build_mask_rcnn(4, (64, 64, 3), scratch_filters=(8, 16, 16))
        >>> model.compile(keras.optimizers.Adam(1e-3))
        >>> found = detect_instances(model, images)  # boxes, scores, classes, masks
    """
    networks = build_mask_rcnn_networks(
        num_classes, input_shape, scratch_filters, len(anchor_sizes) * len(anchor_ratios),
        rpn_filters, fc_units, mask_filters, mask_convs)
    return MaskRCNN(num_classes=num_classes, anchor_sizes=anchor_sizes,
                    anchor_ratios=anchor_ratios, seed=seed, **networks, **kwargs)


@keras.saving.register_keras_serializable(package="kerasvision")
class MaskRCNN(GenerativeTrainer):
    """Mask R-CNN trainer and inference model over four networks (`build_mask_rcnn_networks`).

    The trainer mechanics (loss trackers, seed generator, optimizer built at
    compile, loss scaling, config of the networks) come from
    `GenerativeTrainer`. Each training step (`compute_losses`):

    1. RPN: anchors labelled by `assign_anchor_targets`, `rpn_batch_size`
       sampled per image with at most half positive; objectness BCE on the
       sampled ones, Huber on the deltas of the positive ones.
    2. Proposals: deltas decoded on the anchors, clipped, the best
       `pre_nms_proposals` by objectness, NMS at `proposal_iou`, the best
       `train_proposals` kept; gradients stopped (approximate joint training).
    3. Heads: the ground-truth boxes are appended to the proposals; a RoI is
       foreground when its best IoU is >= `foreground_iou`, else background;
       `rois_per_image` sampled with at most `foreground_fraction` foreground
       (foreground first); softmax cross-entropy on classes, Huber on the true
       class's deltas of the foreground.
    4. Masks: the foreground slots (the first `foreground_fraction *
       rois_per_image` of each image) go through the mask head; per-pixel
       sigmoid BCE of the true class's 28x28 logits against `mask_targets`.

    Losses are reduced as sums divided by the global batch's fixed counts
    (anchors and RoIs sampled per image), and the mask loss by the number of
    foreground RoIs over all replicas, so that a distributed step equals the
    single-device one. `loss` is their weighted sum.

    Args:
        backbone, rpn, box_head, mask_head: the networks of
            `build_mask_rcnn_networks`.
        num_classes: int C.
        anchor_sizes, anchor_ratios: the anchors the RPN was built for.
        rpn_batch_size: int, anchors sampled per image for the RPN loss.
        rpn_positive_iou, rpn_negative_iou: anchor labelling thresholds.
        pre_nms_proposals: int, proposals kept by objectness before NMS.
        proposal_iou: float, the proposals' NMS threshold.
        train_proposals, inference_proposals: int, proposals kept after NMS.
        rois_per_image: int, RoIs sampled per image for the heads.
        foreground_fraction: float, largest share of foreground RoIs.
        foreground_iou: float, IoU that makes a RoI foreground.
        mask_loss_weight: float, weight of the mask loss in `loss`.
        score_threshold, iou_threshold, max_detections: `call`'s detection settings.
        seed: int or None, the samplers' seed.
    """

    NETWORKS = ("backbone", "rpn", "box_head", "mask_head")
    LOSS_NAMES = ("loss", "rpn_objectness_loss", "rpn_box_loss", "class_loss", "box_loss",
                  "mask_loss")

    def __init__(self, backbone, rpn, box_head, mask_head, num_classes,
                 anchor_sizes=(16.0, 32.0, 64.0), anchor_ratios=(0.5, 1.0, 2.0),
                 rpn_batch_size=256, rpn_positive_iou=0.7, rpn_negative_iou=0.3,
                 pre_nms_proposals=600, proposal_iou=0.7, train_proposals=128,
                 inference_proposals=100, rois_per_image=64, foreground_fraction=0.25,
                 foreground_iou=0.5, mask_loss_weight=1.0, score_threshold=0.05,
                 iou_threshold=0.5, max_detections=100, seed=None, **kwargs):
        super().__init__(seed=seed, **kwargs)
        self.backbone = backbone
        self.rpn = rpn
        self.box_head = box_head
        self.mask_head = mask_head
        self.num_classes = check_int("num_classes", num_classes, minimum=1)
        self.anchor_sizes = tuple(float(v) for v in anchor_sizes)
        self.anchor_ratios = tuple(float(v) for v in anchor_ratios)
        self.rpn_batch_size = check_int("rpn_batch_size", rpn_batch_size, minimum=2)
        self.rpn_positive_iou = check_float("rpn_positive_iou", rpn_positive_iou, 0.0, 1.0)
        self.rpn_negative_iou = check_float("rpn_negative_iou", rpn_negative_iou, 0.0,
                                            self.rpn_positive_iou)
        self.pre_nms_proposals = check_int("pre_nms_proposals", pre_nms_proposals, minimum=1)
        self.proposal_iou = check_float("proposal_iou", proposal_iou, 0.0, 1.0)
        self.train_proposals = check_int("train_proposals", train_proposals, minimum=1)
        self.inference_proposals = check_int("inference_proposals", inference_proposals,
                                             minimum=1)
        self.rois_per_image = check_int("rois_per_image", rois_per_image, minimum=2)
        if self.rois_per_image > self.train_proposals:
            raise ValueError(
                f"`rois_per_image` ({rois_per_image}) must be <= `train_proposals` "
                f"({train_proposals}): the RoIs are sampled from the proposals.")
        self.foreground_fraction = check_float("foreground_fraction", foreground_fraction,
                                               0.0, 1.0, strict_minimum=True)
        self.foreground_iou = check_float("foreground_iou", foreground_iou, 0.0, 1.0)
        self.mask_loss_weight = check_float("mask_loss_weight", mask_loss_weight, minimum=0.0)
        self.score_threshold = check_float("score_threshold", score_threshold)
        self.iou_threshold = check_float("iou_threshold", iou_threshold, 0.0, 1.0)
        self.max_detections = check_int("max_detections", max_detections, minimum=1)
        self.max_foreground = max(1, round(self.foreground_fraction * self.rois_per_image))

        image_shape = tuple(backbone.input_shape[1:])
        feature_shape = tuple(backbone.output_shape[1:3])
        self.stride = image_shape[0] // feature_shape[0]
        num_anchors = len(self.anchor_sizes) * len(self.anchor_ratios)
        expected = feature_shape[0] * feature_shape[1] * num_anchors
        if rpn.output_shape[0][-1] != expected:
            raise ValueError(
                f"`rpn` predicts {rpn.output_shape[0][-1]} anchors, but {len(self.anchor_sizes)}"
                f" anchor_sizes x {len(self.anchor_ratios)} anchor_ratios on the "
                f"{feature_shape} feature map make {expected}; build both with the same anchors.")
        self.anchors = tf.constant(generate_anchors(feature_shape, self.stride, self.anchor_sizes,
                                                    self.anchor_ratios))

    def expected_image_shape(self):
        return tuple(self.backbone.input_shape[1:])

    @property
    def image_size(self):
        """`(height, width)` of the images the networks take."""
        return tuple(self.backbone.input_shape[1:3])

    # ------------------------------------------------------------------
    # Shared pieces of training and inference
    # ------------------------------------------------------------------

    def propose(self, objectness, rpn_deltas, num_proposals):
        """Proposals from RPN outputs: decode, clip, top by objectness, NMS.

        Args:
            objectness: float `[B, N]` logits.
            rpn_deltas: float `[B, N, 4]`.
            num_proposals: int, proposals kept per image after NMS.

        Returns:
            `(boxes [B, num_proposals, 4] xyxy pixels, valid bool [B, num_proposals])`;
            invalid rows (fewer survivors) are zero boxes.
        """
        height, width = self.image_size
        scores = tf.sigmoid(tf.cast(objectness, tf.float32))
        boxes = decode_box_deltas(self.anchors[None], tf.cast(rpn_deltas, tf.float32),
                                  scale=RPN_DELTA_SCALE)
        boxes = clip_boxes(boxes, height, width)
        # Boxes under a pixel wide carry no RoI: out of the NMS (score 0 is never kept).
        sizes = boxes[..., 2:] - boxes[..., :2]
        scores = tf.where(tf.reduce_all(sizes >= 1.0, axis=-1), scores, 0.0)
        count = min(self.pre_nms_proposals, int(self.anchors.shape[0]))
        scores, order = tf.math.top_k(scores, k=count)
        boxes = tf.gather(boxes, order, batch_dims=1)
        kept = batched_non_max_suppression(boxes, scores[..., None],
                                           iou_threshold=self.proposal_iou, score_threshold=0.0,
                                           max_detections=num_proposals)
        valid = tf.range(num_proposals)[None, :] < kept["num_detections"][:, None]
        return kept["boxes"], valid

    def _class_detections(self, proposals, valid, class_logits, box_deltas, score_threshold,
                          iou_threshold, max_detections):
        """Per-class boxes and scores of the box head, then per-class NMS."""
        height, width = self.image_size
        batch = tf.shape(proposals)[0]
        count = tf.shape(proposals)[1]
        probabilities = tf.nn.softmax(tf.cast(class_logits, tf.float32), axis=-1)
        probabilities = tf.reshape(probabilities, [batch, count, self.num_classes + 1])[..., 1:]
        deltas = tf.reshape(tf.cast(box_deltas, tf.float32), [batch, count, self.num_classes, 4])
        boxes = decode_box_deltas(proposals[:, :, None, :], deltas, scale=DELTA_SCALE)
        boxes = clip_boxes(boxes, height, width)  # [B, P, C, 4]
        probabilities = tf.where(valid[..., None], probabilities, 0.0)
        # One row per (proposal, class), its score in its own class' column
        # only: `batched_non_max_suppression` then suppresses within a class.
        boxes = tf.reshape(boxes, [batch, count * self.num_classes, 4])
        own = tf.eye(self.num_classes)[None, None]  # [1, 1, C, C]
        scores = tf.reshape(probabilities[..., None] * own,
                            [batch, count * self.num_classes, self.num_classes])
        return batched_non_max_suppression(boxes, scores, iou_threshold=iou_threshold,
                                           score_threshold=score_threshold,
                                           max_detections=max_detections)

    def _class_masks(self, mask_logits, classes):
        """The logits `[R, 28, 28]` of each RoI's class, from `[R, 28, 28, C]`."""
        mask_logits = tf.cast(mask_logits, tf.float32)
        picked = tf.gather(tf.transpose(mask_logits, [0, 3, 1, 2]),
                           tf.maximum(tf.cast(classes, tf.int32), 0), batch_dims=1)
        return picked

    def predict_instances(self, images, score_threshold=None, iou_threshold=None,
                          max_detections=None):
        """Detections and their 28x28 mask probabilities, at the model's input size.

        Args:
            images: float `[B, H, W, 3]` in [0, 255] at the model's input size.
            score_threshold, iou_threshold, max_detections: the detection
                settings (None: the model's).

        Returns:
            dict `boxes` float32 `[B, D, 4]` xyxy pixels, `scores` `[B, D]`,
            `classes` int32 `[B, D]` (-1 padding), `num_detections` int32 `[B]`,
            `mask_probabilities` float32 `[B, D, 28, 28]` (the box's own
            frame; `paste_masks` puts them into the image), D = `max_detections`.
        """
        score_threshold = self.score_threshold if score_threshold is None else score_threshold
        iou_threshold = self.iou_threshold if iou_threshold is None else iou_threshold
        max_detections = self.max_detections if max_detections is None else max_detections
        images = tf.cast(images, tf.float32)
        features = self.backbone(images, training=False)
        objectness, rpn_deltas = self.rpn(features, training=False)
        proposals, valid = self.propose(objectness, rpn_deltas, self.inference_proposals)
        class_logits, box_deltas = self.box_head(
            roi_align(features, proposals, BOX_ROI_SIZE, self.stride), training=False)
        found = self._class_detections(proposals, valid, class_logits, box_deltas,
                                       score_threshold, iou_threshold, max_detections)
        # The mask branch runs on the final detections (He et al. 2017, section 3.1).
        mask_logits = self.mask_head(
            roi_align(features, found["boxes"], MASK_ROI_SIZE, self.stride), training=False)
        picked = self._class_masks(mask_logits, tf.reshape(found["classes"], [-1]))
        batch = tf.shape(images)[0]
        found["mask_probabilities"] = tf.reshape(
            tf.sigmoid(picked), [batch, max_detections, MASK_SIZE, MASK_SIZE])
        return found

    def call(self, images, training=False):
        """The inference path: `predict_instances` with the model's settings."""
        return self.predict_instances(images)

    # ------------------------------------------------------------------
    # Training
    # ------------------------------------------------------------------

    def _uniform_like(self, x):
        """Uniform draws `[B, N]` shaped like `x`, from the trainer's seed generator."""
        columns = x.shape[1] if x.shape[1] is not None else tf.shape(x)[1]
        return self._random_uniform((tf.shape(x)[0], columns))

    def _sample_rois(self, proposals, proposal_valid, gt_boxes, gt_valid):
        """Foreground-first sampled RoIs, their labels and matched ground truth.

        Returns:
            `(rois [B, R, 4], matched [B, R] int32, foreground [B, R] bool,
            sampled [B, R] bool)`.
        """
        rois = tf.concat([proposals, gt_boxes], axis=1)
        valid = tf.concat([proposal_valid, gt_valid], axis=1)
        ious = _gt_ious(rois, gt_boxes, gt_valid)
        best = tf.reduce_max(ious, axis=-1)
        matched = tf.argmax(ious, axis=-1, output_type=tf.int32)
        foreground = valid & (best >= self.foreground_iou)
        background = valid & (best < self.foreground_iou)
        take_foreground = sample_subset(foreground, self.max_foreground,
                                        self._uniform_like(best))
        remaining = self.rois_per_image - tf.reduce_sum(tf.cast(take_foreground, tf.int32), -1)
        take_background = sample_subset(background, remaining, self._uniform_like(best))
        # Foreground first, then background, then unsampled rows (weight 0).
        priority = (2.0 * tf.cast(take_foreground, tf.float32)
                    + tf.cast(take_background, tf.float32) + 0.5 * self._uniform_like(best))
        _, order = tf.math.top_k(priority, k=self.rois_per_image)
        picked = [tf.gather(values, order, batch_dims=1)
                  for values in (rois, matched, take_foreground, take_foreground | take_background)]
        return tuple(picked)

    def compute_losses(self, data, training=False):
        """The five losses of one batch and their weighted sum `loss` (per-replica values).

        Args:
            data: dict `{"images", "bounding_boxes": {"boxes", "labels"}, "masks"}`.
            training: bool, batch normalisation in training mode.
        """
        images = tf.cast(data["images"], tf.float32)
        gt_boxes = tf.cast(data["bounding_boxes"]["boxes"], tf.float32)
        gt_labels = tf.cast(data["bounding_boxes"]["labels"], tf.int32)
        gt_masks = data["masks"]
        _check_instance_masks(gt_masks, gt_boxes, images)
        gt_valid = gt_labels >= 0
        batch = tf.shape(images)[0]
        batch_f = tf.cast(batch, tf.float32)

        # 1. RPN on the anchors: sampled objectness BCE and positive deltas.
        features = self.backbone(images, training=training)
        objectness, rpn_deltas = self.rpn(features, training=training)
        objectness = tf.cast(objectness, tf.float32)
        rpn_deltas = tf.cast(rpn_deltas, tf.float32)
        positive, negative, matched = assign_anchor_targets(
            self.anchors, gt_boxes, gt_valid, self.rpn_positive_iou, self.rpn_negative_iou)
        take_positive = sample_subset(positive, self.rpn_batch_size // 2,
                                      self._uniform_like(objectness))
        remaining = self.rpn_batch_size - tf.reduce_sum(tf.cast(take_positive, tf.int32), -1)
        take_negative = sample_subset(negative, remaining, self._uniform_like(objectness))
        sampled = tf.cast(take_positive | take_negative, tf.float32)
        anchor_count = batch_f * self.rpn_batch_size
        bce = tf.nn.sigmoid_cross_entropy_with_logits(
            labels=tf.cast(take_positive, tf.float32), logits=objectness)
        rpn_objectness_loss = tf.reduce_sum(bce * sampled) / anchor_count
        targets = encode_box_deltas(tf.broadcast_to(self.anchors[None], tf.shape(rpn_deltas)),
                                    _gather_boxes(gt_boxes, matched), scale=RPN_DELTA_SCALE)
        rpn_box_loss = tf.reduce_sum(
            tf.reduce_sum(_huber(rpn_deltas - targets), -1) * tf.cast(take_positive, tf.float32)
        ) / anchor_count

        # 2. Proposals, constants for the heads (approximate joint training).
        proposals, proposal_valid = self.propose(
            tf.stop_gradient(objectness), tf.stop_gradient(rpn_deltas), self.train_proposals)

        # 3. Box head on sampled RoIs, ground truth appended.
        rois, roi_matched, foreground, roi_sampled = self._sample_rois(
            proposals, proposal_valid, gt_boxes, gt_valid)
        rois = tf.stop_gradient(rois)
        class_logits, box_deltas = self.box_head(
            roi_align(features, rois, BOX_ROI_SIZE, self.stride), training=training)
        roi_classes = tf.gather(gt_labels, roi_matched, batch_dims=1)  # [B, R]
        labels = tf.where(foreground, roi_classes + 1, 0)
        roi_count = batch_f * self.rois_per_image
        cross_entropy = tf.nn.sparse_softmax_cross_entropy_with_logits(
            labels=tf.reshape(labels, [-1]), logits=tf.cast(class_logits, tf.float32))
        class_loss = tf.reduce_sum(cross_entropy * tf.reshape(tf.cast(roi_sampled, tf.float32),
                                                              [-1])) / roi_count
        box_deltas = tf.reshape(tf.cast(box_deltas, tf.float32), [-1, self.num_classes, 4])
        own_deltas = tf.gather(box_deltas, tf.maximum(tf.reshape(roi_classes, [-1]), 0),
                               batch_dims=1)
        box_targets = encode_box_deltas(tf.reshape(rois, [-1, 4]),
                                        tf.reshape(_gather_boxes(gt_boxes, roi_matched), [-1, 4]),
                                        scale=DELTA_SCALE)
        foreground_f = tf.reshape(tf.cast(foreground, tf.float32), [-1])
        box_loss = tf.reduce_sum(tf.reduce_sum(_huber(own_deltas - box_targets), -1)
                                 * foreground_f) / roi_count

        # 4. Mask head on the foreground slots (the first `max_foreground` of each image).
        slots = self.max_foreground
        mask_rois = rois[:, :slots]
        mask_foreground = tf.reshape(tf.cast(foreground[:, :slots], tf.float32), [-1])
        mask_logits = self.mask_head(
            roi_align(features, mask_rois, MASK_ROI_SIZE, self.stride), training=training)
        picked = self._class_masks(mask_logits, tf.reshape(roi_classes[:, :slots], [-1]))
        targets = mask_targets(gt_masks, mask_rois, roi_matched[:, :slots])
        pixel_bce = tf.reduce_mean(
            tf.nn.sigmoid_cross_entropy_with_logits(labels=targets, logits=picked), axis=[1, 2])
        # Averaged over the foreground RoIs of the global batch (He et al. 2017).
        num_replicas = 1 if tf.distribute.get_replica_context() is None else (
            tf.distribute.get_replica_context().num_replicas_in_sync)
        foreground_count = tf.maximum(_global_sum(tf.reduce_sum(mask_foreground)), 1.0)
        mask_loss = (tf.reduce_sum(pixel_bce * mask_foreground) * num_replicas
                     / foreground_count)

        loss = (rpn_objectness_loss + rpn_box_loss + class_loss + box_loss
                + self.mask_loss_weight * mask_loss)
        return {"loss": loss, "rpn_objectness_loss": rpn_objectness_loss,
                "rpn_box_loss": rpn_box_loss, "class_loss": class_loss, "box_loss": box_loss,
                "mask_loss": mask_loss}

    def train_step(self, data):
        with tf.GradientTape() as tape:
            losses = self.compute_losses(data, training=True)
        variables = self.trainable_variables
        grads = self._scaled_gradients(tape, losses["loss"], variables, self.optimizer)
        self.optimizer.apply(grads, variables)
        return self._update_trackers(losses)

    @classmethod
    def from_config(cls, config):
        # Deserializing a functional model consumes its config dict in place:
        # work on a copy, so the caller's config can be serialized again.
        return super().from_config(copy.deepcopy(config))

    def get_config(self):
        return {
            **super().get_config(),
            "num_classes": self.num_classes,
            "anchor_sizes": list(self.anchor_sizes),
            "anchor_ratios": list(self.anchor_ratios),
            "rpn_batch_size": self.rpn_batch_size,
            "rpn_positive_iou": self.rpn_positive_iou,
            "rpn_negative_iou": self.rpn_negative_iou,
            "pre_nms_proposals": self.pre_nms_proposals,
            "proposal_iou": self.proposal_iou,
            "train_proposals": self.train_proposals,
            "inference_proposals": self.inference_proposals,
            "rois_per_image": self.rois_per_image,
            "foreground_fraction": self.foreground_fraction,
            "foreground_iou": self.foreground_iou,
            "mask_loss_weight": self.mask_loss_weight,
            "score_threshold": self.score_threshold,
            "iou_threshold": self.iou_threshold,
            "max_detections": self.max_detections,
        }


def check_mask_rcnn(model):
    """Raise a ValueError naming `model` unless it is a `MaskRCNN`; returns it."""
    is_mask_rcnn = isinstance(model, MaskRCNN)
    if not is_mask_rcnn:
        raise ValueError("`model` must be a MaskRCNN (kerasvision.models.mask_rcnn."
                         f"build_mask_rcnn); received a {type(model).__name__}.")
    return model


def detect_instances(model, images, score_threshold=0.05, iou_threshold=0.5, max_detections=100,
                     mask_threshold=0.5):
    """Boxes, classes, scores and instance masks of a batch, masks pasted at the input resolution.

    Args:
        model: a `MaskRCNN`.
        images: float or uint8 `[B, H, W, 3]` in [0, 255] at the model's input size.
        score_threshold: float, lowest class probability kept.
        iou_threshold: float, per-class NMS threshold.
        max_detections: int, detections per image (D).
        mask_threshold: float, probability at which a pasted pixel is in the mask.

    Returns:
        dict `boxes` float32 `[B, D, 4]` xyxy pixels, `scores` float32 `[B, D]`,
        `classes` int32 `[B, D]` (-1 padding), `num_detections` int32 `[B]`, and
        `masks` uint8 `[B, D, H, W]` (0/1; all 0 in padding rows).
    """
    check_mask_rcnn(model)
    images = tf.convert_to_tensor(images)
    expected = model.image_size
    if images.shape.rank != 4 or tuple(images.shape[1:3]) != expected or images.shape[3] != 3:
        raise ValueError(f"`images` must have shape [batch, {expected[0]}, {expected[1]}, 3] "
                         f"(the model's input size); received shape {tuple(images.shape)}.")
    mask_threshold = check_float("mask_threshold", mask_threshold, 0.0, 1.0)
    found = model.predict_instances(images, score_threshold, iou_threshold, max_detections)
    probabilities = paste_masks(found.pop("mask_probabilities"), found["boxes"], *expected)
    found["masks"] = tf.cast(probabilities >= mask_threshold, tf.uint8)
    return found
