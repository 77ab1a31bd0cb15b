"""Loaders of image data on disk: TensorFlow Datasets and folders of files.

- `load_tfds_segmentation`, `load_oxford_pets`: `(image, mask)` pairs.
- `load_tfds_classification`, `tfds_class_names`: `(image, label)` pairs and
  the label names.
- `load_tfds_images`: images alone, for generative models.
- `load_segmentation_folder`: image and mask files paired by file stem.
- `load_image_folder`: one sub-directory of images per class.
- `load_voc_detection` (`VOC_CLASS_NAMES`), `load_detection_folder` (COCO
  JSON): detection dicts `{"images", "bounding_boxes": {"boxes", "labels"}}`
  with pixel xyxy boxes padded with -1 rows.

Every loader returns an unbatched `tf.data.Dataset` following the package's
contract (images float32 `[H, W, 3]` in [0, 255], masks int32 `[H, W]`,
labels int32 scalars) and fails fast with a message saying what is wrong:
TensorFlow Datasets that are not prepared raise at once (with
`download=False`) instead of retrying downloads for minutes, and folders are
checked file by file before `tf.data` reads them. `tensorflow_datasets` is
imported only when a tfds loader is called.
"""

import os

import numpy as np
import tensorflow as tf

from kerasvision.data.checks import MAX_IMAGE_PIXELS, _few, open_image_file
from kerasvision.validation import IGNORE_LABEL, check_float, check_int, check_seed

PETS_CLASS_NAMES = ("background", "pet", "border")
"""Class names of `load_oxford_pets` masks, indexed by class id."""


def _check_image_size(image_size, allow_none=True):
    """`image_size` as `(height, width)`, or None; an int means a square."""
    if image_size is None and allow_none:
        return None
    if isinstance(image_size, (tuple, list)) and len(image_size) == 2:
        return tuple(check_int("image_size", s, minimum=1) for s in image_size)
    if isinstance(image_size, bool) or not isinstance(image_size, (int, np.integer)):
        raise ValueError(
            "`image_size` must be an int or a (height, width) pair"
            f"{' or None' if allow_none else ''}; received image_size={image_size!r}."
        )
    # An int out of range gets check_int's own message ("must be >= 1").
    size = check_int("image_size", image_size, minimum=1)
    return (size, size)


def _resize_pair(image, mask, size):
    """Resize image bilinearly and mask `[H, W]` with nearest neighbour.

    Masks are never interpolated: averaging class ids invents labels at edges.
    """
    image = tf.image.resize(image, size, method="bilinear", antialias=True)
    image = tf.clip_by_value(image, 0.0, 255.0)
    mask = tf.image.resize(mask[..., None], size, method="nearest")[..., 0]
    return image, mask


def _to_rgb(image):
    """`[H, W, 1]` grayscale -> `[H, W, 3]`; RGB passes through (static channels)."""
    if image.shape[-1] == 1:
        return tf.image.grayscale_to_rgb(image)
    return image


# ----------------------------------------------------------------------------
# TensorFlow Datasets
# ----------------------------------------------------------------------------


def _tfds_named_builder(name, data_dir):
    """The tfds builder of `name` (prepared or not), or a ValueError for an unknown name."""
    import tensorflow_datasets as tfds  # lazy: costs ~0.5 s and is optional for synthetic data

    try:
        return tfds.builder(name, data_dir=data_dir)
    except tfds.core.registered.DatasetNotFoundError as error:
        # tfds lists every registered dataset; keep only its suggestion.
        hint = [line.strip() for line in str(error).splitlines() if "Did you mean" in line]
        raise ValueError(
            f"`name` is not a TensorFlow Datasets name; received name={name!r}. {' '.join(hint)}"
        ) from None


def _tfds_builder(name, data_dir, download):
    """A prepared tfds builder, or a fast RuntimeError saying how to get the data.

    `tfds.load` offline retries downloads for minutes and, with
    `download=False`, fails with a bare AssertionError; checking
    `builder.is_prepared()` first answers in well under a second.
    """
    builder = _tfds_named_builder(name, data_dir)
    if builder.is_prepared():
        return builder
    where = f"data_dir={data_dir!r}" if data_dir else "the default tfds data_dir"
    how = (
        f"Run once with download=True on a machine with network access, copy a prepared "
        f"'{name}' folder to {builder.data_dir}, or pass data_dir=<folder containing {name}/>."
    )
    if not download:
        raise RuntimeError(
            f"TFDS dataset '{name}' is not prepared in `data_dir` (looked for "
            f"{builder.data_dir}) and `download` is off; received data_dir={data_dir!r}, "
            f"download=False. {how}"
        )
    try:
        builder.download_and_prepare()
    except Exception as error:  # network, disk and checksum errors all end here
        raise RuntimeError(
            f"Downloading TFDS dataset '{name}' into {where} failed with "
            f"{type(error).__name__}: {error}. {how}"
        ) from error
    return builder


