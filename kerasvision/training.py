"""Training helpers shared by recipes: precision, callbacks, the two-phase transfer schedule.

Transfer learning runs in two phases (Yosinski et al. 2014; the Keras transfer
learning guide): first the new head is trained on a frozen backbone, then the
last stages of the backbone are unfrozen and trained with it at a lower
learning rate. `fit_two_phase` runs both, resumable after a crash.
"""

import csv
import json
import math
import os
import shutil
import sys
import time

import numpy as np
import tensorflow as tf
import keras

from kerasvision import distribute, hardware
from kerasvision.backbones import get_backbone_spec, set_trainable_blocks
from kerasvision.validation import IGNORE_LABEL, check_choice, check_int

PRECISIONS = ("auto", "float32", "mixed_bfloat16", "mixed_float16")
SCHEDULES = ("constant", "cosine")


def native_bfloat16_device():
    """Names the device that computes bfloat16 natively, or returns None.

    GPUs of compute capability 8.0 and up (Ampere+), and CPUs with AVX512-BF16
    or AMX instructions, run bfloat16 matrix products faster than float32;
    elsewhere bfloat16 is emulated and slower.
    """
    for gpu in tf.config.list_physical_devices("GPU"):
        details = tf.config.experimental.get_device_details(gpu)
        if details.get("compute_capability", (0, 0)) >= (8, 0):
            return f"GPU {details.get('device_name', gpu.name)}"
    flags = hardware.cpu_info()[1] & {"avx512_bf16", "amx_bf16"}
    if flags:
        return f"CPU with {'/'.join(sorted(flags))}"
    return None


def select_precision(precision="auto", verbose=True):
    """Sets the global Keras dtype policy and returns its name.

    Args:
        precision: "auto" (mixed_bfloat16 where the hardware computes bfloat16
            natively, float32 elsewhere), "float32", "mixed_bfloat16" or
            "mixed_float16".
        verbose: bool, print which policy was chosen and why.

    Returns:
        str, the policy set.
    """
    check_choice("precision", precision, PRECISIONS)
    reason = "requested"
    if precision == "auto":
        device = native_bfloat16_device()
        precision = "mixed_bfloat16" if device else "float32"
        reason = f"auto: {device} computes bfloat16 natively" if device else (
            "auto: no native bfloat16 on this hardware"
        )
    keras.mixed_precision.set_global_policy(precision)
    if verbose:
        print(f"precision: {precision} ({reason})")
        if precision != "float32" and hardware.onednn_limit:
            print(f"oneDNN limited to {hardware.onednn_limit} on this AMX CPU (a heap corruption "
                  "in its AMX bfloat16 kernels, docs/known_issues.md); set ONEDNN_MAX_CPU_ISA "
                  "to override")
    return precision


def resolve_jit_compile(value):
    """Maps a `--jit-compile` flag ("auto", "true", "false" or a bool) to `compile`'s argument."""
    if isinstance(value, bool) or value == "auto":
        return value
    return check_choice("jit_compile", value, ("auto", "true", "false")) == "true"


class NonFiniteLossError(RuntimeError):
    """Raised when a tracked loss becomes NaN or infinite during training."""


