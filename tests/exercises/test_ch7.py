"""Chapter-7 checkers: the reference passes, and typical wrong answers are caught with a useful message."""
import pytest
import torch

from ddpm_lessons import exercises
from ddpm_lessons.guidance import drop_labels, guided_eps


# ---------------------------------------------------------------- label dropout
def _per_sample(y, p, num_classes):
    return torch.where(torch.rand(len(y)) < p, num_classes, y)


def test_drop_labels_reference_passes(verdict):
    ok, out = verdict(exercises.check_drop_labels, drop_labels)
    assert ok and "correct" in out, out
    ok, out = verdict(exercises.check_drop_labels, _per_sample)
    assert ok, out
    ok, out = verdict(exercises.check_drop_labels,
                      lambda y, p, c: y.masked_fill(torch.bernoulli(torch.full(y.shape, p)).bool(), c))
    assert ok, out


def _per_batch(y, p, num_classes):
    return torch.full_like(y, num_classes) if torch.rand(()) < p else y.clone()


def _quota(y, p, num_classes):
    out = y.clone()
    out[torch.randperm(len(y))[:round(p * len(y))]] = num_classes
    return out


def _fixed_seed(y, p, num_classes):
    g = torch.Generator().manual_seed(0)
    return torch.where(torch.rand(len(y), generator=g) < p, num_classes, y)


def _in_place(y, p, num_classes):
    y[torch.rand(len(y)) < p] = num_classes
    return y


@pytest.mark.parametrize("answer, message", [
    (_per_batch, "you drop whole batches"),
    (lambda y, p, c: torch.where(torch.rand(len(y)) > p, c, y), "dropped every label"),
    (lambda y, p, c: torch.where(torch.rand(len(y)) < p, 0, y), "not 0: 0 is a real class"),
    (lambda y, p, c: torch.where(torch.rand(len(y)) < p, -1, y), "not -1"),
    (_quota, "the same number of labels in every batch"),
    (_fixed_seed, "the same samples in every call"),
    (_in_place, "changed the labels y in place"),
    (lambda y, p, c: torch.where(torch.rand(len(y)) < p / 2, c, y) if 0 < p < 1 else _per_sample(y, p, c),
     "expected about 20%"),
    (lambda y, p, c: torch.where(torch.rand(len(y)) < p, c, y).float(), "must stay integers"),
    (lambda y, p, c: torch.where(torch.rand(len(y)) < p, c, (y + 1) % c), "differs from the expected"),
    (lambda y, p, c: torch.where(torch.rand(len(y)) < p, c, y)[:-1], "one label per sample"),
])
def test_drop_labels_mistakes_are_named(answer, message, verdict):
    ok, out = verdict(exercises.check_drop_labels, answer)
    assert not ok and message in out, out


def test_drop_labels_changing_kept_labels_is_caught(verdict):
    def shuffled(y, p, c):
        out = torch.where(torch.rand(len(y)) < p, c, y)
        if 0 < p < 1:
            out[out != c] = out[out != c].flip(0)
        return out

    ok, out = verdict(exercises.check_drop_labels, shuffled)
    assert not ok and "labels that were not dropped changed" in out, out


# ---------------------------------------------------------------- guided noise prediction
def _guided(model, x, t, y, w, mistake=None):
    null = torch.full_like(y, model.num_classes)
    eps_c, eps_u = model(x, t, y), model(x, t, null)
    if mistake == "one_plus_w":
        return (1 + w) * eps_c - w * eps_u
    if mistake == "swapped":
        return torch.lerp(eps_c, eps_u, w)
    if mistake == "no_base":
        return w * (eps_c - eps_u)
    if mistake == "no_difference":
        return eps_u + w * eps_c
    if mistake == "label_zero":
        eps_0 = model(x, t, torch.zeros_like(y))
        return eps_0 + w * (eps_c - eps_0)
    if mistake == "null_minus_one":
        return model(x, t, torch.full_like(y, -1))
    return torch.lerp(eps_u, eps_c, w)


def test_guided_eps_reference_passes(verdict):
    ok, out = verdict(exercises.check_guided_eps, guided_eps)
    assert ok and "correct" in out, out
    ok, out = verdict(exercises.check_guided_eps, _guided)
    assert ok, out


@pytest.mark.parametrize("mistake, message", [
    ("one_plus_w", "Ho & Salimans' convention (1 + w)"),
    ("swapped", "conditional and unconditional are swapped"),
    ("no_base", "you left out the unconditional prediction"),
    ("no_difference", "the difference ε_c − ε_∅"),
    ("label_zero", "null token model.num_classes, not label 0"),
    ("null_minus_one", "labels must lie in 0 … 3"),
])
def test_guided_eps_mistakes_are_named(mistake, message, verdict):
    ok, out = verdict(exercises.check_guided_eps, lambda *args: _guided(*args, mistake=mistake))
    assert not ok and message in out, out


def test_guided_eps_other_failures(verdict):
    ok, out = verdict(exercises.check_guided_eps, lambda m, x, t, y, w: _guided(m, x, t, y, w).tolist())
    assert not ok and "expected a torch.Tensor" in out, out
    ok, out = verdict(exercises.check_guided_eps, lambda m, x, t, y, w: _guided(m, x, t, y, w) * 1.01)
    assert not ok and "differs from the expected one" in out, out

    def in_place(m, x, t, y, w):
        out = _guided(m, x, t, y, w)
        y.zero_()
        return out

    ok, out = verdict(exercises.check_guided_eps, in_place)
    assert not ok and "changed its inputs" in out, out


def test_a_stub_gets_nothing_to_check_yet(verdict):
    def stub(*args):
        raise NotImplementedError

    for checker in (exercises.check_drop_labels, exercises.check_guided_eps):
        ok, out = verdict(checker, stub)
        assert not ok and "nothing to check yet" in out and "Traceback" not in out, out
