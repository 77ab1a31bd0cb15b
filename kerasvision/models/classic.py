"""The classic ImageNet CNNs, built from the package's own blocks.

`build_classic(name, num_classes, input_shape)` builds any of `CLASSIC_MODELS`
from the `apply_*` blocks of `kerasvision.layers`, so that each architecture
can be read, varied and trained from scratch:

| name | paper | blocks | parameters | G MACs |
|---|---|---|---|---|
| lenet5 | LeCun et al. 1998 | `build_lenet5` | 146,156 (32x32) | 0.00075 |
| alexnet | Krizhevsky et al. 2012 | 5 convolutions + 3 dense | 62,378,344 | 1.14 |
| vgg16 | Simonyan and Zisserman 2015 | `apply_vgg_block` | 138,357,544 | 15.49 |
| vgg19 | Simonyan and Zisserman 2015 | `apply_vgg_block` | 143,667,240 | 19.65 |
| resnet18 | He et al. 2016 | `apply_residual_block` (basic) | 11,699,112 | 1.82 |
| resnet34 | He et al. 2016 | `apply_residual_block` (basic) | 21,814,696 | 3.67 |
| resnet50 | He et al. 2016 | `apply_residual_block` (bottleneck) | 25,636,712 | 3.87 |
| resnet101 | He et al. 2016 | `apply_residual_block` (bottleneck) | 44,707,176 | 7.59 |
| resnet152 | He et al. 2016 | `apply_residual_block` (bottleneck) | 60,419,944 | 11.31 |
| googlenet | Szegedy et al. 2015 | `apply_inception_block` | 6,998,552 (+ 6,379,728 aux) | 1.60 |

Parameters with 1000 classes at 224x224 (Keras counts BatchNorm's moving
statistics); multiply-accumulates per image of the inference network, from
`kerasvision.flops.summary` (one MAC is two FLOPs).

VGG16/19 and ResNet50/101/152 have exactly the layers, names and parameter
counts of their `keras.applications` namesakes, and compute the same function:
`load_applications_weights` copies a keras.applications model's weights (or
an ImageNet weights file, through it) into them. ResNet-18/34 follow the paper
and torchvision (no biases before BatchNorm): their trainable parameters
(11,689,512 and 21,797,672) are torchvision's counts; Keras also counts the
BatchNorm moving means and variances (9,600 and 17,024).

Every model maps raw RGB images `[batch, H, W, 3]` in [0, 255] to float32
logits `[batch, num_classes]`; an `ImagePreprocessing` layer first converts
the pixels (`preprocessing="auto"`: keras.applications' caffe convention for
the models with ImageNet files, [0, 1] for the others). GoogLeNet with its
auxiliary classifiers is an `AuxiliaryHeadsClassifier`: trained with the
auxiliary losses, its `call` and exports give the main head only.

Example:
    >>> model = build_classic("resnet18", num_classes=4, input_shape=(32, 32, 3))
    >>> model(np.zeros((2, 32, 32, 3))).shape
    (2, 4)
"""

import copy

import keras
from keras import layers

from kerasvision.layers import (
    RESNET_BN_EPSILON,
    ImagePreprocessing,
    apply_conv_bn_relu,
    apply_inception_block,
    apply_residual_block,
    apply_vgg_block,
)
from kerasvision.models.classifier import LENET5_MIN_SIZE, build_lenet5
from kerasvision.validation import (
    check_choice,
    check_float,
    check_image_shape,
    check_int,
    check_num_classes,
)

CLASSIC_MODELS = ("lenet5", "alexnet", "vgg16", "vgg19", "resnet18", "resnet34", "resnet50",
                  "resnet101", "resnet152", "googlenet")

# keras.applications constructor of each model it also has.
APPLICATIONS = {"vgg16": "VGG16", "vgg19": "VGG19", "resnet50": "ResNet50",
                "resnet101": "ResNet101", "resnet152": "ResNet152"}

# Convolutions per VGG block (configurations D and E of the paper's table 1).
VGG_CONVS = {"vgg16": (2, 2, 3, 3, 3), "vgg19": (2, 2, 4, 4, 4)}
VGG_FILTERS = (64, 128, 256, 512, 512)

# Blocks per ResNet stage (the paper's table 1), and whether they are bottlenecks.
RESNET_BLOCKS = {
    "resnet18": ((2, 2, 2, 2), False),
    "resnet34": ((3, 4, 6, 3), False),
    "resnet50": ((3, 4, 6, 3), True),
    "resnet101": ((3, 4, 23, 3), True),
    "resnet152": ((3, 8, 36, 3), True),
}
RESNET_FILTERS = (64, 128, 256, 512)

