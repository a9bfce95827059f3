"""Chapter 1: the naive denoiser, trained and sampled.

Training: corrupt a clean image by a random amount, ask the net for the clean image, MSE
(:func:`loss`). Sampling: start from noise and move a little towards the net's prediction at each
step (:func:`denoise`, :func:`sample`):

    x ← x · (1 − 1/(n − i)) + pred · 1/(n − i),   i = 0 … n − 1,

so the first step moves 1/n of the way and the last one (weight 1) lands on the prediction. With
the amount told (``pass_amount=True``: the net is called as ``model(x, (n − i)/n)``) and an exact
prediction, this is the Euler method for the straight path x_a = (1 − a)·x_0 + a·u from the data
(a = 0) to the noise (a = 1) (rectified flow), which carries the noise to the data distribution:
:class:`MixtureDenoiser` is that exact prediction for a Gaussian mixture, the chapter's check.
"""
from __future__ import annotations

import math

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
    return F.mse_loss(predict_clean(model, corrupt(x, amount, generator=generator), where="naive.loss()"), x)


_SIGNATURE_HINTS = {  # what a student most likely passed, for each way the sampler calls the model
    "model(x)": "A network that also takes the amount (AmountConditionedUNet, MixtureDenoiser told the amount) needs "
          "pass_amount=True; one that takes the step t (UNet, NoiseMLP) belongs to Diffusion.sample (chapter 3).",
    "model(x, amount)": "With pass_amount=True the network must take the amount as a second argument; a plain BasicUNet "
           "takes x only (pass_amount=False).",
}


def predict_clean(model: nn.Module, x: torch.Tensor, amount: torch.Tensor | None = None,
                  where: str = "denoise()") -> torch.Tensor:
    """``model(x)``, or ``model(x, amount)`` when an amount is told: the network's guess of the clean
    images, checked (shape of x, finite)."""
    args, call = ((x,), "model(x)") if amount is None else ((x, amount), "model(x, amount)")
    _checks.callable_as(model, args, call, "model", where, hint=_SIGNATURE_HINTS[call])
    pred = model(*args)
    _checks.same_shape(x, pred, "x", "the model's prediction", where)
    return _checks.finite(pred, "the model's prediction", where)


def step_weight(i: int, steps: int) -> float:
    """The weight 1/(n − i) given to the prediction at step i of n (i = 0 … n − 1)."""
    return 1.0 / (steps - i)


@torch.no_grad()
def denoise_progressive(model: nn.Module, x: torch.Tensor, steps: int = 40, *, pass_amount: bool = False):
    """The naive sampler one step at a time: x ← x(1 − 1/(n−i)) + pred/(n−i), i = 0 … n − 1.

    Yields ``(0, x)`` for the start, then ``(i + 1, x, pred)`` after each step: the number of steps
    taken, the new x and the prediction it moved towards. ``x`` itself is not modified. With
    ``pass_amount`` the model is called as ``model(x, amount)``, amount (B,) = (n − i)/n: the share
    of the start left in x before step i if every prediction were the clean image.
    """
    steps = _checks.positive_int(steps, "steps", "denoise()")
    x = _checks.tensor(x, "x", "denoise()", shape_hint="(B, C, H, W), a batch of images")
    yield 0, x
    for i in range(steps):
        amount = torch.full((len(x),), (steps - i) / steps, dtype=x.dtype, device=x.device) if pass_amount else None
        pred = predict_clean(model, x, amount)      # the network's guess of the clean images
        weight = step_weight(i, steps)
        x = x * (1 - weight) + pred * weight
        yield i + 1, x, pred


def denoise(model: nn.Module, x: torch.Tensor, steps: int = 40, *, pass_amount: bool = False,
            return_trajectory: bool = False):
    """Run the naive sampler from ``x`` for ``steps`` steps (:func:`denoise_progressive`).

    Returns the final x, or a :class:`~ddpm_lessons.sampling.Trajectory` when ``return_trajectory``
    is True: ``xs`` has x before each step and at the end (n + 1 batches), ``predictions`` each
    step's prediction (n batches), all on the CPU.
    """
    steps = _checks.positive_int(steps, "steps", "denoise()")
    return sampling.run(denoise_progressive(model, x, steps, pass_amount=pass_amount), total=steps + 1,
                        return_trajectory=return_trajectory)


