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


def _at_steps(d: Diffusion, t: torch.Tensor):
    """β_t, α_t, ᾱ_t and ᾱ_{t−1} (float64) at each example's step, as columns (batch, 1)."""
    return tuple(d.float64[name][t][:, None] for name in ("betas", "alphas", "alphas_cumprod", "alphas_cumprod_prev"))


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


def _mean_weights_hint(q_posterior, betas, x0, x_t, t, coef1, coef2) -> str:
    """Which weight of the mean is off and at which step: the mean is linear in x0 and x_t, so calling
    the answer with x_t = 0 leaves x0's weight alone, and with x0 = 0 x_t's weight."""
    for name, x0_in, x_t_in, weight, x in (("x0", x0, torch.zeros_like(x_t), coef1, x0),
                                           ("x_t", torch.zeros_like(x0), x_t, coef2, x_t)):
        try:
            result = call(q_posterior, x0_in.clone(), x_t_in.clone(), t.clone(), betas.clone(), what="")
        except ExerciseMistake:
            return ""
        got = result[0] if isinstance(result, (tuple, list)) and len(result) == 2 else None
        if not torch.is_tensor(got) or tuple(got.shape) != tuple(x.shape):
            return ""
        x = x.double()
        yours = (got.detach().double().cpu() * x).sum(1) / (x * x).sum(1)      # least squares, per example
        wrong = ~torch.isclose(yours, weight[:, 0], atol=1e-5, rtol=1e-4)
        if wrong.any():
            i = int(wrong.nonzero()[0])
            return (f" The weight of {name} is off, first at t = {int(t[i])}: expected {weight[i, 0].item():.4g}, "
                    f"yours {yours[i].item():.4g}.")
    return ""


