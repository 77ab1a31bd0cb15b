"""The generative task as recipes run it: image data in [-1, 1], sample grids, fit, report, export.

`recipes/autoencoder.py`, `vae.py`, `dcgan.py`, `wgan.py` (and
`diffusion.py`) differ in the model they build and in what they sample;
everything else they share lives here:

- `add_generative_flags` / `load_generative_data`: `--dataset` (the embedded
  synthetic shapes by default, or a TensorFlow Datasets image set), images
  only, centre-cropped to a square, resized, scaled to [-1, 1] (what tanh
  generators produce), cached, shuffled, batched and prefetched by
  `kerasvision.data.make_generative_pipeline`.
- `SampleGridCallback`: saves a grid PNG of `sample_fn()` after each epoch.
- `reconstruction_grid`, `latent_walk`: what autoencoders and VAEs show.
- `fit_generative`: fit with resumable backups, a time budget and a
  non-finite-loss guard; `save_generative_run`: training curves, the final
  grid and the `.keras` trainer; `report_sample_quality`: FID/KID of the
  samples against held-out shapes, beside the real-image floor.
"""

import os
import time

import numpy as np
import tensorflow as tf
import keras

from kerasvision import visualize
from kerasvision.data.loaders import load_tfds_images
from kerasvision.data.pipelines import make_generative_pipeline
from kerasvision.data.shapes import load_shapes_classification
from kerasvision.tasks.cli import add_schedule_flags
from kerasvision.tasks.runs import image_counts
from kerasvision.training import (
    CommitEpoch,
    KeyPipelinesByEpoch,
    ResumableBackup,
    StopOnNonFiniteLoss,
    TimeBudget,
    WarmupCosineToBudget,
    distribute,
    kill_point,
    read_history,
)
from kerasvision.validation import check_int

DATASETS = ("shapes", "mnist", "fashion_mnist", "celeb_a", "oxford_flowers102")
# tfds split names of the training and the held-out images.
_TFDS_SPLITS = {
    "mnist": ("train", "test"),
    "fashion_mnist": ("train", "test"),
    "celeb_a": ("train", "validation"),
    # Flowers102's "train" holds only 1020 images; its "test" split is the large one.
    "oxford_flowers102": ("train+test", "validation"),
}
SMOKE_IMAGES = 16
SMOKE_STEPS = 2


def add_generative_flags(parser, num_samples=16, decay_fraction=0.5):
    """Adds the data, sampling and learning-rate schedule flags of generative recipes.

    Args:
        parser: a `recipe_parser`.
        num_samples: int, default of `--num-samples` (images per grid).
        decay_fraction: float in (0, 1], default of `--decay-fraction`: the
            final share of training over which the rate decays to zero.
    """
    add_schedule_flags(parser.add_argument_group("learning-rate schedule"),
                       decay_fraction=decay_fraction)
    group = parser.add_argument_group("generative data")
    group.add_argument(
        "--dataset", choices=DATASETS, default="shapes",
        help="shapes: embedded synthetic one-shape images (offline); the others via tfds",
    )
    group.add_argument("--data-dir", help="tfds data directory")
    group.add_argument("--download", action="store_true",
                       help="let tfds download a missing dataset (default: fail fast)")
    group.add_argument("--num-train", type=int, default=None,
                       help="training images (default: shapes 8192, tfds the whole split)")
    group.add_argument("--num-val", type=int, default=None,
                       help="held-out images (default: shapes 1024, tfds the whole split)")
    group.add_argument("--num-samples", type=int, default=num_samples,
                       help="images in each sample grid")
    group.add_argument("--eval-images", type=int, default=512,
                       help="generated images scored by FID/KID and the shapes classifier "
                       "(--dataset shapes; 0 skips the evaluation)")
    return parser


def parse_int_list(flag, text):
    """A comma-separated flag value such as "32,64" -> (32, 64); ValueError naming the flag."""
    try:
        values = tuple(int(part) for part in str(text).split(","))
    except ValueError:
        values = ()
    if not values or min(values) < 1:
        raise ValueError(
            f"{flag} must be comma-separated positive ints (e.g. 32,64); received {text!r}.")
    return values


