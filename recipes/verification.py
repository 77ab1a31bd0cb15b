"""Verification by metric learning: eigen-images against a siamese embedding trained with a triplet loss.

Is this the same identity? Trains on some identities and answers for others
never seen, two ways, scored on the same held-out pairs:

1. Eigen-images (Turk and Pentland 1991): PCA of the training images' raw
   pixels (by SVD), then the distance between two images' projections.
2. A siamese embedding network: a small CNN whose L2-normalised outputs are
   pulled together for one identity and pushed apart for two, by the triplet
   loss with semi-hard negatives mined in each batch (Schroff et al. 2015,
   FaceNet) or the contrastive loss (Hadsell et al. 2006, `--loss contrastive`).
   Batches hold P identities x K images each.

With no arguments it uses the embedded shape identities (256 for training,
64 held out, 8 images each at 32x32: a fixed look seen in new poses over new
backgrounds) and runs in a few minutes on 2 CPU cores.

Run:
    python recipes/verification.py
    python recipes/verification.py --loss contrastive
    python recipes/verification.py --smoke --export-dir /tmp/embedding
    python recipes/verification.py --dataset lfw --image-size 64 --data-dir /data/tfds

Writes to --output-dir (runs/verification): best.weights.h5, history.csv,
roc.png (both ROC curves) and summary.json (AUC, TAR at --far and top-1
identification for each method); and a SavedModel to <export-dir>/<next
version>/ whose serving_default takes uint8 images and returns L2-normalised
embeddings. Rerunning the same command after a crash resumes training.
"""

import os

from kerasvision.export import export_embedding_network
from kerasvision.metrics.verification import (
    evaluate_verification,
    make_verification_pairs,
)
from kerasvision.models.eigen import EigenImages
from kerasvision.models.siamese import build_embedding_network
from kerasvision.tasks.cli import recipe_parser, run, setup_run
from kerasvision.tasks.runs import write_json
from kerasvision.tasks.verification import (
    add_verification_flags,
    compile_embedding_network,
    embed,
    fit_embedding_network,
    load_identity_data,
    make_identity_pipelines,
    make_loss,
    print_verification_table,
)
from kerasvision.visualize import plot_roc


def parse_args(argv):
    parser = recipe_parser(
        __doc__,
        image_size=32,  # the shape identities' native size
        batch_size=64,  # 16 identities x 4 images
        epochs=30,  # about 16 steps each on the default data
        learning_rate=1e-3,
    )
    parser.add_argument("--filters", type=int, nargs="+", default=[16, 32, 64],
                        help="width of each conv block of the embedding network")
    parser.add_argument("--embedding-dim", type=int, default=64, help="embedding size D")
    parser.add_argument("--pca-components", type=int, default=32,
                        help="eigen-images kept by the baseline")
    parser.add_argument("--pca-whiten", action="store_true",
                        help="scale each PCA coordinate to unit variance")
    add_verification_flags(parser)
    return parser.parse_args(argv)


def main(argv=None):
    args = parse_args(argv)
    verbose = setup_run(args, "verification")

    # Data: training identities, and held-out identities with balanced pairs.
    data = load_identity_data(args)
    train_images, _ = data["train"]
    val_images, val_identities = data["validation"]
    first, second, same = make_verification_pairs(val_identities, args.pairs, seed=args.seed)
    print(f"{len(train_images)} training images, {len(val_images)} held-out images, "
          f"{len(same)} held-out pairs")

    # Baseline: eigen-images of the training set, distances between projections.
    pca = EigenImages(min(args.pca_components, len(train_images) - 1), whiten=args.pca_whiten,
                      seed=args.seed).fit(train_images)
    reports = {"eigen-images (PCA)": evaluate_verification(
        pca.transform(val_images), val_identities, first, second, same, far=args.far)}

    # The embedding network, trained on P identities x K images per batch.
    train, validation = make_identity_pipelines(args, data)
    with args.distribute_strategy.scope():
        model = build_embedding_network(
            (args.image_size, args.image_size, 3), embedding_dim=args.embedding_dim,
            filters=args.filters,
        )
    print(f"{model.name}: {model.count_params():,} parameters")
    compile_embedding_network(model, make_loss(args.loss, args.margin), args.learning_rate,
                              args.jit_compile)
    history = fit_embedding_network(
        model, train, validation, args.output_dir, epochs=1 if args.smoke else args.epochs,
        verbose=verbose, steps_per_epoch=2 if args.smoke else None,
        max_minutes=args.max_train_minutes,
    )

    # Report: both methods on the same held-out pairs, side by side.
    reports[f"siamese ({args.loss})"] = evaluate_verification(
        embed(model, val_images), val_identities, first, second, same, far=args.far)
    print_verification_table(reports)
    summary = {name: {k: v for k, v in report.items() if k != "roc"}
               for name, report in reports.items()}
    summary["epochs_trained"] = len(history.get("loss", []))
    summary["roc_plot"] = plot_roc(reports, os.path.join(args.output_dir, "roc.png"))

    # Export for TF Serving: uint8 images -> L2-normalised embeddings.
    summary["export_path"] = export_embedding_network(model, args.export_dir)
    print(f"exported to {summary['export_path']}")
    write_json(os.path.join(args.output_dir, "summary.json"), summary)
    return summary


if __name__ == "__main__":
    run(main)
