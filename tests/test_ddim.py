"""DDIM (chapter 6): the step schedule, the update against hand-computed values, η = 1 as DDPM's sampler,
the marginals of the non-Markovian forward process, the Gaussian-mixture oracle, inversion, slerp, errors."""
import math

import pytest
import torch

import ddpm_lessons as dl
from ddpm_lessons import Diffusion, ddim, schedules
from ddpm_lessons.metrics import energy_distance
from ddpm_lessons.oracle import GaussianMixture

ANGLES = torch.arange(6) * (2 * math.pi / 6)
MIXTURE = GaussianMixture(weights=[0.3, 0.1, 0.2, 0.1, 0.15, 0.15],   # chapter 3's mixture
                          means=torch.stack([1.6 * ANGLES.cos(), 1.6 * ANGLES.sin()], dim=1),
                          stds=[0.2, 0.15, 0.25, 0.15, 0.2, 0.3])
GAUSSIAN = GaussianMixture([1.0], [[1.0, 0.5]], [0.3])   # one component: its exact ε is linear in x_t


def constant_model(value):
    return lambda x, t: torch.full_like(x, value)


# ---------------------------------------------------------------- the step schedule
def test_schedule_values_by_hand():
    assert ddim.step_schedule(100, 10).tolist() == [99, 88, 77, 66, 55, 44, 33, 22, 11, 0]
    # 99 · (1 − i/9)²: 99, 78.2, 59.9, 44, 30.6, 19.6, 11, 4.9, 1.2, 0
    assert ddim.step_schedule(100, 10, "quadratic").tolist() == [99, 78, 60, 44, 31, 20, 11, 5, 1, 0]
    assert ddim.step_schedule(7, 7).tolist() == [6, 5, 4, 3, 2, 1, 0]           # S = T: every step, DDPM's loop
    assert ddim.step_schedule(1000, 1).tolist() == [0]
    assert ddim.step_schedule(1, 1).tolist() == [0]


@pytest.mark.parametrize("spacing", ["uniform", "quadratic"])
@pytest.mark.parametrize("T, S", [(1000, 50), (1000, 10), (100, 100), (100, 99), (10, 2), (1000, 999), (50, 37)])
def test_schedule_convention(T, S, spacing):
    steps = ddim.step_schedule(T, S, spacing)
    assert steps.dtype == torch.long and steps.shape == (S,)
    assert steps[0] == T - 1 and steps[-1] == 0                   # the noisiest step first, the last step to x_0
    assert (steps[1:] < steps[:-1]).all()                          # strictly decreasing: each step once
    assert torch.equal(dl._checks.step_schedule(steps, T, "test"), steps)


def test_quadratic_is_denser_near_zero():
    uniform, quadratic = ddim.step_schedule(1000, 20), ddim.step_schedule(1000, 20, "quadratic")
    assert (quadratic < 100).sum() > (uniform < 100).sum()


@pytest.mark.parametrize("T, S, spacing, message", [
    (10, 11, "uniform", "S (the number of sampling steps) must be at most T = 10"),
    (10, 0, "uniform", "S (the number of sampling steps) must be a positive int"),
    (10, -3, "uniform", "must be a positive int"),
    (10, 2.0, "uniform", "must be a positive int"),
    (0, 1, "uniform", "T (the number of diffusion steps) must be a positive int"),
    (10, 5, "linear", "spacing must be one of 'uniform', 'quadratic'"),
])
def test_schedule_errors(T, S, spacing, message):
    with pytest.raises(ValueError, match=message.replace("(", r"\(").replace(")", r"\)")):
        ddim.step_schedule(T, S, spacing)


@pytest.mark.parametrize("steps, message", [
    ([9, 5, 5, 0], "strictly decreasing"),
    ([0, 5, 9], "strictly decreasing"),
    ([9, 5, 2], "must end at 0"),
    ([10, 5, 0], r"must lie in 0 … T-1 = 0 … 9"),
    ([9, 5, -1], r"must lie in 0 … T-1"),
    (torch.tensor([9.0, 0.0]), "LongTensor"),
    ([], "non-empty"),
    ("9, 0", "LongTensor"),
])
def test_bad_schedules_are_refused(steps, message):
    d = Diffusion(schedules.cosine_beta_schedule(10))
    with pytest.raises(ValueError, match=message):
        ddim.sample(d, constant_model(0.0), (2, 2), steps=steps)
    with pytest.raises(ValueError, match=message):
        ddim.invert(d, constant_model(0.0), torch.zeros(2, 2), steps=steps)


