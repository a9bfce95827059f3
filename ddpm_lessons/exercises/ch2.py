"""Checkers of chapter 2 (book/02_forward_process).
"""
from __future__ import annotations


import torch

from ..diffusion import Diffusion
from ..schedules import linear_beta_schedule
from ._harness import ExerciseMistake, call, expect_tensor, first_difference, known_mistake, run_checker


def _chapter2_cases(generator: torch.Generator):
    """Inputs for check_q_sample: points with assorted steps (0 and T-1 included), then images."""
    d = Diffusion(linear_beta_schedule(1000))
    t_points = torch.tensor([0, 1, 10, 250, 500, 998, 999])
    x_points = torch.randn(7, 2, generator=generator)
    x_images = torch.rand(4, 1, 6, 6, generator=generator) * 2 - 1
    t_images = torch.tensor([999, 0, 300, 700])
    return d, [
        ("a batch of 2-D points (x0 of shape (7, 2)) with steps t = 0 … 999", x_points, t_points),
        ("a batch of images (x0 of shape (4, 1, 6, 6))", x_images, t_images),
    ]


def check_q_sample(q_sample) -> bool:
    """Exercise (chapter 2): ``q_sample(x0, t, noise, alphas_cumprod)`` returns x_t of eq. 4.

    x_t = sqrt(ᾱ_t) x_0 + sqrt(1 − ᾱ_t) ε, with ``t`` a LongTensor (batch,) of 0-based steps and
    ``alphas_cumprod`` the tensor (T,) of ᾱ_t; it must work for any data shape (points or images).
    """

    def body():
        g = torch.Generator().manual_seed(2)
        d, cases = _chapter2_cases(g)
        a = d.alphas_cumprod
        for what, x0, t in cases:
            noise = torch.randn(x0.shape, generator=g)
            expected = d.q_sample(x0, t, noise)
            try:
                got = call(q_sample, x0, t, noise, a.clone(), what=f"with {what}")
            except ExerciseMistake as crash:
                if x0.ndim <= 2:
                    raise
                raise ExerciseMistake(f"{crash}. Hint: reshape ᾱ_t (one value per example) to "
                                      "(batch, 1, …, 1), e.g. with .view(-1, *[1] * (x0.ndim - 1)), so that "
                                      "it broadcasts over images as well as points.") from None
            shape = (-1,) + (1,) * (x0.ndim - 1)
            at = a[t].view(shape)
            mistake = known_mistake(got, {
                "you forgot the square roots: x_t = sqrt(ᾱ_t)·x0 + sqrt(1 − ᾱ_t)·ε, not ᾱ_t·x0 + (1 − ᾱ_t)·ε.":
                    at * x0 + (1 - at) * noise,
                "the noise is scaled by its standard deviation sqrt(1 − ᾱ_t), not by the variance 1 − ᾱ_t.":
                    at.sqrt() * x0 + (1 - at) * noise,
                "x0 is scaled by sqrt(ᾱ_t), not by ᾱ_t: the signal's power is ᾱ_t, its amplitude sqrt(ᾱ_t).":
                    at * x0 + (1 - at).sqrt() * noise,
                "the roles of x0 and ε are swapped: the signal x0 is scaled by sqrt(ᾱ_t) and the noise by sqrt(1 − ᾱ_t).":
                    (1 - at).sqrt() * x0 + at.sqrt() * noise,
                "the noise term should be scaled by sqrt(1 − ᾱ_t), not by 1 − sqrt(ᾱ_t).":
                    at.sqrt() * x0 + (1 - at.sqrt()) * noise,
                "you used ᾱ at step t − 1: steps are 0-based, so step t uses alphas_cumprod[t] itself.":
                    a[t - 1].view(shape).sqrt() * x0 + (1 - a[t - 1].view(shape)).sqrt() * noise,
                "you used ᾱ at step t + 1: steps are 0-based, so step t uses alphas_cumprod[t] itself.":
                    a[(t + 1).clamp(max=len(a) - 1)].view(shape).sqrt() * x0
                    + (1 - a[(t + 1).clamp(max=len(a) - 1)].view(shape)).sqrt() * noise,
                "every example used the step of the first one: each example i has its own step t[i].":
                    a[t[0]].sqrt() * x0 + (1 - a[t[0]]).sqrt() * noise,
            })
            if mistake:
                raise ExerciseMistake(f"with {what}: {mistake}")
            if not torch.is_tensor(got) or tuple(got.shape) != tuple(x0.shape):
                expect_tensor(got, expected, f"with {what}")
            if not torch.allclose(got.detach().double().cpu(), expected.double(), atol=1e-5, rtol=1e-4):
                raise ExerciseMistake(
                    f"with {what}: {first_difference(got, expected, t)}. For each example x_t should be "
                    "sqrt(ᾱ_t)·x0 + sqrt(1 − ᾱ_t)·ε with ᾱ_t = alphas_cumprod[t]."
                )
        # with ε = 0 only the mean is left, sqrt(ᾱ_t)·x0
        what, x0, t = cases[0]
        got = call(q_sample, x0, t, torch.zeros_like(x0), a.clone(), what="with noise = 0")
        expect_tensor(got, a[t].sqrt()[:, None] * x0, "with noise = 0 (x_t should be sqrt(ᾱ_t)·x0)")

    return run_checker("check_q_sample", body)
