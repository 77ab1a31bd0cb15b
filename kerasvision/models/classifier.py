"""Image classifiers: Sequential CNNs, LeNet-5 and transfer classifiers.

- `build_cnn_classifier`: a configurable stack of convolution blocks, each
  followed by 2x2 max or average pooling, then a Flatten or global-pooling
  head with dropout and dense layers (Sequential API).
- `build_lenet5`: LeCun, Bottou, Bengio and Haffner, "Gradient-Based Learning
  Applied to Document Recognition", Proc. IEEE 1998 (Sequential API).
- `build_transfer_classifier`: a new head on a registered backbone
  (`kerasvision.backbones`), built for feature extraction (backbone frozen) or
  fine-tuning (its last N stages trainable); `kerasvision.training.fit_two_phase`
  runs the two-phase schedule.

`kerasvision.models.convolutionalize` turns any of them into a fully
convolutional network that returns a map of class probabilities.

Every classifier maps raw RGB images `[batch, H, W, 3]` in [0, 255] to float32
logits `[batch, num_classes]` (a final float32 linear activation, so that
mixed precision is safe); export them with `outputs="logits"`.
"""

import keras
from keras import layers

from kerasvision.backbones import (  # noqa: F401  (freeze_batch_norm re-exported)
    freeze_batch_norm,
    build_backbone,
    get_backbone_spec,
    resolve_weights,
    set_trainable_blocks,
)
from kerasvision import kernels
from kerasvision.validation import (
    check_choice,
    check_float,
    check_image_shape,
    check_int,
    check_num_classes,
)

POOLING_TYPES = ("max", "average")
HEAD_TYPES = ("flatten", "global_average", "global_max")
TRANSFER_MODES = ("feature_extraction", "fine_tuning")

_POOLING_LAYERS = {"max": layers.MaxPooling2D, "average": layers.AveragePooling2D}
_GLOBAL_POOLING_LAYERS = {
    "global_average": layers.GlobalAveragePooling2D,
    "global_max": layers.GlobalMaxPooling2D,
}


@keras.saving.register_keras_serializable(package="kerasvision")
class TrainingAugmentation(layers.Pipeline):
    """Random augmentation layers that run only when training.

    Keras' random image layers (and `keras.layers.Pipeline`) default to
    `training=True`, so `model(images)` called without `training=False`
    would silently augment the images it predicts on. This pipeline defaults
    to inference: it augments only inside `fit` (or with `training=True`).

    Args:
        layers: list of Keras layers (e.g. `RandomFlip`, `RandomRotation`).

    Input shape: `[batch, height, width, channels]`, raw pixels.
    Output shape: the same.
    """

    def build(self, input_shape):
        # The random layers hold no weights, but building them here keeps Keras
        # from warning that this layer has unbuilt state.
        for layer in self.layers:
            if not layer.built:
                layer.build(input_shape)
        self.built = True

    def call(self, inputs, training=None, mask=None):
        if not training:
            return inputs
        return super().call(inputs, training=True, mask=mask)

    def compute_output_shape(self, input_shape):
        return input_shape


def _as_augmentation(augmentation):
    """Wraps augmentation layers (a list, a `Pipeline` or one layer) in `TrainingAugmentation`."""
    if augmentation is None or isinstance(augmentation, TrainingAugmentation):
        return augmentation
    if isinstance(augmentation, layers.Pipeline):
        augmentation = list(augmentation.layers)
    elif isinstance(augmentation, layers.Layer):
        augmentation = [augmentation]
    if not isinstance(augmentation, (list, tuple)) or not all(
        isinstance(layer, layers.Layer) for layer in augmentation
    ):
        raise ValueError(
            "`augmentation` must be None, a Keras layer, a keras.layers.Pipeline or a "
            f"list of Keras layers; received augmentation={augmentation!r}."
        )
    return TrainingAugmentation(list(augmentation), name="augmentation")


def _check_int_sequence(name, values, minimum=1, allow_empty=False):
    if isinstance(values, int) and not isinstance(values, bool):
        values = (values,)
    try:
        values = tuple(values)
    except TypeError:
        raise ValueError(
            f"`{name}` must be a sequence of integers; received {name}={values!r}."
        ) from None
    if not values and not allow_empty:
        raise ValueError(f"`{name}` must hold at least one integer; received {name}={values!r}.")
    for value in values:
        if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
            raise ValueError(
                f"`{name}` must hold integers >= {minimum}; received {name}={values!r}."
            )
    return values


