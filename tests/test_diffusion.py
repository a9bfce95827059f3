"""The Diffusion class (chapters 2-4): buffers, q_sample, q_posterior, predict_x0, reverse step, sampler, loss."""
import math

import pytest
import torch
from torch import nn

from ddpm_lessons import Diffusion, schedules

pytestmark = pytest.mark.filterwarnings("ignore::ddpm_lessons.diffusion.ScheduleWarning")  # short schedules on purpose

BETAS = torch.tensor([0.1, 0.2, 0.3], dtype=torch.float64)


@pytest.fixture(autouse=True)
def _seed():
    torch.manual_seed(0)  # the tolerances below are for float32 rounding; keep the inputs fixed


@pytest.fixture
def d():
    return Diffusion(schedules.linear_beta_schedule(1000))


def constant_model(value):
    def model(x, t):
        return torch.full_like(x, value)
    return model


class Linear2d(nn.Module):
    """A tiny model with parameters (device and dtype are read from them)."""

    def __init__(self):
        super().__init__()
        self.layer = nn.Linear(2, 2)

    def forward(self, x, t):
        return self.layer(x)


# ---------------------------------------------------------------- buffers
def test_buffers_follow_the_paper():
    d = Diffusion(BETAS)
    assert d.T == 3
    alphas = 1 - BETAS
    acp = torch.cumprod(alphas, 0)
    acp_prev = torch.tensor([1.0, acp[0], acp[1]], dtype=torch.float64)
    expected = {
        "betas": BETAS, "alphas": alphas, "alphas_cumprod": acp, "alphas_cumprod_prev": acp_prev,
        "sqrt_alphas_cumprod": acp.sqrt(), "sqrt_one_minus_alphas_cumprod": (1 - acp).sqrt(),
        "posterior_variance": BETAS * (1 - acp_prev) / (1 - acp),
        "posterior_mean_coef1": BETAS * acp_prev.sqrt() / (1 - acp),
        "posterior_mean_coef2": (1 - acp_prev) * alphas.sqrt() / (1 - acp),
    }
    for name, value in expected.items():
        buffer = getattr(d, name)
        assert buffer.dtype == torch.float32, name
        assert torch.allclose(buffer.double(), value, atol=1e-7), name
    assert d.posterior_variance[0] == 0  # no uncertainty left about x_0 at the paper's t = 1
    for name, value in expected.items():  # the float64 schedule, from which the float32 copies come
        assert d.float64[name].dtype == torch.float64 and torch.allclose(d.float64[name], value, rtol=1e-15), name
    assert d.alphas_cumprod[1].item() == pytest.approx(0.9 * 0.8)


def test_buffers_are_computed_in_float64():
    # a product of 1000 float32 factors drifts; computed in float64, ᾱ_T agrees to float32 precision
    betas = schedules.linear_beta_schedule(1000)
    d = Diffusion(betas.float())
    exact = torch.cumprod(1 - betas.float().double(), 0)
    assert torch.allclose(d.alphas_cumprod.double(), exact, rtol=1e-6, atol=0)


def test_reading_does_not_move_the_schedule(d):
    # the methods work on data on any device without moving d's tensors as a side effect
    before = {name: getattr(d, name) for name in d.float64}
    d.q_sample(torch.randn(2, 3), 5)
    assert all(getattr(d, name) is value for name, value in before.items())


def test_t_is_checked_once_per_call(d, monkeypatch):
    from ddpm_lessons import _checks
    calls = []
    original = _checks.timesteps

    def counting(*args, **kwargs):
        calls.append(args[0])
        return original(*args, **kwargs)

    monkeypatch.setattr(_checks, "timesteps", counting)
    x = torch.randn(4, 2)
    d.p_sample(lambda x, t: 0.1 * x, x, torch.tensor([0, 1, 2, 3]), clip_x0=True)  # p_mean, predict_x0, q_posterior inside
    checked = [t for t in calls if torch.is_tensor(t) and not hasattr(t, "_checked_for")]
    assert len(checked) == 1  # the range check ran for the caller's t only; inner calls reuse it


def test_repr_and_to(d):
    text = repr(d)
    assert "T=1000" in text and "0.0001" in text and "0.02" in text and "cpu" in text
    assert d.to("cpu") is d and d.device.type == "cpu"


