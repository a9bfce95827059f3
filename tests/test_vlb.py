"""The variational bound, term by term (ddpm_lessons.vlb; chapter 4)."""
import math

import pytest
import torch

from ddpm_lessons import schedules, vlb
from ddpm_lessons.diffusion import Diffusion

pytestmark = pytest.mark.filterwarnings("ignore::ddpm_lessons.diffusion.ScheduleWarning")  # short schedules on purpose


def _diffusion(T=50):
    return Diffusion(schedules.linear_beta_schedule(T, 1e-4 * 1000 / T, min(0.02 * 1000 / T, 0.4)))


def _random(n=300, seed=0, T=50, d=2):
    g = torch.Generator().manual_seed(seed)
    x0 = torch.randn(n, d, generator=g)
    t = torch.randint(1, T, (n,), generator=g)
    eps = torch.randn(n, d, generator=g)
    eps_pred = eps + 0.5 * torch.randn(n, d, generator=g)
    return x0, t, eps, eps_pred


# ---------------------------------------------------------------- Gaussians
def test_normal_kl_matches_the_formula_and_is_zero_for_equal_gaussians():
    assert vlb.normal_kl(0.3, 2.0, 0.3, 2.0).item() == 0.0
    m1, v1, m2, v2 = 0.5, 0.7, -1.0, 2.0
    expected = 0.5 * (math.log(v2 / v1) + (v1 + (m1 - m2) ** 2) / v2 - 1)
    assert vlb.normal_kl(m1, v1, m2, v2).item() == pytest.approx(expected, rel=1e-6)


def test_normal_kl_with_equal_variances_is_the_mean_distance():
    m1, m2, v = torch.randn(100), torch.randn(100), torch.full((100,), 0.3)
    assert torch.allclose(vlb.normal_kl(m1, v, m2, v), (m1 - m2) ** 2 / (2 * v), atol=1e-6)


def test_normal_kl_agrees_with_torch_distributions():
    from torch.distributions import Normal, kl_divergence

    m1, m2 = torch.randn(50, dtype=torch.float64), torch.randn(50, dtype=torch.float64)
    v1, v2 = torch.rand(50, dtype=torch.float64) + 0.1, torch.rand(50, dtype=torch.float64) + 0.1
    expected = kl_divergence(Normal(m1, v1.sqrt()), Normal(m2, v2.sqrt()))
    assert torch.allclose(vlb.normal_kl(m1, v1, m2, v2), expected, atol=1e-12)


def test_gaussian_nll_agrees_with_torch_distributions():
    from torch.distributions import Normal

    x, m, v = torch.randn(20, dtype=torch.float64), torch.randn(20, dtype=torch.float64), torch.tensor(0.4, dtype=torch.float64)
    assert torch.allclose(vlb.gaussian_nll(x, m, v), -Normal(m, v.sqrt()).log_prob(x), atol=1e-12)


@pytest.mark.parametrize("function, args", [
    (vlb.normal_kl, (0.0, 0.0, 0.0, 1.0)), (vlb.normal_kl, (0.0, 1.0, 0.0, -1.0)), (vlb.gaussian_nll, (0.0, 0.0, 0.0)),
])
def test_non_positive_variance_is_refused(function, args):
    with pytest.raises(ValueError, match="variance"):
        function(*args)


# ---------------------------------------------------------------- eq. 12: the KL is a weighted noise error
@pytest.mark.parametrize("variance", ["beta", "beta_tilde"])
@pytest.mark.parametrize("T", [10, 50, 1000])
def test_kl_term_equals_the_weighted_noise_error(variance, T):
    x0, t, eps, eps_pred = _random(T=T, seed=T)
    d = _diffusion(T)
    kl = vlb.kl_term(d, x0, t, eps, eps_pred, variance)
    weighted = vlb.weighted_noise_error(d, t, eps, eps_pred, variance)
    assert torch.allclose(kl, weighted, rtol=1e-9, atol=1e-12)
    assert (kl > 0).all()


def test_kl_term_does_not_depend_on_x0():
    d = _diffusion()
    x0, t, eps, eps_pred = _random()
    assert torch.allclose(vlb.kl_term(d, x0, t, eps, eps_pred), vlb.kl_term(d, 5 * x0 + 1, t, eps, eps_pred), atol=1e-9)


