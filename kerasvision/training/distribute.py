"""Distribution strategies for recipes: `--strategy`, chief-only outputs, the multi-worker loop.

Every recipe takes `--strategy {default,mirrored,multi_worker,tpu}`;
`kerasvision.tasks.cli.setup_run` resolves it once with `get_strategy`, and
recipes build (and compile) their models inside that strategy's `scope()`.
`--batch-size` is always the global batch: a strategy splits each batch over
its replicas.

- default: `tf.distribute.get_strategy()`, one device (a GPU if there is one).
- mirrored: `tf.distribute.MirroredStrategy()`, synchronous data parallelism
  over the local GPUs (or the CPU).
- multi_worker: `tf.distribute.MultiWorkerMirroredStrategy()`, synchronous
  data parallelism over several processes or machines described by the
  `TF_CONFIG` environment variable, e.g. on each of two machines

      TF_CONFIG='{"cluster": {"worker": ["host0:12345", "host1:12345"]},
                  "task": {"type": "worker", "index": 0}}'   # index 1 on host1
      python recipes/unet.py --strategy multi_worker ...

  (the same command on every worker). Keras' own `fit` fails under this
  strategy (keras-team/keras#20585, still open with Keras 3.15.1: "Attempt to
  convert a value (PerReplica...) to a Tensor" when `fit` reduces the first
  batch to build the model), so the recipes train with `train_loop`, a
  custom loop that runs the model's own `train_step` under `strategy.run`.
  Every worker runs the whole recipe in step (a multi-worker `predict`
  gathers its outputs from all workers, so all must call it), but only the
  chief (task "chief", or worker 0 when the cluster has no chief) writes to
  `--output-dir` and `--export-dir`; the other workers write their
  checkpoints, plots and exports to `worker_directory(...)`, a per-worker
  directory under the system temporary directory (kept, so that rerunning
  the command resumes every worker from its own backup; delete it after
  the run).
- tpu: `tf.distribute.TPUStrategy` on the TPU named by `TPU_NAME` (or the
  local TPU VM); a machine without a TPU gets a ValueError saying so.

What differs from one device: BatchNormalization computes its statistics
over each replica's part of the batch (as in multi-GPU ResNet training;
the DCGAN builders' `synchronized=True` computes them over the global
batch), dropout draws its masks per replica, and the segmentation
cross-entropy averages over each replica's valid (non-ignored) pixels.
Without those, one step's update equals the single-device update for the
same global batch (tests/test_distribute.py, test_gan.py and
test_diffusion.py check every model family).
"""

import hashlib
import json
import os
import tempfile

import numpy as np
import tensorflow as tf
import keras

from kerasvision.models.trainer import GenerativeTrainer
from kerasvision.validation import check_choice, check_int

STRATEGIES = ("default", "mirrored", "multi_worker", "tpu")


def get_strategy(name="default", tpu=None):
    """The `tf.distribute.Strategy` a `--strategy` flag names.

    Create it before anything else runs TensorFlow operations:
    `MultiWorkerMirroredStrategy` configures the runtime's collective ops,
    which is only possible at program start.

    Args:
        name: "default", "mirrored", "multi_worker" or "tpu".
        tpu: str or None, the TPU to connect to for "tpu" (default: the
            `TPU_NAME` environment variable, else the TPU VM's local TPU).

    Returns:
        A `tf.distribute.Strategy`; its `num_replicas_in_sync` replicas each
        receive `global batch / num_replicas_in_sync` examples per step.

    Example:
        >>> strategy = get_strategy("mirrored")
        >>> with strategy.scope():
        ...     model = build_unet(3, (64, 64, 3), depth=2)
        ...     model.compile(...)
    """
    check_choice("strategy", name, STRATEGIES)
    if name == "default":
        return tf.distribute.get_strategy()
    if name == "mirrored":
        return tf.distribute.MirroredStrategy()
    if name == "multi_worker":
        if "TF_CONFIG" not in os.environ:
            print("multi_worker: no TF_CONFIG set, training as a single worker")
        return tf.distribute.MultiWorkerMirroredStrategy()
    return _tpu_strategy(tpu)


