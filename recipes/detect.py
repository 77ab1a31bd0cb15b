"""Object detection: boxes and classes of every shape in a scene, scored by COCO mAP.

Trains one of three detectors (`--model`):
- yolov8: keras-cv's anchor-free YOLOv8, small (about 1M parameters), built
  from its config; the default, the fastest to a good mAP on a CPU;
- yolov1: the one-stage YOLO of Redmon et al. 2016 (an S x S grid, the centre
  cell responsible, the five-term sum-squared loss), on a registered
  backbone (--backbone) or a small from-scratch encoder;
- rcnn: the two-stage R-CNN of Girshick et al. 2014: selective-search proposals
  (OpenCV: pip install kerasvision[rcnn]), each warped to a fixed size and
  classified by a CNN with box regression, then per-class NMS (no export:
  the proposals are not a TensorFlow graph).

With no arguments it trains on the embedded detection scenes (128 x 128, one
to four disks, squares, triangles and crosses; no download) for at most
--max-train-minutes, with a learning rate that warms up and then decays to
the end of that budget, keeping the epoch with the best validation mAP@0.5.

Run:
    python recipes/detect.py                       # embedded scenes, yolov8
    python recipes/detect.py --model yolov1 --image-size 224
    python recipes/detect.py --smoke --model yolov1 --export-dir /tmp/detector
    python recipes/detect.py --dataset voc --image-size 320 --download

Writes to --output-dir (runs/detect_<model>): best.weights.h5, history.csv,
history.png, detections.png (predicted boxes with class and score, ground
truth dashed), pr_curve.png and summary.json (per-class AP@0.5, mAP@0.5,
mAP@.5:.95); and a SavedModel to <export-dir>/<next version>/ whose
serving_default takes uint8 images of any size and returns boxes (xyxy in
the image's pixels), scores, classes and num_detections, with NMS inside.
Rerunning the same command after a crash resumes from the last finished epoch.
"""

import os
import time

from kerasvision.export import export_detector
from kerasvision.models.detectors import DETECTORS, build_detector, compile_detector
from kerasvision.tasks.cli import recipe_parser, run, setup_run
from kerasvision.tasks.detection import (
    add_detection_flags,
    evaluate_detector,
    fit_detector,
    load_detection_data,
    plot_detection_run,
)
from kerasvision.tasks.runs import write_json
from kerasvision.training import WarmupCosineToBudget


def parse_args(argv):
    parser = recipe_parser(
        __doc__,
        image_size=128,  # the embedded scenes' size; a multiple of 32
        batch_size=16,
        epochs=40,  # the time budget usually ends the run first
        learning_rate=2e-3,
    )
    parser.add_argument("--model", choices=DETECTORS, default="yolov8",
                        help="yolov8 (keras-cv, anchor-free) or yolov1 (Redmon et al. 2016)")
    parser.add_argument("--backbone", default=None,
                        help="yolov1 only: vgg16 or resnet50 (default: a small encoder from scratch)")
    parser.add_argument("--weights", default="auto",
                        help="yolov1 with --backbone: auto, imagenet, none or a weights file")
    add_detection_flags(parser)
    # The no-argument run ends within 15 minutes on 2 CPU cores, evaluation and export included.
    parser.set_defaults(max_train_minutes=12)
    return parser.parse_args(argv)


def main(argv=None):
    args = parse_args(argv)
    verbose = setup_run(args, f"detect_{args.model}")

    # Data: batched detection dicts {"images", "bounding_boxes": {"boxes", "labels"}}.
    train, validation, class_names = load_detection_data(args)

    # Model: keras-cv's YOLOv8, or YOLO v1 on a backbone.
    weights = None if args.weights.lower() == "none" else args.weights
    with args.distribute_strategy.scope():  # --strategy: variables distributed at creation
        model = build_detector(args.model, len(class_names),
                               (args.image_size, args.image_size, 3),
                               backbone=args.backbone, weights=weights)
        compile_detector(model, args.learning_rate, args.jit_compile)
    print(f"{model.name}: {model.count_params():,} parameters")

    # Fit: warm-up, then cosine decay to the end of the epochs or of the time budget.
    steps = 2 if args.smoke else int(train.cardinality())
    deadline = time.time() + 60 * args.max_train_minutes if args.max_train_minutes else None
    schedule = WarmupCosineToBudget(args.learning_rate, args.epochs * max(1, steps), deadline)
    started = time.time()
    history = fit_detector(model, train, validation, args.output_dir,
                           1 if args.smoke else args.epochs, verbose=verbose,
                           max_minutes=args.max_train_minutes, schedule=schedule,
                           score_threshold=args.score_threshold,
                           iou_threshold=args.iou_threshold,
                           max_detections=args.max_detections)

    # Report (COCO mAP), pictures and the export with NMS inside.
    summary, collected = evaluate_detector(model, validation, class_names,
                                           time.time() - started, args.score_threshold,
                                           args.iou_threshold, args.max_detections)
    summary.update(plot_detection_run(collected, class_names, history, args.output_dir,
                                      summary["per_class_ap_50"]))
    if args.model == "rcnn":  # selective search runs in OpenCV, outside any TensorFlow graph
        print("no SavedModel export for rcnn: its proposals come from OpenCV, not a graph")
    else:
        summary["export_path"] = export_detector(model, args.export_dir, args.score_threshold,
                                                 args.iou_threshold, args.max_detections)
        print(f"exported to {summary['export_path']}")
    write_json(os.path.join(args.output_dir, "summary.json"), summary)
    return summary


if __name__ == "__main__":
    run(main)
