"""`tf.data` pipelines that batch unbatched datasets for `model.fit`.

- `make_segmentation_pipeline`, `make_classification_pipeline`: cache,
  shuffle, batch, augment (training only) and prefetch `(image, target)` pairs.
- `make_detection_pipeline`: the same for detection dicts.
- `make_instance_pipeline`: detection dicts with instance masks, for
  `MaskRCNN` (epoch-keyed shuffle, no augmentation).
- `make_generative_pipeline`, `to_generative_image`: images alone,
  centre-cropped to squares and scaled to [-1, 1] for generative models.
- `training_epoch`, `epoch_keyed_batches`: training pipelines draw their
  shuffle order and augmentation from `(seed, epoch)`, read from one
  per-process epoch variable that `kerasvision.training.KeyPipelinesByEpoch`
  sets, so a run resumed at epoch k sees the batches an uninterrupted run
  sees there.
"""

import numpy as np
import tensorflow as tf

from kerasvision.validation import check_int, check_seed


def _check_pipeline_args(ds, batch_size, shuffle_buffer, cache, seed):
    if not isinstance(ds, tf.data.Dataset):
        raise ValueError(f"`ds` must be a tf.data.Dataset; received {type(ds).__name__}.")
    spec = ds.element_spec
    if not isinstance(spec, tuple) or len(spec) != 2:
        raise ValueError(f"`ds` must yield (image, target) pairs; its element spec is {spec}.")
    if spec[0].shape.rank is not None and spec[0].shape.rank != 3:
        raise ValueError(
            "`ds` must be unbatched, with images [height, width, 3]; received image "
            f"spec {spec[0]} (call the pipeline before .batch())."
        )
    check_int("batch_size", batch_size, minimum=1)
    check_int("shuffle_buffer", shuffle_buffer, minimum=1)
    if not isinstance(cache, (bool, str)):
        raise ValueError(f"`cache` must be a bool or a cache file path; received cache={cache!r}.")
    check_seed(seed, allow_none=True)


# Holds the process's one epoch variable, created by `training_epoch()`. Every
# reader and writer goes through that function (`kerasvision.data` re-exports
# the function, not this list), so there is no second copy to fall out of step.
_TRAINING_EPOCH = []


def training_epoch():
    """The variable that keys every training pipeline's randomness by epoch.

    A `tf.data` shuffle with a fixed seed draws a new order each time it is
    iterated, and Keras augmentation layers advance a random state with each
    call; a process that restarts at epoch k (resuming after a kill) would
    replay epoch 0's draws. Training pipelines instead read this variable when
    an epoch's iterator starts and derive their shuffle order and augmentation
    draws from `(seed, epoch)`, so epoch k sees the same batches whether or
    not the process restarted. `kerasvision.training.KeyPipelinesByEpoch`
    sets it at the start of every epoch of `fit`.

    Returns:
        A scalar int64 `tf.Variable` (one per process, created on first use
        outside any distribution strategy's scope).
    """
    if not _TRAINING_EPOCH:
        with tf.device("/CPU:0"):
            _TRAINING_EPOCH.append(
                tf.Variable(0, dtype=tf.int64, trainable=False, name="training_epoch"))
    return _TRAINING_EPOCH[0]


def _random_seed_states(augmenter):
    """The random-state variables of an augmenter's Keras layers (none for a plain function)."""
    return [variable for variable in getattr(augmenter, "variables", ())
            if variable.path.endswith("seed_generator_state")]


