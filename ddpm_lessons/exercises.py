"""Self-checking exercises: one ``check_*`` per coding exercise in the book.

A checker calls the student's function on random and edge-case inputs, compares with the module's
reference, and prints either a short success message or the *first* thing that is wrong, in words
(what was expected, where it differs, by how much). It returns True or False, so a notebook can
``assert`` it and an autograder can count it. The checkers' own tests (tests/test_exercises_*.py)
show that the reference passes and typical wrong answers are caught.
"""
from __future__ import annotations

import traceback

import torch


# ---------------------------------------------------------------- shared helpers
class ExerciseMistake(Exception):
    """Raised inside a checker to stop at the first mistake; its message is shown to the student."""


def _run_checker(name: str, body) -> bool:
    """Run ``body()``; print success or the first mistake in plain words; return True/False."""
    try:
        body()
    except ExerciseMistake as mistake:
        print(f"✗ {name}: not yet. {mistake}")
        return False
    except Exception as error:  # the student's code crashed: show where, briefly
        frames = traceback.extract_tb(error.__traceback__)
        where = f" (line {frames[-1].lineno} of {frames[-1].name})" if frames else ""
        print(f"✗ {name}: your function raised {type(error).__name__}: {error}{where}")
        return False
    print(f"✓ {name}: correct. Well done!")
    return True


def _call(function, *args, what: str, **kwargs):
    """Call the student's function; a crash becomes a mistake that says with which inputs."""
    try:
        return function(*args, **kwargs)
    except ExerciseMistake:
        raise
    except Exception as error:
        raise ExerciseMistake(f"calling it {what} raised {type(error).__name__}: {error}") from error


def _expect_tensor(value, expected: torch.Tensor, what: str, atol: float = 1e-5, rtol: float = 1e-4) -> None:
    """Compare the student's tensor with the reference; explain the first difference."""
    if not torch.is_tensor(value):
        raise ExerciseMistake(f"{what}: expected a torch.Tensor, got {type(value).__name__}.")
    if tuple(value.shape) != tuple(expected.shape):
        raise ExerciseMistake(f"{what}: expected shape {tuple(expected.shape)}, got {tuple(value.shape)}.")
    if not value.is_floating_point() and expected.is_floating_point():
        raise ExerciseMistake(f"{what}: expected a floating-point tensor, got {value.dtype}.")
    value, expected = value.detach().double().cpu(), expected.detach().double().cpu()
    if not torch.isfinite(value).all():
        raise ExerciseMistake(f"{what}: your result contains NaN or infinity.")
    difference = (value - expected).abs()
    if not torch.allclose(value, expected, atol=atol, rtol=rtol):
        raise ExerciseMistake(
            f"{what}: your result differs from the expected one by up to {difference.max().item():.3g} "
            f"(mean {expected.mean().item():.4g} expected, yours {value.mean().item():.4g})."
        )


# ---------------------------------------------------------------- chapter 1 (book/01_naive_denoiser)
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
    return _run_checker("corrupt", lambda: _check_blend(corrupt_fn, "uniform"))


