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
