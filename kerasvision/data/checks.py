"""Checks that data follows the package's contracts, with messages naming what is wrong.

- `check_segmentation_batch`, `validate_dataset`: images `[B, H, W, 3]` in
  [0, 255] and integer masks `[B, H, W]` of ids in `[0, num_classes)` or
  `IGNORE_LABEL`, checked eagerly before training.
- `open_image_file`, `IMAGE_END_MARKERS`, `IMAGE_TAIL_BYTES`: image files
  that are not images or are cut short, found before `tf.data` fails on
  them halfway through an epoch (the export's serving checks use the same
  markers on request bytes).
- `MAX_IMAGE_PIXELS`: the largest image a loader or an export decodes, by the
  size its header declares (a decompression bomb declares billions of pixels
  in a few kilobytes).
"""

import os

import numpy as np
import tensorflow as tf

from kerasvision.validation import (
    IGNORE_LABEL,
    check_image_batch,
    check_int,
    check_num_classes,
    check_numeric_dtype,
)

IMAGE_END_MARKERS = {"PNG": b"IEND", "JPEG": b"\xff\xd9"}
"""Bytes that end every complete file of a format: the PNG IEND chunk type and
the JPEG end-of-image marker. Some writers append data after them, so checks
search the last `IMAGE_TAIL_BYTES` of a file rather than its very last bytes."""
IMAGE_TAIL_BYTES = 64 * 1024

MAX_IMAGE_PIXELS = 64_000_000
"""Default limit on height x width declared by an image header: 64 megapixels,
above any camera photo (a 61-MP sensor gives 9504 x 6336) and a 192 MB RGB
buffer once decoded."""


def open_image_file(arg, path, max_pixels=MAX_IMAGE_PIXELS):
    """Opens `path` with PIL (header only), or raises a ValueError naming `arg` and the file.

    Catches, before training starts, files that tf.data would fail on halfway
    through an epoch with a message that names no file: files that are not
    images (e.g. an HTML error page saved as `.jpg`), PNG/JPEG files cut
    short by an interrupted copy or download, and images whose header
    declares more than `max_pixels` pixels (nothing is decoded).

    Args:
        arg: str, the argument name the message blames (e.g. "images_dir").
        path: str, the file.
        max_pixels: int, largest height x width accepted.

    Returns:
        The open `PIL.Image.Image`, pixels not yet decoded; close it (it is
        a context manager).
    """
    import warnings

    from PIL import Image, UnidentifiedImageError

    try:
        with warnings.catch_warnings():  # PIL's own bomb warning: the limit below decides
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            image = Image.open(path)
    except Image.DecompressionBombError as error:
        raise ValueError(
            f"`{arg}` must hold images of at most max_pixels={max_pixels:,} pixels; received "
            f"{arg} file {path!r}, which declares more ({error}; not decoded)."
        ) from None
    except (UnidentifiedImageError, OSError) as error:
        raise ValueError(
            f"`{arg}` must hold readable JPEG or PNG images; received {arg} file {path!r}, "
            f"which is not one ({error})."
        ) from None
    width, height = image.size
    if width * height > max_pixels:
        image.close()
        raise ValueError(
            f"`{arg}` must hold images of at most max_pixels={max_pixels:,} pixels; received "
            f"{arg} file {path!r}, which declares {width} x {height} = {width * height:,} "
            f"(not decoded)."
        )
    marker = IMAGE_END_MARKERS.get(image.format)
    if marker is not None:
        with open(path, "rb") as handle:
            handle.seek(max(0, os.path.getsize(path) - IMAGE_TAIL_BYTES))
            complete = marker in handle.read()
        if not complete:
            image.close()
            raise ValueError(
                f"`{arg}` must hold complete JPEG or PNG images; received {arg} file {path!r}, "
                f"a truncated {image.format} file (no end-of-image marker): copy it again or "
                f"remove it."
            )
    return image


def _few(names, limit=5):
    """The first `limit` of `names` for an error message, with how many more there are."""
    shown = ", ".join(repr(n) for n in names[:limit])
    return shown + (f" and {len(names) - limit} more" if len(names) > limit else "")


def _to_numpy(x):
    return x.numpy() if hasattr(x, "numpy") else np.asarray(x)


