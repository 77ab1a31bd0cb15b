"""Every segmenter builds and trains on every registered backbone.

One training step per (segmenter, backbone) pair at 64 px (96 px for
InceptionV3, whose unpadded stem needs at least 75), random weights, narrow
heads. MobileNetV2, the lightest, runs by default (about 6 s a pair here,
most of it the eager step); every other backbone is marked slow.
"""

import keras
import numpy as np
import pytest

from kerasvision.backbones import BACKBONES
from kerasvision.models.deeplab import build_deeplabv3plus
from kerasvision.models.fcn import build_fcn
from kerasvision.models.unet import build_unet

NUM_CLASSES = 3
BATCH = 2
DEFAULT_BACKBONES = ("mobilenetv2",)


def _input_size(backbone):
    # The smallest multiple of 32 at or above the backbone's minimum side.
    return max(64, -(-BACKBONES[backbone].min_size // 32) * 32)


SEGMENTERS = {
    "fcn8s": lambda backbone, shape: build_fcn(
        NUM_CLASSES, shape, backbone=backbone, variant="8s", weights=None, fc_units=16
    ),
    "unet": lambda backbone, shape: build_unet(
        NUM_CLASSES, shape, backbone=backbone, weights=None, decoder_filters=(16, 8, 8, 8, 8)
    ),
    "deeplabv3plus": lambda backbone, shape: build_deeplabv3plus(
        NUM_CLASSES, shape, backbone=backbone, weights=None, aspp_filters=16,
        atrous_rates=(1, 2, 3), decoder_filters=16, low_level_filters=8,
    ),
}


def _pairs():
    for backbone in sorted(BACKBONES):
        marks = () if backbone in DEFAULT_BACKBONES else (pytest.mark.slow,)
        for segmenter in SEGMENTERS:
            yield pytest.param(segmenter, backbone, marks=marks, id=f"{segmenter}-{backbone}")


@pytest.mark.parametrize("segmenter, backbone", _pairs())
def test_segmenter_trains_one_step_on_backbone(segmenter, backbone):
    size = _input_size(backbone)
    model = SEGMENTERS[segmenter](backbone, (size, size, 3))
    model.compile(
        optimizer=keras.optimizers.Adam(1e-3),
        loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
        # Eager: tracing and optimising the graph of a step costs ~30 s here
        # for one step that runs in ~3 s.
        run_eagerly=True,
    )
    rng = np.random.default_rng(0)
    images = rng.uniform(0, 255, (BATCH, size, size, 3)).astype("float32")
    masks = rng.integers(0, NUM_CLASSES, (BATCH, size, size)).astype("int32")
    before = [weight.numpy().copy() for weight in model.trainable_weights]
    loss = model.train_on_batch(images, masks)
    assert np.isfinite(loss) and loss > 0
    # The gradient reached the backbone: some of its weights moved.
    backbone_weights = {id(weight) for weight in model.get_layer("backbone").trainable_weights}
    moved = [
        not np.array_equal(old, weight.numpy())
        for old, weight in zip(before, model.trainable_weights)
        if id(weight) in backbone_weights
    ]
    assert any(moved), f"{segmenter} on {backbone}: the backbone did not train"
    logits = keras.ops.convert_to_numpy(model(images, training=False))
    assert logits.shape == (BATCH, size, size, NUM_CLASSES)
    assert np.all(np.isfinite(logits))
