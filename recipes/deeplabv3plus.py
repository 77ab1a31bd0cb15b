"""DeepLabV3+ semantic segmentation: atrous convolution, ASPP and a light decoder.

Trains DeepLabV3+ (Chen et al. 2018) on the embedded synthetic shapes dataset
by default, with a small encoder from scratch whose last stage is atrous
(output stride 8), so that it trains in minutes on a CPU. --backbone resnet50
or vgg16 uses that network's stride-16 features instead and trains in two
phases like fcn_transfer.py (frozen encoder, then fine-tuning).

The paper's atrous rates (6, 12, 18) suit 33x33 feature maps (513x513 crops
at output stride 16); the default --atrous-rates 2,4,6 suit the 8x8 maps of
64x64 images at output stride 8. With no arguments (449K parameters, ASPP
and decoder 128 wide instead of 256; Adam peaking at 2e-3, decayed along a
cosine to the end of the 12-minute budget) it reached validation mIoU 0.80
after 17 epochs (3.6 minutes) and 0.886 after 59 epochs in 12.2 minutes
(2026-12-07, 2-core Intel Xeon with AMX, mixed_bfloat16).

Run:
    python recipes/deeplabv3plus.py
    python recipes/deeplabv3plus.py --backbone resnet50 --weights imagenet --image-size 128
    python recipes/deeplabv3plus.py --smoke --export-dir /tmp/deeplab

Writes to --output-dir (runs/deeplabv3plus[_<backbone>]): best.weights.h5,
history.csv, history.png, predictions.png, summary.json; and a SavedModel for
TF Serving to <export-dir>/<next version>/. Rerunning after a crash resumes.
"""

import argparse
import os
import time

from kerasvision.backbones import BACKBONES, resolve_weights
from kerasvision.export import export_image_model
from kerasvision.models.deeplab import (
    DEFAULT_ENCODER_FILTERS,
    OUTPUT_STRIDES,
    build_deeplabv3plus,
)
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


def _positive_integers(text):
    try:
        values = tuple(int(part) for part in text.split(","))
    except ValueError:
        values = ()
    if not values or min(values) < 1:
        raise argparse.ArgumentTypeError(
            f"must be comma-separated integers >= 1 (e.g. 2,4,6); received {text!r}."
        )
    return values


def parse_args(argv):
    parser = recipe_parser(
        __doc__, image_size=64, batch_size=16, learning_rate=2e-3,
        epochs=100,  # the time budget below ends training first; the rate decays to it
        max_train_minutes=12.0,  # the no-argument run ends within 15 minutes on 2 cores
    )
    parser.add_argument("--backbone", choices=sorted(BACKBONES), default=None,
                        help="pretrained encoder at output stride 16 (default: the small "
                        "scratch encoder)")
    parser.add_argument("--weights", default="auto",
                        help="encoder weights: auto, imagenet, none, or a .h5/.weights.h5 file")
    parser.add_argument("--output-stride", type=int, choices=OUTPUT_STRIDES, default=None,
                        help="encoder output stride (default: 8 from scratch, 16 on a backbone)")
    parser.add_argument("--atrous-rates", type=_positive_integers, default=(2, 4, 6),
                        help="comma-separated ASPP rates (paper: 6,12,18 at stride 16)")
    parser.add_argument("--encoder-filters", type=_positive_integers, default=DEFAULT_ENCODER_FILTERS,
                        help="widths of the scratch encoder's 4 stages (strides 2, 4, 8, 16)")
    parser.add_argument("--aspp-filters", type=int, default=128, help="ASPP width (paper: 256)")
    parser.add_argument("--decoder-filters", type=int, default=128,
                        help="decoder width (paper: 256)")
    add_segmentation_flags(parser, frozen_epochs=2, finetune_epochs=8, finetune_learning_rate=1e-4)
    return parser.parse_args(argv)


def main(argv=None):
    args = parse_args(argv)
    verbose = setup_run(args, f"deeplabv3plus_{args.backbone}" if args.backbone else "deeplabv3plus")

    # Data: batched (images, masks) pipelines; the embedded shapes scenes by default.
    train, validation, class_names = load_segmentation_data(args)

    # Model: the scratch encoder, or a VGG16/ResNet50 encoder cut at stride 16.
    weights = None
    if args.backbone:
        weights = resolve_weights(args.backbone,
                                  None if args.weights.lower() == "none" else args.weights)
    output_stride = args.output_stride or (16 if args.backbone else 8)
    with args.distribute_strategy.scope():  # --strategy: variables distributed at creation
        model = build_deeplabv3plus(
            len(class_names),
            (args.image_size, args.image_size, 3),
            backbone=args.backbone,
            weights=weights,
            output_stride=output_stride,
            aspp_filters=args.aspp_filters,
            atrous_rates=args.atrous_rates,
            decoder_filters=args.decoder_filters,
            encoder_filters=args.encoder_filters,
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