def test_a_valid_schedule_given_as_a_list_is_used():
    d = Diffusion(schedules.cosine_beta_schedule(10))
    run = ddim.sample(d, constant_model(0.0), (2, 2), steps=[9, 4, 0], return_trajectory=True)
    assert run.t == [10, 5, 1, 0]


# ---------------------------------------------------------------- the update
def test_ddim_step_against_hand_computed_values():
    d = Diffusion(torch.tensor([0.1, 0.2, 0.3], dtype=torch.float64))   # ᾱ = 0.9, 0.72, 0.504
    x_t = torch.tensor([[1.0, -2.0]])
    z = torch.randn(1, 2, generator=torch.Generator().manual_seed(3))
    a, a_prev, eps, eta = 0.504, 0.9, 0.5, 0.5
    x0 = (x_t - math.sqrt(1 - a) * eps) / math.sqrt(a)
    sigma = eta * math.sqrt((1 - a_prev) / (1 - a)) * math.sqrt(1 - a / a_prev)
    by_hand = math.sqrt(a_prev) * x0 + math.sqrt(1 - a_prev - sigma ** 2) * eps + sigma * z
    got = ddim.ddim_step(d, constant_model(eps), x_t, 2, 0, eta, generator=torch.Generator().manual_seed(3))
    assert torch.allclose(got, by_hand, atol=1e-6)
    # to x_0 (t_prev = −1, ᾱ_prev = 1): no noise, no ε direction, the step returns x̂_0
    last = ddim.ddim_step(d, constant_model(eps), x_t, 2, -1, 1.0, generator=torch.Generator().manual_seed(3))
    assert torch.allclose(last, x0, atol=1e-6)
    # η = 0 is deterministic and draws nothing
    g = torch.Generator().manual_seed(4)
    state = g.get_state()
    deterministic = ddim.ddim_step(d, constant_model(eps), x_t, 2, 1, 0.0, generator=g)
    assert torch.equal(g.get_state(), state)
    a_prev = 0.72
    assert torch.allclose(deterministic, math.sqrt(a_prev) * x0 + math.sqrt(1 - a_prev) * eps, atol=1e-6)


def test_ddim_step_per_example_steps_and_x0_target():
    d = Diffusion(schedules.cosine_beta_schedule(20))
    x_t = torch.randn(4, 3, generator=torch.Generator().manual_seed(0))
    t, t_prev = torch.tensor([19, 10, 5, 0]), torch.tensor([12, 3, -1, -1])
    together = ddim.ddim_step(d, MIXTURE_3D := constant_model(0.3), x_t, t, t_prev, 0.0)
    alone = torch.cat([ddim.ddim_step(d, MIXTURE_3D, x_t[i:i + 1], int(t[i]), int(t_prev[i]), 0.0) for i in range(4)])
    assert torch.allclose(together, alone, atol=1e-6)
    # a model predicting x_0 gives the same step as the ε model that implies the same x̂_0 (predict_eps)
    x0_model = lambda x, step: d.predict_x0(x, step, torch.full_like(x, 0.3))   # noqa: E731
    assert torch.allclose(ddim.ddim_step(d, x0_model, x_t, t, t_prev, 0.0, target="x0"), together, atol=1e-5)


