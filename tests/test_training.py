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
    """Stop after 10 steps, resume into fresh weights: the same run as 20 unbroken steps, bit for bit.
    The loss draws t and ε at every step, so a resume that forgot the random state would differ."""
    diffusion = dl.Diffusion(dl.schedules.cosine_beta_schedule(20))
    data = dl.data.butterfly(256, noise=0.02, generator=torch.Generator().manual_seed(0))
    loss = lambda m, x: diffusion.loss(m, x)  # noqa: E731
    options = dict(lr=0.01, ema_decay=0.5, progress=False)

    def fresh():
        torch.manual_seed(1)
        return dl.models.NoiseMLP(20, hidden=16), training.TensorBatches(data, 32, device="cpu", seed=7)

    model, batches = fresh()
    full = training.train(model, loss, batches, steps=20, **options)
    path = tmp_path / "ckpt.pt"
    first, batches = fresh()
    training.train(first, loss, batches, steps=10, checkpoint_path=path, **options)
    second, batches = fresh()
    torch.manual_seed(99)  # another random state: resume must bring back the saved one
    resumed = training.train(second, loss, batches, steps=20, checkpoint_path=path, resume=True, **options)
    assert resumed.resumed_from_step == 10 and resumed.steps == 20
    assert all(torch.equal(a, b) for a, b in zip(second.parameters(), model.parameters()))
    assert all(torch.equal(a, b) for a, b in zip(resumed.ema_model.parameters(), full.ema_model.parameters()))
    assert resumed.history == full.history
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


def test_a_gpu_before_ampere_gets_float16_though_torch_says_it_emulates_bf16(monkeypatch):
    """torch.cuda.is_bf16_supported() answers True on a T4 (emulation); its convolutions have no bf16 kernels."""
    from ddpm_lessons import precision
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda *args, **kwargs: True)
    for capability, expected in (((7, 5), torch.float16), ((8, 0), torch.bfloat16), ((9, 0), torch.bfloat16)):
        monkeypatch.setattr(torch.cuda, "get_device_capability", lambda device=None, c=capability: c)
        assert precision.autocast_dtype("cuda") is expected, capability


def test_mixed_precision_is_chosen_by_device_and_network():
    from ddpm_lessons import precision

    conv, mlp = nn.Conv2d(1, 1, 3), nn.Linear(3, 1)
    expected = torch.bfloat16 if precision.cpu_has_native_bf16() else None
    assert precision.autocast_dtype("cpu", conv) is expected and precision.autocast_dtype("cpu", mlp) is None
    result = training.train(mlp, _loss, _batches(), steps=2, progress=False)
    assert result.extras["precision"] == "fp32"


# ---------------------------------------------------------------- a careless student's training calls
@pytest.mark.parametrize("kwargs, words", [
    (dict(grad_clip=0.0), r"grad_clip .* must be a positive number"),
    (dict(grad_clip=-1.0), r"grad_clip"),
    (dict(lr=0.0), r"lr \(the learning rate\) must be a positive number"),
    (dict(lr=-1e-3), r"lr"),
    (dict(lr=float("nan")), r"lr"),
    (dict(callback=lambda *a: None, callback_every=2.5), r"callback_every must be a positive int"),
    (dict(weight_decay=-0.1), r"weight_decay must be a number >= 0"),
    (dict(max_seconds=0), r"max_seconds"),
])
def test_bad_training_settings(kwargs, words):
    with pytest.raises(ValueError, match=words):
        training.train(nn.Linear(3, 1), _loss, _batches(), steps=3, progress=False, **kwargs)


@pytest.mark.parametrize("loss_fn, words", [
    (lambda m, b: (m(b[:, :3]) - b[:, 3:]).pow(2), r"single number.*\.mean\(\)"),
    (lambda m, b: _loss(m, b).item(), r"got float \(return the tensor itself, not loss.item\(\)\)"),
    (lambda m, b: _loss(m, b).detach(), r"no gradient"),
])
def test_bad_loss_functions(loss_fn, words):
    with pytest.raises(ValueError, match=words):
        training.train(nn.Linear(3, 1), loss_fn, _batches(), steps=3, progress=False)


def test_a_class_instead_of_a_model():
    with pytest.raises(ValueError, match=r"the class Linear; pass an instance"):
        training.train(nn.Linear, _loss, _batches(), steps=3, progress=False)


def test_a_folder_as_checkpoint_path_fails_before_training(tmp_path):
    model = nn.Linear(3, 1)
    before = model.weight.detach().clone()
    with pytest.raises(ValueError, match="is a folder"):
        training.train(model, _loss, _batches(), steps=3, progress=False, checkpoint_path=tmp_path)
    assert torch.equal(model.weight, before)  # nothing was trained and lost


def test_tilde_in_the_checkpoint_path_is_the_home_folder(tmp_path, monkeypatch):
    monkeypatch.setenv("HOME", str(tmp_path))
    result = training.train(nn.Linear(3, 1), _loss, _batches(), steps=2, progress=False, checkpoint_path="~/run/c.pt")
    assert (tmp_path / "run" / "c.pt").is_file() and result.checkpoint_path == tmp_path / "run" / "c.pt"


