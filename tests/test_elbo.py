"""The bound derived step by step (ddpm_lessons.elbo; chapter 4): densities, the Bayes rewrite, the
telescoping sum, the path form against the KL form, and the bound against an exact likelihood."""
import math

import pytest
import torch
from torch.distributions import Normal

from ddpm_lessons import elbo, schedules, vlb
from ddpm_lessons.diffusion import Diffusion
from ddpm_lessons.models import NoiseMLP
from ddpm_lessons.oracle import GaussianMixture

pytestmark = pytest.mark.filterwarnings("ignore::ddpm_lessons.diffusion.ScheduleWarning")  # short schedules on purpose


def _diffusion(T=30):
    return Diffusion(schedules.linear_beta_schedule(T, 1e-4 * 1000 / T, min(0.02 * 1000 / T, 0.4)))


def _oracle(d, mean=0.5, std=0.5):
    return GaussianMixture([1.0], [[mean]], [std]).eps_model(d)


# ---------------------------------------------------------------- densities
def test_log_normal_sums_torch_log_probs_over_the_data_dimensions():
    g = torch.Generator().manual_seed(0)
    x, m = torch.randn(7, 3, 2, generator=g, dtype=torch.float64), torch.randn(7, 3, 2, generator=g, dtype=torch.float64)
    var = torch.rand(7, 1, 1, generator=g, dtype=torch.float64) + 0.1
    expected = Normal(m, var.sqrt()).log_prob(x).flatten(1).sum(1)
    assert torch.allclose(elbo.log_normal(x, m, var), expected, atol=1e-12)


def test_step_marginal_and_posterior_densities_are_the_papers_gaussians():
    d = _diffusion()
    s = vlb.schedule64(d)
    g = torch.Generator().manual_seed(1)
    x0, x_prev, x_next = (torch.randn(5, 2, generator=g, dtype=torch.float64) for _ in range(3))
    t = torch.tensor([1, 3, 7, 20, 29])
    col = lambda name: s[name][t][:, None]  # noqa: E731
    assert torch.allclose(elbo.q_step_log_prob(d, x_next, x_prev, t),
                          Normal(col("alphas").sqrt() * x_prev, col("betas").sqrt()).log_prob(x_next).sum(1))
    assert torch.allclose(elbo.q_marginal_log_prob(d, x_next, x0, t),
                          Normal(col("alphas_cumprod").sqrt() * x0, (1 - col("alphas_cumprod")).sqrt()).log_prob(x_next).sum(1))
    mean, var = d.q_posterior(x0.float(), x_next.float(), t)
    assert torch.allclose(elbo.q_posterior_log_prob(d, x_prev, x_next, x0, t),
                          Normal(mean.double(), var.double().sqrt()).log_prob(x_prev).sum(1), atol=1e-4)


@pytest.mark.parametrize("shape", [(64, 2), (8, 1, 3, 3)])
def test_bayes_rewrite_holds_at_random_points(shape):
    """q(x_t | x_{t−1}) = q(x_{t−1} | x_t, x_0) q(x_t | x_0) / q(x_{t−1} | x_0), at any points, any t >= 2."""
    d = _diffusion()
    g = torch.Generator().manual_seed(2)
    x0, x_prev, x_next = (torch.randn(shape, generator=g, dtype=torch.float64) for _ in range(3))
    t = torch.randint(1, d.T, (shape[0],), generator=g)          # code index t joins x_t and x_{t+1}
    left = elbo.q_step_log_prob(d, x_next, x_prev, t)
    right = (elbo.q_posterior_log_prob(d, x_prev, x_next, x0, t) + elbo.q_marginal_log_prob(d, x_next, x0, t)
             - elbo.q_marginal_log_prob(d, x_prev, x0, t - 1))
    assert torch.allclose(left, right, rtol=1e-10, atol=1e-10)


def test_posterior_at_the_first_step_is_the_decoder_not_a_density():
    d = _diffusion()
    x = torch.zeros(3, 2)
    with pytest.raises(ValueError, match="decoder"):
        elbo.q_posterior_log_prob(d, x, x, x, torch.zeros(3, dtype=torch.long))


