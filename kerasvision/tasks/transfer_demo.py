"""The offline transfer demo: make pretrained weights on a source task, then transfer them.

Transfer learning needs a backbone trained on something else. Without the
ImageNet file (an offline machine, `weights="auto"` resolving to None),
`recipes/transfer_classifier.py` makes one on the embedded data, in the way
ImageNet weights were made, only smaller:

1. Source task: which of the four shapes a cluttered scene holds (multi-label
   presence on the multi-object scenes, `kerasvision.data.shapes.
   make_shapes_presence`), with plenty of labels. It differs from the target
   (one centred shape per image, one label) in clutter, scale, occlusion and
   the kind of answer, yet needs the same features: edges, corners and the
   outlines that tell a disk from a square. A presence label is free (read
   from the scene's mask), as web-scale labels are cheap for ImageNet, while
   the target has few labelled images.
   Why not another source: classifying single shapes at other scales is the
   target task in disguise and would show little; colour or position tasks
   learn features the target does not need (colours are random per shape).
2. The source backbone is saved as a headless weights file
   (`save_backbone_weights`), the format `--weights PATH` reads.
3. The target is trained from that file through the same `--weights PATH`
   code as a user's own weights: feature extraction, then fine-tuning.
4. The same target training from random weights, at the same budget (epochs,
   images, minutes), gives the accuracy without transfer.

Measured (2 shared CPU cores, 2026-12-07): with ResNet50 the flow took 4
minutes, but ResNet50 from random weights did not learn the source in the
one epoch of 8192 scenes it had (presence accuracy 0.58, the all-absent
rate), so the target reached 0.27 with the transferred weights and 0.26
without; ResNet50, VGG16 and MobileNetV2 from random weights at 32 px all
stayed near chance for their first 64-128 steps. Hence `--backbone auto`:
offline it takes "shapes_cnn" (`kerasvision.backbones.build_shapes_cnn`),
which learns from random weights. The no-argument run then took 67 s
(AMX CPU, mixed_bfloat16): source presence accuracy 0.65, 0.76, 0.89 over
3 epochs (44 s); target 0.97 with the transferred weights (per epoch 0.39,
0.71 frozen; 0.97, 0.95, 0.94 fine-tuning; the best is kept) against 0.41
without (0.28, 0.29, 0.33, 0.31, 0.41), each in about 7 s of training.
"""

import os
import time

import keras

from kerasvision import kernels
from kerasvision.backbones import (
    BACKBONES,
    imagenet_weights_available,
    keras_cache_dir,
    resolve_weights,
)
from kerasvision.data.pipelines import make_classification_pipeline
from kerasvision.data.shapes import load_shapes_presence
from kerasvision.models.classifier import (
    build_transfer_classifier,
    save_backbone_weights,
    set_batch_norm_momentum,
)
from kerasvision.tasks.classification import (
    SMOKE_IMAGES,
    compile_classifier,
    evaluate_classifier,
    fit_classifier,
)
from kerasvision.training import fit_two_phase, resolve_jit_compile

SOURCE_PRETRAINING = ("auto", "off")
# `--backbone auto`: ResNet50 where its ImageNet weights resolve; otherwise the
# small CNN, which learns from random weights within the default budget, where
# ResNet50 stays near chance (the module docstring's measurements).
PRETRAINED_BACKBONE = "resnet50"
SCRATCH_BACKBONE = "shapes_cnn"
BACKBONE_CHOICES = ("auto", *sorted(BACKBONES))
SOURCE_VALIDATION_IMAGES = 512
# A backbone trained from random weights for a few hundred steps: its BatchNorm
# moving statistics must follow the weights (`set_batch_norm_momentum`).
SCRATCH_BATCH_NORM_MOMENTUM = 0.9


def add_source_flags(parser, source_images, source_epochs, source_learning_rate,
                     source_minutes):
    """Adds the source-pretraining flags of the offline transfer demo to a `recipe_parser`.

    Args:
        parser: the recipe's parser.
        source_images, source_epochs, source_learning_rate, source_minutes: their defaults.
    """
    group = parser.add_argument_group("source pretraining (without pretrained weights)")
    group.add_argument(
        "--source-pretraining", choices=SOURCE_PRETRAINING, default="auto",
        help="auto: when --weights resolves to none on --dataset shapes, pretrain the backbone "
        "on the shapes-presence scenes, save it and transfer from that file; off: train from "
        "random weights")
    group.add_argument("--source-images", type=int, default=source_images,
                       help="source scenes (free labels: many, each seen once per epoch)")
    group.add_argument("--source-epochs", type=int, default=source_epochs,
                       help="source pretraining epochs (at most; see --source-minutes)")
    group.add_argument("--source-minutes", type=float, default=source_minutes,
                       help="wall-clock cap on source pretraining (0: none); the cut epoch "
                       "still validates")
    group.add_argument("--source-learning-rate", type=float, default=source_learning_rate,
                       help="Adam rate from random weights (source, and the no-transfer baseline)")
    return parser


