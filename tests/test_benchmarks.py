"""The speed benchmarks run with --smoke and write the JSON they promise; their shared helpers.

No test asserts a speed: the machine may be shared. Each checks that the
rows, keys and numbers are there, positive and finite. The smokes that take
more than a couple of seconds are marked slow: CI runs them (`make test-slow`),
and the default suite keeps the helpers' tests and the quick smokes.
"""

import importlib.util
import json
import math
import sys

import numpy as np
import pytest
import tensorflow as tf

from benchmarks import families, profiling, reporting, timing, input_pipeline, serving_latency, train_throughput


def load_json(path):
    with open(path) as handle:
        return json.load(handle)


def assert_positive_finite(row, keys):
    for key in keys:
        value = row[key]
        assert isinstance(value, (int, float)) and math.isfinite(value) and value > 0, (key, value)


# ---------------------------------------------------------------------------
# Shared helpers
# ---------------------------------------------------------------------------


def test_profile_flops_counts_a_matrix_product_by_hand():
    # [4, 8] @ [8, 16]: 4 * 16 outputs of 8 multiply-adds = 2 * 4 * 8 * 16 FLOPs; the
    # bias adds one FLOP per output.
    kernel, bias = tf.ones((8, 16)), tf.ones((16,))
    flops = profiling.trace_flops(lambda x: tf.nn.bias_add(tf.matmul(x, kernel), bias),
                               tf.TensorSpec((4, 8), tf.float32))
    assert flops["by_op"]["MatMul"] == 2 * 4 * 8 * 16
    assert flops["total"] == 2 * 4 * 8 * 16 + 4 * 16
    assert flops["matmul_like"] == 2 * 4 * 8 * 16
    assert flops["uncounted_calls"] == 0


def test_summaries_tables_and_strict_json(tmp_path):
    stats = timing.summarize_times([0.3, 0.1, 0.2])
    assert stats["median_s"] == pytest.approx(0.2) and stats["count"] == 3
    assert stats["min_s"] <= stats["p50_s"] <= stats["p99_s"] <= 0.3

    table = reporting.format_table([{"name": "a", "x": 1.234}, {"name": "bb", "x": None}],
                                [("name", "name", "s"), ("x", "x", ".1f")])
    lines = table.splitlines()
    assert lines[0].startswith("| name") and "1.2" in lines[2] and lines[3].endswith("- |")

    path = reporting.write_json(str(tmp_path / "out" / "a.json"),
                             {"nan": float("nan"), "n": np.float32(2.5), "t": (1, np.int64(2))})
    assert load_json(path) == {"nan": None, "n": 2.5, "t": [1, 2]}


