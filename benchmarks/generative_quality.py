"""Sample quality of every generative model at one training budget: FID, KID and time.

Trains each model on the embedded shapes images (`load_shapes_classification`,
one shape per image, scaled to [-1, 1]) for the same wall-clock budget (after
its first, tracing step) and batch size, draws `--eval-images` samples, and compares them with as many
held-out real images on the features of a `FeatureExtractor`: InceptionV3
(FID/KID as published) when its ImageNet weights are available, otherwise a
small CNN trained once on the same embedded dataset and cached
(`kerasvision.models.shapes_features.shapes_feature_extractor`; numbers
comparable between rows, not with papers). Training images against the held-out images give the
floor that a perfect model would reach at this sample size.

Rows: real (floor), GMM (diagonal, EM), VAE, DCGAN, WGAN, WGAN-GP, and one
diffusion model sampled by DDPM (all T ancestral steps) and by DDIM (eta = 0)
at each of `--ddim-steps`. Models whose module is missing are skipped with a
note.

Run:
    python benchmarks/generative_quality.py                       # defaults below
    python benchmarks/generative_quality.py --budget-seconds 30 --eval-images 200 --image-size 16
    python benchmarks/generative_quality.py --models gmm,diffusion --json /tmp/quality.json
    python benchmarks/generative_quality.py --smoke --json /tmp/q.json --cache-dir /tmp/cache  # tests

Prints one table; `--json` also writes the rows. `--smoke` runs every row
through the same code at toy sizes (two training steps per neural model, a
one-epoch feature CNN): it checks the script works, its numbers mean nothing.
"""

import argparse
import json
import os
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import numpy as np  # noqa: E402

MODELS = ("gmm", "vae", "dcgan", "wgan", "wgan_gp", "diffusion")

# --smoke's defaults; any flag given explicitly still wins. A zero budget
# stops `fit` right after the second batch (the first only starts the clock),
# so every neural model takes exactly two steps.
SMOKE_DEFAULTS = dict(
    image_size=16, train_images=32, eval_images=16, budget_seconds=0.0, batch_size=8,
    latent_dim=8, gmm_components=2, gmm_iterations=3, timesteps=10, ddim_steps="2",
    denoiser_widths="8,16", extractor="shapes", extractor_images=64, extractor_epochs=1,
)