# ---------------------------------------------------------------- q_sample (eq. 4)
def test_q_sample_with_given_noise_is_the_closed_form(d):
    x0, noise = torch.randn(5, 3, 4, 4), torch.randn(5, 3, 4, 4)
    t = torch.tensor([0, 10, 500, 998, 999])
    a = d.alphas_cumprod[t].view(-1, 1, 1, 1)
    # the buffers are float64 values rounded once to float32; recomputing them in float32 differs by ~1e-7
    assert torch.allclose(d.q_sample(x0, t, noise), a.sqrt() * x0 + (1 - a).sqrt() * noise, atol=1e-5)
    assert torch.allclose(d.q_sample(x0, 7, noise), d.q_sample(x0, torch.full((5,), 7), noise))


def test_q_sample_statistics(d):
    # mean sqrt(ᾱ_t) x0 and variance 1 - ᾱ_t; tolerances from the sample size (6 standard errors)
    n = 200_000
    for step in (0, 100, 999):
        x0 = torch.full((n, 1), 0.7)
        x_t = d.q_sample(x0, step, generator=torch.Generator().manual_seed(step))
        a = d.alphas_cumprod[step].item()
        var = 1 - a
        assert abs(x_t.mean().item() - math.sqrt(a) * 0.7) < 6 * math.sqrt(var / n)
        assert abs(x_t.var().item() - var) < 6 * var * math.sqrt(2 / n)


def test_q_sample_matches_iterating_single_steps():
    # x_t = sqrt(1 - β_t) x_{t-1} + sqrt(β_t) ε, t times, has the closed-form statistics
    d = Diffusion(schedules.linear_beta_schedule(50, 1e-3, 0.1))
    g = torch.Generator().manual_seed(0)
    n, x0 = 100_000, 1.5
    x = torch.full((n,), x0, dtype=torch.float64)
    for t in range(30):
        x = (1 - d.betas[t].double()).sqrt() * x + d.betas[t].double().sqrt() * torch.randn(n, generator=g, dtype=torch.float64)
    a = d.alphas_cumprod[29].item()
    assert abs(x.mean().item() - math.sqrt(a) * x0) < 6 * math.sqrt((1 - a) / n)
    assert abs(x.var().item() - (1 - a)) < 6 * (1 - a) * math.sqrt(2 / n)


def test_q_sample_generator_is_reproducible(d):
    x0 = torch.randn(4, 2)
    one = d.q_sample(x0, 3, generator=torch.Generator().manual_seed(1))
    two = d.q_sample(x0, 3, generator=torch.Generator().manual_seed(1))
    assert torch.equal(one, two)


# ---------------------------------------------------------------- q_posterior (eqs. 6-7)
def test_q_posterior_is_exact_gaussian_conditioning():
    d = Diffusion(schedules.cosine_beta_schedule(100))
    t = torch.tensor([0, 1, 17, 50, 99])
    x0 = torch.tensor([0.3, -1.0, 0.8, 0.0, 1.0]).unsqueeze(1)
    x_t = torch.tensor([0.25, -0.5, 1.2, 2.0, -1.0]).unsqueeze(1)
    mean, var = d.q_posterior(x0, x_t, t)
    acp = torch.cumprod(1 - schedules.cosine_beta_schedule(100), 0)
    for i, step in enumerate(t.tolist()):
        a_prev = acp[step - 1].item() if step > 0 else 1.0
        a, alpha = acp[step].item(), 1 - schedules.cosine_beta_schedule(100)[step].item()
        # joint of (x_{t-1}, x_t) given x0: means, variances, covariance
        m1, m2 = math.sqrt(a_prev) * x0[i].item(), math.sqrt(a) * x0[i].item()
        v11, v22, c12 = 1 - a_prev, 1 - a, math.sqrt(alpha) * (1 - a_prev)
        assert mean[i].item() == pytest.approx(m1 + c12 / v22 * (x_t[i].item() - m2), abs=1e-5)
        assert var[i].item() == pytest.approx(v11 - c12 ** 2 / v22, abs=1e-6)


def test_q_posterior_variance_has_x_t_shape(d):
    x = torch.randn(3, 1, 5, 5)
    mean, var = d.q_posterior(x, x, torch.tensor([1, 2, 3]))
    assert mean.shape == var.shape == x.shape


