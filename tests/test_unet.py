"""The chapter-5 U-Net: sizes it takes (28x28, 32x32), the errors for those it cannot, and training."""
import pytest
import torch

from ddpm_lessons.models import UNet, UNetConfig
from ddpm_lessons.utils import count_parameters

SMALL = dict(dim=8, dim_mults=(1, 2, 2), attn_heads=2, attn_dim_head=8)


def small_unet(**changes) -> UNet:
    return UNet(UNetConfig(**{**SMALL, **changes}))


@pytest.mark.parametrize("block", ["resnet", "convnext"])
@pytest.mark.parametrize("size", [28, 32])
def test_unet_output_shape(block, size):
    torch.manual_seed(0)
    model = small_unet(block=block)
    x = torch.randn(2, 1, size, size)
    assert model(x, torch.tensor([0, 99])).shape == x.shape


def test_unet_more_channels_and_deeper_at_32():
    model = UNet(UNetConfig(dim=8, channels=3, dim_mults=(1, 2, 2, 4), attn_heads=1, attn_dim_head=8))
    assert model.size_multiple == 8
    assert model(torch.randn(1, 3, 32, 32), torch.tensor([3])).shape == (1, 3, 32, 32)
    with pytest.raises(ValueError, match="multiples of 8; got 28x28"):
        model(torch.randn(1, 3, 28, 28), torch.tensor([3]))


def test_unet_depends_on_t_and_trains():
    torch.manual_seed(0)
    model = small_unet()
    x = torch.randn(2, 1, 28, 28)
    assert not torch.allclose(model(x, torch.tensor([0, 0])), model(x, torch.tensor([500, 500])))
    model(x, torch.tensor([1, 2])).pow(2).mean().backward()
    assert all(p.grad is not None for p in model.parameters())
    assert count_parameters(model) == sum(p.numel() for p in model.parameters())


def test_unet_channels_last_and_bf16_autocast_agree_with_fp32():
    torch.manual_seed(0)
    model = small_unet().eval()
    x, t = torch.randn(2, 1, 28, 28), torch.tensor([5, 50])
    with torch.no_grad():
        reference = model(x, t)
        model_cl = small_unet().eval()
        model_cl.load_state_dict(model.state_dict())
        model_cl.to(memory_format=torch.channels_last)
        assert torch.allclose(model_cl(x.contiguous(memory_format=torch.channels_last), t), reference, atol=1e-4)
        with torch.autocast("cpu", dtype=torch.bfloat16):
            low = model(x, t)
    assert (low.float() - reference).abs().mean() < 0.1 * reference.abs().mean() + 0.05


@pytest.mark.parametrize("x, t, message", [
    (torch.randn(2, 1, 30, 30), torch.tensor([0, 1]), "multiples of 4; got 30x30"),
    (torch.randn(2, 1, 28, 26), torch.tensor([0, 1]), "multiples of 4"),
    (torch.randn(2, 3, 28, 28), torch.tensor([0, 1]), "1 channel"),
    (torch.randn(1, 28, 28), torch.tensor([0]), r"expected images \(B, 1, H, W\)"),
    (torch.randn(2, 1, 28, 28), torch.tensor([0, 1, 2]), "one step per example"),
])
def test_unet_bad_inputs(x, t, message):
    with pytest.raises(ValueError, match=message):
        small_unet()(x, t)


@pytest.mark.parametrize("kwargs, message", [
    (dict(dim=7), "dim must be an even"), (dict(channels=0), "channels"),
    (dict(dim_mults=()), "dim_mults"), (dict(dim_mults=(1, 0)), "dim_mults"),
    (dict(block="vit"), "block"),
])
def test_unet_bad_construction(kwargs, message):
    with pytest.raises(ValueError, match=message):
        small_unet(**kwargs)


def test_unet_learns_a_denoising_step():
    """A few optimizer steps of the DDPM loss on a fixed batch lower it: the model is trainable end to end."""
    import ddpm_lessons as dl

    torch.manual_seed(0)
    d = dl.Diffusion(dl.schedules.cosine_beta_schedule(20))
    model = small_unet()
    x0 = torch.rand(8, 1, 28, 28).round() * 2 - 1
    batches = dl.training.TensorBatches(x0, batch_size=8, device="cpu")
    g = torch.Generator().manual_seed(1)
    fixed_t, fixed_noise = torch.randint(0, 20, (8,), generator=g), torch.randn(x0.shape, generator=g)
    loss = lambda m, x: d.loss(m, x, t=fixed_t, noise=fixed_noise)
    result = dl.training.train(model, loss, batches, steps=40, lr=3e-3, optimizer="adamw", progress=False)
    assert dl.training.smoothed(result.history, 5) < 0.7 * result.history[0]


