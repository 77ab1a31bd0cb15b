"""Why a network decided: Grad-CAM and gradient saliency maps of any model passed in.

- `grad_cam`: Selvaraju et al., "Grad-CAM: Visual Explanations from Deep
  Networks via Gradient-based Localization", ICCV 2017. The feature maps
  `A^k` of a convolutional layer are weighted by the spatial mean of the
  class score's gradient, `alpha_k = mean_ij dy^c / dA^k_ij`, and
  `ReLU(sum_k alpha_k A^k)` is the heatmap.
- `vanilla_saliency`: Simonyan, Vedaldi and Zisserman, "Deep Inside
  Convolutional Networks: Visualising Image Classification Models and
  Saliency Maps", ICLR workshop 2014: `max_channels |dy^c / dx|`.
- `smoothgrad_saliency`: Smilkov et al., "SmoothGrad: removing noise by
  adding noise", 2017: the input gradient averaged over noisy copies of the
  image.
- `heatmap_mass_inside`: the share of a heatmap's mass that falls inside an
  object mask (how well an explanation points at the object).
- `overlay_heatmap` / `plot_explanations`: heatmaps drawn over images, as PNG.

Every function takes the model as an argument and leaves it unchanged. Two
kinds of model are explained:

- classifiers, output `[batch, num_classes]`: the class score `y^c` is the
  logit of class `c`;
- segmenters, output `[batch, H, W, num_classes]`: the class score is the
  sum of class `c`'s logits over all pixels (Vinogradova, Dibrov and Myers,
  "Towards Interpretable Semantic Segmentation via Gradient-weighted Class
  Activation Mapping", AAAI 2020, with the whole image as the region).

For models whose output is probabilities (a final softmax) the score is the
log-probability `log p_c`: the gradient of `p_c` itself vanishes as the
softmax saturates, the gradient of its log does not (it equals the logit's
gradient minus the probability-weighted mean of all logits' gradients).

Images follow the package contract: raw RGB `[batch, H, W, 3]` in [0, 255],
the models' own preprocessing inside them. Maps are returned as float32 numpy
arrays normalised per image to [0, 1] (an all-zero map stays zero).
"""

import keras
import numpy as np
import tensorflow as tf
from keras import layers, ops

from kerasvision.validation import (
    check_float,
    check_int,
    check_pixel_range,
    check_seed,
    fill_doc,
)

CONVOLUTION_TYPES = (
    layers.Conv2D,
    layers.Conv2DTranspose,
    layers.SeparableConv2D,
    layers.DepthwiseConv2D,
)
"""Layer types `grad_cam` looks for when no `layer` is given."""

# Layers that leave a convolution's map in place: the default Grad-CAM layer
# moves past them, so the map is rectified (as the paper's Caffe VGG-16, whose
# ReLU runs in place on conv5_3).
_FOLLOWERS = (layers.BatchNormalization, layers.Activation, layers.ReLU, layers.LeakyReLU,
              layers.ELU, layers.PReLU)

_DOC_IMAGES = (
    "images: `[batch, H, W, 3]` raw RGB (numpy or tensor, any real dtype), the\n"
    "            model's input size."
)


# ----------------------------------------------------------------------------
# Finding the layer and tapping its output
# ----------------------------------------------------------------------------


def _sub_models(model):
    return [layer for layer in model.layers if isinstance(layer, keras.Model)]


def _find_layer_path(model, layer):
    """The layers from `model` down to `layer` (a name or a layer), or None.

    The model's own layers are searched first, then nested sub-models (a
    backbone), depth first, so an outer name wins over an inner one.
    """
    for candidate in model.layers:
        if candidate is layer or (isinstance(layer, str) and candidate.name == layer):
            return [candidate]
    for sub in _sub_models(model):
        path = _find_layer_path(sub, layer)
        if path:
            return [sub, *path]
    return None


def _single_output(layer):
    """The layer's one output tensor, or None when it was called several times (shared)."""
    try:
        return layer.output
    except (AttributeError, ValueError):
        return None


def _output_channels(layer):
    output = _single_output(layer)
    return None if output is None else output.shape[-1]


