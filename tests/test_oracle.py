"""The analytic noise predictor for a Gaussian mixture (chapter 3): a sampler test without training."""
import math

import pytest
import torch

from ddpm_lessons import Diffusion, schedules
from ddpm_lessons.metrics import energy_distance
from ddpm_lessons.oracle import GaussianMixture, MixtureOracle

pytestmark = pytest.mark.filterwarnings("ignore::ddpm_lessons.diffusion.ScheduleWarning")  # short schedules on purpose

@pytest.fixture(autouse=True)
def _seed():
    torch.manual_seed(0)


MIXTURE = GaussianMixture([0.5, 0.3, 0.2], [[-1.5, 0.5], [1.0, 1.0], [0.5, -1.5]], [0.3, 0.2, 0.25])


def test_sample_statistics_and_reproducibility():
    x = MIXTURE.sample(40_000, torch.Generator().manual_seed(0))
    assert x.shape == (40_000, 2) and x.dtype == torch.float32
    assert torch.equal(MIXTURE.sample(10, torch.Generator().manual_seed(1)), MIXTURE.sample(10, torch.Generator().manual_seed(1)))
    k = MIXTURE.responsibilities(x).argmax(1)
    weights = torch.bincount(k, minlength=3).double() / len(k)
    assert torch.allclose(weights, MIXTURE.weights, atol=0.01)
    overall_mean = (MIXTURE.weights[:, None] * MIXTURE.means).sum(0)
    assert torch.allclose(x.double().mean(0), overall_mean, atol=0.03)


def test_responsibilities_sum_to_one():
    r = MIXTURE.responsibilities(torch.randn(50, 2) * 3, alpha_bar=0.3)
    assert torch.allclose(r.sum(1), torch.ones(50, dtype=torch.float64))


def test_oracle_is_the_posterior_mean_of_the_noise():
    # E[ε | x_t] estimated by Monte Carlo in a small bin around a point equals the oracle there
    d = Diffusion(schedules.cosine_beta_schedule(100))
    oracle = MIXTURE.eps_model(d)
    g = torch.Generator().manual_seed(0)
    step, n = 50, 400_000
    x0, eps = MIXTURE.sample(n, g), torch.randn(n, 2, generator=g)
    x_t = d.q_sample(x0, step, eps)
    point = torch.tensor([[0.2, 0.1]])
    near = (x_t - point).norm(dim=1) < 0.1
    assert near.sum() > 1000
    estimate = eps[near].mean(0)
    stderr = eps[near].std(0) / math.sqrt(near.sum().item())
    assert ((estimate - oracle(point, torch.tensor([step]))[0]).abs() < 5 * stderr + 0.02).all()


def test_oracle_for_a_single_gaussian_is_linear():
    # data N(μ, s² I): ε* = sqrt(1-ᾱ) (x_t − sqrt(ᾱ) μ) / (ᾱ s² + 1 − ᾱ)
    gm = GaussianMixture([1.0], [[0.5, -0.5]], [0.4])
    d = Diffusion(schedules.linear_beta_schedule(10, 0.05, 0.2))
    x, t = torch.randn(6, 2), torch.tensor([0, 1, 2, 5, 8, 9])
    a = d.alphas_cumprod[t].double()[:, None]
    expected = (1 - a).sqrt() * (x.double() - a.sqrt() * torch.tensor([0.5, -0.5], dtype=torch.float64)) / (a * 0.16 + 1 - a)
    assert torch.allclose(MixtureOracle(gm, d)(x, t).double(), expected, atol=1e-5)


@pytest.mark.parametrize("variance", ["beta", "beta_tilde"])
def test_oracle_sampler_reaches_the_data_baseline(variance):
    d = Diffusion(schedules.cosine_beta_schedule(100))
    g = torch.Generator().manual_seed(0)
    n = 1000
    samples = d.sample(MIXTURE.eps_model(d), (n, 2), generator=g, variance=variance)
    baseline = [energy_distance(MIXTURE.sample(n, g), MIXTURE.sample(n, g)) for _ in range(5)]
    spread = max(abs(b) for b in baseline)
    assert energy_distance(samples, MIXTURE.sample(n, g)) < 2 * spread + 0.005
    weights = torch.bincount(MIXTURE.responsibilities(samples).argmax(1), minlength=3).double() / n
    assert torch.allclose(weights, MIXTURE.weights, atol=0.05)


def test_a_wrong_sampler_is_caught():
    # the oracle of another schedule (a typical bug: model and sampler disagree) misses the data
    d = Diffusion(schedules.cosine_beta_schedule(100))
    wrong = Diffusion(schedules.linear_beta_schedule(100, 1e-3, 0.2))
    g = torch.Generator().manual_seed(0)
    samples = d.sample(MIXTURE.eps_model(wrong), (1000, 2), generator=g)
    assert energy_distance(samples, MIXTURE.sample(1000, g)) > 0.02  # the data-vs-data spread is ~0.005


@pytest.mark.parametrize("args, match", [
    (([1.0], [0.0, 1.0], [1.0]), r"\(K, D\)"),
    (([0.5, 0.5], [[0.0, 1.0]], [1.0]), r"\(K,\)"),
    (([1.0], [[0.0, 1.0]], [-1.0]), "positive"),
])
def test_bad_mixture(args, match):
    with pytest.raises(ValueError, match=match):
        GaussianMixture(*args)


def test_bad_oracle_input():
    d = Diffusion(schedules.cosine_beta_schedule(10))
    with pytest.raises(ValueError, match=r"\(batch, 2\)"):
        MIXTURE.eps_model(d)(torch.randn(4, 3), torch.zeros(4, dtype=torch.long))
    with pytest.raises(ValueError, match="positive int"):
        MIXTURE.sample(0)
