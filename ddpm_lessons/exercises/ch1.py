"""Checkers of chapter 1 (book/01_naive_denoiser).
"""
from __future__ import annotations


import torch

from ..naive import denoise
from ._harness import ExerciseMistake, call, expect_tensor, run_checker


def _blend_noise_statistics(kind: str):
    """(mean, std, what) that noise of ``kind`` must have: uniform on [-1, 1] or standard normal."""
    return (0.0, 3 ** -0.5, "uniform on [-1, 1]") if kind == "uniform" else (0.0, 1.0, "standard normal N(0, 1)")


def _check_blend(corrupt_fn, kind: str) -> None:
    """The body shared by check_corrupt and check_corrupt_gaussian (chapter 1)."""
    mean, std, noise_words = _blend_noise_statistics(kind)
    generator = torch.Generator().manual_seed(1)
    batch, size = 6, 32  # batch != width, so a (B,) amount that is not reshaped cannot broadcast by luck
    x = torch.rand(batch, 1, size, size, generator=generator) * 2 - 1
    x_before = x.clone()
    shape_words = f"with x of shape {tuple(x.shape)} and amount of shape ({batch},)"

    def call(amount, what):
        try:
            out = corrupt_fn(x, amount)
        except NotImplementedError:
            raise
        except Exception as error:
            hint = (" Hint: amount has one value per image, shape (B,); reshape it to (B, 1, 1, 1), e.g. "
                    "amount.view(-1, 1, 1, 1), so that it scales whole images."
                    if "size of tensor" in str(error) else "")
            raise ExerciseMistake(f"calling it {what} raised {type(error).__name__}: {error}.{hint}") from error
        if not torch.equal(x, x_before):
            raise ExerciseMistake("your function changed its input x in place; return a new tensor instead "
                                  "(use x * (1 - amount), not x.mul_(...)).")
        if not torch.is_tensor(out) or tuple(out.shape) != tuple(x.shape):
            got = tuple(out.shape) if torch.is_tensor(out) else type(out).__name__
            raise ExerciseMistake(f"{what}: expected a tensor of x's shape {tuple(x.shape)}, got {got}.")
        return out.detach().double()

    clean = call(torch.zeros(batch), f"{shape_words}, all amounts 0")
    if not torch.allclose(clean, x.double(), atol=1e-6):
        raise ExerciseMistake(
            "with amount = 0 the image must come back unchanged (x·(1 − 0) + noise·0 = x); yours differs "
            f"by up to {(clean - x).abs().max().item():.3g}. Is the image weighted by (1 − amount) and the noise "
            "by amount?")

    noise = call(torch.ones(batch), f"{shape_words}, all amounts 1")
    if abs(torch.corrcoef(torch.stack([noise.flatten(), x.double().flatten()]))[0, 1].item()) > 0.1:
        raise ExerciseMistake("with amount = 1 nothing of the image should be left, but your result still "
                              "follows x. Weight the image by (1 − amount).")
    if kind == "uniform" and (noise.min() < -1 - 1e-6 or noise.max() > 1 + 1e-6):
        raise ExerciseMistake(
            f"with amount = 1 the result is pure noise, which should be {noise_words}; yours has values from "
            f"{noise.min().item():.3g} to {noise.max().item():.3g}. Use torch.rand_like(x) * 2 - 1, not torch.randn.")
    # tolerances: many standard errors wide, so that a right answer never fails by bad luck
    if abs(noise.mean().item() - mean) > 0.1 * std + 0.02:
        advice = (" torch.rand gives [0, 1): scale it with * 2 - 1." if kind == "uniform"
                  else " torch.randn_like(x) has mean 0.")
        raise ExerciseMistake(
            f"with amount = 1 the result is pure noise, which should be {noise_words} with mean 0; yours "
            f"has mean {noise.mean().item():.3g}.{advice}")
    if abs(noise.std().item() - std) > 0.06:
        advice = (" (uniform on [-1, 1] has standard deviation 1/√3 ≈ 0.577; torch.randn has 1)"
                  if kind == "uniform" else " Use torch.randn_like(x), not torch.rand_like(x) (uniform).")
        raise ExerciseMistake(
            f"with amount = 1 the result is pure noise, which should be {noise_words} with standard deviation "
            f"{std:.3g}; yours has {noise.std().item():.3g}.{advice}")
    if torch.allclose(noise[0], noise[1]):
        raise ExerciseMistake("with amount = 1 every image got the same noise; draw fresh noise of x's full "
                              "shape (B, C, H, W), e.g. torch.rand_like(x).")

    amount = torch.linspace(0, 1, batch)
    mixed = call(amount, f"{shape_words}, amounts {[round(a, 2) for a in amount.tolist()]}")
    for b, a in enumerate(amount.tolist()):
        if a == 0.0:
            if not torch.allclose(mixed[b], x[b].double(), atol=1e-6):
                raise ExerciseMistake(
                    f"image {b} has amount 0 but was changed; each image must use its own amount "
                    "(reshape amount to (B, 1, 1, 1)).")
            continue
        estimate = (mixed[b] - (1 - a) * x[b].double()) / a  # what must be the noise, if the blend is right
        wrong_mean = abs(estimate.mean().item() - mean) > 0.2 * std + 0.05
        if wrong_mean or abs(estimate.std().item() - std) > 0.15 * std + 0.02:
            raise ExerciseMistake(
                f"image {b} has amount {a:.2f}: (result − (1 − amount)·x) / amount should be the noise "
                f"({noise_words}: mean 0, standard deviation {std:.3g}); yours has mean "
                f"{estimate.mean().item():.3g} and standard deviation {estimate.std().item():.3g}. Blend as "
                "x·(1 − amount) + noise·amount, with each image's own amount.")


