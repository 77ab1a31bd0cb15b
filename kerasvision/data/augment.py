"""Random augmentation from Keras core preprocessing layers.

- `build_segmentation_augmenter` / `SegmentationAugmenter`: one random
  transform applied to an image and its mask together, masks resampled with
  nearest neighbour.
- `build_classification_augmenter`: the same transforms on images alone.
- `build_detection_augmenter` / `DetectionAugmenter`: images and xyxy boxes
  moved together, boxes clipped and emptied boxes turned into -1 rows.

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


def _clean_boxes(bounding_boxes, height, width):
    """Clip xyxy boxes to the image and turn empty or unlabelled rows into -1 padding.

    Keras layers transform every row, padding included (a flipped -1 row
    comes back as 0s, a zoomed one as any value), and mark boxes they push
    out of the frame only by a -1 label; both become -1 rows here, moved
    after the kept rows so padding stays at the end.
    """
    boxes = tf.cast(bounding_boxes["boxes"], tf.float32)
    labels = tf.cast(bounding_boxes["labels"], tf.int32)
    height, width = tf.cast(height, tf.float32), tf.cast(width, tf.float32)
    x1, y1, x2, y2 = tf.unstack(boxes, axis=-1)
    x1, x2 = tf.clip_by_value(x1, 0.0, width), tf.clip_by_value(x2, 0.0, width)
    y1, y2 = tf.clip_by_value(y1, 0.0, height), tf.clip_by_value(y2, 0.0, height)
    boxes = tf.stack([x1, y1, x2, y2], axis=-1)
    keep = (labels >= 0) & (x2 > x1) & (y2 > y1)
    boxes = tf.where(keep[..., None], boxes, -1.0)
    labels = tf.where(keep, labels, -1)
    order = tf.argsort(tf.cast(~keep, tf.int32), axis=-1, stable=True)
    return {"boxes": tf.gather(boxes, order, batch_dims=order.shape.rank - 1),
            "labels": tf.gather(labels, order, batch_dims=order.shape.rank - 1)}


class DetectionAugmenter:
    """Random augmentation of detection examples: images and their boxes together.

    Wraps Keras 3 core preprocessing layers called with
    `bounding_box_format="xyxy"` on the package's detection dict, then clips
    the boxes to the image and turns boxes left with no area into -1 padding
    rows (labels -1 too), kept rows first. Works eagerly and inside
    `tf.data.Dataset.map`, on batches or single examples.

    Call: `augmenter(example, training=True) -> example` where `example` is
    `{"images": [B, H, W, 3] or [H, W, 3] in [0, 255], "bounding_boxes":
    {"boxes": [B, K, 4] or [K, 4] xyxy pixels, "labels": [B, K] or [K]}}`;
    returns the same structure with float32 images in [0, 255], float32
    boxes and int32 labels of the same shapes.
    """

    def __init__(self, layers):
        import keras

        self.layers = list(layers)
        self._pipeline = keras.layers.Pipeline(self.layers)

    def __call__(self, example, training=True):
        if not isinstance(example, dict) or "images" not in example \
                or "bounding_boxes" not in example:
            raise ValueError(
                "`example` must be a dict with 'images' and 'bounding_boxes' keys; received "
                f"{type(example).__name__} {sorted(example) if isinstance(example, dict) else ''}."
            )
        images = tf.cast(example["images"], tf.float32)
        boxes = example["bounding_boxes"]
        # Fresh dicts: the Keras layers write into the dict they are given.
        out = {"images": images,
               "bounding_boxes": {"boxes": tf.cast(boxes["boxes"], tf.float32),
                                  "labels": tf.cast(boxes["labels"], tf.int32)}}
        if self.layers:  # an empty keras Pipeline fails when called
            out = self._pipeline(out, training=training)
        images = tf.clip_by_value(tf.cast(out["images"], tf.float32), 0.0, 255.0)
        shape = tf.shape(images)
        return {"images": images,
                "bounding_boxes": _clean_boxes(out["bounding_boxes"], shape[-3], shape[-2])}

    @property
    def variables(self):
        """The layers' variables (their random states)."""
        return self._pipeline.variables

    def __repr__(self):
        names = ", ".join(type(layer).__name__ for layer in self.layers)
        return f"DetectionAugmenter([{names}])"


def _check_scale(scale):
    valid = (isinstance(scale, (tuple, list)) and len(scale) == 2
             and all(isinstance(s, (int, float)) and not isinstance(s, bool) for s in scale)
             and 0 < scale[0] <= scale[1])
    if not valid:
        raise ValueError(
            "`scale` must be a (min, max) pair of magnifications with 0 < min <= max, e.g. "
            f"(0.8, 1.2); received scale={scale!r}."
        )
    return float(scale[0]), float(scale[1])


def build_detection_augmenter(flip=True, scale=(0.8, 1.2), translate=0.1, colour=0.2, seed=0):
    """Box-aware augmentation for detection, from Keras 3 core preprocessing layers.

    Geometric layers move boxes with the pixels (`RandomFlip`, `RandomZoom`,
    `RandomTranslation` with `bounding_box_format="xyxy"`); pixels brought in
    from outside the frame are black (`fill_mode="constant"`), because
    reflected borders would show mirrored objects that have no box. Colour
    jitter changes pixels only.

    Args:
        flip: bool, random horizontal flips.
        scale: `(min, max)` magnification of the image content, e.g. (0.8, 1.2)
            shrinks by up to 20% or enlarges by up to 20%; (1, 1) disables it.
        translate: float in [0, 1], max shift as a fraction of height and width.
        colour: float in [0, 1], brightness and contrast jitter strength
            (`RandomColorJitter` factors); 0 disables it.
        seed: int >= 0 or None, seeds the layers (each its own seed).

    Returns:
        A `DetectionAugmenter`: detection dict -> detection dict, batched
        `[B, H, W, 3]` or not; boxes are clipped to the image and boxes left
        with no area become -1 rows.

    Example:
        >>> augmenter = build_detection_augmenter(scale=(0.9, 1.1))
        >>> train = make_detection_pipeline(load_shapes_detection(), 16, training=True,
        ...                                 augmenter=augmenter)
    """
    import keras

    if not isinstance(flip, bool):
        raise ValueError(f"`flip` must be a bool; received flip={flip!r}.")
    low, high = _check_scale(scale)
    translate = check_float("translate", translate, minimum=0.0, maximum=1.0)
    colour = check_float("colour", colour, minimum=0.0, maximum=1.0)
    seed = check_seed(seed, allow_none=True)
    layers = []

    def next_seed():
        return None if seed is None else seed + len(layers)

    common = {"bounding_box_format": "xyxy"}
    geometric = {"fill_mode": "constant", "fill_value": 0.0, "interpolation": "bilinear",
                 **common}
    if flip:
        layers.append(keras.layers.RandomFlip("horizontal", seed=next_seed(), **common))
    if (low, high) != (1.0, 1.0):
        # Keras zoom factor z samples a window (1 + z) times the image side, so
        # a magnification m is z = 1/m - 1 (negative z enlarges the content).
        layers.append(keras.layers.RandomZoom((1.0 / high - 1.0, 1.0 / low - 1.0),
                                              seed=next_seed(), **geometric))
    if translate:
        layers.append(keras.layers.RandomTranslation(translate, translate, seed=next_seed(),
                                                     **geometric))
    if colour:
        layers.append(keras.layers.RandomColorJitter(
            value_range=(0, 255), brightness_factor=colour, contrast_factor=colour,
            seed=next_seed(), **common))
    return DetectionAugmenter(layers)
