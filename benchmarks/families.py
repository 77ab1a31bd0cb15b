"""The model families the speed benchmarks build, feed and compile, in one registry.

`FAMILIES` maps a `--families` name to a `Family`: its realistic and smoke
sizes, how to build it from the library's builders (weights=None) and how to
compile it as its recipe does. `make_batch` makes one synthetic batch of a
family's kind with the matching `TensorSpec`s (detection batches are
embedded shapes scenes mapped through the model's `detector_targets`).
"""

import dataclasses

import numpy as np


SEGMENTATION_CLASSES = 5  # the embedded shapes scenes: background and 4 shapes
CLASSIFICATION_CLASSES = 10
LATENT_DIM = 100  # the GAN recipes' default
DETECTION_CLASSES = 4  # the embedded detection scenes: disks, squares, triangles, crosses
DETECTION_MAX_OBJECTS = 4  # recipes/detect.py's --max-objects
DETECTION_LEARNING_RATE = 2e-3  # recipes/detect.py's peak learning rate


@dataclasses.dataclass(frozen=True)
class Family:
    """One model family as the benchmark builds and feeds it.

    Attributes:
        name: the `--families` key.
        kind: "classification", "segmentation", "generative" or "detection"
            (what a batch holds).
        image_size, batch_size: the realistic configuration.
        smoke_image_size, smoke_batch_size: `--smoke`'s.
        short_steps: steps short enough (tens of milliseconds per batch slice)
            for steps_per_execution, which saves per-call overhead, to matter:
            only these get a `float32+spe4` default variant.
        build: callable `(image_size, smoke) -> keras.Model`, uncompiled.
        compile: callable `(model, jit_compile, steps_per_execution)`.
        networks: callable `model -> list of single-input networks` whose
            forward FLOPs are cross-checked against `kerasvision.flops`.
    """

    name: str
    kind: str
    image_size: int
    batch_size: int
    smoke_image_size: int
    smoke_batch_size: int
    short_steps: bool
    build: object
    compile: object
    networks: object


def _build_cnn_classifier(size, smoke):
    from kerasvision.data import build_classification_augmenter
    from kerasvision.models.classifier import build_cnn_classifier

    # recipes/cnn_classifier.py's model: its augmentation runs inside the step.
    return build_cnn_classifier(
        CLASSIFICATION_CLASSES, (size, size, 3), filters=(8, 16) if smoke else (16, 32, 64),
        dense_units=(128,), dropout=0.3,
        augmentation=build_classification_augmenter(
            flip="horizontal_and_vertical", rotation=0.05, zoom=0.1, seed=0),
    )


def _build_transfer_resnet50(size, smoke):
    from kerasvision.models.classifier import build_transfer_classifier

    # Random weights train everything (the offline recipe's single phase).
    return build_transfer_classifier("resnet50", CLASSIFICATION_CLASSES, (size, size, 3),
                                     weights=None, mode="fine_tuning")


def _build_fcn8s_vgg16(size, smoke):
    from kerasvision.models.fcn import build_fcn

    # fc6/fc7 at the paper's 4096 units (what a pretrained export has).
    return build_fcn(SEGMENTATION_CLASSES, (size, size, 3), backbone="vgg16", variant="8s",
                     weights=None, fc_units=64 if smoke else 4096)


def _build_unet_resnet50(size, smoke):
    from kerasvision.models.unet import build_unet

    return build_unet(SEGMENTATION_CLASSES, (size, size, 3), backbone="resnet50", weights=None)


def _gan_generator(size, smoke):
    from kerasvision.models.gan import build_dcgan_generator

    filters = (32, 16) if smoke else (256, 128, 64)
    return build_dcgan_generator(16 if smoke else LATENT_DIM, (size, size, 3), filters)


def _build_dcgan(size, smoke):
    from kerasvision.models.gan import GAN, build_dcgan_discriminator

    discriminator = build_dcgan_discriminator(
        (size, size, 3), (16, 32) if smoke else (64, 128, 256))
    return GAN(_gan_generator(size, smoke), discriminator, label_smoothing=0.1, seed=0)


def _build_wgan_gp(size, smoke):
    from kerasvision.models.gan import WGANGP, build_dcgan_discriminator

    # Layer norm: BatchNorm couples the samples the per-sample penalty treats apart.
    critic = build_dcgan_discriminator((size, size, 3), (16, 32) if smoke else (64, 128, 256),
                                       normalization="layer", name="critic")
    return WGANGP(_gan_generator(size, smoke), critic, n_critic=5, seed=0)


def _build_diffusion(size, smoke):
    from kerasvision.models.diffusion import DiffusionModel, build_denoiser

    network = build_denoiser((size, size, 3), widths=(8, 16) if smoke else (32, 64, 128),
                             blocks_per_level=1 if smoke else 2)
    return DiffusionModel(network, timesteps=1000, seed=0)


def _build_yolov8_detector(size, smoke):
    from kerasvision.models.detectors import build_detector

    # recipes/detect.py's default: the small keras-cv YOLOv8 (~1M parameters).
    return build_detector("yolov8", DETECTION_CLASSES, (size, size, 3))


def _build_yolov1_detector(size, smoke):
    from kerasvision.models.detectors import build_detector

    # The recipe's --model yolov1 without --backbone: the from-scratch encoder.
    return build_detector("yolov1", DETECTION_CLASSES, (size, size, 3), weights=None)


def _compile_detector(model, jit_compile, steps_per_execution):
    from kerasvision.models.detectors import compile_detector

    compile_detector(model, DETECTION_LEARNING_RATE, jit_compile=jit_compile)
    model.steps_per_execution = steps_per_execution


