"""Chapter-6 checkers: the reference passes, typical wrong answers are caught with the right words, a stub gets
"nothing to check yet"."""
import pytest
import torch

import ddpm_lessons as dl
from ddpm_lessons import exercises


# ---------------------------------------------------------------- the DDIM update
def ddim_step(x_t, eps, a, ap, eta, z, *, no_eta=False, eta_on_variance=False, swap_first=False, swap_second=False,
              sigma_no_sqrt=False, direction_no_sqrt=False, direction_no_sigma=False, x0_weight_no_sqrt=False,
              x0_with_prev=False, no_noise=False):
    if swap_second:
        drop = 1 - ap / a
    else:
        drop = 1 - a / ap
    ratio = (1 - a) / (1 - ap) if swap_first else (1 - ap) / (1 - a)
    factor = 1.0 if no_eta else (eta ** 0.5 if eta_on_variance else eta)
    sigma = factor * (ratio * drop if sigma_no_sqrt else ratio.sqrt() * drop.sqrt())
    a_x0 = ap if x0_with_prev else a
    x0 = (x_t - (1 - a_x0).sqrt() * eps) / a_x0.sqrt()
    if direction_no_sigma:
        direction = (1 - ap).sqrt()
    elif direction_no_sqrt:
        direction = 1 - ap - sigma ** 2
    else:
        direction = (1 - ap - sigma ** 2).sqrt()
    out = (ap if x0_weight_no_sqrt else ap.sqrt()) * x0 + direction * eps
    return out if no_noise else out + sigma * z


# ---------------------------------------------------------------- the step schedule
def uniform(T, S):
    return (torch.linspace(1, 0, S, dtype=torch.float64) * (T - 1)).round().long()


# ---------------------------------------------------------------- inversion
def invert(model, x0, a, steps, *, model_at_lower=False, first_alpha=None, swap=False, no_sqrt=False, down=False):
    x = x0
    upward = steps.tolist() if down else steps.flip(0).tolist()
    for lower, upper in zip([-1] + upward[:-1], upward):
        t = max(lower, 0) if model_at_lower else upper
        eps = model(x, torch.full((len(x),), t))
        a_low = a[lower] if lower >= 0 else (torch.tensor(1.0) if first_alpha is None else a[first_alpha])
        a_up = a[upper]
        if swap:
            a_low, a_up = a_up, a_low
        root = (lambda v: v) if no_sqrt else torch.sqrt
        x = root(a_up) * (x - root(1 - a_low) * eps) / root(a_low) + root(1 - a_up) * eps
    return x


def test_inversion_module_passes(verdict):
    """dl.ddim.invert on a Diffusion with the checker's ᾱ (its betas recovered from ᾱ)."""
    def module(model, x0, a, steps):
        a = a.double()
        d = dl.Diffusion(1 - a / torch.cat([a.new_ones(1), a[:-1]]))
        return dl.ddim.invert(d, model, x0, steps=steps)
    ok, out = verdict(exercises.check_ddim_inversion, module)
    assert ok, out


# ---------------------------------------------------------------- respacing
def respaced(a, steps, *, descending=False, original=False, inverted=False, wrap=False):
    kept = a[steps.flip(0)]
    before = torch.cat([kept.new_ones(1), kept[:-1]])
    if wrap:
        before = kept[torch.arange(len(kept)) - 1]
    betas = 1 - before / kept if inverted else 1 - kept / before
    if original:
        betas = (1 - a / torch.cat([a.new_ones(1), a[:-1]]))[steps.flip(0)]
    return betas.flip(0) if descending else betas


def test_respaced_chain_is_ddim_with_eta_one():
    """The claim of the exercise: Algorithm 2 on the respaced betas (σ² = β̃') is DDIM with η = 1 on the schedule.
    (One Gaussian, whose exact ε is linear in x_t: rounding is not amplified, so the tolerance can be tight.)"""
    from ddpm_lessons.oracle import GaussianMixture
    d = dl.Diffusion(dl.schedules.cosine_beta_schedule(200))
    oracle = GaussianMixture([1.0], [[1.0, 0.5]], [0.3]).eps_model(d)
    steps = dl.ddim.step_schedule(200, 12)
    short = dl.Diffusion(respaced(d.float64["alphas_cumprod"], steps))
    upward = steps.flip(0)
    ddpm = short.sample(lambda x, j: oracle(x, upward[j]), (500, 2), variance="beta_tilde",
                        generator=torch.Generator().manual_seed(3))
    ddim = dl.ddim.sample(d, oracle, (500, 2), steps=steps, eta=1.0, generator=torch.Generator().manual_seed(3))
    assert torch.allclose(ddpm, ddim, atol=1e-5)


