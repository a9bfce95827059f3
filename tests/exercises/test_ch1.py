"""Chapter 1 checkers: the reference passes; typical wrong answers are caught with a helpful message."""
import pytest
import torch
from torch import nn

from ddpm_lessons import exercises
from ddpm_lessons.corruption import corrupt
from ddpm_lessons.models import BasicUNet
from ddpm_lessons.models.basic_unet import AmountConditionedUNet
from ddpm_lessons.naive import denoise


# ---------------------------------------------------------------- check_corrupt
def test_check_corrupt_accepts_the_reference(verdict):
    ok, out = verdict(exercises.check_corrupt, lambda x, a: corrupt(x, a))
    assert ok and "correct" in out


def test_check_corrupt_accepts_a_typical_right_answer(verdict):
    def student(x, amount):
        amount = amount.view(-1, 1, 1, 1)
        return x * (1 - amount) + (torch.rand_like(x) * 2 - 1) * amount
    assert verdict(exercises.check_corrupt, student)[0]


CORRUPT_MISTAKES = {
    "noise in [0, 1)": (lambda x, a: x * (1 - a.view(-1, 1, 1, 1)) + torch.rand_like(x) * a.view(-1, 1, 1, 1),
                        "mean"),
    "amount not reshaped": (lambda x, a: x * (1 - a) + (torch.rand_like(x) * 2 - 1) * a, "reshape it to (B, 1, 1, 1)"),
    "weights swapped": (lambda x, a: x * a.view(-1, 1, 1, 1) + (torch.rand_like(x) * 2 - 1) * (1 - a.view(-1, 1, 1, 1)),
                        "amount = 0 the image must come back unchanged"),
    "gaussian noise": (lambda x, a: x * (1 - a.view(-1, 1, 1, 1)) + torch.randn_like(x) * a.view(-1, 1, 1, 1),
                       "torch.rand_like(x) * 2 - 1, not torch.randn"),
    "same noise for every image": (
        lambda x, a: x * (1 - a.view(-1, 1, 1, 1)) + (torch.rand(1, *x.shape[1:]) * 2 - 1) * a.view(-1, 1, 1, 1),
        "same noise"),
    "image not weighted": (lambda x, a: x + (torch.rand_like(x) * 2 - 1) * a.view(-1, 1, 1, 1), "(1 − amount)"),
    "one amount for all": (lambda x, a: x * (1 - a.mean()) + (torch.rand_like(x) * 2 - 1) * a.mean(),
                           "own amount"),
}


def _in_place(x, a):
    a = a.view(-1, 1, 1, 1)
    return x.mul_(1 - a).add_((torch.rand_like(x) * 2 - 1) * a)


CORRUPT_MISTAKES["in place"] = (_in_place, "in place")


# ---------------------------------------------------------------- check_corrupt_gaussian
def test_check_corrupt_gaussian_accepts_the_reference(verdict):
    ok, out = verdict(exercises.check_corrupt_gaussian, lambda x, a: corrupt(x, a, noise="gaussian"))
    assert ok and "correct" in out


GAUSSIAN_MISTAKES = {
    "uniform noise": (lambda x, a: corrupt(x, a), "not torch.rand_like(x) (uniform)"),
    "DDPM square roots": (lambda x, a: x * (1 - a.view(-1, 1, 1, 1)).sqrt()
                          + torch.randn_like(x) * a.view(-1, 1, 1, 1).sqrt(), "standard deviation"),
    "noise std 0.5": (lambda x, a: x * (1 - a.view(-1, 1, 1, 1)) + 0.5 * torch.randn_like(x) * a.view(-1, 1, 1, 1),
                      "with standard deviation 1; yours has"),
    "noise mean 0.5": (lambda x, a: x * (1 - a.view(-1, 1, 1, 1))
                       + (torch.randn_like(x) + 0.5) * a.view(-1, 1, 1, 1), "mean 0"),
}


BLEND_MISTAKES = [(exercises.check_corrupt, name, *case) for name, case in CORRUPT_MISTAKES.items()] + \
                 [(exercises.check_corrupt_gaussian, name, *case) for name, case in GAUSSIAN_MISTAKES.items()]


@pytest.mark.parametrize("checker, name, answer, words", BLEND_MISTAKES,
                         ids=[f"{c.__name__}: {n}" for c, n, _, _ in BLEND_MISTAKES])
def test_blend_checkers_catch_typical_mistakes(checker, name, answer, words, verdict):
    ok, out = verdict(checker, answer)
    assert not ok and words in out, out


# ---------------------------------------------------------------- check_amount_conditioned_unet
def test_check_amount_conditioned_unet_accepts_the_reference(verdict):
    torch.manual_seed(0)
    ok, out = verdict(exercises.check_amount_conditioned_unet, AmountConditionedUNet())
    assert ok and "correct" in out


