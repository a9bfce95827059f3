"""Diversity measures of ddpm_lessons.metrics (chapter 1)."""
import pytest
import torch

from ddpm_lessons.metrics import nearest_neighbour_distance, pixel_std


def test_pixel_std_is_zero_for_copies_and_matches_a_hand_computation():
    image = torch.rand(1, 1, 4, 4)
    assert pixel_std(image.repeat(5, 1, 1, 1)) == 0.0
    # two images differing by d at every pixel: each pixel's (unbiased) std is d / sqrt(2)
    pair = torch.cat([torch.zeros(1, 1, 3, 3), torch.full((1, 1, 3, 3), 0.6)])
    assert pixel_std(pair) == pytest.approx(0.6 / 2 ** 0.5)


def test_pixel_std_of_uniform_noise():
    noise = torch.rand(2000, 1, 4, 4, generator=torch.Generator().manual_seed(0)) * 2 - 1
    assert pixel_std(noise) == pytest.approx(3 ** -0.5, abs=0.01)


def test_nearest_neighbour_distance():
    reference = torch.stack([torch.full((1, 2, 2), v) for v in (-1.0, 0.0, 1.0)])
    samples = torch.stack([torch.full((1, 2, 2), 0.1), torch.full((1, 2, 2), 0.9), reference[0]])
    distance = nearest_neighbour_distance(samples, reference)
    assert distance.shape == (3,)
    assert torch.allclose(distance, torch.tensor([0.1, 0.1, 0.0], dtype=distance.dtype), atol=1e-6)


def test_nearest_neighbour_distance_is_rms_per_pixel():
    a = torch.zeros(1, 1, 4, 4)
    b = torch.zeros(1, 1, 4, 4)
    b[0, 0, 0, 0] = 4.0  # one pixel off by 4 among 16: RMS = sqrt(16 / 16) = 1
    assert nearest_neighbour_distance(a, b).item() == pytest.approx(1.0)


@pytest.mark.parametrize("call, match", [
    (lambda: pixel_std(torch.zeros(1, 1, 4, 4)), "at least 2"),
    (lambda: pixel_std([1.0, 2.0]), "floating-point batch"),
    (lambda: nearest_neighbour_distance(torch.zeros(2, 1, 4, 4), torch.zeros(2, 1, 5, 5)), "same image size"),
    (lambda: nearest_neighbour_distance(torch.zeros(2, 1, 4, 4), torch.zeros(0, 1, 4, 4)), "at least one"),
    (lambda: nearest_neighbour_distance(torch.zeros(2, 16, dtype=torch.uint8), torch.zeros(2, 16)), "samples"),
])
def test_bad_input(call, match):
    with pytest.raises(ValueError, match=match):
        call()