class StopOnNonFiniteLoss(keras.callbacks.Callback):
    """Stops training at the first non-finite value of any logged loss.

    Unlike `keras.callbacks.TerminateOnNaN`, which reads only `logs["loss"]`,
    this checks every key that names a loss (`loss`, `d_loss`, `g_loss`,
    `kl_loss`, ...), so trainers with several losses cannot train on NaN.
    Raises `NonFiniteLossError` naming the epoch, step and loss; checkpoints
    already written are left intact.

    Under loss scaling (`mixed_float16`: every optimizer of the model is a
    `LossScaleOptimizer`) a non-finite step is skipped by the optimizer, which
    leaves the weights untouched and halves its scale, so one bad batch is
    not fatal. Training stops there only when the scale falls below
    `min_loss_scale`: non-finite steps that persist (about 15 in a row from
    the default scale of 2^15).

    Args:
        min_loss_scale: float, the loss scale below which a loss-scaled run stops.
    """

    def __init__(self, min_loss_scale=1.0):
        super().__init__()
        self.min_loss_scale = min_loss_scale
        self._epoch = 0
        self._scalers = None

    def on_train_begin(self, logs=None):
        self._scalers = _loss_scale_optimizers(self.model)

    def on_epoch_begin(self, epoch, logs=None):
        self._epoch = epoch

    def on_train_batch_end(self, batch, logs=None):
        if self._scalers:
            # Built (and given a scale) by the first step, before this runs.
            scale = min(float(getattr(optimizer, "dynamic_scale", np.inf))
                        for optimizer in self._scalers)
            if scale < self.min_loss_scale:
                self.model.stop_training = True
                raise NonFiniteLossError(
                    f"Training stopped: the loss scale fell to {scale:g} at epoch "
                    f"{self._epoch + 1}, step {batch + 1}: gradients were non-finite for "
                    "many steps in a row (skipped by loss scaling). Check the data for NaN "
                    "or infinite values, or lower the learning rate."
                )
            return
        for key, value in (logs or {}).items():
            if "loss" not in key:
                continue
            value = float(np.asarray(value).mean())
            if not math.isfinite(value):
                self.model.stop_training = True
                raise NonFiniteLossError(
                    f"Training stopped: {key} became {value} at epoch {self._epoch + 1}, "
                    f"step {batch + 1}. Lower the learning rate, check the data for NaN "
                    "or infinite values, or use --precision mixed_float16 (its loss "
                    "scaling skips non-finite steps)."
                )


def _loss_scale_optimizers(model):
    """The model's `LossScaleOptimizer`s when every optimizer it trains with is one, else []."""
    optimizers = _optimizers(model)
    if optimizers and all(isinstance(o, keras.optimizers.LossScaleOptimizer) for o in optimizers):
        return optimizers
    return []


class TimeBudget(keras.callbacks.Callback):
    """Stops training once a wall-clock deadline has passed.

    Checked after every batch, so a run ends within one step of its budget;
    the interrupted epoch still validates, checkpoints and logs.

    Args:
        deadline: float, `time.time()` value after which training stops (None: never).
    """

    def __init__(self, deadline):
        super().__init__()
        self.deadline = deadline
        self.expired = False

    def on_train_batch_end(self, batch, logs=None):
        if self.deadline is not None and time.time() >= self.deadline:
            self.expired = True
            self.model.stop_training = True


