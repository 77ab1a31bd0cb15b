"""The verification task as `recipes/verification.py` runs it: identities, batches, fit, report.

Verification by metric learning, the notes' person recognition: train an
embedding on some identities, then decide on identities never seen whether
two images show the same one. The recipe puts two answers side by side:

- the eigen-image baseline (`kerasvision.models.eigen.EigenImages`): PCA of
  raw pixels, then distances between projections;
- a siamese embedding network (`kerasvision.models.siamese`) trained with
  the triplet loss with semi-hard mining (FaceNet) or the contrastive loss.

Both are scored by `kerasvision.metrics.verification` on the same held-out
pairs: ROC AUC, TAR at a FAR, and top-1 identification.

Datasets (`--dataset`):
    shapes: `make_shapes_identities`, shape "identities" with a fixed look
        seen in new poses over new backgrounds; train and validation hold
        different identities. Offline and deterministic from `--seed`.
    lfw: Labeled Faces in the Wild via tfds (`--data-dir`), people with two
        photos or more; a random `--val-share` of the people is held out.
"""

import os

import numpy as np
import tensorflow as tf

from kerasvision import kernels
from kerasvision.data.loaders import load_lfw_identities
from kerasvision.data.pipelines import training_epoch
from kerasvision.data.shapes import make_shapes_identities
from kerasvision.losses import ContrastiveLoss, TripletSemiHardLoss
from kerasvision.training import (
    distribute,
    load_model_weights,
    make_callbacks,
    read_history,
    resolve_jit_compile,
)
from kerasvision.validation import check_float, check_int, check_seed

DATASETS = ("shapes", "lfw")
LOSSES = ("triplet", "contrastive")
MONITOR = "val_loss"
# --smoke: identities and images of each split.
SMOKE_IDENTITIES, SMOKE_IMAGES_PER_IDENTITY = 8, 4


def add_verification_flags(parser):
    """Adds the data, loss and evaluation flags of the verification recipe to a `recipe_parser`."""
    group = parser.add_argument_group("verification")
    group.add_argument("--dataset", choices=DATASETS, default="shapes",
                       help="shapes: embedded shape identities (offline); lfw: faces via tfds")
    group.add_argument("--data-dir", help="tfds data directory (lfw)")
    group.add_argument("--num-identities", type=int, default=256, help="training identities (shapes)")
    group.add_argument("--num-val-identities", type=int, default=64,
                       help="held-out identities (shapes)")
    group.add_argument("--images-per-identity", type=int, default=8, help="images of each (shapes)")
    group.add_argument("--val-share", type=float, default=0.2, help="people held out (lfw)")
    group.add_argument("--batch-images-per-identity", type=int, default=4,
                       help="K images of each identity per batch; --batch-size / K identities")
    group.add_argument("--loss", choices=LOSSES, default="triplet",
                       help="triplet with semi-hard mining (FaceNet) or contrastive (Hadsell 2006)")
    group.add_argument("--margin", type=float, default=None,
                       help="loss margin (default: 0.2 triplet on squared distances, 1.0 contrastive)")
    group.add_argument("--pairs", type=int, default=4000, help="held-out verification pairs")
    group.add_argument("--far", type=float, default=0.01, help="false accept rate of the TAR")
    return parser


def load_identity_data(args):
    """Training and held-out identities as arrays, for the recipe's flags.

    Returns:
        dict with `train` and `validation`, each `(images uint8 [N, S, S, 3],
        identities int32 [N])`; the two hold different identities.
    """
    size = args.image_size
    if args.dataset == "shapes":
        if args.smoke:
            counts = (SMOKE_IDENTITIES, SMOKE_IDENTITIES, SMOKE_IMAGES_PER_IDENTITY)
        else:
            counts = (args.num_identities, args.num_val_identities, args.images_per_identity)
        train = make_shapes_identities(counts[0], counts[2], size, seed=args.seed, split="train")
        validation = make_shapes_identities(counts[1], counts[2], size, seed=args.seed,
                                            split="validation")
        return {"train": train, "validation": validation}
    images, identities, _ = load_lfw_identities(
        size, min_images_per_identity=2, data_dir=args.data_dir,
        max_identities=2 * SMOKE_IDENTITIES if args.smoke else None)
    return split_identities(images, identities, args.val_share, args.seed)


