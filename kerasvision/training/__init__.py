"""Training: precision policy, callbacks, the two-phase transfer schedule, distribution.

Modules:
    precision: `select_precision` (mixed_bfloat16 where the hardware computes
        it natively), `resolve_jit_compile`.
    callbacks: resume after a kill, the atomic best checkpoint, the time
        budget, the learning-rate schedule to that budget, the non-finite stop,
        and `make_callbacks`, which assembles them.
    transfer: `fit_two_phase`, feature extraction then fine-tuning.
    distribute: `tf.distribute` strategies and the multi-worker training loop.
"""

from kerasvision.training.callbacks import (
    KILL_POINTS,
    AtomicModelCheckpoint,
    CommitEpoch,
    KeyPipelinesByEpoch,
    KillAt,
    NonFiniteLossError,
    ResumableBackup,
    StopOnNonFiniteLoss,
    TimeBudget,
    WarmupCosineToBudget,
    kill_point,
    load_model_weights,
    make_callbacks,
    read_history,
    save_model_weights,
)
from kerasvision.training.precision import (
    PRECISIONS,
    native_bfloat16_device,
    resolve_jit_compile,
    select_precision,
)
from kerasvision.training.transfer import SCHEDULES, fit_two_phase

__all__ = [
    "KILL_POINTS",
    "PRECISIONS",
    "SCHEDULES",
    "AtomicModelCheckpoint",
    "CommitEpoch",
    "KeyPipelinesByEpoch",
    "KillAt",
    "NonFiniteLossError",
    "ResumableBackup",
    "StopOnNonFiniteLoss",
    "TimeBudget",
    "WarmupCosineToBudget",
    "fit_two_phase",
    "kill_point",
    "load_model_weights",
    "make_callbacks",
    "native_bfloat16_device",
    "read_history",
    "resolve_jit_compile",
    "save_model_weights",
    "select_precision",
]
