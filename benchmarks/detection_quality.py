"""Detection quality of every detector at one training budget: COCO mAP, speed and size.

Trains each detector of `kerasvision.models.detectors.DETECTORS` (yolov8,
keras-cv's anchor-free detector; yolov1 on its from-scratch encoder; rcnn,
the two-stage R-CNN of Girshick et al. 2014 on its from-scratch CNN) the way
`recipes/detect.py` does: the embedded shapes scenes (128x128, one to four
shapes, 4 classes; no download), the box-aware augmentation, Adam at a peak
learning rate of 2e-3 with the recipe's `WarmupCosineToBudget` schedule
(warm-up, then cosine decay to the end of the wall-clock budget) and the
same wall-clock budget for every model (`--budget-minutes`, counted from
the start of `fit`, tracing included, as the recipe counts it), in the
recipe's precision (`--precision auto`: mixed_bfloat16 where the CPU has
native bfloat16, else float32; the row records which).

rcnn trains on proposal crops, not scenes, as the recipe trains it: before
`fit`, selective search runs over every (augmented) training scene and 16
crops are sampled from each; its steps see 64 crops (`crops_per_step`)
whatever `--batch-size` says. Its budget's clock starts before selective
search, which the recipe's budget counts too (`training_data_minutes`).

Each model is then scored on held-out scenes (the "test" stream, which no
run selects on) with `coco_evaluate`: mAP@0.5 and mAP@.5:.95. Inference is
timed on `detect` (network, decoding and per-class NMS) inside one
`tf.function`, at batch 1 (latency) and at `--throughput-batch` (32): the
first call of each batch size (tracing) is reported apart, then `--warmup`
untimed calls and the median of the timed ones (`benchmarks/timing.py`).

rcnn cannot be timed that way: its proposals come from OpenCV, outside any
graph, and it handles a batch one image at a time. Its row instead holds
R-CNN's two bottlenecks, measured by `rcnn_detect(..., timings=)` over every
held-out scene at batch 1, each scene's selective search computed afresh:
- `proposal_recall_50`: the share of held-out ground-truth boxes that some
  selective-search proposal overlaps with IoU >= 0.5 (`proposal_recall`),
  the recall no classifier on these proposals can exceed;
- `proposal_seconds_per_image`: selective search alone, mean per scene;
- `classification_seconds_per_image`: given the proposals, warping each
  to the CNN's crop size, the CNN, box decoding and per-class NMS, mean per
  scene (it grows with `proposals_per_image`, also recorded);
- `batch1_img_s`: scenes per second of the whole `rcnn_detect` (both
  stages), from the median scene; the batch-N and first-call columns stay
  blank and `inference_note` says why.

A model whose dependencies are missing (yolov8 needs keras-cv, rcnn OpenCV's
contrib modules: `pip install kerasvision[rcnn]`) is skipped with a printed
note; a model that fails gets a row with its error.

Run (times for 2 quiet cores):
    python benchmarks/detection_quality.py                    # 5 min per model, ~19 min
    python benchmarks/detection_quality.py --budget-minutes 12 --models yolov8
    python benchmarks/detection_quality.py --models rcnn      # ~7 min: 2 passes over the held-out scenes
    python benchmarks/detection_quality.py --smoke            # 64 px, 2 steps, seconds (tests)

Writes --output (default benchmarks/results/detection_quality.json): the
environment (CPU model and flags, versions, load), the flags, the date and
one row per model. `--smoke` runs the same code at toy sizes: it checks the
script works, its numbers mean nothing.
"""

import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from benchmarks import profiling, reporting, timing  # noqa: E402

import numpy as np  # noqa: E402

# The recipe's order: its default detector first.
DEFAULT_MODELS = ("yolov8", "yolov1", "rcnn")
NUM_CLASSES = 4  # the shapes scenes' classes (SHAPES_CLASSIFICATION_NAMES)
# rcnn trains on proposal crops, not scenes: the recipe's 64 per step (16 from each
# of 4 scenes, make_rcnn_training_data's defaults), whatever --batch-size says.
RCNN_CROPS_PER_STEP = 64

