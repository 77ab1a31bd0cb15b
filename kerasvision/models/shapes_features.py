"""The shapes feature extractor: a small CNN trained once on the embedded shapes, cached.

The offline substitute for InceptionV3 in FID/KID
(`kerasvision.metrics.sample_quality`): `shapes_feature_extractor` trains
`build_shapes_feature_classifier` to tell the four shapes of
`kerasvision.data.load_shapes_classification` apart, keeps its penultimate
layer as the features, saves both networks under the kerasvision cache
directory and returns a `kerasvision.metrics.FeatureExtractor`. Scores on
these features compare our generative models with each other, not with
published numbers.

Example:

```python
extractor = shapes_feature_extractor()  # ~100 s the first time, then loaded
kerasvision.metrics.sample_quality(real, generated, extractor, value_range=(-1, 1))
```
"""

import os

import keras
import numpy as np

from kerasvision.backbones import kerasvision_cache_dir
from kerasvision.data.shapes import load_shapes_classification
from kerasvision.layers import apply_conv_block
from kerasvision.metrics.sample_quality import FeatureExtractor
from kerasvision.validation import (
    check_image_shape,
    check_int,
    check_num_classes,
    check_seed,
)


def build_shapes_feature_classifier(image_size=32, width=32, num_classes=4, feature_dim=128):
    """The small CNN whose penultimate layer gives `shapes_feature_extractor`'s features.

    Three stages of two 3x3 ReLU convolutions and 2x2 max pooling (no batch
    normalisation: this small network trains well on the shapes without it),
    global average pooling, a `feature_dim` dense layer named "features"
    (ReLU) and the class logits.

    Args:
        image_size: int, multiple of 8.
        width: int, channels of the first stage (doubled per stage).
        num_classes: int >= 2.
        feature_dim: int >= 1.

    Returns:
        A functional `keras.Model`, images `[N, S, S, 3]` in [0, 1] -> logits.
    """
    check_image_shape((image_size, image_size, 3), multiple_of=8, name="image_size")
    width = check_int("width", width, minimum=1)
    num_classes = check_num_classes(num_classes)
    feature_dim = check_int("feature_dim", feature_dim, minimum=1)
    inputs = keras.Input((image_size, image_size, 3), name="images")
    x = inputs
    for stage in range(3):
        x = apply_conv_block(x, width * 2**stage, name=f"stage{stage + 1}")
        x = keras.layers.MaxPooling2D(2, name=f"stage{stage + 1}_pool")(x)
    x = keras.layers.GlobalAveragePooling2D(name="pool")(x)
    x = keras.layers.Dense(feature_dim, activation="relu", name="features")(x)
    outputs = keras.layers.Dense(num_classes, name="logits")(x)
    return keras.Model(inputs, outputs, name="shapes_feature_classifier")


