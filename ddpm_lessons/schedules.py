"""Noise schedules β_1 … β_T (chapter 2).

Each function returns the betas as a 1-D float64 tensor of length ``T`` (the precision matters for
ᾱ_t, a product of up to a thousand numbers close to 1); :class:`ddpm_lessons.Diffusion` computes
everything else from them. Index ``t`` (0-based) holds the paper's β_{t+1}.
"""
from __future__ import annotations

import math
import torch

from . import _checks


def _check_T(T, name: str) -> int:
    return _checks.positive_int(T, "T (the number of diffusion steps)", f"{name}()")


def _check_range(beta_start, beta_end, name: str) -> None:
    for what, value in (("beta_start", beta_start), ("beta_end", beta_end)):
        _checks.number(value, what, f"{name}()", 0.0, 1.0, low_open=True, high_open=True)
    if beta_start > beta_end:
        raise ValueError(f"{name}(): beta_start = {beta_start!r} must be smaller than beta_end = {beta_end!r}: the noise "
                         "added per step grows along the chain (swapped arguments?)")


def linear_beta_schedule(T: int, beta_start: float = 1e-4, beta_end: float = 0.02) -> torch.Tensor:
    """β_t rising linearly from ``beta_start`` to ``beta_end`` (Ho et al. 2020, sec. 4: 1e-4 … 0.02, T = 1000).

    The defaults are the paper's values for T = 1000. With far fewer steps, ᾱ_T stays far from 0
    (x_T is then not pure noise): scale both ends by 1000 / T (:func:`rescaled_linear_beta_schedule`).
    """
    T = _check_T(T, "linear_beta_schedule")
    _check_range(beta_start, beta_end, "linear_beta_schedule")
    return torch.linspace(beta_start, beta_end, T, dtype=torch.float64)


def rescaled_linear_beta_schedule(T: int, max_beta: float = 0.999) -> torch.Tensor:
    """Ho et al.'s linear schedule for T steps: both ends scaled by 1000 / T (chapters 4 and 5), as
    improved-diffusion's ``get_named_beta_schedule("linear", T)`` does.

    β_t runs from 1e-4 · 1000/T to 0.02 · 1000/T, so that a chain of T steps ends about as noisy as
    the paper's chain of 1000 (ᾱ_T = 2·10⁻⁵ at T = 100, 4·10⁻⁵ at T = 1000). Below T = 21 the last
    betas would reach 1 and erase everything in one step: they are clipped at ``max_beta``, as the
    cosine schedule's are.
    """
    T = _check_T(T, "rescaled_linear_beta_schedule")
    _checks.number(max_beta, "max_beta", "rescaled_linear_beta_schedule()", 0.0, 1.0, low_open=True, high_open=True)
    return torch.linspace(1e-4 * 1000 / T, 0.02 * 1000 / T, T, dtype=torch.float64).clamp(max=max_beta)


def quadratic_beta_schedule(T: int, beta_start: float = 1e-4, beta_end: float = 0.02) -> torch.Tensor:
    """β_t = (linear from sqrt(β_start) to sqrt(β_end))²: slower at first, faster at the end."""
    T = _check_T(T, "quadratic_beta_schedule")
    _check_range(beta_start, beta_end, "quadratic_beta_schedule")
    return torch.linspace(math.sqrt(beta_start), math.sqrt(beta_end), T, dtype=torch.float64) ** 2


def sigmoid_beta_schedule(T: int, beta_start: float = 1e-4, beta_end: float = 0.02,
                          steepness: float = 6.0) -> torch.Tensor:
    """β_t along a sigmoid from ``beta_start`` to ``beta_end`` (flat at both ends, steepest mid-way)."""
    T = _check_T(T, "sigmoid_beta_schedule")
    _check_range(beta_start, beta_end, "sigmoid_beta_schedule")
    _checks.number(steepness, "steepness", "sigmoid_beta_schedule()", 0.0, low_open=True)
    s = torch.sigmoid(torch.linspace(-steepness, steepness, T, dtype=torch.float64))
    return beta_start + (beta_end - beta_start) * s


