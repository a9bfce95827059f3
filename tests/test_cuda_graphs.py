"""CUDA graphs for the samplers (ddpm_lessons/cuda_graphs.py): the same numbers as the eager model.

The CPU tests run everywhere; the CUDA tests run where a GPU is (they were run on an H100 for the
first edition's GPU chapters: see CHANGELOG.md).
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
