"""Datasets, joint image+mask augmentation and `tf.data` pipelines.

Every segmentation dataset here yields `(image, mask)` pairs:

- image: float32 `[H, W, 3]`, raw RGB in [0, 255]. Models apply their own
  backbone preprocessing, so loaders never normalise.
- mask: int32 `[H, W]` of class ids; 0 is background and `IGNORE_LABEL` (255)
  marks pixels that losses and metrics skip.

Batched pipelines give `[B, H, W, 3]` and `[B, H, W]`. Classification datasets
yield `(image, label)` with the same image contract and an int32 scalar label.

Sources:

- `make_shapes_scenes` / `load_shapes`: synthetic scenes of disks, squares,
  triangles and crosses over textured backgrounds, generated in numpy from a
  seed (no download), for offline training and tests.
- `make_shapes_classification` / `load_shapes_classification`: one shape per
  image, labelled by its class.
- `load_oxford_pets`, `load_tfds_segmentation`, `load_tfds_classification`:
  TensorFlow Datasets, failing fast with our own message when data is absent.
- `load_segmentation_folder`: image and mask files paired by file stem.
"""

import os

import numpy as np
import tensorflow as tf

from kerasvision.validation import (
    IGNORE_LABEL,
    check_choice,
    check_float,
    check_image_batch,
    check_int,
    check_num_classes,
    check_numeric_dtype,
)

SHAPES_CLASS_NAMES = ("background", "disk", "square", "triangle", "cross")
"""Class names of `load_shapes` masks, indexed by class id."""

SHAPES_CLASSIFICATION_NAMES = SHAPES_CLASS_NAMES[1:]
"""Class names of `load_shapes_classification` labels (no background class)."""

PETS_CLASS_NAMES = ("background", "pet", "border")
"""Class names of `load_oxford_pets` masks, indexed by class id."""

_SPLIT_STREAMS = {"train": 0, "validation": 1, "test": 2}
# Separate random streams per task, so a classification set never replays the
# first objects of a segmentation set built from the same seed.
_SCENES_STREAM = 0
_CLASSIFICATION_STREAM = 1
# Parameters are drawn for whole chunks of this many images, so image i depends
# only on (seed, split, i): `num_images=100` is a prefix of `num_images=2000`.
_CHUNK = 64

_DEFAULT_SCENES = {"train": 2048, "validation": 512, "test": 512}
_DEFAULT_CLASSIFICATION = {"train": 8192, "validation": 1024, "test": 1024}

# Minimum RGB distance between an object's colour and the mean of what it covers.
_MIN_CONTRAST = 100.0
_COLOUR_CANDIDATES = 8
_POSITION_CANDIDATES = 3


# ----------------------------------------------------------------------------
# Synthetic shapes
# ----------------------------------------------------------------------------


def _check_seed(seed):
    return check_int("seed", seed, minimum=0)


def _chunk_rngs(seed, stream, split, chunk_index):
    """Two independent generators for one chunk: parameters and pixel noise."""
    sequence = np.random.SeedSequence([seed, stream, _SPLIT_STREAMS[split], chunk_index])
    params_seq, noise_seq = sequence.spawn(2)
    return np.random.default_rng(params_seq), np.random.default_rng(noise_seq)