def epoch_keyed_batches(ds, batch_size, shuffle_buffer, seed, drop_remainder, augment=None,
                        augmenter=None):
    """Shuffled, batched and augmented training batches whose draws depend only on (seed, epoch).

    Args:
        ds: unbatched (cached) `tf.data.Dataset`.
        batch_size: int >= 1.
        shuffle_buffer: int >= 1.
        seed: int or None (None: drawn from numpy's global generator, which
            `keras.utils.set_random_seed` seeds).
        drop_remainder: bool.
        augment: optional callable on batches, mapped over the dataset.
        augmenter: the Keras augmentation object `augment` calls, whose
            random states are re-keyed before each batch by
            `(seed, epoch, batch index)`; None leaves `augment`'s own
            randomness (not reproducible across a restart).

    Returns:
        `tf.data.Dataset` of batches for the epoch that `training_epoch()`
        holds when iteration starts, with the cardinality of one epoch.
    """
    epoch = training_epoch()
    base_seed = int(np.random.randint(2**31 - 1)) if seed is None else int(seed)
    states = _random_seed_states(augmenter)
    num_batches = ds.batch(batch_size, drop_remainder=drop_remainder).cardinality()

    def keyed_augment(key, index, batch):
        # Sequential map (no parallel calls): each batch's states are set and
        # consumed before the next batch's are.
        with tf.control_dependencies([
            state.assign(tf.stack([key, index * len(states) + offset]))
            for offset, state in enumerate(states)
        ]):
            return augment(*batch)

    def one_epoch(epoch_index):
        key = tf.constant(base_seed, tf.int64) * 1_000_003 + epoch_index
        # A tensor seed is combined with the graph-level seed by a Python
        # comparison that fails when that seed is 0 (`set_random_seed(0)`);
        # the key already holds the run's seed, so this function's graph needs none.
        tf.compat.v1.get_default_graph().seed = None
        batches = ds.shuffle(shuffle_buffer, seed=key, reshuffle_each_iteration=False)
        batches = batches.batch(batch_size, drop_remainder=drop_remainder)
        return batches.enumerate().map(lambda index, batch: (key, index, batch))

    # Only the shuffle lives inside flat_map: its function is re-instantiated
    # for every epoch, which costs about a second with augmentation inside.
    keyed = tf.data.Dataset.range(1).map(lambda _: epoch.read_value()).flat_map(one_epoch)
    if augment is None:
        keyed = keyed.map(lambda key, index, batch: batch)
    elif not states:
        keyed = keyed.map(lambda key, index, batch: augment(*batch),
                          num_parallel_calls=tf.data.AUTOTUNE)
    else:
        keyed = keyed.map(keyed_augment)
    if num_batches >= 0:  # keeps the progress bar's step count from the first epoch
        keyed = keyed.apply(tf.data.experimental.assert_cardinality(num_batches))
    return keyed


def _batched_pipeline(ds, batch_size, training, augment, shuffle_buffer, cache, seed,
                      drop_remainder, augmenter=None):
    # Cache the decoded, unaugmented examples: augmentation must stay random
    # per epoch, so it runs after the cache.
    if cache:
        ds = ds.cache() if cache is True else ds.cache(cache)
    if training:
        ds = epoch_keyed_batches(ds, batch_size, shuffle_buffer, seed, drop_remainder,
                                 augment=augment, augmenter=augmenter)
    else:
        ds = ds.batch(batch_size, drop_remainder=drop_remainder,
                      num_parallel_calls=tf.data.AUTOTUNE)
    return ds.prefetch(tf.data.AUTOTUNE)


def make_segmentation_pipeline(ds, batch_size, training, augmenter=None, shuffle_buffer=1024,
                               cache=True, seed=None, drop_remainder=False):
    """Batch a segmentation dataset for `model.fit`: cache, shuffle, batch, augment, prefetch.

    Args:
        ds: unbatched `tf.data.Dataset` of `(image [H, W, 3], mask [H, W])`.
        batch_size: int >= 1.
        training: bool; shuffling and augmentation happen only when True.
        augmenter: optional callable `(images, masks) -> (images, masks)` on
            batches, e.g. from `build_segmentation_augmenter`.
        shuffle_buffer: int >= 1.
        cache: True (memory), False, or a file path for `Dataset.cache`.
        seed: optional int for the shuffle order.
        drop_remainder: bool, drop the last partial batch.

    Returns:
        `tf.data.Dataset` of `(images float32 [B, H, W, 3], masks int32 [B, H, W])`.
    """
    _check_pipeline_args(ds, batch_size, shuffle_buffer, cache, seed)
    if augmenter is not None and not callable(augmenter):
        raise ValueError(f"`augmenter` must be callable or None; received {augmenter!r}.")
    ds = ds.map(lambda x, y: (tf.cast(x, tf.float32), tf.cast(y, tf.int32)),
                num_parallel_calls=tf.data.AUTOTUNE)
    return _batched_pipeline(ds, batch_size, training, augmenter, shuffle_buffer, cache, seed,
                             drop_remainder, augmenter=augmenter)


def make_classification_pipeline(ds, batch_size, training, augmenter=None, shuffle_buffer=1024,
                                 cache=True, seed=None, drop_remainder=False):
    """Batch a classification dataset for `model.fit`: cache, shuffle, batch, augment, prefetch.

    Args:
        ds: unbatched `tf.data.Dataset` of `(image [H, W, 3], label [])`.
        batch_size: int >= 1.
        training: bool; shuffling and augmentation happen only when True.
        augmenter: optional callable `images -> images` on batches, e.g. from
            `build_classification_augmenter`.
        shuffle_buffer, cache, seed, drop_remainder: as in
            `make_segmentation_pipeline`.

    Returns:
        `tf.data.Dataset` of `(images float32 [B, H, W, 3], labels int32 [B])`.
    """
    _check_pipeline_args(ds, batch_size, shuffle_buffer, cache, seed)
    if augmenter is not None and not callable(augmenter):
        raise ValueError(f"`augmenter` must be callable or None; received {augmenter!r}.")
    augment = None if augmenter is None else (
        lambda x, y: (tf.cast(augmenter(x), tf.float32), y))
    ds = ds.map(lambda x, y: (tf.cast(x, tf.float32), tf.cast(y, tf.int32)),
                num_parallel_calls=tf.data.AUTOTUNE)
    return _batched_pipeline(ds, batch_size, training, augment, shuffle_buffer, cache, seed,
                             drop_remainder, augmenter=augmenter)