class WarmupCosineToBudget(keras.callbacks.Callback):
    """Warms the learning rate up, holds it, then decays it along a cosine to the end of training.

    The end is whichever comes first: the last step of the `fit` call or the
    wall-clock deadline. A run limited by time therefore still anneals its
    learning rate to zero instead of stopping at the peak while the loss is
    still falling. The shape is warm-up, stable, decay ("WSD", Hu et al.
    2024, MiniCPM; the warm-up of Goyal et al. 2017; with `decay_fraction=1`
    it is the one-cycle cosine of Loshchilov and Hutter 2017). Progress is
    `max(step / total_steps, elapsed / (deadline - start))`, so the rate
    never rises again, whatever the speed of the machine.

    Args:
        peak_learning_rate: float > 0, the rate after warm-up.
        total_steps: int >= 1, optimizer steps of this `fit` call.
        deadline: float or None, `time.time()` at which training stops.
        warmup_fraction: float in [0, 1), share of the progress spent warming up.
        decay_fraction: float in (0, 1], share of the progress spent decaying,
            at the end.
        final_fraction: float in [0, 1], rate at the end as a share of the peak.
    """

    def __init__(self, peak_learning_rate, total_steps, deadline=None,
                 warmup_fraction=0.03, decay_fraction=1.0, final_fraction=0.0):
        super().__init__()
        self.peak_learning_rate = float(peak_learning_rate)
        self.total_steps = max(1, int(total_steps))
        self.deadline = deadline
        self.warmup_fraction = warmup_fraction
        self.decay_fraction = decay_fraction
        self.final_fraction = final_fraction
        self._started = None
        self._first_step = 0
        self._progress = 0.0

    def on_train_begin(self, logs=None):
        self._started = time.time()
        # A resumed run restores the optimizer's step count: continue from it.
        self._first_step = int(self.model.optimizer.iterations)

    def progress(self):
        """Share of the training done, in [0, 1]; never decreases."""
        done = int(self.model.optimizer.iterations) / self.total_steps
        if self.deadline is not None:
            # Time counts from this run's start; a resumed run adds it to the steps it restored.
            remaining = self.deadline - self._started
            elapsed = 1.0 if remaining <= 0 else (time.time() - self._started) / remaining
            restored = self._first_step / self.total_steps
            done = max(done, restored + (1 - restored) * elapsed)
        self._progress = min(1.0, max(self._progress, done))
        return self._progress

    def learning_rate_at(self, progress):
        """The learning rate at a share `progress` of training."""
        if progress < self.warmup_fraction:
            return self.peak_learning_rate * (progress + 1 / self.total_steps) / (
                self.warmup_fraction + 1 / self.total_steps)
        decay_start = max(self.warmup_fraction, 1 - self.decay_fraction)
        span = max(0.0, progress - decay_start) / max(1e-12, 1 - decay_start)
        cosine = 0.5 * (1 + math.cos(math.pi * min(1.0, span)))
        return self.peak_learning_rate * (self.final_fraction + (1 - self.final_fraction) * cosine)

    def on_train_batch_begin(self, batch, logs=None):
        self.model.optimizer.learning_rate.assign(self.learning_rate_at(self.progress()))

    def on_epoch_end(self, epoch, logs=None):
        if logs is not None:
            logs["learning_rate"] = float(self.model.optimizer.learning_rate)


class KeyPipelinesByEpoch(keras.callbacks.Callback):
    """Sets `kerasvision.data.training_epoch()` at the start of each epoch.

    Training pipelines from `kerasvision.data` and `kerasvision.generative`
    derive their shuffle order and augmentation draws from it, so a run
    resumed at epoch k sees the batches an uninterrupted run sees there.
    """

    def on_epoch_begin(self, epoch, logs=None):
        from kerasvision.data import training_epoch

        training_epoch().assign(epoch)


def _random_states(model):
    """The model's random-generator states (dropout, a trainer's noise): not weights."""
    return [variable for variable in model.variables
            if variable.path.endswith("seed_generator_state")]


