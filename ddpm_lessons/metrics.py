"""Sample quality, measured: distances between sample sets (FID is in :mod:`ddpm_lessons.fid`).

Every metric comes with its baseline (data against fresh data from the same distribution), so that a
number can be read: a model is good when its distance is close to the baseline.
"""
from __future__ import annotations

import math

import torch

from . import _checks

# ---------------------------------------------------------------- sample diversity (chapter 1)
def _image_batch(x, name: str, what: str = "images") -> torch.Tensor:
    if not torch.is_tensor(x) or x.dim() < 2 or not x.is_floating_point():
        shape = tuple(x.shape) if torch.is_tensor(x) else type(x).__name__
        raise ValueError(f"{name}(): expected {what} as a floating-point batch (N, ...), got {shape}")
    return _checks.finite(x.detach().to("cpu", torch.float64).flatten(1), what, f"{name}()")


def pixel_std(images: torch.Tensor) -> float:
    """Diversity of a set of images (chapter 1): each pixel's standard deviation across the set,
    averaged over the pixels.

    Identical images give 0. Compare a model's samples with real images of the same size: samples
    with much less spread than the data vary less than real images do (the naive denoiser's samples,
    chapter 1).
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
    a, b = _sample_set(a, "energy_distance()"), _sample_set(b, "energy_distance()")
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
    a = _checks.finite(a.detach().to("cpu", torch.float64), "a", "energy_distance()")
    b = _checks.finite(b.detach().to("cpu", torch.float64), "b", "energy_distance()")
    n, m = a.shape[0], b.shape[0]
    between = torch.cdist(a, b).mean()
    within_a = torch.cdist(a, a).sum() / (n * (n - 1))
    within_b = torch.cdist(b, b).sum() / (m * (m - 1))
    return float(2 * between - within_a - within_b)


def _sample_set(x, where: str) -> torch.Tensor:
    if x is None or isinstance(x, (str, bytes)):
        raise ValueError(f"{where}: expected a sample set, a tensor (N, D) of points, got {type(x).__name__}")
    try:
        return torch.as_tensor(x)
    except (TypeError, ValueError, RuntimeError) as error:
        raise ValueError(f"{where}: expected a sample set, a tensor (N, D) of points ({error})") from None


def _two_sample_sets(a, b, name: str):
    """Both sets as float64 CPU tensors (N, D) and (M, D) with the same D, or a ValueError saying why."""
    a, b = _sample_set(a, f"{name}()"), _sample_set(b, f"{name}()")
    if a.ndim != 2 or b.ndim != 2:
        raise ValueError(f"{name}(): expected two 2-D sample sets (N, D) and (M, D), "
                         f"got shapes {tuple(a.shape)} and {tuple(b.shape)}")
    if a.shape[1] != b.shape[1]:
        raise ValueError(f"{name}(): both sample sets must have the same dimensionality D, "
                         f"got (N, D) = {tuple(a.shape)} and (M, D) = {tuple(b.shape)}")
    if a.shape[0] < 1 or b.shape[0] < 1:
        raise ValueError(f"{name}(): each sample set needs at least 1 point, got {a.shape[0]} and {b.shape[0]}")
    return (_checks.finite(a.detach().to("cpu", torch.float64), "the first sample set", f"{name}()"),
            _checks.finite(b.detach().to("cpu", torch.float64), "the second sample set", f"{name}()"))


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


BLOCK_DISTANCES = 2**22
"""Distances computed at once by :func:`mean_distance_to_curve`: 32 MB in float64, whatever N and M."""


def mean_distance_to_curve(points: torch.Tensor, curve: torch.Tensor, chunk: int | None = None) -> float:
    """Mean Euclidean distance from each point (N, D) to the nearest vertex of ``curve`` (M, D) (chapter 4).

    ``curve`` is a densely sampled curve (e.g. ``dl.data.butterfly_curve(20_000)``); with vertices
    spaced δ apart, the value overestimates the distance to the true curve by at most δ/2. It says
    how close samples lie to the curve, not whether they cover all of it: read it with :func:`mmd`
    or :func:`energy_distance`. The points are taken ``chunk`` at a time (default: as many as make
    :data:`BLOCK_DISTANCES` distances), so that the N × M distances never sit in memory together.
    """
    points, curve = _two_sample_sets(points, curve, "mean_distance_to_curve")
    if chunk is not None:
        _checks.positive_int(chunk, "chunk", "mean_distance_to_curve()")
    rows = chunk or max(1, BLOCK_DISTANCES // len(curve))
    nearest = torch.cat([torch.cdist(part, curve).min(dim=1).values for part in points.split(rows)])
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
    _checks.callable_as(metric, (None, None), "metric(a, b)", "metric", "data_baseline()",
                        hint="Pass the function itself, e.g. dl.metrics.mmd, not its name.")
    _checks.callable_as(draw, (2, None), "draw(n, generator)", "draw", "data_baseline()")
    _checks.positive_int(n, "n", "data_baseline()", minimum=2)
    _checks.positive_int(repeats, "repeats", "data_baseline()")
    generator = torch.Generator().manual_seed(seed)
    values = [metric(draw(n, generator=generator), draw(n, generator=generator)) for _ in range(repeats)]
    if isinstance(values[0], dict):
        return {key: sum(v[key] for v in values) / repeats for key in values[0]}
    return sum(values) / repeats


# ---------------------------------------------------------------- is a difference more than seed noise? (chapters 4, 5)
def permutation_p_value(a, b) -> float:
    """Exact two-sided permutation test of equal means for two small sets of runs (chapters 4 and 5).

    The share of all ways to split ``a + b`` into groups of their sizes whose means differ at least
    as much as ``a``'s and ``b``'s: small when the difference is more than the runs' own scatter.
    With n runs per side the smallest possible value is 2 / C(2n, n) (2/70 for 4 seeds, 0.1 for 3).
    """
    import itertools
    import statistics

    a, b = [float(v) for v in a], [float(v) for v in b]
    if not a or not b or not all(math.isfinite(v) for v in a + b):
        raise ValueError("permutation_p_value(): expected two non-empty lists of finite numbers (one per run)")
    pooled, observed = a + b, abs(statistics.mean(a) - statistics.mean(b))
    splits = list(itertools.combinations(range(len(pooled)), len(a)))
    extreme = sum(abs(statistics.mean(pooled[i] for i in group)
                      - statistics.mean(pooled[i] for i in range(len(pooled)) if i not in group)) >= observed - 1e-12
                  for group in splits)
    return extreme / len(splits)
