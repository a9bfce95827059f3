"""ddpm_lessons.models.basic_unet (chapter 1): shapes, size, bad input."""
import pytest
import torch

from ddpm_lessons.models import BasicUNet
from ddpm_lessons.models.basic_unet import AmountConditionedUNet


def _conv_parameters(c_in, c_out, k=5):
    return c_in * c_out * k * k + c_out


@pytest.mark.parametrize("shape", [(2, 1, 28, 28), (1, 1, 32, 32), (3, 1, 8, 12)])
def test_output_has_the_input_shape(shape):
    assert BasicUNet()(torch.randn(shape)).shape == shape


def test_channels_and_parameter_count():
    model = BasicUNet(in_channels=3, out_channels=3)
    assert model(torch.randn(2, 3, 16, 16)).shape == (2, 3, 16, 16)
    expected = sum(_conv_parameters(i, o) for i, o in
                   [(1, 32), (32, 64), (64, 64), (64, 64), (64, 32), (32, 1)])
    assert sum(p.numel() for p in BasicUNet().parameters()) == expected == 309_057


def test_output_can_be_negative():
    # data live in [-1, 1]: the last layer must not end in a ReLU
    model = BasicUNet()
    torch.nn.init.constant_(model.up_layers[-1].bias, -0.5)
    assert (model(torch.randn(2, 1, 8, 8)) < 0).any()


def test_skip_connections_carry_detail():
    # without the skips, 2x2 blocks after two max-pools would lose single-pixel changes entirely
    torch.manual_seed(0)
    model = BasicUNet().eval()
    x = torch.zeros(1, 1, 16, 16)
    y = x.clone()
    y[0, 0, 5, 5] = 1.0
    with torch.no_grad():
        assert not torch.allclose(model(x), model(y))


@pytest.mark.parametrize("shape, match", [
    ((1, 1, 30, 28), "divisible by 4"),
    ((1, 1, 28, 10), "divisible by 4"),
    ((1, 2, 28, 28), "input channel"),
    ((1, 28, 28), r"\(B, C, H, W\)"),
])
def test_bad_input(shape, match):
    with pytest.raises(ValueError, match=match):
        BasicUNet()(torch.randn(shape))


def test_bad_channels():
    with pytest.raises(ValueError, match="in_channels"):
        BasicUNet(in_channels=0)


def test_amount_conditioned_unet_uses_each_images_amount():
    torch.manual_seed(0)
    model = AmountConditionedUNet().eval()
    x = torch.randn(3, 1, 16, 16)
    with torch.no_grad():
        out = model(x, torch.tensor([0.1, 0.5, 0.9]))
        changed = model(x, torch.tensor([0.8, 0.5, 0.9]))
        assert out.shape == x.shape
        assert not torch.allclose(out[0], changed[0]) and torch.allclose(out[1:], changed[1:])
        assert torch.allclose(model(x, 0.5), model(x, torch.full((3,), 0.5)))
    with pytest.raises(ValueError, match="shape \\(3,\\)"):
        model(x, torch.tensor([0.1, 0.2]))
