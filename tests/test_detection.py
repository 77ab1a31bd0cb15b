"""Detectors end to end: the recipe's smoke runs, the export with NMS inside, one mirrored step.

`recipes/detect.py --smoke` trains, evaluates and exports each detector; the
export, reloaded in a fresh process, must return what the Keras model's
post-processed output (`detect`) gives, with boxes in the pixels of the image
as sent. One training step under `MirroredStrategy` over two logical CPUs
must equal the one-device step for each trainable detector. keras-cv's
YOLOv8 loss normalises by each replica's positive anchors (as multi-GPU
YOLOv8 training does), so its equality is shown on a batch whose two halves
are the same scenes.
"""

import importlib
import json

import numpy as np
import pytest
import tensorflow as tf
import keras

from kerasvision.export import export_detector
from kerasvision.models.detectors import build_detector, compile_detector, detect
from tests.helpers import run_in_fresh_process

SIZE = 64


def _summary_of_smoke_run(model, tmp_path):
    detect_recipe = importlib.import_module("recipes.detect")
    return detect_recipe.main([
        "--smoke", "--model", model, "--image-size", str(SIZE), "--precision", "float32",
        "--output-dir", str(tmp_path / "run"), "--export-dir", str(tmp_path / "export")])


@pytest.mark.parametrize("model", [pytest.param("yolov8", marks=pytest.mark.slow), "yolov1"])
def test_recipe_smoke_trains_reports_plots_and_exports(model, tmp_path):
    summary = _summary_of_smoke_run(model, tmp_path)
    for key in ("map", "map_50", "map_75"):
        assert 0.0 <= summary[key] <= 1.0
    assert set(summary["per_class_ap_50"]) <= {"disk", "square", "triangle", "cross"}
    for name in ("detections.png", "pr_curve.png", "history.png", "best.weights.h5",
                 "history.csv", "summary.json"):
        assert (tmp_path / "run" / name).exists(), name
    assert summary["export_path"] == str(tmp_path / "export" / "1")
    settings = json.loads((tmp_path / "export" / "1" / "assets" / "detection.json").read_text())
    assert settings["max_detections"] == 100 and settings["input_size"] == [SIZE, SIZE]


EXPORT_CHECK = """
    import json, sys
    import numpy as np, tensorflow as tf
    loaded = tf.saved_model.load(sys.argv[1])
    images = np.load(sys.argv[2])
    result = {}
    for name, signature in (("default", loaded.signatures["serving_default"]),):
        outputs = signature(images=tf.constant(images))
        result[name] = {key: value.numpy().tolist() for key, value in outputs.items()}
    import io
    from PIL import Image
    encoded = []
    for image in images:
        buffer = io.BytesIO()
        Image.fromarray(image).save(buffer, format="PNG")
        encoded.append(buffer.getvalue())
    outputs = loaded.signatures["serving_bytes"](image_bytes=tf.constant(encoded))
    result["bytes"] = {key: value.numpy().tolist() for key, value in outputs.items()}
    print("RESULT " + json.dumps(result))
"""