def _last_convolution_path(model, skip_channels=None):
    """Path to the last convolution (searching nested sub-models), past its BN/activation.

    Convolutions with `skip_channels` output channels are passed over (a
    segmenter's class-score layer and its learned upsamplers).
    """
    for index in range(len(model.layers) - 1, -1, -1):
        candidate = model.layers[index]
        if isinstance(candidate, keras.Model):
            path = _last_convolution_path(candidate, skip_channels)
            if path:
                return [candidate, *path]
        elif isinstance(candidate, CONVOLUTION_TYPES):
            if skip_channels is not None and _output_channels(candidate) == skip_channels:
                continue
            # Move through the normalisation and activation that consume this
            # map directly (a chain: each follower's input is the previous output).
            while index + 1 < len(model.layers):
                follower = model.layers[index + 1]
                previous = _single_output(model.layers[index])
                if not isinstance(follower, _FOLLOWERS) or previous is None:
                    break
                try:
                    if follower.input is not previous:
                        break
                except (AttributeError, ValueError):
                    break
                index += 1
            return [model.layers[index]]
    return None


def _model_output(model):
    """The model's symbolic output with its structure (a tensor, list or dict)."""
    if isinstance(model, keras.Sequential):
        return model.outputs[0]
    return model.output


def _model_input(model):
    inputs = model.inputs
    return inputs[0] if len(inputs) == 1 else inputs


def _tap(model, path):
    """A functional model returning `[activation of path[-1], model's output]`.

    The weights are shared with `model` (its layers are reused, not copied).
    A layer inside a nested sub-model is reached by rebuilding each enclosing
    model with that sub-model replaced by its own tapped version, so the
    activation becomes a tensor of the outer graph.
    """
    target = path[0]
    if len(path) == 1:
        return keras.Model(_model_input(model), [target.output, _model_output(model)])
    inner = _tap(target, path[1:])
    if isinstance(model, keras.Sequential):  # a chain: replay it layer by layer
        x = keras.Input(batch_shape=model.inputs[0].shape, dtype=model.inputs[0].dtype)
        inputs, activation = x, None
        for layer in model.layers:
            if layer is target:
                activation, x = inner(x)
            else:
                x = layer(x)
        return keras.Model(inputs, [activation, x])
    captured = []

    def call_function(layer, *args, **kwargs):
        if layer is target:
            activation, outputs = inner(*args, **kwargs)
            captured.append(activation)
            return outputs
        return layer(*args, **kwargs)

    clone = keras.models.clone_model(
        model, clone_function=lambda layer: layer, call_function=call_function
    )
    return keras.Model(_model_input(clone), [captured[0], _model_output(clone)])


def _layer_path(model, layer):
    """Resolves `layer` (None, a name or a layer object) to a path; raises a clear ValueError."""
    if layer is None:
        path = None
        output = model.outputs[0]
        if len(model.outputs) == 1 and len(output.shape) == 4:
            # A segmenter: its last convolutions compute class scores (and
            # upsample them); the explanation reads the features before them.
            path = _last_convolution_path(model, skip_channels=output.shape[-1])
        path = path or _last_convolution_path(model)
        if path is None:
            raise ValueError(
                f"`model` {model.name!r} has no convolution layer ({', '.join(t.__name__ for t in CONVOLUTION_TYPES)}), "
                "so Grad-CAM has no feature map to use; pass `layer=` explicitly."
            )
        return path
    if not isinstance(layer, (str, layers.Layer)):
        raise ValueError(  # noqa: TRY004 (argument checks raise ValueError throughout)
            f"`layer` must be None, a layer name or a keras layer; received layer={layer!r}."
        )
    path = _find_layer_path(model, layer)
    shown = layer if isinstance(layer, str) else layer.name
    if path is None:
        raise ValueError(
            f"`layer` {shown!r} is not in model {model.name!r} (nor in its sub-models); "
            f"its top-level layers are {[item.name for item in model.layers]}."
        )
    output = _single_output(path[-1])
    if output is None or len(output.shape) != 4:
        shape = None if output is None else tuple(output.shape)
        raise ValueError(
            f"`layer` {shown!r} is not convolutional: Grad-CAM needs a layer whose output is "
            f"a feature map [batch, height, width, channels] (a convolution or the "
            f"activation, normalisation or pooling after one); received a layer with output "
            f"shape {shape}."
        )
    return path


# ----------------------------------------------------------------------------
# Inputs and class scores
# ----------------------------------------------------------------------------


def _check_model(model):
    if not isinstance(model, keras.Model):
        raise ValueError(  # noqa: TRY004 (argument checks raise ValueError throughout)
            f"`model` must be a keras.Model; received model={model!r}."
        )
    return model


