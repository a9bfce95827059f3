"""Chapter 1: corrupting images, by blending with noise and by the common image noises.

Images are tensors in the models' range [-1, 1] (B, C, H, W); every function works on the whole
batch at once (no per-pixel Python loops) and takes an optional ``generator`` for repeatable noise.

- :func:`corrupt`: ``x * (1 - amount) + noise * amount``, the naive denoiser's corruption.
- :func:`gaussian_noise`, :func:`salt_and_pepper`, :func:`poisson_noise`, :func:`speckle_noise`:
  the noises of real images. Diffusion models use the Gaussian one (chapter 2 says why).
"""
from __future__ import annotations

import torch

from . import _checks
from .data import to_image_range

NOISE_KINDS = ("uniform", "gaussian")


def _check_images(x, where: str) -> torch.Tensor:
    x = _checks.data(x, "x", where, shape_hint="(B, C, H, W), images in [-1, 1]")
    if x.dim() < 2:
        raise ValueError(f"{where}: expected a batch of images (B, C, H, W) in [-1, 1], got shape {tuple(x.shape)}")
    return x


def _check_number(value, name: str, what: str, low: float, high: float | None = None) -> None:
    _checks.number(value, name, what, low, float("inf") if high is None else high)


def _random(shape, like: torch.Tensor, generator, kind: str) -> torch.Tensor:
    """Uniform [0, 1) or standard normal noise like ``like``, drawn on the generator's own device (then
    moved), so that one seed gives the same noise everywhere."""
    draw = torch.rand if kind == "uniform" else torch.randn
    device = generator.device if generator is not None else like.device
    return draw(shape, generator=generator, device=device, dtype=like.dtype).to(like.device)


def noise_like(x: torch.Tensor, kind: str = "uniform", generator: torch.Generator | None = None) -> torch.Tensor:
    """Noise of ``x``'s shape: ``"uniform"`` on [-1, 1] (the data's range) or ``"gaussian"`` N(0, 1)."""
    generator = _checks.generator(generator, "noise_like()")  # an int is a seed
    _checks.one_of(kind, NOISE_KINDS, "kind", "noise_like()")
    noise = _random(x.shape, x, generator, kind)
    return noise * 2.0 - 1.0 if kind == "uniform" else noise


def corrupt(x: torch.Tensor, amount, noise: str | torch.Tensor = "uniform",
            generator: torch.Generator | None = None) -> torch.Tensor:
    """Blend images with noise (chapter 1): ``x * (1 - amount) + noise * amount``.

    ``amount`` is a number or a tensor (B,) with one value per image, in [0, 1]: 0 keeps the image,
    1 leaves pure noise. ``noise`` is ``"uniform"`` (on [-1, 1], the data's range: the chapter's
    choice), ``"gaussian"`` (N(0, 1): the exercise, and what DDPMs use) or a tensor of ``x``'s shape.
    """
    x, amount = _check_images(x, "corrupt()"), _checks.per_image_amount(amount, x, "corrupt()")
    noise = (noise_like(x, noise, generator) if isinstance(noise, str) else
             _checks.finite(_checks.same_shape(x, noise, "x", "noise", "corrupt()"), "noise", "corrupt()"))
    amount = amount.view(-1, *([1] * (x.dim() - 1)))  # (B,) -> (B, 1, 1, 1): one amount per image
    return x * (1 - amount) + noise * amount


# ---------------------------------------------------------------- the noises of real images
def gaussian_noise(x: torch.Tensor, std: float = 0.2, generator: torch.Generator | None = None) -> torch.Tensor:
    """Additive Gaussian noise ``x + std * ε``, ε ~ N(0, I): sensor read-out and thermal noise.

    Not clipped: the same Gaussian noise as the diffusion forward process adds (chapter 2), which
    also scales the image down by sqrt(ᾱ_t).
    """
    generator = _checks.generator(generator, "gaussian_noise()")  # an int is a seed
    x = _check_images(x, "gaussian_noise()")
    _check_number(std, "std", "gaussian_noise()", 0.0)
    return x + std * _random(x.shape, x, generator, "gaussian")


def salt_and_pepper(x: torch.Tensor, fraction: float = 0.1, generator: torch.Generator | None = None) -> torch.Tensor:
    """Set a ``fraction`` of the pixels to white (+1) or black (-1), half each: dead or stuck pixels,
    bit errors in transmission."""
    generator = _checks.generator(generator, "salt_and_pepper()")  # an int is a seed
    x = _check_images(x, "salt_and_pepper()")
    _check_number(fraction, "fraction", "salt_and_pepper()", 0.0, 1.0)
    hit = _random(x.shape, x, generator, "uniform") < fraction
    salt = _random(x.shape, x, generator, "uniform") < 0.5
    return torch.where(hit, torch.where(salt, 1.0, -1.0).to(x.dtype), x)


def poisson_noise(x: torch.Tensor, photons: float = 20.0, generator: torch.Generator | None = None) -> torch.Tensor:
    """Shot noise: light arrives as photons, so a pixel of brightness b in [0, 1] counts
    k ~ Poisson(b · photons) of them, and shows k / photons.

    The mean is the clean image; the variance b / photons grows with the brightness, and fewer
    ``photons`` (a darker scene, a shorter exposure) make it noisier. Returned in [-1, 1] scale,
    not clipped (a bright pixel can count more than ``photons``).
    """
    x = _check_images(x, "poisson_noise()")
    _check_number(photons, "photons", "poisson_noise()", 1e-6)
    brightness = to_image_range(x)
    generator = _checks.generator(generator, "poisson_noise()")
    counts = torch.poisson(brightness * photons, generator=generator)
    return counts / photons * 2 - 1  # back to the models' scale; may pass 1 (not clipped)


def speckle_noise(x: torch.Tensor, std: float = 0.3, generator: torch.Generator | None = None) -> torch.Tensor:
    """Multiplicative noise ``b · (1 + std · ε)`` on the brightness b in [0, 1], ε ~ N(0, I):
    the grain of coherent imaging (ultrasound, radar, laser light). Black stays black."""
    generator = _checks.generator(generator, "speckle_noise()")  # an int is a seed
    x = _check_images(x, "speckle_noise()")
    _check_number(std, "std", "speckle_noise()", 0.0)
    brightness = to_image_range(x)
    return brightness * (1 + std * _random(x.shape, x, generator, "gaussian")) * 2 - 1  # not clipped


NOISES = {
    "Gaussian": gaussian_noise,
    "salt and pepper": salt_and_pepper,
    "Poisson (shot)": poisson_noise,
    "speckle": speckle_noise,
}
"""The noises of real images by name, each ``f(x, generator=None)`` with its default strength."""
