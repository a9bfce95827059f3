"""The building blocks of the chapter-5 U-Net (Ho et al. 2020, appendix B; the "annotated diffusion" layout).

- :func:`group_norm`: GroupNorm (Wu & He 2018) with a group count that divides the channels.
- :class:`Residual` and :class:`PreNorm`: ``x + f(x)`` and ``f(GroupNorm(x))``, the wrappers
  around attention.
- :class:`TimeEmbedding`: the sinusoidal embedding of t followed by a small MLP.
- :class:`ResnetBlock`: two convolutions with a residual connection; the time embedding enters as a
  per-channel *scale and shift* of the first normalised activation, ``h·(1 + scale) + shift``.
- :class:`ConvNextBlock`: the ConvNeXt alternative (Liu et al. 2022), time added after a depthwise conv.
- :class:`Downsample` / :class:`Upsample`: halve / double the resolution.
"""
from __future__ import annotations

import math

import torch
from torch import nn

from .. import _checks
from .embeddings import sinusoidal_embedding


def _check_channels(name: str, **values) -> None:
    for key, value in values.items():
        _checks.positive_int(value, key, name)


def group_norm(channels: int, groups: int = 8) -> nn.GroupNorm:
    """GroupNorm over ``channels`` with the largest group count <= ``groups`` that divides them."""
    _check_channels("group_norm()", channels=channels, groups=groups)
    return nn.GroupNorm(math.gcd(channels, groups), channels)


class Residual(nn.Module):
    """``x + fn(x)``: the skip that lets a block start as the identity (He et al. 2016)."""

    def __init__(self, fn: nn.Module):
        super().__init__()
        self.fn = fn

    def forward(self, x, *args, **kwargs):
        return x + self.fn(x, *args, **kwargs)


class PreNorm(nn.Module):
    """``fn(GroupNorm(x))``: normalise *before* the layer (pre-norm), as the DDPM U-Net does for attention."""

    def __init__(self, channels: int, fn: nn.Module):
        super().__init__()
        self.norm = nn.GroupNorm(1, channels)
        self.fn = fn

    def forward(self, x):
        return self.fn(self.norm(x))


class TimeEmbedding(nn.Module):
    """t (B,) -> (B, 4·dim): sinusoidal features of the step, then Linear-GELU-Linear."""

    def __init__(self, dim: int):
        super().__init__()
        _check_channels("TimeEmbedding", dim=dim)
        if dim % 2:
            raise ValueError(f"TimeEmbedding: dim must be even (sin and cos halves), got {dim}")
        self.dim = dim
        self.mlp = nn.Sequential(nn.Linear(dim, 4 * dim), nn.GELU(), nn.Linear(4 * dim, 4 * dim))

    def forward(self, t: torch.Tensor) -> torch.Tensor:
        return self.mlp(sinusoidal_embedding(t, self.dim).to(self.mlp[0].weight.dtype))  # a .double() net too


class ConvNormAct(nn.Module):
    """3x3 conv -> GroupNorm -> (optional scale-and-shift by the time) -> SiLU."""

    def __init__(self, in_channels: int, out_channels: int, groups: int = 8):
        super().__init__()
        self.conv = nn.Conv2d(in_channels, out_channels, 3, padding=1)
        self.norm = group_norm(out_channels, groups)
        self.act = nn.SiLU()

    def forward(self, x, scale_shift: tuple[torch.Tensor, torch.Tensor] | None = None):
        h = self.norm(self.conv(x))
        if scale_shift is not None:
            scale, shift = scale_shift
            h = h * (1 + scale) + shift  # FiLM-style conditioning: at init (scale=shift=0) the identity
        return self.act(h)


