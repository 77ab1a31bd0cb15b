"""Tests for the detection data: shapes scenes with boxes, loaders, augmentation, pipeline."""

import json

import numpy as np
import pytest
import tensorflow as tf
import tensorflow_datasets as tfds
from PIL import Image

from kerasvision import data
from kerasvision.data import shapes

NUM_CLASSES = len(data.SHAPES_CLASSIFICATION_NAMES)


@pytest.fixture(scope="module")
def scenes():
    """70 scenes of 64 px (across a chunk boundary), drawn with up to 6 objects."""
    return data.make_shapes_detection(70, image_size=64, seed=2, max_objects=6)


def _tight_box(mask):
    """Pixel xyxy box of a boolean mask [H, W], x2 and y2 exclusive."""
    ys, xs = np.nonzero(mask)
    return [xs.min(), ys.min(), xs.max() + 1, ys.max() + 1]


def _valid(labels):
    return labels >= 0


# ----------------------------------------------------------------------------
# Shapes detection scenes
# ----------------------------------------------------------------------------


def test_shapes_detection_contract(scenes):
    images, boxes, labels, masks = scenes
    assert images.shape == (70, 64, 64, 3) and images.dtype == np.uint8
    assert boxes.shape == (70, 6, 4) and boxes.dtype == np.float32
    assert labels.shape == (70, 6) and labels.dtype == np.int32
    assert masks.shape == (70, 6, 64, 64) and masks.dtype == bool
    kept = _valid(labels)
    assert set(np.unique(labels[kept])) == set(range(NUM_CLASSES))
    assert kept[:, 0].all()  # every scene keeps at least its front-most object
    # Kept rows first, then padding: boxes -1, labels -1, masks empty.
    assert (np.diff(kept.astype(int), axis=1) <= 0).all()
    assert (boxes[~kept] == -1).all() and not masks[~kept].any()
    valid_boxes = boxes[kept]
    assert (valid_boxes[:, 2] > valid_boxes[:, 0]).all()
    assert (valid_boxes[:, 3] > valid_boxes[:, 1]).all()
    assert (valid_boxes >= 0).all() and (valid_boxes <= 64).all()


def test_shapes_detection_boxes_are_tight_boxes_of_masks(scenes):
    _, boxes, labels, masks = scenes
    for i, k in zip(*np.nonzero(_valid(labels))):
        assert masks[i, k].any()
        np.testing.assert_array_equal(boxes[i, k], _tight_box(masks[i, k]))


def test_shapes_detection_default_size():
    images, boxes, labels, masks = data.make_shapes_detection(3, seed=1)
    assert images.shape == (3, 128, 128, 3) and masks.shape == (3, 4, 128, 128)
    for i, k in zip(*np.nonzero(_valid(labels))):
        np.testing.assert_array_equal(boxes[i, k], _tight_box(masks[i, k]))


def test_shapes_detection_occlusion_visible_pixels_and_dropped_objects():
    """Rendered again from the renderer: masks are the visible pixels, hidden objects go."""
    size, k_max, threshold = 64, 6, 0.3
    images, boxes, labels, masks = data.make_shapes_detection(
        64, image_size=size, seed=4, max_objects=k_max, max_hidden_fraction=threshold)
    rng, noise_rng = shapes._chunk_rngs(4, shapes._DETECTION_STREAM, "train", 0)
    same_images, _, classes, top, full_area = shapes._render_chunk(
        rng, noise_rng, 64, size, 1, k_max, shapes._DETECTION_SCALE,
        shapes._DETECTION_NOISE_STD, instances=True)
    np.testing.assert_array_equal(images, same_images)
    # Later objects occlude earlier ones: each pixel belongs to one object at most.
    assert masks.sum(axis=1).max() <= 1
    occluded = dropped = 0
    for i in range(64):
        expected_rows = []
        for k in range(k_max):
            if classes[i, k] == 0:
                continue
            visible = top[i] == k
            hidden = 1.0 - visible.sum() / full_area[i, k]
            occluded += 0 < hidden <= threshold
            if hidden > threshold:
                dropped += 1
                continue
            expected_rows.append((visible, classes[i, k] - 1))
        assert _valid(labels[i]).sum() == len(expected_rows)
        for k, (visible, label) in enumerate(expected_rows):
            np.testing.assert_array_equal(masks[i, k], visible)
            np.testing.assert_array_equal(boxes[i, k], _tight_box(visible))
            assert labels[i, k] == label
    # The sample holds both partly hidden kept objects and dropped ones.
    assert occluded > 0 and dropped > 0


