"""Checkers of chapter 6 (book/06_fast_sampling): the DDIM update, the step schedule, inversion, respacing.
"""
from __future__ import annotations

import torch

from ..ddim import step_schedule
from ..schedules import alphas_cumprod as cumulative_alphas, linear_beta_schedule
from ._harness import ExerciseMistake, call, expect_tensor, known_mistake, run_checker

_NAN_HINT = ("your result contains NaN or infinity: a square root of a negative number? σ_t has "
             "sqrt(1 − ᾱ_t/ᾱ_prev), which is >= 0 because ᾱ_t <= ᾱ_prev (the state at t is the noisier one); "
             "sqrt(1 − ᾱ_prev/ᾱ_t) is not.")


def _close(a, b) -> bool:
    return torch.is_tensor(a) and tuple(a.shape) == tuple(b.shape) and a.is_floating_point() and \
        torch.allclose(a.detach().double().cpu(), b, atol=1e-5, rtol=1e-4)


def _ddim_variants(x, eps, a, ap, eta, z) -> tuple[torch.Tensor, dict]:
    """The DDIM update (eq. 12) in float64, and typical wrong versions of it."""
    def update(x0, sigma, direction=None, x0_weight=None, noise=True):
        direction = (1 - ap - sigma ** 2).sqrt() if direction is None else direction
        x0_weight = ap.sqrt() if x0_weight is None else x0_weight
        return x0_weight * x0 + direction * eps + (sigma * z if noise else 0)

    x0 = (x - (1 - a).sqrt() * eps) / a.sqrt()
    ratio, drop = (1 - ap) / (1 - a), 1 - a / ap
    sigma = eta * ratio.sqrt() * drop.sqrt()
    return update(x0, sigma), {
        "σ_t must be multiplied by η: σ_t(η) = η · sqrt((1 − ᾱ_prev)/(1 − ᾱ_t)) · sqrt(1 − ᾱ_t/ᾱ_prev); "
        "yours adds DDPM's noise whatever η is.": update(x0, ratio.sqrt() * drop.sqrt()),
        "η multiplies σ_t, not σ_t²: with η = 0.5 the standard deviation is halved.":
            update(x0, eta ** 0.5 * ratio.sqrt() * drop.sqrt()),
        "ᾱ_t and ᾱ_prev are swapped in σ_t's first factor: it is sqrt((1 − ᾱ_prev)/(1 − ᾱ_t)), at most 1.":
            update(x0, eta * (1 / ratio).sqrt() * drop.sqrt()),
        "σ_t is missing its square roots: σ_t = η · sqrt((1 − ᾱ_prev)/(1 − ᾱ_t)) · sqrt(1 − ᾱ_t/ᾱ_prev) is a "
        "standard deviation.": update(x0, eta * ratio * drop),
        "the weight of ε̂ is sqrt(1 − ᾱ_prev − σ_t²): you forgot the square root.":
            update(x0, sigma, direction=1 - ap - sigma ** 2),
        "the weight of ε̂ is sqrt(1 − ᾱ_prev − σ_t²): the noise σ_t z takes its share of the variance, so "
        "subtract σ_t².": update(x0, sigma, direction=(1 - ap).sqrt()),
        "x̂_0 is weighted by sqrt(ᾱ_prev), not ᾱ_prev.": update(x0, sigma, x0_weight=ap),
        "x̂_0 = (x_t − sqrt(1 − ᾱ_t) ε̂)/sqrt(ᾱ_t) uses ᾱ_t, the step the state is at; you used ᾱ_prev.":
            update((x - (1 - ap).sqrt() * eps) / ap.sqrt(), sigma),
        "you forgot the noise σ_t z: for η > 0 the step is random.": update(x0, sigma, noise=False),
    }


def check_ddim_step(ddim_step) -> bool:
    """Exercise (chapter 6): ``ddim_step(x_t, eps, alpha_bar, alpha_bar_prev, eta, z)`` is eq. 12 of Song et al.:

    x̂_0 = (x_t − sqrt(1 − ᾱ_t) ε)/sqrt(ᾱ_t), σ_t = η sqrt((1 − ᾱ_prev)/(1 − ᾱ_t)) sqrt(1 − ᾱ_t/ᾱ_prev),
    x_prev = sqrt(ᾱ_prev) x̂_0 + sqrt(1 − ᾱ_prev − σ_t²) ε + σ_t z. ``alpha_bar``, ``alpha_bar_prev``:
    (batch, 1), one per example (the last example jumps to x_0: ᾱ_prev = 1).
    """

    def body():
        g = torch.Generator().manual_seed(61)
        alpha_bar = torch.tensor([0.02, 0.3, 0.5, 0.9, 0.97, 0.999])[:, None]
        alpha_bar_prev = torch.tensor([0.3, 0.35, 0.9, 0.95, 0.999, 1.0])[:, None]
        x_t = torch.randn(6, 3, generator=g)
        eps, z = torch.randn(6, 3, generator=g), torch.randn(6, 3, generator=g)
        for eta in (0.5, 0.0, 1.0):
            what = f"with η = {eta}"
            got = call(ddim_step, x_t.clone(), eps.clone(), alpha_bar.clone(), alpha_bar_prev.clone(), eta, z.clone(),
                       what=f"{what} (x_t, eps, z of shape (6, 3); ᾱ of shape (6, 1))")
            expected, variants = _ddim_variants(*(v.double() for v in (x_t, eps, alpha_bar, alpha_bar_prev)), eta,
                                                z.double())
            if _close(got, expected):
                continue
            for mistake, wrong in variants.items():   # NaN where the wrong formula takes a root of a negative number
                if torch.is_tensor(got) and got.shape == wrong.shape and got.is_floating_point() and not \
                        _close(wrong.float(), expected) and torch.allclose(got.detach().double().cpu(), wrong, atol=1e-5,
                                                                           rtol=1e-4, equal_nan=True):
                    raise ExerciseMistake(f"{what}: {mistake}")
            if torch.is_tensor(got) and got.is_floating_point() and not torch.isfinite(got).all():
                raise ExerciseMistake(f"{what}: {_NAN_HINT}")
            expect_tensor(got, expected, f"x_prev {what}")

    return run_checker("check_ddim_step", body)


