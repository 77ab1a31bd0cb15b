"""What the generative recipes' FID ratios mean: real images, degraded, scored the same way.

The generative recipes report the FID of their samples as a multiple of a
floor (two halves of real held-out images, `evaluate_samples`). This script
gives that scale a meaning: it scores real images of another split, then
the same images blurred (a Gaussian of each `--blur-sigmas`, in pixels) and
with added pixel noise (each `--noise-stds`, in the [-1, 1] scale), exactly
as a recipe scores its samples: 512 against 512 held-out images on the
shapes CNN's features, with the share recognised as a shape. A model whose
samples score 14x the floor is, on this metric, as far from the data as
real images blurred by about 0.7 pixel.

Run:
    python benchmarks/sample_quality_calibration.py        # ~1 min (the extractor is cached)
    python benchmarks/sample_quality_calibration.py --smoke --output /tmp/c.json  # tests

Prints one table and writes --output JSON
(default benchmarks/results/sample_quality_calibration.json).
"""

import argparse
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import numpy as np  # noqa: E402

from benchmarks.reporting import add_common_flags, finish_run, format_table, resolve_output  # noqa: E402
from benchmarks.timing import environment, warn_if_busy  # noqa: E402


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    add_common_flags(parser, "sample_quality_calibration.json")
    parser.add_argument("--eval-images", type=int, default=512,
                        help="images per set, as the recipes' --eval-images")
    parser.add_argument("--blur-sigmas", default="0.5,0.7,1.0,1.5",
                        help="Gaussian blur standard deviations, pixels")
    parser.add_argument("--noise-stds", default="0.1,0.25",
                        help="standard deviations of added Gaussian pixel noise ([-1, 1] scale)")
    parser.add_argument("--cache-dir", default=None,
                        help="where the shapes feature extractor is cached (default: kerasvision's)")
    args = parser.parse_args(argv)
    try:
        args.blur_sigmas = [float(value) for value in args.blur_sigmas.split(",")]
        args.noise_stds = [float(value) for value in args.noise_stds.split(",")]
    except ValueError:
        parser.error("--blur-sigmas and --noise-stds must be comma-separated numbers")
    if min(args.blur_sigmas + args.noise_stds) <= 0:
        parser.error("--blur-sigmas and --noise-stds must be > 0")
    if args.eval_images < 2:
        parser.error(f"--eval-images must be >= 2; received {args.eval_images}")
    if args.smoke:
        args.eval_images, args.blur_sigmas, args.noise_stds = 8, [1.0], [0.25]
    resolve_output(args, "sample_quality_calibration.json")
    return args


def gaussian_blur(images, sigma):
    """Images `[N, S, S, C]` blurred by a separable Gaussian of `sigma` pixels (edges reflected).

    Computed in numpy: the kernel is sampled at integer offsets within 3 sigma
    and normalised to sum to one, so flat regions keep their value.
    """
    radius = max(1, int(np.ceil(3 * sigma)))
    offsets = np.arange(-radius, radius + 1)
    kernel = np.exp(-0.5 * (offsets / sigma) ** 2)
    kernel /= kernel.sum()
    padded = np.pad(images, ((0, 0), (radius, radius), (radius, radius), (0, 0)), mode="reflect")
    size = images.shape[1]
    rows = sum(weight * padded[:, i:i + size, :, :] for i, weight in enumerate(kernel))
    return sum(weight * rows[:, :, i:i + size, :] for i, weight in enumerate(kernel))


def main(argv=None):
    args = parse_args(argv)
    started = time.perf_counter()
    env = environment()
    warn_if_busy(env)
    from kerasvision.data.pipelines import make_generative_pipeline
    from kerasvision.data.shapes import load_shapes_classification
    from kerasvision.models.shapes_features import shapes_feature_extractor
    from kerasvision.tasks.generative import evaluate_samples, heldout_images

    count = args.eval_images

    def split_images(split, number):
        dataset = load_shapes_classification(split, number, 32, seed=0)
        return heldout_images(make_generative_pipeline(dataset, min(64, number), training=False,
                                                       image_size=32))

    heldout = split_images("validation", 2 * count)
    others = split_images("test", count)[:count]
    extractor = (shapes_feature_extractor(args.cache_dir, num_images=64, epochs=1) if args.smoke
                 else shapes_feature_extractor(args.cache_dir))
    rng = np.random.default_rng(0)
    variants = [("real (test split)", others)]
    variants += [(f"blurred, sigma {sigma:g} px", gaussian_blur(others, sigma))
                 for sigma in args.blur_sigmas]
    variants += [(f"noise, std {std:g}",
                  np.clip(others + std * rng.normal(size=others.shape), -1, 1))
                 for std in args.noise_stds]
    rows = []
    for name, images in variants:
        images = images.astype(np.float32)
        quality = evaluate_samples(lambda n, images=images: images[:n], heldout, count,
                                   extractor=extractor)
        rows.append({"images": name, **quality})
    print(f"{count} images against {count} held-out shapes, shapes CNN features; floor: two "
          "halves of the held-out images")
    print(format_table(rows, [("images", "images", "s"), ("fid", "FID", ".2f"),
                              ("fid_ratio", "FID / floor", ".1f"), ("kid", "KID", ".4f"),
                              ("recognised_share", "recognised", ".2f")]))
    payload = {"what": "real shapes degraded and scored as the generative recipes score samples",
               "environment": env, "args": vars(args), "rows": rows}
    return finish_run(payload, args.output, started)


if __name__ == "__main__":
    main()
