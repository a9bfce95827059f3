"""CUDA graphs (ddpm_lessons/cuda_graphs.py): the samplers and the training step give the numbers of the
eager model.

The CPU tests run everywhere; the CUDA tests run where a GPU is (an H100 lent to the sessions that
built them: see CHANGELOG.md).
"""
import pytest
import torch

import ddpm_lessons as dl
from ddpm_lessons import cuda_graphs, ddim, guidance
from ddpm_lessons.models import UNet, UNetConfig

cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")


def test_graphed_returns_the_model_itself_off_cuda():
    model = UNet(UNetConfig(dim=8))
    assert cuda_graphs.graphed(model, "cpu") is model
    assert cuda_graphs.graphed(model, torch.device("cpu")) is model


def test_capturing_is_false_outside_a_recording():
    assert not dl._checks.capturing(torch.zeros(3))


def test_wrapper_runs_the_model_eagerly_on_cpu_tensors():
    model = UNet(UNetConfig(dim=8)).eval()
    wrapper = cuda_graphs.GraphedDenoiser(model)
    x, t = torch.randn(2, 1, 28, 28), torch.tensor([3, 7])
    with torch.no_grad():
        assert torch.equal(wrapper(x, t), model(x, t))
    assert wrapper.graphs == {} and wrapper.fallback_reason is None
    assert list(wrapper.parameters())[0] is next(model.parameters())


def test_samplers_take_cuda_graph_and_refuse_a_non_bool():
    d = dl.Diffusion(dl.schedules.cosine_beta_schedule(5))
    model = UNet(UNetConfig(dim=8)).eval()
    a = d.sample(model, (2, 1, 28, 28), generator=0, cuda_graph=True)
    b = d.sample(model, (2, 1, 28, 28), generator=0, cuda_graph=False)
    assert torch.equal(a, b)   # on the CPU the flag changes nothing
    with pytest.raises(ValueError, match="cuda_graph"):
        d.sample(model, (2, 1, 28, 28), cuda_graph="yes")
    with pytest.raises(ValueError, match="cuda_graph"):
        ddim.sample(d, model, (2, 1, 28, 28), steps=2, cuda_graph=1.0)


@cuda
@pytest.mark.parametrize("amp", [False, True])
def test_graph_replay_equals_the_eager_model(amp):
    torch.manual_seed(0)
    model = UNet(UNetConfig(dim=8)).cuda().eval()
    wrapper = cuda_graphs.GraphedDenoiser(model)
    dtype = torch.bfloat16 if amp else torch.float32
    with torch.no_grad(), torch.autocast("cuda", dtype=dtype, enabled=amp):
        for step in range(4):   # the first call records, the later ones replay with new inputs
            x = torch.randn(3, 1, 28, 28, device="cuda")
            t = torch.randint(0, 100, (3,), device="cuda")
            out = wrapper(x, t)
            assert torch.allclose(out, model(x, t), atol=1e-2 if amp else 1e-5)
    assert wrapper.fallback_reason is None and len(wrapper.graphs) == 1


@cuda
def test_graphed_sampler_gives_the_eager_samples():
    torch.manual_seed(0)
    model = UNet(UNetConfig(dim=8)).cuda().eval()
    d = dl.Diffusion(dl.schedules.cosine_beta_schedule(20))
    runs = [d.sample(model, (4, 1, 28, 28), generator=torch.Generator("cuda").manual_seed(1), cuda_graph=flag,
                     amp=False) for flag in (True, False)]
    assert torch.allclose(runs[0], runs[1], atol=1e-4)
    runs = [ddim.sample(d, model, (4, 1, 28, 28), steps=5, generator=torch.Generator("cuda").manual_seed(1),
                        cuda_graph=flag, amp=False) for flag in (True, False)]
    assert torch.allclose(runs[0], runs[1], atol=1e-4)


