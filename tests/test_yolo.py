"""YOLO v1: target encoding, the five loss terms on hand-computed cases, training, save/load."""

import numpy as np
import pytest
import tensorflow as tf
import keras

from kerasvision.models.yolo import (
    YoloV1Loss,
    build_yolo_v1,
    encode_yolo_v1_targets,
    yolo_v1_boxes,
    yolo_v1_loss_terms,
)


def test_target_encoding_puts_each_box_in_its_centre_cell():
    boxes = [[10, 10, 50, 40], [60, 60, 120, 100], [-1, -1, -1, -1]]
    target = encode_yolo_v1_targets(boxes, [1, 3, -1], (128, 128), 4, 4).numpy()
    assert target.shape == (4, 4, 9)
    # Box 1: centre (30, 25) px -> cell (row 0, column 0), offsets 30/32 and 25/32.
    np.testing.assert_allclose(target[0, 0], [30 / 32, 25 / 32, 40 / 128, 30 / 128, 1, 0, 1, 0, 0])
    # Box 2: centre (90, 80) -> cell (2, 2), offsets (90 - 64)/32 and (80 - 64)/32.
    np.testing.assert_allclose(target[2, 2], [26 / 32, 16 / 32, 60 / 128, 40 / 128, 1, 0, 0, 0, 1])
    assert target[..., 4].sum() == 2  # every other cell is empty
    assert np.count_nonzero(target) == np.count_nonzero(target[[0, 2], [0, 2]])


def test_two_centres_in_one_cell_keep_the_larger_box():
    boxes = [[0, 0, 30, 30], [2, 2, 12, 12]]  # both centres in cell (0, 0) of a 2x2 grid on 64 px
    for order in ([0, 1], [1, 0]):
        target = encode_yolo_v1_targets(np.array(boxes)[order], np.array([0, 1])[order],
                                        (64, 64), 2, 2).numpy()
        np.testing.assert_allclose(target[0, 0, 2:4], [30 / 64, 30 / 64])
        np.testing.assert_array_equal(target[0, 0, 5:], [1, 0])


def test_decoded_boxes_invert_the_encoding():
    boxes = np.array([[12.0, 20.0, 44.0, 60.0], [70.0, 8.0, 126.0, 30.0]])
    target = encode_yolo_v1_targets(boxes, [0, 1], (128, 128), 4, 2)
    grid = tf.concat([target[..., :5], target[..., :5], target[..., 5:]], axis=-1)[None]
    decoded, confidences = yolo_v1_boxes(grid, 4, 2)
    cells = np.argwhere(target.numpy()[..., 4] == 1)
    found = np.array([decoded.numpy()[0, row, column, 0] * 128 for row, column in cells])
    np.testing.assert_allclose(found[np.argsort(found[:, 0])], boxes[np.argsort(boxes[:, 0])],
                               atol=1e-4)
    assert confidences.numpy().sum() == 2 * 2  # two predictors in each of two cells


def _grid(cells):
    """A [1, 2, 2, 2 * 5 + 2] prediction from {(row, column): (box0, box1, classes)}."""
    grid = np.zeros((1, 2, 2, 12), np.float32)
    for (row, column), (box0, box1, classes) in cells.items():
        grid[0, row, column] = [*box0, *box1, *classes]
    return grid


def test_loss_terms_equal_the_hand_computed_sums():
    # One object in cell (0, 0) of a 2x2 grid: centre offsets (0.5, 0.5), size 0.25 x 0.25
    # (relative xyxy 0.125..0.375). Predictor 0 matches it exactly; predictor 1 is off.
    y_true = np.zeros((1, 2, 2, 7), np.float32)
    y_true[0, 0, 0] = [0.5, 0.5, 0.25, 0.25, 1, 1, 0]
    y_pred = _grid({
        (0, 0): ((0.5, 0.5, 0.25, 0.25, 0.8), (0.1, 0.1, 0.04, 0.09, 0.3), (0.6, 0.4)),
        (1, 1): ((0.5, 0.5, 0.5, 0.5, 0.2), (0.5, 0.5, 0.5, 0.5, 0.4), (0.5, 0.5)),
    })
    terms = {k: float(v[0]) for k, v in yolo_v1_loss_terms(y_true, y_pred, 2, 2, 2).items()}
    # Predictor 0 has IoU 1, so it is responsible: no coordinate error, confidence target 1.
    assert terms["xy"] == pytest.approx(0.0, abs=1e-6)
    assert terms["wh"] == pytest.approx(0.0, abs=1e-6)
    assert terms["object"] == pytest.approx((0.8 - 1.0) ** 2)
    # Every other predictor: 0.3 (cell 0,0), 0.2 and 0.4 (cell 1,1), zeros elsewhere.
    assert terms["no_object"] == pytest.approx(0.5 * (0.3 ** 2 + 0.2 ** 2 + 0.4 ** 2))
    assert terms["class"] == pytest.approx((0.6 - 1) ** 2 + 0.4 ** 2)


