"""One registry of classification backbones, exposed as feature pyramids.

A backbone is a `keras.applications` network without its classifier, wrapped
so that it takes raw RGB in [0, 255] (its own `preprocess_input` runs inside)
and returns a dict of feature maps keyed by stride: `"P1"` (stride 2) to
`"P5"` (stride 32).

Registered: "vgg16", "vgg19" (Simonyan and Zisserman 2015), "resnet50",
"resnet101", "resnet152" (He et al. 2016), "inceptionv3" (Szegedy et al.
2016), "mobilenetv2" (Sandler et al. 2018), "efficientnetb0" (Tan and Le
2019), and "shapes_cnn" (`build_shapes_cnn`: a small VGG-style network with
BatchNorm and no ImageNet weights, which learns the embedded shapes from
random weights in a minute). All but InceptionV3 pad their convolutions, so
at an input side that is a multiple of 32, level Pn is exactly side / 2**n. InceptionV3's stem and
reductions are unpadded ("valid"): at 96 px its maps are 45, 20, 9, 4 and 1
pixels wide instead of 48, 24, 12, 6 and 3, and it needs at least 75 px.
`build_backbone(..., resize_to_strides=True)` resizes such maps to the
nominal sizes, which is what the segmenters ask for.

Weights (`weights=`):
    `None`: random initialisation.
    `"imagenet"`: the published ImageNet weights, from the Keras cache or
        downloaded; fails within seconds, naming the cache path, when neither
        works (offline machines).
    a path: a local `.h5` or `.weights.h5` file, either of the backbone alone
        (`include_top=False`) or of the whole classifier.
    `"auto"`: ImageNet when cached or downloadable, otherwise random
        initialisation with a one-line warning; random initialisation,
        silently, for a backbone without ImageNet weights ("shapes_cnn").

Example:
    >>> backbone = build_backbone("vgg16", (64, 64, 3), weights=None)
    >>> {k: v.shape for k, v in backbone(np.zeros((1, 64, 64, 3))).items()}
    {'P1': (1, 32, 32, 64), ..., 'P5': (1, 2, 2, 512)}
"""

import dataclasses
import math
import os
import warnings

import keras
import numpy as np
from keras import layers

from kerasvision.kernels import fuse_batch_normalization
from kerasvision.layers import CLASSIC_BN_MOMENTUM, ImagePreprocessing
from kerasvision.validation import check_choice, check_image_shape

WEIGHTS_CHOICES = ("auto", "imagenet", None)
_HDF5_SIGNATURE = b"\x89HDF\r\n\x1a\n"
LEVELS = ("P1", "P2", "P3", "P4", "P5")


@dataclasses.dataclass(frozen=True)
class BackboneSpec:
    """What kerasvision needs to know about one `keras.applications` network.

    Attributes:
        constructor: the `keras.applications` function (or a wrapper with its
            `include_top`, `weights` and `input_shape` arguments).
        preprocessing: `ImagePreprocessing` mode matching its `preprocess_input`,
            or None when the network normalises raw [0, 255] pixels itself
            (EfficientNet's `Rescaling` and `Normalization` layers; its
            `preprocess_input` is the identity).
        feature_layers: the layer of the feature map at each level `"P1".."P5"`:
            its name, or its index in the headless application's `layers` when
            Keras leaves it unnamed (InceptionV3's stem, whose automatic names
            change with every network built in the process).
        blocks: names of the stages, input to output, one per level: stage n
            is every layer after level P(n-1)'s up to level Pn's. Fine-tuning
            unfreezes the last N.
        weight_files: (with top, without top) file names in the Keras cache,
            or None for a network without published ImageNet weights.
        classifier_layers: names of the dense layers of the ImageNet classifier
            that FCN turns into convolutions (empty when there are none).
        min_size: the smallest input side the network accepts.
        exact_strides: True when level Pn is exactly `ceil(side / 2**n)` pixels
            wide (padded convolutions); False for unpadded ones (InceptionV3).
    """

    constructor: object
    preprocessing: object
    feature_layers: dict
    blocks: tuple
    weight_files: tuple
    classifier_layers: tuple = ()
    min_size: int = 32
    exact_strides: bool = True


