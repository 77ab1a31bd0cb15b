"""`GenerativeTrainer`: the base class of every trainer with a custom `train_step`.

Autoencoders, the VAE, the GANs and the diffusion model train their networks
with hand-written steps. The mechanics those steps share, and that are easy
to get subtly wrong (see docs PITFALLS, "Custom train_step"), live here once:

- loss trackers (`keras.metrics.Mean`) created from a list of names, listed
  by the `metrics` property (so Keras resets them every epoch), always
  including `loss` (read by `TerminateOnNaN`);
- a `keras.random.SeedGenerator` built from the `seed` argument, and
  replica-aware draws from it (`_random_normal`, `_random_uniform`) so that a
  step under `tf.distribute.MirroredStrategy` sees exactly the noise the same
  global batch sees on one device;
- `get_config`/`from_config` of the sub-networks named in `NETWORKS`;
- `compile` that builds every optimizer over its variables inside the
  strategy scope and records a compile config, so `.keras` save/load
  restores optimizer state;
- `_scaled_gradients`: the per-replica loss divided by the number of
  replicas (the global-batch average) and scaled by the optimizer's loss
  scale (mixed precision), recorded on the caller's tape;
- a default `test_step` built on the `compute_losses` hook;
- the exponential moving average (EMA) of a network's weights that the
  diffusion model and the GANs sample with (`clone_for_moving_average`,
  `warmed_up_decay`, `update_moving_average`, `check_ema_decay`).
"""

import tensorflow as tf
import keras
from keras import ops

from kerasvision.validation import check_float, check_int, check_seed
from kerasvision import kernels


def _num_replicas_and_id():
    """(number of replicas in sync, this replica's id) in the current context.

    Outside any strategy (or in a cross-replica context) this is (1, 0).
    """
    context = tf.distribute.get_replica_context()
    if context is None:
        return 1, 0
    return context.num_replicas_in_sync, context.replica_id_in_sync_group


# ---------------------------------------------------------------------------
# Exponential moving average of a network's weights (Polyak averaging).
#
# Sampling with averaged weights rather than the last iterate gives steadier,
# usually better samples: Yazici et al., "The Unusual Effectiveness of
# Averaging in GAN Training", ICLR 2019; Karras et al., "Progressive Growing
# of GANs", ICLR 2018 (generator EMA); Ho et al. 2020 (the DDPM denoiser).
# ---------------------------------------------------------------------------


def check_ema_decay(value, name="ema_decay"):
    """Raises a ValueError naming `name` unless `value` is a number in [0, 1).

    Args:
        value: the decay (0: no averaging).
        name: str, the argument (or flag) named in the message.

    Returns:
        float, the decay.
    """
    value = check_float(name, value)
    if not 0.0 <= value < 1.0:  # also rejects nan
        raise ValueError(
            f"`{name}` must be in [0, 1) (0: no averaging); received {name}={value}."
        )
    return value


def clone_for_moving_average(model):
    """A non-trainable copy of `model` with the same weights, to hold their moving average.

    The copy is named `ema_<model.name>` and is `trainable=False`: an
    optimizer neither updates nor counts its variables, so a `.keras` file
    reloads the optimizer state of the trained network (see PITFALLS). Create
    it inside the strategy scope of the trainer, as its variables must be
    mirrored like the network's.

    Args:
        model: a functional `keras.Model` (any input/output shapes).

    Returns:
        `keras.Model`, same architecture, weights equal to `model`'s.

    Example:
        >>> ema = clone_for_moving_average(generator)
        >>> ema.name, ema.trainable
        ('ema_generator', False)
    """
    clone = keras.models.clone_model(model)
    clone.name = f"ema_{model.name}"
    clone.set_weights(model.get_weights())
    clone.trainable = False
    return clone


def warmed_up_decay(decay, steps):
    """The EMA decay after `steps` updates: `min(decay, (1 + n) / (10 + n))`.

    The schedule of `tf.train.ExponentialMovingAverage(num_updates=n)`: early
    updates weigh the new weights heavily, so a short run averages trained
    weights rather than the initialisation (decay 0.999 would keep ~37% of
    the initial weights after 1000 steps).

    Args:
        decay: float in [0, 1), the decay reached after warm-up.
        steps: int scalar (tensor or variable, e.g. `optimizer.iterations`), n.

    Returns:
        float32 scalar tensor.
    """
    steps = tf.cast(steps, tf.float32)
    return tf.minimum(tf.cast(decay, tf.float32), (1.0 + steps) / (10.0 + steps))


