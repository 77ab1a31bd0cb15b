"""Tests for kerasvision.data: synthetic shapes, loaders, checks, augmentation, pipelines."""

import hashlib

import numpy as np
import pytest
import tensorflow as tf
import tensorflow_datasets as tfds  # a dependency: missing, the tests fail rather than skip
from PIL import Image

from kerasvision import data
from kerasvision.validation import IGNORE_LABEL

NUM_SHAPE_CLASSES = len(data.SHAPES_CLASS_NAMES)


@pytest.fixture(scope="module")
def scenes():
    """256 training scenes of 64 px, shared by the statistics tests."""
    return data.make_shapes_scenes(256, image_size=64, seed=0)


def _digests(images):
    return {hashlib.sha1(image.tobytes()).hexdigest() for image in images}


# ----------------------------------------------------------------------------
# Synthetic shapes
# ----------------------------------------------------------------------------


def test_shapes_scenes_contract():
    images, masks = data.make_shapes_scenes(6, image_size=48, seed=3)
    assert images.shape == (6, 48, 48, 3) and images.dtype == np.uint8
    assert masks.shape == (6, 48, 48) and masks.dtype == np.uint8
    assert set(np.unique(masks)) <= set(range(NUM_SHAPE_CLASSES))
    # Every scene has at least one object and a textured background.
    assert all((m > 0).any() and (m == 0).any() for m in masks)
    assert images.std() > 20


def test_shapes_scenes_deterministic_and_seeded():
    a_images, a_masks = data.make_shapes_scenes(8, image_size=32, seed=5)
    b_images, b_masks = data.make_shapes_scenes(8, image_size=32, seed=5)
    np.testing.assert_array_equal(a_images, b_images)
    np.testing.assert_array_equal(a_masks, b_masks)
    c_images, c_masks = data.make_shapes_scenes(8, image_size=32, seed=6)
    assert not np.array_equal(a_masks, c_masks)
    assert not _digests(a_images) & _digests(c_images)


def test_shapes_scenes_prefix_stable():
    # Image i depends only on (seed, split, i), across chunk boundaries too.
    small_images, small_masks = data.make_shapes_scenes(70, image_size=16, seed=1)
    big_images, big_masks = data.make_shapes_scenes(130, image_size=16, seed=1)
    np.testing.assert_array_equal(small_images, big_images[:70])
    np.testing.assert_array_equal(small_masks, big_masks[:70])


def test_shapes_splits_disjoint():
    train, _ = data.make_shapes_scenes(64, image_size=32, seed=0, split="train")
    validation, _ = data.make_shapes_scenes(64, image_size=32, seed=0, split="validation")
    assert not _digests(train) & _digests(validation)
    # The training split of seed 1 is not the validation split of seed 0 either.
    other, _ = data.make_shapes_scenes(64, image_size=32, seed=1, split="train")
    assert not _digests(other) & _digests(validation)


def test_shapes_majority_baseline_miou_is_low(scenes):
    _, masks = scenes
    counts = np.bincount(masks.ravel(), minlength=NUM_SHAPE_CLASSES)
    shares = counts / counts.sum()
    assert 0.6 <= shares[0] <= 0.8, shares
    # Predicting the majority class everywhere, from the confusion matrix.
    predicted = np.full(masks.shape, np.argmax(counts))
    ious = []
    for c in range(NUM_SHAPE_CLASSES):
        true_c, pred_c = masks == c, predicted == c
        if true_c.any():
            ious.append((true_c & pred_c).sum() / (true_c | pred_c).sum())
    assert len(ious) == NUM_SHAPE_CLASSES
    assert np.mean(ious) <= 0.30, ious


def test_shapes_classes_balanced_and_present(scenes):
    _, masks = scenes
    counts = np.bincount(masks.ravel(), minlength=NUM_SHAPE_CLASSES)
    shares = counts[1:] / counts[1:].sum()
    assert shares.min() > 0.15, shares  # each shape 15-35% of object pixels
    images_with_class = [(masks == c).any(axis=(1, 2)).mean() for c in range(1, NUM_SHAPE_CLASSES)]
    assert min(images_with_class) > 0.3, images_with_class


