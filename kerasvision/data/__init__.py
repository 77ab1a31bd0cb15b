"""Datasets, augmentation, `tf.data` pipelines and the checks of the data contract.

Every segmentation dataset here yields `(image, mask)` pairs:

- image: float32 `[H, W, 3]`, raw RGB in [0, 255]. Models apply their own
  backbone preprocessing, so loaders never normalise.
- mask: int32 `[H, W]` of class ids; 0 is background and `IGNORE_LABEL` (255)
  marks pixels that losses and metrics skip (`kerasvision.IGNORE_LABEL`).

Batched pipelines give `[B, H, W, 3]` and `[B, H, W]`. Classification datasets
yield `(image, label)` with the same image contract and an int32 scalar label.

Modules, each the one home of what it holds:

- `shapes`: the embedded synthetic shapes, rendered in numpy from a seed (no
  download): `make_shapes_scenes` / `load_shapes` for segmentation,
  `make_shapes_classification` / `load_shapes_classification` for one shape
  per image, `make_shapes_detection` / `load_shapes_detection` for boxes and
  `load_shapes_instances` for boxes with instance masks, and their class names.
- `loaders`: data on disk. TensorFlow Datasets (`load_tfds_segmentation`,
  `load_oxford_pets`, `load_tfds_classification`, `tfds_class_names`,
  `load_tfds_images`), failing fast with our own message when data is
  absent; folders (`load_segmentation_folder` pairs image and mask files by
  stem, `load_image_folder` reads one sub-directory per class).
- `augment`: `build_segmentation_augmenter` (image and mask moved together)
  and `build_classification_augmenter`, from Keras core layers.
- `pipelines`: `make_segmentation_pipeline`, `make_classification_pipeline`,
  `make_detection_pipeline`, `make_instance_pipeline`,
  `make_generative_pipeline`, and the epoch-keyed randomness
  (`training_epoch`, `epoch_keyed_batches`) that makes resumed runs see the
  same batches.
- `checks`: `check_segmentation_batch` and `validate_dataset` (the contract
  above, checked eagerly), and the image-file checks.

Everything public is re-exported here, so `from kerasvision import data;
data.load_shapes(...)` works; code inside kerasvision imports from the module
that is the home (`from kerasvision.data.shapes import load_shapes`).
"""

from kerasvision.data.augment import (
    DetectionAugmenter,
    SegmentationAugmenter,
    build_classification_augmenter,
    build_detection_augmenter,
    build_segmentation_augmenter,
)
from kerasvision.data.checks import (
    IMAGE_END_MARKERS,
    IMAGE_TAIL_BYTES,
    MAX_IMAGE_PIXELS,
    check_segmentation_batch,
    open_image_file,
    validate_dataset,
    validate_detection_dataset,
)
from kerasvision.data.loaders import (
    PETS_CLASS_NAMES,
    VOC_CLASS_NAMES,
    load_detection_folder,
    load_image_folder,
    load_lfw,
    load_lfw_identities,
    load_oxford_pets,
    load_segmentation_folder,
    load_tfds_classification,
    load_tfds_images,
    load_tfds_segmentation,
    load_voc_detection,
    tfds_class_names,
)
from kerasvision.data.pipelines import (
    epoch_keyed_batches,
    make_classification_pipeline,
    make_detection_pipeline,
    make_generative_pipeline,
    make_instance_pipeline,
    make_segmentation_pipeline,
    to_generative_image,
    training_epoch,
)
from kerasvision.data.shapes import (
    SHAPES_CLASS_NAMES,
    SHAPES_CLASSIFICATION_NAMES,
    SHAPES_IDENTITY_KEYS,
    load_shapes,
    load_shapes_classification,
    load_shapes_detection,
    load_shapes_identities,
    load_shapes_instances,
    load_shapes_presence,
    make_shapes_classification,
    make_shapes_detection,
    make_shapes_identities,
    make_shapes_presence,
    make_shapes_scenes,
    make_shapes_windows,
)

__all__ = [
    "IMAGE_END_MARKERS",
    "IMAGE_TAIL_BYTES",
    "MAX_IMAGE_PIXELS",
    "PETS_CLASS_NAMES",
    "SHAPES_CLASSIFICATION_NAMES",
    "SHAPES_CLASS_NAMES",
    "SHAPES_IDENTITY_KEYS",
    "VOC_CLASS_NAMES",
    "DetectionAugmenter",
    "SegmentationAugmenter",
    "build_classification_augmenter",
    "build_detection_augmenter",
    "build_segmentation_augmenter",
    "check_segmentation_batch",
    "epoch_keyed_batches",
    "load_detection_folder",
    "load_image_folder",
    "load_lfw",
    "load_lfw_identities",
    "load_oxford_pets",
    "load_segmentation_folder",
    "load_shapes",
    "load_shapes_classification",
    "load_shapes_detection",
    "load_shapes_identities",
    "load_shapes_instances",
    "load_shapes_presence",
    "load_tfds_classification",
    "load_tfds_images",
    "load_tfds_segmentation",
    "load_voc_detection",
    "make_classification_pipeline",
    "make_detection_pipeline",
    "make_generative_pipeline",
    "make_instance_pipeline",
    "make_segmentation_pipeline",
    "make_shapes_classification",
    "make_shapes_detection",
    "make_shapes_identities",
    "make_shapes_presence",
    "make_shapes_scenes",
    "make_shapes_windows",
    "open_image_file",
    "tfds_class_names",
    "to_generative_image",
    "training_epoch",
    "validate_dataset",
    "validate_detection_dataset",
]
