"""The detection task as `recipes/detect.py` runs it: data flags, fit with a validation mAP, report.

The best checkpoint is chosen by the validation mAP@0.5 that
`ValidationMeanAP` computes after every epoch (`coco_evaluate` on the
validation images), not by a loss: the detectors' losses are not comparable
across families, and a lower loss need not mean better boxes.
"""

import os
import time

import numpy as np
import keras
import tensorflow as tf

from kerasvision import visualize
from kerasvision.data.augment import build_detection_augmenter
from kerasvision.data.checks import validate_detection_dataset
from kerasvision.data.loaders import VOC_CLASS_NAMES, load_detection_folder, load_voc_detection
from kerasvision.data.pipelines import make_detection_pipeline
from kerasvision.data.shapes import SHAPES_CLASSIFICATION_NAMES, load_shapes_detection
from kerasvision.metrics import coco_evaluate, precision_recall_curve
from kerasvision.models.detectors import detect, detector_training_data
from kerasvision.tasks.runs import image_counts
from kerasvision.training import distribute, load_model_weights, make_callbacks, read_history
from kerasvision.validation import check_int

DATASETS = ("shapes", "voc", "folder")
SMOKE_IMAGES = 8
MONITOR = "val_map_50"


def add_detection_flags(parser):
    """Adds the flags of detection recipes to a `recipe_parser`."""
    group = parser.add_argument_group("detection")
    group.add_argument("--dataset", choices=DATASETS, default="shapes",
                       help="shapes: the embedded scenes (offline); voc: PASCAL VOC 2007 via "
                       "tfds; folder: --images-dir with a COCO-format --annotations file")
    group.add_argument("--images-dir", help="image files, for --dataset folder")
    group.add_argument("--annotations", help="COCO-format JSON of boxes, for --dataset folder")
    group.add_argument("--data-dir", help="tfds data directory")
    group.add_argument("--num-train", type=int, default=None, help="training scenes (shapes)")
    group.add_argument("--num-val", type=int, default=None, help="validation scenes (shapes)")
    group.add_argument("--max-objects", type=int, default=4, help="most shapes per scene")
    group.add_argument("--augment", choices=("true", "false"), default="true",
                       help="random flips, scaling, translation and colour, boxes moved along")
    group.add_argument("--score-threshold", type=float, default=0.05,
                       help="lowest score a detection keeps (evaluation and export)")
    group.add_argument("--iou-threshold", type=float, default=0.5,
                       help="NMS: a same-class box overlapping a better one more is dropped")
    group.add_argument("--max-detections", type=int, default=100, help="detections per image")
    return parser