def check_corrupt_gaussian(corrupt_fn) -> bool:
    """Exercise "Gaussian instead of uniform noise" (chapter 1): like :func:`check_corrupt`, with
    noise ~ N(0, 1) (the noise DDPMs use)."""
    return _run_checker("corrupt with Gaussian noise", lambda: _check_blend(corrupt_fn, "gaussian"))


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
            out = _call(model, x, amount, what="as model(x, amount) with x (4, 1, 28, 28) and amount (4,)")
            if not torch.is_tensor(out) or tuple(out.shape) != tuple(x.shape):
                got = tuple(out.shape) if torch.is_tensor(out) else type(out).__name__
                raise ExerciseMistake(
                    f"model(x, amount) should return an image per image, x's shape {tuple(x.shape)}; got {got}. "
                    "If you added the amount as an extra input channel, the output still has 1 channel.")
            low = _call(model, x, torch.full((4,), 0.05), what="with every amount 0.05")
            high = _call(model, x, torch.full((4,), 0.95), what="with every amount 0.95")
            if torch.allclose(low, high, atol=1e-7, rtol=0):
                raise ExerciseMistake("the output is the same for amount 0.05 and 0.95: your model ignores the "
                                      "amount. Feed it in, e.g. as an extra input channel filled with it.")
            changed = amount.clone()
            changed[0] = 0.9
            other = _call(model, x, changed, what="with the first image's amount changed")
            if not torch.allclose(other[1:], out[1:], atol=1e-5, rtol=1e-4):
                raise ExerciseMistake(
                    "changing the amount of image 0 changed the output of the other images: each image must see "
                    "only its own amount (did you average the amounts, or broadcast them along the wrong dimension?)")
            if torch.allclose(other[0], out[0], atol=1e-7, rtol=0):
                raise ExerciseMistake("changing the amount of image 0 did not change its output; use each image's "
                                      "own amount (amount.view(-1, 1, 1, 1)).")
            bigger = torch.rand(2, 1, 32, 32, generator=generator) * 2 - 1
            out32 = _call(model, bigger, torch.tensor([0.3, 0.6]),
                          what="with 32x32 images (any size divisible by 4 should work: no hard-coded 28)")
            if not torch.is_tensor(out32) or tuple(out32.shape) != tuple(bigger.shape):
                got = tuple(out32.shape) if torch.is_tensor(out32) else type(out32).__name__
                raise ExerciseMistake(f"with 32x32 images the output should have shape (2, 1, 32, 32); got {got}.")

    return _run_checker("amount-conditioned U-Net", body)


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
        from .naive import denoise

        generator = torch.Generator().manual_seed(3)
        target = torch.rand(1, 8, 8, generator=generator) * 2 - 1
        x = torch.rand(3, 1, 8, 8, generator=generator) * 2 - 1
        for steps in (1, 2, 5, 40):
            model, start = _FakeDenoiser(target), x.clone()
            out = _call(sampler_fn, model, start, steps, what=f"with steps = {steps}")
            if not torch.equal(start, x):
                raise ExerciseMistake("your sampler changed its input x in place; start with x = x.clone() or "
                                      "write x = x * (1 - w) + pred * w (a new tensor).")
            if model.calls != steps:
                raise ExerciseMistake(f"with steps = {steps} the model should be called once per step, {steps} "
                                      f"time(s); yours called it {model.calls} time(s).")
            with torch.no_grad():
                expected = denoise(_FakeDenoiser(target), x, steps)
            if steps == 1:
                _expect_tensor(out, expected, "with steps = 1 the only step has weight 1/(1 − 0) = 1, so the "
                               "result must be the model's prediction model(x)")
            else:
                weights = (", ".join(f"1/{steps - i}" for i in range(steps)) if steps <= 3
                           else f"1/{steps}, 1/{steps - 1}, …, 1/1")
                _expect_tensor(out, expected, f"with steps = {steps} (prediction weights {weights})")

    return _run_checker("naive sampler", body)


# ---------------------------------------------------------------- chapter 2 (book/02_forward_process)
def _known_mistake(value, variants: dict, atol: float = 1e-5) -> str | None:
    """The explanation of the first known wrong formula that ``value`` matches, or None."""
    if not torch.is_tensor(value):
        return None
    for explanation, wrong in variants.items():
        if wrong is not None and tuple(value.shape) == tuple(wrong.shape) and \
                torch.allclose(value.detach().double().cpu(), wrong.double(), atol=atol, rtol=1e-4):
            return explanation
    return None


def _first_difference(value, expected, t) -> str:
    """Where a batch result first differs: the example, its step t and the size of the difference."""
    value, expected = value.detach().double().cpu(), expected.double()
    per_example = (value - expected).abs().reshape(len(expected), -1).amax(1)
    i = int(per_example.argmax())
    return f"example {i} (t = {int(t[i])}) differs by {per_example[i].item():.3g}"


