"""R-CNN: region proposals, a CNN on each warped region, class-specific box regression.

Girshick, Donahue, Darrell and Malik, "Rich feature hierarchies for accurate
object detection and semantic segmentation", CVPR 2014 (R-CNN). Detection in
three stages:

1. about two thousand class-agnostic region proposals per image from
   selective search (Uijlings, van de Sande, Gevers and Smeulders,
   "Selective Search for Object Recognition", IJCV 2013): a graph-based
   over-segmentation whose regions are merged greedily by colour, texture,
   size and fill similarity; every region of the hierarchy is a proposal
   (`selective_search`, OpenCV's `cv2.ximgproc` implementation);
2. each proposal, dilated by a margin of context and warped to a fixed size
   whatever its aspect ratio (`warp_proposals`), goes through a CNN that
   scores it among the C classes and background;
3. per class, a regressor moves the proposal towards the object
   (`encode_box_deltas`: centre shifts in units of the proposal's size,
   log size ratios), then greedy non-maximum suppression per class
   (`rcnn_detect`).

Every proposal is a separate CNN pass (no computation shared between
overlapping regions) and the proposals come from a CPU algorithm: the two
bottlenecks that SPP-net, Fast R-CNN and Faster R-CNN later removed.
`rcnn_detect(..., timings=dict)` measures both.

Departures from the paper, each for this package's setting:
- one network is trained end to end with a softmax over C + 1 classes and a
  smooth-L1 box loss (Fast R-CNN's multi-task loss), instead of fine-tuning
  a CNN, then training one linear SVM per class and ridge regressors on
  pool5 features;
- the CNN is a small from-scratch network on 64 px crops by default
  (`backbone=None`, trains on a CPU), or a registered backbone
  ("vgg16", "resnet50") on its stride-32 features;
- regression targets are scaled by `DELTA_SCALE` (Fast R-CNN's target
  normalisation), so that both losses have comparable magnitudes.

Training inputs are crops, not images: `make_rcnn_training_data` turns a
dataset of the detection contract into a dataset of `(crops, targets)`,
eagerly (selective search is OpenCV code outside the TensorFlow graph).
"""

import hashlib
import time

import numpy as np
import keras
import tensorflow as tf
from keras import layers

from kerasvision.backbones import build_backbone, get_backbone_spec, resolve_weights
from kerasvision.boxes import iou_matrix, non_max_suppression
from kerasvision.layers import apply_scratch_encoder
from kerasvision.validation import check_choice, check_float, check_int

EXTRA_HINT = "pip install kerasvision[rcnn]"
PROPOSAL_MODES = ("fast", "quality", "single")
# Widths of the from-scratch CNN's stride-2 stages (backbone=None): 64 px crops -> 4x4.
SCRATCH_FILTERS = (32, 64, 128, 128)
# Fast R-CNN's target normalisation: centre shifts are ~0.1 of a proposal's size and
# log size ratios ~0.2, so these bring the regression targets near unit variance.
DELTA_SCALE = (10.0, 10.0, 5.0, 5.0)
# exp() of larger log ratios overflows; a box 1000/16 times its proposal is nonsense anyway.
_MAX_LOG_RATIO = float(np.log(1000.0 / 16.0))
# The paper fills a warped region outside the image with the image mean; mid-grey
# is the mean of the [0, 255] range and needs no per-image statistic.
_OUTSIDE_VALUE = 127.5


def _import_cv2():
    """OpenCV with its contrib modules, or an error that names the extra to install."""
    try:
        import cv2

        segmentation = cv2.ximgproc.segmentation
    except (ImportError, AttributeError) as error:
        raise ImportError(
            "R-CNN's selective search needs OpenCV's contrib modules (cv2.ximgproc); install "
            f"them with `{EXTRA_HINT}` (opencv-contrib-python-headless). Cause: {error}"
        ) from None
    return cv2, segmentation


def _check_image(name, image):
    image = np.asarray(image)
    if image.ndim != 3 or image.shape[-1] != 3 or image.shape[0] < 1 or image.shape[1] < 1:
        raise ValueError(f"`{name}` must be one RGB image [height, width, 3]; received shape "
                         f"{image.shape}.")
    if not np.issubdtype(image.dtype, np.number):
        raise ValueError(f"`{name}` must hold numbers in [0, 255]; received dtype {image.dtype}.")
    return image


