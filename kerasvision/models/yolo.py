"""YOLO (v1): one network, one pass, an S x S grid of box and class predictions.

Redmon, Divvala, Girshick and Farhadi, "You Only Look Once: Unified,
Real-Time Object Detection", CVPR 2016. The image is divided into an S x S
grid; the cell holding an object's centre is responsible for it. Each cell
predicts B boxes `(x, y, w, h, confidence)` and one vector of C class
probabilities, packed into `B * 5 + C` numbers per cell (PASCAL VOC: S = 7,
B = 2, C = 20 gives the 7 x 7 x 30 output). `(x, y)` is the box centre as an
offset within its cell, `(w, h)` the box size as a share of the image, and
the confidence estimates `Pr(object) * IoU(predicted, true)`. Training
minimises the paper's five-term sum-squared loss (`YoloV1Loss`); at test
time each box's class-specific score is confidence x class probability,
followed by per-class non-maximum suppression (`decode_yolo_v1`).

Departures from the paper, each for this package's setting:
- the features come from a registered backbone (`kerasvision.backbones`) or a
  small from-scratch encoder, not the paper's 24-layer Darknet pretrained on
  ImageNet; the grid is the backbone's stride-32 map, so S = input size / 32;
- the head is convolutional (3x3 convolutions, then a 1x1 convolution to
  `B * 5 + C` channels) rather than two fully connected layers, so any input
  size that is a multiple of 32 works with the same weights;
- box coordinates and confidences pass through a sigmoid and the class
  scores through a softmax: the paper's linear outputs are unbounded, and
  the sqrt(w), sqrt(h) of its loss is undefined for negative predictions.
"""

import keras
import tensorflow as tf
from keras import layers

from kerasvision.backbones import build_backbone, get_backbone_spec, resolve_weights
from kerasvision.layers import apply_scratch_encoder
from kerasvision.validation import (
    check_float,
    check_image_shape,
    check_int,
)

GRID_STRIDE = 32
# Widths of the from-scratch encoder's five stride-2 stages (backbone=None).
SCRATCH_FILTERS = (16, 32, 64, 128, 256)


def _check_box_layout(grid_size, boxes_per_cell, num_classes):
    check_int("grid_size", grid_size, minimum=1)
    check_int("boxes_per_cell", boxes_per_cell, minimum=1)
    check_int("num_classes", num_classes, minimum=1)  # one class is a valid detection task