def test_reverse_step_uses_sigma_and_the_decoder_uses_beta_1():
    d = _diffusion()
    s = vlb.schedule64(d)
    x = torch.zeros(3, 2)
    t = torch.tensor([0, 1, 5])
    for variance, name in (("beta", "betas"), ("beta_tilde", "posterior_variance")):
        got = elbo.reverse_step_variance(d, t, x, variance).flatten()
        assert got[0] == s["betas"][0] and torch.equal(got[1:], s[name][t[1:]])


# ---------------------------------------------------------------- paths
def test_forward_path_has_the_closed_form_marginals():
    d = _diffusion(10)
    x0 = torch.full((20_000, 1), 0.7)
    path = elbo.forward_path(d, x0, torch.Generator().manual_seed(3))
    abar = vlb.schedule64(d)["alphas_cumprod"]
    assert len(path) == d.T + 1 and torch.equal(path[0], x0.double())
    for k in range(1, d.T + 1):   # path[k] = x_k ~ N(sqrt(ᾱ_k) x_0, 1 − ᾱ_k), ᾱ_k = alphas_cumprod[k − 1]
        mean, var = abar[k - 1].sqrt() * 0.7, 1 - abar[k - 1]
        assert abs(path[k].mean() - mean) < 4 * (var / len(x0)).sqrt()
        assert abs(path[k].var() / var - 1) < 4 * math.sqrt(2 / len(x0))


@pytest.mark.parametrize("variance", ["beta", "beta_tilde"])
def test_path_bound_equals_its_rewritten_terms_for_every_path(variance):
    """Bayes rewrite + telescoping: an identity path by path, for any model."""
    d = _diffusion()
    torch.manual_seed(0)
    for model in (_oracle(d), NoiseMLP(d.T, hidden=16)):
        x0 = torch.randn(50, 1 if model.__class__.__name__ == "MixtureOracle" else 2) * 0.5
        path = elbo.forward_path(d, x0, torch.Generator().manual_seed(4))
        terms = elbo.path_terms(d, model, path, variance)
        total = terms["prior"] + terms["kl"].sum(0) + terms["decoder"]
        assert torch.equal(terms["kl"][0], torch.zeros(len(x0), dtype=torch.float64))
        assert torch.allclose(elbo.path_bound(d, model, path, variance), total, rtol=1e-9, atol=1e-9)


def test_the_ratios_of_marginals_telescope():
    d = _diffusion()
    x0 = torch.randn(10, 2)
    path = elbo.forward_path(d, x0, torch.Generator().manual_seed(5))
    ratios = [elbo.q_marginal_log_prob(d, path[t + 1], x0, t) - elbo.q_marginal_log_prob(d, path[t], x0, t - 1)
              for t in range(1, d.T)]
    ends = elbo.q_marginal_log_prob(d, path[-1], x0, d.T - 1) - elbo.q_marginal_log_prob(d, path[1], x0, 0)
    assert torch.allclose(torch.stack(ratios).sum(0), ends, atol=1e-9)


def test_path_form_and_kl_form_agree_on_average():
    d = _diffusion()
    oracle = _oracle(d)
    g = torch.Generator().manual_seed(6)
    x0 = GaussianMixture([1.0], [[0.5]], [0.5]).sample(3000, g).double()
    path_form = elbo.path_bound(d, oracle, elbo.forward_path(d, x0, g), "beta_tilde")
    kl_form = vlb.bound(d, oracle, x0, variance="beta_tilde", generator=g)["per_example"]
    difference = path_form - kl_form
    assert abs(difference.mean()) < 4 * difference.std() / math.sqrt(len(x0))


def test_bad_paths_are_refused():
    d = _diffusion()
    path = elbo.forward_path(d, torch.zeros(3, 2))
    with pytest.raises(ValueError, match="T \\+ 1"):
        elbo.path_bound(d, _oracle(d), path[:-1])
    with pytest.raises(ValueError, match="shape"):
        elbo.path_terms(d, NoiseMLP(d.T), path[:-1] + [torch.zeros(3, 3)])


