"""The analytic noise predictor for a Gaussian mixture (chapter 3): a sampler test without training."""
import math

import pytest
import torch

from ddpm_lessons import Diffusion, schedules
from ddpm_lessons.metrics import energy_distance
from ddpm_lessons.oracle import GaussianMixture, LabelledMixture, MixtureOracle

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


# ---------------------------------------------------------------- labelled mixture (chapter 7)
LABELLED = LabelledMixture([0.2, 0.3, 0.1, 0.4], [[-1.0, 0.0], [1.0, 0.5], [0.0, 1.5], [0.3, -1.2]],
                           [0.5, 0.4, 0.3, 0.6], labels=[0, 1, 0, 2])


def test_labelled_mixture_classes():
    assert LABELLED.num_classes == 3
    assert torch.allclose(LABELLED.class_weights, torch.tensor([0.3, 0.3, 0.4], dtype=torch.float64))
    given = LABELLED.given(0)
    assert torch.allclose(given.weights, torch.tensor([2 / 3, 1 / 3], dtype=torch.float64))
    assert torch.equal(given.means, LABELLED.means[[0, 2]])
    x, y = LABELLED.sample_labelled(40_000, torch.Generator().manual_seed(0))
    assert torch.allclose(torch.bincount(y, minlength=3).double() / len(y), LABELLED.class_weights, atol=0.01)
    assert torch.allclose(x[y == 2].double().mean(0), LABELLED.means[3], atol=0.03)


def test_class_posterior_is_bayes_rule():
    # p(c | x_t) = p(c) p(x_t | c) / p(x_t), each density a noised mixture
    x, alpha_bar = torch.randn(7, 2, dtype=torch.float64), 0.4
    posterior = LABELLED.class_posterior(x, alpha_bar)
    assert torch.allclose(posterior.sum(1), torch.ones(7, dtype=torch.float64))

    def density(mixture):
        means, variances = mixture.noised(torch.tensor([alpha_bar], dtype=torch.float64))
        sq = ((x[:, None, :] - means) ** 2).sum(-1)
        return (mixture.weights * torch.exp(-0.5 * sq / variances) / (2 * math.pi * variances)).sum(1)

    joint = torch.stack([LABELLED.class_weights[c] * density(LABELLED.given(c)) for c in range(3)], 1)
    assert torch.allclose(posterior, joint / density(LABELLED)[:, None], atol=1e-12)


def test_conditional_oracle_is_chapter_3s_oracle_of_each_class():
    d = Diffusion(schedules.cosine_beta_schedule(50))
    oracle = LABELLED.eps_model(d)
    assert oracle.num_classes == 3
    x, t = torch.randn(8, 2), torch.randint(0, 50, (8,))
    y = torch.tensor([0, 1, 2, 3, 3, 0, 2, 1])
    out = oracle(x, t, y)
    for i in range(8):
        mixture = LABELLED if y[i] == 3 else LABELLED.given(int(y[i]))
        assert torch.allclose(out[i], MixtureOracle(mixture, d)(x[i:i + 1], t[i:i + 1])[0], atol=1e-6)
    assert torch.equal(oracle(x, t), MixtureOracle(LABELLED, d)(x, t))   # no label: the whole mixture


def test_scores_obey_bayes_rule():
    # ∇ log p(x_t | c) = ∇ log p(x_t) + ∇ log p(c | x_t), and ε* = −sqrt(1 − ᾱ_t) ∇ log p(x_t)
    d = Diffusion(schedules.cosine_beta_schedule(50))
    oracle, step = LABELLED.eps_model(d), 20
    a = d.float64["alphas_cumprod"][step]
    x = torch.randn(5, 2, dtype=torch.float64, requires_grad=True)
    c = torch.tensor([0, 1, 2, 0, 2])
    log_posterior = LABELLED.class_posterior(x, a).log().gather(1, c[:, None]).sum()
    grad, = torch.autograd.grad(log_posterior, x)
    t = torch.full((5,), step)
    eps_c, eps_u = oracle(x.detach(), t, c), oracle(x.detach(), t)
    assert torch.allclose(eps_c - eps_u, -(1 - a).sqrt() * grad, atol=1e-9)


def test_guided_oracle_sampler_reproduces_each_class_and_concentrates():
    from ddpm_lessons.guidance import Guided

    d = Diffusion(schedules.cosine_beta_schedule(50))
    oracle, n = LABELLED.eps_model(d), 400
    y = torch.arange(3).repeat_interleave(n)
    g = torch.Generator().manual_seed(0)
    purity = []
    for w in (0.0, 1.0, 4.0):
        x = d.sample(Guided(oracle, y, w), (len(y), 2), generator=g)
        purity.append((LABELLED.class_posterior(x).argmax(1) == y).double().mean().item())
        if w == 0.0:   # guidance 0: the unconditional model, the whole mixture whatever the label
            assert energy_distance(x, LABELLED.sample(len(y), g)) < 0.01
        if w == 1.0:   # guidance off: each class's own mixture
            for c in range(3):
                assert energy_distance(x[y == c], LABELLED.given(c).sample(n, g)) < 0.02
    data, labels = LABELLED.sample_labelled(3000, g)
    bayes = (LABELLED.class_posterior(data).argmax(1) == labels).double().mean().item()
    assert purity[0] < 0.5 < bayes - 0.1 < purity[1] < purity[2] and purity[2] > 0.97


@pytest.mark.parametrize("labels, match", [
    ([0, 1, 0], r"shape \(K,\) = \(4,\)"),
    ([0.0, 1.0, 0.0, 2.0], "integers"),
    ([0, 1, 0, 3], "each with a component"),
    ([0, 1, -1, 2], "0 … C − 1"),
])
def test_bad_labelled_mixture(labels, match):
    with pytest.raises(ValueError, match=match):
        LabelledMixture(LABELLED.weights, LABELLED.means, LABELLED.stds, labels)


def test_bad_conditional_oracle_input():
    oracle = LABELLED.eps_model(Diffusion(schedules.cosine_beta_schedule(10)))
    x, t = torch.randn(2, 2), torch.zeros(2, dtype=torch.long)
    with pytest.raises(ValueError, match=r"labels must lie in 0 … 2, or 3 for \"no label\"; got values from 0 to 4"):
        oracle(x, t, torch.tensor([0, 4]))
    with pytest.raises(ValueError, match=r"y must have shape \(batch,\) = \(2,\)"):
        oracle(x, t, torch.tensor([0, 1, 2]))
    with pytest.raises(ValueError, match="c must be a class 0 … 2"):
        LABELLED.given(3)


def test_log_density_is_the_mixture_density_and_its_score_gives_the_oracle():
    x = torch.randn(5, 2, dtype=torch.float64)
    sq = ((x[:, None, :] - MIXTURE.means) ** 2).sum(-1)
    density = (MIXTURE.weights * torch.exp(-0.5 * sq / MIXTURE.stds**2) / (2 * math.pi * MIXTURE.stds**2)).sum(1)
    assert torch.allclose(MIXTURE.log_density(x), density.log(), atol=1e-12)
    # Tweedie: ε*(x_t, t) = −sqrt(1 − ᾱ_t) ∇ log q(x_t)
    d = Diffusion(schedules.cosine_beta_schedule(50))
    a = d.float64["alphas_cumprod"][30]
    x.requires_grad_(True)
    score, = torch.autograd.grad(MIXTURE.log_density(x, a).sum(), x)
    assert torch.allclose(MIXTURE.eps_model(d)(x.detach(), 30), -(1 - a).sqrt() * score, atol=1e-9)