def _as_images(images, model):
    """float32 tensor `[B, H, W, C]` matching the model's input; raises a clear ValueError."""
    dtype = getattr(images, "dtype", None)
    if dtype is not None and not str(getattr(dtype, "name", dtype)).startswith(
        ("int", "uint", "float", "bfloat")
    ):
        raise ValueError(f"`images` must hold numbers; received images of dtype {dtype}.")
    images = ops.convert_to_tensor(images)
    shape = tuple(images.shape)
    expected = tuple(model.inputs[0].shape[1:])
    if len(shape) != 4 or shape[0] == 0:
        raise ValueError(
            f"`images` must be a non-empty batch [batch, height, width, channels]; received "
            f"shape {shape}."
        )
    if any(want is not None and got != want for got, want in zip(shape[1:], expected)):
        raise ValueError(
            f"`images` must match the model's input [batch, {', '.join(map(str, expected))}]; "
            f"received shape {shape}."
        )
    return ops.cast(images, "float32")


def _output_is_probability(model):
    """Whether the model ends with a softmax (auto-detection for `from_logits=None`)."""
    last = model.layers[-1]
    if isinstance(last, layers.Softmax):
        return True
    activation = getattr(last, "activation", None)
    return activation is keras.activations.softmax or getattr(activation, "__name__", "") == "softmax"


def _resolve_classes(outputs, class_index):
    """int32 `[B]` class per image: given, or the predicted one."""
    batch, num_classes = outputs.shape[0], outputs.shape[-1]
    if class_index is None:
        if len(outputs.shape) == 2:
            return ops.cast(ops.argmax(outputs, axis=-1), "int32")
        # A segmenter: the class predicted on most pixels of each image.
        votes = ops.one_hot(ops.argmax(outputs, axis=-1), num_classes)
        return ops.cast(ops.argmax(ops.sum(votes, axis=(1, 2)), axis=-1), "int32")
    values = np.asarray(class_index)
    if values.dtype.kind not in "iu" or values.ndim > 1 or (
        values.ndim == 1 and values.shape[0] != batch
    ):
        raise ValueError(
            f"`class_index` must be None, an integer or one integer per image ({batch}); "
            f"received class_index={class_index!r}."
        )
    if values.size and (values.min() < 0 or values.max() >= num_classes):
        raise ValueError(
            f"`class_index` must be in [0, {num_classes}) (the model has {num_classes} "
            f"classes); received class_index={class_index!r}."
        )
    return ops.convert_to_tensor(np.broadcast_to(values, (batch,)).astype(np.int32))


def _class_scores(outputs, classes, from_logits):
    """Score `y^c` per image `[B]`: the logit (or log-probability) of its class."""
    outputs = ops.cast(outputs, "float32")
    if not from_logits:
        outputs = ops.log(ops.maximum(outputs, 1e-12))
    selected = ops.one_hot(classes, outputs.shape[-1])  # [B, C]
    if len(outputs.shape) == 2:
        return ops.sum(outputs * selected, axis=-1)
    if len(outputs.shape) == 4:
        return ops.sum(outputs * selected[:, None, None, :], axis=(1, 2, 3))
    raise ValueError(
        "`model` must return class scores [batch, num_classes] (a classifier) or "
        f"[batch, H, W, num_classes] (a segmenter); received output shape {tuple(outputs.shape)}."
    )


def _resolve_from_logits(model, from_logits):
    if from_logits is None:
        return not _output_is_probability(model)
    if not isinstance(from_logits, bool):
        raise ValueError(  # noqa: TRY004 (argument checks raise ValueError throughout)
            f"`from_logits` must be None, True or False; received {from_logits!r}."
        )
    return from_logits


def _normalise(maps):
    """Divides each map `[B, h, w]` by its maximum (all-zero maps stay zero)."""
    peak = ops.max(maps, axis=(1, 2), keepdims=True)
    return ops.where(peak > 0, maps / ops.maximum(peak, 1e-12), ops.zeros_like(maps))


# ----------------------------------------------------------------------------
# Grad-CAM
# ----------------------------------------------------------------------------


def find_grad_cam_layer(model, layer=None):
    """The layer `grad_cam` reads, resolved as `grad_cam` does.

    Args:
        model: a `keras.Model`.
        layer: None (the last convolution, searched inside nested sub-models
            too, then moved past the BatchNormalization and activation layers
            that directly follow it; for a segmenter, the last convolution
            whose channels differ from the classes, so the class-score layer
            and its upsamplers are passed over), a layer name or a keras layer
            of the model or of one of its sub-models.

    Returns:
        The keras layer.

    Example:
        >>> find_grad_cam_layer(build_cnn_classifier(4, filters=(8, 16))).name
        'block2_relu2'
    """
    return _layer_path(_check_model(model), layer)[-1]


