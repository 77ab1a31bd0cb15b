"""Per-layer output shapes, parameters and multiply-accumulates of a Keras model.

`summary(model, input_shape)` walks the model's graph at the given input size
(nested models included) and counts, per image, the multiply-accumulates
(MACs) of the layers that do arithmetic on weights or windows:

- convolution (1D/2D/3D, grouped): output positions x filters x (weights per
  filter + 1 for the bias). A 256x256x3 input through 64 3x3 filters at stride
  2 gives a 128x128x64 output and 64 (3 * 3^2 + 1) = 1,792 weights, so
  128 * 128 * 1,792 MACs;
- transposed convolution: each input value times each kernel tap and filter
  (`H * W * C_in * k_h * k_w * filters`), plus one bias per output value;
- depthwise convolution: output values x (k_h * k_w + 1); separable
  convolution: its depthwise then its pointwise convolution;
- dense: output values x (input features + 1);
- pooling: output values x window area (comparisons or additions); global
  pooling: input values.

Biases count as one MAC each (a weight multiplied by a constant input of 1), as
in the classic "k'(k h^2 + 1) weights per position" count; they add under 0.2%
to the published totals (VGG16 at 224x224: 15.5 G MACs; ResNet50: 3.9 G).
Activations, normalisation and additions are left out: they are cheap and are
fused into the convolutions by inference compilers. One MAC is two FLOPs (a
multiplication and an addition), which is what TensorFlow's profiler counts.

Example:
    >>> cost = summary(keras.applications.VGG16(weights=None), (224, 224, 3))
    >>> round(cost.total_macs / 1e9, 2)
    15.48
"""

import dataclasses
import math

import keras
from keras import layers

_CONVOLUTIONS = (layers.Conv1D, layers.Conv2D, layers.Conv3D)
_TRANSPOSED_CONVOLUTIONS = (layers.Conv1DTranspose, layers.Conv2DTranspose, layers.Conv3DTranspose)
_DEPTHWISE_CONVOLUTIONS = (layers.DepthwiseConv1D, layers.DepthwiseConv2D)
_SEPARABLE_CONVOLUTIONS = (layers.SeparableConv1D, layers.SeparableConv2D)
_POOLINGS = (
    layers.MaxPooling1D,
    layers.MaxPooling2D,
    layers.MaxPooling3D,
    layers.AveragePooling1D,
    layers.AveragePooling2D,
    layers.AveragePooling3D,
)
_GLOBAL_POOLINGS = (
    layers.GlobalAveragePooling1D,
    layers.GlobalAveragePooling2D,
    layers.GlobalAveragePooling3D,
    layers.GlobalMaxPooling1D,
    layers.GlobalMaxPooling2D,
    layers.GlobalMaxPooling3D,
)


@dataclasses.dataclass(frozen=True)
class LayerCost:
    """One row of the summary: a layer call.

    Attributes:
        name: str, the layer name, prefixed by its enclosing models'
            (`"backbone/block1_conv1"`).
        layer_type: str, the layer class name.
        output_shape: tuple without the batch axis (a dict or list of tuples
            for multi-output layers).
        params: int, the layer's weights (for a nested model: all of its own).
        macs: int, multiply-accumulates per image (for a nested model: the
            sum of its layers' rows, which follow it).
        depth: int, nesting level (0: a layer of the summarised model).
        is_model: bool, whether the row is a nested model (its MACs are
            already counted in its layers' rows).
    """

    name: str
    layer_type: str
    output_shape: object
    params: int
    macs: int
    depth: int = 0
    is_model: bool = False


