"""ddpm_lessons.naive (chapter 1): the training loss and the naive sampler."""
import pytest
import torch
from torch import nn

from ddpm_lessons import naive
from ddpm_lessons.corruption import corrupt
from ddpm_lessons.models import BasicUNet


class Constant(nn.Module):
    """Predicts the same image whatever the input."""

    def __init__(self, image):
        super().__init__()
        self.image = nn.Parameter(image, requires_grad=False)
        self.calls = 0

    def forward(self, x):
        self.calls += 1
        return self.image.expand_as(x)


def test_step_weights_end_at_one():
    n = 7
    weights = [naive.step_weight(i, n) for i in range(n)]
    assert weights[0] == pytest.approx(1 / n) and weights[-1] == 1.0


def test_denoise_matches_the_update_rule_written_out():
    torch.manual_seed(0)
    model = BasicUNet().eval()
    x = torch.rand(2, 1, 8, 8) * 2 - 1
    expected = x.clone()
    n = 4
    with torch.no_grad():
        for i in range(n):
            expected = expected * (1 - 1 / (n - i)) + model(expected) / (n - i)
    assert torch.allclose(naive.denoise(model, x, n), expected, atol=1e-6)


def test_a_constant_prediction_is_reached_exactly_and_the_blend_is_uniform():
    # with pred = c at every step, x_n = c and the start's weight decays as (n-1)/n, (n-2)/(n-1), ... -> 0
    target = torch.full((1, 4, 4), 0.3)
    model = Constant(target)
    x = torch.rand(2, 1, 4, 4) * 2 - 1
    trajectory = naive.denoise(model, x, steps=5, return_trajectory=True)
    assert model.calls == 5
    assert torch.allclose(trajectory.x, target.expand_as(x))
    assert len(trajectory.xs) == 6 and len(trajectory.predictions) == 5
    assert torch.equal(trajectory.xs[0], x) and torch.equal(trajectory.xs[-1], trajectory.x)
    # after i steps, x is (n-i)/n of the start plus i/n of the target
    for i, xi in enumerate(trajectory.xs):
        assert torch.allclose(xi, x * (5 - i) / 5 + 0.3 * i / 5, atol=1e-6)


def test_sample_is_repeatable_with_a_generator_and_has_the_shape():
    model = BasicUNet()
    a = naive.sample(model, (2, 1, 8, 8), steps=3, generator=torch.Generator().manual_seed(0))
    b = naive.sample(model, (2, 1, 8, 8), steps=3, generator=torch.Generator().manual_seed(0))
    assert a.shape == (2, 1, 8, 8) and torch.equal(a, b)
    assert model.training  # sample() restores the mode it found


def test_sample_starts_from_uniform_noise():
    trajectory = naive.sample(BasicUNet(), (16, 1, 16, 16), steps=1, return_trajectory=True)
    start = trajectory.xs[0]
    assert start.min() >= -1 and start.max() <= 1 and abs(start.mean().item()) < 0.05


def test_loss_is_the_mse_of_the_reconstruction():
    torch.manual_seed(0)
    model = BasicUNet()
    x = torch.rand(4, 1, 8, 8) * 2 - 1
    g1, g2 = torch.Generator().manual_seed(5), torch.Generator().manual_seed(5)
    amount = torch.rand(4, generator=g2)
    expected = ((model(corrupt(x, amount, generator=g2)) - x) ** 2).mean()
    assert naive.loss(model, x, generator=g1).item() == pytest.approx(expected.item(), rel=1e-6)


@pytest.mark.parametrize("call, match", [
    (lambda m: naive.denoise(m, torch.zeros(1, 1, 8, 8), steps=0), "positive int"),
    (lambda m: naive.denoise(m, torch.zeros(1, 1, 8, 8, dtype=torch.long)), "floating-point"),
    (lambda m: naive.sample(m, (1, 8, 8)), "four positive ints"),
    (lambda m: naive.denoise(lambda x: x[:, :, :4], torch.zeros(1, 1, 8, 8)), "prediction must have the shape of x"),
])
def test_bad_input(call, match):
    with pytest.raises(ValueError, match=match):
        call(BasicUNet())


