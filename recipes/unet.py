"""U-Net semantic segmentation, from scratch or on a pretrained encoder.

Trains a U-Net (Ronneberger et al. 2015) on the embedded synthetic shapes
dataset by default: from scratch (the paper's encoder) unless --backbone names
a VGG16 or ResNet50 encoder, which then trains in two phases like
fcn_transfer.py (frozen encoder, then fine-tuning).

Run:
    python recipes/unet.py
    python recipes/unet.py --backbone resnet50 --weights imagenet --image-size 128
    python recipes/unet.py --smoke --export-dir /tmp/unet

Writes to --output-dir (runs/unet[_<backbone>]): best.weights.h5, history.csv,
history.png, predictions.png, summary.json; and a SavedModel for TF Serving to
<export-dir>/<next version>/. Rerunning after a crash resumes.
"""

import os
import time

from kerasvision.backbones import BACKBONES, resolve_weights
from kerasvision.export import export_image_model
from kerasvision.layers import UPSAMPLING_METHODS
from kerasvision.models.unet import build_unet
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
    parser = recipe_parser(__doc__, image_size=64, batch_size=16, learning_rate=1e-3)
    parser.add_argument("--backbone", choices=sorted(BACKBONES), default=None,
                        help="pretrained encoder (default: the paper's, from scratch)")
    parser.add_argument("--weights", default="auto",
                        help="encoder weights: auto, imagenet, none, or a .h5/.weights.h5 file")
    parser.add_argument("--depth", type=int, default=4, help="poolings of the scratch encoder")
    parser.add_argument("--filters", type=int, default=16, help="first stage width (paper: 64)")
    parser.add_argument("--upsampling", choices=UPSAMPLING_METHODS, default="transpose")
    add_segmentation_flags(parser, frozen_epochs=2, finetune_epochs=8, finetune_learning_rate=1e-4)
    return parser.parse_args(argv)


def main(argv=None):
    args = parse_args(argv)
    verbose = setup_run(args, f"unet_{args.backbone}" if args.backbone else "unet")

    # Data: batched (images, masks) pipelines; the embedded shapes scenes by default.
    train, validation, class_names = load_segmentation_data(args)

    # Model: the paper's encoder from scratch, or a VGG16/ResNet50 encoder.
    weights = None
    if args.backbone:
        weights = resolve_weights(args.backbone,
                                  None if args.weights.lower() == "none" else args.weights)
    with args.distribute_strategy.scope():  # --strategy: variables distributed at creation
        model = build_unet(
            len(class_names),
            (args.image_size, args.image_size, 3),
            backbone=args.backbone,
            weights=weights,
            depth=args.depth,
            filters=args.filters,
            upsampling=args.upsampling,
        )
    print(f"{model.name}: {model.count_params():,} parameters")

    # Compile and fit: a pretrained encoder trains frozen, then fine-tuned;
    # otherwise one phase of --epochs. Each phase compiles anew.
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
