"""Preview of the synthetic shapes data: writes docs/shapes_examples.png.

Draws 8 training scenes (image | mask overlay) and prints the class balance,
the majority-class baseline mIoU over 512 scenes and the generator speed
(process CPU time for 1024 scenes of 128x128).

    python benchmarks/data_preview.py [--image-size 96] [--output docs/shapes_examples.png]
    python benchmarks/data_preview.py --smoke --output /tmp/preview.png   # seconds (tests)

`--smoke` draws and times far fewer, smaller scenes (its numbers mean nothing)
and needs `--output`, so that it never replaces the documentation's figure.
"""

import argparse
import os
import sys
import time

import numpy as np

_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, _ROOT)

from kerasvision.data import SHAPES_CLASS_NAMES, make_shapes_scenes  # noqa: E402
from kerasvision.visualize import plot_segmentation_examples  # noqa: E402


def majority_baseline_miou(masks, num_classes):
    """mIoU (over classes present) of predicting the most frequent class everywhere."""
    counts = np.bincount(masks.ravel(), minlength=num_classes)[:num_classes]
    majority = int(np.argmax(counts))
    # Predicting `majority` everywhere: its IoU is its pixel share, others get 0.
    ious = [counts[majority] / counts.sum() if c == majority else 0.0
            for c in range(num_classes) if counts[c] > 0]
    return float(np.mean(ious)), counts / counts.sum()


# Scenes drawn for the statistics and scenes timed (at `timed_size` px): the
# full run's, and --smoke's, enough to fill the 8-example figure.
FULL_COUNTS = dict(scenes=512, timed_scenes=1024, timed_size=128)
SMOKE_COUNTS = dict(scenes=16, timed_scenes=16, timed_size=32)


def main(argv=None):
    """Writes the preview figure and prints the data's statistics; returns them as a dict.

    The dict has `scenes`, `image_size`, `class_shares` (class name -> pixel
    share), `majority_miou`, `generate_s`, `timed_scenes`, `timed_size`,
    `timed_cpu_s` and `path`.
    """
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--image-size", type=int, default=None, help="default 96; --smoke 32")
    parser.add_argument("--output", default=None,
                        help="PNG written (default docs/shapes_examples.png; required with --smoke)")
    parser.add_argument("--smoke", action="store_true",
                        help="few small scenes: checks the script runs (seconds)")
    args = parser.parse_args(argv)
    if args.smoke and args.output is None:
        parser.error("--smoke needs --output: a toy figure must not replace the documentation's")
    args.image_size = args.image_size or (32 if args.smoke else 96)
    args.output = args.output or os.path.join(_ROOT, "docs", "shapes_examples.png")
    counts = SMOKE_COUNTS if args.smoke else FULL_COUNTS

    start = time.perf_counter()
    images, masks = make_shapes_scenes(counts["scenes"], image_size=args.image_size, seed=0)
    seconds = time.perf_counter() - start
    miou, shares = majority_baseline_miou(masks, len(SHAPES_CLASS_NAMES))
    print(f"generated {counts['scenes']} scenes of {args.image_size}px in {seconds:.2f} s")
    for name, share in zip(SHAPES_CLASS_NAMES, shares):
        print(f"  {name:<10} {share:6.1%} of pixels")
    print(f"majority-class baseline mIoU: {miou:.3f}")

    start = time.process_time()
    make_shapes_scenes(counts["timed_scenes"], image_size=counts["timed_size"], seed=0)
    cpu_seconds = time.process_time() - start
    print(f"{counts['timed_scenes']} scenes of {counts['timed_size']}px: "
          f"{cpu_seconds:.2f} s of CPU time")

    path = plot_segmentation_examples(images[:8], masks[:8], None, SHAPES_CLASS_NAMES,
                                      args.output)
    print(f"wrote {path} ({os.path.getsize(path) / 1024:.0f} KB)")
    return {"scenes": counts["scenes"], "image_size": args.image_size,
            "class_shares": dict(zip(SHAPES_CLASS_NAMES, map(float, shares))),
            "majority_miou": miou, "generate_s": seconds, "timed_scenes": counts["timed_scenes"],
            "timed_size": counts["timed_size"], "timed_cpu_s": cpu_seconds, "path": path}


if __name__ == "__main__":
    main()
