"""Image classification by transfer learning: feature extraction, then fine-tuning.

Puts a new head (global average pooling, dropout, dense logits) on a
backbone: --backbone auto takes ResNet50 when its ImageNet weights are cached
or downloadable, else shapes_cnn, a small CNN that learns from random weights
in a minute. Phase 1 trains the head on the frozen backbone (feature
extraction); phase 2 unfreezes its last --finetune-blocks stages and trains
them with the head at a lower learning rate (fine-tuning), BatchNorm frozen.

Offline (--weights auto finds no ImageNet file) on the embedded shapes, the
recipe first makes its own pretrained weights, as ImageNet's were made: it
trains the backbone from random weights on a source task with many free
labels (which shapes a cluttered scene holds), saves it to
<output-dir>/source/backbone.weights.h5 and transfers from that file, through
the same code as --weights PATH, to a target with few labels (--num-train
one-shape images), then trains the same target from random weights at the
same budget and prints both accuracies. --source-pretraining off skips this.

Run:
    python recipes/transfer_classifier.py               # embedded data, defaults below
    python recipes/transfer_classifier.py --smoke --export-dir /tmp/transfer
    python recipes/transfer_classifier.py --dataset oxford_flowers102 --image-size 224 \
        --weights imagenet --max-train-minutes 0 --frozen-epochs 5 --finetune-epochs 10

Writes to --output-dir (runs/transfer_<backbone>): best.weights.h5, history.csv,
history.png, confusion_matrix.png, summary.json (accuracy after each phase, per
class, with and without transfer), source/ and without_transfer/; and a
SavedModel (uint8 images -> probabilities, class_ids) to <export-dir>/<version>/.
Rerunning the same command after a crash skips finished phases.
"""

import os
import time

from kerasvision.export import export_image_model
from kerasvision.models.classifier import (
    build_transfer_classifier,
    check_finetune_blocks,
    freeze_batch_norm,
)
from kerasvision.tasks import transfer_demo
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
        batch_size=32,  # measured: random backbones learned sooner than at 64 (more steps)
        learning_rate=1e-3,  # the new head on a frozen backbone
    )
    parser.add_argument("--backbone", choices=transfer_demo.BACKBONE_CHOICES, default="auto",
                        help="auto: resnet50 with ImageNet weights, else shapes_cnn (offline)")
    parser.add_argument("--weights", default="auto",
                        help="auto, imagenet, none, or a .h5/.weights.h5 file")
    parser.add_argument("--dropout", type=float, default=0.2, help="before the dense head")
    parser.add_argument("--frozen-epochs", type=int, default=2,
                        help="feature extraction epochs (learning rate: --learning-rate)")
    parser.add_argument("--finetune-epochs", type=int, default=3, help="fine-tuning epochs")
    parser.add_argument("--finetune-learning-rate", type=float, default=3e-4,
                        help="learning rate while fine-tuning (lower: keeps pretrained features)")
    parser.add_argument("--finetune-blocks", type=int, default=3,
                        help="backbone stages unfrozen for fine-tuning (of 5)")
    add_classification_flags(parser)
    transfer_demo.add_source_flags(
        parser, source_epochs=3,  # of fresh scenes, below; a small CNN learns them in 3
        source_images=8192,  # free labels: many, so that no scene is memorised
        source_learning_rate=1e-3,  # Adam from random weights (measured)
        source_minutes=1.5,  # the source's share of the 5-minute default run
    )
    # The default run ends within 5 minutes on 2 shared CPU cores: few target labels (512,
    # where transfer matters), each target training (with and without) stopped at 1 minute.
    parser.set_defaults(num_train=512, num_val=512, max_train_minutes=1.0)
    return parser.parse_args(argv)


def main(argv=None):
    args = parse_args(argv)
    transfer_demo.check_source_args(args)
    args.backbone = transfer_demo.choose_backbone(args.backbone, args.weights)
    check_finetune_blocks(args.backbone, args.finetune_blocks)
    verbose = setup_run(args, f"transfer_{args.backbone}")

    # Data: batched (images, labels) pipelines; the embedded one-shape images by default.
    train, validation, class_names = load_classification_data(args, augmenter=build_augmenter(args))

    # Weights: ImageNet when cached or downloadable; offline, our own, from the source task.
    weights = transfer_demo.resolve_target_weights(args)
    source = None
    if transfer_demo.wants_source_pretraining(args, weights):
        weights, source = transfer_demo.pretrain_source_backbone(args, verbose)
    pretrained = weights is not None

    # Model: the (pre)trained backbone and a new head.
    with args.distribute_strategy.scope():  # --strategy: variables distributed at creation
        model = build_transfer_classifier(
            args.backbone, len(class_names), (args.image_size, args.image_size, 3),
            weights=weights, mode="feature_extraction", finetune_blocks=args.finetune_blocks,
            dropout=args.dropout)
    print(f"{model.name}: {model.count_params():,} parameters, backbone weights: {weights}")

    # Compile and fit: feature extraction, then fine-tuning of the last --finetune-blocks stages.
    def compile_model(learning_rate):
        if pretrained:  # pretrained BatchNorm keeps its statistics while fine-tuning
            freeze_batch_norm(model.get_layer("backbone"))
        compile_classifier(model, learning_rate, args.jit_compile)

    settings = two_phase_settings(args, pretrained, scratch_epochs=args.frozen_epochs
                                  + args.finetune_epochs, smoke_epochs=(1, 1))
    started = time.time()
    history = fit_two_phase(model, args.backbone, train, validation, compile_model,
                            args.output_dir, monitor="val_accuracy", verbose=verbose, **settings)

    # Report: accuracy after each phase, per class, and (demo) without transfer.
    train_seconds = time.time() - started
    phases = ([("feature_extraction", settings["frozen_epochs"]),
               ("fine_tuning", settings["finetune_epochs"])]
              if pretrained else [("scratch", settings["frozen_epochs"])])
    after_phase = print_phase_accuracies(history, phases)
    summary = evaluate_classifier(model, validation, class_names, train_seconds)
    summary["accuracy_after_phase"] = after_phase
    if source is not None:
        without = transfer_demo.train_without_transfer(args, train, validation, class_names,
                                                       settings, verbose)
        summary["source"], summary["without_transfer"] = source, without
        print(f"validation accuracy with transferred weights {summary['accuracy']:.4f}, "
              f"without (random weights, same budget) {without['accuracy']:.4f}")

    # Plots and the export for TF Serving (uint8 images -> probabilities).
    plot_classification_run(summary, class_names, history, args.output_dir)
    summary["export_path"] = export_image_model(model, args.export_dir, outputs="logits")
    print(f"exported to {summary['export_path']}")
    write_json(os.path.join(args.output_dir, "summary.json"), summary)
    return summary


if __name__ == "__main__":
    run(main)