def check_source_args(args):
    """Validates the source flags; raises ValueError naming the flag."""
    for flag in ("source_images", "source_epochs"):
        value = getattr(args, flag)
        if value < 1:
            raise ValueError(f"--{flag.replace('_', '-')} must be >= 1; received {value}.")
    if not args.source_learning_rate > 0:  # also rejects nan
        raise ValueError(
            f"--source-learning-rate must be > 0; received {args.source_learning_rate}.")
    if not args.source_minutes >= 0:  # also rejects nan
        raise ValueError(
            f"--source-minutes must be >= 0 (0: no limit); received {args.source_minutes}.")


def choose_backbone(backbone, weights):
    """Resolves `--backbone auto` and prints one line saying which backbone and why.

    "auto" becomes `PRETRAINED_BACKBONE` ("resnet50") when its ImageNet
    weights are cached or downloadable (`--weights auto`, checked as
    `resolve_weights` does, without downloading) or asked for (`--weights
    imagenet`), or when `--weights` is a file (ResNet50 was this recipe's
    default before "auto", so files made for it keep loading; pass
    `--backbone` for a file of another network); otherwise `SCRATCH_BACKBONE` ("shapes_cnn"), which learns from random
    weights within the default budget.

    Args:
        backbone: str, the `--backbone` flag: "auto" or a registered name
            (returned unchanged, silently).
        weights: str, the `--weights` flag: "auto", "imagenet", "none" or a path.

    Returns:
        str, a registered backbone name.
    """
    if backbone != "auto":
        return backbone
    choice = weights.lower() if weights.lower() in ("auto", "imagenet", "none") else "file"
    if choice == "auto" and imagenet_weights_available(PRETRAINED_BACKBONE):
        name, reason = PRETRAINED_BACKBONE, "its ImageNet weights are cached or downloadable"
    elif choice == "auto":
        name, reason = SCRATCH_BACKBONE, (
            f"no ImageNet weights of {PRETRAINED_BACKBONE} (not in {keras_cache_dir()} and no "
            "network); it learns from random weights within the budget")
    elif choice == "none":
        name, reason = SCRATCH_BACKBONE, "--weights none: it learns from random weights"
    else:
        name, reason = PRETRAINED_BACKBONE, (
            "a --weights file, read as resnet50's; pass --backbone for another network")
    print(f"backbone: {name} (--backbone auto: {reason})")
    return name


def resolve_target_weights(args):
    """`--weights` resolved for the target model (`resolve_weights`), without a misleading warning.

    When `--weights auto` finds no ImageNet file and the run will pretrain its
    own backbone (`wants_source_pretraining`), returns None without the
    warning of `resolve_weights`, "training from random initialisation": the
    target then trains from the source weights, as `pretrain_source_backbone`
    says.

    Args:
        args: parsed flags of the transfer recipe (`--backbone` already chosen).

    Returns:
        "imagenet", None or a weights file.
    """
    weights = None if args.weights.lower() == "none" else args.weights
    if weights == "auto" and wants_source_pretraining(args, None):
        return "imagenet" if imagenet_weights_available(args.backbone) else None
    return resolve_weights(args.backbone, weights)


def wants_source_pretraining(args, weights):
    """Whether the run makes its own pretrained weights.

    True for `--source-pretraining auto` when `--weights auto` found no
    pretrained weights (`weights`, resolved, is None) and the target is the
    embedded shapes. `--weights none` asks for random weights: no source.
    """
    return (args.source_pretraining == "auto" and str(args.weights).lower() == "auto"
            and weights is None and args.dataset == "shapes")