@pytest.mark.parametrize("options, message", [
    (dict(eta=1.5), r"eta \(η\) must be a number in \[0, 1\]"),
    (dict(eta=-0.1), r"eta \(η\) must be a number in \[0, 1\]"),
    (dict(eta="0.5"), r"eta \(η\) must be a number in \[0, 1\]"),
    (dict(t_prev=5), r"t_prev must lie in −1 … t−1"),
    (dict(t_prev=-2), r"t_prev must lie in −1 … t−1"),
    (dict(t_prev=torch.tensor([1.0, 1.0])), "integer steps"),
    (dict(t_prev=torch.tensor([1, 1, 1])), "t_prev must have t's shape"),
    (dict(t=10), r"t must lie in 0 … T-1"),
    (dict(target="noise"), "target must be one of"),
])
def test_ddim_step_errors(options, message):
    d = Diffusion(schedules.cosine_beta_schedule(10))
    arguments = dict(t=5, t_prev=2, eta=0.5)
    target = options.pop("target", "eps")
    arguments.update(options)
    with pytest.raises(ValueError, match=message):
        ddim.ddim_step(d, constant_model(0.0), torch.zeros(2, 3), arguments["t"], arguments["t_prev"],
                       arguments["eta"], target=target)


def test_sample_errors():
    d = Diffusion(schedules.cosine_beta_schedule(10))
    with pytest.raises(ValueError, match=r"eta \(η\) must be a number in \[0, 1\]"):
        ddim.sample(d, constant_model(0.0), (2, 3), steps=5, eta=2.0)
    with pytest.raises(ValueError, match="must be at most T = 10"):
        ddim.sample(d, constant_model(0.0), (2, 3), steps=11)
    with pytest.raises(ValueError, match=r"x_T must have the shape \(2, 3\)"):
        ddim.sample(d, constant_model(0.0), (2, 3), steps=5, x_T=torch.zeros(3, 3))
    with pytest.raises(ValueError, match="shape must be a non-empty tuple"):
        ddim.sample(d, constant_model(0.0), 5, steps=5)
    with pytest.raises(ValueError, match=r"one number, or one per step of the schedule \(5 here\); got 4 values"):
        ddim.sample(d, constant_model(0.0), (2, 3), steps=5, eta=[0.0, 1.0, 0.0, 1.0])
    with pytest.raises(ValueError, match=r"each eta \(η\) must be a number in \[0, 1\], got -0.5"):
        ddim.sample(d, constant_model(0.0), (2, 3), steps=5, eta=[0.0, 1.0, 0.0, 1.0, -0.5])


def test_one_eta_per_step_is_those_steps_taken_one_by_one():
    """eta=[η_1, …, η_S]: the jump from the i-th step of the schedule uses η_i (chapter 6's experiment)."""
    d = Diffusion(schedules.cosine_beta_schedule(50))
    oracle = MIXTURE.eps_model(d)
    steps, etas = ddim.step_schedule(50, 6), [1.0, 0.0, 0.5, 0.0, 1.0, 0.25]
    x_T = torch.randn(40, 2, generator=torch.Generator().manual_seed(3))
    mixed = ddim.sample(d, oracle, x_T.shape, x_T=x_T, steps=steps, eta=torch.tensor(etas),
                        generator=torch.Generator().manual_seed(4))
    x, generator = x_T, torch.Generator().manual_seed(4)
    for t, t_prev, eta in zip(steps.tolist(), steps.tolist()[1:] + [-1], etas):
        x = ddim.ddim_step(d, oracle, x, t, t_prev, eta, generator)
    assert torch.equal(mixed, x)
    same = ddim.sample(d, oracle, x_T.shape, x_T=x_T, steps=steps, eta=[0.5] * 6, generator=torch.Generator().manual_seed(4))
    assert torch.equal(same, ddim.sample(d, oracle, x_T.shape, x_T=x_T, steps=steps, eta=0.5,
                                         generator=torch.Generator().manual_seed(4)))


# ---------------------------------------------------------------- η = 1 over every step is Algorithm 2 with β̃
@pytest.mark.parametrize("clip_x0", [False, True])
def test_eta_one_step_is_ddpm_step_with_beta_tilde(clip_x0):
    """At every t, with the same x_t and the same random numbers, DDIM (η = 1, t → t−1) = p_sample(β̃)."""
    d = Diffusion(schedules.cosine_beta_schedule(200))
    oracle = MIXTURE.eps_model(d)
    x = torch.randn(100, 2, generator=torch.Generator().manual_seed(0))
    for t in reversed(range(d.T)):
        ddpm = d.p_sample(oracle, x, t, "beta_tilde", torch.Generator().manual_seed(t), clip_x0=clip_x0)
        step = ddim.ddim_step(d, oracle, x, t, t - 1, 1.0, torch.Generator().manual_seed(t), clip_x0=clip_x0)
        assert torch.allclose(step, ddpm, atol=2e-5, rtol=1e-5), t
        x = ddpm


