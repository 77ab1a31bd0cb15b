import numpy as np
import pytest
import keras
import tensorflow as tf

from kerasvision.export import export_diffusion_sampler
from kerasvision.models.diffusion import (
    DiffusionModel,
    SinusoidalTimeEmbedding,
    build_denoiser,
    check_betas,
    cosine_beta_schedule,
    ddim_step,
    ddpm_step,
    linear_beta_schedule,
    q_sample,
    sample_loop,
    sampling_timesteps,
    schedule_terms,
)
from tests.helpers import assert_config_round_trip, run_in_fresh_process

SHAPE = (16, 16, 3)


def tiny_network():
    """A few-layer stand-in for the U-Net: the trainer takes any [x_t, t] -> eps
    network, and tracing the real U-Net's train step alone takes ~10 s here."""
    noisy = keras.Input(SHAPE, name="noisy_images")
    timesteps = keras.Input((), dtype="int32", name="timesteps")
    shift = keras.layers.Dense(3, name="time")(SinusoidalTimeEmbedding(8)(timesteps))
    x = keras.layers.Conv2D(3, 3, padding="same", name="conv")(noisy)
    x = keras.layers.Add()([x, keras.layers.Reshape((1, 1, 3))(shift)])
    return keras.Model([noisy, timesteps], x, name="tiny_denoiser")


def tiny_model(**kwargs):
    kwargs.setdefault("timesteps", 20)
    kwargs.setdefault("seed", 3)
    return DiffusionModel(tiny_network(), **kwargs)


def images(count=4, seed=0):
    return np.random.default_rng(seed).uniform(-1, 1, (count, *SHAPE)).astype("float32")


def numpy_values(variables):
    return [np.array(v.numpy()) for v in variables]


# ---------------------------------------------------------------------------
# Schedules and single steps, against numpy closed forms.
# ---------------------------------------------------------------------------


def test_linear_schedule_matches_ddpm_closed_form():
    betas = linear_beta_schedule(1000)
    assert betas.shape == (1000,)
    assert betas[0] == pytest.approx(1e-4) and betas[-1] == pytest.approx(0.02)
    np.testing.assert_allclose(np.diff(betas), (0.02 - 1e-4) / 999)
    terms = schedule_terms(betas)
    # alpha_bar_t = prod (1 - beta_s), evaluated in log space independently.
    np.testing.assert_allclose(terms["alphas_cumprod"], np.exp(np.cumsum(np.log1p(-betas))), rtol=1e-10)
    # With linear betas, log alpha_bar_T ~ -(T * mean beta) - ...: the DDPM
    # endpoint is nearly pure noise (alpha_bar_T ~ 4e-5).
    assert 3e-5 < terms["alphas_cumprod"][-1] < 5e-5
    t = np.arange(1, 1000)
    expected_variance = betas[t] * (1 - terms["alphas_cumprod"][t - 1]) / (1 - terms["alphas_cumprod"][t])
    np.testing.assert_allclose(terms["posterior_variance"][1:], expected_variance)
    assert terms["posterior_variance"][0] == 0.0  # the first step's posterior is x_0 itself


def test_linear_schedule_scales_with_timesteps():
    # Scaled endpoints keep x_T pure noise whatever T (alpha_bar_T ~ 4e-5 at T=1000).
    betas = linear_beta_schedule(250)
    assert betas[0] == pytest.approx(4e-4) and betas[-1] == pytest.approx(0.08)
    assert schedule_terms(betas)["alphas_cumprod"][-1] < 1e-4
    assert linear_beta_schedule(10)[-1] == pytest.approx(0.999)
    with pytest.raises(ValueError, match="beta_end"):
        linear_beta_schedule(10, beta_start=0.1, beta_end=0.05)


def test_cosine_schedule_matches_its_alpha_bar():
    timesteps, s = 50, 0.008
    betas = cosine_beta_schedule(timesteps)
    f = lambda t: np.cos((t / timesteps + s) / (1 + s) * np.pi / 2) ** 2  # noqa: E731
    expected = f(np.arange(1, timesteps + 1)) / f(0)
    # The last beta is clipped at 0.999, so alpha_bar_T is only close to f's.
    np.testing.assert_allclose(schedule_terms(betas)["alphas_cumprod"][:-1], expected[:-1], rtol=1e-10)
    assert betas[-1] == pytest.approx(0.999)
    assert np.all(np.diff(betas) >= 0)