# ---------------------------------------------------------------- an exact likelihood
def test_the_gaussian_marginal_is_what_the_sampler_draws():
    d = _diffusion()
    mean, var = elbo.gaussian_data_marginal(d, 0.5, 0.5, "beta")
    samples = d.sample(_oracle(d), (40_000, 1), generator=torch.Generator().manual_seed(7)).double()
    beta_1 = vlb.schedule64(d)["betas"][0].item()   # Algorithm 2 adds no noise at the last step; p_θ does
    assert abs(samples.mean() - mean) < 4 * math.sqrt(var / len(samples))
    assert abs((samples.var() + beta_1) / var - 1) < 4 * math.sqrt(2 / len(samples))


def test_the_bound_is_tight_when_the_reverse_process_is_exact():
    """Data N(0, 1) and σ² = β: q is stationary and p_θ = q, so every path gives exactly −log p_θ(x_0)."""
    d = _diffusion()
    x0 = torch.randn(20, 1, dtype=torch.float64)
    path = elbo.forward_path(d, x0, torch.Generator().manual_seed(8))
    exact = elbo.gaussian_data_nll(d, 0.0, 1.0, x0, "beta")
    assert torch.allclose(elbo.path_bound(d, _oracle(d, 0.0, 1.0), path, "beta"), exact, atol=1e-9)
    assert torch.allclose(exact, -Normal(0.0, 1.0).log_prob(x0).sum(1), atol=1e-9)


def test_the_bound_lies_above_the_exact_nll_and_that_above_the_entropy():
    d = _diffusion()
    g = torch.Generator().manual_seed(9)
    x0 = GaussianMixture([1.0], [[0.5]], [0.5]).sample(3000, g).double()
    bound = vlb.bound(d, _oracle(d), x0, variance="beta_tilde", generator=g)["per_example"]
    exact = elbo.gaussian_data_nll(d, 0.5, 0.5, x0, "beta_tilde")
    gap = bound - exact
    assert gap.mean() > 4 * gap.std() / math.sqrt(len(x0))
    model_mean, model_var = elbo.gaussian_data_marginal(d, 0.5, 0.5, "beta_tilde")
    excess = vlb.normal_kl(0.5, 0.25, model_mean, model_var).item()   # E[−log p_θ] = H + KL(data ‖ p_θ)
    assert excess > 0
    expected = elbo.gaussian_entropy(0.5, 1) + excess
    assert abs(exact.mean() - expected) < 4 * exact.std() / math.sqrt(len(x0))


def test_importance_weights_average_to_the_likelihood_and_jensen_holds():
    d = _diffusion()
    x0 = torch.full((20_000, 1), 0.8, dtype=torch.float64)
    log_w = -elbo.path_bound(d, _oracle(d), elbo.forward_path(d, x0, torch.Generator().manual_seed(10)), "beta")
    exact = -elbo.gaussian_data_nll(d, 0.5, 0.5, x0[:1], "beta").item()
    w = (log_w - exact).exp()                              # p_θ(x_{0:T}) / (q(x_{1:T} | x_0) p_θ(x_0))
    assert abs(w.mean() - 1) < 4 * w.std() / math.sqrt(len(w))   # E_q[w] = p_θ(x_0)
    assert torch.logsumexp(log_w, 0) - math.log(len(log_w)) >= log_w.mean()   # log of the mean >= mean of the log
    assert log_w.mean() < exact


def test_gaussian_entropy_is_torch_s():
    expected = 2 * Normal(torch.tensor(0.0, dtype=torch.float64), torch.tensor(0.3, dtype=torch.float64)).entropy().item()
    assert elbo.gaussian_entropy(0.3, 2) == pytest.approx(expected, rel=1e-12)


@pytest.mark.parametrize("call, words", [
    (lambda d: elbo.gaussian_data_marginal(d, 0.0, 0.0), "std"),
    (lambda d: elbo.gaussian_data_marginal(d, 0.0, 1.0, "learned"), "variance"),
    (lambda d: elbo.q_step_log_prob(d, torch.zeros(3, 2), torch.zeros(3, 1), 1), "shape"),
    (lambda d: elbo.q_marginal_log_prob(d, torch.zeros(3, 2), torch.zeros(3, 2), d.T), "0 … T-1"),
])
def test_bad_arguments_are_explained(call, words):
    with pytest.raises(ValueError, match=words):
        call(_diffusion())
