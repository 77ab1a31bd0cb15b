"""The flags every recipe shares, and the wrapper that turns bad input into one-line errors.

A recipe adds its own flags to `recipe_parser(...)`, calls `setup_run`,
builds (and compiles) its model inside `args.distribute_strategy.scope()`
(`--strategy`, see `kerasvision.training.distribute`) and ends with
`if __name__ == "__main__": run(main)`.
"""

import argparse
import os
import sys
import warnings

import keras
import tensorflow as tf

from kerasvision.training.distribute import STRATEGIES, get_strategy, is_chief, worker_directory
from kerasvision.tasks.runs import default_verbose
from kerasvision.training import PRECISIONS, select_precision

SMOKE_BATCH_SIZE = 4

# What a flag of these types must be, in the words of `kerasvision.validation`.
_TYPE_WORDS = {int: "an integer", float: "a number"}


class _RecipeArgumentParser(argparse.ArgumentParser):
    """An `ArgumentParser` whose bad-value errors read like every other recipe error.

    argparse reports a bad choice or number in its own words ("argument
    --variant: invalid choice: ..."); these are the two places where it
    rejects a flag's value, so they say "--flag must be ...; received value"
    instead (`error()` only sees argparse's finished sentence). An
    `ArgumentError` without an action prints as its message alone.
    """

    def _get_value(self, action, arg_string):
        try:
            return super()._get_value(action, arg_string)
        except argparse.ArgumentError:
            if action.type not in _TYPE_WORDS:  # a custom type's own message stays
                raise
            raise argparse.ArgumentError(
                None, f"{_flag(action)} must be {_TYPE_WORDS[action.type]}; "
                f"received {arg_string!r}."
            ) from None

    def _check_value(self, action, value):
        if action.choices is not None and value not in action.choices:
            raise argparse.ArgumentError(
                None, f"{_flag(action)} must be one of {sorted(action.choices)}; "
                f"received {value!r}."
            )


def _flag(action):
    """The name users type for `action`: its long option, or a positional's name."""
    if action.option_strings:
        return max(action.option_strings, key=len)
    return action.metavar or action.dest