def _check_feature_keys(name, features, **keys):
    """Raise unless every `keys` value (argument name -> feature name) is a feature of `name`."""
    for arg, key in keys.items():
        if key not in features:
            raise ValueError(
                f"`{arg}` must name a feature of '{name}' ({sorted(features.keys())}); "
                f"received {arg}={key!r}."
            )


def load_tfds_segmentation(name, split="train", image_size=128, image_key="image",
                           mask_key="segmentation_mask", label_map=None, data_dir=None,
                           download=True):
    """Load a TensorFlow Datasets segmentation set as `(image, mask)` pairs.

    Args:
        name: str, tfds name (e.g. "oxford_iiit_pet").
        split: str, tfds split expression (e.g. "train", "test[:50%]").
        image_size: int or `(height, width)`: images are resized bilinearly and
            masks with nearest neighbour; None keeps native sizes (which then
            cannot be batched unless they agree).
        image_key, mask_key: feature names of the image and of the mask.
        label_map: optional dict raw mask value -> class id; values not in it
            become `IGNORE_LABEL`. None keeps the raw values.
        data_dir: str, tfds data directory (None: tfds default).
        download: bool, download and prepare the data if absent.

    Returns:
        Unbatched `tf.data.Dataset` of `(image float32 [H, W, 3] in [0, 255],
        mask int32 [H, W])`.

    Raises:
        RuntimeError: data absent and `download=False`, or the download failed.
    """
    size = _check_image_size(image_size)
    builder = _tfds_builder(name, data_dir, download)
    _check_feature_keys(name, builder.info.features, image_key=image_key, mask_key=mask_key)
    lookup = None
    if label_map is not None:
        table = np.full(256, IGNORE_LABEL, dtype=np.int32)
        for raw, target in label_map.items():
            table[check_int("label_map key", raw, 0, 255)] = check_int(
                "label_map value", target, 0, IGNORE_LABEL)
        lookup = tf.constant(table)

    def prepare(example):
        image = _to_rgb(tf.cast(example[image_key], tf.float32))
        mask = tf.cast(example[mask_key], tf.int32)
        if mask.shape.rank == 3:
            mask = mask[..., 0]
        if lookup is not None:
            mask = tf.gather(lookup, tf.clip_by_value(mask, 0, 255))
        if size is not None:
            image, mask = _resize_pair(image, mask, size)
        return image, mask

    ds = builder.as_dataset(split=split, shuffle_files=False)
    return ds.map(prepare, num_parallel_calls=tf.data.AUTOTUNE)


def load_oxford_pets(split="train", image_size=128, data_dir=None, download=True):
    """Oxford-IIIT Pet trimaps as 3-class masks (`PETS_CLASS_NAMES`).

    The tfds trimap values {1: pet, 2: background, 3: border} become classes
    {1: pet, 0: background, 2: border}; any other value becomes `IGNORE_LABEL`.

    Args:
        split: "train" or "test" (or a tfds split expression).
        image_size: int or `(height, width)`.
        data_dir: str, tfds data directory (None: tfds default).
        download: bool, download (~800 MB) and prepare the data if absent. With
            no network, tfds retries for about 3 minutes before failing; pass
            download=False on offline machines to fail at once.

    Returns:
        Unbatched `tf.data.Dataset` of `(image float32 [S, S, 3] in [0, 255],
        mask int32 [S, S])`.

    Raises:
        RuntimeError: data absent and `download=False`, or the download failed.

    Example:
        >>> ds = load_oxford_pets("test", image_size=128, download=False)
    """
    return load_tfds_segmentation(
        "oxford_iiit_pet", split=split, image_size=image_size, image_key="image",
        mask_key="segmentation_mask", label_map={1: 1, 2: 0, 3: 2}, data_dir=data_dir,
        download=download,
    )


def load_tfds_classification(name, split="train", image_size=None, data_dir=None,
                             download=True):
    """Load a TensorFlow Datasets classification set as `(image, label)` pairs.

    Works for sets with supervised keys (image, label), e.g. "mnist",
    "fashion_mnist", "cifar10", "oxford_flowers102". Grayscale images are
    repeated to 3 channels so every model sees RGB.

    Args:
        name: str, tfds name.
        split: str, tfds split expression.
        image_size: int or `(height, width)` for a bilinear resize; None keeps
            the native size.
        data_dir: str, tfds data directory (None: tfds default).
        download: bool, download and prepare the data if absent.

    Returns:
        Unbatched `tf.data.Dataset` of `(image float32 [H, W, 3] in [0, 255],
        label int32 [])`; `tfds_class_names(name)` gives the class names.

    Raises:
        RuntimeError: data absent and `download=False`, or the download failed.
    """
    size = _check_image_size(image_size)
    builder = _tfds_builder(name, data_dir, download)

    def prepare(image, label):
        image = _to_rgb(tf.cast(image, tf.float32))
        if size is not None:
            image = tf.image.resize(image, size, method="bilinear", antialias=True)
            image = tf.clip_by_value(image, 0.0, 255.0)
        return image, tf.cast(label, tf.int32)

    ds = builder.as_dataset(split=split, as_supervised=True, shuffle_files=False)
    return ds.map(prepare, num_parallel_calls=tf.data.AUTOTUNE)


