"""Classifier-free guidance (ddpm_lessons.guidance; chapter 7): label dropout, the conditional loss, the
guided noise prediction, the wrapper that samplers use, and the errors for bad input."""
import math

import pytest
import torch

import ddpm_lessons as dl
from ddpm_lessons.guidance import Guided, conditional_loss, drop_labels, guided_eps
from ddpm_lessons.models import UNet, UNetConfig

SMALL = dict(dim=8, dim_mults=(1, 2), attn_heads=1, attn_dim_head=8)
C = 10


def conditional_unet(seed=0, trained_embedding=True) -> UNet:
    torch.manual_seed(seed)
    model = UNet(UNetConfig(**SMALL, num_classes=C)).eval()
    if trained_embedding:  # zero at initialisation; give every class (and ∅) its own embedding
        with torch.no_grad():
            model.label_embedding.weight.normal_(0, 1)
    return model


class ToyConditional:
    """A class-conditional 'network' whose output depends on the label in a known way."""
    num_classes = 3

    def __init__(self):
        self.calls = []

    def __call__(self, x, t, y):
        self.calls.append(len(x))
        return x * (y[:, None].double() + 1) + t[:, None].double() / 10


# ---------------------------------------------------------------- label dropout
def test_drop_labels_fraction_is_p_within_standard_errors():
    y = torch.randint(0, C, (200_000,), generator=torch.Generator().manual_seed(0))
    for p in (0.1, 0.2, 0.5):
        kept = drop_labels(y, p, C, generator=torch.Generator().manual_seed(1))
        fraction = (kept == C).double().mean().item()
        assert abs(fraction - p) < 5 * math.sqrt(p * (1 - p) / len(y))
        same = kept != C
        assert torch.equal(kept[same], y[same])  # the kept labels are unchanged


def test_drop_labels_is_per_sample_not_per_batch():
    # batches of 32 with p = 0.1: the number dropped per batch is Binomial(32, 0.1), not 0-or-32
    g = torch.Generator().manual_seed(2)
    y = torch.zeros(32, dtype=torch.long)
    counts = torch.tensor([(drop_labels(y, 0.1, C, generator=g) == C).sum().item() for _ in range(2000)])
    assert ((counts > 0) & (counts < 32)).double().mean() > 0.9
    assert abs(counts.double().mean().item() - 3.2) < 5 * math.sqrt(32 * 0.1 * 0.9 / 2000)
    assert abs(counts.double().var().item() - 32 * 0.1 * 0.9) < 0.5  # binomial variance 2.88
    # and two samples of the same batch are dropped independently: P(both) = p²
    pairs = torch.stack([drop_labels(y[:2], 0.5, C, generator=g) == C for _ in range(4000)])
    both = (pairs[:, 0] & pairs[:, 1]).double().mean().item()
    assert abs(both - 0.25) < 5 * math.sqrt(0.25 * 0.75 / 4000)


def test_drop_labels_ends_and_reproducibility():
    y = torch.arange(C)
    assert torch.equal(drop_labels(y, 0.0, C), y)
    assert torch.equal(drop_labels(y, 1.0, C), torch.full((C,), C))
    assert torch.equal(drop_labels(y, 0.5, C, torch.Generator().manual_seed(3)),
                       drop_labels(y, 0.5, C, torch.Generator().manual_seed(3)))
    before = y.clone()
    drop_labels(y, 0.7, C)
    assert torch.equal(y, before)  # the caller's labels are not changed in place


# ---------------------------------------------------------------- the embedding path and the loss
def test_all_labels_dropped_is_the_null_token_path():
    model = conditional_unet()
    x, t = torch.randn(4, 1, 8, 8), torch.tensor([0, 3, 7, 9])
    y = torch.tensor([1, 5, 9, 0])
    dropped = drop_labels(y, 1.0, C)
    with torch.no_grad():
        assert torch.equal(model(x, t, dropped), model(x, t))  # y=None: ∅ for the whole batch
        assert not torch.allclose(model(x, t, y), model(x, t), atol=1e-4)


def test_conditional_loss_with_p_1_is_the_unconditional_loss():
    d = dl.Diffusion(dl.schedules.cosine_beta_schedule(20))
    model = conditional_unet()
    x0, y = torch.rand(6, 1, 8, 8) * 2 - 1, torch.arange(6)
    t, noise = torch.randint(0, 20, (6,)), torch.randn(6, 1, 8, 8)
    with torch.no_grad():
        conditional = conditional_loss(d, model, x0, y, p_uncond=1.0, t=t, noise=noise)
        unconditional = d.loss(lambda x_t, step: model(x_t, step), x0, t=t, noise=noise)
        kept = conditional_loss(d, model, x0, y, p_uncond=0.0, t=t, noise=noise)
        by_hand = (model(d.q_sample(x0, t, noise), t, y) - noise).pow(2).mean()
    assert torch.equal(conditional, unconditional)
    assert torch.allclose(kept, by_hand, atol=1e-6) and not torch.allclose(kept, unconditional)