# --smoke's defaults; flags given explicitly still win. Two optimizer steps on
# 8 scenes of 64 px exercise the whole path (schedule, budget, evaluation,
# both timings) without meaning anything. The budget is generous so that the
# step cap, not a loaded machine's slow tracing, ends training.
SMOKE_DEFAULTS = dict(
    image_size=64, train_images=8, eval_images=4, batch_size=4, max_steps=2,
    throughput_batch=2, latency_calls=2, budget_minutes=10.0,
)


def parse_args(argv):
    """Parses the flags; `--smoke` swaps in `SMOKE_DEFAULTS` for the flags not given."""
    from kerasvision.models.detectors import DETECTORS

    parser = reporting.new_parser(__doc__)
    reporting.add_common_flags(parser, "detection_quality.json")
    parser.add_argument("--models", default=",".join(m for m in DEFAULT_MODELS if m in DETECTORS),
                        help="comma-separated subset of " + ", ".join(DETECTORS))
    parser.add_argument("--budget-minutes", type=float, default=5.0,
                        help="training wall-clock per model, tracing included (default 5)")
    parser.add_argument("--image-size", type=int, default=128,
                        help="square side, a multiple of 32 (default 128, the recipe's)")
    parser.add_argument("--batch-size", type=int, default=16,
                        help="training batch (the recipe's; rcnn steps on 64 proposal crops)")
    parser.add_argument("--train-images", type=int, default=2048,
                        help="training scenes (default 2048, the recipe's)")
    parser.add_argument("--eval-images", type=int, default=256, help="held-out scenes scored")
    parser.add_argument("--max-objects", type=int, default=4, help="most shapes per scene")
    parser.add_argument("--learning-rate", type=float, default=2e-3,
                        help="peak learning rate (the recipe's)")
    parser.add_argument("--epochs", type=int, default=40,
                        help="epoch cap (the recipe's; the budget usually ends training first)")
    parser.add_argument("--max-steps", type=int, default=None,
                        help="stop after this many optimizer steps (one epoch); --smoke: 2")
    parser.add_argument("--no-augment", dest="augment", action="store_false",
                        help="train without the recipe's box-aware augmentation")
    parser.add_argument("--throughput-batch", type=int, default=32,
                        help="the throughput batch (default 32; --smoke 2)")
    parser.add_argument("--latency-calls", type=int, default=20,
                        help="timed batch-1 calls (default 20; --smoke 2)")
    parser.add_argument("--precision", default="auto",
                        choices=("float32", "mixed_bfloat16", "auto"),
                        help="dtype policy (auto, the recipe's: mixed_bfloat16 where the CPU "
                        "computes bfloat16 natively, else float32)")
    parser.add_argument("--score-threshold", type=float, default=0.001,
                        help="lowest score kept for the mAP (0.001 as in the COCO evaluations "
                        "of YOLO: AP integrates over the whole precision-recall curve, so a "
                        "high threshold cuts its low-confidence end; the recipe displays and "
                        "exports at 0.05)")
    parser.add_argument("--iou-threshold", type=float, default=0.5)
    parser.add_argument("--max-detections", type=int, default=100)
    parser.add_argument("--seed", type=int, default=0)
    # Parsed twice: the smoke defaults must be in place before the real parse
    # so that flags given explicitly override them.
    if parser.parse_known_args(argv)[0].smoke:
        parser.set_defaults(**SMOKE_DEFAULTS)
    args = parser.parse_args(argv)
    reporting.check_counts(parser, args, warmup=0 if args.smoke else 2,
                           repeats=1 if args.smoke else 3)
    reporting.resolve_output(args, "detection_quality.json")
    args.models = reporting.parse_list(parser, "--models", args.models, DETECTORS)
    if args.image_size % 32 or args.image_size < 32:
        parser.error(f"--image-size must be a multiple of 32; received {args.image_size}")
    for flag in ("batch_size", "train_images", "eval_images", "max_objects", "epochs",
                 "throughput_batch", "latency_calls"):
        if getattr(args, flag) < 1:
            parser.error(f"--{flag.replace('_', '-')} must be >= 1; received {getattr(args, flag)}")
    if args.max_steps is not None and args.max_steps < 1:
        parser.error(f"--max-steps must be >= 1; received {args.max_steps}")
    if args.budget_minutes <= 0:
        parser.error(f"--budget-minutes must be > 0; received {args.budget_minutes}")
    return args


