"""The callbacks every training run uses: resume, best checkpoint, time budget, schedule, non-finite stop.

`make_callbacks` assembles them in the order that keeps a kill harmless. At
the end of an epoch the best checkpoint is written first (atomically), then
the CSV row, and the resume backup last: a kill anywhere before the backup
makes the rerun repeat that epoch, and a kill after it finds every file of
the epoch complete.

For tests, `KERASVISION_KILL_AT=<point>:<epoch>` sends the process SIGKILL
at one of `KILL_POINTS` in that 1-based epoch.
"""

import csv
import json
import math
import os
import shutil
import signal
import time
import warnings

import numpy as np
import keras

from kerasvision import hardware
from kerasvision.layers import amx_unsafe_convolutions



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


class AMXConvolutionCheck(keras.callbacks.Callback):
    """Stops, before the first step, a bfloat16 run that oneDNN's AMX kernels would abort.

    On an AMX CPU with oneDNN unrestricted, TensorFlow 2.21's AMX bfloat16
    convolution corrupts the heap when more than 2048 input channels map to
    2-15 filters, and the process dies with SIGABRT within a few steps, losing
    the run. kerasvision's own heads use `WideInputConv2D`, which avoids it;
    this check catches a user's model that would still hit it and says what
    to do instead. Elsewhere it does nothing.
    """

    def on_train_begin(self, logs=None):
        if keras.mixed_precision.global_policy().compute_dtype != "bfloat16":
            return
        if not hardware.onednn_uses_amx():
            return
        unsafe = amx_unsafe_convolutions(self.model)
        if unsafe:
            raise RuntimeError(
                f"layers {unsafe} map more than 2048 channels to fewer than 16: under "
                "mixed_bfloat16 on this AMX CPU, oneDNN's kernels would abort the process "
                "(docs/known_issues.md). Build them with kerasvision.layers.WideInputConv2D, "
                "train in float32, or set ONEDNN_MAX_CPU_ISA=AVX512_CORE_BF16 before "
                "importing TensorFlow."
            )


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
        optimizer_names: names of the model's attributes holding the
            optimizers to schedule, all at the same rate (a GAN trainer's
            `("g_optimizer", "d_optimizer")`). The first one's `iterations`
            counts the steps: it must take one update per `fit` step.
    """

    def __init__(self, peak_learning_rate, total_steps, deadline=None,
                 warmup_fraction=0.03, decay_fraction=1.0, final_fraction=0.0,
                 optimizer_names=("optimizer",)):
        super().__init__()
        if isinstance(optimizer_names, str) or not optimizer_names:
            raise ValueError("`optimizer_names` must be a non-empty sequence of attribute names; "
                             f"received optimizer_names={optimizer_names!r}.")
        self.optimizer_names = tuple(optimizer_names)
        self.peak_learning_rate = float(peak_learning_rate)
        self.total_steps = max(1, int(total_steps))
        self.deadline = deadline
        self.warmup_fraction = warmup_fraction
        self.decay_fraction = decay_fraction
        self.final_fraction = final_fraction
        self._started = None
        self._first_step = 0
        self._progress = 0.0

    def _optimizers(self):
        return [getattr(self.model, name) for name in self.optimizer_names]

    def on_train_begin(self, logs=None):
        self._started = time.time()
        # A resumed run restores the optimizer's step count: continue from it.
        self._first_step = int(self._optimizers()[0].iterations)

    def progress(self):
        """Share of the training done, in [0, 1]; never decreases."""
        done = int(self._optimizers()[0].iterations) / self.total_steps
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
        rate = self.learning_rate_at(self.progress())
        for optimizer in self._optimizers():
            optimizer.learning_rate.assign(rate)

    def on_epoch_end(self, epoch, logs=None):
        if logs is not None:
            logs["learning_rate"] = float(self._optimizers()[0].learning_rate)


class KeyPipelinesByEpoch(keras.callbacks.Callback):
    """Sets `kerasvision.data.pipelines.training_epoch()` at the start of each epoch.

    The training pipelines of `kerasvision.data.pipelines` derive their
    shuffle order and augmentation draws from it, so a run resumed at epoch
    k sees the batches an uninterrupted run sees there.
    """

    def on_epoch_begin(self, epoch, logs=None):
        from kerasvision.data.pipelines import training_epoch

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
        deferred: bool, if True the epoch's backup waits for a `CommitEpoch`
            placed after the callbacks that write the epoch's other files.
    """

    _POINTER = "latest"

    def __init__(self, backup_dir, deferred=False):
        super().__init__(backup_dir, save_freq="epoch", delete_checkpoint=True)
        self.deferred = deferred
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
            if len(saved) != len(states):
                warnings.warn(
                    f"the backup in {self.backup_dir!r} holds {len(saved)} random-generator "
                    f"states but the model has {len(states)}; they are not restored, so "
                    "dropout masks and noise draws differ from the interrupted run.",
                    stacklevel=2,
                )
            else:
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

    def on_epoch_end(self, epoch, logs=None):
        if not self.deferred:
            self.commit_epoch(epoch, logs)

    def commit_epoch(self, epoch, logs=None):
        """Saves the backup that marks `epoch` (0-based) finished."""
        super().on_epoch_end(epoch, logs)

    def on_train_end(self, logs=None):
        if self.delete_checkpoint:
            shutil.rmtree(self._root, ignore_errors=True)


class CommitEpoch(keras.callbacks.Callback):
    """Writes a `ResumableBackup`'s epoch backup; placed after every callback that writes a file.

    Args:
        backup: the `ResumableBackup` of the same `fit`.
    """

    def __init__(self, backup):
        super().__init__()
        self.backup = backup

    def on_epoch_end(self, epoch, logs=None):
        self.backup.commit_epoch(epoch, logs)