def tfds_class_names(name, data_dir=None, label_key="label"):
    """The label names of a TensorFlow Datasets classification set, indexed by label.

    Read from the dataset's metadata, without reading or downloading data.
    A few sets (e.g. "cifar10") learn their names while they are prepared:
    before that, and for sets without names ("mnist"), the ids come back as
    strings ("0", "1", ...).

    Args:
        name: str, tfds name (e.g. "fashion_mnist").
        data_dir: str, tfds data directory (None: tfds default).
        label_key: str, the label feature.

    Returns:
        Tuple of str.

    Example:
        >>> tfds_class_names("fashion_mnist")[:2]
        ('T-shirt/top', 'Trouser')
    """
    features = _tfds_named_builder(name, data_dir).info.features
    _check_feature_keys(name, features, label_key=label_key)
    names = getattr(features[label_key], "names", None)
    if names is None:
        raise ValueError(
            f"`label_key` must name a class-label feature of '{name}'; received "
            f"label_key={label_key!r}, a {type(features[label_key]).__name__}."
        )
    return tuple(names)


def load_tfds_images(name, split="train", image_key="image", data_dir=None, download=True):
    """Load the images of a TensorFlow Datasets set, without labels.

    For models that learn from images alone (autoencoders, GANs, diffusion),
    and for sets without supervised keys such as "celeb_a" (attributes, no
    label). Grayscale images are repeated to 3 channels so every model sees
    RGB. Images keep their native size: resize (and crop) in the pipeline,
    e.g. with `make_generative_pipeline(image_size=...)`.

    Args:
        name: str, tfds name (e.g. "mnist", "celeb_a", "oxford_flowers102").
        split: str, tfds split expression (e.g. "train+test").
        image_key: str, the image feature.
        data_dir: str, tfds data directory (None: tfds default).
        download: bool, download and prepare the data if absent.

    Returns:
        Unbatched `tf.data.Dataset` of images float32 `[H, W, 3]` in [0, 255].

    Raises:
        RuntimeError: data absent and `download=False`, or the download failed.

    Example:
        >>> images = load_tfds_images("celeb_a", "validation", download=False)
    """
    builder = _tfds_builder(name, data_dir, download)
    _check_feature_keys(name, builder.info.features, image_key=image_key)
    ds = builder.as_dataset(split=split, shuffle_files=False)
    return ds.map(lambda example: _to_rgb(tf.cast(example[image_key], tf.float32)),
                  num_parallel_calls=tf.data.AUTOTUNE)


# ----------------------------------------------------------------------------
# Folders of image files
# ----------------------------------------------------------------------------

_IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png")
_MASK_EXTENSIONS = (".png",)
# PIL modes that hold one integer per pixel (palette PNGs keep their indices).
_MASK_MODES = ("1", "L", "P", "I", "I;16", "I;16B", "I;16L")


def _files_by_stem(arg, directory, extensions):
    if not os.path.isdir(directory):
        raise ValueError(f"`{arg}` must be an existing directory; received {arg}={directory!r}.")
    files = {}
    for entry in sorted(os.listdir(directory)):
        stem, ext = os.path.splitext(entry)
        if ext.lower() not in extensions:
            continue
        if stem in files:
            raise ValueError(
                f"`{arg}` holds two files with the stem '{stem}' ({os.path.basename(files[stem])}"
                f", {entry}); each stem must be unique to pair images with masks."
            )
        files[stem] = os.path.join(directory, entry)
    if not files:
        raise ValueError(
            f"`{arg}` holds no {'/'.join(extensions)} files; received {arg}={directory!r}."
        )
    return files


def _read_mask(path):
    from PIL import Image

    with Image.open(path.decode() if isinstance(path, bytes) else path) as mask:
        return np.asarray(mask, dtype=np.int32)


