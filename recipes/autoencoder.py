"""Convolutional autoencoder: plain, denoising or sparse.

Trains an encoder/decoder pair to reconstruct images scaled to [-1, 1]
(Hinton and Salakhutdinov 2006). `--mode denoising` corrupts the inputs with
Gaussian noise and reconstructs the clean images (Vincent et al. 2008);
`--mode sparse` adds a sparsity penalty on a sigmoid latent code (KL to a
target activation rate, or L1). With no arguments it trains on the embedded
synthetic shapes (no download needed).

Run:
    python recipes/autoencoder.py                          # plain, shapes, 32x32
    python recipes/autoencoder.py --mode denoising --noise-stddev 0.3
    python recipes/autoencoder.py --mode sparse --sparsity kl --dataset mnist
    python recipes/autoencoder.py --smoke --export-dir /tmp/ae

Writes to --output-dir (runs/autoencoder_<mode>): samples_epochNNN.png
(originals, [noisy inputs,] reconstructions of fixed validation images),
samples.png, history.csv, history.png, model.keras (trainer and optimizer),
summary.json; and a SavedModel to <export-dir>/<next version>/ whose
serving_default takes uint8 images [batch, H, W, 3] and returns uint8
`reconstructions`. Rerunning the same command after a crash resumes from the
last finished epoch.
"""

import os
import time

import keras

from kerasvision import kernels
from kerasvision.export import export_autoencoder
from kerasvision.models.autoencoder import (
    SPARSITY_KINDS,
    Autoencoder,
    build_conv_decoder,
    build_conv_encoder,
)
from kerasvision.tasks.cli import recipe_parser, run, setup_run
from kerasvision.tasks.generative import (
    add_generative_flags,
    fit_generative,
    load_generative_data,
    parse_int_list,
    reconstruction_grid,
    sample_batch,
    save_generative_run,
    schedule_settings,
)
from kerasvision.tasks.runs import write_json
from kerasvision.training import resolve_jit_compile

MODES = ("plain", "denoising", "sparse")


def parse_args(argv):
    parser = recipe_parser(
        __doc__,
        image_size=32,  # 64 by flag
        batch_size=64,
        epochs=10,
        learning_rate=1e-3,  # Adam
    )
    parser.add_argument("--mode", choices=MODES, default="plain")
    parser.add_argument("--latent-dim", type=int, default=64, help="size of the code")
    parser.add_argument("--filters", default="32,64,128",
                        help="encoder stage widths (the decoder mirrors them); "
                        "the image size must be a multiple of 2**stages")
    parser.add_argument("--noise-stddev", type=float, default=0.3,
                        help="denoising: Gaussian noise on the [-1, 1] inputs")
    parser.add_argument("--sparsity", choices=SPARSITY_KINDS, default="kl",
                        help="sparse: KL to --sparsity-target (Ng 2011) or L1 on the code")
    parser.add_argument("--sparsity-weight", type=float, default=1e-2,
                        help="sparse: weight of the penalty")
    parser.add_argument("--sparsity-target", type=float, default=0.05,
                        help="sparse, kl: target mean activation of each code unit")
    add_generative_flags(parser)
    return parser.parse_args(argv)


def build_model(args):
    filters = parse_int_list("--filters", args.filters)
    shape = (args.image_size, args.image_size, 3)
    sparse = args.mode == "sparse"
    encoder = build_conv_encoder(shape, args.latent_dim, filters, batch_norm=True,
                                 latent_activation="sigmoid" if sparse else None)
    decoder = build_conv_decoder(args.latent_dim, shape, filters[::-1], batch_norm=True)
    return Autoencoder(
        encoder,
        decoder,
        noise_stddev=args.noise_stddev if args.mode == "denoising" else 0.0,
        sparsity=args.sparsity if sparse else None,
        sparsity_weight=args.sparsity_weight,
        sparsity_target=args.sparsity_target,
        seed=args.seed,
    )


def export(model, export_dir):
    # The whole autoencoder (encoder then decoder) as one functional network.
    images = keras.Input(model.image_shape, name="images")
    network = keras.Model(images, model.decoder(model.encoder(images)), name="autoencoder")
    return export_autoencoder(network, export_dir)


def main(argv=None):
    args = parse_args(argv)
    verbose = setup_run(args, f"autoencoder_{args.mode}")
    with args.distribute_strategy.scope():  # --strategy: variables distributed at creation
        model = build_model(args)  # first: bad sizes fail before data is generated
        model.compile(kernels.adam(args.learning_rate),
                      jit_compile=resolve_jit_compile(args.jit_compile))
    train, validation = load_generative_data(args)
    print(f"autoencoder ({args.mode}): {model.count_params():,} parameters")

    originals = sample_batch(validation, min(args.num_samples, 8))

    def sample_fn():
        grid, _ = reconstruction_grid(model, originals, model.noise_stddev, seed=args.seed)
        return grid

    rows = 3 if model.noise_stddev > 0 else 2
    # Fit, with a grid of samples after each epoch.
    started = time.time()
    history = fit_generative(model, train, validation, args.output_dir, args.epochs, sample_fn,
                             nrows=rows, max_minutes=args.max_train_minutes, smoke=args.smoke,
                             verbose=verbose, **schedule_settings(args))

    # Reconstructions, the trainer for further training, the export for TF Serving.
    summary = save_generative_run(model, history, sample_fn, args.output_dir, nrows=rows,
                                  train_seconds=time.time() - started)
    summary["export_path"] = export(model, args.export_dir)
    print(f"exported to {summary['export_path']}")
    write_json(os.path.join(args.output_dir, "summary.json"), summary)
    return summary


if __name__ == "__main__":
    run(main)
