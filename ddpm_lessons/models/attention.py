"""Self-attention over the pixels of a feature map (chapter 5; Vaswani et al. 2017, Shen et al. 2021).

Every pixel of a (B, C, H, W) map is a token of C channels. :class:`Attention` is multi-head
softmax attention, ``softmax(Q Kᵀ / sqrt(d)) V``, which costs O((HW)²) and is used at the U-Net's
lowest resolution; :class:`LinearAttention` normalises Q and K separately (softmax over the channels
of each query, over the pixels of each key) so that ``Kᵀ V`` can be formed first: O(HW · d²).
"""
from __future__ import annotations

import torch
from einops import rearrange
from torch import nn
from torch.nn import functional as F

from .. import _checks


def _check_shape(where: str, dim, heads, dim_head) -> None:
    for name, value in (("dim", dim), ("heads", heads), ("dim_head", dim_head)):
        _checks.positive_int(value, name, where)


def naive_attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
    """The textbook formula, step by step: ``softmax(Q Kᵀ / sqrt(d)) V`` for (..., N, d) tensors.

    The reference that :class:`Attention` (which calls PyTorch's fused kernel) is checked against.
    """
    scores = q @ k.transpose(-2, -1) / q.shape[-1] ** 0.5
    weights = scores.softmax(dim=-1)  # each query's weights over the keys sum to 1
    return weights @ v


class Attention(nn.Module):
    """Multi-head self-attention over pixels: (B, C, H, W) -> (B, C, H, W).

    ``heads`` heads of ``dim_head`` channels each; a 1x1 conv makes Q, K, V and another mixes the heads.
    """

    def __init__(self, dim: int, heads: int = 4, dim_head: int = 32):
        super().__init__()
        _check_shape("Attention", dim, heads, dim_head)
        self.heads = heads
        hidden = heads * dim_head
        self.to_qkv = nn.Conv2d(dim, 3 * hidden, 1, bias=False)
        self.to_out = nn.Conv2d(hidden, dim, 1)

    def qkv(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Queries, keys and values, each (B, heads, H·W, dim_head)."""
        return tuple(rearrange(part, "b (h d) x y -> b h (x y) d", h=self.heads)
                     for part in self.to_qkv(x).chunk(3, dim=1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.dim() != 4:
            raise ValueError(f"Attention: expected a feature map (B, C, H, W), got shape {tuple(x.shape)}")
        height, width = x.shape[-2:]
        q, k, v = self.qkv(x)
        out = F.scaled_dot_product_attention(q, k, v)  # = naive_attention(q, k, v), fused and memory-light
        return self.to_out(rearrange(out, "b h (x y) d -> b (h d) x y", x=height, y=width))


class LinearAttention(nn.Module):
    """Linear attention (Shen et al. 2021): softmax Q over channels, K over pixels; ``(Kᵀ V)`` first.

    (B, C, H, W) -> (B, C, H, W), cost linear in the number of pixels; used at the higher resolutions.
    """

    def __init__(self, dim: int, heads: int = 4, dim_head: int = 32):
        super().__init__()
        _check_shape("LinearAttention", dim, heads, dim_head)
        self.heads = heads
        self.scale = dim_head ** -0.5
        hidden = heads * dim_head
        self.to_qkv = nn.Conv2d(dim, 3 * hidden, 1, bias=False)
        self.to_out = nn.Sequential(nn.Conv2d(hidden, dim, 1), nn.GroupNorm(1, dim))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.dim() != 4:
            raise ValueError(f"LinearAttention: expected a feature map (B, C, H, W), got shape {tuple(x.shape)}")
        height, width = x.shape[-2:]
        q, k, v = (rearrange(part, "b (h d) x y -> b h d (x y)", h=self.heads)
                   for part in self.to_qkv(x).chunk(3, dim=1))
        q = q.softmax(dim=-2) * self.scale  # over the channels of each query
        k = k.softmax(dim=-1)  # over the pixels of each key
        context = torch.einsum("bhdn,bhen->bhde", k, v)  # (d x d) per head: the pixels are summed out
        out = torch.einsum("bhde,bhdn->bhen", context, q)
        return self.to_out(rearrange(out, "b h e (x y) -> b (h e) x y", x=height, y=width))