# keras.applications picks MobileNetV2's ImageNet file by the input side (96,
# 128, 160, 192 or 224, else 224 with a warning). The backbone takes one file
# at every size, the one trained at 224, so that the weights (and the cached
# file `weights="auto"` looks for) do not depend on the input size.
_MOBILENET_V2_URL = "https://storage.googleapis.com/tensorflow/keras-applications/mobilenet_v2/"
_MOBILENET_V2_FILES = (
    "mobilenet_v2_weights_tf_dim_ordering_tf_kernels_1.0_224.h5",
    "mobilenet_v2_weights_tf_dim_ordering_tf_kernels_1.0_224_no_top.h5",
)


def _mobilenet_v2(include_top=True, weights="imagenet", input_shape=None):
    """`keras.applications.MobileNetV2` (alpha 1.0) with the 224-px ImageNet file at any size."""
    model = keras.applications.MobileNetV2(
        include_top=include_top, weights=None, input_shape=input_shape
    )
    if weights == "imagenet":
        file_name = _MOBILENET_V2_FILES[0 if include_top else 1]
        path = keras.utils.get_file(file_name, _MOBILENET_V2_URL + file_name, cache_subdir="models")
        model.load_weights(path)
    elif weights is not None:
        model.load_weights(weights)
    return model


SHAPES_CNN_WIDTHS = (32, 64, 128, 256, 256)


def _no_imagenet_weights_error(backbone):
    return ValueError(
        f"`weights`='imagenet' is not available for backbone={backbone!r}: it has no "
        "ImageNet weights. Pass weights=None (random initialisation) or a path to a "
        "`.h5`/`.weights.h5` file; received weights='imagenet'."
    )


def build_shapes_cnn(include_top=True, weights=None, input_shape=None, classes=1000):
    """A small VGG-style CNN with BatchNorm: the backbone that learns from random weights.

    Five stages, each two 3x3 convolutions (no bias) with BatchNormalization
    and ReLU, then 2x2 max pooling, of widths 32, 64, 128, 256 and 256
    (2.36M weights; VGG's plan, Simonyan and Zisserman 2015, with Ioffe and
    Szegedy's 2015 BatchNorm). Why it exists: without the ImageNet file
    (offline), ResNet50, VGG16 and MobileNetV2 from random weights stayed
    near chance for their first 64-128 steps on the 32-px embedded shapes
    (ResNet50 reached 0.59 after 3.3 minutes on 2 CPU cores), while this
    network learns them from random weights in about a minute there. It is
    the offline default of the transfer demo
    (`recipes/transfer_classifier.py --backbone auto`), which pretrains it
    on a source task and transfers it through a weights file.

    Same signature as the `keras.applications` constructors, so that it
    registers as they do; it has no ImageNet weights. Its layers are plain
    Keras ones, as there (`build_backbone` switches BatchNorm to the fused
    kernel afterwards), so that a weights file saved from it loads whether
    the fused kernels are on or off.

    Args:
        include_top: bool, add the classifier (global average pooling
            "avg_pool" and a softmax dense layer "predictions").
        weights: None (random, He-normal kernels) or a path to a weights file;
            "imagenet" raises a ValueError.
        input_shape: tuple `(height, width, 3)`, sides None or multiples of 32
            (>= 32); default `(None, None, 3)`.
        classes: int, outputs of the classifier (with `include_top`).

    Returns:
        A functional `keras.Model` named "shapes_cnn", `[batch, H, W, 3]`
        images scaled to [-1, 1] -> `[batch, H/32, W/32, 256]` (headless) or
        `[batch, classes]` probabilities. Layers `stage{n}_conv{i}`,
        `stage{n}_bn{i}`, `stage{n}_relu{i}` and `stage{n}_pool`, n = 1..5.

    Example:
        >>> build_shapes_cnn(include_top=False, input_shape=(32, 32, 3)).output.shape
        (None, 1, 1, 256)
    """
    if weights == "imagenet":
        raise _no_imagenet_weights_error("shapes_cnn")
    inputs = keras.Input(input_shape or (None, None, 3))
    x = inputs
    for stage, filters in enumerate(SHAPES_CNN_WIDTHS, start=1):
        for index in (1, 2):
            prefix = f"stage{stage}"
            x = layers.Conv2D(filters, 3, padding="same", use_bias=False,  # BatchNorm's offset
                              kernel_initializer="he_normal", name=f"{prefix}_conv{index}")(x)
            # Momentum 0.9: from random weights the moving statistics must keep up.
            x = layers.BatchNormalization(momentum=CLASSIC_BN_MOMENTUM,
                                          name=f"{prefix}_bn{index}")(x)
            x = layers.ReLU(name=f"{prefix}_relu{index}")(x)
        x = layers.MaxPooling2D(2, name=f"stage{stage}_pool")(x)
    if include_top:
        x = layers.GlobalAveragePooling2D(name="avg_pool")(x)
        x = layers.Dense(classes, activation="softmax", name="predictions")(x)
    model = keras.Model(inputs, x, name="shapes_cnn")
    if weights is not None:
        model.load_weights(weights)
    return model