def build_yolo_v1(
    num_classes,
    input_shape=(224, 224, 3),
    backbone=None,
    weights="auto",
    boxes_per_cell=2,
    head_filters=256,
    head_convs=2,
    scratch_filters=SCRATCH_FILTERS,
    batch_norm=True,
    leaky_slope=0.1,
    name=None,
):
    """Builds the YOLO v1 detector of Redmon et al. 2016 on a backbone.

    Args:
        num_classes: int >= 1, C.
        input_shape: `(height, width, 3)`, sides multiples of 32; the grid is
            `height / 32` x `width / 32` (224 px: the paper's 7 x 7).
        backbone: a registered backbone name ("vgg16", "resnet50"), or None
            for a small from-scratch encoder (five stages of two 3x3
            convolutions with batch normalisation and 2x2 max pooling, widths
            `scratch_filters`): the choice that trains in minutes on a CPU.
        weights: the backbone's weights ("auto", "imagenet", None or a file).
        boxes_per_cell: int >= 1, B (the paper: 2).
        head_filters: int, width of the head's 3x3 convolutions.
        head_convs: int >= 0, number of those convolutions.
        scratch_filters: five ints, the from-scratch encoder's widths.
        batch_norm: bool, batch normalisation in the from-scratch encoder.
        leaky_slope: float, the head's leaky ReLU slope (the paper: 0.1).
        name: str, model name.

    Returns:
        A `keras.Model` mapping raw RGB images `[batch, H, W, 3]` in [0, 255]
        to float32 `[batch, S, S, B * 5 + C]`: per cell, B groups of
        `(x, y, w, h, confidence)` in [0, 1], then C class probabilities
        (a softmax). `model.yolo_config` records S, B and C.
    """
    input_shape = check_image_shape(input_shape, multiple_of=GRID_STRIDE, min_size=GRID_STRIDE)
    _check_box_layout(input_shape[0] // GRID_STRIDE, boxes_per_cell, num_classes)
    check_int("head_filters", head_filters, minimum=1)
    check_int("head_convs", head_convs, minimum=0)
    check_float("leaky_slope", leaky_slope, minimum=0.0)
    images = keras.Input(input_shape, name="images")
    if backbone is None:
        x = apply_scratch_encoder(images, scratch_filters, 5, batch_norm=batch_norm)
        features = x
        name = name or "yolo_v1"
    else:
        get_backbone_spec(backbone)
        encoder = build_backbone(backbone, input_shape, resolve_weights(backbone, weights),
                                 name="backbone", resize_to_strides=True)
        features = encoder(images)["P5"]
        name = name or f"yolo_v1_{backbone}"
    x = features
    for index in range(1, head_convs + 1):
        x = layers.Conv2D(head_filters, 3, padding="same", kernel_initializer="he_normal",
                          name=f"head_conv{index}")(x)
        x = layers.LeakyReLU(leaky_slope, name=f"head_leaky{index}")(x)
    # Two 1x1 convolutions side by side are one convolution to B * 5 + C channels,
    # each with its own output activation (float32: the loss takes square roots).
    boxes = layers.Conv2D(boxes_per_cell * 5, 1, name="box_output")(x)
    boxes = layers.Activation("sigmoid", dtype="float32", name="boxes")(boxes)
    classes = layers.Conv2D(num_classes, 1, name="class_output")(x)
    classes = layers.Softmax(dtype="float32", name="class_probabilities")(classes)
    outputs = layers.Concatenate(name="grid", dtype="float32")([boxes, classes])
    model = keras.Model(images, outputs, name=name)
    model.yolo_config = {"grid_size": input_shape[0] // GRID_STRIDE,
                         "boxes_per_cell": boxes_per_cell, "num_classes": num_classes}
    return model


def encode_yolo_v1_targets(boxes, labels, image_size, grid_size, num_classes):
    """Packs one image's boxes into the YOLO v1 target grid.

    The cell holding a box's centre is responsible for it. A cell can hold
    one object: when several centres fall in one cell, the largest box is
    kept (the paper's limit of one class per cell; small neighbours are what
    YOLO v1 misses).

    Args:
        boxes: float `[N, 4]` xyxy in pixels; rows with a negative label are padding.
        labels: int `[N]`, class ids in `[0, num_classes)`, -1 for padding.
        image_size: `(height, width)` of the image the boxes are in.
        grid_size: int, S.
        num_classes: int, C.

    Returns:
        float32 `[S, S, 5 + C]`: per cell `(x, y, w, h, has_object)`, x and y
        the centre's offset within the cell in [0, 1), w and h shares of the
        image, then the one-hot class. Cells without an object are zeros.
    """
    boxes = tf.convert_to_tensor(boxes, tf.float32)
    labels = tf.cast(labels, tf.int32)
    height, width = float(image_size[0]), float(image_size[1])
    valid = labels >= 0
    boxes, labels = tf.boolean_mask(boxes, valid), tf.boolean_mask(labels, valid)
    centre_x = (boxes[:, 0] + boxes[:, 2]) / 2 / width
    centre_y = (boxes[:, 1] + boxes[:, 3]) / 2 / height
    box_w = (boxes[:, 2] - boxes[:, 0]) / width
    box_h = (boxes[:, 3] - boxes[:, 1]) / height
    column = tf.clip_by_value(tf.cast(tf.floor(centre_x * grid_size), tf.int32), 0, grid_size - 1)
    row = tf.clip_by_value(tf.cast(tf.floor(centre_y * grid_size), tf.int32), 0, grid_size - 1)
    # Largest first: a scatter keeps the last update to a cell, so write smallest to largest.
    order = tf.argsort(box_w * box_h)
    cells = tf.gather(tf.stack([row, column], axis=1), order)
    values = tf.concat([
        tf.stack([centre_x * grid_size - tf.cast(column, tf.float32),
                  centre_y * grid_size - tf.cast(row, tf.float32),
                  box_w, box_h, tf.ones_like(box_w)], axis=1),
        tf.one_hot(labels, num_classes, dtype=tf.float32),
    ], axis=1)
    values = tf.gather(values, order)
    target = tf.zeros([grid_size, grid_size, 5 + num_classes], tf.float32)
    for index in tf.range(tf.shape(cells)[0]):  # sequential: the last write to a cell wins
        target = tf.tensor_scatter_nd_update(target, cells[index:index + 1],
                                             values[index:index + 1])
    return target


def _cell_offsets(grid_size):
    """`(column, row)` float32 `[S, S, 1]` each: the cell indices a box offset is added to."""
    index = tf.range(grid_size, dtype=tf.float32)
    rows, columns = tf.meshgrid(index, index, indexing="ij")
    return columns[..., None], rows[..., None]


def yolo_v1_boxes(grid, grid_size, boxes_per_cell):
    """Predicted boxes of a YOLO v1 output in relative xyxy and their confidences.

    Args:
        grid: float `[batch, S, S, B * 5 + C]`.
        grid_size, boxes_per_cell: S and B.

    Returns:
        `(boxes [batch, S, S, B, 4]` relative xyxy in [0, 1] (not clipped),
        `confidences [batch, S, S, B])`.
    """
    predictors = tf.reshape(grid[..., : boxes_per_cell * 5],
                            tf.concat([tf.shape(grid)[:3], [boxes_per_cell, 5]], axis=0))
    columns, rows = _cell_offsets(grid_size)
    centre_x = (predictors[..., 0] + columns) / grid_size
    centre_y = (predictors[..., 1] + rows) / grid_size
    half_w, half_h = predictors[..., 2] / 2, predictors[..., 3] / 2
    boxes = tf.stack([centre_x - half_w, centre_y - half_h, centre_x + half_w, centre_y + half_h],
                     axis=-1)
    return boxes, predictors[..., 4]


def _relative_iou(boxes_a, boxes_b):
    """Elementwise IoU of relative xyxy boxes `[..., 4]`."""
    top_left = tf.maximum(boxes_a[..., :2], boxes_b[..., :2])
    bottom_right = tf.minimum(boxes_a[..., 2:], boxes_b[..., 2:])
    intersection = tf.reduce_prod(tf.maximum(bottom_right - top_left, 0.0), axis=-1)
    area_a = tf.reduce_prod(tf.maximum(boxes_a[..., 2:] - boxes_a[..., :2], 0.0), axis=-1)
    area_b = tf.reduce_prod(tf.maximum(boxes_b[..., 2:] - boxes_b[..., :2], 0.0), axis=-1)
    return intersection / tf.maximum(area_a + area_b - intersection, 1e-9)


def yolo_v1_loss_terms(y_true, y_pred, grid_size, boxes_per_cell, num_classes,
                       lambda_coord=5.0, lambda_noobj=0.5):
    """The five sums of the YOLO v1 loss (Redmon et al. 2016, equation 3), per image.

    In a cell with an object, the predictor whose box has the highest IoU
    with the true box is responsible. The terms are:

    - `xy`: lambda_coord * sum over responsible predictors of (x - x^)^2 + (y - y^)^2;
    - `wh`: lambda_coord * sum of (sqrt w - sqrt w^)^2 + (sqrt h - sqrt h^)^2;
    - `object`: sum over responsible predictors of (C - C^)^2, the target C^
      the IoU of the predicted and true boxes;
    - `no_object`: lambda_noobj * sum over every other predictor of C^2;
    - `class`: sum over cells with an object of the squared class-probability errors.

    Args:
        y_true: float `[batch, S, S, 5 + C]` from `encode_yolo_v1_targets`.
        y_pred: float `[batch, S, S, B * 5 + C]`, the model's output.
        grid_size, boxes_per_cell, num_classes: S, B, C.
        lambda_coord, lambda_noobj: the paper's weights (5 and 0.5).

    Returns:
        dict term name -> float32 `[batch]`.
    """
    y_true = tf.cast(y_true, tf.float32)
    y_pred = tf.cast(y_pred, tf.float32)
    has_object = y_true[..., 4]  # [batch, S, S]
    predictors = tf.reshape(y_pred[..., : boxes_per_cell * 5],
                            tf.concat([tf.shape(y_pred)[:3], [boxes_per_cell, 5]], axis=0))
    predicted_boxes, confidences = yolo_v1_boxes(y_pred, grid_size, boxes_per_cell)
    true_boxes, _ = yolo_v1_boxes(tf.concat([y_true[..., :5]] * boxes_per_cell, axis=-1),
                                  grid_size, boxes_per_cell)
    ious = _relative_iou(predicted_boxes, true_boxes)  # [batch, S, S, B]
    responsible = tf.one_hot(tf.argmax(ious, axis=-1), boxes_per_cell) * has_object[..., None]
    others = 1.0 - responsible
    true_xywh = y_true[..., None, :4]
    xy_error = tf.reduce_sum(tf.square(predictors[..., :2] - true_xywh[..., :2]), axis=-1)
    wh_error = tf.reduce_sum(
        tf.square(tf.sqrt(predictors[..., 2:4] + 1e-9) - tf.sqrt(true_xywh[..., 2:4] + 1e-9)),
        axis=-1)
    object_error = tf.square(confidences - tf.stop_gradient(ious))
    class_error = tf.reduce_sum(
        tf.square(y_pred[..., boxes_per_cell * 5:] - y_true[..., 5:5 + num_classes]), axis=-1)

    def per_image(values):
        return tf.reduce_sum(tf.reshape(values, [tf.shape(values)[0], -1]), axis=1)

    return {
        "xy": lambda_coord * per_image(responsible * xy_error),
        "wh": lambda_coord * per_image(responsible * wh_error),
        "object": per_image(responsible * object_error),
        "no_object": lambda_noobj * per_image(others * tf.square(confidences)),
        "class": per_image(has_object * class_error),
    }


@keras.saving.register_keras_serializable(package="kerasvision")
class YoloV1Loss(keras.losses.Loss):
    """The five-term sum-squared YOLO v1 loss of Redmon et al. 2016 (`yolo_v1_loss_terms`).

    Args:
        grid_size, boxes_per_cell, num_classes: S, B and C of the model
            (`model.yolo_config`).
        lambda_coord: float, weight of the coordinate terms (the paper: 5).
        lambda_noobj: float, weight of the confidence of predictors without
            an object (the paper: 0.5).

    Call with `y_true` `[batch, S, S, 5 + C]` and `y_pred`
    `[batch, S, S, B * 5 + C]`; returns the sum of the terms per image,
    averaged over the batch.
    """

    def __init__(self, grid_size, boxes_per_cell, num_classes, lambda_coord=5.0,
                 lambda_noobj=0.5, name="yolo_v1_loss", reduction="sum_over_batch_size"):
        super().__init__(name=name, reduction=reduction)
        _check_box_layout(grid_size, boxes_per_cell, num_classes)
        self.grid_size, self.boxes_per_cell, self.num_classes = grid_size, boxes_per_cell, num_classes
        self.lambda_coord = check_float("lambda_coord", lambda_coord, minimum=0.0)
        self.lambda_noobj = check_float("lambda_noobj", lambda_noobj, minimum=0.0)

    def call(self, y_true, y_pred):
        terms = yolo_v1_loss_terms(y_true, y_pred, self.grid_size, self.boxes_per_cell,
                                   self.num_classes, self.lambda_coord, self.lambda_noobj)
        return tf.add_n(list(terms.values()))

    def get_config(self):
        return {**super().get_config(), "grid_size": self.grid_size,
                "boxes_per_cell": self.boxes_per_cell, "num_classes": self.num_classes,
                "lambda_coord": self.lambda_coord, "lambda_noobj": self.lambda_noobj}


def decode_yolo_v1(grid, image_size, boxes_per_cell, num_classes, score_threshold=0.05,
                   iou_threshold=0.5, max_detections=100):
    """Detections from a YOLO v1 output: class-specific scores, then per-class NMS.

    Each predictor's score for class c is its confidence times the cell's
    probability of c (the paper's class-specific confidence).

    Args:
        grid: float `[batch, S, S, B * 5 + C]`.
        image_size: `(height, width)` in pixels the boxes are returned in.
        boxes_per_cell, num_classes: B and C.
        score_threshold, iou_threshold, max_detections: NMS settings.

    Returns:
        dict: `boxes` float32 `[batch, max_detections, 4]` xyxy pixels
        (clipped to the image), `scores` `[batch, max_detections]`,
        `classes` int32 (-1 for padding), `num_detections` int32 `[batch]`.
    """
    from kerasvision.boxes import batched_non_max_suppression

    grid = tf.cast(grid, tf.float32)
    grid_size = grid.shape[1]
    boxes, confidences = yolo_v1_boxes(grid, grid_size, boxes_per_cell)
    class_probabilities = grid[..., boxes_per_cell * 5:]  # [batch, S, S, C]
    scores = confidences[..., None] * class_probabilities[..., None, :]  # [batch, S, S, B, C]
    scale = tf.constant([image_size[1], image_size[0], image_size[1], image_size[0]], tf.float32)
    batch = tf.shape(grid)[0]
    boxes = tf.clip_by_value(boxes, 0.0, 1.0) * scale
    return batched_non_max_suppression(
        tf.reshape(boxes, [batch, -1, 4]), tf.reshape(scores, [batch, -1, num_classes]),
        iou_threshold=iou_threshold, score_threshold=score_threshold,
        max_detections=max_detections)