@pytest.mark.parametrize("family", [pytest.param("yolov8", marks=pytest.mark.slow), "yolov1"])
def test_export_answers_like_the_model_in_the_senders_pixels(family, tmp_path):
    keras.utils.set_random_seed(0)
    kwargs = ({"stackwise_channels": (8, 8, 16, 16)} if family == "yolov8"
              else {"scratch_filters": (4, 4, 8, 8, 8), "head_filters": 8})
    model = build_detector(family, 4, (SIZE, SIZE, 3), weights=None, **kwargs)
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, (2, SIZE, SIZE, 3), dtype=np.uint8)
    # A low threshold so that random weights still give detections to compare.
    expected = {key: value.numpy() for key, value in
                detect(model, images.astype("float32"), 0.01, 0.5, 20).items()}
    path = export_detector(model, str(tmp_path / "export"), score_threshold=0.01,
                           iou_threshold=0.5, max_detections=20)
    np.save(tmp_path / "images.npy", images)
    code = EXPORT_CHECK.replace("sys.argv[1]", repr(path)).replace(
        "sys.argv[2]", repr(str(tmp_path / "images.npy")))
    line = next(line for line in run_in_fresh_process(code).splitlines()
                if line.startswith("RESULT "))
    served = json.loads(line[len("RESULT "):])
    assert expected["num_detections"].max() > 0
    for signature in ("default", "bytes"):
        outputs = {key: np.array(value) for key, value in served[signature].items()}
        assert outputs["boxes"].shape == (2, 20, 4) and outputs["classes"].dtype.kind == "i"
        np.testing.assert_array_equal(outputs["num_detections"], expected["num_detections"])
        np.testing.assert_array_equal(outputs["classes"], expected["classes"])
        np.testing.assert_allclose(outputs["scores"], expected["scores"], atol=1e-5)
        np.testing.assert_allclose(outputs["boxes"], expected["boxes"], atol=1e-3)


def test_export_scales_boxes_back_to_a_larger_image(tmp_path):
    keras.utils.set_random_seed(0)
    model = build_detector("yolov1", 2, (SIZE, SIZE, 3), scratch_filters=(4, 4, 8, 8, 8),
                           head_filters=8)
    path = export_detector(model, str(tmp_path / "export"), score_threshold=0.0,
                           max_detections=5)
    serve = tf.saved_model.load(path).signatures["serving_default"]
    small = np.random.default_rng(1).integers(0, 256, (1, SIZE, SIZE, 3), dtype=np.uint8)
    large = np.repeat(np.repeat(small, 2, axis=1), 3, axis=2)  # 2x taller, 3x wider
    at_size = serve(images=tf.constant(small))["boxes"].numpy()
    scaled = serve(images=tf.constant(large))["boxes"].numpy()
    np.testing.assert_allclose(scaled[..., [0, 2]], 3 * at_size[..., [0, 2]], rtol=0.05, atol=1.5)
    np.testing.assert_allclose(scaled[..., [1, 3]], 2 * at_size[..., [1, 3]], rtol=0.05, atol=1.5)


MIRRORED_CODE = """
    import json, traceback
    import numpy as np, tensorflow as tf
    cpu = tf.config.list_physical_devices("CPU")[0]
    tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * 2)
    import keras
    from kerasvision.data.shapes import make_shapes_detection
    from kerasvision.models.detectors import build_detector, detector_targets

    images, boxes, labels, _ = make_shapes_detection(2, image_size=64, seed=0)
    # Each replica gets the same two scenes: keras-cv's YOLOv8 loss divides by the
    # positive anchors of its replica's batch, not of the global batch, so only
    # equal halves make the mirrored step comparable with the single-device one.
    order = [0, 1, 0, 1]
    batch = {"images": images[order].astype("float32"),
             "bounding_boxes": {"boxes": boxes[order], "labels": labels[order]}}

    def make(family):
        kwargs = ({"stackwise_channels": (8, 8, 16, 16)} if family == "yolov8"
                  else {"scratch_filters": (4, 4, 8, 8, 8), "head_filters": 8, "batch_norm": False})
        model = build_detector(family, 4, (64, 64, 3), **kwargs)
        for layer in model._flatten_layers():
            # Per-replica batch statistics differ from the global batch's by design.
            if isinstance(layer, keras.layers.BatchNormalization):
                layer.trainable = False
        # SGD: the update is linear in the gradient (Adam's first step would hide a scale error).
        if family == "yolov8":
            model.compile(optimizer=keras.optimizers.SGD(0.01), classification_loss="binary_crossentropy",
                          box_loss="ciou", jit_compile=False)
        else:
            from kerasvision.models.yolo import YoloV1Loss
            model.compile(keras.optimizers.SGD(0.01), YoloV1Loss(2, 2, 4), jit_compile=False)
        return model

    def one_step(family, strategy):
        keras.utils.set_random_seed(0)
        with strategy.scope():
            model = make(family)
        data = tf.data.Dataset.from_tensors(batch).map(detector_targets(model))
        before = [v.numpy() for v in model.trainable_variables]
        logs = model.fit(data, epochs=1, verbose=0).history
        updates = [v.numpy() - b for v, b in zip(model.trainable_variables, before)]
        names = [v.path for v, u in zip(model.trainable_variables, updates) if not np.any(u)]
        return updates, {key: float(values[-1]) for key, values in logs.items()}, names

    mirrored = tf.distribute.MirroredStrategy(["/cpu:0", "/cpu:1"])
    results = {}
    for family in ("yolov1", "yolov8"):
        try:
            single, single_logs, untrained = one_step(family, tf.distribute.get_strategy())
            distributed, distributed_logs, _ = one_step(family, mirrored)
            worst = max(float(np.max(np.abs(d - s) / (1e-6 + 1e-4 * np.abs(s))))
                        for d, s in zip(distributed, single))
            results[family] = {"worst_ratio": worst, "single_logs": single_logs,
                               "distributed_logs": distributed_logs,
                               "untrained": untrained, "variables": len(single)}
        except Exception:
            results[family] = {"error": traceback.format_exc()[-3000:]}
    print("RESULTS " + json.dumps(results))
"""


