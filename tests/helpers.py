"""Round-trip checks every model family reuses: config, `.keras` file, SavedModel export."""

import os
import subprocess
import sys
import tempfile
import textwrap

import numpy as np
import keras


def assert_config_round_trip(obj):
    """Serializes a layer, loss, metric or model to its config and back; returns the copy."""
    config = keras.saving.serialize_keras_object(obj)
    restored = keras.saving.deserialize_keras_object(config)
    assert type(restored) is type(obj)
    assert keras.saving.serialize_keras_object(restored) == config
    return restored


def assert_keras_file_round_trip(model, inputs, path, atol=1e-5):
    """Saves `model` to a `.keras` file, reloads it (safe mode) and compares outputs."""
    path = os.fspath(path)
    model.save(path)
    restored = keras.saving.load_model(path, safe_mode=True)
    assert type(restored) is type(model)
    np.testing.assert_allclose(
        keras.ops.convert_to_numpy(restored(inputs, training=False)),
        keras.ops.convert_to_numpy(model(inputs, training=False)),
        atol=atol,
    )
    return restored


def run_in_fresh_process(code, timeout=120):
    """Runs Python `code` in a new interpreter (no state shared with the test); returns stdout."""
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"}
    result = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code)],
        capture_output=True,
        text=True,
        timeout=timeout,
        env=env,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    return result.stdout


def assert_export_round_trip(export_path, images, expected_probabilities, atol=1e-4):
    """Reloads an image-model export in a fresh process and checks both signatures.

    Args:
        export_path: `<export_dir>/<version>` written by `export_image_model`.
        images: uint8 `[batch, H, W, 3]` at the model's input size.
        expected_probabilities: float `[batch, ...]` from the Keras model.
        atol: float, the tolerance of every comparison (looser under bfloat16).
    """
    work_dir = tempfile.mkdtemp()
    images_path = os.path.join(work_dir, "images.npy")
    probabilities_path = os.path.join(work_dir, "probabilities.npy")
    np.save(images_path, images)
    code = f"""
        import io, numpy as np, tensorflow as tf
        from PIL import Image
        loaded = tf.saved_model.load({export_path!r})
        assert set(loaded.signatures) >= {{"serving_default", "serving_bytes"}}, list(loaded.signatures)
        images = np.load({images_path!r})
        out = loaded.signatures["serving_default"](images=tf.constant(images))
        np.save({probabilities_path!r}, out["probabilities"].numpy())
        assert out["class_ids"].dtype == tf.int32 and out["probabilities"].dtype == tf.float32
        np.testing.assert_array_equal(out["class_ids"].numpy(), out["probabilities"].numpy().argmax(-1))
        single = loaded.signatures["serving_default"](images=tf.constant(images[:1]))
        np.testing.assert_allclose(single["probabilities"].numpy(), out["probabilities"].numpy()[:1], atol={atol})
        encoded = []
        for image in images:
            buffer = io.BytesIO(); Image.fromarray(image).save(buffer, format="PNG")
            encoded.append(buffer.getvalue())
        from_bytes = loaded.signatures["serving_bytes"](image_bytes=tf.constant(encoded))
        np.testing.assert_allclose(from_bytes["probabilities"].numpy(), out["probabilities"].numpy(), atol={atol})
        print("ok")
    """
    assert run_in_fresh_process(code).strip().endswith("ok")
    probabilities = np.load(probabilities_path)
    np.testing.assert_allclose(probabilities, expected_probabilities, atol=atol)
