"""Checkers of chapter 5 (book/05_unet_fashion_mnist).
"""
from __future__ import annotations

import math

import torch

from ..models.blocks import ResnetBlock
from ..models.embeddings import sinusoidal_embedding
from ._harness import ExerciseMistake, call, expect_tensor, run_checker


def _sinusoidal_variants(t: torch.Tensor, dim: int) -> dict:
    """Typical wrong embeddings, to name the mistake when a student's matches one (chapter 5)."""
    half = dim // 2
    angles = t.double()[:, None] * torch.exp(-math.log(10000.0) * torch.arange(half, dtype=torch.float64) / half)
    sin, cos = torch.sin(angles), torch.cos(angles)
    per_dim = t.double()[:, None] * torch.exp(-math.log(10000.0) * torch.arange(half, dtype=torch.float64) / dim)
    return {
        "your halves are swapped: the first half should be the sines, the second the cosines":
            torch.cat([cos, sin], dim=1),
        "you interleave sin and cos (sin, cos, sin, cos, …), the Transformer paper's layout, equivalent up to a "
        "reordering of the features; this exercise asks for the book's: all sines first, then all cosines":
            torch.stack([sin, cos], dim=2).reshape(len(t), dim),
        "your frequencies use the exponent -i/dim; with half = dim/2 frequencies it is ω_i = 10000^(-i/half)":
            torch.cat([torch.sin(per_dim), torch.cos(per_dim)], dim=1),
    }


def annotated_diffusion_embedding(t: torch.Tensor, dim: int) -> torch.Tensor:
    """The sinusoidal embedding as Ho et al.'s code and The Annotated Diffusion Model write it:
    ω_i = 10000^(-i/(h-1)), so the lowest frequency is exactly 1/10000. The book's ω_i = 10000^(-i/h)
    agrees at i = 0 and ends at 10000^(-(h-1)/h), 10000^(1/h) times higher. Both work."""
    half = dim // 2
    omega = torch.exp(-math.log(10000.0) * torch.arange(half, dtype=torch.float64) / max(half - 1, 1))
    angles = t.double()[:, None] * omega[None, :]
    return torch.cat([torch.sin(angles), torch.cos(angles)], dim=1)


def check_sinusoidal_embedding(embedding_fn) -> bool:
    """Exercise (chapter 5): ``embedding_fn(t, dim)`` is the sinusoidal time embedding (B,) -> (B, dim),
    ``[sin(t ω_0), …, sin(t ω_{h-1}), cos(t ω_0), …, cos(t ω_{h-1})]`` with ``ω_i = 10000^(-i/h)``, ``h = dim/2``.

    The Annotated Diffusion Model's ω_i = 10000^(-i/(h-1)) is accepted too (a convention, not a
    mistake), with a note that says how the two differ.
    """
    convention = []

    def body():
        g = torch.Generator().manual_seed(5)
        cases = [("at t = 0 (dim 8)", torch.zeros(3, dtype=torch.long), 8),
                 ("for random steps t in 0 … 999 (dim 16)", torch.randint(0, 1000, (6,), generator=g), 16),
                 ("for steps t = 1 and 999 (dim 64)", torch.tensor([1, 999]), 64)]
        for what, t, dim in cases:
            got = call(embedding_fn, t.clone(), dim, what=f"{what}")
            expected = sinusoidal_embedding(t, dim)
            matches = (lambda other: torch.is_tensor(got) and tuple(got.shape) == tuple(other.shape) and
                       got.is_floating_point() and torch.allclose(got.detach().double().cpu(), other.double(),
                                                                  atol=1e-4, rtol=1e-4))
            if not matches(expected) and matches(annotated_diffusion_embedding(t, dim)):
                expected = annotated_diffusion_embedding(t, dim).to(expected.dtype)
                convention.append(what)
            if torch.is_tensor(got) and tuple(got.shape) == tuple(expected.shape) and got.is_floating_point():
                close = lambda a, b: torch.allclose(a.detach().double().cpu(), b.double(), atol=1e-4, rtol=1e-4)
                if not close(got, expected):
                    for mistake, variant in _sinusoidal_variants(t, dim).items():
                        if close(got, variant):
                            raise ExerciseMistake(f"{what}: {mistake}.")
                    if what.startswith("at t = 0"):
                        raise ExerciseMistake(f"{what}: sin(0) = 0 and cos(0) = 1, so the embedding should be "
                                              f"[0, …, 0, 1, …, 1]; yours is {got[0].tolist()}.")
            expect_tensor(got, expected, f"{what}", atol=1e-4, rtol=1e-4)
        if convention and len(convention) < len(cases) - 1:  # at t = 0 the two conventions agree
            raise ExerciseMistake("your frequencies follow The Annotated Diffusion Model's 10000^(-i/(h-1)) for some "
                                  "sizes but not for others; pick one convention")
        if convention:
            print("note: your frequencies are ω_i = 10000^(-i/(h-1)), the convention of Ho et al.'s code and of The "
                  "Annotated Diffusion Model; the book uses 10000^(-i/h). The two agree at i = 0 and differ at every "
                  "other i, the slowest frequency by a factor 10000^(1/h) (×3.2 at dim 16). Both work.")

    return run_checker("check_sinusoidal_embedding", body)


