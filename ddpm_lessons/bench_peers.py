"""The networks a reader would pick instead of chapter 5's U-Net, at a matched parameter count.

Used by ``python -m ddpm_lessons.bench --against diffusers,lucidrains`` to measure ours against
them on the same machine, with the same loss and sampler. Neither package is a dependency: each
peer is skipped, with the command that installs it, when its package is missing.

- ``diffusers``: Hugging Face's ``UNet2DModel`` (ResNet blocks, attention in the lower levels),
  the network of the Hugging Face diffusion course;
- ``lucidrains``: ``Unet`` of ``denoising-diffusion-pytorch`` (the layout this book's U-Net and
  The Annotated Diffusion Model follow).

For each, the configuration whose parameter count is closest to ours is chosen from a small family
of the peer's usual shapes (28x28 images: three levels).
"""
from __future__ import annotations

import importlib.util

import torch
from torch import nn

from .models.unet import UNet, UNetConfig
from .utils import count_parameters

PEERS = {
    "diffusers": ("diffusers", "pip install diffusers"),
    "lucidrains": ("denoising_diffusion_pytorch", "pip install denoising-diffusion-pytorch"),
}


class PeerMissing(RuntimeError):
    """The peer's package is not installed; the message says how to install it."""


class _DiffusersUNet(nn.Module):
    """``UNet2DModel`` called as ``model(x_t, t)`` -> predicted noise, like the book's networks."""

    def __init__(self, **config):
        super().__init__()
        from diffusers import UNet2DModel

        self.net = UNet2DModel(**config)

    def forward(self, x, t):
        return self.net(x, t).sample


def _diffusers_family(channels: int):
    for width in range(8, 73, 8):
        for mults in ((1, 2, 2), (1, 2, 4)):
            for layers in (1, 2):
                yield (f"UNet2DModel(block_out_channels={tuple(width * m for m in mults)}, layers_per_block={layers})",
                       lambda width=width, mults=mults, layers=layers: _DiffusersUNet(
                           sample_size=28, in_channels=channels, out_channels=channels, layers_per_block=layers,
                           block_out_channels=tuple(width * m for m in mults), norm_num_groups=8, attention_head_dim=16,
                           down_block_types=("DownBlock2D", "AttnDownBlock2D", "AttnDownBlock2D"),
                           up_block_types=("AttnUpBlock2D", "AttnUpBlock2D", "UpBlock2D")))


def _lucidrains_family(channels: int, config: UNetConfig):
    from denoising_diffusion_pytorch import Unet

    for dim in range(8, 73, 4):
        yield (f"Unet(dim={dim}, dim_mults={config.dim_mults}, attn_heads={config.attn_heads}, "
               f"attn_dim_head={config.attn_dim_head})",
               lambda dim=dim: Unet(dim=dim, dim_mults=config.dim_mults, channels=channels,
                                    attn_heads=config.attn_heads, attn_dim_head=config.attn_dim_head))


def peer_model(name: str, config: UNetConfig) -> tuple[nn.Module, str, int]:
    """The peer ``name``'s network closest in parameter count to ``UNet(config)``: (model, description,
    parameters). Raises :class:`PeerMissing` with the install command when its package is absent."""
    if name not in PEERS:
        raise ValueError(f"bench: unknown peer {name!r}; choose from {', '.join(PEERS)}")
    package, install = PEERS[name]
    if importlib.util.find_spec(package) is None:
        raise PeerMissing(f"{name} is not installed (it is not a dependency of the book); to compare with it: {install}")
    target = count_parameters(UNet(config))
    family = (_diffusers_family(config.channels) if name == "diffusers"
              else _lucidrains_family(config.channels, config))
    candidates = []
    for description, build in family:
        with torch.device("meta"):  # counted without allocating or initialising any weight
            candidates.append((abs(count_parameters(build()) - target), description, build))
    _, description, build = min(candidates, key=lambda c: c[0])
    with torch.random.fork_rng():
        torch.manual_seed(0)
        model = build()
    return model, description, count_parameters(model)
