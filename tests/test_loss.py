"""Diffusion.loss (Algorithm 1; chapter 4): every loss type and target, with exact values."""
import math

import pytest
import torch

from ddpm_lessons import schedules
from ddpm_lessons.diffusion import Diffusion

pytestmark = pytest.mark.filterwarnings("ignore::ddpm_lessons.diffusion.ScheduleWarning")  # short schedules on purpose

T = 10
BETAS = [0.05 + 0.02 * i for i in range(T)]
X0 = torch.tensor([[1.0, -2.0], [0.25, 0.5], [-1.5, 0.0]], dtype=torch.float64)
NOISE = torch.tensor([[0.5, 3.0], [-0.2, -1.0], [2.5, 0.1]], dtype=torch.float64)
STEPS = torch.tensor([4, 0, 9])


def alpha_bar(t: int) -> float:
    return math.prod(1 - b for b in BETAS[: t + 1])


def x_t_by_hand():
    rows = []
    for x0, eps, t in zip(X0.tolist(), NOISE.tolist(), STEPS.tolist()):
        a = alpha_bar(t)
        rows.append([math.sqrt(a) * x + math.sqrt(1 - a) * e for x, e in zip(x0, eps)])
    return rows


class HalfOfInput(torch.nn.Module):
    """A "model" whose prediction is x_t / 2 + t / 10: the loss then depends on x_t and t as computed."""

    def __init__(self):
        super().__init__()
        self.dummy = torch.nn.Parameter(torch.zeros((), dtype=torch.float64))

    def forward(self, x, t):
        return 0.5 * x + t.to(x.dtype)[:, None] / 10 + self.dummy


def by_hand(loss_type: str, target: str) -> float:
    errors = []
    for row, x0, eps, t in zip(x_t_by_hand(), X0.tolist(), NOISE.tolist(), STEPS.tolist()):
        for i, x in enumerate(row):
            prediction = 0.5 * x + t / 10
            wanted = eps[i] if target == "eps" else x0[i]
            errors.append(prediction - wanted)
    if loss_type == "l2":
        values = [e * e for e in errors]
    elif loss_type == "l1":
        values = [abs(e) for e in errors]
    else:  # Huber with delta = 1 (torch's default)
        values = [0.5 * e * e if abs(e) < 1 else abs(e) - 0.5 for e in errors]
    return sum(values) / len(values)


@pytest.fixture
def diffusion():
    return Diffusion(torch.tensor(BETAS, dtype=torch.float64))


@pytest.mark.parametrize("target", ["eps", "x0"])
@pytest.mark.parametrize("loss_type", ["l2", "l1", "huber"])
def test_loss_value_is_exact_for_a_fixed_noise_and_t(diffusion, loss_type, target):
    value = diffusion.loss(HalfOfInput(), X0, loss_type=loss_type, target=target, t=STEPS, noise=NOISE)
    assert value.item() == pytest.approx(by_hand(loss_type, target), rel=1e-6)


def test_the_huber_case_uses_both_branches(diffusion):
    errors = []
    for row, eps, t in zip(x_t_by_hand(), NOISE.tolist(), STEPS.tolist()):
        errors += [0.5 * x + t / 10 - e for x, e in zip(row, eps)]
    assert min(abs(e) for e in errors) < 1 < max(abs(e) for e in errors)


def test_the_three_losses_differ_and_l2_is_the_default(diffusion):
    model = HalfOfInput()
    values = {k: diffusion.loss(model, X0, loss_type=k, t=STEPS, noise=NOISE).item() for k in ("l2", "l1", "huber")}
    assert len(set(values.values())) == 3
    assert diffusion.loss(model, X0, t=STEPS, noise=NOISE).item() == values["l2"]


def test_a_perfect_noise_predictor_has_zero_loss(diffusion):
    class Oracle(torch.nn.Module):  # knows x0, so it can recover eps from x_t exactly
        def forward(self, x, t):
            return diffusion.predict_eps(x, t, X0)

    for loss_type in ("l2", "l1", "huber"):
        assert diffusion.loss(Oracle(), X0, loss_type=loss_type, t=STEPS, noise=NOISE).item() == pytest.approx(0, abs=1e-12)


def test_the_loss_has_gradients_for_the_model(diffusion):
    model = HalfOfInput()
    diffusion.loss(model, X0, t=STEPS, noise=NOISE).backward()
    assert model.dummy.grad is not None and model.dummy.grad != 0


def test_t_is_uniform_over_all_steps_when_not_given():
    d = Diffusion(schedules.linear_beta_schedule(20, 1e-3, 0.2))
    seen = []

    def model(x, t):
        seen.append(t.clone())
        return torch.zeros_like(x)

    for _ in range(20):
        d.loss(model, torch.zeros(1000, 2))
    counts = torch.bincount(torch.cat(seen), minlength=20).double()
    assert len(counts) == 20 and counts.min() > 0
    assert (counts / counts.mean() - 1).abs().max() < 0.15  # 1000 per step expected; 15 % is > 4 sigma


def test_noise_is_standard_normal_when_not_given():
    d = Diffusion(torch.full((5,), 0.5, dtype=torch.float64))
    # with a model predicting 0, the eps-target l2 loss is the mean of eps^2: about 1
    value = d.loss(lambda x, t: torch.zeros_like(x), torch.zeros(20_000, 2)).item()
    assert value == pytest.approx(1.0, abs=0.03)


@pytest.mark.parametrize("kwargs, match", [
    (dict(loss_type="l3"), "'l2', 'l1', 'huber'"),
    (dict(loss_type="mse"), "loss_type"),
    (dict(target="v"), "'eps', 'x0'"),
    (dict(target="noise"), "target"),
])
def test_unknown_loss_type_or_target_names_the_valid_ones(diffusion, kwargs, match):
    with pytest.raises(ValueError, match=match):
        diffusion.loss(HalfOfInput(), X0, **kwargs)


def test_fixed_noise_of_the_wrong_shape_and_t_out_of_range(diffusion):
    with pytest.raises(ValueError, match="noise"):
        diffusion.loss(HalfOfInput(), X0, noise=torch.zeros(3, 3, dtype=torch.float64))
    with pytest.raises(ValueError, match="0 … T-1"):
        diffusion.loss(HalfOfInput(), X0, t=torch.tensor([0, 1, T]))
