"""Sample quality, measured: distances between sample sets, and FID on FashionMNIST.

Every metric comes with its baseline (data against fresh data from the same distribution), so that a
number can be read: a model is good when its distance is close to the baseline.
"""
from __future__ import annotations

import torch

# ---------------------------------------------------------------- sample diversity (chapter 1)
def _image_batch(x, name: str, what: str = "images") -> torch.Tensor:
    if not torch.is_tensor(x) or x.dim() < 2 or not x.is_floating_point():
        shape = tuple(x.shape) if torch.is_tensor(x) else type(x).__name__
        raise ValueError(f"{name}(): expected {what} as a floating-point batch (N, ...), got {shape}")
    return x.detach().to("cpu", torch.float64).flatten(1)


def pixel_std(images: torch.Tensor) -> float:
    """Diversity of a set of images (chapter 1): each pixel's standard deviation across the set,
    averaged over the pixels.

    Identical images give 0. Compare a model's samples with real images of the same size: samples
    with much less spread than the data are all alike (the naive denoiser's shortcoming).
    """
    flat = _image_batch(images, "pixel_std")
    if len(flat) < 2:
        raise ValueError(f"pixel_std(): needs at least 2 images, got {len(flat)}")
    return float(flat.std(dim=0).mean())


def nearest_neighbour_distance(samples: torch.Tensor, reference: torch.Tensor) -> torch.Tensor:
    """For each sample, the root-mean-square pixel difference to its nearest image in ``reference``
    (chapter 1), shape (N,).

    Small values mean copies of training images; its baseline is the same distance from held-out
    real images (the test split) to the training set.
    """
    a = _image_batch(samples, "nearest_neighbour_distance", "samples")
    b = _image_batch(reference, "nearest_neighbour_distance", "reference images")
    if len(a) == 0 or len(b) == 0:
        raise ValueError("nearest_neighbour_distance(): both sets need at least one image")
    if a.shape[1] != b.shape[1]:
        raise ValueError(
            f"nearest_neighbour_distance(): samples and reference must have the same image size, "
            f"got {tuple(samples.shape[1:])} and {tuple(reference.shape[1:])}"
        )
    return torch.cdist(a, b).min(dim=1).values / a.shape[1] ** 0.5


# ---------------------------------------------------------------- distances between sample sets (chapters 3 and 4)
def energy_distance(a: torch.Tensor, b: torch.Tensor) -> float:
    """Squared energy distance between two sample sets ``a`` (N, D) and ``b`` (M, D) (chapters 3, 4).

    ``D² = 2 E|X - Y| - E|X - X'| - E|Y - Y'|`` with X, X' ~ a and Y, Y' ~ b (Székely & Rizzo).
    It is zero exactly when the two distributions are equal. The within-set means are unbiased
    U-statistics (pairs i != j only), so for two samples of the same distribution the value scatters
    around 0 (it can be slightly negative); read it against the data-vs-data baseline.
    """
    a, b = torch.as_tensor(a), torch.as_tensor(b)
    if a.ndim != 2 or b.ndim != 2:
        raise ValueError(
            f"energy_distance(): expected two 2-D sample sets (N, D) and (M, D), "
            f"got shapes {tuple(a.shape)} and {tuple(b.shape)}"
        )
    if a.shape[1] != b.shape[1]:
        raise ValueError(
            f"energy_distance(): both sample sets must have the same dimensionality D, "
            f"got (N, D) = {tuple(a.shape)} and (M, D) = {tuple(b.shape)}"
        )
    if a.shape[0] < 2 or b.shape[0] < 2:
        raise ValueError(
            f"energy_distance(): each sample set needs at least 2 points, got {a.shape[0]} and {b.shape[0]}"
        )
    # float64 on the CPU: the value is a small difference of large means
    a = a.detach().to("cpu", torch.float64)
    b = b.detach().to("cpu", torch.float64)
    n, m = a.shape[0], b.shape[0]
    between = torch.cdist(a, b).mean()
    within_a = torch.cdist(a, a).sum() / (n * (n - 1))
    within_b = torch.cdist(b, b).sum() / (m * (m - 1))
    return float(2 * between - within_a - within_b)