def load_segmentation_folder(images_dir, masks_dir, image_size=None, max_pixels=MAX_IMAGE_PIXELS):
    """Pair image and mask files by file stem: `images/cat1.jpg` <-> `masks/cat1.png`.

    Masks are single-channel PNGs whose pixel values are class ids (grayscale
    or palette PNGs; palette indices are read as ids, as in PASCAL VOC).
    Pairing and sizes are checked when the dataset is built (sizes from file
    headers, without decoding pixels), so errors name the files at fault.

    Args:
        images_dir: str, folder of `.jpg`, `.jpeg` or `.png` images.
        masks_dir: str, folder of `.png` masks with the same stems.
        image_size: int or `(height, width)` to resize (image bilinear, mask
            nearest); None keeps native sizes (then batch only equal sizes).
        max_pixels: int, largest height x width a header may declare
            (`MAX_IMAGE_PIXELS`, 64 MP); larger files are refused undecoded.

    Returns:
        Unbatched `tf.data.Dataset` of `(image float32 [H, W, 3] in [0, 255],
        mask int32 [H, W])`, in sorted stem order.

    Raises:
        ValueError: a missing or empty directory, images without masks or masks
            without images, a file that is not an image, is truncated or is
            larger than `max_pixels`, a mask that is not single-channel, or an
            image and mask of different sizes.
    """
    size = _check_image_size(image_size)
    max_pixels = check_int("max_pixels", max_pixels, minimum=1)
    images = _files_by_stem("images_dir", images_dir, _IMAGE_EXTENSIONS)
    masks = _files_by_stem("masks_dir", masks_dir, _MASK_EXTENSIONS)
    no_mask = sorted(set(images) - set(masks))
    if no_mask:
        raise ValueError(
            f"{len(no_mask)} image(s) in `images_dir` have no mask with the same stem in "
            f"`masks_dir`: {_few(no_mask)}; received images_dir={images_dir!r}, "
            f"masks_dir={masks_dir!r}."
        )
    no_image = sorted(set(masks) - set(images))
    if no_image:
        raise ValueError(
            f"{len(no_image)} mask(s) in `masks_dir` have no image with the same stem in "
            f"`images_dir`: {_few(no_image)}; received masks_dir={masks_dir!r}, "
            f"images_dir={images_dir!r}."
        )
    stems = sorted(images)
    mismatched, multichannel = [], []
    for stem in stems:
        # Only headers and file tails are read; pixels are decoded later by tf.data.
        with open_image_file("images_dir", images[stem], max_pixels) as image, \
                open_image_file("masks_dir", masks[stem], max_pixels) as mask:
            if image.size != mask.size:
                mismatched.append(f"{stem} (image {image.size[1]}x{image.size[0]}, "
                                  f"mask {mask.size[1]}x{mask.size[0]})")
            if mask.mode not in _MASK_MODES:
                multichannel.append(f"{os.path.basename(masks[stem])} (mode {mask.mode})")
    if mismatched:
        raise ValueError(
            f"Image and mask sizes (height x width) differ for {len(mismatched)} pair(s) in "
            f"`images_dir`/`masks_dir`: {_few(mismatched, 3)}; received images_dir={images_dir!r}, "
            f"masks_dir={masks_dir!r}. Masks must label every pixel."
        )
    if multichannel:
        raise ValueError(
            f"Masks in `masks_dir` must be single-channel PNGs of class ids (grayscale or "
            f"palette); received masks_dir={masks_dir!r} holding {_few(multichannel, 3)}."
        )

    def read(image_path, mask_path):
        image = tf.io.decode_image(tf.io.read_file(image_path), channels=3,
                                   expand_animations=False)
        image = tf.cast(image, tf.float32)
        # PIL, not tf.io.decode_png: TF expands palette PNGs to RGB colours,
        # losing the class indices.
        mask = tf.numpy_function(_read_mask, [mask_path], tf.int32, stateful=False)
        mask.set_shape([None, None])
        if size is not None:
            image, mask = _resize_pair(image, mask, size)
        return image, mask

    paths = ([images[s] for s in stems], [masks[s] for s in stems])
    return tf.data.Dataset.from_tensor_slices(paths).map(
        read, num_parallel_calls=tf.data.AUTOTUNE)


_FOLDER_SUBSETS = ("training", "validation", None)
# The extensions `keras.utils.image_dataset_from_directory` reads.
_FOLDER_IMAGE_EXTENSIONS = (".bmp", ".gif", ".jpeg", ".jpg", ".png")


def load_image_folder(directory, image_size, validation_split=None, subset=None, seed=0,
                      max_pixels=MAX_IMAGE_PIXELS):
    """Loads a folder of class sub-directories with `keras.utils.image_dataset_from_directory`.

    Every image's header is read first (pixels are not decoded), so a file
    that is not an image, is truncated or declares more than `max_pixels`
    pixels is an error naming it before training starts.

    Args:
        directory: str, a directory holding one sub-directory per class
            (`directory/cat/*.jpg`, `directory/dog/*.jpg`); classes are the
            sub-directory names in alphabetical order.
        image_size: int, side `S` images are resized to (bilinear).
        validation_split: float in (0, 1) or None, fraction held out.
        subset: "training", "validation" (needs `validation_split`) or None (all).
        seed: int >= 0 (or None: a random order, without a split), shuffles
            the file list before the split; use the same seed for both
            subsets so that they are disjoint.
        max_pixels: int, largest height x width a header may declare
            (`MAX_IMAGE_PIXELS`, 64 MP).

    Returns:
        `(dataset, class_names)`: an unbatched `tf.data.Dataset` of `(image
        float32 [S, S, 3] in [0, 255], label int32 [])` and a tuple of str.

    Example:
        >>> train, class_names = load_image_folder("pets", 128, 0.2, "training")
        >>> validation, _ = load_image_folder("pets", 128, 0.2, "validation")
    """
    import keras

    if not isinstance(directory, (str, os.PathLike)) or not os.path.isdir(directory):
        raise ValueError(
            "`directory` must be an existing directory with one sub-directory of images "
            f"per class; received directory={directory!r}."
        )
    image_size = check_int("image_size", image_size, minimum=1)
    if subset not in _FOLDER_SUBSETS:
        raise ValueError(
            f"`subset` must be 'training', 'validation' or None; received subset={subset!r}."
        )
    if validation_split is not None:
        check_float("validation_split", validation_split, minimum=0.0, maximum=0.99, strict_minimum=True)
    if (subset is None) != (validation_split is None):
        raise ValueError(
            "`subset` and `validation_split` go together; received "
            f"subset={subset!r}, validation_split={validation_split!r}."
        )
    seed = check_seed(seed, allow_none=True)
    max_pixels = check_int("max_pixels", max_pixels, minimum=1)
    for root, _, files in sorted(os.walk(directory)):
        for file_name in sorted(files):
            if file_name.lower().endswith(_FOLDER_IMAGE_EXTENSIONS):
                open_image_file("directory", os.path.join(root, file_name), max_pixels).close()
    dataset = keras.utils.image_dataset_from_directory(
        directory,
        labels="inferred",
        label_mode="int",
        color_mode="rgb",
        batch_size=None,
        image_size=(image_size, image_size),
        shuffle=True,
        seed=seed,
        validation_split=validation_split,
        subset=subset,
        verbose=False,
    )
    class_names = tuple(dataset.class_names)
    if len(class_names) < 2:
        raise ValueError(
            f"`directory` {directory!r} must hold at least 2 class sub-directories; "
            f"found {list(class_names)}."
        )

    def to_contract(image, label):
        return tf.cast(image, tf.float32), tf.cast(label, tf.int32)

    return dataset.map(to_contract, num_parallel_calls=tf.data.AUTOTUNE), class_names


