"""The embedded synthetic shapes datasets: rendered in numpy from a seed, no download.

- `make_shapes_scenes` / `load_shapes`: segmentation scenes of disks,
  squares, triangles and crosses over textured backgrounds, masks labelled
  by `SHAPES_CLASS_NAMES` (background first).
- `make_shapes_classification` / `load_shapes_classification`: one shape
  per image, labelled by `SHAPES_CLASSIFICATION_NAMES`.
- `make_shapes_detection` / `load_shapes_detection`: scenes with one box
  (tight around the visible pixels) and instance mask per object, labelled
  by `SHAPES_CLASSIFICATION_NAMES`; `load_shapes_instances` keeps the masks.

Image `i` of a split depends only on `(seed, split, i)`: a smaller
`num_images` gives a prefix of a larger one and splits never share images.
"""

import numpy as np
import tensorflow as tf

from kerasvision.validation import check_choice, check_float, check_int, check_seed

SHAPES_CLASS_NAMES = ("background", "disk", "square", "triangle", "cross")
"""Class names of `load_shapes` masks, indexed by class id."""

SHAPES_CLASSIFICATION_NAMES = SHAPES_CLASS_NAMES[1:]
"""Class names of `load_shapes_classification` labels (no background class)."""

_SPLIT_STREAMS = {"train": 0, "validation": 1, "test": 2}
# Separate random streams per task, so a classification set never replays the
# first objects of a segmentation set built from the same seed.
_SCENES_STREAM = 0
_CLASSIFICATION_STREAM = 1
_DETECTION_STREAM = 2
# Parameters are drawn for whole chunks of this many images, so image i depends
# only on (seed, split, i): `num_images=100` is a prefix of `num_images=2000`.
_CHUNK = 64

_DEFAULT_SCENES = {"train": 2048, "validation": 512, "test": 512}
_DEFAULT_CLASSIFICATION = {"train": 8192, "validation": 1024, "test": 1024}
_DEFAULT_DETECTION = {"train": 2048, "validation": 256, "test": 256}
# Detection objects span 12%-40% of the side: at 128 px the smallest is ~15 px,
# still several feature-map cells at stride 8, and four of the largest fit.
_DETECTION_SCALE = (0.12, 0.4)
_DETECTION_NOISE_STD = 8.0

# Minimum RGB distance between an object's colour and the mean of what it covers.
_MIN_CONTRAST = 100.0
_COLOUR_CANDIDATES = 8
_POSITION_CANDIDATES = 3


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


