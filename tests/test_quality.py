"""Sample quality with its uncertainty (dl.quality): KID against its formula and the jackknife, the FID
bootstrap interval, precision and recall on sets whose answer is known, and clear errors."""
import math

import pytest
import torch

from ddpm_lessons import fid, quality


def gaussian(n, d=8, shift=0.0, scale=1.0, seed=0):
    return shift + scale * torch.randn(n, d, generator=torch.Generator().manual_seed(seed), dtype=torch.float64)


def test_mmd_unbiased_is_the_formula_written_out():
    x, y = gaussian(5, 3, seed=1), gaussian(7, 3, seed=2)
    k = lambda a, b: (a @ b / 3 + 1) ** 3                                       # noqa: E731
    within_x = sum(k(x[i], x[j]) for i in range(5) for j in range(5) if i != j) / 20
    within_y = sum(k(y[i], y[j]) for i in range(7) for j in range(7) if i != j) / 42
    between = sum(k(x[i], y[j]) for i in range(5) for j in range(7)) / 35
    assert quality.mmd_unbiased(x, y) == pytest.approx(float(within_x + within_y - 2 * between), rel=1e-12)


def test_kid_is_the_scaled_mmd_and_its_error_the_jackknife_by_recomputation():
    x, y = gaussian(9, 4, shift=0.3, seed=3), gaussian(12, 4, seed=4)
    value, error = quality.kid(x, y)
    scale = quality.feature_scale(y)
    assert value == pytest.approx(1e3 * quality.mmd_unbiased(x / scale, y / scale), rel=1e-10)
    left_out = torch.tensor([quality.mmd_unbiased(torch.cat([x[:i], x[i + 1:]]) / scale, y / scale) for i in range(9)], dtype=torch.float64)
    jackknife = math.sqrt(8 / 9 * float((left_out - left_out.mean()).pow(2).sum()))
    assert error == pytest.approx(1e3 * jackknife, rel=1e-9)


def test_kid_is_unbiased_zero_for_one_distribution_and_grows_with_the_shift():
    reference = gaussian(2000, seed=5)
    same = torch.tensor([quality.kid(gaussian(200, seed=10 + i), reference)[0] for i in range(20)])
    assert abs(same.mean()) < 3 * same.std() / math.sqrt(20)      # centred on 0: unbiased, also at N = 200
    assert (same < 0).any()                                       # a single estimate may be negative
    small, large = quality.kid(gaussian(500, shift=0.2, seed=6), reference), quality.kid(gaussian(500, shift=0.6, seed=7), reference)
    assert small[0] - 3 * small[1] > 0 and large[0] > small[0] + 3 * (small[1] + large[1])


def test_the_jackknife_error_matches_the_spread_over_independent_sample_sets():
    reference = gaussian(1000, seed=8)
    runs = [quality.kid(gaussian(300, shift=0.3, seed=100 + i), reference) for i in range(40)]
    spread = torch.tensor([value for value, _ in runs]).std().item()
    typical_error = sum(error for _, error in runs) / len(runs)
    assert 0.7 < typical_error / spread < 1.4


def test_fid_interval_holds_the_fid_and_narrows_with_n():
    reference = gaussian(2000, seed=9)
    value, low, high = quality.fid_interval(gaussian(200, shift=0.5, seed=11), reference, resamples=100)
    features = gaussian(200, shift=0.5, seed=11)
    assert value == pytest.approx(fid.frechet_distance(*fid.feature_statistics(features), *fid.feature_statistics(reference)))
    assert low <= value <= high
    _, low_big, high_big = quality.fid_interval(gaussian(1600, shift=0.5, seed=12), reference, resamples=100)
    assert high_big - low_big < 0.6 * (high - low)                 # 8 times the samples: about 1/sqrt(8) the width
    again = quality.fid_interval(gaussian(200, shift=0.5, seed=11), reference, resamples=100)
    assert again == (value, low, high)                             # seeded: repeatable


