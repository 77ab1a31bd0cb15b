"""Image classification by transfer learning: feature extraction, then fine-tuning.

Puts a new head (global average pooling, dropout, dense logits) on a VGG16 or
ResNet50 backbone. Phase 1 trains the head on the frozen backbone (feature
extraction); phase 2 unfreezes the backbone's last --finetune-blocks stages and
trains them with the head at a lower learning rate (fine-tuning), BatchNorm
kept in inference mode. The validation accuracy is printed after each phase.
With no arguments it trains on the embedded one-shape images (no download)
for at most 2.5 minutes (--max-train-minutes). Without ImageNet weights (an
offline machine) the backbone starts from random weights and the two phases
become one that trains everything; a 23-million-parameter network from random
weights learns little in minutes on a CPU (validation accuracy near chance,
25%), so pass --weights imagenet (or a weights file) for real transfer, or
--max-train-minutes 0 for no budget.

Run:
    python recipes/transfer_classifier.py               # embedded data, defaults below
    python recipes/transfer_classifier.py --smoke --export-dir /tmp/transfer
    python recipes/transfer_classifier.py --dataset oxford_flowers102 --image-size 224 \
        --weights imagenet --max-train-minutes 0 --frozen-epochs 5 --finetune-epochs 10

Writes to --output-dir (runs/transfer_<backbone>): best.weights.h5,
history.csv, history.png (training curves over both phases),
confusion_matrix.png, summary.json (accuracy after each phase, per-class
accuracy); and a SavedModel for TF Serving to <export-dir>/<next version>/
whose serving_default takes uint8 images and returns probabilities and
class_ids. Rerunning the same command after a crash skips finished phases and
resumes the interrupted one.
"""

import os
import time

from kerasvision.backbones import BACKBONES, resolve_weights
from kerasvision.export import export_image_model
from kerasvision.models.classifier import (
    build_transfer_classifier,
    check_finetune_blocks,
    freeze_batch_norm,
)
from kerasvision.tasks.classification import (
    add_classification_flags,
    build_augmenter,
    compile_classifier,
    evaluate_classifier,
    load_classification_data,
    plot_classification_run,
    print_phase_accuracies,
)
from kerasvision.tasks.cli import recipe_parser, run, setup_run
from kerasvision.tasks.runs import two_phase_settings, write_json
from kerasvision.training import fit_two_phase


def parse_args(argv):
    parser = recipe_parser(
        __doc__,
        image_size=32,  # the embedded shapes' size; use 224 for ImageNet-sized data
        batch_size=16,  # more steps per epoch: a random-init ResNet50 needs steps, not images
        learning_rate=1e-4,  # the new head, or the whole net from random weights (1e-3 diverged)
    )
    parser.add_argument("--backbone", choices=sorted(BACKBONES), default="resnet50",
                        help="resnet50: its BatchNorm lets a random backbone train (offline)")
    parser.add_argument("--weights", default="auto",
                        help="auto, imagenet, none, or a .h5/.weights.h5 file")
    parser.add_argument("--dropout", type=float, default=0.2, help="before the dense head")
    parser.add_argument("--frozen-epochs", type=int, default=2,
                        help="feature extraction epochs (learning rate: --learning-rate)")
    parser.add_argument("--finetune-epochs", type=int, default=4, help="fine-tuning epochs")
    parser.add_argument("--finetune-learning-rate", type=float, default=1e-5,
                        help="learning rate while fine-tuning (lower: keeps pretrained features)")
    parser.add_argument("--finetune-blocks", type=int, default=2,
                        help="backbone stages unfrozen for fine-tuning (of 5)")
    add_classification_flags(parser)
    # The default run must end within 5 minutes on 2 shared CPU cores: 1024
    # shapes (64 steps of 16) per epoch, and training stopped after 2.5 minutes
    # (start-up, the cut epoch's validation, evaluation and export take the rest).
    parser.set_defaults(num_train=1024, num_val=512, max_train_minutes=2.5)
    return parser.parse_args(argv)


def main(argv=None):
    args = parse_args(argv)
    check_finetune_blocks(args.backbone, args.finetune_blocks)
    verbose = setup_run(args, f"transfer_{args.backbone}")

    # Data: batched (images, labels) pipelines; the embedded one-shape images by default.
    train, validation, class_names = load_classification_data(args, augmenter=build_augmenter(args))

    # Model: a pretrained backbone (ImageNet when cached or downloadable) and a new head.
    weights = None if args.weights.lower() == "none" else args.weights
    weights = resolve_weights(args.backbone, weights)
    pretrained = weights is not None
    with args.distribute_strategy.scope():  # --strategy: variables distributed at creation
        model = build_transfer_classifier(
            args.backbone,
            len(class_names),
            (args.image_size, args.image_size, 3),
            weights=weights,
            mode="feature_extraction",
            finetune_blocks=args.finetune_blocks,
            dropout=args.dropout,
        )
    print(f"{model.name}: {model.count_params():,} parameters, backbone weights: {weights}")
    if not pretrained and args.max_train_minutes:
        print(f"note: no pretrained weights; {args.max_train_minutes} min of training from random "
              "weights gives near-chance accuracy (see --weights, --max-train-minutes)")

    # Compile and fit: feature extraction (frozen backbone), then fine-tuning of
    # its last --finetune-blocks stages at a lower rate. Each phase compiles anew.
    def compile_model(learning_rate):
        if pretrained:  # pretrained BatchNorm keeps its statistics while fine-tuning
            freeze_batch_norm(model.get_layer("backbone"))
        compile_classifier(model, learning_rate, args.jit_compile)

    settings = two_phase_settings(args, pretrained, scratch_epochs=args.frozen_epochs
                                  + args.finetune_epochs, smoke_epochs=(1, 1))
    started = time.time()
    history = fit_two_phase(model, args.backbone, train, validation, compile_model,
                            args.output_dir, monitor="val_accuracy", verbose=verbose, **settings)

    # Report, plots and the export for TF Serving (uint8 images -> probabilities).
    train_seconds = time.time() - started
    phases = ([("feature_extraction", settings["frozen_epochs"]),
               ("fine_tuning", settings["finetune_epochs"])]
              if pretrained else [("scratch", settings["frozen_epochs"])])
    after_phase = print_phase_accuracies(history, phases)
    summary = evaluate_classifier(model, validation, class_names, train_seconds)
    summary["accuracy_after_phase"] = after_phase
    plot_classification_run(summary, class_names, history, args.output_dir)
    summary["export_path"] = export_image_model(model, args.export_dir, outputs="logits")
    print(f"exported to {summary['export_path']}")
    write_json(os.path.join(args.output_dir, "summary.json"), summary)
    return summary


if __name__ == "__main__":
    run(main)