def parse_args(argv=None):
    """Parses the command line; `--smoke` swaps in `SMOKE_DEFAULTS` for flags not given."""
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--smoke", action="store_true",
                        help="toy sizes, two steps per model: checks the script runs "
                        "(seconds), numbers meaningless")
    parser.add_argument("--models", default=",".join(MODELS),
                        help="comma-separated subset of " + ", ".join(MODELS))
    parser.add_argument("--image-size", type=int, default=16,
                        help="square side, pixels (multiple of 8)")
    parser.add_argument("--train-images", type=int, default=4096, help="training images")
    parser.add_argument("--eval-images", type=int, default=256,
                        help="generated and held-out images per FID/KID "
                        "(FID is biased upward for small N)")
    parser.add_argument("--budget-seconds", type=float, default=60.0,
                        help="training wall-clock per neural model after its first (tracing) step")
    parser.add_argument("--batch-size", type=int, default=64, help="same for every neural model")
    parser.add_argument("--latent-dim", type=int, default=32, help="VAE and GAN latent size")
    parser.add_argument("--gmm-components", type=int, default=20, help="mixture components")
    parser.add_argument("--gmm-iterations", type=int, default=100, help="at most this many EM steps")
    parser.add_argument("--timesteps", type=int, default=1000, help="diffusion training timesteps T")
    parser.add_argument("--ddim-steps", default="10,20,50,100", help="DDIM step counts to sample with")
    parser.add_argument("--no-ddpm", action="store_true",
                        help="skip the T-step DDPM sampling (the slowest row)")
    parser.add_argument("--denoiser-widths", default="16,32", help="U-Net channels per level")
    parser.add_argument("--extractor", choices=("auto", "inception", "shapes"), default="auto",
                        help="auto: InceptionV3 if its weights are available, else the shapes CNN")
    parser.add_argument("--cache-dir", default=None,
                        help="shapes CNN cache (default ~/.keras/kerasvision; "
                        "--smoke: a temporary directory)")
    # None keeps shapes_feature_extractor's own defaults, and so its cache file.
    parser.add_argument("--extractor-images", type=int, default=None,
                        help="shapes CNN training images (default: the extractor's, 8192)")
    parser.add_argument("--extractor-epochs", type=int, default=None,
                        help="shapes CNN training epochs (default: the extractor's, 12)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--json", help="also write the rows to this JSON file")
    # Parsed twice: the smoke defaults must be in place before the real parse
    # so that flags given explicitly override them.
    if parser.parse_known_args(argv)[0].smoke:
        parser.set_defaults(**SMOKE_DEFAULTS)
    args = parser.parse_args(argv)
    args.models = [m.strip() for m in args.models.split(",") if m.strip()]
    unknown = sorted(set(args.models) - set(MODELS))
    if unknown:
        parser.error(f"--models: unknown {unknown}; choose from {', '.join(MODELS)}")
    args.ddim_steps = [int(s) for s in args.ddim_steps.split(",") if s.strip()]
    if any(s > args.timesteps or s < 1 for s in args.ddim_steps):
        parser.error(f"--ddim-steps must lie in [1, --timesteps={args.timesteps}]; "
                     f"received {args.ddim_steps}")
    args.denoiser_widths = tuple(int(w) for w in args.denoiser_widths.split(","))
    if args.image_size % 8 or args.image_size < 16:
        parser.error(f"--image-size must be a multiple of 8, >= 16; received {args.image_size}")
    return args


# ---------------------------------------------------------------------------
# Data and features
# ---------------------------------------------------------------------------


def load_images(args):
    """Training images and held-out images, float32 [-1, 1]."""
    from kerasvision.data import make_shapes_classification

    train, _ = make_shapes_classification(args.train_images, args.image_size, args.seed, "train")
    held_out, _ = make_shapes_classification(args.eval_images, args.image_size, args.seed, "validation")
    scale = lambda x: x.astype(np.float32) / 127.5 - 1.0  # noqa: E731
    return scale(train), scale(held_out)


def make_extractor(args):
    from kerasvision.metrics import inception_feature_extractor
    from kerasvision.models.shapes_features import shapes_feature_extractor

    if args.extractor in ("auto", "inception"):
        try:
            return inception_feature_extractor("imagenet")
        except RuntimeError as error:
            if args.extractor == "inception":
                raise
            print(f"note: InceptionV3 unavailable ({str(error).split('(')[0].strip()}); "
                  "using the shapes CNN features")
    options = {key: value for key, value in (("num_images", args.extractor_images),
                                             ("epochs", args.extractor_epochs))
               if value is not None}
    extractor = shapes_feature_extractor(args.cache_dir, image_size=args.image_size, seed=args.seed,
                                         **options)
    note = (f"trained now, held-out accuracy {extractor.accuracy:.3f}" if extractor.trained
            else "loaded from cache")
    print(f"features: shapes CNN ({note}; {extractor.path})")
    return extractor


# ---------------------------------------------------------------------------
# Training
# ---------------------------------------------------------------------------


def time_budget_callback(seconds):
    import keras

    class TimeBudget(keras.callbacks.Callback):
        """Stops `fit` once `seconds` of training have passed after the first step.

        The first step traces and compiles the step function, which costs
        from a few seconds (a small VAE) to half a minute (the U-Net) on a
        loaded 2-core machine: a budget that included it would measure graph
        size, not learning. `train s` in the table includes it.
        """

        def on_train_begin(self, logs=None):
            self.start, self.batches = None, 0

        def on_train_batch_end(self, batch, logs=None):
            self.batches += 1
            if self.start is None:
                self.start = time.perf_counter()
            elif time.perf_counter() - self.start >= seconds:
                self.model.stop_training = True

    return TimeBudget()