def test_peak_memory_sees_an_allocation():
    meter = timing.PeakMemory().start()
    block = np.ones(64 * 2**20 // 8)  # 64 MiB, touched
    block += 1
    extra = meter.stop()
    del block
    assert meter.method in ("VmHWM", "sampled VmRSS")
    assert extra >= 32  # the sampled fallback may miss part of it, never all


def test_variant_names_round_trip_and_bad_ones_fail():
    variant = train_throughput.Variant.parse("bf16+spe4+xla")
    assert (variant.precision, variant.xla, variant.steps_per_execution) == (
        "mixed_bfloat16", True, 4)
    assert train_throughput.Variant.parse(variant.name) == variant
    reference = train_throughput.Variant.parse("f32+keras")
    assert reference.keras_kernels and reference.name == "float32+keras"
    for bad in ("float16", "float32+fast", "float32+spe0"):
        with pytest.raises(ValueError):
            train_throughput.Variant.parse(bad)
    with pytest.raises(SystemExit):
        train_throughput.parse_args(["--variants", "float32+turbo"])


# ---------------------------------------------------------------------------
# train_throughput.py
# ---------------------------------------------------------------------------

THROUGHPUT_KEYS = ("images_per_second", "step_ms", "first_call_s", "gflop_per_step", "gflops",
                   "pct_float32_peak", "pct_bfloat16_peak")


@pytest.mark.slow  # about 5 s on 2 cores
def test_train_throughput_smoke(tmp_path, capsys):
    output = tmp_path / "train.json"
    train_throughput.main(["--smoke", "--output", str(output)])
    printed = capsys.readouterr().out
    assert "| model" in printed and "targets (this run):" in printed

    result = load_json(output)
    assert result["benchmark"] == "train_throughput"
    for dtype in ("float32", "bfloat16"):
        assert_positive_finite(result["peaks"][dtype], ["gflops", "best_gflops"])
        # Measured before and after the rows; shares are of the higher reading.
        readings = result["peaks"][dtype]["readings_gflops"]
        assert len(readings) == 2 and result["peaks"][dtype]["gflops"] == max(readings)
    rows = result["rows"]
    assert [(r["family"], r["variant"]) for r in rows] == [
        ("cnn_classifier", "float32"), ("cnn_classifier", "mixed_bfloat16+xla+spe2+keras")]
    for row in rows:
        assert "error" not in row, row.get("error")
        assert_positive_finite(row, THROUGHPUT_KEYS)
        assert row["peak_memory_mb"] >= 0
        assert row["uncounted_function_calls"] == 0
        # Every training step multiplies matrices: convolutions and the dense head.
        assert 0 < row["gflop_per_step_matmul_like"] <= row["gflop_per_step"]
    assert rows[0]["vs_float32"] == pytest.approx(1.0)
    assert rows[1]["steps_per_execution"] == 2 and rows[1]["precision"] == "mixed_bfloat16"
    assert rows[1]["keras_kernels"] and not rows[0]["keras_kernels"]
    # The augmentation layers cannot be XLA-compiled: Keras falls back, the row says so.
    assert rows[1]["xla"] and rows[1]["xla_effective"] is False and "note" in rows[1]
    check = result["flops_checks"]["cnn_classifier"]
    assert check["ratio"] == pytest.approx(1.0, abs=0.02)
    # Forward, input gradients, weight gradients: about three forward passes.
    assert 2.5 < check["train_over_forward"] < 3.5
    assert {t["target"].split(":")[0] for t in result["targets"]} >= {
        "fcn8s_vgg16", "unet_resnet50", "dcgan", "wgan_gp", "diffusion"}


@pytest.mark.slow  # about 3 s on 2 cores
def test_train_scaling_smoke(tmp_path):
    output = tmp_path / "scaling.json"
    train_throughput.main(["--smoke", "--scaling", "--output", str(output)])
    result = load_json(output)
    assert result["benchmark"] == "train_scaling"
    rows = result["rows"]
    assert [(r["family"], r["image_size"], r["batch_size"]) for r in rows] == [
        ("cnn_classifier", 32, 1), ("cnn_classifier", 32, 2)]
    for row in rows:
        assert "error" not in row, row.get("error")
        assert_positive_finite(row, ("step_ms", "ms_per_image", "ms_per_megapixel", "gflops",
                                     "gflop_per_step"))
        assert row["mb_per_image"] >= 0
    # Estimated from the forward pass: twice the images, twice the work.
    assert rows[1]["gflop_per_step"] == pytest.approx(2 * rows[0]["gflop_per_step"])
    assert rows[0]["flops_source"] == "estimate"


def test_torch_peer_is_skipped_with_a_hint_when_torch_is_missing(capsys):
    if importlib.util.find_spec("torch") is not None:
        pytest.skip("torch is importable here: the peer would run")
    args = train_throughput.parse_args(["--smoke", "--peer", "torch",
                                        "--torch-python", sys.executable])
    assert train_throughput.run_torch_peer(args, 64, 1) == []
    assert train_throughput.TORCH_MISSING in capsys.readouterr().out


@pytest.mark.slow  # about 35 s: keras-cv's YOLOv8 graph traces slowly
def test_train_throughput_smoke_of_the_detectors(tmp_path):
    output = tmp_path / "train.json"
    train_throughput.main(["--smoke", "--families", ",".join(families.DETECTION_FAMILIES),
                           "--variants", "float32", "--output", str(output)])
    result = load_json(output)
    rows = result["rows"]
    assert [r["family"] for r in rows] == ["yolov8_detector", "yolov1_detector"]
    for row in rows:
        assert "error" not in row, row.get("error")
        assert_positive_finite(row, THROUGHPUT_KEYS)
        assert row["uncounted_function_calls"] == 0
        assert (row["image_size"], row["batch_size"]) == (64, 2)
    # kerasvision.flops cannot read keras-cv's YOLOv8: only yolov1 is cross-checked.
    assert {name for name, check in result["flops_checks"].items() if check} == {
        "yolov1_detector"}
    check = result["flops_checks"]["yolov1_detector"]
    assert check["ratio"] == pytest.approx(1.0, abs=0.02)
    assert 2.5 < check["train_over_forward"] < 3.5


def test_detection_batches_carry_each_detectors_own_targets():
    from kerasvision.models.detectors import build_detector

    model = build_detector("yolov1", families.DETECTION_CLASSES, (64, 64, 3), weights=None)
    (images, grid), specs = families.make_batch("detection", 64, 3, model=model)
    # yolov1 at 64 px: a 2x2 grid of (x, y, w, h, confidence) and 4 class scores.
    assert images.shape == (3, 64, 64, 3) and grid.shape == (3, 2, 2, 5 + 4)
    assert 0 <= images.min() and images.max() <= 255
    assert grid[..., 4].sum() >= 3  # every scene holds at least one shape
    assert [spec.shape.as_list() for spec in specs[0]] == [[3, 64, 64, 3], [3, 2, 2, 9]]
    with pytest.raises(ValueError, match="needs the model"):
        families.make_batch("detection", 64, 3)


@pytest.mark.slow
def test_train_throughput_smoke_every_family(tmp_path):
    output = tmp_path / "train.json"
    train_throughput.main(["--smoke", "--families", ",".join(families.FAMILIES),
                           "--variants", "float32", "--output", str(output)])
    rows = load_json(output)["rows"]
    assert [r["family"] for r in rows] == list(families.FAMILIES)
    for row in rows:
        assert "error" not in row, row.get("error")
        assert_positive_finite(row, THROUGHPUT_KEYS)


@pytest.mark.parametrize("mode", [[], ["--forward-only"]], ids=["training", "forward"])
def test_layer_profile_smoke_accounts_for_every_convolution(tmp_path, mode):
    from benchmarks import layer_profile

    output = tmp_path / "layers.json"
    layer_profile.main(["--smoke", "--output", str(output), *mode])
    result = load_json(output)
    names = {row["layer"] for row in result["rows"]}
    assert {"block1_conv1", "block5_conv3", "fc6", "fc7", "score_fr"} <= names
    for row in result["rows"]:
        assert_positive_finite(row, ("ms", "gflops_per_s"))
    timed, _, step = result["totals"]
    assert timed["gflop"] == pytest.approx(sum(row["gflop"] for row in result["rows"]))
    # From kerasvision.flops: the forward product, and in training both gradients too.
    fc7 = next(row for row in result["rows"] if row["layer"] == "fc7")
    height, width, units = map(int, fc7["input"].split("x"))  # a 1x1 convolution, units -> units
    products, batch = (1 if mode else 3), result["config"]["batch_size"]
    # kerasvision.flops counts the bias add as one multiply-accumulate per output.
    expected = products * 2 * batch * height * width * (units * units + units) / 1e9
    assert fc7["gflop"] == pytest.approx(expected, rel=0.01)
    assert step["ms"] > 0


@pytest.mark.parametrize("keras_kernels, precision", [
    (False, "float32"), (True, "float32"), (False, "mixed_bfloat16")],
    ids=["kerasvision", "keras", "kerasvision-bf16"])
def test_op_profile_smoke_of_a_trainer_sums_its_ops(tmp_path, keras_kernels, precision):
    import keras

    from benchmarks import op_profile

    output = tmp_path / "ops.json"
    op_profile.main(["--smoke", "--family", "dcgan", "--output", str(output), "--precision", precision]
                    + (["--keras-kernels"] if keras_kernels else []))
    assert keras.mixed_precision.global_policy().name == "float32"
    result = load_json(output)
    assert result["config"]["precision"] == precision
    categories = {row["category"]: row["ms"] for row in result["categories"]}
    assert list(categories) == list(op_profile.CATEGORIES)
    assert sum(categories.values()) == pytest.approx(result["total_op_ms"])
    assert sum(row["ms"] for row in result["op_types"]) == pytest.approx(result["total_op_ms"])
    for category in ("convolutions", "batch normalization", "optimizer update"):
        assert categories[category] > 0, category
    # Both networks' layers are found in the op scopes, with their classes.
    classes = {row["layer"]: row["class"] for row in result["layers"]}
    assert classes["discriminator_conv1"] == "Conv2D"
    assert classes["generator_up1"] == "Conv2DTranspose"
    # The baseline is built with Keras's own class (kerasvision.kernels.use_fused(False)).
    assert classes["generator_up1_bn"] == ("BatchNormalization" if keras_kernels
                                           else "FusedBatchNormalization")
    op_types = " ".join(row["op_type"] for row in result["op_types"])
    # The plain Keras baseline runs neither fused kernel.
    assert ("ResourceApplyAdam" in op_types) != keras_kernels
    assert ("FusedBatchNorm" in op_types) != keras_kernels


def test_fused_kernels_switch_is_restored_after_a_failing_benchmark():
    from kerasvision import kernels

    assert kernels.fused_enabled()
    with pytest.raises(RuntimeError):
        with profiling.fused_kernels(False):
            assert not kernels.fused_enabled()
            raise RuntimeError("a failing benchmark")
    assert kernels.fused_enabled()


@pytest.mark.slow
def test_train_scaling_smoke_of_the_segmenters(tmp_path):
    output = tmp_path / "scaling.json"
    train_throughput.main(["--smoke", "--scaling", "--families", "fcn8s_vgg16,unet_resnet50",
                           "--output", str(output)])
    rows = load_json(output)["rows"]
    assert [(r["family"], r["batch_size"]) for r in rows] == [
        ("fcn8s_vgg16", 1), ("fcn8s_vgg16", 2), ("unet_resnet50", 1), ("unet_resnet50", 2)]
    for row in rows:
        assert "error" not in row, row.get("error")
        assert_positive_finite(row, ("ms_per_image", "ms_per_megapixel", "gflops"))


# ---------------------------------------------------------------------------
# input_pipeline.py and serving_latency.py
# ---------------------------------------------------------------------------


@pytest.mark.slow  # about 9 s on 2 cores
def test_input_pipeline_smoke(tmp_path):
    output = tmp_path / "pipelines.json"
    input_pipeline.main(["--smoke", "--output", str(output)])
    result = load_json(output)
    rows = result["rows"]
    assert [(r["recipe"], r["pipeline"]) for r in rows] == [
        ("cnn_classifier", "classification"), ("unet", "segmentation"), ("dcgan", "generative")]
    for row in rows:
        assert "error" not in row, row.get("error")
        assert_positive_finite(row, ("img_s", "first_epoch_img_s", "model_img_s",
                                     "pipeline_over_model"))
        assert isinstance(row["meets_target"], bool)
    assert rows[1]["augmentation"] == "in the pipeline"
    assert rows[0]["augmentation"] == "in the model"
    assert result["targets"][0]["threshold"] == input_pipeline.TARGET_RATIO


@pytest.mark.slow  # about 15 s on 2 cores
def test_serving_latency_smoke(tmp_path):
    output = tmp_path / "serving.json"
    serving_latency.main(["--smoke", "--output", str(output),
                          "--export-dir", str(tmp_path / "export"),
                          "--detector", "yolov1",  # the faster to export; yolov8 is the default
                          "--detector-export-dir", str(tmp_path / "detector")])
    result = load_json(output)
    assert (tmp_path / "export" / "1" / "saved_model.pb").exists()
    # The detector's export is timed after FCN-8s, in its own table.
    assert (tmp_path / "detector" / "1" / "saved_model.pb").exists()
    detection = result["detection"]
    assert detection["export"]["model"] == "yolov1" and detection["export"]["image_size"] == 64
    assert detection["export"]["parameters"] > 0
    assert [row["method"] for row in detection["rows"]] == list(serving_latency.DETECTION_METHODS)
    for row in detection["rows"]:
        assert "error" not in row, row.get("error")
        assert_positive_finite(row, ("batch1_p50_ms", "batch1_p99_ms", "batch_ms",
                                     "batch_img_s", "vs_detect", "first_call_s"))
    assert detection["rows"][0]["vs_detect"] == pytest.approx(1.0)
    rows = {row["method"]: row for row in result["rows"]}
    assert set(rows) == set(serving_latency.METHODS)
    for row in rows.values():
        assert "error" not in row, row.get("error")
        assert_positive_finite(row, ("batch1_p50_ms", "batch1_p99_ms", "batch_ms",
                                     "batch_img_s", "vs_keras_call", "first_call_s"))
        assert row["batch1_p99_ms"] >= row["batch1_p50_ms"]
    assert rows["keras_call"]["vs_keras_call"] == pytest.approx(1.0)
    assert [t["met"] is not None for t in result["targets"]] == [True, True]


@pytest.mark.slow  # about 6 s on 2 cores
def test_serving_latency_times_a_mixed_bfloat16_export(tmp_path):
    import keras

    output = tmp_path / "serving.json"
    serving_latency.main(["--smoke", "--output", str(output), "--precision", "mixed_bfloat16",
                          "--methods", "keras_call,serving_default", "--detector", "none",
                          "--export-dir", str(tmp_path / "export")])
    assert keras.mixed_precision.global_policy().name == "float32"
    result = load_json(output)
    assert result["config"]["precision"] == "mixed_bfloat16"
    assert result["detection"] == {"export": None, "rows": []}
    rows = {row["method"]: row for row in result["rows"]}
    assert set(rows) == {"keras_call", "serving_default"}
    assert all("error" not in row for row in rows.values())


# ---------------------------------------------------------------------------
# generative_quality.py
# ---------------------------------------------------------------------------

QUALITY_ROWS = ["real (held-out floor)", "GMM (diag, EM)", "VAE", "DCGAN", "WGAN", "WGAN-GP",
                "DDIM (2 steps)", "DDPM (10 steps)"]


@pytest.mark.slow  # about 25 s on 2 cores
def test_generative_quality_smoke_scores_every_family_and_the_floor(tmp_path, capsys):
    from benchmarks import generative_quality

    output, cache = tmp_path / "quality.json", tmp_path / "cache"
    returned = generative_quality.main(["--smoke", "--json", str(output), "--cache-dir", str(cache)])
    printed = capsys.readouterr().out
    result = load_json(output)
    assert result["notes"] == [] and result["args"]["smoke"] is True
    rows = result["rows"]
    assert [row["model"] for row in rows] == [row["model"] for row in returned] == QUALITY_ROWS
    # The smoke extractor is trained into --cache-dir, nowhere else.
    assert sorted(path.name for path in cache.iterdir()) == [
        "shapes_classifier_s16_n64_e1_w32_seed0.keras", "shapes_features_s16_n64_e1_w32_seed0.keras"]
    for row in rows:
        assert f"| {row['model']}" in printed
        assert math.isfinite(row["fid"]) and row["fid"] >= 0, row
        assert math.isfinite(row["kid"]), row  # unbiased: may dip below zero
    floor, gmm, *neural = rows
    assert (floor["train_s"], floor["steps"], floor["sample_s"]) == (None, None, None)
    # Real images against real images must score better than any model trained
    # for two steps: otherwise the features cannot tell samples apart.
    assert all(floor["fid"] < row["fid"] for row in rows[1:])
    assert 1 <= gmm["steps"] <= 3
    for row in [gmm, *neural]:
        assert_positive_finite(row, ("train_s", "sample_s"))
    # A zero budget stops fit after the tracing step and one more.
    assert [row["steps"] for row in neural] == [2] * len(neural)
    # DDIM and DDPM sample one trained diffusion model.
    assert neural[-1]["train_s"] == neural[-2]["train_s"]


def test_generative_quality_smoke_defaults_yield_to_flags_and_leave_the_full_run_alone():
    from benchmarks import generative_quality

    smoke = generative_quality.parse_args(["--smoke", "--models", "gmm", "--image-size", "24"])
    assert (smoke.models, smoke.image_size, smoke.budget_seconds, smoke.extractor) == (
        ["gmm"], 24, 0.0, "shapes")
    full = generative_quality.parse_args([])
    assert (full.budget_seconds, full.eval_images, full.train_images, full.timesteps) == (
        60.0, 256, 4096, 1000)
    assert (full.gmm_iterations, full.extractor, full.extractor_images, full.extractor_epochs) == (
        100, "auto", None, None)
    assert not full.smoke and full.ddim_steps == [10, 20, 50, 100]


# ---------------------------------------------------------------------------
# detection_quality.py
# ---------------------------------------------------------------------------


@pytest.mark.slow  # keras-cv's YOLOv8 graph traces slowly
@pytest.mark.parametrize("models", ["yolov8,yolov1"])
def test_detection_quality_smoke_trains_scores_and_times_every_detector(tmp_path, capsys, models):
    import keras

    from benchmarks import detection_quality

    output = tmp_path / "detection.json"
    detection_quality.main(["--smoke", "--models", models, "--output", str(output)])
    assert keras.mixed_precision.global_policy().name == "float32"
    printed = capsys.readouterr().out
    result = load_json(output)
    assert result["benchmark"] == "detection_quality" and result["config"]["smoke"] is True
    assert result["environment"]["cpu"]["model"] and len(result["date"]) == 10
    expected = models.split(",")
    if "yolov8" in expected and importlib.util.find_spec("keras_cv") is None:  # yolov8's dependency: skipped with a note
        expected = ["yolov1"]
        assert any(note.startswith("yolov8: skipped") for note in result["notes"])
    rows = result["rows"]
    assert [row["model"] for row in rows] == expected
    for row in rows:
        assert "error" not in row, row.get("error_detail")
        assert f"| {row['model']}" in printed
        for key in ("map_50", "map"):
            assert math.isfinite(row[key]) and 0.0 <= row[key] <= 1.0, (key, row[key])
        assert_positive_finite(row, ("batch1_img_s", "batchN_img_s", "train_minutes",
                                     "parameters", "batch1_first_call_s"))
        # --smoke's step cap, not the budget, ends training.
        assert row["steps"] == 2 and not row["budget_expired"]
        assert row["eval_images"] == 4 and row["precision"] == "float32"
    assert result["config"]["throughput_batch"] == 2


def _has_selective_search():
    try:
        import cv2

        cv2.ximgproc.segmentation
    except (ImportError, AttributeError):
        return False
    return True


@pytest.mark.slow  # about 10 s on 2 cores
def test_detection_quality_smoke_reports_rcnns_proposal_recall_and_stage_times(tmp_path, capsys):
    from benchmarks import detection_quality

    if not _has_selective_search():  # the skip is tested below, with OpenCV hidden
        pytest.skip("OpenCV's contrib modules are missing: pip install kerasvision[rcnn]")
    output = tmp_path / "detection.json"
    detection_quality.main(["--smoke", "--models", "rcnn", "--output", str(output)])
    printed = capsys.readouterr().out
    result = load_json(output)
    (row,) = result["rows"]
    assert row["model"] == "rcnn" and "error" not in row, row.get("error_detail")
    for key in ("map_50", "map", "proposal_recall_50"):
        assert math.isfinite(row[key]) and 0.0 <= row[key] <= 1.0, (key, row[key])
    assert_positive_finite(row, (
        "proposal_seconds_per_image", "classification_seconds_per_image", "proposals_per_image",
        "batch1_img_s", "train_minutes", "training_data_minutes", "parameters", "held_out_boxes"))
    # The stage times are means over the held-out scenes, batch 1's the median scene.
    assert row["batch1_median_ms"] > 0 and row["eval_images"] == 4
    # rcnn_detect loops over a batch's scenes: no batch-N timing to report.
    assert "batchN_img_s" not in row and "batch1_first_call_s" not in row
    assert "rcnn_detect" in row["inference_note"]
    # 8 scenes x 16 crops = two steps of 64 crops: the step cap and the data agree.
    assert row["steps"] == 2 and row["crops_per_step"] == 64 and not row["budget_expired"]
    table_row = next(line for line in printed.splitlines() if line.startswith("| rcnn"))
    assert f"{row['proposal_recall_50']:.3f}" in table_row
    assert f"{row['proposal_seconds_per_image']:.4f}" in table_row


def test_detection_quality_skips_rcnn_with_the_extra_to_install_when_opencv_is_missing(
        tmp_path, monkeypatch):
    from benchmarks import detection_quality

    monkeypatch.setitem(sys.modules, "cv2", None)  # `import cv2` now raises ImportError
    output = tmp_path / "detection.json"
    detection_quality.main(["--smoke", "--models", "rcnn", "--output", str(output)])
    result = load_json(output)
    assert result["rows"] == []
    (note,) = result["notes"]
    assert note.startswith("rcnn: skipped") and "pip install kerasvision[rcnn]" in note


def test_detection_quality_smoke_defaults_yield_to_flags_and_leave_the_full_run_alone():
    from benchmarks import detection_quality

    smoke = detection_quality.parse_args(["--smoke", "--models", "yolov1", "--image-size", "96"])
    assert (smoke.models, smoke.image_size, smoke.max_steps, smoke.train_images) == (
        ["yolov1"], 96, 2, 8)
    full = detection_quality.parse_args([])
    assert (full.models, full.budget_minutes, full.image_size, full.batch_size) == (
        ["yolov8", "yolov1", "rcnn"], 5.0, 128, 16)
    assert (full.throughput_batch, full.max_steps, full.learning_rate, full.augment) == (
        32, None, 2e-3, True)
    with pytest.raises(SystemExit):
        detection_quality.parse_args(["--image-size", "100"])


# ---------------------------------------------------------------------------
# data_preview.py and torch_peer.py
# ---------------------------------------------------------------------------


def test_data_preview_smoke_writes_the_figure_and_the_class_balance(tmp_path, capsys):
    from benchmarks import data_preview
    from kerasvision.data import SHAPES_CLASS_NAMES

    output = tmp_path / "preview.png"
    summary = data_preview.main(["--smoke", "--output", str(output)])
    assert summary["path"] == str(output)
    assert output.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    shares = summary["class_shares"]
    assert list(shares) == list(SHAPES_CLASS_NAMES)
    assert sum(shares.values()) == pytest.approx(1.0) and min(shares.values()) >= 0
    assert max(shares, key=shares.get) == "background"
    # Predicting the majority class everywhere: its pixel share, averaged over
    # the classes present.
    present = sum(share > 0 for share in shares.values())
    assert summary["majority_miou"] == pytest.approx(shares["background"] / present)
    assert summary["scenes"] == 16 and summary["image_size"] == 32
    assert summary["generate_s"] > 0 and summary["timed_cpu_s"] >= 0
    assert "majority-class baseline mIoU" in capsys.readouterr().out
    # Without --output a smoke run would overwrite docs/shapes_examples.png.
    with pytest.raises(SystemExit):
        data_preview.main(["--smoke"])


def test_torch_peer_smoke(tmp_path):
    import os
    import subprocess

    # torch is not a dependency: the peer runs under any interpreter that has
    # it, as `train_throughput.py --torch-python` runs it.
    python = os.environ.get("TORCH_PYTHON", sys.executable)
    if subprocess.run([python, "-c", "import torch"], capture_output=True).returncode != 0:
        pytest.skip(f"torch is not importable by {python} (set TORCH_PYTHON to one that has it)")
    script = os.path.join(reporting.ROOT, "benchmarks", "torch_peer.py")
    output = tmp_path / "peer.json"
    done = subprocess.run([python, script, "--smoke", "--output", str(output)],
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    result = load_json(output)
    assert {"torch", "python", "threads", "encoder"} <= set(result["environment"])
    rows = result["rows"]
    assert [row["precision"] for row in rows] == ["bfloat16", "float32"]
    for row in rows:
        assert_positive_finite(row, ("step_s", "first_call_s", "flops_per_step"))
        assert len(row["step_times_s"]) == 1 and row["memory_format"] == "channels_last"
        assert f"{row['precision']} channels-last b2 32px" in done.stdout
    # Autocast changes the arithmetic's precision, not the work counted.
    assert rows[0]["flops_per_step"] == rows[1]["flops_per_step"]


# sample_quality_calibration.py
@pytest.mark.slow  # about 5 s on 2 cores
def test_sample_quality_calibration_smoke_and_its_blur_against_numpy(tmp_path, capsys):
    from benchmarks import sample_quality_calibration as calibration

    output = tmp_path / "calibration.json"
    payload = calibration.main(["--smoke", "--output", str(output), "--cache-dir",
                                str(tmp_path / "cache")])
    names = [row["images"] for row in payload["rows"]]
    assert names == ["real (test split)", "blurred, sigma 1 px", "noise, std 0.25"]
    assert all(row["fid"] >= 0 and row["count"] == 8 for row in payload["rows"])
    assert json.loads(output.read_text())["rows"][0]["images"] == names[0]
    assert "| images" in capsys.readouterr().out
    # The blur: a flat image stays flat, an impulse spreads as the normalised Gaussian.
    impulse = np.zeros((1, 15, 15, 1))
    impulse[0, 7, 7, 0] = 1.0
    blurred = calibration.gaussian_blur(impulse, 1.0)[0, :, :, 0]
    gaussian = np.exp(-0.5 * np.arange(-3, 4) ** 2)
    expected = np.outer(gaussian, gaussian) / gaussian.sum() ** 2
    np.testing.assert_allclose(blurred[4:11, 4:11], expected, rtol=1e-12)
    np.testing.assert_allclose(calibration.gaussian_blur(np.full((1, 9, 9, 3), 0.3), 0.7), 0.3)


# ---------------------------------------------------------------------------
# Every runnable script has a smoke test here
# ---------------------------------------------------------------------------

SMOKE_TESTS = {
    "amx_convolution_grid": ["test_amx_convolution_grid_smoke"],
    "classic_cnns": ["test_classic_cnns_benchmark_smoke"],
    "data_preview": ["test_data_preview_smoke_writes_the_figure_and_the_class_balance"],
    "detection_quality": [
        "test_detection_quality_smoke_trains_scores_and_times_every_detector",
        "test_detection_quality_smoke_reports_rcnns_proposal_recall_and_stage_times"],
    "generative_quality": ["test_generative_quality_smoke_scores_every_family_and_the_floor"],
    "input_pipeline": ["test_input_pipeline_smoke"],
    "layer_profile": ["test_layer_profile_smoke_accounts_for_every_convolution"],
    "op_profile": ["test_op_profile_smoke_of_a_trainer_sums_its_ops"],
    "sample_quality_calibration": [
        "test_sample_quality_calibration_smoke_and_its_blur_against_numpy"],
    "segmentation_quality": [
        "test_segmentation_quality_smoke_trains_scores_and_times_every_segmenter"],
    "serving_latency": ["test_serving_latency_smoke"],
    "torch_peer": ["test_torch_peer_smoke"],
    "train_throughput": ["test_train_throughput_smoke", "test_train_scaling_smoke"],
}


def test_every_runnable_benchmark_has_a_smoke_mode_and_a_smoke_test():
    import glob
    import os

    scripts = {}
    for path in glob.glob(os.path.join(reporting.ROOT, "benchmarks", "*.py")):
        with open(path) as handle:
            source = handle.read()
        if "\ndef main(" in source:
            scripts[os.path.basename(path)[:-3]] = source
    assert sorted(scripts) == sorted(SMOKE_TESTS), "a new benchmark script needs a smoke test"
    for name, source in scripts.items():
        # Either its own flag or the shared one from reporting.add_common_flags.
        assert '"--smoke"' in source or "add_common_flags" in source, name
        for test in SMOKE_TESTS[name]:
            assert callable(globals().get(test)), test


@pytest.mark.slow  # about 9 s on 2 cores
def test_amx_convolution_grid_smoke(tmp_path):
    from benchmarks import amx_convolution_grid

    output = tmp_path / "grid.json"
    rows = amx_convolution_grid.main(["--smoke", "--output", str(output)])
    assert [row["layer"] for row in rows] == ["conv2d", "wide_input_conv2d"]
    assert all(row["result"] == "trained" for row in rows)  # float32 never reaches AMX
    assert load_json(output)["rows"] == rows


@pytest.mark.slow  # about 20 s on 2 cores
def test_classic_cnns_benchmark_smoke(tmp_path, capsys):
    import os

    from benchmarks import classic_cnns

    output = tmp_path / "classic.json"
    classic_cnns.main(["--smoke", "--output", str(output)])
    result = load_json(output)
    assert result["benchmark"] == "classic_cnns" and result["config"]["smoke"] is True
    rows = {row["model"]: row for row in result["rows"]}
    assert set(rows) == {"lenet5", "resnet18"}
    for row in rows.values():
        assert "error" not in row, row
        assert row["steps"] >= 1 and 0.0 <= row["accuracy"] <= 1.0
        assert row["infer_img_s"] > 0 and row["gflops"] > 0 and row["first_step_s"] > 0
    assert rows["lenet5"]["train_img_s"] > 0  # several steps in its budget
    assert rows["resnet18"]["params_1000"] == 11_699_112  # parameters do not depend on the size
    assert "| model" in capsys.readouterr().out
    # Without --output nothing is written.
    before = set(os.listdir(reporting.RESULTS_DIR))
    classic_cnns.main(["--smoke", "--models", "lenet5"])
    assert set(os.listdir(reporting.RESULTS_DIR)) == before


# ---------------------------------------------------------------------------
# segmentation_quality.py
# ---------------------------------------------------------------------------


@pytest.mark.slow
@pytest.mark.parametrize("models", ["fcn32s,fcn16s,fcn8s,unet,unet_resnet50,deeplabv3plus,segnet"])
def test_segmentation_quality_smoke_trains_scores_and_times_every_segmenter(tmp_path, capsys,
                                                                           models):
    import keras

    from benchmarks import segmentation_quality

    output = tmp_path / "segmentation.json"
    segmentation_quality.main(["--smoke", "--models", models, "--precision", "float32",
                               "--output", str(output)])
    assert keras.mixed_precision.global_policy().name == "float32"
    printed = capsys.readouterr().out
    result = load_json(output)
    assert result["benchmark"] == "segmentation_quality" and result["config"]["smoke"] is True
    assert result["environment"]["cpu"]["model"] and len(result["date"]) == 10
    rows = result["rows"]
    assert [row["model"] for row in rows] == models.split(",")  # one row per segmenter
    assert "| model" in printed
    for row in rows:
        assert "error" not in row, row.get("error_detail")
        assert f"| {row['model']}" in printed
        for key in ("miou", "dice", "pixel_accuracy"):
            assert math.isfinite(row[key]) and 0.0 <= row[key] <= 1.0, (key, row[key])
        assert_positive_finite(row, ("parameters", "gflops", "latency_ms", "train_img_s",
                                     "train_minutes", "latency_first_call_s"))
        # --smoke's step cap, not the budget, ends training: one epoch, validated once.
        assert row["steps"] == 2 and row["epochs"] == 1 and not row["budget_expired"]
        assert len(row["val_miou_per_epoch"]) == 1 and 0.0 <= row["best_val_miou"] <= 1.0
        assert row["precision"] == "float32" and row["eval_images"] == 4
        assert row["image_size"] == 64 and row["batch_size"] == 4
    # Smoke-sized models stay far from the target: the verdict says no model reached it.
    assert result["fastest_to_target"] is None and "no segmenter reached" in printed