# GoogLeNet's Inception modules (Szegedy et al. 2015, table 1): #1x1, #3x3
# reduce, #3x3, #5x5 reduce, #5x5, pool proj; "pool" marks a 3x3/2 max pooling.
GOOGLENET_LAYOUT = (
    ("3a", (64, 96, 128, 16, 32, 32)),
    ("3b", (128, 128, 192, 32, 96, 64)),
    "pool3",
    ("4a", (192, 96, 208, 16, 48, 64)),
    ("4b", (160, 112, 224, 24, 64, 64)),
    ("4c", (128, 128, 256, 24, 64, 64)),
    ("4d", (112, 144, 288, 32, 64, 64)),
    ("4e", (256, 160, 320, 32, 128, 128)),
    "pool4",
    ("5a", (256, 160, 320, 32, 128, 128)),
    ("5b", (384, 192, 384, 48, 128, 128)),
)
# The auxiliary classifiers sit on the outputs of 4a and 4d (section 5).
GOOGLENET_AUX_TAPS = ("4a", "4d")
GOOGLENET_AUX_LOSS_WEIGHT = 0.3

# The papers' dropout rates (AlexNet and VGG: 50% after each hidden dense
# layer; GoogLeNet: 40% before the classifier).
DEFAULT_DROPOUT = {"alexnet": 0.5, "vgg16": 0.5, "vgg19": 0.5, "googlenet": 0.4}

DEFAULT_INPUT_SHAPES = {name: (224, 224, 3) for name in CLASSIC_MODELS}
DEFAULT_INPUT_SHAPES["lenet5"] = (32, 32, 3)

PREPROCESSING_MODES = ("auto", *ImagePreprocessing.MODES, None)