# ---------------------------------------------------------------- every checker: the reference, the mistakes, a stub
REFERENCES = [
    (exercises.check_ddim_step, ddim_step),
    (exercises.check_step_schedule, uniform),
    (exercises.check_step_schedule, dl.ddim.step_schedule),
    (exercises.check_step_schedule, lambda T, S: uniform(T, S).tolist()),
    (exercises.check_ddim_inversion, invert),
    (exercises.check_respaced_betas, respaced),
]


@pytest.mark.parametrize("checker, answer", REFERENCES)
def test_references_pass(checker, answer, verdict):
    ok, out = verdict(checker, answer)
    assert ok and f"✓ {checker.__name__}: correct" in out, out


def _with(answer, **options):
    return lambda *args: answer(*args, **options)


MISTAKES = [
    (exercises.check_ddim_step, _with(ddim_step, no_eta=True), "σ_t must be multiplied by η"),
    (exercises.check_ddim_step, _with(ddim_step, eta_on_variance=True), "η multiplies σ_t, not σ_t²"),
    (exercises.check_ddim_step, _with(ddim_step, swap_first=True), "swapped in σ_t's first factor"),
    (exercises.check_ddim_step, _with(ddim_step, sigma_no_sqrt=True), "σ_t is missing its square roots"),
    (exercises.check_ddim_step, _with(ddim_step, direction_no_sqrt=True), "you forgot the square root"),
    (exercises.check_ddim_step, _with(ddim_step, direction_no_sigma=True), "subtract σ_t²"),
    (exercises.check_ddim_step, _with(ddim_step, x0_weight_no_sqrt=True), "weighted by sqrt(ᾱ_prev), not ᾱ_prev"),
    (exercises.check_ddim_step, _with(ddim_step, x0_with_prev=True), "you used ᾱ_prev"),
    (exercises.check_ddim_step, _with(ddim_step, no_noise=True), "you forgot the noise σ_t z"),
    (exercises.check_ddim_step, _with(ddim_step, swap_second=True), "sqrt(1 − ᾱ_prev/ᾱ_t) is not"),
    (exercises.check_ddim_step, lambda x_t, *args: x_t, "differs from the expected one"),
    (exercises.check_step_schedule, lambda T, S: uniform(T, S).flip(0), "Reverse yours"),
    (exercises.check_step_schedule, lambda T, S: (torch.linspace(1, 0, S) * T).round().long(), "off-by-one"),
    (exercises.check_step_schedule, lambda T, S: torch.arange(T - T // S, -1, -(T // S))[:S],
     "stride of the DDIM paper's code"),
    (exercises.check_step_schedule, lambda T, S: uniform(T, S) if T % S == 0 else torch.arange(0, T, T // S).flip(0),
     "gives more than S steps"),
    (exercises.check_step_schedule, lambda T, S: (torch.linspace(1, 0, S) * (T - 1) + 1).round().long().clamp(max=T - 1),
     "must end at 0"),
    (exercises.check_step_schedule, lambda T, S: torch.linspace(T - 1, 0, S), "return integers"),
    (exercises.check_step_schedule, lambda T, S: torch.cat([uniform(T, S)[:-2], torch.zeros(2, dtype=torch.long)]),
     "distinct"),
    (exercises.check_step_schedule, lambda T, S: uniform(T, S) - torch.eye(S, dtype=torch.long)[1],
     "should be round((T-1)"),
    (exercises.check_step_schedule, lambda T, S: 5, "1-D torch.LongTensor"),
    (exercises.check_ddim_inversion, _with(invert, model_at_lower=True), "with the step you move to"),
    (exercises.check_ddim_inversion, _with(invert, down=True), "with the step you move to"),
    (exercises.check_ddim_inversion, _with(invert, first_alpha=0), "x_0 itself has ᾱ = 1"),
    (exercises.check_ddim_inversion, _with(invert, swap=True), "you move down, not up"),
    (exercises.check_ddim_inversion, _with(invert, no_sqrt=True), "the update has square roots"),
    (exercises.check_ddim_inversion, lambda model, x0, a, steps: x0, "never called model"),
    (exercises.check_respaced_betas, _with(respaced, descending=True), "betas run forward in time"),
    (exercises.check_respaced_betas, _with(respaced, original=True), "span the whole stride"),
    (exercises.check_respaced_betas, _with(respaced, inverted=True), "upside down"),
    (exercises.check_respaced_betas, _with(respaced, wrap=True), "wraps around to the LAST step"),
]


@pytest.mark.parametrize("checker, answer, message", MISTAKES)
def test_typical_mistakes_are_named(checker, answer, message, verdict):
    ok, out = verdict(checker, answer)
    assert not ok and f"✗ {checker.__name__}: not yet." in out and message in out, out

def test_a_stub_gets_nothing_to_check_yet(verdict):
    def stub(*args):
        raise NotImplementedError

    for checker in (exercises.check_ddim_step, exercises.check_step_schedule, exercises.check_ddim_inversion,
                    exercises.check_respaced_betas):
        ok, out = verdict(checker, stub)
        assert not ok and "nothing to check yet" in out and "Traceback" not in out, out