def recipe_parser(description, **defaults):
    """An `ArgumentParser` with the common recipe flags.

    Args:
        description: str, the recipe's docstring (shown by `--help`).
        **defaults: overrides of the common flags' defaults, by destination
            name (e.g. `epochs=10, image_size=64`).

    Returns:
        `argparse.ArgumentParser`; add recipe flags, then call `parse_args`.
    """
    parser = _RecipeArgumentParser(
        description=description, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    common = parser.add_argument_group("common recipe flags")
    common.add_argument("--epochs", type=int, default=10, help="training epochs")
    common.add_argument("--batch-size", type=int, default=16, help="global batch size")
    common.add_argument("--image-size", type=int, default=64, help="square input side, pixels")
    common.add_argument("--learning-rate", type=float, default=1e-3, help="Adam learning rate")
    common.add_argument(
        "--precision",
        choices=PRECISIONS,
        default="auto",
        help="dtype policy; auto: mixed_bfloat16 where the hardware has native bfloat16",
    )
    common.add_argument(
        "--jit-compile",
        choices=("auto", "true", "false"),
        default="auto",
        help="XLA compilation of the train step (auto: on for GPU/TPU only)",
    )
    common.add_argument("--seed", type=int, default=0, help="seed for data, weights and shuffling")
    common.add_argument(
        "--deterministic", action="store_true",
        help="bitwise-reproducible runs: seeds everything and enables TensorFlow op "
        "determinism (slower; turns XLA off, which op determinism disables anyway)",
    )
    common.add_argument(
        "--strategy", choices=STRATEGIES, default="default",
        help="tf.distribute strategy: default (one device), mirrored (all local GPUs), "
        "multi_worker (the processes in TF_CONFIG; only the chief writes --output-dir and "
        "--export-dir), tpu (TPU_NAME or the local TPU VM); --batch-size is the global batch",
    )
    common.add_argument(
        "--max-train-minutes", type=float, default=None,
        help="wall-clock budget for training, in minutes; training stops after the step "
        "that exceeds it, and the cut epoch still validates (0 or unset: no limit)",
    )
    common.add_argument(
        "--output-dir", help="checkpoints, logs and plots (default: runs/<run name>)"
    )
    common.add_argument(
        "--export-dir",
        help="SavedModel base path (default: saved_models/<run name>); the export goes "
        "to <export-dir>/<next version>",
    )
    common.add_argument(
        "--smoke", action="store_true", help="a few tiny batches, to check the recipe runs"
    )
    common.add_argument(
        "--verbose", type=int, choices=(0, 1, 2), default=None,
        help="fit verbosity (default: progress bar on a terminal, one line per epoch otherwise)",
    )
    parser.set_defaults(**defaults)
    return parser


def add_schedule_flags(group, schedule="cosine", decay_fraction=0.35):
    """Adds `--lr-schedule` and `--decay-fraction` (`WarmupCosineToBudget`) to a flag group.

    Args:
        group: an argparse parser or argument group.
        schedule: "cosine" or "constant", the default.
        decay_fraction: float in (0, 1], the default final share of training
            over which the rate decays to zero.
    """
    group.add_argument("--lr-schedule", choices=("constant", "cosine"), default=schedule,
                       help="cosine: warm up, then decay to zero by the end of the epochs "
                       "or of --max-train-minutes, whichever comes first")
    group.add_argument("--decay-fraction", type=float, default=decay_fraction,
                       help="with --lr-schedule cosine: the final share of training over which "
                       "the rate decays to zero; before it, it holds at --learning-rate")
    return group


def check_common_args(args):
    """Validates the common flags; raises ValueError naming the flag."""
    for flag in ("epochs", "batch_size", "image_size"):
        value = getattr(args, flag)
        if value < 1:
            raise ValueError(f"--{flag.replace('_', '-')} must be >= 1; received {value}.")
    if not args.learning_rate > 0:  # also rejects nan
        raise ValueError(f"--learning-rate must be > 0; received {args.learning_rate}.")
    # numpy rejects negative seeds deep inside `set_random_seed`, naming no flag.
    if args.seed < 0:
        raise ValueError(f"--seed must be >= 0; received {args.seed}.")
    minutes = args.max_train_minutes
    if minutes is not None and not minutes >= 0:  # also rejects nan
        raise ValueError(f"--max-train-minutes must be >= 0 (0: no limit); received {minutes}.")
    fraction = getattr(args, "decay_fraction", None)
    if fraction is not None and not 0 < fraction <= 1:  # also rejects nan
        raise ValueError(f"--decay-fraction must be in (0, 1]; received {fraction}.")


def setup_run(args, run_name):
    """Creates the distribution strategy, seeds everything, sets the precision, makes the output dir.

    Sets `args.distribute_strategy` (the `tf.distribute.Strategy` of
    `--strategy`): recipes build and compile their models inside
    `args.distribute_strategy.scope()`. Under `--strategy multi_worker` a
    worker other than the chief writes its checkpoints, plots and export to
    its own directory (`kerasvision.training.distribute.worker_directory`), never to
    `--output-dir`/`--export-dir`. `--deterministic` enables TensorFlow op
    determinism and sets `--jit-compile false`. `--smoke` caps `--batch-size`
    at `SMOKE_BATCH_SIZE`.

    Args:
        args: parsed flags of a `recipe_parser`.
        run_name: str, e.g. "fcn_vgg16_8s": default `--output-dir runs/<run_name>`
            and `--export-dir saved_models/<run_name>`.

    Returns:
        The `fit` verbosity to use.
    """
    check_common_args(args)
    # Warnings as one line each, without the source line Python repeats under them.
    warnings.formatwarning = lambda message, category, *_, **__: f"{category.__name__}: {message}\n"
    # First: MultiWorkerMirroredStrategy must configure the runtime before
    # anything runs a TensorFlow op (seeding included).
    strategy = get_strategy(args.strategy)
    args.distribute_strategy = strategy
    if args.smoke:  # tiny batches: the smoke datasets hold 8 to 16 images
        args.batch_size = min(args.batch_size, SMOKE_BATCH_SIZE)
    replicas = strategy.num_replicas_in_sync
    if args.batch_size % replicas:
        # Unequal per-replica batches would weight their examples unequally.
        raise ValueError(
            f"--batch-size ({args.batch_size}) must be a multiple of the {replicas} replicas "
            f"of --strategy {args.strategy}: it is the global batch, split evenly."
        )
    if args.strategy != "default":
        print(f"strategy: {args.strategy}, {replicas} replica(s) in sync (--batch-size is global)")
    args.output_dir = args.output_dir or os.path.join("runs", run_name)
    args.export_dir = args.export_dir or os.path.join("saved_models", run_name)
    if not is_chief(strategy):
        args.output_dir = worker_directory(args.output_dir, strategy)
        args.export_dir = worker_directory(args.export_dir, strategy)
        print(f"not the chief: writing to {args.output_dir} and {args.export_dir}")
    if _xla_unavailable(args, strategy) and args.jit_compile != "false":
        args.jit_compile = "false"
    keras.utils.set_random_seed(args.seed)
    if args.deterministic:
        tf.config.experimental.enable_op_determinism()
    args.precision = select_precision(args.precision)
    os.makedirs(args.output_dir, exist_ok=True)
    return default_verbose() if args.verbose is None else args.verbose


def _xla_unavailable(args, strategy):
    """Whether the run cannot use XLA, printing why; `--jit-compile true` is then overridden."""
    reason = None
    if args.deterministic:
        reason = "--deterministic (op determinism silently disables XLA)"
    elif args.strategy == "multi_worker":
        reason = "--strategy multi_worker (its training loop runs without XLA)"
    elif strategy.num_replicas_in_sync > 1 and all(
        "CPU" in device.upper() for device in strategy.extended.worker_devices
    ):
        reason = "several CPU replicas (XLA cannot place their variables)"
    if reason and args.jit_compile == "true":
        print(f"--jit-compile true ignored: XLA off with {reason}")
    return reason is not None


def run(main, argv=None):
    """Runs a recipe's `main`, turning bad input into a one-line error and exit status 2."""
    try:
        main(argv)
    except (ValueError, FileNotFoundError) as error:
        prog = os.path.basename(sys.argv[0])
        print(f"{prog}: error: {error}", file=sys.stderr)
        sys.exit(2)
