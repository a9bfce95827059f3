"""python -m ddpm_lessons.bench on a tiny configuration (not a timed test: it checks what is reported)."""
import json

import pytest
import torch

from ddpm_lessons import bench
from ddpm_lessons.models import UNetConfig

TINY = dict(device="cpu", batch_size=4, steps=2, warmup=1, repeats=1, sample_batch=2, sample_T=2, ddim_steps=3,
            model_config=UNetConfig(dim=8, dim_mults=(1, 2), attn_heads=1, attn_dim_head=8))


def test_bench_run_reports_medians_and_speedup():
    result = bench.run(**{**TINY, "repeats": 2})
    for key in ("train_fast_images_per_s", "train_plain_images_per_s", "sample_images_per_s"):
        assert result[key] > 0
    assert result["speedup_fast_over_plain"] == pytest.approx(
        result["train_fast_images_per_s"] / result["train_plain_images_per_s"])
    assert len(result["runs"]["train_fast"]) == 2
    ratio = result["ratios_per_repeat"]["fast_over_plain"]   # per repeat: fast and plain ran side by side
    each = [a / b for a, b in zip(result["runs"]["train_fast"], result["runs"]["train_plain"])]
    assert (ratio["min"], ratio["max"]) == (min(each), max(each)) and ratio["min"] <= ratio["median"] <= ratio["max"]
    assert "train_fast_no_graph" not in result["runs"]    # graphs are for CUDA only
    assert result["options"]["sample_T"] == 2 and result["dataset_images"] == 800
    assert result["denoiser_evaluations_per_s"] == pytest.approx(2 * result["sample_images_per_s"])
    assert result["amp_dtype"] in ("fp32", "bf16") and result["model"]["parameters"] > 0
    json.dumps(result)  # serialisable


def test_bench_reports_ddim_beside_ddpm():
    """DDIM in S steps beside DDPM's T-step chain: the same network, so S < T steps must be faster per image."""
    result = bench.run(**{**TINY, "sample_T": 12, "ddim_steps": 2})
    assert result["ddim_steps"] == 2 and result["options"]["ddim_steps"] == 2
    assert result["ddim_sample_images_per_s"] > 0 and len(result["runs"]["ddim_sample"]) == 1
    assert result["ddim_sample_images_per_s"] > result["sample_images_per_s"]   # 2 model calls per image, not 12
    assert bench.DEFAULTS["cpu"]["ddim_steps"] == bench.DEFAULTS["cuda"]["ddim_steps"] == 50


def test_bench_main_prints_json(capsys):
    bench.main(["--device", "cpu", "--batch-size", "4", "--steps", "1", "--warmup", "1", "--repeats", "1",
                "--sample-batch", "2", "--sample-T", "1", "--ddim-steps", "2", "--dim", "8", "--dim-mults", "1,2"])
    printed = json.loads(capsys.readouterr().out)
    assert printed["model"]["dim_mults"] == [1, 2] and printed["options"]["steps"] == 1 and printed["ddim_steps"] == 2


def test_bench_bad_options():
    with pytest.raises(ValueError, match="steps"):
        bench.run(**{**TINY, "steps": 0})
    with pytest.raises(SystemExit):
        bench.main(["--dim-mults", "1,x"])


def test_bench_against_a_missing_peer_says_how_to_install_it(monkeypatch, capsys):
    from ddpm_lessons import bench_peers

    monkeypatch.setattr(bench_peers.importlib.util, "find_spec", lambda name: None)
    result = bench.main(["--against", "lucidrains", "--dim", "8", "--dim-mults", "1,2", "--steps", "1",
                         "--repeats", "1", "--batch-size", "2"])
    assert "pip install denoising-diffusion-pytorch" in result["skipped"]["lucidrains"]
    assert result["models"]["ours"]["train_images_per_s"] > 0 and "ours_over_lucidrains_train" not in result
    assert "skipped lucidrains" in capsys.readouterr().err


def test_bench_against_an_unknown_peer():
    with pytest.raises(SystemExit):
        bench.main(["--against", "keras"])


def test_peer_models_match_the_parameter_count():
    from ddpm_lessons import bench_peers
    from ddpm_lessons.utils import count_parameters
    from ddpm_lessons.models import UNet

    for peer in bench_peers.PEERS:
        package = bench_peers.PEERS[peer][0]
        if bench_peers.importlib.util.find_spec(package) is None:
            continue   # not installed here: nothing to compare
        config = UNetConfig()
        model, description, parameters = bench_peers.peer_model(peer, config)
        assert abs(parameters / count_parameters(UNet(config)) - 1) < 0.1, description


def test_bench_profile_needs_cuda_and_says_so(capsys):
    with pytest.raises(ValueError, match="needs a CUDA device"):
        bench.launch_profile(UNetConfig(dim=8), "cpu")
    with pytest.raises(SystemExit):
        bench.main(["--profile", "--device", "cpu"])
    assert "py-spy" in capsys.readouterr().err


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_bench_profile_on_a_gpu_splits_wall_and_kernel_time():
    result = bench.launch_profile(UNetConfig(dim=8, dim_mults=(1, 2)), "cuda", batch_size=4, steps=2)
    assert result["train_ms"] > 0 and 0 < result["train_kernel_ms"] and result["train_kernels"] > 50
    assert result["forward_kernels"] < result["train_kernels"] and result["forward_cuda_graph_ms"] > 0
    assert result["train_cuda_graph_ms"] > 0
    json.dumps(result)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_bench_on_a_gpu_reports_the_cuda_graph_speedup():
    result = bench.run(**{**TINY, "device": "cuda"})
    assert result["sample_no_graph_images_per_s"] > 0
    assert result["speedup_graph_over_no_graph"] == pytest.approx(
        result["sample_images_per_s"] / result["sample_no_graph_images_per_s"])
    assert result["train_fast_no_graph_images_per_s"] > 0
    ratios = result["ratios_per_repeat"]
    assert set(ratios) == {"fast_over_plain", "fast_no_graph_over_plain", "sample_graph_over_no_graph"}
    assert ratios["fast_over_plain"]["min"] <= ratios["fast_over_plain"]["median"] <= ratios["fast_over_plain"]["max"]
