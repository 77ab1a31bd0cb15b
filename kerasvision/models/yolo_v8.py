"""keras-cv's YOLOv8 detector, made correct under mixed precision and `tf.distribute`.

keras-cv 0.9's `YOLOV8Detector` (Ultralytics YOLOv8, anchor-free, task-aligned
assignment, CIoU and distribution-focal box regression) has two faults under
Keras 3.15 that `YOLOV8` here fixes without changing its algorithm:

- under a mixed policy its loss and decoder multiply bfloat16 or float16 head
  outputs by float32 anchors ("Input 'y' of 'Mul' Op has type float32 that
  does not match type bfloat16"), partly through a `Reshape` layer they
  create on the fly under the global policy, and its label encoder (the
  task-aligned assigner) fails in bfloat16: the loss, the decoder and the
  assigner run in float32 here, on head outputs cast to float32 (the network
  itself keeps the mixed policy);
- its `compute_loss` is not divided by the number of replicas, so under a
  `tf.distribute` strategy the summed gradient is `num_replicas` times the
  single-device one (and the logged loss too): it is divided here, as Keras
  divides its own losses (`tests/test_detection.py` checks one mirrored step
  against one device). The per-term logs `box_loss` and `class_loss`, kept by
  keras-cv's own trackers, still show the sum over replicas.
"""

import contextlib

import keras
import keras_cv
from keras import ops
from keras.src.losses.loss import scale_loss_for_distribution


def _as_float32(predictions):
    return {key: ops.cast(value, "float32") for key, value in predictions.items()}


@contextlib.contextmanager
def _float32_policy():
    """The global dtype policy set to float32 for layers created inside, then restored."""
    previous = keras.config.dtype_policy()
    keras.config.set_dtype_policy("float32")
    try:
        yield
    finally:
        keras.config.set_dtype_policy(previous)


@keras.saving.register_keras_serializable(package="kerasvision")
class YOLOV8(keras_cv.models.YOLOV8Detector):
    """`keras_cv.models.YOLOV8Detector` with float32 loss and decoding and replica-scaled loss.

    Takes `YOLOV8Detector`'s arguments. Input: images `[batch, H, W, 3]` in
    [0, 255] (the backbone rescales). `call` returns raw
    `{"boxes" [batch, anchors, 64], "classes" [batch, anchors, C]}`;
    `decode_predictions` the NMS'd `boxes`, `confidence`, `classes`,
    `num_detections` of `prediction_decoder`.
    """

    def __init__(self, num_classes, *args, label_encoder=None, **kwargs):
        if label_encoder is None:
            from keras_cv.src.models.object_detection.yolo_v8.yolo_v8_label_encoder import (
                YOLOV8LabelEncoder,
            )

            label_encoder = YOLOV8LabelEncoder(num_classes=num_classes, dtype="float32")
        super().__init__(*args, num_classes=num_classes, label_encoder=label_encoder, **kwargs)

    def compute_loss(self, x, y, y_pred, sample_weight=None, **kwargs):
        with _float32_policy():
            loss = super().compute_loss(x, y, _as_float32(y_pred), sample_weight, **kwargs)
        return scale_loss_for_distribution(loss)

    def decode_predictions(self, pred, images):
        with _float32_policy():
            return super().decode_predictions(_as_float32(pred), images)