def split_identities(images, identities, val_share, seed=0):
    """Holds out a random share of the identities (all their images) for validation.

    Args:
        images: `[N, ...]`; identities: int `[N]`.
        val_share: float in (0, 1), share of identities held out (at least 2
            on each side).
        seed: int >= 0.

    Returns:
        dict with `train` and `validation` `(images, identities)`.
    """
    val_share = check_float("val_share", val_share, minimum=0.0, maximum=1.0,
                            strict_minimum=True)
    found = np.unique(identities)
    count = round(val_share * found.size)
    if count < 2 or found.size - count < 2:
        raise ValueError(
            f"`val_share` must leave at least 2 identities on each side; received "
            f"val_share={val_share} of {found.size} identities."
        )
    held_out = np.random.default_rng(check_seed(seed)).choice(found, count, replace=False)
    in_validation = np.isin(identities, held_out)
    return {"train": (images[~in_validation], identities[~in_validation]),
            "validation": (images[in_validation], identities[in_validation])}


def make_identity_pipeline(images, identities, batch_size, images_per_identity, seed=0,
                           training=True):
    """Batches of P identities x K images each, for the triplet and contrastive losses.

    Random batches of a set with many identities rarely hold two images of
    one, and the triplet loss needs anchor-positive pairs in every batch:
    FaceNet (section 3.2) samples a fixed number of images of each identity
    per batch, and so does this pipeline ("PK" batches). Each epoch takes
    the identities in a new random order, P = `batch_size // K` at a time,
    and K random images of each (repeated when an identity has fewer). The
    order is keyed by `(seed, epoch)` through `training_epoch()`, so a run
    resumed at epoch k sees the batches an uninterrupted run sees there;
    with `training=False` every pass gives the same batches.

    Args:
        images: uint8 `[N, H, W, 3]`.
        identities: int `[N]`; identities with a single image are skipped.
        batch_size: int, `P * K` images per batch (P >= 2 identities).
        images_per_identity: int >= 2, K.
        seed: int >= 0.
        training: bool, reshuffle by epoch (True) or repeat one order (False).

    Returns:
        `tf.data.Dataset` of `(images float32 [P * K, H, W, 3], identities
        int32 [P * K])`, `M // P` batches per epoch for M usable identities.
    """
    k = check_int("images_per_identity", images_per_identity, minimum=2)
    batch_size = check_int("batch_size", batch_size, minimum=2 * k)
    p = batch_size // k
    seed = check_seed(seed)
    identities = np.asarray(identities).reshape(-1)
    if len(images) != identities.size:
        raise ValueError(
            f"`images` and `identities` must have one entry per image; received {len(images)} "
            f"images and {identities.size} identities."
        )
    _, inverse, counts = np.unique(identities, return_inverse=True, return_counts=True)
    usable = np.flatnonzero(counts >= 2)
    if usable.size < p:
        raise ValueError(
            f"`batch_size` // images_per_identity = {p} identities per batch, but only "
            f"{usable.size} identities have two images or more; received batch_size="
            f"{batch_size}, images_per_identity={k}."
        )
    steps = usable.size // p
    starts = np.concatenate([[0], np.cumsum(counts)[:-1]])
    images_t = tf.constant(images)
    labels_t = tf.constant(identities.astype(np.int32))
    group_t = tf.constant(inverse.astype(np.float64))
    starts_t, counts_t = tf.constant(starts[usable]), tf.constant(counts[usable])
    epoch = training_epoch()

    def one_epoch(epoch_index):
        key = tf.stack([tf.constant(seed, tf.int64), epoch_index])
        # 1. Identities in a random order, P per batch.
        order = tf.argsort(tf.random.stateless_uniform([usable.size], key))[:steps * p]
        # 2. Images sorted by identity, randomly within each: the first K of an
        # identity's run are a random K of its images (cycled if it has fewer).
        within = tf.random.stateless_uniform([identities.size], key + 1, dtype=tf.float64)
        by_identity = tf.argsort(group_t + within)
        offsets = tf.range(k, dtype=tf.int64)[None, :] % tf.gather(counts_t, order)[:, None]
        positions = tf.gather(starts_t, order)[:, None] + offsets  # [steps * P, K]
        batches = tf.reshape(tf.gather(by_identity, positions), [steps, p * k])
        return tf.data.Dataset.from_tensor_slices(batches)

    if training:
        indices = tf.data.Dataset.range(1).map(lambda _: epoch.read_value()).flat_map(one_epoch)
    else:
        indices = one_epoch(tf.constant(0, tf.int64))
    ds = indices.map(lambda idx: (tf.cast(tf.gather(images_t, idx), tf.float32),
                                  tf.gather(labels_t, idx)),
                     num_parallel_calls=tf.data.AUTOTUNE)
    return ds.apply(tf.data.experimental.assert_cardinality(steps)).prefetch(tf.data.AUTOTUNE)