def test_predict_x0_inverts_q_sample(d):
    x0, noise = torch.randn(6, 2, 8), torch.randn(6, 2, 8)
    t = torch.tensor([0, 1, 200, 500, 900, 999])
    x_t = d.q_sample(x0, t, noise)
    # the inversion divides by sqrt(ᾱ_t), which is 6e-3 at t = 999: float32 error grows to ~1e-4
    assert torch.allclose(d.predict_x0(x_t, t, noise), x0, atol=5e-4)
    assert torch.allclose(d.predict_x0(x_t[:4], t[:4], noise[:4]), x0[:4], atol=1e-5)
    assert torch.allclose(d.predict_eps(x_t, t, x0), noise, atol=1e-4)


def test_mean_in_noise_form_equals_posterior_mean(d):
    # eq. 11: 1/sqrt(α_t) (x_t − β_t/sqrt(1−ᾱ_t) ε) = μ̃_t(x_t, x_0(x_t, ε))
    x0, eps = torch.randn(4, 3), torch.randn(4, 3)
    t = torch.tensor([1, 10, 300, 999])
    x_t = d.q_sample(x0, t, eps)
    mean = d.p_mean(lambda x, s: eps, x_t, t)
    assert torch.allclose(mean, d.q_posterior(x0, x_t, t)[0], atol=1e-4)
    assert torch.allclose(d.p_mean(lambda x, s: x0, x_t, t, target="x0"), mean, atol=1e-4)


# ---------------------------------------------------------------- reverse step (Algorithm 2, line 4)
@pytest.mark.parametrize("variance, sigma2", [("beta", 0.2), ("beta_tilde", 0.2 * (1 - 0.9) / (1 - 0.72))])
def test_p_sample_hand_computed(variance, sigma2):
    d = Diffusion(BETAS)
    x_t = torch.tensor([[1.0, -2.0]])
    z = torch.randn(1, 2, generator=torch.Generator().manual_seed(3))
    out = d.p_sample(constant_model(0.5), x_t, torch.tensor([1]), variance, torch.Generator().manual_seed(3))
    # step index 1: α = 0.8, ᾱ = 0.72, β = 0.2
    mean = (x_t - 0.2 / math.sqrt(1 - 0.72) * 0.5) / math.sqrt(0.8)
    assert torch.allclose(out, mean + math.sqrt(sigma2) * z, atol=1e-6)


def test_p_sample_adds_no_noise_at_t0():
    d = Diffusion(BETAS)
    x_t = torch.randn(4, 2)
    out = d.p_sample(constant_model(0.1), x_t, 0)
    assert torch.allclose(out, (x_t - 0.1 / math.sqrt(0.1) * 0.1) / math.sqrt(0.9), atol=1e-6)
    assert torch.equal(out, d.p_sample(constant_model(0.1), x_t, 0))


# ---------------------------------------------------------------- sampler (Algorithm 2)
def test_sample_is_reproducible_and_returns_the_trajectory():
    d = Diffusion(schedules.cosine_beta_schedule(20))
    model = lambda x, t: 0.1 * x  # noqa: E731
    run = d.sample(model, (3, 2), return_trajectory=True, generator=torch.Generator().manual_seed(0))
    x, trajectory = run.x, run.xs
    again = d.sample(model, (3, 2), generator=torch.Generator().manual_seed(0))
    other = d.sample(model, (3, 2), generator=torch.Generator().manual_seed(1))
    assert torch.equal(x, again) and not torch.equal(x, other)
    assert len(trajectory) == d.T + 1 and torch.equal(trajectory[-1], x)
    assert run.t == list(range(d.T, -1, -1))  # labelled with the paper's subscripts: x_T … x_0
    assert all(s.shape == (3, 2) and s.device.type == "cpu" for s in trajectory)
    # x_T is the generator's first draw
    assert torch.equal(trajectory[0], torch.randn(3, 2, generator=torch.Generator().manual_seed(0)))


@pytest.mark.parametrize("variance", ["beta", "beta_tilde"])
def test_sample_equals_a_loop_of_p_sample(variance):
    d = Diffusion(schedules.linear_beta_schedule(10, 0.01, 0.3))
    model = lambda x, t: torch.tanh(x) * (t[:, None] + 1) / 10  # noqa: E731
    g = torch.Generator().manual_seed(5)
    x = torch.randn(4, 2, generator=g)
    for step in reversed(range(d.T)):
        x = d.p_sample(model, x, torch.full((4,), step), variance, g)
    fast = d.sample(model, (4, 2), generator=torch.Generator().manual_seed(5), variance=variance)
    assert torch.equal(fast, x)  # sample() is built on p_sample: the same numbers, not just close ones