def _tpu_strategy(tpu):
    tpu = tpu or os.environ.get("TPU_NAME") or "local"
    try:
        resolver = tf.distribute.cluster_resolver.TPUClusterResolver(tpu=tpu)
        tf.config.experimental_connect_to_cluster(resolver)
        tf.tpu.experimental.initialize_tpu_system(resolver)
    except (ValueError, RuntimeError, tf.errors.OpError) as error:
        first_line = str(error).strip().splitlines()[0] if str(error).strip() else ""
        raise ValueError(
            f"--strategy tpu: no TPU found (tpu={tpu!r}; {type(error).__name__}: "
            f"{first_line[:200]}). Run on a TPU VM, or set TPU_NAME to the TPU's name; "
            "use --strategy default or mirrored elsewhere."
        ) from None
    return tf.distribute.TPUStrategy(resolver)


def is_multi_worker(strategy):
    """Whether `strategy` is a `MultiWorkerMirroredStrategy` (which needs `train_loop`)."""
    return isinstance(strategy, tf.distribute.MultiWorkerMirroredStrategy)


def worker_task(strategy=None):
    """`(task type, task index)` of this process in its cluster; `("worker", 0)` outside one.

    Read from the strategy's cluster resolver (`TF_CONFIG`) for a
    multi-worker strategy; any other strategy runs in a single process.
    """
    if strategy is None or not is_multi_worker(strategy):
        return "worker", 0
    resolver = strategy.cluster_resolver
    return resolver.task_type or "worker", int(resolver.task_id or 0)


def is_chief(strategy=None):
    """Whether this process writes the run's outputs: task "chief", or worker 0 without one."""
    if strategy is None or not is_multi_worker(strategy):
        return True
    task_type, task_index = worker_task(strategy)
    if task_type == "chief":
        return True
    cluster = strategy.cluster_resolver.cluster_spec().as_dict()
    return task_type == "worker" and task_index == 0 and "chief" not in cluster


def worker_directory(path, strategy=None):
    """Where this process writes what the run writes to `path`.

    The chief (and every single-process run) writes to `path` itself. Other
    workers get a directory of their own under the system temporary
    directory, named after `path` and their task, so that two workers never
    write the same file and a rerun of the same command finds the worker's
    earlier backup there.

    Args:
        path: str, a directory the chief writes (`--output-dir`, `--export-dir`).
        strategy: the run's strategy, or None (a single process).

    Returns:
        str, `path` or `<tmp>/kerasvision_<task><index>/<name>_<hash of path>`.
    """
    if is_chief(strategy):
        return path
    task_type, task_index = worker_task(strategy)
    absolute = os.path.abspath(path)
    digest = hashlib.sha1(absolute.encode()).hexdigest()[:8]
    name = f"{os.path.basename(absolute.rstrip(os.sep)) or 'run'}_{digest}"
    return os.path.join(tempfile.gettempdir(), f"kerasvision_{task_type}{task_index}", name)


def distribute_dataset(strategy, dataset):
    """Splits each global batch of `dataset` over the strategy's replicas.

    Sharding is by data (each worker runs the same pipeline and keeps its
    part of every batch), so the global batch of step k is the one a single
    process would see, whatever the number of workers, and every worker
    takes the same number of steps; files need not be split into shards.

    Args:
        strategy: a `tf.distribute.Strategy`.
        dataset: batched `tf.data.Dataset`; its batch size is the global one.

    Returns:
        `tf.distribute.DistributedDataset` yielding `PerReplica` batches.
    """
    options = tf.data.Options()
    options.experimental_distribute.auto_shard_policy = tf.data.experimental.AutoShardPolicy.DATA
    return strategy.experimental_distribute_dataset(dataset.with_options(options))


def fit(model, x, **kwargs):
    """`model.fit(x, **kwargs)`, or `train_loop` under a multi-worker strategy.

    The task flows call this instead of `model.fit`, so every recipe trains
    under `--strategy multi_worker` although Keras' `fit` cannot
    (keras-team/keras#20585).

    Args:
        model: a compiled `keras.Model`, created inside its strategy's scope.
        x: batched `tf.data.Dataset` of `(inputs, targets)` or of inputs.
        **kwargs: `fit` arguments (`train_loop` takes `validation_data`,
            `epochs`, `initial_epoch`, `steps_per_epoch`, `validation_steps`,
            `callbacks`, `verbose`, `shuffle`).

    Returns:
        The `keras.callbacks.History`.
    """
    if is_multi_worker(model.distribute_strategy):
        return train_loop(model, x, **kwargs)
    return model.fit(x, **kwargs)


