"""The tiny U-Net of chapter 1 (Ronneberger et al., 2015, shrunk to three levels).

Three 5x5 convolutions down (32, 64, 64 channels, max-pool between them), three up (nearest
upsampling between them), and the activations of the way down added back on the way up (skip
connections). It maps an image to an image of the same shape: in chapter 1, a corrupted image to
its clean version.
"""
from __future__ import annotations

import torch
from torch import nn

from .. import _checks


def _check_input(x: torch.Tensor, in_channels: int, name: str, module: nn.Module) -> None:
    x = _checks.network_input(x, module, name, "a batch of images (B, C, H, W) in [-1, 1]")
    if x.dim() != 4:
        raise ValueError(f"{name}: expected a batch of images (B, C, H, W), got {tuple(x.shape)}")
    if x.shape[1] != in_channels:
        raise ValueError(f"{name}: expected {in_channels} input channel(s), got {x.shape[1]} (shape {tuple(x.shape)})")
    height, width = x.shape[-2:]
    if height % 4 or width % 4:
        raise ValueError(
            f"{name}: height and width must be divisible by 4 (the net halves them twice and "
            f"doubles them back), got {height}x{width}; pad or resize the images, e.g. to 28x28 or 32x32"
        )


class BasicUNet(nn.Module):
    """Chapter 1's denoiser: ``BasicUNet()(x)`` has the shape of ``x`` (B, C, H, W), H and W divisible by 4.

    No activation after the last convolution: the data live in [-1, 1], and a ReLU there would
    make every negative (dark) pixel impossible to predict.
    """

    def __init__(self, in_channels: int = 1, out_channels: int = 1):
        super().__init__()
        _checks.positive_int(in_channels, "in_channels", "BasicUNet")
        _checks.positive_int(out_channels, "out_channels", "BasicUNet")
        self.in_channels = in_channels
        self.down_layers = nn.ModuleList([
            nn.Conv2d(in_channels, 32, kernel_size=5, padding=2),
            nn.Conv2d(32, 64, kernel_size=5, padding=2),
            nn.Conv2d(64, 64, kernel_size=5, padding=2),
        ])
        self.up_layers = nn.ModuleList([
            nn.Conv2d(64, 64, kernel_size=5, padding=2),
            nn.Conv2d(64, 32, kernel_size=5, padding=2),
            nn.Conv2d(32, out_channels, kernel_size=5, padding=2),
        ])
        self.act = nn.ReLU()
        self.downscale = nn.MaxPool2d(2)
        self.upscale = nn.Upsample(scale_factor=2, mode="nearest")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        _check_input(x, self.in_channels, type(self).__name__, self)
        skips = []
        for i, layer in enumerate(self.down_layers):
            x = self.act(layer(x))
            if i < len(self.down_layers) - 1:  # the deepest level is not pooled
                skips.append(x)
                x = self.downscale(x)
        for i, layer in enumerate(self.up_layers):
            if i > 0:
                x = self.upscale(x) + skips.pop()
            x = layer(x)
            if i < len(self.up_layers) - 1:
                x = self.act(x)
        return x


class AmountConditionedUNet(BasicUNet):
    """A :class:`BasicUNet` that also sees the corruption ``amount`` (chapter 1, exercise).

    ``model(x, amount)``: ``amount`` is a number or a tensor (B,) in [0, 1]; it enters as one extra
    input channel filled with the amount of each image, so the net knows how much to trust its input.
    """

    def __init__(self, in_channels: int = 1, out_channels: int = 1):
        super().__init__(in_channels + 1, out_channels)

    def forward(self, x: torch.Tensor, amount) -> torch.Tensor:
        if not torch.is_tensor(x) or x.dim() != 4:
            shape = tuple(x.shape) if torch.is_tensor(x) else type(x).__name__
            raise ValueError(f"AmountConditionedUNet: expected a batch of images (B, C, H, W), got {shape}")
        amount = _checks.per_image_amount(amount, x, "AmountConditionedUNet")
        amount_channel = amount.view(-1, 1, 1, 1).expand(-1, 1, *x.shape[-2:])
        return super().forward(torch.cat([x, amount_channel], dim=1))