def smallest_input_size(name, aux_classifiers=True, multiple_of=1):
    """The smallest square input side `name` accepts (rounded up to `multiple_of`).

    - lenet5: 32 (its valid 5x5 convolutions);
    - alexnet: 63 (the 11x11/4 convolution and three 3x3/2 poolings must
      leave a map of at least 1x1);
    - VGG, ResNet: 32 (five stride-2 stages);
    - googlenet: 65 with its auxiliary classifiers (their valid 5x5 pooling
      needs the stride-16 map of 4a to be at least 5x5), else 32.

    Args:
        name: str, one of `CLASSIC_MODELS`.
        aux_classifiers: bool, GoogLeNet's auxiliary heads are built.
        multiple_of: int >= 1, e.g. 32 for the smallest training size of
            the shapes data (alexnet: 64, googlenet: 96, the others: 32).

    Returns:
        int.
    """
    check_choice("name", name, CLASSIC_MODELS)
    multiple_of = check_int("multiple_of", multiple_of, minimum=1)
    if name == "alexnet":
        size = 63
    elif name == "googlenet" and aux_classifiers:
        size = 65
    else:
        size = LENET5_MIN_SIZE if name == "lenet5" else 32
    return -(-size // multiple_of) * multiple_of


def _input_shape(name, input_shape, min_size, why):
    input_shape = DEFAULT_INPUT_SHAPES[name] if input_shape is None else input_shape
    input_shape = check_image_shape(input_shape)
    if None in input_shape[:2]:
        raise ValueError(f"`input_shape` must have a fixed height and width for {name} ({why}); "
                         f"received input_shape={input_shape!r}.")
    if min(input_shape[:2]) < min_size:
        raise ValueError(f"`input_shape` is too small for {name}: its sides must be >= {min_size} "
                         f"({why}); received input_shape={input_shape!r}.")
    return input_shape


def _preprocessing(name, preprocessing):
    check_choice("preprocessing", preprocessing, PREPROCESSING_MODES)
    if preprocessing == "auto":
        # ImageNet files of keras.applications expect caffe-style input.
        return "caffe" if name in APPLICATIONS else "unit"
    return preprocessing


def _stem(name, input_shape, preprocessing):
    """The input and its preprocessing (None: raw pixels go in unchanged)."""
    images = keras.Input(input_shape, name="images")
    mode = _preprocessing(name, preprocessing)
    x = images if mode is None else ImagePreprocessing(mode, name="preprocessing")(images)
    return images, x


def _dropout(name, dropout):
    rate = DEFAULT_DROPOUT.get(name, 0.0) if dropout is None else dropout
    return check_float("dropout", rate, minimum=0.0, maximum=0.99)


def _logits(x, num_classes, prefix=""):
    """Dense class scores, then a float32 linear activation (safe under mixed precision)."""
    x = layers.Dense(num_classes, name=f"{prefix}predictions")(x)
    return layers.Activation("linear", dtype="float32", name=f"{prefix}logits")(x)


def build_alexnet(num_classes=1000, input_shape=(224, 224, 3), preprocessing="auto", dropout=0.5,
                  name="alexnet"):
    """Builds AlexNet (Krizhevsky, Sutskever and Hinton 2012) as one stream.

    The usual single-stream simplification of the paper's two-GPU network:
    the paper's widths (96, 256, 384, 384, 256 filters; 4096, 4096 dense
    units), but every convolution sees all the previous layer's maps (the
    paper's conv2, conv4 and conv5 read only their own GPU's half) and the
    local response normalisation is left out (later work found it adds
    little). Layout, sizes at 224x224: 2-pixel zero padding and conv1 96
    11x11/4 (55x55) -> 3x3/2 overlapping max pooling (27) -> conv2 256 5x5
    (27) -> pool (13) -> conv3 384, conv4 384, conv5 256 3x3 (13) -> pool (6)
    -> Flatten (9,216) -> fc6 4096 -> fc7 4096 -> classes, ReLU everywhere,
    dropout after fc6 and fc7. 62,378,344 parameters with 1000 classes at 224
    (the paper's "60 million").

    Args:
        num_classes: int >= 2.
        input_shape: `(height, width, 3)`, fixed sides >= 63 (fc6's input
            size follows the input size).
        preprocessing: "auto" ([0, 1]), a mode of `ImagePreprocessing`, or None.
        dropout: float in [0, 1), after fc6 and fc7.
        name: str, model name.

    Returns:
        A functional `keras.Model`: raw RGB `[batch, H, W, 3]` -> float32
        logits `[batch, num_classes]`.

    Example:
        >>> build_alexnet(1000).count_params()
        62378344
    """
    num_classes = check_num_classes(num_classes)
    input_shape = _input_shape("alexnet", input_shape, 63, "an 11x11/4 convolution and 3 poolings")
    images, x = _stem("alexnet", input_shape, preprocessing)
    dropout = check_float("dropout", dropout, minimum=0.0, maximum=0.99)
    # 2 pixels of padding turn 224 into the paper's 55x55 first maps.
    x = layers.ZeroPadding2D(2, name="conv1_pad")(x)
    x = layers.Conv2D(96, 11, strides=4, activation="relu", name="conv1")(x)
    x = layers.MaxPooling2D(3, strides=2, name="pool1")(x)
    x = layers.Conv2D(256, 5, padding="same", activation="relu", name="conv2")(x)
    x = layers.MaxPooling2D(3, strides=2, name="pool2")(x)
    x = layers.Conv2D(384, 3, padding="same", activation="relu", name="conv3")(x)
    x = layers.Conv2D(384, 3, padding="same", activation="relu", name="conv4")(x)
    x = layers.Conv2D(256, 3, padding="same", activation="relu", name="conv5")(x)
    x = layers.MaxPooling2D(3, strides=2, name="pool5")(x)
    x = layers.Flatten(name="flatten")(x)
    for index in (6, 7):
        x = layers.Dense(4096, activation="relu", name=f"fc{index}")(x)
        x = layers.Dropout(dropout, name=f"fc{index}_dropout")(x)
    return keras.Model(images, _logits(x, num_classes), name=name)


def build_vgg(depth=16, num_classes=1000, input_shape=(224, 224, 3), include_top=True,
              preprocessing="auto", batch_norm=False, dropout=0.5, name=None):
    """Builds VGG16 or VGG19 (Simonyan and Zisserman 2015) from `apply_vgg_block`.

    Five blocks of 3x3 convolutions (64, 128, 256, 512, 512 filters; 2, 2,
    3, 3, 3 convolutions for VGG16, 2, 2, 4, 4, 4 for VGG19), each ending in
    2x2 max pooling, then Flatten -> fc1 4096 -> fc2 4096 -> classes. With
    1000 classes at 224x224 it has keras.applications' layer names and
    parameter counts (138,357,544 and 143,667,240), and computes the same
    function (see `load_applications_weights`). Dropout (0.5, as the paper
    trains) follows fc1 and fc2; it holds no weights and is off in inference.

    Args:
        depth: 16 or 19.
        num_classes: int >= 2.
        input_shape: `(height, width, 3)`, sides >= 32; fixed with the top
            (fc1's input size follows the input size).
        include_top: bool; False returns the last block's pooled map
            `[batch, H/32, W/32, 512]` (keras.applications' `include_top=False`).
        preprocessing: "auto" (caffe, as keras.applications' ImageNet files
            expect), a mode of `ImagePreprocessing`, or None.
        batch_norm: bool, BatchNormalization after each convolution (VGG-BN;
            not in the paper, and then not keras.applications' layout).
        dropout: float in [0, 1), after fc1 and fc2.
        name: str, model name (default `f"vgg{depth}"`).

    Returns:
        A functional `keras.Model`: raw RGB `[batch, H, W, 3]` -> float32
        logits `[batch, num_classes]` (or the feature map).

    Example:
        >>> build_vgg(16).count_params()
        138357544
    """
    check_choice("depth", depth, (16, 19))
    arch = f"vgg{depth}"
    num_classes = check_num_classes(num_classes)
    input_shape = _input_shape(arch, input_shape, 32, "five 2x2 poolings")
    dropout = check_float("dropout", dropout, minimum=0.0, maximum=0.99)
    images, x = _stem(arch, input_shape, preprocessing)
    for block, (filters, convs) in enumerate(zip(VGG_FILTERS, VGG_CONVS[arch]), start=1):
        x = apply_vgg_block(x, filters, convs, name=f"block{block}", batch_norm=batch_norm)
    if include_top:
        x = layers.Flatten(name="flatten")(x)
        for fc in ("fc1", "fc2"):
            x = layers.Dense(4096, activation="relu", name=fc)(x)
            x = layers.Dropout(dropout, name=f"{fc}_dropout")(x)
        x = _logits(x, num_classes)
    return keras.Model(images, x, name=name or arch)


def build_resnet(depth=50, num_classes=1000, input_shape=(224, 224, 3), include_top=True,
                 preprocessing="auto", name=None):
    """Builds ResNet-18/34/50/101/152 (He et al. 2016) from `apply_residual_block`.

    Stem: 7x7/2 convolution (64) with BN and ReLU, 3x3/2 max pooling, both
    after explicit zero padding (3 and 1 pixels, as keras.applications). Then
    four stages of 64, 128, 256, 512-wide blocks (the paper's table 1:
    basic blocks 2-2-2-2 for ResNet-18, 3-4-6-3 for ResNet-34; bottlenecks
    3-4-6-3, 3-4-23-3 and 3-8-36-3 for ResNet-50/101/152), the first block of
    stages 3 to 5 at stride 2; global average pooling and the classes.

    The bottleneck models are keras.applications' ResNet50/101/152 ("v1":
    stride on the first 1x1, biases on the convolutions, BN epsilon 1.001e-5),
    with the same layer names and parameter counts (25,636,712, 44,707,176,
    60,419,944 at 1000 classes), so their weights load
    (`load_applications_weights`). BatchNorm updates its moving statistics
    with momentum 0.9 (`kerasvision.layers.CLASSIC_BN_MOMENTUM`, Torch's and
    torchvision's) rather than Keras' 0.99, which lags when training from
    scratch; it is not a weight, so loaded weights compute the same. ResNet-18/34, which keras.applications
    lacks, have no convolution biases, as the paper and torchvision: 11,689,512
    and 21,797,672 trainable parameters, torchvision's counts (11,699,112 and
    21,814,696 with the BatchNorm moving statistics, which Keras counts).

    Args:
        depth: 18, 34, 50, 101 or 152.
        num_classes: int >= 2.
        input_shape: `(height, width, 3)`, sides >= 32 (total stride 32).
        include_top: bool; False returns the stage-5 map `[batch, H/32, W/32, C]`.
        preprocessing: "auto" (caffe for ResNet50/101/152, as their ImageNet
            files expect; [0, 1] for ResNet-18/34), a mode of
            `ImagePreprocessing`, or None.
        name: str, model name (default `f"resnet{depth}"`).

    Returns:
        A functional `keras.Model`: raw RGB `[batch, H, W, 3]` -> float32
        logits `[batch, num_classes]` (or the feature map).

    Example:
        >>> build_resnet(50).count_params()
        25636712
    """
    check_choice("depth", depth, (18, 34, 50, 101, 152))
    arch = f"resnet{depth}"
    num_classes = check_num_classes(num_classes)
    input_shape = _input_shape(arch, input_shape, 32, "a total stride of 32")
    blocks, bottleneck = RESNET_BLOCKS[arch]
    use_bias = bottleneck  # keras.applications' bottleneck ResNets keep conv biases
    images, x = _stem(arch, input_shape, preprocessing)
    x = layers.ZeroPadding2D(3, name="conv1_pad")(x)
    x = apply_conv_bn_relu(x, 64, 7, "conv1_conv", strides=2, padding="valid", batch_norm=True,
                           use_bias=use_bias, epsilon=RESNET_BN_EPSILON, bn_name="conv1_bn",
                           relu_name="conv1_relu")
    x = layers.ZeroPadding2D(1, name="pool1_pad")(x)
    x = layers.MaxPooling2D(3, strides=2, name="pool1_pool")(x)
    for stage, (filters, count) in enumerate(zip(RESNET_FILTERS, blocks), start=2):
        for block in range(1, count + 1):
            stride = 2 if stage > 2 and block == 1 else 1
            x = apply_residual_block(x, filters, stride=stride, bottleneck=bottleneck,
                                     use_bias=use_bias, name=f"conv{stage}_block{block}")
    if include_top:
        x = layers.GlobalAveragePooling2D(name="avg_pool")(x)
        x = _logits(x, num_classes)
    return keras.Model(images, x, name=name or arch)


def _googlenet_aux_head(x, num_classes, prefix):
    """An auxiliary classifier of GoogLeNet (Szegedy et al. 2015, section 5).

    5x5/3 average pooling (4x4 at 224x224), a 1x1 convolution of 128 with
    ReLU, a dense layer of 1024 with ReLU, 70% dropout, the classes.
    """
    x = layers.AveragePooling2D(5, strides=3, name=f"{prefix}_pool")(x)
    x = layers.Conv2D(128, 1, activation="relu", name=f"{prefix}_conv")(x)
    x = layers.Flatten(name=f"{prefix}_flatten")(x)
    x = layers.Dense(1024, activation="relu", name=f"{prefix}_fc")(x)
    x = layers.Dropout(0.7, name=f"{prefix}_dropout")(x)
    return _logits(x, num_classes, prefix=f"{prefix}_")


def build_googlenet(num_classes=1000, input_shape=(224, 224, 3), aux_classifiers=True,
                    aux_loss_weight=GOOGLENET_AUX_LOSS_WEIGHT, preprocessing="auto",
                    batch_norm=False, dropout=0.4, name="googlenet"):
    """Builds GoogLeNet (Szegedy et al., "Going Deeper with Convolutions", CVPR 2015).

    The paper's table 1 from `apply_inception_block`: 7x7/2 convolution (64),
    3x3/2 max pooling, 1x1 (64) and 3x3 (192) convolutions, 3x3/2 pooling,
    Inception 3a, 3b, pooling, 4a to 4e, pooling, 5a, 5b, global average
    pooling (the paper's 7x7 average pooling at 224), 40% dropout and the
    classes. Poolings are "same"-padded, so 224 gives the paper's 112, 56, 28,
    14 and 7-pixel maps. The local response normalisations of the stem are
    left out (`batch_norm=True` puts BatchNormalization after every
    convolution instead, as Inception v2 did).

    Parameters at 1000 classes: 6,998,552 in the main network (biases
    included) against the paper's ~6.8 million (the sum of table 1's
    "params" column, 6,797.7K; the table rounds and counts conv1 as 2.7K
    where 7x7x3x64 weights are 9.4K), plus 6,379,728 in the two auxiliary
    heads (3,188,840 on 4a and 3,190,888 on 4d), which exist only for
    training. `kerasvision.flops` counts 1.60 G multiply-accumulates per
    224x224 image in the main network (the paper: "1.5 billion multiply-adds").

    Auxiliary classifiers (section 5): on the outputs of 4a and 4d, each
    adds its cross-entropy to the training loss with weight 0.3, to push
    gradient into the middle of the network; at inference they are
    discarded. With `aux_classifiers=True` the builder therefore returns an
    `AuxiliaryHeadsClassifier`: `fit` trains on the main loss + 0.3 x each
    auxiliary loss with plain `(images, labels)` batches, while `call`,
    `predict`, `evaluate` and exports use the main head only (its
    `inference_network`).

    Args:
        num_classes: int >= 2.
        input_shape: `(height, width, 3)`, fixed sides >= 65 with the
            auxiliary heads (their 5x5 pooling of the stride-16 map), >= 32 without.
        aux_classifiers: bool, build the two auxiliary heads.
        aux_loss_weight: float >= 0, weight of each auxiliary loss (0.3).
        preprocessing: "auto" ([0, 1]), a mode of `ImagePreprocessing`, or None.
        batch_norm: bool, BatchNormalization after every convolution (not in the paper).
        dropout: float in [0, 1), before the main classifier (0.4).
        name: str, model name.

    Returns:
        An `AuxiliaryHeadsClassifier` (with the auxiliary heads) or a
        functional `keras.Model`; both map raw RGB `[batch, H, W, 3]` to
        float32 logits `[batch, num_classes]` in inference.

    Example:
        >>> model = build_googlenet(4, (96, 96, 3))
        >>> model.network.output_names
        ['logits', 'aux1_logits', 'aux2_logits']
    """
    num_classes = check_num_classes(num_classes)
    min_size = smallest_input_size("googlenet", aux_classifiers)
    why = ("the auxiliary heads' 5x5 pooling of the stride-16 map" if aux_classifiers
           else "a total stride of 32")
    input_shape = _input_shape("googlenet", input_shape, min_size, why)
    dropout = check_float("dropout", dropout, minimum=0.0, maximum=0.99)
    aux_loss_weight = check_float("aux_loss_weight", aux_loss_weight, minimum=0.0)
    unit = {"batch_norm": batch_norm}
    images, x = _stem("googlenet", input_shape, preprocessing)
    x = apply_conv_bn_relu(x, 64, 7, "conv1", strides=2, **unit)
    x = layers.MaxPooling2D(3, strides=2, padding="same", name="pool1")(x)
    x = apply_conv_bn_relu(x, 64, 1, "conv2_reduce", **unit)
    x = apply_conv_bn_relu(x, 192, 3, "conv2", **unit)
    x = layers.MaxPooling2D(3, strides=2, padding="same", name="pool2")(x)
    aux_outputs = []
    for entry in GOOGLENET_LAYOUT:
        if isinstance(entry, str):
            x = layers.MaxPooling2D(3, strides=2, padding="same", name=entry)(x)
            continue
        module, widths = entry
        x = apply_inception_block(x, *widths, name=f"inception_{module}", batch_norm=batch_norm)
        if aux_classifiers and module in GOOGLENET_AUX_TAPS:
            prefix = f"aux{len(aux_outputs) + 1}"
            aux_outputs.append(_googlenet_aux_head(x, num_classes, prefix))
    x = layers.GlobalAveragePooling2D(name="avg_pool")(x)
    x = layers.Dropout(dropout, name="dropout")(x)
    logits = _logits(x, num_classes)
    if not aux_classifiers:
        return keras.Model(images, logits, name=name)
    network = keras.Model(images, [logits, *aux_outputs], name=f"{name}_with_aux")
    return AuxiliaryHeadsClassifier(network, aux_loss_weight=aux_loss_weight, name=name)


@keras.saving.register_keras_serializable(package="kerasvision")
class AuxiliaryHeadsClassifier(keras.Model):
    """A classifier trained with auxiliary heads that inference never uses (GoogLeNet).

    Wraps a functional `network` whose first output is the main logits and
    whose other outputs are auxiliary logits of the same classes. Szegedy et
    al. 2015 (section 5) add each auxiliary head's loss to the main loss with
    weight 0.3 during training and discard the heads at inference time.

    - `fit` takes ordinary `(images, labels)` batches: `call(images,
      training=True)` returns every head, and `compute_loss` adds the
      compiled loss of the main head (plus any regularisation) and
      `aux_loss_weight` times the compiled loss of each auxiliary head.
      Metrics (accuracy...) and the logged `loss` are those of training:
      metrics on the main head, `loss` the weighted total.
    - `call(images)` (inference: `predict`, `evaluate`, exports) returns the
      main head's logits only, through `inference_network`, which shares the
      network's weights and skips the auxiliary branches.

    Compile with a single loss object (e.g.
    `SparseCategoricalCrossentropy(from_logits=True)`), as for any classifier;
    it is applied to every head.

    Args:
        network: functional `keras.Model`, images -> `[logits, aux_logits...]`.
        aux_loss_weight: float >= 0, weight of each auxiliary head's loss.
        **kwargs: `keras.Model` arguments (`name`).

    Example:
        >>> model = build_googlenet(4, (96, 96, 3))
        >>> model.compile("adam", keras.losses.SparseCategoricalCrossentropy(from_logits=True))
        >>> model.fit(images, labels)           # main + 0.3 x (aux1 + aux2)
        >>> model.predict(images).shape          # main head only
        (N, 4)
    """

    def __init__(self, network, aux_loss_weight=GOOGLENET_AUX_LOSS_WEIGHT, **kwargs):
        super().__init__(**kwargs)
        if len(network.outputs) < 2:
            raise ValueError(
                "`network` must return the main logits and at least one auxiliary head; "
                f"received a network with {len(network.outputs)} output(s)."
            )
        self.network = network
        self.aux_loss_weight = check_float("aux_loss_weight", aux_loss_weight, minimum=0.0)
        # The same layers up to the main logits: inference never computes the aux heads.
        self.inference_network = keras.Model(network.input, network.outputs[0],
                                             name=f"{self.name}_inference")
        # Every variable lives in `network`, built already: nothing is left to build.
        self.built = True

    def call(self, images, training=False):
        if training:
            return tuple(self.network(images, training=True))
        return self.inference_network(images, training=False)

    def compute_loss(self, x=None, y=None, y_pred=None, sample_weight=None, training=True):
        if not isinstance(y_pred, (tuple, list)):  # inference: the main head only
            return super().compute_loss(x, y, y_pred, sample_weight, training=training)
        logits, *aux_logits = y_pred
        loss = super().compute_loss(x, y, logits, sample_weight, training=training)
        aux_loss_fn = self._aux_loss_fn()
        for aux in aux_logits:
            # A Keras Loss object scales itself for tf.distribute, as the compiled one does.
            loss = loss + self.aux_loss_weight * aux_loss_fn(y, aux, sample_weight)
        return loss

    def compute_metrics(self, x, y, y_pred, sample_weight=None):
        if isinstance(y_pred, (tuple, list)):  # metrics judge the head inference uses
            y_pred = y_pred[0]
        return super().compute_metrics(x, y, y_pred, sample_weight=sample_weight)

    def _aux_loss_fn(self):
        """The compiled loss as a `keras.losses.Loss` applied to one auxiliary head."""
        loss = self.loss
        if isinstance(loss, keras.losses.Loss):
            return loss
        if isinstance(loss, str) or callable(loss):
            function = keras.losses.get(loss)
            return function if isinstance(function, keras.losses.Loss) else (
                keras.losses.LossFunctionWrapper(function))
        raise ValueError(
            "AuxiliaryHeadsClassifier applies one loss to every head: compile it with a single "
            f"loss (a keras.losses.Loss, a name or a function); received loss={loss!r}."
        )

    def get_config(self):
        return {
            "name": self.name,
            "trainable": self.trainable,
            "network": keras.saving.serialize_keras_object(self.network),
            "aux_loss_weight": self.aux_loss_weight,
        }

    @classmethod
    def from_config(cls, config):
        config = dict(config)
        # A copy: deserialising a functional model consumes parts of its config.
        config["network"] = keras.saving.deserialize_keras_object(copy.deepcopy(config["network"]))
        return cls(**config)


def inference_network(model):
    """The network inference and exports use: `model.inference_network` for an
    `AuxiliaryHeadsClassifier`, otherwise `model` itself (a functional model,
    which `kerasvision.flops.summary` and `export_image_model` take)."""
    return model.inference_network if isinstance(model, AuxiliaryHeadsClassifier) else model


def build_classic(name, num_classes=1000, input_shape=None, include_top=True,
                  preprocessing="auto", batch_norm=False, dropout=None, aux_classifiers=True,
                  aux_loss_weight=GOOGLENET_AUX_LOSS_WEIGHT):
    """Builds one of the classic CNNs of `CLASSIC_MODELS` by name.

    Dispatches to `build_lenet5`, `build_alexnet`, `build_vgg`,
    `build_resnet` or `build_googlenet` (see their docstrings for layouts,
    papers and parameter counts); arguments a model does not have must be
    left at their defaults.

    Args:
        name: str, one of `CLASSIC_MODELS`.
        num_classes: int >= 2.
        input_shape: `(height, width, 3)`; None: 32x32 for lenet5, 224x224
            otherwise. `smallest_input_size(name)` gives the smallest side.
        include_top: bool, VGG and ResNet only: False returns the last feature map.
        preprocessing: "auto", a mode of `ImagePreprocessing`, or None. "auto":
            caffe for VGG and ResNet50/101/152 (their ImageNet files' convention),
            [0, 1] ("unit") for the others; lenet5 always scales to [0, 1].
            Training from scratch, "unit" keeps VGG's first logits small (caffe's
            raw-mean-subtracted pixels gave it an initial loss of 130).
        batch_norm: bool, VGG and GoogLeNet only: BatchNormalization after each convolution.
        dropout: float in [0, 1) or None (the paper's: 0.5 for AlexNet and VGG,
            0.4 for GoogLeNet); AlexNet, VGG and GoogLeNet only.
        aux_classifiers: bool, GoogLeNet's auxiliary heads (training only).
        aux_loss_weight: float, weight of each auxiliary loss (0.3).

    Returns:
        A `keras.Model` mapping raw RGB images to float32 logits
        `[batch, num_classes]`; GoogLeNet with auxiliary heads is an
        `AuxiliaryHeadsClassifier` (`inference_network(model)` is functional).

    Example:
        >>> build_classic("vgg16").count_params()
        138357544
        >>> build_classic("googlenet").inference_network.count_params()
        6998552
    """
    check_choice("name", name, CLASSIC_MODELS)
    if name == "lenet5" and preprocessing == "unit":
        preprocessing = "auto"  # what LeNet-5 does anyway: scale to [0, 1]
    # (value, default, the models that have the argument)
    arguments = {
        "include_top": (include_top, True, ("vgg16", "vgg19", *RESNET_BLOCKS)),
        "batch_norm": (batch_norm, False, ("vgg16", "vgg19", "googlenet")),
        "dropout": (dropout, None, ("alexnet", "vgg16", "vgg19", "googlenet")),
        "preprocessing": (preprocessing, "auto", CLASSIC_MODELS[1:]),
        "aux_classifiers": (aux_classifiers, True, ("googlenet",)),
        "aux_loss_weight": (aux_loss_weight, GOOGLENET_AUX_LOSS_WEIGHT, ("googlenet",)),
    }
    for argument, (value, default, models) in arguments.items():
        if value != default and name not in models:
            raise ValueError(f"`{argument}` applies to {', '.join(models)} only; received "
                             f"{argument}={value!r} for name={name!r}.")
    input_shape = DEFAULT_INPUT_SHAPES[name] if input_shape is None else input_shape
    dropout = _dropout(name, dropout)
    if name == "lenet5":
        return build_lenet5(num_classes, input_shape)
    if name == "alexnet":
        return build_alexnet(num_classes, input_shape, preprocessing, dropout)
    if name in VGG_CONVS:
        return build_vgg(int(name[3:]), num_classes, input_shape, include_top, preprocessing,
                         batch_norm, dropout)
    if name in RESNET_BLOCKS:
        return build_resnet(int(name[6:]), num_classes, input_shape, include_top, preprocessing)
    return build_googlenet(num_classes, input_shape, aux_classifiers, aux_loss_weight,
                           preprocessing, batch_norm, dropout)


# The spelling: `build(name, num_classes, input_shape, ...)` is `build_classic`.
build = build_classic


def load_applications_weights(model, name, weights="imagenet"):
    """Copies a keras.applications model's weights into the from-blocks model, layer by layer.

    VGG16/19 and ResNet50/101/152 built here have keras.applications' layer
    names and weight shapes, so each weighted layer of the keras.applications
    model is copied to the layer of the same name. The result computes the
    same function as the keras.applications model given the same input: our
    model's `ImagePreprocessing("caffe")` does what `preprocess_input` does
    before it.

    Args:
        model: a model from `build_classic(name, ...)` (`include_top` and
            `num_classes` as the weights were trained; BatchNorm-free VGG).
        name: one of `APPLICATIONS` ("vgg16", "vgg19", "resnet50", "resnet101",
            "resnet152").
        weights: a built keras.applications model of that architecture, or
            what its constructor takes as `weights`: "imagenet" (downloads;
            needs the network once, then `~/.keras/models`) or the path of a
            weights file (e.g. `resnet50_weights_tf_dim_ordering_tf_kernels.h5`).
            A keras.applications model with the top needs 224x224 inputs and
            1000 classes for the ImageNet files.

    Returns:
        `model`, with the weights loaded.

    Raises:
        ValueError: unknown `name`, or a layer with no counterpart or another shape.

    Example:
        >>> model = build_classic("resnet50")
        >>> load_applications_weights(model, "resnet50", "/data/resnet50_weights.h5")
    """
    check_choice("name", name, tuple(APPLICATIONS))
    if isinstance(weights, keras.Model):
        source = weights
    else:
        has_top = any(layer.name == "predictions" for layer in model.layers)
        source = getattr(keras.applications, APPLICATIONS[name])(
            weights=weights, include_top=has_top, input_shape=tuple(model.input_shape[1:]),
            classes=model.output_shape[-1] if has_top else 1000,
        )
    ours = {layer.name: layer for layer in model.layers}
    copied = set()
    for layer in source.layers:
        values = layer.get_weights()
        if not values:
            continue
        target = ours.get(layer.name)
        if target is None:
            raise ValueError(f"Layer {layer.name!r} of keras.applications.{APPLICATIONS[name]} "
                             f"has no counterpart in model {model.name!r}.")
        expected = [tuple(v.shape) for v in target.get_weights()]
        received = [tuple(v.shape) for v in values]
        if expected != received:
            raise ValueError(f"Layer {layer.name!r}: model {model.name!r} has weight shapes "
                             f"{expected}; the keras.applications model has {received}.")
        target.set_weights(values)
        copied.add(layer.name)
    missing = [layer.name for layer in model.layers if layer.weights and layer.name not in copied]
    if missing:
        raise ValueError(f"Layers {missing} of model {model.name!r} have no counterpart in "
                         f"keras.applications.{APPLICATIONS[name]}: was it built with "
                         "batch_norm=True or another name?")
    return model


__all__ = [
    "APPLICATIONS",
    "CLASSIC_MODELS",
    "DEFAULT_INPUT_SHAPES",
    "AuxiliaryHeadsClassifier",
    "build",
    "build_alexnet",
    "build_classic",
    "build_googlenet",
    "build_resnet",
    "build_vgg",
    "inference_network",
    "load_applications_weights",
    "smallest_input_size",
]
