"""What every task flow shares: the two-phase schedule's flags, run summaries, verbosity."""

import json
import sys


def two_phase_settings(args, pretrained, scratch_epochs, smoke_epochs=(1, 0)):
    """The keyword arguments of `fit_two_phase` that a recipe's flags set.

    Args:
        args: parsed flags (`recipe_parser` with a task's flags: `--frozen-epochs`,
            `--finetune-epochs`, `--finetune-learning-rate`, `--finetune-blocks`,
            and optionally `--lr-schedule`, `--decay-fraction`).
        pretrained: bool, whether the backbone holds pretrained weights (two
            phases) or not (one phase that trains everything).
        scratch_epochs: int, epochs of that single phase.
        smoke_epochs: `(frozen, finetune)` epochs under `--smoke` (two steps each).

    Returns:
        dict of `fit_two_phase` keyword arguments: epochs and learning rate of
        each phase, `finetune_blocks`, `pretrained`, `steps_per_epoch`,
        `max_minutes`, `schedule`, `decay_fraction`.
    """
    if args.smoke:
        frozen, finetune = smoke_epochs
    elif pretrained:
        frozen, finetune = args.frozen_epochs, args.finetune_epochs
    else:  # nothing pretrained to freeze: one phase of full training
        frozen, finetune = scratch_epochs, 0
    return {
        "frozen_epochs": frozen,
        "finetune_epochs": finetune,
        "frozen_learning_rate": args.learning_rate,
        "finetune_learning_rate": args.finetune_learning_rate,
        "finetune_blocks": args.finetune_blocks,
        "pretrained": pretrained,
        "steps_per_epoch": 2 if args.smoke else None,
        "max_minutes": args.max_train_minutes,
        "schedule": getattr(args, "lr_schedule", "constant"),
        "decay_fraction": getattr(args, "decay_fraction", 1.0),
    }


def image_counts(args, smoke_images):
    """`(training, validation)` image counts of the embedded data: `--num-train`,
    `--num-val` (None: the loader's default), or `smoke_images` each under `--smoke`."""
    return (smoke_images, smoke_images) if args.smoke else (args.num_train, args.num_val)


def write_json(path, payload):
    """Writes `payload` as indented JSON (for run summaries)."""
    with open(path, "w") as handle:
        json.dump(payload, handle, indent=2, default=float)
    return path


def default_verbose():
    """`fit` verbosity: the progress bar on a terminal, one line per epoch in logs (CI)."""
    return 1 if sys.stdout.isatty() else 2
