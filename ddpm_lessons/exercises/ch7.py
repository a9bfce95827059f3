"""Checkers of chapter 7 (book/07_guidance): per-sample label dropout and the guided noise prediction.
"""
from __future__ import annotations

import math

import torch

from .. import _checks
from ..guidance import guided_eps
from ._harness import ExerciseMistake, call, expect_tensor, known_mistake, run_checker

CLASSES = 10


def _as_labels(value, what: str, size: int) -> torch.Tensor:
    """The student's labels, or the mistake that they are not a LongTensor (size,)."""
    if not torch.is_tensor(value):
        raise ExerciseMistake(f"{what}: expected a torch.Tensor of labels, got {type(value).__name__}.")
    if tuple(value.shape) != (size,):
        raise ExerciseMistake(f"{what}: expected one label per sample, shape ({size},); got {tuple(value.shape)}.")
    if value.is_floating_point() or value.dtype == torch.bool:
        raise ExerciseMistake(f"{what}: the labels must stay integers (a LongTensor), got {value.dtype}.")
    return value.long().cpu()


def _dropout_ends(drop_fn, y: torch.Tensor) -> None:
    """p = 0 keeps every label, p = 1 drops every one, to the null token, and y stays as it was."""
    null = torch.full_like(y, CLASSES)
    for p, expected in ((0.0, y), (1.0, null)):
        what = f"with p = {p:g} (labels 0 … 9, num_classes = {CLASSES})"
        before = y.clone()
        got = call(drop_fn, y, p, CLASSES, what=what)
        if not torch.equal(y, before):
            raise ExerciseMistake(f"{what}: your function changed the labels y in place; return a new tensor "
                                  "(torch.where(...), or y.clone() first), the caller still needs the true labels.")
        got = _as_labels(got, what, len(y))
        mistake = known_mistake(got.double(), {
            "at p = 0 you dropped every label: drop where torch.rand(len(y)) < p, so that p is the fraction dropped":
                null.double() if p == 0 else None,
            "at p = 1 you dropped no label: drop where torch.rand(len(y)) < p, so that p is the fraction dropped":
                y.double() if p == 1 else None,
            f"a dropped label becomes the null token num_classes (= {CLASSES} here), not 0: 0 is a real class":
                torch.zeros(len(y)).double() if p == 1 else None,
            f"a dropped label becomes the null token num_classes (= {CLASSES} here), not -1: the embedding "
            f"has rows 0 … {CLASSES} and row {CLASSES} is the learned \"no label\"":
                torch.full((len(y),), -1.0).double() if p == 1 else None,
        })
        if mistake:
            raise ExerciseMistake(f"{what}: {mistake}.")
        expect_tensor(got.double(), expected.double(), what)


def _dropout_statistics(drop_fn, g: torch.Generator) -> None:
    """Each sample is dropped on its own coin (not the batch's, not a quota), and the fraction is p."""
    p, batch, calls = 0.2, 16, 400
    stderr = math.sqrt(p * (1 - p) / (batch * calls))
    y = torch.randint(0, CLASSES, (batch,), generator=g)
    what = f"with p = {p} on {calls} batches of {batch}"
    masks = torch.stack([_as_labels(call(drop_fn, y.clone(), p, CLASSES, what=what), what, batch) == CLASSES
                         for _ in range(calls)]).double()
    counts, fraction = masks.sum(1), masks.mean().item()
    if ((counts == 0) | (counts == batch)).double().mean() > 0.5:
        raise ExerciseMistake(f"{what}: you drop whole batches (one coin for the batch): then most steps train "
                              "only the conditional model and a few only the unconditional one. Draw one coin per "
                              "sample: torch.rand(len(y)) < p.")
    if (masks[1:] == masks[:-1]).all(1).double().mean() > 0.5:
        raise ExerciseMistake(f"{what}: you drop the same samples in every call (a fixed seed inside?); draw "
                              "fresh random numbers each time.")
    if abs(fraction - (1 - p)) < 5 * stderr:
        raise ExerciseMistake(f"{what}: you dropped {fraction:.1%}, that is 1 − p: drop where torch.rand(...) < p.")
    if abs(fraction - p) > 5 * stderr:
        raise ExerciseMistake(f"{what}: you dropped {fraction:.1%} of the labels, expected about {p:.0%} "
                              f"(± {5 * stderr:.1%}).")
    if counts.var() < 0.3 * batch * p * (1 - p):
        raise ExerciseMistake(f"{what}: you drop (nearly) the same number of labels in every batch, "
                              f"{counts.mean():.1f} on average with almost no variation; each label must be "
                              "dropped independently with probability p, so the count varies from batch to batch.")
    n = 20_000
    y = torch.randint(0, CLASSES, (n,), generator=g)
    what = f"with p = {p} on {n:,} labels"
    got = _as_labels(call(drop_fn, y.clone(), p, CLASSES, what=what), what, n)
    dropped = got == CLASSES
    if not torch.equal(got[~dropped], y[~dropped]):
        raise ExerciseMistake(f"{what}: some labels that were not dropped changed; keep them as they are.")
    fraction, stderr = dropped.double().mean().item(), math.sqrt(p * (1 - p) / n)
    if abs(fraction - p) > 5 * stderr:
        raise ExerciseMistake(f"{what}: you dropped {fraction:.1%} of the labels, expected about {p:.0%} "
                              f"(± {5 * stderr:.1%}).")