def load_generative_data(args):
    """Returns `(train, validation)`: batched images in [-1, 1] for the recipe's flags.

    Reads `--dataset --image-size --batch-size --num-train --num-val --seed
    --data-dir --download --smoke`. With `--smoke`: 16 images per split (and
    `setup_run` caps the batch size).
    """
    size = args.image_size
    num_train, num_val = image_counts(args, SMOKE_IMAGES)
    for flag, value in (("--num-train", num_train), ("--num-val", num_val),
                        ("--num-samples", getattr(args, "num_samples", 1))):
        if value is not None and value < 1:
            raise ValueError(f"{flag} must be >= 1; received {value}.")
    for flag, value in (("--num-train", num_train), ("--num-val", num_val)):
        # Batches are kept full (drop_remainder), so fewer images than one batch is no data.
        if value is not None and value < args.batch_size:
            raise ValueError(
                f"{flag} ({value}) must be at least --batch-size ({args.batch_size}): "
                "batches are kept full."
            )
    if args.dataset == "shapes":
        train = load_shapes_classification("train", num_train, size, seed=args.seed)
        validation = load_shapes_classification("validation", num_val, size, seed=args.seed)
    else:
        train_split, val_split = _TFDS_SPLITS[args.dataset]
        try:
            train = load_tfds_images(args.dataset, train_split, data_dir=args.data_dir,
                                     download=args.download)
            validation = load_tfds_images(args.dataset, val_split, data_dir=args.data_dir,
                                          download=args.download)
        except RuntimeError as error:
            # Missing data is bad input to the recipe: one line, not a traceback.
            raise ValueError(f"--dataset {args.dataset}: {error}") from error
        if num_train:
            train = train.take(num_train)
        if num_val:
            validation = validation.take(num_val)
    train = make_generative_pipeline(train, args.batch_size, training=True, image_size=size,
                                     seed=args.seed)
    validation = make_generative_pipeline(validation, args.batch_size, training=False,
                                          image_size=size)
    return train, validation


def sample_batch(dataset, count):
    """The first `count` images of a batched dataset, as a float32 numpy array."""
    count = check_int("count", count, minimum=1)
    batch = next(iter(dataset.unbatch().batch(count)))
    return batch.numpy()


class SampleGridCallback(keras.callbacks.Callback):
    """Saves a grid of `sample_fn()` images as a PNG at the end of each epoch.

    Args:
        sample_fn: callable `() -> [N, H, W, 3]` images in [-1, 1] (numpy or
            tensor), e.g. a generator applied to fixed latents, so that the
            grids of successive epochs are comparable.
        path_pattern: str with an `{epoch}` field, e.g.
            "runs/dcgan/samples_epoch{epoch:03d}.png" (epochs count from 1).
        nrows: int or None, grid rows (default: about square).
        every: int >= 1, save every `every` epochs (and always at the last).

    Example:
        >>> z = np.random.normal(size=(16, 128)).astype("float32")
        >>> callback = SampleGridCallback(lambda: gan.generate(latents=z),
        ...                               "samples_{epoch:03d}.png")
    """

    def __init__(self, sample_fn, path_pattern, nrows=None, every=1):
        super().__init__()
        if not callable(sample_fn):
            raise ValueError(f"`sample_fn` must be callable; received {sample_fn!r}.")
        if "{epoch" not in str(path_pattern):
            raise ValueError(
                "`path_pattern` must contain an {epoch} field (e.g. 'samples_{epoch:03d}.png'); "
                f"received path_pattern={path_pattern!r}."
            )
        self.sample_fn = sample_fn
        self.path_pattern = str(path_pattern)
        self.nrows = nrows
        self.every = check_int("every", every, minimum=1)
        self.paths = []

    def on_epoch_end(self, epoch, logs=None):
        last = self.params and epoch + 1 == self.params.get("epochs")
        if (epoch + 1) % self.every and not last:
            return
        images = keras.ops.convert_to_numpy(self.sample_fn())
        path = self.path_pattern.format(epoch=epoch + 1)
        visualize.plot_image_grid(images, path, nrows=self.nrows, value_range=(-1, 1),
                                  title=f"epoch {epoch + 1}")
        self.paths.append(path)


