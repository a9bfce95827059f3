"""NoiseMLP, the time-conditioned noise predictor of chapter 4."""
import pytest
import torch

from ddpm_lessons.models import NoiseMLP
from ddpm_lessons.models.embeddings import sinusoidal_embedding


@pytest.mark.parametrize("time_embedding", ["raw", "sinusoidal"])
def test_output_has_the_input_shape(time_embedding):
    model = NoiseMLP(T=50, time_embedding=time_embedding)
    x, t = torch.randn(17, 2), torch.randint(0, 50, (17,))
    assert model(x, t).shape == (17, 2)


def test_architecture_is_2_128_128_128_2_with_time_added_at_each_hidden_layer():
    model = NoiseMLP(T=100, time_embedding="sinusoidal", embedding_dim=32)
    shapes = [(layer.in_features, layer.out_features) for layer in model.layers] + \
             [(model.out.in_features, model.out.out_features)]
    assert shapes == [(2, 128), (128, 128), (128, 128), (128, 2)]
    assert [(p.in_features, p.out_features) for p in model.time_projections] == [(32, 128)] * 3
    raw = NoiseMLP(T=100, time_embedding="raw")
    assert [(p.in_features, p.out_features) for p in raw.time_projections] == [(1, 128)] * 3


def test_embeddings_are_t_over_T_and_the_transformer_features():
    t = torch.tensor([0, 25, 99])
    assert torch.allclose(NoiseMLP(T=100, time_embedding="raw").embed_time(t), torch.tensor([[0.0], [0.25], [0.99]]))
    assert torch.equal(NoiseMLP(T=100, embedding_dim=16).embed_time(t), sinusoidal_embedding(t, 16))


@pytest.mark.parametrize("time_embedding", ["raw", "sinusoidal"])
def test_the_output_depends_on_t(time_embedding):
    torch.manual_seed(0)
    model = NoiseMLP(T=100, time_embedding=time_embedding)
    x = torch.randn(8, 2)
    assert not torch.allclose(model(x, torch.zeros(8, dtype=torch.long)), model(x, torch.full((8,), 99)))


def test_the_forward_pass_is_the_layers_with_the_time_added():
    torch.manual_seed(1)
    model = NoiseMLP(T=10, time_embedding="raw")
    x, t = torch.randn(4, 2), torch.tensor([0, 3, 5, 9])
    time = t.float()[:, None] / 10
    h = x
    for layer, projection in zip(model.layers, model.time_projections):
        h = torch.relu(layer(h) + projection(time))
    assert torch.allclose(model(x, t), model.out(h))


def test_other_dimensions_and_widths():
    model = NoiseMLP(T=20, dim=3, hidden=16, num_hidden=2)
    assert model(torch.randn(5, 3), torch.randint(0, 20, (5,))).shape == (5, 3)
    assert len(model.layers) == 2


def test_gradients_reach_every_parameter():
    model = NoiseMLP(T=10)
    model(torch.randn(6, 2), torch.randint(0, 10, (6,))).square().sum().backward()
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in model.parameters())


@pytest.mark.parametrize("kwargs, match", [
    (dict(T=0), "T must be"), (dict(T=10, hidden=0), "hidden"), (dict(T=10, time_embedding="learned"), "raw"),
    (dict(T=10, embedding_dim=7), "embedding_dim"), (dict(T=10.0), "T must be"),
])
def test_bad_constructor_arguments(kwargs, match):
    with pytest.raises(ValueError, match=match):
        NoiseMLP(**kwargs)


@pytest.mark.parametrize("x, t, match", [
    (torch.randn(4, 3), torch.zeros(4, dtype=torch.long), r"\(B, 2\)"),
    (torch.randn(4), torch.zeros(4, dtype=torch.long), r"\(B, 2\)"),
    (torch.randn(4, 2), torch.zeros(5, dtype=torch.long), r"shape \(4,\)"),
    (torch.randn(4, 2), 3, r"shape \(4,\)"),
])
def test_bad_forward_input(x, t, match):
    with pytest.raises(ValueError, match=match):
        NoiseMLP(T=10)(x, t)