def test_unet_config_is_chapter_5s_network_and_round_trips():
    config = UNetConfig()
    assert (config.dim, config.dim_mults, config.attn_heads, config.attn_dim_head) == (16, (1, 2, 2), 2, 16)
    assert UNetConfig(**config.to_dict()) == config
    assert UNet().config == config and UNet(config).dim_mults == (1, 2, 2)
    with pytest.raises(ValueError, match="expected a UNetConfig"):
        UNet(dict(dim=16))


def test_unet_knows_its_T_when_told():
    import ddpm_lessons as dl

    model = small_unet(T=20)
    x = torch.randn(2, 1, 28, 28)
    assert model.T == 20 and model(x, torch.tensor([0, 19])).shape == x.shape
    with pytest.raises(ValueError, match=r"t must lie in 0 … T-1 = 0 … 19"):
        model(x, torch.tensor([0, 20]))
    with pytest.raises(ValueError, match="built for T = 20 steps, this Diffusion has T = 30"):
        dl.Diffusion(dl.schedules.cosine_beta_schedule(30)).sample(model, (2, 1, 28, 28))
    assert dl.Diffusion(dl.schedules.cosine_beta_schedule(20)).loss(model, x.clamp(-1, 1)).ndim == 0


# ---------------------------------------------------------------- class-conditional option (chapter 7)
def test_conditional_unet_embeds_the_label_into_the_time_embedding():
    torch.manual_seed(0)
    model = small_unet(num_classes=10).eval()
    assert model.num_classes == 10 and small_unet().num_classes is None
    assert tuple(model.label_embedding.weight.shape) == (11, 4 * 8)   # C classes + the "no label" token
    assert torch.count_nonzero(model.label_embedding.weight) == 0     # starts as the unconditional network
    with torch.no_grad():
        model.label_embedding.weight.normal_()
        t, y = torch.tensor([3, 40]), torch.tensor([2, 7])
        assert torch.allclose(model.conditioning(t, y), model.time_embedding(t) + model.label_embedding.weight[y])
        assert torch.equal(model.conditioning(t), model.conditioning(t, torch.tensor([10, 10])))   # None = ∅
        x = torch.randn(2, 1, 28, 28)
        out = model(x, t, y)
        assert out.shape == x.shape and not torch.allclose(out, model(x, t, torch.tensor([2, 8])))
        assert torch.equal(model(x, t), model(x, t, torch.tensor([10, 10])))
    assert count_parameters(model) - count_parameters(small_unet()) == 11 * 32


def test_unconditional_unet_state_is_unchanged_by_the_option():
    # chapter 5's checkpoints still load: no new parameter without num_classes
    assert not any(name.startswith("label_embedding") for name in small_unet().state_dict())
    config = UNetConfig(num_classes=10)
    assert UNetConfig(**config.to_dict()) == config and UNetConfig().num_classes is None


@pytest.mark.parametrize("y, message", [
    (torch.tensor([0, 11]), r"UNet: labels must lie in 0 … 9, or 10 for \"no label\"; got values from 0 to 11"),
    (torch.tensor([-1, 0]), "labels must lie in 0 … 9"),
    (torch.tensor([0.0, 1.0]), "integer class labels"),
    (torch.tensor([True, False]), "integer class labels"),
    (torch.tensor([0, 1, 2]), r"y must have shape \(batch,\) = \(2,\), one label per image; got \(3,\)"),
    (torch.tensor([[0, 1]]), r"y must have shape \(batch,\) = \(2,\)"),
    ("cat", "y must be a LongTensor of shape \\(2,\\)"),
])
def test_conditional_unet_bad_labels(y, message):
    with pytest.raises(ValueError, match=message):
        small_unet(num_classes=10)(torch.randn(2, 1, 28, 28), torch.tensor([0, 1]), y)


def test_labels_for_an_unconditional_unet_and_bad_num_classes():
    with pytest.raises(ValueError, match="built without num_classes, so it takes no labels y"):
        small_unet()(torch.randn(2, 1, 28, 28), torch.tensor([0, 1]), torch.tensor([0, 1]))
    for bad in (0, -3, 2.0, True):
        with pytest.raises(ValueError, match="num_classes \\(None for an unconditional U-Net\\) must be a positive int"):
            UNetConfig(num_classes=bad)