def check_corrupt(corrupt_fn) -> bool:
    """Exercise "implement corrupt" (chapter 1): ``corrupt_fn(x, amount)`` with amount (B,) in [0, 1]
    must return ``x·(1 − amount) + noise·amount`` with fresh uniform noise on [-1, 1] per pixel."""
    return run_checker("check_corrupt", lambda: _check_blend(corrupt_fn, "uniform"))


def check_corrupt_gaussian(corrupt_fn) -> bool:
    """Exercise "Gaussian instead of uniform noise" (chapter 1): like :func:`check_corrupt`, with
    noise ~ N(0, 1) (the noise DDPMs use)."""
    return run_checker("check_corrupt_gaussian", lambda: _check_blend(corrupt_fn, "gaussian"))


def check_amount_conditioned_unet(model) -> bool:
    """Exercise "condition the net on amount" (chapter 1): ``model(x, amount)``, amount (B,), must
    return x's shape, for any H, W divisible by 4, and each image's output must depend on its own amount."""

    def body():
        generator = torch.Generator().manual_seed(2)
        x = torch.rand(4, 1, 28, 28, generator=generator) * 2 - 1
        amount = torch.tensor([0.1, 0.4, 0.7, 1.0])
        if not isinstance(model, torch.nn.Module):
            raise ExerciseMistake(f"expected your network, a torch.nn.Module instance, got {type(model).__name__}; "
                                  "pass an instance, e.g. check_amount_conditioned_unet(MyNet()).")
        model.eval()
        with torch.no_grad():
            out = call(model, x, amount, what="as model(x, amount) with x (4, 1, 28, 28) and amount (4,)")
            if not torch.is_tensor(out) or tuple(out.shape) != tuple(x.shape):
                got = tuple(out.shape) if torch.is_tensor(out) else type(out).__name__
                raise ExerciseMistake(
                    f"model(x, amount) should return an image per image, x's shape {tuple(x.shape)}; got {got}. "
                    "If you added the amount as an extra input channel, the output still has 1 channel.")
            low = call(model, x, torch.full((4,), 0.05), what="with every amount 0.05")
            high = call(model, x, torch.full((4,), 0.95), what="with every amount 0.95")
            if torch.allclose(low, high, atol=1e-7, rtol=0):
                raise ExerciseMistake("the output is the same for amount 0.05 and 0.95: your model ignores the "
                                      "amount. Feed it in, e.g. as an extra input channel filled with it.")
            changed = amount.clone()
            changed[0] = 0.9
            other = call(model, x, changed, what="with the first image's amount changed")
            if not torch.allclose(other[1:], out[1:], atol=1e-5, rtol=1e-4):
                raise ExerciseMistake(
                    "changing the amount of image 0 changed the output of the other images: each image must see "
                    "only its own amount (did you average the amounts, or broadcast them along the wrong dimension?)")
            if torch.allclose(other[0], out[0], atol=1e-7, rtol=0):
                raise ExerciseMistake("changing the amount of image 0 did not change its output; use each image's "
                                      "own amount (amount.view(-1, 1, 1, 1)).")
            bigger = torch.rand(2, 1, 32, 32, generator=generator) * 2 - 1
            out32 = call(model, bigger, torch.tensor([0.3, 0.6]),
                          what="with 32x32 images (any size divisible by 4 should work: no hard-coded 28)")
            if not torch.is_tensor(out32) or tuple(out32.shape) != tuple(bigger.shape):
                got = tuple(out32.shape) if torch.is_tensor(out32) else type(out32).__name__
                raise ExerciseMistake(f"with 32x32 images the output should have shape (2, 1, 32, 32); got {got}.")

    return run_checker("check_amount_conditioned_unet", body)