# ---------------------------------------------------------------------------
# Data, training, scoring, timing
# ---------------------------------------------------------------------------


def load_data(args):
    """`(train, held_out)`: batched pipelines of the detection contract, as the recipe makes them."""
    from kerasvision.data import (build_detection_augmenter, load_shapes_detection,
                                  make_detection_pipeline)

    train = load_shapes_detection("train", args.train_images, args.image_size, args.seed,
                                  args.max_objects)
    held_out = load_shapes_detection("test", args.eval_images, args.image_size, args.seed,
                                     args.max_objects)
    augmenter = build_detection_augmenter(seed=args.seed) if args.augment else None
    train = make_detection_pipeline(train, args.batch_size, training=True, augmenter=augmenter,
                                    seed=args.seed)
    held_out = make_detection_pipeline(held_out, args.batch_size, training=False)
    return train, held_out


def train_for_budget(model, train, args):
    """Fits a compiled detector until the budget, the step cap or the epoch cap; returns facts.

    The callbacks are the recipe's training ones without its checkpoints and
    per-epoch validation: a benchmark row keeps the last weights, and its
    evaluation (on scenes no run selects on) is outside the budget.

    rcnn's inputs are proposal crops, made eagerly before `fit` by selective
    search over every training scene (one augmented pass, the recipe's
    sampling); the budget's clock starts before them, as in the recipe.
    """
    from kerasvision.models.detectors import detector_training_data, is_rcnn
    from kerasvision.training import KeyPipelinesByEpoch, TimeBudget, WarmupCosineToBudget

    started = time.time()
    deadline = started + 60 * args.budget_minutes
    rcnn = is_rcnn(model)
    rcnn_settings = {"batch_size": RCNN_CROPS_PER_STEP, "seed": args.seed}
    data = detector_training_data(model, train, training=True,
                                  **(rcnn_settings if rcnn else {}))
    data_minutes = (time.time() - started) / 60
    steps_per_epoch = int(data.cardinality())
    epochs = args.epochs
    if args.max_steps is not None:
        steps_per_epoch, epochs = min(args.max_steps, steps_per_epoch), 1
    schedule = WarmupCosineToBudget(args.learning_rate, epochs * steps_per_epoch, deadline)
    budget = TimeBudget(deadline)
    # KeyPipelinesByEpoch: without it every epoch would repeat epoch 0's
    # shuffle order and augmentation draws (the pipeline keys them by epoch).
    model.fit(data, epochs=epochs, steps_per_epoch=steps_per_epoch, shuffle=False, verbose=0,
              callbacks=[KeyPipelinesByEpoch(), schedule, budget])
    facts = {"train_minutes": (time.time() - started) / 60,
             "steps": int(model.optimizer.iterations),
             "budget_expired": bool(budget.expired),
             "final_learning_rate": float(model.optimizer.learning_rate)}
    if rcnn:
        facts.update(training_data_minutes=data_minutes, crops_per_step=RCNN_CROPS_PER_STEP)
    return facts


def score(model, held_out, args):
    """COCO mAP@0.5 and mAP@.5:.95 of the detections on the held-out scenes."""
    from kerasvision.metrics import coco_evaluate
    from kerasvision.tasks.detection import collect_detections

    start = time.perf_counter()
    ground_truth, detections, _ = collect_detections(
        model, held_out, args.score_threshold, args.iou_threshold, args.max_detections)
    result = coco_evaluate(ground_truth, detections)
    return {"map_50": float(result["map_50"]), "map": float(result["map"]),
            "eval_images": len(ground_truth), "eval_s": time.perf_counter() - start}


def scene_batch(held_out, size):
    """`size` held-out images (repeated when there are fewer), float32 [size, H, W, 3]."""
    import tensorflow as tf

    images = np.concatenate([batch["images"].numpy() for batch in held_out])
    return tf.constant(np.resize(images, (size, *images.shape[1:])), tf.float32)