def sample(model: nn.Module, shape, *, steps: int = 40, generator: torch.Generator | None = None,
           device=None, pass_amount: bool = False, return_trajectory: bool = False):
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
        return denoise(model, start, steps, pass_amount=pass_amount, return_trajectory=return_trajectory)
    finally:
        model.train(was_training)


class MixtureDenoiser:
    """The best possible denoiser of chapter 1's loss for data from a Gaussian mixture, blended with
    Gaussian noise: the exact conditional mean, told the amount or not (chapter 1's check).

    For x̃ = (1 − a)·x + a·ε, ε ~ N(0, I), and x from Σ_k π_k N(μ_k, s_k² I) (a
    :class:`~ddpm_lessons.oracle.GaussianMixture`), component k gives x̃ ~ N((1 − a) μ_k, V_k I) with
    V_k = (1 − a)² s_k² + a², and E[x | x̃, a, k] = μ_k + (1 − a) s_k² (x̃ − (1 − a) μ_k) / V_k.
    ``denoiser(x̃, amount)`` is E[x | x̃, a] (the amount known); ``denoiser(x̃)`` is E[x | x̃] for
    a ~ U(0, 1), the amount unknown as chapter 1's network must guess it, integrated over the
    midpoints of ``grid`` equal intervals; :meth:`amount` is the E[a | x̃] it reads off x̃.
    Computed in float64, returned in x̃'s dtype and device.
    """

    def __init__(self, mixture, grid: int = 100):
        self.mixture = mixture
        self.grid = _checks.positive_int(grid, "grid", "MixtureDenoiser()")

    def __call__(self, x: torch.Tensor, amount=None) -> torch.Tensor:
        return self._posterior_sum(x, amount, lambda weights, means, a: (weights[..., None] * means).sum((1, 2)))

    def amount(self, x: torch.Tensor) -> torch.Tensor:
        """E[a | x̃] (B,) for a ~ U(0, 1): the amount the denoiser that is not told reads off x̃."""
        return self._posterior_sum(x, None, lambda weights, means, a: (weights.sum(2) * a[..., 0]).sum(1))

    def _posterior_sum(self, x, amount, reduce) -> torch.Tensor:
        """``reduce(P(a, k | x̃), E[x | x̃, a, k], a)`` over chunks of the batch (the memory stays bounded)."""
        where, dim = "MixtureDenoiser", self.mixture.dim
        x_in = _checks.tensor(x, "x", where, shape_hint=f"(batch, {dim})")
        if x_in.dim() != 2 or x_in.shape[1] != dim:
            raise ValueError(f"{where}: x must have shape (batch, {dim}), got {tuple(x_in.shape)}")
        x = x_in.detach().to("cpu", torch.float64)
        if amount is None:  # (B, A): every amount of the grid, each equally likely a priori
            a = ((torch.arange(self.grid, dtype=torch.float64) + 0.5) / self.grid)[None].expand(len(x), -1)
        else:  # (B, 1): each point's own amount
            a = _checks.per_image_amount(amount, x, where)[:, None]
        chunk = max(1, 2 ** 21 // (a.shape[1] * len(self.mixture.weights) * dim))
        parts = [reduce(*self._posterior(part, amounts[..., None]), amounts[..., None])
                 for part, amounts in zip(x.split(chunk), a.split(chunk))]
        return torch.cat(parts).to(device=x_in.device, dtype=x_in.dtype)

    def _posterior(self, x: torch.Tensor, a: torch.Tensor):
        """P(a, k | x̃) (B, A, K) and E[x | x̃, a, k] (B, A, K, D) for x̃ (B, D) and amounts a (B, A, 1)."""
        mu, s2 = self.mixture.means, self.mixture.stds ** 2
        variance = (1 - a) ** 2 * s2 + a ** 2                                  # V_k: (B, A, K)
        centred = x[:, None, None, :] - (1 - a[..., None]) * mu                # x̃ − (1 − a) μ_k: (B, A, K, D)
        log_p = self.mixture.weights.log() - 0.5 * centred.pow(2).sum(-1) / variance \
            - 0.5 * mu.shape[1] * torch.log(2 * math.pi * variance)            # log π_k p(x̃ | a, k)
        weights = torch.softmax(log_p.flatten(1), dim=1).view_as(log_p)        # P(a, k | x̃)
        return weights, mu + ((1 - a) * s2 / variance)[..., None] * centred    # E[x | x̃, a, k]


class DatasetDenoiser:
    """The best possible denoiser of chapter 1's loss for a finite set of images, not told the amount:
    what a perfectly trained network of chapter 1 would predict (chapter 1's check on images).

    For x̃ = (1 − a)·x + a·u with u ~ U(−1, 1)^D, a ~ U(0, 1) and x one of the N images x_i (flattened,
    in [−1, 1]), image i gives x̃ the density (2a)^−D inside the box |x̃ − (1 − a) x_i| ≤ a, that is at
    every amount a ≥ a_min(i), the largest over the pixels of (x̃ − x_i)/(1 − x_i) and (x_i − x̃)/(1 + x_i).
    So P(i | x̃) ∝ ∫_{a_min(i)}^1 a^−D da, ``denoiser(x̃)`` is E[x | x̃] = Σ_i P(i | x̃) x_i, and
    :meth:`amount` is the E[a | x̃] it reads off x̃, each in closed form. x̃ has shape (B, D); float64.
    """

    def __init__(self, images: torch.Tensor):
        where = "DatasetDenoiser()"
        images = _checks.tensor(images, "images", where, min_dim=2, shape_hint="(N, D) or (N, C, H, W), in [-1, 1]")
        self.images = images.detach().to("cpu", torch.float64).flatten(1)
        if self.images.shape[1] < 3:
            raise ValueError(f"{where}: images must have at least D = 3 values each (the closed form of E[a | x̃] "
                             f"divides by D − 2), got D = {self.images.shape[1]}")
        if self.images.abs().max() > 1:
            raise ValueError(f"{where}: images must lie in [-1, 1] (chapter 1's range), got values up to "
                             f"{self.images.abs().max():.3g}; scale them with dl.data.to_model_range")

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        return torch.stack([self._posterior(row) @ self.images for row in self._rows(x)])

    def amount(self, x: torch.Tensor) -> torch.Tensor:
        """E[a | x̃] (B,): Σ_i P(i | x̃) E[a | x̃, i], with E[a | x̃, i] = ∫ a·a^−D da / ∫ a^−D da over [a_min(i), 1]."""
        D = self.images.shape[1]
        amounts = []
        for row in self._rows(x):
            a_min = self._a_min(row).clamp(torch.finfo(torch.float64).tiny, 1.0)
            log_a = a_min.log()
            given_image = (D - 1) / (D - 2) * a_min * torch.expm1((D - 2) * log_a) / torch.expm1((D - 1) * log_a)
            amounts.append(self._posterior(row) @ torch.where(a_min < 1, given_image, torch.ones_like(a_min)))
        return torch.stack(amounts)

    def _rows(self, x: torch.Tensor) -> torch.Tensor:
        where, D = "DatasetDenoiser", self.images.shape[1]
        x = _checks.tensor(x, "x", where, min_dim=2, shape_hint=f"(batch, {D})")
        if x.dim() != 2 or x.shape[1] != D:
            raise ValueError(f"{where}: x must have shape (batch, {D}), one flattened noisy image per row; "
                             f"got {tuple(x.shape)} (flatten images with x.flatten(1))")
        return x.detach().to("cpu", torch.float64)

    def _a_min(self, row: torch.Tensor) -> torch.Tensor:
        """The smallest amount at which each image fits the noisy ``row`` (N,); above 1: it cannot."""
        X = self.images
        up = torch.where(X < 1, (row - X) / (1 - X).clamp_min(1e-12), torch.full_like(X, -1.0))
        down = torch.where(X > -1, (X - row) / (1 + X).clamp_min(1e-12), torch.full_like(X, -1.0))
        return torch.maximum(up, down).amax(1)

    def _posterior(self, row: torch.Tensor) -> torch.Tensor:
        """P(i | x̃) (N,) ∝ ∫_{a_min(i)}^1 a^−D da = (a_min^(1−D) − 1)/(D − 1), in logs."""
        D, a_min = self.images.shape[1], self._a_min(row).clamp_min(torch.finfo(torch.float64).tiny)
        log_weight = (1 - D) * a_min.log() + torch.log1p(-a_min.clamp_max(1.0) ** (D - 1))
        return torch.softmax(torch.where(a_min < 1, log_weight, torch.full_like(a_min, -math.inf)), 0)
