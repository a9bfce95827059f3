"""Sample quality with its uncertainty, on the FID classifier's features (chapters 1 and 5-7).

One FID from 100 samples cannot rank two samplers: it moves by tens of per cent from one sample set
to the next, and it is biased upwards by an amount that depends on N. This module measures a set of
samples against a reference set (the training images) on the features of the FID classifier
(:func:`ddpm_lessons.fid.fid_classifier`), each number with what a comparison needs:

- **FID** (Heusel et al. 2017) with a 95% bootstrap interval over the samples (:func:`fid_interval`);
- **KID** (Bińkowski et al. 2018): the unbiased estimate of the squared maximum mean discrepancy with the
  kernel k(x, y) = (x·y/d + 1)³, with its standard error from the jackknife (:func:`kid`). Unbiased
  at any N, so a KID from 1,000 samples and one from 100 test images estimate the same quantity;
- **precision and recall** (Kynkäänniemi et al. 2019): the share of the samples that fall among the
  reference images (fidelity), and the share of the reference images that fall among the samples
  (diversity) (:func:`precision_recall`).

:func:`evaluate` computes all of them for one image set and returns a :class:`Quality`.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import torch

from . import _checks
from .fid import classifier_features, feature_statistics, fid_classifier, frechet_distance
from .models.classifier import FEATURES

KID_SCALE = 1e3
"""KID is reported ×10³ (as is usual): the kernel values are of order 1, their differences small."""


def _features(x, name: str, where: str) -> torch.Tensor:
    if not torch.is_tensor(x) or x.dim() != 2 or len(x) < 2:
        shape = tuple(x.shape) if torch.is_tensor(x) else type(x).__name__
        raise ValueError(f"{where}: {name} must be features (N, D) with N >= 2 (from dl.fid.classifier_features), "
                         f"got {shape}")
    return _checks.finite(x.detach().to("cpu", torch.float64), name, where)


def _pair(samples, reference, where: str) -> tuple[torch.Tensor, torch.Tensor]:
    samples, reference = _features(samples, "samples", where), _features(reference, "reference", where)
    if samples.shape[1] != reference.shape[1]:
        raise ValueError(f"{where}: samples and reference must have the same number of features D, got "
                         f"{samples.shape[1]} and {reference.shape[1]}")
    return samples, reference


def _generator(seed_or_generator) -> torch.Generator:
    if isinstance(seed_or_generator, torch.Generator):
        return seed_or_generator
    return torch.Generator().manual_seed(_checks.positive_int(seed_or_generator, "seed", "quality", minimum=0))


# ---------------------------------------------------------------- FID with an interval
def fid_interval(samples: torch.Tensor, reference: torch.Tensor, resamples: int = 200, level: float = 0.95,
                 seed=0) -> tuple[float, float, float]:
    """FID of ``samples`` (N, D features) against ``reference`` (M, D), and a bootstrap interval:
    ``(fid, low, high)`` (chapter 5).

    The samples are drawn again with replacement ``resamples`` times (the reference is fixed: it is
    the target) and FID is computed for each set. A resampled set repeats some images, which FID
    reads as lost diversity, so every resampled FID is pushed up (by about 7 on the 100 real test
    images, whose FID is 2). The interval is therefore the spread of the resampled FIDs around
    their own median, placed around the FID of the samples: ``fid + (q_lo - median)`` to
    ``fid + (q_hi - median)``, clipped at 0. It says how far FID moves when the sample set changes;
    it does not remove FID's bias, which depends on N: compare FIDs of equal N only.
    """
    where = "fid_interval()"
    samples, reference = _pair(samples, reference, where)
    _checks.positive_int(resamples, "resamples", where, minimum=20)
    _checks.number(level, "level", where, 0.0, 1.0, low_open=True, high_open=True)
    reference_stats = feature_statistics(reference)
    value = frechet_distance(*feature_statistics(samples), *reference_stats)
    generator = _generator(seed)
    replicates = torch.tensor([
        frechet_distance(*feature_statistics(samples[torch.randint(len(samples), (len(samples),),
                                                                     generator=generator)]), *reference_stats)
        for _ in range(resamples)], dtype=torch.float64)
    low, median, high = replicates.quantile(torch.tensor([(1 - level) / 2, 0.5, (1 + level) / 2], dtype=torch.float64))
    return value, max(0.0, value + float(low - median)), value + float(high - median)


# ---------------------------------------------------------------- KID
def _cubic_kernel(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    return (a @ b.T / a.shape[1] + 1) ** 3


def mmd_unbiased(samples: torch.Tensor, reference: torch.Tensor) -> float:
    """The unbiased estimate of MMD² with the cubic kernel (Bińkowski et al. 2018, eq. 3; chapter 5):

    ``MMD²_u = Σ_{i≠j} k(x_i, x_j) / (n(n−1)) + Σ_{i≠j} k(y_i, y_j) / (m(m−1)) − 2 Σ_{i,j} k(x_i, y_j) / (nm)``,

    ``k(x, y) = (x·y/d + 1)³``. Its expectation is MMD², zero only for equal distributions; a single
    estimate can be negative.
    """
    x, y = _pair(samples, reference, "mmd_unbiased()")
    n, m = len(x), len(y)
    kxx, kyy = _cubic_kernel(x, x), _cubic_kernel(y, y)
    within_x = (kxx.sum() - kxx.diagonal().sum()) / (n * (n - 1))
    within_y = (kyy.sum() - kyy.diagonal().sum()) / (m * (m - 1))
    return float(within_x + within_y - 2 * _cubic_kernel(x, y).mean())


def feature_scale(reference: torch.Tensor) -> float:
    """The root mean square of the reference's features: KID divides every feature by it, so that
    x·y/d is of order 1, as with the Inception features KID was defined on."""
    reference = _features(reference, "reference", "feature_scale()")
    return float(reference.pow(2).mean().sqrt()) or 1.0


def kid(samples: torch.Tensor, reference: torch.Tensor) -> tuple[float, float]:
    """KID ×10³ of ``samples`` (N, D features) against ``reference`` (M, D), and its standard error:
    ``(kid, standard_error)`` (Bińkowski et al. 2018; chapter 5).

    KID is :func:`mmd_unbiased` on all the samples and the whole reference, after dividing every
    feature by :func:`feature_scale` of the reference. Unbiased at any N: a KID from 100 images and
    one from 1,000 estimate the same number, the larger N with the smaller error. The standard
    error is the jackknife's: the estimate is recomputed on the N subsets that leave one sample out,
    and ``sqrt((N−1)/N · Σ (KID_(i) − mean)²)`` measures how much it depends on the particular
    samples (the reference is fixed: it is the target). It is computed from the kernel's row sums,
    not by N recomputations.
    """
    where = "kid()"
    x, y = _pair(samples, reference, where)
    if len(x) < 3:
        raise ValueError(f"{where}: the jackknife needs at least 3 samples, got {len(x)}")
    scale = feature_scale(y)
    x, y = x / scale, y / scale
    n, m = len(x), len(y)
    kxx, kyy, kxy = _cubic_kernel(x, x), _cubic_kernel(y, y), _cubic_kernel(x, y)
    kxx.fill_diagonal_(0)
    pairs_x, within_y = kxx.sum(), (kyy.sum() - kyy.diagonal().sum()) / (m * (m - 1))
    value = pairs_x / (n * (n - 1)) + within_y - 2 * kxy.sum() / (n * m)
    # leaving sample i out removes its row and column of kxx and its row of kxy
    left_out = ((pairs_x - 2 * kxx.sum(1)) / ((n - 1) * (n - 2)) + within_y
                - 2 * (kxy.sum() - kxy.sum(1)) / ((n - 1) * m))
    error = ((n - 1) / n * (left_out - left_out.mean()).pow(2).sum()).sqrt()
    return KID_SCALE * float(value), KID_SCALE * float(error)


# ---------------------------------------------------------------- precision and recall
def _kth_neighbour_radius(points: torch.Tensor, k: int) -> torch.Tensor:
    """Each point's distance to its k-th nearest neighbour among the others."""
    return torch.cdist(points, points).kthvalue(k + 1, dim=1).values    # the nearest (k = 0) is the point itself


