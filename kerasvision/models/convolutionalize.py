"""Convolutionalization: a trained classifier turned into a fully convolutional network.

`convolutionalize` takes a classifier whose head is Flatten/Dense or
GlobalPooling/Dense (`build_cnn_classifier`, `build_lenet5`,
`build_transfer_classifier` in `kerasvision.models.classifier`, or any such
Keras model) and returns an equivalent network whose Dense layers are
convolutions holding the same weights. On an image of the training size it
returns the classifier's probabilities as a 1x1 map; on a larger image, a map
of class probabilities, one per window of the training size, at the cost of
one forward pass.

Papers:
    Long, Shelhamer and Darrell, "Fully Convolutional Networks for Semantic
        Segmentation", CVPR 2015 (section 3.1).
    Sermanet et al., "OverFeat: Integrated Recognition, Localization and
        Detection using Convolutional Networks", ICLR 2014.
"""

import keras
from keras import layers

# Layers that compute nothing at inference: left out of the convolutional network.
_INFERENCE_IDENTITY = (
    layers.Dropout,
    layers.SpatialDropout1D,
    layers.SpatialDropout2D,
    layers.SpatialDropout3D,
    layers.GaussianNoise,
    layers.GaussianDropout,
    layers.AlphaDropout,
    layers.ActivityRegularization,
)
# Layers that act on each value (or each position's channels) alone: they
# apply unchanged to every position of a class-score map.
_POINTWISE = (
    layers.Activation,
    layers.ReLU,
    layers.LeakyReLU,
    layers.ELU,
    layers.Softmax,
)
_GLOBAL_POOLING = {
    layers.GlobalAveragePooling2D: layers.AveragePooling2D,
    layers.GlobalMaxPooling2D: layers.MaxPooling2D,
}
_SUPPORTED_HEAD = (
    "Flatten or GlobalAveragePooling2D/GlobalMaxPooling2D, then Dense, Dropout, "
    "activation and BatchNormalization layers"
)


def _find_head(model):
    """Returns the top-level layers from the first Flatten/global pooling to the output."""
    top = [layer for layer in model.layers if not isinstance(layer, layers.InputLayer)]
    for index, layer in enumerate(top):
        if isinstance(layer, layers.Flatten) or type(layer) in _GLOBAL_POOLING:
            return top[index:]
        if isinstance(layer, layers.Dense):
            break
    raise ValueError(
        f"convolutionalize: model {model.name!r} has no Flatten or GlobalPooling2D layer "
        f"before its first Dense layer; it needs a head of {_SUPPORTED_HEAD}."
    )


def _check_head_is_a_chain(head, model):
    """Raises unless each head layer takes the previous one's output, the last giving the model's."""
    if isinstance(model, keras.Sequential):
        return  # a chain by construction
    for previous, layer in zip(head, head[1:]):
        if layer.input is not previous.output:
            raise ValueError(
                f"convolutionalize cannot convert layer {layer.name!r} "
                f"({type(layer).__name__}) of model {model.name!r}: its input is not the "
                f"output of {previous.name!r}; the head must be a chain of {_SUPPORTED_HEAD}."
            )
    if head[-1].output is not model.outputs[0] or len(model.outputs) != 1:
        raise ValueError(
            f"convolutionalize: model {model.name!r} must have a single output computed by "
            f"its last layer {head[-1].name!r}."
        )


def _with_free_spatial_sizes(config):
    """Copies a model config with every Input's height and width set to None.

    The trained layers keep their Input's fixed size in their config (nested
    models too, e.g. a backbone), and Keras rejects other sizes at call time.
    """
    if isinstance(config, dict):
        config = {key: _with_free_spatial_sizes(value) for key, value in config.items()}
        if config.get("class_name") == "InputLayer":
            inner = dict(config["config"])
            shape = list(inner["batch_shape"])
            if len(shape) == 4:
                inner["batch_shape"] = [shape[0], None, None, shape[3]]
            config["config"] = inner
        return config
    if isinstance(config, list):
        return [_with_free_spatial_sizes(value) for value in config]
    return config


def _copy_layer(layer):
    return keras.saving.deserialize_keras_object(keras.saving.serialize_keras_object(layer))


def _flexible_body(model, head):
    """A copy of the layers before `head[0]`, accepting images of any size."""
    name = f"{model.name}_features"
    if isinstance(model, keras.Sequential):
        # Rebuilt layer by layer: a Sequential's layers may hold several call
        # nodes (e.g. once reloaded), so its graph tensors are not reliable.
        originals = model.layers[: model.layers.index(head[0])]
        copies = [_copy_layer(layer) for layer in originals]
        body = keras.Sequential(
            [keras.Input((None, None, model.inputs[0].shape[-1])), *copies], name=name
        )
        for copy, original in zip(copies, originals):
            copy.set_weights(original.get_weights())
        return body
    body = keras.Model(model.inputs, head[0].input, name=name)
    config = _with_free_spatial_sizes(keras.saving.serialize_keras_object(body))
    flexible = keras.saving.deserialize_keras_object(config)
    flexible.set_weights(body.get_weights())
    return flexible


def _ends_with_softmax(layer):
    activation = getattr(layer, "activation", None)
    return isinstance(layer, layers.Softmax) or getattr(activation, "__name__", "") == "softmax"


def _clone(layer, **overrides):
    config = {**layer.get_config(), **overrides}
    return type(layer).from_config(config)


