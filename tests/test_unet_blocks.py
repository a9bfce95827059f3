"""The parts of the chapter-5 U-Net: shapes, the formulas they implement, and their errors."""
import pytest
import torch
from torch import nn
from torch.nn import functional as F

from ddpm_lessons.models import attention, blocks


def test_group_norm_divides_channels_and_normalises_each_group():
    assert blocks.group_norm(32, 8).num_groups == 8
    assert blocks.group_norm(12, 8).num_groups == 4  # the largest count <= 8 that divides 12
    y = blocks.group_norm(16, 4)(torch.randn(3, 16, 5, 5) * 4 + 2).view(3, 4, -1)
    assert torch.allclose(y.mean(-1), torch.zeros(3, 4), atol=1e-5)
    assert torch.allclose(y.var(-1, unbiased=False), torch.ones(3, 4), atol=1e-3)
    with pytest.raises(ValueError, match="channels"):
        blocks.group_norm(0)


def test_residual_and_prenorm():
    x = torch.randn(2, 8, 4, 4)
    double = blocks.Residual(blocks.PreNorm(8, nn.Identity()))
    assert torch.allclose(double(x), x + nn.GroupNorm(1, 8)(x), atol=1e-6)
    assert torch.allclose(blocks.Residual(lambda z: 2 * z)(x), 3 * x)


def test_time_embedding_shape_and_dependence_on_t():
    emb = blocks.TimeEmbedding(16)
    out = emb(torch.tensor([0, 5, 99]))
    assert out.shape == (3, 64)
    assert not torch.allclose(out[0], out[1])
    with pytest.raises(ValueError, match="even"):
        blocks.TimeEmbedding(15)


def _zero_time(block):
    with torch.no_grad():
        block.time_mlp[-1].weight.zero_()
        block.time_mlp[-1].bias.zero_()


def test_resnet_block_scale_and_shift_formula():
    torch.manual_seed(0)
    block = blocks.ResnetBlock(4, 8, time_dim=6, groups=4)
    x, time_emb = torch.randn(2, 4, 6, 6), torch.randn(2, 6)
    assert block(x, time_emb).shape == (2, 8, 6, 6)
    _zero_time(block)
    with torch.no_grad():
        plain = block.block2(block.block1(x)) + block.skip(x)
        assert torch.allclose(block(x, time_emb), plain, atol=1e-6)  # s = b = 0: time ignored
        block.time_mlp[-1].bias[:8] = 0.5   # scale
        block.time_mlp[-1].bias[8:] = -1.0  # shift
        h = F.silu(block.block1.norm(block.block1.conv(x)) * 1.5 - 1.0)
        assert torch.allclose(block(x, time_emb), block.block2(h) + block.skip(x), atol=1e-5)


def test_resnet_block_identity_skip_and_errors():
    block = blocks.ResnetBlock(8, 8, time_dim=4)
    assert isinstance(block.skip, nn.Identity)
    with pytest.raises(ValueError, match="time_emb"):
        block(torch.randn(1, 8, 4, 4))
    untimed = blocks.ResnetBlock(8, 16)
    assert untimed(torch.randn(1, 8, 4, 4)).shape == (1, 16, 4, 4)
    with pytest.raises(ValueError, match="out_channels"):
        blocks.ResnetBlock(8, 0)


def test_convnext_block_adds_time_after_the_depthwise_conv():
    torch.manual_seed(0)
    block = blocks.ConvNextBlock(4, 8, time_dim=6)
    x, time_emb = torch.randn(2, 4, 7, 7), torch.randn(2, 6)
    assert block(x, time_emb).shape == (2, 8, 7, 7)
    assert block.depthwise.groups == 4  # one filter per channel
    h = block.depthwise(x) + block.time_mlp(time_emb)[:, :, None, None]
    assert torch.allclose(block(x, time_emb), block.net(h) + block.skip(x), atol=1e-6)
    with pytest.raises(ValueError, match="time_emb"):
        block(x)


def test_down_and_upsample():
    x = torch.randn(2, 8, 28, 28)
    assert blocks.Downsample(8, 16)(x).shape == (2, 16, 14, 14)
    assert blocks.Upsample(8)(x).shape == (2, 8, 56, 56)
    with pytest.raises(ValueError, match="even"):
        blocks.Downsample(8)(torch.randn(1, 8, 7, 7))


def test_naive_attention_is_the_formula():
    torch.manual_seed(0)
    q, k, v = torch.randn(3, 5, 4), torch.randn(3, 6, 4), torch.randn(3, 6, 2)
    expected = torch.empty(3, 5, 2)
    for b in range(3):
        for i in range(5):
            scores = torch.tensor([float(q[b, i] @ k[b, j]) / 2.0 for j in range(6)])  # sqrt(d) = 2
            weights = scores.exp() / scores.exp().sum()
            expected[b, i] = (weights[:, None] * v[b]).sum(0)
    assert torch.allclose(attention.naive_attention(q, k, v), expected, atol=1e-5)


def test_attention_matches_naive_reference_with_heads():
    torch.manual_seed(0)
    attn = attention.Attention(16, heads=4, dim_head=8)
    x = torch.randn(2, 16, 6, 5)
    q, k, v = attn.qkv(x)
    assert q.shape == (2, 4, 30, 8)
    reference = attention.naive_attention(q, k, v)                        # (B, heads, pixels, d)
    reference = reference.permute(0, 1, 3, 2).reshape(2, 32, 6, 5)       # heads back to channels
    assert torch.allclose(attn(x), attn.to_out(reference), atol=1e-5)
    # every output pixel depends on every input pixel
    x.requires_grad_(True)
    attn(x)[0, :, 0, 0].sum().backward()
    assert (x.grad[0].abs().sum(0) > 0).all()


def test_linear_attention_matches_its_explicit_formula():
    torch.manual_seed(0)
    lin = attention.LinearAttention(8, heads=2, dim_head=4)
    x = torch.randn(2, 8, 4, 4)
    q, k, v = (part.reshape(2, 2, 4, 16) for part in lin.to_qkv(x).chunk(3, dim=1))  # (B, h, d, N)
    q = q.softmax(dim=-2) * 4 ** -0.5
    k = k.softmax(dim=-1)
    weights = q.transpose(-2, -1) @ k                         # (B, h, N, N): the quadratic form
    out = (weights @ v.transpose(-2, -1)).transpose(-2, -1)  # (B, h, d, N)
    assert torch.allclose(lin(x), lin.to_out(out.reshape(2, 8, 4, 4)), atol=1e-5)


@pytest.mark.parametrize("cls", [attention.Attention, attention.LinearAttention])
def test_attention_errors(cls):
    with pytest.raises(ValueError, match="heads"):
        cls(8, heads=0)
    with pytest.raises(ValueError, match="feature map"):
        cls(8)(torch.randn(2, 8, 4))