@cuda
def test_guided_model_is_recorded_without_a_warning(recwarn):
    torch.manual_seed(0)
    model = UNet(UNetConfig(dim=8, num_classes=3)).cuda().eval()
    y = torch.tensor([0, 1, 2, 1])
    d = dl.Diffusion(dl.schedules.cosine_beta_schedule(10))
    guided = guidance.Guided(model, y, 2.0)
    a = d.sample(guided, (4, 1, 28, 28), generator=torch.Generator("cuda").manual_seed(2), amp=False)
    b = d.sample(guided, (4, 1, 28, 28), generator=torch.Generator("cuda").manual_seed(2), amp=False,
                 cuda_graph=False)
    assert torch.allclose(a, b, atol=1e-4)
    assert not [w for w in recwarn if issubclass(w.category, cuda_graphs.GraphWarning)]


@cuda
def test_a_model_that_reads_values_back_runs_eagerly_with_a_warning():
    class ReadsBack(torch.nn.Module):
        def forward(self, x, t):
            return x * float(t.float().mean())   # a read-back to the CPU: cannot be recorded

    d = dl.Diffusion(dl.schedules.cosine_beta_schedule(5))
    with pytest.warns(cuda_graphs.GraphWarning, match="cuda_graph=False"):
        x = d.sample(ReadsBack(), (2, 1, 28, 28), device="cuda", generator=torch.Generator("cuda").manual_seed(0))
    assert torch.isfinite(x).all()
    # found before any recording began: CUDA's default generator and allocator are left as they were
    assert torch.isfinite(torch.randn(4, device="cuda")).all() and not torch.cuda.is_current_stream_capturing()
    assert torch.cuda.get_sync_debug_mode() == 0


def _fixed_loss(model, x):
    """A loss without random draws, so that the graphed and the eager runs can be compared number for number."""
    t = torch.arange(len(x), device=x.device) * 7 % 100
    return torch.nn.functional.mse_loss(model(x, t), torch.flip(x, dims=[-1]))


def _images(n=64, seed=0):
    return torch.randint(0, 256, (n, 1, 28, 28), generator=torch.Generator().manual_seed(seed), dtype=torch.uint8)


def _weights(result, part="model"):
    return torch.cat([p.detach().flatten() for p in getattr(result, part).parameters()])


def _train(cuda_graph, loss_fn=_fixed_loss, batches=None, steps=8, **options):
    torch.manual_seed(0)
    model = UNet(UNetConfig(dim=8, dim_mults=(1, 2))).cuda()
    batches = batches if batches is not None else dl.training.TensorBatches(_images(), 4, device="cuda", seed=3)
    options = {"lr": 1e-3, "optimizer": "adamw", "weight_decay": 0.01, "ema_decay": 0.9, "grad_clip": 0.5,
               "amp": False, "progress": False, **options}
    return dl.training.train(model, loss_fn, batches, steps=steps, cuda_graph=cuda_graph, **options)


@cuda
def test_graphed_training_is_the_eager_training():
    """Loss, backward, clipping, AdamW and EMA replayed from a graph: the same weights as eager steps."""
    graphed, eager, shorter = _train(True), _train(False), _train(False, steps=7)
    assert graphed.extras["cuda_graph"] is True and eager.extras["cuda_graph"] is False
    assert graphed.history == pytest.approx(eager.history, rel=1e-4)
    # Adam divides by √v: where a gradient is ~0, rounding (cuDNN's, capturable Adam's bias correction) moves a
    # weight by up to lr. So compare whole weight vectors, against how far 8 steps moved them; one step fewer
    # (the error a replay that skipped an update would make) is ~1/8 of that.
    for part in ("model", "ema_model"):
        start = _weights(_train(False, steps=1, lr=1e-12), part)
        moved = (_weights(eager, part) - start).norm()
        assert (_weights(graphed, part) - _weights(eager, part)).norm() < 0.02 * moved
        assert (_weights(shorter, part) - _weights(eager, part)).norm() > 0.05 * moved
    assert int(graphed.ema_model.n_averaged) == int(eager.ema_model.n_averaged) == 8
    assert not any(torch.equal(a, b) for a, b in zip(graphed.model.parameters(), graphed.ema_model.module.parameters()))


@cuda
def test_graphed_training_draws_new_random_numbers_at_every_replay():
    """t and ε are drawn inside the recorded step: each replay must draw new ones, not repeat the recorded."""
    def noise_loss(model, x):
        return model(x, torch.zeros(len(x), dtype=torch.long, device=x.device)).mean() * 0 + torch.randn((), device=x.device)

    result = _train(True, noise_loss, steps=10, ema_decay=None, grad_clip=None)
    assert result.extras["cuda_graph"] is True and len(set(result.history)) == 10