def _resnet_spec(constructor, name, stage_depths):
    """ResNet-50/101/152 differ only in the number of blocks per stage."""
    return BackboneSpec(
        constructor=constructor,
        preprocessing="caffe",
        feature_layers={
            "P1": "conv1_relu",
            "P2": f"conv2_block{stage_depths[0]}_out",
            "P3": f"conv3_block{stage_depths[1]}_out",
            "P4": f"conv4_block{stage_depths[2]}_out",
            "P5": f"conv5_block{stage_depths[3]}_out",
        },
        blocks=("conv1", "conv2", "conv3", "conv4", "conv5"),
        weight_files=(
            f"{name}_weights_tf_dim_ordering_tf_kernels.h5",
            f"{name}_weights_tf_dim_ordering_tf_kernels_notop.h5",
        ),
    )


def _vgg_spec(constructor, name):
    return BackboneSpec(
        constructor=constructor,
        preprocessing="caffe",
        feature_layers={level: f"block{n}_pool" for n, level in enumerate(LEVELS, start=1)},
        blocks=("block1", "block2", "block3", "block4", "block5"),
        weight_files=(
            f"{name}_weights_tf_dim_ordering_tf_kernels.h5",
            f"{name}_weights_tf_dim_ordering_tf_kernels_notop.h5",
        ),
        classifier_layers=("fc1", "fc2"),
    )


BACKBONES = {
    "vgg16": _vgg_spec(keras.applications.VGG16, "vgg16"),
    "vgg19": _vgg_spec(keras.applications.VGG19, "vgg19"),
    "resnet50": _resnet_spec(keras.applications.ResNet50, "resnet50", (3, 4, 6, 3)),
    "resnet101": _resnet_spec(keras.applications.ResNet101, "resnet101", (3, 4, 23, 3)),
    "resnet152": _resnet_spec(keras.applications.ResNet152, "resnet152", (3, 8, 36, 3)),
    # Unpadded stem and reductions: the levels are 45, 20, 9, 4 and 1 pixels
    # wide at 96 px (147, 71, 35, 17 and 8 at 299), and the network needs at
    # least 75 px (its last reduction then sees a 3x3 map). P1 and P2 are the stem's last
    # activations before each of its max poolings (the 3rd and 5th
    # convolutions, unnamed: layer indices), P3..P5 the last "mixed" block at
    # each resolution.
    "inceptionv3": BackboneSpec(
        constructor=keras.applications.InceptionV3,
        preprocessing="tf",
        feature_layers={"P1": 9, "P2": 16, "P3": "mixed2", "P4": "mixed7", "P5": "mixed10"},
        blocks=("stem_conv", "stem_pool", "mixed0_2", "mixed3_7", "mixed8_10"),
        weight_files=(
            "inception_v3_weights_tf_dim_ordering_tf_kernels.h5",
            "inception_v3_weights_tf_dim_ordering_tf_kernels_notop.h5",
        ),
        min_size=75,
        exact_strides=False,
    ),
    # The widest map at each stride: the expansion (x6) at the input of the
    # first inverted residual block that halves the resolution (as in the
    # TensorFlow segmentation tutorial and segmentation_models).
    "mobilenetv2": BackboneSpec(
        constructor=_mobilenet_v2,
        preprocessing="tf",
        feature_layers={
            "P1": "block_1_expand_relu",
            "P2": "block_3_expand_relu",
            "P3": "block_6_expand_relu",
            "P4": "block_13_expand_relu",
            "P5": "out_relu",
        },
        blocks=("stem", "blocks1_2", "blocks3_5", "blocks6_12", "blocks13_16"),
        weight_files=_MOBILENET_V2_FILES,
    ),
    # Same choice for EfficientNet's MBConv blocks. Its preprocessing
    # (x / 255, then the ImageNet mean and standard deviation) is part of the
    # network: see `_set_imagenet_normalization`.
    "efficientnetb0": BackboneSpec(
        constructor=keras.applications.EfficientNetB0,
        preprocessing=None,
        feature_layers={
            "P1": "block2a_expand_activation",
            "P2": "block3a_expand_activation",
            "P3": "block4a_expand_activation",
            "P4": "block6a_expand_activation",
            "P5": "top_activation",
        },
        blocks=("stem_block1", "block2", "block3", "block4_5", "block6_7_top"),
        weight_files=("efficientnetb0.h5", "efficientnetb0_notop.h5"),
    ),
    # Ours, for training from random weights (no ImageNet file): P1..P5 are
    # the stages' poolings, as VGG's.
    "shapes_cnn": BackboneSpec(
        constructor=build_shapes_cnn,
        preprocessing="tf",
        feature_layers={level: f"stage{n}_pool" for n, level in enumerate(LEVELS, start=1)},
        blocks=("stage1", "stage2", "stage3", "stage4", "stage5"),
        weight_files=None,
    ),
}

