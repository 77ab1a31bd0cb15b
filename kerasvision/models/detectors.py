"""Object detectors behind one interface: build, targets for `fit`, detections in pixels.

- `yolov1`: the notes' one-stage detector, `kerasvision.models.yolo` (Redmon
  et al. 2016), on a registered backbone or a small from-scratch encoder.
- `yolov8`: keras-cv's anchor-free `YOLOV8Detector` (Ultralytics YOLOv8: a
  CSP backbone, a feature pyramid and decoupled box-distribution and class
  heads, trained with CIoU and binary cross-entropy through task-aligned
  assignment), built from its config (no preset download), with the fixes
  of `kerasvision.models.yolo_v8`.
- `rcnn`: the notes' two-stage R-CNN, `kerasvision.models.rcnn` (Girshick
  et al. 2014): selective-search proposals (OpenCV, the `rcnn` extra), a CNN
  on each warped proposal, per-class box regression. Its training inputs are
  proposal crops, built eagerly by `detector_training_data`.

Every detector takes raw RGB images `[batch, H, W, 3]` in [0, 255] and is
trained on batches of the package's detection contract:
`{"images", "bounding_boxes": {"boxes" [batch, max_boxes, 4] xyxy pixels,
"labels" [batch, max_boxes]}}` padded with -1 (`kerasvision.data`).
`detect` returns, for every family, `boxes` float32 `[batch, max_detections,
4]` xyxy in pixels, `scores`, `classes` int32 (-1 for padding) and
`num_detections` int32 `[batch]`.
"""

import keras
import tensorflow as tf

from kerasvision.models.rcnn import (
    build_rcnn,
    compile_rcnn,
    is_rcnn,
    make_rcnn_training_data,
    rcnn_detect,
)
from kerasvision.models.yolo import (
    YoloV1Loss,
    build_yolo_v1,
    decode_yolo_v1,
    encode_yolo_v1_targets,
)
from kerasvision.validation import check_choice, check_float, check_image_shape, check_int

DETECTORS = ("yolov1", "yolov8", "rcnn")
# A small YOLOv8 (about 1M parameters at 4 classes): trains in minutes on a CPU.
YOLOV8_CHANNELS = (16, 32, 64, 128)
YOLOV8_DEPTHS = (1, 1, 1, 1)


def build_detector(model, num_classes, input_shape, backbone=None, weights="auto", **kwargs):
    """Builds a detector of `DETECTORS`.

    Args:
        model: "yolov1", "yolov8" or "rcnn".
        num_classes: int >= 1.
        input_shape: `(height, width, 3)`, sides multiples of 32 (rcnn: the
            image size only; the model itself takes `crop_size` crops).
        backbone: yolov1 and rcnn, a registered backbone or None (from scratch).
        weights: yolov1 and rcnn with a backbone, its weights.
        **kwargs: yolov1: `build_yolo_v1`'s; yolov8: `stackwise_channels`,
            `stackwise_depth`, `fpn_depth`; rcnn: `build_rcnn`'s.

    Returns:
        A `keras.Model`.
    """
    check_choice("model", model, DETECTORS)
    input_shape = check_image_shape(input_shape, multiple_of=32, min_size=32)
    if model == "yolov1":
        return build_yolo_v1(num_classes, input_shape, backbone=backbone, weights=weights,
                             **kwargs)
    if model == "rcnn":
        return build_rcnn(num_classes, backbone=backbone, weights=weights, **kwargs)
    if backbone is not None:
        raise ValueError("`backbone` applies to yolov1 only (yolov8 has its own CSP backbone); "
                         f"received backbone={backbone!r} with model='yolov8'.")
    return build_yolo_v8(num_classes, input_shape, **kwargs)