def test_shapes_detection_hidden_fraction_bounds():
    strict = data.make_shapes_detection(64, image_size=64, seed=4, max_objects=6,
                                        max_hidden_fraction=0.0)
    loose = data.make_shapes_detection(64, image_size=64, seed=4, max_objects=6,
                                       max_hidden_fraction=1.0)
    np.testing.assert_array_equal(strict[0], loose[0])  # same scenes, other targets
    assert _valid(strict[2]).sum() < _valid(loose[2]).sum()
    # Even with max_hidden_fraction=1, an object with no visible pixel has no box.
    kept = _valid(loose[2])
    assert loose[3][kept].any(axis=(1, 2)).all()


def test_shapes_detection_deterministic_per_seed_and_split():
    a = data.make_shapes_detection(6, image_size=64, seed=5)
    b = data.make_shapes_detection(6, image_size=64, seed=5)
    for x, y in zip(a, b):
        np.testing.assert_array_equal(x, y)
    other_split = data.make_shapes_detection(6, image_size=64, seed=5, split="validation")
    other_seed = data.make_shapes_detection(6, image_size=64, seed=6)
    assert not np.array_equal(a[0], other_split[0]) and not np.array_equal(a[1], other_split[1])
    assert not np.array_equal(a[0], other_seed[0])
    # Own stream: not the segmentation scenes of the same seed.
    assert not np.array_equal(a[0], data.make_shapes_scenes(6, image_size=64, seed=5)[0])
    # Image i depends only on (seed, split, i).
    longer = data.make_shapes_detection(8, image_size=64, seed=5)
    for x, y in zip(a, longer):
        np.testing.assert_array_equal(x, y[:6])


def test_shapes_detection_large_images():
    images, boxes, labels, masks = data.make_shapes_detection(2, image_size=320, seed=0)
    assert images.shape == (2, 320, 320, 3)
    for i, k in zip(*np.nonzero(_valid(labels))):
        np.testing.assert_array_equal(boxes[i, k], _tight_box(masks[i, k]))


@pytest.mark.parametrize("kwargs,match", [
    ({"num_images": 0}, "num_images"),
    ({"num_images": 2, "image_size": 8}, "image_size"),
    ({"num_images": 2, "split": "dev"}, "split"),
    ({"num_images": 2, "min_objects": 3, "max_objects": 2}, "max_objects"),
    ({"num_images": 2, "max_hidden_fraction": 1.5}, "max_hidden_fraction"),
    ({"num_images": 2, "seed": -1}, "seed"),
])
def test_shapes_detection_bad_arguments(kwargs, match):
    with pytest.raises(ValueError, match=match):
        data.make_shapes_detection(**kwargs)


def test_load_shapes_detection_element_spec_and_values():
    ds = data.load_shapes_detection("validation", num_images=5, image_size=64)
    assert ds.element_spec == {
        "images": tf.TensorSpec((64, 64, 3), tf.float32),
        "bounding_boxes": {"boxes": tf.TensorSpec((4, 4), tf.float32),
                           "labels": tf.TensorSpec((4,), tf.int32)},
    }
    images, boxes, labels, _ = data.make_shapes_detection(5, image_size=64, split="validation")
    examples = list(ds)
    assert len(examples) == 5
    np.testing.assert_array_equal(np.stack([e["images"] for e in examples]), images)
    np.testing.assert_array_equal(
        np.stack([e["bounding_boxes"]["boxes"] for e in examples]), boxes)
    np.testing.assert_array_equal(
        np.stack([e["bounding_boxes"]["labels"] for e in examples]), labels)
    assert data.load_shapes_detection("test", num_images=2).element_spec["images"].shape == (
        128, 128, 3)


# ----------------------------------------------------------------------------
# VOC (offline: tfds mock data)
# ----------------------------------------------------------------------------