def update_moving_average(ema_model, model, decay):
    """Moves every weight of `ema_model` toward `model`'s: `ema <- decay * ema + (1 - decay) * w`.

    All weights are averaged, non-trainable ones (BatchNorm statistics)
    included, so the averaged network is consistent with its own statistics.
    Safe under `tf.distribute`: from a replica context the update runs once,
    through `merge_call`, on every device's copy (a replica-context assign
    of an aggregation-"none" mirrored variable is an error). Works inside
    `tf.function` and with `jit_compile=True`.

    Args:
        ema_model: `keras.Model` from `clone_for_moving_average(model)`.
        model: the trained `keras.Model`.
        decay: float or float32 scalar tensor in [0, 1) (`warmed_up_decay`).
    """
    decay = tf.cast(decay, tf.float32)
    pairs = [(ema.value, weight.value) for ema, weight in zip(ema_model.weights, model.weights)]

    def update(strategy, pairs):
        for ema, weight in pairs:
            # Without a strategy this is a plain assign.
            strategy.extended.update(
                ema, lambda e, w: e.assign(decay * e + (1.0 - decay) * w), args=(weight,),
                group=False,
            )

    context = tf.distribute.get_replica_context()
    if context is None:  # already in the cross-replica context
        update(tf.distribute.get_strategy(), pairs)
    else:
        context.merge_call(update, args=(pairs,))