def check_q_posterior(q_posterior) -> bool:
    """Exercise (chapter 3): ``q_posterior(x0, x_t, t, betas)`` returns (mean, variance) of eqs. 6-7.

    μ̃_t = sqrt(ᾱ_{t−1}) β_t / (1 − ᾱ_t) · x_0 + sqrt(α_t) (1 − ᾱ_{t−1}) / (1 − ᾱ_t) · x_t and
    β̃_t = (1 − ᾱ_{t−1}) / (1 − ᾱ_t) · β_t, with 0-based steps and ᾱ_{−1} = 1 (so β̃ = 0 at t = 0).
    """

    def body():
        d, t, x0, x_t = _chapter3_setup(torch.Generator().manual_seed(3))
        result = call(q_posterior, x0.clone(), x_t.clone(), t.clone(), d.betas.clone(),
                      what="with x0, x_t of shape (6, 3) and t = [0, 1, 2, 25, 48, 49]")
        if not isinstance(result, (tuple, list)) or len(result) != 2:
            raise ExerciseMistake(f"expected a pair (mean, variance), got {type(result).__name__}.")
        mean, variance = result
        expected_mean, expected_variance = d.q_posterior(x0, x_t, t)
        b, al, at, ap = _at_steps(d, t)
        coef1, coef2 = ap.sqrt() * b / (1 - at), al.sqrt() * (1 - ap) / (1 - at)
        x0d, xtd = x0.double(), x_t.double()
        # ᾱ_{t−1} as alphas_cumprod[t − 1]: at t = 0 Python wraps to the last step; clamping t − 1 at 0
        # takes the first step's ᾱ. Either way ᾱ_{−1} is not 1.
        a = d.float64["alphas_cumprod"]
        must = "ᾱ_{t−1} must be 1 there (nothing was noised yet), but "
        fix = ". Prepend a 1 to alphas_cumprod (alphas_cumprod_prev)."
        first_step_variants = {
            must + "alphas_cumprod[t − 1] wraps around to the LAST step" + fix: a[t - 1][:, None],
            must + "clamping t − 1 at 0 takes ᾱ of the first step instead" + fix: a[(t - 1).clamp(min=0)][:, None],
        }
        mistake = known_mistake(mean, {
            "the mean has its coefficients swapped: x0 is weighted by sqrt(ᾱ_{t−1})·β_t/(1 − ᾱ_t), "
            "x_t by sqrt(α_t)·(1 − ᾱ_{t−1})/(1 − ᾱ_t).": coef1 * xtd + coef2 * x0d,
            **{f"the mean at t = 0 is wrong: {why}":
               p.sqrt() * b / (1 - at) * x0d + al.sqrt() * (1 - p) / (1 - at) * xtd
               for why, p in first_step_variants.items()},
            "the mean is missing square roots: the weights are sqrt(ᾱ_{t−1}) and sqrt(α_t), not ᾱ_{t−1} and α_t.":
                ap * b / (1 - at) * x0d + al * (1 - ap) / (1 - at) * xtd,
            "the mean uses ᾱ_t where the formula has ᾱ_{t−1}, in both weights.":
                at.sqrt() * b / (1 - at) * x0d + al.sqrt() * xtd,
            "the weight of x_t has 1 − ᾱ_{t−1} in its numerator, not 1 − ᾱ_t (with ᾱ_t it would "
            "cancel to sqrt(α_t)): sqrt(α_t)·(1 − ᾱ_{t−1})/(1 − ᾱ_t).":
                coef1 * x0d + al.sqrt() * xtd,
            "the weight of x0 has sqrt(ᾱ_{t−1}), not sqrt(ᾱ_t): x_{t−1} is one step less noisy than x_t, "
            "so it keeps sqrt(ᾱ_{t−1}) of x0. The weight is sqrt(ᾱ_{t−1})·β_t/(1 − ᾱ_t).":
                at.sqrt() * b / (1 - at) * x0d + coef2 * xtd,
            "the weight of x_t has sqrt(α_t), this step's α, not the cumulative sqrt(ᾱ_t): "
            "sqrt(α_t)·(1 − ᾱ_{t−1})/(1 − ᾱ_t).":
                coef1 * x0d + at.sqrt() * (1 - ap) / (1 - at) * xtd,
        })
        if mistake:
            raise ExerciseMistake(mistake)
        try:
            expect_tensor(mean, expected_mean, "the mean μ̃_t")
        except ExerciseMistake as mistake:
            raise ExerciseMistake(f"{mistake}{_mean_weights_hint(q_posterior, d.betas, x0, x_t, t, coef1, coef2)}") \
                from None
        variance = _as_full(variance, x_t, "the variance")
        full = expected_variance.double()
        mistake = known_mistake(variance, {
            "the variance equals β_t: the posterior variance is β̃_t = (1 − ᾱ_{t−1})/(1 − ᾱ_t)·β_t, smaller than β_t.":
                b.expand(full.shape),
            "you returned the standard deviation sqrt(β̃_t); return the variance β̃_t itself.":
                full.sqrt(),
            "the ratio is upside down: β̃_t = (1 − ᾱ_{t−1})/(1 − ᾱ_t)·β_t. (Yours divides by 1 − ᾱ_{t−1}, "
            "which is 0 at t = 0, so it is infinite there.)":
                ((1 - at) / (1 - ap) * b).expand(full.shape),
            "the variance is missing the factor β_t: β̃_t = (1 − ᾱ_{t−1})/(1 − ᾱ_t)·β_t.":
                ((1 - ap) / (1 - at)).expand(full.shape),
            **{f"the variance at t = 0 is wrong (β̃ must be 0 there): {why}":
               ((1 - p) / (1 - at) * b).expand(full.shape) for why, p in first_step_variants.items()},
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
        b, al, at, ap = _at_steps(d, t)
        xt, z = x_t.double(), z.double()
        mask = (t > 0).double()[:, None]
        mean = (xt - b / (1 - at).sqrt() * eps) / al.sqrt()
        noise = mask * b.sqrt() * z
        mistake = known_mistake(got, {
            "no noise should be added at t = 0 (the paper's t = 1): the last step returns the mean.":
                mean + b.sqrt() * z,
            "the paper's \"z = 0 if t = 1\" counts steps from 1: with 0-based t only t = 0 gets no noise "
            "(t > 0, not t > 1).":
                mean + (t > 1).double()[:, None] * b.sqrt() * z,
            "you forgot the noise σ_t·z (for t > 0): without it every run gives the same, too smooth sample.":
                mean,
            "σ_t is sqrt(β_t), not β_t: z is scaled by the standard deviation.":
                mean + mask * b * z,
            "this exercise asks for σ_t² = β_t; you used β̃_t (the paper's other choice, sec. 3.2).":
                mean + mask * ((1 - ap) / (1 - at) * b).sqrt() * z,
            "the weight of ε is β_t/sqrt(1 − ᾱ_t), not sqrt(1 − ᾱ_t) (that one belongs to q_sample).":
                (xt - (1 - at).sqrt() * eps) / al.sqrt() + noise,
            "the predicted noise is subtracted: μ = (x_t − β_t/sqrt(1 − ᾱ_t)·ε)/sqrt(α_t).":
                (xt + b / (1 - at).sqrt() * eps) / al.sqrt() + noise,
            "the mean must be divided by sqrt(α_t): μ = (x_t − β_t/sqrt(1 − ᾱ_t)·ε)/sqrt(α_t).":
                (xt - b / (1 - at).sqrt() * eps) + noise,
            "the mean is divided by sqrt(α_t), not multiplied: μ = (x_t − β_t/sqrt(1 − ᾱ_t)·ε)/sqrt(α_t).":
                (xt - b / (1 - at).sqrt() * eps) * al.sqrt() + noise,
            "the weight of ε has ᾱ_t (cumulative) under the square root, not α_t: β_t/sqrt(1 − ᾱ_t).":
                (xt - b / (1 - al).sqrt() * eps) / al.sqrt() + noise,
            "the weight of ε has ᾱ_t, this step's cumulative product, not ᾱ_{t−1}: β_t/sqrt(1 − ᾱ_t).":
                (xt - b / (1 - ap).sqrt() * eps) / al.sqrt() + noise,
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
