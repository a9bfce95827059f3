"""Chapter 3 checkers: the reference passes, typical wrong answers are caught with a pointed message."""
import pytest
import torch

from ddpm_lessons import exercises


def _schedule(betas):
    alphas = 1 - betas
    a = torch.cumprod(alphas, 0)
    a_prev = torch.cat([a.new_ones(1), a[:-1]])
    return alphas, a, a_prev


def posterior(x0, x_t, t, betas, *, swap=False, wrap=False, clamp=False, no_sqrt=False, x_t_weight_bar=False,
              x0_weight_bar=False, x_t_weight_cumulative=False, variance="tilde"):
    alphas, a, a_prev = _schedule(betas)
    if wrap:
        a_prev = a[t - 1]
    elif clamp:
        a_prev = a[(t - 1).clamp(min=0)]
    else:
        a_prev = a_prev[t]
    b, al, at, ap = betas[t][:, None], alphas[t][:, None], a[t][:, None], a_prev.reshape(-1, 1)
    c1 = (ap if no_sqrt else (at if x0_weight_bar else ap).sqrt()) * b / (1 - at)
    c2 = (al if no_sqrt else (at if x_t_weight_cumulative else al).sqrt()) * (1 - (at if x_t_weight_bar else ap)) / (1 - at)
    mean = c1 * x_t + c2 * x0 if swap else c1 * x0 + c2 * x_t
    var = (1 - ap) / (1 - at) * b
    if variance == "beta":
        var = b.expand_as(x_t)
    elif variance == "std":
        var = var.sqrt()
    elif variance == "inverted":
        var = (1 - at) / (1 - ap) * b
    elif variance == "no_beta":
        var = (1 - ap) / (1 - at)
    return mean, var


@pytest.mark.parametrize("shape", ["full", "column", "flat"])
def test_q_posterior_reference_passes(shape, capsys):
    def answer(x0, x_t, t, betas):
        mean, var = posterior(x0, x_t, t, betas)
        return mean, {"full": var.expand_as(x_t), "column": var, "flat": var[:, 0]}[shape]
    assert exercises.check_q_posterior(answer)
    assert "✓ check_q_posterior: correct" in capsys.readouterr().out


def test_module_passes_both_checkers():
    from ddpm_lessons import Diffusion
    assert exercises.check_q_posterior(lambda x0, x_t, t, betas: Diffusion(betas).q_posterior(x0, x_t, t))

    def module_step(model, x_t, t, betas, z):
        d = Diffusion(betas)
        return d.p_mean(model, x_t, t) + d.betas[t].sqrt()[:, None] * (t > 0)[:, None] * z
    assert exercises.check_p_sample(module_step)


@pytest.mark.parametrize("options, message", [
    (dict(swap=True), "coefficients swapped"),
    (dict(wrap=True), "wraps around to the LAST step"),
    (dict(no_sqrt=True), "missing square roots"),
    (dict(variance="beta"), "the variance equals β_t"),
    (dict(variance="std"), "standard deviation"),
    (dict(clamp=True), "clamping t − 1 at 0 takes ᾱ of the first step"),
    (dict(x_t_weight_bar=True), "the weight of x_t has 1 − ᾱ_{t−1} in its numerator, not 1 − ᾱ_t"),
    (dict(x0_weight_bar=True), "the weight of x0 has sqrt(ᾱ_{t−1}), not sqrt(ᾱ_t)"),
    (dict(x_t_weight_cumulative=True), "the weight of x_t has sqrt(α_t), this step's α"),
    (dict(variance="inverted"), "the ratio is upside down"),
    (dict(variance="no_beta"), "missing the factor β_t"),
])
def test_q_posterior_wrong_answers(options, message, capsys):
    assert not exercises.check_q_posterior(lambda x0, x_t, t, betas: posterior(x0, x_t, t, betas, **options))
    out = capsys.readouterr().out
    assert "✗ check_q_posterior: not yet." in out and message in out, out