def test_untrained_conditional_unet_is_the_unconditional_one():
    # the label embedding starts at zero: same weights, same output, whatever the label
    conditional = conditional_unet(trained_embedding=False)
    plain = UNet(UNetConfig(**SMALL))
    missing, unexpected = plain.load_state_dict(conditional.state_dict(), strict=False)
    assert not missing and unexpected == ["label_embedding.weight"]
    x, t = torch.randn(3, 1, 8, 8), torch.tensor([1, 2, 3])
    with torch.no_grad():
        assert torch.equal(conditional(x, t, torch.tensor([0, 4, 10])), plain.eval()(x, t))


def test_conditional_training_with_the_book_loop():
    d = dl.Diffusion(dl.schedules.cosine_beta_schedule(10))
    model = conditional_unet(trained_embedding=False).train()
    images, labels = torch.randint(0, 256, (16, 1, 8, 8), dtype=torch.uint8), torch.arange(16) % C
    batches = dl.training.TensorBatches(images, 8, device="cpu", labels=labels)
    result = dl.training.train(model, lambda m, batch: conditional_loss(d, m, *batch, p_uncond=0.2), batches,
                               steps=3, progress=False, ema_decay=0.9)
    assert result.steps == 3 and model.label_embedding.weight.abs().sum() > 0
    assert result.ema_model.module.num_classes == C


# ---------------------------------------------------------------- guided noise prediction
@pytest.mark.parametrize("w", [0.0, 0.5, 1.0, 3.0])
def test_guided_eps_is_the_formula(w):
    model = conditional_unet()
    x, t, y = torch.randn(3, 1, 8, 8), torch.tensor([1, 5, 9]), torch.tensor([2, 0, 9])
    with torch.no_grad():
        eps_c, eps_u = model(x, t, y), model(x, t, torch.full((3,), C))
        expected = eps_u + w * (eps_c - eps_u)
        assert torch.allclose(guided_eps(model, x, t, y, w), expected, atol=1e-5)


def test_lerp_and_one_plus_w_forms_are_the_same_guidance():
    g = torch.Generator().manual_seed(4)
    eps_c, eps_u = (torch.randn(5, 3, generator=g, dtype=torch.float64) for _ in range(2))
    for w in (0.0, 0.5, 1.0, 2.0, 7.5):
        book = eps_u + w * (eps_c - eps_u)
        assert torch.allclose(torch.lerp(eps_u, eps_c, w), book)
        w_ho_salimans = w - 1  # (1 + w') ε_c − w' ε_∅
        assert torch.allclose((1 + w_ho_salimans) * eps_c - w_ho_salimans * eps_u, book)
    # the same number in the two conventions is not the same guidance
    assert not torch.allclose(torch.lerp(eps_u, eps_c, 2.0), 3.0 * eps_c - 2.0 * eps_u)


def test_guided_eps_uses_one_batched_pass_and_shortcuts():
    toy = ToyConditional()
    x, t, y = torch.randn(4, 2, dtype=torch.float64), torch.tensor([0, 1, 2, 3]), torch.tensor([0, 1, 2, 1])
    out = guided_eps(toy, x, t, y, 2.5)
    assert toy.calls == [8]
    eps_c, eps_u = toy(x, t, y), toy(x, t, torch.full((4,), 3))
    assert torch.allclose(out, torch.lerp(eps_u, eps_c, 2.5))
    toy.calls.clear()
    assert torch.equal(guided_eps(toy, x, t, y, 1.0), eps_c) and torch.equal(guided_eps(toy, x, t, y, 0.0), eps_u)
    assert toy.calls == [4, 4]
    assert torch.allclose(guided_eps(toy, x, 2, y, 3.0), guided_eps(toy, x, torch.full((4,), 2), y, 3.0))