@fill_doc(images=_DOC_IMAGES)
def grad_cam(model, images, class_index=None, layer=None, upsample=True, from_logits=None):
    """Grad-CAM heatmaps (Selvaraju et al. 2017): where the evidence for a class lies.

    With `A^k` the feature maps of `layer` and `y^c` the class score, each
    map is weighted by `alpha_k = mean_ij dy^c / dA^k_ij` and the heatmap is
    `ReLU(sum_k alpha_k A^k)`, optionally upsampled (bilinear) to the image
    size, then divided by its maximum. The model runs in inference mode.

    Args:
        model: a `keras.Model` returning class logits or probabilities
            `[batch, num_classes]`, or per-pixel `[batch, H, W, num_classes]`
            (a segmenter: the score is the sum over pixels of class `c`'s logit).
        {images}
        class_index: None (each image's predicted class; for a segmenter the
            class predicted on most pixels), an int, or one int per image.
        layer: None (`find_grad_cam_layer`: the last convolution, searched
            inside nested sub-models such as a backbone, past the normalisation
            and activation that follow it; a segmenter's class-score
            convolutions are passed over), a layer name or a keras layer whose
            output is a feature map `[batch, h, w, k]`.
        upsample: bool, resize the maps to the images' `H x W` (bilinear).
        from_logits: None (auto: probabilities when the model ends with a
            softmax), True (outputs are logits: score = logit) or False
            (probabilities: score = log-probability).

    Returns:
        float32 numpy `[batch, H, W]` (or `[batch, h, w]` without
        `upsample`), each map in [0, 1].

    Raises:
        ValueError: `layer` is not in the model or not convolutional, or
            `images`/`class_index` do not fit the model.

    Example:
        >>> model = build_cnn_classifier(4, (32, 32, 3), filters=(8, 16))
        >>> grad_cam(model, np.zeros((2, 32, 32, 3))).shape
        (2, 32, 32)
    """
    model = _check_model(model)
    tapped = _tap(model, _layer_path(model, layer))
    images = _as_images(images, model)
    from_logits = _resolve_from_logits(model, from_logits)
    with tf.GradientTape() as tape:
        # Watching the input records every op after it, even when the model's
        # weights are frozen (a tape only follows trainable variables otherwise).
        tape.watch(images)
        activations, outputs = tapped(images, training=False)
        classes = _resolve_classes(outputs, class_index)
        scores = _class_scores(outputs, classes, from_logits)
    # Each image's score depends on its own activations only (inference mode),
    # so the gradient of the sum is the per-image gradient.
    gradients = tape.gradient(scores, activations)
    activations = ops.cast(activations, "float32")
    weights = ops.mean(ops.cast(gradients, "float32"), axis=(1, 2))  # alpha: [B, K]
    maps = ops.relu(ops.einsum("bhwk,bk->bhw", activations, weights))
    if upsample:
        maps = ops.image.resize(maps[..., None], tuple(images.shape[1:3]), interpolation="bilinear")
        maps = ops.relu(maps[..., 0])
    return ops.convert_to_numpy(_normalise(maps)).astype(np.float32)



# ----------------------------------------------------------------------------
# Saliency
# ----------------------------------------------------------------------------


def _input_gradients(model, images, classes, from_logits):
    with tf.GradientTape() as tape:
        tape.watch(images)
        scores = _class_scores(model(images, training=False), classes, from_logits)
    return tape.gradient(scores, images)


def _saliency_map(gradients):
    """Simonyan et al.'s map: the largest absolute gradient over the colour channels."""
    return _normalise(ops.max(ops.abs(ops.cast(gradients, "float32")), axis=-1))


def _predicted_classes(model, images, class_index):
    return _resolve_classes(model(images, training=False), class_index)


