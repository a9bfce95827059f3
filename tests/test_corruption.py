"""ddpm_lessons.corruption (chapter 1): the blend with noise and the noises of real images."""
import math

import pytest
import torch

from ddpm_lessons.corruption import (NOISES, corrupt, gaussian_noise, noise_like, poisson_noise, salt_and_pepper,
                                     speckle_noise)


def _images(b=4, size=16, seed=0):
    return torch.rand(b, 1, size, size, generator=torch.Generator().manual_seed(seed)) * 2 - 1


def _gen(seed=1):
    return torch.Generator().manual_seed(seed)


def test_corrupt_amount_zero_returns_the_image_and_one_returns_pure_noise():
    x = _images()
    assert torch.equal(corrupt(x, 0.0), x)
    noise = noise_like(x, "uniform", _gen())
    assert torch.allclose(corrupt(x, 1.0, generator=_gen()), noise)


def test_corrupt_is_the_blend_formula_per_image():
    x = _images(b=3)
    noise = torch.randn_like(x)
    amount = torch.tensor([0.0, 0.25, 0.9])
    out = corrupt(x, amount, noise=noise)
    for b, a in enumerate(amount.tolist()):
        assert torch.allclose(out[b], x[b] * (1 - a) + noise[b] * a)


def test_uniform_noise_fills_minus_one_to_one():
    noise = noise_like(torch.zeros(8, 1, 64, 64), "uniform", _gen())
    assert noise.min() >= -1 and noise.max() <= 1
    assert abs(noise.mean().item()) < 0.02
    assert noise.std().item() == pytest.approx(1 / math.sqrt(3), abs=0.01)


def test_gaussian_corruption_noise_is_standard_normal():
    out = corrupt(torch.zeros(8, 1, 64, 64), 1.0, noise="gaussian", generator=_gen())
    assert abs(out.mean().item()) < 0.02 and out.std().item() == pytest.approx(1.0, abs=0.02)


def test_corrupt_is_repeatable_with_a_generator_and_leaves_x_alone():
    x = _images()
    before = x.clone()
    assert torch.equal(corrupt(x, 0.5, generator=_gen(7)), corrupt(x, 0.5, generator=_gen(7)))
    assert torch.equal(x, before)


@pytest.mark.parametrize("amount, match", [
    (1.5, r"\[0, 1\]"),
    (-0.1, r"\[0, 1\]"),
    (torch.tensor([0.1, 0.2]), "one value per image"),
    (torch.rand(4, 1), "one value per image"),
    (float("nan"), r"\[0, 1\]"),
])
def test_corrupt_bad_amount(amount, match):
    with pytest.raises(ValueError, match=match):
        corrupt(_images(b=4), amount)


def test_corrupt_bad_images_and_noise():
    with pytest.raises(ValueError, match=r"holds integers .*to_model_range"):
        corrupt(torch.zeros(2, 1, 4, 4, dtype=torch.uint8), 0.5)
    with pytest.raises(ValueError, match="noise must have the shape of x"):
        corrupt(_images(), 0.5, noise=torch.zeros(1, 1, 16, 16))
    with pytest.raises(ValueError, match="kind must be one of"):
        corrupt(_images(), 0.5, noise="pink")


def test_gaussian_noise_statistics():
    x = torch.zeros(4, 1, 64, 64)
    out = gaussian_noise(x, std=0.3, generator=_gen())
    assert abs(out.mean().item()) < 0.01 and out.std().item() == pytest.approx(0.3, rel=0.03)


def test_salt_and_pepper_fraction_and_halves():
    x = torch.zeros(4, 1, 128, 128)
    out = salt_and_pepper(x, fraction=0.2, generator=_gen())
    hit = out != 0
    assert hit.float().mean().item() == pytest.approx(0.2, abs=0.01)
    assert set(out[hit].unique().tolist()) == {-1.0, 1.0}
    assert (out[hit] == 1).float().mean().item() == pytest.approx(0.5, abs=0.02)
    assert torch.equal(salt_and_pepper(x, 0.0), x)


def test_poisson_noise_keeps_the_mean_and_has_variance_b_over_photons():
    brightness = 0.4
    x = torch.full((8, 1, 64, 64), brightness * 2 - 1)
    out = (poisson_noise(x, photons=25.0, generator=_gen()) + 1) / 2  # back to brightness
    assert out.mean().item() == pytest.approx(brightness, abs=0.005)
    assert out.var().item() == pytest.approx(brightness / 25.0, rel=0.05)
    counts = out * 25.0
    assert torch.allclose(counts, counts.round(), atol=1e-4)  # whole photons
    black = poisson_noise(torch.full((2, 1, 8, 8), -1.0), photons=25.0)
    assert torch.equal(black, torch.full_like(black, -1.0))


def test_speckle_is_multiplicative():
    for brightness in (0.25, 1.0):
        x = torch.full((8, 1, 64, 64), brightness * 2 - 1)
        out = (speckle_noise(x, std=0.3, generator=_gen()) + 1) / 2
        assert out.mean().item() == pytest.approx(brightness, rel=0.02)
        assert out.std().item() == pytest.approx(0.3 * brightness, rel=0.05)  # noise scales with the brightness
    black = speckle_noise(torch.full((2, 1, 8, 8), -1.0))
    assert torch.equal(black, torch.full_like(black, -1.0))


@pytest.mark.parametrize("name", list(NOISES))
def test_every_noise_keeps_the_shape_and_is_repeatable(name):
    x = _images(b=2, size=12)
    f = NOISES[name]
    assert f(x, generator=_gen(3)).shape == x.shape
    assert torch.equal(f(x, generator=_gen(3)), f(x, generator=_gen(3)))
    assert not torch.equal(f(x, generator=_gen(3)), x)


@pytest.mark.parametrize("call, match", [
    (lambda x: gaussian_noise(x, std=-1), "std"),
    (lambda x: salt_and_pepper(x, fraction=1.5), "fraction"),
    (lambda x: poisson_noise(x, photons=0), "photons"),
    (lambda x: speckle_noise(x, std="a"), "std"),
    (lambda x: gaussian_noise(x.numpy()), r"must be a torch.Tensor .* got ndarray of shape \(4, 1, 16, 16\)"),
])
def test_noises_bad_input(call, match):
    with pytest.raises(ValueError, match=match):
        call(_images())