def to_generative_image(image, image_size=None):
    """One image `[H, W, C]` in [0, 255] -> float32 `[S, S, 3]` in [-1, 1].

    A non-square image is centre-cropped to a square first: resizing it
    directly would stretch faces and flowers.

    Args:
        image: tensor `[H, W, 1 or 3]`, any real dtype, values in [0, 255].
        image_size: int S, or None to keep the (square) size.

    Returns:
        float32 tensor `[S, S, 3]` in [-1, 1].
    """
    image = tf.cast(image, tf.float32)
    if image.shape[-1] == 1:
        image = tf.image.grayscale_to_rgb(image)
    if image_size is not None:
        shape = tf.shape(image)
        side = tf.minimum(shape[0], shape[1])
        image = tf.image.resize_with_crop_or_pad(image, side, side)
        image = tf.image.resize(image, (image_size, image_size), method="bilinear", antialias=True)
        image = tf.clip_by_value(image, 0.0, 255.0)
        image = tf.ensure_shape(image, (image_size, image_size, 3))
    return image / 127.5 - 1.0


def make_generative_pipeline(ds, batch_size, training, image_size=None, shuffle_buffer=1024,
                             cache=True, seed=None, drop_remainder=True):
    """Batch an image dataset for generative training: images only, in [-1, 1].

    Args:
        ds: unbatched `tf.data.Dataset` of images `[H, W, C]` in [0, 255], or
            of `(image, label)` pairs (the label is dropped).
        batch_size: int >= 1, the global batch size.
        training: bool; shuffles when True.
        image_size: int or None, side of the square images (centre crop, resize).
        shuffle_buffer: int >= 1.
        cache: bool, cache the prepared images in memory.
        seed: optional int, the shuffle seed.
        drop_remainder: bool; True (default) keeps every batch full, so a
            GAN step always sees as many fakes as reals and
            `MirroredStrategy` splits batches evenly.

    Returns:
        `tf.data.Dataset` of float32 `[batch, S, S, 3]` in [-1, 1].
    """
    if not isinstance(ds, tf.data.Dataset):
        raise ValueError(f"`ds` must be a tf.data.Dataset; received {type(ds).__name__}.")
    batch_size = check_int("batch_size", batch_size, minimum=1)
    shuffle_buffer = check_int("shuffle_buffer", shuffle_buffer, minimum=1)
    if image_size is not None:
        image_size = check_int("image_size", image_size, minimum=1)
    check_seed(seed, allow_none=True)
    spec = ds.element_spec
    if isinstance(spec, tuple):
        ds = ds.map(lambda image, *rest: image, num_parallel_calls=tf.data.AUTOTUNE)
        spec = spec[0]
    if spec.shape.rank != 3:
        raise ValueError(
            f"`ds` must yield unbatched images [height, width, channels]; received spec {spec}."
        )
    ds = ds.map(lambda image: to_generative_image(image, image_size),
                num_parallel_calls=tf.data.AUTOTUNE)
    if cache:
        ds = ds.cache()
    if training:  # shuffle order keyed by (seed, epoch): a resumed run sees the same batches
        ds = epoch_keyed_batches(ds, batch_size, shuffle_buffer, seed, drop_remainder)
    else:
        ds = ds.batch(batch_size, drop_remainder=drop_remainder)
    return ds.prefetch(tf.data.AUTOTUNE)


def _check_detection_dataset(ds):
    if not isinstance(ds, tf.data.Dataset):
        raise ValueError(f"`dataset` must be a tf.data.Dataset; received {type(ds).__name__}.")
    spec = ds.element_spec
    valid = (isinstance(spec, dict) and "images" in spec
             and isinstance(spec.get("bounding_boxes"), dict)
             and {"boxes", "labels"} <= set(spec["bounding_boxes"]))
    if not valid:
        raise ValueError(
            "`dataset` must yield detection dicts {'images', 'bounding_boxes': {'boxes', "
            f"'labels'}}; received element spec {spec}.")
    if spec["images"].shape.rank is not None and spec["images"].shape.rank != 3:
        raise ValueError(
            "`dataset` must be unbatched, with images [height, width, 3]; received image "
            f"spec {spec['images']} (call the pipeline before .batch()).")