def precision_recall(samples: torch.Tensor, reference: torch.Tensor, k: int = 3) -> tuple[float, float]:
    """Improved precision and recall (Kynkäänniemi et al. 2019, eqs. 1-3; chapter 6): ``(precision, recall)``.

    Around each reference feature vector a ball reaches its k-th nearest reference neighbour; their
    union estimates where real images lie. **Precision** is the share of the samples inside it
    (fidelity: no sample far from every real image). **Recall** swaps the roles: the share of the
    reference inside the balls around the samples (diversity: no region of the real images that
    no sample visits). Both depend on the set sizes (the balls shrink as a set grows): compare them
    between sample sets of one size, as large as the reference (the paper's choice; :func:`evaluate`
    does so).
    """
    where = "precision_recall()"
    samples, reference = _pair(samples, reference, where)
    k = _checks.positive_int(k, "k", where)
    if k >= min(len(samples), len(reference)):
        raise ValueError(f"{where}: k = {k} needs more than k points in each set, got {len(samples)} samples and "
                         f"{len(reference)} reference points")
    between = torch.cdist(samples, reference)                              # (N, M)
    precision = (between <= _kth_neighbour_radius(reference, k)[None, :]).any(1).double().mean()
    recall = (between <= _kth_neighbour_radius(samples, k)[:, None]).any(0).double().mean()
    return float(precision), float(recall)