def test_shapes_classes_not_separable_by_colour(scenes):
    # Colours are random per object: mean colour per class carries no signal.
    images, masks = scenes
    means = np.array([images[masks == c].mean(axis=0) for c in range(1, NUM_SHAPE_CLASSES)])
    assert np.ptp(means, axis=0).max() < 25, means


def test_shapes_objects_contrast_with_surroundings(scenes):
    # Object pixels differ from the background pixels next to them.
    images, masks = scenes
    images = images.astype(np.float32)
    fg = masks > 0
    edge = fg[:, :, 1:] != fg[:, :, :-1]  # horizontal object boundaries
    diff = np.abs(images[:, :, 1:] - images[:, :, :-1]).sum(-1)[edge]
    assert np.median(diff) > 60


def test_shapes_scenes_bad_arguments():
    with pytest.raises(ValueError, match="num_images"):
        data.make_shapes_scenes(0)
    with pytest.raises(ValueError, match="split"):
        data.make_shapes_scenes(4, split="val")
    with pytest.raises(ValueError, match="max_objects"):
        data.make_shapes_scenes(4, min_objects=3, max_objects=2)
    with pytest.raises(ValueError, match="seed"):
        data.load_shapes(num_images=2, seed=-1)


def test_load_shapes_dataset():
    ds = data.load_shapes("validation", num_images=3, image_size=32, seed=2)
    assert ds.element_spec[0] == tf.TensorSpec((32, 32, 3), tf.float32)
    assert ds.element_spec[1] == tf.TensorSpec((32, 32), tf.int32)
    images, masks = zip(*[(x.numpy(), y.numpy()) for x, y in ds])
    expected_images, expected_masks = data.make_shapes_scenes(3, 32, seed=2, split="validation")
    np.testing.assert_array_equal(np.stack(images), expected_images.astype(np.float32))
    np.testing.assert_array_equal(np.stack(masks), expected_masks.astype(np.int32))


def test_shapes_classification_contract():
    images, labels = data.make_shapes_classification(64, image_size=32, seed=0)
    assert images.shape == (64, 32, 32, 3) and images.dtype == np.uint8
    assert labels.shape == (64,) and labels.dtype == np.int32
    assert set(labels) == {0, 1, 2, 3}
    again, again_labels = data.make_shapes_classification(64, image_size=32, seed=0)
    np.testing.assert_array_equal(images, again)
    np.testing.assert_array_equal(labels, again_labels)
    validation, _ = data.make_shapes_classification(64, image_size=32, split="validation")
    assert not _digests(images) & _digests(validation)


def test_load_shapes_classification_dataset():
    ds = data.load_shapes_classification("train", num_images=5, image_size=24)
    assert ds.element_spec[0] == tf.TensorSpec((24, 24, 3), tf.float32)
    assert ds.element_spec[1] == tf.TensorSpec((), tf.int32)
    assert len(list(ds)) == 5


# ----------------------------------------------------------------------------
# Checks
# ----------------------------------------------------------------------------


def _batch(num_classes=3, size=8):
    images = np.random.default_rng(0).uniform(0, 255, (2, size, size, 3)).astype(np.float32)
    masks = np.zeros((2, size, size), dtype=np.int32)
    masks[:, :2] = num_classes - 1
    masks[0, 0, 0] = IGNORE_LABEL
    return images, masks


def test_check_segmentation_batch_accepts_valid():
    images, masks = _batch()
    values = data.check_segmentation_batch(tf.constant(images), tf.constant(masks), 3)
    assert values.tolist() == [0, 2, IGNORE_LABEL]


