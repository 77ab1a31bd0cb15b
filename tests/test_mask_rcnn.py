"""Mask R-CNN: RoIAlign, anchors and targets against numpy, training, inference, save and export."""

import json
import os

import keras
import numpy as np
import pytest
import tensorflow as tf

from kerasvision.data.shapes import make_shapes_detection
from kerasvision.models.mask_rcnn import (
    MASK_SIZE,
    MaskRCNN,
    assign_anchor_targets,
    build_mask_rcnn,
    detect_instances,
    generate_anchors,
    mask_targets,
    paste_masks,
    roi_align,
    sample_subset,
)
from tests.helpers import assert_config_round_trip, run_in_fresh_process

SIZE = 64
TINY = {"scratch_filters": (8, 8, 16), "rpn_filters": 16, "fc_units": 32, "mask_filters": 8,
        "anchor_sizes": (12.0, 24.0, 48.0), "train_proposals": 64, "rois_per_image": 32,
        "pre_nms_proposals": 200, "inference_proposals": 50, "seed": 0}


def tiny_model(**overrides):
    model = build_mask_rcnn(4, (SIZE, SIZE, 3), **{**TINY, **overrides})
    model.compile(keras.optimizers.Adam(3e-3))
    return model


@pytest.fixture(scope="module")
def model():
    """One tiny model for the tests that only need some weights (building costs seconds)."""
    return tiny_model()


def scenes(count=4, seed=0):
    images, boxes, labels, masks = make_shapes_detection(count, SIZE, seed=seed)
    return {"images": tf.constant(images, tf.float32),
            "bounding_boxes": {"boxes": tf.constant(boxes), "labels": tf.constant(labels)},
            "masks": tf.constant(masks.astype(np.uint8))}


def numpy_bilinear(image, y, x):
    """`image[y, x]` at fractional index coordinates, bilinear, 0 outside (by hand)."""
    height, width = image.shape[:2]
    if y < -1 or y > height or x < -1 or x > width:
        return np.zeros(image.shape[2:])
    if y < 0 or y > height - 1 or x < 0 or x > width - 1:
        return np.zeros(image.shape[2:])  # crop_and_resize's extrapolation value
    y0, x0 = int(np.floor(y)), int(np.floor(x))
    y1, x1 = min(y0 + 1, height - 1), min(x0 + 1, width - 1)
    dy, dx = y - y0, x - x0
    top = image[y0, x0] * (1 - dx) + image[y0, x1] * dx
    bottom = image[y1, x0] * (1 - dx) + image[y1, x1] * dx
    return top * (1 - dy) + bottom * dy


def numpy_roi_align(feature_map, box, size, stride):
    """One sample at each bin centre; a map value at index i lives at (i + 0.5) * stride."""
    x1, y1, x2, y2 = np.asarray(box, np.float64) / stride
    out = np.zeros((size, size) + feature_map.shape[2:])
    for i in range(size):
        for j in range(size):
            y = y1 + (i + 0.5) * (y2 - y1) / size - 0.5
            x = x1 + (j + 0.5) * (x2 - x1) / size - 0.5
            out[i, j] = numpy_bilinear(feature_map, y, x)
    return out


def test_roi_align_of_a_linear_map_is_the_map_at_the_bin_centres():
    # f(row, col) = 3 row - 2 col + 5 on an 8x8 stride-4 map: bilinear sampling is exact.
    rows, cols = np.meshgrid(np.arange(8.0), np.arange(8.0), indexing="ij")
    linear = (3 * rows - 2 * cols + 5)[None, ..., None].astype(np.float32)
    box = [4.0, 6.0, 20.0, 18.0]  # pixels; bins of 16/7 x 12/7 pixels
    got = roi_align(tf.constant(linear), tf.constant([[box]]), 7, stride=4).numpy()[0, ..., 0]
    centre_x = (box[0] + (np.arange(7) + 0.5) * (box[2] - box[0]) / 7) / 4 - 0.5
    centre_y = (box[1] + (np.arange(7) + 0.5) * (box[3] - box[1]) / 7) / 4 - 0.5
    expected = 3 * centre_y[:, None] - 2 * centre_x[None, :] + 5
    np.testing.assert_allclose(got, expected, atol=1e-4)
    constant = roi_align(tf.fill([1, 8, 8, 2], 2.5), tf.constant([[box]]), 7, stride=4)
    np.testing.assert_allclose(constant.numpy(), 2.5, atol=1e-6)