def build_yolo_v8(num_classes, input_shape=(128, 128, 3), stackwise_channels=YOLOV8_CHANNELS,
                  stackwise_depth=YOLOV8_DEPTHS, fpn_depth=1):
    """keras-cv's `YOLOV8Detector` built from its config, with boxes in pixel xyxy.

    Args:
        num_classes: int >= 1.
        input_shape: `(height, width, 3)`.
        stackwise_channels: four ints, the CSP backbone's stage widths.
        stackwise_depth: four ints, C2f blocks per stage.
        fpn_depth: int, C2f blocks in each feature-pyramid node.

    Returns:
        `kerasvision.models.yolo_v8.YOLOV8` (keras-cv's `YOLOV8Detector`, fixed
        for mixed precision and distribution); `call` returns raw
        `{"boxes" [batch, anchors, 64], "classes" [batch, anchors, C]}`.
    """
    import keras_cv

    from kerasvision.models.yolo_v8 import YOLOV8

    check_int("num_classes", num_classes, minimum=1)
    check_int("fpn_depth", fpn_depth, minimum=1)
    backbone = keras_cv.models.YOLOV8Backbone(
        stackwise_channels=list(stackwise_channels), stackwise_depth=list(stackwise_depth),
        include_rescaling=True, activation="swish", input_shape=tuple(input_shape))
    return YOLOV8(num_classes=num_classes, bounding_box_format="xyxy", backbone=backbone,
                  fpn_depth=fpn_depth)


def is_yolo_v8(model):
    """Whether `model` is keras-cv's YOLOv8 detector (else a `build_yolo_v1` model)."""
    import keras_cv

    return isinstance(model, keras_cv.models.YOLOV8Detector)


def compile_detector(model, learning_rate, jit_compile="auto"):
    """Compiles a detector with Adam and its family's loss.

    yolov1: `YoloV1Loss` (the paper's five terms). yolov8: keras-cv's binary
    cross-entropy on classes and CIoU on boxes. rcnn: softmax cross-entropy
    on C + 1 classes and smooth L1 on the true class's box deltas.
    """
    check_float("learning_rate", learning_rate, minimum=0.0, strict_minimum=True)
    # Clipping: a from-scratch detector's first steps see large box-loss gradients.
    optimizer = keras.optimizers.Adam(learning_rate, global_clipnorm=10.0)
    if is_rcnn(model):
        compile_rcnn(model, optimizer, jit_compile=jit_compile)
    elif is_yolo_v8(model):
        model.compile(optimizer=optimizer, classification_loss="binary_crossentropy",
                      box_loss="ciou", jit_compile=jit_compile)
    else:
        config = model.yolo_config
        model.compile(optimizer=optimizer,
                      loss=YoloV1Loss(config["grid_size"], config["boxes_per_cell"],
                                      config["num_classes"]),
                      jit_compile=jit_compile)
    return model


def detector_targets(model):
    """The map from a batch of the detection contract to `(inputs, targets)` for `fit`.

    Returns:
        callable `batch dict -> (images, targets)`: yolov8 targets are
        keras-cv's `{"boxes", "classes"}`; yolov1 targets the encoded grid
        `[batch, S, S, 5 + C]`.

    Raises:
        ValueError: for an R-CNN, whose inputs are proposal crops that no
            per-batch map can produce; use `detector_training_data`.
    """
    if is_rcnn(model):
        raise ValueError(
            f"`model` is an R-CNN (model.name={model.name!r}): its training inputs are "
            "warped proposal crops, not images, so there is no per-batch map; expected a "
            "yolov1 or yolov8 model here. Use detector_training_data(model, dataset), which "
            "calls kerasvision.models.rcnn.make_rcnn_training_data.")
    if is_yolo_v8(model):
        def to_yolo_v8(batch):
            boxes = batch["bounding_boxes"]
            return batch["images"], {"boxes": boxes["boxes"],
                                     "classes": tf.cast(boxes["labels"], tf.float32)}
        return to_yolo_v8
    config = model.yolo_config
    image_size = model.input_shape[1:3]

    def to_yolo_v1(batch):
        boxes = batch["bounding_boxes"]
        targets = tf.map_fn(
            lambda pair: encode_yolo_v1_targets(pair[0], pair[1], image_size,
                                                config["grid_size"], config["num_classes"]),
            (boxes["boxes"], boxes["labels"]),
            fn_output_signature=tf.TensorSpec(
                [config["grid_size"], config["grid_size"], 5 + config["num_classes"]],
                tf.float32))
        return batch["images"], targets
    return to_yolo_v1