class IgnoresAmount(nn.Module):
    def __init__(self):
        super().__init__()
        self.net = BasicUNet()

    def forward(self, x, amount):
        return self.net(x)


class AveragesAmount(nn.Module):
    def __init__(self):
        super().__init__()
        self.net = BasicUNet(in_channels=2)

    def forward(self, x, amount):
        return self.net(torch.cat([x, torch.full_like(x, amount.mean().item())], dim=1))


class TwoChannelsOut(nn.Module):
    def __init__(self):
        super().__init__()
        self.net = BasicUNet(in_channels=2, out_channels=2)

    def forward(self, x, amount):
        return self.net(torch.cat([x, amount.view(-1, 1, 1, 1).expand_as(x)], dim=1))


class HardCoded28(nn.Module):
    def __init__(self):
        super().__init__()
        self.net = BasicUNet(in_channels=2)

    def forward(self, x, amount):
        return self.net(torch.cat([x, amount.view(-1, 1, 1, 1).expand(-1, 1, 28, 28)], dim=1))


class ReturnsTuple(AmountConditionedUNet):
    def forward(self, x, amount):
        return super().forward(x, amount), amount


@pytest.mark.parametrize("model_class, words", [
    (IgnoresAmount, "ignores the amount"),
    (AveragesAmount, "other images"),
    (TwoChannelsOut, "output still has 1 channel"),
    (HardCoded28, "no hard-coded 28"),
    (ReturnsTuple, "got tuple"),
])
def test_check_amount_conditioned_unet_catches_typical_mistakes(model_class, words, verdict):
    torch.manual_seed(0)
    ok, out = verdict(exercises.check_amount_conditioned_unet, model_class())
    assert not ok and words in out, out


# ---------------------------------------------------------------- check_naive_sampler
def test_check_naive_sampler_accepts_the_reference(verdict):
    ok, out = verdict(exercises.check_naive_sampler, denoise)
    assert ok and "correct" in out


def test_check_naive_sampler_accepts_a_typical_right_answer(verdict):
    def student(model, x, steps):
        for i in range(steps):
            with torch.no_grad():
                pred = model(x)
            mix = 1 / (steps - i)
            x = x * (1 - mix) + pred * mix
        return x
    assert verdict(exercises.check_naive_sampler, student)[0]


def _sampler(weight, in_place=False, calls_once=False):
    def sampler(model, x, steps):
        pred = model(x) if calls_once else None
        for i in range(steps):
            pred = pred if calls_once else model(x)
            w = weight(i, steps)
            if in_place:
                x.mul_(1 - w).add_(pred * w)
            else:
                x = x * (1 - w) + pred * w
        return x
    return sampler


SAMPLER_MISTAKES = {
    "constant weight 1/n": (_sampler(lambda i, n: 1 / n), "prediction weights 1/2, 1/1"),
    "off by one 1/(n-i+1)": (_sampler(lambda i, n: 1 / (n - i + 1)), "weight 1/(1 − 0) = 1"),
    "weights swapped": (_sampler(lambda i, n: 1 - 1 / (n - i)), "prediction model(x)"),
    "in place": (_sampler(lambda i, n: 1 / (n - i), in_place=True), "in place"),
    "model called once": (_sampler(lambda i, n: 1 / (n - i), calls_once=True), "once per step"),
}


@pytest.mark.parametrize("name", list(SAMPLER_MISTAKES))
def test_check_naive_sampler_catches_typical_mistakes(name, verdict):
    answer, words = SAMPLER_MISTAKES[name]
    ok, out = verdict(exercises.check_naive_sampler, answer)
    assert not ok and words in out, out


def test_check_amount_conditioned_unet_catches_a_class_passed_instead_of_an_instance(verdict):
    ok, out = verdict(exercises.check_amount_conditioned_unet, AmountConditionedUNet)
    assert not ok and "pass an instance" in out, out


# ---------------------------------------------------------------- the stubs on the page
class _StubNet(nn.Module):
    """The exercise cell's stub network: forward raises NotImplementedError."""

    def forward(self, x, amount):
        raise NotImplementedError


def test_the_page_stubs_get_nothing_to_check_yet(verdict):
    """Each exercise cell of chapter 1 calls its checker on a stub: the reader sees "nothing to check
    yet", not a traceback and not a verdict."""
    def stub(*args):
        raise NotImplementedError

    for checker, answer in ((exercises.check_corrupt, stub), (exercises.check_corrupt_gaussian, stub),
                            (exercises.check_amount_conditioned_unet, _StubNet()),
                            (exercises.check_naive_sampler, stub)):
        ok, out = verdict(checker, answer)
        assert not ok and "nothing to check yet" in out and "Traceback" not in out, (checker.__name__, out)