def train_loop(model, x, validation_data=None, epochs=1, initial_epoch=0, steps_per_epoch=None,
               validation_steps=None, callbacks=None, verbose=2, shuffle=False):
    """Trains a compiled model with `strategy.run(model.train_step)`: `fit` for any strategy.

    What it does per step is what `fit` does: the model's own `train_step`
    (Keras' for functional models: compiled loss scaled by
    1 / num_replicas_in_sync, gradients summed over all replicas of all
    workers by the optimizer; a `GenerativeTrainer`'s for the generative
    models) runs on every replica's part of the global batch. Callbacks get
    the usual calls and logs (`BackupAndRestore`, `ModelCheckpoint`,
    `CSVLogger`, early stopping, `TimeBudget` work unchanged). Differences
    from `fit`: no XLA (collective ops between processes do not compile on
    CPU), one step per call (`steps_per_execution` ignored), and with
    `steps_per_epoch` every epoch starts a new pass over `x`. A stop request
    (`model.stop_training`, e.g. a time budget) is agreed between workers
    after each step, so that no worker waits forever for the others.

    Args:
        model: a compiled `keras.Model` built inside `strategy.scope()`.
        x: batched `tf.data.Dataset` (global batch size) of `(inputs,
            targets)` or inputs; every worker passes the same pipeline
            (same seed), see `distribute_dataset`.
        validation_data: optional batched dataset, evaluated after each epoch
            with `test_step` (logs prefixed "val_").
        epochs: int, index of the last epoch (as in `fit`).
        initial_epoch: int, epoch to start from (a `BackupAndRestore` in
            `callbacks` overrides it after a resume).
        steps_per_epoch, validation_steps: int or None (the whole dataset).
        callbacks: list of `keras.callbacks.Callback`.
        verbose: 0, 1 or 2, as `fit`.
        shuffle: ignored (the tf.data pipeline shuffles), accepted for `fit` compatibility.

    Returns:
        `keras.callbacks.History` (also `model.history`).

    Example:
        >>> strategy = tf.distribute.MultiWorkerMirroredStrategy()  # reads TF_CONFIG
        >>> with strategy.scope():
        ...     model = build_cnn_classifier(4, (32, 32, 3))
        ...     compile_classifier(model, 1e-3)
        >>> train_loop(model, train, validation_data=validation, epochs=5)
    """
    if not isinstance(x, tf.data.Dataset):
        raise ValueError(
            f"train_loop needs a batched tf.data.Dataset; received {type(x).__name__}.")
    if validation_data is not None and not isinstance(validation_data, tf.data.Dataset):
        raise ValueError(
            "`validation_data` must be a batched tf.data.Dataset; received "
            f"{type(validation_data).__name__}.")
    if not model.compiled:
        raise ValueError("Compile the model (inside its strategy's scope) before train_loop.")
    epochs = check_int("epochs", epochs, minimum=0)
    initial_epoch = check_int("initial_epoch", initial_epoch, minimum=0)
    for name, value in (("steps_per_epoch", steps_per_epoch),
                        ("validation_steps", validation_steps)):
        if value is not None:
            check_int(name, value, minimum=1)
    if isinstance(model, GenerativeTrainer):  # the image-shape checks of its `fit`
        model._check_data(x, "x")
        model._check_data(validation_data, "validation_data")
    strategy = model.distribute_strategy
    with strategy.scope():
        # What `fit` builds before its first step (Keras' private
        # `_symbolic_build`, 3.x), here from the data's spec: `fit` first
        # reduces a real distributed batch to get there, which is what fails
        # under MultiWorkerMirroredStrategy. Variables must exist before the
        # step is traced under `strategy.run`.
        model._symbolic_build(data_batch=x.element_spec)
        if model.optimizer is not None and not model.optimizer.built:
            model.optimizer.build(model.trainable_variables)
    train_step = _replicated(strategy, model, model.train_step)
    test_step = _replicated(strategy, model, model.test_step)
    # Workers must agree to stop (a time budget, say) at the same step, or
    # the others would wait for the stopped one's gradients forever.
    any_worker = _stop_vote(strategy) if is_multi_worker(strategy) else None
    train_data = distribute_dataset(strategy, x)
    validation = None if validation_data is None else distribute_dataset(strategy, validation_data)

    if not isinstance(callbacks, keras.callbacks.CallbackList):
        callbacks = keras.callbacks.CallbackList(
            callbacks, add_history=True, add_progbar=verbose != 0, verbose=verbose,
            epochs=epochs, steps=steps_per_epoch or _cardinality(x), model=model,
        )
    model.stop_training = False
    callbacks.on_train_begin()
    # BackupAndRestore sets `_initial_epoch` when it restores (as `fit` reads it).
    initial_epoch = getattr(model, "_initial_epoch", None) or initial_epoch
    epoch_logs = None
    for epoch in range(initial_epoch, epochs):
        model.reset_metrics()
        callbacks.on_epoch_begin(epoch)
        logs = {}
        for step, batch in _batches(train_data, steps_per_epoch):
            callbacks.on_train_batch_begin(step)
            logs = _to_python(train_step(batch))
            callbacks.on_train_batch_end(step, logs)
            if any_worker is not None:
                model.stop_training = any_worker(model.stop_training)
            if model.stop_training:
                break
        epoch_logs = dict(logs)
        if validation is not None:
            model.reset_metrics()
            val_logs = {}
            for _, batch in _batches(validation, validation_steps):
                val_logs = _to_python(test_step(batch))
            epoch_logs.update({f"val_{name}": value for name, value in val_logs.items()})
        callbacks.on_epoch_end(epoch, epoch_logs)
        if model.stop_training:
            break
    if isinstance(model.optimizer, keras.optimizers.Optimizer) and epochs > 0:
        model.optimizer.finalize_variable_values(model.trainable_weights)  # as `fit` (EMA)
    callbacks.on_train_end(logs=epoch_logs)
    return model.history