# ----------------------------------------------------------------------------
# Detection: boxes as float32 pixel xyxy, labels int32, padded with -1 rows
# ----------------------------------------------------------------------------

VOC_CLASS_NAMES = (
    "aeroplane", "bicycle", "bird", "boat", "bottle", "bus", "car", "cat", "chair", "cow",
    "diningtable", "dog", "horse", "motorbike", "person", "pottedplant", "sheep", "sofa",
    "train", "tvmonitor",
)
"""Class names of `load_voc_detection` labels, indexed by label (tfds "voc" order)."""


def _padded_boxes(boxes, labels, max_boxes):
    """Drop boxes without area, keep the first `max_boxes`, pad with -1 rows.

    Args:
        boxes: float32 `[n, 4]` xyxy; labels: int32 `[n]` (n may be unknown).
        max_boxes: int, rows of the result.

    Returns:
        boxes float32 `[max_boxes, 4]`, labels int32 `[max_boxes]`.
    """
    keep = (boxes[:, 2] > boxes[:, 0]) & (boxes[:, 3] > boxes[:, 1])
    boxes = tf.boolean_mask(boxes, keep)[:max_boxes]
    labels = tf.boolean_mask(labels, keep)[:max_boxes]
    missing = max_boxes - tf.shape(labels)[0]
    boxes = tf.pad(boxes, [[0, missing], [0, 0]], constant_values=-1.0)
    labels = tf.pad(labels, [[0, missing]], constant_values=-1)
    return tf.ensure_shape(boxes, (max_boxes, 4)), tf.ensure_shape(labels, (max_boxes,))


def _resize_detection(image, boxes, size):
    """Resize an image bilinearly to `size` (h, w) and scale its xyxy boxes with it."""
    shape = tf.cast(tf.shape(image)[:2], tf.float32)
    image = tf.image.resize(image, size, method="bilinear", antialias=True)
    image = tf.clip_by_value(image, 0.0, 255.0)
    factors = tf.stack([size[1] / shape[1], size[0] / shape[0]] * 2)
    # Padding rows stay -1 rather than being scaled.
    boxes = tf.where(boxes[:, :1] >= 0, boxes * factors, -1.0)
    return image, boxes


def _detection_example(image, boxes, labels):
    return {"images": image, "bounding_boxes": {"boxes": boxes, "labels": labels}}