@pytest.mark.parametrize(
    "change, match",
    [
        (lambda x, y: (x[0], y), r"`images`.*rank-4"),
        (lambda x, y: (x[..., :1], y), r"`images`.*3 channels"),
        (lambda x, y: (x, y[:, :4]), r"`masks`.*height and width"),
        (lambda x, y: (x, y[..., None]), r"`masks`.*rank-3.*masks\[\.\.\., 0\]"),
        (lambda x, y: (x - 128.0, y), r"`images`.*\[0, 255\]"),
        (lambda x, y: (x * np.nan, y), r"`images`.*NaN"),
        (lambda x, y: (x, np.where(y == 2, 7, y)),
         r"`masks`.*values 7 outside.*received masks with label values 0, 7, 255"),
        (lambda x, y: (x, y - 1), r"`masks`.*-1"),
        (lambda x, y: (x, y + 0.5), r"`masks`.*integer"),
    ],
)
def test_check_segmentation_batch_errors(change, match):
    images, masks = change(*_batch())
    with pytest.raises(ValueError, match=match):
        data.check_segmentation_batch(images, masks, num_classes=3)


def test_check_segmentation_batch_num_classes():
    with pytest.raises(ValueError, match="num_classes"):
        data.check_segmentation_batch(*_batch(), num_classes=1)


def test_validate_dataset():
    images, masks = _batch()
    ds = tf.data.Dataset.from_tensor_slices((images, masks))
    assert data.validate_dataset(ds, 3, num_batches=2) is ds
    assert data.validate_dataset(ds.batch(2), 3) is not None
    with pytest.raises(ValueError, match="outside"):
        data.validate_dataset(ds.batch(2), 2)
    with pytest.raises(ValueError, match="`ds`"):
        data.validate_dataset(tf.data.Dataset.from_tensor_slices(images), 3)


# ----------------------------------------------------------------------------
# Augmentation
# ----------------------------------------------------------------------------


def _coded_batch(size=32):
    """Masks of blocks, and images whose colour encodes the mask (class * 40)."""
    masks = np.zeros((4, size, size), dtype=np.int32)
    masks[:, 4:14, 3:20] = 1
    masks[:, 16:30, 12:28] = 2
    masks[1, 20:26, 2:8] = 3
    images = np.repeat((masks * 40.0)[..., None], 3, axis=-1).astype(np.float32)
    return images, masks


@pytest.mark.parametrize("fill_mode", ["reflect", "constant"])
def test_augmenter_moves_image_and_mask_together(fill_mode):
    images, masks = _coded_batch()
    augmenter = data.build_segmentation_augmenter(
        flip=True, rotation=0.1, zoom=0.2, translation=0.1, fill_mode=fill_mode,
        interpolation="nearest", seed=1)
    out_images, out_masks = augmenter(images, masks)
    assert out_images.dtype == tf.float32 and out_masks.dtype == tf.int32
    assert out_images.shape == images.shape and out_masks.shape == masks.shape
    out_images, out_masks = out_images.numpy(), out_masks.numpy()
    assert (out_masks != masks).mean() > 0.05  # something moved
    # Constant fill: image pixels from outside the frame are 0, their labels ignored.
    expected = np.where(out_masks == IGNORE_LABEL, 0.0, out_masks * 40.0)
    np.testing.assert_array_equal(out_images[..., 0], expected)
    if fill_mode == "reflect":
        assert IGNORE_LABEL not in out_masks


def test_augmenter_bilinear_images_nearest_masks():
    images, masks = _coded_batch()
    augmenter = data.build_segmentation_augmenter(rotation=0.15, zoom=0.2, seed=3)
    out_images, out_masks = (t.numpy() for t in augmenter(images, masks))
    # No interpolated labels: every value is an original class id.
    assert set(np.unique(out_masks)) <= set(np.unique(masks))
    # Images are interpolated bilinearly, yet agree with the masks wherever
    # the mask is uniform over a 5x5 window (bilinear ramps span < 2 pixels);
    # the 2-pixel frame is left out, as its window reaches reflected content.
    padded = np.pad(out_masks, ((0, 0), (2, 2), (2, 2)), constant_values=-1)
    interior = np.ones(out_masks.shape, dtype=bool)
    for dy in range(5):
        for dx in range(5):
            interior &= padded[:, dy:dy + 32, dx:dx + 32] == out_masks
    # (When zooming out, nearest sampling can skip a 1-pixel sliver that
    # bilinear sampling half-sees, hence 99% rather than all; the exact check
    # of identical transforms is the nearest-interpolation test above.)
    assert interior.mean() > 0.25
    agree = np.abs(out_images[..., 0] - out_masks * 40.0) <= 1.0
    assert agree[interior].mean() > 0.99