def reconstruction_grid(model, images, noise_stddev=0.0, seed=0):
    """Originals, (noisy inputs,) and reconstructions stacked row by row for a grid.

    Args:
        model: maps images `[N, S, S, 3]` in [-1, 1] to reconstructions.
        images: numpy `[N, S, S, 3]` in [-1, 1].
        noise_stddev: float; > 0 adds a row of inputs corrupted with this
            noise (fixed by `seed`) and reconstructs those instead.
        seed: int, seed of the noise row.

    Returns:
        (numpy `[rows * N, S, S, 3]` in [-1, 1], rows): plot with `nrows=rows`.
    """
    rows = [images]
    inputs = images
    if noise_stddev > 0:
        noise = np.random.default_rng(seed).normal(size=images.shape).astype("float32")
        inputs = images + noise_stddev * noise
        rows.append(np.clip(inputs, -1.0, 1.0))
    rows.append(keras.ops.convert_to_numpy(model(inputs, training=False)))
    return np.concatenate(rows, axis=0), len(rows)


def latent_walk(decode, latent_dim, num_rows=4, steps=8, seed=0):
    """Images along straight lines between pairs of prior draws (a latent-space walk).

    Args:
        decode: callable latents `[N, latent_dim]` -> images `[N, S, S, 3]`.
        latent_dim: int >= 1.
        num_rows: int >= 1, number of walks (one per grid row).
        steps: int >= 2, images per walk, both ends included.
        seed: int, seed of the end points (fixed: comparable across epochs).

    Returns:
        numpy `[num_rows * steps, S, S, 3]`, row-major: plot with `nrows=num_rows`.
    """
    latent_dim = check_int("latent_dim", latent_dim, minimum=1)
    num_rows = check_int("num_rows", num_rows, minimum=1)
    steps = check_int("steps", steps, minimum=2)
    rng = np.random.default_rng(seed)
    start, end = rng.normal(size=(2, num_rows, 1, latent_dim)).astype("float32")
    weights = np.linspace(0.0, 1.0, steps, dtype="float32")[None, :, None]
    latents = ((1.0 - weights) * start + weights * end).reshape(-1, latent_dim)
    return keras.ops.convert_to_numpy(decode(latents))


def fixed_latents(count, latent_dim, seed=0):
    """`[count, latent_dim]` float32 N(0, I) draws fixed by `seed` (for comparable grids)."""
    return np.random.default_rng(seed).normal(size=(count, latent_dim)).astype("float32")


def generative_callbacks(output_dir, sample_fn, nrows=None, deadline=None, schedule=None):
    """The callbacks generative recipes train with.

    Args:
        output_dir: str, directory of backups, logs and grids.
        sample_fn: callable `() -> images in [-1, 1]` for the grids.
        nrows: grid rows.
        deadline: float or None, `time.time()` at which training stops.
        schedule: a learning-rate callback (`WarmupCosineToBudget`) or None.

    Returns:
        list: `ResumableBackup` (rerunning the command after a kill resumes at
        the last finished epoch, optimizers and noise state included),
        `StopOnNonFiniteLoss` (every logged loss, not only `loss`), a CSV log
        `history.csv`, a `SampleGridCallback` writing
        `samples_epoch<NNN>.png`, `TimeBudget` (so the epoch it cuts short is
        still logged) and `CommitEpoch`, which writes the backup last.
    """
    os.makedirs(output_dir, exist_ok=True)
    backup = ResumableBackup(os.path.join(output_dir, "backup"), deferred=True)
    return [
        backup,
        # After the backup, which restores the optimizers' step counts it reads.
        *([schedule] if schedule is not None else []),
        KeyPipelinesByEpoch(),
        StopOnNonFiniteLoss(),
        *kill_point("mid_epoch"),
        keras.callbacks.CSVLogger(os.path.join(output_dir, "history.csv"), append=True),
        *kill_point("after_history_row"),
        SampleGridCallback(sample_fn, os.path.join(output_dir, "samples_epoch{epoch:03d}.png"),
                           nrows=nrows),
        TimeBudget(deadline),
        CommitEpoch(backup),
        *kill_point("after_backup"),
    ]