STRIDES = {"P1": 2, "P2": 4, "P3": 8, "P4": 16, "P5": 32}


def get_backbone_spec(backbone):
    """Returns the `BackboneSpec` registered under `backbone` (a name)."""
    check_choice("backbone", backbone, BACKBONES)
    return BACKBONES[backbone]


WEIGHTS_HOST = "storage.googleapis.com"  # where keras.applications downloads weights from


def keras_home():
    """The Keras home directory: `$KERAS_HOME`, else `~/.keras` (`/tmp/.keras` when
    the home directory is not writable), as Keras itself decides it.

    Read at each call (Keras reads it once, when imported): set `KERAS_HOME`
    before importing Keras for both to agree.
    """
    if "KERAS_HOME" in os.environ:
        return os.environ["KERAS_HOME"]
    base = os.path.expanduser("~")
    if not os.access(base, os.W_OK):
        base = "/tmp"
    return os.path.join(base, ".keras")


def keras_cache_dir():
    """Directory where Keras caches downloaded application weights: `<keras_home()>/models`."""
    return os.path.join(keras_home(), "models")


def kerasvision_cache_dir():
    """Directory where kerasvision caches what it builds once (the shapes feature
    extractor): `<keras_home()>/kerasvision`."""
    return os.path.join(keras_home(), "kerasvision")


def check_weights_file(path, name="weights"):
    """Raises `ValueError` unless `path` is an existing HDF5 weights file.

    Both legacy `.h5` and Keras 3 `.weights.h5` files are HDF5, so the check
    reads the HDF5 signature rather than trusting the file name.
    """
    if not os.path.exists(path):
        raise ValueError(
            f"`{name}` file does not exist: {name}={path!r}. Pass an existing "
            "`.h5`/`.weights.h5` file, 'imagenet', 'auto' or None."
        )
    if os.path.isdir(path):
        raise ValueError(f"`{name}` must be a weights file, not a directory: {path!r}.")
    with open(path, "rb") as handle:
        signature = handle.read(len(_HDF5_SIGNATURE))
    if signature != _HDF5_SIGNATURE:
        raise ValueError(
            f"`{name}` is not an HDF5 weights file (.h5 / .weights.h5): {path!r} "
            "does not start with the HDF5 signature; it may be truncated or of "
            "another format."
        )
    # A file cut short keeps its signature; opening it reads the superblock,
    # which records the file's full length, so truncation is caught here
    # rather than by a loader that reports a mismatch of layers.
    import h5py  # a Keras dependency

    try:
        h5py.File(path, "r").close()
    except OSError as error:
        raise ValueError(
            f"`{name}` must be a readable HDF5 weights file (.h5 / .weights.h5); {path!r} "
            f"could not be opened, it is probably truncated or corrupt ({error})."
        ) from None
    return path


def _check_weights_argument(weights):
    if weights in WEIGHTS_CHOICES:
        return weights
    if isinstance(weights, (str, os.PathLike)):
        return check_weights_file(os.fspath(weights))
    raise ValueError(
        "`weights` must be 'auto', 'imagenet', None or a path to a weights file; "
        f"received weights={weights!r}."
    )