def fit_for_budget(model, images, args):
    """Fits a compiled trainer for `--budget-seconds`; returns (seconds, batches)."""
    import tensorflow as tf

    dataset = (tf.data.Dataset.from_tensor_slices(images)
               .shuffle(len(images), seed=args.seed, reshuffle_each_iteration=True)
               .batch(args.batch_size, drop_remainder=True).repeat().prefetch(2))
    budget = time_budget_callback(args.budget_seconds)
    start = time.perf_counter()
    model.fit(dataset, epochs=10**6, steps_per_epoch=len(images) // args.batch_size, shuffle=False,
              callbacks=[budget], verbose=0)
    return time.perf_counter() - start, budget.batches


def build_gan(kind, args):
    from kerasvision.models.gan import (
        GAN, WGAN, WGANGP, build_dcgan_discriminator, build_dcgan_generator,
    )

    shape = (args.image_size, args.image_size, 3)
    generator = build_dcgan_generator(args.latent_dim, shape, filters=(128, 64))
    # WGAN-GP's penalty needs per-sample critic gradients: no BatchNorm.
    normalization = "layer" if kind == "wgan_gp" else "batch"
    critic = build_dcgan_discriminator(shape, filters=(64, 128), normalization=normalization)
    trainer = {"dcgan": GAN, "wgan": WGAN, "wgan_gp": WGANGP}[kind](generator, critic, seed=args.seed)
    trainer.compile()  # each trainer's paper optimizers
    return trainer


def build_vae(args):
    from kerasvision.models.autoencoder import VAE, build_conv_decoder, build_conv_encoder

    shape = (args.image_size, args.image_size, 3)
    vae = VAE(build_conv_encoder(shape, args.latent_dim, filters=(32, 64), variational=True),
              build_conv_decoder(args.latent_dim, shape, filters=(64, 32)), seed=args.seed)
    vae.compile()
    return vae


def build_diffusion(args):

    from kerasvision.models.diffusion import DiffusionModel, build_denoiser
    from kerasvision import kernels

    network = build_denoiser((args.image_size, args.image_size, 3), widths=args.denoiser_widths,
                             blocks_per_level=1)
    model = DiffusionModel(network, timesteps=args.timesteps, seed=args.seed)
    # 1e-3 rather than DDPM's 2e-4: the budget allows only a few hundred steps.
    model.compile(kernels.adam(1e-3))
    return model


def generate_in_batches(generate, count, batch=256):
    parts = []
    for start in range(0, count, batch):
        parts.append(np.asarray(generate(min(batch, count - start)), dtype=np.float32))
    return np.concatenate(parts)


# ---------------------------------------------------------------------------
# Benchmark
# ---------------------------------------------------------------------------


