"""2-D sample quality of ddpm_lessons.metrics (chapter 4): MMD, distance to the curve, the baseline."""
import math

import pytest
import torch

import ddpm_lessons as dl
from ddpm_lessons.metrics import data_baseline, energy_distance, mean_distance_to_curve, mmd


def _gauss(n, shift=0.0, seed=0, d=2):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(n, d, generator=g) + shift


# ---------------------------------------------------------------- MMD
def test_mmd_is_zero_for_identical_sets():
    a = _gauss(500, seed=1)
    assert mmd(a, a) == 0.0
    assert mmd(a, a.clone(), bandwidth=0.5) == 0.0


def test_mmd_is_positive_and_grows_with_the_shift():
    a = _gauss(400, seed=2)
    values = [mmd(a, _gauss(400, shift, seed=3), bandwidth=0.5) for shift in (0.25, 0.5, 1.0, 2.0)]
    assert values[0] > 0
    assert all(x < y for x, y in zip(values, values[1:]))


def test_mmd_matches_the_closed_form_for_two_points():
    # a = {0}, b = {s}: MMD^2 = 1 + 1 - 2 exp(-s^2 / (2 h^2))
    s, h = 0.3, 0.2
    expected = 2 - 2 * math.exp(-s**2 / (2 * h**2))
    b = torch.tensor([[s, 0.0]], dtype=torch.float64)
    assert mmd(torch.zeros(1, 2), b, bandwidth=h) == pytest.approx(expected, rel=1e-12)


def test_mmd_is_symmetric():
    a, b = _gauss(100, seed=4), _gauss(150, 0.3, seed=5)
    assert mmd(a, b) == pytest.approx(mmd(b, a), rel=1e-12)


def test_mmd_of_two_samples_of_one_distribution_is_near_its_baseline():
    # V-statistic: E MMD^2 = (1 - E k(X, X')) (1/N + 1/M), a small positive number
    values = [mmd(_gauss(300, seed=10 + i), _gauss(300, seed=20 + i), bandwidth=1.0) for i in range(5)]
    assert 0 < sum(values) / 5 < 2 * 2 / 300


@pytest.mark.parametrize("a, b, match", [
    (torch.zeros(10, 2), torch.zeros(10, 3), "same dimensionality"),
    (torch.zeros(10), torch.zeros(10, 2), "2-D sample sets"),
    (torch.zeros(0, 2), torch.zeros(10, 2), "at least 1"),
])
def test_mmd_bad_input(a, b, match):
    with pytest.raises(ValueError, match=match):
        mmd(a, b)


@pytest.mark.parametrize("bandwidth", [0, -1.0, True, "0.1"])
def test_mmd_bad_bandwidth(bandwidth):
    with pytest.raises(ValueError, match="bandwidth"):
        mmd(torch.zeros(3, 2), torch.zeros(3, 2), bandwidth=bandwidth)


# ---------------------------------------------------------------- distance to the curve
def test_points_on_the_curve_have_distance_zero():
    curve = dl.data.butterfly_curve(2000)
    assert mean_distance_to_curve(curve[::7], curve) == 0.0


def test_distance_to_a_straight_line_is_the_offset():
    line = torch.stack([torch.linspace(-5, 5, 10001), torch.zeros(10001)], dim=1)
    points = torch.tensor([[0.0, 0.3], [1.2345, -0.3], [-2.0, 0.3]])
    assert mean_distance_to_curve(points, line) == pytest.approx(0.3, abs=1e-6)


def test_distance_to_the_curve_is_positive_and_grows_with_the_noise():
    curve = dl.data.butterfly_curve(20_000)
    values = [mean_distance_to_curve(dl.data.butterfly(500, noise, generator=torch.Generator().manual_seed(0)), curve)
              for noise in (0.01, 0.05, 0.2)]
    assert values[0] > 0
    assert all(x < y for x, y in zip(values, values[1:]))


def test_distance_to_a_circle_is_the_radial_offset():
    angles = torch.linspace(0, 2 * math.pi, 100_001, dtype=torch.float64)
    circle = torch.stack([angles.cos(), angles.sin()], dim=1)
    g = torch.Generator().manual_seed(3)
    phi = torch.rand(400, generator=g, dtype=torch.float64) * 2 * math.pi
    radius = 1 + 0.2 * (torch.rand(400, generator=g, dtype=torch.float64) - 0.5)
    points = radius[:, None] * torch.stack([phi.cos(), phi.sin()], dim=1)
    assert mean_distance_to_curve(points, circle) == pytest.approx(float((radius - 1).abs().mean()), abs=1e-6)


