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
"""

import os
import re

import tensorflow as tf
import keras

from kerasvision.validation import check_choice

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
        path = os.path.join(export_dir, str(version))
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


def _decode_images(image_bytes, size):
    """Decodes a batch of encoded images to float32 `[batch, *size, 3]` and their sizes."""

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


def export_image_model(model, export_dir, outputs="logits", version=None):
    """Exports a classifier or segmenter as a versioned SavedModel for TF Serving.

    Args:
        model: a `keras.Model` taking raw RGB images `[batch, H, W, 3]` in
            [0, 255] (fixed H, W) and returning `[batch, num_classes]` (classifier)
            or `[batch, H, W, num_classes]` (segmenter).
        export_dir: str, the model base path; the export goes to a new integer
            version directory inside it.
        outputs: "logits" or "probabilities": what the model returns.
        version: int, version to write (default: next free number).

    Returns:
        str, the directory written (`<export_dir>/<version>`).
    """
    check_choice("outputs", outputs, OUTPUT_KINDS)
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
        input_size = tf.shape(images)[1:3]
        resized = tf.image.resize(tf.cast(images, tf.float32), size, method="bilinear")
        return to_outputs(model(resized, training=False), input_size)

    def serve_bytes(image_bytes):
        images, image_sizes = _decode_images(image_bytes, size)
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

    def to_uint8(images):
        images = (tf.cast(images, tf.float32) + 1.0) * 127.5
        return tf.cast(tf.clip_by_value(tf.round(images), 0.0, 255.0), tf.uint8)

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
            f"`path` holds no SavedModel (no saved_model.pb): path={path!r}. Pass a "
            "version directory such as saved_models/<name>/1."
        )
    loaded = tf.saved_model.load(path)
    if "serving_default" not in loaded.signatures:
        raise ValueError(
            f"SavedModel at {path!r} has no 'serving_default' signature; it has "
            f"{sorted(loaded.signatures)}."
        )
    return loaded


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