def shapes_feature_extractor(cache_dir=None, image_size=32, num_images=8192, epochs=12,
                             batch_size=64, width=32, seed=0, verbose=0):
    """Features of a classifier trained on `load_shapes_classification`, cached.

    The offline substitute for InceptionV3: the first call trains
    `build_shapes_feature_classifier` to tell the four shapes apart (12
    epochs, about 100 s on 2 cores: held-out accuracy 0.999, and 99% of real
    test images get a top probability >= 0.9, against 0.978 and 82% after 4
    epochs). Its 128-d "features" layer (the penultimate), rescaled so that
    real images' features have root-mean-square 1, embeds images; the whole
    classifier is kept too, so that the generative recipes can count the
    samples it recognises. Both are saved to
    `<cache_dir>/shapes_features_<settings>.keras` and
    `<cache_dir>/shapes_classifier_<settings>.keras`, and later calls with the
    same settings load them. Scores on these features are only comparable
    between runs that use the same cached model.

    Args:
        cache_dir: str, default `kerasvision.backbones.kerasvision_cache_dir()`
            (`$KERAS_HOME/kerasvision`, `~/.keras/kerasvision` when unset).
        image_size: int, multiple of 8, the classifier's input side (images of
            other sizes are resized).
        num_images, epochs, batch_size, width, seed: training settings (part of
            the cache file name).
        verbose: int, `fit` verbosity; > 0 also prints the held-out accuracy.

    Returns:
        A `FeatureExtractor` with `trained` (bool: trained by this call),
        `accuracy` (held-out accuracy, or None when loaded from the cache),
        `path` (the cache file) and `classifier` (the whole classifier,
        images `[N, S, S, 3]` in [0, 1] -> logits of the four shapes, cached
        beside it) attributes.
    """
    image_size = check_int("image_size", image_size, minimum=16)
    num_images = check_int("num_images", num_images, minimum=1)
    epochs = check_int("epochs", epochs, minimum=1)
    batch_size = check_int("batch_size", batch_size, minimum=1)
    width = check_int("width", width, minimum=1)
    seed = check_seed(seed)
    cache_dir = os.fspath(cache_dir) if cache_dir is not None else kerasvision_cache_dir()
    path = os.path.join(
        cache_dir,
        f"shapes_features_s{image_size}_n{num_images}_e{epochs}_w{width}_seed{seed}.keras",
    )
    classifier_path = path.replace("shapes_features_", "shapes_classifier_")
    accuracy, trained = None, False
    if os.path.exists(path) and os.path.exists(classifier_path):
        features = keras.saving.load_model(path, safe_mode=True)
        classifier = keras.saving.load_model(classifier_path, safe_mode=True)
    else:
        # float32 whatever the run's policy: features rounded to bfloat16 would
        # make FID/KID depend on the machine the extractor was trained on.
        policy = keras.mixed_precision.global_policy()
        keras.mixed_precision.set_global_policy("float32")
        try:
            classifier, features, accuracy = _train_extractor(
                image_size, num_images, epochs, batch_size, width, seed, verbose)
        finally:
            keras.mixed_precision.set_global_policy(policy)
        if verbose:
            print(f"shapes feature classifier: held-out accuracy {accuracy:.3f}, saved to {path}")
        os.makedirs(cache_dir, exist_ok=True)
        # Write then rename: a concurrent reader never sees half a file.
        for model, final in ((classifier, classifier_path), (features, path)):
            temporary = f"{final}.{os.getpid()}.tmp.keras"
            model.save(temporary)
            os.replace(temporary, final)
        trained = True
    extractor = FeatureExtractor(features, image_size, preprocessing="unit", name="shapes_cnn")
    extractor.trained, extractor.accuracy, extractor.path = trained, accuracy, path
    extractor.classifier = classifier
    return extractor


def _train_extractor(image_size, num_images, epochs, batch_size, width, seed, verbose):
    """Trains the shapes classifier; returns it, its RMS-1 feature model and held-out accuracy."""
    keras.utils.set_random_seed(seed)
    classifier = build_shapes_feature_classifier(image_size, width=width)
    # Scale to [0, 1] outside the model: the extractor applies the same
    # "unit" preprocessing at feature time.
    train = load_shapes_classification("train", num_images, image_size, seed)
    train = train.map(lambda x, y: (x / 255.0, y)).shuffle(4096, seed=seed).batch(batch_size)
    classifier.compile(
        keras.optimizers.Adam(1e-3),
        keras.losses.SparseCategoricalCrossentropy(from_logits=True),
        metrics=["accuracy"],
    )
    classifier.fit(train, epochs=epochs, shuffle=False, verbose=verbose)  # the dataset shuffles
    validation = load_shapes_classification(
        "validation", min(1024, num_images), image_size, seed
    ).map(lambda x, y: (x / 255.0, y)).batch(256)
    accuracy = float(classifier.evaluate(validation, verbose=0, return_dict=True)["accuracy"])
    # ReLU features have an arbitrary scale, which the cubic KID kernel
    # raises to the third power: rescale so real images' features have
    # root-mean-square 1, about the scale of InceptionV3's pool features.
    pooled = classifier.get_layer("features").output
    raw = keras.Model(classifier.inputs, pooled)
    values = np.concatenate([np.asarray(raw(x, training=False)) for x, _ in validation])
    scale = float(np.sqrt(np.mean(values**2))) or 1.0
    features = keras.Model(
        classifier.inputs,
        keras.layers.Rescaling(1.0 / scale, name="features_rms1")(pooled),
        name="shapes_features",
    )
    return classifier, features, accuracy
