import numpy as np
import pytest
import keras
from keras import layers

from kerasvision.models.classifier import (
    TrainingAugmentation,
    build_cnn_classifier,
    build_lenet5,
    build_transfer_classifier,
    freeze_batch_norm,
)
from kerasvision.models.convolutionalize import convolutionalize
from tests.helpers import assert_config_round_trip, assert_keras_file_round_trip

SIZE = 32


def _images(count=2, size=SIZE, seed=0):
    return np.random.default_rng(seed).uniform(0, 255, (count, size, size, 3)).astype("float32")


def _tiny_cnn(**kwargs):
    arguments = {"num_classes": 3, "input_shape": (SIZE, SIZE, 3), "filters": (4, 8), "dense_units": (8,)}
    return build_cnn_classifier(**{**arguments, **kwargs})


def _softmax(logits):
    return keras.ops.convert_to_numpy(keras.ops.softmax(logits, axis=-1))


# ----------------------------------------------------------------------------
# Sequential CNN and LeNet-5
# ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    "pooling, head, pool_class, head_class",
    [
        ("max", "flatten", layers.MaxPooling2D, layers.Flatten),
        ("average", "global_average", layers.AveragePooling2D, layers.GlobalAveragePooling2D),
        ("max", "global_max", layers.MaxPooling2D, layers.GlobalMaxPooling2D),
    ],
)
def test_cnn_classifier_pooling_and_head(pooling, head, pool_class, head_class):
    model = _tiny_cnn(pooling=pooling, head=head, batch_norm=True)
    assert isinstance(model, keras.Sequential)
    logits = model(_images(), training=False)
    assert logits.shape == (2, 3) and logits.dtype == "float32"
    assert isinstance(model.get_layer("block2_pool"), pool_class)
    assert isinstance(model.layers[model.layers.index(model.get_layer("block2_pool")) + 1], head_class)
    assert model.get_layer("block2_pool").output.shape == (None, 8, 8, 8)
    assert model.get_layer("block1_bn2") is not None


def test_cnn_classifier_counts_parameters_by_hand():
    model = _tiny_cnn(convs_per_block=1, dropout=0.0)
    convs = (3 * 9 + 1) * 4 + (4 * 9 + 1) * 8
    dense = (8 * 8 * 8 + 1) * 8 + (8 + 1) * 3  # Flatten of the 8x8x8 map
    assert model.count_params() == convs + dense


def test_lenet5_layout_follows_the_paper():
    model = build_lenet5(10)
    shapes = {name: model.get_layer(name).output.shape[1:] for name in ("c1", "s2", "c3", "s4", "c5", "f6")}
    assert shapes == {
        "c1": (28, 28, 6), "s2": (14, 14, 6), "c3": (10, 10, 16),
        "s4": (5, 5, 16), "c5": (1, 1, 120), "f6": (84,),
    }
    # 61,706 on the paper's grayscale input; RGB adds 2 x 25 weights per C1 map.
    assert model.count_params() == 61_706 + 2 * 25 * 6
    assert model(_images(), training=False).shape == (2, 10)


def test_augmentation_runs_only_in_training():
    augmentation = TrainingAugmentation([layers.RandomFlip("horizontal", seed=1)])
    images = _images(8)
    np.testing.assert_array_equal(augmentation(images), images)
    flipped = keras.ops.convert_to_numpy(augmentation(images, training=True))
    assert not np.allclose(flipped, images)
    model = _tiny_cnn(augmentation=[layers.RandomFlip("horizontal", seed=1)])
    assert isinstance(model.layers[0], TrainingAugmentation)
    # Called without `training`, the model predicts on the images as given.
    np.testing.assert_allclose(model(images), model(images, training=False), atol=1e-6)
    assert_config_round_trip(augmentation)


def test_keras_file_round_trip_with_augmentation(tmp_path):
    model = _tiny_cnn(augmentation=keras.layers.Pipeline([layers.RandomRotation(0.1, seed=0)]))
    restored = assert_keras_file_round_trip(model, _images(), tmp_path / "cnn.keras")
    assert isinstance(restored.layers[0], TrainingAugmentation)


def test_one_fit_step_trains_every_variable():
    keras.utils.set_random_seed(0)
    model = _tiny_cnn(batch_norm=True)
    model.compile(
        keras.optimizers.Adam(1e-2),
        keras.losses.SparseCategoricalCrossentropy(from_logits=True),
        metrics=[keras.metrics.SparseCategoricalAccuracy(name="accuracy")],
    )
    before = [keras.ops.convert_to_numpy(v).copy() for v in model.trainable_variables]
    history = model.fit(_images(4), np.array([0, 1, 2, 0]), epochs=1, verbose=0)
    assert set(history.history) == {"loss", "accuracy"}
    assert np.isfinite(history.history["loss"][0])
    for variable, old in zip(model.trainable_variables, before):
        assert not np.allclose(keras.ops.convert_to_numpy(variable), old), variable.path


