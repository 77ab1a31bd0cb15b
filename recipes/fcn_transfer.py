"""FCN-8s/16s/32s semantic segmentation by transfer learning.

Trains a fully convolutional network (Long, Shelhamer and Darrell 2015) on a
VGG16 or ResNet50 backbone: first the new layers with the backbone frozen,
then the whole network at a lower learning rate. With no arguments it trains
FCN-8s/VGG16 on the embedded synthetic shapes dataset (no download needed).
Without ImageNet weights (an offline machine) the backbone starts from random
weights and the two phases become one.

Run:
    python recipes/fcn_transfer.py                      # embedded data, defaults below
    python recipes/fcn_transfer.py --smoke --export-dir /tmp/fcn
    python recipes/fcn_transfer.py --dataset oxford_iiit_pet --image-size 224 --weights imagenet

Writes to --output-dir (runs/fcn_<backbone>_<variant>): best.weights.h5,
history.csv, history.png, predictions.png, summary.json; and a SavedModel for
TF Serving to <export-dir>/<next version>/. Rerunning the same command after
a crash resumes from the last finished epoch.
"""

import os
import time

from kerasvision.backbones import BACKBONES, resolve_weights
from kerasvision.export import export_image_model
from kerasvision.layers import UPSAMPLING_METHODS
from kerasvision.models.fcn import FCN_VARIANTS, build_fcn
from kerasvision.tasks.cli import recipe_parser, run, setup_run
from kerasvision.tasks.runs import two_phase_settings, write_json
from kerasvision.tasks.segmentation import (
    add_segmentation_flags,
    compile_segmenter,
    evaluate_segmenter,
    load_segmentation_data,
    plot_segmentation_run,
)
from kerasvision.training import fit_two_phase


def parse_args(argv):
    parser = recipe_parser(
        __doc__,
        image_size=64,  # 2x2 cells at stride 32: the cheapest size FCN-8s still fuses at
        # 16: on an AMX CPU, 63 img/s against 45 at batch 8 (bfloat16, 2 cores), so
        # more images per CPU-minute; the higher peak rate keeps the progress per update.
        batch_size=16,
        epochs=30,  # from random weights; the time budget below usually ends training first
        learning_rate=8.5e-4,  # the new layers, or the whole net from random weights (schedule peak)
    )
    parser.add_argument("--backbone", choices=sorted(BACKBONES), default="vgg16")
    parser.add_argument("--variant", choices=FCN_VARIANTS, default="8s")
    parser.add_argument("--weights", default="auto",
                        help="auto, imagenet, none, or a .h5/.weights.h5 file")
    parser.add_argument("--upsampling", choices=UPSAMPLING_METHODS, default="transpose")
    parser.add_argument(
        "--fc-units", type=int, default=None,
        help="fc6/fc7 width (default: 4096, the paper's, with pretrained weights so that "
        "fc1/fc2 carry over; 1024 from random weights: a quarter of the compute, learns as well)",
    )
    parser.add_argument("--dropout", type=float, default=0.5, help="after fc6 and fc7")
    add_segmentation_flags(
        parser, frozen_epochs=2, finetune_epochs=6, finetune_learning_rate=1e-4
    )
    # The default run must finish within 15 minutes on a 2-core CPU: data,
    # evaluation, plots and export take about 30 s besides training.
    parser.set_defaults(max_train_minutes=14.0)
    return parser.parse_args(argv)


def main(argv=None):
    args = parse_args(argv)
    verbose = setup_run(args, f"fcn_{args.backbone}_{args.variant}")

    # Data: batched (images, masks) pipelines; the embedded shapes scenes by default.
    train, validation, class_names = load_segmentation_data(args)

    # Model: ImageNet weights when cached or downloadable, else random (with a warning).
    weights = None if args.weights.lower() == "none" else args.weights
    weights = resolve_weights(args.backbone, weights)
    with args.distribute_strategy.scope():  # --strategy: variables distributed at creation
        model = build_fcn(
            len(class_names),
            (args.image_size, args.image_size, 3),
            backbone=args.backbone,
            variant=args.variant,
            weights=weights,
            upsampling=args.upsampling,
            fc_units=args.fc_units or (4096 if weights is not None else 1024),
            dropout=args.dropout,
        )
    print(f"{model.name}: {model.count_params():,} parameters, backbone weights: {weights}")

    # Compile and fit: the new layers on the frozen backbone, then fine-tuning;
    # from random weights, one phase of --epochs. Each phase compiles anew.
    def compile_model(learning_rate):
        compile_segmenter(model, len(class_names), args.loss, learning_rate, args.jit_compile)

    started = time.time()
    history = fit_two_phase(
        model, args.backbone, train, validation, compile_model, args.output_dir,
        monitor="val_mean_iou", verbose=verbose,
        **two_phase_settings(args, pretrained=weights is not None, scratch_epochs=args.epochs),
    )

    # Report, plots and the export for TF Serving.
    summary = evaluate_segmenter(model, validation, class_names, time.time() - started)
    plot_segmentation_run(model, validation, class_names, history, args.output_dir)
    summary["export_path"] = export_image_model(model, args.export_dir)
    print(f"exported to {summary['export_path']}")
    write_json(os.path.join(args.output_dir, "summary.json"), summary)
    return summary


if __name__ == "__main__":
    run(main)
