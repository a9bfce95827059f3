import pytest
import torch
from torch import nn

import ddpm_lessons as dl
from ddpm_lessons import checkpoints, training


def _regression():
    torch.manual_seed(0)
    x = torch.randn(256, 3)
    y = x @ torch.tensor([[1.0], [-2.0], [0.5]])
    return torch.cat([x, y], dim=1)


def _loss(model, batch):
    return nn.functional.mse_loss(model(batch[:, :3]), batch[:, 3:])


def _batches(seed=0):
    return training.TensorBatches(_regression(), batch_size=32, device="cpu", seed=seed)


def test_train_reduces_the_loss_and_counts():
    model = nn.Linear(3, 1)
    result = training.train(model, _loss, _batches(), steps=200, lr=0.05, progress=False)
    assert result.steps == len(result.history) == 200
    assert training.smoothed(result.history, 20) < 0.01 * result.history[0]
    assert result.images == 200 * 32 and result.images_per_second > 0
    assert not model.training  # left in eval mode


def test_tensor_batches_uint8_scaling_labels_and_state():
    images = torch.randint(0, 256, (50, 1, 4, 4), dtype=torch.uint8)
    labels = torch.arange(50)
    batches = training.TensorBatches(images, 8, device="cpu", labels=labels)
    x, y = next(batches)
    assert x.dtype == torch.float32 and x.shape == (8, 1, 4, 4) and -1 <= x.min() and x.max() <= 1
    assert torch.equal(dl.data.to_model_range(images[y]), x)  # labels travel with their images
    state = batches.state_dict()
    first = next(batches)[1]
    batches.load_state_dict(state)
    assert torch.equal(next(batches)[1], first)
    with pytest.raises(ValueError):
        training.TensorBatches(images, 0)
    with pytest.raises(ValueError):
        training.TensorBatches(images, 4, labels=torch.arange(3))


def test_forever_cycles_a_loader():
    loader = torch.utils.data.DataLoader(torch.arange(5), batch_size=2)
    batches = training.forever(loader)
    got = [next(batches).tolist() for _ in range(4)]
    assert got == [[0, 1], [2, 3], [4], [0, 1]]


def test_ema_follows_the_weights():
    model = nn.Linear(3, 1)
    result = training.train(model, _loss, _batches(), steps=300, lr=0.05, ema_decay=0.9, progress=False)
    ema_weight = result.ema_model.module.weight
    assert torch.allclose(ema_weight, model.weight, atol=0.05)
    assert not torch.equal(ema_weight, model.weight)


def test_resume_continues_exactly(tmp_path):
    path = tmp_path / "ckpt.pt"
    torch.manual_seed(1)
    straight = nn.Linear(3, 1)
    initial = {k: v.clone() for k, v in straight.state_dict().items()}
    full = training.train(straight, _loss, _batches(), steps=20, lr=0.01, ema_decay=0.5, progress=False)

    first = nn.Linear(3, 1)
    first.load_state_dict(initial)
    training.train(first, _loss, _batches(), steps=10, lr=0.01, ema_decay=0.5, progress=False,
                   checkpoint_path=path)
    second = nn.Linear(3, 1)  # fresh weights: resume must replace them
    resumed = training.train(second, _loss, _batches(seed=99), steps=20, lr=0.01, ema_decay=0.5,
                             progress=False, checkpoint_path=path, resume=True)
    assert resumed.resumed_from_step == 10 and resumed.steps == 20
    assert torch.allclose(second.weight, straight.weight)
    assert torch.allclose(resumed.ema_model.module.weight, full.ema_model.module.weight)
    assert resumed.history == pytest.approx(full.history)
    assert [p.name for p in tmp_path.iterdir()] == ["ckpt.pt"]  # no temporary files left behind


def test_resume_refuses_missing_corrupt_and_mismatched(tmp_path):
    model = nn.Linear(3, 1)
    kwargs = dict(steps=5, progress=False, resume=True)
    with pytest.raises(checkpoints.CheckpointError, match="no checkpoint"):
        training.train(model, _loss, _batches(), checkpoint_path=tmp_path / "none.pt", **kwargs)
    good = tmp_path / "good.pt"
    training.train(model, _loss, _batches(), steps=2, progress=False, checkpoint_path=good)
    truncated = tmp_path / "truncated.pt"
    truncated.write_bytes(good.read_bytes()[: good.stat().st_size // 2])
    with pytest.raises(checkpoints.CheckpointError, match="corrupt"):
        training.train(model, _loss, _batches(), checkpoint_path=truncated, **kwargs)
    with pytest.raises(ValueError, match="does not fit this model"):
        training.train(nn.Linear(3, 2), lambda m, b: m(b[:, :3]).sum(), _batches(), checkpoint_path=good, **kwargs)


def test_non_finite_loss_stops_with_advice():
    model = nn.Linear(3, 1)
    with pytest.raises(FloatingPointError, match="learning rate"):
        training.train(model, lambda m, b: m(b[:, :3]).sum() * float("nan"), _batches(), steps=3, progress=False)


def test_callback_and_max_seconds():
    seen = []
    model = nn.Linear(3, 1)
    training.train(model, _loss, _batches(), steps=10, progress=False, callback_every=4,
                   callback=lambda step, m, r: seen.append((step, len(r.history), m.training)))
    assert seen == [(4, 4, False), (8, 8, False), (10, 10, False)]
    result = training.train(nn.Linear(3, 1), _loss, _batches(), steps=10**6, max_seconds=0.2, progress=False)
    assert 1 <= result.steps < 10**6


@pytest.mark.parametrize("kwargs, message", [
    (dict(steps=0), "steps"), (dict(steps=5, optimizer="sgd"), "optimizer"),
    (dict(steps=5, ema_decay=1.5), "ema_decay"), (dict(steps=5, resume=True), "checkpoint_path"),
])
def test_train_bad_arguments(kwargs, message):
    with pytest.raises(ValueError, match=message):
        training.train(nn.Linear(3, 1), _loss, _batches(), progress=False, **kwargs)


def test_train_rejects_a_non_iterator():
    with pytest.raises(ValueError, match="iterator"):
        training.train(nn.Linear(3, 1), _loss, [torch.zeros(2, 4)], steps=1, progress=False)


def test_autocast_dtype_off_cuda_is_fp32():
    assert training.autocast_dtype(torch.device("cpu")) is None
