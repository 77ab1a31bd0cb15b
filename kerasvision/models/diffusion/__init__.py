"""Denoising diffusion: noise schedules, a denoiser U-Net, and a trainer that samples.

Three modules, as diffusers separates schedulers, models and pipelines:

- `schedules`: the betas of a schedule (`linear_beta_schedule`,
  `cosine_beta_schedule`, `make_beta_schedule`), every per-timestep term
  derived from them (`schedule_terms`), the timesteps a sampler visits
  (`sampling_timesteps`) and the single-step updates `q_sample`, `ddpm_step`
  and `ddim_step`. Plain functions, no network.
- `denoiser`: `build_denoiser`, the noise-prediction U-Net with residual
  blocks (`apply_residual_block`) conditioned on a sinusoidal time embedding
  (`SinusoidalTimeEmbedding`).
- `model`: `DiffusionModel`, which trains the denoiser with the epsilon
  loss, keeps an exponential moving average (EMA) copy of it and samples with
  DDPM or DDIM (`generate`); `sample_loop`, the sampling loop as TensorFlow
  ops.

`kerasvision.export.export_diffusion_sampler` writes the EMA network's DDIM
sampler as a SavedModel. Everything public is importable from this package:
`from kerasvision.models.diffusion import DiffusionModel, build_denoiser`.

Example:
    >>> model = DiffusionModel(build_denoiser((32, 32, 3)), timesteps=1000)
    >>> model.compile(keras.optimizers.Adam(2e-4))
    >>> model.fit(images, epochs=10, batch_size=32)   # images in [-1, 1]
    >>> samples = model.generate(16, steps=50)        # DDIM, eta = 0
"""

from kerasvision.models.diffusion.denoiser import (
    SinusoidalTimeEmbedding,
    apply_residual_block,
    build_denoiser,
    denoiser_stride,
)
from kerasvision.models.diffusion.model import DiffusionModel, sample_loop, to_uint8
from kerasvision.models.diffusion.schedules import (
    SAMPLERS,
    SCHEDULES,
    check_betas,
    check_sampling_steps,
    cosine_beta_schedule,
    ddim_step,
    ddpm_step,
    linear_beta_schedule,
    make_beta_schedule,
    predict_x0,
    q_sample,
    sampling_timesteps,
    schedule_terms,
)

__all__ = [
    "SAMPLERS",
    "SCHEDULES",
    "DiffusionModel",
    "SinusoidalTimeEmbedding",
    "apply_residual_block",
    "build_denoiser",
    "check_betas",
    "check_sampling_steps",
    "cosine_beta_schedule",
    "ddim_step",
    "ddpm_step",
    "denoiser_stride",
    "linear_beta_schedule",
    "make_beta_schedule",
    "predict_x0",
    "q_sample",
    "sample_loop",
    "sampling_timesteps",
    "schedule_terms",
    "to_uint8",
]