@pytest.fixture(scope="module")
def mirrored_results():
    output = run_in_fresh_process(MIRRORED_CODE, timeout=600)
    line = next(line for line in output.splitlines() if line.startswith("RESULTS "))
    return json.loads(line[len("RESULTS "):])


@pytest.mark.slow  # a fresh process building both detectors twice: about 40 s
@pytest.mark.parametrize("family", ["yolov1", "yolov8"])
def test_mirrored_step_matches_single_device(mirrored_results, family):
    result = mirrored_results[family]
    assert "error" not in result, result.get("error")
    if family == "yolov1":
        assert result["untrained"] == []
    else:
        # YOLOv8's task-aligned assigner gives these small scenes' objects to the
        # stride-8 anchors only, so the coarser levels' heads (and the pyramid's
        # path to stride 32) get next to no gradient in one step.
        assert all(name.startswith(("yolo_v8_head_2", "yolo_v8_head_3",
                                    "pa_fpn_p3p4p5_downsample2")) for name in result["untrained"])
        assert len(result["untrained"]) < 0.2 * result["variables"]
    assert result["worst_ratio"] <= 1.0, result
    # keras-cv's per-term trackers (box_loss, class_loss) sum over replicas; the loss is right.
    np.testing.assert_allclose(result["distributed_logs"]["loss"], result["single_logs"]["loss"],
                               rtol=1e-4)


@pytest.mark.parametrize(
    "call, match",
    [
        (lambda: build_detector("yolov5", 4, (64, 64, 3)),
         r"`model` must be one of \['rcnn', 'yolov1', 'yolov8'\]; received model='yolov5'"),
        (lambda: build_detector("yolov8", 4, (64, 64, 3), backbone="vgg16"),
         r"`backbone` applies to yolov1 only.*received backbone='vgg16'"),
        (lambda: build_detector("yolov8", 4, (60, 60, 3)), r"multiples of the network stride 32"),
        (lambda: export_detector(build_detector("yolov1", 2, (64, 64, 3)), "unused",
                                 score_threshold=1.5),
         r"`score_threshold` must be <= 1.0; received score_threshold=1.5"),
        (lambda: compile_detector(build_detector("yolov1", 2, (64, 64, 3)), 0.0),
         r"`learning_rate` must be > 0.0; received learning_rate=0.0"),
    ],
)
def test_bad_arguments(call, match):
    with pytest.raises(ValueError, match=match):
        call()
