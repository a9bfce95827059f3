"""Chapter 1: the naive denoiser, trained and sampled.

Training: corrupt a clean image by a random amount, ask the net for the clean image, MSE
(:func:`loss`). Sampling: start from noise and move a little towards the net's prediction at each
step (:func:`denoise`, :func:`sample`):

    x ← x · (1 − 1/(n − i)) + pred · 1/(n − i),   i = 0 … n − 1,

so the first step moves 1/n of the way and the last one (weight 1) lands on the prediction.
"""
from __future__ import annotations

from typing import NamedTuple

import torch
from torch import nn
from torch.nn import functional as F

from .corruption import corrupt, noise_like


def loss(model: nn.Module, x: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
    """MSE between ``model(corrupt(x, amount))`` and ``x``, amount ~ U(0, 1) per image (chapter 1)."""
    amount = torch.rand(len(x), generator=generator, device=x.device)
    return F.mse_loss(model(corrupt(x, amount, generator=generator)), x)


class Trajectory(NamedTuple):
    """What :func:`denoise` returns with ``return_trajectory=True``.

    ``xs[i]`` is x before step i (``xs[0]`` the start, ``xs[-1]`` the result, n + 1 batches),
    ``predictions[i]`` the net's prediction at step i (n batches).
    """

    x: torch.Tensor
    xs: list
    predictions: list


def step_weight(i: int, steps: int) -> float:
    """The weight 1/(n − i) given to the prediction at step i of n (i = 0 … n − 1)."""
    return 1.0 / (steps - i)


@torch.no_grad()
def denoise(model: nn.Module, x: torch.Tensor, steps: int = 40, return_trajectory: bool = False):
    """Run the naive sampler from ``x`` for ``steps`` steps: x ← x(1 − 1/(n−i)) + pred/(n−i).

    Returns the final x, or a :class:`Trajectory` (final x, x before each step and at the end, and
    each prediction) when ``return_trajectory`` is True; trajectories are kept on the CPU.
    ``x`` itself is not modified.
    """
    if isinstance(steps, bool) or not isinstance(steps, int) or steps < 1:
        raise ValueError(f"denoise(): steps must be a positive int, got {steps!r}")
    if not torch.is_tensor(x) or not x.is_floating_point():
        raise ValueError("denoise(): x must be a floating-point tensor (a batch of images)")
    xs, predictions = [x.cpu()], []
    for i in range(steps):
        pred = model(x)
        if pred.shape != x.shape:
            raise ValueError(f"denoise(): the model must return x's shape {tuple(x.shape)}, got {tuple(pred.shape)}")
        weight = step_weight(i, steps)
        x = x * (1 - weight) + pred * weight
        if return_trajectory:
            xs.append(x.cpu())
            predictions.append(pred.cpu())
    return Trajectory(x, xs, predictions) if return_trajectory else x


def sample(model: nn.Module, shape, steps: int = 40, generator: torch.Generator | None = None,
           device=None, return_trajectory: bool = False):
    """Start from uniform noise on [-1, 1] of ``shape`` (B, C, H, W) and :func:`denoise` it.

    ``generator`` (on ``device``) makes the start repeatable; ``device`` defaults to the model's.
    """
    shape = tuple(shape)
    if len(shape) != 4 or any(isinstance(s, bool) or not isinstance(s, int) or s < 1 for s in shape):
        raise ValueError(f"sample(): shape must be four positive ints (B, C, H, W), got {shape}")
    if device is None:
        device = next(model.parameters()).device
    start = noise_like(torch.empty(shape, device=device), "uniform", generator)
    was_training = model.training
    model.eval()
    try:
        return denoise(model, start, steps, return_trajectory)
    finally:
        model.train(was_training)