def _imagenet_error(backbone, include_top, error):
    spec = BACKBONES[backbone]
    if spec.weight_files is None:
        return _no_imagenet_weights_error(backbone)
    file_name = spec.weight_files[0 if include_top else 1]
    return RuntimeError(
        f"Could not get the ImageNet weights of `{backbone}` ({error}). Keras looks "
        f"for them in {os.path.join(keras_cache_dir(), file_name)} and downloads them "
        "there when the network allows. On an offline machine, copy that file "
        "there, or pass weights='/path/to/file.h5' (or weights=None for random "
        "initialisation, weights='auto' to fall back to it)."
    )


def _load_imagenet(backbone, include_top, input_shape):
    """Builds the application with ImageNet weights, failing fast offline."""
    spec = BACKBONES[backbone]
    if spec.weight_files is None:
        raise _no_imagenet_weights_error(backbone)
    kwargs = {"include_top": include_top, "weights": "imagenet"}
    if not include_top:
        kwargs["input_shape"] = input_shape
    cached = os.path.join(keras_cache_dir(), spec.weight_files[0 if include_top else 1])
    try:
        return spec.constructor(**kwargs)
    except Exception as error:  # keras raises a bare Exception on fetch failure
        if os.path.exists(cached):
            # Keras reads a cached file without checking it: a corrupt one is not "offline".
            raise ValueError(
                f"The cached ImageNet weights of `{backbone}` at {cached!r} could not be "
                f"loaded ({error}); the file is corrupt, truncated or of another "
                "architecture. Delete it so that Keras downloads it again, or pass "
                "weights='/path/to/file.h5' (weights=None for random initialisation)."
            ) from error
        raise _imagenet_error(backbone, include_top, error) from error


def _load_weights_file(model, backbone, path):
    """Loads a weights file into the headless `model`.

    The file may hold the headless network or the whole classifier: the second
    case is loaded into a full classifier first, whose layers are then copied.
    """
    spec = BACKBONES[backbone]
    try:
        model.load_weights(path)
        return
    except Exception as headless_error:
        full = spec.constructor(include_top=True, weights=None)
        try:
            full.load_weights(path)
        except Exception:
            raise ValueError(
                f"`weights` file {path!r} does not hold `{backbone}` weights, with "
                f"or without its classifier ({headless_error})."
            ) from headless_error
    _copy_headless_weights(full, model, backbone)


def _copy_headless_weights(full, model, backbone):
    """Copies a full classifier's weights into the headless network `model`, in layer order.

    Names cannot pair the layers: InceptionV3's are generated anew for each
    network built. Both networks list their layers by depth and the
    classifier only appends layers after the last convolution, so the
    weighted layers pair in order once the classifier's dense layers are left out.
    """
    sources = [layer for layer in full.layers if layer.weights and not isinstance(layer, layers.Dense)]
    targets = [layer for layer in model.layers if layer.weights]
    shapes = [[tuple(w.shape) for w in layer.weights] for layer in targets]
    if len(sources) != len(targets) or shapes != [
        [tuple(w.shape) for w in layer.weights] for layer in sources
    ]:
        raise ValueError(
            f"The classifier weights of `{backbone}` do not pair with its headless layers "
            f"({len(sources)} weighted layers against {len(targets)})."
        )
    for source, target in zip(sources, targets):
        target.set_weights(source.get_weights())


def _build_application(backbone, input_shape, weights):
    """Returns the headless application with `weights` resolved (never 'auto')."""
    spec = BACKBONES[backbone]
    if weights == "imagenet":
        # Weights do not depend on the input size, so load at the requested size.
        return fuse_batch_normalization(_load_imagenet(backbone, False, input_shape))
    model = spec.constructor(include_top=False, weights=None, input_shape=input_shape)
    if weights is None:
        _he_initialise_convolutions(model)
    else:
        _load_weights_file(model, backbone, weights)
    if spec.preprocessing is None:
        _set_imagenet_normalization(model)
    return fuse_batch_normalization(model)


IMAGENET_MEAN = (0.485, 0.456, 0.406)  # RGB, of pixels scaled to [0, 1]
IMAGENET_STD = (0.229, 0.224, 0.225)


