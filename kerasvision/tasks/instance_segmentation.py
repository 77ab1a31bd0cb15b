"""The instance-segmentation task as `recipes/instance_segmentation.py` runs it.

Data (the embedded detection scenes with their instance masks), fit with the
package's callbacks, and the report: COCO box mAP and mask AP
(`coco_evaluate(iou_type="bbox")` and `"segm"`), and panoptic quality of the
instances merged onto the background (`panoptic_merge`, `panoptic_quality`:
the background is the one "stuff" class, the shapes are "things").
"""

import os
import time

import numpy as np

from kerasvision import visualize
from kerasvision.data.pipelines import make_instance_pipeline
from kerasvision.data.shapes import SHAPES_CLASSIFICATION_NAMES, load_shapes_instances
from kerasvision.metrics import coco_evaluate, panoptic_merge, panoptic_quality
from kerasvision.models.mask_rcnn import detect_instances
from kerasvision.tasks.runs import image_counts
from kerasvision.training import (
    distribute,
    load_model_weights,
    make_callbacks,
    read_history,
)
from kerasvision.validation import check_int

SMOKE_IMAGES = 8
# Selected by the validation loss: mask AP over the validation set each epoch
# would cost as much as a share of the training budget.
MONITOR = "val_loss"
# Panoptic class ids: 0 is the background ("stuff"), 1..C the shapes ("things").
BACKGROUND = 0


def add_instance_segmentation_flags(parser):
    """Adds the flags of the instance-segmentation recipe to a `recipe_parser`."""
    group = parser.add_argument_group("instance segmentation")
    group.add_argument("--num-train", type=int, default=None,
                       help="training scenes (default 2048)")
    group.add_argument("--num-val", type=int, default=None,
                       help="validation scenes (default 256)")
    group.add_argument("--max-objects", type=int, default=4, help="most shapes per scene")
    group.add_argument("--score-threshold", type=float, default=0.05,
                       help="lowest score a detection keeps (evaluation and export)")
    group.add_argument("--iou-threshold", type=float, default=0.5,
                       help="NMS: a same-class box overlapping a better one more is dropped")
    group.add_argument("--max-detections", type=int, default=20,
                       help="detections (and masks) per image")
    group.add_argument("--panoptic-score", type=float, default=0.5,
                       help="lowest score of an instance pasted into the panoptic map")
    return parser


def load_instance_data(args):
    """Returns `(train, validation, class_names)`: batched pipelines of the embedded scenes."""
    num_train, num_val = image_counts(args, SMOKE_IMAGES)
    max_objects = check_int("--max-objects", args.max_objects, minimum=1)
    train = load_shapes_instances("train", num_train, args.image_size, args.seed, max_objects)
    validation = load_shapes_instances("validation", num_val, args.image_size, args.seed,
                                       max_objects)
    return (make_instance_pipeline(train, args.batch_size, training=True, seed=args.seed),
            make_instance_pipeline(validation, args.batch_size, training=False),
            tuple(SHAPES_CLASSIFICATION_NAMES))


def fit_instance_segmenter(model, train, validation, run_dir, epochs, verbose=2,
                           max_minutes=None, schedule=None, steps_per_epoch=None):
    """Trains a `MaskRCNN` with the package's callbacks; ends with its best epoch's weights.

    Rerunning after a kill resumes from the last finished epoch; the best
    checkpoint is the epoch of lowest validation loss.

    Returns:
        dict metric -> per-epoch values, from `history.csv`.
    """
    check_int("epochs", epochs, minimum=1)
    deadline = time.time() + 60 * max_minutes if max_minutes else None
    callbacks = make_callbacks(run_dir, MONITOR, "min", deadline=deadline, schedule=schedule)
    distribute.fit(model, train, validation_data=validation, epochs=epochs, shuffle=False,
                   callbacks=callbacks, verbose=verbose, steps_per_epoch=steps_per_epoch,
                   validation_steps=steps_per_epoch)
    best = os.path.join(run_dir, "best.weights.h5")
    if os.path.exists(best):
        load_model_weights(model, best)
    return read_history(os.path.join(run_dir, "history.csv"))


def collect_instances(model, dataset, score_threshold=0.05, iou_threshold=0.5,
                      max_detections=20):
    """Runs `detect_instances` over a batched dataset.

    Returns:
        `(ground_truth, detections, images)`: per image `{"boxes", "classes",
        "masks" [N, H, W]}` (padding dropped), `{"boxes", "scores", "classes",
        "masks" [M, H, W]}`, and the images as uint8.
    """
    ground_truth, detections, images = [], [], []
    for batch in dataset:
        found = detect_instances(model, batch["images"], score_threshold, iou_threshold,
                                 max_detections)
        found = {key: value.numpy() for key, value in found.items()}
        boxes = batch["bounding_boxes"]["boxes"].numpy()
        labels = batch["bounding_boxes"]["labels"].numpy()
        masks = batch["masks"].numpy().astype(bool)
        for index in range(len(labels)):
            keep = labels[index] >= 0
            ground_truth.append({"boxes": boxes[index][keep], "classes": labels[index][keep],
                                 "masks": masks[index][keep]})
            count = int(found["num_detections"][index])
            detections.append({key: found[key][index][:count]
                               for key in ("boxes", "scores", "classes", "masks")})
        images.append(np.clip(batch["images"].numpy(), 0, 255).astype(np.uint8))
    return ground_truth, detections, np.concatenate(images) if images else np.zeros((0,))


