"""The exported signatures under concurrent load, and corrupt requests to `serving_bytes`.

One tiny segmenter is exported and reloaded once. Concurrent requests from 8
threads must each get exactly the answer the same request gets alone; a
corrupt or truncated image must fail its own request with a message saying
the image could not be decoded, and leave the next requests unaffected.
"""

import io
import threading

import numpy as np
import pytest
import tensorflow as tf
import keras
from PIL import Image

from kerasvision.export import export_image_model
from kerasvision.models.unet import build_unet

NUM_THREADS = 8
NUM_REQUESTS = 200
MODEL_SIZE = 32
DECODE_ERROR = r"`image_bytes` must hold complete JPEG, PNG.*could not be decoded as images"


@pytest.fixture(scope="module")
def served(tmp_path_factory):
    """`(model, serving_default, serving_bytes)` of a reloaded 32x32 three-class U-Net export."""
    keras.utils.set_random_seed(0)
    model = build_unet(3, (MODEL_SIZE, MODEL_SIZE, 3), depth=1, filters=2, batch_norm=False)
    path = export_image_model(model, str(tmp_path_factory.mktemp("export") / "unet"))
    loaded = tf.saved_model.load(path)
    return model, loaded.signatures["serving_default"], loaded.signatures["serving_bytes"]


def _encode(image, image_format):
    buffer = io.BytesIO()
    Image.fromarray(image).save(buffer, format=image_format)
    return buffer.getvalue()


def _random_image(rng, height, width):
    return rng.integers(0, 256, (height, width, 3), dtype=np.uint8)


def _make_requests(seed=0):
    """`NUM_REQUESTS` requests `(signature, inputs)` alternating between the two signatures.

    `serving_default` batches share one random size in [32, 64]; each
    `serving_bytes` batch mixes sizes and PNG/JPEG encodings. Batch sizes
    cycle through 1..16 so every size is sent to both signatures.
    """
    rng = np.random.default_rng(seed)
    requests = []
    for index in range(NUM_REQUESTS):
        batch = index % 16 + 1
        if index % 2 == 0:
            height, width = rng.integers(32, 65, 2)
            images = np.stack([_random_image(rng, height, width) for _ in range(batch)])
            requests.append(("images", images))
        else:
            encoded = [
                _encode(_random_image(rng, *rng.integers(32, 65, 2)), ("PNG", "JPEG")[k % 2])
                for k in range(batch)
            ]
            requests.append(("image_bytes", np.array(encoded, dtype=object)))
    return requests


def _call(served, request):
    """Sends one request; returns its outputs as numpy arrays."""
    _, serve_images, serve_bytes = served
    name, inputs = request
    signature = serve_images if name == "images" else serve_bytes
    outputs = signature(**{name: tf.constant(inputs)})
    return {key: value.numpy() for key, value in outputs.items()}


def _run_in_threads(work, num_items):
    """Runs `work(index)` for every index from `NUM_THREADS` threads started together.

    Returns:
        `(results, errors)`: lists indexed like the items; each item has a
        result or the exception it raised.
    """
    results, errors = [None] * num_items, [None] * num_items
    start = threading.Barrier(NUM_THREADS)

    def worker(thread_index):
        start.wait()  # every thread sends its first request at the same moment
        for index in range(thread_index, num_items, NUM_THREADS):
            try:
                results[index] = work(index)
            except Exception as error:  # recorded, compared by the test
                errors[index] = error

    threads = [threading.Thread(target=worker, args=(k,)) for k in range(NUM_THREADS)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)
    assert not any(thread.is_alive() for thread in threads), "a serving thread hung"
    return results, errors


def _assert_same_response(response, expected, where):
    assert response.keys() == expected.keys(), where
    np.testing.assert_array_equal(response["class_ids"], expected["class_ids"], err_msg=where)
    # Bit-identical in practice; the tolerance only allows for a different
    # summation order between CPU threads, far below any mix-up of requests.
    np.testing.assert_allclose(response["probabilities"], expected["probabilities"], atol=1e-6,
                               err_msg=where)
    if "image_sizes" in expected:
        np.testing.assert_array_equal(response["image_sizes"], expected["image_sizes"],
                                      err_msg=where)