def check_segmentation_batch(images, masks, num_classes, ignore_label=IGNORE_LABEL):
    """Raise a ValueError unless `(images, masks)` follow the segmentation contract.

    Runs eagerly on numpy arrays or eager tensors, e.g. on one batch before
    training, so mistakes surface with a clear message instead of a shape
    error or (on GPU) silent garbage from out-of-range labels.

    Args:
        images: `[B, H, W, 3]`, finite values in [0, 255].
        masks: integer `[B, H, W]`, values in `[0, num_classes)` or `ignore_label`.
        num_classes: int >= 2.
        ignore_label: int, the label value losses and metrics skip.

    Returns:
        Sorted numpy array of the label values found.
    """
    num_classes = check_num_classes(num_classes)
    images, masks = _to_numpy(images), _to_numpy(masks)
    check_image_batch(images, "images")
    check_numeric_dtype("images", images, "RGB values in [0, 255]")
    if masks.ndim != 3:
        hint = " (drop the channel axis: masks[..., 0])" if masks.ndim == 4 and \
            masks.shape[-1] == 1 else ""
        raise ValueError(
            f"`masks` must be a rank-3 batch [batch, height, width] of class ids; "
            f"received shape {masks.shape}{hint}."
        )
    if masks.shape != images.shape[:3]:
        raise ValueError(
            f"`masks` must match the batch size, height and width of `images` "
            f"{images.shape[:3]}; received masks shape {masks.shape}."
        )
    if not np.all(np.isfinite(images)):
        raise ValueError("`images` contains NaN or infinite values.")
    low, high = float(images.min()), float(images.max())
    if low < -1e-3 or high > 255.0 + 1e-3:  # float round-off is not a contract breach
        raise ValueError(
            f"`images` must be raw RGB in [0, 255] (models apply their own preprocessing); "
            f"received values in [{low:.3g}, {high:.3g}]."
        )
    if not np.issubdtype(masks.dtype, np.integer):
        if not np.issubdtype(masks.dtype, np.number) or np.any(masks != np.round(masks)):
            raise ValueError(
                f"`masks` must hold integer class ids; received dtype {masks.dtype} with "
                f"non-integer values."
            )
    values = np.unique(masks)
    bad = values[((values < 0) | (values >= num_classes)) & (values != ignore_label)]
    if bad.size:
        raise ValueError(
            f"`masks` contains label values {_few(bad.tolist(), 10)} outside "
            f"[0, num_classes={num_classes}) (ignore_label={ignore_label} is also allowed); "
            f"received masks with label values {_few(values.tolist(), 20)}."
        )
    return values


def validate_dataset(ds, num_classes, num_batches=1, ignore_label=IGNORE_LABEL):
    """Check the first elements of a segmentation dataset with `check_segmentation_batch`.

    Args:
        ds: `tf.data.Dataset` of `(images, masks)`, batched or not (single
            examples are checked as batches of one).
        num_classes: int >= 2.
        num_batches: int >= 1, how many elements to check.
        ignore_label: int.

    Returns:
        `ds`, unchanged, so the call can wrap a pipeline.
    """
    num_batches = check_int("num_batches", num_batches, minimum=1)
    if not isinstance(ds, tf.data.Dataset):
        raise ValueError(f"`ds` must be a tf.data.Dataset; received {type(ds).__name__}.")
    spec = ds.element_spec
    if not isinstance(spec, tuple) or len(spec) != 2:
        raise ValueError(
            f"`ds` must yield (images, masks) pairs; received ds with element_spec={spec}."
        )
    checked = 0
    for images, masks in ds.take(num_batches):
        if images.shape.rank == 3:
            images, masks = images[None], masks[None]
        check_segmentation_batch(images, masks, num_classes, ignore_label=ignore_label)
        checked += 1
    # An empty dataset would otherwise pass here and make `fit` run zero steps.
    if not checked:
        raise ValueError(
            "`ds` must yield at least one (images, masks) element; received an empty dataset "
            "(an empty folder, a split with no examples, or take(0)/filter dropping everything?)."
        )
    return ds


def validate_detection_dataset(ds, num_classes, num_examples=256):
    """Check the first examples of a detection dataset: boxes inside the image, known classes.

    Rows with a negative label are padding and are skipped. Images with no
    object are valid.

    Args:
        ds: unbatched `tf.data.Dataset` of the detection dict `{"images" [H, W, 3],
            "bounding_boxes": {"boxes" [K, 4] xyxy pixels, "labels" [K]}}`.
        num_classes: int >= 1.
        num_examples: int >= 1, how many examples to check.

    Returns:
        `ds`, unchanged.
    """
    num_classes = check_int("num_classes", num_classes, minimum=1)
    num_examples = check_int("num_examples", num_examples, minimum=1)
    checked = 0
    for index, example in enumerate(ds.take(num_examples)):
        height, width = example["images"].shape[:2]
        boxes = example["bounding_boxes"]["boxes"].numpy()
        labels = example["bounding_boxes"]["labels"].numpy()
        real = labels >= 0
        unknown = labels[real & (labels >= num_classes)]
        if unknown.size:
            raise ValueError(
                f"`ds` labels must be class ids in [0, {num_classes}) (or -1 for padding); "
                f"received, in example {index}, labels={sorted(set(unknown.tolist()))}."
            )
        bad = boxes[real][(boxes[real, 2] <= boxes[real, 0]) | (boxes[real, 3] <= boxes[real, 1])
                          | (boxes[real, 0] < 0) | (boxes[real, 1] < 0)
                          | (boxes[real, 2] > width) | (boxes[real, 3] > height)]
        if bad.size:
            raise ValueError(
                "`ds` boxes must be xyxy pixels with x1 < x2 <= width and y1 < y2 <= height "
                f"({width} x {height}); received, in example {index}, boxes={bad.tolist()[:3]}."
            )
        checked += 1
    if not checked:
        raise ValueError("`ds` must yield at least one example; received an empty dataset.")
    return ds