def pretrain_source_backbone(args, verbose=2):
    """Trains the backbone from random weights on the source task and saves it.

    The source model is `build_transfer_classifier` with every stage trainable
    and 4 sigmoid outputs (one per shape: present or not), trained with binary
    cross-entropy; its `accuracy` is the share of right present/absent answers.
    Rerunning after a finished source phase reuses its file.

    Args:
        args: parsed flags of the transfer recipe (`add_source_flags`).
        verbose: `fit` verbosity.

    Returns:
        `(path, summary)`: the headless weights file (`<output_dir>/source/
        backbone.weights.h5`) and a dict with the source task, its image count,
        per-epoch validation accuracy and training seconds.
    """
    run_dir = os.path.join(args.output_dir, "source")
    os.makedirs(run_dir, exist_ok=True)
    path = os.path.join(run_dir, "backbone.weights.h5")
    summary = {"task": "shapes_presence", "images": args.source_images}
    if os.path.exists(path):
        print(f"source pretraining: reusing {path}")
        return path, summary
    num_train, num_val = (SMOKE_IMAGES, SMOKE_IMAGES) if args.smoke else (
        args.source_images, SOURCE_VALIDATION_IMAGES)
    train = load_shapes_presence("train", num_train, args.image_size, seed=args.seed)
    validation = load_shapes_presence("validation", num_val, args.image_size, seed=args.seed)
    train = make_classification_pipeline(train, args.batch_size, training=True, seed=args.seed)
    validation = make_classification_pipeline(validation, args.batch_size, training=False)
    with args.distribute_strategy.scope():
        model = build_transfer_classifier(
            args.backbone, 4, (args.image_size, args.image_size, 3), weights=None,
            mode="fine_tuning", dropout=0.0, name=f"{args.backbone}_source")
        set_batch_norm_momentum(model, SCRATCH_BATCH_NORM_MOMENTUM)
        model.compile(
            optimizer=kernels.adam(args.source_learning_rate),
            loss=keras.losses.BinaryCrossentropy(from_logits=True),
            # threshold 0 on logits: present when the probability is above 0.5
            metrics=[keras.metrics.BinaryAccuracy(name="accuracy", threshold=0.0)],
            jit_compile=resolve_jit_compile(args.jit_compile),
        )
    print(f"source pretraining: {num_train} presence scenes, at most {args.source_epochs} "
          f"epoch(s) and {args.source_minutes or 'unlimited'} min, {args.backbone} from "
          "random weights")
    started = time.time()
    history = fit_classifier(model, train, validation, run_dir, args.source_epochs,
                             verbose=verbose, steps_per_epoch=2 if args.smoke else None,
                             max_minutes=args.source_minutes or None)
    summary["val_accuracy"] = history.get("val_accuracy", [])
    summary["train_seconds"] = time.time() - started
    save_backbone_weights(model, args.backbone, path)
    print(f"source backbone saved to {path}")
    return path, summary


def train_without_transfer(args, train, validation, class_names, settings, verbose=2):
    """The baseline: the same target training from random weights, at the same budget.

    Same data, batch size, epochs (`frozen_epochs + finetune_epochs`, one
    phase that trains everything) and `max_minutes` as the transferred run;
    the learning rate is `--source-learning-rate`, the one that trains this
    backbone from random weights.

    Args:
        args: parsed flags of the transfer recipe.
        train, validation: the target's batched datasets.
        class_names: tuple of str.
        settings: the transferred run's `fit_two_phase` keyword arguments.
        verbose: `fit` verbosity.

    Returns:
        dict: `accuracy` (validation), `val_accuracy` per epoch, `train_seconds`.
    """
    run_dir = os.path.join(args.output_dir, "without_transfer")
    os.makedirs(run_dir, exist_ok=True)
    with args.distribute_strategy.scope():
        model = build_transfer_classifier(
            args.backbone, len(class_names), (args.image_size, args.image_size, 3),
            weights=None, finetune_blocks=args.finetune_blocks, dropout=args.dropout,
            name=f"{args.backbone}_without_transfer")
    set_batch_norm_momentum(model, SCRATCH_BATCH_NORM_MOMENTUM)
    settings = dict(settings, pretrained=False, frozen_learning_rate=args.source_learning_rate)
    print("without transfer: the same target training from random weights")
    started = time.time()
    history = fit_two_phase(
        model, args.backbone, train, validation,
        lambda rate: compile_classifier(model, rate, args.jit_compile),
        run_dir, monitor="val_accuracy", verbose=verbose, **settings)
    seconds = time.time() - started
    summary = evaluate_classifier(model, validation, class_names, seconds)
    return {"accuracy": summary["accuracy"], "val_accuracy": history.get("val_accuracy", []),
            "train_seconds": seconds}


__all__ = [
    "BACKBONE_CHOICES",
    "PRETRAINED_BACKBONE",
    "SCRATCH_BACKBONE",
    "SOURCE_PRETRAINING",
    "add_source_flags",
    "check_source_args",
    "choose_backbone",
    "pretrain_source_backbone",
    "resolve_target_weights",
    "train_without_transfer",
    "wants_source_pretraining",
]