def test_eta_one_all_steps_equals_the_ancestral_sampler():
    """The whole chain, one shared noise sequence: x_T first, then one z per step, in both samplers."""
    d = Diffusion(schedules.linear_beta_schedule(400, 2.5e-4, 0.05))
    oracle = GAUSSIAN.eps_model(d)
    ddpm = d.sample(oracle, (200, 2), variance="beta_tilde", generator=torch.Generator().manual_seed(1))
    run = ddim.sample(d, oracle, (200, 2), steps=d.T, eta=1.0, generator=torch.Generator().manual_seed(1),
                      return_trajectory=True)
    assert torch.allclose(run.x, ddpm, atol=1e-5)
    assert run.t == list(range(d.T, -1, -1))                       # the labels of Diffusion.sample


def test_eta_zero_is_deterministic():
    d = Diffusion(schedules.cosine_beta_schedule(100))
    oracle = MIXTURE.eps_model(d)
    x_T = torch.randn(50, 2, generator=torch.Generator().manual_seed(0))
    one = ddim.sample(d, oracle, x_T.shape, x_T=x_T, steps=20, generator=torch.Generator().manual_seed(1))
    two = ddim.sample(d, oracle, x_T.shape, x_T=x_T, steps=20, generator=torch.Generator().manual_seed(2))
    assert torch.equal(one, two)
    noisy = ddim.sample(d, oracle, x_T.shape, x_T=x_T, steps=20, eta=0.5, generator=torch.Generator().manual_seed(1))
    assert not torch.allclose(one, noisy)


# ---------------------------------------------------------------- the non-Markovian forward process keeps the marginals
@pytest.mark.parametrize("eta", [0.0, 0.5, 1.0])
def test_marginals_of_the_non_markovian_forward_process(eta):
    """q_σ(x_prev | x_t, x_0) is the DDIM step with a model that knows x_0 (its ε is predict_eps(x_t, t, x_0)).
    Started from q(x_T | x_0), each state down the schedule must have q(x_t | x_0)'s mean and variance."""
    d = Diffusion(schedules.cosine_beta_schedule(1000))
    g = torch.Generator().manual_seed(7)
    n = 200_000
    x0 = torch.tensor([[0.6, -0.8]]).expand(n, 2)
    knows_x0 = lambda x, t: d.predict_eps(x, t, x0)   # noqa: E731
    schedule = ddim.step_schedule(d.T, 8).tolist()
    x = d.q_sample(x0, schedule[0], generator=g)
    for t, t_prev in zip(schedule, schedule[1:]):
        x = ddim.ddim_step(d, knows_x0, x, t, t_prev, eta, generator=g)
        alpha_bar = d.float64["alphas_cumprod"][t_prev].item()
        mean, variance = math.sqrt(alpha_bar) * x0[0], 1 - alpha_bar
        assert ((x.mean(0) - mean).abs() < 5 * math.sqrt(variance / n) + 1e-4).all(), (t_prev, x.mean(0), mean)
        assert ((x.var(0) - variance).abs() < 5 * variance * math.sqrt(2 / n) + 1e-6).all(), (t_prev, x.var(0))


# ---------------------------------------------------------------- the oracle test
def test_oracle_ddim_reproduces_the_mixture_and_naive_ddpm_does_not():
    d = Diffusion(schedules.cosine_beta_schedule(1000))
    oracle = MIXTURE.eps_model(d)
    n = 2000
    g = torch.Generator().manual_seed(6)
    baseline = torch.tensor([energy_distance(MIXTURE.sample(n, g), MIXTURE.sample(n, g)) for _ in range(10)])
    bar = baseline.max() + 3 * baseline.std()
    for S in (10, 20, 50):
        samples = ddim.sample(d, oracle, (n, 2), steps=S, generator=g)
        assert energy_distance(samples, MIXTURE.sample(n, g)) < bar, S
    for S in (10, 50):   # Algorithm 2 at the same S steps: each step removes one step's noise, β_t, not a stride's
        x = torch.randn(n, 2, generator=g)
        for t in ddim.step_schedule(d.T, S).tolist():
            x = d.p_sample(oracle, x, t, generator=g)
        assert energy_distance(x, MIXTURE.sample(n, g)) > 5 * bar, S