def evaluate_samples(generate_fn, heldout_images, count=512, extractor=None, confidence=0.9):
    """FID and KID of generated shapes against held-out ones, their floor, and how many read as a shape.

    Features and shape probabilities come from
    `kerasvision.models.shapes_features.shapes_feature_extractor`
    (the small CNN trained on the embedded shapes, the features
    `benchmarks/generative_quality.py` uses). The floor is the same distances
    between two halves of real held-out images: what a perfect generator
    would score with this many images. The recognised share alone proves
    little: the small CNN is also confident on images unlike any shape
    (uniform noise), so read it beside the FID.

    Args:
        generate_fn: callable `(num_images) -> [N, H, W, 3]` images in [-1, 1].
        heldout_images: numpy `[M, H, W, 3]` real images in [-1, 1], M >= 2 * count.
        count: int >= 2, images per set.
        extractor: a `shapes_feature_extractor()` result (default: the 32 px
            one, trained once and cached in `~/.keras/kerasvision`, or
            `$KERAS_HOME/kerasvision`).
        confidence: float, the probability above which a sample counts as
            recognised as one of the four shapes.

    Returns:
        dict: `fid`, `kid`, `fid_floor`, `kid_floor`, `fid_ratio` (fid /
        fid_floor), `recognised_share` (share of samples whose most likely
        shape has probability >= `confidence`), `real_recognised_share`, `count`.
    """
    from kerasvision.metrics import sample_quality
    from kerasvision.models.shapes_features import shapes_feature_extractor

    count = check_int("count", count, minimum=2)
    if heldout_images.shape[0] < 2 * count:
        raise ValueError(f"`heldout_images` must hold at least 2 * count = {2 * count} images; "
                         f"received {heldout_images.shape[0]}.")
    extractor = extractor or shapes_feature_extractor()
    fake = np.asarray(keras.ops.convert_to_numpy(generate_fn(count)), np.float32)
    real_a, real_b = heldout_images[:count], heldout_images[count:2 * count]
    quality = sample_quality(real_a, fake, extractor, value_range=(-1, 1))
    floor = sample_quality(real_a, real_b, extractor, value_range=(-1, 1))

    def recognised(images):
        size = (extractor.image_size, extractor.image_size)
        unit = tf.image.resize((tf.convert_to_tensor(images) + 1.0) / 2.0, size)
        probabilities = tf.nn.softmax(extractor.classifier.predict(unit, verbose=0), axis=-1)
        return float(np.mean(np.max(probabilities, axis=-1) >= confidence))

    return {
        "fid": quality["fid"], "kid": quality["kid"],
        "fid_floor": floor["fid"], "kid_floor": floor["kid"],
        "fid_ratio": quality["fid"] / max(floor["fid"], 1e-12),
        "recognised_share": recognised(fake), "real_recognised_share": recognised(real_a),
        "count": count,
    }


def heldout_images(dataset):
    """Every image of a batched held-out dataset, as one float32 numpy array.

    Reads the dataset to its end: an iterator left part-way through a cached
    pipeline leaves the cache incomplete (tf.data warns about it).
    """
    return np.concatenate([np.asarray(batch) for batch in dataset]).astype(np.float32)


def fit_generative(model, train, validation, output_dir, epochs, sample_fn, nrows=None,
                   max_minutes=None, smoke=False, verbose=2, learning_rate=None,
                   decay_fraction=None):
    """Fits a generative trainer with the run's callbacks and returns its history.

    With `learning_rate` and `decay_fraction`, every optimizer of the trainer
    follows `WarmupCosineToBudget`: a short warm-up, `learning_rate` held,
    then a cosine decay to zero over the final `decay_fraction` of the
    epochs or of the time budget, whichever ends first: a run cut by the
    clock still anneals, and a GAN's last generator comes from small steps
    (for DCGAN's default run the effect was within the spread between runs,
    docs/benchmarks.md).

    Args:
        model: a compiled `GenerativeTrainer` subclass.
        train, validation: batched datasets from `load_generative_data`.
        output_dir: str, for the resume backup, `history.csv` and the per-epoch grids.
        epochs: int >= 1.
        sample_fn: callable `() -> images in [-1, 1]` for the per-epoch grids.
        nrows: grid rows for `sample_fn`'s images.
        max_minutes: float or None, wall-clock budget (None or 0: none).
        smoke: bool, a couple of steps of one epoch.
        verbose: `fit` verbosity.
        learning_rate: float > 0, the peak rate of the schedule (None: the
            compiled rates stay constant).
        decay_fraction: float in (0, 1], the share of training spent decaying.

    Returns:
        dict metric -> per-epoch values, read back from `history.csv`.
    """
    deadline = time.time() + 60 * max_minutes if max_minutes else None
    schedule = None
    if learning_rate is not None and decay_fraction is not None and not smoke:
        steps = int(train.cardinality())
        if steps < 1:  # unknown length: the time budget alone measures progress
            steps = 10**9
        names = (model.STEP_OPTIMIZER,
                 *(name for name in model.OPTIMIZERS if name != model.STEP_OPTIMIZER))
        schedule = WarmupCosineToBudget(learning_rate, epochs * steps, deadline,
                                        decay_fraction=decay_fraction, optimizer_names=names)
    distribute.fit(  # model.fit, or the multi-worker loop (keras#20585)
        model,
        train,
        validation_data=validation,
        epochs=1 if smoke else epochs,
        steps_per_epoch=SMOKE_STEPS if smoke else None,
        validation_steps=1 if smoke else None,
        shuffle=False,  # the tf.data pipeline shuffles
        callbacks=generative_callbacks(output_dir, sample_fn, nrows=nrows, deadline=deadline,
                                       schedule=schedule),
        verbose=verbose,
    )
    return read_history(os.path.join(output_dir, "history.csv"))


