"""Chapter 2 checker: the reference passes, typical wrong answers are caught with a pointed message."""
import pytest
import torch

from ddpm_lessons import exercises


def reference(x0, t, noise, alphas_cumprod):
    a = alphas_cumprod[t].view(-1, *[1] * (x0.ndim - 1))
    return a.sqrt() * x0 + (1 - a).sqrt() * noise


def no_sqrt(x0, t, noise, alphas_cumprod):
    a = alphas_cumprod[t].view(-1, *[1] * (x0.ndim - 1))
    return a * x0 + (1 - a) * noise


def variance_for_noise(x0, t, noise, alphas_cumprod):
    a = alphas_cumprod[t].view(-1, *[1] * (x0.ndim - 1))
    return a.sqrt() * x0 + (1 - a) * noise


def no_sqrt_for_signal(x0, t, noise, alphas_cumprod):
    a = alphas_cumprod[t].view(-1, *[1] * (x0.ndim - 1))
    return a * x0 + (1 - a).sqrt() * noise


def swapped(x0, t, noise, alphas_cumprod):
    a = alphas_cumprod[t].view(-1, *[1] * (x0.ndim - 1))
    return (1 - a).sqrt() * x0 + a.sqrt() * noise


def one_minus_sqrt(x0, t, noise, alphas_cumprod):
    a = alphas_cumprod[t].view(-1, *[1] * (x0.ndim - 1))
    return a.sqrt() * x0 + (1 - a.sqrt()) * noise


def off_by_one(x0, t, noise, alphas_cumprod):
    return reference(x0, t - 1, noise, alphas_cumprod)


def first_t_only(x0, t, noise, alphas_cumprod):
    a = alphas_cumprod[t[0]]
    return a.sqrt() * x0 + (1 - a).sqrt() * noise


def points_only(x0, t, noise, alphas_cumprod):
    a = alphas_cumprod[t][:, None]          # broadcasts for (B, D) but not for images
    return a.sqrt() * x0 + (1 - a).sqrt() * noise


def ignores_noise(x0, t, noise, alphas_cumprod):
    return reference(x0, t, torch.randn_like(x0), alphas_cumprod)


def returns_numpy(x0, t, noise, alphas_cumprod):
    return reference(x0, t, noise, alphas_cumprod).numpy()


def test_reference_and_module_pass(capsys):
    assert exercises.check_q_sample(reference)
    assert "✓ check_q_sample: correct" in capsys.readouterr().out
    from ddpm_lessons import Diffusion, schedules
    d = Diffusion(schedules.linear_beta_schedule(1000))
    assert exercises.check_q_sample(lambda x0, t, noise, a: d.q_sample(x0, t, noise))


@pytest.mark.parametrize("wrong, message", [
    (no_sqrt, "forgot the square roots"),
    (variance_for_noise, "not by the variance 1 − ᾱ_t"),
    (no_sqrt_for_signal, "x0 is scaled by sqrt(ᾱ_t), not by ᾱ_t"),
    (swapped, "roles of x0 and ε are swapped"),
    (one_minus_sqrt, "not by 1 − sqrt(ᾱ_t)"),
    (off_by_one, "step t − 1"),
    (first_t_only, "its own step t[i]"),
    (points_only, "with a batch of images (x0 of shape (4, 1, 6, 6)) raised RuntimeError"),
    (points_only, "Hint: reshape ᾱ_t (one value per example) to (batch, 1, …, 1)"),
    (ignores_noise, "example"),
    (returns_numpy, "expected a torch.Tensor"),
])
def test_wrong_answers_are_caught(wrong, message, capsys):
    assert not exercises.check_q_sample(wrong)
    out = capsys.readouterr().out
    assert "✗ check_q_sample: not yet." in out
    assert message in out, out


def test_a_stub_gets_a_friendly_nothing_yet(verdict):
    """The exercise cell on the page holds a stub that raises NotImplementedError: the checker says
    there is nothing to check yet (what the reader sees before writing any code), not a traceback."""
    def stub(*args):
        raise NotImplementedError

    for checker in (exercises.check_q_sample, exercises.check_corrupt, exercises.check_loss, exercises.check_ema_update):
        ok, out = verdict(checker, stub)
        assert not ok and "nothing to check yet" in out and "Traceback" not in out, out