KILL_POINTS = ("mid_epoch", "after_best_checkpoint", "after_history_row", "after_backup")


def _kill_request():
    """(point, 1-based epoch) from `KERASVISION_KILL_AT`, or None."""
    value = os.environ.get("KERASVISION_KILL_AT")
    if not value:
        return None
    point, _, epoch = value.partition(":")
    if point not in KILL_POINTS or not epoch.isdigit():
        raise ValueError(f"KERASVISION_KILL_AT must be '<point>:<epoch>' with point one of "
                         f"{KILL_POINTS}; received {value!r}")
    return point, int(epoch)


def kill_point(point):
    """`[KillAt]` when `KERASVISION_KILL_AT` asks for a kill at `point`, else `[]`.

    Callback lists splice it in where `point` lies: `[..., *kill_point("after_backup")]`.
    """
    request = _kill_request()
    return [KillAt(*request)] if request and request[0] == point else []


class KillAt(keras.callbacks.Callback):
    """Sends its own process SIGKILL at one point of one epoch: a deterministic kill for resume tests.

    Args:
        point: one of `KILL_POINTS`; this callback sits at that point of the
            callback list (`mid_epoch` acts after the epoch's second batch).
        epoch: int, 1-based epoch in which to end.
    """

    def __init__(self, point, epoch):
        super().__init__()
        self.point = point
        self.epoch = epoch
        self._current = None

    def on_epoch_begin(self, epoch, logs=None):
        self._current = epoch + 1

    def on_train_batch_end(self, batch, logs=None):
        if self.point == "mid_epoch" and self._current == self.epoch and batch >= 1:
            os.kill(os.getpid(), signal.SIGKILL)

    def on_epoch_end(self, epoch, logs=None):
        if self.point != "mid_epoch" and epoch + 1 == self.epoch:
            os.kill(os.getpid(), signal.SIGKILL)


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
        if self.save_weights_only:
            save_model_weights(self.model, filepath)
            return
        stem, extension = _split_extension(filepath)
        temporary = f"{stem}.tmp{extension}"
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
    variables (Adam: two moments per weight, so three times the size). The
    file is written beside `path` and renamed into place: a kill never
    leaves half a file.
    """
    from keras.src.saving import saving_lib

    temporary = _split_extension(path)[0] + ".tmp.weights.h5"
    saving_lib.save_weights_only(model, temporary, objects_to_skip=_optimizers(model))
    os.replace(temporary, path)


def load_model_weights(model, path):
    """Reads a file of `save_model_weights` (or of `model.save_weights`) into the model.

    The optimizer's state is left as it is. A file that is missing, not HDF5,
    truncated, corrupt or of another architecture raises a `ValueError`
    naming it, whatever the reader's own exception.
    """
    from keras.src.saving import saving_lib

    from kerasvision.backbones import check_weights_file

    check_weights_file(path, name="path")
    try:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            saving_lib.load_weights_only(model, path, objects_to_skip=_optimizers(model))
    except Exception as error:  # h5py, Keras and numpy each raise their own kinds
        raise ValueError(
            f"`path` {path!r} does not hold weights of `{model.name}` that can be read "
            f"({type(error).__name__}: {error}); it is corrupt or was saved from another "
            "architecture."
        ) from error
    # Keras only warns when part of the file does not match, leaving those layers random.
    skipped = [str(w.message) for w in caught if "freshly-initialized" in str(w.message)]
    if skipped:
        raise ValueError(
            f"`path` {path!r} does not match `{model.name}`: {len(skipped)} part(s) of the "
            f"model would keep random weights ({skipped[0]})."
        )
    for warning in caught:
        warnings.warn_explicit(warning.message, warning.category, warning.filename,
                               warning.lineno)


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
        after a kill resumes from the last finished epoch), the schedule,
        `KeyPipelinesByEpoch`, `AMXConvolutionCheck`, `StopOnNonFiniteLoss`, the best checkpoint
        `best.weights.h5` (written atomically), a CSV log `history.csv`,
        `TimeBudget` (so the epoch it cuts short is still saved) and
        `CommitEpoch`, which writes the backup once the epoch's other files
        are complete.
    """
    os.makedirs(run_dir, exist_ok=True)
    best_path = os.path.join(run_dir, "best.weights.h5")
    history_path = os.path.join(run_dir, "history.csv")
    # A resumed run (or a later phase) must beat the best already saved, not
    # overwrite it with its first epoch.
    previous = read_history(history_path).get(monitor) if os.path.exists(best_path) else None
    best_so_far = (max(previous) if mode == "max" else min(previous)) if previous else None
    backup = ResumableBackup(os.path.join(run_dir, f"backup_{phase}"), deferred=True)
    return [
        backup,
        # After the backup, which restores the optimizer's step count it reads.
        *([schedule] if schedule is not None else []),
        KeyPipelinesByEpoch(),
        AMXConvolutionCheck(),
        StopOnNonFiniteLoss(),
        *kill_point("mid_epoch"),
        # The checkpoint before the CSV row: a rerun of an epoch whose row was
        # logged compares with that row and would not rewrite the checkpoint.
        AtomicModelCheckpoint(
            best_path,
            monitor=monitor,
            mode=mode,
            save_best_only=True,
            save_weights_only=True,
            initial_value_threshold=best_so_far,
        ),
        *kill_point("after_best_checkpoint"),
        keras.callbacks.CSVLogger(history_path, append=True),
        *kill_point("after_history_row"),
        TimeBudget(deadline),
        CommitEpoch(backup),
        *kill_point("after_backup"),
    ]


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