def _replicated(strategy, model, step):
    """A `tf.function` running `step(batch)` on every replica; returns the model's metric results.

    Metric variables hold per-replica partial sums (Keras creates them
    "on read"); reading them here, in the cross-replica context, sums them
    over all replicas of all workers, so every worker logs the global-batch
    values (and takes the same decisions from them).
    """

    def run(batch):
        strategy.run(step, args=(batch,))
        return model.get_metrics_result()

    # No AutoGraph: the steps are written for Keras' own step functions,
    # which do not convert them either.
    return tf.function(run, reduce_retracing=True, autograph=False)


def _stop_vote(strategy):
    """A function `flag -> bool`: True when `flag` is True on any worker (one all-reduce).

    Every worker must call it at the same step, as `train_loop` does after each batch.
    """

    @tf.function(autograph=False)
    def votes(flag):
        per_replica = strategy.run(lambda: tf.identity(flag))
        return strategy.reduce(tf.distribute.ReduceOp.SUM, per_replica, axis=None)

    return lambda flag: bool(votes(tf.constant(float(bool(flag)))) > 0)


def _batches(distributed, steps):
    """`(step, batch)` over a distributed dataset, at most `steps` of them."""
    for step, batch in enumerate(distributed):
        if steps is not None and step >= steps:
            return
        yield step, batch


def _cardinality(dataset):
    count = int(dataset.cardinality())
    return count if count > 0 else None


def _to_python(logs):
    """Scalar log tensors -> Python floats, for callbacks and `history.csv`."""
    result = {}
    for name, value in logs.items():
        value = np.asarray(keras.ops.convert_to_numpy(value))
        result[name] = value.item() if value.size == 1 else value
    return result


def tf_config(num_workers, index, ports, host="127.0.0.1"):
    """A `TF_CONFIG` value (JSON string) for worker `index` of a local cluster.

    Args:
        num_workers: int >= 1.
        index: int in [0, num_workers), this process's task index (0: chief).
        ports: sequence of `num_workers` free TCP ports, one per worker.
        host: str, the workers' address.

    Returns:
        str, e.g. '{"cluster": {"worker": ["127.0.0.1:4001", "127.0.0.1:4002"]},
        "task": {"type": "worker", "index": 0}}'.
    """
    num_workers = check_int("num_workers", num_workers, minimum=1)
    check_int("index", index, minimum=0, maximum=num_workers - 1)
    if len(ports) != num_workers:
        raise ValueError(f"`ports` must hold {num_workers} ports; received {list(ports)}.")
    cluster = {"worker": [f"{host}:{port}" for port in ports]}
    return json.dumps({"cluster": cluster, "task": {"type": "worker", "index": index}})


__all__ = [
    "STRATEGIES",
    "distribute_dataset",
    "fit",
    "get_strategy",
    "is_chief",
    "is_multi_worker",
    "tf_config",
    "train_loop",
    "worker_directory",
    "worker_task",
]