def load_detection_data(args):
    """Returns `(train, validation, class_names)`: batched detection pipelines for the flags."""
    size = args.image_size
    if args.dataset == "shapes":
        num_train, num_val = image_counts(args, SMOKE_IMAGES)
        max_objects = check_int("--max-objects", args.max_objects, minimum=1)
        train = load_shapes_detection("train", num_train, size, args.seed, max_objects)
        validation = load_shapes_detection("validation", num_val, size, args.seed, max_objects)
        class_names = SHAPES_CLASSIFICATION_NAMES
    elif args.dataset == "voc":
        train = load_voc_detection("train", size, data_dir=args.data_dir)
        validation = load_voc_detection("validation", size, data_dir=args.data_dir)
        class_names = VOC_CLASS_NAMES
    else:
        if not args.images_dir or not args.annotations:
            raise ValueError("--dataset folder needs --images-dir and --annotations.")
        everything, class_names = load_detection_folder(args.images_dir, args.annotations, size)
        num_val = max(1, int(everything.cardinality()) // 5)
        validation, train = everything.take(num_val), everything.skip(num_val)
    if args.smoke:
        train, validation = train.take(SMOKE_IMAGES), validation.take(SMOKE_IMAGES)
    # Before the pipelines cache them: a partial read leaves a cache incomplete.
    validate_detection_dataset(train, len(class_names))
    augmenter = (build_detection_augmenter(seed=args.seed) if args.augment == "true" else None)
    train = make_detection_pipeline(train, args.batch_size, training=True, augmenter=augmenter,
                                    seed=args.seed)
    validation = make_detection_pipeline(validation, args.batch_size, training=False)
    return train, validation, tuple(class_names)


def collect_detections(model, dataset, score_threshold=0.05, iou_threshold=0.5,
                       max_detections=100):
    """Runs `detect` over a batched detection dataset.

    Returns:
        `(ground_truth, detections, images)`: per image, `{"boxes", "classes"}`
        of the true boxes (padding dropped), `{"boxes", "scores", "classes"}`
        of the detections, and the images (uint8) for plots.
    """
    ground_truth, detections, images = [], [], []
    for batch in dataset:
        found = detect(model, batch["images"], score_threshold, iou_threshold, max_detections)
        found = {key: value.numpy() for key, value in found.items()}
        boxes = batch["bounding_boxes"]["boxes"].numpy()
        labels = batch["bounding_boxes"]["labels"].numpy()
        for index in range(len(labels)):
            keep = labels[index] >= 0
            ground_truth.append({"boxes": boxes[index][keep], "classes": labels[index][keep]})
            count = int(found["num_detections"][index])
            detections.append({key: found[key][index][:count]
                               for key in ("boxes", "scores", "classes")})
        images.append(np.clip(batch["images"].numpy(), 0, 255).astype(np.uint8))
    return ground_truth, detections, np.concatenate(images) if images else np.zeros((0,))


class ValidationMeanAP(keras.callbacks.Callback):
    """Logs `val_map_50` and `val_map` (COCO mAP@0.5 and @.5:.95) after each epoch.

    Placed before the checkpoint callbacks, so that the best checkpoint and
    the CSV log see the figures of the same epoch.

    Args:
        dataset: batched validation dataset of the detection contract.
        score_threshold, iou_threshold, max_detections: `detect`'s settings.
    """

    def __init__(self, dataset, score_threshold=0.05, iou_threshold=0.5, max_detections=100):
        super().__init__()
        self.dataset = dataset
        self.settings = (score_threshold, iou_threshold, max_detections)

    def on_epoch_end(self, epoch, logs=None):
        ground_truth, detections, _ = collect_detections(self.model, self.dataset,
                                                         *self.settings)
        result = coco_evaluate(ground_truth, detections)
        if logs is not None:
            logs["val_map_50"] = float(result["map_50"])
            logs["val_map"] = float(result["map"])


def fit_detector(model, train, validation, run_dir, epochs, verbose=2, max_minutes=None,
                 schedule=None, score_threshold=0.05, iou_threshold=0.5, max_detections=100):
    """Trains a detector with the package's callbacks; ends with its best epoch's weights.

    Rerunning after a kill resumes from the last finished epoch. The best
    checkpoint is chosen by the validation mAP@0.5 (`ValidationMeanAP`).

    Args:
        model: a compiled detector (`kerasvision.models.detectors`).
        train, validation: batched datasets of the detection contract.
        run_dir: str, directory of `best.weights.h5`, `history.csv` and the backup.
        epochs: int >= 1.
        verbose: `fit` verbosity.
        max_minutes: float or None, wall-clock training budget.
        schedule: optional learning-rate callback (`WarmupCosineToBudget`).
        score_threshold, iou_threshold, max_detections: the validation detections' settings.

    Returns:
        dict metric -> per-epoch values, from `history.csv`.
    """
    check_int("epochs", epochs, minimum=1)
    deadline = time.time() + 60 * max_minutes if max_minutes else None
    callbacks = make_callbacks(run_dir, MONITOR, "max", deadline=deadline, schedule=schedule)
    # After the backup restores the model (first), before the checkpoint and CSV read the logs.
    callbacks.insert(1, ValidationMeanAP(validation, score_threshold, iou_threshold,
                                         max_detections))
    distribute.fit(
        model,
        detector_training_data(model, train, training=True),
        validation_data=detector_training_data(model, validation, training=False),
        epochs=epochs,
        shuffle=False,  # the tf.data pipeline shuffles
        callbacks=callbacks,
        verbose=verbose,
    )
    best = os.path.join(run_dir, "best.weights.h5")
    if os.path.exists(best):
        load_model_weights(model, best)
    return read_history(os.path.join(run_dir, "history.csv"))


def evaluate_detector(model, validation, class_names, train_seconds=None, score_threshold=0.05,
                      iou_threshold=0.5, max_detections=100):
    """COCO evaluation of the validation detections, printed as a per-class table.

    Returns:
        `(summary, (ground_truth, detections, images))`: the summary holds
        `map`, `map_50`, `map_75`, `per_class_ap_50`, `images` and
        `train_seconds`.
    """
    collected = collect_detections(model, validation, score_threshold, iou_threshold,
                                   max_detections)
    ground_truth, detections, _ = collected
    result = coco_evaluate(ground_truth, detections)
    per_class = {class_names[int(index)]: float(value)
                 for index, value in result["per_class_ap_50"].items()}
    print(f"{'class':<12}{'AP@0.5':>8}")
    for name, value in per_class.items():
        print(f"{name:<12}{value:>8.4f}")
    print(f"mAP@0.5 {result['map_50']:.4f}  mAP@.5:.95 {result['map']:.4f}  "
          f"mAP@0.75 {result['map_75']:.4f}  ({len(ground_truth)} images)")
    summary = {"map": float(result["map"]), "map_50": float(result["map_50"]),
               "map_75": float(result["map_75"]), "per_class_ap_50": per_class,
               "images": len(ground_truth), "train_seconds": train_seconds}
    return summary, collected


def plot_detection_run(collected, class_names, history, output_dir, per_class_ap_50=None,
                       count=8):
    """Writes `detections.png`, `pr_curve.png` and `history.png`; returns their paths.

    Args:
        collected: `(ground_truth, detections, images)` of `evaluate_detector`.
        class_names: names by class id.
        history: dict metric -> per-epoch values.
        output_dir: str.
        per_class_ap_50: dict class name -> AP@0.5 for the curves' legend.
        count: int, images in `detections.png`.
    """
    ground_truth, detections, images = collected
    paths = {}
    if len(images):
        paths["detections_plot"] = visualize.plot_detections(
            images[:count], detections[:count], class_names,
            os.path.join(output_dir, "detections.png"), ground_truth=ground_truth[:count])
    curves = {}
    for class_id, name in enumerate(class_names):
        if any(len(truth["classes"]) and np.any(truth["classes"] == class_id)
               for truth in ground_truth):
            recall, precision, _ = precision_recall_curve(ground_truth, detections, class_id)
            curves[name] = {"recall": recall, "precision": precision,
                            "ap": (per_class_ap_50 or {}).get(name, float("nan"))}
    if curves:
        paths["pr_curve_plot"] = visualize.plot_precision_recall(
            curves, os.path.join(output_dir, "pr_curve.png"))
    if history:
        paths["history_plot"] = visualize.plot_history(
            history, os.path.join(output_dir, "history.png"))
    return paths