def test_sample_uses_the_models_dtype_and_shows_progress(capsys):
    d = Diffusion(schedules.cosine_beta_schedule(5))
    model = Linear2d().double()
    x = d.sample(model, (4, 2), progress=True)
    assert x.dtype == torch.float64 and x.shape == (4, 2)
    printed = capsys.readouterr().out  # on stdout, so a notebook keeps it in order with the prints
    assert "sampling" in printed and "6/6" in printed


def test_sample_with_x0_target_and_clipping():
    d = Diffusion(schedules.cosine_beta_schedule(10))
    x = d.sample(constant_model(3.0), (8, 2), target="x0", clip_x0=True, generator=torch.Generator().manual_seed(0))
    # the model claims x0 = 3 everywhere; clipped to the data range, the last step lands on 1
    assert torch.allclose(x, torch.ones(8, 2), atol=1e-4)


# ---------------------------------------------------------------- loss (Algorithm 1)
def test_loss_with_fixed_t_and_noise_is_exact(d):
    x0, noise = torch.randn(4, 3), torch.randn(4, 3)
    t = torch.tensor([0, 5, 50, 999])
    model = lambda x, s: 0.5 * x  # noqa: E731
    x_t = d.q_sample(x0, t, noise)
    assert d.loss(model, x0, t=t, noise=noise).item() == pytest.approx(((0.5 * x_t - noise) ** 2).mean().item(), rel=1e-6)
    assert d.loss(model, x0, "l1", t=t, noise=noise).item() == pytest.approx((0.5 * x_t - noise).abs().mean().item(), rel=1e-6)
    r = (0.5 * x_t - noise).abs()
    huber = torch.where(r < 1, 0.5 * r ** 2, r - 0.5).mean().item()
    assert d.loss(model, x0, "huber", t=t, noise=noise).item() == pytest.approx(huber, rel=1e-6)
    assert d.loss(model, x0, target="x0", t=t, noise=noise).item() == pytest.approx(((0.5 * x_t - x0) ** 2).mean().item(), rel=1e-6)


def test_loss_draws_t_uniformly_and_trains(d):
    model = Linear2d()
    x0 = torch.randn(64, 2)
    one = d.loss(model, x0, generator=torch.Generator().manual_seed(0))
    assert torch.equal(one, d.loss(model, x0, generator=torch.Generator().manual_seed(0)))
    one.backward()
    assert model.layer.weight.grad is not None and model.layer.weight.grad.abs().sum() > 0
    seen = []
    d.loss(lambda x, t: seen.append(t) or torch.zeros_like(x), torch.zeros(20_000, 1))
    t = seen[0]
    assert t.dtype == torch.long and t.min() >= 0 and t.max() <= 999
    assert abs(t.double().mean().item() - 499.5) < 6 * 288.7 / math.sqrt(20_000)


# ---------------------------------------------------------------- bad input
@pytest.mark.parametrize("betas, match", [
    (torch.full((2, 3), 0.1), "1-D"),
    (torch.tensor([]), "1-D"),
    (torch.tensor([0.1, 0.0]), r"\(0, 1\)"),
    (torch.tensor([0.1, 1.0]), r"\(0, 1\)"),
    (torch.tensor([-0.1, 0.2]), r"\(0, 1\)"),
    (torch.tensor([0.1, float("nan")]), r"\(0, 1\)"),
    (torch.tensor([0, 1]), "floating-point"),
    ([[0.1, 0.2]], "1-D"),
])
def test_bad_betas(betas, match):
    with pytest.raises(ValueError, match=match):
        Diffusion(betas)


@pytest.mark.parametrize("t, match", [
    (torch.tensor([0, 1000]), "0 … 999"),
    (torch.tensor([-1, 3]), "0 … 999"),
    (1000, "0 … 999"),
    (torch.tensor([1.0, 2.0]), "integer"),
    (2.0, "integer"),
    (torch.tensor([1, 2, 3]), r"\(2,\)"),
    (torch.tensor([[1, 2]]), r"\(2,\)"),
])
def test_bad_t(d, t, match):
    x = torch.randn(2, 3)
    for call in (lambda: d.q_sample(x, t), lambda: d.q_posterior(x, x, t), lambda: d.predict_x0(x, t, x),
                 lambda: d.p_sample(constant_model(0.0), x, t), lambda: d.loss(constant_model(0.0), x, t=t)):
        with pytest.raises(ValueError, match=match):
            call()