def test_coordinate_terms_use_square_roots_and_lambda_coord():
    y_true = np.zeros((1, 2, 2, 7), np.float32)
    y_true[0, 1, 0] = [0.25, 0.75, 0.36, 0.16, 1, 0, 1]
    # The only non-zero predictor overlaps the true box, so it is responsible.
    y_pred = _grid({(1, 0): ((0.5, 0.5, 0.64, 0.25, 0.5), (0, 0, 0, 0, 0), (0, 1))})
    terms = yolo_v1_loss_terms(y_true, y_pred, 2, 2, 2, lambda_coord=5.0)
    expected_xy = 5.0 * ((0.5 - 0.25) ** 2 + (0.5 - 0.75) ** 2)
    expected_wh = 5.0 * ((0.8 - 0.6) ** 2 + (0.5 - 0.4) ** 2)
    assert float(terms["xy"][0]) == pytest.approx(expected_xy, rel=1e-5)
    assert float(terms["wh"][0]) == pytest.approx(expected_wh, rel=1e-4)
    # The confidence target is the IoU of the two boxes, computed here by hand.
    true_box = np.array([(0.25 + 0) / 2 - 0.18, (0.75 + 1) / 2 - 0.08,
                         (0.25 + 0) / 2 + 0.18, (0.75 + 1) / 2 + 0.08])
    predicted = np.array([(0.5 + 0) / 2 - 0.32, (0.5 + 1) / 2 - 0.125,
                          (0.5 + 0) / 2 + 0.32, (0.5 + 1) / 2 + 0.125])
    overlap = np.prod(np.maximum(np.minimum(true_box[2:], predicted[2:])
                                 - np.maximum(true_box[:2], predicted[:2]), 0))
    iou = overlap / (0.36 * 0.16 + 0.64 * 0.25 - overlap)
    assert float(terms["object"][0]) == pytest.approx((0.5 - iou) ** 2, rel=1e-4)


def test_loss_falls_when_training_on_a_tiny_task():
    keras.utils.set_random_seed(0)
    model = build_yolo_v1(2, (64, 64, 3), scratch_filters=(4, 8, 8, 16, 16), head_filters=16,
                          head_convs=1)
    config = model.yolo_config
    rng = np.random.default_rng(0)
    images = rng.uniform(0, 255, (8, 64, 64, 3)).astype("float32")
    targets = tf.stack([encode_yolo_v1_targets([[8, 8, 40, 40]], [i % 2], (64, 64), 2, 2)
                        for i in range(8)])
    model.compile(keras.optimizers.Adam(3e-3),
                  YoloV1Loss(config["grid_size"], config["boxes_per_cell"], config["num_classes"]))
    history = model.fit(images, targets, batch_size=4, epochs=15, verbose=0)
    losses = history.history["loss"]
    assert losses[-1] < 0.5 * losses[0], losses


@pytest.mark.parametrize("backbone", [None, "vgg16"])
def test_model_shapes_and_save_load_round_trip(backbone, tmp_path):
    model = build_yolo_v1(3, (64, 64, 3), backbone=backbone, weights=None, head_filters=8,
                          scratch_filters=(4, 4, 8, 8, 8))
    assert model.output_shape == (None, 2, 2, 2 * 5 + 3)
    images = np.random.default_rng(1).uniform(0, 255, (2, 64, 64, 3)).astype("float32")
    output = model(images).numpy()
    assert np.all((output >= 0) & (output <= 1))
    np.testing.assert_allclose(output[..., 10:].sum(-1), 1.0, rtol=1e-5)  # class softmax
    path = str(tmp_path / "yolo.keras")
    model.save(path)
    np.testing.assert_allclose(keras.models.load_model(path)(images).numpy(), output, atol=1e-6)


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"input_shape": (100, 100, 3)}, "multiples of the network stride 32"),
        ({"boxes_per_cell": 0}, r"`boxes_per_cell` must be >= 1; received boxes_per_cell=0"),
        ({"num_classes": 0}, r"`num_classes` must be >= 1; received num_classes=0"),
        ({"scratch_filters": (4, 8)}, r"`scratch_filters` must hold 5 widths"),
        ({"backbone": "alexnet"}, "backbone"),
    ],
)
def test_bad_arguments(kwargs, match):
    arguments = {"num_classes": 2, "input_shape": (64, 64, 3), **kwargs}
    with pytest.raises(ValueError, match=match):
        build_yolo_v1(**arguments)