def cosine_beta_schedule(T: int, s: float = 0.008, max_beta: float = 0.999) -> torch.Tensor:
    """The cosine schedule of Nichol & Dhariwal (2021, eq. 17): ᾱ_t = f(t) / f(0), f(t) = cos²((t/T + s)/(1 + s) · π/2).

    β_t = 1 − ᾱ_t / ᾱ_{t−1}, clipped at ``max_beta``: without the clip the last β would be 1 (f(T) = 0)
    and the last step would erase everything; with it ᾱ_T is tiny but not 0 (2.4·10⁻⁹ at T = 1000).
    The offset ``s`` keeps β_1 from being tiny: Nichol & Dhariwal chose it so that sqrt(β_1) is just
    below one grey level of an 8-bit image (1/127.5).
    """
    T = _check_T(T, "cosine_beta_schedule")
    _checks.number(max_beta, "max_beta", "cosine_beta_schedule()", 0.0, 1.0, low_open=True, high_open=True)
    _checks.number(s, "the offset s", "cosine_beta_schedule()", 0.0)
    steps = torch.arange(T + 1, dtype=torch.float64) / T
    f = torch.cos((steps + s) / (1 + s) * math.pi / 2) ** 2
    alphas_cumprod = f / f[0]
    betas = 1 - alphas_cumprod[1:] / alphas_cumprod[:-1]
    return betas.clamp(min=0.0, max=max_beta)


SCHEDULES = {
    "linear": linear_beta_schedule,
    "rescaled_linear": rescaled_linear_beta_schedule,
    "cosine": cosine_beta_schedule,
    "quadratic": quadratic_beta_schedule,
    "sigmoid": sigmoid_beta_schedule,
}
"""The schedules by name, e.g. ``SCHEDULES["cosine"](1000)``."""


def check_betas(betas, where: str) -> torch.Tensor:
    """``betas`` as a float64 CPU tensor of T values in (0, 1), or a ValueError saying what is wrong."""
    if callable(betas):
        name = getattr(betas, "__name__", "the schedule")
        raise ValueError(f"{where}: got the function {name} itself; call it to get the betas, "
                         f"e.g. Diffusion({name}(1000))")
    if isinstance(betas, str):
        raise ValueError(f"{where}: got the string {betas!r}; pass the betas, e.g. "
                         f"Diffusion(dl.schedules.SCHEDULES[{betas!r}](1000))")
    try:
        betas = torch.as_tensor(betas)
    except (TypeError, ValueError, RuntimeError) as error:
        raise ValueError(f"{where}: betas must be a 1-D tensor of numbers (one β per step), got "
                         f"{type(betas).__name__} ({error})") from None
    if betas.ndim != 1 or betas.numel() == 0:
        raise ValueError(f"{where}: betas must be a non-empty 1-D tensor (one β per step), "
                         f"got shape {tuple(betas.shape)}")
    if not betas.is_floating_point():
        raise ValueError(f"{where}: betas must be a floating-point tensor, got dtype {betas.dtype}")
    betas = betas.detach().to("cpu", torch.float64)
    bad = (betas <= 0) | (betas >= 1) | ~torch.isfinite(betas)
    if bad.any():
        i = int(bad.nonzero()[0])
        raise ValueError(f"{where}: every beta must lie in the open interval (0, 1); "
                         f"betas[{i}] = {betas[i].item()!r}")
    return betas


def alphas_cumprod(betas: torch.Tensor) -> torch.Tensor:
    """ᾱ_t = ∏_{s ≤ t} (1 − β_s) (Ho et al. 2020, eq. 4), in float64: the one place the book computes it."""
    return torch.cumprod(1 - check_betas(betas, "alphas_cumprod()"), dim=0)


def log_snr(betas: torch.Tensor) -> torch.Tensor:
    """log SNR(t) = log(ᾱ_t / (1 − ᾱ_t)) (Kingma et al. 2021): signal power over noise power in x_t."""
    a = alphas_cumprod(betas)
    return torch.log(a) - torch.log1p(-a)
