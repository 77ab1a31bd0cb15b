"""A table of bad inputs: each must fail with an exception naming the argument and what it expects.

Every row of `CASES` is `(call, exception type, regex)`: `call(fx)` feeds one
bad input to a builder, trainer, loss, metric, data loader or exported
signature, and the regex must find the argument's name, the expected value and
the value received ("...; received name=value") in the message (not a
Keras/TensorFlow default such as "Invalid dtype: str32" or "Incompatible
shapes"). `fx.<name>` gives the module fixture
`<name>`, built on first use: tiny networks, files on disk, one export.
`RECIPE_CASES` runs recipes' `main` through `kerasvision.tasks.cli.run` with one bad
flag, which must end in a one-line `error:` naming the flag and the value received
(in the package's words, argparse's bad choices and numbers included) and exit status 2.
"""

import importlib
import io
import re
import types

import numpy as np
import pytest
import tensorflow as tf
import keras
from PIL import Image

from kerasvision import data, losses, metrics
from kerasvision.tasks.cli import run
from kerasvision.export import export_image_model, load_export, load_model
from kerasvision.backbones import build_backbone
from kerasvision.models import autoencoder, classifier, diffusion, gan
from kerasvision.layers import MaxUnpooling2D
from kerasvision.models.deeplab import build_deeplabv3plus
from kerasvision.models.fcn import build_fcn
from kerasvision.models.mask_rcnn import build_mask_rcnn
from kerasvision.models.unet import build_unet
from kerasvision.tasks.verification import make_identity_pipeline

# ---------------------------------------------------------------------------
# Shared inputs, built once per module and only when a case asks for them.
# ---------------------------------------------------------------------------


def _encode(array, image_format):
    buffer = io.BytesIO()
    Image.fromarray(array).save(buffer, format=image_format)
    return buffer.getvalue()


def _noise(height, width, channels=3, seed=0):
    # Noise compresses badly, so a file cut in half loses its end marker.
    shape = (height, width, channels) if channels > 1 else (height, width)
    return np.random.default_rng(seed).integers(0, 256, shape, dtype=np.uint8)