@pytest.mark.parametrize(
    "betas, match",
    [
        ([0.1, 0.0, 0.2], "open interval"),
        ([0.1, 1.0], "open interval"),
        ([0.2, 0.1], r"non-decreasing.*betas\[0\]=0.2"),
        ([], "non-empty"),
    ],
)
def test_bad_betas(betas, match):
    with pytest.raises(ValueError, match=match):
        check_betas(betas)
    with pytest.raises(ValueError, match=match):
        DiffusionModel(tiny_network(), betas=betas)


def test_q_sample_and_single_steps_match_numpy():
    rng = np.random.default_rng(0)
    terms = schedule_terms(linear_beta_schedule(1000))
    abar = terms["alphas_cumprod"]
    x0, eps, eps_hat, z = (rng.normal(size=(2, 4, 4, 3)) for _ in range(4))
    t = np.array([10, 700])
    a_t = abar[t][:, None, None, None]
    x_t = np.sqrt(a_t) * x0 + np.sqrt(1 - a_t) * eps
    np.testing.assert_allclose(q_sample(x0, abar[t], eps).numpy(), x_t, rtol=1e-6)

    # DDPM (algorithm 2): mean = (x_t - beta_t / sqrt(1 - abar_t) eps) / sqrt(alpha_t).
    beta_t = terms["betas"][t][:, None, None, None]
    a_prev = terms["alphas_cumprod_prev"][t][:, None, None, None]
    mean = (x_t - beta_t / np.sqrt(1 - a_t) * eps_hat) / np.sqrt(1 - beta_t)
    np.testing.assert_allclose(ddpm_step(x_t, eps_hat, abar[t], abar[t - 1]).numpy(), mean, rtol=1e-6)
    sigma = np.sqrt(terms["posterior_variance"][t])[:, None, None, None]
    np.testing.assert_allclose(
        ddpm_step(x_t, eps_hat, abar[t], abar[t - 1], noise=z).numpy(), mean + sigma * z, rtol=1e-6
    )
    # The posterior-mean form (used with clipping) is the same mean.
    posterior = (terms["posterior_mean_coef1"][t][:, None, None, None]
                 * (x_t - np.sqrt(1 - a_t) * eps_hat) / np.sqrt(a_t)
                 + terms["posterior_mean_coef2"][t][:, None, None, None] * x_t)
    np.testing.assert_allclose(posterior, mean, rtol=1e-8)

    # DDIM with eta = 0 (eq. 12), jumping from t to t - 5.
    a_prev = abar[t - 5][:, None, None, None]
    x0_hat = (x_t - np.sqrt(1 - a_t) * eps_hat) / np.sqrt(a_t)
    deterministic = np.sqrt(a_prev) * x0_hat + np.sqrt(1 - a_prev) * eps_hat
    np.testing.assert_allclose(ddim_step(x_t, eps_hat, abar[t], abar[t - 5]).numpy(), deterministic,
                               rtol=1e-5)
    # DDIM with eta = 1 is the DDPM ancestral step (same mean, same variance).
    np.testing.assert_allclose(
        ddim_step(x_t, eps_hat, abar[t], abar[t - 1], eta=1.0, noise=z).numpy(),
        ddpm_step(x_t, eps_hat, abar[t], abar[t - 1], noise=z).numpy(),
        rtol=1e-4, atol=1e-5,
    )
    # The final step (abar_prev = 1) returns the x0 prediction.
    np.testing.assert_allclose(ddim_step(x_t, eps_hat, abar[t], 1.0).numpy(), x0_hat, rtol=1e-5)


