"""Which bfloat16 convolutions oneDNN's AMX kernels survive: one subprocess per shape.

Each case trains one layer (a `Conv2D`, `Dense` or `kerasvision.layers.WideInputConv2D`)
for five steps of `train_on_batch` under mixed_bfloat16 (or float32) in a fresh
Python process with `ONEDNN_MAX_CPU_ISA=ALL`, and records whether the process
trained or died (SIGABRT from glibc's heap checks, or SIGSEGV). It maps the
TensorFlow 2.21 oneDNN bug of docs/known_issues.md: on an AMX CPU, convolutions
from more than 2048 input channels to 2-15 filters corrupt the heap. On a CPU
without AMX every case trains.

Run:
    python benchmarks/amx_convolution_grid.py            # the grid, about 2 minutes
    python benchmarks/amx_convolution_grid.py --smoke    # two cases (tests)

Writes --output (default benchmarks/results/amx_convolution_grid.json): the
environment (CPU model and flags, versions) and one row per case.
"""

import argparse
import os
import subprocess
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from benchmarks import reporting, timing  # noqa: E402

# (layer, input channels, filters, kernel size, pixels per side, batch, precision)
GRID = (
    *[("conv2d", 4096, filters, 1, 2, 2, "mixed_bfloat16") for filters in (1, 2, 4, 8, 12, 15, 16, 17, 32)],
    *[("conv2d", channels, 4, 1, 2, 2, "mixed_bfloat16") for channels in (1024, 2048, 2176, 2304, 3072)],
    ("conv2d", 2048, 4, 1, 16, 8, "mixed_bfloat16"),
    *[("conv2d", channels, 4, 3, 2, 2, "mixed_bfloat16") for channels in (512, 2048, 2176, 4096)],
    ("dense", 4096, 4, 1, 2, 2, "mixed_bfloat16"),
    ("conv2d", 4096, 4, 1, 2, 2, "float32"),
    ("wide_input_conv2d", 4096, 4, 1, 2, 2, "mixed_bfloat16"),
    ("wide_input_conv2d", 2176, 8, 1, 8, 8, "mixed_bfloat16"),
)
SMOKE_GRID = (("conv2d", 64, 4, 1, 2, 2, "float32"), ("wide_input_conv2d", 64, 4, 1, 2, 2, "float32"))

CASE = """
import sys
import numpy as np, keras
from kerasvision.layers import WideInputConv2D
layer_name, channels, filters, kernel, pixels, batch, precision = sys.argv[1:]
channels, filters, kernel, pixels, batch = map(int, (channels, filters, kernel, pixels, batch))
keras.mixed_precision.set_global_policy(precision)
inputs = keras.Input((pixels, pixels, channels))
if layer_name == "dense":
    layer = keras.layers.Dense(filters)
else:
    layer = {"conv2d": keras.layers.Conv2D, "wide_input_conv2d": WideInputConv2D}[layer_name](
        filters, kernel, padding="same")
outputs = keras.layers.Activation("linear", dtype="float32")(layer(inputs))
model = keras.Model(inputs, outputs)
model.compile("sgd", "mse")
rng = np.random.default_rng(0)
x = rng.random((batch, pixels, pixels, channels), dtype="float32")
y = rng.random((batch, pixels, pixels, filters), dtype="float32")
for _ in range(5):
    model.train_on_batch(x, y)
print("trained")
"""

SIGNALS = {-6: "SIGABRT", -11: "SIGSEGV", 134: "SIGABRT", 139: "SIGSEGV"}


def run_case(case, timeout=300):
    """Runs one grid case in a fresh process; returns its row."""
    env = {**os.environ, "ONEDNN_MAX_CPU_ISA": "ALL", "TF_CPP_MIN_LOG_LEVEL": "3"}
    started = time.time()
    result = subprocess.run([sys.executable, "-c", CASE, *map(str, case)], env=env,
                            capture_output=True, text=True, timeout=timeout, check=False)
    glibc = [line for line in result.stderr.splitlines()
             if "malloc" in line or "free(" in line or "corrupted" in line]
    layer, channels, filters, kernel, pixels, batch, precision = case
    return {
        "layer": layer, "input_channels": channels, "filters": filters,
        "kernel": f"{kernel}x{kernel}", "pixels": f"{pixels}x{pixels}", "batch": batch,
        "precision": precision,
        "result": "trained" if result.returncode == 0 and "trained" in result.stdout
        else SIGNALS.get(result.returncode, f"exit {result.returncode}"),
        "glibc_message": glibc[0].strip() if glibc else None,
        "seconds": round(time.time() - started, 1),
    }


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--smoke", action="store_true", help="two float32 cases")
    parser.add_argument("--output", default=None, help="JSON path (default: results/...)")
    args = parser.parse_args(argv)
    environment = timing.environment()
    print(f"{environment['cpu']['model']}; AMX: {environment['cpu']['amx_bf16']}")
    rows = []
    print(f"{'layer':<18} {'in':>5} {'filters':>7} {'kernel':>6} {'pixels':>6} {'batch':>5} "
          f"{'precision':<15} result")
    for case in SMOKE_GRID if args.smoke else GRID:
        row = run_case(case)
        rows.append(row)
        print(f"{row['layer']:<18} {row['input_channels']:>5} {row['filters']:>7} "
              f"{row['kernel']:>6} {row['pixels']:>6} {row['batch']:>5} {row['precision']:<15} "
              f"{row['result']}", flush=True)
    output = args.output or os.path.join(os.path.dirname(os.path.abspath(__file__)), "results",
                                         "amx_convolution_grid.json")
    if not args.smoke or args.output:
        reporting.write_json(output, {"what": __doc__.splitlines()[0], "date": time.strftime(
            "%Y-%m-%d"), "environment": environment, "rows": rows})
    return rows


if __name__ == "__main__":
    main()