def test_distance_to_the_curve_does_not_depend_on_the_chunk_size():
    curve = dl.data.butterfly_curve(3000)
    points = _gauss(257, seed=6)
    assert mean_distance_to_curve(points, curve, chunk=10) == pytest.approx(mean_distance_to_curve(points, curve))
    with pytest.raises(ValueError, match="chunk"):
        mean_distance_to_curve(points, curve, chunk=0)


def test_distance_to_the_curve_computes_a_bounded_block_of_distances_at_a_time(monkeypatch):
    """A dense curve must not make an N × M matrix (400 points × 100,001 vertices would be 320 MB)."""
    import ddpm_lessons.metrics as metrics

    blocks = []
    cdist = torch.cdist
    monkeypatch.setattr(torch, "cdist", lambda a, b: blocks.append(len(a) * len(b)) or cdist(a, b))
    metrics.mean_distance_to_curve(_gauss(400, seed=1), dl.data.butterfly_curve(100_001))
    assert max(blocks) <= metrics.BLOCK_DISTANCES and sum(blocks) == 400 * 100_001


def test_distance_to_the_curve_bad_input():
    with pytest.raises(ValueError, match="same dimensionality"):
        mean_distance_to_curve(torch.zeros(5, 3), dl.data.butterfly_curve(100))
    with pytest.raises(ValueError, match="2-D sample sets"):
        mean_distance_to_curve(torch.zeros(5), dl.data.butterfly_curve(100))


# ---------------------------------------------------------------- data-vs-data baseline
def test_data_baseline_is_the_mean_over_fresh_pairs():
    calls = []

    def draw(n, generator):
        return torch.randn(n, 2, generator=generator)

    def metric(a, b):
        calls.append((a.clone(), b.clone()))
        return float(len(calls))

    assert data_baseline(metric, draw, 50, repeats=4) == pytest.approx((1 + 2 + 3 + 4) / 4)
    assert all(a.shape == (50, 2) and not torch.equal(a, b) for a, b in calls)  # two different sets each time


def test_data_baseline_is_reproducible_and_small_for_the_butterfly():
    first = data_baseline(energy_distance, dl.data.butterfly, 500, seed=1)
    assert first == data_baseline(energy_distance, dl.data.butterfly, 500, seed=1)
    assert abs(first) < 0.02
    shifted = energy_distance(dl.data.butterfly(500), dl.data.butterfly(500) + 0.5)
    assert shifted > 10 * abs(first)


@pytest.mark.parametrize("kwargs, match", [
    (dict(n=1), "n must be"), (dict(n=10, repeats=0), "repeats"), (dict(n=2.5), "n must be"),
])
def test_data_baseline_bad_input(kwargs, match):
    with pytest.raises(ValueError, match=match):
        data_baseline(mmd, dl.data.butterfly, **kwargs)


# ---------------------------------------------------------------- all distances at once
def test_sample_distances_collects_the_three_numbers():
    from ddpm_lessons.metrics import sample_distances

    curve = dl.data.butterfly_curve(5000)
    a, b = dl.data.butterfly(300, 0.05), dl.data.butterfly(300, 0.05)
    result = sample_distances(a, b, curve, bandwidth=0.2)
    assert result == {"mmd": mmd(a, b, 0.2), "energy": energy_distance(a, b), "curve": mean_distance_to_curve(a, curve)}
    assert set(sample_distances(a, b)) == {"mmd", "energy"}
    with pytest.raises(ValueError, match="same dimensionality"):
        sample_distances(a, torch.zeros(5, 3))


def test_data_baseline_averages_dicts_key_by_key():
    from ddpm_lessons.metrics import sample_distances

    curve = dl.data.butterfly_curve(5000)
    result = data_baseline(lambda a, b: sample_distances(a, b, curve), dl.data.butterfly, 200, repeats=2)
    g = torch.Generator().manual_seed(0)
    pairs = [(dl.data.butterfly(200, generator=g), dl.data.butterfly(200, generator=g)) for _ in range(2)]
    expected = [sample_distances(a, b, curve) for a, b in pairs]
    assert result == pytest.approx({k: (expected[0][k] + expected[1][k]) / 2 for k in expected[0]})
    assert result["curve"] < 0.01  # noise-free points lie on the curve, up to the vertex spacing


def test_permutation_p_value_is_exact():
    from ddpm_lessons.metrics import permutation_p_value

    assert permutation_p_value([1.0, 2.0], [1.0, 2.0]) == 1.0
    assert permutation_p_value([0.0, 0.1, 0.2, 0.3], [5, 6, 7, 8]) == 2 / 70   # the two extreme splits of 70
    assert permutation_p_value([0.0, 0.1, 0.2], [5, 6, 7]) == 2 / 20
    with pytest.raises(ValueError, match="finite numbers"):
        permutation_p_value([1.0, float("nan")], [1.0])