def _render_backgrounds(rng, n, size, grid_y, grid_x):
    """Smooth textured backgrounds `[n, S, S, 3]` float32 (values may leave [0, 255]).

    A base colour plus a linear ramp, soft stripes and Gaussian blobs, each with
    its own colour. Every one of these fields is separable in y and x (a sum
    of products `f(y) * g(x)`), so the whole background is one batched matmul
    of rank 8 instead of per-pixel transcendental functions.
    All parameters are drawn for a full chunk and sliced to `n` so that the
    random stream does not depend on how many images are requested.
    """
    c, num_blobs = _CHUNK, 3
    base = rng.uniform(0, 255, (c, 3))[:n]
    ramp_colour = rng.uniform(-255, 255, (c, 3))[:n]
    ramp_angle = rng.uniform(0, 2 * np.pi, c)[:n]
    stripe_colour = rng.normal(0, 1, (c, 3))[:n]
    stripe_amp = rng.uniform(0, 35, c)[:n]
    stripe_freq = rng.uniform(0.7, 3.0, c)[:n]
    stripe_angle = rng.uniform(0, 2 * np.pi, c)[:n]
    stripe_phase = rng.uniform(0, 2 * np.pi, c)[:n]
    blob_y = rng.uniform(0, size, (c, num_blobs))[:n]
    blob_x = rng.uniform(0, size, (c, num_blobs))[:n]
    blob_sigma = rng.uniform(0.08, 0.3, (c, num_blobs))[:n] * size
    blob_colour = rng.normal(0, 30, (c, num_blobs, 3))[:n]

    y = grid_y.reshape(1, size) - size / 2  # [1, S], centred coordinates
    x = grid_x.reshape(1, size) - size / 2
    ones = np.ones((n, size))
    def col_vec(a):
        return a[:, None]

    # Ramp along direction t: (x cos t + y sin t) / (S sqrt 2), in [-0.5, 0.5].
    scale = 1.0 / (size * np.sqrt(2.0))
    ramp_x = x * col_vec(np.cos(ramp_angle)) * scale
    ramp_y = y * col_vec(np.sin(ramp_angle)) * scale
    # sin(wx + vy + p) = sin(wx + p) cos(vy) + cos(wx + p) sin(vy).
    omega = 2 * np.pi * stripe_freq / size
    wx = x * col_vec(omega * np.cos(stripe_angle)) + col_vec(stripe_phase)
    vy = y * col_vec(omega * np.sin(stripe_angle))
    stripe_colour = stripe_colour / np.linalg.norm(stripe_colour, axis=1, keepdims=True)
    stripe_colour = stripe_colour * stripe_amp[:, None]
    # exp(-(dx^2 + dy^2) / 2s^2) = exp(-dx^2 / 2s^2) exp(-dy^2 / 2s^2).
    inv = 0.5 / blob_sigma[:, :, None] ** 2
    blob_fy = np.exp(-((grid_y.reshape(1, 1, size) - blob_y[:, :, None]) ** 2) * inv)
    blob_fx = np.exp(-((grid_x.reshape(1, 1, size) - blob_x[:, :, None]) ** 2) * inv)

    # Rank-1 terms: factor_y [n, R, S], factor_x [n, R, S], colour [n, R, 3].
    factor_y = np.concatenate(
        [np.stack([ones, ramp_y, ones, np.cos(vy), np.sin(vy)], axis=1), blob_fy], axis=1)
    factor_x = np.concatenate(
        [np.stack([ones, ones, ramp_x, np.sin(wx), np.cos(wx)], axis=1), blob_fx], axis=1)
    colour = np.concatenate(
        [np.stack([base, ramp_colour, ramp_colour, stripe_colour, stripe_colour], axis=1),
         blob_colour], axis=1)
    rank = factor_y.shape[1]
    right = (factor_x[:, :, :, None] * colour[:, :, None, :]).reshape(n, rank, size * 3)
    bg = np.matmul(factor_y.transpose(0, 2, 1).astype(np.float32), right.astype(np.float32))
    return bg.reshape(n, size, size, 3)


# Per-class geometry in units of the object size `L`, chosen so all four shapes
# cover about the same area (~0.78 L^2, a disk of diameter L) and classes stay
# balanced; the cross arms stay thin (0.34 L wide) to test fine structure.
_SQUARE_HALF_SIDE = 0.44
_TRIANGLE_CIRCUMRADIUS = 0.78
_CROSS_HALF_LENGTH = 0.6
_CROSS_HALF_WIDTH = 0.17