def check_step_schedule(step_schedule_fn) -> bool:
    """Exercise (chapter 6): ``step_schedule_fn(T, S)`` is the uniform step schedule of the book: S distinct
    0-based steps ``round((T-1) · (1 − i/(S−1)))``, from T-1 down to 0 (a LongTensor)."""

    def body():
        for T, S in ((1000, 50), (100, 10), (10, 10), (100, 8), (50, 2)):   # no ties x.5 to round
            what = f"for T = {T}, S = {S}"
            got = call(step_schedule_fn, T, S, what=what)
            expected = step_schedule(T, S)
            if isinstance(got, (list, tuple)):
                got = torch.tensor(got)
            if not torch.is_tensor(got) or got.ndim != 1:
                raise ExerciseMistake(f"{what}: return a 1-D torch.LongTensor of steps, got "
                                      f"{tuple(got.shape) if torch.is_tensor(got) else type(got).__name__}.")
            if got.is_floating_point():
                raise ExerciseMistake(f"{what}: the steps are indices: return integers (.round().long()), "
                                      f"got dtype {got.dtype}.")
            got = got.cpu().long()
            if len(got) != S:
                hint = (" (range(0, T, T // S) gives more than S steps when S does not divide T)"
                        if len(got) == len(range(0, T, T // S)) else "")
                raise ExerciseMistake(f"{what}: expected S = {S} steps, got {len(got)}{hint}.")
            if torch.equal(got, expected):
                continue
            if torch.equal(got.flip(0), expected):
                raise ExerciseMistake(f"{what}: the schedule runs from the noisiest step down, as the sampler visits "
                                      "it: first T-1, last 0. Reverse yours (.flip(0)).")
            if got[0] == T:
                raise ExerciseMistake(f"{what}: your first step is T = {T}, but the steps are 0-based: the noisiest "
                                      f"is T-1 = {T - 1} (the paper's step T). An off-by-one.")
            if int(got[-1]) != 0:
                raise ExerciseMistake(f"{what}: the schedule must end at 0, the last step (to x_0); yours ends at "
                                      f"{int(got[-1])}.")
            if int(got[0]) == T - T // S:
                raise ExerciseMistake(f"{what}: you start at T − T/S = {int(got[0])}, the stride of the DDIM paper's "
                                      f"code; this book's uniform schedule includes both ends, so the first step is "
                                      f"T-1 = {T - 1}, where x_T ~ N(0, I) lives.")
            if (got[1:] >= got[:-1]).any():
                i = int((got[1:] >= got[:-1]).nonzero()[0])
                raise ExerciseMistake(f"{what}: the steps must be distinct and decreasing; yours has "
                                      f"{int(got[i])} then {int(got[i + 1])} at positions {i} and {i + 1}.")
            i = int((got != expected).nonzero()[0])
            raise ExerciseMistake(f"{what}: step {i} should be round((T-1)·(1 − i/(S−1))) = {int(expected[i])}, "
                                  f"yours is {int(got[i])}.")

    return run_checker("check_step_schedule", body)


class _RecordingModel:
    """A fixed 'trained model' ε(x, t) that remembers the steps it was called with."""

    def __init__(self):
        self.calls = []

    def __call__(self, x, t):
        self.calls.append(t.tolist() if torch.is_tensor(t) else t)
        t = torch.as_tensor(t, dtype=x.dtype).reshape(-1, *[1] * (x.ndim - 1))
        return 0.5 * torch.tanh(x) + 0.01 * t


def _invert(x0, a, steps, *, first_alpha_one=True, swap=False, no_sqrt=False):
    """DDIM inversion in float64 with the checker's fixed model (and typical slips)."""
    model = _RecordingModel()
    x = x0.double()
    upward = steps.flip(0).tolist()
    for lower, upper in zip([-1] + upward[:-1], upward):
        eps = model(x, torch.full((len(x),), upper))
        a_low = a[lower] if lower >= 0 else (torch.tensor(1.0, dtype=a.dtype) if first_alpha_one else a[0])
        a_up = a[upper]
        if swap:
            a_low, a_up = a_up, a_low
        root = (lambda v: v) if no_sqrt else torch.sqrt
        x0_hat = (x - root(1 - a_low) * eps) / root(a_low)
        x = root(a_up) * x0_hat + root(1 - a_up) * eps
    return x


def check_ddim_inversion(invert) -> bool:
    """Exercise (chapter 6): ``invert(model, x0, alphas_cumprod, steps)`` runs the η = 0 update upwards from x_0
    to x_T along ``steps`` (a schedule from :func:`~ddpm_lessons.ddim.step_schedule`, noisiest first), calling
    ``model(x, t)`` at each step τ_i it moves to, on the state it has; x_0 has ᾱ = 1."""

    def body():
        g = torch.Generator().manual_seed(62)
        a = cumulative_alphas(linear_beta_schedule(50, 1e-3, 0.2))
        steps = step_schedule(50, 6)
        x0 = torch.rand(5, 2, generator=g) * 2 - 1
        model = _RecordingModel()
        what = "with x0 of shape (5, 2), T = 50 and steps = " + str(steps.tolist())
        got = call(invert, model, x0.clone(), a.float().clone(), steps.clone(), what=what)
        wanted_calls = [[s] * 5 for s in steps.flip(0).tolist()]
        if not model.calls:
            raise ExerciseMistake("your function never called model(x, t): each step needs the predicted noise.")
        if model.calls != wanted_calls:
            seen = [c[0] if isinstance(c, list) and c else c for c in model.calls]
            raise ExerciseMistake(f"call the model once per step, going up, with the step you move to (as the "
                                  f"sampler's step from there calls it): t = {steps.flip(0).tolist()} in this order, "
                                  f"a LongTensor of one step per example; yours was called with {seen}.")
        expected = _invert(x0, a, steps)
        if _close(got, expected):
            return
        mistake = known_mistake(got, {
            "x_0 itself has ᾱ = 1 (nothing noised yet): the first step starts from ᾱ_lower = 1, not ᾱ at step 0.":
                _invert(x0, a, steps, first_alpha_one=False),
            "you move down, not up: going from the lower state to the upper one, x̂_0 uses ᾱ_lower and the new "
            "state sqrt(ᾱ_upper) x̂_0 + sqrt(1 − ᾱ_upper) ε̂.": _invert(x0, a, steps, swap=True),
            "the update has square roots: sqrt(ᾱ) and sqrt(1 − ᾱ) weigh x̂_0 and ε̂.": _invert(x0, a, steps, no_sqrt=True),
        })
        if mistake:
            raise ExerciseMistake(mistake)
        expect_tensor(got, expected, "x_T")

    return run_checker("check_ddim_inversion", body)


def check_respaced_betas(respaced_betas) -> bool:
    """Exercise (chapter 6): ``respaced_betas(alphas_cumprod, steps)`` returns the betas β' (S,) of the DDPM whose
    steps are ``steps`` (a schedule, noisiest first), in time order: β'_j = 1 − ᾱ_{τ_j}/ᾱ_{τ_{j−1}} over the
    steps sorted upwards, with ᾱ = 1 before the first, so that its ᾱ'_j equals ᾱ_{τ_j}."""

    def body():
        a = cumulative_alphas(linear_beta_schedule(100, 1e-3, 0.03))
        betas = 1 - a / torch.cat([a.new_ones(1), a[:-1]])
        for S in (10, 4):
            steps = step_schedule(100, S)
            what = f"with T = 100 and steps = {steps.tolist()}"
            got = call(respaced_betas, a.float().clone(), steps.clone(), what=what)
            upward = steps.flip(0)
            kept = a[upward]
            expected = 1 - kept / torch.cat([kept.new_ones(1), kept[:-1]])
            if _close(got, expected):
                continue
            mistake = known_mistake(got, {
                "betas run forward in time: index 0 is the first noising step (the smallest τ), so reverse the "
                "schedule first.": expected.flip(0),
                "β' must span the whole stride: 1 − ᾱ_{τ_j}/ᾱ_{τ_{j−1}}, not the original β at τ_j (one step's noise).":
                    betas[upward],
                "the ratio is upside down: β'_j = 1 − ᾱ_{τ_j}/ᾱ_{τ_{j−1}}, between 0 and 1.":
                    1 - torch.cat([kept.new_ones(1), kept[:-1]]) / kept,
                "the first β' is 1 − ᾱ_{τ}/1 for the smallest step τ (before it nothing is noised, ᾱ = 1); index "
                "j − 1 = −1 wraps around to the LAST step. Prepend a 1 to the kept ᾱ.":
                    torch.cat([1 - kept[:1] / kept[-1:], expected[1:]]),
            })
            if mistake:
                raise ExerciseMistake(f"{what}: {mistake}")
            expect_tensor(got, expected, f"β' {what}")

    return run_checker("check_respaced_betas", body)