def _mlp():
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(3, 64), nn.ReLU(), nn.Linear(64, 64), nn.ReLU(), nn.Linear(64, 1))


def test_an_exploding_loss_stops_with_advice():
    # lr = 50 is far too large for Adam: the loss climbs to ~1e16 without ever overflowing
    with pytest.raises(FloatingPointError, match=r"exploded.*smaller learning rate"):
        training.train(_mlp(), _loss, _batches(), steps=400, lr=50.0, progress=False)


def test_weights_that_diverge_on_the_last_step_are_not_returned():
    steps_seen = []

    def loss(m, b):
        steps_seen.append(1)
        return _nan_gradient(m, b) if len(steps_seen) == 3 else _loss(m, b)  # the last step breaks the weights

    with pytest.raises(FloatingPointError, match="weights are not finite"):
        training.train(nn.Linear(3, 1), loss, _batches(), steps=3, progress=False)


def _nan_gradient(model, batch):
    """A finite loss whose gradient is NaN (sqrt at 0): one optimizer step then writes NaN weights."""
    return (model(batch[:, :3]) * 0).sum() + torch.sqrt(model.weight.sum() * 0)


def test_resume_applies_a_new_learning_rate_and_says_so(tmp_path):
    path = tmp_path / "c.pt"
    training.train(nn.Linear(3, 1), _loss, _batches(), steps=4, lr=0.1, progress=False, checkpoint_path=path)
    model = nn.Linear(3, 1)
    with pytest.warns(training.ResumeWarning, match=r"lr 0.1 -> 0.01"):
        result = training.train(model, _loss, _batches(), steps=6, lr=0.01, progress=False, checkpoint_path=path,
                                resume=True)
    assert result.resumed_from_step == 4 and result.steps == 6


@pytest.mark.parametrize("changes, words", [
    (dict(optimizer="adamw"), r"optimizer='adam'.*resume=False"),
    (dict(steps=3), r"already at step 4, and steps=3.*steps > 4"),
    (dict(metadata={"schedule": "cosine"}), r"different schedule"),
])
def test_resume_refuses_what_it_cannot_apply(tmp_path, changes, words):
    path = tmp_path / "c.pt"
    training.train(nn.Linear(3, 1), _loss, _batches(), steps=4, progress=False, checkpoint_path=path,
                   metadata={"schedule": "linear"})
    options = dict(steps=6, progress=False, checkpoint_path=path, resume=True, metadata={"schedule": "linear"})
    with pytest.raises(ValueError, match=words):
        training.train(nn.Linear(3, 1), _loss, _batches(), **{**options, **changes})


@pytest.mark.parametrize("first, then, words", [
    (None, 0.9, "EMA starts now"),
    (0.9, None, "EMA weights are dropped"),
])
def test_resume_with_ema_switched_says_so(tmp_path, first, then, words):
    path = tmp_path / "c.pt"
    training.train(nn.Linear(3, 1), _loss, _batches(), steps=3, ema_decay=first, progress=False, checkpoint_path=path)
    with pytest.warns(training.ResumeWarning, match=words):
        result = training.train(nn.Linear(3, 1), _loss, _batches(), steps=5, ema_decay=then, progress=False,
                                checkpoint_path=path, resume=True)
    assert (result.ema_model is None) == (then is None)


def test_the_advice_after_a_blow_up_works(tmp_path):
    """Follow the error's advice: lower the learning rate and resume. Training continues from the last
    healthy checkpoint (the blown-up weights are never written) instead of failing again at once."""
    path = tmp_path / "c.pt"
    options = dict(progress=False, checkpoint_path=path, checkpoint_every_s=0.0)
    training.train(_mlp(), _loss, _batches(), steps=30, lr=1e-3, **options)            # healthy
    with pytest.warns(training.ResumeWarning), pytest.raises(FloatingPointError, match="exploded"):
        training.train(_mlp(), _loss, _batches(), steps=400, lr=50.0, resume=True, **options)
    assert checkpoints.load(path)["step"] == 30                                          # still the healthy one
    result = training.train(_mlp(), _loss, _batches(), steps=80, lr=1e-3, resume=True, **options)
    assert result.resumed_from_step == 30 and result.steps == 80
    assert max(result.history[30:]) < 10 * max(result.history[:30])                      # no new blow-up


def test_resume_from_a_dataloader_says_what_is_not_restored(tmp_path):
    path = tmp_path / "c.pt"
    loader = torch.utils.data.DataLoader(_regression(), batch_size=16, shuffle=True)
    training.train(nn.Linear(3, 1), _loss, training.forever(loader), steps=3, progress=False, checkpoint_path=path)
    with pytest.warns(training.ResumeWarning, match="order of the data starts afresh"):
        training.train(nn.Linear(3, 1), _loss, training.forever(loader), steps=5, progress=False,
                       checkpoint_path=path, resume=True)


