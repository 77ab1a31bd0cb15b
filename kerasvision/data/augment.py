"""Random augmentation from Keras core preprocessing layers.

- `build_segmentation_augmenter` / `SegmentationAugmenter`: one random
  transform applied to an image and its mask together, masks resampled with
  nearest neighbour.
- `build_classification_augmenter`: the same transforms on images alone.

Both are called on batches inside the training pipelines of
`kerasvision.data.pipelines`, which key their random draws by epoch.
"""

import tensorflow as tf

from kerasvision.validation import IGNORE_LABEL, check_choice, check_float, check_seed


def _geometric_layers(flip, rotation, zoom, translation, fill_mode, interpolation, seed):
    import keras

    layers = []

    def next_seed():
        return None if seed is None else seed + len(layers)

    if flip:
        mode = "horizontal" if flip is True else check_choice(
            "flip", flip, ("horizontal", "vertical", "horizontal_and_vertical"))
        layers.append(keras.layers.RandomFlip(mode, seed=next_seed()))
    common = dict(fill_mode=fill_mode, interpolation=interpolation)
    if rotation:
        layers.append(keras.layers.RandomRotation(rotation, seed=next_seed(), **common))
    if zoom:
        layers.append(keras.layers.RandomZoom((-zoom, zoom), seed=next_seed(), **common))
    if translation:
        layers.append(keras.layers.RandomTranslation(translation, translation,
                                                     seed=next_seed(), **common))
    return layers


def _photometric_layers(brightness, contrast, seed, offset):
    import keras

    layers = []
    seed_for = lambda i: None if seed is None else seed + offset + i  # noqa: E731
    if brightness:
        layers.append(keras.layers.RandomBrightness(brightness, value_range=(0, 255),
                                                    seed=seed_for(0)))
    if contrast:
        layers.append(keras.layers.RandomContrast(contrast, value_range=(0, 255),
                                                  seed=seed_for(1)))
    return layers


def _check_augment_args(flip, rotation, zoom, translation, brightness, contrast, fill_mode,
                        interpolation, seed):
    if not isinstance(flip, (bool, str)):
        raise ValueError(f"`flip` must be a bool or a RandomFlip mode string; received flip={flip!r}.")
    check_float("rotation", rotation, minimum=0.0, maximum=1.0)
    check_float("zoom", zoom, minimum=0.0, maximum=0.9)
    check_float("translation", translation, minimum=0.0, maximum=1.0)
    check_float("brightness", brightness, minimum=0.0, maximum=1.0)
    check_float("contrast", contrast, minimum=0.0, maximum=1.0)
    check_choice("fill_mode", fill_mode, ("reflect", "wrap", "constant", "nearest"))
    check_choice("interpolation", interpolation, ("nearest", "bilinear"))
    check_seed(seed, allow_none=True)


class SegmentationAugmenter:
    """Random augmentation applied identically to images and their masks.

    Wraps Keras 3 preprocessing layers called on `{"images", "segmentation_masks"}`
    dicts: one random transform per example moves image and mask together, and
    masks are resampled with nearest neighbour (no invented labels). Masks keep
    the package's `[H, W]` contract outside; pixels brought in from outside
    the frame by `fill_mode="constant"` become `IGNORE_LABEL` so losses skip
    them. Works eagerly and inside `tf.data.Dataset.map`.

    Call: `augmenter(images, masks, training=True) -> (images, masks)` with
    images `[B, H, W, 3]` or `[H, W, 3]` and masks `[B, H, W]` or `[H, W]`;
    returns float32 images and int32 masks of the same shapes.
    """

    def __init__(self, layers):
        import keras

        self.layers = list(layers)
        self._pipeline = keras.layers.Pipeline(self.layers)

    def __call__(self, images, masks, training=True):
        images = tf.cast(images, tf.float32)
        # Masks are shifted by +1 so a constant fill of 0 marks pixels with no
        # source; float because RandomFlip casts masks to the compute dtype.
        shifted = tf.cast(masks, tf.float32)[..., None] + 1.0
        out = self._pipeline({"images": images, "segmentation_masks": shifted},
                             training=training)
        labels = tf.cast(tf.round(out["segmentation_masks"][..., 0]), tf.int32) - 1
        labels = tf.where(labels < 0, IGNORE_LABEL, labels)
        # Interpolation rounding can step a hair outside [0, 255]; keep the contract.
        images = tf.clip_by_value(tf.cast(out["images"], tf.float32), 0.0, 255.0)
        return images, labels

    @property
    def variables(self):
        """The layers' variables (their random states)."""
        return self._pipeline.variables

    def __repr__(self):
        names = ", ".join(type(layer).__name__ for layer in self.layers)
        return f"SegmentationAugmenter([{names}])"


def build_segmentation_augmenter(flip=True, rotation=0.0, zoom=0.0, translation=0.0,
                                 brightness=0.0, contrast=0.0, fill_mode="reflect",
                                 interpolation="bilinear", seed=None):
    """Joint image+mask augmentation from Keras core preprocessing layers.

    Args:
        flip: True (horizontal), False, or a `RandomFlip` mode string
            ("horizontal", "vertical", "horizontal_and_vertical").
        rotation: float in [0, 1], max rotation as a fraction of a full turn
            (Keras convention: 0.05 is +-18 degrees).
        zoom: float in [0, 0.9], max zoom in/out as a fraction of the size.
        translation: float in [0, 1], max shift as a fraction of the size.
        brightness, contrast: floats in [0, 1], image-only jitter (masks untouched).
        fill_mode: "reflect", "wrap", "constant" or "nearest" for pixels brought
            in from outside the frame; with "constant" their mask label is
            `IGNORE_LABEL`.
        interpolation: "bilinear" or "nearest" for images; masks always use
            nearest neighbour.
        seed: optional int for reproducible draws.

    Returns:
        A `SegmentationAugmenter`: `(images, masks) -> (images, masks)`, usable
        as `ds.map(augmenter)` on batched or unbatched datasets.

    Example:
        >>> augmenter = build_segmentation_augmenter(rotation=0.05, zoom=0.1)
        >>> train = make_segmentation_pipeline(load_shapes(), 16, training=True,
        ...                                    augmenter=augmenter)
    """
    _check_augment_args(flip, rotation, zoom, translation, brightness, contrast, fill_mode,
                        interpolation, seed)
    layers = _geometric_layers(flip, rotation, zoom, translation, fill_mode, interpolation, seed)
    layers += _photometric_layers(brightness, contrast, seed, offset=len(layers))
    return SegmentationAugmenter(layers)


def build_classification_augmenter(flip=True, rotation=0.0, zoom=0.0, translation=0.0,
                                   brightness=0.0, contrast=0.0, fill_mode="reflect",
                                   seed=None):
    """Image augmentation for classifiers, as a `keras.layers.Pipeline`.

    Same arguments as `build_segmentation_augmenter` (without masks).

    Returns:
        A `keras.layers.Pipeline` mapping images `[B, H, W, 3]` (or `[H, W, 3]`)
        in [0, 255] to augmented float32 images of the same shape.
    """
    import keras

    _check_augment_args(flip, rotation, zoom, translation, brightness, contrast, fill_mode,
                        "bilinear", seed)
    layers = _geometric_layers(flip, rotation, zoom, translation, fill_mode, "bilinear", seed)
    layers += _photometric_layers(brightness, contrast, seed, offset=len(layers))
    return keras.layers.Pipeline(layers)