def _compile_classifier(model, jit_compile, steps_per_execution):
    from kerasvision.tasks.classification import compile_classifier

    compile_classifier(model, 1e-3, jit_compile=jit_compile)
    # The library's compile takes no steps_per_execution; the attribute is
    # Keras' public one and is read when the train function is made.
    model.steps_per_execution = steps_per_execution


def _compile_segmenter(model, jit_compile, steps_per_execution):
    from kerasvision.tasks.segmentation import compile_segmenter

    compile_segmenter(model, SEGMENTATION_CLASSES, "ce+dice", 1e-4, jit_compile=jit_compile)
    model.steps_per_execution = steps_per_execution


def _compile_trainer(model, jit_compile, steps_per_execution):

    from kerasvision import kernels

    if type(model).__name__ == "DiffusionModel":
        model.compile(kernels.adam(5e-4), jit_compile=jit_compile,
                      steps_per_execution=steps_per_execution)
    else:  # each GAN trainer's paper optimizers
        model.compile(jit_compile=jit_compile, steps_per_execution=steps_per_execution)


FAMILIES = {
    family.name: family
    for family in (
        Family("cnn_classifier", "classification", 64, 64, 32, 4, True,
               _build_cnn_classifier, _compile_classifier, lambda m: [m]),
        Family("transfer_resnet50", "classification", 224, 8, 32, 2, False,
               _build_transfer_resnet50, _compile_classifier, lambda m: [m]),
        Family("fcn8s_vgg16", "segmentation", 224, 4, 32, 2, False,
               _build_fcn8s_vgg16, _compile_segmenter, lambda m: [m]),
        Family("unet_resnet50", "segmentation", 256, 4, 32, 2, False,
               _build_unet_resnet50, _compile_segmenter, lambda m: [m]),
        Family("dcgan", "generative", 64, 64, 16, 4, True,
               _build_dcgan, _compile_trainer, lambda m: [m.generator, m.discriminator]),
        # Batch 32, not the recipe's 64: 5 critic updates with a gradient
        # penalty make each step seconds long.
        Family("wgan_gp", "generative", 64, 32, 16, 4, False,
               _build_wgan_gp, _compile_trainer, lambda m: [m.generator, m.discriminator]),
        # The denoiser takes [images, timesteps]: kerasvision.flops measures
        # single-input models only, so it has no cross-check.
        # Batch 16 at 64x64: the pixels of the recipe's 64 images of 32x32.
        Family("diffusion", "generative", 64, 16, 16, 4, False,
               _build_diffusion, _compile_trainer, lambda m: []),
        # The detectors at recipes/detect.py's 128x128 and batch 16; 64 px in
        # --smoke (yolov1's grid is then 2x2). kerasvision.flops fails on
        # keras-cv's YOLOv8 (its `Split` layers have no `built`), so only
        # yolov1 is cross-checked.
        Family("yolov8_detector", "detection", 128, 16, 64, 2, False,
               _build_yolov8_detector, _compile_detector, lambda m: []),
        Family("yolov1_detector", "detection", 128, 16, 64, 2, False,
               _build_yolov1_detector, _compile_detector, lambda m: [m]),
    )
}
DETECTION_FAMILIES = ("yolov8_detector", "yolov1_detector")
SCALING_FAMILIES = ("fcn8s_vgg16", "unet_resnet50")


def make_batch(kind, image_size, batch_size, seed=0, model=None):
    """One synthetic batch as `fit` receives it, and the matching static `TensorSpec`s.

    Pixel values follow each model's input contract: [0, 255] for classifiers,
    segmenters and detectors, [-1, 1] for generative trainers.

    Detection (`model` required): embedded shapes scenes rather than noise,
    because the detectors' losses assign boxes to anchors or grid cells, and
    random boxes would give that assignment unrealistic work. The detection
    dict goes through `detector_targets(model)`, as `fit_detector` maps it, so
    the targets are each family's own (keras-cv's dict, or yolov1's grid).
    """
    import tensorflow as tf

    if kind == "detection":
        if model is None:
            raise ValueError("make_batch('detection', ...) needs the model: its targets "
                             "depend on the detector family.")
        from kerasvision.data import load_shapes_detection
        from kerasvision.models.detectors import detector_targets

        scenes = load_shapes_detection("train", batch_size, image_size, seed,
                                       DETECTION_MAX_OBJECTS)
        batch = next(iter(scenes.batch(batch_size)))
        data = tf.nest.map_structure(lambda t: t.numpy(), detector_targets(model)(batch))
        specs = (tf.nest.map_structure(lambda a: tf.TensorSpec(a.shape, tf.as_dtype(a.dtype)),
                                       data),)
        return data, specs

    rng = np.random.default_rng(seed)
    shape = (batch_size, image_size, image_size, 3)
    if kind == "generative":
        images = rng.uniform(-1.0, 1.0, shape).astype("float32")
        return images, (tf.TensorSpec(shape, tf.float32),)
    images = rng.uniform(0.0, 255.0, shape).astype("float32")
    if kind == "classification":
        labels = rng.integers(0, CLASSIFICATION_CLASSES, (batch_size,)).astype("int32")
    else:
        labels = rng.integers(0, SEGMENTATION_CLASSES, shape[:3]).astype("int32")
    specs = ((tf.TensorSpec(shape, tf.float32), tf.TensorSpec(labels.shape, tf.int32)),)
    return (images, labels), specs