def selective_search(image, mode="fast", max_proposals=500, min_size=8):
    """Class-agnostic region proposals by selective search (Uijlings et al. 2013).

    OpenCV's implementation: Felzenszwalb-Huttenlocher segmentations merged
    hierarchically by colour, texture, size and fill similarities ("fast":
    two colour spaces and two strategies, as the paper's fast mode;
    "quality": more colour spaces, thresholds and strategies, slower, more
    proposals; "single": one segmentation and strategy).

    Args:
        image: `[H, W, 3]` RGB, uint8 or float in [0, 255] (numpy or tensor).
        mode: "fast", "quality" or "single".
        max_proposals: int >= 1, proposals kept, in OpenCV's ranking order
            (regions of the hierarchy interleaved across strategies).
        min_size: int >= 1, pixels; proposals narrower or shorter are dropped
            (tiny regions are texture, and a warp blows them up to noise).

    Returns:
        float32 numpy `[P, 4]` xyxy pixel boxes inside the image, `1 <= P <=
        max_proposals`, duplicates removed. When nothing survives the size
        filter, the whole image is the one proposal.

    Raises:
        ImportError: OpenCV's contrib modules are missing (`pip install kerasvision[rcnn]`).
    """
    check_choice("mode", mode, PROPOSAL_MODES)
    check_int("max_proposals", max_proposals, minimum=1)
    check_int("min_size", min_size, minimum=1)
    image = _check_image("image", image)
    cv2, segmentation = _import_cv2()
    height, width = image.shape[:2]
    pixels = np.clip(np.rint(image.astype(np.float32)), 0, 255).astype(np.uint8)
    search = segmentation.createSelectiveSearchSegmentation()
    # OpenCV's colour-space strategies expect its BGR channel order.
    search.setBaseImage(cv2.cvtColor(pixels, cv2.COLOR_RGB2BGR))
    {"fast": search.switchToSelectiveSearchFast,
     "quality": search.switchToSelectiveSearchQuality,
     "single": search.switchToSingleStrategy}[mode]()
    rects = np.asarray(search.process(), np.float32).reshape(-1, 4)  # x, y, w, h
    boxes = np.concatenate([rects[:, :2], rects[:, :2] + rects[:, 2:]], axis=1)
    boxes = np.clip(boxes, 0.0, np.array([width, height, width, height], np.float32))
    sizes = boxes[:, 2:] - boxes[:, :2]
    boxes = boxes[np.all(sizes >= min_size, axis=1)]
    # Several strategies find the same region; keep its first (best-ranked) copy.
    _, first = np.unique(boxes, axis=0, return_index=True)
    boxes = boxes[np.sort(first)][:max_proposals]
    if not len(boxes):
        boxes = np.array([[0.0, 0.0, width, height]], np.float32)
    return boxes.astype(np.float32)


def cached_selective_search(image, cache=None, **settings):
    """`selective_search` memoised in `cache` (a dict), keyed by the image's pixels and settings.

    Selective search costs far more than a CNN pass on a small crop; a
    training set seen for several sampling rounds, or a validation set
    detected after every epoch, pays for it once.

    Args:
        image: `[H, W, 3]` RGB in [0, 255].
        cache: dict or None (no caching).
        **settings: `selective_search`'s `mode`, `max_proposals`, `min_size`.

    Returns:
        float32 `[P, 4]` xyxy pixels (the cached array itself: do not modify).
    """
    if cache is None:
        return selective_search(image, **settings)
    image = _check_image("image", image)
    pixels = np.clip(np.rint(image.astype(np.float32)), 0, 255).astype(np.uint8)
    key = (hashlib.sha1(pixels.tobytes()).hexdigest(), pixels.shape,
           tuple(sorted(settings.items())))
    if key not in cache:
        cache[key] = selective_search(pixels, **settings)
    return cache[key]


def encode_box_deltas(proposals, boxes, scale=DELTA_SCALE):
    """Regression targets of Girshick et al. 2014 (appendix C): a box relative to a proposal.

    With centres `(x, y)`, widths `w` and heights `h` of proposal P and box G:
    `t_x = (G_x - P_x) / P_w`, `t_y = (G_y - P_y) / P_h`, `t_w = log(G_w / P_w)`,
    `t_h = log(G_h / P_h)`: invariant to translation and scale, each then
    multiplied by `scale`.

    Args:
        proposals: float `[..., 4]` xyxy pixels, positive widths and heights.
        boxes: float `[..., 4]` xyxy pixels, same shape.
        scale: four floats, multipliers of `(t_x, t_y, t_w, t_h)`.

    Returns:
        float32 tensor `[..., 4]`.
    """
    proposals = tf.cast(proposals, tf.float32)
    boxes = tf.cast(boxes, tf.float32)
    size_p = tf.maximum(proposals[..., 2:] - proposals[..., :2], 1e-6)
    size_g = tf.maximum(boxes[..., 2:] - boxes[..., :2], 1e-6)
    centre_p = (proposals[..., 2:] + proposals[..., :2]) / 2
    centre_g = (boxes[..., 2:] + boxes[..., :2]) / 2
    deltas = tf.concat([(centre_g - centre_p) / size_p, tf.math.log(size_g / size_p)], axis=-1)
    return deltas * tf.constant(scale, tf.float32)