# ---------------------------------------------------------------- inversion
def test_inversion_is_exact_when_the_noise_prediction_does_not_depend_on_x():
    d = Diffusion(schedules.cosine_beta_schedule(100))
    model = lambda x, t: 0.1 * torch.ones_like(x) * (t[:, None] % 7 - 3)    # noqa: E731  (depends on t only)
    x0 = torch.rand(8, 2, generator=torch.Generator().manual_seed(0), dtype=torch.float64) * 2 - 1
    for steps in (10, 37):   # in float64: the algebra only (float32 rounding grows like 1/sqrt(ᾱ) at the last step)
        run = ddim.invert(d, model, x0, steps=steps, return_trajectory=True)
        assert run.t[0] == 0 and run.t[-1] == d.T and len(run.t) == steps + 1 and run.x.dtype == torch.float64
        back = ddim.sample(d, model, x0.shape, x_T=run.x, steps=steps)
        assert torch.allclose(back, x0, atol=1e-9)


def test_inversion_of_the_mixture_gives_gaussian_noise_and_reconstructs():
    d = Diffusion(schedules.cosine_beta_schedule(1000))
    oracle = MIXTURE.eps_model(d)
    g = torch.Generator().manual_seed(0)
    x0 = MIXTURE.sample(1000, g)
    errors = []
    for steps in (10, 50):
        x_T = ddim.invert(d, oracle, x0, steps=steps)
        errors.append((ddim.sample(d, oracle, x0.shape, x_T=x_T, steps=steps) - x0).abs().mean().item())
    assert errors[1] < errors[0] < 0.2
    baseline = max(abs(energy_distance(torch.randn(1000, 2, generator=g), torch.randn(1000, 2, generator=g)))
                   for _ in range(5))
    assert energy_distance(x_T, torch.randn(1000, 2, generator=g)) < 3 * baseline + 0.005


# ---------------------------------------------------------------- slerp
def test_slerp():
    g = torch.Generator().manual_seed(0)
    a, b = torch.randn(1, 28, 28, generator=g), torch.randn(1, 28, 28, generator=g)
    assert torch.allclose(ddim.slerp(a, b, 0.0), a, atol=1e-6) and torch.allclose(ddim.slerp(a, b, 1.0), b, atol=1e-6)
    path = ddim.slerp(a, b, torch.linspace(0, 1, 5))
    assert path.shape == (5, 1, 28, 28)
    # on the great circle through a and b: for |a| = |b| every point has that norm
    b_scaled = b * a.norm() / b.norm()
    assert torch.allclose(ddim.slerp(a, b_scaled, [0.25, 0.5]).flatten(1).norm(dim=1), a.norm().expand(2), rtol=1e-5)
    # the straight line's midpoint is about 1/sqrt(2) as long (nearly orthogonal noise), slerp's is not
    assert (0.5 * (a + b)).norm() < 0.8 * ddim.slerp(a, b, 0.5).norm()
    # the angle is split in proportion to the weight
    mid = ddim.slerp(a, b_scaled, 0.3).flatten()
    angle = lambda u, v: torch.arccos(u @ v / (u.norm() * v.norm()))   # noqa: E731
    assert math.isclose(angle(a.flatten(), mid).item(), 0.3 * angle(a.flatten(), b.flatten()).item(), rel_tol=1e-4)
    assert torch.allclose(ddim.slerp(a, a.clone(), 0.5), a)        # parallel: the straight line


def test_slerp_errors():
    a = torch.zeros(3, 4)
    with pytest.raises(ValueError, match=r"weight must be a number in \[0, 1\]"):
        ddim.slerp(a, a, 1.5)
    with pytest.raises(ValueError, match=r"every weight must be a number in \[0, 1\]"):
        ddim.slerp(a, a, [0.5, -1.0])
    with pytest.raises(ValueError, match="b must have the shape of a"):
        ddim.slerp(a, torch.zeros(4, 3), 0.5)
