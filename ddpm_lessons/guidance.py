"""Classifier-free guidance (Ho & Salimans 2022; chapter 7): train with labels, sometimes dropped, and
sample with a blend of the conditional and unconditional noise predictions.

One network ε_θ(x_t, t, y) learns both the conditional model (y a class 0 … C − 1) and the
unconditional one (y = C, the "no label" token ∅): during training each label is replaced by ∅
with probability p, independently per sample (:func:`drop_labels`), and the loss is Algorithm 1's,
unchanged (:func:`conditional_loss`). At sampling time the guided prediction is

    ε̃ = ε_θ(x_t, t, ∅) + w (ε_θ(x_t, t, c) − ε_θ(x_t, t, ∅))            (:func:`guided_eps`)

In this, the book's convention, w = 0 is the unconditional model, w = 1 the conditional one
(guidance off), w > 1 guides; it is ``torch.lerp(eps_uncond, eps_cond, w)``, and Ho & Salimans'
(1 + w') ε_c − w' ε_∅ with w' = w − 1. :class:`Guided` wraps (model, labels, w) into a plain
``model(x_t, t)``, so that every sampler of the book (``Diffusion.sample``, chapter 6's DDIM) samples
with guidance unchanged.
"""
from __future__ import annotations

import torch
from torch import nn

from . import _checks


def num_classes(model, where: str) -> int:
    """C, the number of classes of a class-conditional model (a ``UNet`` built with ``num_classes``, its
    EMA copy, or a :class:`~ddpm_lessons.oracle.ConditionalMixtureOracle`); a ValueError otherwise."""
    classes = getattr(model, "num_classes", None)
    if classes is None and isinstance(getattr(model, "module", None), nn.Module):  # an EMA AveragedModel
        classes = getattr(model.module, "num_classes", None)
    if classes is None:
        raise ValueError(f"{where}: the model was built without num_classes, so it cannot be conditioned on a label; "
                         "build it with dl.models.UNetConfig(num_classes=10) and train it with labels (chapter 7)")
    return classes


def drop_labels(y: torch.Tensor, p: float, num_classes: int, generator: torch.Generator | None = None) -> torch.Tensor:
    """Each label of ``y`` (B,) replaced by the "no label" token ``num_classes`` with probability ``p``,
    independently per sample (Ho & Salimans 2022, Algorithm 1; chapter 7). ``y`` is not changed.

    Per sample, not per batch: every batch then trains both the conditional and the unconditional
    model, in the proportions 1 − p and p.
    """
    where = "drop_labels()"
    num_classes = _checks.positive_int(num_classes, "num_classes", where)
    p = _checks.number(p, "p (the fraction of labels dropped)", where, 0.0, 1.0)
    y = _checks.tensor(y, "y", where, floating=False, shape_hint="(batch,) of class labels")
    y = _checks.labels(y, num_classes, y.shape[0], where)
    device = generator.device if generator is not None else y.device
    dropped = torch.rand(len(y), generator=generator, device=device).to(y.device) < p
    return torch.where(dropped, torch.full_like(y, num_classes), y)


class WithLabels(nn.Module):
    """``model(x_t, t, y)`` with the labels ``y`` fixed: a plain ``model(x_t, t)`` for ``Diffusion.loss``."""

    def __init__(self, model, y: torch.Tensor):
        super().__init__()
        self.model, self.y = model, y

    def forward(self, x_t: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        return self.model(x_t, t, self.y.to(x_t.device))


def conditional_loss(diffusion, model, x0: torch.Tensor, y: torch.Tensor, p_uncond: float = 0.1,
                     generator: torch.Generator | None = None, **loss_options) -> torch.Tensor:
    """Algorithm 1 of Ho et al. 2020 for ε_θ(x_t, t, y), with the labels dropped with probability
    ``p_uncond`` per sample (Ho & Salimans 2022, Algorithm 1; chapter 7).

    It is ``diffusion.loss`` (the one loss of the book; ``loss_options`` go to it) of the model with
    the kept labels fixed, so t, ε and x_t are drawn exactly as for the unconditional model.
    """
    where = "conditional_loss()"
    classes = num_classes(model, where)
    x0 = _checks.tensor(x0, "x0", where)
    y = _checks.labels(y, classes, len(x0), where, allow_null=False)
    kept = drop_labels(y, p_uncond, classes, generator)
    return diffusion.loss(WithLabels(model, kept), x0, generator=generator, **loss_options)


def guided_eps(model, x_t: torch.Tensor, t: torch.Tensor, y: torch.Tensor, w: float) -> torch.Tensor:
    """ε̃ = ε_θ(x_t, t, ∅) + w (ε_θ(x_t, t, c) − ε_θ(x_t, t, ∅)) (Ho & Salimans 2022; chapter 7).

    The book's w: 0 is the unconditional model, 1 the conditional one, larger values guide (Ho &
    Salimans write (1 + w') ε_c − w' ε_∅, with w' = w − 1). ``y`` (B,) holds the classes asked for,
    0 … C − 1. Both predictions come from one forward pass of a batch twice as large, faster than
    two passes on a GPU; at w = 0 and w = 1 only the one needed is computed.
    """
    where = "guided_eps()"
    classes = num_classes(model, where)
    w = _checks.number(w, "w (the guidance scale)", where, 0.0)
    x_t = _checks.tensor(x_t, "x_t", where)
    y = _checks.labels(y, classes, len(x_t), where, allow_null=False).to(x_t.device)
    null = torch.full_like(y, classes)
    if w == 1:
        return model(x_t, t, y)
    if w == 0:
        return model(x_t, t, null)
    t = torch.as_tensor(t, device=x_t.device).expand(len(x_t))  # an int step serves the whole batch
    eps_cond, eps_uncond = model(torch.cat([x_t, x_t]), torch.cat([t, t]), torch.cat([y, null])).chunk(2)
    return eps_uncond + w * (eps_cond - eps_uncond)


class Guided(nn.Module):
    """The guided noise predictor as a plain ``model(x_t, t)`` (chapter 7): ``Guided(model, y, w)`` asks
    for the classes ``y`` (B,) with guidance scale ``w`` (:func:`guided_eps`), so that a sampler of the
    book samples with guidance unchanged:

    >>> x = diffusion.sample(Guided(ema_model, y, w=3.0), (len(y), 1, 28, 28))
    """

    def __init__(self, model, y: torch.Tensor, w: float):
        super().__init__()
        where = "Guided()"
        classes = num_classes(model, where)
        self.w = _checks.number(w, "w (the guidance scale)", where, 0.0)
        y = _checks.tensor(y, "y", where, floating=False, shape_hint="(batch,) of class labels")
        self.y = _checks.labels(y, classes, y.shape[0], where, allow_null=False)
        self.model = model

    def forward(self, x_t: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        if len(x_t) != len(self.y):
            raise ValueError(f"Guided: built with {len(self.y)} labels, one per image, but x_t holds {len(x_t)} "
                             f"images; sample a batch of {len(self.y)} (e.g. shape ({len(self.y)}, 1, 28, 28))")
        if self.y.device != x_t.device:   # moved once, not at every step (and never inside a CUDA graph)
            self.y = self.y.to(x_t.device)
        return guided_eps(self.model, x_t, t, self.y, self.w)

    def extra_repr(self) -> str:
        return f"w={self.w:g}, labels={len(self.y)}"