def decode_box_deltas(proposals, deltas, scale=DELTA_SCALE):
    """Inverse of `encode_box_deltas`: boxes from proposals and predicted deltas.

    Args:
        proposals: float `[..., 4]` xyxy pixels.
        deltas: float `[..., 4]` scaled `(t_x, t_y, t_w, t_h)`, broadcastable
            against `proposals`.
        scale: the multipliers `encode_box_deltas` used.

    Returns:
        float32 tensor `[..., 4]` xyxy pixels (not clipped to the image).
    """
    proposals = tf.cast(proposals, tf.float32)
    deltas = tf.cast(deltas, tf.float32) / tf.constant(scale, tf.float32)
    size_p = proposals[..., 2:] - proposals[..., :2]
    centre = (proposals[..., 2:] + proposals[..., :2]) / 2 + deltas[..., :2] * size_p
    size = size_p * tf.exp(tf.minimum(deltas[..., 2:], _MAX_LOG_RATIO))
    return tf.concat([centre - size / 2, centre + size / 2], axis=-1)


def label_proposals(proposals, gt_boxes, gt_labels, foreground_iou=0.5, background_iou=0.3):
    """Labels proposals by their best IoU with the ground truth.

    Args:
        proposals: float `[P, 4]` xyxy pixels.
        gt_boxes: float `[K, 4]` xyxy pixels; rows with a negative label are padding.
        gt_labels: int `[K]` class ids in `0..C-1`, -1 for padding.
        foreground_iou: float, best IoU at or above which a proposal takes
            that box's class (the paper: 0.5).
        background_iou: float <= foreground_iou, best IoU below which a
            proposal is background (0.3, the paper's SVM negatives);
            proposals in between are ambiguous and never sampled.

    Returns:
        `(labels, matched_boxes, best_iou)` numpy: int32 `[P]` with `class + 1`
        for foreground, 0 for background and -1 for ignored; float32
        `[P, 4]` the best-overlapping ground-truth box (the proposal itself
        when there is none); float32 `[P]` the best IoU.
    """
    foreground_iou = check_float("foreground_iou", foreground_iou, minimum=0.0, maximum=1.0)
    background_iou = check_float("background_iou", background_iou, minimum=0.0,
                                 maximum=foreground_iou)
    proposals = np.asarray(proposals, np.float32).reshape(-1, 4)
    gt_labels = np.asarray(gt_labels).reshape(-1)
    gt_boxes = np.asarray(gt_boxes, np.float32).reshape(-1, 4)
    if len(gt_boxes) != len(gt_labels):
        raise ValueError(f"`gt_labels` must have one label per box of `gt_boxes` "
                         f"({len(gt_boxes)}); received {len(gt_labels)} labels.")
    valid = gt_labels >= 0
    gt_boxes, gt_labels = gt_boxes[valid], gt_labels[valid].astype(np.int32)
    if not len(gt_boxes) or not len(proposals):
        return (np.zeros(len(proposals), np.int32), proposals.copy(),
                np.zeros(len(proposals), np.float32))
    ious = iou_matrix(proposals, gt_boxes).numpy()
    best = ious.argmax(axis=1)
    best_iou = ious[np.arange(len(proposals)), best]
    labels = np.full(len(proposals), -1, np.int32)
    labels[best_iou >= foreground_iou] = gt_labels[best][best_iou >= foreground_iou] + 1
    labels[best_iou < background_iou] = 0
    return labels, gt_boxes[best], best_iou.astype(np.float32)


