"""Non-finite losses: training stops at the first one with a clear message, checkpoints intact;
under loss scaling (mixed_float16) the bad step is skipped instead."""

import numpy as np
import pytest
import keras

from kerasvision.models.autoencoder import VAE, build_conv_decoder, build_conv_encoder
from kerasvision.models.gan import GAN, build_dcgan_discriminator, build_dcgan_generator
from kerasvision.models.unet import build_unet
from kerasvision.tasks.segmentation import compile_segmenter
from kerasvision.training import NonFiniteLossError, StopOnNonFiniteLoss, make_callbacks


def _segmentation_data(count=8, size=32, nan_index=None):
    rng = np.random.default_rng(0)
    images = rng.uniform(0, 255, (count, size, size, 3)).astype("float32")
    masks = (images[..., 0] > 128).astype("int32")
    if nan_index is not None:
        images[nan_index] = np.nan
    return images, masks


def test_segmenter_stops_at_the_nan_batch_and_keeps_the_best_checkpoint(tmp_path):
    model = build_unet(2, (32, 32, 3), filters=4, depth=2)
    compile_segmenter(model, 2, "ce", 1e-3)
    images, masks = _segmentation_data(nan_index=6)
    clean_images, clean_masks = _segmentation_data()
    # Epoch 1 trains on clean data and saves the best checkpoint; epoch 2 meets the NaN.
    model.fit(clean_images, clean_masks, batch_size=4, epochs=1, verbose=0,
              validation_data=(clean_images, clean_masks),
              callbacks=make_callbacks(str(tmp_path), "val_loss", "min"))
    saved = [w.numpy().copy() for w in model.weights]
    with pytest.raises(NonFiniteLossError, match=r"loss became nan at epoch 2, step 2"):
        model.fit(images, masks, batch_size=4, epochs=2, initial_epoch=1, shuffle=False,
                  verbose=0, validation_data=(clean_images, clean_masks),
                  callbacks=make_callbacks(str(tmp_path), "val_loss", "min"))
    restored = build_unet(2, (32, 32, 3), filters=4, depth=2)
    restored.load_weights(str(tmp_path / "best.weights.h5"))
    for before, after in zip(saved, restored.weights):
        np.testing.assert_array_equal(before, after.numpy())


def _gan():
    shape = (16, 16, 3)
    return GAN(build_dcgan_generator(8, shape, (8, 4)), build_dcgan_discriminator(shape, (4, 8)),
               seed=0)


def _vae():
    shape = (16, 16, 3)
    return VAE(build_conv_encoder(shape, 4, filters=(4, 8), variational=True),
               build_conv_decoder(4, shape, filters=(8, 4)), seed=0)


@pytest.mark.parametrize("make_trainer, losses", [
    (_gan, r"(d_loss|g_loss)"), (_vae, r"(loss|kl_loss|reconstruction_loss)"),
], ids=["gan", "vae"])
def test_trainers_stop_naming_the_non_finite_loss(make_trainer, losses):
    trainer = make_trainer()
    trainer.compile()
    images = np.random.default_rng(0).uniform(-1, 1, (8, 16, 16, 3)).astype("float32")
    images[5] = np.inf
    with pytest.raises(NonFiniteLossError, match=rf"{losses} became (nan|inf) at epoch 1, step 2"):
        trainer.fit(images, batch_size=4, epochs=1, shuffle=False, verbose=0,
                    callbacks=[StopOnNonFiniteLoss()])


INITIAL_SCALE = 2.0**8  # small enough that no finite step overflows float16


def _scaled_model():
    inputs = keras.Input((3,))
    model = keras.Model(inputs, keras.layers.Dense(1, dtype="mixed_float16")(inputs))
    model.compile(keras.optimizers.LossScaleOptimizer(keras.optimizers.SGD(0.01),
                                                      initial_scale=INITIAL_SCALE), "mse")
    return model


def test_loss_scaling_skips_a_nan_batch_instead_of_stopping():
    model = _scaled_model()
    x = np.ones((8, 3), "float32")
    x[4] = np.nan  # the third batch of two
    weights_after = []

    class Record(keras.callbacks.Callback):
        def on_train_batch_end(self, batch, logs=None):
            weights_after.append(model.layers[1].kernel.numpy().copy())

    model.fit(x, np.ones((8, 1)), batch_size=2, shuffle=False, verbose=0,
              callbacks=[StopOnNonFiniteLoss(), Record()])
    np.testing.assert_array_equal(weights_after[2], weights_after[1])  # the NaN step: skipped
    assert not np.array_equal(weights_after[3], weights_after[2])  # training went on
    assert np.isfinite(weights_after[-1]).all()
    assert float(model.optimizer.dynamic_scale) == INITIAL_SCALE / 2


def test_loss_scaling_stops_when_non_finite_steps_persist():
    model = _scaled_model()
    x = np.full((64, 3), np.nan, "float32")  # each skipped step halves the scale: 2^8 -> 0.5
    with pytest.raises(NonFiniteLossError, match=r"loss scale fell to 0.5 at epoch 1, step 9"):
        model.fit(x, np.ones((64, 1)), batch_size=2, shuffle=False, verbose=0,
                  callbacks=[StopOnNonFiniteLoss()])
