"""Flags, tables and JSON results of the speed benchmarks.

Every script takes `--output` (default `benchmarks/results/<name>.json`),
prints one table (`format_table`) and writes its rows with the environment
they were measured in (`finish_run`).
"""

import argparse
import json
import math
import os
import time

import numpy as np

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


RESULTS_DIR = os.path.join(ROOT, "benchmarks", "results")

# kerasvision before TensorFlow: its import silences TensorFlow's C++ start-up log.


def add_common_flags(parser, output_name):
    """Adds `--smoke --output --warmup --repeats` to a benchmark's parser.

    `--output` defaults to None; `resolve_output` fills in
    `benchmarks/results/<output_name>` (a script may pick another name first).
    """
    parser.add_argument("--smoke", action="store_true",
                        help="tiny sizes and counts: checks the script runs (seconds), "
                        "numbers meaningless")
    parser.add_argument("--output", default=None,
                        help=f"JSON file written with every row (default: "
                        f"benchmarks/results/{output_name})")
    parser.add_argument("--warmup", type=int, default=None,
                        help="untimed calls after the first (tracing) call")
    parser.add_argument("--repeats", type=int, default=None, help="timed calls; the median is kept")
    return parser


def resolve_output(args, output_name):
    """`--output`, or `benchmarks/results/<output_name>` when it was not given."""
    if args.output is None:
        args.output = os.path.join(RESULTS_DIR, output_name)
    return args.output


def check_counts(parser, args, warmup, repeats):
    """Fills `--warmup`/`--repeats` defaults and rejects impossible values."""
    args.warmup = warmup if args.warmup is None else args.warmup
    args.repeats = repeats if args.repeats is None else args.repeats
    if args.warmup < 0:
        parser.error(f"--warmup must be >= 0; received {args.warmup}")
    if args.repeats < 1:
        parser.error(f"--repeats must be >= 1; received {args.repeats}")


def parse_list(parser, flag, text, choices=None, cast=str):
    """A comma-separated flag value -> list, checked against `choices`."""
    try:
        values = [cast(part.strip()) for part in str(text).split(",") if part.strip()]
    except ValueError:
        parser.error(f"{flag}: expected comma-separated values; received {text!r}")
    if not values:
        parser.error(f"{flag}: expected at least one value; received {text!r}")
    if choices is not None:
        unknown = [value for value in values if value not in choices]
        if unknown:
            parser.error(f"{flag}: unknown {unknown}; choose from {', '.join(choices)}")
    return values


def format_value(value, spec):
    """Formats a number, or "-" for None / NaN / an error row's blanks."""
    if value is None or (isinstance(value, float) and not math.isfinite(value)):
        return "-"
    if isinstance(value, str):
        return value
    return format(value, spec)


def format_table(rows, columns):
    """A Markdown table of `rows` (dicts).

    Args:
        rows: list of dicts.
        columns: list of `(key, header, format spec)`; a spec of "s" left-aligns text.

    Returns:
        str, one line per row after the header and rule.
    """
    cells = [[format_value(row.get(key), spec) for key, _, spec in columns] for row in rows]
    headers = [header for _, header, _ in columns]
    widths = [max([len(headers[i])] + [len(line[i]) for line in cells])
              for i in range(len(columns))]
    left = [spec == "s" for _, _, spec in columns]

    def line(values):
        parts = [f"{v:<{w}}" if is_left else f"{v:>{w}}"
                 for v, w, is_left in zip(values, widths, left)]
        return "| " + " | ".join(parts) + " |"

    rule = "|" + "|".join("-" * (w + 2) for w in widths) + "|"
    return "\n".join([line(headers), rule, *map(line, cells)])


def _jsonable(value):
    """numpy scalars to Python numbers, NaN/inf to None (strict JSON has neither)."""
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def write_json(path, payload):
    """Writes `payload` as indented, strict JSON (non-finite numbers as null); returns the path."""
    directory = os.path.dirname(os.path.abspath(path))
    os.makedirs(directory, exist_ok=True)
    with open(path, "w") as handle:
        json.dump(_jsonable(payload), handle, indent=2, allow_nan=False)
    print(f"wrote {path}")
    return path


def finish_run(payload, path, started):
    """Adds the closing load average and the run's seconds, prints the total, writes the JSON.

    Returns:
        `payload`.
    """
    payload["environment"]["load_average_at_end"] = os.getloadavg()[0]
    payload["seconds"] = time.perf_counter() - started
    print(f"total {payload['seconds']:.0f} s")
    write_json(path, payload)
    return payload


def args_dict(args):
    """The parsed flags as a JSON-friendly dict."""
    return {key: value for key, value in vars(args).items() if not key.startswith("_")}


def describe_error(error):
    """One line naming an exception: its type and the first line of its message."""
    lines = str(error).strip().splitlines()
    return f"{type(error).__name__}: {lines[0][:200]}" if lines else type(error).__name__


def ratio(numerator, denominator):
    """numerator / denominator, or None when either is missing or the denominator is 0."""
    if numerator is None or denominator in (None, 0):
        return None
    return numerator / denominator


def new_parser(doc):
    """An `ArgumentParser` showing the script's docstring."""
    return argparse.ArgumentParser(description=doc,
                                   formatter_class=argparse.RawDescriptionHelpFormatter)