def _shape_inside(shape_class, dx, dy, cos, sin, length):
    """Boolean `[m, S, S]`: pixels inside each shape.

    Args:
        dx: `[m, 1, S]` and dy: `[m, S, 1]` pixel offsets from the shape centres.
        cos, sin, length: `[m, 1, 1]` rotation and size of each shape.

    Every test is written with projections `dx * a + dy * b`, which broadcast
    from `[m, 1, S]` and `[m, S, 1]`, so each costs one full-size addition.
    """

    def proj(c, s):
        return dx * c + dy * s

    if shape_class == 1:  # disk
        return dx * dx + dy * dy <= (0.5 * length) ** 2
    if shape_class == 2:  # square
        half = _SQUARE_HALF_SIDE * length
        return (np.abs(proj(cos, sin)) <= half) & (np.abs(proj(-sin, cos)) <= half)
    if shape_class == 3:  # equilateral triangle: three half-planes at the inradius
        inradius = 0.5 * _TRIANGLE_CIRCUMRADIUS * length
        inside = proj(cos, sin) <= inradius
        for a in (2 * np.pi / 3, 4 * np.pi / 3):
            ca, sa = np.float32(np.cos(a)), np.float32(np.sin(a))
            inside &= proj(cos * ca - sin * sa, sin * ca + cos * sa) <= inradius
        return inside
    if shape_class == 4:  # plus-shaped cross of two thin bars
        half, width = _CROSS_HALF_LENGTH * length, _CROSS_HALF_WIDTH * length
        au, av = np.abs(proj(cos, sin)), np.abs(proj(-sin, cos))
        return ((au <= width) & (av <= half)) | ((av <= width) & (au <= half))
    raise AssertionError(f"unknown shape class {shape_class}")


def _shape_outline():
    """Extreme points of each shape in its own frame (u, v), in units of `L`."""
    square = _SQUARE_HALF_SIDE * np.array([[1, 1], [1, -1], [-1, 1], [-1, -1]])
    # The triangle's half-plane normals point at 0, 120 and 240 degrees, so
    # its vertices sit opposite them, at 180, 300 and 60 degrees.
    angles = np.array([np.pi, 5 * np.pi / 3, np.pi / 3])
    triangle = _TRIANGLE_CIRCUMRADIUS * np.stack([np.cos(angles), np.sin(angles)], axis=1)
    h, w = _CROSS_HALF_LENGTH, _CROSS_HALF_WIDTH
    cross = np.array([[h, w], [h, -w], [-h, w], [-h, -w], [w, h], [-w, h], [w, -h], [-w, -h]])
    return {2: square, 3: triangle, 4: cross}


_OUTLINES = _shape_outline()


def _shape_bounds(classes, angles, lengths):
    """Offsets of each rotated shape's bounding box from its centre.

    Args:
        classes, angles, lengths: `[n]` shape class ids (0 = none), rotations
            and sizes `L` in pixels.

    Returns:
        low, high: `[n, 2]` (y, x) offsets: the shape spans centre + [low, high].
    """
    n = classes.shape[0]
    low, high = np.zeros((n, 2)), np.zeros((n, 2))
    # A disk (and an unused slot) is bounded by its radius in every direction.
    low[:], high[:] = -0.5 * lengths[:, None], 0.5 * lengths[:, None]
    cos, sin = np.cos(angles), np.sin(angles)
    for shape_class, outline in _OUTLINES.items():
        idx = classes == shape_class
        u, v = outline[None, :, 0], outline[None, :, 1]
        # Inverse of the (u, v) frame used by `_shape_inside`.
        dx = (u * cos[idx, None] - v * sin[idx, None]) * lengths[idx, None]
        dy = (u * sin[idx, None] + v * cos[idx, None]) * lengths[idx, None]
        low[idx] = np.stack([dy.min(axis=1), dx.min(axis=1)], axis=1)
        high[idx] = np.stack([dy.max(axis=1), dx.max(axis=1)], axis=1)
    return low, high


def _pixel_noise(rng, shape, std):
    """Zero-mean noise with standard deviation `std`, float32 of `shape`.

    Triangular (the sum of two uniform bytes) rather than Gaussian: it looks the
    same at this amplitude and costs a fraction of `standard_normal`.
    """
    pairs = np.frombuffer(rng.bytes(2 * int(np.prod(shape))), dtype=np.uint8).reshape(*shape, 2)
    centred = pairs[..., 0].astype(np.int16) + pairs[..., 1] - 255  # in [-255, 255]
    # Triangular on [-255, 255] has std 255 / sqrt(6).
    return centred.astype(np.float32) * np.float32(std * np.sqrt(6.0) / 255.0)