# ---------------------------------------------------------------- all of it, for one image set
def feature_network(classifier) -> str:
    """What the features of every number here are, and how good the network behind them is: the
    sentence each page that reports an FID prints (chapters 1 and 5-7)."""
    trained_on = getattr(classifier, "train_images", None)
    accuracy, tested_on = getattr(classifier, "test_accuracy", None), getattr(classifier, "test_images", None)
    if trained_on is None or accuracy is None:
        raise ValueError("feature_network(): pass the network from dl.fid.fid_classifier(), which records how it was "
                         "trained and tested")
    return (f"The features: the {FEATURES} features of a small convolutional classifier trained on the {trained_on:,} "
            f"training images (dl.fid.fid_classifier), which labels {accuracy:.0%} of the {tested_on:,} test images "
            f"correctly (chance: 10%). Inception, the usual FID network, knows nothing of 28×28 grey clothes; these "
            f"numbers are not comparable with published FIDs.")



@dataclass(frozen=True)
class Quality:
    """What :func:`evaluate` measured for one image set against the reference (chapters 1 and 5-7)."""

    n: int
    fid: float
    fid_low: float
    fid_high: float
    kid: float
    kid_error: float
    precision: float
    recall: float
    n_precision_recall: int

    def fid_text(self, digits: int = 1) -> str:
        """``"9.7 (7.9-12.1)"``: the FID and its 95% interval."""
        return f"{self.fid:.{digits}f} ({self.fid_low:.{digits}f}-{self.fid_high:.{digits}f})"

    def kid_text(self, digits: int = 1) -> str:
        """``"3.1 ± 0.4"``: KID ×10³ and its standard error."""
        return f"{self.kid:.{digits}f} ± {self.kid_error:.{digits}f}"

    def kid_interval(self, z: float = 1.96) -> tuple[float, float]:
        """The 95% interval of KID (±1.96 standard errors)."""
        return self.kid - z * self.kid_error, self.kid + z * self.kid_error


def kid_difference(a: Quality, b: Quality, z: float = 1.96) -> tuple[float, float, float]:
    """KID(a) − KID(b) with a 95% interval ``(difference, low, high)``: "a is worse than b" holds only
    when ``low > 0``. The two errors are added as independent ones (conservative when the two sets
    share their starting noise, which makes them agree more)."""
    difference, error = a.kid - b.kid, math.hypot(a.kid_error, b.kid_error)
    return difference, difference - z * error, difference + z * error


def evaluate(images: torch.Tensor, reference: torch.Tensor, classifier=None, *, seed=0, resamples: int = 200,
             k: int = 3) -> Quality:
    """FID with its interval, KID with its error, precision and recall of ``images`` against
    ``reference`` (both (N, 1, 28, 28) in [-1, 1] or uint8), on the FID classifier's features
    (chapters 1 and 5-7).

    Precision and recall use at most as many images as the reference holds (the first ones), so
    that both sets have one size. ``seed`` fixes the bootstrap.
    """
    classifier = fid_classifier(verbose=False) if classifier is None else classifier
    features = classifier_features(images, classifier).double()
    reference_features = classifier_features(reference, classifier).double()
    value, low, high = fid_interval(features, reference_features, resamples=resamples, seed=seed)
    kid_value, kid_error = kid(features, reference_features)
    n_pr = min(len(features), len(reference_features))
    precision, recall = precision_recall(features[:n_pr], reference_features, k=k)
    return Quality(len(features), value, low, high, kid_value, kid_error, precision, recall, n_pr)