def convolutionalize(model, softmax=True, name=None):
    """Turns a trained classifier into an equivalent fully convolutional network.

    The classifier's head must start with Flatten or global pooling, followed by
    Dense layers (with Dropout, activations and BatchNormalization in between).
    Each Dense layer becomes a convolution holding the same weights: the first
    one after Flatten a `(h, w)` convolution over the `h x w x c` feature map
    it was trained on (Flatten orders features row, column, channel, so its
    kernel `[h*w*c, units]` reshapes to `[h, w, c, units]`), the others 1x1
    convolutions. Global pooling becomes an `h x w` pooling window of stride 1.
    The head's Dropout layers are left out (identities at inference); the
    layers before the head are copied with their weights and run in inference
    mode (augmentation and dropout off, BatchNorm on its moving statistics).

    On an image of the training size the result returns a 1x1 map equal to the
    classifier's probabilities; on a larger image it slides the classifier
    over every window of the training size at the network's stride, at the
    cost of one forward pass, and returns a map of class probabilities.

    Args:
        model: a built classifier (Sequential or functional) with a fixed input
            size, e.g. from `build_cnn_classifier`, `build_lenet5` or
            `build_transfer_classifier`.
        softmax: bool, append a softmax over classes (unless the model's last
            layer already applies one), so the map holds probabilities.
        name: str, model name (default `f"{model.name}_convolutional"`).

    Returns:
        A functional `keras.Model` mapping images `[batch, H, W, 3]` (any
        H, W >= the training size) to float32 `[batch, H', W', num_classes]`,
        with `H' = (H - training height) / stride + 1` for an input whose
        extra size is a multiple of the network stride.

    Raises:
        ValueError: naming the layer that cannot be converted.

    Example:
        >>> dense = convolutionalize(build_cnn_classifier(4, (32, 32, 3), filters=(8, 16)))
        >>> dense(np.zeros((1, 64, 64, 3))).shape
        (1, 5, 5, 4)
    """
    if not isinstance(model, keras.Model) or not model.built or not model.inputs:
        raise ValueError(
            "`model` must be a built Keras classifier with an Input layer; received "
            f"model={model!r}."
        )
    head = _find_head(model)
    _check_head_is_a_chain(head, model)
    feature_shape = tuple(head[0].input.shape[1:])
    if len(feature_shape) != 3 or None in feature_shape:
        raise ValueError(
            f"convolutionalize needs a fixed-size feature map [height, width, channels] "
            f"before {head[0].name!r}; received shape {head[0].input.shape}. Build the "
            "classifier with a fixed input_shape."
        )
    feature_height, feature_width, _ = feature_shape

    images = keras.Input((None, None, model.inputs[0].shape[-1]), name="images")
    # Recorded in the graph: dropout, augmentation and BatchNorm run as at
    # inference unless the new model is explicitly called with training=True.
    x = _flexible_body(model, head)(images, training=False)
    flatten_pending = False  # the next Dense reads a flattened h x w map
    for layer in head:
        if isinstance(layer, layers.Flatten):
            flatten_pending = True
        elif type(layer) in _GLOBAL_POOLING:
            if getattr(layer, "keepdims", False):
                raise ValueError(
                    f"convolutionalize cannot convert layer {layer.name!r} "
                    f"({type(layer).__name__}) with keepdims=True."
                )
            pooling = _GLOBAL_POOLING[type(layer)]
            x = pooling((feature_height, feature_width), strides=1, name=layer.name)(x)
        elif isinstance(layer, _INFERENCE_IDENTITY):
            continue
        elif isinstance(layer, layers.Dense):
            kernel_size = (feature_height, feature_width) if flatten_pending else (1, 1)
            kernel, *bias = layer.get_weights()
            conv = layers.Conv2D(
                layer.units,
                kernel_size,
                activation=layer.activation,
                use_bias=layer.use_bias,
                dtype=layer.dtype_policy,
                name=layer.name,
            )
            x = conv(x)
            conv.set_weights([kernel.reshape(conv.kernel.shape), *bias])
            flatten_pending = False
        elif isinstance(layer, _POINTWISE) or (
            isinstance(layer, layers.BatchNormalization) and not flatten_pending
        ):
            # Softmax and BatchNorm act on the class/unit axis: the last one
            # of a [batch, units] tensor is the last one of the score map too.
            has_axis = isinstance(layer, (layers.Softmax, layers.BatchNormalization))
            clone = _clone(layer, axis=-1) if has_axis else _clone(layer)
            x = clone(x, training=False) if isinstance(layer, layers.BatchNormalization) else clone(x)
            clone.set_weights(layer.get_weights())
        else:
            raise ValueError(
                f"convolutionalize cannot convert layer {layer.name!r} ({type(layer).__name__}) "
                f"of model {model.name!r}: the head must be {_SUPPORTED_HEAD}"
                + (" (BatchNormalization only after the first Dense layer)." if flatten_pending else ".")
            )
    if flatten_pending:
        raise ValueError(
            f"convolutionalize: the head of model {model.name!r} has no Dense layer after "
            f"{head[0].name!r}, so there is nothing to turn into a convolution."
        )
    if softmax and not _ends_with_softmax(head[-1]):
        x = layers.Softmax(axis=-1, dtype="float32", name="probabilities")(x)
    else:
        x = layers.Activation("linear", dtype="float32", name="scores")(x)
    return keras.Model(images, x, name=name or f"{model.name}_convolutional")


__all__ = ["convolutionalize"]
