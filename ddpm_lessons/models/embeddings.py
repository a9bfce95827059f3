"""Time embeddings: how a network is told the diffusion step t (chapters 4 and 5).

The networks of the book share one denoiser for all steps, so they must be told which step they are
at. A raw scalar t/T (the classic small-MLP version) works, but a single number is a weak input for a
ReLU network; the sinusoidal embedding of the Transformer (Vaswani et al. 2017) spreads t
over many frequencies, which Ho et al. (2020) use in their U-Net.
"""
from __future__ import annotations

import math

import torch

from .. import _checks


def sinusoidal_embedding(t: torch.Tensor, dim: int, max_period: float = 10000.0) -> torch.Tensor:
    """The Transformer's sinusoidal embedding of the steps ``t`` (Vaswani et al. 2017, sec. 3.5).

    For ``half = dim // 2`` frequencies ``ω_i = max_period^(-i / half)``, ``i = 0 … half-1``:

        emb(t) = [sin(t ω_0), …, sin(t ω_{half-1}), cos(t ω_0), …, cos(t ω_{half-1})]

    first half sine, second half cosine. ``t``: (B,) integer steps or floats; returns (B, dim)
    float32 (float64 if ``t`` is float64). ``dim`` must be even and >= 2. Used by ``NoiseMLP``
    (chapter 4) and the U-Net (chapter 5).
    """
    _checks.even_int(dim, "dim", "sinusoidal_embedding()")
    _checks.number(max_period, "max_period", "sinusoidal_embedding()", 1.0, low_open=True)
    if not torch.is_tensor(t) or t.dim() != 1:
        shape = tuple(t.shape) if torch.is_tensor(t) else type(t).__name__
        raise ValueError(f"sinusoidal_embedding(): expected t of shape (B,) (one step per example), got {shape}")
    if t.is_complex() or t.dtype == torch.bool:
        raise ValueError(f"sinusoidal_embedding(): t must hold integer or real steps, got {t.dtype}")
    if t.is_floating_point():
        _checks.finite(t, "t", "sinusoidal_embedding()")
    dtype = torch.float64 if t.dtype == torch.float64 else torch.float32
    half = dim // 2
    frequencies = torch.exp(-math.log(max_period) * torch.arange(half, device=t.device, dtype=dtype) / half)
    angles = t.to(dtype)[:, None] * frequencies[None, :]
    return torch.cat([torch.sin(angles), torch.cos(angles)], dim=1)
