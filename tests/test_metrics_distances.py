"""Sample-set distances of ddpm_lessons.metrics (chapters 3 and 4)."""
import pytest
import torch

from ddpm_lessons.metrics import energy_distance


def _gauss(n, shift=0.0, seed=0, d=2):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(n, d, generator=g) + shift


def test_energy_distance_identical_distributions_is_near_zero():
    value = energy_distance(_gauss(800, seed=1), _gauss(800, seed=2))
    assert abs(value) < 0.01


def test_energy_distance_is_symmetric():
    a, b = _gauss(300, seed=3), _gauss(200, 0.5, seed=4)
    assert energy_distance(a, b) == pytest.approx(energy_distance(b, a), rel=1e-10)


def test_energy_distance_grows_with_the_shift():
    a = _gauss(600, seed=5)
    values = [energy_distance(a, _gauss(600, shift, seed=6)) for shift in (0.25, 0.5, 1.0, 2.0)]
    assert values[0] > 0.02
    assert all(x < y for x, y in zip(values, values[1:]))


def test_energy_distance_matches_the_closed_form_in_one_dimension():
    # two point masses at 0 and s: D^2 = 2|s| - 0 - 0
    a = torch.zeros(50, 1)
    b = torch.full((40, 1), 3.0)
    assert energy_distance(a, b) == pytest.approx(6.0)


@pytest.mark.parametrize("a, b, match", [
    (torch.zeros(10, 2), torch.zeros(10, 3), "same dimensionality"),
    (torch.zeros(10), torch.zeros(10, 2), "2-D"),
    (torch.zeros(10, 2, 2), torch.zeros(10, 2), "2-D"),
    (torch.zeros(1, 2), torch.zeros(10, 2), "at least 2"),
])
def test_energy_distance_bad_input(a, b, match):
    with pytest.raises(ValueError, match=match):
        energy_distance(a, b)