@pytest.fixture(scope="module")
def folders(tmp_path_factory):
    """`scenario -> (images_dir, masks_dir)` for `load_segmentation_folder`."""
    root = tmp_path_factory.mktemp("folders")
    mask = np.zeros((32, 32), np.uint8)
    png = _encode(_noise(32, 32), "PNG")
    jpeg = _encode(_noise(32, 32), "JPEG")
    mask_png = _encode(_noise(32, 32, channels=1) % 3, "PNG")
    # scenario -> ({image file: bytes}, {mask file: bytes})
    layouts = {
        "empty": ({}, {"a.png": _encode(mask, "PNG")}),
        "no_mask": ({"a.png": png, "b.png": png}, {"a.png": _encode(mask, "PNG")}),
        "size_mismatch": ({"a.png": png}, {"a.png": _encode(mask[:24], "PNG")}),
        "not_an_image": ({"a.jpg": b"<html>404 Not Found</html>"}, {"a.png": _encode(mask, "PNG")}),
        "truncated_png": ({"a.png": png[: len(png) // 2]}, {"a.png": _encode(mask, "PNG")}),
        "truncated_jpeg": ({"a.jpg": jpeg[: len(jpeg) // 2]}, {"a.png": _encode(mask, "PNG")}),
        "truncated_mask": ({"a.png": png}, {"a.png": mask_png[: len(mask_png) // 2]}),
        "rgb_mask": ({"a.png": png}, {"a.png": png}),
    }
    paths = {}
    for scenario, (image_files, mask_files) in layouts.items():
        images_dir, masks_dir = root / scenario / "images", root / scenario / "masks"
        for directory, files in ((images_dir, image_files), (masks_dir, mask_files)):
            directory.mkdir(parents=True)
            for name, payload in files.items():
                (directory / name).write_bytes(payload)
        paths[scenario] = (str(images_dir), str(masks_dir))
    paths["missing"] = (str(root / "no_such_dir"), str(root / "empty" / "masks"))
    return paths


@pytest.fixture(scope="module")
def tiny_classifier():
    """A 32x32 convolutional classifier of 4 classes (logits), for the explanation and attack rows."""
    inputs = keras.Input((32, 32, 3))
    x = keras.layers.Conv2D(4, 3, activation="relu", name="conv")(inputs)
    x = keras.layers.GlobalAveragePooling2D()(x)
    return keras.Model(inputs, keras.layers.Dense(4)(x))


@pytest.fixture(scope="module")
def weights_files(tmp_path_factory):
    """`kind -> path` of broken weights files: text renamed, truncated HDF5, missing."""
    root = tmp_path_factory.mktemp("weights")
    model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(3)])
    model.save_weights(root / "good.weights.h5")
    complete = (root / "good.weights.h5").read_bytes()
    (root / "truncated.weights.h5").write_bytes(complete[: len(complete) // 2])
    (root / "text.weights.h5").write_text("these are not weights\n")
    return {
        "truncated": str(root / "truncated.weights.h5"),
        "text": str(root / "text.weights.h5"),
        "missing": str(root / "missing.weights.h5"),
    }


@pytest.fixture(scope="module")
def keras_files(tmp_path_factory):
    """`kind -> path` of `.keras` files our loader must refuse."""
    root = tmp_path_factory.mktemp("keras_files")
    inputs = keras.Input((4,))
    unsafe = keras.Model(inputs, keras.layers.Lambda(lambda x: x * 2.0, name="double")(inputs))
    unsafe.save(root / "lambda.keras")
    plain = keras.Sequential([keras.Input((4,)), keras.layers.Dense(2)])
    plain.save(root / "plain.keras")
    complete = (root / "plain.keras").read_bytes()
    (root / "truncated.keras").write_bytes(complete[: len(complete) // 2])
    (root / "text.keras").write_text("not a zip archive\n")
    return {
        "lambda": str(root / "lambda.keras"),
        "truncated": str(root / "truncated.keras"),
        "text": str(root / "text.keras"),
        "missing": str(root / "missing.keras"),
        "h5": str(root / "model.h5"),
    }


@pytest.fixture(scope="module")
def networks():
    """The smallest networks the generative trainers accept (8x8 images, 2 filters)."""
    shape = (8, 8, 3)
    return types.SimpleNamespace(
        encoder=autoencoder.build_conv_encoder(shape, 2, filters=(2,), variational=True),
        plain_encoder=autoencoder.build_conv_encoder(shape, 2, filters=(2,)),
        decoder=autoencoder.build_conv_decoder(2, shape, filters=(2,)),
        generator=gan.build_dcgan_generator(2, shape, filters=(2,)),
        discriminator=gan.build_dcgan_discriminator(shape, filters=(2,)),
        denoiser=diffusion.build_denoiser(shape, widths=(8,), blocks_per_level=1, groups=8),
    )


@pytest.fixture(scope="module")
def serving(tmp_path_factory):
    """The signatures of a tiny exported segmenter (32x32, 3 classes), reloaded."""
    keras.utils.set_random_seed(0)
    model = build_unet(3, (32, 32, 3), depth=1, filters=2, batch_norm=False)
    path = export_image_model(model, str(tmp_path_factory.mktemp("export") / "unet"))
    loaded = tf.saved_model.load(path)
    return types.SimpleNamespace(
        images=loaded.signatures["serving_default"],
        image_bytes=loaded.signatures["serving_bytes"],
        png=_encode(_noise(32, 32), "PNG"),
        model=model,
    )


@pytest.fixture(autouse=True)
def _reset_keras_state():
    """conftest's reset without its garbage collection, which took most of this module's time.

    Each case builds at most a few tiny layers, so skipping `gc.collect()`
    costs little memory; the policy reset still undoes the recipes' precision.
    """
    keras.mixed_precision.set_global_policy("float32")
    keras.backend.clear_session(free_memory=False)
    yield
    keras.mixed_precision.set_global_policy("float32")


class _Fixtures:
    """`fx.name` is the module fixture `name`, requested only by the cases that use it."""

    def __init__(self, request):
        self._request = request

    def __getattr__(self, name):
        return self._request.getfixturevalue(name)


@pytest.fixture(scope="module")
def detection_files(tmp_path_factory):
    """A folder with one image and COCO JSON files: one annotation names a missing image."""
    import json

    root = tmp_path_factory.mktemp("detection")
    (root / "images").mkdir()
    (root / "images" / "a.png").write_bytes(_encode(_noise(32, 32), "PNG"))
    coco = {"images": [{"id": 1, "file_name": "a.png", "width": 32, "height": 32}],
            "categories": [{"id": 7, "name": "shape"}],
            "annotations": [{"id": 1, "image_id": 2, "category_id": 7, "bbox": [1, 1, 5, 5]}]}
    (root / "orphan.json").write_text(json.dumps(coco))
    return {"images_dir": str(root / "images"), "orphan": str(root / "orphan.json")}


@pytest.fixture(scope="module")
def tiny_mask_rcnn():
    """A Mask R-CNN on 16x16 images with 2-wide networks: the smallest the builder accepts."""
    return build_mask_rcnn(2, (16, 16, 3), scratch_filters=(2, 2, 2), rpn_filters=2,
                           fc_units=2, mask_filters=2, mask_convs=1)


def _instance_batch(num_boxes, num_masks):
    """One 16x16 image with `num_boxes` box rows and `num_masks` instance masks."""
    return {"images": np.zeros((1, 16, 16, 3), np.float32),
            "bounding_boxes": {"boxes": np.zeros((1, num_boxes, 4), np.float32),
                               "labels": np.zeros((1, num_boxes), np.int32)},
            "masks": np.zeros((1, num_masks, 16, 16), np.float32)}


def _detection_dataset(boxes, labels):
    return tf.data.Dataset.from_tensors({
        "images": np.zeros((32, 32, 3), np.float32),
        "bounding_boxes": {"boxes": np.array(boxes, np.float32),
                           "labels": np.array(labels, np.int32)}})


def _labels(*shape, value=0):
    return np.full(shape, value, np.int32)


def _scores(*shape):
    return np.zeros(shape, np.float32)


def _vae(fx, **kwargs):
    return autoencoder.VAE(fx.networks.encoder, fx.networks.decoder, **kwargs)


def _gan(fx, cls=gan.GAN, **kwargs):
    return cls(fx.networks.generator, fx.networks.discriminator, **kwargs)


def _rgb(*shape, value=0.0):
    return np.full(shape, value, np.float32)


def _pairs(images, masks):
    return tf.data.Dataset.from_tensor_slices((images, masks))


# ---------------------------------------------------------------------------
# The table.
# ---------------------------------------------------------------------------

InvalidArgument = tf.errors.InvalidArgumentError  # raised by a failed check inside a signature

CASES = [
    # --- Builders: input shapes, names, hyperparameters, weights files ---
    pytest.param(
        lambda fx: build_fcn(3, (48, 48, 3), weights=None),
        ValueError,
        r"`input_shape` height and width must be multiples of the network stride 32; "
        r"received input_shape=\(48, 48, 3\)",
        id="fcn-size-not-multiple-of-stride"),
    pytest.param(
        lambda fx: build_fcn(3, (64, 64, 4), weights=None),
        ValueError,
        r"`input_shape` must end with 3 channels \(RGB\); received input_shape=\(64, 64, 4\)",
        id="fcn-four-channels"),
    pytest.param(
        lambda fx: build_fcn(3, (64, 64), weights=None),
        ValueError,
        r"`input_shape` must have 3 entries \(height, width, channels\); "
        r"received input_shape=\(64, 64\)",
        id="fcn-rank-2-shape"),
    pytest.param(
        lambda fx: build_fcn(3, (64, 64, 3), backbone="vgg11", weights=None),
        ValueError, r"`backbone` must be one of \['efficientnetb0', 'inceptionv3', 'mobilenetv2', 'resnet101', 'resnet152', 'resnet50', 'shapes_cnn', 'vgg16', 'vgg19'\]; received backbone='vgg11'",
        id="fcn-unknown-backbone"),
    pytest.param(
        lambda fx: build_fcn(3, (64, 64, 3), variant="4s", weights=None),
        ValueError, r"`variant` must be one of \['16s', '32s', '8s'\]; received variant='4s'",
        id="fcn-unknown-variant"),
    pytest.param(
        lambda fx: build_fcn(1, (64, 64, 3), weights=None),
        ValueError, r"`num_classes` must be >= 2; received num_classes=1",
        id="fcn-one-class"),
    pytest.param(
        lambda fx: build_fcn(3, (64, 64, 3), weights=None, fc_units=0),
        ValueError, r"`fc_units` must be >= 1; received fc_units=0",
        id="fcn-zero-fc-units"),
    pytest.param(
        lambda fx: build_fcn(3, (64, 64, 3), weights=None, dropout=-0.1),
        ValueError, r"`dropout` must be >= 0.0; received dropout=-0.1",
        id="fcn-negative-dropout"),
    pytest.param(
        lambda fx: build_fcn(3, (64, 64, 3), weights=None, upsampling="nearest"),
        ValueError,
        r"`upsampling` must be one of \['resize', 'transpose'\]; "
        r"received upsampling='nearest'",
        id="fcn-unknown-upsampling"),
    pytest.param(
        lambda fx: build_fcn(3, (64, 64, 3), weights=fx.weights_files["missing"]),
        ValueError,
        r"`weights` file does not exist: weights='.*missing\.weights\.h5'\. "
        r"Pass an existing `\.h5`/`\.weights\.h5`",
        id="fcn-missing-weights-file"),
    pytest.param(
        lambda fx: build_fcn(3, (64, 64, 3), weights=fx.weights_files["text"]),
        ValueError,
        r"`weights` is not an HDF5 weights file \(\.h5 / \.weights\.h5\): "
        r"'.*text\.weights\.h5'",
        id="fcn-text-file-as-weights"),
    pytest.param(
        lambda fx: build_fcn(3, (64, 64, 3), weights=fx.weights_files["truncated"]),
        ValueError,
        r"`weights` must be a readable HDF5 weights file .*'.*truncated\.weights\.h5' "
        r"could not be opened",
        id="fcn-truncated-weights-file"),
    pytest.param(
        lambda fx: build_fcn(3, (64, 64, 3), weights="imagnet"),
        ValueError, r"`weights` file does not exist: weights='imagnet'.*'imagenet', 'auto' or None",
        id="fcn-misspelt-weights-name"),
    pytest.param(
        lambda fx: build_backbone("shapes_cnn", (32, 32, 3), weights="imagenet"),
        ValueError,
        r"`weights`='imagenet' is not available for backbone='shapes_cnn': it has no ImageNet "
        r"weights\. Pass weights=None .* or a path .*; received weights='imagenet'",
        id="backbone-imagenet-for-shapes-cnn"),
    pytest.param(
        lambda fx: build_unet(3, (36, 36, 3), depth=3, filters=2),
        ValueError,
        r"`input_shape` height and width must be multiples of the network stride 8; "
        r"received input_shape=\(36, 36, 3\)",
        id="unet-size-not-multiple-of-stride"),
    pytest.param(
        lambda fx: build_unet(3, (32, 32, 3), depth=0),
        ValueError, r"`depth` must be >= 1; received depth=0",
        id="unet-zero-depth"),
    pytest.param(
        lambda fx: build_unet(3, (32, 32, 3), depth=1, filters=-4),
        ValueError, r"`filters` must be >= 1; received filters=-4",
        id="unet-negative-filters"),
    pytest.param(
        lambda fx: build_unet(3, (32, 32, 3), backbone="mobilenet"),
        ValueError,
        r"`backbone` must be one of \['efficientnetb0', 'inceptionv3', 'mobilenetv2', 'resnet101', 'resnet152', 'resnet50', 'shapes_cnn', 'vgg16', 'vgg19'\]; received backbone='mobilenet'",
        id="unet-unknown-backbone"),
    pytest.param(
        lambda fx: build_unet(3, (32, 32, 3), backbone="vgg16", decoder_filters=(8, 8)),
        ValueError, r"`decoder_filters` must list 5 widths .*; received decoder_filters=\(8, 8\)",
        id="unet-decoder-filters-length"),
    pytest.param(
        lambda fx: classifier.build_cnn_classifier(3, (32, 32, 3), filters=()),
        ValueError, r"`filters` must hold at least one integer; received filters=\(\)",
        id="cnn-no-filters"),
    pytest.param(
        lambda fx: classifier.build_cnn_classifier(3, (32, 32, 3), pooling="min"),
        ValueError, r"`pooling` must be one of \['average', 'max'\]; received pooling='min'",
        id="cnn-unknown-pooling"),
    pytest.param(
        lambda fx: classifier.build_cnn_classifier(3, (4, 4, 3), filters=(2, 2, 2)),
        ValueError, r"`input_shape` is too small .* must be >= 8; received input_shape=\(4, 4, 3\)",
        id="cnn-input-smaller-than-stride"),
    pytest.param(
        lambda fx: classifier.build_cnn_classifier(3, (None, None, 3), head="flatten"),
        ValueError,
        r"`head`='flatten' needs a fixed input size; received input_shape=\(None, None, 3\)",
        id="cnn-flatten-any-size"),
    pytest.param(
        lambda fx: classifier.build_lenet5(10, (28, 28, 3)),
        ValueError,
        r"`input_shape` is too small .* must be >= 32; received input_shape=\(28, 28, 3\)",
        id="lenet5-too-small"),
    pytest.param(
        lambda fx: classifier.build_transfer_classifier("vgg16", 3, mode="finetune",
            weights=None),
        ValueError,
        r"`mode` must be one of \['feature_extraction', 'fine_tuning'\]; "
        r"received mode='finetune'",
        id="transfer-unknown-mode"),
    pytest.param(
        lambda fx: classifier.build_transfer_classifier("vgg16", 3, finetune_blocks=6,
            weights=None),
        ValueError,
        r"`finetune_blocks` must be an integer from 1 to 5.*; received finetune_blocks=6",
        id="transfer-too-many-blocks"),
    pytest.param(
        lambda fx: autoencoder.build_conv_encoder((30, 30, 3), 4, filters=(2, 2)),
        ValueError,
        r"`input_shape` height and width must be multiples of the network stride 4; "
        r"received input_shape=\(30, 30, 3\)",
        id="encoder-size-not-multiple-of-stride"),
    pytest.param(
        lambda fx: autoencoder.build_conv_decoder(0, (8, 8, 3), filters=(2,)),
        ValueError, r"`latent_dim` must be >= 1; received latent_dim=0",
        id="decoder-zero-latent-dim"),
    pytest.param(
        lambda fx: gan.build_dcgan_generator(2, (16, 16, 1), filters=(2,)),
        ValueError,
        r"`output_shape` must end with 3 channels \(RGB\); received output_shape=\(16, 16, 1\)",
        id="generator-one-channel"),
    pytest.param(
        lambda fx: diffusion.build_denoiser((8, 8, 3), widths=(12,), groups=8),
        ValueError, r"`widths` must all be multiples of groups=8 .*; received widths=\(12,\)",
        id="denoiser-widths-vs-groups"),
    # --- Trainers ---
    pytest.param(
        lambda fx: autoencoder.VAE(fx.networks.plain_encoder, fx.networks.decoder),
        ValueError,
        r"`encoder` must output \[z_mean, z_log_var\] .*; "
        r"received outputs of shapes \[\(None, 2\)\]",
        id="vae-plain-encoder"),
    pytest.param(
        lambda fx: _vae(fx, beta=0.0),
        ValueError, r"`beta` must be > 0.0; received beta=0.0",
        id="vae-zero-beta"),
    pytest.param(
        lambda fx: _vae(fx).fit(np.zeros((2, 16, 16, 3), np.float32), verbose=0),
        ValueError,
        r"expects `x` batches of images \[batch, 8, 8, 3\]; received .*\(2, 16, 16, 3\)",
        id="vae-fit-wrong-image-size"),
    pytest.param(
        lambda fx: _vae(fx).compile(optimizer="adamw2"),
        ValueError, r"`optimizer` must be a keras optimizer, its name or its config; received "
                    r"optimizer='adamw2'",
        id="vae-unknown-optimizer"),
    pytest.param(
        lambda fx: _gan(fx, label_smoothing=1.0),
        ValueError, r"`label_smoothing` must be in \[0, 1\); received label_smoothing=1\.0",
        id="gan-label-smoothing-one"),
    pytest.param(
        lambda fx: _gan(fx, gan.WGAN, ema_decay=1.0),
        ValueError, r"`ema_decay` must be in \[0, 1\) \(0: no averaging\); received ema_decay=1\.0",
        id="wgan-ema-decay-one"),
    pytest.param(
        lambda fx: gan.GAN(fx.networks.generator, fx.networks.generator),
        ValueError,
        r"`discriminator` must take the generator's images \(8, 8, 3\); "
        r"received a discriminator with input shape \(None, 2\)",
        id="gan-discriminator-mismatch"),
    pytest.param(
        lambda fx: _gan(fx, gan.WGAN, n_critic=0),
        ValueError, r"`n_critic` must be >= 1; received n_critic=0",
        id="wgan-zero-n-critic"),
    pytest.param(
        lambda fx: _gan(fx, gan.WGANGP, gp_weight=-1.0),
        ValueError, r"`gp_weight` must be > 0.0; received gp_weight=-1.0",
        id="wgangp-negative-gp-weight"),
    pytest.param(
        lambda fx: diffusion.DiffusionModel(fx.networks.denoiser, schedule="quadratic"),
        ValueError,
        r"`schedule` must be one of \['cosine', 'linear'\]; received schedule='quadratic'",
        id="diffusion-unknown-schedule"),
    pytest.param(
        lambda fx: diffusion.DiffusionModel(fx.networks.denoiser, timesteps=0),
        ValueError, r"`timesteps` must be >= 1; received timesteps=0",
        id="diffusion-zero-timesteps"),
    pytest.param(
        lambda fx: diffusion.DiffusionModel(fx.networks.denoiser, ema_decay=1.0),
        ValueError, r"`ema_decay` must be < 1; received ema_decay=1.0",
        id="diffusion-ema-decay-one"),
    # --- Losses ---
    pytest.param(
        lambda fx: losses.SparseFocalLoss(gamma=-1.0),
        ValueError, r"`gamma` must be >= 0.0; received gamma=-1.0",
        id="focal-negative-gamma"),
    pytest.param(
        lambda fx: losses.DiceLoss(smooth=-1.0),
        ValueError, r"`smooth` must be >= 0.0; received smooth=-1.0",
        id="dice-negative-smooth"),
    pytest.param(
        lambda fx: losses.get_segmentation_loss("bce"),
        ValueError, r"`name` must be one of \['ce', 'focal', 'dice', 'ce\+dice', 'focal\+dice'\]; "
                    r"received name='bce'",
        id="loss-unknown-name"),
    pytest.param(
        lambda fx: losses.get_segmentation_loss("focal", num_classes=3, alpha=[1.0, 1.0]),
        ValueError,
        r"`alpha` must have one entry per class \(3\); received 2 entries: alpha=\[1\.0, 1\.0\]",
        id="loss-alpha-length"),
    pytest.param(
        lambda fx: losses.SparseCategoricalCrossentropy(from_logits="yes"),
        ValueError, r"`from_logits` must be True or False; received from_logits='yes'",
        id="loss-from-logits-not-bool"),
    pytest.param(
        lambda fx: losses.SparseCategoricalCrossentropy()(_labels(2, 8, 8), _scores(2, 8, 3)),
        ValueError,
        r"`y_pred` must have rank 4 \[batch, height, width, num_classes\]; "
        r"received shape \(2, 8, 3\)",
        id="loss-rank-3-predictions"),
    pytest.param(
        lambda fx: losses.DiceLoss()(_labels(2, 8), _scores(2, 8, 8, 3)),
        ValueError,
        r"`y_true` must have rank 3 \[batch, height, width\] .*; received shape \(2, 8\)",
        id="loss-rank-2-labels"),
    pytest.param(
        lambda fx: losses.DiceLoss()(_labels(2, 4, 4), _scores(2, 8, 8, 3)),
        ValueError, r"`y_true` \[batch, height, width\] must match .* of `y_pred` \(2, 8, 8\); "
                    r"received y_true shape \(2, 4, 4\)",
        id="loss-mask-size-mismatch"),
    pytest.param(
        lambda fx: losses.SparseFocalLoss()(_labels(3, 8, 8), _scores(2, 8, 8, 3)),
        ValueError,
        r"`y_true` \[batch, height, width\] must match the batch size.*; "
        r"received y_true shape \(3, 8, 8\)",
        id="loss-batch-mismatch"),
    pytest.param(
        lambda fx: losses.CombinedLoss([losses.DiceLoss(), losses.SparseFocalLoss()], [1.0]),
        ValueError,
        r"`weights` must be a list with one number per loss \(2\); received weights=\[1\.0\]",
        id="combined-loss-weights-length"),
    # --- Metrics ---
    pytest.param(
        lambda fx: metrics.MeanIoU(num_classes=1),
        ValueError, r"`num_classes` must be >= 2; received num_classes=1",
        id="miou-one-class"),
    pytest.param(
        lambda fx: metrics.MeanIoU(3, ignore_label="void"),
        ValueError, r"`ignore_label` must be an integer; received ignore_label='void'",
        id="miou-ignore-label-string"),
    pytest.param(
        lambda fx: metrics.MeanIoU(3).update_state(_labels(2, 8, 8), _scores(2, 8, 8, 4)),
        ValueError,
        r"`y_pred` must have num_classes=3 entries on its last axis; "
        r"received shape \(2, 8, 8, 4\)",
        id="miou-wrong-class-count"),
    pytest.param(
        lambda fx: metrics.PixelAccuracy(3).update_state(_labels(2, 4, 4), _scores(2, 8, 8, 3)),
        ValueError,
        r"`y_true` \[batch, height, width\] must match .* `y_pred` \(2, 8, 8\); "
        r"received y_true shape \(2, 4, 4\)",
        id="pixel-accuracy-mask-size-mismatch"),
    pytest.param(
        lambda fx: metrics.MeanDice(3).update_state(tf.fill([2, 8, 8], "cat"), _scores(2, 8, 8, 3)),
        ValueError, r"`y_true` must hold integer class ids; received y_true of dtype string",
        id="mean-dice-string-labels"),
    pytest.param(
        lambda fx: metrics.frechet_distance(np.zeros((4, 3)), np.zeros((4, 5))),
        ValueError,
        r"`features_a` and `features_b` must have the same number of features; "
        r"received shapes \(4, 3\) and \(4, 5\)",
        id="fid-feature-width-mismatch"),
    pytest.param(
        lambda fx: metrics.kernel_distance(np.zeros((4, 3)), np.zeros((4, 3)), subset_size=1),
        ValueError, r"`subset_size` must be >= 2; received subset_size=1",
        id="kid-subset-of-one"),
    # --- Data: folders of files ---
    pytest.param(
        lambda fx: data.load_segmentation_folder(*fx.folders["missing"]),
        ValueError,
        r"`images_dir` must be an existing directory; received images_dir='.*no_such_dir'",
        id="folder-missing"),
    pytest.param(
        lambda fx: data.load_segmentation_folder(*fx.folders["empty"]),
        ValueError,
        r"`images_dir` holds no \.jpg/\.jpeg/\.png files; received images_dir='.*empty.images'",
        id="folder-empty"),
    pytest.param(
        lambda fx: data.load_segmentation_folder(*fx.folders["no_mask"]),
        ValueError,
        r"1 image\(s\) in `images_dir` have no mask with the same stem in `masks_dir`: 'b'; "
        r"received images_dir='.*no_mask.images', masks_dir='.*no_mask.masks'",
        id="folder-image-without-mask"),
    pytest.param(
        lambda fx: data.load_segmentation_folder(*fx.folders["size_mismatch"]),
        ValueError,
        r"`images_dir`/`masks_dir`: 'a \(image 32x32, mask 24x32\)'; "
        r"received images_dir='.*size_mismatch.images', masks_dir='.*size_mismatch.masks'\. "
        r"Masks must label every pixel",
        id="folder-mask-size-mismatch"),
    pytest.param(
        lambda fx: data.load_segmentation_folder(*fx.folders["not_an_image"]),
        ValueError,
        r"`images_dir` must hold readable JPEG or PNG images; "
        r"received images_dir file '.*not_an_image.images.a\.jpg', which is not one",
        id="folder-html-saved-as-jpg"),
    pytest.param(
        lambda fx: data.load_segmentation_folder(*fx.folders["truncated_png"]),
        ValueError,
        r"`images_dir` must hold complete JPEG or PNG images; "
        r"received images_dir file '.*truncated_png.images.a\.png', a truncated PNG",
        id="folder-truncated-png"),
    pytest.param(
        lambda fx: data.load_segmentation_folder(*fx.folders["truncated_jpeg"]),
        ValueError,
        r"`images_dir` must hold complete JPEG or PNG images; "
        r"received images_dir file '.*truncated_jpeg.images.a\.jpg', a truncated JPEG",
        id="folder-truncated-jpeg"),
    pytest.param(
        lambda fx: data.load_segmentation_folder(*fx.folders["truncated_mask"]),
        ValueError,
        r"`masks_dir` must hold complete JPEG or PNG images; "
        r"received masks_dir file '.*truncated_mask.masks.a\.png', a truncated PNG",
        id="folder-truncated-mask"),
    pytest.param(
        lambda fx: data.load_segmentation_folder(*fx.folders["rgb_mask"]),
        ValueError,
        r"Masks in `masks_dir` must be single-channel PNGs .*; "
        r"received masks_dir='.*rgb_mask.masks' holding 'a\.png \(mode RGB\)'",
        id="folder-rgb-mask"),
    pytest.param(
        lambda fx: data.load_segmentation_folder(*fx.folders["empty"], image_size=0),
        ValueError, r"`image_size` must be >= 1; received image_size=0",
        id="folder-zero-image-size"),
    # --- Data: batches, datasets, generators, tfds ---
    pytest.param(
        lambda fx: data.check_segmentation_batch(_rgb(2, 8, 8, 3), _labels(2, 8, 8, value=7), 3),
        ValueError,
        r"`masks` contains label values 7 outside \[0, num_classes=3\) .*; "
        r"received masks with label values 7\.",
        id="batch-label-out-of-range"),
    pytest.param(
        lambda fx: data.check_segmentation_batch(_rgb(2, 8, 8, 3), _labels(2, 8, 8, value=-1), 3),
        ValueError,
        r"`masks` contains label values -1 outside \[0, num_classes=3\) .*; "
        r"received masks with label values -1\.",
        id="batch-negative-label"),
    pytest.param(
        lambda fx: data.check_segmentation_batch(_rgb(2, 8, 8, 3), _labels(2, 6, 8), 3),
        ValueError,
        r"`masks` must match the batch size, height and width of `images` \(2, 8, 8\); "
        r"received masks shape \(2, 6, 8\)",
        id="batch-mask-size-mismatch"),
    pytest.param(
        lambda fx: data.check_segmentation_batch(_rgb(2, 8, 8, 3), _labels(2, 8, 8, 1), 3),
        ValueError,
        r"`masks` must be a rank-3 batch \[batch, height, width\] of class ids; "
        r"received shape \(2, 8, 8, 1\) \(drop the channel axis: masks\[\.\.\., 0\]\)",
        id="batch-mask-with-channel-axis"),
    pytest.param(
        lambda fx: data.check_segmentation_batch(_rgb(2, 8, 8, 1), _labels(2, 8, 8), 3),
        ValueError,
        r"`images` must have 3 channels \(RGB\) in its last axis; received shape \(2, 8, 8, 1\)",
        id="batch-grayscale-images"),
    pytest.param(
        lambda fx: data.check_segmentation_batch(np.full((2, 8, 8, 3), "x"), _labels(2, 8, 8), 3),
        ValueError, r"`images` must hold RGB values in \[0, 255\]; received images of dtype str",
        id="batch-string-images"),
    pytest.param(
        lambda fx: data.check_segmentation_batch(_rgb(2, 8, 8, 3, value=1000.0),
            _labels(2, 8, 8), 3),
        ValueError,
        r"`images` must be raw RGB in \[0, 255\] .*; received values in \[1e\+03, 1e\+03\]",
        id="batch-images-out-of-range"),
    pytest.param(
        lambda fx: data.validate_dataset(_pairs(_rgb(0, 8, 8, 3), _labels(0, 8, 8)), 3),
        ValueError, r"`ds` must yield at least one \(images, masks\) element; received an empty",
        id="dataset-empty"),
    pytest.param(
        lambda fx: data.validate_dataset(tf.data.Dataset.range(3), 3),
        ValueError,
        r"`ds` must yield \(images, masks\) pairs; "
        r"received ds with element_spec=TensorSpec\(shape=\(\), dtype=tf\.int64",
        id="dataset-not-pairs"),
    pytest.param(
        lambda fx: data.validate_dataset(_pairs(_rgb(1, 8, 8, 3), _labels(1, 8, 8, value=9)), 3),
        ValueError,
        r"`masks` contains label values 9 outside \[0, num_classes=3\) .*; "
        r"received masks with label values 9\.",
        id="dataset-label-out-of-range"),
    pytest.param(
        lambda fx: data.make_shapes_scenes(2, image_size=8),
        ValueError, r"`image_size` must be >= 16; received image_size=8",
        id="shapes-too-small"),
    pytest.param(
        lambda fx: data.make_shapes_scenes(0),
        ValueError, r"`num_images` must be >= 1; received num_images=0",
        id="shapes-zero-images"),
    pytest.param(
        lambda fx: data.make_shapes_scenes(2, split="val"),
        ValueError,
        r"`split` must be one of \['test', 'train', 'validation'\]; received split='val'",
        id="shapes-unknown-split"),
    pytest.param(
        lambda fx: data.make_shapes_scenes(2, noise_std=-1.0),
        ValueError, r"`noise_std` must be >= 0.0; received noise_std=-1.0",
        id="shapes-negative-noise"),
    pytest.param(
        lambda fx: data.load_tfds_segmentation("not_a_dataset", download=False),
        ValueError, r"`name` is not a TensorFlow Datasets name; received name='not_a_dataset'",
        id="tfds-unknown-name"),
    pytest.param(
        lambda fx: data.load_tfds_classification("mnist", data_dir=str(fx.tmp_path),
                                                 download=False),
        RuntimeError,
        r"TFDS dataset 'mnist' is not prepared in `data_dir` .* and `download` is off; "
        r"received data_dir='.*', download=False\. Run once with download=True",
        id="tfds-data-absent-offline"),
    pytest.param(
        lambda fx: data.load_tfds_classification("mnist", image_size="big"),
        ValueError,
        r"`image_size` must be an int or a \(height, width\) pair or None; "
        r"received image_size='big'",
        id="tfds-image-size-string"),
    pytest.param(
        lambda fx: data.make_segmentation_pipeline(
            _pairs(_rgb(2, 8, 8, 3), _labels(2, 8, 8)), 0, training=False),
        ValueError, r"`batch_size` must be >= 1; received batch_size=0",
        id="pipeline-zero-batch"),
    pytest.param(
        lambda fx: data.build_segmentation_augmenter(fill_mode="mirror"),
        ValueError,
        r"`fill_mode` must be one of \['constant', 'nearest', 'reflect', 'wrap'\]; "
        r"received fill_mode='mirror'",
        id="augmenter-unknown-fill-mode"),
    # --- Exported signatures and loading ---
    pytest.param(
        lambda fx: fx.serving.images(images=tf.zeros([1, 32, 32, 4], tf.uint8)),
        InvalidArgument,
        r"`images` must be uint8 \[batch, height, width, 3\].*received shape\] \[1 32 32 4\]",
        id="serving-four-channels"),
    pytest.param(
        lambda fx: fx.serving.images(images=tf.zeros([32, 32, 3], tf.uint8)),
        InvalidArgument,
        r"`images` must be uint8 \[batch, height, width, 3\].*received shape\] \[32 32 3\]",
        id="serving-image-without-batch-axis"),
    pytest.param(
        lambda fx: fx.serving.images(images=tf.zeros([0, 32, 32, 3], tf.uint8)),
        InvalidArgument,
        r"`images` must be uint8 .* with batch, height and width >= 1; "
        r"received shape\] \[0 32 32 3\]",
        id="serving-empty-batch"),
    # TensorFlow checks a signature's dtypes before running it: its message
    # names the input by position (`images` is the only one) and the dtype.
    pytest.param(
        lambda fx: fx.serving.images(images=tf.zeros([1, 32, 32, 3], tf.float32)),
        InvalidArgument,
        r"input #0\(zero-based\) was expected to be a uint8 tensor but is a float tensor",
        id="serving-float-images"),
    pytest.param(
        lambda fx: fx.serving.image_bytes(image_bytes=tf.constant([fx.serving.png, b"aGVsbG8="])),
        InvalidArgument,
        r"`image_bytes` must hold complete JPEG, PNG.*; received image_bytes whose "
        r"entries at these indices could not be decoded as images.*\] \[1\]",
        id="serving-base64-text-not-bytes"),
    pytest.param(
        lambda fx: fx.serving.image_bytes(image_bytes=tf.constant([fx.serving.png[:200]])),
        InvalidArgument,
        r"`image_bytes` must hold complete JPEG, PNG.*; received image_bytes whose "
        r"entries at these indices could not be decoded as images.*\] \[0\]",
        id="serving-truncated-png"),
    pytest.param(
        lambda fx: fx.serving.image_bytes(image_bytes=tf.constant([], tf.string)),
        InvalidArgument,
        r"`image_bytes` must be a vector \[batch\] of encoded images with batch >= 1; "
        r"received shape\] \[0\]",
        id="serving-bytes-empty-batch"),
    pytest.param(
        lambda fx: export_image_model(fx.serving.model, "unused", outputs="softmax"),
        ValueError,
        r"`outputs` must be one of \['logits', 'probabilities'\]; received outputs='softmax'",
        id="export-unknown-outputs"),
    pytest.param(
        lambda fx: load_export(fx.keras_files["missing"]),
        ValueError,
        r"`path` holds no SavedModel \(no saved_model\.pb\); "
        r"received path='.*missing\.keras'",
        id="load-export-missing"),
    pytest.param(
        lambda fx: load_model(fx.keras_files["missing"]),
        ValueError, r"`path` must be an existing `\.keras` file; received path=.*missing\.keras",
        id="load-model-missing-file"),
    pytest.param(
        lambda fx: load_model(fx.keras_files["h5"]),
        ValueError,
        r"`path` must name a `\.keras` file \(the Keras 3 format\); "
        r"received path='.*model\.h5'",
        id="load-model-wrong-extension"),
    pytest.param(
        lambda fx: load_model(fx.keras_files["text"]),
        ValueError,
        r"`path` must be a `\.keras` zip archive, but is not a complete zip file .*; "
        r"received path='.*text\.keras'",
        id="load-model-text-file"),
    pytest.param(
        lambda fx: load_model(fx.keras_files["truncated"]),
        ValueError,
        r"`path` must be a `\.keras` zip archive, but is not a complete zip file .*; "
        r"received path='.*truncated\.keras'",
        id="load-model-truncated-file"),
    pytest.param(
        lambda fx: load_model(fx.keras_files["lambda"]),
        ValueError,
        r"`path` must hold a model without `Lambda` layers; "
        r"received path='.*lambda\.keras', which holds \['double'\]",
        id="load-model-lambda-layer"),
    # --- Segmentation: ASPP rates, encoder strides, unpooling, instance masks ---
    pytest.param(
        lambda fx: build_deeplabv3plus(3, (32, 32, 3), backbone=None, atrous_rates=()),
        ValueError,
        r"`atrous_rates` must be a non-empty tuple of distinct integers >= 1; "
        r"received atrous_rates=\(\)",
        id="deeplab-no-atrous-rates"),
    pytest.param(
        lambda fx: build_deeplabv3plus(3, (32, 32, 3), backbone=None, atrous_rates=(2, 0)),
        ValueError, r"`atrous_rates` must be >= 1; received atrous_rates=0",
        id="deeplab-zero-atrous-rate"),
    pytest.param(
        lambda fx: build_deeplabv3plus(3, (32, 32, 3), backbone=None, atrous_rates=(-6,)),
        ValueError, r"`atrous_rates` must be >= 1; received atrous_rates=-6",
        id="deeplab-negative-atrous-rate"),
    # A registered backbone only offers stride 16 (its layers cannot be
    # re-dilated), so asking it for DeepLab's stride-8 encoder must say so.
    pytest.param(
        lambda fx: build_deeplabv3plus(3, (32, 32, 3), backbone="vgg16", weights=None,
                                       output_stride=8),
        ValueError,
        r"`output_stride` must be 16 with a registered backbone .*; "
        r"received output_stride=8 with backbone='vgg16'",
        id="deeplab-backbone-without-stride-8"),
    pytest.param(
        lambda fx: MaxUnpooling2D()(_rgb(1, 4, 4, 2)),
        ValueError,
        r"`inputs` of MaxUnpooling2D must be a pair \[values, argmax\] .*; "
        r"received EagerTensor of shape \(1, 4, 4, 2\)",
        id="unpool-without-argmax"),
    # Symbolic inputs (batch size None): the check must still compare the
    # other axes when the model is built, not wait for scatter_nd to fail.
    pytest.param(
        lambda fx: MaxUnpooling2D()([keras.Input((4, 4, 2)), keras.Input((2, 2, 2), dtype="int64")]),
        ValueError,
        r"`values` and `argmax` must have the same shape; received values shape "
        r"\(None, 4, 4, 2\) and argmax shape \(None, 2, 2, 2\)",
        id="unpool-argmax-shape-mismatch"),
    # Indices of the right shape but from a larger pooled tensor.
    pytest.param(
        lambda fx: MaxUnpooling2D()([_rgb(1, 4, 4, 2), np.full((1, 4, 4, 2), 1000, np.int64)]),
        InvalidArgument,
        r"(?s)`argmax` must hold flat indices in \[0, batch \* height \* width \* channels\) .*"
        r"unpooled output shape.*1, 8, 8, 2.*received argmax from.*1000",
        id="unpool-argmax-out-of-range"),
    pytest.param(
        lambda fx: fx.tiny_mask_rcnn.compute_losses(_instance_batch(num_boxes=2, num_masks=3)),
        ValueError,
        r"`masks` must have shape \[batch, K, height, width\]: one instance mask per box row "
        r"\(K = 2, .*received masks of shape \(1, 3, 16, 16\) for boxes of shape \(1, 2, 4\)",
        id="mask-rcnn-masks-vs-box-count"),
    # --- Detection: boxes, classes, formats, models, annotation files ---
    pytest.param(
        lambda fx: data.validate_detection_dataset(_detection_dataset([[20, 5, 10, 9]], [0]), 4),
        ValueError, r"`ds` boxes must be xyxy pixels with x1 < x2.*received, in example 0, boxes=\[\[20\.0, 5\.0, 10\.0, 9\.0\]\]",
        id="detection-box-x2-before-x1"),
    pytest.param(
        lambda fx: data.validate_detection_dataset(_detection_dataset([[1, 1, 40, 9]], [0]), 4),
        ValueError, r"`ds` boxes must be xyxy pixels .*32 x 32.*received, in example 0, boxes=\[\[1\.0, 1\.0, 40\.0",
        id="detection-box-outside-image"),
    pytest.param(
        lambda fx: data.validate_detection_dataset(_detection_dataset([[1, 1, 9, 9]], [4]), 4),
        ValueError, r"`ds` labels must be class ids in \[0, 4\).*received, in example 0, labels=\[4\]",
        id="detection-class-id-too-large"),
    pytest.param(
        lambda fx: __import__("kerasvision.boxes", fromlist=["x"]).convert_format(
            np.zeros((1, 4), np.float32), "yxyx", "xyxy"),
        ValueError, r"`source` must be one of .*received source='yxyx'",
        id="detection-unknown-box-format"),
    pytest.param(
        lambda fx: __import__("kerasvision.models.detectors", fromlist=["x"]).build_detector(
            "yolov5", 4, (64, 64, 3)),
        ValueError, r"`model` must be one of \['rcnn', 'yolov1', 'yolov8'\]; received model='yolov5'",
        id="detection-unknown-model"),
    pytest.param(
        lambda fx: data.load_detection_folder(fx.detection_files["images_dir"],
                                              fx.detection_files["orphan"]),
        ValueError, r"annotation\(s\) in `annotations_json` point to image ids that .*image_id 2"
                    r".*received annotations_json=.*orphan\.json",
        id="detection-annotation-without-image"),
    # --- Instance and panoptic metrics ---
    pytest.param(
        lambda fx: metrics.coco_evaluate(
            [{"masks": np.ones((1, 8, 8), bool), "classes": [0]}],
            [{"masks": np.ones((1, 8, 8), bool), "scores": [0.5], "classes": [0]}], iou_type="mask"),
        ValueError, r"`iou_type` must be one of \['bbox', 'segm'\].*received iou_type='mask'",
        id="metrics-unknown-iou-type"),
    pytest.param(
        lambda fx: metrics.coco_evaluate(
            [{"masks": np.ones((1, 8, 8), bool), "classes": [0]}],
            [{"masks": np.ones((1, 16, 16), bool), "scores": [0.5], "classes": [0]}],
            iou_type="segm"),
        ValueError, r"`detections\[0\]\['masks'\]` must cover the image of .*\[8, 8\].*\[16, 16\]",
        id="metrics-mask-size-mismatch"),
    pytest.param(
        lambda fx: metrics.panoptic_quality(
            [np.zeros((4, 4, 2), int)], [np.zeros((4, 5, 2), int)], thing_classes=[]),
        ValueError, r"`pred_panoptic\[0\]` must have the shape of `true_panoptic\[0\]`",
        id="metrics-panoptic-shape-mismatch"),
    # --- Classic CNNs from blocks ---
    pytest.param(
        lambda fx: __import__("kerasvision.models.classic", fromlist=["x"]).build_classic("resnet19"),
        ValueError, r"`name` must be one of \[.*\]; received name='resnet19'",
        id="classic-unknown-name"),
    pytest.param(
        lambda fx: __import__("kerasvision.models.classic", fromlist=["x"]).build_classic(
            "googlenet", 4, (64, 64, 3)),
        ValueError, r"`input_shape` is too small for googlenet: its sides must be >= 65 .*received "
                    r"input_shape=\(64, 64, 3\)",
        id="googlenet-too-small-for-aux-heads"),
    # --- Explanations and attacks ---
    pytest.param(
        lambda fx: __import__("kerasvision.explain", fromlist=["x"]).grad_cam(
            fx.tiny_classifier, np.zeros((1, 32, 32, 3), "float32"), layer="nope"),
        ValueError, r"`layer` 'nope' is not in model", id="grad-cam-unknown-layer"),
    pytest.param(
        lambda fx: __import__("kerasvision.explain", fromlist=["x"]).grad_cam(
            fx.tiny_classifier, np.zeros((1, 32, 32, 3), "float32"),
            layer=fx.tiny_classifier.layers[-1]),
        ValueError,
        r"`layer` '\w+' is not convolutional: Grad-CAM needs a layer whose output is a feature "
        r"map \[batch, height, width, channels\].*received a layer with output shape \(None, 4\)",
        id="grad-cam-dense-layer"),
    pytest.param(
        lambda fx: __import__("kerasvision.adversarial", fromlist=["x"]).fgsm(
            fx.tiny_classifier, np.zeros((1, 32, 32, 3), "float32"), np.zeros(1, "int32"), -0.1),
        ValueError, r"`epsilon` must be a number in \[0, 1\].*epsilon=-0.1",
        id="fgsm-negative-epsilon"),
    pytest.param(
        lambda fx: __import__("kerasvision.adversarial", fromlist=["x"]).pgd(
            fx.tiny_classifier, np.zeros((1, 32, 32, 3), "float32"), np.zeros(1, "int32"), 0.03,
            steps=0),
        ValueError, r"`steps` must be >= 1; received steps=0", id="pgd-zero-steps"),
    pytest.param(
        lambda fx: __import__("kerasvision.adversarial", fromlist=["x"]).pgd(
            fx.tiny_classifier, np.zeros((1, 32, 32, 3), "float32"), np.zeros(1, "int32"), -0.1),
        ValueError, r"`epsilon` must be a number in \[0, 1\].*epsilon=-0.1",
        id="pgd-negative-epsilon"),
    # --- Verification (metric learning) ---
    pytest.param(
        lambda fx: losses.TripletSemiHardLoss()(np.zeros(4), np.eye(4, dtype="float32")),
        ValueError, r"`y_true` must hold at least two identities per batch.*received a batch of 4 "
                    r"with identities \[0\]",
        id="triplet-single-identity-batch"),
    pytest.param(
        lambda fx: make_identity_pipeline(np.zeros((4, 8, 8, 3), np.uint8), [0, 0, 0, 0],
                                          batch_size=4, images_per_identity=2),
        ValueError,
        r"`batch_size` // images_per_identity = 2 identities per batch, but only 1 identities "
        r"have two images or more; received batch_size=4, images_per_identity=2",
        id="identity-pipeline-one-identity"),
    pytest.param(
        lambda fx: losses.ContrastiveLoss(margin=0),
        ValueError, r"`margin` must be > 0.0; received margin=0", id="contrastive-zero-margin"),
    pytest.param(
        lambda fx: data.make_shapes_identities(4, 1),
        ValueError, r"`images_per_identity` must be >= 2; received images_per_identity=1",
        id="identities-one-image-each"),
]


@pytest.mark.parametrize("call, error, match", CASES)
def test_bad_input_is_reported_clearly(call, error, match, request):
    with pytest.raises(error, match=match):
        call(_Fixtures(request))


# ---------------------------------------------------------------------------
# Recipe flags: one line on stderr, exit status 2, no traceback.
# ---------------------------------------------------------------------------

RECIPE_CASES = [
    pytest.param("fcn_transfer", ["--variant", "4s"],
                 r"--variant must be one of \['16s', '32s', '8s'\]; received '4s'",
                 id="fcn-variant"),
    pytest.param("unet", ["--epochs", "0"], r"--epochs must be >= 1; received 0",
                 id="unet-zero-epochs"),
    pytest.param("unet", ["--learning-rate", "nan"], r"--learning-rate must be > 0; received nan",
                 id="unet-nan-learning-rate"),
    pytest.param("unet", ["--seed", "-1"], r"--seed must be >= 0; received -1",
                 id="unet-negative-seed"),
    pytest.param("unet", ["--precision", "float8"],
                 r"--precision must be one of \[.*'float32'.*\]; received 'float8'",
                 id="unet-unknown-precision"),
    pytest.param("unet", ["--backbone", "vgg16", "--weights", "{missing_weights}"],
                 r"`weights` file does not exist: weights='.*missing\.weights\.h5'\. "
                 r"Pass an existing",
                 id="unet-missing-weights"),
    pytest.param("unet", ["--dataset", "folder"],
                 r"--dataset folder needs --images-dir, --masks-dir and --num-classes",
                 id="unet-folder-without-dirs"),
    pytest.param("vae", ["--filters", "32,x"],
                 r"--filters must be comma-separated positive ints .*; received '32,x'",
                 id="vae-filters-not-ints"),
    pytest.param("vae", ["--image-size", "30"],
                 r"`input_shape` height and width must be multiples of the network stride 8; "
                 r"received input_shape=\(30, 30, 3\).*change the image size",
                 id="vae-image-size-not-multiple-of-stride"),
    pytest.param("dcgan", ["--max-train-minutes", "-1"],
                 r"--max-train-minutes must be >= 0 \(0: no limit\); received -1.0",
                 id="dcgan-negative-time-budget"),
    pytest.param("dcgan", ["--decay-fraction", "0"],
                 r"--decay-fraction must be in \(0, 1\]; received 0.0",
                 id="dcgan-zero-decay-fraction"),
    pytest.param("fcn_transfer", ["--decay-fraction", "1.5"],
                 r"--decay-fraction must be in \(0, 1\]; received 1.5",
                 id="fcn-decay-fraction-above-one"),
    pytest.param("dcgan", ["--ema-decay", "1.5"],
                 r"`--ema-decay` must be in \[0, 1\) \(0: no averaging\); "
                 r"received --ema-decay=1\.5",
                 id="dcgan-ema-decay-above-one"),
    pytest.param("wgan", ["--ema-decay", "-0.1"],
                 r"`--ema-decay` must be in \[0, 1\) \(0: no averaging\); "
                 r"received --ema-decay=-0\.1",
                 id="wgan-negative-ema-decay"),
    pytest.param("detect", ["--model", "yolov5"],
                 r"--model must be one of \['rcnn', 'yolov1', 'yolov8'\]; received 'yolov5'",
                 id="detect-unknown-model"),
    pytest.param("cnn_classifier", ["--batch-size", "many"],
                 r"--batch-size must be an integer; received 'many'", id="cnn-batch-size-not-int"),
    pytest.param("deeplabv3plus", ["--atrous-rates", "6,0"],
                 r"--atrous-rates: must be comma-separated integers >= 1 .*; received '6,0'",
                 id="deeplab-zero-atrous-rate"),
    pytest.param("deeplabv3plus", ["--atrous-rates", ""],
                 r"--atrous-rates: must be comma-separated integers >= 1 .*; received ''",
                 id="deeplab-empty-atrous-rates"),
    pytest.param("classic_cnns", ["--model", "resnet19"],
                 r"--model must be one of \[.*\]; received 'resnet19'", id="classic-unknown-model"),
    pytest.param("adversarial", ["--pgd-steps", "0"],
                 r"--pgd-steps must be >= 1; received 0", id="adversarial-zero-pgd-steps"),
    pytest.param("adversarial", ["--epsilons", "-1"],
                 r"--epsilons must be in \[0, 255\] grey levels", id="adversarial-negative-epsilon"),
    pytest.param("verification", ["--batch-images-per-identity", "1"],
                 r"`--batch-images-per-identity` must be >= 2; received --batch-images-per-identity=1",
                 id="verification-one-image-per-identity"),
]


@pytest.mark.parametrize("recipe, argv, match", RECIPE_CASES)
def test_bad_recipe_flag_is_a_one_line_error(recipe, argv, match, tmp_path, capsys):
    main = importlib.import_module(f"recipes.{recipe}").main
    argv = [flag.format(missing_weights=str(tmp_path / "missing.weights.h5")) for flag in argv]
    argv += ["--output-dir", str(tmp_path / "run"), "--export-dir", str(tmp_path / "export")]
    with pytest.raises(SystemExit) as exit_info:
        run(main, argv)
    assert exit_info.value.code == 2
    stderr = capsys.readouterr().err
    assert "Traceback" not in stderr
    error_lines = [line for line in stderr.splitlines() if "error:" in line]
    assert len(error_lines) == 1, stderr
    assert re.search(match, error_lines[0]), error_lines[0]