def sample_proposals(labels, samples_per_image=16, foreground_fraction=0.25, rng=None):
    """Indices of a fixed-size sample with a foreground share, as R-CNN's minibatches.

    The paper samples 32 foreground and 96 background windows per batch of
    128: objects cover little of an image, and an unbalanced sample would
    teach the CNN to call everything background. When there are too few
    foreground proposals, background fills the sample (and the other way
    round); when the pool is smaller than the sample, indices repeat.

    Args:
        labels: int `[P]` of `label_proposals` (-1 ignored, 0 background, > 0 foreground).
        samples_per_image: int >= 1.
        foreground_fraction: float in [0, 1].
        rng: `np.random.Generator` or None.

    Returns:
        int64 numpy `[samples_per_image]`, or `[0]` when no proposal is
        foreground or background.
    """
    check_int("samples_per_image", samples_per_image, minimum=1)
    check_float("foreground_fraction", foreground_fraction, minimum=0.0, maximum=1.0)
    rng = rng or np.random.default_rng()
    labels = np.asarray(labels)
    foreground = np.flatnonzero(labels > 0)
    background = np.flatnonzero(labels == 0)
    if not len(foreground) and not len(background):
        return np.zeros(0, np.int64)
    wanted = round(samples_per_image * foreground_fraction)
    num_foreground = min(wanted, len(foreground)) if len(background) else samples_per_image
    num_background = samples_per_image - num_foreground
    if not len(background):
        num_background = 0
    chosen = [rng.choice(foreground, num_foreground, replace=num_foreground > len(foreground))
              if num_foreground else np.zeros(0, np.int64),
              rng.choice(background, num_background, replace=num_background > len(background))
              if num_background else np.zeros(0, np.int64)]
    return np.concatenate(chosen).astype(np.int64)


