"""One registry of classification backbones, exposed as feature pyramids.

A backbone is a `keras.applications` network without its classifier, wrapped
so that it takes raw RGB in [0, 255] (its own `preprocess_input` runs inside)
and returns a dict of feature maps keyed by stride: `"P1"` (stride 2) to
`"P5"` (stride 32).

Weights (`weights=`):
    `None`: random initialisation.
    `"imagenet"`: the published ImageNet weights, from the Keras cache or
        downloaded; fails within seconds, naming the cache path, when neither
        works (offline machines).
    a path: a local `.h5` or `.weights.h5` file, either of the backbone alone
        (`include_top=False`) or of the whole classifier.
    `"auto"`: ImageNet when cached or downloadable, otherwise random
        initialisation with a one-line warning.

Example:
    >>> backbone = build_backbone("vgg16", (64, 64, 3), weights=None)
    >>> {k: v.shape for k, v in backbone(np.zeros((1, 64, 64, 3))).items()}
    {'P1': (1, 32, 32, 64), ..., 'P5': (1, 2, 2, 512)}
"""

import dataclasses
import os
import warnings

import keras
from keras import layers

from kerasvision.kernels import fuse_batch_normalization
from kerasvision.layers import ImagePreprocessing
from kerasvision.validation import check_choice, check_image_shape

WEIGHTS_CHOICES = ("auto", "imagenet", None)
_HDF5_SIGNATURE = b"\x89HDF\r\n\x1a\n"


@dataclasses.dataclass(frozen=True)
class BackboneSpec:
    """What kerasvision needs to know about one `keras.applications` network.

    Attributes:
        constructor: the `keras.applications` function.
        preprocessing: `ImagePreprocessing` mode matching its `preprocess_input`.
        feature_layers: layer name of the feature map at each stride `"P1".."P5"`.
        blocks: names of the stages, input to output; fine-tuning unfreezes the
            last N. A layer belongs to the stage whose name prefixes its own.
        weight_files: (with top, without top) file names in the Keras cache.
        classifier_layers: names of the dense layers of the ImageNet classifier
            that FCN turns into convolutions (empty when there are none).
        min_size: the smallest input side the network accepts.
    """

    constructor: object
    preprocessing: str
    feature_layers: dict
    blocks: tuple
    weight_files: tuple
    classifier_layers: tuple = ()
    min_size: int = 32


BACKBONES = {
    "vgg16": BackboneSpec(
        constructor=keras.applications.VGG16,
        preprocessing="caffe",
        feature_layers={
            "P1": "block1_pool",
            "P2": "block2_pool",
            "P3": "block3_pool",
            "P4": "block4_pool",
            "P5": "block5_pool",
        },
        blocks=("block1", "block2", "block3", "block4", "block5"),
        weight_files=(
            "vgg16_weights_tf_dim_ordering_tf_kernels.h5",
            "vgg16_weights_tf_dim_ordering_tf_kernels_notop.h5",
        ),
        classifier_layers=("fc1", "fc2"),
    ),
    "resnet50": BackboneSpec(
        constructor=keras.applications.ResNet50,
        preprocessing="caffe",
        feature_layers={
            "P1": "conv1_relu",
            "P2": "conv2_block3_out",
            "P3": "conv3_block4_out",
            "P4": "conv4_block6_out",
            "P5": "conv5_block3_out",
        },
        blocks=("conv1", "conv2", "conv3", "conv4", "conv5"),
        weight_files=(
            "resnet50_weights_tf_dim_ordering_tf_kernels.h5",
            "resnet50_weights_tf_dim_ordering_tf_kernels_notop.h5",
        ),
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
    """Loads a weights file into the headless `model`, by layer name.

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
    for layer in model.layers:
        if layer.weights:
            layer.set_weights(full.get_layer(layer.name).get_weights())


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
    return fuse_batch_normalization(model)


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
        The weights argument to use; never "auto".
    """
    get_backbone_spec(backbone)
    weights = _check_weights_argument(weights)
    if weights != "auto":
        return weights
    cached = os.path.join(keras_cache_dir(), BACKBONES[backbone].weight_files[1])
    # Look before downloading: offline, Keras would print "Downloading data
    # from ..." for an attempt that cannot succeed.
    if os.path.exists(cached) or _weights_host_reachable():
        return "imagenet"
    warnings.warn(
        f"weights='auto': ImageNet weights of {backbone} are not available "
        f"(not in {keras_cache_dir()} and no network); training from random "
        "initialisation.",
        stacklevel=2,
    )
    return None


def _weights_host_reachable(timeout=3.0):
    """Whether the host serving `keras.applications` weights answers a TCP connection."""
    import socket

    try:
        with socket.create_connection((WEIGHTS_HOST, 443), timeout=timeout):
            return True
    except OSError:
        return False


def build_backbone(backbone, input_shape=(None, None, 3), weights="auto", name=None):
    """Builds a registered backbone that returns feature maps keyed by stride.

    Args:
        backbone: str, one of `BACKBONES` ("vgg16", "resnet50").
        input_shape: tuple `(height, width, 3)`; sizes may be None.
        weights: "auto", "imagenet", None or a path to a `.h5`/`.weights.h5` file
            (see the module docstring).
        name: str, model name (default `f"{backbone}_backbone"`).

    Returns:
        A functional `keras.Model` mapping raw RGB images `[batch, H, W, 3]` in
        [0, 255] to `{"P1": [batch, H/2, W/2, C1], ..., "P5": [batch, H/32, W/32, C5]}`.
        Its attribute-free layers keep the application's names; the
        preprocessing layer is `"preprocessing"`.
    """
    spec = get_backbone_spec(backbone)
    input_shape = check_image_shape(input_shape, min_size=spec.min_size)
    weights = resolve_weights(backbone, weights)
    application = _build_application(backbone, input_shape, weights)
    features = keras.Model(
        application.input,
        {key: application.get_layer(layer).output for key, layer in spec.feature_layers.items()},
        name=f"{backbone}_features",
    )
    images = keras.Input(input_shape, name="images")
    preprocessed = ImagePreprocessing(spec.preprocessing, name="preprocessing")(images)
    outputs = features(preprocessed)
    return keras.Model(images, outputs, name=name or f"{backbone}_backbone")


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

    Args:
        backbone_model: the model returned by `build_backbone`.
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
    trainable = spec.blocks[len(spec.blocks) - num_blocks :]
    backbone_model.trainable = True
    for layer in _application_layers(backbone_model):
        layer.trainable = any(layer.name.startswith(block + "_") for block in trainable)
    if keep_batch_norm_frozen:
        freeze_batch_norm(backbone_model)


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


def _application_layers(backbone_model):
    for layer in backbone_model.layers:
        if isinstance(layer, keras.Model):
            yield from _application_layers(layer)
        elif not isinstance(layer, (layers.InputLayer, ImagePreprocessing)):
            yield layer