class ResumableBackup(keras.callbacks.BackupAndRestore):
    """`BackupAndRestore` that a kill cannot leave half-written, random states included.

    Keras's callback rewrites `latest.weights.h5` and then
    `training_metadata.json` in place: a SIGKILL during the first write
    corrupts the weights, and one between the two pairs new weights with the
    previous epoch number, so the resumed run repeats an epoch. Here each
    backup goes to a new directory, and a pointer file replaced atomically
    (`os.replace`) names the last complete one; older directories are removed
    after the switch. `save_weights` skips the random-generator states that
    draw dropout masks and a GAN's or diffusion model's noise; they are saved
    beside the weights, so a resumed run draws what the uninterrupted one would.
    Optimizer state is part of the weights file (built before loading).

    Args:
        backup_dir: str, directory of the backups (removed when training ends
            normally; kept when it is killed or raises).
    """

    _POINTER = "latest"

    def __init__(self, backup_dir):
        super().__init__(backup_dir, save_freq="epoch", delete_checkpoint=True)
        self._root = backup_dir
        self._random_states_path = None

    def _select(self, name):
        directory = os.path.join(self._root, name)
        self.backup_dir = directory
        self._weights_path = os.path.join(directory, "latest.weights.h5")
        self._training_metadata_path = os.path.join(directory, "training_metadata.json")
        self._prev_weights_path = self._weights_path + ".bkp"  # never written: no double checkpoint
        self._random_states_path = os.path.join(directory, "random_states.json")

    def on_train_begin(self, logs=None):
        pointer = os.path.join(self._root, self._POINTER)
        if not os.path.exists(pointer):
            return
        with open(pointer) as handle:
            self._select(handle.read().strip())
        super().on_train_begin(logs)
        if os.path.exists(self._random_states_path):
            with open(self._random_states_path) as handle:
                saved = json.load(handle)
            states = _random_states(self.model)
            if len(saved) == len(states):
                for variable, value in zip(states, saved):
                    variable.assign(np.asarray(value, dtype=variable.dtype))

    def _save_model(self):
        name = f"epoch{self._current_epoch:05d}-{time.time_ns()}"
        self._select(name)
        super()._save_model()
        with open(self._random_states_path, "w") as handle:
            json.dump([np.asarray(v).tolist() for v in _random_states(self.model)], handle)
        pointer = os.path.join(self._root, self._POINTER)
        with open(pointer + ".tmp", "w") as handle:
            handle.write(name)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(pointer + ".tmp", pointer)
        for entry in os.listdir(self._root):
            if entry not in (name, self._POINTER):
                path = os.path.join(self._root, entry)
                if os.path.isdir(path):
                    shutil.rmtree(path, ignore_errors=True)

    def on_train_end(self, logs=None):
        if self.delete_checkpoint:
            shutil.rmtree(self._root, ignore_errors=True)


class AtomicModelCheckpoint(keras.callbacks.ModelCheckpoint):
    """`ModelCheckpoint` that writes to a temporary file and renames it into place.

    A kill while the best checkpoint is being written leaves the previous
    best intact instead of half a file. With `save_weights_only=True` the
    file holds the network's weights alone (`save_model_weights`): the
    optimizer's moments, twice the weights' size under Adam, belong in the
    resume backup, not in the checkpoint a user keeps. Takes
    `ModelCheckpoint`'s arguments (a fixed `filepath` ending in
    `.weights.h5` or `.keras`).
    """

    def _save_model(self, epoch, batch, logs):
        filepath = self._get_file_path(epoch, batch, logs or {})
        if not self._should_save_model(epoch, batch, logs or {}, filepath):
            return
        os.makedirs(os.path.dirname(filepath) or ".", exist_ok=True)
        stem, extension = _split_extension(filepath)
        temporary = f"{stem}.tmp{extension}"
        if self.save_weights_only:
            save_model_weights(self.model, temporary)
        else:
            self.model.save(temporary, overwrite=True)
        os.replace(temporary, filepath)


def _optimizers(model):
    """Every optimizer the model trains with (a GAN's two included)."""
    found = [getattr(model, "optimizer", None)] + [
        value for value in vars(model).values() if isinstance(value, keras.optimizers.Optimizer)
    ]
    return list({id(o): o for o in found if o is not None}.values())


def save_model_weights(model, path):
    """Writes the model's weights, without optimizer state, to a `.weights.h5` file.

    Keras's `model.save_weights` also writes the compiled optimizer's
    variables (Adam: two moments per weight, so three times the size).
    """
    from keras.src.saving import saving_lib

    saving_lib.save_weights_only(model, path, objects_to_skip=_optimizers(model))


def load_model_weights(model, path):
    """Reads a file of `save_model_weights` (or of `model.save_weights`) into the model.

    The optimizer's state is left as it is.
    """
    from keras.src.saving import saving_lib

    saving_lib.load_weights_only(model, path, objects_to_skip=_optimizers(model))