def test_augmenter_unbatched_seeded_and_photometric():
    images, masks = _coded_batch()
    make = lambda: data.build_segmentation_augmenter(rotation=0.1, seed=7)  # noqa: E731
    first = make()(images[0], masks[0])
    second = make()(images[0], masks[0])
    assert first[0].shape == (32, 32, 3) and first[1].shape == (32, 32)
    np.testing.assert_array_equal(first[1].numpy(), second[1].numpy())

    photometric = data.build_segmentation_augmenter(flip=False, brightness=0.3, contrast=0.3,
                                                    seed=0)
    out_images, out_masks = photometric(images + 50.0, masks)
    np.testing.assert_array_equal(out_masks.numpy(), masks)
    assert not np.allclose(out_images.numpy(), images + 50.0)
    assert 0.0 <= out_images.numpy().min() and out_images.numpy().max() <= 255.0


def test_augmenter_bad_arguments():
    with pytest.raises(ValueError, match="rotation"):
        data.build_segmentation_augmenter(rotation=-0.1)
    with pytest.raises(ValueError, match="flip"):
        data.build_segmentation_augmenter(flip="diagonal")
    with pytest.raises(ValueError, match="fill_mode"):
        data.build_segmentation_augmenter(fill_mode="mirror")


# ----------------------------------------------------------------------------
# Pipelines
# ----------------------------------------------------------------------------


def test_segmentation_pipeline_shapes_and_augmentation():
    ds = data.load_shapes(num_images=10, image_size=32)
    augmenter = data.build_segmentation_augmenter(rotation=0.05, seed=0)
    train = data.make_segmentation_pipeline(ds, 4, training=True, augmenter=augmenter, seed=0)
    sizes = []
    for images, masks in train:
        assert images.dtype == tf.float32 and masks.dtype == tf.int32
        assert images.shape[1:] == (32, 32, 3) and masks.shape[1:] == (32, 32)
        sizes.append(images.shape[0])
        data.check_segmentation_batch(images, masks, NUM_SHAPE_CLASSES)
    assert sizes == [4, 4, 2]
    dropped = data.make_segmentation_pipeline(ds, 4, training=True, drop_remainder=True)
    assert [x.shape[0] for x, _ in dropped] == [4, 4]


def test_segmentation_pipeline_eval_keeps_order():
    ds = data.load_shapes(num_images=5, image_size=16)
    evaluation = data.make_segmentation_pipeline(ds, 2, training=False, augmenter=lambda x, y: 1)
    masks = np.concatenate([y.numpy() for _, y in evaluation])
    np.testing.assert_array_equal(masks, data.make_shapes_scenes(5, 16)[1])


def test_pipeline_bad_arguments():
    ds = data.load_shapes(num_images=4, image_size=16)
    with pytest.raises(ValueError, match="batch_size"):
        data.make_segmentation_pipeline(ds, 0, training=True)
    with pytest.raises(ValueError, match="unbatched"):
        data.make_segmentation_pipeline(ds.batch(2), 2, training=True)
    with pytest.raises(ValueError, match="augmenter"):
        data.make_segmentation_pipeline(ds, 2, training=True, augmenter="flip")


def test_classification_pipeline():
    ds = data.load_shapes_classification(num_images=6, image_size=16)
    augmenter = data.build_classification_augmenter(rotation=0.1, brightness=0.2, seed=0)
    train = data.make_classification_pipeline(ds, 4, training=True, augmenter=augmenter)
    batches = list(train)
    assert [x.shape for x, _ in batches] == [(4, 16, 16, 3), (2, 16, 16, 3)]
    assert batches[0][1].dtype == tf.int32 and batches[0][0].dtype == tf.float32


# ----------------------------------------------------------------------------
# Folder loader
# ----------------------------------------------------------------------------