def _two_sample_sets(a, b, name: str):
    """Both sets as float64 CPU tensors (N, D) and (M, D) with the same D, or a ValueError saying why."""
    a, b = torch.as_tensor(a), torch.as_tensor(b)
    if a.ndim != 2 or b.ndim != 2:
        raise ValueError(f"{name}(): expected two 2-D sample sets (N, D) and (M, D), "
                         f"got shapes {tuple(a.shape)} and {tuple(b.shape)}")
    if a.shape[1] != b.shape[1]:
        raise ValueError(f"{name}(): both sample sets must have the same dimensionality D, "
                         f"got (N, D) = {tuple(a.shape)} and (M, D) = {tuple(b.shape)}")
    if a.shape[0] < 1 or b.shape[0] < 1:
        raise ValueError(f"{name}(): each sample set needs at least 1 point, got {a.shape[0]} and {b.shape[0]}")
    return a.detach().to("cpu", torch.float64), b.detach().to("cpu", torch.float64)


def mmd(a: torch.Tensor, b: torch.Tensor, bandwidth: float = 0.1) -> float:
    """Squared maximum mean discrepancy between sample sets ``a`` (N, D) and ``b`` (M, D) (chapter 4).

    With the Gaussian kernel k(x, y) = exp(−|x − y|² / (2 h²)), h = ``bandwidth``:

        MMD² = E k(X, X') + E k(Y, Y') − 2 E k(X, Y),     X, X' ~ a,  Y, Y' ~ b

    (Gretton et al. 2012), estimated with all pairs (the "V-statistic"): it is the squared distance
    between the two sets' mean kernel features, so it is >= 0 and exactly 0 for identical sets. Two
    finite samples of one distribution give a small positive value (about 2/N): the data-vs-data
    baseline (:func:`data_baseline`). ``h`` sets the scale of detail compared; 0.1 suits the
    butterfly, whose wings are about 0.1-0.5 wide.
    """
    if not (isinstance(bandwidth, (int, float)) and not isinstance(bandwidth, bool) and bandwidth > 0):
        raise ValueError(f"mmd(): bandwidth must be a positive number, got {bandwidth!r}")
    a, b = _two_sample_sets(a, b, "mmd")

    def mean_kernel(x, y):
        return torch.exp(-torch.cdist(x, y).square() / (2 * bandwidth**2)).mean()

    value = float(mean_kernel(a, a) + mean_kernel(b, b) - 2 * mean_kernel(a, b))
    return max(value, 0.0)  # >= 0 in exact arithmetic; rounding can leave -1e-17 for identical sets


def mean_distance_to_curve(points: torch.Tensor, curve: torch.Tensor, chunk: int = 1024) -> float:
    """Mean Euclidean distance from each point (N, D) to the nearest vertex of ``curve`` (M, D) (chapter 4).

    ``curve`` is a densely sampled curve (e.g. ``dl.data.butterfly_curve(20_000)``); with vertices
    spaced δ apart, the value overestimates the distance to the true curve by at most δ/2. It says
    how close samples lie to the curve, not whether they cover all of it: read it with :func:`mmd`
    or :func:`energy_distance`.
    """
    points, curve = _two_sample_sets(points, curve, "mean_distance_to_curve")
    nearest = torch.cat([torch.cdist(part, curve).min(dim=1).values for part in points.split(chunk)])
    return float(nearest.mean())


def sample_distances(samples: torch.Tensor, reference: torch.Tensor, curve: torch.Tensor | None = None,
                     bandwidth: float = 0.1) -> dict:
    """How far 2-D ``samples`` are from a ``reference`` data set (chapter 4), as a dict:

    ``"mmd"`` (:func:`mmd`, squared, Gaussian kernel of width ``bandwidth``), ``"energy"``
    (:func:`energy_distance`) and, with ``curve``, ``"curve"`` (:func:`mean_distance_to_curve`).
    Compare with the same numbers for a fresh data set of the same size (:func:`data_baseline`).
    """
    result = {"mmd": mmd(samples, reference, bandwidth), "energy": energy_distance(samples, reference)}
    if curve is not None:
        result["curve"] = mean_distance_to_curve(samples, curve)
    return result


