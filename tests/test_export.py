import os
import subprocess
import sys

import numpy as np
import pytest
import keras

from kerasvision.export import export_generator, export_image_model, load_export, next_version_dir
from kerasvision.models.fcn import build_fcn
from tests.helpers import assert_export_round_trip, run_in_fresh_process


@pytest.fixture(scope="module")
def fcn_export(tmp_path_factory):
    keras.utils.set_random_seed(0)
    model = build_fcn(3, (64, 64, 3), weights=None, fc_units=8, variant="8s")
    export_dir = str(tmp_path_factory.mktemp("exports") / "fcn")
    path = export_image_model(model, export_dir)
    images = np.random.default_rng(0).integers(0, 256, (3, 64, 64, 3), dtype=np.uint8)
    probabilities = keras.ops.softmax(model(images.astype("float32")), axis=-1).numpy()
    return model, export_dir, path, images, probabilities


def test_export_layout_and_round_trip_in_a_fresh_process(fcn_export):
    _, export_dir, path, images, probabilities = fcn_export
    assert path == os.path.join(export_dir, "1")
    assert os.path.exists(os.path.join(path, "saved_model.pb"))
    assert_export_round_trip(path, images, probabilities)


def test_next_export_gets_the_next_version(fcn_export):
    model, export_dir, _, _, _ = fcn_export
    assert next_version_dir(export_dir) == os.path.join(export_dir, "2")
    with pytest.raises(ValueError, match="already exists"):
        export_image_model(model, export_dir, version=1)


def test_serving_default_answers_at_the_input_resolution(fcn_export):
    _, _, path, images, _ = fcn_export
    loaded = load_export(path)
    larger = np.repeat(np.repeat(images[:2], 2, axis=1), 2, axis=2)
    out = loaded.signatures["serving_default"](images=larger)
    assert out["class_ids"].shape == (2, 128, 128)
    assert out["probabilities"].shape == (2, 128, 128, 3)
    np.testing.assert_allclose(out["probabilities"].numpy().sum(-1), 1.0, atol=1e-5)


def test_corrupt_bytes_fail_that_request_only(fcn_export):
    import io

    import tensorflow as tf
    from PIL import Image

    _, _, path, images, _ = fcn_export
    serve = load_export(path).signatures["serving_bytes"]
    with pytest.raises(tf.errors.InvalidArgumentError):
        serve(image_bytes=tf.constant([b"\x89PNG truncated"]))
    buffer = io.BytesIO()
    Image.fromarray(images[0][:40, :50]).save(buffer, format="JPEG")
    out = serve(image_bytes=tf.constant([buffer.getvalue()]))
    assert out["class_ids"].shape == (1, 64, 64)
    np.testing.assert_array_equal(out["image_sizes"].numpy(), [[40, 50]])


@pytest.mark.slow  # about 10 s: two saved_model_cli processes
def test_saved_model_cli_show_and_run(fcn_export, tmp_path):
    _, _, path, images, _ = fcn_export
    np.save(tmp_path / "images.npy", images[:2])
    cli = os.path.join(os.path.dirname(sys.executable), "saved_model_cli")
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"}
    shown = subprocess.run([cli, "show", "--all", "--dir", path], capture_output=True, text=True, env=env, timeout=120)
    assert shown.returncode == 0, shown.stderr[-2000:]
    for expected in ("serving_default", "serving_bytes", "images", "image_bytes", "probabilities", "class_ids"):
        assert expected in shown.stdout
    ran = subprocess.run(
        [cli, "run", "--dir", path, "--tag_set", "serve", "--signature_def", "serving_default",
         "--inputs", f"images={tmp_path / 'images.npy'}", "--outdir", str(tmp_path / "out")],
        capture_output=True, text=True, env=env, timeout=120,
    )
    assert ran.returncode == 0, ran.stderr[-2000:]
    class_ids = np.load(tmp_path / "out" / "class_ids.npy")
    probabilities = np.load(tmp_path / "out" / "probabilities.npy")
    assert class_ids.shape == (2, 64, 64)
    np.testing.assert_array_equal(class_ids, probabilities.argmax(-1))


def test_classifier_export(tmp_path):
    inputs = keras.Input((16, 16, 3))
    x = keras.layers.GlobalAveragePooling2D()(keras.layers.Rescaling(1 / 255)(inputs))
    model = keras.Model(inputs, keras.layers.Dense(4)(x))
    path = export_image_model(model, str(tmp_path / "classifier"))
    images = np.random.default_rng(1).integers(0, 256, (2, 16, 16, 3), dtype=np.uint8)
    probabilities = keras.ops.softmax(model(images.astype("float32"))).numpy()
    assert_export_round_trip(path, images, probabilities)


def test_mixed_bfloat16_export_serves_float32_probabilities(tmp_path):
    # The policy "auto" picks on CPUs with AVX512-BF16 and on Ampere+ GPUs.
    # conftest's autouse fixture restores float32 afterwards.
    keras.mixed_precision.set_global_policy("mixed_bfloat16")
    keras.utils.set_random_seed(2)
    model = build_fcn(3, (32, 32, 3), weights=None, fc_units=8, variant="8s")
    path = export_image_model(model, str(tmp_path / "fcn_bf16"))
    images = np.random.default_rng(2).integers(0, 256, (2, 32, 32, 3), dtype=np.uint8)
    probabilities = keras.ops.convert_to_numpy(
        keras.ops.softmax(keras.ops.cast(model(images.astype("float32")), "float32"), axis=-1)
    )
    # bfloat16 keeps 8 bits of mantissa; graph and eager kernels round differently.
    assert_export_round_trip(path, images, probabilities, atol=2e-2)


def test_generator_export(tmp_path):
    inputs = keras.Input((4,))
    x = keras.layers.Dense(8 * 8 * 1, activation="tanh")(inputs)
    model = keras.Model(inputs, keras.layers.Reshape((8, 8, 1))(x))
    path = export_generator(model, str(tmp_path / "generator"), latent_dim=4)
    latents = np.random.default_rng(2).normal(size=(3, 4)).astype("float32")
    expected = np.clip(np.round((model(latents).numpy() + 1) * 127.5), 0, 255).astype("uint8")
    out = run_in_fresh_process(f"""
        import numpy as np, tensorflow as tf
        loaded = tf.saved_model.load({path!r})
        latents = np.array({latents.tolist()!r}, dtype=np.float32)
        images = loaded.signatures["serving_default"](latents=latents)["images"]
        seeded = loaded.signatures["serving_seed"](seed=tf.constant([1, 2]), num_images=tf.constant(5))["images"]
        assert images.dtype == tf.uint8 and seeded.shape == (5, 8, 8, 1), seeded.shape
        print(images.numpy().ravel().tolist())
    """)
    np.testing.assert_allclose(np.array(eval(out.strip().splitlines()[-1])), expected.ravel(), atol=1)


@pytest.mark.parametrize("kwargs, match", [({"outputs": "scores"}, "outputs")])
def test_bad_arguments(tmp_path, kwargs, match):
    model = build_fcn(2, (32, 32, 3), weights=None, fc_units=4)
    with pytest.raises(ValueError, match=match):
        export_image_model(model, str(tmp_path), **kwargs)


def test_fixed_input_size_required_and_missing_export_reported(tmp_path):
    inputs = keras.Input((None, None, 3))
    model = keras.Model(inputs, keras.layers.Conv2D(2, 1)(inputs))
    with pytest.raises(ValueError, match="fixed input size"):
        export_image_model(model, str(tmp_path))
    with pytest.raises(ValueError, match="no SavedModel"):
        load_export(str(tmp_path))
