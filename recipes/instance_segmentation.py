"""Instance segmentation: a box, a class and a pixel mask for every shape, with Mask R-CNN.

Trains a compact Mask R-CNN (He et al. 2017) from random weights: a small
encoder gives one stride-8 feature map; a region proposal network (Ren et al.
2015) scores 9 anchors per cell and proposes boxes (NMS); RoIAlign cuts 7x7
features for the box head (classes + background, per-class box deltas) and
14x14 for the mask head (per-class 28x28 masks).

With no arguments it trains on the embedded detection scenes (128 x 128, one
to four disks, squares, triangles and crosses, each with its instance mask;
no download) for at most --max-train-minutes, keeping the epoch of lowest
validation loss, then reports on the validation scenes:
- box mAP and mask AP (COCO protocol, @0.5 and @.5:.95);
- panoptic quality (PQ = SQ x RQ), the instances merged onto the background.

Run:
    python recipes/instance_segmentation.py
    python recipes/instance_segmentation.py --smoke --export-dir /tmp/instances

Writes to --output-dir (runs/instance_segmentation): best.weights.h5,
history.csv, history.png, instances.png (predicted masks tinted over the
images, boxes with class and score, ground truth dashed) and summary.json;
and a SavedModel to <export-dir>/<next version>/ whose serving_default takes
uint8 images of any size and returns boxes, scores, classes, num_detections
and masks, all at the sent image's resolution.
Rerunning the same command after a crash resumes from the last finished epoch.
"""

import os
import time

import keras

from kerasvision.export import export_instance_segmenter
from kerasvision.models.mask_rcnn import build_mask_rcnn
from kerasvision.tasks.cli import recipe_parser, run, setup_run
from kerasvision.tasks.instance_segmentation import (
    add_instance_segmentation_flags,
    evaluate_instance_segmenter,
    fit_instance_segmenter,
    load_instance_data,
    plot_instance_run,
)
from kerasvision.tasks.runs import write_json
from kerasvision.training import WarmupCosineToBudget


def parse_args(argv):
    parser = recipe_parser(
        __doc__,
        image_size=128,  # the embedded scenes' size; a multiple of 8
        batch_size=8,
        epochs=30,  # the time budget usually ends the run first
        learning_rate=1e-3,
    )
    parser.add_argument("--filters", type=int, nargs=3, default=(32, 64, 128),
                        help="widths of the encoder's three stride-2 stages")
    add_instance_segmentation_flags(parser)
    # The no-argument run ends within 15 minutes on 2 CPU cores, evaluation and export included.
    parser.set_defaults(max_train_minutes=11)
    return parser.parse_args(argv)


def main(argv=None):
    args = parse_args(argv)
    verbose = setup_run(args, "instance_segmentation")

    # Data: batched {"images", "bounding_boxes": {"boxes", "labels"}, "masks"}.
    train, validation, class_names = load_instance_data(args)

    # Model: Mask R-CNN on a stride-8 encoder, anchors of 16-64 px at ratios 1:2, 1:1, 2:1.
    with args.distribute_strategy.scope():  # --strategy: variables distributed at creation
        model = build_mask_rcnn(len(class_names), (args.image_size, args.image_size, 3),
                                scratch_filters=args.filters,
                                anchor_sizes=(16.0, 32.0, 64.0), anchor_ratios=(0.5, 1.0, 2.0),
                                seed=args.seed)
        # Clipping: the first steps of a from-scratch detector see large box-loss gradients.
        model.compile(keras.optimizers.Adam(args.learning_rate, global_clipnorm=10.0),
                      jit_compile=args.jit_compile)
    print(f"{model.name}: {model.count_params():,} parameters")

    # Fit: warm-up, then cosine decay to the end of the epochs or of the time budget.
    steps = 2 if args.smoke else int(train.cardinality())
    deadline = time.time() + 60 * args.max_train_minutes if args.max_train_minutes else None
    schedule = WarmupCosineToBudget(args.learning_rate, args.epochs * max(1, steps), deadline)
    started = time.time()
    history = fit_instance_segmenter(model, train, validation, args.output_dir,
                                     1 if args.smoke else args.epochs, verbose=verbose,
                                     max_minutes=args.max_train_minutes, schedule=schedule,
                                     steps_per_epoch=2 if args.smoke else None)

    # Report: box mAP, mask AP and panoptic quality on the validation scenes.
    summary, collected = evaluate_instance_segmenter(
        model, validation, class_names, time.time() - started, args.score_threshold,
        args.iou_threshold, args.max_detections, args.panoptic_score)
    summary.update(plot_instance_run(collected, class_names, history, args.output_dir))

    # Export: NMS and mask pasting inside the graph, at the sent image's resolution.
    summary["export_path"] = export_instance_segmenter(
        model, args.export_dir, args.score_threshold, args.iou_threshold, args.max_detections)
    print(f"exported to {summary['export_path']}")
    write_json(os.path.join(args.output_dir, "summary.json"), summary)
    return summary


if __name__ == "__main__":
    run(main)