def _render_chunk(rng, noise_rng, n, size, min_objects, max_objects, scale_range, noise_std):
    """Render `n` (<= _CHUNK) scenes.

    Objects are rasterised into a map of the front-most object slot per pixel;
    masks, colours and shading are looked up from that map once at the end,
    which keeps the per-object work to one small-integer `[S, S]` map.

    Returns:
        images: uint8 `[n, S, S, 3]`; masks: uint8 `[n, S, S]`;
        classes: int `[n, max_objects]` (0 for unused slots).
    """
    c, k_max = _CHUNK, max_objects
    grid = np.arange(size, dtype=np.float32) + np.float32(0.5)  # pixel centres
    grid_y = grid[None, :, None]
    grid_x = grid[None, None, :]

    # Object parameters, drawn for the full chunk before any slicing.
    count = rng.integers(min_objects, max_objects + 1, c)[:n]
    classes = rng.integers(1, len(SHAPES_CLASS_NAMES), (c, k_max))[:n]
    lengths = rng.uniform(scale_range[0], scale_range[1], (c, k_max))[:n] * size
    angles = rng.uniform(0, 2 * np.pi, (c, k_max))[:n]
    cand_unit = rng.uniform(0, 1, (c, k_max, _POSITION_CANDIDATES, 2))[:n]
    colours = rng.uniform(0, 255, (c, k_max, _COLOUR_CANDIDATES, 3))[:n]
    shade_amp = rng.uniform(-30, 30, (c, k_max))[:n]

    background = _render_backgrounds(rng, n, size, grid_y, grid_x)

    active = np.arange(k_max)[None, :] < count[:, None]
    classes = np.where(active, classes, 0)
    # Larger objects are drawn first, so small ones in front are rarely hidden.
    order = np.argsort(-np.where(active, lengths, -1.0), axis=1, kind="stable")
    lengths = np.take_along_axis(lengths, order, axis=1)

    # Per-slot tables with one extra slot at the end: a `top` value of -1
    # (no object) then indexes that slot, whose class is 0 (background).
    top = np.full((n, size, size), -1, dtype=np.int8)  # front-most slot per pixel
    slot_class = np.zeros((n, k_max + 1), dtype=np.uint8)
    slot_class[:, :k_max] = classes
    slot_colour = np.zeros((n, k_max + 1, 3), dtype=np.float32)
    slot_shade = np.zeros((n, k_max + 1, 3), dtype=np.float32)  # shade = a*x + b*y + c
    centres = np.zeros((n, k_max, 2))
    stride = max(1, size // 32)
    for k in range(k_max):
        length = lengths[:, k]
        # Centres are drawn where the whole rotated shape fits in the frame: a
        # clipped triangle or cross would look like another class.
        low, high = _shape_bounds(classes[:, k], angles[:, k], length)  # [n, 2] (y, x)
        first, last = -low, size - high
        fits = first <= last
        middle = (first + last) / 2  # a shape larger than the frame is centred
        first, last = np.where(fits, first, middle), np.where(fits, last, middle)
        cand = first[:, None, :] + cand_unit[:, k] * (last - first)[:, None, :]  # [n, C, 2]
        # Among a few candidate centres, pick the one farthest from earlier
        # objects: overlaps still happen but rarely hide a shape entirely.
        if k == 0:
            best = np.zeros(n, dtype=int)
        else:
            dist = np.linalg.norm(cand[:, :, None, :] - centres[:, None, :k, :], axis=-1)
            gap = dist - 0.5 * (length[:, None, None] + lengths[:, None, :k])
            gap = np.where(active[:, None, :k], gap, np.inf)
            best = np.argmax(gap.min(axis=2), axis=1)
        centres[:, k] = cand[np.arange(n), best]

        # A soft shading ramp along the shape's own axis, so objects are not
        # the only flat regions; stored as a plane, evaluated at the end.
        cos_k, sin_k = np.cos(angles[:, k]), np.sin(angles[:, k])
        ramp = shade_amp[:, k] / length
        slot_shade[:, k, 0] = ramp * cos_k
        slot_shade[:, k, 1] = ramp * sin_k
        slot_shade[:, k, 2] = -ramp * (cos_k * centres[:, k, 1] + sin_k * centres[:, k, 0])

        for shape_class in range(1, len(SHAPES_CLASS_NAMES)):
            idx = np.nonzero(active[:, k] & (classes[:, k] == shape_class))[0]
            if idx.size == 0:
                continue

            def col(a):
                return np.asarray(a[idx], dtype=np.float32)[:, None, None]

            dy = grid_y - col(centres[:, k, 0])
            dx = grid_x - col(centres[:, k, 1])
            inside = _shape_inside(shape_class, dx, dy, col(cos_k), col(sin_k), col(length))

            # Pick the first random colour far enough from the mean of what the
            # object covers (estimated on a sparse grid: ~20 samples or more
            # even for the smallest shapes), so the shape is visible without tying
            # colours to classes.
            sub_inside = inside[:, ::stride, ::stride]
            sub_top = top[idx, ::stride, ::stride]
            under = np.where(
                (sub_top >= 0)[..., None],
                slot_colour[idx[:, None, None], sub_top],
                background[idx, ::stride, ::stride],
            )
            area = np.maximum(sub_inside.sum(axis=(1, 2)), 1)
            covered = np.einsum("mhwc,mhw->mc", under, sub_inside.astype(np.float32))
            covered /= area[:, None]
            cand_colours = colours[idx, k]  # [m, candidates, 3]
            contrast = np.linalg.norm(cand_colours - covered[:, None, :], axis=-1)
            good = contrast >= _MIN_CONTRAST
            choice = np.where(good.any(axis=1), np.argmax(good, axis=1),
                              np.argmax(contrast, axis=1))
            slot_colour[idx, k] = cand_colours[np.arange(idx.size), choice]

            sub = top[idx]
            sub[inside] = k
            top[idx] = sub

    # Flat indices into the [n * (k_max + 1)] slot tables: np.take on them is
    # several times faster than broadcast fancy indexing.
    flat = (top.astype(np.intp) % (k_max + 1)) + (np.arange(n) * (k_max + 1))[:, None, None]
    masks = np.take(slot_class.reshape(-1), flat)
    plane = np.take(slot_shade.reshape(-1, 3), flat, axis=0)
    shade = plane[..., 0] * grid_x + plane[..., 1] * grid_y + plane[..., 2]
    canvas = np.take(slot_colour.reshape(-1, 3), flat, axis=0) + shade[..., None]
    canvas = np.where((top >= 0)[..., None], canvas, background)
    canvas += _pixel_noise(noise_rng, canvas.shape, noise_std)
    images = np.clip(np.rint(canvas), 0, 255).astype(np.uint8)
    return images, masks, classes


def _generate(num_images, image_size, seed, split, stream, min_objects, max_objects,
              scale_range, noise_std):
    """Concatenate chunks; image i depends only on (seed, split, stream, i)."""
    images = np.empty((num_images, image_size, image_size, 3), dtype=np.uint8)
    masks = np.empty((num_images, image_size, image_size), dtype=np.uint8)
    classes = np.empty((num_images, max_objects), dtype=np.int64)
    for chunk_index, start in enumerate(range(0, num_images, _CHUNK)):
        n = min(_CHUNK, num_images - start)
        rng, noise_rng = _chunk_rngs(seed, stream, split, chunk_index)
        out = _render_chunk(rng, noise_rng, n, image_size, min_objects, max_objects,
                            scale_range, noise_std)
        images[start:start + n], masks[start:start + n], classes[start:start + n] = out
    return images, masks, classes


def make_shapes_scenes(num_images, image_size=96, seed=0, split="train", min_objects=1,
                       max_objects=5, min_scale=0.16, max_scale=0.5, noise_std=8.0):
    """Generate synthetic segmentation scenes of shapes on textured backgrounds.

    Each scene holds `min_objects`..`max_objects` shapes (disk, square, triangle,
    cross: `SHAPES_CLASS_NAMES[1:]`) at random positions, sizes and rotations,
    drawn largest first so later shapes occlude earlier ones (the mask follows
    the occlusion). Classes differ by geometry only: colours are random, chosen
    to contrast with what the shape covers. Backgrounds are random gradients
    with soft stripes and blobs; pixel noise is added everywhere.
    Background covers about 75% of pixels.

    Deterministic: image `i` depends only on `(seed, split, i)`, so a smaller
    `num_images` returns a prefix of a larger one, and splits never share images.

    Args:
        num_images: int >= 1, number of scenes.
        image_size: int >= 16, side `S` of the square images.
        seed: int >= 0.
        split: "train", "validation" or "test": selects an independent stream.
        min_objects, max_objects: ints, range of the number of shapes per image
            (at most 32).
        min_scale, max_scale: floats in (0, 1], shape size as a fraction of `S`.
        noise_std: float >= 0, standard deviation of the pixel noise (0-255
            scale; triangular noise, which looks Gaussian and is cheaper to draw).

    Returns:
        images: uint8 numpy array `[num_images, S, S, 3]`.
        masks: uint8 numpy array `[num_images, S, S]`, class ids in 0..4.

    Example:
        >>> images, masks = make_shapes_scenes(8, image_size=64)
        >>> images.shape, masks.shape
        ((8, 64, 64, 3), (8, 64, 64))
    """
    num_images = check_int("num_images", num_images, minimum=1)
    image_size = check_int("image_size", image_size, minimum=16)
    seed = _check_seed(seed)
    check_choice("split", split, _SPLIT_STREAMS)
    min_objects = check_int("min_objects", min_objects, minimum=1)
    max_objects = check_int("max_objects", max_objects, minimum=min_objects, maximum=32)
    min_scale = check_float("min_scale", min_scale, minimum=0.0, maximum=1.0, strict_minimum=True)
    max_scale = check_float("max_scale", max_scale, minimum=min_scale, maximum=1.0)
    noise_std = check_float("noise_std", noise_std, minimum=0.0)
    images, masks, _ = _generate(num_images, image_size, seed, split, _SCENES_STREAM,
                                 min_objects, max_objects, (min_scale, max_scale), noise_std)
    return images, masks


def make_shapes_classification(num_images, image_size=32, seed=0, split="train",
                               min_scale=0.4, max_scale=0.7, noise_std=6.0):
    """Generate one-shape images labelled by shape, for classifiers.

    Same generator as `make_shapes_scenes` with exactly one object per image.
    Labels index `SHAPES_CLASSIFICATION_NAMES` (disk, square, triangle, cross);
    there is no background class.

    Args:
        num_images: int >= 1.
        image_size: int >= 16, side `S` of the square images.
        seed: int >= 0.
        split: "train", "validation" or "test": selects an independent stream.
        min_scale, max_scale: floats in (0, 1], shape size as a fraction of `S`.
        noise_std: float >= 0, pixel noise standard deviation (0-255 scale).

    Returns:
        images: uint8 numpy array `[num_images, S, S, 3]`.
        labels: int32 numpy array `[num_images]`, values in 0..3.

    Example:
        >>> images, labels = make_shapes_classification(16)
        >>> images.shape, labels.dtype
        ((16, 32, 32, 3), dtype('int32'))
    """
    num_images = check_int("num_images", num_images, minimum=1)
    image_size = check_int("image_size", image_size, minimum=16)
    seed = _check_seed(seed)
    check_choice("split", split, _SPLIT_STREAMS)
    min_scale = check_float("min_scale", min_scale, minimum=0.0, maximum=1.0, strict_minimum=True)
    max_scale = check_float("max_scale", max_scale, minimum=min_scale, maximum=1.0)
    noise_std = check_float("noise_std", noise_std, minimum=0.0)
    images, _, classes = _generate(num_images, image_size, seed, split, _CLASSIFICATION_STREAM,
                                   1, 1, (min_scale, max_scale), noise_std)
    return images, (classes[:, 0] - 1).astype(np.int32)


def _default_count(num_images, split, defaults):
    if num_images is None:
        return defaults[split]
    return check_int("num_images", num_images, minimum=1)


def load_shapes(split="train", num_images=None, image_size=96, seed=0):
    """Synthetic shapes segmentation dataset (see `make_shapes_scenes`).

    Args:
        split: "train", "validation" or "test"; each split uses its own random
            stream, so no scene appears in two splits.
        num_images: int, number of scenes; None gives 2048 for "train" and 512
            otherwise.
        image_size: int, side `S` of the square images.
        seed: int >= 0.

    Returns:
        Unbatched `tf.data.Dataset` of `(image float32 [S, S, 3] in [0, 255],
        mask int32 [S, S])` with 5 classes (`SHAPES_CLASS_NAMES`).

    Example:
        >>> ds = load_shapes("validation", num_images=4, image_size=64)
        >>> image, mask = next(iter(ds))
    """
    check_choice("split", split, _SPLIT_STREAMS)
    num_images = _default_count(num_images, split, _DEFAULT_SCENES)
    images, masks = make_shapes_scenes(num_images, image_size=image_size, seed=seed, split=split)
    ds = tf.data.Dataset.from_tensor_slices((images, masks))
    # Kept uint8 in memory (4x smaller); cast per element.
    return ds.map(lambda x, y: (tf.cast(x, tf.float32), tf.cast(y, tf.int32)),
                  num_parallel_calls=tf.data.AUTOTUNE)


def load_shapes_classification(split="train", num_images=None, image_size=32, seed=0):
    """Synthetic one-shape classification dataset (see `make_shapes_classification`).

    Args:
        split: "train", "validation" or "test" (disjoint random streams).
        num_images: int; None gives 8192 for "train" and 1024 otherwise.
        image_size: int, side `S` of the square images.
        seed: int >= 0.

    Returns:
        Unbatched `tf.data.Dataset` of `(image float32 [S, S, 3] in [0, 255],
        label int32 [])` with 4 classes (`SHAPES_CLASSIFICATION_NAMES`).
    """
    check_choice("split", split, _SPLIT_STREAMS)
    num_images = _default_count(num_images, split, _DEFAULT_CLASSIFICATION)
    images, labels = make_shapes_classification(num_images, image_size=image_size, seed=seed,
                                                split=split)
    ds = tf.data.Dataset.from_tensor_slices((images, labels))
    return ds.map(lambda x, y: (tf.cast(x, tf.float32), y), num_parallel_calls=tf.data.AUTOTUNE)


# ----------------------------------------------------------------------------
# Shared helpers
# ----------------------------------------------------------------------------


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


def _tfds_builder(name, data_dir, download):
    """A prepared tfds builder, or a fast RuntimeError saying how to get the data.

    `tfds.load` offline retries downloads for minutes and, with
    `download=False`, fails with a bare AssertionError; checking
    `builder.is_prepared()` first answers in well under a second.
    """
    import tensorflow_datasets as tfds  # lazy: costs ~0.5 s and is optional for synthetic data

    try:
        builder = tfds.builder(name, data_dir=data_dir)
    except tfds.core.registered.DatasetNotFoundError as error:
        # tfds lists every registered dataset; keep only its suggestion.
        hint = [line.strip() for line in str(error).splitlines() if "Did you mean" in line]
        raise ValueError(
            f"`name` is not a TensorFlow Datasets name: name={name!r}. {' '.join(hint)}"
        ) from None
    if builder.is_prepared():
        return builder
    where = f"data_dir={data_dir!r}" if data_dir else "the default tfds data_dir"
    how = (
        f"Run once with download=True on a machine with network access, copy a prepared "
        f"'{name}' folder to {builder.data_dir}, or pass data_dir=<folder containing {name}/>."
    )
    if not download:
        raise RuntimeError(
            f"TFDS dataset '{name}' is not prepared in {where} (looked for "
            f"{builder.data_dir}) and download=False. {how}"
        )
    try:
        builder.download_and_prepare()
    except Exception as error:  # network, disk and checksum errors all end here
        raise RuntimeError(
            f"Downloading TFDS dataset '{name}' into {where} failed with "
            f"{type(error).__name__}: {error}. {how}"
        ) from error
    return builder


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
    features = builder.info.features
    for arg, key in (("image_key", image_key), ("mask_key", mask_key)):
        if key not in features:
            raise ValueError(
                f"`{arg}` must name a feature of '{name}' ({sorted(features.keys())}); "
                f"received {arg}={key!r}."
            )
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
        label int32 [])`; the class names are in
        `tfds.builder(name).info.features["label"].names`.

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


# ----------------------------------------------------------------------------
# Folders of image and mask files
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


IMAGE_END_MARKERS = {"PNG": b"IEND", "JPEG": b"\xff\xd9"}
"""Bytes that end every complete file of a format: the PNG IEND chunk type and
the JPEG end-of-image marker. Some writers append data after them, so checks
search the last `IMAGE_TAIL_BYTES` of a file rather than its very last bytes."""
IMAGE_TAIL_BYTES = 64 * 1024


def _open_image_file(arg, path):
    """Opens `path` with PIL (header only), or raises a ValueError naming `arg` and the file.

    Catches, before training starts, files that tf.data would fail on halfway
    through an epoch with a message that names no file: files that are not
    images (e.g. an HTML error page saved as `.jpg`) and PNG/JPEG files cut
    short by an interrupted copy or download.
    """
    from PIL import Image, UnidentifiedImageError

    try:
        image = Image.open(path)
    except (UnidentifiedImageError, OSError) as error:
        raise ValueError(
            f"`{arg}` must hold readable JPEG or PNG images; {path!r} is not one ({error})."
        ) from None
    marker = IMAGE_END_MARKERS.get(image.format)
    if marker is not None:
        with open(path, "rb") as handle:
            handle.seek(max(0, os.path.getsize(path) - IMAGE_TAIL_BYTES))
            complete = marker in handle.read()
        if not complete:
            image.close()
            raise ValueError(
                f"`{arg}` must hold complete JPEG or PNG images; {path!r} is a truncated "
                f"{image.format} file (no end-of-image marker): copy it again or remove it."
            )
    return image


def _few(names, limit=5):
    shown = ", ".join(repr(n) for n in names[:limit])
    return shown + (f" and {len(names) - limit} more" if len(names) > limit else "")


def _read_mask(path):
    from PIL import Image

    with Image.open(path.decode() if isinstance(path, bytes) else path) as mask:
        return np.asarray(mask, dtype=np.int32)


def load_segmentation_folder(images_dir, masks_dir, image_size=None):
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

    Returns:
        Unbatched `tf.data.Dataset` of `(image float32 [H, W, 3] in [0, 255],
        mask int32 [H, W])`, in sorted stem order.

    Raises:
        ValueError: a missing or empty directory, images without masks or masks
            without images, a file that is not an image or is truncated, a mask
            that is not single-channel, or an image and mask of different sizes.
    """
    size = _check_image_size(image_size)
    images = _files_by_stem("images_dir", images_dir, _IMAGE_EXTENSIONS)
    masks = _files_by_stem("masks_dir", masks_dir, _MASK_EXTENSIONS)
    no_mask = sorted(set(images) - set(masks))
    if no_mask:
        raise ValueError(
            f"{len(no_mask)} image(s) in `images_dir` ({images_dir}) have no mask with the same "
            f"stem in `masks_dir` ({masks_dir}): {_few(no_mask)}."
        )
    no_image = sorted(set(masks) - set(images))
    if no_image:
        raise ValueError(
            f"{len(no_image)} mask(s) in `masks_dir` ({masks_dir}) have no image with the same "
            f"stem in `images_dir` ({images_dir}): {_few(no_image)}."
        )
    stems = sorted(images)
    mismatched, multichannel = [], []
    for stem in stems:
        # Only headers and file tails are read; pixels are decoded later by tf.data.
        with _open_image_file("images_dir", images[stem]) as image, \
                _open_image_file("masks_dir", masks[stem]) as mask:
            if image.size != mask.size:
                mismatched.append(f"{stem} (image {image.size[1]}x{image.size[0]}, "
                                  f"mask {mask.size[1]}x{mask.size[0]})")
            if mask.mode not in _MASK_MODES:
                multichannel.append(f"{os.path.basename(masks[stem])} (mode {mask.mode})")
    if mismatched:
        raise ValueError(
            f"Image and mask sizes (height x width) differ for {len(mismatched)} pair(s) in "
            f"`images_dir`/`masks_dir`: {_few(mismatched, 3)}. Masks must label every pixel."
        )
    if multichannel:
        raise ValueError(
            f"Masks in `masks_dir` must be single-channel PNGs of class ids (grayscale or "
            f"palette); received {_few(multichannel, 3)}."
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


# ----------------------------------------------------------------------------
# Checks
# ----------------------------------------------------------------------------


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
            f"values found: {_few(values.tolist(), 20)}."
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
        raise ValueError(f"`ds` must yield (images, masks) pairs; its element spec is {spec}.")
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


# ----------------------------------------------------------------------------
# Augmentation
# ----------------------------------------------------------------------------


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
    if seed is not None:
        _check_seed(seed)


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


# ----------------------------------------------------------------------------
# Pipelines
# ----------------------------------------------------------------------------


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
    if seed is not None:
        _check_seed(seed)


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
