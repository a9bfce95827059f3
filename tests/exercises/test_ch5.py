"""Chapter-5 checkers: the reference passes, and typical wrong answers are caught with a useful message."""
import math

import pytest
import torch

from ddpm_lessons import exercises
from ddpm_lessons.models.embeddings import sinusoidal_embedding


# ---------------------------------------------------------------- sinusoidal embedding
def _embedding(t, dim, swap=False, interleave=False, exponent_dim=False, drop_t=False):
    half = dim // 2
    omega = torch.exp(-math.log(10000.0) * torch.arange(half) / (dim if exponent_dim else half))
    angles = (torch.ones_like(t.float()) if drop_t else t.float())[:, None] * omega[None, :]
    sin, cos = torch.sin(angles), torch.cos(angles)
    if interleave:
        return torch.stack([sin, cos], dim=2).reshape(len(t), dim)
    return torch.cat([cos, sin] if swap else [sin, cos], dim=1)


def test_sinusoidal_reference_passes(verdict):
    ok, out = verdict(exercises.check_sinusoidal_embedding, sinusoidal_embedding)
    assert ok and "correct" in out


@pytest.mark.parametrize("answer, message", [
    (lambda t, d: _embedding(t, d, swap=True), "halves are swapped"),
    (lambda t, d: _embedding(t, d, interleave=True), "interleave"),
    (lambda t, d: _embedding(t, d, exponent_dim=True), "-i/half"),
    (lambda t, d: _embedding(t, d, drop_t=True), "sin(0) = 0 and cos(0) = 1"),
    (lambda t, d: _embedding(t, d)[:, : d // 2], "expected shape"),
    (lambda t, d: _embedding(t, d).tolist(), "expected a torch.Tensor"),
])
def test_sinusoidal_mistakes_are_named(answer, message, verdict):
    ok, out = verdict(exercises.check_sinusoidal_embedding, answer)
    assert not ok and message in out, out


# ---------------------------------------------------------------- ResNet block
def _forward(block, x, time_emb, mistake=None):
    scale, shift = block.time_mlp(time_emb)[:, :, None, None].chunk(2, dim=1)
    if mistake == "swap":
        scale, shift = shift, scale
    h = block.block1.norm(block.block1.conv(x))
    if mistake == "after_act":
        h = block.block1.act(h) * (1 + scale) + shift
    elif mistake == "no_one":
        h = block.block1.act(h * scale + shift)
    else:
        h = block.block1.act(h * (1 + scale) + shift)
    out = block.block2(h)
    return out if mistake == "no_skip" else out + block.skip(x)


def test_resnet_reference_passes(verdict):
    ok, out = verdict(exercises.check_resnet_block, lambda b, x, e: b(x, e))
    assert ok and "correct" in out
    ok, _ = verdict(exercises.check_resnet_block, _forward)
    assert ok


@pytest.mark.parametrize("mistake, message", [
    ("no_skip", "residual connection is missing"),
    ("no_one", "h·(1 + scale) + shift"),
    ("swap", "scale and shift are swapped"),
    ("after_act", "between the norm and the activation"),
])
def test_resnet_mistakes_are_named(mistake, message, verdict):
    ok, out = verdict(exercises.check_resnet_block, lambda b, x, e: _forward(b, x, e, mistake))
    assert not ok and message in out, out


def test_resnet_time_in_second_layer_and_crash(verdict):
    wrong = lambda b, x, e: b.block2(b.block1(x), tuple(b.time_mlp(e)[:, :, None, None].chunk(2, 1))) + b.skip(x)
    ok, out = verdict(exercises.check_resnet_block, wrong)
    assert not ok and "first conv layer (block1)" in out
    ok, out = verdict(exercises.check_resnet_block, lambda b, x, e: b.block1(x) @ x)
    assert not ok and "raised" in out


# ---------------------------------------------------------------- EMA update
def test_ema_reference_passes(verdict):
    ok, out = verdict(exercises.check_ema_update, lambda e, p, d: d * e + (1 - d) * p)
    assert ok and "correct" in out


def _in_place_on_param(e, p, d):
    p.mul_(1 - d).add_(d * e)
    return p


@pytest.mark.parametrize("answer, message", [
    (lambda e, p, d: (1 - d) * e + d * p, "other way round"),
    (lambda e, p, d: d * e + p, "weighted by (1 − decay)"),
    (lambda e, p, d: e + (1 - d) * p, "decay · ema + (1 − decay) · param"),
    (_in_place_on_param, "changed the model's weight"),
    (lambda e, p, d: d * e, "differs from the expected one"),
])
def test_ema_mistakes_are_named(answer, message, verdict):
    ok, out = verdict(exercises.check_ema_update, answer)
    assert not ok and message in out, out


def test_the_annotated_diffusion_models_convention_is_accepted_with_a_note(verdict):
    from ddpm_lessons.exercises.ch5 import annotated_diffusion_embedding

    ok, out = verdict(exercises.check_sinusoidal_embedding, lambda t, dim: annotated_diffusion_embedding(t, dim).float())
    assert ok and "Annotated Diffusion Model" in out and "correct" in out
    assert "differ at every other i" in out and "only the" not in out     # not "only the lowest frequency differs"