def warp_proposals(images, boxes, box_indices, crop_size, context_pixels=8):
    """Warps regions to `crop_size` squares whatever their aspect ratio (R-CNN's "warp").

    As in the paper, each box is first dilated so that the warped crop
    holds `context_pixels` of surrounding image on every side (the paper:
    16 px at 227 px); area outside the image is mid-grey. Bilinear sampling
    (`tf.image.crop_and_resize`) at the centres of the crop's pixels.

    Args:
        images: float `[B, H, W, 3]` in [0, 255].
        boxes: float `[N, 4]` xyxy pixels.
        box_indices: int `[N]`, the image of each box.
        crop_size: int, side S of the crops.
        context_pixels: int in `[0, S / 2)`.

    Returns:
        float32 `[N, S, S, 3]` in [0, 255].
    """
    check_int("context_pixels", context_pixels, minimum=0, maximum=(crop_size - 1) // 2)
    images = tf.cast(images, tf.float32)
    boxes = tf.reshape(tf.cast(boxes, tf.float32), [-1, 4])
    height = tf.cast(tf.shape(images)[1], tf.float32)
    width = tf.cast(tf.shape(images)[2], tf.float32)
    dilation = crop_size / (crop_size - 2 * context_pixels)
    centre = (boxes[:, :2] + boxes[:, 2:]) / 2
    half = (boxes[:, 2:] - boxes[:, :2]) / 2 * dilation
    low, high = centre - half, centre + half
    # crop_and_resize samples its end points exactly and maps a normalised coordinate
    # n to pixel index n * (side - 1); pixel index i has its centre at i + 0.5.
    step = (high - low) / crop_size
    start, stop = low + step / 2 - 0.5, high - step / 2 - 0.5
    sides = tf.maximum(tf.stack([width, height]) - 1.0, 1.0)
    start, stop = start / sides, stop / sides
    normalised = tf.stack([start[:, 1], start[:, 0], stop[:, 1], stop[:, 0]], axis=1)
    return tf.image.crop_and_resize(images, normalised, tf.cast(box_indices, tf.int32),
                                    [crop_size, crop_size], extrapolation_value=_OUTSIDE_VALUE)


def build_rcnn(num_classes, crop_size=64, backbone=None, weights="auto", fc_units=256,
               num_fc=2, dropout=0.5, scratch_filters=SCRATCH_FILTERS, proposal_mode="fast",
               max_proposals=500, min_proposal_size=8, context_pixels=8, name=None):
    """Builds R-CNN's region classifier and box regressor (Girshick et al. 2014).

    Args:
        num_classes: int >= 1, C (background is added as class 0 of the logits).
        crop_size: int, side S of the warped proposals: a multiple of 16
            (backbone=None) or of 32 (a backbone); the paper warps to 227.
        backbone: None for a small from-scratch CNN (four stages of two 3x3
            convolutions with batch normalisation and 2x2 max pooling, widths
            `scratch_filters`: trains on a CPU), or "vgg16" / "resnet50"
            (stride-32 features; VGG16 is the paper's "O-Net").
        weights: the backbone's weights ("auto", "imagenet", None or a file).
        fc_units: int, width of the fully connected layers (the paper: 4096).
        num_fc: int >= 1, number of them (the paper's fc6 and fc7: 2).
        dropout: float in [0, 1), after each fully connected layer.
        scratch_filters: four ints, the from-scratch CNN's stage widths.
        proposal_mode, max_proposals, min_proposal_size: `selective_search`'s
            settings, used by `make_rcnn_training_data` and `rcnn_detect`.
        context_pixels: int, context margin of `warp_proposals`.
        name: str, model name.

    Returns:
        A `keras.Model` mapping crops float `[N, S, S, 3]` in [0, 255] to
        `{"classes": float32 logits [N, C + 1] (0: background, c + 1: class
        c), "deltas": float32 [N, 4 * C] (class c's scaled t_x, t_y, t_w,
        t_h at 4c..4c+3)}`. `model.rcnn_config` records the settings
        `rcnn_detect` and `make_rcnn_training_data` read.
    """
    check_int("num_classes", num_classes, minimum=1)
    stride = 16 if backbone is None else 32
    check_int("crop_size", crop_size, minimum=stride)
    if crop_size % stride:
        raise ValueError(f"`crop_size` must be a multiple of {stride} (the CNN's stride with "
                         f"backbone={backbone!r}); received crop_size={crop_size}.")
    check_int("fc_units", fc_units, minimum=1)
    check_int("num_fc", num_fc, minimum=1)
    check_float("dropout", dropout, minimum=0.0, maximum=0.99)
    check_choice("proposal_mode", proposal_mode, PROPOSAL_MODES)
    check_int("max_proposals", max_proposals, minimum=1)
    check_int("min_proposal_size", min_proposal_size, minimum=1)
    check_int("context_pixels", context_pixels, minimum=0, maximum=(crop_size - 1) // 2)
    crops = keras.Input((crop_size, crop_size, 3), name="crops")
    if backbone is None:
        x = apply_scratch_encoder(crops, scratch_filters, 4, batch_norm=True)
        name = name or "rcnn"
    else:
        get_backbone_spec(backbone)
        encoder = build_backbone(backbone, (crop_size, crop_size, 3),
                                 resolve_weights(backbone, weights), name="backbone")
        x = encoder(crops)["P5"]
        name = name or f"rcnn_{backbone}"
    # Flatten, not global pooling: where the object sits in the crop is what the
    # box regressor needs (the paper's fc6 reads the whole pool5 map).
    x = layers.Flatten(name="flatten")(x)
    for index in range(1, num_fc + 1):
        x = layers.Dense(fc_units, activation="relu", kernel_initializer="he_normal",
                         name=f"fc{index + 5}")(x)
        if dropout:
            x = layers.Dropout(dropout, name=f"fc{index + 5}_dropout")(x)
    logits = layers.Dense(num_classes + 1, dtype="float32", name="classes")(x)
    # Small initial deltas: the first detections are the proposals themselves.
    deltas = layers.Dense(4 * num_classes, dtype="float32", name="deltas",
                          kernel_initializer=keras.initializers.RandomNormal(stddev=0.001))(x)
    model = keras.Model(crops, {"classes": logits, "deltas": deltas}, name=name)
    model.rcnn_config = {
        "num_classes": num_classes, "crop_size": crop_size, "context_pixels": context_pixels,
        "proposals": {"mode": proposal_mode, "max_proposals": max_proposals,
                      "min_size": min_proposal_size},
    }
    return model


def is_rcnn(model):
    """Whether `model` was built by `build_rcnn` (it carries `rcnn_config`)."""
    return isinstance(getattr(model, "rcnn_config", None), dict)


def _check_rcnn(model):
    if not is_rcnn(model):
        raise ValueError("`model` must be an R-CNN of `build_rcnn` (with `model.rcnn_config`); "
                         f"received model={getattr(model, 'name', model)!r}.")
    return model.rcnn_config


@keras.saving.register_keras_serializable(package="kerasvision")
class RCNNBoxLoss(keras.losses.Loss):
    """Smooth-L1 loss of the true class's box deltas, zero for background samples.

    Only the regressor of a foreground sample's own class is trained: the
    other classes' regressors have no target for it (Girshick et al. train
    one regressor per class on that class's proposals).

    Args:
        num_classes: int, C.
        beta: float > 0, where smooth L1 turns from quadratic to linear.

    Call with `y_true` float `[N, 5]`: the sample's class (0 background,
    c + 1 class c) then its four scaled targets; `y_pred` `[N, 4 * C]`.
    """

    def __init__(self, num_classes, beta=1.0, name="rcnn_box_loss",
                 reduction="sum_over_batch_size"):
        super().__init__(name=name, reduction=reduction)
        self.num_classes = check_int("num_classes", num_classes, minimum=1)
        self.beta = check_float("beta", beta, minimum=0.0, strict_minimum=True)

    def call(self, y_true, y_pred):
        y_true = tf.cast(y_true, tf.float32)
        y_pred = tf.reshape(tf.cast(y_pred, tf.float32), [-1, self.num_classes, 4])
        classes = tf.cast(tf.round(y_true[:, 0]), tf.int32)
        own = tf.gather(y_pred, tf.maximum(classes - 1, 0), axis=1, batch_dims=1)
        error = tf.abs(own - y_true[:, 1:5])
        smooth = tf.where(error < self.beta, 0.5 * tf.square(error) / self.beta,
                          error - 0.5 * self.beta)
        return tf.reduce_sum(smooth, axis=-1) * tf.cast(classes > 0, tf.float32)

    def get_config(self):
        return {**super().get_config(), "num_classes": self.num_classes, "beta": self.beta}


def compile_rcnn(model, optimizer, jit_compile="auto", box_loss_weight=1.0):
    """Compiles an R-CNN with softmax cross-entropy on classes and `RCNNBoxLoss` on deltas."""
    config = _check_rcnn(model)
    model.compile(
        optimizer=optimizer,
        loss={"classes": keras.losses.SparseCategoricalCrossentropy(from_logits=True),
              "deltas": RCNNBoxLoss(config["num_classes"])},
        loss_weights={"classes": 1.0,
                      "deltas": check_float("box_loss_weight", box_loss_weight, minimum=0.0)},
        metrics={"classes": [keras.metrics.SparseCategoricalAccuracy(name="accuracy")]},
        jit_compile=jit_compile)
    return model


def _image_batches(dataset):
    """Yields `(images [B, H, W, 3], boxes [B, K, 4], labels [B, K])` numpy from the contract."""
    for element in dataset:
        if not isinstance(element, dict) or "images" not in element:
            raise ValueError("`dataset` must yield dicts of the detection contract {'images', "
                             "'bounding_boxes': {'boxes', 'labels'}}; received an element "
                             f"{type(element).__name__}.")
        images = np.asarray(element["images"], np.float32)
        boxes = np.asarray(element["bounding_boxes"]["boxes"], np.float32)
        labels = np.asarray(element["bounding_boxes"]["labels"], np.int32)
        if images.ndim == 3:  # an unbatched dataset
            images, boxes, labels = images[None], boxes[None], labels[None]
        if images.ndim != 4 or images.shape[-1] != 3:
            raise ValueError("`dataset` images must be [batch, H, W, 3] or [H, W, 3]; received "
                             f"shape {images.shape}.")
        yield images, boxes, labels


def rcnn_training_samples(dataset, model, samples_per_image=16, foreground_fraction=0.25,
                          foreground_iou=0.5, background_iou=0.3, rounds=1,
                          include_ground_truth=True, seed=0, proposal_cache=None):
    """Warped proposal crops and their targets, as numpy arrays (see `make_rcnn_training_data`).

    Returns:
        `(crops uint8 [N, S, S, 3], classes int32 [N], box_targets float32
        [N, 5])`; `box_targets` is `RCNNBoxLoss`'s `y_true` (class, then the
        four scaled deltas to the matched box, zeros for background).
    """
    config = _check_rcnn(model)
    check_int("rounds", rounds, minimum=1)
    rng = np.random.default_rng(seed)
    crops, classes, targets = [], [], []
    for images, boxes, labels in _image_batches(dataset):
        chosen_boxes, chosen_images, chosen_labels, chosen_matched = [], [], [], []
        for index in range(len(images)):
            proposals = cached_selective_search(images[index], proposal_cache,
                                                **config["proposals"])
            valid = labels[index] >= 0
            if include_ground_truth:
                # The paper's positives include the ground-truth boxes themselves:
                # every object then has exact foreground even when proposals miss it.
                proposals = np.concatenate([proposals, boxes[index][valid]], axis=0)
            kind, matched, _ = label_proposals(proposals, boxes[index], labels[index],
                                               foreground_iou, background_iou)
            for _ in range(rounds):
                picked = sample_proposals(kind, samples_per_image, foreground_fraction, rng)
                chosen_boxes.append(proposals[picked])
                chosen_images.append(np.full(len(picked), index, np.int32))
                chosen_labels.append(kind[picked])
                chosen_matched.append(matched[picked])
        if not chosen_boxes:
            continue
        chosen = np.concatenate(chosen_boxes)
        if not len(chosen):
            continue
        warped = warp_proposals(images, chosen, np.concatenate(chosen_images),
                                config["crop_size"], config["context_pixels"])
        # uint8 storage: a quarter of float32's memory for the same pixels.
        crops.append(np.clip(np.rint(warped.numpy()), 0, 255).astype(np.uint8))
        kind = np.concatenate(chosen_labels)
        deltas = encode_box_deltas(chosen, np.concatenate(chosen_matched)).numpy()
        deltas[kind == 0] = 0.0
        classes.append(kind)
        targets.append(np.concatenate([kind[:, None].astype(np.float32), deltas], axis=1))
    if not crops:
        raise ValueError("`dataset` gave no proposal to train on: it is empty, or no proposal "
                         "is foreground or background under the IoU thresholds.")
    return np.concatenate(crops), np.concatenate(classes), np.concatenate(targets)


def make_rcnn_training_data(dataset, model, batch_size=64, shuffle=True, seed=0,
                            samples_per_image=16, foreground_fraction=0.25, foreground_iou=0.5,
                            background_iou=0.3, rounds=1, include_ground_truth=True,
                            proposal_cache=None):
    """R-CNN training data: a dataset of detection batches -> a dataset of `(crops, targets)`.

    R-CNN trains on proposals, not images, so no per-batch `tf.data` map can
    produce its inputs: selective search is OpenCV code and each image gives
    a different number of crops. This function runs eagerly once over
    `dataset`: per image, selective search (`cached_selective_search`), the
    ground-truth boxes added as proposals, labels by IoU (`label_proposals`),
    a sample of `samples_per_image` with `foreground_fraction` foreground
    (`sample_proposals`, `rounds` independent samples), warped crops
    (`warp_proposals`) and regression targets (`encode_box_deltas`). The
    crops are held in memory (uint8, `S * S * 3` bytes each), so an
    augmenting `dataset` contributes one augmented pass only.

    Args:
        dataset: `tf.data.Dataset` (or iterable) of the detection contract,
            batched or not: `{"images" [B, H, W, 3] in [0, 255],
            "bounding_boxes": {"boxes" [B, K, 4] xyxy pixels, "labels" [B, K]}}`
            padded with -1.
        model: an R-CNN of `build_rcnn` (its `rcnn_config` sets the crop
            size, context and proposal settings).
        batch_size: int >= 1, crops per batch of the result.
        shuffle: bool, reshuffle the crops every epoch (recommended: the
            crops of one image are otherwise consecutive).
        seed: int, sampling and shuffling seed.
        samples_per_image, foreground_fraction: the sample (16 and 25%:
            the paper's 32 of 128 per minibatch).
        foreground_iou, background_iou: `label_proposals`' thresholds.
        rounds: int >= 1, independent samples per image (proposals are
            computed once).
        include_ground_truth: bool, add the true boxes to the proposals.
        proposal_cache: dict or None, shared with `rcnn_detect` to reuse proposals.

    Returns:
        `tf.data.Dataset` of `(crops float32 [batch, S, S, 3] in [0, 255],
        {"classes": int32 [batch] (0 background, c + 1 class c),
        "deltas": float32 [batch, 5] (class, then 4 scaled targets)})`, for
        `model.fit` after `compile_rcnn`.
    """
    check_int("batch_size", batch_size, minimum=1)
    crops, classes, targets = rcnn_training_samples(
        dataset, model, samples_per_image, foreground_fraction, foreground_iou, background_iou,
        rounds, include_ground_truth, seed, proposal_cache)
    data = tf.data.Dataset.from_tensor_slices((crops, {"classes": classes, "deltas": targets}))
    if shuffle:
        data = data.shuffle(len(crops), seed=seed, reshuffle_each_iteration=True)
    return data.batch(batch_size).map(
        lambda x, y: (tf.cast(x, tf.float32), y),
        num_parallel_calls=tf.data.AUTOTUNE).prefetch(tf.data.AUTOTUNE)


def rcnn_detect(model, images, score_threshold=0.05, iou_threshold=0.5, max_detections=100,
                proposal_cache=None, timings=None, crops_per_pass=256):
    """R-CNN detection: proposals, a CNN pass per warped proposal, box regression, NMS.

    Per image: selective search, every proposal warped and classified, each
    class's score the softmax probability and its box the proposal moved by
    that class's deltas (clipped to the image), then greedy NMS per class
    (`kerasvision.boxes.non_max_suppression`) and the `max_detections` best.
    Eager only (selective search runs in OpenCV).

    Args:
        model: an R-CNN of `build_rcnn`.
        images: float `[batch, H, W, 3]` in [0, 255], any size.
        score_threshold: float, scores must be greater to be kept.
        iou_threshold: float, NMS overlap.
        max_detections: int >= 1, detections per image.
        proposal_cache: dict or None, memoised proposals (`cached_selective_search`).
        timings: dict or None; when a dict, `"proposal_seconds"`,
            `"classification_seconds"` (warping, CNN and decoding), `"proposals"`
            and `"images"` are added to it, to measure R-CNN's bottlenecks.
        crops_per_pass: int >= 1, crops per CNN call (bounds memory).

    Returns:
        dict `boxes` float32 `[batch, max_detections, 4]` xyxy pixels,
        `scores` float32, `classes` int32 (-1 padding), `num_detections` int32 `[batch]`.
    """
    config = _check_rcnn(model)
    check_float("score_threshold", score_threshold)
    check_float("iou_threshold", iou_threshold, minimum=0.0, maximum=1.0)
    check_int("max_detections", max_detections, minimum=1)
    check_int("crops_per_pass", crops_per_pass, minimum=1)
    images = tf.cast(images, tf.float32)
    if images.shape.rank != 4 or images.shape[-1] != 3:
        raise ValueError("`images` must be a batch [batch, H, W, 3]; received shape "
                         f"{tuple(images.shape)}.")
    num_classes = config["num_classes"]
    height, width = int(images.shape[1]), int(images.shape[2])
    limits = tf.constant([width, height, width, height], tf.float32)
    pixels = images.numpy()
    result = {"boxes": np.zeros((len(pixels), max_detections, 4), np.float32),
              "scores": np.zeros((len(pixels), max_detections), np.float32),
              "classes": np.full((len(pixels), max_detections), -1, np.int32),
              "num_detections": np.zeros(len(pixels), np.int32)}
    spent = {"proposal_seconds": 0.0, "classification_seconds": 0.0, "proposals": 0,
             "images": 0}
    for index in range(len(pixels)):
        start = time.perf_counter()
        proposals = cached_selective_search(pixels[index], proposal_cache, **config["proposals"])
        middle = time.perf_counter()
        probabilities, deltas = [], []
        for first in range(0, len(proposals), crops_per_pass):
            chunk = proposals[first:first + crops_per_pass]
            crops = warp_proposals(images[index:index + 1], chunk,
                                   tf.zeros(len(chunk), tf.int32), config["crop_size"],
                                   config["context_pixels"])
            outputs = model(crops, training=False)
            probabilities.append(tf.nn.softmax(tf.cast(outputs["classes"], tf.float32))[:, 1:])
            deltas.append(tf.reshape(tf.cast(outputs["deltas"], tf.float32),
                                     [-1, num_classes, 4]))
        scores = tf.concat(probabilities, axis=0)  # [P, C]
        boxes = decode_box_deltas(proposals[:, None, :], tf.concat(deltas, axis=0))  # [P, C, 4]
        boxes = tf.clip_by_value(boxes, 0.0, limits)
        kept = non_max_suppression(
            tf.reshape(boxes, [-1, 4]), tf.reshape(scores, [-1]),
            tf.tile(tf.range(num_classes), [len(proposals)]), iou_threshold=iou_threshold,
            score_threshold=score_threshold, max_detections=max_detections)
        count = int(tf.shape(kept["scores"])[0])
        result["boxes"][index, :count] = kept["boxes"].numpy()
        result["scores"][index, :count] = kept["scores"].numpy()
        result["classes"][index, :count] = kept["classes"].numpy()
        result["num_detections"][index] = count
        end = time.perf_counter()
        spent["proposal_seconds"] += middle - start
        spent["classification_seconds"] += end - middle
        spent["proposals"] += len(proposals)
        spent["images"] += 1
    if timings is not None:
        for key, value in spent.items():
            timings[key] = timings.get(key, 0) + value
    return {key: tf.constant(value) for key, value in result.items()}


def proposal_recall(proposals, gt_boxes, gt_labels=None, iou_threshold=0.5):
    """Share of ground-truth boxes that some proposal overlaps with IoU >= `iou_threshold`.

    A detector built on proposals cannot find an object no proposal covers,
    so this bounds R-CNN's recall.

    Args:
        proposals: list of float `[P_i, 4]` xyxy pixels, one per image.
        gt_boxes: list (or array) of float `[K_i, 4]`, one per image.
        gt_labels: optional, int `[K_i]` per image; rows < 0 are padding.
        iou_threshold: float in [0, 1].

    Returns:
        `(recall float, found int, total int)`.
    """
    check_float("iou_threshold", iou_threshold, minimum=0.0, maximum=1.0)
    if len(proposals) != len(gt_boxes):
        raise ValueError(f"`gt_boxes` must have one entry per image of `proposals` "
                         f"({len(proposals)}); received {len(gt_boxes)}.")
    found = total = 0
    for index, (boxes, truth) in enumerate(zip(proposals, gt_boxes)):
        truth = np.asarray(truth, np.float32).reshape(-1, 4)
        if gt_labels is not None:
            truth = truth[np.asarray(gt_labels[index]).reshape(-1) >= 0]
        if not len(truth):
            continue
        total += len(truth)
        if len(boxes):
            found += int(np.sum(iou_matrix(truth, np.asarray(boxes, np.float32)).numpy().max(
                axis=1) >= iou_threshold))
    return (found / total if total else float("nan")), found, total
