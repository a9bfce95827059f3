"""Checkers of chapter 3 (book/03_reverse_posterior).
"""
from __future__ import annotations


import torch

from ..diffusion import Diffusion
from ..schedules import cosine_beta_schedule
from ._harness import ExerciseMistake, call, expect_tensor, first_difference, known_mistake, run_checker


def _chapter3_setup(generator: torch.Generator):
    """A short cosine schedule and a batch whose steps include t = 0 (where ᾱ_{t−1} = 1) and T − 1."""
    d = Diffusion(cosine_beta_schedule(50))
    t = torch.tensor([0, 1, 2, 25, 48, 49])
    x0 = torch.randn(6, 3, generator=generator)
    x_t = d.q_sample(x0, t, generator=generator)
    return d, t, x0, x_t


def _as_full(variance, like: torch.Tensor, what: str) -> torch.Tensor:
    """Accept a variance of x_t's shape, (batch, 1, …) or (batch,): expand it to x_t's shape."""
    if not torch.is_tensor(variance):
        raise ExerciseMistake(f"{what}: expected a torch.Tensor, got {type(variance).__name__}.")
    if variance.ndim == 1 and variance.shape[0] == like.shape[0]:
        variance = variance.view(-1, *[1] * (like.ndim - 1))
    try:
        return variance.detach().double().cpu().expand(like.shape)
    except RuntimeError:
        raise ExerciseMistake(
            f"{what}: expected one value per example, of shape {tuple(like.shape)} or ({like.shape[0]},); "
            f"got {tuple(variance.shape)}."
        ) from None


def check_q_posterior(q_posterior) -> bool:
    """Exercise (chapter 3): ``q_posterior(x0, x_t, t, betas)`` returns (mean, variance) of eqs. 6-7.

    μ̃_t = sqrt(ᾱ_{t−1}) β_t / (1 − ᾱ_t) · x_0 + sqrt(α_t) (1 − ᾱ_{t−1}) / (1 − ᾱ_t) · x_t and
    β̃_t = (1 − ᾱ_{t−1}) / (1 − ᾱ_t) · β_t, with 0-based steps and ᾱ_{−1} = 1 (so β̃ = 0 at t = 0).
    """

    def body():
        d, t, x0, x_t = _chapter3_setup(torch.Generator().manual_seed(3))
        betas = d.betas.double()
        alphas = 1 - betas
        a = torch.cumprod(alphas, 0)
        a_prev = torch.cat([a.new_ones(1), a[:-1]])
        result = call(q_posterior, x0.clone(), x_t.clone(), t.clone(), d.betas.clone(),
                       what="with x0, x_t of shape (6, 3) and t = [0, 1, 2, 25, 48, 49]")
        if not isinstance(result, (tuple, list)) or len(result) != 2:
            raise ExerciseMistake(f"expected a pair (mean, variance), got {type(result).__name__}.")
        mean, variance = result
        expected_mean, expected_variance = d.q_posterior(x0, x_t, t)
        b, al, at, ap = (v[t][:, None] for v in (betas, alphas, a, a_prev))
        wrong_prev = a[t - 1][:, None]       # a[-1] at t = 0: Python wraps to the last step
        x0d, xtd = x0.double(), x_t.double()
        mistake = known_mistake(mean, {
            "the mean has its coefficients swapped: x0 is weighted by sqrt(ᾱ_{t−1})·β_t/(1 − ᾱ_t), "
            "x_t by sqrt(α_t)·(1 − ᾱ_{t−1})/(1 − ᾱ_t).":
                ap.sqrt() * b / (1 - at) * xtd + al.sqrt() * (1 - ap) / (1 - at) * x0d,
            "the mean at t = 0 is wrong: there ᾱ_{t−1} must be 1 (nothing was noised yet), but "
            "alphas_cumprod[t − 1] wraps around to the LAST step. Prepend a 1 (alphas_cumprod_prev).":
                wrong_prev.sqrt() * b / (1 - at) * x0d + al.sqrt() * (1 - wrong_prev) / (1 - at) * xtd,
            "the mean is missing square roots: the weights are sqrt(ᾱ_{t−1}) and sqrt(α_t), not ᾱ_{t−1} and α_t.":
                ap * b / (1 - at) * x0d + al * (1 - ap) / (1 - at) * xtd,
            "the mean uses ᾱ_t where the formula has ᾱ_{t−1}.":
                at.sqrt() * b / (1 - at) * x0d + al.sqrt() * (1 - at) / (1 - at) * xtd,
        })
        if mistake:
            raise ExerciseMistake(mistake)
        expect_tensor(mean, expected_mean, "the mean μ̃_t")
        variance = _as_full(variance, x_t, "the variance")
        full = expected_variance.double()
        mistake = known_mistake(variance, {
            "the variance equals β_t: the posterior variance is β̃_t = (1 − ᾱ_{t−1})/(1 − ᾱ_t)·β_t, smaller than β_t.":
                b.expand(full.shape),
            "you returned the standard deviation sqrt(β̃_t); return the variance β̃_t itself.":
                full.sqrt(),
            "the variance at t = 0 is wrong: there ᾱ_{t−1} must be 1, so β̃_0 = 0, but alphas_cumprod[t − 1] "
            "wraps around to the LAST step. Prepend a 1 (alphas_cumprod_prev).":
                ((1 - wrong_prev) / (1 - at) * b).expand(full.shape),
        })
        if mistake:
            raise ExerciseMistake(mistake)
        expect_tensor(variance, full, "the variance β̃_t", atol=1e-6)

    return run_checker("check_q_posterior", body)