def test_a_full_disk_keeps_the_result(tmp_path, monkeypatch):
    def no_space(*args, **kwargs):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(checkpoints, "write", no_space)
    with pytest.warns(training.CheckpointWarning, match="No space left on device"):
        result = training.train(nn.Linear(3, 1), _loss, _batches(), steps=5, progress=False,
                                checkpoint_path=tmp_path / "c.pt", checkpoint_every_s=0.0)
    assert result.steps == 5 and "No space" in result.extras["checkpoint_error"]


def test_a_time_budget_shows_a_true_total(capsys):
    result = training.train(nn.Linear(3, 1), _loss, _batches(), steps=10**6, max_seconds=0.2, desc="part 1")
    printed = capsys.readouterr().out.split("\r")[-1]
    assert result.stopped_by_time and f"{result.steps}/{result.steps}" in printed and "time budget" in printed


def test_a_training_run_does_not_make_a_once_warning_repeat():
    """train() used to wrap its progress bar in warnings.catch_warnings(), which resets Python's
    "already warned" registries: chapter 5's ScheduleWarning, filtered to show once, showed per seed."""
    import warnings

    training.train(nn.Linear(3, 1), _loss, _batches(), steps=1, lr=0.05, progress=False)   # first imports done
    with warnings.catch_warnings(record=True) as seen:
        warnings.simplefilter("once")
        for _ in range(3):
            warnings.warn("shown once, please", UserWarning)
            training.train(nn.Linear(3, 1), _loss, _batches(), steps=1, lr=0.05, progress=False)
    assert sum("shown once" in str(w.message) for w in seen) == 1


def test_cuda_graph_changes_nothing_off_a_gpu_and_must_be_a_bool():
    runs = []
    for flag in (True, False):
        torch.manual_seed(0)
        runs.append(training.train(nn.Linear(3, 1), _loss, _batches(), steps=5, lr=0.05, progress=False,
                                   cuda_graph=flag))
    assert runs[0].history == runs[1].history and runs[0].extras["cuda_graph"] is False
    with pytest.raises(ValueError, match="cuda_graph must be True or False"):
        training.train(nn.Linear(3, 1), _loss, _batches(), steps=1, progress=False, cuda_graph="yes")


def test_resume_on_a_cpu_from_a_checkpoint_of_a_graphed_gpu_run(tmp_path):
    """A checkpoint keeps the optimizer's capturable mode (a CUDA-graphed run saves True); resuming on a
    CPU, where Adam refuses capturable=True, must switch it back."""
    path = tmp_path / "ckpt.pt"
    torch.manual_seed(0)
    model = nn.Linear(3, 1)
    training.train(model, _loss, _batches(), steps=3, lr=0.05, optimizer="adamw", progress=False, checkpoint_path=path)
    state = checkpoints.load(path)
    for group in state["optimizer"]["param_groups"]:
        group["capturable"] = True   # what a graphed run on a GPU writes
    checkpoints.write(path, checkpoints.serialize(state))
    resumed = training.train(model, _loss, _batches(), steps=6, lr=0.05, optimizer="adamw", progress=False,
                             checkpoint_path=path, resume=True)
    assert resumed.steps == 6 and all(not g["capturable"] for g in resumed.optimizer.param_groups)


def test_set_capturable_moves_the_step_counts_and_back():
    from ddpm_lessons import cuda_graphs

    model = nn.Linear(3, 1)
    optimizer = torch.optim.AdamW(model.parameters(), lr=0.1)
    _loss(model, next(_batches())).backward()
    optimizer.step()
    cuda_graphs.set_capturable(optimizer, True)
    steps = [s["step"] for s in optimizer.state.values()]
    assert optimizer.param_groups[0]["capturable"] and all(s.dtype == torch.float32 and s.item() == 1 for s in steps)
    cuda_graphs.set_capturable(optimizer, False)
    assert not optimizer.param_groups[0]["capturable"]
    optimizer.step()   # an eager step works again (Adam on a CPU refuses capturable=True)
    assert all(s["step"].item() == 2 for s in optimizer.state.values())


def test_the_recordable_ema_update_is_the_averaged_models_own():
    """cuda_graphs.ema_update (no read-back, so a CUDA graph can record it) = AveragedModel.update_parameters."""
    from torch.optim.swa_utils import AveragedModel, get_ema_multi_avg_fn

    from ddpm_lessons import cuda_graphs

    torch.manual_seed(0)
    model = dl.models.UNet(dl.models.UNetConfig(dim=8, dim_mults=(1, 2)))
    a, b = (AveragedModel(model, multi_avg_fn=get_ema_multi_avg_fn(0.9), use_buffers=True) for _ in range(2))
    for _ in range(3):
        with torch.no_grad():
            for p in model.parameters():
                p.add_(torch.randn_like(p))
        a.update_parameters(model)
        if b.n_averaged == 0:
            b.update_parameters(model)   # the first update copies; ema_update is for the later ones
        else:
            cuda_graphs.ema_update(b, model)
            b.n_averaged += 1
    assert all(torch.equal(x, y) for x, y in zip(a.parameters(), b.parameters()))
    assert int(a.n_averaged) == int(b.n_averaged) == 3
    assert not all(torch.equal(x, y) for x, y in zip(a.module.parameters(), model.parameters()))