class _OracleNoise(keras.layers.Layer):
    """The exact noise of a dataset holding one image: (x_t - sqrt(abar_t) x*) / sqrt(1 - abar_t)."""

    def __init__(self, target, alphas_cumprod, **kwargs):
        super().__init__(**kwargs)
        self.target = tf.constant(target, tf.float32)
        self.alphas_cumprod = tf.constant(alphas_cumprod, tf.float32)

    def call(self, inputs):
        x_t, t = inputs
        a = tf.reshape(tf.gather(self.alphas_cumprod, t), [-1, 1, 1, 1])
        return (x_t - tf.sqrt(a) * self.target) / tf.sqrt(1.0 - a)


@pytest.mark.parametrize("sampler, steps", [("ddim", 1), ("ddim", 7), ("ddpm", 100)])
def test_samplers_with_the_exact_noise_return_the_data(sampler, steps):
    # With a perfect denoiser of a one-image dataset, every trajectory must
    # end on that image: checks the timestep bookkeeping of the loop.
    alphas_cumprod = schedule_terms(linear_beta_schedule(100))["alphas_cumprod"]
    target = np.random.default_rng(0).uniform(-0.9, 0.9, (1, 4, 4, 3)).astype("float32")
    x_t = keras.Input((4, 4, 3))
    t = keras.Input((), dtype="int32")
    oracle = keras.Model([x_t, t], _OracleNoise(target, alphas_cumprod)([x_t, t]))
    samples = sample_loop(oracle, alphas_cumprod, tf.constant([1, 2], tf.int64), 3, steps,
                          sampler=sampler, clip_denoised=False)
    np.testing.assert_allclose(samples.numpy(), np.repeat(target, 3, axis=0), atol=1e-3)


def test_sampling_timesteps_trailing_spacing():
    np.testing.assert_array_equal(sampling_timesteps(1000, 4), [249, 499, 749, 999])
    np.testing.assert_array_equal(sampling_timesteps(10, 10), np.arange(10))
    with pytest.raises(ValueError, match="steps.*<= the model's training timesteps \\(10\\).*steps=11"):
        sampling_timesteps(10, 11)


# ---------------------------------------------------------------------------
# Network.
# ---------------------------------------------------------------------------


def test_time_embedding_values_and_round_trip():
    layer = SinusoidalTimeEmbedding(8)
    t = np.array([0, 1, 999])
    frequencies = 10000.0 ** (-np.arange(4) / 4)
    expected = np.concatenate([np.sin(t[:, None] * frequencies), np.cos(t[:, None] * frequencies)], -1)
    out = layer(t)
    assert out.shape == (3, 8) and out.dtype == "float32"
    np.testing.assert_allclose(out.numpy(), expected, atol=2e-4)
    assert_config_round_trip(layer)
    with pytest.raises(ValueError, match="dim.*even"):
        SinusoidalTimeEmbedding(7)


def test_denoiser_shapes_and_bad_sizes():
    network = build_denoiser((16, 16, 3), widths=(8, 16), blocks_per_level=1, groups=4)
    out = network([np.zeros((2, 16, 16, 3), "float32"), np.array([0, 19], "int32")])
    assert out.shape == (2, 16, 16, 3) and out.dtype == "float32"
    assert network.get_layer("down0_downsample").strides == (2, 2)
    with pytest.raises(ValueError, match="multiples of the network stride 2"):
        build_denoiser((15, 15, 3), widths=(8, 16))
    with pytest.raises(ValueError, match="widths.*multiples of groups=8"):
        build_denoiser((16, 16, 3), widths=(12,))


def test_epsilon_loss_reaches_every_denoiser_variable():
    # What one optimizer step needs to change every weight: a non-zero
    # gradient everywhere (a zero-initialised output layer would block all).
    keras.utils.set_random_seed(0)
    network = build_denoiser((16, 16, 3), widths=(8, 16), blocks_per_level=1, groups=4)
    rng = np.random.default_rng(0)
    noise = rng.normal(size=(2, 16, 16, 3)).astype("float32")
    noisy = q_sample(images(2), np.array([0.9, 0.1]), noise)
    with tf.GradientTape() as tape:
        predicted = network([noisy, tf.constant([3, 17])], training=True)
        loss = tf.reduce_mean(tf.square(predicted - noise))
    gradients = tape.gradient(loss, network.trainable_variables)
    for variable, gradient in zip(network.trainable_variables, gradients):
        assert gradient is not None and np.any(gradient.numpy() != 0), variable.path