@dataclasses.dataclass(frozen=True)
class ModelCost:
    """What `summary` measured.

    Attributes:
        model_name: str.
        input_shape: tuple `(height, width, channels)` the model was measured at.
        rows: tuple of `LayerCost`, in execution order.
        total_params: int, all weights of the model.
        trainable_params: int.
        total_macs: int, multiply-accumulates per image.
    """

    model_name: str
    input_shape: tuple
    rows: tuple
    total_params: int
    trainable_params: int
    total_macs: int

    @property
    def total_flops(self):
        """Floating-point operations per image: 2 per multiply-accumulate."""
        return 2 * self.total_macs

    def row(self, name):
        """Returns the first row whose name (or its last path component) is `name`."""
        for row in self.rows:
            if row.name == name or row.name.rsplit("/", 1)[-1] == name:
                return row
        raise ValueError(f"`name` {name!r} is not a layer of {self.model_name!r}.")

    def table(self):
        """The summary as a text table with totals, one line per layer call."""
        header = ("Layer (type)", "Output shape", "Params", "MACs")
        lines = [
            (
                "  " * row.depth + f"{row.name.rsplit('/', 1)[-1]} ({row.layer_type})",
                _format_shape(row.output_shape),
                f"{row.params:,}",
                f"({row.macs:,})" if row.is_model else f"{row.macs:,}",
            )
            for row in self.rows
        ]
        widths = [max(len(line[i]) for line in [header, *lines]) for i in range(4)]

        def format_line(cells):
            return (
                f"{cells[0]:<{widths[0]}}  {cells[1]:<{widths[1]}}  "
                f"{cells[2]:>{widths[2]}}  {cells[3]:>{widths[3]}}"
            )

        rule = "-" * len(format_line(header))
        non_trainable = self.total_params - self.trainable_params
        return "\n".join(
            [
                f'Model "{self.model_name}" at input {self.input_shape}',
                rule,
                format_line(header),
                rule,
                *map(format_line, lines),
                rule,
                f"Total params: {self.total_params:,} (trainable {self.trainable_params:,}, "
                f"non-trainable {non_trainable:,})",
                f"Total multiply-accumulates: {self.total_macs:,} ({_si(self.total_macs)} MACs, "
                f"{_si(self.total_flops)} FLOPs) per image",
            ]
        )


def _si(value):
    for threshold, suffix in ((1e12, "T"), (1e9, "G"), (1e6, "M"), (1e3, "k")):
        if value >= threshold:
            return f"{value / threshold:.2f} {suffix}"
    return str(value)


def _format_shape(shape):
    if isinstance(shape, dict):
        # Only the keys: the rows of the model's own layers show each shape.
        return "{" + ", ".join(map(str, shape)) + "}"
    if isinstance(shape, list):
        return "[" + ", ".join(_format_shape(value) for value in shape) + "]"
    return str(tuple(shape))


def _per_image_shape(spec):
    """Output spec(s) without the batch axis: a tuple, or a dict/list of them."""
    if isinstance(spec, dict):
        return {key: _per_image_shape(value) for key, value in spec.items()}
    if isinstance(spec, (list, tuple)) and not hasattr(spec, "shape"):
        return [_per_image_shape(value) for value in spec]
    return tuple(spec.shape[1:])


def _size(shape):
    return math.prod(shape[1:])


def layer_macs(layer, input_shape, output_shape):
    """Multiply-accumulates of one call of `layer`, per image.

    Args:
        layer: a built Keras layer.
        input_shape: tuple, its input shape with a batch axis of 1.
        output_shape: tuple, its output shape with a batch axis of 1.

    Returns:
        int (0 for layers without weights or windows, e.g. activations).
    """
    bias = 1 if getattr(layer, "use_bias", False) else 0
    outputs = _size(output_shape)
    if isinstance(layer, _TRANSPOSED_CONVOLUTIONS):
        # Each input value is scattered through every tap of every filter.
        taps = math.prod(layer.kernel_size) * layer.filters
        return _size(input_shape) * taps + outputs * bias
    if isinstance(layer, _DEPTHWISE_CONVOLUTIONS):
        return outputs * (math.prod(layer.kernel_size) + bias)
    if isinstance(layer, _SEPARABLE_CONVOLUTIONS):
        positions = outputs // layer.filters
        depthwise_channels = input_shape[-1] * layer.depth_multiplier
        depthwise = positions * depthwise_channels * math.prod(layer.kernel_size)
        return depthwise + outputs * (depthwise_channels + bias)
    if isinstance(layer, _CONVOLUTIONS):
        # Kernel [*kernel_size, in_channels / groups, filters]: one MAC per
        # weight of the filter at every output value.
        return outputs * (math.prod(layer.kernel.shape[:-1]) + bias)
    if isinstance(layer, layers.Dense):
        return outputs * (layer.kernel.shape[0] + bias)
    if isinstance(layer, _POOLINGS):
        return outputs * math.prod(layer.pool_size)
    if isinstance(layer, _GLOBAL_POOLINGS):
        return _size(input_shape)
    return 0


def _check_dense_input(layer, input_shape, measured_at):
    """Catches an input size that the trained Dense layers cannot take (e.g. after Flatten)."""
    expected = layer.kernel.shape[0]
    if input_shape[-1] != expected:
        raise ValueError(
            f"`input_shape` {measured_at} does not fit the model: layer {layer.name!r} "
            f"(Dense) expects {expected} input features and would receive {input_shape[-1]}."
        )