def _split_extension(path):
    for extension in (".weights.h5", ".keras", ".h5"):
        if path.endswith(extension):
            return path[: -len(extension)], extension
    return os.path.splitext(path)


def make_callbacks(run_dir, monitor, mode="max", phase="train", deadline=None, schedule=None):
    """The callbacks every recipe trains with.

    Args:
        run_dir: str, directory for checkpoints and logs.
        monitor: str, metric that selects the best checkpoint (e.g. "val_mean_iou").
        mode: "max" or "min" for `monitor`.
        phase: str, names the backup directory so that each phase of a
            multi-phase schedule resumes on its own.
        deadline: float or None, `time.time()` at which training stops (`TimeBudget`).
        schedule: a learning-rate callback such as `WarmupCosineToBudget`, or
            None (the compiled rate stays constant).

    Returns:
        list of callbacks: `ResumableBackup` (rerunning the same command
        after a kill resumes from the last finished epoch), `KeyPipelinesByEpoch`,
        best checkpoint `best.weights.h5` (written atomically), `StopOnNonFiniteLoss`, a CSV log `history.csv` and
        `TimeBudget` (last, so the epoch it cuts short is still saved).
    """
    os.makedirs(run_dir, exist_ok=True)
    best_path = os.path.join(run_dir, "best.weights.h5")
    history_path = os.path.join(run_dir, "history.csv")
    # A resumed run (or a later phase) must beat the best already saved, not
    # overwrite it with its first epoch.
    previous = read_history(history_path).get(monitor) if os.path.exists(best_path) else None
    best_so_far = (max(previous) if mode == "max" else min(previous)) if previous else None
    return [
        ResumableBackup(os.path.join(run_dir, f"backup_{phase}")),
        # After the backup, which restores the optimizer's step count it reads.
        *([schedule] if schedule is not None else []),
        KeyPipelinesByEpoch(),
        AtomicModelCheckpoint(
            best_path,
            monitor=monitor,
            mode=mode,
            save_best_only=True,
            save_weights_only=True,
            initial_value_threshold=best_so_far,
        ),
        StopOnNonFiniteLoss(),
        keras.callbacks.CSVLogger(history_path, append=True),
        TimeBudget(deadline),
    ]