# ---------------------------------------------------------------------------
# Trainer.
# ---------------------------------------------------------------------------


def test_one_jit_step_trains_every_variable_and_moves_ema_by_one_minus_decay():
    keras.utils.set_random_seed(0)
    model = tiny_model(ema_decay=0.9, ema_warmup=False)
    model.compile(keras.optimizers.Adam(1e-3), jit_compile=True)
    # The EMA network is invisible to the optimizer.
    ema_ids = {id(v.value) for v in model.ema_network.weights}
    assert not ema_ids & {id(v.value) for v in model.trainable_variables}
    assert len(model.optimizer.variables) == 2 + 2 * len(model.network.trainable_variables)
    before = numpy_values(model.network.trainable_variables)
    ema_before = numpy_values(model.ema_network.weights)
    history = model.fit(images(), batch_size=4, epochs=1, verbose=0)
    assert set(history.history) == {"loss"} and np.isfinite(history.history["loss"][0])
    after = numpy_values(model.network.trainable_variables)
    for variable, old, new in zip(model.network.trainable_variables, before, after):
        assert not np.allclose(old, new), f"{variable.path} did not change"
    # ema <- 0.9 ema + 0.1 w: moved by exactly (1 - decay) toward the new weights.
    for old_ema, new_weight, ema in zip(ema_before, numpy_values(model.network.weights),
                                        model.ema_network.weights):
        np.testing.assert_allclose(ema.numpy() - old_ema, 0.1 * (new_weight - old_ema), atol=1e-7)


def test_mixed_float16_step_scales_the_loss():
    keras.mixed_precision.set_global_policy("mixed_float16")
    model = tiny_model()
    model.compile(keras.optimizers.Adam(1e-3))
    assert isinstance(model.optimizer, keras.optimizers.LossScaleOptimizer)
    before = numpy_values(model.network.trainable_variables)
    history = model.fit(images(), batch_size=4, epochs=1, verbose=0)
    assert np.isfinite(history.history["loss"][0])
    after = numpy_values(model.network.trainable_variables)
    assert all(not np.allclose(a, b) for a, b in zip(before, after))
    assert model.generate(2, steps=2, seed=0).dtype == np.float32


def test_ema_warmup_decay():
    model = tiny_model(ema_decay=0.999)
    model.compile(keras.optimizers.Adam(1e-3))
    assert float(model.current_ema_decay()) == pytest.approx(1 / 10)
    model.optimizer.iterations.assign(100000)
    assert float(model.current_ema_decay()) == pytest.approx(0.999)


def test_keras_file_round_trip_restores_networks_and_optimizer(tmp_path):
    keras.utils.set_random_seed(0)
    model = tiny_model(betas=np.linspace(1e-3, 0.1, 20), ema_decay=0.5)
    model.compile(keras.optimizers.Adam(1e-3))
    model.fit(images(), batch_size=4, epochs=1, verbose=0)
    model.save(tmp_path / "diffusion.keras")
    restored = keras.saving.load_model(tmp_path / "diffusion.keras", safe_mode=True)
    assert type(restored) is DiffusionModel
    np.testing.assert_allclose(restored.betas, model.betas)
    for name in ("network", "ema_network"):
        for a, b in zip(getattr(model, name).weights, getattr(restored, name).weights):
            np.testing.assert_array_equal(a.numpy(), b.numpy())
    assert not restored.ema_network.trainable
    assert int(restored.optimizer.iterations) == 1
    for a, b in zip(model.optimizer.variables, restored.optimizer.variables):
        np.testing.assert_array_equal(a.numpy(), b.numpy())
    inputs = [images(2), np.array([0, 19], "int32")]
    np.testing.assert_allclose(restored(inputs).numpy(), model(inputs).numpy(), atol=1e-6)


