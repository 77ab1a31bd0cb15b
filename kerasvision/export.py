"""SavedModel export for TF Serving, and a helper that reloads and checks it.

TF Serving watches `<model_base_path>/<integer version>/saved_model.pb` and
serves the highest version, so exports go to `<export_dir>/<version>/`.

An image model (classifier or segmenter) gets two signatures:
    `serving_default`: `images`, uint8 `[batch, height, width, 3]`, any batch
        size and any image size (resized to the model's input size).
    `serving_bytes`: `image_bytes`, string `[batch]` of encoded JPEG/PNG/BMP/GIF
        images, as REST clients send base64 images (`{"b64": ...}`) to inputs
        whose names end in `_bytes`; the images may differ in size.
Both return `probabilities` (float32) and `class_ids` (int32): per image for a
classifier, per pixel at the input resolution for a segmenter
(`serving_bytes`: at the model's resolution, since a batch of differently
sized images has no common one; `image_sizes` int32 `[batch, 2]` gives each
original size).
Both check each request before running the model: a wrong shape, an empty
batch or an entry that cannot be an image (empty, unknown format, truncated
PNG/JPEG) fails that request with an `InvalidArgumentError` naming the input
and what it expects; the next request is unaffected.

A generator or decoder (`export_generator`), an autoencoder
(`export_autoencoder`) and a diffusion model's sampler
(`export_diffusion_sampler`) get signatures of their own, described with each.

`load_model` loads a `.keras` file in safe mode after checking it.
"""

import json
import os
import re
import zipfile

import tensorflow as tf
import keras

from kerasvision.data.checks import IMAGE_END_MARKERS, IMAGE_TAIL_BYTES, MAX_IMAGE_PIXELS
from kerasvision.models.diffusion import DiffusionModel, sample_loop, to_uint8
from kerasvision.validation import check_choice, check_float, check_int

OUTPUT_KINDS = ("logits", "probabilities")


def next_version_dir(export_dir):
    """Returns `<export_dir>/<n>` with n one more than the highest existing version (or 1)."""
    versions = []
    if os.path.isdir(export_dir):
        versions = [int(entry) for entry in os.listdir(export_dir) if re.fullmatch(r"\d+", entry)]
    return os.path.join(export_dir, str(max(versions, default=0) + 1))


def _write(archive, export_dir, version):
    if version is None:
        path = next_version_dir(export_dir)
    else:
        path = os.path.join(export_dir, str(check_int("version", version, minimum=0)))
        if os.path.exists(path):
            raise ValueError(
                f"`version` {version} already exists in {export_dir!r}; pass another "
                "version or None for the next free one."
            )
    archive.write_out(path, verbose=False)
    return path


def _model_image_size(model):
    height, width, channels = model.input_shape[1:]
    if height is None or width is None or channels != 3:
        raise ValueError(
            "Exporting needs a model with a fixed input size (height, width, 3); "
            f"received a model with input shape {model.input_shape}."
        )
    return height, width


def _runtime_shape(x):
    """`tf.shape(x)` with the rank left unknown until run time.

    A signature does not check the shapes it is fed (TF Serving and
    `loaded.signatures[...]` pass any shape through), and Grappler folds a
    rank check of the declared `TensorSpec` away as always true. Reshaping `x`
    to its own shape padded by a length known only at run time (always 0)
    hides the declared rank, so checks on the result run on every request.
    """
    no_axes = tf.zeros([tf.minimum(tf.size(x), 0)], tf.int32)
    return tf.shape(tf.reshape(x, tf.concat([tf.shape(x), no_axes], 0)))


def _check_images_request(images):
    """`images` after a run-time check that it is `[batch, height, width, 3]`, none of them 0.

    Without it a wrong request fails deep inside the model ("input depth must
    be evenly divisible by filter depth", "input must be 4-dimensional").
    """
    shape = _runtime_shape(images)
    # Axes a rank-4 shape would have, zero-padded so a lower rank fails the check too.
    axes = tf.concat([shape, tf.zeros([4], tf.int32)], 0)[:4]
    valid = tf.logical_and(tf.equal(tf.size(shape), 4), tf.reduce_all(axes > 0))
    valid = tf.logical_and(valid, tf.equal(axes[3], 3))
    check = tf.debugging.Assert(
        valid,
        ["`images` must be uint8 [batch, height, width, 3] (RGB) with batch, height and "
         "width >= 1; received shape", shape],
        summarize=8,
    )
    with tf.control_dependencies([check]):
        return tf.identity(images)