def test_voc_detection_mocked_contract():
    with tfds.testing.mock_data(num_examples=4):
        ds = data.load_voc_detection("train", image_size=48, download=True, max_boxes=30)
        assert ds.element_spec == {
            "images": tf.TensorSpec((48, 48, 3), tf.float32),
            "bounding_boxes": {"boxes": tf.TensorSpec((30, 4), tf.float32),
                               "labels": tf.TensorSpec((30,), tf.int32)},
        }
        examples = list(ds)
    assert len(examples) == 4
    assert len(data.VOC_CLASS_NAMES) == 20
    found = 0
    for example in examples:
        image = example["images"].numpy()
        assert 0.0 <= image.min() and image.max() <= 255.0
        boxes = example["bounding_boxes"]["boxes"].numpy()
        labels = example["bounding_boxes"]["labels"].numpy()
        kept = labels >= 0
        found += kept.sum()
        assert (labels[kept] < 20).all() and (boxes[~kept] == -1).all()
        assert (np.diff(kept.astype(int)) <= 0).all()
        assert (boxes[kept] >= 0).all() and (boxes[kept] <= 48).all()
        assert (boxes[kept, 2] > boxes[kept, 0]).all() and (boxes[kept, 3] > boxes[kept, 1]).all()
    assert found > 0


def test_voc_detection_converts_relative_yxyx_to_pixel_xyxy():
    bbox = np.array([[0.25, 0.5, 0.75, 1.0], [0.1, 0.1, 0.1, 0.3], [0.0, 0.0, 0.5, 0.25]],
                    np.float32)

    def as_dataset_fn(self, split, decoders=None, read_config=None, **kwargs):
        example = {"image": np.full((40, 80, 3), 7, np.uint8),
                   "objects": {"bbox": bbox, "label": np.array([14, 3, 0], np.int64)}}
        return tf.data.Dataset.from_tensors(example)

    with tfds.testing.mock_data(as_dataset_fn=as_dataset_fn):
        native = next(iter(data.load_voc_detection("test", download=True, max_boxes=4)))
        resized = next(iter(data.load_voc_detection("test", image_size=(20, 40), download=True,
                                                    max_boxes=4)))
    # Row 2 has no height (ymin == ymax): dropped, the later rows move up.
    np.testing.assert_allclose(native["bounding_boxes"]["boxes"].numpy(),
                               [[40, 10, 80, 30], [0, 0, 20, 20], [-1] * 4, [-1] * 4])
    np.testing.assert_array_equal(native["bounding_boxes"]["labels"].numpy(), [14, 0, -1, -1])
    assert native["images"].shape == (40, 80, 3)
    np.testing.assert_allclose(resized["bounding_boxes"]["boxes"].numpy(),
                               [[20, 5, 40, 15], [0, 0, 10, 10], [-1] * 4, [-1] * 4])


def test_voc_detection_fails_fast_without_data(tmp_path):
    with pytest.raises(RuntimeError, match=r"voc/2007.*not prepared.*download=True"):
        data.load_voc_detection("train", data_dir=str(tmp_path))
    assert not any(tmp_path.iterdir())
    with pytest.raises(ValueError, match="max_boxes"):
        data.load_voc_detection(max_boxes=0)


# ----------------------------------------------------------------------------
# COCO-format folder
# ----------------------------------------------------------------------------


def _write_coco(root, annotations=None, images=None, categories=None):
    """Three images (80x60, 50x40, 50x40) and a COCO JSON; returns (images_dir, json path)."""
    images_dir = root / "images"
    images_dir.mkdir(exist_ok=True)
    for name, (width, height) in {"a.png": (80, 60), "b.jpg": (50, 40),
                                  "c.png": (50, 40)}.items():
        pixels = np.full((height, width, 3), 100, np.uint8)
        Image.fromarray(pixels).save(images_dir / name)
    document = {
        "images": images if images is not None else [
            {"id": 1, "file_name": "a.png", "width": 80, "height": 60},
            {"id": 5, "file_name": "b.jpg", "width": 50, "height": 40},
            {"id": 9, "file_name": "c.png"},
        ],
        "annotations": annotations if annotations is not None else [
            {"id": 1, "image_id": 1, "category_id": 7, "bbox": [10, 20, 30, 15]},
            {"id": 2, "image_id": 1, "category_id": 3, "bbox": [0, 0, 80, 60]},
            {"id": 3, "image_id": 5, "category_id": 7, "bbox": [5.5, 4, 10, 10.5]},
        ],
        "categories": categories if categories is not None else [
            {"id": 7, "name": "dog"}, {"id": 3, "name": "cat"}],
    }
    path = root / "instances.json"
    path.write_text(json.dumps(document))
    return str(images_dir), str(path)