class _Tracer:
    """Runs a model's graph on symbolic tensors, recording each layer call."""

    def __init__(self, measured_at):
        self.measured_at = measured_at
        self.rows = []

    def run_model(self, model, inputs, prefix, depth):
        if isinstance(model, keras.Sequential):
            outputs = inputs
            for layer in model.layers:
                outputs = self.call(layer, (outputs,), {}, prefix, depth)
            return outputs
        # A functional model executes its nodes through `_run_through_graph`;
        # recording there sees every call of every layer, shared ones included,
        # with the inputs this input size gives them.
        return model._run_through_graph(
            inputs,
            operation_fn=lambda operation: (
                lambda *args, **kwargs: self.call(operation, args, kwargs, prefix, depth)
            ),
        )

    def call(self, layer, args, kwargs, prefix, depth):
        name = f"{prefix}{layer.name}"
        if isinstance(layer, keras.Model):
            row_index = len(self.rows)
            self.rows.append(None)  # the model's row precedes its layers' rows
            outputs = self.run_model(layer, args[0], f"{name}/", depth + 1)
            inner_macs = sum(row.macs for row in self.rows[row_index + 1 :] if not row.is_model)
            self.rows[row_index] = LayerCost(
                name,
                type(layer).__name__,
                _per_image_shape(outputs),
                layer.count_params(),
                inner_macs,
                depth,
                is_model=True,
            )
            return outputs
        first_input = keras.tree.flatten(args[0])[0]
        if isinstance(layer, layers.Dense):
            _check_dense_input(layer, first_input.shape, self.measured_at)
        outputs = layer.compute_output_spec(*args, **kwargs)
        first_output = keras.tree.flatten(outputs)[0]
        macs = layer_macs(layer, first_input.shape, first_output.shape)
        params = layer.count_params() if layer.built else 0
        self.rows.append(
            LayerCost(name, type(layer).__name__, _per_image_shape(outputs), params, macs, depth)
        )
        return outputs


def _resolve_input_shape(model, input_shape):
    if not isinstance(model, keras.Model) or not model.built or not model.inputs:
        raise ValueError(
            f"`model` must be a built Keras model with an Input; received model={model!r}."
        )
    if len(model.inputs) != 1:
        raise ValueError(
            f"summary measures single-input models; model {model.name!r} has "
            f"{len(model.inputs)} inputs."
        )
    model_shape = tuple(model.inputs[0].shape[1:])
    if input_shape is None:
        if None in model_shape:
            raise ValueError(
                f"Model {model.name!r} accepts inputs of shape {model_shape}: pass "
                "`input_shape` with every size fixed, e.g. (224, 224, 3)."
            )
        return model_shape
    try:
        shape = tuple(input_shape)
    except TypeError:
        raise ValueError(
            f"`input_shape` must be a tuple such as (224, 224, 3); received input_shape={input_shape!r}."
        ) from None
    if len(shape) != len(model_shape):
        raise ValueError(
            f"`input_shape` must have {len(model_shape)} entries (no batch axis), like the "
            f"model's input {model_shape}; received input_shape={input_shape!r}."
        )
    for size in shape:
        if isinstance(size, bool) or not isinstance(size, int) or size < 1:
            raise ValueError(
                f"`input_shape` must hold positive integers; received input_shape={input_shape!r}."
            )
    if model_shape[-1] is not None and shape[-1] != model_shape[-1]:
        raise ValueError(
            f"`input_shape` {shape} has {shape[-1]} channels; model {model.name!r} takes "
            f"{model_shape[-1]}."
        )
    return shape


def summary(model, input_shape=None, print_fn=print):
    """Prints per-layer output shapes, parameters and multiply-accumulates, with totals.

    Args:
        model: a built `keras.Model` (Sequential or functional, nested models
            included) with one input.
        input_shape: tuple without the batch axis, e.g. `(224, 224, 3)`; needed
            when the model accepts any size, and may differ from the size it was
            built with (fully convolutional models).
        print_fn: callable receiving the table text, or None to print nothing.

    Returns:
        `ModelCost` with one `LayerCost` row per layer call, the total
        parameters and the total MACs per image (`total_flops` = 2 x MACs).

    Example:
        >>> cost = kerasvision.summary(model, (32, 32, 3))
        >>> cost.row("block1_conv1").macs
    """
    shape = _resolve_input_shape(model, input_shape)
    tracer = _Tracer(shape)
    inputs = keras.KerasTensor((1, *shape), dtype=model.inputs[0].dtype)
    tracer.run_model(model, inputs, prefix="", depth=0)
    rows = tuple(tracer.rows)
    cost = ModelCost(
        model_name=model.name,
        input_shape=shape,
        rows=rows,
        total_params=int(model.count_params()),
        trainable_params=int(sum(math.prod(w.shape) for w in model.trainable_weights)),
        total_macs=int(sum(row.macs for row in rows if not row.is_model)),
    )
    if print_fn is not None:
        print_fn(cost.table())
    return cost


__all__ = ["LayerCost", "ModelCost", "layer_macs", "summary"]