def _resnet_variants(block, x: torch.Tensor, time_emb: torch.Tensor) -> dict:
    """Typical wrong forward passes of a ResnetBlock, computed with the block's own layers."""
    scale, shift = block.time_mlp(time_emb)[:, :, None, None].chunk(2, dim=1)

    def first(scale_, shift_, after_act=False):
        h = block.block1.norm(block.block1.conv(x))
        if after_act:
            return block.block1.act(h) * (1 + scale_) + shift_
        return block.block1.act(h * (1 + scale_) + shift_)

    def second(h):
        return block.block2(h)

    skip = block.skip(x)
    return {
        "the residual connection is missing: add block.skip(x) to the output": second(first(scale, shift)),
        "use h·(1 + scale) + shift, not h·scale + shift (with 1 + scale, a zero time projection leaves h unchanged)":
            second(first(scale - 1, shift)) + skip,
        "scale and shift are swapped: chunk(2, dim=1) gives (scale, shift) in that order":
            second(first(shift, scale)) + skip,
        "the scale-and-shift goes between the norm and the activation of block1, not after the activation":
            second(first(scale, shift, after_act=True)) + skip,
        "the time conditioning belongs to the first conv layer (block1), not the second":
            block.block2(block.block1(x), (scale, shift)) + skip,
    }


def check_resnet_block(forward_fn) -> bool:
    """Exercise (chapter 5): ``forward_fn(block, x, time_emb)`` is the forward pass of
    :class:`ddpm_lessons.models.blocks.ResnetBlock` written with the block's own layers:
    ``h = act(norm(conv1(x))·(1 + scale) + shift)``, then block2, plus ``block.skip(x)``."""
    def body():
        g = torch.Generator().manual_seed(6)
        for what, c_in, c_out in (("a block 8 -> 16 channels", 8, 16), ("a block 16 -> 16 channels", 16, 16)):
            with torch.random.fork_rng():
                torch.manual_seed(c_in + c_out)
                block = ResnetBlock(c_in, c_out, time_dim=12, groups=4).eval()
                for p in block.parameters():  # non-trivial weights, so that every mistake shows
                    p.data.normal_(0, 0.3)
            x = torch.randn(2, c_in, 6, 6, generator=g)
            time_emb = torch.randn(2, 12, generator=g)
            with torch.no_grad():
                expected = block(x, time_emb)
                got = call(forward_fn, block, x.clone(), time_emb.clone(), what=f"with {what}")
                variants = _resnet_variants(block, x, time_emb)
            if torch.is_tensor(got) and tuple(got.shape) == tuple(expected.shape) and got.is_floating_point() \
                    and not torch.allclose(got.detach().double(), expected.double(), atol=1e-4, rtol=1e-4):
                for mistake, variant in variants.items():
                    if torch.allclose(got.detach().double(), variant.double(), atol=1e-4, rtol=1e-4):
                        raise ExerciseMistake(f"with {what}: {mistake}.")
            expect_tensor(got, expected, f"with {what}", atol=1e-4, rtol=1e-4)

    return run_checker("check_resnet_block", body)


def check_ema_update(update_fn) -> bool:
    """Exercise (chapter 5): ``update_fn(ema, param, decay)`` returns the new EMA weight
    ``decay · ema + (1 − decay) · param`` (what ``torch.optim.swa_utils.get_ema_multi_avg_fn`` does)."""

    def body():
        g = torch.Generator().manual_seed(7)
        for decay in (0.9, 0.999, 0.0):
            ema, param = torch.randn(5, 3, generator=g), torch.randn(5, 3, generator=g)
            param_before = param.clone()
            what = f"with decay = {decay}"
            got = call(update_fn, ema.clone(), param, decay, what=what)
            expected = decay * ema + (1 - decay) * param_before
            if not torch.equal(param, param_before):
                raise ExerciseMistake(f"{what}: your update changed the model's weight `param`; only the EMA "
                                      "copy may change.")
            if torch.is_tensor(got) and got.shape == expected.shape and \
                    not torch.allclose(got.double(), expected.double(), atol=1e-6):
                if torch.allclose(got, (1 - decay) * ema + decay * param_before, atol=1e-6):
                    raise ExerciseMistake(f"{what}: decay multiplies the old EMA, (1 − decay) the new weight; yours "
                                          "has them the other way round, so the EMA would barely average.")
                if torch.allclose(got, decay * ema + param_before, atol=1e-6):
                    raise ExerciseMistake(f"{what}: the new weight must be weighted by (1 − decay); without it "
                                          "the EMA grows without bound.")
                if torch.allclose(got, decay * param_before + (1 - decay) * ema, atol=1e-6) or \
                        torch.allclose(got, ema + (1 - decay) * param_before, atol=1e-6):
                    raise ExerciseMistake(f"{what}: write it as decay · ema + (1 − decay) · param.")
            expect_tensor(got, expected, what, atol=1e-6)

    return run_checker("check_ema_update", body)