def test_detection_folder_reads_coco(tmp_path):
    images_dir, path = _write_coco(tmp_path)
    ds, class_names = data.load_detection_folder(images_dir, path, max_boxes=3)
    assert class_names == ("cat", "dog")  # category ids 3, 7 -> labels 0, 1
    examples = list(ds)
    assert [e["images"].shape for e in examples] == [(60, 80, 3), (40, 50, 3), (40, 50, 3)]
    np.testing.assert_allclose(examples[0]["bounding_boxes"]["boxes"].numpy(),
                               [[10, 20, 40, 35], [0, 0, 80, 60], [-1] * 4])
    np.testing.assert_array_equal(examples[0]["bounding_boxes"]["labels"].numpy(), [1, 0, -1])
    np.testing.assert_allclose(examples[1]["bounding_boxes"]["boxes"].numpy()[0],
                               [5.5, 4, 15.5, 14.5])
    # An image without annotations is valid: padding only.
    assert (examples[2]["bounding_boxes"]["labels"].numpy() == -1).all()
    assert (examples[2]["bounding_boxes"]["boxes"].numpy() == -1).all()
    assert examples[0]["images"].dtype == tf.float32


def test_detection_folder_resize_scales_boxes(tmp_path):
    images_dir, path = _write_coco(tmp_path)
    ds, _ = data.load_detection_folder(images_dir, path, image_size=(30, 40), max_boxes=2)
    assert ds.element_spec["images"].shape.as_list() == [30, 40, 3]
    first = next(iter(ds.batch(3)))
    np.testing.assert_allclose(first["bounding_boxes"]["boxes"].numpy()[0],
                               [[5, 10, 20, 17.5], [0, 0, 40, 30]])
    assert (first["bounding_boxes"]["boxes"].numpy()[2] == -1).all()


@pytest.mark.parametrize("change,match", [
    ({"images": [{"id": 1, "file_name": "missing.png"}]}, r"not in `images_dir`.*missing\.png"),
    ({"annotations": [{"id": 4, "image_id": 2, "category_id": 7, "bbox": [0, 0, 5, 5]}]},
     r"image ids .*annotation 4 \(image_id 2\)"),
    ({"annotations": [{"id": 4, "image_id": 1, "category_id": 8, "bbox": [0, 0, 5, 5]}]},
     "category ids.*category_id 8"),
    ({"annotations": [{"id": 4, "image_id": 1, "category_id": 7, "bbox": [0, 0, 0, 5]}]},
     "non-positive width or height"),
    ({"annotations": [{"id": 4, "image_id": 1, "category_id": 7, "bbox": [0, 0, 5, -2]}]},
     "non-positive width or height"),
    ({"annotations": [{"id": 4, "image_id": 5, "category_id": 7, "bbox": [45, 0, 10, 5]}]},
     r"outside the image.*50x40"),
    ({"annotations": [{"id": 4, "image_id": 5, "category_id": 7, "bbox": [-1, 0, 10, 5]}]},
     "outside the image"),
    ({"annotations": [{"id": 4, "image_id": 5, "category_id": 7}]}, "'bbox'"),
    ({"images": [{"id": 1, "file_name": "a.png", "width": 60, "height": 80}]},
     "declares image 'a.png' as 60x80"),
    ({"images": [{"id": 1, "file_name": "a.png"}, {"id": 1, "file_name": "c.png"}],
          "annotations": []}, "repeats image ids"),
    ({"categories": []}, "no categories"),
])
def test_detection_folder_errors(tmp_path, change, match):
    images_dir, path = _write_coco(tmp_path, **change)
    with pytest.raises(ValueError, match=match) as info:
        data.load_detection_folder(images_dir, path)
    assert "annotations_json" in str(info.value) or "images_dir" in str(info.value)


def test_detection_folder_bad_paths_and_max_boxes(tmp_path):
    images_dir, path = _write_coco(tmp_path)
    with pytest.raises(ValueError, match="`images_dir` must be an existing directory"):
        data.load_detection_folder(str(tmp_path / "nope"), path)
    with pytest.raises(ValueError, match="annotations_json.*JSON"):
        data.load_detection_folder(images_dir, str(tmp_path / "nope.json"))
    (tmp_path / "broken.json").write_text("{not json")
    with pytest.raises(ValueError, match="annotations_json.*JSONDecodeError"):
        data.load_detection_folder(images_dir, str(tmp_path / "broken.json"))
    with pytest.raises(ValueError, match=r"max_boxes=1.*'a\.png' \(2 annotations\)"):
        data.load_detection_folder(images_dir, path, max_boxes=1)


