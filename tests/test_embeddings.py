"""The sinusoidal time embedding (ddpm_lessons.models.embeddings; chapters 4 and 5)."""
import math

import pytest
import torch

from ddpm_lessons.models.embeddings import sinusoidal_embedding


def test_shape_and_dtype():
    emb = sinusoidal_embedding(torch.arange(7), 16)
    assert emb.shape == (7, 16) and emb.dtype == torch.float32
    assert sinusoidal_embedding(torch.rand(3, dtype=torch.float64), 4).dtype == torch.float64


def test_matches_the_transformer_formula_entry_by_entry():
    t = torch.tensor([0, 1, 5, 999])
    dim, max_period = 8, 10000.0
    emb = sinusoidal_embedding(t, dim, max_period).double()
    half = dim // 2
    for row, step in enumerate(t.tolist()):
        for i in range(half):
            omega = max_period ** (-i / half)
            assert emb[row, i].item() == pytest.approx(math.sin(step * omega), abs=1e-5)
            assert emb[row, half + i].item() == pytest.approx(math.cos(step * omega), abs=1e-5)


def test_step_zero_is_zeros_then_ones():
    emb = sinusoidal_embedding(torch.tensor([0]), 10)
    assert torch.equal(emb, torch.cat([torch.zeros(1, 5), torch.ones(1, 5)], dim=1))


def test_first_frequency_is_one_and_max_period_sets_the_slowest():
    t = torch.tensor([2.0])
    emb = sinusoidal_embedding(t, 4, max_period=100.0)
    # half = 2: omega_0 = 1, omega_1 = 100^(-1/2) = 0.1
    expected = torch.tensor([[math.sin(2.0), math.sin(0.2), math.cos(2.0), math.cos(0.2)]])
    assert torch.allclose(emb, expected, atol=1e-6)


def test_each_sin_cos_pair_has_unit_norm_and_different_steps_differ():
    emb = sinusoidal_embedding(torch.arange(50), 32)
    pairs = emb[:, :16] ** 2 + emb[:, 16:] ** 2
    assert torch.allclose(pairs, torch.ones_like(pairs), atol=1e-5)
    distances = torch.cdist(emb, emb) + torch.eye(50) * 1e9
    assert distances.min() > 1e-2


def test_integer_and_float_steps_agree():
    assert torch.allclose(sinusoidal_embedding(torch.arange(10), 12),
                          sinusoidal_embedding(torch.arange(10).float(), 12))


@pytest.mark.parametrize("t, dim, match", [
    (torch.arange(3), 7, "even"),
    (torch.arange(3), 0, "even"),
    (torch.arange(3), 4.0, "even"),
    (torch.zeros(3, 1), 4, r"shape \(B,\)"),
    (5, 4, r"shape \(B,\)"),
    (torch.ones(3, dtype=torch.bool), 4, "integer or real"),
])
def test_bad_input(t, dim, match):
    with pytest.raises(ValueError, match=match):
        sinusoidal_embedding(t, dim)


def test_bad_max_period():
    with pytest.raises(ValueError, match="max_period"):
        sinusoidal_embedding(torch.arange(3), 4, max_period=0.5)