class _FakeDenoiser(torch.nn.Module):
    """A stand-in 'network' for check_naive_sampler: a fixed smooth function of x; counts its calls."""

    def __init__(self, target: torch.Tensor):
        super().__init__()
        self.register_buffer("target", target)
        self.scale = torch.nn.Parameter(torch.tensor(1.5), requires_grad=False)
        self.calls = 0

    def forward(self, x):
        self.calls += 1
        return torch.tanh(self.scale * x + self.target)


def check_naive_sampler(sampler_fn) -> bool:
    """Exercise "the naive sampler" (chapter 1): ``sampler_fn(model, x, steps)`` must return x after
    ``steps`` steps of x ← x·(1 − 1/(n − i)) + pred·1/(n − i), i = 0 … n − 1, calling the model once
    per step."""

    def body():
        generator = torch.Generator().manual_seed(3)
        target = torch.rand(1, 8, 8, generator=generator) * 2 - 1
        x = torch.rand(3, 1, 8, 8, generator=generator) * 2 - 1
        for steps in (1, 2, 5, 40):
            model, start = _FakeDenoiser(target), x.clone()
            out = call(sampler_fn, model, start, steps, what=f"with steps = {steps}")
            if not torch.equal(start, x):
                raise ExerciseMistake("your sampler changed its input x in place; start with x = x.clone() or "
                                      "write x = x * (1 - w) + pred * w (a new tensor).")
            if model.calls != steps:
                raise ExerciseMistake(f"with steps = {steps} the model should be called once per step, {steps} "
                                      f"time(s); yours called it {model.calls} time(s).")
            with torch.no_grad():
                expected = denoise(_FakeDenoiser(target), x, steps)
            if steps == 1:
                expect_tensor(out, expected, "with steps = 1 the only step has weight 1/(1 − 0) = 1, so the "
                               "result must be the model's prediction model(x)")
            else:
                weights = (", ".join(f"1/{steps - i}" for i in range(steps)) if steps <= 3
                           else f"1/{steps}, 1/{steps - 1}, …, 1/1")
                expect_tensor(out, expected, f"with steps = {steps} (prediction weights {weights})")

    return run_checker("check_naive_sampler", body)