def _set_imagenet_normalization(model):
    """Makes a network's own input normalisation (x / 255 - mean) / std with ImageNet's statistics.

    keras.applications' EfficientNet normalises inside the network: a
    `Rescaling(1 / 255)`, then a `Normalization` layer whose mean and variance
    are weights. Its ImageNet file stores the standard deviation where the
    layer expects a variance, and Keras corrects that with one more
    `Rescaling(1 / sqrt(std))` that it adds only for `weights="imagenet"`
    (tensorflow/tensorflow#49930). Built with `weights=None` the layer holds
    mean 0 and variance 1, and the same file loaded from a path would divide
    by sqrt(std). The normalisation belongs to the architecture rather than to
    a file, so for every policy but "imagenet" it is set here, after loading.
    """
    for layer in model.layers:
        if isinstance(layer, layers.Normalization):
            layer.adapt_mean.assign(np.asarray(IMAGENET_MEAN, "float32"))
            layer.adapt_variance.assign(np.square(np.asarray(IMAGENET_STD, "float32")))
            # The layer divides by a copy of its variables made when they change.
            layer.finalize_state()


def _he_initialise_convolutions(model):
    """Re-draws every convolution kernel from He et al.'s ReLU initialisation.

    keras.applications draws kernels from Glorot-uniform, whose variance
    1 / (9 * channels) halves the signal at each ReLU layer; through VGG16's 13
    plain convolutions that leaves a from-scratch net barely trainable (it
    predicted background only for a whole epoch here). He-normal, 2 / fan_in,
    keeps the signal's scale through depth (He et al. 2015, section 2.2).
    """
    initializer = keras.initializers.HeNormal()
    for layer in model.layers:
        if isinstance(layer, layers.Conv2D):
            layer.kernel.assign(initializer(layer.kernel.shape))


def resolve_weights(backbone, weights):
    """Turns `weights="auto"` into "imagenet" or None (with a one-line warning).

    Args:
        backbone: registered backbone name.
        weights: "auto", "imagenet", None or a path.

    Returns:
        The weights argument to use; never "auto". A backbone without ImageNet
        weights ("shapes_cnn") resolves "auto" to None at once, without a
        warning, a file lookup or a network probe, and rejects "imagenet".
    """
    spec = get_backbone_spec(backbone)
    weights = _check_weights_argument(weights)
    if weights == "imagenet" and spec.weight_files is None:
        raise _no_imagenet_weights_error(backbone)
    if weights != "auto":
        return weights
    if spec.weight_files is None:
        return None
    if imagenet_weights_available(backbone):
        return "imagenet"
    warnings.warn(
        f"weights='auto': ImageNet weights of {backbone} are not available "
        f"(not in {keras_cache_dir()} and no network); training from random "
        "initialisation.",
        stacklevel=2,
    )
    return None


def imagenet_weights_available(backbone):
    """Whether `weights="imagenet"` can load for `backbone`, without downloading anything.

    True when the headless ImageNet file is in the Keras cache or the host
    serving it answers; False at once, without looking, for a backbone that
    has no ImageNet weights.

    Args:
        backbone: registered backbone name.

    Returns:
        bool.
    """
    spec = get_backbone_spec(backbone)
    if spec.weight_files is None:
        return False
    cached = os.path.join(keras_cache_dir(), spec.weight_files[1])
    # Look before downloading: offline, Keras would print "Downloading data
    # from ..." for an attempt that cannot succeed.
    return os.path.exists(cached) or _weights_host_reachable()


def _weights_host_reachable(timeout=3.0):
    """Whether the host serving `keras.applications` weights answers a TCP connection."""
    import socket

    try:
        with socket.create_connection((WEIGHTS_HOST, 443), timeout=timeout):
            return True
    except OSError:
        return False