def true_panoptic_map(truth, image_size):
    """Ground-truth panoptic map `[H, W, 2]`: background stuff (0), shapes as things 1..C.

    The scenes' masks are the visible pixels, so they never overlap.
    """
    panoptic = np.zeros((*image_size, 2), np.int32)
    for index, (mask, class_id) in enumerate(zip(truth["masks"], truth["classes"]), start=1):
        panoptic[mask, 0] = int(class_id) + 1
        panoptic[mask, 1] = index
    return panoptic


def predicted_panoptic_map(found, image_size, num_classes, score_threshold=0.5):
    """Instances (classes 0..C-1, as things 1..C) pasted onto an all-background map.

    The model has no semantic head: every pixel no instance takes is
    background, the one stuff class (`panoptic_merge`).
    """
    return panoptic_merge(np.zeros(image_size, np.int32), found["masks"].astype(bool),
                          found["classes"].astype(np.int32) + 1, found["scores"],
                          thing_classes=list(range(1, num_classes + 1)),
                          score_threshold=score_threshold)


def evaluate_instance_segmenter(model, validation, class_names, train_seconds=None,
                                score_threshold=0.05, iou_threshold=0.5, max_detections=20,
                                panoptic_score=0.5):
    """Box mAP, mask AP and panoptic quality on the validation scenes, printed as a table.

    Returns:
        `(summary, (ground_truth, detections, images))`.
    """
    collected = collect_instances(model, validation, score_threshold, iou_threshold,
                                  max_detections)
    ground_truth, detections, images = collected
    boxes = coco_evaluate(ground_truth, detections, max_detections=max_detections)
    masks = coco_evaluate(ground_truth, detections, max_detections=max_detections,
                          iou_type="segm")
    size = images.shape[1:3]
    names = ("background",) + tuple(class_names)
    things = list(range(1, len(names)))
    panoptic = panoptic_quality(
        [true_panoptic_map(truth, size) for truth in ground_truth],
        [predicted_panoptic_map(found, size, len(class_names), panoptic_score)
         for found in detections],
        thing_classes=things, class_names=names)
    print(f"{'class':<12}{'box AP@0.5':>12}{'mask AP@0.5':>13}{'PQ':>8}")
    for class_id, name in enumerate(class_names):
        print(f"{name:<12}{boxes['per_class_ap_50'].get(class_id, float('nan')):>12.4f}"
              f"{masks['per_class_ap_50'].get(class_id, float('nan')):>13.4f}"
              f"{panoptic['per_class'][name]['pq']:>8.4f}")
    print(f"box mAP@0.5 {boxes['map_50']:.4f}  box mAP@.5:.95 {boxes['map']:.4f}  "
          f"mask AP@0.5 {masks['map_50']:.4f}  mask AP@.5:.95 {masks['map']:.4f}  "
          f"PQ {panoptic['pq']:.4f} (SQ {panoptic['sq']:.4f}, RQ {panoptic['rq']:.4f})  "
          f"({len(ground_truth)} images)")
    summary = {
        "box_map": float(boxes["map"]), "box_map_50": float(boxes["map_50"]),
        "box_map_75": float(boxes["map_75"]),
        "mask_map": float(masks["map"]), "mask_map_50": float(masks["map_50"]),
        "mask_map_75": float(masks["map_75"]),
        "pq": float(panoptic["pq"]), "sq": float(panoptic["sq"]), "rq": float(panoptic["rq"]),
        "pq_things": float(panoptic["things"]["pq"]), "pq_stuff": float(panoptic["stuff"]["pq"]),
        "per_class_mask_ap_50": {class_names[int(k)]: float(v)
                                 for k, v in masks["per_class_ap_50"].items()},
        "images": len(ground_truth), "train_seconds": train_seconds,
    }
    return summary, collected


def plot_instance_run(collected, class_names, history, output_dir, count=8,
                      score_threshold=0.3):
    """Writes `instances.png` (masks tinted, boxes with class and score) and `history.png`."""
    ground_truth, detections, images = collected
    paths = {}
    if len(images):
        shown = []
        for image, found in zip(images[:count], detections[:count]):
            keep = found["scores"] >= score_threshold
            shown.append(visualize.overlay_instances(
                image, found["masks"][keep], found["classes"][keep], len(class_names)))
        paths["instances_plot"] = visualize.plot_detections(
            np.stack(shown), detections[:count], class_names,
            os.path.join(output_dir, "instances.png"), ground_truth=ground_truth[:count],
            score_threshold=score_threshold)
    if history:
        paths["history_plot"] = visualize.plot_history(
            history, os.path.join(output_dir, "history.png"))
    return paths