def _check_min_size(input_shape, min_size, reason):
    """Raises unless both fixed sides of `input_shape` are >= `min_size`."""
    for size in input_shape[:2]:
        if size is not None and size < min_size:
            raise ValueError(
                f"`input_shape` is too small for {reason}: height and width must be >= "
                f"{min_size}; received input_shape={tuple(input_shape)}."
            )


def _head_layers(num_classes, dense_units, dropout, activation="relu"):
    """Dropout before each dense layer, then class logits cast to float32."""
    head = []
    for index, units in enumerate(dense_units, start=1):
        if dropout:
            head.append(layers.Dropout(dropout, name=f"fc{index}_dropout"))
        head.append(layers.Dense(units, activation=activation, name=f"fc{index}"))
    if dropout:
        head.append(layers.Dropout(dropout, name="predictions_dropout"))
    head.append(layers.Dense(num_classes, name="predictions"))
    # float32 logits: softmax and the loss stay stable under mixed precision.
    head.append(layers.Activation("linear", dtype="float32", name="logits"))
    return head


def build_cnn_classifier(
    num_classes,
    input_shape=(32, 32, 3),
    filters=(32, 64, 128),
    convs_per_block=2,
    kernel_size=3,
    pooling="max",
    head="flatten",
    batch_norm=False,
    dense_units=(128,),
    dropout=0.5,
    augmentation=None,
    name="cnn_classifier",
):
    """Builds a Sequential CNN: conv blocks with 2x2 pooling, then a dense head.

    Layout: [augmentation] -> Rescaling(1/255) -> for each entry of `filters`,
    `convs_per_block` same-padded convolutions (+ BatchNorm) + ReLU and a 2x2
    pooling -> Flatten or global pooling -> (Dropout, Dense + ReLU) per entry
    of `dense_units` -> Dropout -> Dense(num_classes) -> float32 logits.

    Args:
        num_classes: int >= 2.
        input_shape: tuple `(height, width, 3)`; sides must be at least
            `2 ** len(filters)` (one 2x2 pooling per block).
        filters: sequence of ints, the width of each block (one pooling each).
        convs_per_block: int >= 1, convolutions per block.
        kernel_size: int, square kernel side.
        pooling: "max" or "average": the 2x2 downsampling after each block.
        head: "flatten" (Flatten then Dense: the classic layout, which fixes
            the input size), "global_average" or "global_max" (global pooling
            then Dense: fewer weights, any input size).
        batch_norm: bool, BatchNormalization after each convolution.
        dense_units: sequence of ints, hidden dense layers of the head (may be empty).
        dropout: float in [0, 1), dropout rate before each dense layer.
        augmentation: None, a Keras layer, a `keras.layers.Pipeline` (e.g. from
            `kerasvision.data.build_classification_augmenter`) or a list of
            layers, placed first and active only during training.
        name: str, model name.

    Returns:
        A `keras.Sequential` mapping raw RGB images `[batch, H, W, 3]` in
        [0, 255] to float32 logits `[batch, num_classes]`.

    Example:
        >>> model = build_cnn_classifier(4, (32, 32, 3), filters=(8, 16))
        >>> model(np.zeros((2, 32, 32, 3))).shape
        (2, 4)
    """
    num_classes = check_num_classes(num_classes)
    filters = _check_int_sequence("filters", filters)
    check_int("convs_per_block", convs_per_block, minimum=1)
    check_int("kernel_size", kernel_size, minimum=1)
    check_choice("pooling", pooling, POOLING_TYPES)
    check_choice("head", head, HEAD_TYPES)
    dense_units = _check_int_sequence("dense_units", dense_units, allow_empty=True)
    check_float("dropout", dropout, minimum=0.0, maximum=0.99)
    input_shape = check_image_shape(input_shape)
    # Each 2x2 pooling halves the sides (rounding down): the last one needs 2 pixels.
    min_size = 2 ** len(filters)
    _check_min_size(input_shape, min_size, f"{len(filters)} poolings of stride 2")
    if head == "flatten" and None in input_shape[:2]:
        raise ValueError(
            f"`head`='flatten' needs a fixed input size; received input_shape={input_shape!r}. "
            "Use head='global_average' for any input size."
        )

    stack = [keras.Input(input_shape, name="images")]
    augmentation = _as_augmentation(augmentation)
    if augmentation is not None:
        stack.append(augmentation)
    stack.append(layers.Rescaling(1.0 / 255, name="rescaling"))
    for block, width in enumerate(filters, start=1):
        for index in range(1, convs_per_block + 1):
            stack.append(
                layers.Conv2D(
                    width,
                    kernel_size,
                    padding="same",
                    use_bias=not batch_norm,  # BatchNorm's offset replaces the bias
                    kernel_initializer="he_normal",
                    name=f"block{block}_conv{index}",
                )
            )
            if batch_norm:
                stack.append(kernels.batch_normalization(name=f"block{block}_bn{index}"))
            stack.append(layers.Activation("relu", name=f"block{block}_relu{index}"))
        stack.append(_POOLING_LAYERS[pooling](2, name=f"block{block}_pool"))
    if head == "flatten":
        stack.append(layers.Flatten(name="flatten"))
    else:
        stack.append(_GLOBAL_POOLING_LAYERS[head](name="global_pool"))
    stack += _head_layers(num_classes, dense_units, dropout)
    return keras.Sequential(stack, name=name)