def build_backbone(backbone, input_shape=(None, None, 3), weights="auto", name=None,
                   max_level="P5", resize_to_strides=False):
    """Builds a registered backbone that returns feature maps keyed by stride.

    Args:
        backbone: str, one of `BACKBONES` ("vgg16", "vgg19", "resnet50",
            "resnet101", "resnet152", "inceptionv3", "mobilenetv2",
            "efficientnetb0", "shapes_cnn").
        input_shape: tuple `(height, width, 3)`; sizes may be None, and must be
            at least the backbone's `min_size` (75 for InceptionV3, else 32).
        weights: "auto", "imagenet", None or a path to a `.h5`/`.weights.h5` file
            (see the module docstring); "imagenet" raises a ValueError for
            "shapes_cnn", which has none.
        name: str, model name (default `f"{backbone}_backbone"`).
        max_level: "P1".."P5", the coarsest level returned; the stages after
            it are not built (DeepLabV3+ stops at "P4", stride 16).
        resize_to_strides: bool. True resizes (bilinearly) every map whose size
            is not `ceil(side / stride)` to that size, so that decoders can
            merge levels by factors of 2; this needs a fixed input size for
            InceptionV3 and changes nothing for the padded backbones.

    Returns:
        A functional `keras.Model` mapping raw RGB images `[batch, H, W, 3]` in
        [0, 255] to `{"P1": [batch, H/2, W/2, C1], ..., "P5": [batch, H/32, W/32, C5]}`
        (InceptionV3 without `resize_to_strides`: smaller, see the module
        docstring). The application is the sub-model `f"{backbone}_features"`
        and keeps its layer names; the preprocessing layer is `"preprocessing"`
        (absent for EfficientNet, which normalises inside).
    """
    spec = get_backbone_spec(backbone)
    input_shape = check_image_shape(input_shape)
    check_choice("max_level", max_level, LEVELS)
    if not isinstance(resize_to_strides, bool):
        raise ValueError(  # noqa: TRY004 (argument checks raise ValueError throughout)
            f"`resize_to_strides` must be True or False; received resize_to_strides={resize_to_strides!r}."
        )
    _check_backbone_input_shape(backbone, spec, input_shape, resize_to_strides)
    weights = resolve_weights(backbone, weights)
    application = _build_application(backbone, input_shape, weights)
    levels = LEVELS[: LEVELS.index(max_level) + 1]
    features = keras.Model(
        application.input,
        {key: get_feature_layer(application, backbone, key).output for key in levels},
        name=f"{backbone}_features",
    )
    images = keras.Input(input_shape, name="images")
    preprocessed = images
    if spec.preprocessing is not None:
        preprocessed = ImagePreprocessing(spec.preprocessing, name="preprocessing")(images)
    outputs = features(preprocessed)
    if resize_to_strides:
        outputs = {key: _resize_to_stride(value, input_shape, key) for key, value in outputs.items()}
    return keras.Model(images, outputs, name=name or f"{backbone}_backbone")


def get_feature_layer(application, backbone, level):
    """Returns the layer of `application` (a headless network) registered for `level` ("P1".."P5")."""
    layer = get_backbone_spec(backbone).feature_layers[check_choice("level", level, LEVELS)]
    if isinstance(layer, int):
        return application.layers[layer]
    return application.get_layer(layer)


def _check_backbone_input_shape(backbone, spec, input_shape, resize_to_strides):
    for size in input_shape[:2]:
        if size is not None and size < spec.min_size:
            reason = (
                "its unpadded stem and reductions shrink a smaller image to nothing"
                if not spec.exact_strides else "five stride-2 stages"
            )
            raise ValueError(
                f"`input_shape` height and width must be >= {spec.min_size} for "
                f"backbone={backbone!r} ({reason}); received input_shape={input_shape!r}."
            )
    if resize_to_strides and not spec.exact_strides and None in input_shape[:2]:
        raise ValueError(
            f"`input_shape` must have a fixed height and width for backbone={backbone!r} "
            "with resize_to_strides=True: its unpadded convolutions give maps that are "
            "resized to the nominal strides, and the target sizes follow from the "
            f"input's; received input_shape={input_shape!r}."
        )


def _resize_to_stride(features, input_shape, level):
    """Bilinearly resizes `features` to `ceil(side / stride)` when it has another size."""
    stride = STRIDES[level]
    target = tuple(math.ceil(size / stride) for size in input_shape[:2] if size is not None)
    if len(target) < 2 or tuple(features.shape[1:3]) == target:
        return features
    return layers.Resizing(*target, interpolation="bilinear", name=f"{level}_resize")(features)