def test_bad_shapes(d):
    x, t = torch.randn(2, 3), torch.tensor([1, 2])
    with pytest.raises(ValueError, match=r"x0 must have the shape of x_t, \(2, 4\)"):
        d.q_posterior(x, torch.randn(2, 4), t)
    with pytest.raises(ValueError, match="noise must have the shape of x0"):
        d.q_sample(x, t, torch.randn(3, 3))
    with pytest.raises(ValueError, match="eps must have the shape of x_t"):
        d.predict_x0(x, t, torch.randn(2))
    with pytest.raises(ValueError, match="floating-point"):
        d.q_sample(torch.ones(2, 3, dtype=torch.long), t)
    with pytest.raises(ValueError, match="shape"):
        d.sample(constant_model(0.0), (0, 2))


def test_model_with_wrong_output_shape(d):
    bad = lambda x, t: x[:, :1]  # noqa: E731
    x, t = torch.randn(2, 3), torch.tensor([1, 2])
    for call in (lambda: d.p_sample(bad, x, t), lambda: d.sample(bad, (2, 3)), lambda: d.loss(bad, x),
                 lambda: d.p_sample(lambda x, t: None, x, t)):
        with pytest.raises(ValueError, match=r"model\(x_t, t\) must return a tensor of x_t's shape \(2, 3\)"):
            call()


def test_bad_choices(d):
    x = torch.randn(2, 3)
    with pytest.raises(ValueError, match="loss_type must be one of 'l2', 'l1', 'huber'"):
        d.loss(constant_model(0.0), x, loss_type="mse")
    with pytest.raises(ValueError, match="target must be one of 'eps', 'x0'"):
        d.loss(constant_model(0.0), x, target="v")
    with pytest.raises(ValueError, match="variance must be one of 'beta', 'beta_tilde'"):
        d.p_sample(constant_model(0.0), x, 1, variance="small")
    with pytest.raises(ValueError, match="variance must be one of"):
        d.sample(constant_model(0.0), (2, 3), variance="learned")


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_cuda():
    d = Diffusion(schedules.linear_beta_schedule(50, 1e-3, 0.2))
    model = Linear2d().cuda()
    x = d.sample(model, (8, 2), generator=torch.Generator().manual_seed(0))
    assert x.device.type == "cuda" and d.device.type == "cpu"  # no hidden move of the schedule
    assert d.loss(model, torch.randn(8, 2)).device.type == "cuda"
    x0 = torch.randn(4, 2, device="cuda")
    assert d.q_sample(x0, torch.tensor([0, 1, 2, 3])).device.type == "cuda"


def test_float64_data_use_the_float64_schedule():
    """Data in float64 keep their precision: the coefficients come from d.float64, not the float32 copies."""
    d = Diffusion(schedules.cosine_beta_schedule(1000))
    x_t = torch.randn(4, 3, dtype=torch.float64)
    eps = torch.randn(4, 3, dtype=torch.float64)
    t = torch.tensor([0, 10, 500, 999])
    a = d.float64["alphas_cumprod"][t][:, None]
    assert torch.allclose(d.predict_x0(x_t, t, eps), (x_t - (1 - a).sqrt() * eps) / a.sqrt(), rtol=1e-12, atol=0)
    assert d.predict_x0(x_t.float(), t, eps.float()).dtype == torch.float32


def test_schedule_tables_are_copied_to_another_device_once_and_again_when_changed():
    """A GPU must not copy ᾱ_t from the CPU at every step (it waits, and a CUDA graph cannot record it);
    the meta device stands in for the GPU here."""
    d = Diffusion(schedules.cosine_beta_schedule(10))
    x = torch.empty(2, 3, device="meta")
    first = d._on_device("alphas_cumprod", d.alphas_cumprod, x.device)
    assert first.device.type == "meta" and d._on_device("alphas_cumprod", d.alphas_cumprod, x.device) is first
    d.alphas_cumprod.mul_(1.0)   # changed in place: a new copy
    assert d._on_device("alphas_cumprod", d.alphas_cumprod, x.device) is not first
    assert d._on_device("betas", d.betas, d.betas.device) is d.betas   # on its own device: no copy
    assert d._at("alphas_cumprod", torch.tensor([0, 9], device="meta"), x).shape == (2, 1)