def test_q_posterior_wrong_variance_only_at_t0(capsys):
    def answer(x0, x_t, t, betas):
        mean, _ = posterior(x0, x_t, t, betas)
        _, wrong = posterior(x0, x_t, t, betas, wrap=True)
        return mean, wrong
    assert not exercises.check_q_posterior(answer)
    out = capsys.readouterr().out
    assert "variance at t = 0 is wrong" in out, out


def test_q_posterior_unknown_slip_names_the_weight_and_step(capsys):
    """A mean that no catalogue entry explains: the checker still says which weight is off, and where."""
    def answer(x0, x_t, t, betas):
        mean, var = posterior(x0, x_t, t, betas)
        return mean + 0.1 * (t == 25)[:, None] * x_t, var      # x_t's weight off by 0.1 at t = 25 only
    assert not exercises.check_q_posterior(answer)
    out = capsys.readouterr().out
    assert "The weight of x_t is off, first at t = 25" in out, out
    assert "The weight of x0" not in out, out


def test_q_posterior_not_a_pair(capsys):
    assert not exercises.check_q_posterior(lambda x0, x_t, t, betas: posterior(x0, x_t, t, betas)[0])
    assert "expected a pair (mean, variance)" in capsys.readouterr().out


def step(model, x_t, t, betas, z, *, noise_at_0=False, noise_from_1=False, no_noise=False, sigma_is_beta=False,
         beta_tilde=False, q_sample_weight=False, plus=False, no_divide=False, multiply=False, prev_weight=False,
         model_t=None):
    alphas, a, a_prev = _schedule(betas)
    b, al, at, ap = betas[t][:, None], alphas[t][:, None], a[t][:, None], a_prev[t][:, None]
    eps = model(x_t, t if model_t is None else model_t(t))
    weight = (1 - at).sqrt() if q_sample_weight else b / (1 - (ap if prev_weight else at)).sqrt()
    mean = x_t + weight * eps if plus else x_t - weight * eps
    if multiply:
        mean = mean * al.sqrt()
    elif not no_divide:
        mean = mean / al.sqrt()
    sigma = b if sigma_is_beta else ((1 - ap) / (1 - at) * b).sqrt() if beta_tilde else b.sqrt()
    mask = torch.ones_like(b) if noise_at_0 else (t > (1 if noise_from_1 else 0)).to(b.dtype)[:, None]
    return mean if no_noise else mean + mask * sigma * z


def test_p_sample_reference_passes(capsys):
    assert exercises.check_p_sample(step)
    assert "✓ check_p_sample: correct" in capsys.readouterr().out


@pytest.mark.parametrize("options, message", [
    (dict(noise_at_0=True), "no noise should be added at t = 0"),
    (dict(no_noise=True), "forgot the noise"),
    (dict(sigma_is_beta=True), "σ_t is sqrt(β_t), not β_t"),
    (dict(q_sample_weight=True), "not sqrt(1 − ᾱ_t)"),
    (dict(no_divide=True), "divided by sqrt(α_t)"),
    (dict(noise_from_1=True), "only t = 0 gets no noise (t > 0, not t > 1)"),
    (dict(beta_tilde=True), "you used β̃_t"),
    (dict(plus=True), "the predicted noise is subtracted"),
    (dict(multiply=True), "divided by sqrt(α_t), not multiplied"),
    (dict(prev_weight=True), "not ᾱ_{t−1}: β_t/sqrt(1 − ᾱ_t)"),
    (dict(model_t=lambda t: t + 1), "call the model with the current steps"),
    (dict(model_t=lambda t: t.float()), "call the model with the current steps"),
])
def test_p_sample_wrong_answers(options, message, capsys):
    assert not exercises.check_p_sample(lambda *args: step(*args, **options))
    out = capsys.readouterr().out
    assert "✗ check_p_sample: not yet." in out and message in out, out


def test_p_sample_that_ignores_the_model(capsys):
    assert not exercises.check_p_sample(lambda model, x_t, t, betas, z: x_t)
    assert "never called model" in capsys.readouterr().out