def _write_pair(images_dir, masks_dir, stem, size=(12, 10), ext=".png", mask_mode="L",
                mask_size=None):
    rng = np.random.default_rng(len(stem))
    height, width = size
    image = rng.integers(0, 256, (height, width, 3), dtype=np.uint8)
    Image.fromarray(image).save(images_dir / f"{stem}{ext}")
    mh, mw = mask_size or size
    mask = rng.integers(0, 3, (mh, mw), dtype=np.uint8)
    mask[0, 0] = IGNORE_LABEL
    pil_mask = Image.fromarray(mask, mode="L")
    if mask_mode == "P":
        pil_mask = pil_mask.convert("P")  # palette indices = the class ids
        pil_mask.putpalette([v for i in range(256) for v in (i * 7 % 256, i * 3 % 256, 90)])
    elif mask_mode == "RGB":
        pil_mask = pil_mask.convert("RGB")
    pil_mask.save(masks_dir / f"{stem}.png")
    return image, mask


@pytest.fixture
def folders(tmp_path):
    images_dir, masks_dir = tmp_path / "images", tmp_path / "masks"
    images_dir.mkdir()
    masks_dir.mkdir()
    return images_dir, masks_dir


def test_folder_loader_pairs_by_stem(folders):
    images_dir, masks_dir = folders
    png_image, png_mask = _write_pair(images_dir, masks_dir, "b_cat", ext=".png")
    _, jpg_mask = _write_pair(images_dir, masks_dir, "a_dog", ext=".jpg", mask_mode="P")
    (images_dir / "notes.txt").write_text("ignored")
    ds = data.load_segmentation_folder(str(images_dir), str(masks_dir))
    pairs = [(x.numpy(), y.numpy()) for x, y in ds]
    assert len(pairs) == 2  # sorted by stem: a_dog then b_cat
    np.testing.assert_array_equal(pairs[0][1], jpg_mask)  # palette indices kept
    np.testing.assert_array_equal(pairs[1][1], png_mask)
    np.testing.assert_array_equal(pairs[1][0], png_image.astype(np.float32))
    assert pairs[0][0].dtype == np.float32 and pairs[0][1].dtype == np.int32

    resized = data.load_segmentation_folder(images_dir, masks_dir, image_size=(6, 5))
    for image, mask in resized:
        assert image.shape == (6, 5, 3) and mask.shape == (6, 5)
        assert set(np.unique(mask)) <= {0, 1, 2, IGNORE_LABEL}


def test_folder_loader_missing_and_empty_dirs(folders, tmp_path):
    images_dir, masks_dir = folders
    with pytest.raises(ValueError, match="`images_dir` must be an existing directory"):
        data.load_segmentation_folder(tmp_path / "nope", masks_dir)
    with pytest.raises(ValueError, match="`images_dir` holds no"):
        data.load_segmentation_folder(images_dir, masks_dir)


def test_folder_loader_unpaired_files(folders):
    images_dir, masks_dir = folders
    _write_pair(images_dir, masks_dir, "one")
    Image.fromarray(np.zeros((4, 4, 3), np.uint8)).save(images_dir / "lonely.jpg")
    with pytest.raises(ValueError, match=r"image\(s\) in `images_dir`.*'lonely'"):
        data.load_segmentation_folder(images_dir, masks_dir)
    (images_dir / "lonely.jpg").unlink()
    Image.fromarray(np.zeros((4, 4), np.uint8)).save(masks_dir / "orphan.png")
    with pytest.raises(ValueError, match=r"mask\(s\) in `masks_dir`.*'orphan'"):
        data.load_segmentation_folder(images_dir, masks_dir)


def test_folder_loader_size_mismatch_and_rgb_mask(folders):
    images_dir, masks_dir = folders
    _write_pair(images_dir, masks_dir, "bad", size=(12, 10), mask_size=(12, 11))
    with pytest.raises(ValueError, match=r"sizes.*bad \(image 12x10, mask 12x11\)"):
        data.load_segmentation_folder(images_dir, masks_dir)
    _write_pair(images_dir, masks_dir, "bad", mask_mode="RGB")
    with pytest.raises(ValueError, match="single-channel.*mode RGB"):
        data.load_segmentation_folder(images_dir, masks_dir)


# ----------------------------------------------------------------------------
# The package: one home per name, one epoch variable, one seed check
# ----------------------------------------------------------------------------