def detector_training_data(model, dataset, training=True, **kwargs):
    """`(inputs, targets)` batches for `model.fit` from a batched dataset of the contract.

    yolov1 and yolov8: `dataset.map(detector_targets(model))`, lazy. rcnn:
    `make_rcnn_training_data`, built eagerly once (selective search on every
    image, then sampled, warped proposal crops held in memory; shuffled when
    `training`).

    Args:
        model: a detector of `build_detector`.
        dataset: batched `tf.data.Dataset` of the detection contract.
        training: bool; rcnn only, whether to shuffle the crops.
        **kwargs: rcnn only, `make_rcnn_training_data`'s (`batch_size`,
            `samples_per_image`, `proposal_cache`, ...).
    """
    if is_rcnn(model):
        kwargs.setdefault("shuffle", training)
        return make_rcnn_training_data(dataset, model, **kwargs)
    if kwargs:
        raise ValueError("keyword arguments apply to rcnn models only; received "
                         f"{sorted(kwargs)} for model={model.name!r}.")
    return dataset.map(detector_targets(model), num_parallel_calls=tf.data.AUTOTUNE)


def _set_yolo_v8_decoder(model, score_threshold, iou_threshold, max_detections):
    """Gives keras-cv's detector an NMS with these settings, unless it has one already.

    The thresholds are arguments of `detect`, not of the model; the decoder is
    replaced only when they change, so that a traced `detect` (an export)
    does not modify the tracked model.
    """
    import keras_cv

    decoder = model.prediction_decoder
    wanted = (float(score_threshold), float(iou_threshold), int(max_detections))
    current = (getattr(decoder, "confidence_threshold", None), getattr(decoder, "iou_threshold",
               None), getattr(decoder, "max_detections", None))
    if current != wanted:
        # The class head ends in a sigmoid: its outputs are probabilities already.
        model.prediction_decoder = keras_cv.layers.MultiClassNonMaxSuppression(
            bounding_box_format="xyxy", from_logits=False, iou_threshold=wanted[1],
            confidence_threshold=wanted[0], max_detections=wanted[2],
            max_detections_per_class=wanted[2], dtype="float32")


def detect(model, images, score_threshold=0.05, iou_threshold=0.5, max_detections=100):
    """Detections of a batch of images at the model's input size, after per-class NMS.

    Args:
        model: a detector of `build_detector`.
        images: float `[batch, H, W, 3]` in [0, 255] at the model's input size
            (rcnn: any size; eager only, selective search runs in OpenCV).
        score_threshold: float, lowest score kept.
        iou_threshold: float, overlap above which a lower-scored box of the
            same class is suppressed.
        max_detections: int, detections per image.

    Returns:
        dict `boxes` float32 `[batch, max_detections, 4]` xyxy pixels, `scores`,
        `classes` int32 (-1 padding), `num_detections` int32 `[batch]`.
    """
    if is_rcnn(model):
        return rcnn_detect(model, images, score_threshold=score_threshold,
                           iou_threshold=iou_threshold, max_detections=max_detections)
    images = tf.cast(images, tf.float32)
    if is_yolo_v8(model):
        _set_yolo_v8_decoder(model, score_threshold, iou_threshold, max_detections)
        decoded = model.decode_predictions(model(images, training=False), images)
        height, width = images.shape[1], images.shape[2]
        limits = tf.constant([width, height, width, height], tf.float32)
        classes = tf.cast(decoded["classes"], tf.int32)
        valid = tf.sequence_mask(decoded["num_detections"], tf.shape(classes)[1])
        return {
            "boxes": tf.where(valid[..., None],
                              tf.clip_by_value(tf.cast(decoded["boxes"], tf.float32), 0.0, limits),
                              0.0),
            "scores": tf.where(valid, tf.cast(decoded["confidence"], tf.float32), 0.0),
            "classes": tf.where(valid, classes, -1),
            "num_detections": tf.cast(decoded["num_detections"], tf.int32),
        }
    config = model.yolo_config
    return decode_yolo_v1(model(images, training=False), images.shape[1:3],
                          config["boxes_per_cell"], config["num_classes"],
                          score_threshold=score_threshold, iou_threshold=iou_threshold,
                          max_detections=max_detections)
