"""Resident memory, measured alone: a long training run and 500 served requests stay flat.

A fresh interpreter (nothing inflated by earlier tests) trains a small U-Net
for 240 steps with every per-epoch mechanism (pipeline re-keying, backups,
best checkpoint, CSV log), exports it, reloads the export and serves 500
requests alternating `serving_default` and `serving_bytes`. Resident memory
is read from /proc after each epoch and every 50 requests. After warm-up
(the first epochs trace the functions; the first requests trace and load
the signatures) it may grow by at most `GROWTH_BOUND_MIB`.
"""

import json

import pytest

from tests.helpers import run_in_fresh_process

GROWTH_BOUND_MIB = 32
PROBE = r'''
import io, json, tempfile
import numpy as np, tensorflow as tf, keras
from PIL import Image
from kerasvision import data
from kerasvision.export import export_image_model
from kerasvision.models.unet import build_unet
from kerasvision.tasks.segmentation import compile_segmenter
from kerasvision.training import make_callbacks

def resident_mib():
    with open("/proc/self/status") as handle:
        for line in handle:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    raise RuntimeError("VmRSS not found")

keras.utils.set_random_seed(0)
images, masks = data.make_shapes_scenes(32, image_size=32, seed=1)
pairs = tf.data.Dataset.from_tensor_slices((images, masks))
augmenter = data.build_segmentation_augmenter(flip=True, zoom=0.1, seed=0)
train = data.make_segmentation_pipeline(pairs, 4, training=True, augmenter=augmenter, seed=0)
validation = data.make_segmentation_pipeline(pairs, 8, training=False)
model = build_unet(5, (32, 32, 3), filters=4, depth=2)
compile_segmenter(model, 5, "ce+dice", 1e-3)
run_dir = tempfile.mkdtemp()
training_curve = []

class MeasureMemory(keras.callbacks.Callback):
    def on_epoch_end(self, epoch, logs=None):
        training_curve.append(round(resident_mib(), 1))

model.fit(train, validation_data=validation, epochs=30, verbose=0,
          callbacks=make_callbacks(run_dir, "val_mean_iou", "max") + [MeasureMemory()])
steps = int(model.optimizer.iterations.numpy())

loaded = tf.saved_model.load(export_image_model(model, tempfile.mkdtemp()))
rng = np.random.default_rng(0)
serving_curve = []
for request in range(1, 501):
    batch = rng.integers(0, 256, (int(rng.integers(1, 5)), 32, 32, 3), dtype=np.uint8)
    if request % 2:
        loaded.signatures["serving_default"](images=tf.constant(batch))
    else:
        encoded = []
        for image in batch:
            buffer = io.BytesIO()
            Image.fromarray(image).save(buffer, format="PNG")
            encoded.append(buffer.getvalue())
        loaded.signatures["serving_bytes"](image_bytes=tf.constant(encoded))
    if request % 50 == 0:
        serving_curve.append(round(resident_mib(), 1))
print(json.dumps({"steps": steps, "training_mib": training_curve, "serving_mib": serving_curve}))
'''


@pytest.mark.slow  # about 30 s on 2 cores: 240 steps and 500 requests
def test_resident_memory_stays_flat_over_training_and_serving():
    result = json.loads(run_in_fresh_process(PROBE, timeout=600).strip().splitlines()[-1])
    assert result["steps"] >= 200
    training, serving = result["training_mib"], result["serving_mib"]
    assert len(training) == 30 and len(serving) == 10
    # Warm-up: tracing in the first 3 epochs, loading and tracing in the first 100 requests.
    training_growth = max(training[3:]) - training[3]
    serving_growth = max(serving[2:]) - serving[1]
    assert training_growth <= GROWTH_BOUND_MIB, result
    assert serving_growth <= GROWTH_BOUND_MIB, result
    print(json.dumps(result))