def test_every_public_name_has_one_home_in_a_submodule():
    import ast
    import importlib

    defined = {}  # top-level def, class and assignment -> the modules defining it
    for module in ("shapes", "loaders", "augment", "pipelines", "checks"):
        path = importlib.import_module(f"kerasvision.data.{module}").__file__
        for node in ast.parse(open(path).read()).body:
            if isinstance(node, (ast.FunctionDef, ast.ClassDef)):
                names = [node.name]
            elif isinstance(node, ast.Assign):
                names = [t.id for t in node.targets if isinstance(t, ast.Name)]
            else:
                continue
            for name in names:
                defined.setdefault(name, []).append(module)
    for name in data.__all__:
        assert len(defined.get(name, [])) == 1, (name, defined.get(name))
        module = importlib.import_module(f"kerasvision.data.{defined[name][0]}")
        assert getattr(data, name) is getattr(module, name), name
    public = {name for name, modules in defined.items() if not name.startswith("_")}
    assert public == set(data.__all__)


def test_one_training_epoch_variable_set_by_the_callback():
    from kerasvision.data import pipelines
    from kerasvision.training.callbacks import KeyPipelinesByEpoch

    assert data.training_epoch() is pipelines.training_epoch()
    try:
        KeyPipelinesByEpoch().on_epoch_begin(3)
        assert int(pipelines.training_epoch().numpy()) == 3
    finally:
        pipelines.training_epoch().assign(0)


@pytest.mark.parametrize("call", [
    lambda: data.make_shapes_scenes(2, image_size=16, seed=-1),
    lambda: data.make_shapes_classification(2, seed=1.5),
    lambda: data.make_shapes_scenes(2, image_size=16, seed=None),
    lambda: data.build_segmentation_augmenter(seed=-1),
    lambda: data.build_classification_augmenter(seed="0"),
    lambda: data.make_segmentation_pipeline(
        data.load_shapes("validation", 2, 16), 2, training=True, seed=-2),
    lambda: data.make_generative_pipeline(tf.data.Dataset.range(2).map(
        lambda _: tf.zeros((4, 4, 3))), 2, training=True, seed=-1),
])
def test_seeds_are_checked_by_one_rule(call):
    with pytest.raises(ValueError, match=r"`seed` must be (>= 0|an integer)"):
        call()


def test_check_seed():
    from kerasvision.validation import check_seed

    assert check_seed(7) == 7 and check_seed(np.int64(0)) == 0
    assert check_seed(None, allow_none=True) is None
    with pytest.raises(ValueError, match=r"`seed` must be an integer; received seed=None"):
        check_seed(None)
    with pytest.raises(ValueError, match=r"`seed` must be >= 0; received seed=-1"):
        check_seed(-1, allow_none=True)


# ----------------------------------------------------------------------------
# TensorFlow Datasets (offline: mocked data and the fail-fast path)
# ----------------------------------------------------------------------------

def test_oxford_pets_mocked_shapes():
    with tfds.testing.mock_data(num_examples=4):
        ds = data.load_oxford_pets("train", image_size=40)
        assert ds.element_spec[0] == tf.TensorSpec((40, 40, 3), tf.float32)
        assert ds.element_spec[1] == tf.TensorSpec((40, 40), tf.int32)
        elements = list(ds)
    assert len(elements) == 4
    for image, mask in elements:
        assert 0.0 <= image.numpy().min() and image.numpy().max() <= 255.0
        # Random mock values outside the trimap {1, 2, 3} become IGNORE_LABEL.
        assert set(np.unique(mask.numpy())) <= {0, 1, 2, IGNORE_LABEL}