def make_detection_pipeline(dataset, batch_size, training, augmenter=None, seed=0,
                            shuffle_buffer=1024, cache=True, drop_remainder=False):
    """Batch a detection dataset for `model.fit`: cache, shuffle, batch, augment, prefetch.

    As `make_segmentation_pipeline`: the unaugmented examples are cached, and
    in training the shuffle order and the augmenter's random draws are keyed
    by `(seed, epoch)` through `training_epoch()`, so a resumed run sees the
    batches an uninterrupted one sees. Examples must share one image size and
    one number of box rows to be batched (resize in the loader).

    Args:
        dataset: unbatched `tf.data.Dataset` of `{"images": [H, W, 3],
            "bounding_boxes": {"boxes": [K, 4], "labels": [K]}}`.
        batch_size: int >= 1.
        training: bool; shuffling and augmentation happen only when True.
        augmenter: optional callable on batched detection dicts, e.g. from
            `build_detection_augmenter`.
        seed: int >= 0 or None, keys the shuffle order and augmentation.
        shuffle_buffer: int >= 1.
        cache: True (memory), False, or a file path for `Dataset.cache`.
        drop_remainder: bool, drop the last partial batch.

    Returns:
        `tf.data.Dataset` of `{"images": float32 [B, H, W, 3], "bounding_boxes":
        {"boxes": float32 [B, K, 4], "labels": int32 [B, K]}}`.
    """
    _check_detection_dataset(dataset)
    batch_size = check_int("batch_size", batch_size, minimum=1)
    shuffle_buffer = check_int("shuffle_buffer", shuffle_buffer, minimum=1)
    if not isinstance(cache, (bool, str)):
        raise ValueError(f"`cache` must be a bool or a cache file path; received cache={cache!r}.")
    seed = check_seed(seed, allow_none=True)
    if augmenter is not None and not callable(augmenter):
        raise ValueError(f"`augmenter` must be callable or None; received {augmenter!r}.")

    def to_contract(example):
        boxes = example["bounding_boxes"]
        return {"images": tf.cast(example["images"], tf.float32),
                "bounding_boxes": {"boxes": tf.cast(boxes["boxes"], tf.float32),
                                   "labels": tf.cast(boxes["labels"], tf.int32)}}

    ds = dataset.map(to_contract, num_parallel_calls=tf.data.AUTOTUNE)
    # Cache before augmentation, which must stay random per epoch.
    if cache:
        ds = ds.cache() if cache is True else ds.cache(cache)
    if not training:
        ds = ds.batch(batch_size, drop_remainder=drop_remainder,
                      num_parallel_calls=tf.data.AUTOTUNE)
        return ds.prefetch(tf.data.AUTOTUNE)
    # `epoch_keyed_batches` calls `augment(*batch)`, which would unpack a
    # dict into its keys: a 1-tuple passes the dict through whole.
    augment = None if augmenter is None else (lambda example: (augmenter(example),))
    ds = epoch_keyed_batches(ds.map(lambda example: (example,)), batch_size, shuffle_buffer,
                             seed, drop_remainder, augment=augment, augmenter=augmenter)
    return ds.map(lambda example: example).prefetch(tf.data.AUTOTUNE)


def make_instance_pipeline(dataset, batch_size, training, seed=0):
    """Batch an instance-segmentation dataset for `MaskRCNN.fit`.

    Training batches are shuffled by `(seed, epoch)` through
    `epoch_keyed_batches`, so a resumed run sees the batches an uninterrupted
    one sees, and the last partial batch is dropped. There is no
    augmentation: a flip would have to move boxes and masks together.

    Args:
        dataset: unbatched `tf.data.Dataset` of `{"images": [S, S, 3] (uint8
            or float), "bounding_boxes": {"boxes": float32 [K, 4], "labels":
            int32 [K]}, "masks": uint8 [K, S, S]}`, e.g. from
            `load_shapes_instances`.
        batch_size: int >= 1.
        training: bool; shuffling (buffer of 1024 examples) happens only when True.
        seed: int >= 0 or None, keys the shuffle order.

    Returns:
        `tf.data.Dataset` of `{"images": float32 [B, S, S, 3] in [0, 255],
        "bounding_boxes": {"boxes": float32 [B, K, 4], "labels": int32 [B, K]},
        "masks": uint8 [B, K, S, S]}`.

    Example:
        >>> from kerasvision.data.shapes import load_shapes_instances
        >>> ds = make_instance_pipeline(load_shapes_instances("validation", 8), 4,
        ...                             training=False)
    """
    def to_float(example):
        return {**example, "images": tf.cast(example["images"], tf.float32)}

    if not training:
        return dataset.batch(batch_size).map(to_float).prefetch(tf.data.AUTOTUNE)
    # `epoch_keyed_batches` works on tuples: a 1-tuple passes the dict through whole.
    batches = epoch_keyed_batches(dataset.map(lambda example: (example,)), batch_size,
                                  shuffle_buffer=1024, seed=seed, drop_remainder=True)
    return batches.map(to_float).prefetch(tf.data.AUTOTUNE)