def test_bad_batch_shape_and_steps():
    model = tiny_model()
    model.compile()
    with pytest.raises(ValueError, match=r"\[batch, 16, 16, 3\].*\(4, 8, 8, 3\)"):
        model.fit(np.zeros((4, 8, 8, 3), "float32"), verbose=0)
    with pytest.raises(ValueError, match="steps.*<= the model's training timesteps \\(20\\)"):
        model.generate(2, steps=21)
    with pytest.raises(ValueError, match="sampler"):
        model.generate(2, sampler="euler")


def test_generate_both_samplers_and_export(tmp_path):
    keras.utils.set_random_seed(0)
    model = tiny_model()
    model.compile()
    for sampler, steps in (("ddim", 3), ("ddpm", None)):
        samples = model.generate(3, steps=steps, sampler=sampler, seed=7)
        assert samples.shape == (3, *SHAPE) and samples.dtype == np.float32
        assert np.all(np.isfinite(samples)) and samples.min() >= -1 and samples.max() <= 1
    # eta = 0 is deterministic given the seed; a different seed differs.
    first = model.generate(2, steps=3, seed=7)
    np.testing.assert_allclose(model.generate(2, steps=3, seed=7), first)
    assert not np.allclose(model.generate(2, steps=3, seed=8), first)

    path = export_diffusion_sampler(model, str(tmp_path / "sampler"))
    assert path.endswith("/1")
    expected = np.clip(np.round((first + 1) * 127.5), 0, 255).astype("uint8")
    np.save(tmp_path / "expected.npy", expected)
    code = f"""
        import numpy as np, tensorflow as tf
        loaded = tf.saved_model.load({path!r})
        serve = loaded.signatures["serving_default"]
        out = serve(seed=tf.constant([7, 0]), num_images=tf.constant(2), steps=tf.constant(3))["images"]
        assert out.dtype == tf.uint8 and out.shape == (2, 16, 16, 3), out
        expected = np.load({str(tmp_path / "expected.npy")!r})
        assert np.abs(out.numpy().astype(int) - expected).max() <= 1
        more = serve(seed=tf.constant([1, 2]), num_images=tf.constant(5), steps=tf.constant(20))["images"]
        assert more.shape == (5, 16, 16, 3)
        try:
            serve(seed=tf.constant([1, 2]), num_images=tf.constant(1), steps=tf.constant(21))
            raise SystemExit("steps > T accepted")
        except tf.errors.InvalidArgumentError:
            pass
        print("ok")
    """
    assert run_in_fresh_process(code).strip().endswith("ok")


def test_mirrored_strategy_step_matches_single_device():
    code = """
        import numpy as np, tensorflow as tf
        cpu = tf.config.list_physical_devices("CPU")[0]
        tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * 2)
        import keras
        from kerasvision.models.diffusion import DiffusionModel

        keras.utils.set_random_seed(0)
        from tests.test_diffusion import tiny_network

        initial = tiny_network().get_weights()
        data = np.random.default_rng(0).uniform(-1, 1, (4, 16, 16, 3)).astype("float32")

        def one_step(strategy):
            with strategy.scope():
                network = tiny_network()
                network.set_weights(initial)
                model = DiffusionModel(network, timesteps=20, ema_decay=0.5, ema_warmup=False, seed=1)
                # SGD: the update is linear in the gradient, so it compares
                # gradients directly (Adam's first step is about sign(g)).
                model.compile(keras.optimizers.SGD(0.5))
            loss = model.fit(data, batch_size=4, epochs=1, shuffle=False, verbose=0).history["loss"][0]
            return loss, model.network.get_weights(), model.ema_network.get_weights()

        single = one_step(tf.distribute.get_strategy())
        strategy = tf.distribute.MirroredStrategy(["/cpu:0", "/cpu:1"])
        assert strategy.num_replicas_in_sync == 2
        mirrored = one_step(strategy)
        np.testing.assert_allclose(mirrored[0], single[0], rtol=1e-5)
        for index in (1, 2):
            moved = max(np.abs(a - b).max() for a, b in zip(single[index], initial))
            assert moved > 1e-3, moved
            for a, b in zip(mirrored[index], single[index]):
                np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-6)
        print("ok")
    """
    assert run_in_fresh_process(code).strip().endswith("ok")