def _encoded_images_problems(image_bytes):
    """Per entry, whether it cannot be an image `tf.io.decode_image` reads in full.

    A graph-compatible check before decoding: TensorFlow has no try/except
    inside a signature, and the decoder's own errors ("Invalid PNG data, size
    3054") name neither the input nor the entry. Flags empty strings, bytes
    without the signature of a format that `decode_image` reads (JPEG, PNG,
    GIF, BMP, WebP, JPEG XL: e.g. base64 text sent without the `{"b64": ...}`
    wrapper), and PNG or JPEG files without their end marker (truncated).
    Corruption inside a complete file is left to the decoder.
    """
    # Padding keeps every fixed-offset slice below inside the string.
    padded = tf.strings.join([image_bytes, b"\0" * 12])

    def starts_with(prefix, offset=0):
        return tf.equal(tf.strings.substr(padded, offset, len(prefix)), prefix)

    is_png = starts_with(b"\x89PNG\r\n\x1a\n")
    is_jpeg = starts_with(b"\xff\xd8\xff")
    known = tf.reduce_any(tf.stack([
        is_png,
        is_jpeg,
        starts_with(b"GIF8"),
        starts_with(b"BM"),
        tf.logical_and(starts_with(b"RIFF"), starts_with(b"WEBP", offset=8)),
        starts_with(b"\xff\x0a"),  # JPEG XL codestream
        starts_with(b"\x00\x00\x00\x0cJXL \r\n\x87\n"),  # JPEG XL container
    ]), axis=0)
    length = tf.strings.length(image_bytes)
    tail_length = tf.fill(tf.shape(length), IMAGE_TAIL_BYTES)  # substr wants equal shapes
    tail = tf.strings.substr(image_bytes, tf.maximum(length - IMAGE_TAIL_BYTES, 0), tail_length)

    def ends_with_marker(image_format):
        pieces = tf.strings.split(tail, sep=IMAGE_END_MARKERS[image_format])
        return pieces.row_lengths() > 1

    complete = tf.logical_and(
        tf.logical_or(tf.logical_not(is_png), ends_with_marker("PNG")),
        tf.logical_or(tf.logical_not(is_jpeg), ends_with_marker("JPEG")),
    )
    return tf.logical_not(tf.logical_and(tf.logical_and(length > 0, known), complete))


def _header_integers(padded, offset, length, big_endian):
    """Unsigned integers of `length` bytes at `offset` of each string of `padded`, as int64."""
    raw = tf.cast(tf.io.decode_raw(tf.strings.substr(padded, offset, length), tf.uint8), tf.int64)
    weights = [256 ** (length - 1 - i if big_endian else i) for i in range(length)]
    return tf.reduce_sum(raw * tf.constant(weights, tf.int64), axis=-1)