def run_benchmark(args):
    import keras

    from kerasvision.metrics import sample_quality

    keras.utils.set_random_seed(args.seed)
    train, held_out = load_images(args)
    extractor = make_extractor(args)
    rows, notes = [], []

    def score(name, images, train_seconds=None, steps=None, sample_seconds=None):
        quality = sample_quality(held_out, images, extractor, value_range=(-1, 1),
                                 kid_subset_size=len(held_out), seed=args.seed)
        row = {"model": name, "fid": quality["fid"], "kid": quality["kid"],
               "train_s": train_seconds, "steps": steps, "sample_s": sample_seconds}
        rows.append(row)
        print(f"  {name}: FID {row['fid']:.2f}  KID {row['kid']:.4f}", flush=True)

    rng = np.random.default_rng(args.seed)
    score("real (held-out floor)", train[rng.choice(len(train), args.eval_images, replace=False)])

    for kind in args.models:
        print(f"{kind} ...", flush=True)
        try:
            if kind == "gmm":
                from kerasvision.models.gmm import GMM

                start = time.perf_counter()
                gmm = GMM(args.gmm_components, max_iterations=args.gmm_iterations,
                          seed=args.seed).fit(train)
                seconds = time.perf_counter() - start
                start = time.perf_counter()
                samples = gmm.generate(args.eval_images, seed=args.seed)
                score("GMM (diag, EM)", samples, seconds, len(gmm.log_likelihood_history_) - 1,
                      time.perf_counter() - start)
                continue
            if kind == "diffusion":
                model = build_diffusion(args)
            elif kind == "vae":
                model = build_vae(args)
            else:
                model = build_gan(kind, args)
        except ImportError as error:
            notes.append(f"{kind}: skipped, its module is not available ({error}).")
            print(f"  skipped: {error}")
            continue
        seconds, steps = fit_for_budget(model, train, args)
        if kind != "diffusion":
            start = time.perf_counter()
            samples = generate_in_batches(model.generate, args.eval_images)
            name = {"vae": "VAE", "dcgan": "DCGAN", "wgan": "WGAN", "wgan_gp": "WGAN-GP"}[kind]
            score(name, samples, seconds, steps, time.perf_counter() - start)
            continue
        samplers = [("ddim", s) for s in args.ddim_steps]
        if not args.no_ddpm:
            samplers.append(("ddpm", args.timesteps))
        for sampler in {sampler for sampler, _ in samplers}:
            # Trace each sampler once, outside the timings.
            model.generate(2, steps=1, sampler=sampler, seed=args.seed)
        for sampler, sampler_steps in samplers:
            start = time.perf_counter()
            samples = model.generate(args.eval_images, steps=sampler_steps, sampler=sampler,
                                     seed=args.seed)
            name = f"{sampler.upper()} ({sampler_steps} steps)"
            score(name, samples, seconds, steps, time.perf_counter() - start)
    return rows, notes, extractor


def format_table(rows):
    def fmt(value, spec):
        return "-" if value is None else format(value, spec)

    header = ("model", "FID", "KID", "train s", "steps", "sample s")
    lines = [
        "| {:<22} | {:>8} | {:>8} | {:>7} | {:>6} | {:>8} |".format(*header),
        f"|{'-' * 24}|{'-' * 10}|{'-' * 10}|{'-' * 9}|{'-' * 8}|{'-' * 10}|",
    ]
    for row in rows:
        lines.append(
            f"| {row['model']:<22} | {row['fid']:>8.2f} | {row['kid']:>8.4f} | "
            f"{fmt(row['train_s'], '7.1f'):>7} | {fmt(row['steps'], '6d'):>6} | "
            f"{fmt(row['sample_s'], '8.1f'):>8} |"
        )
    return "\n".join(lines)


def main(argv=None):
    """Runs the benchmark, prints the table, writes `--json`; returns the rows."""
    args = parse_args(argv)
    start = time.perf_counter()
    if args.smoke and args.cache_dir is None:
        # A smoke run's one-epoch feature CNN must not land in the user's cache.
        with tempfile.TemporaryDirectory() as scratch:
            args.cache_dir = scratch
            rows, notes, extractor = run_benchmark(args)
    else:
        rows, notes, extractor = run_benchmark(args)
    print()
    print(f"{args.image_size}x{args.image_size} shapes, {args.train_images} training images, "
          f"budget {args.budget_seconds:.0f} s per model, batch {args.batch_size}, "
          f"{args.eval_images} samples vs {args.eval_images} held-out images, "
          f"features: {extractor.name}")
    print(format_table(rows))
    for note in notes:
        print(f"note: {note}")
    print(f"total {time.perf_counter() - start:.0f} s")
    if args.json:
        with open(args.json, "w") as handle:
            json.dump({"args": {k: v for k, v in vars(args).items() if k != "json"}, "rows": rows,
                       "notes": notes}, handle, indent=2, default=str)
    return rows


if __name__ == "__main__":
    main()