def test_roi_align_equals_a_numpy_bilinear_reference():
    rng = np.random.default_rng(0)
    feature_map = rng.normal(size=(2, 8, 8, 3)).astype(np.float32)
    boxes = np.array([[[3.0, 5.0, 27.0, 19.0], [0.0, 0.0, 32.0, 32.0]],
                      [[10.5, 2.25, 14.0, 30.0], [8.0, 8.0, 24.0, 24.0]]], np.float32)
    got = roi_align(tf.constant(feature_map), tf.constant(boxes), 7, stride=4).numpy()
    for image in range(2):
        for index in range(2):
            expected = numpy_roi_align(feature_map[image], boxes[image, index], 7, 4)
            np.testing.assert_allclose(got[image * 2 + index], expected, atol=1e-5)


def test_mask_targets_equal_a_numpy_crop_resize():
    rng = np.random.default_rng(1)
    masks = rng.random((2, 3, 32, 32)) > 0.5
    masks[0, 1, 4:20, 6:25] = True
    boxes = np.array([[[6.0, 4.0, 25.0, 20.0], [1.5, 2.5, 30.0, 17.0]],
                      [[0.0, 0.0, 32.0, 32.0], [9.0, 3.0, 21.0, 29.0]]], np.float32)
    instances = np.array([[1, 2], [0, 2]])
    got = mask_targets(tf.constant(masks), tf.constant(boxes), tf.constant(instances)).numpy()
    assert got.shape == (4, MASK_SIZE, MASK_SIZE)
    for image in range(2):
        for index in range(2):
            mask = masks[image, instances[image, index]].astype(np.float64)[..., None]
            soft = numpy_roi_align(mask, boxes[image, index], MASK_SIZE, 1)[..., 0]
            decided = np.abs(soft - 0.5) > 1e-4  # exact ties may round either way
            np.testing.assert_array_equal(got[image * 2 + index][decided],
                                          (soft >= 0.5)[decided])
    # A full mask over its own box is all ones.
    np.testing.assert_array_equal(got[0], 1.0)


def test_anchors_by_hand():
    anchors = generate_anchors((2, 3), 8, sizes=(8.0, 16.0), ratios=(0.5, 1.0, 2.0))
    assert anchors.shape == (2 * 3 * 6, 4)
    half_w, half_h = 4 / np.sqrt(0.5), 4 * np.sqrt(0.5)
    np.testing.assert_allclose(anchors[0], [4 - half_w, 4 - half_h, 4 + half_w, 4 + half_h],
                               rtol=1e-6)
    np.testing.assert_allclose(anchors[4], [4 - 8, 4 - 8, 4 + 8, 4 + 8])  # size 16, ratio 1
    np.testing.assert_allclose(anchors[6 + 1], [12 - 4, 4 - 4, 12 + 4, 4 + 4])  # next column
    np.testing.assert_allclose(anchors[3 * 6 + 1], [4 - 4, 12 - 4, 4 + 4, 12 + 4])  # next row


def test_anchor_labels_on_a_hand_made_case():
    anchors = np.array([[0, 0, 10, 10],    # IoU 1 with box 0: positive
                        [0, 0, 20, 20],    # 0.25 with box 0: negative
                        [30, 30, 40, 40],  # 0.8 with box 1: positive
                        [5, 5, 15, 15],    # 0.14: negative
                        [50, 50, 60, 60],  # 0.5 with box 2: ignored
                        [50, 55, 60, 75]],  # 0.6 with box 2, its best anchor: positive
                       np.float32)
    gt = np.array([[[0, 0, 10, 10], [30, 30, 38, 40], [50, 50, 60, 70], [-1, -1, -1, -1]]],
                  np.float32)
    valid = np.array([[True, True, True, False]])
    positive, negative, matched = assign_anchor_targets(anchors, gt, valid)
    np.testing.assert_array_equal(positive.numpy()[0], [1, 0, 1, 0, 0, 1])
    np.testing.assert_array_equal(negative.numpy()[0], [0, 1, 0, 1, 0, 0])
    np.testing.assert_array_equal(matched.numpy()[0][[0, 2, 5]], [0, 1, 2])
    # An image without objects: every anchor negative.
    positive, negative, _ = assign_anchor_targets(anchors, -np.ones((1, 2, 4), np.float32),
                                                  np.zeros((1, 2), bool))
    assert not positive.numpy().any() and negative.numpy().all()