def save_generative_run(model, history, sample_fn, output_dir, nrows=None, train_seconds=None):
    """Writes `history.png`, the final `samples.png` and the whole trainer as `model.keras`.

    Returns:
        dict summary: the last epoch's losses, `train_seconds`, and the paths
        `history_plot`, `samples`, `model_path` (networks and optimizer state,
        for further training).
    """
    summary = {key: values[-1] for key, values in history.items()}
    summary["train_seconds"] = train_seconds
    if history:
        summary["history_plot"] = visualize.plot_history(
            history, os.path.join(output_dir, "history.png"))
    summary["samples"] = visualize.plot_image_grid(
        keras.ops.convert_to_numpy(sample_fn()), os.path.join(output_dir, "samples.png"),
        nrows=nrows, value_range=(-1, 1), title="final samples")
    summary["model_path"] = os.path.join(output_dir, "model.keras")
    model.save(summary["model_path"])
    minutes = "" if train_seconds is None else f"trained {train_seconds / 60:.1f} min; "
    print(f"{minutes}samples in {summary['samples']}")
    return summary


def schedule_settings(args):
    """`fit_generative`'s schedule arguments from `--lr-schedule`, `--decay-fraction`
    and `--learning-rate`: `{"learning_rate", "decay_fraction"}` (None: constant)."""
    if args.lr_schedule != "cosine":
        return {"learning_rate": None, "decay_fraction": None}
    return {"learning_rate": args.learning_rate, "decay_fraction": args.decay_fraction}


def scores_samples(args):
    """Whether a run's samples get FID/KID and the recognised share: the embedded
    shapes (the features are trained on them), not `--smoke`, `--eval-images` > 0."""
    return args.dataset == "shapes" and not args.smoke and args.eval_images > 0


def report_sample_quality(generate_fn, validation, count=512):
    """Scores generated shapes against held-out ones (`evaluate_samples`) and prints one line.

    Args:
        generate_fn: callable `(num_images) -> images in [-1, 1]`.
        validation: batched held-out dataset of the embedded shapes.
        count: int, images per set (at most half the held-out images).

    Returns:
        `evaluate_samples`' dict.
    """
    real = heldout_images(validation)
    count = min(count, real.shape[0] // 2)
    quality = evaluate_samples(generate_fn, real, count)
    print(f"sample quality ({count} images, shapes CNN features): FID {quality['fid']:.2f} "
          f"({quality['fid_ratio']:.1f}x the real-image floor {quality['fid_floor']:.2f}), "
          f"KID {quality['kid']:.4f} (floor {quality['kid_floor']:.4f}); "
          f"{quality['recognised_share']:.0%} of samples recognised as a shape "
          f"(real images: {quality['real_recognised_share']:.0%})")
    return quality


__all__ = [
    "DATASETS",
    "SampleGridCallback",
    "add_generative_flags",
    "schedule_settings",
    "scores_samples",
    "evaluate_samples",
    "fit_generative",
    "fixed_latents",
    "generative_callbacks",
    "heldout_images",
    "latent_walk",
    "load_generative_data",
    "parse_int_list",
    "reconstruction_grid",
    "report_sample_quality",
    "sample_batch",
    "save_generative_run",
]