def _render_chunk(rng, noise_rng, n, size, min_objects, max_objects, scale_range, noise_std,
                  instances=False):
    """Render `n` (<= _CHUNK) scenes.

    Objects are rasterised into a map of the front-most object slot per pixel;
    masks, colours and shading are looked up from that map once at the end,
    which keeps the per-object work to one small-integer `[S, S]` map.

    Returns:
        images: uint8 `[n, S, S, 3]`; masks: uint8 `[n, S, S]`;
        classes: int `[n, max_objects]` (0 for unused slots).
        With `instances=True`, also top: int8 `[n, S, S]`, the slot seen at
        each pixel (-1: background), and full_area: int64 `[n, max_objects]`,
        each slot's pixel count before occlusion. Neither draws random
        numbers, so images and masks are the same either way.
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
    full_area = np.zeros((n, k_max), dtype=np.int64)
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
            full_area[idx, k] = inside.sum(axis=(1, 2))

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
    if instances:
        return images, masks, classes, top, full_area
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
    seed = check_seed(seed)
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
    seed = check_seed(seed)
    check_choice("split", split, _SPLIT_STREAMS)
    min_scale = check_float("min_scale", min_scale, minimum=0.0, maximum=1.0, strict_minimum=True)
    max_scale = check_float("max_scale", max_scale, minimum=min_scale, maximum=1.0)
    noise_std = check_float("noise_std", noise_std, minimum=0.0)
    images, _, classes = _generate(num_images, image_size, seed, split, _CLASSIFICATION_STREAM,
                                   1, 1, (min_scale, max_scale), noise_std)
    return images, (classes[:, 0] - 1).astype(np.int32)


def make_shapes_windows(num_images, window=32, seed=0, split="train", shape_scale=(0.4, 0.8),
                        background_share=0.25):
    """Windows of the embedded scenes for a classifier that slides over a scene.

    One shape per window (labels 1..4, the classes of `SHAPES_CLASS_NAMES`)
    and windows of scene background with no shape at all (label 0), so a
    classifier trained on them, once convolutionalised, tells background from
    shapes at every position (the class heatmaps of Long et al. 2015, Fig. 2).
    Background windows are cut from 3x3 tiles of scenes holding one small
    shape each, keeping the tiles the shape does not touch.

    Args:
        num_images: int >= 1, windows holding a shape; `background_share` of
            that many background windows are added (at least one).
        window: int >= 16, side of the square windows.
        seed: int >= 0.
        split: "train", "validation" or "test" (disjoint random streams).
        shape_scale: `(min, max)` shape size as a fraction of `window`.
        background_share: float > 0, background windows per shape window
            (0.25: five classes of about equal size).

    Returns:
        images: uint8 `[N, window, window, 3]`, shuffled.
        labels: int32 `[N]`, 0 (background) to 4.
    """
    num_images = check_int("num_images", num_images, minimum=1)
    background_share = check_float("background_share", background_share, minimum=0.0,
                                   strict_minimum=True)
    shapes, labels = make_shapes_classification(num_images, window, seed=seed, split=split,
                                                min_scale=shape_scale[0],
                                                max_scale=shape_scale[1])
    count = max(1, int(round(num_images * background_share)))
    tiles, scene_seed = [], seed
    while sum(len(batch) for batch in tiles) < count:
        scenes_count = max(8, count // 6)
        scenes, masks = make_shapes_scenes(
            scenes_count, image_size=3 * window, seed=scene_seed, split=split,
            min_objects=1, max_objects=1, min_scale=0.13, max_scale=0.27,
        )
        grid = scenes.reshape(scenes_count, 3, window, 3, window, 3).transpose(0, 1, 3, 2, 4, 5)
        grid_masks = masks.reshape(scenes_count, 3, window, 3, window).transpose(0, 1, 3, 2, 4)
        empty = ~np.any(grid_masks.reshape(scenes_count, 9, -1) > 0, axis=-1)
        tiles.append(grid.reshape(scenes_count, 9, window, window, 3)[empty])
        scene_seed += 1
    backgrounds = np.concatenate(tiles)[:count]
    images = np.concatenate([shapes, backgrounds])
    targets = np.concatenate([labels + 1, np.zeros(count, np.int32)]).astype(np.int32)
    order = np.random.default_rng(seed).permutation(len(images))
    return images[order], targets[order]


def _instance_targets(top, classes, full_area, max_hidden_fraction, with_masks):
    """Boxes, labels and masks of the visible objects of one rendered chunk.

    Args:
        top: int8 `[n, S, S]`, slot seen at each pixel (-1: background).
        classes: int `[n, K]`, class ids 1..4 per slot (0: unused slot).
        full_area: int `[n, K]`, pixels of each slot before occlusion.
        max_hidden_fraction: float, largest hidden share of a kept object.
        with_masks: bool, also return the instance masks.

    Returns:
        boxes float32 `[n, K, 4]` xyxy (x2, y2 exclusive), labels int32
        `[n, K]` in 0..3, masks bool `[n, K, S, S]` (or None); kept objects
        first in drawing order (back to front), then -1 / False padding rows.
    """
    size = top.shape[1]
    k_max = classes.shape[1]
    visible = top[:, None] == np.arange(k_max, dtype=np.int8)[None, :, None, None]
    visible_area = visible.sum(axis=(2, 3))
    hidden = 1.0 - visible_area / np.maximum(full_area, 1)
    # A fully hidden object has no box at all, even with max_hidden_fraction=1.
    keep = (classes > 0) & (visible_area > 0) & (hidden <= max_hidden_fraction)

    rows, cols = visible.any(axis=3), visible.any(axis=2)  # [n, K, S] along y and x
    y1, y2 = np.argmax(rows, axis=2), size - np.argmax(rows[..., ::-1], axis=2)
    x1, x2 = np.argmax(cols, axis=2), size - np.argmax(cols[..., ::-1], axis=2)
    boxes = np.stack([x1, y1, x2, y2], axis=-1).astype(np.float32)
    labels = (classes - 1).astype(np.int32)
    boxes[~keep], labels[~keep] = -1.0, -1

    # Stable sort on "dropped": kept rows move to the front in drawing order.
    order = np.argsort(~keep, axis=1, kind="stable")
    boxes = np.take_along_axis(boxes, order[..., None], axis=1)
    labels = np.take_along_axis(labels, order, axis=1)
    masks = None
    if with_masks:
        visible &= keep[:, :, None, None]
        masks = np.take_along_axis(visible, order[:, :, None, None], axis=1)
    return boxes, labels, masks


def _generate_detection(num_images, image_size, seed, split, min_objects, max_objects,
                        max_hidden_fraction, with_masks):
    """Like `_generate`, on the detection stream, keeping per-object targets per chunk.

    Targets are reduced chunk by chunk so that the `[n, K, S, S]` visibility
    tensor never exists for the whole set when masks are not wanted.
    """
    size = image_size
    images = np.empty((num_images, size, size, 3), dtype=np.uint8)
    boxes = np.empty((num_images, max_objects, 4), dtype=np.float32)
    labels = np.empty((num_images, max_objects), dtype=np.int32)
    masks = np.empty((num_images, max_objects, size, size), dtype=bool) if with_masks else None
    for chunk_index, start in enumerate(range(0, num_images, _CHUNK)):
        n = min(_CHUNK, num_images - start)
        rng, noise_rng = _chunk_rngs(seed, _DETECTION_STREAM, split, chunk_index)
        chunk_images, _, classes, top, full_area = _render_chunk(
            rng, noise_rng, n, size, min_objects, max_objects, _DETECTION_SCALE,
            _DETECTION_NOISE_STD, instances=True)
        chunk_boxes, chunk_labels, chunk_masks = _instance_targets(
            top, classes, full_area, max_hidden_fraction, with_masks)
        images[start:start + n] = chunk_images
        boxes[start:start + n], labels[start:start + n] = chunk_boxes, chunk_labels
        if with_masks:
            masks[start:start + n] = chunk_masks
    return images, boxes, labels, masks


def _check_detection_args(num_images, image_size, seed, split, min_objects, max_objects,
                          max_hidden_fraction):
    num_images = check_int("num_images", num_images, minimum=1)
    image_size = check_int("image_size", image_size, minimum=16)
    seed = check_seed(seed)
    check_choice("split", split, _SPLIT_STREAMS)
    min_objects = check_int("min_objects", min_objects, minimum=1)
    max_objects = check_int("max_objects", max_objects, minimum=min_objects, maximum=32)
    max_hidden_fraction = check_float("max_hidden_fraction", max_hidden_fraction,
                                      minimum=0.0, maximum=1.0)
    return num_images, image_size, seed, min_objects, max_objects, max_hidden_fraction


def make_shapes_detection(num_images, image_size=128, seed=0, split="train", min_objects=1,
                          max_objects=4, max_hidden_fraction=0.6):
    """Generate detection scenes of shapes, with one box and mask per visible object.

    Same renderer as `make_shapes_scenes` (shapes drawn largest first, later
    ones occluding earlier ones, random contrasting colours over textured
    backgrounds), on its own random stream, with objects of 12%-40% of the
    image side. Each box is the tight box of the object's visible pixels;
    an object whose hidden share of its own full area exceeds
    `max_hidden_fraction` (or that is hidden entirely) is dropped, so boxes
    never stand for something a detector cannot see.

    Deterministic: image `i` depends only on `(seed, split, i)`, so a smaller
    `num_images` returns a prefix of a larger one, and splits never share images.

    Args:
        num_images: int >= 1, number of scenes `N`.
        image_size: int >= 16, side `S` of the square images (128-320 px is
            the intended range).
        seed: int >= 0.
        split: "train", "validation" or "test": selects an independent stream.
        min_objects, max_objects: ints, range of the number of shapes drawn per
            image (`max_objects` <= 32); `max_objects` is also the number of
            rows `K` of the targets.
        max_hidden_fraction: float in [0, 1], largest occluded share of an
            object that is still labelled.

    Returns:
        images: uint8 `[N, S, S, 3]`.
        boxes: float32 `[N, K, 4]`, pixel `(x1, y1, x2, y2)` with x2 and y2
            exclusive: the object covers columns x1..x2-1 and rows y1..y2-1.
        labels: int32 `[N, K]`, ids in 0..3 indexing `SHAPES_CLASSIFICATION_NAMES`.
        instance_masks: bool `[N, K, S, S]`, the visible pixels of each object
            (N x K x S x S bytes: 400 KB per image at K=4, S=320;
            `load_shapes_detection` does not build them).
        Kept objects come first, back to front; the remaining rows are
        padding: boxes -1, labels -1, masks all False.

    Example:
        >>> images, boxes, labels, masks = make_shapes_detection(4)
        >>> boxes.shape, masks.shape
        ((4, 4, 4), (4, 4, 128, 128))
    """
    num_images, image_size, seed, min_objects, max_objects, max_hidden_fraction = (
        _check_detection_args(num_images, image_size, seed, split, min_objects, max_objects,
                              max_hidden_fraction))
    return _generate_detection(num_images, image_size, seed, split, min_objects, max_objects,
                               max_hidden_fraction, with_masks=True)


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



def load_shapes_detection(split="train", num_images=None, image_size=128, seed=0, max_objects=4):
    """Synthetic shapes detection dataset (see `make_shapes_detection`).

    Args:
        split: "train", "validation" or "test" (disjoint random streams).
        num_images: int; None gives 2048 for "train" and 256 otherwise.
        image_size: int, side `S` of the square images.
        seed: int >= 0.
        max_objects: int in 1..32, most shapes per image and the number of
            box rows `K`.

    Returns:
        Unbatched `tf.data.Dataset` of the detection dict `{"images": float32
        [S, S, 3] in [0, 255], "bounding_boxes": {"boxes": float32 [K, 4] xyxy
        pixels, "labels": int32 [K]}}`, padded with -1 rows; 4 classes
        (`SHAPES_CLASSIFICATION_NAMES`). Keras preprocessing layers take it
        with `bounding_box_format="xyxy"`.

    Example:
        >>> ds = load_shapes_detection("validation", num_images=8)
        >>> ds.element_spec["bounding_boxes"]["boxes"].shape
        TensorShape([4, 4])
    """
    check_choice("split", split, _SPLIT_STREAMS)
    num_images = _default_count(num_images, split, _DEFAULT_DETECTION)
    num_images, image_size, seed, _, max_objects, _ = _check_detection_args(
        num_images, image_size, seed, split, 1, max_objects, 0.6)
    # Masks are not part of the dataset: skip building them (N x K x S x S bools).
    images, boxes, labels, _ = _generate_detection(num_images, image_size, seed, split, 1,
                                                   max_objects, 0.6, with_masks=False)
    ds = tf.data.Dataset.from_tensor_slices((images, boxes, labels))
    return ds.map(
        lambda x, b, c: {"images": tf.cast(x, tf.float32),
                         "bounding_boxes": {"boxes": b, "labels": c}},
        num_parallel_calls=tf.data.AUTOTUNE)


def load_shapes_instances(split="train", num_images=None, image_size=128, seed=0,
                          max_objects=4):
    """Synthetic shapes instance-segmentation dataset (see `make_shapes_detection`).

    The scenes, boxes and labels of `load_shapes_detection`, plus one mask of
    visible pixels per object, for `make_instance_pipeline` and `MaskRCNN`.

    Args:
        split: "train", "validation" or "test" (disjoint random streams).
        num_images: int; None gives 2048 for "train" and 256 otherwise.
        image_size: int, side `S` of the square images.
        seed: int >= 0.
        max_objects: int in 1..32, most shapes per image and the number of
            rows `K` of the targets.

    Returns:
        Unbatched `tf.data.Dataset` of `{"images": uint8 [S, S, 3],
        "bounding_boxes": {"boxes": float32 [K, 4] xyxy pixels, "labels":
        int32 [K]}, "masks": uint8 [K, S, S]}` (mask pixels 0 or 1), padded
        with -1 boxes and labels and all-zero masks; 4 classes
        (`SHAPES_CLASSIFICATION_NAMES`). Images stay uint8, unlike the other
        loaders: the training shuffle buffer then holds 4x fewer bytes, and
        `make_instance_pipeline` casts each batch to float32.

    Example:
        >>> ds = load_shapes_instances("validation", num_images=8)
        >>> ds.element_spec["masks"].shape
        TensorShape([4, 128, 128])
    """
    check_choice("split", split, _SPLIT_STREAMS)
    num_images = _default_count(num_images, split, _DEFAULT_DETECTION)
    images, boxes, labels, masks = make_shapes_detection(
        num_images, image_size, seed=seed, split=split, max_objects=max_objects)
    return tf.data.Dataset.from_tensor_slices(
        {"images": images, "bounding_boxes": {"boxes": boxes, "labels": labels},
         "masks": masks.astype(np.uint8)})


# ----------------------------------------------------------------------------
# Identities: the same shape "person" seen many times, for verification.
# ----------------------------------------------------------------------------

_IDENTITY_STREAM = 3
# An identity's look: size as a fraction of the image side; its mark's size and
# offset in units of the object size `L` (the offset keeps the mark inside
# every shape class); stripes as a brightness wave along the object's own axis.
_IDENTITY_SIZE = (0.45, 0.7)
_MARK_SIZE = (0.3, 0.45)
_MARK_OFFSET = 0.12
_STRIPE_AMPLITUDE = (0.0, 45.0)
_STRIPE_CYCLES = (1.0, 3.0)
# Backgrounds are pulled halfway to mid-grey: still a nuisance that changes
# with every image, but the identity's own colours stay the strongest signal.
_IDENTITY_BACKGROUND_CONTRAST = 0.5
_IDENTITY_NOISE_STD = 6.0

SHAPES_IDENTITY_KEYS = (
    "shape_class", "colour", "size", "orientation", "mark_class", "mark_colour", "mark_size",
    "mark_offset", "stripe_amplitude", "stripe_cycles",
)
"""Keys of the fixed per-identity parameters `make_shapes_identities` returns."""


def _identity_parameters(seed, split, index):
    """The fixed look of identity `index` of a split: a dict of `SHAPES_IDENTITY_KEYS`.

    Drawn from its own generator keyed by `(seed, split, index)`, so it does not
    depend on how many identities or images are asked for.
    """
    rng = np.random.default_rng(
        np.random.SeedSequence([seed, _IDENTITY_STREAM, _SPLIT_STREAMS[split], index, 0]))
    shape_class = int(rng.integers(1, len(SHAPES_CLASS_NAMES)))
    colour = rng.uniform(0, 255, 3)
    mark_class = int(rng.integers(1, len(SHAPES_CLASS_NAMES)))
    # The first candidate far enough from the body colour, so the mark is visible.
    candidates = rng.uniform(0, 255, (_COLOUR_CANDIDATES, 3))
    contrast = np.linalg.norm(candidates - colour, axis=1)
    good = contrast >= _MIN_CONTRAST
    mark_colour = candidates[np.argmax(good) if good.any() else np.argmax(contrast)]
    return {
        "shape_class": shape_class,
        "colour": colour,
        "size": rng.uniform(*_IDENTITY_SIZE),
        "orientation": rng.uniform(0, 2 * np.pi),
        "mark_class": mark_class,
        "mark_colour": mark_colour,
        "mark_size": rng.uniform(*_MARK_SIZE),
        "mark_offset": rng.uniform(-_MARK_OFFSET, _MARK_OFFSET, 2),
        "stripe_amplitude": rng.uniform(*_STRIPE_AMPLITUDE),
        "stripe_cycles": rng.uniform(*_STRIPE_CYCLES),
    }


def _render_identity_block(identity, rng, noise_rng, n, size, pose_jitter, shift, scale_jitter):
    """Render `n` (<= _CHUNK) images of one identity with random pose and background.

    Returns:
        images: uint8 `[n, S, S, 3]`; pose: dict of per-image `angle`, `scale`,
        `centre` (y, x) and `gain`.
    """
    c = _CHUNK
    # Per-image nuisances, drawn for the full chunk so image j depends only on j.
    angle = identity["orientation"] + rng.uniform(-pose_jitter, pose_jitter, c)[:n]
    scale = rng.uniform(1.0 - scale_jitter, 1.0 + scale_jitter, c)[:n]
    offset = rng.uniform(-shift, shift, (c, 2))[:n] * size
    gain = rng.uniform(0.85, 1.15, c)[:n]
    grid = np.arange(size, dtype=np.float32) + np.float32(0.5)
    grid_y, grid_x = grid[None, :, None], grid[None, None, :]
    background = _render_backgrounds(rng, n, size, grid_y, grid_x)
    background = 127.5 + _IDENTITY_BACKGROUND_CONTRAST * (background - 127.5)

    length = identity["size"] * size * scale
    classes = np.full(n, identity["shape_class"])
    # Centres stay where the whole rotated shape fits, as in the scenes.
    low, high = _shape_bounds(classes, angle, length)
    first, last = -low, size - high
    middle = (first + last) / 2
    first, last = np.where(first <= last, first, middle), np.where(first <= last, last, middle)
    centre = np.clip(size / 2 + offset, first, last)

    def col(a):
        return np.asarray(a, dtype=np.float32)[:, None, None]

    cos, sin = np.cos(angle), np.sin(angle)
    dy, dx = grid_y - col(centre[:, 0]), grid_x - col(centre[:, 1])
    body = _shape_inside(identity["shape_class"], dx, dy, col(cos), col(sin), col(length))
    # The mark sits at a fixed place of the body's own (u, v) frame, so it
    # turns and scales with the pose.
    u, v = identity["mark_offset"][0] * length, identity["mark_offset"][1] * length
    mark_y = centre[:, 0] + u * sin + v * cos
    mark_x = centre[:, 1] + u * cos - v * sin
    mark = _shape_inside(identity["mark_class"], grid_x - col(mark_x), grid_y - col(mark_y),
                         col(cos), col(sin), col(identity["mark_size"] * length))
    along = dx * col(cos) + dy * col(sin)  # the body's u coordinate, in pixels
    stripes = identity["stripe_amplitude"] * np.sin(
        2 * np.pi * identity["stripe_cycles"] * along / col(length))
    body_colour = identity["colour"].astype(np.float32) + stripes[..., None]
    canvas = np.where(body[..., None], body_colour, background)
    canvas = np.where((mark & body)[..., None], identity["mark_colour"].astype(np.float32),
                      canvas)
    canvas = canvas * col(gain)[..., None]
    canvas += _pixel_noise(noise_rng, canvas.shape, _IDENTITY_NOISE_STD)
    images = np.clip(np.rint(canvas), 0, 255).astype(np.uint8)
    return images, {"angle": angle, "scale": scale, "centre": centre, "gain": gain}


def make_shapes_identities(num_identities, images_per_identity, image_size=32, seed=0,
                           split="train", pose_jitter=0.35, shift=0.1, scale_jitter=0.1,
                           return_parameters=False):
    """Generate images of shape "identities" for verification by metric learning.

    The embedded stand-in for faces: each identity is a shape with a fixed look
    (`SHAPES_IDENTITY_KEYS`: shape class, body colour, size, orientation,
    brightness stripes along its axis, and a smaller "mark" shape of another
    colour at a fixed place on the body); each image of it is a new view: a
    small random rotation, shift, scale and gain over a new textured background,
    with pixel noise. Telling two identities apart needs their look, not the
    view: the pose and background changes are the "lighting and expression" that
    defeat matching raw pixels (Turk and Pentland 1991's eigenfaces) and that
    an embedding learns to ignore (Hadsell et al. 2006; Schroff et al. 2015).

    Splits hold different identities (independent random streams), so a
    validation split measures verification on identities never trained on.
    Deterministic: identity `i`'s look depends only on `(seed, split, i)` and its
    image `j` only on `(seed, split, i, j)`, so fewer identities or images give
    a prefix of a larger set.

    Args:
        num_identities: int >= 2, number of identities `M`.
        images_per_identity: int >= 2, images of each identity `K` (a pair of
            the same identity needs two).
        image_size: int >= 16, side `S` of the square images.
        seed: int >= 0.
        split: "train", "validation" or "test": each its own identities.
        pose_jitter: float >= 0, largest rotation away from the identity's own
            orientation, in radians (0.35: about 20 degrees).
        shift: float in [0, 0.5], largest shift of the centre, as a fraction
            of `S` (the shape always stays whole inside the image).
        scale_jitter: float in [0, 0.5), largest relative change of size.
        return_parameters: bool, also return the parameters of every image.

    Returns:
        images: uint8 `[M * K, S, S, 3]`, identity by identity.
        identities: int32 `[M * K]`, the identity index `0..M-1` of each image.
        parameters (with `return_parameters=True`): dict of per-image numpy
            arrays `[M * K, ...]`: the identity's `SHAPES_IDENTITY_KEYS`
            (equal for all images of one identity) and the view's `angle`
            (the orientation plus the pose's rotation),
            `scale`, `centre` (y, x pixels) and `gain`.

    Example:
        >>> images, identities = make_shapes_identities(10, 4)
        >>> images.shape, identities[:6]
        ((40, 32, 32, 3), array([0, 0, 0, 0, 1, 1], dtype=int32))
    """
    num_identities = check_int("num_identities", num_identities, minimum=2)
    images_per_identity = check_int("images_per_identity", images_per_identity, minimum=2)
    image_size = check_int("image_size", image_size, minimum=16)
    seed = check_seed(seed)
    check_choice("split", split, _SPLIT_STREAMS)
    pose_jitter = check_float("pose_jitter", pose_jitter, minimum=0.0, maximum=np.pi)
    shift = check_float("shift", shift, minimum=0.0, maximum=0.5)
    scale_jitter = check_float("scale_jitter", scale_jitter, minimum=0.0, maximum=0.49)
    total = num_identities * images_per_identity
    images = np.empty((total, image_size, image_size, 3), dtype=np.uint8)
    identities = np.repeat(np.arange(num_identities, dtype=np.int32), images_per_identity)
    parameters = {}
    for index in range(num_identities):
        identity = _identity_parameters(seed, split, index)
        for block, start in enumerate(range(0, images_per_identity, _CHUNK)):
            n = min(_CHUNK, images_per_identity - start)
            # `block + 1` keeps these entropy lists apart from the identity's own.
            sequence = np.random.SeedSequence(
                [seed, _IDENTITY_STREAM, _SPLIT_STREAMS[split], index, 1, block + 1])
            rng, noise_rng = (np.random.default_rng(s) for s in sequence.spawn(2))
            block_images, pose = _render_identity_block(
                identity, rng, noise_rng, n, image_size, pose_jitter, shift, scale_jitter)
            first = index * images_per_identity + start
            images[first:first + n] = block_images
            if return_parameters:
                view = {**{key: np.repeat(np.asarray(identity[key])[None], n, axis=0)
                           for key in SHAPES_IDENTITY_KEYS}, **pose}
                for key, value in view.items():
                    parameters.setdefault(key, []).append(value)
    if return_parameters:
        return images, identities, {k: np.concatenate(v) for k, v in parameters.items()}
    return images, identities


def load_shapes_identities(split="train", num_identities=None, images_per_identity=8,
                           image_size=32, seed=0):
    """Shape identities as an unbatched dataset (see `make_shapes_identities`).

    Args:
        split: "train", "validation" or "test" (each its own identities).
        num_identities: int >= 2; None gives 256 for "train" and 64 otherwise.
        images_per_identity: int >= 2.
        image_size: int >= 16, side `S` of the square images.
        seed: int >= 0.

    Returns:
        Unbatched `tf.data.Dataset` of `(image float32 [S, S, 3] in [0, 255],
        identity int32 [])`, identity by identity (shuffle before training).
    """
    check_choice("split", split, _SPLIT_STREAMS)
    if num_identities is None:
        num_identities = 256 if split == "train" else 64
    images, identities = make_shapes_identities(num_identities, images_per_identity,
                                                image_size=image_size, seed=seed, split=split)
    ds = tf.data.Dataset.from_tensor_slices((images, identities))
    return ds.map(lambda x, y: (tf.cast(x, tf.float32), y), num_parallel_calls=tf.data.AUTOTUNE)


# ----------------------------------------------------------------------------
# Presence: which shapes a scene holds, a multi-label source task for transfer.
# ----------------------------------------------------------------------------

_DEFAULT_PRESENCE = {"train": 4096, "validation": 512, "test": 512}


def make_shapes_presence(num_images, image_size=32, seed=0, split="train", min_objects=1,
                         max_objects=3, min_scale=0.25, max_scale=0.5, min_pixels=8):
    """Multi-label scenes: which of the four shapes each scene holds, read from its mask.

    The scenes of `make_shapes_scenes` (several shapes, occluding each
    other, over textured backgrounds), labelled by presence rather than per
    pixel: a shape counts as present when at least `min_pixels` of its
    pixels are visible, so a sliver left by occlusion is not a label the
    image cannot show. A source task for transfer learning to the one-shape
    classification of `make_shapes_classification`: the same shapes, in
    clutter, at other scales, with several answers per image.

    Args:
        num_images: int >= 1.
        image_size: int >= 16, side `S` of the square images.
        seed: int >= 0.
        split: "train", "validation" or "test" (disjoint random streams).
        min_objects, max_objects: ints, shapes drawn per scene (at most 32).
        min_scale, max_scale: floats in (0, 1], shape size as a fraction of `S`.
        min_pixels: int >= 1, visible pixels for a shape to count as present.

    Returns:
        images: uint8 `[N, S, S, 3]`.
        presence: float32 `[N, 4]`, 1.0 where the shape of
        `SHAPES_CLASSIFICATION_NAMES` is present, else 0.0.

    Example:
        >>> images, presence = make_shapes_presence(8)
        >>> images.shape, presence.shape
        ((8, 32, 32, 3), (8, 4))
    """
    min_pixels = check_int("min_pixels", min_pixels, minimum=1)
    images, masks = make_shapes_scenes(num_images, image_size=image_size, seed=seed, split=split,
                                       min_objects=min_objects, max_objects=max_objects,
                                       min_scale=min_scale, max_scale=max_scale)
    counts = np.stack([np.count_nonzero(masks == label, axis=(1, 2))
                       for label in range(1, len(SHAPES_CLASS_NAMES))], axis=-1)
    return images, (counts >= min_pixels).astype(np.float32)


def load_shapes_presence(split="train", num_images=None, image_size=32, seed=0, **kwargs):
    """Multi-label presence scenes as an unbatched dataset (see `make_shapes_presence`).

    Args:
        split: "train", "validation" or "test" (disjoint random streams).
        num_images: int; None gives 4096 for "train" and 512 otherwise.
        image_size: int >= 16, side `S` of the square images.
        seed: int >= 0.
        **kwargs: `make_shapes_presence`'s scene arguments (`max_objects`, ...).

    Returns:
        Unbatched `tf.data.Dataset` of `(image float32 [S, S, 3] in [0, 255],
        presence float32 [4])`.
    """
    check_choice("split", split, _SPLIT_STREAMS)
    num_images = _default_count(num_images, split, _DEFAULT_PRESENCE)
    images, presence = make_shapes_presence(num_images, image_size, seed=seed, split=split,
                                            **kwargs)
    ds = tf.data.Dataset.from_tensor_slices((images, presence))
    return ds.map(lambda x, y: (tf.cast(x, tf.float32), y), num_parallel_calls=tf.data.AUTOTUNE)
