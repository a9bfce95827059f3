"""Noise schedules (chapter 2): shapes, ranges, monotone ᾱ_t, the cosine schedule's endpoints."""
import math

import pytest
import torch

from ddpm_lessons import schedules
from ddpm_lessons.schedules import (SCHEDULES, alphas_cumprod, cosine_beta_schedule, linear_beta_schedule,
                                    log_snr, quadratic_beta_schedule, sigmoid_beta_schedule)


@pytest.mark.parametrize("name", sorted(SCHEDULES))
@pytest.mark.parametrize("T", [1, 10, 1000])
def test_shape_dtype_and_range(name, T):
    betas = SCHEDULES[name](T)
    assert betas.shape == (T,) and betas.dtype == torch.float64
    assert (betas > 0).all() and (betas < 1).all()


@pytest.mark.parametrize("name", sorted(SCHEDULES))
def test_alphas_cumprod_decreases_strictly_and_log_snr_too(name):
    betas = SCHEDULES[name](1000)
    a = alphas_cumprod(betas)
    assert (a[1:] < a[:-1]).all() and a[0] < 1 and a[-1] > 0
    snr = log_snr(betas)
    assert (snr[1:] < snr[:-1]).all()
    assert torch.allclose(snr, torch.log(a / (1 - a)))


def test_linear_schedule_has_the_papers_endpoints():
    betas = linear_beta_schedule(1000)
    assert betas[0].item() == pytest.approx(1e-4) and betas[-1].item() == pytest.approx(0.02)
    assert torch.allclose(betas.diff(), torch.full((999,), (0.02 - 1e-4) / 999, dtype=torch.float64))
    # ᾱ_T ≈ exp(-Σβ) ≈ 4e-5: x_T is (almost) pure noise
    assert alphas_cumprod(betas)[-1].item() == pytest.approx(4.04e-5, rel=0.02)


def test_rescaled_linear_schedule_is_the_papers_stretched_to_T_steps():
    from ddpm_lessons.schedules import rescaled_linear_beta_schedule
    assert torch.equal(rescaled_linear_beta_schedule(1000), linear_beta_schedule(1000))
    betas = rescaled_linear_beta_schedule(100)
    assert betas[0].item() == pytest.approx(1e-3) and betas[-1].item() == pytest.approx(0.2)
    assert alphas_cumprod(betas)[-1].item() == pytest.approx(2.04e-5, rel=0.01)   # as noisy as the paper's end
    short = rescaled_linear_beta_schedule(10)                      # 0.02 · 100 = 2 > 1: clipped
    assert short.max().item() == pytest.approx(0.999) and (short > 0).all()


def test_quadratic_and_sigmoid_endpoints():
    for schedule in (quadratic_beta_schedule, sigmoid_beta_schedule):
        betas = schedule(500, 1e-4, 0.02)
        assert (betas.diff() > 0).all()
        assert 1e-4 <= betas[0].item() < 2e-4 and 0.0199 < betas[-1].item() <= 0.02
    assert quadratic_beta_schedule(500)[0].item() == pytest.approx(1e-4)
    assert quadratic_beta_schedule(500)[-1].item() == pytest.approx(0.02)


def test_cosine_schedule_matches_nichol_and_dhariwal():
    T, s = 1000, 0.008
    betas = cosine_beta_schedule(T, s)
    a = alphas_cumprod(betas)

    def f(t):
        return math.cos((t / T + s) / (1 + s) * math.pi / 2) ** 2

    for t in (0, 1, 250, 500, 750, 998):
        assert a[t].item() == pytest.approx(f(t + 1) / f(0), rel=1e-9, abs=1e-12)
    assert a[T // 2 - 1].item() == pytest.approx(0.5, abs=0.02)   # halfway: half signal, half noise
    assert betas[-1].item() == pytest.approx(0.999)                  # clipped at max_beta
    assert betas[0].item() == pytest.approx(1 - f(1) / f(0))


@pytest.mark.parametrize("call, match", [
    (lambda: linear_beta_schedule(0), "positive int"),
    (lambda: linear_beta_schedule(10.0), "positive int"),
    (lambda: cosine_beta_schedule(True), "positive int"),
    (lambda: linear_beta_schedule(10, 0.0, 0.02), r"\(0, 1\)"),
    (lambda: quadratic_beta_schedule(10, 1e-4, 1.5), r"\(0, 1\)"),
    (lambda: sigmoid_beta_schedule(10, -1, 0.02), r"\(0, 1\)"),
    (lambda: cosine_beta_schedule(10, max_beta=1.0), r"\(0, 1\)"),
    (lambda: cosine_beta_schedule(10, s=-0.1), ">= 0"),
])
def test_bad_input(call, match):
    with pytest.raises(ValueError, match=match):
        call()


def test_module_lists_every_schedule():
    assert set(SCHEDULES) == {"linear", "rescaled_linear", "cosine", "quadratic", "sigmoid"}
    assert schedules.SCHEDULES["cosine"] is cosine_beta_schedule
