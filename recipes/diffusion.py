"""A denoising diffusion model (DDPM training, DDIM sampling) trained from scratch.

Trains `build_denoiser` (a U-Net with sinusoidal time embedding and residual
blocks) with the epsilon-prediction loss of Ho et al. 2020 at uniformly drawn
timesteps, keeping an exponential moving average (EMA) of its weights, and
samples the EMA network with DDIM (Song et al. 2021; eta = 0, `--sample-steps`
steps). With no arguments it trains on the embedded one-shape images (no
download needed), scaled to [-1, 1].

Run:
    python recipes/diffusion.py                          # embedded shapes, 32x32
    python recipes/diffusion.py --smoke --export-dir /tmp/diffusion
    python recipes/diffusion.py --schedule cosine --epochs 40 --dataset fashion_mnist

Writes to --output-dir (runs/diffusion): samples_epoch<NNN>.png (a grid of
DDIM samples from the same seed after every epoch), samples.png (the final
grid), history.csv and history.png (training and held-out epsilon loss),
model.keras (the trainer: both networks and the optimizer state),
summary.json; and a SavedModel of the EMA denoiser's DDIM sampler to
<export-dir>/<next version>/, whose serving_default takes `seed` int32 [2],
`num_images` int32 [] and `steps` int32 [] and returns uint8 `images`.
Rerunning the same command after a crash resumes from the last finished epoch.
"""

import os
import time

from kerasvision import kernels
from kerasvision.export import export_diffusion_sampler
from kerasvision.models.diffusion import (
    SCHEDULES,
    DiffusionModel,
    build_denoiser,
    denoiser_stride,
)
from kerasvision.tasks.cli import recipe_parser, run, setup_run
from kerasvision.tasks.generative import (
    add_generative_flags,
    fit_generative,
    load_generative_data,
    parse_int_list,
    report_sample_quality,
    schedule_settings,
    scores_samples,
    save_generative_run,
)
from kerasvision.tasks.runs import write_json
from kerasvision.training import resolve_jit_compile
from kerasvision.validation import check_image_shape

GRID_SEED = 1234  # every epoch's grid starts from the same noise: progress is comparable


def parse_args(argv):
    parser = recipe_parser(
        __doc__,
        image_size=32,  # the embedded shapes' native size
        # 32, not 64: the 12-minute budget allows about 640 steps of 64, and halving the
        # batch doubles them (1,280) at the same images per second.
        batch_size=32,
        epochs=20,
        learning_rate=5e-4,  # above DDPM's 2e-4: runs here are thousands, not 800k, of steps
    )
    parser.add_argument("--timesteps", type=int, default=1000, help="diffusion steps T (DDPM: 1000)")
    parser.add_argument("--schedule", choices=SCHEDULES, default="linear",
                        help="betas: linear 1e-4..0.02 (DDPM) or cosine (improved DDPM)")
    parser.add_argument("--widths", default="32,64,128",
                        help="U-Net channels per level (stride 2 between levels)")
    parser.add_argument("--blocks-per-level", type=int, default=2, help="residual blocks per level")
    parser.add_argument("--dropout", type=float, default=0.0, help="inside residual blocks")
    parser.add_argument("--ema-decay", type=float, default=0.999,
                        help="EMA of the weights (DDPM: 0.9999)")
    parser.add_argument("--sample-steps", type=int, default=50, help="DDIM steps of the sample grids")
    add_generative_flags(parser)
    # The no-argument run ends within 15 minutes on 2 CPU cores, evaluation included.
    parser.set_defaults(max_train_minutes=12)
    args = parser.parse_args(argv)
    if args.smoke:
        # Seconds, not minutes: a one-level network, few timesteps and steps.
        args.image_size, args.widths, args.blocks_per_level = 16, "8", 1
        args.timesteps, args.sample_steps, args.num_samples = 20, 2, 4
    return args


def check_args(args):
    args.widths = parse_int_list("--widths", args.widths)
    stride = denoiser_stride(args.widths)
    check_image_shape((args.image_size, args.image_size, 3), multiple_of=stride, min_size=stride,
                      name="--image-size")
    for flag in ("timesteps", "sample_steps", "num_samples", "blocks_per_level"):
        if getattr(args, flag) < 1:
            value = getattr(args, flag)
            raise ValueError(f"--{flag.replace('_', '-')} must be >= 1; received {value}.")
    if args.sample_steps > args.timesteps:
        raise ValueError(
            f"--sample-steps must be <= --timesteps ({args.timesteps}); received {args.sample_steps}."
        )


def build_model(args):
    network = build_denoiser(
        (args.image_size, args.image_size, 3),
        widths=args.widths,
        blocks_per_level=args.blocks_per_level,
        dropout=args.dropout,
    )
    model = DiffusionModel(network, timesteps=args.timesteps, schedule=args.schedule,
                           ema_decay=args.ema_decay, seed=args.seed)
    model.compile(kernels.adam(args.learning_rate),
                  jit_compile=resolve_jit_compile(args.jit_compile))
    return model


def main(argv=None):
    args = parse_args(argv)
    check_args(args)
    verbose = setup_run(args, "diffusion")
    train, validation = load_generative_data(args)
    with args.distribute_strategy.scope():  # --strategy: variables distributed at creation
        model = build_model(args)
    print(f"denoiser: {model.network.count_params():,} parameters, T={args.timesteps} "
          f"({args.schedule} schedule)")

    def sample_fn():
        # The EMA network, DDIM with eta = 0, always from the same seed.
        return model.generate(args.num_samples, steps=args.sample_steps, seed=GRID_SEED)

    # Fit, with a grid of samples after each epoch.
    started = time.time()
    history = fit_generative(model, train, validation, args.output_dir, args.epochs, sample_fn,
                             max_minutes=args.max_train_minutes, smoke=args.smoke,
                             verbose=verbose, **schedule_settings(args))

    # Samples, the trainer for further training, the EMA sampler for TF Serving, and
    # the quality of DDIM samples.
    summary = save_generative_run(model, history, sample_fn, args.output_dir,
                                  train_seconds=time.time() - started)
    summary["export_path"] = export_diffusion_sampler(model, args.export_dir)
    print(f"exported to {summary['export_path']}")
    if scores_samples(args):  # scored against held-out shapes
        summary["sample_quality"] = report_sample_quality(
            lambda count: model.generate(count, steps=args.sample_steps), validation,
            args.eval_images)
    summary["sample_steps"] = args.sample_steps
    write_json(os.path.join(args.output_dir, "summary.json"), summary)
    return summary


if __name__ == "__main__":
    run(main)
