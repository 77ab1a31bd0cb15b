"""The two-phase transfer schedule: a new head on a frozen backbone, then fine-tuning.

Transfer learning runs in two phases (Yosinski et al. 2014; the Keras transfer
learning guide): first the new head is trained on a frozen backbone, then the
last stages of the backbone are unfrozen and trained with it at a lower
learning rate. `fit_two_phase` runs both, resumable after a crash.
"""

import os
import time


from kerasvision.backbones import get_backbone_spec, set_trainable_blocks
from kerasvision.training import distribute
from kerasvision.training.callbacks import (
    WarmupCosineToBudget,
    load_model_weights,
    make_callbacks,
    read_history,
    save_model_weights,
)
from kerasvision.validation import check_choice, check_int


SCHEDULES = ("constant", "cosine")


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
            save_model_weights(model, end_weights)
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


def _build_optimizer(model):
    """Builds optimizer variables now, so `BackupAndRestore` can restore them."""
    if not model.optimizer.built:
        model.optimizer.build(model.trainable_variables)