# LeNet-5's valid 5x5 convolutions and two 2x2 subsamplings reduce 32 pixels
# to the 5x5 map that C5 covers exactly: 32 is its smallest input.
LENET5_MIN_SIZE = 32


def build_lenet5(num_classes=10, input_shape=(32, 32, 3), name="lenet5"):
    """Builds LeNet-5 (LeCun et al. 1998) with the Sequential API.

    Layout (sizes for a 32x32 input): C1 6 5x5 convolutions (28x28x6) -> S2
    2x2 average pooling (14x14x6) -> C3 16 5x5 convolutions (10x10x16) -> S4
    2x2 average pooling (5x5x16) -> C5 120 5x5 convolutions (1x1x120) ->
    Flatten -> F6 Dense(84) -> Dense(num_classes), tanh activations. With 10
    classes it has 62,006 parameters on RGB input (61,706 on the paper's
    grayscale). Departures from the paper: C3 connects
    every S2 map (the paper's sparse connection table saved computation in
    1998), S2/S4 are plain averages (no trainable coefficient), and the output
    is a dense layer of logits for softmax cross-entropy, not RBF units.

    Args:
        num_classes: int >= 2.
        input_shape: tuple `(height, width, 3)`, sides >= 32 (the paper pads
            MNIST's 28x28 digits to 32x32).
        name: str, model name.

    Returns:
        A `keras.Sequential` mapping raw RGB images `[batch, H, W, 3]` in
        [0, 255] to float32 logits `[batch, num_classes]`.

    Example:
        >>> build_lenet5(10).count_params()
        62006
    """
    num_classes = check_num_classes(num_classes)
    input_shape = check_image_shape(input_shape)
    if None in input_shape[:2]:
        raise ValueError(f"LeNet-5 needs a fixed input size; received input_shape={input_shape!r}.")
    _check_min_size(input_shape, LENET5_MIN_SIZE, "LeNet-5's valid 5x5 convolutions and 2 poolings")
    return keras.Sequential(
        [
            keras.Input(input_shape, name="images"),
            layers.Rescaling(1.0 / 255, name="rescaling"),
            layers.Conv2D(6, 5, activation="tanh", name="c1"),
            layers.AveragePooling2D(2, name="s2"),
            layers.Conv2D(16, 5, activation="tanh", name="c3"),
            layers.AveragePooling2D(2, name="s4"),
            layers.Conv2D(120, 5, activation="tanh", name="c5"),
            layers.Flatten(name="flatten"),
            layers.Dense(84, activation="tanh", name="f6"),
            layers.Dense(num_classes, name="predictions"),
            layers.Activation("linear", dtype="float32", name="logits"),
        ],
        name=name,
    )