def load_voc_detection(split="train", image_size=None, data_dir=None, download=False,
                       max_boxes=50):
    """PASCAL VOC 2007 detection (tfds "voc/2007") as the package's detection dict.

    tfds boxes are relative `[ymin, xmin, ymax, xmax]`; they become pixel
    `(x1, y1, x2, y2)` of the (resized) image. Labels come from
    `objects/label` (20 classes, `VOC_CLASS_NAMES`); objects marked difficult
    or truncated are kept, as tfds gives them. Boxes without area are dropped.

    Args:
        split: str, tfds split expression ("train", "validation", "test",
            "train+validation", ...).
        image_size: int or `(height, width)` for a bilinear resize (boxes
            scaled with it); None keeps native sizes (which then cannot be
            batched unless they agree).
        data_dir: str, tfds data directory (None: tfds default).
        download: bool, download (~900 MB) and prepare the data if absent;
            False (default) fails at once when the data is not prepared.
        max_boxes: int >= 1, box rows per example (default 50); objects past
            it are cut, missing rows are -1 padding.

    Returns:
        Unbatched `tf.data.Dataset` of `{"images": float32 [H, W, 3] in
        [0, 255], "bounding_boxes": {"boxes": float32 [max_boxes, 4],
        "labels": int32 [max_boxes]}}`.

    Raises:
        RuntimeError: data absent and `download=False`, or the download failed.

    Example:
        >>> ds = load_voc_detection("validation", image_size=320, data_dir="/data/tfds")
    """
    size = _check_image_size(image_size)
    max_boxes = check_int("max_boxes", max_boxes, minimum=1)
    builder = _tfds_builder("voc/2007", data_dir, download)

    def prepare(example):
        image = _to_rgb(tf.cast(example["image"], tf.float32))
        shape = tf.cast(tf.shape(image)[:2], tf.float32)
        ymin, xmin, ymax, xmax = tf.unstack(
            tf.reshape(tf.cast(example["objects"]["bbox"], tf.float32), (-1, 4)), axis=1)
        boxes = tf.stack([xmin * shape[1], ymin * shape[0], xmax * shape[1], ymax * shape[0]],
                         axis=1)
        labels = tf.cast(example["objects"]["label"], tf.int32)
        # Prepared VOC gives one label per box; `tfds.testing.mock_data` draws
        # each sequence's length on its own, so pair only what both hold.
        count = tf.minimum(tf.shape(boxes)[0], tf.shape(labels)[0])
        boxes, labels = _padded_boxes(boxes[:count], labels[:count], max_boxes)
        if size is not None:
            image, boxes = _resize_detection(image, boxes, size)
        return _detection_example(image, boxes, labels)

    ds = builder.as_dataset(split=split, shuffle_files=False)
    return ds.map(prepare, num_parallel_calls=tf.data.AUTOTUNE)


def _json_list(annotations_json, document, key):
    entries = document.get(key) if isinstance(document, dict) else None
    if not isinstance(entries, list) or not all(isinstance(e, dict) for e in entries):
        raise ValueError(
            f"`annotations_json` must be a COCO file whose '{key}' is a list of objects; "
            f"received annotations_json={annotations_json!r} with '{key}' = "
            f"{type(entries).__name__}."
        )
    return entries


def _read_coco(images_dir, annotations_json, max_pixels):
    """Parse and check a COCO detection file: every error names the entries at fault.

    Returns:
        paths: list of str; boxes: list of float32 `[n_i, 4]` xyxy per image;
        labels: list of int32 `[n_i]`; class_names: tuple of str.
    """
    import json

    if not os.path.isdir(images_dir):
        raise ValueError(
            f"`images_dir` must be an existing directory; received images_dir={images_dir!r}.")
    try:
        with open(annotations_json) as handle:
            document = json.load(handle)
    except (OSError, TypeError, json.JSONDecodeError) as error:
        raise ValueError(
            "`annotations_json` must be a readable COCO-format JSON file; received "
            f"annotations_json={annotations_json!r} ({type(error).__name__}: {error})."
        ) from None
    images = _json_list(annotations_json, document, "images")
    annotations = _json_list(annotations_json, document, "annotations")
    categories = _json_list(annotations_json, document, "categories")
    if not images:
        raise ValueError(
            f"`annotations_json` lists no images; received annotations_json={annotations_json!r}.")
    try:
        names_by_id = {int(c["id"]): str(c["name"]) for c in categories}
        image_ids = [int(entry["id"]) for entry in images]
        files = [str(entry["file_name"]) for entry in images]
    except (KeyError, TypeError, ValueError) as error:
        raise ValueError(
            "`annotations_json` must give every category an 'id' and 'name' and every image "
            f"an 'id' and 'file_name'; received annotations_json={annotations_json!r} "
            f"(missing or bad {error})."
        ) from None
    if not names_by_id:
        raise ValueError(
            f"`annotations_json` lists no categories; received "
            f"annotations_json={annotations_json!r}.")
    if len(set(image_ids)) != len(image_ids):
        repeated = sorted({i for i in image_ids if image_ids.count(i) > 1})
        raise ValueError(
            f"`annotations_json` repeats image ids {_few(repeated)}; received "
            f"annotations_json={annotations_json!r}. Each image needs its own id.")

    paths = [os.path.join(images_dir, name) for name in files]
    missing = [name for name, path in zip(files, paths) if not os.path.isfile(path)]
    if missing:
        raise ValueError(
            f"{len(missing)} image(s) listed in `annotations_json` are not in `images_dir`: "
            f"{_few(missing)}; received images_dir={images_dir!r}, "
            f"annotations_json={annotations_json!r}.")
    sizes = {}  # image id -> (width, height), read from file headers only
    for image_id, entry, path in zip(image_ids, images, paths):
        with open_image_file("images_dir", path, max_pixels) as image:
            sizes[image_id] = image.size
        declared = (entry.get("width"), entry.get("height"))
        if None not in declared and tuple(declared) != sizes[image_id]:
            raise ValueError(
                f"`annotations_json` declares image {entry['file_name']!r} as "
                f"{declared[0]}x{declared[1]} (width x height) but the file is "
                f"{sizes[image_id][0]}x{sizes[image_id][1]}; received "
                f"annotations_json={annotations_json!r}.")

    # Category ids, sorted, become labels 0..C-1 (COCO's own ids have gaps).
    label_of = {cid: label for label, cid in enumerate(sorted(names_by_id))}
    per_image = {image_id: [] for image_id in image_ids}
    orphans, unknown, empty, outside = [], [], [], []
    for index, ann in enumerate(annotations):
        where = f"annotation {ann.get('id', index)!r}"
        try:
            image_id, category = int(ann["image_id"]), int(ann["category_id"])
            x, y, w, h = (float(v) for v in ann["bbox"])
        except (KeyError, TypeError, ValueError):
            raise ValueError(
                f"`annotations_json` {where} must have 'image_id', 'category_id' and a 'bbox' "
                f"[x, y, width, height]; received {ann!r} in "
                f"annotations_json={annotations_json!r}.") from None
        if image_id not in per_image:
            orphans.append(f"{where} (image_id {image_id})")
        elif category not in label_of:
            unknown.append(f"{where} (category_id {category})")
        elif not (w > 0 and h > 0):
            empty.append(f"{where} (bbox {ann['bbox']})")
        else:
            width, height = sizes[image_id]
            if x < 0 or y < 0 or x + w > width or y + h > height:
                outside.append(f"{where} (bbox {ann['bbox']} in a {width}x{height} image)")
            else:
                per_image[image_id].append(([x, y, x + w, y + h], label_of[category]))
    problems = [
        (orphans, "point to image ids that `annotations_json` does not list"),
        (unknown, "use category ids that `annotations_json` does not list"),
        (empty, "have a bbox with non-positive width or height"),
        (outside, "have a bbox [x, y, width, height] reaching outside the image"),
    ]
    for found, what in problems:
        if found:
            raise ValueError(
                f"{len(found)} annotation(s) in `annotations_json` {what}: {_few(found, 3)}; "
                f"received annotations_json={annotations_json!r}.")

    boxes = [np.asarray([b for b, _ in per_image[i]], np.float32).reshape(-1, 4)
             for i in image_ids]
    labels = [np.asarray([c for _, c in per_image[i]], np.int32) for i in image_ids]
    class_names = tuple(names_by_id[cid] for cid in sorted(names_by_id))
    return paths, boxes, labels, class_names