# ----------------------------------------------------------------------------
# Augmentation
# ----------------------------------------------------------------------------


def _shapes_batch(num_images=8, size=64, seed=0):
    images, boxes, labels, _ = data.make_shapes_detection(num_images, image_size=size, seed=seed)
    return {"images": tf.constant(images, tf.float32),
            "bounding_boxes": {"boxes": tf.constant(boxes), "labels": tf.constant(labels)}}


def test_augmenter_flip_moves_boxes_with_the_image():
    batch = _shapes_batch(16)
    augmenter = data.build_detection_augmenter(flip=True, scale=(1, 1), translate=0.0,
                                               colour=0.0, seed=3)
    out = augmenter(batch)
    images = batch["images"].numpy()
    boxes = batch["bounding_boxes"]["boxes"].numpy()
    labels = batch["bounding_boxes"]["labels"].numpy()
    flipped_count = 0
    for i in range(16):
        flipped = np.array_equal(out["images"].numpy()[i], images[i, :, ::-1])
        if not flipped:
            np.testing.assert_array_equal(out["images"].numpy()[i], images[i])
        flipped_count += flipped
        expected = boxes[i].copy()
        kept = labels[i] >= 0
        if flipped:  # columns x1..x2-1 go to W-x2..W-1-x1
            expected[kept] = np.stack([64 - boxes[i, kept, 2], boxes[i, kept, 1],
                                       64 - boxes[i, kept, 0], boxes[i, kept, 3]], axis=1)
        np.testing.assert_allclose(out["bounding_boxes"]["boxes"].numpy()[i], expected,
                                   atol=1e-3)
        np.testing.assert_array_equal(out["bounding_boxes"]["labels"].numpy()[i], labels[i])
    assert 0 < flipped_count < 16


def test_augmenter_keeps_boxes_inside_the_image_and_pads_with_minus_one():
    batch = _shapes_batch(16)
    augmenter = data.build_detection_augmenter(scale=(0.5, 1.8), translate=0.4, seed=0)
    out = augmenter(batch)
    assert out["images"].shape == (16, 64, 64, 3) and out["images"].dtype == tf.float32
    assert 0.0 <= out["images"].numpy().min() and out["images"].numpy().max() <= 255.0
    boxes = out["bounding_boxes"]["boxes"].numpy()
    labels = out["bounding_boxes"]["labels"].numpy()
    assert boxes.shape == (16, 4, 4) and labels.dtype == np.int32
    kept = labels >= 0
    assert (boxes[kept] >= 0).all() and (boxes[kept] <= 64).all()
    assert (boxes[kept, 2] > boxes[kept, 0]).all() and (boxes[kept, 3] > boxes[kept, 1]).all()
    assert (boxes[~kept] == -1).all() and (np.diff(kept.astype(int), axis=1) <= 0).all()
    # Strong translations push some boxes out of the frame entirely.
    assert kept.sum() < (batch["bounding_boxes"]["labels"].numpy() >= 0).sum()
    # Unbatched examples work too.
    single = augmenter({"images": batch["images"][0],
                        "bounding_boxes": {"boxes": batch["bounding_boxes"]["boxes"][0],
                                           "labels": batch["bounding_boxes"]["labels"][0]}})
    assert single["bounding_boxes"]["boxes"].shape == (4, 4)


def test_augmenter_clips_boxes_reaching_outside():
    example = {"images": tf.zeros((32, 32, 3)),
               "bounding_boxes": {"boxes": tf.constant([[-4.0, 2, 10, 40], [40, 0, 50, 5],
                                                        [-1, -1, -1, -1]]),
                                  "labels": tf.constant([2, 1, -1])}}
    augmenter = data.build_detection_augmenter(flip=False, scale=(1, 1), translate=0.0,
                                               colour=0.0)
    out = augmenter(example)
    np.testing.assert_allclose(out["bounding_boxes"]["boxes"].numpy(),
                               [[0, 2, 10, 32], [-1] * 4, [-1] * 4])
    np.testing.assert_array_equal(out["bounding_boxes"]["labels"].numpy(), [2, -1, -1])


