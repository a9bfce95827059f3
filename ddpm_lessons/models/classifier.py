"""A small FashionMNIST classifier whose features FID compares (chapter 5).

FID (Heusel et al. 2017) compares the statistics of an *image classifier's* features on two sets of
images. The usual Inception network knows nothing of 28x28 grey clothes, so the book trains its own
small CNN once on the FashionMNIST training split and caches it (``weights_only`` loading): the
64 features of its last hidden layer are what :func:`ddpm_lessons.metrics.fid` compares.
"""
from __future__ import annotations

import hashlib
import warnings
from pathlib import Path

import torch
from torch import nn
from torch.nn import functional as F

from .. import settings
from ..data import fashion_mnist_tensors, to_model_range

FEATURES = 64
CACHE_FORMAT = "ddpm_lessons.fid_classifier/1"


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


def _fingerprint(images: torch.Tensor) -> str:
    return hashlib.sha256(images.contiguous().numpy().tobytes()).hexdigest()[:12]


def _default_cache_dir() -> Path:
    return settings.cache_dir()


def accuracy(model: nn.Module, images_uint8: torch.Tensor, labels: torch.Tensor, batch_size: int = 500) -> float:
    """Fraction of ``images_uint8`` (N, 1, 28, 28) that ``model`` labels correctly."""
    model.eval()
    correct = 0
    with torch.inference_mode():
        for start in range(0, len(images_uint8), batch_size):
            x = to_model_range(images_uint8[start:start + batch_size])
            correct += (model(x).argmax(1) == labels[start:start + batch_size]).sum().item()
    return correct / len(images_uint8)


def train_classifier(images_uint8: torch.Tensor, labels: torch.Tensor, epochs: int = 15, batch_size: int = 64,
                     lr: float = 2e-3, seed: int = 0) -> FashionClassifier:
    """Train :class:`FashionClassifier` with Adam on uint8 images (N, 1, 28, 28), small random shifts as augmentation."""
    generator = torch.Generator().manual_seed(seed)
    with torch.random.fork_rng():
        torch.manual_seed(seed)
        model = FashionClassifier()
    opt = torch.optim.Adam(model.parameters(), lr=lr)
    data = to_model_range(images_uint8)
    model.train()
    for _ in range(epochs):
        order = torch.randperm(len(data), generator=generator)
        for start in range(0, len(data), batch_size):
            index = order[start:start + batch_size]
            x = data[index]
            dx, dy = torch.randint(-2, 3, (2,), generator=generator).tolist()
            x = torch.roll(x, shifts=(dy, dx), dims=(2, 3))  # translation: the one augmentation that keeps a garment a garment
            loss = F.cross_entropy(model(x), labels[index])
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
    return model.eval()


def fid_classifier(cache_dir: str | Path | None = None, verbose: bool = True, epochs: int = 15) -> FashionClassifier:
    """The FID feature network: loaded from the cache, or trained once on FashionMNIST and cached.

    The cache file (under ``dl.settings.cache_dir()`` unless ``cache_dir`` is given) is
    named after the training images, so a different dataset (the 800-image subset, the full 60,000)
    gets its own network. It is loaded with ``weights_only=True``; an unreadable file is retrained.
    Prints the test accuracy when ``verbose``.
    """
    from ..training import save_checkpoint

    images, labels = fashion_mnist_tensors(train=True)
    test_images, test_labels = fashion_mnist_tensors(train=False)
    cache_dir = Path(cache_dir) if cache_dir is not None else _default_cache_dir()
    path = cache_dir / f"fid_classifier_{len(images)}_{_fingerprint(images)}_{epochs}epochs.pt"
    model = FashionClassifier()
    state = None
    if path.is_file():
        try:
            state = torch.load(path, map_location="cpu", weights_only=True)
            if state.get("format") != CACHE_FORMAT:
                raise ValueError(f"unexpected format {state.get('format')!r}")
            model.load_state_dict(state["model"])
        except Exception as error:  # a truncated or foreign file: warn and train afresh
            warnings.warn(f"fid_classifier(): the cached network {path} is unreadable ({error}); retraining it")
            state = None
    source = f"loaded from {path}"
    if state is None:
        model = train_classifier(images, labels, epochs=epochs)
        source = f"trained on {len(images):,} images, cached at {path}"
        try:
            save_checkpoint(path, {"format": CACHE_FORMAT, "model": model.state_dict()})
        except OSError as error:
            source = f"trained on {len(images):,} images (not cached: {error})"
    model.eval()
    model.requires_grad_(False)
    model.test_accuracy = accuracy(model, test_images, test_labels)
    if verbose:
        print(f"FID classifier {source}; test accuracy {model.test_accuracy:.1%} on {len(test_images):,} test images")
    return model
