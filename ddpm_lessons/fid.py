"""FID on FashionMNIST (chapter 5): the Fréchet distance between feature statistics, and the
classifier whose features it compares, trained once and cached.

FID (Heusel et al. 2017) fits a Gaussian to a classifier's features on each of two image sets and
measures the Fréchet distance between the Gaussians. The usual Inception network knows nothing of
28x28 grey clothes, so the book uses :class:`~ddpm_lessons.models.classifier.FashionClassifier`,
trained once on the training split (:func:`fid_classifier`). These FIDs are not comparable with
published ones.
"""
from __future__ import annotations

import warnings
from pathlib import Path

import torch
from torch import nn
from torch.nn import functional as F

from . import _checks, checkpoints, settings
from .data import fashion_mnist_tensors, fingerprint, to_model_range
from .models.classifier import FashionClassifier

CACHE_KIND = "fid_classifier/1"


def feature_statistics(features: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Mean (D,) and covariance (D, D) of features (N, D), in float64 (chapter 5, FID)."""
    if not torch.is_tensor(features) or features.dim() != 2 or features.shape[0] < 2:
        shape = tuple(features.shape) if torch.is_tensor(features) else type(features).__name__
        raise ValueError(f"feature_statistics(): expected features (N, D) with N >= 2, got {shape}")
    features = _checks.finite(features.detach().to("cpu", torch.float64), "features", "feature_statistics()")
    return features.mean(0), torch.cov(features.T).reshape(features.shape[1], features.shape[1])


def _sqrtm_psd(matrix: torch.Tensor) -> torch.Tensor:
    """The symmetric square root of a symmetric positive semi-definite matrix (eigendecomposition)."""
    values, vectors = torch.linalg.eigh((matrix + matrix.T) / 2)
    return (vectors * values.clamp(min=0).sqrt()) @ vectors.T


def frechet_distance(mu1: torch.Tensor, cov1: torch.Tensor, mu2: torch.Tensor, cov2: torch.Tensor) -> float:
    """The Fréchet distance between two Gaussians N(μ1, Σ1) and N(μ2, Σ2) (Heusel et al. 2017, chapter 5):

    ``d² = |μ1 − μ2|² + tr(Σ1) + tr(Σ2) − 2 tr((Σ1^½ Σ2 Σ1^½)^½)``

    (``tr((Σ1 Σ2)^½)`` written with a symmetric matrix, so that the square root is an eigendecomposition).
    """
    mu1, mu2 = torch.as_tensor(mu1, dtype=torch.float64), torch.as_tensor(mu2, dtype=torch.float64)
    cov1, cov2 = torch.as_tensor(cov1, dtype=torch.float64), torch.as_tensor(cov2, dtype=torch.float64)
    d = mu1.shape[0] if mu1.dim() == 1 else -1
    if d < 1 or mu2.shape != (d,) or cov1.shape != (d, d) or cov2.shape != (d, d):
        raise ValueError(
            f"frechet_distance(): expected means (D,) and covariances (D, D) of one D, got "
            f"{tuple(mu1.shape)}, {tuple(cov1.shape)}, {tuple(mu2.shape)}, {tuple(cov2.shape)}"
        )
    for name, mu, cov in (("1", mu1, cov1), ("2", mu2, cov2)):
        _checks.finite(mu, f"mu{name}", "frechet_distance()")
        _checks.finite(cov, f"cov{name}", "frechet_distance()")
        scale = float(cov.abs().max()) or 1.0
        if not torch.allclose(cov, cov.T, atol=1e-8 * scale, rtol=1e-6):
            raise ValueError(f"frechet_distance(): cov{name} is not symmetric; pass a covariance matrix "
                             "(feature_statistics computes one)")
        lowest = float(torch.linalg.eigvalsh((cov + cov.T) / 2).min())
        if lowest < -1e-6 * scale:
            raise ValueError(f"frechet_distance(): cov{name} is not positive semi-definite (its smallest eigenvalue "
                             f"is {lowest:.3g}); a covariance matrix never is: pass the output of feature_statistics")
    root1 = _sqrtm_psd(cov1)
    cross = torch.linalg.eigvalsh(root1 @ cov2 @ root1).clamp(min=0).sqrt().sum()
    value = (mu1 - mu2).pow(2).sum() + cov1.trace() + cov2.trace() - 2 * cross
    return float(value.clamp(min=0))


@torch.inference_mode()
def classifier_features(images: torch.Tensor, classifier, batch_size: int = 500) -> torch.Tensor:
    """The FID features (N, D) of images (N, 1, H, W) in [-1, 1] (or uint8), computed in batches."""
    if not torch.is_tensor(images) or images.dim() != 4:
        shape = tuple(images.shape) if torch.is_tensor(images) else type(images).__name__
        raise ValueError(f"classifier_features(): expected a batch of images (N, 1, H, W) in [-1, 1], got {shape}")
    if tuple(images.shape[-2:]) != (28, 28):
        raise ValueError(f"classifier_features(): the FID classifier was trained on 28x28 FashionMNIST images, got "
                         f"{images.shape[-2]}x{images.shape[-1]}; crop or pad the images to 28x28 first")
    if images.dtype == torch.uint8:
        images = to_model_range(images)
    device = next(classifier.parameters()).device
    classifier.eval()
    return torch.cat([classifier.features(images[i:i + batch_size].to(device, torch.float32)).cpu()
                      for i in range(0, len(images), batch_size)])


def fid(images: torch.Tensor, reference: torch.Tensor, classifier=None) -> float:
    """FID between two image sets (N, 1, 28, 28) in [-1, 1] or uint8, on the FashionMNIST classifier's
    features (:func:`fid_classifier`, trained once and cached) (chapter 5).

    Lower is better; 0 only for identical statistics. FID is biased upwards for small N: compare
    only numbers computed with the same N and reference, and read them against the real-vs-real
    baseline (real images not in the reference, the same N).
    """
    if classifier is None:
        classifier = fid_classifier(verbose=False)
    elif isinstance(classifier, type) or not callable(getattr(classifier, "features", None)):
        raise ValueError("fid(): classifier must be the feature network from dl.fid.fid_classifier() (or None to "
                         f"load it), got {getattr(classifier, '__name__', type(classifier).__name__)}")
    for name, value in (("images", images), ("reference", reference)):
        if not torch.is_tensor(value) or value.dim() != 4 or len(value) < 2:
            shape = tuple(value.shape) if torch.is_tensor(value) else type(value).__name__
            raise ValueError(f"fid(): {name} must be a batch (N >= 2, 1, H, W) of images, got {shape}")
        if value.is_floating_point():
            _checks.data(value, name, "fid()", shape_hint="(N, 1, H, W), images in [-1, 1] or uint8")
    if images.shape[1:] != reference.shape[1:]:
        raise ValueError(f"fid(): images {tuple(images.shape[1:])} and reference {tuple(reference.shape[1:])} must "
                         "have the same size; FID between different sizes compares the resizing, not the images "
                         "(crop or pad one set to the other's size first)")
    return frechet_distance(*feature_statistics(classifier_features(images, classifier)),
                            *feature_statistics(classifier_features(reference, classifier)))


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
    Prints where it came from and its test accuracy when ``verbose``; the file is ``model.cache_path``.
    """
    images, labels = fashion_mnist_tensors(train=True)
    test_images, test_labels = fashion_mnist_tensors(train=False)
    cache_dir = Path(cache_dir) if cache_dir is not None else settings.cache_dir()
    path = cache_dir / f"fid_classifier_{len(images)}_{fingerprint(images)}_{epochs}epochs.pt"
    model = FashionClassifier()
    state = None
    if path.is_file():
        try:
            state = checkpoints.load(path)
            if state.get("kind") != CACHE_KIND:
                raise ValueError(f"unexpected kind {state.get('kind')!r}")
            model.load_state_dict(state["model"])
        except Exception as error:  # a truncated or foreign file: warn and train afresh
            warnings.warn(f"fid_classifier(): the cached network {path.name} (in dl.settings.cache_dir()) "
                          f"is unreadable ({str(error).replace(str(path), path.name)}); retraining it",
                          _checks.BookWarning)
            state = None
    source = "loaded from the cache (trained once on these training images)"
    if state is None:
        model = train_classifier(images, labels, epochs=epochs)
        source = f"trained on {len(images):,} images and cached"
        try:
            checkpoints.save(path, {"kind": CACHE_KIND, "model": model.state_dict()})
        except OSError as error:  # a full or read-only disk: keep the trained network, say so
            source = f"trained on {len(images):,} images (not cached: {error.strerror or error})"
    model.cache_path = path
    model.eval()
    model.requires_grad_(False)
    model.test_accuracy = accuracy(model, test_images, test_labels)
    model.train_images, model.test_images = len(images), len(test_images)
    if verbose:
        print(f"FID classifier {source}; test accuracy {model.test_accuracy:.1%} on {len(test_images):,} test images")
    return model
