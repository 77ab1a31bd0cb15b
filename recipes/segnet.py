"""SegNet semantic segmentation: a decoder that unpools with the encoder's max-pooling indices.

Trains a SegNet (Badrinarayanan et al. 2017) on the embedded synthetic shapes
dataset. By default the encoder is VGG16's layout trained from scratch at a
quarter of its width (--filters 16), so it trains on a CPU in minutes;
--backbone vgg16 uses the registry's VGG16 (ImageNet weights when available)
and trains in two phases like fcn_transfer.py (frozen encoder, then
fine-tuning).

Run:
    python recipes/segnet.py
    python recipes/segnet.py --backbone vgg16 --weights imagenet --image-size 128
    python recipes/segnet.py --smoke --export-dir /tmp/segnet

Writes to --output-dir (runs/segnet[_vgg16]): best.weights.h5, history.csv,
history.png, predictions.png, summary.json; and a SavedModel for TF Serving to
<export-dir>/<next version>/. Rerunning after a crash resumes.
"""

import os
import time

from kerasvision.backbones import resolve_weights
from kerasvision.export import export_image_model
from kerasvision.models.segnet import SEGNET_BACKBONES, build_segnet
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
    parser = recipe_parser(__doc__, image_size=64, batch_size=16, learning_rate=1e-3, epochs=15)
    parser.add_argument("--backbone", choices=SEGNET_BACKBONES, default=None,
                        help="pretrained encoder (default: VGG16's layout from scratch)")
    parser.add_argument("--weights", default="auto",
                        help="encoder weights: auto, imagenet, none, or a .h5/.weights.h5 file")
    parser.add_argument("--filters", type=int, default=16,
                        help="first stage width of the scratch encoder (VGG16: 64)")
    add_segmentation_flags(parser, frozen_epochs=2, finetune_epochs=8, finetune_learning_rate=1e-4)
    return parser.parse_args(argv)


def main(argv=None):
    args = parse_args(argv)
    verbose = setup_run(args, f"segnet_{args.backbone}" if args.backbone else "segnet")

    # Data: batched (images, masks) pipelines; the embedded shapes scenes by default.
    train, validation, class_names = load_segmentation_data(args)

    # Model: VGG16's layout from scratch, or the registry's VGG16 encoder.
    weights = None
    if args.backbone:
        weights = resolve_weights(args.backbone,
                                  None if args.weights.lower() == "none" else args.weights)
    with args.distribute_strategy.scope():  # --strategy: variables distributed at creation
        model = build_segnet(
            len(class_names),
            (args.image_size, args.image_size, 3),
            backbone=args.backbone,
            weights=weights,
            filters=args.filters,
        )
    print(f"{model.name}: {model.count_params():,} parameters")

    # Compile and fit. The argmax pooling has no XLA kernel, so XLA stays off
    # whatever --jit-compile says.
    if args.jit_compile == "true":
        print("--jit-compile true ignored: MaxPoolWithArgmax has no XLA kernel")

    def compile_model(learning_rate):
        compile_segmenter(model, len(class_names), args.loss, learning_rate, jit_compile=False)

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