def test_mixed_precision_keeps_float32_logits():
    keras.mixed_precision.set_global_policy("mixed_bfloat16")
    model = _tiny_cnn()
    assert model(_images(), training=False).dtype == "float32"
    assert model.get_layer("block1_conv1").compute_dtype == "bfloat16"
    assert convolutionalize(model)(_images(1, 48)).dtype == "float32"


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"num_classes": 1}, "num_classes.*>= 2.*num_classes=1"),
        ({"pooling": "min"}, r"`pooling` must be one of \['average', 'max'\]; received pooling='min'"),
        ({"head": "avg"}, "`head` must be one of"),
        ({"filters": ()}, "`filters` must hold at least one"),
        ({"dropout": 1.5}, "dropout"),
        ({"augmentation": "flip"}, "`augmentation` must be None, a Keras layer"),
        ({"input_shape": (32, 32, 1)}, "3 channels"),
        ({"input_shape": (None, None, 3)}, "head`='flatten' needs a fixed input size"),
    ],
)
def test_cnn_bad_arguments(kwargs, match):
    with pytest.raises(ValueError, match=match):
        _tiny_cnn(**kwargs)


def test_input_too_small_for_the_poolings_names_the_minimum():
    with pytest.raises(ValueError, match=r"input_shape` is too small for 4 poolings.* >= 16; "
                                         r"received input_shape=\(8, 8, 3\)"):
        build_cnn_classifier(3, (8, 8, 3), filters=(4, 4, 4, 4))
    assert build_cnn_classifier(3, (16, 16, 3), filters=(4, 4, 4, 4)).output_shape == (None, 3)
    with pytest.raises(ValueError, match=r"too small for LeNet-5.* >= 32"):
        build_lenet5(10, (28, 28, 3))
    with pytest.raises(ValueError, match="num_classes"):
        build_lenet5(1)


# ----------------------------------------------------------------------------
# Transfer classifier
# ----------------------------------------------------------------------------


def _trainable_names(model):
    return {variable.path.split("/")[-2] for variable in model.trainable_variables}


def test_feature_extraction_freezes_the_backbone():
    model = build_transfer_classifier("vgg16", 4, (SIZE, SIZE, 3), weights=None, dense_units=(8,))
    assert model(_images(), training=False).shape == (2, 4)
    assert model.get_layer("backbone").trainable_weights == []
    assert _trainable_names(model) == {"fc1", "predictions"}


def test_fine_tuning_unfreezes_the_top_blocks():
    model = build_transfer_classifier(
        "vgg16", 4, (SIZE, SIZE, 3), weights=None, mode="fine_tuning", finetune_blocks=1
    )
    assert _trainable_names(model) == {"block5_conv1", "block5_conv2", "block5_conv3", "predictions"}


def test_pretrained_backbone_keeps_batchnorm_in_inference_mode(monkeypatch):
    import kerasvision.models.classifier as classifier

    # Stand-in for ImageNet weights (offline): the builder sees a pretrained
    # backbone, the network keeps its random initialisation.
    build_backbone = classifier.build_backbone
    monkeypatch.setattr(classifier, "resolve_weights", lambda backbone, weights: "pretrained.h5")
    monkeypatch.setattr(
        classifier, "build_backbone", lambda backbone, shape, weights, name: build_backbone(backbone, shape, None, name)
    )
    model = build_transfer_classifier(
        "resnet50", 3, (SIZE, SIZE, 3), weights="imagenet", mode="fine_tuning", finetune_blocks=1, dropout=0.0
    )
    trainable = _trainable_names(model)
    assert "conv5_block3_3_conv" in trainable and "conv4_block6_3_conv" not in trainable
    assert not [name for name in trainable if name.endswith("_bn")]
    images = _images(4)
    # `fit` calls the model with training=True; batch statistics would differ
    # from the moving averages, so equal outputs show BatchNorm in inference mode.
    np.testing.assert_allclose(model(images, training=True), model(images, training=False), atol=1e-5)


def test_random_backbone_batchnorm_learns_its_statistics():
    model = build_transfer_classifier("resnet50", 3, (SIZE, SIZE, 3), weights=None,
                                      mode="fine_tuning", dropout=0.0)
    trainable = _trainable_names(model)
    assert "conv1_bn" in trainable and "conv5_block3_3_bn" in trainable
    batch_norm = model.get_layer("backbone").get_layer("resnet50_features").get_layer("conv1_bn")
    before = keras.ops.convert_to_numpy(batch_norm.moving_mean).copy()
    images = _images(4)
    # Training mode normalises with the batch's statistics and moves the averages.
    assert not np.allclose(model(images, training=True), model(images, training=False), atol=1e-3)
    assert not np.allclose(keras.ops.convert_to_numpy(batch_norm.moving_mean), before)


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"finetune_blocks": 6, "mode": "fine_tuning"}, r"`finetune_blocks` must be an integer from 1 to 5: vgg16 has 5 stages \(block1.*received finetune_blocks=6"),
        ({"finetune_blocks": 0}, "finetune_blocks=0"),
        ({"mode": "partial"}, "`mode` must be one of"),
        ({"num_classes": 1}, "num_classes"),
        ({"backbone": "vgg11"}, "backbone"),
        ({"input_shape": (16, 16, 3)}, ">= 32"),
    ],
)
def test_transfer_bad_arguments(kwargs, match):
    arguments = {"backbone": "vgg16", "num_classes": 3, "input_shape": (SIZE, SIZE, 3), "weights": None}
    with pytest.raises(ValueError, match=match):
        build_transfer_classifier(**{**arguments, **kwargs})


def test_freeze_batch_norm_reaches_nested_models():
    inner = keras.Sequential([keras.Input((4,)), layers.Dense(3), layers.BatchNormalization()])
    outer = keras.Sequential([keras.Input((4,)), inner, layers.BatchNormalization(), layers.Dense(2)])
    assert freeze_batch_norm(outer) == 2
    assert [layer.trainable for layer in (inner.layers[1], outer.layers[1])] == [False, False]
    assert outer.layers[-1].trainable