def test_sample_subset_keeps_at_most_count_of_the_candidates():
    candidates = tf.constant([[True, False, True, True, True], [False, True, False, False, True]])
    random = tf.random.stateless_uniform([2, 5], seed=[1, 2])
    chosen = sample_subset(candidates, tf.constant([2, 5]), random).numpy()
    assert chosen.sum(axis=1).tolist() == [2, 2]
    assert not (chosen & ~candidates.numpy()).any()


def test_paste_masks_puts_the_mask_in_its_box():
    box = tf.constant([[[10.0, 20.0, 30.0, 44.0], [0.0, 0.0, 0.0, 0.0]]])
    full = tf.ones([1, 2, MASK_SIZE, MASK_SIZE])
    pasted = paste_masks(full, box, SIZE, SIZE).numpy()
    expected = np.zeros((SIZE, SIZE))
    expected[20:44, 10:30] = 1  # pixels whose centres lie in the box
    np.testing.assert_allclose(pasted[0, 0], expected, atol=1e-6)
    np.testing.assert_array_equal(pasted[0, 1], 0)  # a padding row stays empty
    left = np.zeros((1, 1, MASK_SIZE, MASK_SIZE), np.float32)
    left[..., : MASK_SIZE // 2] = 1
    pasted = paste_masks(tf.constant(left), box[:, :1], SIZE, SIZE).numpy()[0, 0] >= 0.5
    expected = np.zeros((SIZE, SIZE), bool)
    expected[20:44, 10:20] = True
    np.testing.assert_array_equal(pasted, expected)


def test_one_train_step_changes_every_variable_with_finite_losses(model):
    model.run_eagerly = True  # one step runs faster eagerly than traced
    before = [v.numpy().copy() for v in model.trainable_variables]
    data = tf.data.Dataset.from_tensors(scenes())
    logs = model.fit(data, epochs=1, verbose=0).history
    assert set(logs) == {"loss", "rpn_objectness_loss", "rpn_box_loss", "class_loss",
                         "box_loss", "mask_loss"}
    assert all(np.isfinite(values[-1]) for values in logs.values())
    unchanged = [v.path for v, old in zip(model.trainable_variables, before)
                 if np.array_equal(v.numpy(), old)]
    assert not unchanged
    assert np.isfinite(model.evaluate(data, verbose=0, return_dict=True)["loss"])
    model.run_eagerly = False


def test_loss_falls_on_a_tiny_fixed_batch():
    model = tiny_model()
    # One step per epoch: the history holds the loss of every step (training mode).
    losses = model.fit(tf.data.Dataset.from_tensors(scenes(4)), epochs=40,
                       verbose=0).history["loss"]
    before, after = np.mean(losses[:3]), np.mean(losses[-3:])
    assert np.all(np.isfinite(losses)) and after < 0.7 * before, losses


def test_detect_instances_shapes_and_masks_inside_their_boxes(model):
    images = scenes(2)["images"]
    found = detect_instances(model, images, score_threshold=0.0, max_detections=5)
    assert found["boxes"].shape == (2, 5, 4) and found["scores"].shape == (2, 5)
    assert found["classes"].dtype == tf.int32 and found["num_detections"].shape == (2,)
    masks = found["masks"].numpy()
    assert masks.shape == (2, 5, SIZE, SIZE) and masks.dtype == np.uint8
    boxes = found["boxes"].numpy()
    centres = np.arange(SIZE) + 0.5
    for image in range(2):
        for row in range(5):
            x1, y1, x2, y2 = boxes[image, row]
            inside = (((centres >= y1) & (centres <= y2))[:, None]
                      & ((centres >= x1) & (centres <= x2))[None, :])
            assert not masks[image, row][~inside].any()
            if row >= found["num_detections"][image]:
                assert not masks[image, row].any()
    with pytest.raises(ValueError, match="images"):
        detect_instances(model, tf.zeros([1, 32, 32, 3]))


def test_bad_arguments_name_what_is_wrong(model):
    with pytest.raises(ValueError, match="rois_per_image"):
        MaskRCNN(model.backbone, model.rpn, model.box_head, model.mask_head, 4,
                 anchor_sizes=TINY["anchor_sizes"], rois_per_image=100, train_proposals=64)
    data = scenes(2)
    data["masks"] = data["masks"][:, :3]
    with pytest.raises(ValueError, match="one instance mask per box"):
        model.compute_losses(data)


def test_config_and_keras_file_round_trip(model, tmp_path):
    restored = assert_config_round_trip(model)
    assert isinstance(restored, MaskRCNN) and restored.rois_per_image == model.rois_per_image
    path = os.fspath(tmp_path / "mask_rcnn.keras")
    model.save(path)
    loaded = keras.saving.load_model(path, safe_mode=True)
    assert type(loaded) is MaskRCNN
    images = scenes(2)["images"]
    expected = model.predict_instances(images, 0.0, 0.5, 5)
    got = loaded.predict_instances(images, 0.0, 0.5, 5)
    for key in ("boxes", "scores", "mask_probabilities"):
        np.testing.assert_allclose(got[key].numpy(), expected[key].numpy(), atol=1e-5)
    assert len(loaded.optimizer.variables) == len(model.optimizer.variables)


@pytest.mark.slow
def test_export_round_trip_in_a_fresh_process(tmp_path):
    from kerasvision.export import export_instance_segmenter

    model = tiny_model()
    images = make_shapes_detection(2, SIZE, seed=3)[0]
    expected = detect_instances(model, images, 0.0, 0.5, 5)
    path = export_instance_segmenter(model, os.fspath(tmp_path), score_threshold=0.0,
                                     max_detections=5)
    with open(os.path.join(path, "assets", "instance_segmentation.json")) as handle:
        assert json.load(handle)["max_detections"] == 5
    np.save(tmp_path / "images.npy", images)
    code = f"""
        import numpy as np, tensorflow as tf
        loaded = tf.saved_model.load({path!r})
        images = np.load({os.fspath(tmp_path / "images.npy")!r})
        out = loaded.signatures["serving_default"](images=tf.constant(images))
        np.savez({os.fspath(tmp_path / "out.npz")!r}, **{{k: v.numpy() for k, v in out.items()}})
        big = np.repeat(np.repeat(images[:1], 2, axis=1), 3, axis=2)  # 128 x 192
        out = loaded.signatures["serving_default"](images=tf.constant(big))
        assert out["masks"].shape == (1, 5, 128, 192) and out["masks"].dtype == tf.uint8
        print("ok")
    """
    assert run_in_fresh_process(code).strip().endswith("ok")
    out = np.load(tmp_path / "out.npz")
    np.testing.assert_allclose(out["boxes"], expected["boxes"].numpy(), atol=1e-3)
    np.testing.assert_array_equal(out["classes"], expected["classes"].numpy())
    assert (out["masks"] != expected["masks"].numpy()).mean() < 1e-3


@pytest.mark.slow
def test_recipe_smoke_writes_a_summary_and_an_export(tmp_path):
    from recipes.instance_segmentation import main

    summary = main(["--smoke", "--image-size", "64", "--filters", "8", "8", "16",
                    "--output-dir", os.fspath(tmp_path / "run"),
                    "--export-dir", os.fspath(tmp_path / "export"), "--precision", "float32"])
    for key in ("box_map", "mask_map", "mask_map_50", "pq", "sq", "rq"):
        assert np.isfinite(summary[key])
    assert os.path.exists(summary["instances_plot"])
    assert os.path.exists(os.path.join(summary["export_path"], "saved_model.pb"))
    assert os.path.exists(tmp_path / "run" / "summary.json")