def load_detection_folder(images_dir, annotations_json, image_size=None, max_boxes=100,
                          max_pixels=MAX_IMAGE_PIXELS):
    """A folder of images with COCO-format box annotations, as the detection dict.

    The JSON holds "images" (`id`, `file_name` relative to `images_dir`,
    optional `width`/`height`), "annotations" (`image_id`, `category_id`,
    `bbox` as pixel `[x, y, width, height]`) and "categories" (`id`, `name`).
    Category ids are mapped to labels 0..C-1 in sorted id order. Everything is
    checked when the dataset is built (image sizes from file headers), so
    errors name the entries at fault; images without annotations are valid
    and yield only padding rows.

    Args:
        images_dir: str, the folder the `file_name`s are relative to.
        annotations_json: str, path of the COCO JSON file.
        image_size: int or `(height, width)` for a bilinear resize (boxes
            scaled with it); None keeps native sizes (then batch only equal sizes).
        max_boxes: int >= 1, box rows per example (default 100, COCO's usual cap).
        max_pixels: int, largest height x width an image header may declare.

    Returns:
        `(dataset, class_names)`: an unbatched `tf.data.Dataset` of
        `{"images": float32 [H, W, 3] in [0, 255], "bounding_boxes": {"boxes":
        float32 [max_boxes, 4] pixel xyxy, "labels": int32 [max_boxes]}}`
        (padded with -1 rows) in the JSON's image order, and the category
        names indexed by label.

    Raises:
        ValueError: a missing folder or unreadable JSON; images missing from
            `images_dir`, unreadable or of another size than declared;
            annotations pointing to unlisted images or categories, boxes with
            non-positive width or height or reaching outside the image; an
            image with more than `max_boxes` annotations.

    Example:
        >>> ds, names = load_detection_folder("photos", "photos/instances.json", 320)
    """
    size = _check_image_size(image_size)
    max_boxes = check_int("max_boxes", max_boxes, minimum=1)
    max_pixels = check_int("max_pixels", max_pixels, minimum=1)
    paths, boxes, labels, class_names = _read_coco(images_dir, annotations_json, max_pixels)
    crowded = [f"{os.path.basename(p)!r} ({len(c)} annotations)" for p, c in zip(paths, labels)
               if len(c) > max_boxes]
    if crowded:
        # Cutting boxes silently would teach a detector that those objects are background.
        raise ValueError(
            f"`max_boxes` must be at least the number of annotations of every image; received "
            f"max_boxes={max_boxes}, but {len(crowded)} image(s) have more: "
            f"{', '.join(crowded[:3])}{' ...' if len(crowded) > 3 else ''}.")
    padded_boxes = np.full((len(paths), max_boxes, 4), -1.0, np.float32)
    padded_labels = np.full((len(paths), max_boxes), -1, np.int32)
    for i, (b, c) in enumerate(zip(boxes, labels)):
        padded_boxes[i, :len(c)], padded_labels[i, :len(c)] = b, c

    def read(path, image_boxes, image_labels):
        image = tf.io.decode_image(tf.io.read_file(path), channels=3, expand_animations=False)
        image = tf.cast(image, tf.float32)
        if size is not None:
            image, image_boxes = _resize_detection(image, image_boxes, size)
        return _detection_example(image, image_boxes, image_labels)

    ds = tf.data.Dataset.from_tensor_slices((paths, padded_boxes, padded_labels))
    return ds.map(read, num_parallel_calls=tf.data.AUTOTUNE), class_names


