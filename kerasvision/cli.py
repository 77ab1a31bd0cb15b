"""The flags every recipe shares, and the wrapper that turns bad input into one-line errors.

A recipe adds its own flags to `recipe_parser(...)` and ends with
`if __name__ == "__main__": run(main)`.
"""

import argparse
import os
import sys

import keras

from kerasvision.training import PRECISIONS, default_verbose, select_precision


def recipe_parser(description, **defaults):
    """An `ArgumentParser` with the common recipe flags.

    Args:
        description: str, the recipe's docstring (shown by `--help`).
        **defaults: overrides of the common flags' defaults, by destination
            name (e.g. `epochs=10, image_size=64`).

    Returns:
        `argparse.ArgumentParser`; add recipe flags, then call `parse_args`.
    """
    parser = argparse.ArgumentParser(
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


def check_common_args(args):
    """Validates the common flags; raises ValueError naming the flag."""
    for flag in ("epochs", "batch_size", "image_size"):
        value = getattr(args, flag)
        if value < 1:
            raise ValueError(f"--{flag.replace('_', '-')} must be >= 1; received {value}.")
    if args.learning_rate <= 0:
        raise ValueError(f"--learning-rate must be > 0; received {args.learning_rate}.")


def setup_run(args, run_name):
    """Seeds everything, sets the precision policy and creates the output directory.

    Args:
        args: parsed flags of a `recipe_parser`.
        run_name: str, e.g. "fcn_vgg16_8s": default `--output-dir runs/<run_name>`
            and `--export-dir saved_models/<run_name>`.

    Returns:
        The `fit` verbosity to use.
    """
    check_common_args(args)
    args.output_dir = args.output_dir or os.path.join("runs", run_name)
    args.export_dir = args.export_dir or os.path.join("saved_models", run_name)
    keras.utils.set_random_seed(args.seed)
    args.precision = select_precision(args.precision)
    os.makedirs(args.output_dir, exist_ok=True)
    return default_verbose() if args.verbose is None else args.verbose


def run(main, argv=None):
    """Runs a recipe's `main`, turning bad input into a one-line error and exit status 2."""
    try:
        main(argv)
    except (ValueError, FileNotFoundError) as error:
        prog = os.path.basename(sys.argv[0])
        print(f"{prog}: error: {error}", file=sys.stderr)
        sys.exit(2)