def check_finetune_blocks(backbone, finetune_blocks):
    """Validates the number of backbone stages to fine-tune.

    Args:
        backbone: registered backbone name.
        finetune_blocks: None (all stages) or an int from 1 to the number of stages.

    Returns:
        The number of stages, as an int.
    """
    stages = get_backbone_spec(backbone).blocks
    if finetune_blocks is None:
        return len(stages)
    if (
        isinstance(finetune_blocks, bool)
        or not isinstance(finetune_blocks, int)
        or not 1 <= finetune_blocks <= len(stages)
    ):
        raise ValueError(
            f"`finetune_blocks` must be an integer from 1 to {len(stages)}: {backbone} has "
            f"{len(stages)} stages ({', '.join(stages)}); received finetune_blocks={finetune_blocks!r}."
        )
    return finetune_blocks


def build_transfer_classifier(
    backbone,
    num_classes,
    input_shape=(224, 224, 3),
    weights="auto",
    mode="feature_extraction",
    finetune_blocks=None,
    head="global_average",
    dense_units=(),
    dropout=0.2,
    name=None,
):
    """Builds a classifier from a registered backbone and a new head.

    The backbone's stride-32 features (`"P5"`) go through global pooling (or
    Flatten), dropout and dense layers to class logits. The model is returned
    ready for one of the two phases of transfer learning (Yosinski et al. 2014):

    - `mode="feature_extraction"`: the backbone is frozen; only the head trains.
    - `mode="fine_tuning"`: the last `finetune_blocks` stages of the backbone
      train too (compile with a lower learning rate, e.g. 1e-5 to 1e-4).

    `kerasvision.training.fit_two_phase` runs both phases in order. The
    BatchNorm layers of a pretrained backbone stay frozen, hence in inference
    mode, while fine-tuning (`freeze_batch_norm`): they keep their ImageNet
    statistics, which small batches of new data would overwrite. A randomly
    initialised backbone (`weights=None`) lets BatchNorm learn.

    Args:
        backbone: str, "vgg16" or "resnet50" (`kerasvision.backbones.BACKBONES`).
        num_classes: int >= 2.
        input_shape: tuple `(height, width, 3)`, sides >= 32.
        weights: "auto", "imagenet", None or a weights file (see
            `kerasvision.backbones`).
        mode: "feature_extraction" or "fine_tuning".
        finetune_blocks: int from 1 to the backbone's number of stages (5),
            stages trainable in fine-tuning mode; None: all. Checked in both modes.
        head: "global_average", "global_max" or "flatten" (needs a fixed input size).
        dense_units: sequence of ints, hidden dense layers of the head.
        dropout: float in [0, 1), dropout before each dense layer.
        name: str, model name (default `f"{backbone}_classifier"`).

    Returns:
        A functional `keras.Model` mapping raw RGB images `[batch, H, W, 3]` in
        [0, 255] to float32 logits `[batch, num_classes]`; the backbone is the
        sub-model named "backbone".

    Example:
        >>> model = build_transfer_classifier("vgg16", 4, (32, 32, 3), weights=None)
        >>> model(np.zeros((2, 32, 32, 3))).shape
        (2, 4)
    """
    get_backbone_spec(backbone)
    num_classes = check_num_classes(num_classes)
    check_choice("mode", mode, TRANSFER_MODES)
    finetune_blocks = check_finetune_blocks(backbone, finetune_blocks)
    check_choice("head", head, HEAD_TYPES)
    dense_units = _check_int_sequence("dense_units", dense_units, allow_empty=True)
    check_float("dropout", dropout, minimum=0.0, maximum=0.99)
    input_shape = check_image_shape(input_shape, min_size=get_backbone_spec(backbone).min_size)
    if head == "flatten" and None in input_shape[:2]:
        raise ValueError(
            f"`head`='flatten' needs a fixed input size; received input_shape={input_shape!r}."
        )
    weights = resolve_weights(backbone, weights)

    images = keras.Input(input_shape, name="images")
    backbone_model = build_backbone(backbone, input_shape, weights, name="backbone")
    features = backbone_model(images)["P5"]
    x = layers.Flatten(name="flatten")(features) if head == "flatten" else (
        _GLOBAL_POOLING_LAYERS[head](name="global_pool")(features)
    )
    for layer in _head_layers(num_classes, dense_units, dropout):
        x = layer(x)
    model = keras.Model(images, x, name=name or f"{backbone}_classifier")
    # BatchNorm of random weights must learn its statistics: frozen, it would
    # normalise with a mean of 0 and a variance of 1 forever.
    set_trainable_blocks(backbone_model, backbone, finetune_blocks if mode == "fine_tuning" else 0,
                         keep_batch_norm_frozen=weights is not None)
    return model