@keras.saving.register_keras_serializable(package="kerasvision")
class GenerativeTrainer(keras.Model):
    """Base class of kerasvision's generative trainers (the subclass contract).

    A subclass receives its networks (functional `keras.Model`s from
    `build_*` functions) as constructor arguments and declares:

    - `NETWORKS`: tuple of the constructor arguments that are networks. The
      subclass stores each under the same attribute name; `get_config`
      serializes them with `keras.saving.serialize_keras_object` and
      `from_config` rebuilds them. A network argument may be None.
    - `OPTIMIZERS`: dict compile argument name -> tuple of the network
      attributes whose trainable variables that optimizer updates (None: all
      trainable variables of the trainer). The optimizer is stored under the
      same attribute name. The default `{"optimizer": None}` is what a
      single-optimizer trainer needs, with the inherited
      `compile(optimizer=...)`; a trainer with several optimizers writes its
      own `compile` with explicit arguments that calls `_compile_trainer`.
    - `STEP_OPTIMIZER`: the name of the optimizer that takes exactly one
      update per training step (its `iterations` count the steps: learning
      rate schedules read it).
    - `LOSS_NAMES`: tuple of the tracked losses; `"loss"` is always added
      first, and every step must report it (the total objective, or a sum
      that becomes non-finite whenever a part does).
    - `default_optimizer(name)`: a fresh optimizer for a compile argument left
      None (base: Adam(1e-3)).
    - `expected_image_shape()`: `(height, width, channels)` of the training
      images; `fit`/`evaluate` reject other shapes with a clear ValueError,
      and `_images_from(data)` unpacks and checks a batch inside a step.
    - `call(inputs, training=False)`: the inference path (needed by
      `MirroredStrategy`, and by `fit` to build the trainer).
    - `train_step(data)`: computes per-replica mean losses inside a
      `tf.GradientTape`, then for each optimizer
      `grads = self._scaled_gradients(tape, loss, variables, optimizer)` and
      `optimizer.apply(grads, variables)`, and returns
      `self._update_trackers({...})`.
    - `compute_losses(data, training)`: dict name -> per-replica mean loss
      for one batch; the default `test_step` (used by `evaluate` and by
      `fit(validation_data=...)`) reports it.
    - `get_config`: `{**super().get_config(), <hyperparameters>}`.

    Losses are reduced with a plain mean over the replica's examples;
    `_scaled_gradients` divides by the number of replicas, which (with equal
    per-replica batches, as `MirroredStrategy` splits them) is the sum over
    the global batch divided by the global batch size, so gradients summed
    across replicas equal the single-device gradient. Random draws go through
    `_random_normal`/`_random_uniform`, never `keras.random.*(seed=<int>)`
    (which repeats the same noise every step). Export the inference networks
    (generator, decoder), not the trainer.

    Args:
        seed: int >= 0 or None, seed of the trainer's `SeedGenerator` (the
            noise, latent vectors and interpolation weights of its steps).
        loss_names: optional tuple of str overriding `LOSS_NAMES`.
        **kwargs: `keras.Model` arguments (`name`, `trainable`).

    Example (a subclass):
        >>> class Reconstruction(GenerativeTrainer):
        ...     NETWORKS = ("network",)
        ...     def __init__(self, network, seed=None, **kwargs):
        ...         super().__init__(seed=seed, **kwargs)
        ...         self.network = network
        ...     def call(self, images, training=False):
        ...         return self.network(images, training=training)
        ...     def compute_losses(self, data, training=False):
        ...         images = self._images_from(data)
        ...         error = ops.mean(ops.square(self(images, training=training) - images))
        ...         return {"loss": error}
        ...     def train_step(self, data):
        ...         with tf.GradientTape() as tape:
        ...             losses = self.compute_losses(data, training=True)
        ...         variables = self.trainable_variables
        ...         grads = self._scaled_gradients(tape, losses["loss"], variables, self.optimizer)
        ...         self.optimizer.apply(grads, variables)
        ...         return self._update_trackers(losses)
    """

    NETWORKS = ()
    OPTIMIZERS = {"optimizer": None}
    STEP_OPTIMIZER = "optimizer"
    LOSS_NAMES = ("loss",)

    def __init__(self, seed=None, loss_names=None, **kwargs):
        super().__init__(**kwargs)
        self.seed = check_seed(seed, allow_none=True)
        self.seed_generator = keras.random.SeedGenerator(self.seed, name="seed_generator")
        names = tuple(self.LOSS_NAMES if loss_names is None else loss_names)
        if not names or not all(isinstance(name, str) and name for name in names):
            raise ValueError(
                "`loss_names` must be a non-empty tuple of names; received "
                f"loss_names={loss_names!r}."
            )
        names = ("loss",) + tuple(name for name in names if name != "loss")
        self._trackers = {name: keras.metrics.Mean(name=name) for name in names}
        # The networks arrive built (functional models): nothing is left for
        # Keras to infer from data, and `fit` must not try to.
        self.built = True

    # ------------------------------------------------------------------
    # Metrics
    # ------------------------------------------------------------------

    @property
    def metrics(self):
        """The loss trackers, `loss` first; Keras resets them at each epoch."""
        return list(self._trackers.values())

    def _update_trackers(self, values):
        """Updates the trackers named in `values` (per-replica means) and returns all results.

        Args:
            values: dict tracker name -> scalar tensor; must include "loss".

        Returns:
            dict name -> current mean, the logs of `train_step`/`test_step`.
        """
        if "loss" not in values:
            raise ValueError(
                f"{type(self).__name__} must report a 'loss' value (TerminateOnNaN and "
                f"StopOnNonFiniteLoss read it); received keys {sorted(values)}."
            )
        for name, value in values.items():
            if name not in self._trackers:
                raise ValueError(
                    f"No tracker named {name!r}; {type(self).__name__} tracks "
                    f"{list(self._trackers)}."
                )
            # Trackers stay float32 whatever the compute dtype.
            self._trackers[name].update_state(ops.cast(value, "float32"))
        results = {name: tracker.result() for name, tracker in self._trackers.items()}
        results["loss"] = self.logged_loss(results)
        return results

    def get_metrics_result(self):
        """The trackers' means as `fit`/`evaluate` log them at the end of an epoch, `loss` by `logged_loss`."""
        results = super().get_metrics_result()
        results["loss"] = self.logged_loss(results)
        return results

    def logged_loss(self, means):
        """The logged `loss` from the trackers' means (base: the `loss` tracker's own).

        A trainer whose `loss` is a weighted sum of tracked terms returns the
        same sum of the terms' means: equal to the mean of the per-step sums
        up to rounding, and a fixed function of the logged terms. The mean of
        the in-graph per-step sums is not: in 4 of 20 resume tests of
        `dcgan.py --deterministic` on a loaded 2-core CPU, one epoch's `loss`
        came out one float32 ulp away between the runs compared while
        `d_loss` and `g_loss` matched to the bit (docs/known_issues.md).

        Called on the running means inside a step (the progress bar) and on
        the epoch's means (`get_metrics_result`, what `History` records).

        Args:
            means: dict tracker name -> mean (scalar tensor or Python float).

        Returns:
            The logged loss, of the same kind as the means.
        """
        return means["loss"]

    # ------------------------------------------------------------------
    # Randomness
    # ------------------------------------------------------------------

    def _replica_slice(self, draw, shape):
        """Draws for the global batch and keeps this replica's rows.

        Every replica advances the same seed state and draws the global
        batch's values, so replica r gets rows [r*b, (r+1)*b): a distributed
        step uses exactly the noise of the single-device step.
        """
        num_replicas, replica_id = _num_replicas_and_id()
        if num_replicas == 1:
            return draw(shape)
        batch = shape[0]
        values = draw((batch * num_replicas, *shape[1:]))
        start = replica_id * batch
        return values[start : start + batch]

    def _random_normal(self, shape, dtype="float32"):
        """Standard normal draws of `shape` (`shape[0]`: this replica's batch)."""
        return self._replica_slice(
            lambda s: keras.random.normal(s, dtype=dtype, seed=self.seed_generator), shape
        )

    def _random_uniform(self, shape, minval=0.0, maxval=1.0, dtype="float32"):
        """Uniform draws in [minval, maxval) of `shape` (`shape[0]`: this replica's batch)."""
        return self._replica_slice(
            lambda s: keras.random.uniform(
                s, minval=minval, maxval=maxval, dtype=dtype, seed=self.seed_generator
            ),
            shape,
        )

    def _latents_for(self, num_images, latents, latent_dim):
        """Latent vectors `[batch, latent_dim]`: `latents` checked, or `num_images` prior draws.

        For `generate`-style methods of trainers with a N(0, I) prior.
        """
        if latents is None:
            if num_images is None:
                raise ValueError("Pass `num_images` (prior draws) or `latents`; received neither.")
            num_images = check_int("num_images", num_images, minimum=1)
            return self._random_normal((num_images, latent_dim))
        shape = tuple(getattr(latents, "shape", ()))
        if len(shape) != 2 or shape[1] != latent_dim:
            raise ValueError(
                f"`latents` must have shape [batch, {latent_dim}]; received shape {shape}."
            )
        return ops.cast(latents, "float32")

    # ------------------------------------------------------------------
    # Gradients
    # ------------------------------------------------------------------

    def _scaled_gradients(self, tape, loss, variables, optimizer):
        """Gradients of a per-replica mean loss, averaged for the global batch and loss-scaled.

        Call it after the tape's `with` block: the tape is re-entered so that
        the division and the loss scaling are recorded (scaling outside the
        tape leaves it without a path to the variables: "No gradients
        provided"). `optimizer.apply` then sums gradients over replicas and,
        for a `LossScaleOptimizer`, unscales them and skips non-finite steps.

        Args:
            tape: the `tf.GradientTape` that recorded `loss`.
            loss: scalar tensor, the mean over this replica's examples.
            variables: list of variables to differentiate.
            optimizer: the optimizer that will apply the gradients.

        Returns:
            list of gradients, one per variable.
        """
        num_replicas, _ = _num_replicas_and_id()
        with tape:
            loss = ops.cast(loss, "float32")
            if num_replicas > 1:
                loss = loss / num_replicas
            loss = optimizer.scale_loss(loss)
        return tape.gradient(loss, variables)

    def _variables_for(self, optimizer_name):
        """The variables the optimizer `optimizer_name` updates (see `OPTIMIZERS`)."""
        targets = self.OPTIMIZERS[optimizer_name]
        if targets is None:
            return list(self.trainable_variables)
        variables = []
        for network in targets:
            variables.extend(getattr(self, network).trainable_variables)
        return variables

    # ------------------------------------------------------------------
    # Compile, with optimizers that survive `.keras` save/load
    # ------------------------------------------------------------------

    def default_optimizer(self, name):
        """A fresh optimizer for the compile argument `name` when it is left None."""
        return kernels.adam(learning_rate=1e-3)

    def compile(self, optimizer=None, *, jit_compile="auto", steps_per_execution=1,
                run_eagerly=False):
        """Configures training with one optimizer over all trainable variables.

        Args:
            optimizer: a `keras.optimizers.Optimizer`, its name or config, or
                None for `default_optimizer("optimizer")`.
            jit_compile: bool or "auto", XLA compilation of the steps.
            steps_per_execution: int >= 1, batches per compiled call.
            run_eagerly: bool, run steps eagerly (debugging).
        """
        self._compile_trainer(
            {"optimizer": optimizer},
            jit_compile=jit_compile,
            steps_per_execution=steps_per_execution,
            run_eagerly=run_eagerly,
        )

    def _compile_trainer(self, optimizers, jit_compile="auto", steps_per_execution=1,
                         run_eagerly=False):
        """Resolves, wraps and builds the optimizers and records the compile config.

        Args:
            optimizers: dict compile argument -> optimizer (instance, name,
                config dict or None for the default); keys are `OPTIMIZERS`.
            jit_compile, steps_per_execution, run_eagerly: as `keras.Model.compile`.
        """
        unknown = set(optimizers) - set(self.OPTIMIZERS)
        if unknown:
            raise ValueError(
                f"{type(self).__name__} has optimizers {list(self.OPTIMIZERS)}; received "
                f"{sorted(unknown)}."
            )
        check_int("steps_per_execution", steps_per_execution, minimum=1)
        if not (isinstance(jit_compile, bool) or jit_compile == "auto"):
            raise ValueError(
                "`jit_compile` must be True, False or 'auto'; received "
                f"jit_compile={jit_compile!r}."
            )
        # Optimizers must be created and built inside the trainer's strategy
        # scope, or MirroredStrategy fails with a "placeholder" error.
        with self.distribute_strategy.scope():
            resolved = {}
            for name in self.OPTIMIZERS:
                optimizer = optimizers.get(name)
                optimizer = self.default_optimizer(name) if optimizer is None else optimizer
                try:
                    optimizer = keras.optimizers.get(optimizer)
                except ValueError as error:
                    raise ValueError(
                        f"`{name}` must be a keras optimizer, its name or its config; "
                        f"received {name}={optimizer!r} ({error})."
                    ) from None
                # float16 gradients underflow without loss scaling; Keras' own
                # compile wraps the same way.
                if self.dtype_policy.name == "mixed_float16" and not isinstance(
                    optimizer, keras.optimizers.LossScaleOptimizer
                ):
                    optimizer = keras.optimizers.LossScaleOptimizer(
                        optimizer, name=f"{name}_scaled")
                resolved[name] = optimizer
            single = resolved.get("optimizer")
            super().compile(
                optimizer=single,
                jit_compile=jit_compile,
                steps_per_execution=steps_per_execution,
                run_eagerly=run_eagerly,
                auto_scale_loss=False,
            )
            for name, optimizer in resolved.items():
                setattr(self, name, optimizer)
                # Built now, not at the first step: BackupAndRestore and
                # `.keras` loading restore state only into built optimizers,
                # and a first step under tf.function must not create variables.
                if not optimizer.built:
                    optimizer.build(self._variables_for(name))
        self._trainer_compile_args = {
            **resolved,
            "jit_compile": jit_compile,
            "steps_per_execution": steps_per_execution,
            "run_eagerly": run_eagerly,
        }

    def get_compile_config(self):
        """The `compile` arguments (optimizers serialized), saved in `.keras` files."""
        if not self.compiled or not hasattr(self, "_trainer_compile_args"):
            return {}
        return {
            name: keras.saving.serialize_keras_object(value)
            for name, value in self._trainer_compile_args.items()
        }

    def compile_from_config(self, config):
        """Recompiles from `get_compile_config()` (called by `keras.saving.load_model`)."""
        config = keras.saving.deserialize_keras_object(config)
        self.compile(**config)

    # ------------------------------------------------------------------
    # Steps
    # ------------------------------------------------------------------

    def call(self, inputs, training=False):
        """The inference path; subclasses implement it."""
        raise NotImplementedError(f"{type(self).__name__} must implement `call`.")

    def compute_losses(self, data, training=False):
        """dict name -> per-replica mean loss of one batch; subclasses implement it."""
        raise NotImplementedError(f"{type(self).__name__} must implement `compute_losses`.")

    def test_step(self, data):
        """Reports `compute_losses(data, training=False)` without updating weights."""
        return self._update_trackers(self.compute_losses(data, training=False))

    def expected_image_shape(self):
        """`(height, width, channels)` of the training images, or None (unchecked).

        Subclasses return their networks' image shape; `fit` and `evaluate`
        then reject data of another shape before tracing, with a message
        naming both shapes.
        """
        return None

    def fit(self, x=None, *args, **kwargs):
        """`keras.Model.fit`, after checking that `x` (and `validation_data`) match the model."""
        self._check_data(x, "x")
        self._check_data(kwargs.get("validation_data"), "validation_data")
        return super().fit(x, *args, **kwargs)

    def evaluate(self, x=None, *args, **kwargs):
        """`keras.Model.evaluate`, after checking that `x` matches the model."""
        self._check_data(x, "x")
        return super().evaluate(x, *args, **kwargs)

    def _check_data(self, data, name):
        """Raises a ValueError when a dataset, array or tensor holds images of the wrong shape."""
        expected = self.expected_image_shape()
        if expected is None or data is None:
            return
        if isinstance(data, tf.data.Dataset):
            spec = data.element_spec
            spec = spec[0] if isinstance(spec, (tuple, list)) else spec
            shape = getattr(spec, "shape", None)
            if shape is None or shape.rank is None:
                return
            shape = tuple(shape)
            if len(shape) == 3:
                raise ValueError(
                    f"`{name}` must be a batched dataset of images [batch, "
                    f"{', '.join(map(str, expected))}]; received unbatched elements of shape "
                    f"{shape} (call .batch() first)."
                )
        else:
            if isinstance(data, (tuple, list)) and data:
                data = data[0]
            if not hasattr(data, "shape"):
                return
            shape = tuple(data.shape)
        self._check_image_shape(shape, expected, name)

    def _check_image_shape(self, shape, expected, name):
        """Raises unless `shape` is `[batch, *expected]` (unknown sizes pass)."""
        if len(shape) != 4 or any(
            want is not None and got is not None and want != got
            for got, want in zip(shape[1:], expected)
        ):
            raise ValueError(
                f"{type(self).__name__} expects `{name}` batches of images "
                f"[batch, {', '.join(map(str, expected))}]; received a batch of shape "
                f"{shape}. Resize the images to the model's size (or build the model for "
                "this size)."
            )

    def _images_from(self, data, expected_shape=None, name="data"):
        """The images of a batch `images`, `(images,)` or `(images, anything)`.

        Args:
            data: the batch `fit` passes to `train_step`.
            expected_shape: `(height, width, channels)` the model needs
                (default: `expected_image_shape()`); a mismatch raises a
                ValueError naming both shapes (at trace time).
            name: what the error calls the batch.

        Returns:
            float32 tensor `[batch, height, width, channels]`.
        """
        images = data[0] if isinstance(data, (tuple, list)) else data
        if isinstance(images, dict):
            raise ValueError(
                f"`{name}` must be a batch of images (or (images, target) pairs); received a dict "
                f"with keys {sorted(images)}."
            )
        if expected_shape is None:
            expected_shape = self.expected_image_shape()
        if expected_shape is not None:
            self._check_image_shape(tuple(images.shape), tuple(expected_shape), name)
        return ops.cast(images, "float32")

    # ------------------------------------------------------------------
    # Serialization
    # ------------------------------------------------------------------

    def get_config(self):
        """Constructor arguments: `name`, `trainable`, `seed` and the serialized `NETWORKS`."""
        config = {"name": self.name, "trainable": self.trainable, "seed": self.seed}
        for network in self.NETWORKS:
            value = getattr(self, network)
            config[network] = None if value is None else keras.saving.serialize_keras_object(value)
        return config

    @classmethod
    def from_config(cls, config):
        """Rebuilds the networks named in `NETWORKS`, then calls the constructor."""
        config = dict(config)
        for network in cls.NETWORKS:
            if isinstance(config.get(network), dict):
                config[network] = keras.saving.deserialize_keras_object(config[network])
        return cls(**config)


__all__ = [
    "GenerativeTrainer",
    "check_ema_decay",
    "clone_for_moving_average",
    "update_moving_average",
    "warmed_up_decay",
]