def check_drop_labels(drop_fn) -> bool:
    """Exercise (chapter 7): ``drop_fn(y, p, num_classes)`` returns a copy of the labels ``y`` (B,) in which
    each label is replaced by the null token ``num_classes`` with probability ``p``, independently per sample."""
    def body():
        g = torch.Generator().manual_seed(7)
        with torch.random.fork_rng():
            torch.manual_seed(7)
            _dropout_ends(drop_fn, torch.randint(0, CLASSES, (64,), generator=g))
            _dropout_statistics(drop_fn, g)

    return run_checker("check_drop_labels", body)


class _ToyConditional:
    """A fixed class-conditional "network" ε(x_t, t, y) (chapter 7 checkers): nonlinear in x, t and y, so
    that every mix-up of the two predictions gives a different result; it refuses labels out of range."""

    num_classes = 4

    def __call__(self, x, t, y):
        t = torch.as_tensor(t, device=x.device).expand(len(x))
        y = _checks.labels(y, self.num_classes, len(x), "model(x_t, t, y)")
        shape = (-1,) + (1,) * (x.ndim - 1)
        label, step = y.to(x.dtype).view(shape), t.to(x.dtype).view(shape)
        return torch.tanh(x * (1 + 0.3 * label) + 0.05 * step) + 0.2 * label - 0.1


def _guided_variants(eps_c: torch.Tensor, eps_u: torch.Tensor, eps_0: torch.Tensor, w: float) -> dict:
    """Typical wrong guided predictions, to name the mistake when a student's matches one."""
    return {
        "you used Ho & Salimans' convention (1 + w)·ε_c − w·ε_∅; in this book w = 1 is the conditional model: "
        "ε̃ = ε_∅ + w·(ε_c − ε_∅) (their w' is w − 1)": (1 + w) * eps_c - w * eps_u,
        "conditional and unconditional are swapped: ε̃ = ε_∅ + w·(ε_c − ε_∅) starts from ε_∅ and moves "
        "towards ε_c (torch.lerp(eps_uncond, eps_cond, w), in that order)": eps_c + w * (eps_u - eps_c),
        "you left out the unconditional prediction that the guidance starts from: ε̃ = ε_∅ + w·(ε_c − ε_∅)":
            w * (eps_c - eps_u),
        "the guidance direction is the difference ε_c − ε_∅, not ε_c alone": eps_u + w * eps_c,
        "the unconditional prediction uses the null token model.num_classes, not label 0 (a real class)":
            eps_0 + w * (eps_c - eps_0),
    }


def check_guided_eps(guided_fn) -> bool:
    """Exercise (chapter 7): ``guided_fn(model, x_t, t, y, w)`` returns the classifier-free guided noise
    prediction ε̃ = ε_θ(x_t, t, ∅) + w (ε_θ(x_t, t, y) − ε_θ(x_t, t, ∅)), where ``model(x_t, t, y)`` is a
    class-conditional model and ∅ is its null token ``model.num_classes``."""
    def body():
        g = torch.Generator().manual_seed(8)
        model = _ToyConditional()
        cases = [("2-D points", torch.randn(6, 2, generator=g)),
                 ("images (3, 1, 4, 4)", torch.randn(3, 1, 4, 4, generator=g))]
        for shape_what, x in cases:
            t = torch.randint(0, 50, (len(x),), generator=g)
            y = torch.randint(0, model.num_classes, (len(x),), generator=g)
            eps_c, eps_u = model(x, t, y), model(x, t, torch.full_like(y, model.num_classes))
            eps_0 = model(x, t, torch.zeros_like(y))
            for w in (3.0, 0.0, 1.0, 0.5):
                what = f"with {shape_what} and w = {w:g}"
                before = (x.clone(), t.clone(), y.clone())
                got = call(guided_fn, model, x, t, y, w, what=what)
                if not all(torch.equal(a, b) for a, b in zip((x, t, y), before)):
                    raise ExerciseMistake(f"{what}: your function changed its inputs x_t, t or y in place.")
                expected = guided_eps(model, x, t, y, w)
                mistake = known_mistake(got, {k: v for k, v in _guided_variants(eps_c, eps_u, eps_0, w).items()
                                              if not torch.allclose(v, expected, atol=1e-5)})
                if mistake:
                    raise ExerciseMistake(f"{what}: {mistake}.")
                expect_tensor(got, expected, what)

    return run_checker("check_guided_eps", body)
