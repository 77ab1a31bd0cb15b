import numpy as np
import pytest
import keras

from kerasvision.models.unet import build_unet
from tests.helpers import assert_keras_file_round_trip


def test_scratch_unet_follows_the_paper_layout():
    model = build_unet(3, (32, 32, 3), depth=3, filters=4)
    assert model(np.zeros((2, 32, 32, 3), "float32")).shape == (2, 32, 32, 3)
    assert model.get_layer("bottleneck_conv1").filters == 4 * 2**3
    up = model.get_layer("decoder1_up_transpose")
    assert up.kernel_size == (2, 2) and up.strides == (2, 2)
    # Each expanding stage concatenates the contracting features of its size.
    assert model.get_layer("decoder2_concat").output.shape[-1] == 2 * 8


@pytest.mark.parametrize("backbone", ["vgg16", "resnet50"])
def test_backbone_unet_shapes(backbone):
    model = build_unet(4, (64, 64, 3), backbone=backbone, weights=None, decoder_filters=(8, 8, 8, 8, 8))
    assert model(np.zeros((1, 64, 64, 3), "float32")).shape == (1, 64, 64, 4)
    assert model.get_layer("backbone") is not None


def test_resize_upsampling():
    model = build_unet(2, (32, 32, 3), depth=2, filters=4, upsampling="resize")
    assert "decoder1_up_conv" in {layer.name for layer in model.layers}


def test_loss_falls_on_a_tiny_task():
    keras.utils.set_random_seed(0)
    model = build_unet(2, (32, 32, 3), depth=2, filters=8)
    rng = np.random.default_rng(0)
    images = rng.uniform(0, 80, (8, 32, 32, 3)).astype("float32")
    masks = np.zeros((8, 32, 32), "int32")
    for index in range(8):
        top, left = rng.integers(0, 16, 2)
        images[index, top : top + 12, left : left + 12] += 150
        masks[index, top : top + 12, left : left + 12] = 1
    model.compile(keras.optimizers.Adam(3e-3), keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    history = model.fit(images, masks, epochs=10, batch_size=4, verbose=0)
    assert history.history["loss"][-1] < 0.5 * history.history["loss"][0]


def test_keras_file_round_trip(tmp_path):
    model = build_unet(3, (32, 32, 3), depth=2, filters=4)
    images = np.random.default_rng(1).uniform(0, 255, (2, 32, 32, 3)).astype("float32")
    assert_keras_file_round_trip(model, images, tmp_path / "unet.keras")


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"input_shape": (34, 34, 3)}, "multiples of the network stride 4"),
        ({"depth": 0}, "depth"),
        ({"num_classes": 1}, "num_classes"),
        ({"backbone": "vgg11"}, "backbone"),
        ({"backbone": "vgg16", "input_shape": (48, 48, 3)}, "stride 32"),
        ({"backbone": "vgg16", "decoder_filters": (8, 8)}, "decoder_filters"),
    ],
)
def test_bad_arguments(kwargs, match):
    arguments = {"num_classes": 3, "input_shape": (32, 32, 3), "depth": 2, "filters": 4, "weights": None}
    with pytest.raises(ValueError, match=match):
        build_unet(**{**arguments, **kwargs})