@cuda
def test_graphed_training_of_the_book_loss_in_bf16_learns():
    d = dl.Diffusion(dl.schedules.cosine_beta_schedule(100))
    result = _train(True, lambda m, x: d.loss(m, x), steps=60, amp=True, lr=3e-3, channels_last=True)
    assert result.extras["cuda_graph"] is True and result.extras["precision"] == "bf16"
    assert dl.training.smoothed(result.history[-10:], 10) < 0.8 * dl.training.smoothed(result.history[:5], 5)


@cuda
def test_a_smaller_last_batch_takes_an_eager_step():
    images = dl.data.to_model_range(_images(14)).cuda()
    loader = torch.utils.data.DataLoader(images, batch_size=4)   # batches of 4, 4, 4, 2: the graph is of 4
    graphed = _train(True, batches=dl.training.forever(loader), steps=12)
    eager = _train(False, batches=dl.training.forever(loader), steps=12)
    assert graphed.extras["cuda_graph"] is True and graphed.images == eager.images == 4 * 9 + 2 * 3
    assert (_weights(graphed) - _weights(eager)).norm() < 0.02 * (_weights(eager) - _weights(_train(False, steps=1, lr=1e-12))).norm()


@cuda
def test_a_loss_that_reads_values_back_trains_eagerly_with_a_warning():
    def reads_back(model, x):
        scale = float(x.abs().mean())   # a read-back to the CPU: cannot be recorded
        return _fixed_loss(model, x) * scale

    with pytest.warns(cuda_graphs.GraphWarning, match="cuda_graph=False"):
        result = _train(True, reads_back)
    eager = _train(False, reads_back)
    assert result.extras["cuda_graph"] is False and result.history == pytest.approx(eager.history, rel=1e-4)
    assert not result.optimizer.param_groups[0]["capturable"]
    assert torch.isfinite(torch.randn(4, device="cuda")).all() and torch.cuda.get_sync_debug_mode() == 0


@cuda
def test_a_graphed_run_resumed_from_a_checkpoint_repeats_the_unbroken_run(tmp_path):
    """Chapter 5's check, on the GPU: eager steps and replays compute the same numbers, random t and ε
    included, so 6 steps + resume + 6 steps = 12 unbroken steps, bit for bit."""
    d = dl.Diffusion(dl.schedules.cosine_beta_schedule(100))
    loss = lambda m, x: d.loss(m, x)   # noqa: E731

    def run(steps, path=None, resume=False):
        torch.manual_seed(0)
        model = UNet(UNetConfig(dim=8, dim_mults=(1, 2))).cuda()
        if resume:
            torch.manual_seed(123)   # another random state: resume must restore the saved one
        batches = dl.training.TensorBatches(_images(), 4, device="cuda", seed=3)
        return dl.training.train(model, loss, batches, steps=steps, lr=1e-3, ema_decay=0.9, progress=False,
                                 checkpoint_path=path, resume=resume)

    unbroken = run(12)
    run(6, tmp_path / "c.pt")
    resumed = run(12, tmp_path / "c.pt", resume=True)
    assert unbroken.extras["cuda_graph"] and resumed.extras["cuda_graph"] and resumed.resumed_from_step == 6
    assert resumed.history == unbroken.history
    assert all(torch.equal(a, b) for a, b in zip(resumed.model.parameters(), unbroken.model.parameters()))
    assert all(torch.equal(a, b) for a, b in zip(resumed.ema_model.parameters(), unbroken.ema_model.parameters()))


def test_pytorchs_prototype_notice_for_the_sync_debug_mode_stays_off_the_page():
    """Checked in a fresh interpreter, as a notebook sees it (pytest sets its own warning filters per test)."""
    import subprocess
    import sys
    code = ("import warnings, ddpm_lessons\n"
            "warnings.warn('Synchronization debug mode is a prototype feature and does not yet detect all "
            "synchronizing operations', UserWarning)\n"
            "warnings.warn('another notice', UserWarning)\n")
    printed = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stderr
    assert "another notice" in printed and "Synchronization" not in printed
