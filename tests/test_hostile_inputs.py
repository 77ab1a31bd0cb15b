"""Hostile bytes: images that declare huge sizes, and random or mutated image and weights files.

An export behind TF Serving decodes whatever it is sent, and a loader reads
whatever a folder holds. Headers are read before any pixel is decoded, so an
image declaring more than the pixel limit is refused undecoded; every other
malformed input fails with a clear error and leaves the process serving.
"""

import io
import struct
import zlib

import numpy as np
import pytest
import tensorflow as tf
import keras
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from PIL import Image

from kerasvision.data.loaders import load_image_folder, load_segmentation_folder
from kerasvision.export import _declared_pixels, export_image_model
from kerasvision.models.classifier import build_cnn_classifier
from kerasvision.training import load_model_weights, save_model_weights

LIMIT = 64 * 64  # the test export's max_image_pixels


def _encode(image, image_format, **options):
    buffer = io.BytesIO()
    Image.fromarray(image).save(buffer, format=image_format, **options)
    return buffer.getvalue()


def _image(height, width, channels=3, seed=0):
    return np.random.default_rng(seed).integers(0, 256, (height, width, channels), dtype=np.uint8)


ENCODINGS = {
    "PNG": lambda image: _encode(image, "PNG"),
    "JPEG": lambda image: _encode(image, "JPEG"),
    "GIF": lambda image: _encode(image, "GIF"),
    "BMP": lambda image: _encode(image, "BMP"),
    "WEBP lossy": lambda image: _encode(image, "WEBP", quality=80),
    "WEBP lossless": lambda image: _encode(image, "WEBP", lossless=True),
    "WEBP extended": lambda image: _encode(image, "WEBP", exif=b"Exif\0\0"),
}


@pytest.mark.parametrize("image_format", sorted(ENCODINGS))
def test_declared_pixels_equal_what_pil_reads_from_the_header(image_format):
    sizes = [(17, 40), (64, 3), (301, 299)]
    encoded = [ENCODINGS[image_format](_image(h, w, seed=h)) for h, w in sizes]
    expected = []
    for data in encoded:
        with Image.open(io.BytesIO(data)) as image:
            expected.append(image.size[0] * image.size[1])
    assert expected == [h * w for h, w in sizes]
    np.testing.assert_array_equal(_declared_pixels(tf.constant(encoded)).numpy(), expected)


def _declaring(image_format, height, width):
    """A small valid file of `image_format` whose header is rewritten to declare height x width."""
    data = bytearray(ENCODINGS[image_format](_image(8, 8)))
    if image_format == "PNG":
        data[16:24] = struct.pack(">II", width, height)
        data[29:33] = struct.pack(">I", zlib.crc32(bytes(data[12:29])))  # IHDR's CRC
    elif image_format == "JPEG":
        frame = data.index(b"\xff\xc0")
        data[frame + 5:frame + 9] = struct.pack(">HH", height, width)
    elif image_format == "GIF":
        data[6:10] = struct.pack("<HH", width, height)
    elif image_format == "BMP":
        data[18:26] = struct.pack("<ii", width, height)
    elif image_format == "WEBP lossy":
        data[26:30] = struct.pack("<HH", width, height)
    else:
        raise ValueError(image_format)
    return bytes(data)


@pytest.fixture(scope="module")
def serve_bytes(tmp_path_factory):
    keras.utils.set_random_seed(0)
    model = build_cnn_classifier(3, (32, 32, 3), filters=(4,), dense_units=())
    path = export_image_model(model, str(tmp_path_factory.mktemp("export")),
                              max_image_pixels=LIMIT)
    return tf.saved_model.load(path).signatures["serving_bytes"]


BOMBS = ["PNG", "JPEG", "GIF", "BMP", "WEBP lossy"]


@pytest.mark.parametrize("image_format", BOMBS)
def test_an_image_declaring_too_many_pixels_is_refused_and_the_next_request_succeeds(
        serve_bytes, image_format):
    good = ENCODINGS["PNG"](_image(40, 50))
    # 16383 x 16383 fits every format's fields (WebP's 14 bits); 268 megapixels.
    bomb = _declaring(image_format, 16383, 16383)
    with pytest.raises(tf.errors.InvalidArgumentError,
                       match=rf"max_image_pixels={LIMIT}.*\[1\].*\[268402689\]"):
        serve_bytes(image_bytes=tf.constant([good, bomb]))
    # Just above the limit is refused too; at the limit is served.
    with pytest.raises(tf.errors.InvalidArgumentError, match="max_image_pixels"):
        serve_bytes(image_bytes=tf.constant([_declaring(image_format, 64, 65)]))
    outputs = serve_bytes(image_bytes=tf.constant([good, ENCODINGS["PNG"](_image(64, 64))]))
    assert outputs["probabilities"].shape == (2, 3)
    np.testing.assert_array_equal(outputs["image_sizes"].numpy(), [[40, 50], [64, 64]])