# ---------------------------------------------------------------- the amount told, and the exact denoiser
def test_pass_amount_calls_the_model_with_the_share_of_noise_left():
    seen = []

    def model(x, amount):
        seen.append(amount.clone())
        return torch.zeros_like(x)

    x = torch.rand(3, 1, 4, 4) * 2 - 1
    naive.denoise(model, x, steps=4, pass_amount=True)
    assert [a.tolist() for a in seen] == [[(4 - i) / 4] * 3 for i in range(4)]


def test_with_the_clean_image_as_prediction_the_sampler_follows_the_straight_path():
    # x_i = (1 - a_i) x0 + a_i u with a_i = (n - i)/n: the rule is Euler's method on x_a = (1 - a) x0 + a u
    x0, u = torch.rand(2, 1, 4, 4) * 2 - 1, torch.rand(2, 1, 4, 4) * 2 - 1
    run = naive.denoise(lambda x, amount: x0, u, steps=6, pass_amount=True, return_trajectory=True)
    for i, x in enumerate(run.xs):
        assert torch.allclose(x, corrupt(x0, (6 - i) / 6, noise=u), atol=1e-6)


def _ring():
    from ddpm_lessons.oracle import GaussianMixture
    angle = torch.arange(4) * torch.pi / 2
    return GaussianMixture(torch.tensor([1.0, 2.0, 1.0, 3.0]), 0.6 * torch.stack([angle.cos(), angle.sin()], 1),
                           torch.tensor([0.05, 0.1, 0.08, 0.2]))


def test_mixture_denoiser_ends_keep_the_input_and_give_the_mean():
    mixture, x = _ring(), torch.randn(5, 2)
    denoiser = naive.MixtureDenoiser(mixture)
    assert torch.allclose(denoiser(x, 0.0), x, atol=1e-6)                      # no noise: x itself
    mean = (mixture.weights[:, None] * mixture.means).sum(0).float()
    assert torch.allclose(denoiser(x, 1.0), mean.expand(5, 2), atol=1e-6)    # pure noise: the data mean
    assert denoiser(x.double()).dtype == torch.float64


@pytest.mark.parametrize("known", [True, False])
def test_mixture_denoiser_is_the_conditional_mean(known):
    # E[x | x̃] is the function of x̃ whose residual x - f(x̃) is uncorrelated with every function of
    # x̃ (told the amount: of (x̃, a)); checked on Monte Carlo draws against a few such functions
    mixture, n = _ring(), 40_000
    g = torch.Generator().manual_seed(0)
    x = mixture.sample(n, g).double()
    a = torch.rand(n, generator=g, dtype=torch.float64)
    noisy = (1 - a[:, None]) * x + a[:, None] * torch.randn(n, 2, generator=g, dtype=torch.float64)
    denoiser = naive.MixtureDenoiser(mixture, grid=100)
    residual = x - (denoiser(noisy, a) if known else denoiser(noisy))
    features = [torch.ones(n, dtype=torch.float64), noisy[:, 0], noisy[:, 1], noisy.pow(2).sum(1),
                torch.tanh(3 * noisy[:, 0] * noisy[:, 1])] + ([a * noisy[:, 0], a ** 2] if known else [])
    for feature in features:
        products = residual * feature[:, None]
        assert (products.mean(0).abs() < 5 * products.std(0) / n ** 0.5).all()


def test_mixture_denoiser_told_the_amount_predicts_better():
    mixture, n = _ring(), 20_000
    g = torch.Generator().manual_seed(1)
    x = mixture.sample(n, g)
    a = torch.rand(n, generator=g)
    noisy = (1 - a[:, None]) * x + a[:, None] * torch.randn(n, 2, generator=g)
    denoiser = naive.MixtureDenoiser(mixture, grid=100)
    told, not_told = (x - denoiser(noisy, a)).pow(2).mean(), (x - denoiser(noisy)).pow(2).mean()
    assert told < 0.9 * not_told