def _declared_pixels(image_bytes):
    """Height x width that each encoded image's header declares, without decoding pixels.

    Reads the fixed header fields of PNG (IHDR), GIF (logical screen), BMP
    (DIB header) and WebP (VP8X canvas, VP8L and VP8 frame sizes), and the
    JPEG frame header through `tf.io.extract_jpeg_shape`. Formats without a
    known field give 0 and are left to the decoder.

    Args:
        image_bytes: string `[batch]`, entries already checked to be
            complete images of a known format.

    Returns:
        int64 `[batch]`.
    """
    padded = tf.strings.join([image_bytes, b"\0" * 32])

    def starts_with(prefix, offset=0):
        return tf.equal(tf.strings.substr(padded, offset, len(prefix)), prefix)

    def webp(chunk):
        return tf.logical_and(starts_with(b"RIFF"), starts_with(chunk, offset=12))

    png = _header_integers(padded, 16, 4, True) * _header_integers(padded, 20, 4, True)
    gif = _header_integers(padded, 6, 2, False) * _header_integers(padded, 8, 2, False)
    bmp_height = _header_integers(padded, 22, 4, False)
    bmp_height = tf.where(bmp_height >= 2 ** 31, 2 ** 32 - bmp_height, bmp_height)  # top-down
    bmp = _header_integers(padded, 18, 4, False) * bmp_height
    vp8x = (_header_integers(padded, 24, 3, False) + 1) * (_header_integers(padded, 27, 3, False) + 1)
    vp8l_bits = _header_integers(padded, 21, 4, False)
    vp8l = (vp8l_bits % 2 ** 14 + 1) * ((vp8l_bits // 2 ** 14) % 2 ** 14 + 1)
    vp8 = (_header_integers(padded, 26, 2, False) % 2 ** 14) * (
        _header_integers(padded, 28, 2, False) % 2 ** 14)

    def jpeg_pixels(encoded):
        is_jpeg = tf.equal(tf.strings.substr(encoded, 0, 3), b"\xff\xd8\xff")
        shape = tf.cond(is_jpeg, lambda: tf.io.extract_jpeg_shape(encoded, tf.int64),
                        lambda: tf.zeros([3], tf.int64))
        return shape[0] * shape[1]

    jpeg = tf.map_fn(jpeg_pixels, image_bytes, fn_output_signature=tf.int64)
    cases = [
        (starts_with(b"\x89PNG\r\n\x1a\n"), png),
        (starts_with(b"GIF8"), gif),
        (starts_with(b"BM"), bmp),
        (webp(b"VP8X"), vp8x),
        (webp(b"VP8L"), vp8l),
        (webp(b"VP8 "), vp8),
    ]
    pixels = jpeg
    for matches, declared in cases:
        pixels = tf.where(matches, declared, pixels)
    return pixels


def _check_bytes_request(image_bytes):
    """`image_bytes` after run-time checks: a non-empty vector of decodable-looking images."""
    shape = _runtime_shape(image_bytes)
    check_shape = tf.debugging.Assert(
        tf.logical_and(tf.equal(tf.size(shape), 1), tf.size(image_bytes) > 0),
        ["`image_bytes` must be a vector [batch] of encoded images with batch >= 1; "
         "received shape", shape],
    )
    with tf.control_dependencies([check_shape]):
        problems = _encoded_images_problems(tf.reshape(image_bytes, [-1]))
    check_images = tf.debugging.Assert(
        tf.logical_not(tf.reduce_any(problems)),
        ["`image_bytes` must hold complete JPEG, PNG, GIF, BMP, WebP or JPEG XL files; "
         "received image_bytes whose entries at these indices could not be decoded as images "
         "(empty, not an image, or truncated):", tf.where(problems)[:, 0]],
        summarize=16,
    )
    with tf.control_dependencies([check_images]):
        return tf.identity(image_bytes)


def _check_declared_size(image_bytes, max_pixels):
    """`image_bytes` after refusing any entry whose header declares more than `max_pixels`."""
    pixels = _declared_pixels(image_bytes)
    too_large = pixels > max_pixels
    check = tf.debugging.Assert(
        tf.logical_not(tf.reduce_any(too_large)),
        [f"`image_bytes` entries must declare at most max_image_pixels={max_pixels} pixels "
         "(height x width, read from the header; nothing was decoded); received, at these "
         "indices:", tf.where(too_large)[:, 0], "these pixel counts:",
         tf.boolean_mask(pixels, too_large)],
        summarize=16,
    )
    with tf.control_dependencies([check]):
        return tf.identity(image_bytes)


def _decode_images(image_bytes, size, max_pixels=MAX_IMAGE_PIXELS):
    """Decodes a batch of encoded images to float32 `[batch, *size, 3]` and their sizes.

    Entries that are not complete images, or whose header declares more than
    `max_pixels` pixels, fail the request with a message naming their indices.
    """
    image_bytes = _check_declared_size(_check_bytes_request(image_bytes), max_pixels)

    def decode_one(encoded):
        image = tf.io.decode_image(encoded, channels=3, expand_animations=False)
        original_size = tf.shape(image)[:2]
        image = tf.image.resize(tf.cast(image, tf.float32), size, method="bilinear")
        return image, original_size

    return tf.map_fn(
        decode_one,
        image_bytes,
        fn_output_signature=(
            tf.TensorSpec([*size, 3], tf.float32),
            tf.TensorSpec([2], tf.int32),
        ),
    )


def export_image_model(model, export_dir, outputs="logits", version=None,
                       max_image_pixels=MAX_IMAGE_PIXELS):
    """Exports a classifier or segmenter as a versioned SavedModel for TF Serving.

    Args:
        model: a `keras.Model` taking raw RGB images `[batch, H, W, 3]` in
            [0, 255] (fixed H, W) and returning `[batch, num_classes]` (classifier)
            or `[batch, H, W, num_classes]` (segmenter).
        export_dir: str, the model base path; the export goes to a new integer
            version directory inside it.
        outputs: "logits" or "probabilities": what the model returns.
        version: int, version to write (default: next free number).
        max_image_pixels: int, `serving_bytes` refuses (per request, before
            decoding) images whose header declares more pixels: 64 MP by
            default (`kerasvision.data.checks.MAX_IMAGE_PIXELS`).

    Returns:
        str, the directory written (`<export_dir>/<version>`).
    """
    check_choice("outputs", outputs, OUTPUT_KINDS)
    max_image_pixels = check_int("max_image_pixels", max_image_pixels, minimum=1)
    size = _model_image_size(model)
    is_segmenter = len(model.output_shape) == 4

    def to_outputs(logits, output_size=None):
        logits = tf.cast(logits, tf.float32)
        if is_segmenter and output_size is not None:
            logits = tf.image.resize(logits, output_size, method="bilinear")
        probabilities = tf.nn.softmax(logits, axis=-1) if outputs == "logits" else logits
        class_ids = tf.argmax(logits, axis=-1, output_type=tf.int32)
        return {"probabilities": probabilities, "class_ids": class_ids}

    def serve_images(images):
        images = _check_images_request(images)
        input_size = tf.shape(images)[1:3]
        resized = tf.image.resize(tf.cast(images, tf.float32), size, method="bilinear")
        return to_outputs(model(resized, training=False), input_size)

    def serve_bytes(image_bytes):
        images, image_sizes = _decode_images(image_bytes, size, max_image_pixels)
        results = to_outputs(model(images, training=False))
        results["image_sizes"] = image_sizes
        return results

    archive = keras.export.ExportArchive()
    archive.track(model)
    archive.add_endpoint(
        "serving_default",
        serve_images,
        input_signature=[tf.TensorSpec([None, None, None, 3], tf.uint8, name="images")],
    )
    archive.add_endpoint(
        "serving_bytes",
        serve_bytes,
        input_signature=[tf.TensorSpec([None], tf.string, name="image_bytes")],
    )
    return _write(archive, export_dir, version)


def export_detector(model, export_dir, score_threshold=0.05, iou_threshold=0.5,
                    max_detections=100, version=None, max_image_pixels=MAX_IMAGE_PIXELS):
    """Exports a detector with non-maximum suppression inside the graph, for TF Serving.

    Both signatures resize each image to the model's input size, detect, and
    return boxes in the pixels of the image as sent:

    - `serving_default` takes `images`, uint8 `[batch, height, width, 3]` (one size per request);
    - `serving_bytes` takes `image_bytes`, string `[batch]` of encoded images
      (each its own size; refused before decoding above `max_image_pixels`).

    Each returns `boxes` float32 `[batch, max_detections, 4]` (x1, y1, x2, y2
    in input pixels), `scores` float32 `[batch, max_detections]`, `classes`
    int32 (-1 in unused rows) and `num_detections` int32 `[batch]`.

    Args:
        model: a detector of `kerasvision.models.detectors.build_detector`,
            with a fixed input size.
        export_dir: str, the model base path; a new version directory is written in it.
        score_threshold, iou_threshold, max_detections: the NMS settings,
            fixed at export and recorded in `<version>/assets/detection.json`.
        version: int, version to write (default: next free number).
        max_image_pixels: int, `serving_bytes`' limit on declared image size.

    Returns:
        str, the directory written.
    """
    from kerasvision.models.detectors import detect

    size = _model_image_size(model)
    score_threshold = check_float("score_threshold", score_threshold, minimum=0.0, maximum=1.0)
    iou_threshold = check_float("iou_threshold", iou_threshold, minimum=0.0, maximum=1.0)
    max_detections = check_int("max_detections", max_detections, minimum=1)
    max_image_pixels = check_int("max_image_pixels", max_image_pixels, minimum=1)
    settings = (score_threshold, iou_threshold, max_detections)
    detect(model, tf.zeros([1, *size, 3]), *settings)  # sets up the decoder before tracing

    def detect_resized(images, original_sizes):
        found = detect(model, images, *settings)
        # Back from the model's input size to each image's own pixels.
        scale = tf.cast(original_sizes, tf.float32) / tf.constant(size, tf.float32)
        scale = tf.concat([scale[:, 1:2], scale[:, 0:1], scale[:, 1:2], scale[:, 0:1]], axis=1)
        found["boxes"] = found["boxes"] * scale[:, None, :]
        return found

    def serve_images(images):
        images = _check_images_request(images)
        batch = tf.shape(images)[0]
        original = tf.tile(tf.shape(images)[1:3][None], [batch, 1])
        resized = tf.image.resize(tf.cast(images, tf.float32), size, method="bilinear")
        return detect_resized(resized, original)

    def serve_bytes(image_bytes):
        images, image_sizes = _decode_images(image_bytes, size, max_image_pixels)
        return detect_resized(images, image_sizes)

    archive = keras.export.ExportArchive()
    archive.track(model)
    archive.add_endpoint(
        "serving_default", serve_images,
        input_signature=[tf.TensorSpec([None, None, None, 3], tf.uint8, name="images")])
    archive.add_endpoint(
        "serving_bytes", serve_bytes,
        input_signature=[tf.TensorSpec([None], tf.string, name="image_bytes")])
    path = _write(archive, export_dir, version)
    os.makedirs(os.path.join(path, "assets"), exist_ok=True)
    with open(os.path.join(path, "assets", "detection.json"), "w") as handle:
        json.dump({"score_threshold": score_threshold, "iou_threshold": iou_threshold,
                   "max_detections": max_detections, "box_format": "xyxy pixels of the input",
                   "input_size": list(size)}, handle, indent=1)
    return path


def export_generator(model, export_dir, latent_dim, version=None):
    """Exports a generator/decoder mapping latent vectors to images in [-1, 1].

    Args:
        model: `keras.Model` mapping `[batch, latent_dim]` float32 to images
            `[batch, H, W, C]` in [-1, 1] (tanh output).
        export_dir: str, the model base path.
        latent_dim: int, size of the latent vectors.
        version: int, version to write (default: next free number).

    Returns:
        str, the directory written. `serving_default` takes `latents` float32
        `[batch, latent_dim]`; `serving_seed` takes `seed` int32 `[2]` and
        `num_images` int32 `[]` and draws the latents itself. Both return
        `images`, uint8 `[batch, H, W, C]`.
    """

    def serve_latents(latents):
        return {"images": to_uint8(model(latents, training=False))}

    def serve_seed(seed, num_images):
        latents = tf.random.stateless_normal(tf.stack([num_images, latent_dim]), seed)
        return {"images": to_uint8(model(latents, training=False))}

    archive = keras.export.ExportArchive()
    archive.track(model)
    archive.add_endpoint(
        "serving_default",
        serve_latents,
        input_signature=[tf.TensorSpec([None, latent_dim], tf.float32, name="latents")],
    )
    archive.add_endpoint(
        "serving_seed",
        serve_seed,
        input_signature=[
            tf.TensorSpec([2], tf.int32, name="seed"),
            tf.TensorSpec([], tf.int32, name="num_images"),
        ],
    )
    return _write(archive, export_dir, version)


def load_export(path):
    """Loads an exported SavedModel and checks it holds a `serving_default` signature.

    Args:
        path: str, a version directory (`<export_dir>/<version>`).

    Returns:
        The loaded object; call `loaded.signatures["serving_default"](images=...)`.
    """
    if not os.path.exists(os.path.join(path, "saved_model.pb")):
        raise ValueError(
            f"`path` holds no SavedModel (no saved_model.pb); received path={path!r}. Pass a "
            "version directory such as saved_models/<name>/1."
        )
    loaded = tf.saved_model.load(path)
    if "serving_default" not in loaded.signatures:
        raise ValueError(
            f"`path` holds a SavedModel without a 'serving_default' signature; received "
            f"path={path!r}, whose signatures are {sorted(loaded.signatures)}."
        )
    return loaded


def _find_lambda_layers(config):
    """Names of the `Lambda` layers anywhere in a saved model's config (nested models included)."""
    found = []
    if isinstance(config, dict):
        if config.get("class_name") == "Lambda":
            found.append(config.get("config", {}).get("name", "?"))
        for value in config.values():
            found += _find_lambda_layers(value)
    elif isinstance(config, list):
        for value in config:
            found += _find_lambda_layers(value)
    return found


def load_model(path, custom_objects=None, compile=True):
    """Loads a `.keras` model file in safe mode, after checking the file.

    kerasvision's models, layers, losses and trainers are registered Keras
    classes, so they load without `custom_objects`. A `.keras` file whose
    config holds a `Lambda` layer is refused: its Python bytecode would run on
    load (Keras' `safe_mode`, which stays on; see the Keras loading CVEs).

    Args:
        path: str or path-like, a `.keras` file written by `model.save`.
        custom_objects: optional dict name -> class, for classes from outside
            kerasvision that are not registered.
        compile: bool, restore the compile state (optimizer, loss, metrics).

    Returns:
        The loaded `keras.Model`.

    Raises:
        ValueError: the path is missing, is not a `.keras` file or a
            complete zip archive with a `config.json`, or the model holds a
            `Lambda` layer.

    Example:
        >>> model.save("unet.keras")
        >>> restored = load_model("unet.keras")
    """
    path = os.fspath(path)
    if not path.endswith(".keras"):
        raise ValueError(
            f"`path` must name a `.keras` file (the Keras 3 format); received path={path!r}. "
            "Load SavedModel exports with `load_export` and weights files with "
            "`model.load_weights`."
        )
    if not os.path.isfile(path):
        raise ValueError(f"`path` must be an existing `.keras` file; received path={path!r}, "
                         "which does not exist.")
    # A `.keras` file is a zip archive whose directory sits at its end, so a
    # truncated copy fails this test.
    if not zipfile.is_zipfile(path):
        raise ValueError(
            "`path` must be a `.keras` zip archive, but is not a complete zip file (truncated "
            f"or corrupt?); received path={path!r}."
        )
    with zipfile.ZipFile(path) as archive:
        if "config.json" not in archive.namelist():
            raise ValueError(
                f"`path` must be a `.keras` archive holding a config.json; received "
                f"path={path!r}, which holds {sorted(archive.namelist())[:5]}."
            )
        try:
            config = json.loads(archive.read("config.json"))
        except (ValueError, zipfile.BadZipFile) as error:
            raise ValueError(
                f"`path` must be a readable `.keras` archive, but its config.json is corrupt "
                f"({error}); received path={path!r}."
            ) from None
    # Keras' safe mode refuses these too, but its message suggests
    # `safe_mode=False`, which this loader deliberately does not offer.
    lambdas = _find_lambda_layers(config)
    if lambdas:
        raise ValueError(
            f"`path` must hold a model without `Lambda` layers; received path={path!r}, which "
            f"holds {lambdas}, whose Python code would run on load, so it is refused. Rebuild "
            "the model with registered layers (see kerasvision.layers)."
        )
    return keras.saving.load_model(
        path, custom_objects=custom_objects, compile=compile, safe_mode=True)


def export_autoencoder(model, export_dir, version=None):
    """Exports an image-to-image network on the [-1, 1] scale (an autoencoder) for TF Serving.

    Args:
        model: `keras.Model` mapping images `[batch, H, W, 3]` in [-1, 1]
            (fixed H, W) to images of the same shape in [-1, 1] (tanh), e.g.
            encoder and decoder chained.
        export_dir: str, the model base path.
        version: int, version to write (default: next free number).

    Returns:
        str, the directory written. `serving_default` takes `images`, uint8
        `[batch, height, width, 3]` of any size (resized to the model's
        size), and returns `reconstructions`, uint8 at the input's size.
    """
    size = _model_image_size(model)

    def serve_images(images):
        images = _check_images_request(images)
        input_size = tf.shape(images)[1:3]
        scaled = tf.image.resize(tf.cast(images, tf.float32), size, method="bilinear")
        outputs = tf.cast(model(scaled / 127.5 - 1.0, training=False), tf.float32)
        outputs = tf.image.resize((outputs + 1.0) * 127.5, input_size, method="bilinear")
        return {"reconstructions": tf.cast(tf.clip_by_value(tf.round(outputs), 0.0, 255.0), tf.uint8)}

    archive = keras.export.ExportArchive()
    archive.track(model)
    archive.add_endpoint(
        "serving_default",
        serve_images,
        input_signature=[tf.TensorSpec([None, None, None, 3], tf.uint8, name="images")],
    )
    return _write(archive, export_dir, version)


def export_diffusion_sampler(model, export_dir, eta=0.0, clip_denoised=True, version=None):
    """Exports the EMA denoiser's DDIM sampler as a versioned SavedModel for TF Serving.

    Args:
        model: a trained `kerasvision.models.diffusion.DiffusionModel`.
        export_dir: str, the model base path; the export goes to
            `<export_dir>/<version>`.
        eta: float >= 0, DDIM noise (0: deterministic given the seed).
        clip_denoised: bool.
        version: int, version to write (default: next free number).

    Returns:
        str, the directory written. `serving_default` takes `seed` int32 `[2]`,
        `num_images` int32 `[]` and `steps` int32 `[]` (1..T; more is an
        InvalidArgumentError) and returns `images`, uint8 `[num_images, H, W, 3]`.
        The same seed gives the same images as `model.generate(..., seed=s)`
        with `seed=[s, 0]`.
    """
    if not isinstance(model, DiffusionModel):
        raise ValueError(f"`model` must be a DiffusionModel; received {type(model).__name__}.")
    eta = check_float("eta", eta, minimum=0.0)
    network = model.ema_network
    alphas_cumprod = tf.constant(model.terms["alphas_cumprod"], tf.float32)

    def serve(seed, num_images, steps):
        images = sample_loop(network, alphas_cumprod, tf.cast(seed, tf.int64), num_images, steps,
                             sampler="ddim", eta=eta, clip_denoised=clip_denoised)
        return {"images": to_uint8(images)}

    archive = keras.export.ExportArchive()
    archive.track(network)
    archive.add_endpoint(
        "serving_default",
        serve,
        input_signature=[
            tf.TensorSpec([2], tf.int32, name="seed"),
            tf.TensorSpec([], tf.int32, name="num_images"),
            tf.TensorSpec([], tf.int32, name="steps"),
        ],
    )
    return _write(archive, export_dir, version)


def export_embedding_network(model, export_dir, version=None):
    """Exports an embedding network (images -> L2-normalised embeddings) for TF Serving.

    `serving_default` takes `images`, uint8 `[batch, height, width, 3]` of any
    size (resized bilinearly to the model's input size), and returns
    `embeddings`, float32 `[batch, D]` of unit L2 norm: compare them by
    Euclidean distance, or by cosine similarity (their dot product).

    Args:
        model: a `keras.Model` images -> embeddings with a fixed input size,
            e.g. from `kerasvision.models.siamese.build_embedding_network`.
        export_dir: str, the model base path; a new integer version inside it.
        version: int or None (the next free number).

    Returns:
        str, the directory written.
    """
    size = _model_image_size(model)

    def serve_images(images):
        images = _check_images_request(images)
        resized = tf.image.resize(tf.cast(images, tf.float32), size, method="bilinear")
        embeddings = tf.cast(model(resized, training=False), tf.float32)
        # Normalised again: resizing or a custom network may leave them off the sphere.
        return {"embeddings": tf.math.l2_normalize(embeddings, axis=-1)}

    archive = keras.export.ExportArchive()
    archive.track(model)
    archive.add_endpoint(
        "serving_default", serve_images,
        input_signature=[tf.TensorSpec([None, None, None, 3], tf.uint8, name="images")])
    return _write(archive, export_dir, version)


def export_instance_segmenter(model, export_dir, score_threshold=0.05, iou_threshold=0.5,
                              max_detections=20, mask_threshold=0.5, version=None):
    """Exports a Mask R-CNN with NMS and mask pasting inside the graph, for TF Serving.

    `serving_default` takes `images`, uint8 `[batch, height, width, 3]` (any
    size, one per request), resizes them to the model's input size, detects
    (`kerasvision.models.mask_rcnn.MaskRCNN.predict_instances`) and returns,
    in the pixels of the images as sent:

    - `boxes` float32 `[batch, max_detections, 4]` (x1, y1, x2, y2);
    - `scores` float32 `[batch, max_detections]`, `classes` int32 (-1 in
      unused rows), `num_detections` int32 `[batch]`;
    - `masks` uint8 `[batch, max_detections, height, width]`: each 28x28 mask
      pasted into its box at the sent resolution (`paste_masks`), 1 where its
      probability is >= `mask_threshold` (all 0 in unused rows).

    The response holds `max_detections` full-size masks per image: keep
    `max_detections` small for large images.

    Args:
        model: a `MaskRCNN` (`kerasvision.models.mask_rcnn.build_mask_rcnn`).
        export_dir: str, the model base path; a new version directory is written in it.
        score_threshold, iou_threshold, max_detections, mask_threshold: the
            detection settings, fixed at export and recorded in
            `<version>/assets/instance_segmentation.json`.
        version: int, version to write (default: next free number).

    Returns:
        str, the directory written.
    """
    from kerasvision.models.mask_rcnn import check_mask_rcnn, paste_masks

    check_mask_rcnn(model)
    size = model.image_size
    score_threshold = check_float("score_threshold", score_threshold, minimum=0.0, maximum=1.0)
    iou_threshold = check_float("iou_threshold", iou_threshold, minimum=0.0, maximum=1.0)
    max_detections = check_int("max_detections", max_detections, minimum=1)
    mask_threshold = check_float("mask_threshold", mask_threshold, minimum=0.0, maximum=1.0)

    def serve_images(images):
        images = _check_images_request(images)
        height, width = tf.shape(images)[1], tf.shape(images)[2]
        resized = tf.image.resize(tf.cast(images, tf.float32), size, method="bilinear")
        found = model.predict_instances(resized, score_threshold, iou_threshold, max_detections)
        # Back from the model's input size to the sent image's pixels.
        scale_x = tf.cast(width, tf.float32) / size[1]
        scale_y = tf.cast(height, tf.float32) / size[0]
        boxes = found["boxes"] * tf.stack([scale_x, scale_y, scale_x, scale_y])
        probabilities = paste_masks(found["mask_probabilities"], boxes, height, width)
        return {"boxes": boxes, "scores": found["scores"], "classes": found["classes"],
                "num_detections": found["num_detections"],
                "masks": tf.cast(probabilities >= mask_threshold, tf.uint8)}

    archive = keras.export.ExportArchive()
    archive.track(model)
    archive.add_endpoint(
        "serving_default", serve_images,
        input_signature=[tf.TensorSpec([None, None, None, 3], tf.uint8, name="images")])
    path = _write(archive, export_dir, version)
    os.makedirs(os.path.join(path, "assets"), exist_ok=True)
    with open(os.path.join(path, "assets", "instance_segmentation.json"), "w") as handle:
        json.dump({"score_threshold": score_threshold, "iou_threshold": iou_threshold,
                   "max_detections": max_detections, "mask_threshold": mask_threshold,
                   "box_format": "xyxy pixels of the input", "input_size": list(size)},
                  handle, indent=1)
    return path