class _RecordingModel:
    """A fixed 'trained model' for check_p_sample that remembers the steps it was called with."""

    def __init__(self):
        self.calls = []

    def __call__(self, x, t):
        self.calls.append(t)
        return torch.sin(3 * x) + 0.02 * t.to(x.dtype).view(-1, *[1] * (x.ndim - 1))


def check_p_sample(p_sample) -> bool:
    """Exercise (chapter 3): ``p_sample(model, x_t, t, betas, z)`` is one reverse step (Algorithm 2, line 4).

    x_{t−1} = 1/sqrt(α_t) · (x_t − β_t / sqrt(1 − ᾱ_t) · ε_θ(x_t, t)) + σ_t z with σ_t² = β_t, and no
    noise at t = 0 (the paper's t = 1). ``z`` is the N(0, I) draw, passed in so the answer is exact.
    """

    def body():
        g = torch.Generator().manual_seed(4)
        d, t, x0, x_t = _chapter3_setup(g)
        z = torch.randn(x_t.shape, generator=g)
        model = _RecordingModel()
        got = call(p_sample, model, x_t.clone(), t.clone(), d.betas.clone(), z.clone(),
                    what="with x_t of shape (6, 3) and t = [0, 1, 2, 25, 48, 49]")
        if not model.calls:
            raise ExerciseMistake("your function never called model(x_t, t): the mean needs its noise prediction.")
        seen = model.calls[0]
        if not torch.is_tensor(seen) or seen.is_floating_point() or not torch.equal(seen.cpu(), t):
            raise ExerciseMistake(f"call the model with the current steps t = {t.tolist()} (a LongTensor); "
                                  f"it was called with {seen.tolist() if torch.is_tensor(seen) else seen!r}.")
        eps = _RecordingModel()(x_t, t).double()
        betas = d.betas.double()
        b = betas[t][:, None]
        al = 1 - b
        at = torch.cumprod(1 - betas, 0)[t][:, None]
        xt = x_t.double()
        mean = (xt - b / (1 - at).sqrt() * eps) / al.sqrt()
        noise = (t > 0).double()[:, None] * b.sqrt() * z.double()
        mistake = known_mistake(got, {
            "no noise should be added at t = 0 (the paper's t = 1): the last step returns the mean.":
                mean + b.sqrt() * z.double(),
            "you forgot the noise σ_t·z (for t > 0): without it every run gives the same, too smooth sample.":
                mean,
            "σ_t is sqrt(β_t), not β_t: z is scaled by the standard deviation.":
                mean + (t > 0).double()[:, None] * b * z.double(),
            "the weight of ε is β_t/sqrt(1 − ᾱ_t), not sqrt(1 − ᾱ_t) (that one belongs to q_sample).":
                (xt - (1 - at).sqrt() * eps) / al.sqrt() + noise,
            "the mean must be divided by sqrt(α_t): μ = (x_t − β_t/sqrt(1 − ᾱ_t)·ε)/sqrt(α_t).":
                (xt - b / (1 - at).sqrt() * eps) + noise,
            "the weight of ε has ᾱ_t (cumulative) under the square root, not α_t: β_t/sqrt(1 − ᾱ_t).":
                (xt - b / (1 - al).sqrt() * eps) / al.sqrt() + noise,
        })
        if mistake:
            raise ExerciseMistake(mistake)
        expected = mean + noise
        if not torch.is_tensor(got) or tuple(got.shape) != tuple(x_t.shape):
            expect_tensor(got, expected, "x_{t−1}")
        if not torch.allclose(got.detach().double().cpu(), expected, atol=1e-5, rtol=1e-4):
            raise ExerciseMistake(
                f"{first_difference(got, expected, t)}. Expected x_(t−1) = (x_t − β_t/sqrt(1 − ᾱ_t)·ε)/sqrt(α_t) "
                "+ sqrt(β_t)·z, with z = 0 at t = 0."
            )

    return run_checker("check_p_sample", body)