def test_oxford_pets_trimap_mapping():
    trimap = np.array([[1, 2, 3, 0], [2, 2, 1, 1], [3, 3, 3, 3], [1, 2, 3, 9]], np.uint8)

    def as_dataset_fn(self, split, decoders=None, read_config=None, **kwargs):
        example = {"image": np.full((4, 4, 3), 100, np.uint8), "segmentation_mask": trimap[..., None]}
        return tf.data.Dataset.from_tensors(example)

    with tfds.testing.mock_data(as_dataset_fn=as_dataset_fn):
        image, mask = next(iter(data.load_oxford_pets("test", image_size=4)))
    expected = np.array([[1, 0, 2, 255], [0, 0, 1, 1], [2, 2, 2, 2], [1, 0, 2, 255]])
    np.testing.assert_array_equal(mask.numpy(), expected)
    np.testing.assert_allclose(image.numpy(), 100.0)
    assert len(data.PETS_CLASS_NAMES) == 3


@pytest.mark.parametrize("name", ["mnist", "fashion_mnist", "cifar10", "oxford_flowers102"])
def test_tfds_classification_mocked_to_rgb(name):
    with tfds.testing.mock_data(num_examples=3):
        ds = data.load_tfds_classification(name, "train", image_size=32)
        assert ds.element_spec[0] == tf.TensorSpec((32, 32, 3), tf.float32)
        assert ds.element_spec[1] == tf.TensorSpec((), tf.int32)
        assert len(list(ds)) == 3


def test_tfds_fails_without_data_and_without_a_download(tmp_path):
    with pytest.raises(RuntimeError, match=r"oxford_iiit_pet.*not prepared.*download=True") as info:
        data.load_oxford_pets("train", data_dir=str(tmp_path), download=False)
    assert str(tmp_path) in str(info.value)
    assert not any(tmp_path.iterdir())  # nothing fetched or prepared
    with pytest.raises(ValueError, match="`name`.*not_a_dataset"):
        data.load_tfds_classification("not_a_dataset", data_dir=str(tmp_path), download=False)


@pytest.mark.parametrize("name,size", [("mnist", (28, 28)), ("celeb_a", (218, 178))])
def test_tfds_images_mocked_to_rgb(name, size):
    with tfds.testing.mock_data(num_examples=3):
        ds = data.load_tfds_images(name, "train")
        assert ds.element_spec == tf.TensorSpec((*size, 3), tf.float32)
        images = list(ds)
        assert len(images) == 3
        assert 0.0 <= min(float(x.numpy().min()) for x in images)
        assert max(float(x.numpy().max()) for x in images) <= 255.0
        with pytest.raises(ValueError, match="`image_key` must name a feature of 'mnist'"):
            data.load_tfds_images("mnist", image_key="picture")


def test_tfds_images_fail_fast_without_data(tmp_path):
    with pytest.raises(RuntimeError, match=r"celeb_a.*not prepared"):
        data.load_tfds_images("celeb_a", data_dir=str(tmp_path), download=False)


def test_tfds_class_names_from_metadata_without_data(tmp_path):
    names = data.tfds_class_names("fashion_mnist", data_dir=str(tmp_path))
    assert names[:2] == ("T-shirt/top", "Trouser") and len(names) == 10
    assert data.tfds_class_names("mnist", data_dir=str(tmp_path)) == tuple(str(i) for i in range(10))
    with pytest.raises(ValueError, match="`name`.*not_a_dataset"):
        data.tfds_class_names("not_a_dataset")
    with pytest.raises(ValueError, match="`label_key` must name a class-label feature"):
        data.tfds_class_names("mnist", data_dir=str(tmp_path), label_key="image")


def test_shapes_windows_are_the_shapes_relabelled_plus_background_windows():
    images, labels = data.make_shapes_windows(40, 32, seed=3, split="validation")
    assert images.shape == (50, 32, 32, 3) and images.dtype == np.uint8
    assert labels.dtype == np.int32 and np.bincount(labels, minlength=5)[0] == 10
    # The shape windows are the classification images at that scale, labels shifted by one.
    shapes, shape_labels = data.make_shapes_classification(40, 32, seed=3, split="validation",
                                                           min_scale=0.4, max_scale=0.8)
    unshuffled = np.argsort(np.random.default_rng(3).permutation(50))
    np.testing.assert_array_equal(images[unshuffled][:40], shapes)
    np.testing.assert_array_equal(labels[unshuffled][:40], shape_labels + 1)
    again, _ = data.make_shapes_windows(40, 32, seed=3, split="validation")
    np.testing.assert_array_equal(images, again)
