"""Variational autoencoder (Kingma and Welling 2014).

Trains a convolutional VAE on images scaled to [-1, 1]: the encoder gives a
Gaussian over the latent code, a latent is drawn by the reparameterisation
trick, the decoder reconstructs; the loss is the negative ELBO
(reconstruction + beta * KL, both tracked). With no arguments it trains on
the embedded synthetic shapes (no download needed).

Run:
    python recipes/vae.py                                  # shapes, 32x32
    python recipes/vae.py --dataset fashion_mnist --latent-dim 16
    python recipes/vae.py --smoke --export-dir /tmp/vae

Writes to --output-dir (runs/vae): samples_epochNNN.png (a latent-space
walk: each row decodes a straight line between two prior draws), samples.png,
prior_samples.png (decoded N(0, I) draws), history.csv, history.png,
model.keras, summary.json; and the decoder as a SavedModel to
<export-dir>/<next version>/ (serving_default: `latents` float32
[batch, latent_dim] -> uint8 `images`; serving_seed: `seed`, `num_images`).
"""

import os
import time

import keras

from kerasvision import kernels, visualize
from kerasvision.export import export_generator
from kerasvision.models.autoencoder import VAE, build_conv_decoder, build_conv_encoder
from kerasvision.tasks.cli import recipe_parser, run, setup_run
from kerasvision.tasks.generative import (
    add_generative_flags,
    fit_generative,
    fixed_latents,
    latent_walk,
    load_generative_data,
    parse_int_list,
    report_sample_quality,
    schedule_settings,
    scores_samples,
    save_generative_run,
)
from kerasvision.tasks.runs import write_json
from kerasvision.training import resolve_jit_compile

WALK_ROWS, WALK_STEPS = 4, 8


def parse_args(argv):
    parser = recipe_parser(
        __doc__,
        image_size=32,  # 64 by flag
        batch_size=64,
        epochs=100,  # the time budget below usually ends training first
        learning_rate=1e-3,  # Adam
    )
    parser.add_argument("--latent-dim", type=int, default=32, help="size of the latent code")
    parser.add_argument("--filters", default="32,64,128",
                        help="encoder stage widths (the decoder mirrors them); "
                        "the image size must be a multiple of 2**stages")
    parser.add_argument("--beta", type=float, default=1.0,
                        help="weight of the KL term (1: the ELBO; >1: beta-VAE)")
    add_generative_flags(parser)
    # The no-argument run ends within 10 minutes on 2 CPU cores, evaluation included.
    parser.set_defaults(max_train_minutes=8)
    return parser.parse_args(argv)


def build_model(args):
    filters = parse_int_list("--filters", args.filters)
    shape = (args.image_size, args.image_size, 3)
    encoder = build_conv_encoder(shape, args.latent_dim, filters, batch_norm=True,
                                 variational=True)
    decoder = build_conv_decoder(args.latent_dim, shape, filters[::-1], batch_norm=True)
    return VAE(encoder, decoder, beta=args.beta, seed=args.seed)


def main(argv=None):
    args = parse_args(argv)
    verbose = setup_run(args, "vae")
    with args.distribute_strategy.scope():  # --strategy: variables distributed at creation
        model = build_model(args)  # first: bad sizes fail before data is generated
        model.compile(kernels.adam(args.learning_rate),
                      jit_compile=resolve_jit_compile(args.jit_compile))
    train, validation = load_generative_data(args)
    print(f"VAE: {model.count_params():,} parameters, latent_dim {model.latent_dim}")

    def sample_fn():
        return latent_walk(model.decode, model.latent_dim, WALK_ROWS, WALK_STEPS, seed=args.seed)

    # Fit, with a grid of samples after each epoch.
    started = time.time()
    history = fit_generative(model, train, validation, args.output_dir, args.epochs, sample_fn,
                             nrows=WALK_ROWS, max_minutes=args.max_train_minutes, smoke=args.smoke,
                             verbose=verbose, **schedule_settings(args))

    # The latent walk, the trainer for further training, the decoder for TF Serving,
    # and the quality of prior samples.
    summary = save_generative_run(model, history, sample_fn, args.output_dir, nrows=WALK_ROWS,
                                  train_seconds=time.time() - started)
    summary["export_path"] = export_generator(model.decoder, args.export_dir, model.latent_dim)
    print(f"exported to {summary['export_path']}")
    if scores_samples(args):  # scored against held-out shapes
        summary["sample_quality"] = report_sample_quality(model.generate, validation,
                                                          args.eval_images)
    prior = model.generate(latents=fixed_latents(args.num_samples, model.latent_dim, args.seed))
    summary["prior_samples"] = visualize.plot_image_grid(
        keras.ops.convert_to_numpy(prior), os.path.join(args.output_dir, "prior_samples.png"),
        value_range=(-1, 1), title="decoded prior draws")
    write_json(os.path.join(args.output_dir, "summary.json"), summary)
    return summary


if __name__ == "__main__":
    run(main)