def test_kl_term_is_the_constant_for_a_perfect_prediction():
    d = _diffusion()
    x0, t, eps, _ = _random()
    assert torch.allclose(vlb.kl_term(d, x0, t, eps, eps, "beta_tilde"), torch.zeros(len(t), dtype=torch.float64), atol=1e-9)
    # sigma^2 = beta_t: the KL of two Gaussians with the same mean and variances beta_tilde, beta (2 dims)
    s = vlb.schedule64(d)
    bt, b = s["posterior_variance"][t], s["betas"][t]
    expected = 2 * 0.5 * (torch.log(b / bt) + bt / b - 1)
    assert torch.allclose(vlb.kl_term(d, x0, t, eps, eps, "beta"), expected, atol=1e-9)


def test_noise_weight_is_the_formula_of_eq_12():
    d = _diffusion(T=20)
    t = torch.arange(1, 20)
    b = d.float64["betas"][t]   # the schedule as Diffusion keeps it, in float64
    a = 1 - b
    abar = torch.cumprod(1 - d.float64["betas"], 0)[t]
    btilde = vlb.schedule64(d)["posterior_variance"][t]
    assert torch.allclose(vlb.noise_weight(d, t, "beta"), b / (2 * a * (1 - abar)), rtol=1e-12)
    assert torch.allclose(vlb.noise_weight(d, t, "beta_tilde"), b**2 / (2 * btilde * a * (1 - abar)), rtol=1e-12)


def test_noise_weight_is_largest_at_small_t():
    # why dropping the weights matters: lambda_t is largest for the least noisy steps, so L_simple
    # (all weights 1) gives the noisier steps relatively more weight than the bound does
    for variance in ("beta", "beta_tilde"):
        w = vlb.noise_weight(_diffusion(100), torch.arange(1, 100), variance)
        assert w.argmax() == 0 and w[0] > 5 * w.min()


def test_prior_term_is_small_for_a_schedule_that_ends_in_noise_and_matches_the_formula():
    d = _diffusion(100)
    x0 = torch.randn(10, 2)
    abar = vlb.schedule64(d)["alphas_cumprod"][-1]
    expected = 0.5 * ((1 - abar) + abar * x0.double() ** 2 - 1 - torch.log(1 - abar)).sum(1)
    assert torch.allclose(vlb.prior_term(d, x0), expected, atol=1e-12)
    assert vlb.prior_term(d, x0).max() < 1e-3


def test_decoder_nll_is_the_gaussian_density_at_x0():
    d = _diffusion(10)
    x0, _, eps, eps_pred = _random(n=5, T=10)
    b = vlb.schedule64(d)["betas"][0]
    x1 = (1 - b).sqrt() * x0.double() + b.sqrt() * eps.double()
    mean = (x1 - b.sqrt() * eps_pred.double()) / (1 - b).sqrt()
    expected = (0.5 * torch.log(2 * math.pi * b) + (x0.double() - mean) ** 2 / (2 * b)).sum(1)
    assert torch.allclose(vlb.decoder_nll(d, x0, eps, eps_pred), expected, atol=1e-10)


def test_bound_adds_the_terms_and_is_smaller_for_a_better_model():
    d = _diffusion(20)
    x0 = torch.randn(200, 2) * 0.3

    def oracle(x_t, t):  # knows that x0 is this batch: predicts eps exactly
        return d.predict_eps(x_t, t, x0)

    def zero(x_t, t):
        return torch.zeros_like(x_t)

    g = torch.Generator().manual_seed(0)
    good, bad = vlb.bound(d, oracle, x0, generator=g), vlb.bound(d, zero, x0, generator=g)
    for result in (good, bad):
        assert result["total"] == pytest.approx(result["prior"] + result["kl"].sum().item() + result["decoder"], rel=1e-12)
        assert result["kl"].shape == (20,) and result["kl"][0] == 0
    assert good["total"] < bad["total"]
    assert good["noise_error"].max() < 1e-8


@pytest.mark.parametrize("call", [
    lambda d, x0, t, e: vlb.kl_term(d, x0, torch.zeros_like(t), e, e),
    lambda d, x0, t, e: vlb.weighted_noise_error(d, torch.zeros_like(t), e, e),
    lambda d, x0, t, e: vlb.noise_weight(d, torch.zeros_like(t)),
])
def test_step_zero_is_the_decoder_not_a_kl(call):
    d = _diffusion()
    x0, t, eps, _ = _random(n=4)
    with pytest.raises(ValueError, match="decoder"):
        call(d, x0, t, eps)