@fill_doc(images=_DOC_IMAGES)
def vanilla_saliency(model, images, class_index=None, from_logits=None):
    """Gradient saliency (Simonyan et al. 2014): `max_channels |dy^c / dx|` per pixel.

    Args:
        model: a `keras.Model` (classifier or segmenter, as in `grad_cam`).
        {images}
        class_index: None (the predicted class), an int, or one int per image.
        from_logits: None (auto), True or False, as in `grad_cam`.

    Returns:
        float32 numpy `[batch, H, W]`, each map in [0, 1].

    Example:
        >>> vanilla_saliency(model, images, class_index=2).shape
        (2, 32, 32)
    """
    model = _check_model(model)
    images = _as_images(images, model)
    from_logits = _resolve_from_logits(model, from_logits)
    classes = _predicted_classes(model, images, class_index)
    gradients = _input_gradients(model, images, classes, from_logits)
    return ops.convert_to_numpy(_saliency_map(gradients)).astype(np.float32)



@fill_doc(images=_DOC_IMAGES)
def smoothgrad_saliency(model, images, class_index=None, samples=25, noise=0.15, seed=0,
                        pixel_range=(0.0, 255.0), from_logits=None):
    """SmoothGrad (Smilkov et al. 2017): input gradients averaged over noisy copies.

    `samples` copies of each image get Gaussian noise of standard deviation
    `noise * (high - low)` (the paper's noise level sigma / (x_max - x_min);
    10-20% works best there); their gradients of the class score are
    averaged, and the map is the largest absolute averaged gradient over the
    colour channels. The class is chosen once, on the clean image.

    Args:
        model: a `keras.Model` (classifier or segmenter, as in `grad_cam`).
        {images}
        class_index: None (the predicted class), an int, or one int per image.
        samples: int >= 1, noisy copies per image.
        noise: float >= 0, noise standard deviation as a fraction of the pixel range.
        seed: int >= 0, seed of the noise.
        pixel_range: `(low, high)` of the model's input pixels (raw RGB: (0, 255)).
        from_logits: None (auto), True or False, as in `grad_cam`.

    Returns:
        float32 numpy `[batch, H, W]`, each map in [0, 1].

    Example:
        >>> smoothgrad_saliency(model, images, samples=10, noise=0.1).shape
        (2, 32, 32)
    """
    model = _check_model(model)
    samples = check_int("samples", samples, minimum=1)
    noise = check_float("noise", noise, minimum=0.0)
    seed = check_seed(seed)
    low, high = check_pixel_range(pixel_range)
    images = _as_images(images, model)
    from_logits = _resolve_from_logits(model, from_logits)
    classes = _predicted_classes(model, images, class_index)
    rng = np.random.default_rng(seed)
    sigma = noise * (high - low)
    total = ops.zeros_like(images)
    for _ in range(samples):
        noisy = images + rng.normal(0.0, sigma, tuple(images.shape)).astype(np.float32)
        total = total + ops.cast(_input_gradients(model, noisy, classes, from_logits), "float32")
    return ops.convert_to_numpy(_saliency_map(total / samples)).astype(np.float32)


# ----------------------------------------------------------------------------
# Scoring and drawing explanations
# ----------------------------------------------------------------------------


def heatmap_mass_inside(heatmaps, masks):
    """Share of each heatmap's mass inside a mask: `sum(map * mask) / sum(map)`.

    A map that spreads evenly scores the mask's area share; one that points
    only at the object scores 1.

    Args:
        heatmaps: `[batch, H, W]` non-negative maps (e.g. from `grad_cam`).
        masks: `[batch, H, W]` booleans or 0/1 (or class ids: nonzero counts
            as inside).

    Returns:
        float64 numpy `[batch]`; NaN for an all-zero map.

    Example:
        >>> heatmap_mass_inside(np.ones((1, 2, 2)), np.array([[[1, 0], [0, 0]]]))
        array([0.25])
    """
    heatmaps = np.asarray(heatmaps, dtype=np.float64)
    masks = np.asarray(masks) != 0
    if heatmaps.ndim != 3 or heatmaps.shape != masks.shape:
        raise ValueError(
            "`heatmaps` and `masks` must both be [batch, H, W] of the same shape; received "
            f"heatmaps shape {heatmaps.shape} and masks shape {masks.shape}."
        )
    if np.any(heatmaps < 0):
        raise ValueError("`heatmaps` must be non-negative; received negative values.")
    total = heatmaps.sum(axis=(1, 2))
    inside = (heatmaps * masks).sum(axis=(1, 2))
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(total > 0, inside / total, np.nan)



__all__ = [
    "CONVOLUTION_TYPES",
    "find_grad_cam_layer",
    "grad_cam",
    "heatmap_mass_inside",
    "smoothgrad_saliency",
    "vanilla_saliency",
]