@pytest.mark.parametrize("kwargs,match", [
    ({"flip": "vertical"}, "flip"),
    ({"scale": (1.2, 0.8)}, "scale"),
    ({"scale": 0.5}, "scale"),
    ({"translate": -0.1}, "translate"),
    ({"colour": 2}, "colour"),
    ({"seed": -1}, "seed"),
])
def test_augmenter_bad_arguments(kwargs, match):
    with pytest.raises(ValueError, match=match):
        data.build_detection_augmenter(**kwargs)


# ----------------------------------------------------------------------------
# Pipeline
# ----------------------------------------------------------------------------


def _batches(pipeline):
    return [(b["images"].numpy(), b["bounding_boxes"]["boxes"].numpy(),
             b["bounding_boxes"]["labels"].numpy()) for b in pipeline]


def test_detection_pipeline_batch_shapes_and_eval_order():
    ds = data.load_shapes_detection("validation", num_images=10, image_size=64)
    evaluation = data.make_detection_pipeline(ds, 4, training=False)
    batches = _batches(evaluation)
    assert [b[0].shape for b in batches] == [(4, 64, 64, 3), (4, 64, 64, 3), (2, 64, 64, 3)]
    assert [b[1].shape for b in batches] == [(4, 4, 4), (4, 4, 4), (2, 4, 4)]
    _, boxes, labels, _ = data.make_shapes_detection(10, image_size=64, split="validation")
    np.testing.assert_array_equal(np.concatenate([b[1] for b in batches]), boxes)
    np.testing.assert_array_equal(np.concatenate([b[2] for b in batches]), labels)
    augmenter = data.build_detection_augmenter(seed=0)
    train = data.make_detection_pipeline(ds, 4, training=True, augmenter=augmenter,
                                         drop_remainder=True)
    spec = train.element_spec
    assert spec["images"] == tf.TensorSpec((4, 64, 64, 3), tf.float32)
    assert spec["bounding_boxes"]["labels"] == tf.TensorSpec((4, 4), tf.int32)
    assert len(_batches(train)) == 2


def test_detection_pipeline_epoch_keyed_determinism():
    ds = data.load_shapes_detection("train", num_images=12, image_size=32)

    def epoch_batches(epoch, seed=0):
        data.training_epoch().assign(epoch)
        augmenter = data.build_detection_augmenter(translate=0.2, seed=seed)
        return _batches(data.make_detection_pipeline(ds, 4, training=True, augmenter=augmenter,
                                                     seed=seed))

    try:
        first, again, other = epoch_batches(1), epoch_batches(1), epoch_batches(2)
        for a, b in zip(first, again):
            for x, y in zip(a, b):
                np.testing.assert_array_equal(x, y)
        assert not np.array_equal(first[0][0], other[0][0])
        assert not np.array_equal(first[0][0], epoch_batches(1, seed=1)[0][0])
    finally:
        data.training_epoch().assign(0)
    # A pipeline re-read at another epoch changes too (the epoch is read per iteration).
    pipeline = data.make_detection_pipeline(ds, 4, training=True, seed=0)
    try:
        order_0 = np.concatenate([b[2] for b in _batches(pipeline)])
        data.training_epoch().assign(3)
        order_3 = np.concatenate([b[2] for b in _batches(pipeline)])
    finally:
        data.training_epoch().assign(0)
    assert sorted(map(tuple, order_0)) == sorted(map(tuple, order_3))
    assert not np.array_equal(order_0, order_3)


def test_detection_pipeline_bad_arguments():
    ds = data.load_shapes_detection("validation", num_images=4, image_size=32)
    with pytest.raises(ValueError, match="batch_size"):
        data.make_detection_pipeline(ds, 0, training=True)
    with pytest.raises(ValueError, match="unbatched"):
        data.make_detection_pipeline(ds.batch(2), 2, training=True)
    with pytest.raises(ValueError, match="augmenter"):
        data.make_detection_pipeline(ds, 2, training=True, augmenter="flip")
    with pytest.raises(ValueError, match="detection dicts"):
        data.make_detection_pipeline(data.load_shapes("validation", 2, 16), 2, training=True)
    with pytest.raises(ValueError, match="seed"):
        data.make_detection_pipeline(ds, 2, training=True, seed=-1)