def test_concurrent_requests_get_the_sequential_answers(served):
    requests = _make_requests()
    sequential = [_call(served, request) for request in requests]
    for (name, inputs), answer in zip(requests, sequential):
        batch = len(inputs)
        assert answer["class_ids"].shape[0] == batch
        if name == "images":  # per pixel at the request's own resolution
            assert answer["probabilities"].shape == (*inputs.shape[:3], 3)
        else:  # at the model's resolution, with each original size reported
            assert answer["probabilities"].shape == (batch, MODEL_SIZE, MODEL_SIZE, 3)

    results, errors = _run_in_threads(lambda index: _call(served, requests[index]), len(requests))

    assert [error for error in errors if error is not None] == []
    for index, (response, expected) in enumerate(zip(results, sequential)):
        _assert_same_response(response, expected, f"request {index} ({requests[index][0]})")


def _png(image):
    return _encode(image, "PNG")


def _expected_probabilities(model, image):
    # A 32x32 request is not resized, so the signature's answer is the model's own.
    logits = model(image[None].astype("float32"), training=False)
    return keras.ops.convert_to_numpy(keras.ops.softmax(logits, axis=-1))


@pytest.mark.parametrize(
    "corrupt",
    [
        pytest.param(lambda png, jpeg: [png[: len(png) // 2]], id="truncated-png"),
        pytest.param(lambda png, jpeg: [jpeg[: len(jpeg) // 2]], id="truncated-jpeg"),
        pytest.param(lambda png, jpeg: [b"not an image at all"], id="garbage"),
        pytest.param(lambda png, jpeg: [b""], id="empty-string"),
        pytest.param(lambda png, jpeg: [png, png[:-20]], id="one-bad-entry-in-a-batch"),
    ],
)
def test_a_corrupt_request_fails_clearly_and_the_next_one_succeeds(served, corrupt):
    model, _, serve_bytes = served
    image = _random_image(np.random.default_rng(1), MODEL_SIZE, MODEL_SIZE)
    png, jpeg = _png(image), _encode(image, "JPEG")
    bad = corrupt(png, jpeg)

    with pytest.raises(tf.errors.InvalidArgumentError, match=DECODE_ERROR) as failure:
        serve_bytes(image_bytes=tf.constant(bad))
    # The message lists the entries at fault: the last one of the batch.
    assert f"] [{len(bad) - 1}]" in str(failure.value)

    answer = serve_bytes(image_bytes=tf.constant([png]))
    np.testing.assert_allclose(answer["probabilities"].numpy(),
                               _expected_probabilities(model, image), atol=1e-5)
    np.testing.assert_array_equal(answer["image_sizes"].numpy(), [[MODEL_SIZE, MODEL_SIZE]])


def test_corrupt_requests_among_concurrent_valid_ones_fail_alone(served):
    model, _, serve_bytes = served
    rng = np.random.default_rng(2)
    images = [_random_image(rng, MODEL_SIZE, MODEL_SIZE) for _ in range(4 * NUM_THREADS)]
    expected = [_expected_probabilities(model, image) for image in images]
    pngs = [_png(image) for image in images]

    def work(index):
        if index % 2:  # every other request is a truncated file
            serve_bytes(image_bytes=tf.constant([pngs[index][:-30]]))
            raise AssertionError(f"corrupt request {index} succeeded")
        return serve_bytes(image_bytes=tf.constant([pngs[index]]))["probabilities"].numpy()

    results, errors = _run_in_threads(work, len(images))

    for index in range(len(images)):
        if index % 2:
            assert isinstance(errors[index], tf.errors.InvalidArgumentError), errors[index]
            assert "could not be decoded" in str(errors[index])
        else:
            assert errors[index] is None, errors[index]
            np.testing.assert_allclose(results[index], expected[index], atol=1e-5)