__all__ = [
    "HEAD_TYPES",
    "LENET5_MIN_SIZE",
    "POOLING_TYPES",
    "TRANSFER_MODES",
    "TrainingAugmentation",
    "build_cnn_classifier",
    "build_lenet5",
    "build_transfer_classifier",
    "check_finetune_blocks",
    "freeze_batch_norm",
]


# ----------------------------------------------------------------------------
# Making pretrained weights: a trained backbone saved for `weights=<path>`.
# ----------------------------------------------------------------------------


def save_backbone_weights(model, backbone, path):
    """Saves the backbone of a classifier as a file that `weights=<path>` loads.

    Writes the weights of the headless `keras.applications` network inside
    the model (the sub-model `f"{backbone}_features"` of the sub-model
    "backbone", as `build_transfer_classifier` and `build_backbone` name
    them): the format `build_backbone(backbone, weights=path)` and
    `build_transfer_classifier(backbone, ..., weights=path)` read, as they
    read a headless ImageNet file. The head is not saved: a new task gets a
    new head.

    Args:
        model: a model holding a `build_backbone` sub-model named "backbone"
            (`build_transfer_classifier`, `build_fcn`, `build_unet`).
        backbone: str, its registered name (`kerasvision.backbones.BACKBONES`).
        path: str, a file name ending in ".weights.h5".

    Returns:
        `path`.

    Example:
        >>> source = build_transfer_classifier("vgg16", 4, (32, 32, 3), weights=None)
        >>> path = save_backbone_weights(source, "vgg16", "/tmp/source.weights.h5")
        >>> target = build_transfer_classifier("vgg16", 10, (32, 32, 3), weights=path)
    """
    get_backbone_spec(backbone)
    if not str(path).endswith(".weights.h5"):
        raise ValueError(f"`path` must end in '.weights.h5'; received path={path!r}.")
    try:
        features = model.get_layer("backbone").get_layer(f"{backbone}_features")
    except ValueError:
        raise ValueError(
            f"`model` must hold a sub-model 'backbone' built by build_backbone({backbone!r}, ...) "
            f"(with its layer '{backbone}_features'); received model {model.name!r}."
        ) from None
    # Keras keys a `.weights.h5` file by class name and position, and
    # `build_backbone` switches BatchNorm to `FusedBatchNormalization`: saved
    # as they are, those layers would not load into the plain network that
    # `weights=<path>` builds. A plain copy of the network is saved instead.
    plain = get_backbone_spec(backbone).constructor(
        include_top=False, weights=None, input_shape=features.input_shape[1:])
    sources = [layer for layer in features.layers if layer.weights]
    targets = [layer for layer in plain.layers if layer.weights]
    for source, target in zip(sources, targets, strict=True):  # same constructor: same order
        target.set_weights(source.get_weights())
    plain.save_weights(path)
    return path


def set_batch_norm_momentum(model, momentum):
    """Sets the moving-statistics momentum of every BatchNormalization layer of `model`.

    keras.applications builds BatchNorm with momentum 0.99: its moving mean
    and variance, which inference uses, average over the last ~100 steps.
    A network trained from random weights for a few hundred steps changes
    faster than that, so its moving statistics lag its weights and its
    validation accuracy falls far below its training accuracy; 0.9 (~10
    steps) keeps up. Call it before `compile` (the momentum is read when the
    train step is traced).

    Args:
        model: a `keras.Model` or layer; nested models included.
        momentum: float in [0, 1).

    Returns:
        int, the number of layers changed.
    """
    check_float("momentum", momentum, minimum=0.0, maximum=0.999)
    changed = 0
    for layer in getattr(model, "layers", ()):
        if isinstance(layer, layers.BatchNormalization):
            layer.momentum = momentum
            changed += 1
        else:
            changed += set_batch_norm_momentum(layer, momentum)
    return changed


__all__ += ["save_backbone_weights", "set_batch_norm_momentum"]