def test_folder_loaders_refuse_images_over_the_limit_naming_the_file(tmp_path):
    for class_name in ("a", "b"):
        (tmp_path / "classes" / class_name).mkdir(parents=True)
        Image.fromarray(_image(8, 8)).save(tmp_path / "classes" / class_name / "small.png")
    large = tmp_path / "classes" / "b" / "large.png"
    Image.fromarray(_image(20, 10)).save(large)
    with pytest.raises(ValueError, match=r"max_pixels=199.*large\.png.*10 x 20 = 200"):
        load_image_folder(str(tmp_path / "classes"), 8, max_pixels=199)
    _, class_names = load_image_folder(str(tmp_path / "classes"), 8, max_pixels=200)
    assert class_names == ("a", "b")

    (tmp_path / "images").mkdir()
    (tmp_path / "masks").mkdir()
    large.rename(tmp_path / "images" / "x.png")
    Image.fromarray(np.zeros((20, 10), np.uint8)).save(tmp_path / "masks" / "x.png")
    with pytest.raises(ValueError, match=r"`images_dir`.*max_pixels=100.*x\.png"):
        load_segmentation_folder(str(tmp_path / "images"), str(tmp_path / "masks"),
                                 max_pixels=100)


def test_a_folder_image_declaring_billions_of_pixels_is_refused_without_decoding(tmp_path):
    for class_name in ("a", "b"):
        (tmp_path / class_name).mkdir()
        Image.fromarray(_image(8, 8)).save(tmp_path / class_name / "small.png")
    (tmp_path / "b" / "bomb.png").write_bytes(_declaring("PNG", 60000, 60000))
    with pytest.raises(ValueError, match=r"bomb\.png.*not decoded"):
        load_image_folder(str(tmp_path), 8)


# ----------------------------------------------------------------------------
# Fuzzing: random and mutated bytes
# ----------------------------------------------------------------------------

SEEDS = [ENCODINGS[name](_image(h, w, seed=h)) for name, (h, w) in
         [("PNG", (32, 40)), ("JPEG", (48, 48)), ("GIF", (20, 30)), ("BMP", (16, 16)),
          ("WEBP lossy", (24, 24))]]


@st.composite
def hostile_bytes(draw):
    """Random bytes, or a valid image with bytes flipped, cut, inserted or a header field set."""
    kind = draw(st.sampled_from(["random", "flip", "truncate", "insert", "header"]))
    if kind == "random":
        return draw(st.binary(min_size=0, max_size=256))
    data = bytearray(draw(st.sampled_from(SEEDS)))
    if kind == "flip":
        for _ in range(draw(st.integers(1, 8))):
            data[draw(st.integers(0, len(data) - 1))] = draw(st.integers(0, 255))
    elif kind == "truncate":
        data = data[:draw(st.integers(0, len(data) - 1))]
    elif kind == "insert":
        position = draw(st.integers(0, len(data)))
        data[position:position] = draw(st.binary(min_size=1, max_size=32))
    else:  # the bytes where PNG, GIF, BMP and WebP headers keep their sizes
        position = draw(st.integers(6, 30))
        data[position:position + 4] = draw(st.binary(min_size=4, max_size=4))
    return bytes(data)


@settings(max_examples=150, deadline=None, derandomize=True,
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(encoded=hostile_bytes())
def test_fuzzed_image_bytes_are_served_or_refused_clearly(serve_bytes, encoded):
    try:
        outputs = serve_bytes(image_bytes=tf.constant([encoded]))
    except tf.errors.InvalidArgumentError as error:
        assert "image_bytes" in error.message or "decode" in error.message.lower() or (
            "JPEG" in error.message or "PNG" in error.message or "GIF" in error.message
            or "BMP" in error.message or "WebP" in error.message), error.message
    else:
        assert outputs["probabilities"].shape == (1, 3)
        assert np.all(np.isfinite(outputs["probabilities"].numpy()))


@pytest.fixture(scope="module")
def weights_file(tmp_path_factory):
    model = build_cnn_classifier(3, (32, 32, 3), filters=(4,), dense_units=())
    path = str(tmp_path_factory.mktemp("weights") / "model.weights.h5")
    save_model_weights(model, path)
    with open(path, "rb") as handle:
        return model, handle.read()


@settings(max_examples=60, deadline=None, derandomize=True,
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(data=st.data())
def test_fuzzed_weights_files_load_or_fail_with_a_value_error_naming_them(
        weights_file, tmp_path_factory, data):
    model, original = weights_file
    mutated = bytearray(original)
    kind = data.draw(st.sampled_from(["flip", "truncate", "random"]))
    if kind == "flip":
        for _ in range(data.draw(st.integers(1, 16))):
            mutated[data.draw(st.integers(0, len(mutated) - 1))] = data.draw(st.integers(0, 255))
    elif kind == "truncate":
        mutated = mutated[:data.draw(st.integers(0, len(mutated) - 1))]
    else:
        mutated = bytearray(data.draw(st.binary(max_size=2048)))
    path = str(tmp_path_factory.mktemp("fuzz") / "mutated.weights.h5")
    with open(path, "wb") as handle:
        handle.write(bytes(mutated))
    try:
        load_model_weights(model, path)
    except ValueError as error:
        assert path in str(error)
