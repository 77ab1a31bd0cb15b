"""Preview of the synthetic shapes data: writes docs/shapes_examples.png.

Draws 8 training scenes (image | mask overlay) and prints the class balance,
the majority-class baseline mIoU over 512 scenes and the generator speed
(process CPU time for 1024 scenes of 128x128).

    python benchmarks/data_preview.py [--image-size 96] [--output docs/shapes_examples.png]
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


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--image-size", type=int, default=96)
    parser.add_argument("--output", default=os.path.join(_ROOT, "docs", "shapes_examples.png"))
    args = parser.parse_args(argv)

    start = time.perf_counter()
    images, masks = make_shapes_scenes(512, image_size=args.image_size, seed=0)
    seconds = time.perf_counter() - start
    miou, shares = majority_baseline_miou(masks, len(SHAPES_CLASS_NAMES))
    print(f"generated 512 scenes of {args.image_size}px in {seconds:.2f} s")
    for name, share in zip(SHAPES_CLASS_NAMES, shares):
        print(f"  {name:<10} {share:6.1%} of pixels")
    print(f"majority-class baseline mIoU: {miou:.3f}")

    start = time.process_time()
    make_shapes_scenes(1024, image_size=128, seed=0)
    print(f"1024 scenes of 128px: {time.process_time() - start:.2f} s of CPU time")

    path = plot_segmentation_examples(images[:8], masks[:8], None, SHAPES_CLASS_NAMES,
                                      args.output)
    print(f"wrote {path} ({os.path.getsize(path) / 1024:.0f} KB)")


if __name__ == "__main__":
    main()