def test_mixture_denoiser_refuses_bad_input():
    denoiser = naive.MixtureDenoiser(_ring())
    with pytest.raises(ValueError, match=r"shape \(batch, 2\)"):
        denoiser(torch.zeros(3, 3))
    with pytest.raises(ValueError, match="amount must lie in"):
        denoiser(torch.zeros(3, 2), 1.5)
    with pytest.raises(ValueError, match="positive int"):
        naive.MixtureDenoiser(_ring(), grid=0)


def test_mixture_denoiser_amount_is_the_posterior_mean_of_the_amount():
    # residual a - E[a | x̃] uncorrelated with functions of x̃ (Monte Carlo), and inside (0, 1)
    mixture, n = _ring(), 40_000
    g = torch.Generator().manual_seed(2)
    x = mixture.sample(n, g).double()
    a = torch.rand(n, generator=g, dtype=torch.float64)
    noisy = (1 - a[:, None]) * x + a[:, None] * torch.randn(n, 2, generator=g, dtype=torch.float64)
    guess = naive.MixtureDenoiser(mixture, grid=100).amount(noisy)
    assert guess.shape == (n,) and 0 < guess.min() and guess.max() < 1
    residual = a - guess
    for feature in (torch.ones(n, dtype=torch.float64), noisy[:, 0], noisy.pow(2).sum(1)):
        products = residual * feature
        assert products.mean().abs() < 5 * products.std() / n ** 0.5


def _dataset_by_quadrature(images, noisy, grid=200_000):
    """P(i | x̃) and E[a | x̃] by summing the density (2a)^-D of each image's box over a fine grid of a."""
    a = (torch.arange(grid, dtype=torch.float64) + 0.5) / grid
    fits = ((noisy - (1 - a[:, None, None]) * images).abs() <= a[:, None, None]).all(-1)   # (A, N)
    density = fits * (2 * a[:, None]) ** -images.shape[1]
    weights = density.sum(0) / density.sum()
    return weights, (density.sum(1) * a).sum() / density.sum()


def test_dataset_denoiser_is_the_posterior_mean_by_quadrature():
    g = torch.Generator().manual_seed(0)
    images = torch.rand(4, 3, generator=g, dtype=torch.float64) * 2 - 1
    denoiser = naive.DatasetDenoiser(images)
    for i, a in ((0, 0.3), (2, 0.7), (3, 0.95)):
        noisy = (1 - a) * images[i] + a * (torch.rand(3, generator=g, dtype=torch.float64) * 2 - 1)
        weights, amount = _dataset_by_quadrature(images, noisy)
        assert torch.allclose(denoiser(noisy[None])[0], weights @ images, atol=1e-4)
        assert abs(denoiser.amount(noisy[None])[0] - amount) < 1e-4


def test_dataset_denoiser_ends():
    images = torch.tensor([[0.5, -0.2, 0.1, 0.9], [-0.7, 0.3, 0.0, -1.0]], dtype=torch.float64)
    denoiser = naive.DatasetDenoiser(images)
    assert torch.allclose(denoiser(images), images)                  # no noise: the image itself ...
    assert (denoiser.amount(images) < 1e-6).all()                    # ... read as amount 0
    # pure noise in many pixels: the amount is read as nearly 1, and the prediction averages the images
    g = torch.Generator().manual_seed(1)
    many = torch.rand(50, 784, generator=g, dtype=torch.float64) * 2 - 1
    pure = torch.rand(8, 784, generator=g, dtype=torch.float64) * 2 - 1
    big = naive.DatasetDenoiser(many)
    assert (big.amount(pure) > 0.99).all()
    assert (big(pure) - many.mean(0)).pow(2).mean().sqrt() < many.std(0).mean()


def test_dataset_denoiser_refuses_bad_input():
    with pytest.raises(ValueError, match=r"\[-1, 1\].*to_model_range"):
        naive.DatasetDenoiser(torch.full((2, 4), 255.0))
    with pytest.raises(ValueError, match="at least D = 3"):
        naive.DatasetDenoiser(torch.zeros(2, 2))
    with pytest.raises(ValueError, match=r"shape \(batch, 4\).*flatten"):
        naive.DatasetDenoiser(torch.zeros(2, 4))(torch.zeros(3, 1, 2, 2))