def test_bad_shapes_and_variance():
    d = _diffusion()
    x0, t, eps, eps_pred = _random(n=4)
    with pytest.raises(ValueError, match="shape"):
        vlb.kl_term(d, x0, t, eps, eps_pred[:, :1])
    with pytest.raises(ValueError, match="shape"):
        vlb.weighted_noise_error(d, t[:3], eps, eps_pred)
    with pytest.raises(ValueError, match="beta_tilde"):
        vlb.kl_term(d, x0, t, eps, eps_pred, variance="learned")


def test_bound_per_example_averages_to_the_total():
    d = _diffusion(20)
    x0 = torch.randn(50, 2) * 0.3
    result = vlb.bound(d, lambda x_t, t: torch.zeros_like(x_t), x0, generator=torch.Generator().manual_seed(1))
    assert result["per_example"].shape == (50,)
    assert result["per_example"].mean().item() == pytest.approx(result["total"], rel=1e-12)


def test_kl_constant_is_zero_for_beta_tilde_and_the_formula_for_beta():
    d = _diffusion()
    t = torch.arange(1, 50)
    assert torch.allclose(vlb.kl_constant(d, t, 3, "beta_tilde"), torch.zeros(49, dtype=torch.float64), atol=1e-12)
    s = vlb.schedule64(d)
    b, bt = s["betas"][t], s["posterior_variance"][t]
    assert torch.allclose(vlb.kl_constant(d, t, 3, "beta"), 1.5 * (torch.log(b / bt) + bt / b - 1), rtol=1e-12)


# ---------------------------------------------------------------- Stable Diffusion's hybrid loss
def test_lvlb_weights_are_lambda_for_beta_tilde_at_the_same_index():
    d = _diffusion(100)
    w = vlb.lvlb_weights(d)
    assert w.shape == (100,) and w[0] == w[1]
    assert torch.allclose(w[1:], vlb.noise_weight(d, torch.arange(1, 100), "beta_tilde"), rtol=1e-12)
    # latent-diffusion's own expression, in its float32 buffers
    b, a, acp = d.betas, d.alphas, d.alphas_cumprod
    theirs = b ** 2 / (2 * d.posterior_variance * a * (1 - acp))
    assert torch.allclose(w[1:].float(), theirs[1:], rtol=1e-4) and not torch.isfinite(theirs[0])


def test_hybrid_loss_interpolates_between_l_simple_and_the_bound():
    d = _diffusion(50)
    g = torch.Generator().manual_seed(2)
    x0, eps = torch.randn(64, 1, 2, 2, generator=g), torch.randn(64, 1, 2, 2, generator=g)
    t = torch.randint(1, 50, (64,), generator=g)

    def model(x_t, t):
        return 0.5 * x_t

    assert torch.allclose(vlb.hybrid_loss(d, model, x0, 1.0, 0.0, t=t, noise=eps), d.loss(model, x0, t=t, noise=eps))
    eps_pred = model(d.q_sample(x0, t, eps), t)
    kl = vlb.kl_term(d, x0, t, eps, eps_pred, "beta_tilde")          # C_t = 0 for σ² = β̃
    vlb_part = vlb.hybrid_loss(d, model, x0, 0.0, 1.0, t=t, noise=eps)
    assert torch.allclose(vlb_part.double() * 4, kl.mean(), rtol=1e-4)   # per pixel: divide by D = 4
    mixed = vlb.hybrid_loss(d, model, x0, 1.0, 0.001, t=t, noise=eps)
    assert torch.allclose(mixed, d.loss(model, x0, t=t, noise=eps) + 0.001 * vlb_part)


def test_hybrid_loss_refuses_negative_weights():
    d = _diffusion()
    with pytest.raises(ValueError, match="original_elbo_weight"):
        vlb.hybrid_loss(d, lambda x, t: x, torch.zeros(4, 2), 1.0, -1.0)


def test_normal_kl_keeps_double_precision_from_any_argument():
    v = torch.tensor([0.3, 0.5], dtype=torch.float64)
    assert vlb.normal_kl(0.0, v, 0.0, 2 * v).dtype == torch.float64