def make_identity_pipelines(args, data):
    """`(train, validation)` PK pipelines (`make_identity_pipeline`) for the recipe's flags.

    `--batch-size` images per batch, `--batch-images-per-identity` (K) of
    each identity; under `--smoke` (batches of 4) K is 2.
    """
    k = check_int("--batch-images-per-identity", args.batch_images_per_identity, minimum=2)
    k = 2 if args.smoke else k
    train = make_identity_pipeline(*data["train"], args.batch_size, k, seed=args.seed)
    validation = make_identity_pipeline(*data["validation"], args.batch_size, k,
                                        seed=args.seed, training=False)
    return train, validation


def make_loss(name, margin=None):
    """The metric-learning loss of `--loss`, with its default margin when `margin` is None."""
    if name == "triplet":
        return TripletSemiHardLoss(margin=0.2 if margin is None else margin)
    if name == "contrastive":
        return ContrastiveLoss(margin=1.0 if margin is None else margin)
    raise ValueError(f"`name` must be one of {list(LOSSES)}; received name={name!r}.")


def compile_embedding_network(model, loss, learning_rate=1e-3, jit_compile="auto"):
    """Compiles an embedding network with Adam and a metric-learning loss (no metrics).

    Args:
        model: from `build_embedding_network`, built in the run's strategy scope.
        loss: a `keras.losses.Loss` taking `(identities, embeddings)` (`make_loss`).
        learning_rate: float > 0.
        jit_compile: "auto", "true" or "false" (`--jit-compile`).
    """
    with model.distribute_strategy.scope():
        model.compile(optimizer=kernels.adam(learning_rate), loss=loss,
                      jit_compile=resolve_jit_compile(jit_compile))
        model.optimizer.build(model.trainable_variables)
    return model


def fit_embedding_network(model, train, validation, run_dir, epochs, verbose=2,
                          steps_per_epoch=None, max_minutes=None):
    """Trains a compiled embedding network with the recipes' callbacks, keeping its best epoch.

    Checkpoints by the held-out identities' loss (`val_loss`); rerunning after
    a kill resumes from the last finished epoch.

    Returns:
        dict metric -> per-epoch values, read back from `history.csv`.
    """
    import time

    check_int("epochs", epochs, minimum=1)
    deadline = time.time() + 60 * max_minutes if max_minutes else None
    callbacks = make_callbacks(run_dir, MONITOR, "min", deadline=deadline)
    distribute.fit(  # model.fit, or the multi-worker loop (keras#20585)
        model, train, validation_data=validation, epochs=epochs, steps_per_epoch=steps_per_epoch,
        shuffle=False,  # the identity pipeline draws its own order, keyed by epoch
        callbacks=callbacks, verbose=verbose)
    best = os.path.join(run_dir, "best.weights.h5")
    if os.path.exists(best):
        load_model_weights(model, best)
    return read_history(os.path.join(run_dir, "history.csv"))


def embed(model, images, batch_size=256):
    """Embeddings `[N, D]` (numpy float32) of uint8 images `[N, H, W, 3]`."""
    return model.predict(images.astype(np.float32), batch_size=batch_size, verbose=0)


def print_verification_table(reports):
    """Prints AUC, TAR at the FAR, and top-1 of each method, side by side.

    Args:
        reports: dict method name -> `evaluate_verification` result.
    """
    far = next(iter(reports.values()))["far"]
    width = max(len(name) for name in reports) + 2
    print(f"{'method':<{width}}{'AUC':>8}{f'TAR@FAR={far:g}':>16}{'top-1':>8}")
    for name, report in reports.items():
        print(f"{name:<{width}}{report['auc']:>8.4f}{report['tar_at_far']:>16.4f}"
              f"{report['top1']:>8.4f}")



__all__ = [
    "DATASETS",
    "LOSSES",
    "add_verification_flags",
    "compile_embedding_network",
    "embed",
    "fit_embedding_network",
    "load_identity_data",
    "make_identity_pipeline",
    "make_identity_pipelines",
    "make_loss",
    "print_verification_table",
    "split_identities",
]