def load_classifier_weights(backbone, weights):
    """Reads the ImageNet classifier's dense layers that FCN convolutionalises.

    Args:
        backbone: registered backbone name.
        weights: "imagenet", None or a path (already resolved, not "auto").

    Returns:
        A list of `(kernel, bias)` numpy pairs, one per name in
        `spec.classifier_layers` (VGG16: fc1 `[25088, 4096]`, fc2 `[4096, 4096]`),
        or None when the weights hold no classifier (None, or a headless file).
    """
    spec = get_backbone_spec(backbone)
    if weights is None or not spec.classifier_layers:
        return None
    if weights == "imagenet":
        full = _load_imagenet(backbone, True, None)
    else:
        check_weights_file(weights)
        full = spec.constructor(include_top=True, weights=None)
        try:
            full.load_weights(weights)
        except Exception as error:
            headless = spec.constructor(include_top=False, weights=None)
            try:
                headless.load_weights(weights)
            except Exception:
                raise ValueError(
                    f"`weights` file {weights!r} does not load into `{backbone}`, with its "
                    f"classifier ({error}) or without it; pass a file saved from that "
                    "architecture."
                ) from error
            return None  # a headless file: the classifier's layers stay random
    return [tuple(full.get_layer(name).get_weights()) for name in spec.classifier_layers]


def set_trainable_blocks(backbone_model, backbone, num_blocks, keep_batch_norm_frozen=True):
    """Freezes a backbone except its last `num_blocks` stages.

    The stages (`BackboneSpec.blocks`) are cut at the pyramid levels: stage n
    is every layer after level P(n-1) up to Pn, found from the graph, so the
    same rule serves networks with generated layer names (InceptionV3).

    Args:
        backbone_model: the model returned by `build_backbone` (any
            `max_level`: stages not built have nothing to unfreeze).
        backbone: its registered name.
        num_blocks: int in [0, number of stages]; 0 freezes everything, the
            number of stages unfreezes everything.
        keep_batch_norm_frozen: bool, keep every BatchNormalization layer
            non-trainable (pretrained statistics survive small fine-tuning
            batches); pass False for a randomly initialised backbone.
    """
    spec = get_backbone_spec(backbone)
    if isinstance(num_blocks, bool) or not isinstance(num_blocks, int) or not (
        0 <= num_blocks <= len(spec.blocks)
    ):
        raise ValueError(
            f"`num_blocks` must be an integer from 0 to {len(spec.blocks)} (the "
            f"stages of {backbone}: {', '.join(spec.blocks)}); received num_blocks={num_blocks!r}."
        )
    first_trainable = len(spec.blocks) - num_blocks
    backbone_model.trainable = True
    # Only the application's layers carry weights; the preprocessing and
    # resizing layers around it have none.
    for layer, stage in _layer_stages(backbone_model.get_layer(f"{backbone}_features")):
        layer.trainable = stage >= first_trainable
    if keep_batch_norm_frozen:
        freeze_batch_norm(backbone_model)


def _layer_stages(features):
    """Yields `(layer, stage)` for the layers of a backbone's features model.

    Stage 0 ends at level P1's layer, stage n at P(n+1)'s.
    A functional model lists its layers by depth, and every path from the
    input crosses each level's layer, so a layer's stage is that of the first
    level listed at or after it.
    """
    position = {id(layer): index for index, layer in enumerate(features.layers)}
    ends = sorted(
        (position[id(tensor._keras_history.operation)], LEVELS.index(key))
        for key, tensor in features.output.items()
    )
    for index, layer in enumerate(features.layers):
        if isinstance(layer, layers.InputLayer):
            continue
        stage = next((level for end, level in ends if end >= index), ends[-1][1])
        yield layer, stage


def freeze_batch_norm(model):
    """Makes every BatchNormalization layer of `model` (nested models included) non-trainable.

    In Keras 3 a BatchNormalization layer normalises with its moving
    statistics whenever it is not trainable, even inside `fit`. Calling a
    backbone with `training=False` is not enough: `fit` calls the outer model
    with `training=True`, which replaces the `training=False` recorded in a
    functional graph (keras-team/keras#20285). Call this after every change of
    `trainable` (e.g. in the `compile_fn` of `fit_two_phase`, which runs after
    it unfreezes stages) to fine-tune a pretrained backbone with its BatchNorm
    statistics and scales kept.

    Args:
        model: a `keras.Model` or layer.

    Returns:
        int, the number of BatchNormalization layers frozen.
    """
    frozen = 0
    for layer in getattr(model, "layers", ()):
        if isinstance(layer, layers.BatchNormalization):
            layer.trainable = False
            frozen += 1
        else:
            frozen += freeze_batch_norm(layer)
    return frozen