def test_guided_wrapper_samples_with_diffusion_sample():
    d = dl.Diffusion(dl.schedules.cosine_beta_schedule(5))
    model = conditional_unet()
    y = torch.tensor([0, 3, 7])
    guided = Guided(model, y, 2.0)
    x = d.sample(guided, (3, 1, 8, 8), generator=torch.Generator().manual_seed(0), amp=False)  # fp32, as by hand
    assert x.shape == (3, 1, 8, 8) and torch.isfinite(x).all()
    # the same run by hand: Algorithm 2 with ε̃ in place of ε_θ
    g = torch.Generator().manual_seed(0)
    by_hand = torch.randn((3, 1, 8, 8), generator=g)
    for step in reversed(range(d.T)):
        by_hand = d.p_sample(lambda x_t, t: guided_eps(model, x_t, t, y, 2.0), by_hand, torch.full((3,), step),
                             generator=g)
    assert torch.allclose(x, by_hand, atol=1e-5)
    # an EMA copy (AveragedModel) is a conditional model too
    ema = torch.optim.swa_utils.AveragedModel(model)
    assert Guided(ema, y, 1.0)(x, torch.zeros(3, dtype=torch.long)).shape == x.shape


# ---------------------------------------------------------------- bad input
def test_unconditional_model_cannot_be_conditioned():
    plain = UNet(UNetConfig(**SMALL))
    x, t, y = torch.randn(2, 1, 8, 8), torch.tensor([0, 1]), torch.tensor([0, 1])
    with pytest.raises(ValueError, match="built without num_classes.*UNetConfig\\(num_classes=10\\)"):
        plain(x, t, y)
    d = dl.Diffusion(dl.schedules.cosine_beta_schedule(5))
    for call in (lambda: Guided(plain, y, 2.0), lambda: guided_eps(plain, x, t, y, 2.0),
                 lambda: conditional_loss(d, plain, x, y)):
        with pytest.raises(ValueError, match="built without num_classes"):
            call()


@pytest.mark.parametrize("w, message", [
    (-1.0, "w \\(the guidance scale\\) must be a number >= 0, got -1.0"),
    (float("nan"), "must be a number >= 0, got nan"),
    (float("inf"), "must be a number >= 0"),
    ("2", "must be a number >= 0"),
])
def test_bad_guidance_scale(w, message):
    model = conditional_unet()
    x, t, y = torch.randn(2, 1, 8, 8), torch.tensor([0, 1]), torch.tensor([0, 1])
    with pytest.raises(ValueError, match=message):
        guided_eps(model, x, t, y, w)
    with pytest.raises(ValueError, match=message):
        Guided(model, y, w)


@pytest.mark.parametrize("y, message", [
    (torch.tensor([0, 10]), r"labels must lie in 0 … 9; got values from 0 to 10"),   # ∅ is not a class to ask for
    (torch.tensor([-1, 3]), r"labels must lie in 0 … 9"),
    (torch.tensor([0.0, 1.0]), "integer class labels.*y.long\\(\\)"),
    (torch.tensor([0, 1, 2]), r"y must have shape \(batch,\) = \(2,\), one label per image; got \(3,\)"),
    ([0, 1], "y must be a LongTensor of shape"),
])
def test_bad_labels_for_guidance(y, message):
    model = conditional_unet()
    x, t = torch.randn(2, 1, 8, 8), torch.tensor([0, 1])
    with pytest.raises(ValueError, match=message):
        guided_eps(model, x, t, y, 2.0)


def test_bad_labels_for_the_loss_and_the_wrapper():
    d = dl.Diffusion(dl.schedules.cosine_beta_schedule(5))
    model = conditional_unet()
    x0 = torch.randn(4, 1, 8, 8)
    with pytest.raises(ValueError, match=r"conditional_loss\(\): y must have shape \(batch,\) = \(4,\)"):
        conditional_loss(d, model, x0, torch.tensor([0, 1]))
    with pytest.raises(ValueError, match=r"conditional_loss\(\): labels must lie in 0 … 9; got values from 0 to 10"):
        conditional_loss(d, model, x0, torch.tensor([0, 1, 2, 10]))
    with pytest.raises(ValueError, match="Guided: built with 3 labels, one per image, but x_t holds 4"):
        Guided(model, torch.tensor([0, 1, 2]), 2.0)(x0, torch.zeros(4, dtype=torch.long))


@pytest.mark.parametrize("args, message", [
    ((torch.tensor([0, 1]), 1.5, C), r"p \(the fraction of labels dropped\) must be a number in \[0, 1\]"),
    ((torch.tensor([0, 1]), -0.1, C), r"must be a number in \[0, 1\]"),
    ((torch.tensor([0, 11]), 0.1, C), r"labels must lie in 0 … 9, or 10 for \"no label\""),
    ((torch.tensor([0.5]), 0.1, C), "integer class labels"),
    ((torch.tensor([0, 1]), 0.1, 0), "num_classes must be a positive int"),
    (([0, 1], 0.1, C), "y must be a torch.Tensor"),
])
def test_bad_drop_labels(args, message):
    with pytest.raises(ValueError, match=message):
        drop_labels(*args)