def data_baseline(metric, draw, n: int, repeats: int = 3, seed: int = 0):
    """What ``metric`` gives for fresh data of ``n`` points: the floor a model's samples are compared with.

    ``draw(n, generator)`` returns ``n`` data points (e.g. ``dl.data.butterfly``). ``metric(a, b)`` is
    called with ``a`` a fresh data set in place of a model's samples and ``b`` another fresh one (the
    reference): a sample-set distance such as :func:`mmd`, or a function returning a dict of them
    (:func:`sample_distances`), in which case the dict of averages is returned. Averages ``repeats``
    pairs drawn from a generator seeded with ``seed``. A model whose samples reach this value is as
    close to the data as a second data set of the same size.
    """
    if isinstance(n, bool) or not isinstance(n, int) or n < 2:
        raise ValueError(f"data_baseline(): n must be an int >= 2, got {n!r}")
    if isinstance(repeats, bool) or not isinstance(repeats, int) or repeats < 1:
        raise ValueError(f"data_baseline(): repeats must be a positive int, got {repeats!r}")
    generator = torch.Generator().manual_seed(seed)
    values = [metric(draw(n, generator=generator), draw(n, generator=generator)) for _ in range(repeats)]
    if isinstance(values[0], dict):
        return {key: sum(v[key] for v in values) / repeats for key in values[0]}
    return sum(values) / repeats


# ---------------------------------------------------------------- FID (chapter 5)
def feature_statistics(features: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Mean (D,) and covariance (D, D) of features (N, D), in float64 (chapter 5, FID)."""
    if not torch.is_tensor(features) or features.dim() != 2 or features.shape[0] < 2:
        shape = tuple(features.shape) if torch.is_tensor(features) else type(features).__name__
        raise ValueError(f"feature_statistics(): expected features (N, D) with N >= 2, got {shape}")
    features = features.detach().to("cpu", torch.float64)
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
    root1 = _sqrtm_psd(cov1)
    cross = torch.linalg.eigvalsh(root1 @ cov2 @ root1).clamp(min=0).sqrt().sum()
    value = (mu1 - mu2).pow(2).sum() + cov1.trace() + cov2.trace() - 2 * cross
    return float(value.clamp(min=0))


@torch.inference_mode()
def classifier_features(images: torch.Tensor, classifier, batch_size: int = 500) -> torch.Tensor:
    """The FID features (N, D) of images (N, 1, H, W) in [-1, 1] (or uint8), computed in batches."""
    if not torch.is_tensor(images) or images.dim() != 4:
        shape = tuple(images.shape) if torch.is_tensor(images) else type(images).__name__
        raise ValueError(f"fid(): expected a batch of images (N, 1, H, W) in [-1, 1], got {shape}")
    if images.dtype == torch.uint8:
        from .data import to_model_range
        images = to_model_range(images)
    device = next(classifier.parameters()).device
    classifier.eval()
    return torch.cat([classifier.features(images[i:i + batch_size].to(device, torch.float32)).cpu()
                      for i in range(0, len(images), batch_size)])


def fid(images: torch.Tensor, reference: torch.Tensor, classifier=None) -> float:
    """FID between two image sets (N, 1, 28, 28) in [-1, 1] or uint8, on the FashionMNIST classifier's
    features (:func:`ddpm_lessons.models.classifier.fid_classifier`, trained once and cached) (chapter 5).

    Lower is better; 0 only for identical statistics. FID is biased upwards for small N: compare
    only numbers computed with the same N and reference, and read them against the real-vs-real
    baseline (real images not in the reference, the same N).
    """
    if classifier is None:
        from .models.classifier import fid_classifier
        classifier = fid_classifier(verbose=False)
    for name, value in (("images", images), ("reference", reference)):
        if not torch.is_tensor(value) or value.dim() != 4 or len(value) < 2:
            shape = tuple(value.shape) if torch.is_tensor(value) else type(value).__name__
            raise ValueError(f"fid(): {name} must be a batch (N >= 2, 1, H, W) of images, got {shape}")
    return frechet_distance(*feature_statistics(classifier_features(images, classifier)),
                            *feature_statistics(classifier_features(reference, classifier)))