def time_inference(model, held_out, args):
    """Images/s of `detect` in one `tf.function`, at batch 1 and at `--throughput-batch`."""
    import tensorflow as tf

    from kerasvision.models.detectors import detect

    settings = (args.score_threshold, args.iou_threshold, args.max_detections)
    # Eagerly first, as export_detector does: yolov8's NMS decoder is set up
    # outside the trace, so tracing does not change the tracked model.
    detect(model, scene_batch(held_out, 1), *settings)
    detector = tf.function(lambda images: detect(model, images, *settings))
    facts = {}
    for name, size, repeats in (("batch1", 1, args.latency_calls),
                                ("batchN", args.throughput_batch, args.repeats)):
        images = scene_batch(held_out, size)
        start = time.perf_counter()
        detector(images)  # traces for this batch size
        facts[f"{name}_first_call_s"] = time.perf_counter() - start
        stats = timing.summarize_times(
            timing.time_calls(lambda: detector(images), args.warmup, repeats))
        facts[f"{name}_median_ms"] = 1e3 * stats["median_s"]
        facts[f"{name}_img_s"] = size / stats["median_s"]
    return facts


def time_rcnn(model, held_out, args):
    """R-CNN's two stages and its proposal recall, per held-out scene at batch 1.

    `rcnn_detect` handles a batch one image at a time, so batch 1 is its
    natural unit. Each scene gets a fresh proposal cache: the cache misses,
    so the proposal time is selective search itself (plus hashing the scene,
    microseconds), and afterwards the cache holds the proposals that the
    recall is measured on.
    """
    from kerasvision.models.rcnn import proposal_recall, rcnn_detect

    proposals, truth, labels, scene_seconds = [], [], [], []
    spent = {}
    for batch in held_out:
        images = batch["images"].numpy()
        for index in range(len(images)):
            cache, before = {}, dict(spent)
            rcnn_detect(model, images[index:index + 1], args.score_threshold,
                        args.iou_threshold, args.max_detections, proposal_cache=cache,
                        timings=spent)
            (found,) = cache.values()  # a fresh cache per scene: its one search
            proposals.append(found)
            scene_seconds.append(sum(spent[key] - before.get(key, 0.0)
                                     for key in ("proposal_seconds", "classification_seconds")))
        truth.extend(batch["bounding_boxes"]["boxes"].numpy())
        labels.extend(batch["bounding_boxes"]["labels"].numpy())
    recall, _, boxes = proposal_recall(proposals, truth, labels, iou_threshold=0.5)
    images = spent["images"]
    median = float(np.median(scene_seconds))
    return {"proposal_recall_50": recall, "held_out_boxes": boxes,
            "proposals_per_image": spent["proposals"] / images,
            "proposal_seconds_per_image": spent["proposal_seconds"] / images,
            "classification_seconds_per_image": spent["classification_seconds"] / images,
            "batch1_median_ms": 1e3 * median, "batch1_img_s": 1.0 / median,
            "inference_note": "rcnn_detect per scene, eager (selective search runs in OpenCV, "
                              "outside any graph); no batch-N or first-call timing: it loops "
                              "over a batch's scenes one at a time"}


def missing_dependency(name):
    """The skip note of a model whose optional dependency is missing, else None.

    rcnn builds without OpenCV and would fail only at its first selective
    search, inside training: checked up front so that it is skipped, not failed.
    """
    if name != "rcnn":
        return None
    try:
        import cv2

        cv2.ximgproc.segmentation
    except (ImportError, AttributeError) as error:
        return (f"rcnn: skipped, a dependency is missing: selective search needs OpenCV's "
                f"contrib modules, `pip install kerasvision[rcnn]` ({error}).")
    return None