def fit_two_phase(
    model,
    backbone,
    train_data,
    validation_data,
    compile_fn,
    run_dir,
    monitor,
    mode="max",
    frozen_epochs=1,
    finetune_epochs=1,
    frozen_learning_rate=1e-3,
    finetune_learning_rate=1e-4,
    finetune_blocks=None,
    pretrained=True,
    steps_per_epoch=None,
    max_minutes=None,
    schedule="constant",
    decay_fraction=1.0,
    verbose=2,
):
    """Trains a head on a frozen backbone, then fine-tunes the backbone's last stages.

    Each phase has its own resume backup (`ResumableBackup`) and a marker
    file `<phase>.done` written when it ends, so rerunning after a kill skips
    finished phases and resumes the interrupted one at its last finished
    epoch. Between phases the weights a phase ended with wait in
    `<phase>_end.weights.h5` for the next one. When training ends, backups
    and those files are removed and the model is given the best
    checkpoint's weights (`best.weights.h5`, weights only), so a finished run
    keeps one copy of the weights. Rerunning a finished run trains nothing
    and loads that checkpoint.

    Args:
        model: the `keras.Model` to train; its backbone is the sub-model named
            "backbone" (as `build_fcn`, `build_unet` and
            `build_transfer_classifier` name it).
        backbone: str, the registered backbone name (its stages define blocks),
            or None for a model without one (a single phase then).
        train_data, validation_data: `tf.data.Dataset`s of (inputs, targets).
        compile_fn: callable(learning_rate) that compiles `model`.
        run_dir: str, directory for checkpoints, logs and phase markers.
        monitor, mode: best-checkpoint metric and direction.
        frozen_epochs, finetune_epochs: ints >= 0.
        frozen_learning_rate, finetune_learning_rate: floats.
        finetune_blocks: int, stages unfrozen in phase 2 (default: all).
        pretrained: bool; False (a randomly initialised backbone) replaces the
            two phases by one of `frozen_epochs + finetune_epochs` epochs that
            trains everything at `frozen_learning_rate`: a frozen random
            backbone has nothing worth training a head on.
        steps_per_epoch: int or None, batches per epoch.
        max_minutes: float or None, wall-clock budget for all phases; training
            stops (after validating the cut epoch) when it runs out.
        schedule: "constant" (each phase at its learning rate) or "cosine"
            (`WarmupCosineToBudget`: each phase warms up to its learning rate,
            then decays to zero by its last step or the deadline).
        decay_fraction: float in (0, 1], with "cosine": the final share of
            each phase over which the rate decays (before it, the rate holds).
        verbose: `fit` verbosity.

    Returns:
        dict of metric name -> list of per-epoch values over both phases, read
        back from `history.csv` so that it includes epochs from before a resume.
    """
    check_int("frozen_epochs", frozen_epochs, minimum=0)
    check_int("finetune_epochs", finetune_epochs, minimum=0)
    check_choice("schedule", schedule, SCHEDULES)
    if backbone is None:  # no pretrained part: one phase trains everything
        pretrained = False
    else:
        backbone_model = model.get_layer("backbone")
        num_stages = len(get_backbone_spec(backbone).blocks)
    if pretrained:
        phases = [
            ("frozen", frozen_epochs, frozen_learning_rate, 0),
            ("finetune", finetune_epochs, finetune_learning_rate, finetune_blocks),
        ]
    else:
        phases = [("scratch", frozen_epochs + finetune_epochs, frozen_learning_rate, None)]
    deadline = time.time() + 60 * max_minutes if max_minutes else None
    first_epoch = 0
    for phase, epochs, learning_rate, blocks in phases:
        if not epochs:
            continue
        if backbone is not None:
            set_trainable_blocks(
                backbone_model, backbone, num_stages if blocks is None else blocks,
                keep_batch_norm_frozen=pretrained,
            )
        done_marker = os.path.join(run_dir, f"{phase}.done")
        end_weights = os.path.join(run_dir, f"{phase}_end.weights.h5")
        if os.path.exists(done_marker):
            # A finished run keeps only its best checkpoint: a phase added to it starts there.
            for path in (end_weights, os.path.join(run_dir, "best.weights.h5")):
                if os.path.exists(path):
                    load_model_weights(model, path)
                    break
        else:
            compile_fn(learning_rate)
            _build_optimizer(model)
            rate_schedule = None
            if schedule == "cosine":
                steps = steps_per_epoch or int(train_data.cardinality())
                rate_schedule = WarmupCosineToBudget(learning_rate, epochs * max(1, steps),
                                                     deadline, decay_fraction=decay_fraction)
            # model.fit, or the multi-worker loop Keras' fit lacks (keras#20585).
            distribute.fit(
                model,
                train_data,
                validation_data=validation_data,
                initial_epoch=first_epoch,
                epochs=first_epoch + epochs,
                steps_per_epoch=steps_per_epoch,
                shuffle=False,  # the tf.data pipeline shuffles
                callbacks=make_callbacks(run_dir, monitor, mode, phase=phase, deadline=deadline,
                                         schedule=rate_schedule),
                verbose=verbose,
            )
            _save_atomically(model, end_weights)
            with open(done_marker, "w"):
                pass
            if deadline is not None and time.time() >= deadline:
                print(f"time budget of {max_minutes} min used up after phase '{phase}'")
                break
        first_epoch += epochs
    for phase, *_ in phases:
        end_weights = os.path.join(run_dir, f"{phase}_end.weights.h5")
        if os.path.exists(end_weights):
            os.remove(end_weights)
    best_path = os.path.join(run_dir, "best.weights.h5")
    if os.path.exists(best_path):
        load_model_weights(model, best_path)
    return read_history(os.path.join(run_dir, "history.csv"))


