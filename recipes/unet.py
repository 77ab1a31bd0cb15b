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
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from kerasvision.backbones import BACKBONES, resolve_weights  # noqa: E402
from kerasvision.cli import recipe_parser, run, setup_run  # noqa: E402
from kerasvision.layers import UPSAMPLING_METHODS  # noqa: E402
from kerasvision.models.unet import build_unet  # noqa: E402
from kerasvision.segmentation import (  # noqa: E402
    add_segmentation_flags,
    load_segmentation_data,
    train_segmenter,
)


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
    weights = None
    if args.backbone:
        weights = None if str(args.weights).lower() == "none" else args.weights
        weights = resolve_weights(args.backbone, weights)
    train, validation, class_names = load_segmentation_data(args)
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
    return train_segmenter(
        model, args, train, validation, class_names, args.backbone, weights is not None, verbose
    )


if __name__ == "__main__":
    run(main)