def run_model(name, args):
    """Builds, trains, scores and times one detector; returns `(row, None)` or `(None, note)`."""
    import keras

    from kerasvision.models.detectors import build_detector, compile_detector, is_rcnn

    note = missing_dependency(name)
    if note:
        return None, note
    keras.backend.clear_session()
    # clear_session also resets the global dtype policy to float32.
    keras.mixed_precision.set_global_policy(args.precision)
    timing.release_free_memory()
    keras.utils.set_random_seed(args.seed)
    # Built per model, after clear_session: the augmenter's layers and random
    # state belong to this model's session, and every model sees the same
    # batches in the same order.
    train, held_out = load_data(args)
    row = {"model": name, "image_size": args.image_size, "batch_size": args.batch_size,
           "precision": args.precision}
    try:
        model = build_detector(name, NUM_CLASSES, (args.image_size, args.image_size, 3),
                               weights=None)
    except ImportError as error:
        return None, f"{name}: skipped, a dependency is missing ({error})."
    try:
        compile_detector(model, args.learning_rate)
        row["parameters"] = int(model.count_params())
        row.update(train_for_budget(model, train, args))
        row.update(score(model, held_out, args))
        if is_rcnn(model):
            row.update(time_rcnn(model, held_out, args))
        else:
            row.update(time_inference(model, held_out, args))
    except Exception as error:  # one failing model must not end the run
        row["error"] = reporting.describe_error(error)
        # TensorFlow's first line ("in user code:") hides the cause: keep its tail too.
        row["error_detail"] = str(error)[-2000:]
        print(f"  {name}: failed: {row['error']}", flush=True)
    return row, None


COLUMNS = [
    ("model", "model", "s"),
    ("map_50", "mAP@0.5", ".3f"),
    ("map", "mAP@.5:.95", ".3f"),
    ("train_minutes", "train min", ".1f"),
    ("steps", "steps", "d"),
    ("batch1_img_s", "b1 img/s", ".1f"),
    ("batchN_img_s", "bN img/s", ".1f"),
    ("parameters", "params", ",d"),
    ("proposal_recall_50", "prop recall@.5", ".3f"),
    ("proposal_seconds_per_image", "prop s/img", ".4f"),
    ("classification_seconds_per_image", "cls s/img", ".4f"),
]


def run_benchmark(args):
    """Runs the benchmark for parsed flags; returns the JSON payload."""
    from kerasvision.training import select_precision

    started = time.perf_counter()
    env = timing.environment()
    timing.warn_if_busy(env)
    args.precision = select_precision(args.precision)
    rows, notes = [], []
    for name in args.models:
        print(f"{name} ...", flush=True)
        row, note = run_model(name, args)
        if note:
            notes.append(note)
            print(f"  note: {note}", flush=True)
            continue
        rows.append(row)
        if "error" in row:
            continue
        print(f"  {name}: mAP@0.5 {row['map_50']:.3f}, mAP@.5:.95 {row['map']:.3f} after "
              f"{row['steps']} steps in {row['train_minutes']:.1f} min; "
              f"{row['batch1_img_s']:.1f} img/s at batch 1", end="", flush=True)
        if "batchN_img_s" in row:
            print(f", {row['batchN_img_s']:.1f} at batch {args.throughput_batch}", flush=True)
        else:
            print(f"; proposal recall@0.5 {row['proposal_recall_50']:.3f}, "
                  f"{row['proposal_seconds_per_image']:.4f} s/scene for proposals and "
                  f"{row['classification_seconds_per_image']:.4f} for classification "
                  f"({row['proposals_per_image']:.0f} proposals/scene)", flush=True)
    print()
    print(f"{args.image_size}x{args.image_size} shapes scenes, {args.train_images} training and "
          f"{args.eval_images} held-out, batch {args.batch_size}, budget "
          f"{args.budget_minutes:g} min per model; bN = batch {args.throughput_batch}; "
          f"inference = detect (NMS included) in a tf.function, median after warm-up; "
          f"rcnn: rcnn_detect per scene, eager, and its two stages' mean seconds per scene")
    print(reporting.format_table(rows, COLUMNS))
    for row in rows:
        if "error" in row:
            print(f"failed: {row['model']}: {row['error']}")
    for note in notes:
        print(f"note: {note}")
    payload = {"benchmark": "detection_quality", "date": time.strftime("%Y-%m-%d"),
               "environment": env, "config": reporting.args_dict(args), "rows": rows,
               "notes": notes}
    return reporting.finish_run(payload, args.output, started)


def main(argv=None):
    """Parses `argv` (None: the command line), runs, prints the table and writes the JSON."""
    return profiling.run_training_benchmark(run_benchmark, parse_args(argv))


if __name__ == "__main__":
    main()
