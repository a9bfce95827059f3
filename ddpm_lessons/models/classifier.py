"""A small FashionMNIST classifier whose features FID compares (chapter 5).

The usual Inception network knows nothing of 28x28 grey clothes, so the book trains this small CNN
once on the FashionMNIST training split (:func:`ddpm_lessons.fid.fid_classifier`): the 64 features
of its last hidden layer are what :func:`ddpm_lessons.fid.fid` compares.
"""
from __future__ import annotations

import torch
from torch import nn

FEATURES = 64


class FashionClassifier(nn.Module):
    """Two conv-pool stages and an MLP: (B, 1, 28, 28) in [-1, 1] -> 10 logits; ``features`` gives 64."""

    def __init__(self, features: int = FEATURES):
        super().__init__()
        self.body = nn.Sequential(
            nn.Conv2d(1, 16, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
            nn.Conv2d(16, 32, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
            nn.AdaptiveAvgPool2d(4), nn.Flatten(),
            nn.Linear(32 * 16, features), nn.ReLU(),
        )
        self.head = nn.Linear(features, 10)

    def features(self, x: torch.Tensor) -> torch.Tensor:
        if not torch.is_tensor(x) or x.dim() != 4 or x.shape[1] != 1:
            shape = tuple(x.shape) if torch.is_tensor(x) else type(x).__name__
            raise ValueError(f"FashionClassifier: expected images (B, 1, H, W) in [-1, 1], got {shape}")
        return self.body(x)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(x))