def _chapter2_cases(generator: torch.Generator):
    """Inputs for check_q_sample: points with assorted steps (0 and T-1 included), then images."""
    from .diffusion import Diffusion
    from .schedules import linear_beta_schedule

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
                got = _call(q_sample, x0, t, noise, a.clone(), what=f"with {what}")
            except ExerciseMistake as crash:
                if x0.ndim <= 2:
                    raise
                raise ExerciseMistake(f"{crash}. Hint: reshape ᾱ_t (one value per example) to "
                                      "(batch, 1, …, 1), e.g. with .view(-1, *[1] * (x0.ndim - 1)), so that "
                                      "it broadcasts over images as well as points.") from None
            shape = (-1,) + (1,) * (x0.ndim - 1)
            at = a[t].view(shape)
            mistake = _known_mistake(got, {
                "you forgot the square roots: x_t = sqrt(ᾱ_t)·x0 + sqrt(1 − ᾱ_t)·ε, not ᾱ_t·x0 + (1 − ᾱ_t)·ε.":
                    at * x0 + (1 - at) * noise,
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
                _expect_tensor(got, expected, f"with {what}")
            if not torch.allclose(got.detach().double().cpu(), expected.double(), atol=1e-5, rtol=1e-4):
                raise ExerciseMistake(
                    f"with {what}: {_first_difference(got, expected, t)}. For each example x_t should be "
                    "sqrt(ᾱ_t)·x0 + sqrt(1 − ᾱ_t)·ε with ᾱ_t = alphas_cumprod[t]."
                )
        # with ε = 0 only the mean is left, sqrt(ᾱ_t)·x0
        what, x0, t = cases[0]
        got = _call(q_sample, x0, t, torch.zeros_like(x0), a.clone(), what="with noise = 0")
        _expect_tensor(got, a[t].sqrt()[:, None] * x0, "with noise = 0 (x_t should be sqrt(ᾱ_t)·x0)")

    return _run_checker("check_q_sample", body)


# ---------------------------------------------------------------- chapter 3 (book/03_reverse_posterior)
def _chapter3_setup(generator: torch.Generator):
    """A short cosine schedule and a batch whose steps include t = 0 (where ᾱ_{t−1} = 1) and T − 1."""
    from .diffusion import Diffusion
    from .schedules import cosine_beta_schedule

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
        result = _call(q_posterior, x0.clone(), x_t.clone(), t.clone(), d.betas.clone(),
                       what="with x0, x_t of shape (6, 3) and t = [0, 1, 2, 25, 48, 49]")
        if not isinstance(result, (tuple, list)) or len(result) != 2:
            raise ExerciseMistake(f"expected a pair (mean, variance), got {type(result).__name__}.")
        mean, variance = result
        expected_mean, expected_variance = d.q_posterior(x0, x_t, t)
        b, al, at, ap = (v[t][:, None] for v in (betas, alphas, a, a_prev))
        wrong_prev = a[t - 1][:, None]       # a[-1] at t = 0: Python wraps to the last step
        x0d, xtd = x0.double(), x_t.double()
        mistake = _known_mistake(mean, {
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
        _expect_tensor(mean, expected_mean, "the mean μ̃_t")
        variance = _as_full(variance, x_t, "the variance")
        full = expected_variance.double()
        mistake = _known_mistake(variance, {
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
        _expect_tensor(variance, full, "the variance β̃_t", atol=1e-6)

    return _run_checker("check_q_posterior", body)


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
        got = _call(p_sample, model, x_t.clone(), t.clone(), d.betas.clone(), z.clone(),
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
        mistake = _known_mistake(got, {
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
            _expect_tensor(got, expected, "x_{t−1}")
        if not torch.allclose(got.detach().double().cpu(), expected, atol=1e-5, rtol=1e-4):
            raise ExerciseMistake(
                f"{_first_difference(got, expected, t)}. Expected x_(t−1) = (x_t − β_t/sqrt(1 − ᾱ_t)·ε)/sqrt(α_t) "
                "+ sqrt(β_t)·z, with z = 0 at t = 0."
            )

    return _run_checker("check_p_sample", body)


# ---------------------------------------------------------------- chapter 4 (book/04_noise_prediction)
class _SpyModel(torch.nn.Module):
    """A fixed, elementwise "noise predictor" that records what it was called with (chapter 4 checkers).

    Its output tanh(1.3 x − 0.2 + 0.01 t) depends on both inputs, so a loss computed from a wrong x_t
    or t gives a different value; ``calls`` holds the (x, t) of every call.
    """

    def __init__(self):
        super().__init__()
        self.scale = torch.nn.Parameter(torch.tensor(1.3))
        self.calls = []

    def forward(self, x, t):
        self.calls.append((x.detach().clone(), t.detach().clone() if torch.is_tensor(t) else t))
        t = torch.as_tensor(t, dtype=x.dtype, device=x.device)
        return torch.tanh(self.scale * x - 0.2 + 0.01 * t.reshape(-1, *[1] * (x.ndim - 1)))


def _chapter4_cases(generator: torch.Generator):
    """A short linear schedule; 2-D points with steps 0 and T-1 included, then images."""
    from .diffusion import Diffusion
    from .schedules import linear_beta_schedule

    d = Diffusion(linear_beta_schedule(100, 1e-3, 0.2))
    points = torch.randn(9, 2, generator=generator)
    images = torch.rand(4, 1, 5, 5, generator=generator) * 2 - 1
    return d, [
        ("a batch of 2-D points (x0 of shape (9, 2)) with steps t = 0 … 99", points,
         torch.tensor([0, 1, 5, 20, 50, 70, 97, 98, 99])),
        ("a batch of images (x0 of shape (4, 1, 5, 5))", images, torch.tensor([99, 0, 30, 60])),
    ]


def _check_simple_loss(loss_fn, target: str) -> None:
    """Shared body of check_loss and check_predict_x0_loss: the model input, then the loss value."""
    g = torch.Generator().manual_seed(4)
    d, cases = _chapter4_cases(g)
    wanted_name = "the noise ε" if target == "eps" else "x0"
    for what, x0, t in cases:
        noise = torch.randn(x0.shape, generator=g)
        model = _SpyModel()
        got = _call(loss_fn, d, model, x0.clone(), t.clone(), noise.clone(), what=f"with {what}")
        if torch.is_tensor(got) and tuple(got.shape) == tuple(x0.shape):
            raise ExerciseMistake(f"with {what}: you returned one error per number, shape {tuple(got.shape)}; "
                                  "the loss is a single number, the mean over the batch (`.mean()`).")
        if not torch.is_tensor(got) or got.numel() != 1:
            kind = f"shape {tuple(got.shape)}" if torch.is_tensor(got) else type(got).__name__
            raise ExerciseMistake(f"with {what}: expected a single-number tensor (0-d), got {kind}.")
        if not got.requires_grad:
            raise ExerciseMistake(f"with {what}: your loss has no gradient, so training could not use it. "
                                  "Return the tensor itself (no `.item()`, no `torch.no_grad()`).")
        if not model.calls:
            raise ExerciseMistake(f"with {what}: your loss never called model(x_t, t).")
        seen_x, seen_t = model.calls[-1]
        # the model's input: the noisy x_t at the integer steps t
        if not torch.is_tensor(seen_t) or tuple(seen_t.shape) != tuple(t.shape) or \
                seen_t.is_floating_point() or not torch.equal(seen_t.cpu().long(), t):
            hint = ""
            if torch.is_tensor(seen_t) and tuple(seen_t.shape) == tuple(t.shape):
                if torch.equal(seen_t.cpu().double(), t.double() + 1):
                    hint = " You passed t + 1: steps are 0-based here, pass t itself."
                elif seen_t.is_floating_point():
                    hint = " You passed floats (t / T?): pass the integer steps t; the model embeds them itself."
            raise ExerciseMistake(f"with {what}: the model should be called with the steps t = {t.tolist()}.{hint}")
        shape = (-1,) + (1,) * (x0.ndim - 1)
        a, at = d.alphas_cumprod, d.alphas_cumprod[t].view(shape)
        x_t = at.sqrt() * x0 + (1 - at).sqrt() * noise
        mistake = _known_mistake(seen_x, {
            "the model was given x0; it must see the noisy x_t = sqrt(ᾱ_t)·x0 + sqrt(1 − ᾱ_t)·ε.": x0,
            "the model was given the noise ε; it must see the noisy x_t = sqrt(ᾱ_t)·x0 + sqrt(1 − ᾱ_t)·ε.": noise,
            "you forgot the square roots in x_t: sqrt(ᾱ_t)·x0 + sqrt(1 − ᾱ_t)·ε, not ᾱ_t·x0 + (1 − ᾱ_t)·ε.":
                at * x0 + (1 - at) * noise,
            "x_t used α_t (alphas) instead of ᾱ_t (alphas_cumprod): the closed form needs the product ᾱ_t.":
                d.alphas[t].view(shape).sqrt() * x0 + (1 - d.alphas[t].view(shape)).sqrt() * noise,
            "x_t used ᾱ at step t + 1: steps are 0-based, so step t uses alphas_cumprod[t] itself.":
                a[(t + 1).clamp(max=len(a) - 1)].view(shape).sqrt() * x0
                + (1 - a[(t + 1).clamp(max=len(a) - 1)].view(shape)).sqrt() * noise,
        })
        if mistake:
            raise ExerciseMistake(f"with {what}: {mistake}")
        if tuple(seen_x.shape) != tuple(x0.shape) or not torch.allclose(seen_x.double(), x_t.double(), atol=1e-5):
            raise ExerciseMistake(
                f"with {what}: the model's input should be x_t = sqrt(ᾱ_t)·x0 + sqrt(1 − ᾱ_t)·ε with "
                f"ᾱ_t = alphas_cumprod[t] (one per example); yours differs"
                + (f": {_first_difference(seen_x, x_t, t)}." if tuple(seen_x.shape) == tuple(x0.shape)
                   else f" in shape: {tuple(seen_x.shape)} instead of {tuple(x0.shape)}.")
            )
        # the loss value: the mean squared error between the target and the model's output
        with torch.no_grad():
            out = _SpyModel()(x_t, t).double()
        wanted, other = (noise, x0) if target == "eps" else (x0, noise)
        wanted, other = wanted.double(), other.double()
        expected = (out - wanted).square().mean()
        value = got.detach().double().cpu().reshape(())
        variants = {
            f"you compared the output with {'x0' if target == 'eps' else 'the noise ε'}; "
            f"the target here is {wanted_name}.": (out - other).square().mean(),
            f"you compared the output with x_t; the target is {wanted_name}.": (out - x_t.double()).square().mean(),
            "you summed the squared errors; take the mean, so that the loss does not grow with the batch.":
                (out - wanted).square().sum(),
            "you averaged the absolute errors (L1); the simple loss squares them.": (out - wanted).abs().mean(),
            "you took the square root of the mean squared error; the loss is the mean squared error itself.":
                (out - wanted).square().mean().sqrt(),
            "you summed over the coordinates and averaged over the batch; average over every number "
            "(as F.mse_loss does), so the value does not depend on the data size.":
                (out - wanted).square().reshape(len(x0), -1).sum(1).mean(),
        }
        for explanation, wrong in variants.items():
            if torch.isclose(value, wrong, rtol=1e-4, atol=1e-7) and not torch.isclose(value, expected, rtol=1e-4, atol=1e-7):
                raise ExerciseMistake(f"with {what}: {explanation}")
        if not torch.isclose(value, expected, rtol=1e-4, atol=1e-7):
            raise ExerciseMistake(
                f"with {what}: expected the mean of (model(x_t, t) − {wanted_name})² = {expected.item():.6g}, "
                f"got {value.item():.6g}."
            )


def check_loss(loss_fn) -> bool:
    """Exercise (chapter 4): ``loss_fn(diffusion, model, x0, t, noise)`` is L_simple of Algorithm 1.

    x_t = sqrt(ᾱ_t) x0 + sqrt(1 − ᾱ_t) ε, then the mean of (ε − model(x_t, t))² over every number,
    for the given steps ``t`` (LongTensor, 0-based) and noise ``ε``; it must work for points and images.
    """
    return _run_checker("check_loss", lambda: _check_simple_loss(loss_fn, "eps"))


def check_predict_x0_loss(loss_fn) -> bool:
    """Exercise (chapter 4): ``loss_fn(diffusion, model, x0, t, noise)`` trains the model to predict x0.

    As :func:`check_loss`, but the target is x0: the mean of (x0 − model(x_t, t))².
    """
    return _run_checker("check_predict_x0_loss", lambda: _check_simple_loss(loss_fn, "x0"))


def _reference_training_step(model, optimizer, loss_fn, batch) -> float:
    optimizer.zero_grad()
    loss = loss_fn(model, batch)
    loss.backward()
    optimizer.step()
    return loss.item()


def check_training_step(step_fn) -> bool:
    """Exercise (chapter 4): ``step_fn(model, optimizer, loss_fn, batch)`` does one optimizer step.

    Clear the old gradients, compute ``loss = loss_fn(model, batch)``, backpropagate, step the
    optimizer, and return the loss as a Python float (the value before the step).
    """

    def body():
        import copy

        from .models.noise_mlp import NoiseMLP

        d, cases = _chapter4_cases(torch.Generator().manual_seed(5))
        g = torch.Generator().manual_seed(6)
        batches = [torch.randn(16, 2, generator=g) for _ in range(3)]
        fixed = [(torch.randint(0, d.T, (16,), generator=g), torch.randn(16, 2, generator=g)) for _ in range(3)]
        torch.manual_seed(0)
        start = NoiseMLP(d.T, hidden=16)

        def run(step, zero_grad=True):
            model = copy.deepcopy(start)
            optimizer = torch.optim.Adam(model.parameters(), lr=1e-2)
            losses, states = [], []
            for i, batch in enumerate(batches):
                t, noise = fixed[i]

                def loss_fn(m, x, t=t, noise=noise):  # fixed t and ε: the step is deterministic
                    return d.loss(m, x, t=t, noise=noise)

                if not zero_grad and i > 0:  # the reference for "forgot zero_grad": keep the old gradients
                    loss = loss_fn(model, batch)
                    loss.backward()
                    optimizer.step()
                    losses.append(loss.item())
                else:
                    losses.append(_call(step, model, optimizer, loss_fn, batch, what=f"at step {i + 1}"))
                states.append([p.detach().clone() for p in model.parameters()])
            return losses, states

        got_losses, got_states = run(step_fn)
        ref_losses, ref_states = run(_reference_training_step)
        _, no_zero_states = run(_reference_training_step, zero_grad=False)
        unchanged = all(torch.equal(p, q) for p, q in zip(got_states[0], start.parameters()))
        if unchanged:
            raise ExerciseMistake(
                "after your step the parameters did not change: call optimizer.step() after loss.backward() "
                "(before backward there are no gradients to step with)."
            )
        for i, got in enumerate(got_losses):
            if torch.is_tensor(got):
                raise ExerciseMistake(
                    f"at step {i + 1} you returned a tensor; return loss.item(), a Python float, so that the "
                    "history of losses does not keep every step's graph in memory."
                )
            if not isinstance(got, float):
                raise ExerciseMistake(f"at step {i + 1}: expected the loss as a Python float, got {type(got).__name__}.")
        for i, (got, ref, accumulated) in enumerate(zip(got_states, ref_states, no_zero_states)):
            if all(torch.allclose(p, q, atol=1e-6) for p, q in zip(got, ref)):
                continue
            if i > 0 and all(torch.allclose(p, q, atol=1e-6) for p, q in zip(got, accumulated)):
                raise ExerciseMistake(
                    f"at step {i + 1} the update used this batch's gradient plus the previous ones: call "
                    "optimizer.zero_grad() before loss.backward() (PyTorch adds gradients up)."
                )
            raise ExerciseMistake(
                f"after step {i + 1} the parameters differ from one Adam step on loss_fn(model, batch): "
                "zero the gradients, compute the loss, call backward(), then optimizer.step() -- once each."
            )
        for i, (got, ref) in enumerate(zip(got_losses, ref_losses)):
            if abs(got - ref) > 1e-5 * max(1.0, abs(ref)):
                raise ExerciseMistake(
                    f"at step {i + 1} you returned {got:.6g}; the loss of this batch before the update is "
                    f"{ref:.6g}. Return the loss that you called backward() on."
                )

    return _run_checker("check_training_step", body)


# ---------------------------------------------------------------- chapter 5 (book/05_unet_fashion_mnist)
def _sinusoidal_variants(t: torch.Tensor, dim: int) -> dict:
    """Typical wrong embeddings, to name the mistake when a student's matches one (chapter 5)."""
    import math

    half = dim // 2
    angles = t.double()[:, None] * torch.exp(-math.log(10000.0) * torch.arange(half, dtype=torch.float64) / half)
    sin, cos = torch.sin(angles), torch.cos(angles)
    per_dim = t.double()[:, None] * torch.exp(-math.log(10000.0) * torch.arange(half, dtype=torch.float64) / dim)
    return {
        "your halves are swapped: the first half should be the sines, the second the cosines":
            torch.cat([cos, sin], dim=1),
        "you interleave sin and cos (sin, cos, sin, cos, …); the book puts all sines first, then all cosines":
            torch.stack([sin, cos], dim=2).reshape(len(t), dim),
        "your frequencies use the exponent -i/dim; with half = dim/2 frequencies it is ω_i = 10000^(-i/half)":
            torch.cat([torch.sin(per_dim), torch.cos(per_dim)], dim=1),
    }


def check_sinusoidal_embedding(embedding_fn) -> bool:
    """Exercise (chapter 5): ``embedding_fn(t, dim)`` is the sinusoidal time embedding (B,) -> (B, dim),
    ``[sin(t ω_0), …, sin(t ω_{h-1}), cos(t ω_0), …, cos(t ω_{h-1})]`` with ``ω_i = 10000^(-i/h)``, ``h = dim/2``."""
    from .models.embeddings import sinusoidal_embedding

    def body():
        g = torch.Generator().manual_seed(5)
        cases = [("at t = 0 (dim 8)", torch.zeros(3, dtype=torch.long), 8),
                 ("for random steps t in 0 … 999 (dim 16)", torch.randint(0, 1000, (6,), generator=g), 16),
                 ("for steps t = 1 and 999 (dim 64)", torch.tensor([1, 999]), 64)]
        for what, t, dim in cases:
            got = _call(embedding_fn, t.clone(), dim, what=f"{what}")
            expected = sinusoidal_embedding(t, dim)
            if torch.is_tensor(got) and tuple(got.shape) == tuple(expected.shape) and got.is_floating_point():
                close = lambda a, b: torch.allclose(a.detach().double().cpu(), b.double(), atol=1e-4, rtol=1e-4)
                if not close(got, expected):
                    for mistake, variant in _sinusoidal_variants(t, dim).items():
                        if close(got, variant):
                            raise ExerciseMistake(f"{what}: {mistake}.")
                    if what.startswith("at t = 0"):
                        raise ExerciseMistake(f"{what}: sin(0) = 0 and cos(0) = 1, so the embedding should be "
                                              f"[0, …, 0, 1, …, 1]; yours is {got[0].tolist()}.")
            _expect_tensor(got, expected, f"{what}", atol=1e-4, rtol=1e-4)

    return _run_checker("check_sinusoidal_embedding", body)


def _resnet_variants(block, x: torch.Tensor, time_emb: torch.Tensor) -> dict:
    """Typical wrong forward passes of a ResnetBlock, computed with the block's own layers."""
    scale, shift = block.time_mlp(time_emb)[:, :, None, None].chunk(2, dim=1)

    def first(scale_, shift_, after_act=False):
        h = block.block1.norm(block.block1.conv(x))
        if after_act:
            return block.block1.act(h) * (1 + scale_) + shift_
        return block.block1.act(h * (1 + scale_) + shift_)

    def second(h):
        return block.block2(h)

    skip = block.skip(x)
    return {
        "the residual connection is missing: add block.skip(x) to the output": second(first(scale, shift)),
        "use h·(1 + scale) + shift, not h·scale + shift (with 1 + scale, a zero time projection leaves h unchanged)":
            second(first(scale - 1, shift)) + skip,
        "scale and shift are swapped: chunk(2, dim=1) gives (scale, shift) in that order":
            second(first(shift, scale)) + skip,
        "the scale-and-shift goes between the norm and the activation of block1, not after the activation":
            second(first(scale, shift, after_act=True)) + skip,
        "the time conditioning belongs to the first conv layer (block1), not the second":
            block.block2(block.block1(x), (scale, shift)) + skip,
    }


def check_resnet_block(forward_fn) -> bool:
    """Exercise (chapter 5): ``forward_fn(block, x, time_emb)`` is the forward pass of
    :class:`ddpm_lessons.models.blocks.ResnetBlock` written with the block's own layers:
    ``h = act(norm(conv1(x))·(1 + scale) + shift)``, then block2, plus ``block.skip(x)``."""
    from .models.blocks import ResnetBlock

    def body():
        g = torch.Generator().manual_seed(6)
        for what, c_in, c_out in (("a block 8 -> 16 channels", 8, 16), ("a block 16 -> 16 channels", 16, 16)):
            with torch.random.fork_rng():
                torch.manual_seed(c_in + c_out)
                block = ResnetBlock(c_in, c_out, time_dim=12, groups=4).eval()
                for p in block.parameters():  # non-trivial weights, so that every mistake shows
                    p.data.normal_(0, 0.3)
            x = torch.randn(2, c_in, 6, 6, generator=g)
            time_emb = torch.randn(2, 12, generator=g)
            with torch.no_grad():
                expected = block(x, time_emb)
                got = _call(forward_fn, block, x.clone(), time_emb.clone(), what=f"with {what}")
                variants = _resnet_variants(block, x, time_emb)
            if torch.is_tensor(got) and tuple(got.shape) == tuple(expected.shape) and got.is_floating_point() \
                    and not torch.allclose(got.detach().double(), expected.double(), atol=1e-4, rtol=1e-4):
                for mistake, variant in variants.items():
                    if torch.allclose(got.detach().double(), variant.double(), atol=1e-4, rtol=1e-4):
                        raise ExerciseMistake(f"with {what}: {mistake}.")
            _expect_tensor(got, expected, f"with {what}", atol=1e-4, rtol=1e-4)

    return _run_checker("check_resnet_block", body)


def check_ema_update(update_fn) -> bool:
    """Exercise (chapter 5): ``update_fn(ema, param, decay)`` returns the new EMA weight
    ``decay · ema + (1 − decay) · param`` (what ``torch.optim.swa_utils.get_ema_multi_avg_fn`` does)."""

    def body():
        g = torch.Generator().manual_seed(7)
        for decay in (0.9, 0.999, 0.0):
            ema, param = torch.randn(5, 3, generator=g), torch.randn(5, 3, generator=g)
            param_before = param.clone()
            what = f"with decay = {decay}"
            got = _call(update_fn, ema.clone(), param, decay, what=what)
            expected = decay * ema + (1 - decay) * param_before
            if not torch.equal(param, param_before):
                raise ExerciseMistake(f"{what}: your update changed the model's weight `param`; only the EMA "
                                      "copy may change.")
            if torch.is_tensor(got) and got.shape == expected.shape and \
                    not torch.allclose(got.double(), expected.double(), atol=1e-6):
                if torch.allclose(got, (1 - decay) * ema + decay * param_before, atol=1e-6):
                    raise ExerciseMistake(f"{what}: decay multiplies the old EMA, (1 − decay) the new weight; yours "
                                          "has them the other way round, so the EMA would barely average.")
                if torch.allclose(got, decay * ema + param_before, atol=1e-6):
                    raise ExerciseMistake(f"{what}: the new weight must be weighted by (1 − decay); without it "
                                          "the EMA grows without bound.")
                if torch.allclose(got, decay * param_before + (1 - decay) * ema, atol=1e-6) or \
                        torch.allclose(got, ema + (1 - decay) * param_before, atol=1e-6):
                    raise ExerciseMistake(f"{what}: write it as decay · ema + (1 − decay) · param.")
            _expect_tensor(got, expected, what, atol=1e-6)

    return _run_checker("check_ema_update", body)