# ----------------------------------------------------------------------------
# Labeled Faces in the Wild: identities for verification
# ----------------------------------------------------------------------------


def _check_central_fraction(central_fraction):
    return check_float("central_fraction", central_fraction, minimum=0.0, maximum=1.0)


def load_lfw(split="train", image_size=64, central_fraction=0.5, data_dir=None, download=True):
    """Labeled Faces in the Wild (tfds "lfw") as `(image, name)` pairs.

    13,233 photos of 5,749 people, 250x250 and roughly centred on the face
    (Huang et al. 2007); tfds gives each with the person's name. The face
    fills about the central half of the photo: the central square of side
    `central_fraction` is kept, then resized, so an embedding sees the face
    more than the background.

    Args:
        split: str, tfds split expression (tfds has only "train", all
            13,233 images: hold out identities yourself, e.g. with
            `load_lfw_identities` and a split by identity).
        image_size: int or `(height, width)` for a bilinear resize; None
            keeps the crop's size.
        central_fraction: float in (0, 1], side of the central crop as a
            fraction of the photo's (1: the whole photo).
        data_dir: str, tfds data directory (None: tfds default).
        download: bool, download (~180 MB) and prepare the data if absent.

    Returns:
        Unbatched `tf.data.Dataset` of `(image float32 [H, W, 3] in [0, 255],
        name tf.string [])`.

    Raises:
        RuntimeError: data absent and `download=False`, or the download failed.

    Example:
        >>> ds = load_lfw(image_size=64, data_dir="/data/tfds", download=False)
    """
    size = _check_image_size(image_size)
    fraction = _check_central_fraction(central_fraction)
    if fraction == 0.0:
        raise ValueError("`central_fraction` must be > 0; received central_fraction=0.0.")
    builder = _tfds_builder("lfw", data_dir, download)
    _check_feature_keys("lfw", builder.info.features, image_key="image", label_key="label")

    def prepare(example):
        image = _to_rgb(tf.cast(example["image"], tf.float32))
        if fraction < 1.0:
            image = tf.image.central_crop(image, fraction)
        if size is not None:
            image = tf.image.resize(image, size, method="bilinear", antialias=True)
            image = tf.clip_by_value(image, 0.0, 255.0)
        return image, example["label"]

    ds = builder.as_dataset(split=split, shuffle_files=False)
    return ds.map(prepare, num_parallel_calls=tf.data.AUTOTUNE)


def load_lfw_identities(image_size=64, min_images_per_identity=2, max_identities=None,
                        central_fraction=0.5, data_dir=None, download=True):
    """LFW as in-memory arrays of images and integer identities, for metric learning.

    Reads `load_lfw` once and keeps the people with at least
    `min_images_per_identity` photos (1,680 people have two or more: 9,164
    photos), numbering them in order of their names.

    Args:
        image_size: int or `(height, width)` (64: 9,164 x 64 x 64 x 3 bytes,
            about 110 MB).
        min_images_per_identity: int >= 1 (2: every kept person can form a
            same-identity pair).
        max_identities: int or None, keep only the first this many people
            (by name) after the filter: a quick subset.
        central_fraction, data_dir, download: as in `load_lfw`.

    Returns:
        images: uint8 `[N, H, W, 3]`, grouped by identity.
        identities: int32 `[N]`, in `0..M-1`.
        names: tuple of `M` str, the person of each identity.

    Raises:
        ValueError: no person has `min_images_per_identity` photos.
        RuntimeError: data absent and `download=False`, or the download failed.
    """
    minimum = check_int("min_images_per_identity", min_images_per_identity, minimum=1)
    if max_identities is not None:
        max_identities = check_int("max_identities", max_identities, minimum=1)
    size = _check_image_size(image_size, allow_none=False)
    by_name = {}
    for image, name in load_lfw("train", size, central_fraction, data_dir, download):
        by_name.setdefault(name.numpy().decode("utf-8"), []).append(
            np.clip(np.rint(image.numpy()), 0, 255).astype(np.uint8))
    names = tuple(sorted(name for name, photos in by_name.items() if len(photos) >= minimum))
    if max_identities is not None:
        names = names[:max_identities]
    if not names:
        raise ValueError(
            f"`min_images_per_identity` must leave some person of LFW; received "
            f"min_images_per_identity={minimum}, and the most photos of one person is "
            f"{max((len(p) for p in by_name.values()), default=0)}."
        )
    images = np.stack([photo for name in names for photo in by_name[name]])
    identities = np.concatenate(
        [np.full(len(by_name[name]), index, np.int32) for index, name in enumerate(names)])
    return images, identities, names