class ResnetBlock(nn.Module):
    """Two conv-norm-SiLU layers and a residual 1x1 conv; the time embedding scales and shifts the first.

    ``forward(x (B, C_in, H, W), time_emb (B, time_dim) or None) -> (B, C_out, H, W)``.
    """

    def __init__(self, in_channels: int, out_channels: int, time_dim: int | None = None, groups: int = 8):
        super().__init__()
        _check_channels("ResnetBlock", in_channels=in_channels, out_channels=out_channels, groups=groups)
        self.time_mlp = (nn.Sequential(nn.SiLU(), nn.Linear(time_dim, 2 * out_channels))
                         if time_dim is not None else None)
        self.block1 = ConvNormAct(in_channels, out_channels, groups)
        self.block2 = ConvNormAct(out_channels, out_channels, groups)
        self.skip = nn.Conv2d(in_channels, out_channels, 1) if in_channels != out_channels else nn.Identity()

    def forward(self, x: torch.Tensor, time_emb: torch.Tensor | None = None) -> torch.Tensor:
        scale_shift = None
        if self.time_mlp is not None:
            if time_emb is None:
                raise ValueError("ResnetBlock: this block was built with time_dim, so pass time_emb (B, time_dim)")
            scale, shift = self.time_mlp(time_emb)[:, :, None, None].chunk(2, dim=1)
            scale_shift = (scale, shift)
        return self.block2(self.block1(x, scale_shift)) + self.skip(x)


class ConvNextBlock(nn.Module):
    """A ConvNeXt block (Liu et al. 2022): depthwise 7x7 conv, time *added*, then an inverted bottleneck.

    ``forward(x (B, C_in, H, W), time_emb (B, time_dim) or None) -> (B, C_out, H, W)``.
    """

    def __init__(self, in_channels: int, out_channels: int, time_dim: int | None = None, mult: int = 2,
                 norm: bool = True):
        super().__init__()
        _check_channels("ConvNextBlock", in_channels=in_channels, out_channels=out_channels, mult=mult)
        self.time_mlp = nn.Sequential(nn.GELU(), nn.Linear(time_dim, in_channels)) if time_dim is not None else None
        self.depthwise = nn.Conv2d(in_channels, in_channels, 7, padding=3, groups=in_channels)
        self.net = nn.Sequential(
            nn.GroupNorm(1, in_channels) if norm else nn.Identity(),
            nn.Conv2d(in_channels, out_channels * mult, 3, padding=1),
            nn.GELU(),
            nn.GroupNorm(1, out_channels * mult),
            nn.Conv2d(out_channels * mult, out_channels, 3, padding=1),
        )
        self.skip = nn.Conv2d(in_channels, out_channels, 1) if in_channels != out_channels else nn.Identity()

    def forward(self, x: torch.Tensor, time_emb: torch.Tensor | None = None) -> torch.Tensor:
        h = self.depthwise(x)
        if self.time_mlp is not None:
            if time_emb is None:
                raise ValueError("ConvNextBlock: this block was built with time_dim, so pass time_emb (B, time_dim)")
            h = h + self.time_mlp(time_emb)[:, :, None, None]
        return self.net(h) + self.skip(x)


class Downsample(nn.Module):
    """Halve the resolution: a 4x4 convolution with stride 2 (H, W must be even)."""

    def __init__(self, in_channels: int, out_channels: int | None = None):
        super().__init__()
        self.conv = nn.Conv2d(in_channels, out_channels or in_channels, 4, stride=2, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.shape[-2] % 2 or x.shape[-1] % 2:
            raise ValueError(f"Downsample: expected an even height and width, got {tuple(x.shape[-2:])}")
        return self.conv(x)


class Upsample(nn.Module):
    """Double the resolution: nearest-neighbour upsampling, then a 3x3 convolution (no checkerboard)."""

    def __init__(self, in_channels: int, out_channels: int | None = None):
        super().__init__()
        self.net = nn.Sequential(nn.Upsample(scale_factor=2, mode="nearest"),
                                 nn.Conv2d(in_channels, out_channels or in_channels, 3, padding=1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)
