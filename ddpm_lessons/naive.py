"""Chapter 1: the naive denoiser, trained and sampled.

Training: corrupt a clean image by a random amount, ask the net for the clean image, MSE
(:func:`loss`). Sampling: start from noise and move a little towards the net's prediction at each
step (:func:`denoise`, :func:`sample`):

    x ← x · (1 − 1/(n − i)) + pred · 1/(n − i),   i = 0 … n − 1,

so the first step moves 1/n of the way and the last one (weight 1) lands on the prediction.
"""
from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional as F

from . import _checks, sampling
from .corruption import corrupt, noise_like


def loss(model: nn.Module, x: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
    """MSE between ``model(corrupt(x, amount))`` and ``x``, amount ~ U(0, 1) per image (chapter 1)."""
    x = _checks.data(x, "x", "naive.loss()", shape_hint="(B, C, H, W), images in [-1, 1]")
    generator = _checks.generator(generator, "naive.loss()")
    amount = torch.rand(len(x), generator=generator, device=generator.device if generator else x.device).to(x.device)
    return F.mse_loss(predict_clean(model, corrupt(x, amount, generator=generator), "naive.loss()"), x)


def predict_clean(model: nn.Module, x: torch.Tensor, where: str = "denoise()") -> torch.Tensor:
    """``model(x)``: the network's guess of the clean images, checked (shape of x, finite)."""
    _checks.callable_as(model, (x,), "model(x)", "model", where,
                        hint="Networks that also take the step t or an amount (UNet, NoiseMLP, AmountConditionedUNet) "
                             "belong to other samplers (Diffusion.sample, chapter 3).")
    pred = model(x)
    _checks.same_shape(x, pred, "x", "the model's prediction", where)
    return _checks.finite(pred, "the model's prediction", where)


def step_weight(i: int, steps: int) -> float:
    """The weight 1/(n − i) given to the prediction at step i of n (i = 0 … n − 1)."""
    return 1.0 / (steps - i)


@torch.no_grad()
def denoise_progressive(model: nn.Module, x: torch.Tensor, steps: int = 40):
    """The naive sampler one step at a time: x ← x(1 − 1/(n−i)) + pred/(n−i), i = 0 … n − 1.

    Yields ``(0, x)`` for the start, then ``(i + 1, x, pred)`` after each step: the number of steps
    taken, the new x and the prediction it moved towards. ``x`` itself is not modified.
    """
    steps = _checks.positive_int(steps, "steps", "denoise()")
    x = _checks.tensor(x, "x", "denoise()", shape_hint="(B, C, H, W), a batch of images")
    yield 0, x
    for i in range(steps):
        pred = predict_clean(model, x)      # the network's guess of the clean images
        weight = step_weight(i, steps)
        x = x * (1 - weight) + pred * weight
        yield i + 1, x, pred


def denoise(model: nn.Module, x: torch.Tensor, steps: int = 40, *, return_trajectory: bool = False):
    """Run the naive sampler from ``x`` for ``steps`` steps (:func:`denoise_progressive`).

    Returns the final x, or a :class:`~ddpm_lessons.sampling.Trajectory` when ``return_trajectory``
    is True: ``xs`` has x before each step and at the end (n + 1 batches), ``predictions`` each
    step's prediction (n batches), all on the CPU.
    """
    steps = _checks.positive_int(steps, "steps", "denoise()")
    return sampling.run(denoise_progressive(model, x, steps), total=steps + 1, return_trajectory=return_trajectory)


def sample(model: nn.Module, shape, *, steps: int = 40, generator: torch.Generator | None = None,
           device=None, return_trajectory: bool = False):
    """Start from uniform noise on [-1, 1] of ``shape`` (B, C, H, W) and :func:`denoise` it.

    ``generator`` (on ``device``) makes the start repeatable; ``device`` defaults to the model's.
    """
    shape = _checks.shape(shape, "shape", "naive.sample()")
    if len(shape) != 4:
        raise ValueError(f"naive.sample(): shape must be four positive ints (B, C, H, W), got {shape}")
    model = _checks.module(model, "model", "naive.sample()")
    device = next(model.parameters()).device if device is None else _checks.device(device, "naive.sample()")
    start = noise_like(torch.empty(shape, device=device), "uniform", generator)
    was_training = model.training
    model.eval()
    try:
        return denoise(model, start, steps, return_trajectory=return_trajectory)
    finally:
        model.train(was_training)
