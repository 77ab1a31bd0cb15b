"""A long run over a small dataset keeps its resident memory flat."""

import tensorflow as tf
import keras

from kerasvision import data
from kerasvision.models.unet import build_unet
from kerasvision.tasks.segmentation import compile_segmenter
from kerasvision.training import make_callbacks

EPOCHS = 12


def resident_bytes():
    """This process's resident set size, from /proc (Linux)."""
    with open("/proc/self/status") as handle:
        for line in handle:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    raise RuntimeError("VmRSS not found in /proc/self/status")


def test_resident_memory_stays_flat_over_many_epochs(tmp_path):
    images, masks = data.make_shapes_scenes(16, image_size=32, seed=1)
    pairs = tf.data.Dataset.from_tensor_slices((images, masks))
    augmenter = data.build_segmentation_augmenter(flip=True, zoom=0.1, seed=0)
    train = data.make_segmentation_pipeline(pairs, 8, training=True, augmenter=augmenter, seed=0)
    validation = data.make_segmentation_pipeline(pairs, 8, training=False)
    model = build_unet(5, (32, 32, 3), filters=4, depth=2)
    compile_segmenter(model, 5, "ce+dice", 1e-3)
    measured = {}

    class MeasureMemory(keras.callbacks.Callback):
        # After the first epoch the train and eval functions are traced:
        # growth from there on would be a leak.
        def on_epoch_end(self, epoch, logs=None):
            if epoch in (0, EPOCHS - 1):
                measured[epoch] = resident_bytes()

    # Every per-epoch mechanism runs: pipeline re-keying, backups, checkpoints, CSV log.
    callbacks = make_callbacks(str(tmp_path), "val_mean_iou", "max") + [MeasureMemory()]
    model.fit(train, validation_data=validation, epochs=EPOCHS, callbacks=callbacks, verbose=0)
    first, last = measured[0], measured[EPOCHS - 1]
    growth = (last - first) / first
    assert growth <= 0.10, f"resident memory grew {growth:.1%}: {first / 2**20:.0f} MiB -> {last / 2**20:.0f} MiB"