def fit_two_phase_from_flags(model, backbone, train_data, validation_data, compile_fn, args,
                             monitor, frozen_epochs, finetune_epochs, pretrained, verbose):
    """`fit_two_phase` with a recipe's flags: the task flows' one call of it.

    Reads `--output-dir`, `--learning-rate`, `--finetune-learning-rate`,
    `--finetune-blocks`, `--max-train-minutes` and `--smoke` (two steps per
    epoch) from `args`; the other arguments are `fit_two_phase`'s, with the
    best checkpoint chosen by the highest `monitor`.
    """
    return fit_two_phase(
        model,
        backbone,
        train_data,
        validation_data,
        compile_fn,
        args.output_dir,
        monitor=monitor,
        mode="max",
        frozen_epochs=frozen_epochs,
        finetune_epochs=finetune_epochs,
        frozen_learning_rate=args.learning_rate,
        finetune_learning_rate=args.finetune_learning_rate,
        finetune_blocks=args.finetune_blocks,
        pretrained=pretrained,
        steps_per_epoch=2 if args.smoke else None,
        max_minutes=args.max_train_minutes,
        schedule=getattr(args, "lr_schedule", "constant"),
        decay_fraction=getattr(args, "decay_fraction", 1.0),
        verbose=verbose,
    )


def _build_optimizer(model):
    """Builds optimizer variables now, so `BackupAndRestore` can restore them."""
    if not model.optimizer.built:
        model.optimizer.build(model.trainable_variables)


def _save_atomically(model, path):
    """Writes weights to a temporary file, then renames it: a kill never leaves half a file."""
    temporary = _split_extension(path)[0] + ".tmp.weights.h5"
    save_model_weights(model, temporary)
    os.replace(temporary, path)


def read_history(csv_path):
    """Reads a `CSVLogger` file into {metric: [values]}, keeping the last row of each epoch.

    A resumed run may log an epoch twice (once before the kill, once after);
    the later row wins.
    """
    if not os.path.exists(csv_path):
        return {}
    by_epoch = {}
    with open(csv_path, newline="") as handle:
        for row in csv.DictReader(handle):
            if row.get("epoch", "") in ("", "epoch"):
                continue
            by_epoch[int(row["epoch"])] = row
    history = {}
    for epoch in sorted(by_epoch):
        for key, value in by_epoch[epoch].items():
            if key != "epoch" and value not in (None, "", "NA"):  # CSVLogger writes NA for gaps
                history.setdefault(key, []).append(float(value))
    return history


def segmentation_confusion_matrix(model, dataset, num_classes, ignore_label=IGNORE_LABEL):
    """Confusion matrix of a segmentation model over a dataset.

    Args:
        model: maps images `[batch, H, W, 3]` to logits `[batch, H, W, C]`.
        dataset: `tf.data.Dataset` of batched `(images, masks [batch, H, W])`.
        num_classes: int.
        ignore_label: label skipped in the count.

    Returns:
        numpy int64 `[num_classes, num_classes]`, rows true class, columns predicted.
    """
    from kerasvision.metrics import ConfusionMatrixMetric

    metric = ConfusionMatrixMetric(num_classes, ignore_label=ignore_label)
    predict = tf.function(lambda images: model(images, training=False))
    for images, masks in dataset:
        metric.update_state(masks, predict(images))
    return np.rint(metric.confusion_matrix()).astype("int64")


def write_json(path, payload):
    """Writes `payload` as indented JSON (for run summaries)."""
    with open(path, "w") as handle:
        json.dump(payload, handle, indent=2, default=float)
    return path


def default_verbose():
    """`fit` verbosity: the progress bar on a terminal, one line per epoch in logs (CI)."""
    return 1 if sys.stdout.isatty() else 2