def test_fid_interval_is_not_pushed_up_by_the_duplicates_of_resampling():
    """Resampled sets repeat samples, which FID reads as lost diversity; the interval must not inherit that."""
    reference = gaussian(3000, seed=13)
    value, low, high = quality.fid_interval(gaussian(100, seed=14), reference, resamples=200)
    assert low <= value <= high                                     # a plain percentile interval lies above it


def test_precision_and_recall_tell_fidelity_from_diversity():
    reference = gaussian(600, d=2, seed=15)
    assert min(quality.precision_recall(gaussian(600, d=2, seed=16), reference)) > 0.8
    collapsed = quality.precision_recall(gaussian(600, d=2, scale=0.3, seed=17), reference)    # too little spread
    assert collapsed[0] > 0.95 and collapsed[1] < 0.6                                          # faithful, not diverse
    off = quality.precision_recall(gaussian(600, d=2, shift=3.0, seed=18), reference)          # somewhere else
    assert off[0] < 0.2 and off[1] < 0.2


def test_kid_difference_says_worse_only_when_its_interval_excludes_zero():
    a = quality.Quality(1000, 10, 8, 12, kid=30.0, kid_error=4.0, precision=0.7, recall=0.6, n_precision_recall=800)
    b = quality.Quality(1000, 5, 4, 7, kid=10.0, kid_error=3.0, precision=0.8, recall=0.6, n_precision_recall=800)
    difference, low, high = quality.kid_difference(a, b)
    assert difference == 20.0 and low == pytest.approx(20 - 1.96 * 5) and low > 0
    assert quality.kid_difference(b, b)[1] < 0 < quality.kid_difference(b, b)[2]
    assert a.kid_text() == "30.0 ± 4.0" and a.fid_text() == "10.0 (8.0-12.0)"


def test_evaluate_on_images_with_a_stand_in_classifier():
    torch.manual_seed(0)
    classifier = fid.FashionClassifier().eval()
    images = torch.rand(60, 1, 28, 28) * 2 - 1
    reference = torch.rand(40, 1, 28, 28) * 2 - 1
    result = quality.evaluate(images, reference, classifier, resamples=30)
    assert result.n == 60 and result.n_precision_recall == 40                # at most the reference's size
    assert result.fid_low <= result.fid <= result.fid_high and result.kid_error > 0
    assert 0 <= result.precision <= 1 and 0 <= result.recall <= 1


@pytest.mark.parametrize("call, message", [
    (lambda: quality.kid(torch.zeros(5, 3), torch.zeros(5, 4)), r"same number of features D, got 3 and 4"),
    (lambda: quality.kid(torch.randn(2, 3), torch.randn(9, 3)), r"at least 3 samples, got 2"),
    (lambda: quality.kid(torch.randn(1, 1, 28, 28), torch.randn(9, 3)), r"features \(N, D\).*dl.fid.classifier_features"),
    (lambda: quality.fid_interval(torch.randn(9, 3), torch.randn(9, 3), resamples=5), r"resamples must be an int >= 20"),
    (lambda: quality.precision_recall(torch.randn(3, 2), torch.randn(9, 2)), r"k = 3 needs more than k points"),
    (lambda: quality.kid(torch.full((5, 3), float("nan")), torch.randn(9, 3)), r"samples"),
])
def test_bad_input_gets_a_clear_error(call, message):
    with pytest.raises(ValueError, match=message):
        call()


def test_feature_network_says_what_the_features_are_and_how_good():
    classifier = fid.FashionClassifier()
    with pytest.raises(ValueError, match="dl.fid.fid_classifier"):
        quality.feature_network(classifier)
    classifier.train_images, classifier.test_images, classifier.test_accuracy = 800, 100, 0.77
    sentence = quality.feature_network(classifier)
    assert "64 features" in sentence and "800 training images" in sentence and "77% of the 100 test images" in sentence
