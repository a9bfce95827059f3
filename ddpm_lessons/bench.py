"""Benchmark of chapter 5: training and sampling images/s of the chapter's U-Net, on whatever device.

    python -m ddpm_lessons.bench                  # defaults sized for the device (small on a CPU)
    python -m ddpm_lessons.bench --repeats 5 --steps 50 --batch-size 128 --ddim-steps 50
    python -m ddpm_lessons.bench --against diffusers,lucidrains        # the peers, matched in size (CPU)
    python -m ddpm_lessons.bench --against diffusers,lucidrains --device cuda   # ... on the GPU
    python -m ddpm_lessons.bench --profile --device cuda   # wall time vs the GPU kernels' time
    python -m ddpm_lessons.bench --against diffusers,lucidrains --dim 28 --dim-mults 1,2,4 --batch-size 128

With ``--against``, it prints the comparison of :func:`ddpm_lessons.bench_peers.compare` instead:
training and denoiser images/s of ours and of each peer (diffusers' ``UNet2DModel``, lucidrains'
``Unet``) at a matched parameter count, A/B interleaved, with the ratios' median, min and max. The
peers are not dependencies: a missing one is skipped with the command that installs it.

Prints one JSON object: the median (and every run) of

- ``train_fast``: :func:`ddpm_lessons.training.train` on the fast path: the dataset on the device as
  uint8 (:class:`~ddpm_lessons.training.TensorBatches`), mixed precision where it helps (bf16 on
  GPUs and CPUs that have it; :mod:`ddpm_lessons.precision`), channels-last and the training step
  replayed from a CUDA graph on CUDA (:mod:`ddpm_lessons.cuda_graphs`); on CUDA also
  ``train_fast_no_graph``, the same without the graph;
- ``train_plain``: the plain loop: fp32, a torchvision dataset through a ``DataLoader``, no AMP, no graph;
- ``sample``: images/s of the ``Diffusion`` sampler (a full chain of T steps per image); on CUDA
  also ``sample_no_graph``, the same without CUDA graphs (:mod:`ddpm_lessons.cuda_graphs`);
- ``ddim_sample``: images/s of DDIM (chapter 6) in ``ddim_steps`` steps (default 50) per image.

Warm-up steps (cuDNN autotuning, allocator) are excluded from every timing.
"""
from __future__ import annotations

import argparse
import json
import statistics
import sys
import warnings

import torch

from . import _checks, bench_peers, ddim, precision, settings, training
from .data import fashion_mnist, fashion_mnist_tensors
from .diffusion import Diffusion, ScheduleWarning
from .models.unet import UNet, UNetConfig
from .schedules import cosine_beta_schedule
from .utils import count_parameters, synchronized_time

DEFAULTS = {  # per device type: small on a CPU so that the benchmark ends in a few minutes
    "cpu": dict(batch_size=32, steps=6, warmup=2, repeats=3, sample_batch=32, sample_T=10, ddim_steps=50),
    "cuda": dict(batch_size=128, steps=60, warmup=15, repeats=5, sample_batch=256, sample_T=100, ddim_steps=50),
}


def _timed_train(model, loss_fn, batches, steps: int, warmup: int, **kwargs) -> float:
    """Images/s of :func:`training.train` over ``steps`` steps that follow ``warmup`` untimed ones."""
    marks = []
    training.train(model, loss_fn, batches, steps=warmup + steps, lr=1e-4, optimizer="adamw", progress=False,
                   callback=lambda step, m, r: marks.append((r.images, r.seconds)), callback_every=warmup, **kwargs)
    (images0, seconds0), (images1, seconds1) = marks[0], marks[-1]
    return (images1 - images0) / (seconds1 - seconds0)


def train_fast(model_config: UNetConfig, images_uint8: torch.Tensor, diffusion: Diffusion, batch_size: int,
               steps: int, warmup: int, device: torch.device, seed: int = 0, cuda_graph: bool = True) -> float:
    """Training images/s on the fast path (uint8 data on the device, AMP; channels-last and, with
    ``cuda_graph``, the step replayed from a CUDA graph on CUDA)."""
    torch.manual_seed(seed)
    model = UNet(model_config).to(device)
    batches = training.TensorBatches(images_uint8, batch_size, device=device, seed=seed)
    return _timed_train(model, lambda m, x: diffusion.loss(m, x), batches, steps, warmup,
                        amp=True, channels_last=True, cuda_graph=cuda_graph)


def train_plain(model_config: UNetConfig, dataset, diffusion: Diffusion, batch_size: int, steps: int, warmup: int,
                device: torch.device, seed: int = 0, num_workers: int = 0) -> float:
    """Training images/s of the plain loop: fp32, a DataLoader over the torchvision dataset."""
    torch.manual_seed(seed)
    model = UNet(model_config).to(device)
    loader = torch.utils.data.DataLoader(dataset, batch_size=batch_size, shuffle=True, drop_last=True,
                                         num_workers=num_workers)
    batches = training.forever(loader)
    return _timed_train(model, lambda m, batch: diffusion.loss(m, batch[0]), batches, steps, warmup,
                        amp=False, channels_last=False, device=device, cuda_graph=False)


def _timed_sampling(model_config: UNetConfig, batch_size: int, device: torch.device, seed: int, sampler) -> float:
    """Images/s of ``sampler(model, shape)``, timed after a warm-up call of ``sampler(model, shape, warmup=True)``."""
    torch.manual_seed(seed)
    model = UNet(model_config).to(device).eval()
    shape = (batch_size, model.channels, 28, 28)
    sampler(model, shape, warmup=True)
    started = synchronized_time(device)
    sampler(model, shape, warmup=False)
    return batch_size / (synchronized_time(device) - started)


def sample_rate(model_config: UNetConfig, diffusion: Diffusion, batch_size: int, device: torch.device,
                seed: int = 0, cuda_graph: bool = True) -> float:
    """Images/s of the sampler: a batch through all T reverse steps, timed after one warm-up step
    (with ``cuda_graph`` on a GPU, recording the graph is part of the timed run, as it is for a reader)."""
    def sampler(model, shape, warmup):
        chain = diffusion
        if warmup:
            with warnings.catch_warnings():  # a one-step chain for the warm-up: its ᾱ_T is far from 0
                warnings.simplefilter("ignore", ScheduleWarning)
                chain = Diffusion(diffusion.float64["betas"][:1])
        return chain.sample(model, shape, device=device, cuda_graph=cuda_graph)
    return _timed_sampling(model_config, batch_size, device, seed, sampler)


def ddim_sample_rate(model_config: UNetConfig, diffusion: Diffusion, batch_size: int, device: torch.device,
                     steps: int = 50, seed: int = 0) -> float:
    """Images/s of DDIM (η = 0) in ``steps`` steps (chapter 6), timed after a one-step warm-up."""
    def sampler(model, shape, warmup):
        return ddim.sample(diffusion, model, shape, steps=1 if warmup else steps, device=device)
    return _timed_sampling(model_config, batch_size, device, seed, sampler)


def run(device=None, batch_size=None, steps=None, warmup=None, repeats=None, sample_batch=None,
        sample_T=None, model_config: UNetConfig | None = None, ddim_steps=None) -> dict:
    """Run the benchmark; returns the dictionary that ``python -m ddpm_lessons.bench`` prints as JSON."""
    device = torch.device(device) if device is not None else settings.get_device()
    defaults = DEFAULTS["cuda" if device.type == "cuda" else "cpu"]
    options = dict(batch_size=batch_size, steps=steps, warmup=warmup, repeats=repeats,
                   sample_batch=sample_batch, sample_T=sample_T, ddim_steps=ddim_steps)
    options = {k: defaults[k] if v is None else v for k, v in options.items()}
    for key, value in options.items():
        _checks.positive_int(value, key, "bench")
    model_config = UNetConfig() if model_config is None else model_config

    images, _ = fashion_mnist_tensors(train=True)
    dataset = fashion_mnist(train=True)
    diffusion = Diffusion(cosine_beta_schedule(options["sample_T"]))
    train_diffusion = Diffusion(cosine_beta_schedule(1000))
    ddim_diffusion = Diffusion(cosine_beta_schedule(max(options["sample_T"], options["ddim_steps"])))
    runs = {"train_fast": [], "train_plain": [], "sample": [], "ddim_sample": []}
    if device.type == "cuda":
        runs["sample_no_graph"], runs["train_fast_no_graph"] = [], []
    for repeat in range(options["repeats"]):
        # alternate the order so that no path always runs on a warmer machine
        order = [name for name in runs if name.startswith("train")]
        order = order if repeat % 2 == 0 else order[::-1]
        for name in order:
            if name.startswith("train_fast"):
                rate = train_fast(model_config, images, train_diffusion, options["batch_size"], options["steps"],
                                  options["warmup"], device, seed=repeat, cuda_graph=name == "train_fast")
            else:
                rate = train_plain(model_config, dataset, train_diffusion, options["batch_size"], options["steps"],
                                   options["warmup"], device, seed=repeat)
            runs[name].append(rate)
        runs["sample"].append(sample_rate(model_config, diffusion, options["sample_batch"], device, seed=repeat))
        if "sample_no_graph" in runs:
            runs["sample_no_graph"].append(sample_rate(model_config, diffusion, options["sample_batch"], device,
                                                       seed=repeat, cuda_graph=False))
        runs["ddim_sample"].append(ddim_sample_rate(model_config, ddim_diffusion, options["sample_batch"], device,
                                                    options["ddim_steps"], seed=repeat))

    median = {name: statistics.median(values) for name, values in runs.items()}
    pairs = {"fast_over_plain": ("train_fast", "train_plain"),
             "fast_no_graph_over_plain": ("train_fast_no_graph", "train_plain"),
             "sample_graph_over_no_graph": ("sample", "sample_no_graph")}
    ratios = {name: _ratio_summary(runs[a], runs[b]) for name, (a, b) in pairs.items() if a in runs and b in runs}
    return {
        "device": settings.device_name(device),
        "torch": torch.__version__,
        "amp_dtype": precision.name(precision.autocast_dtype(device, UNet(model_config))),
        "model": {**model_config.to_dict(), "parameters": count_parameters(UNet(model_config))},
        "options": options,
        "dataset_images": len(images),
        "train_fast_images_per_s": median["train_fast"],
        "train_plain_images_per_s": median["train_plain"],
        "speedup_fast_over_plain": median["train_fast"] / median["train_plain"],
        "sample_images_per_s": median["sample"],
        "sample_T": options["sample_T"],
        "denoiser_evaluations_per_s": median["sample"] * options["sample_T"],
        "ddim_sample_images_per_s": median["ddim_sample"],
        "ddim_steps": options["ddim_steps"],
        **({"train_fast_no_graph_images_per_s": median["train_fast_no_graph"],
            "sample_no_graph_images_per_s": median["sample_no_graph"],
            "speedup_graph_over_no_graph": median["sample"] / median["sample_no_graph"]}
           if "sample_no_graph" in median else {}),
        "ratios_per_repeat": ratios,
        "runs": runs,
    }


def _ratio_summary(numerators, denominators) -> dict:
    """Median, min and max of the ratios of runs made in the same repeat (so a drift of the machine
    between repeats does not enter a ratio)."""
    ratios = [a / b for a, b in zip(numerators, denominators)]
    return {"median": statistics.median(ratios), "min": min(ratios), "max": max(ratios)}


def launch_profile(model_config: UNetConfig, device, batch_size: int = 32, steps: int = 10) -> dict:
    """Where a GPU's time goes (CUDA only): per training step (bf16 autocast, AdamW) and per forward
    call, the wall time against the summed time of the CUDA kernels and their number, and both
    replayed from a CUDA graph. Wall time far above kernel time means the step is bound by
    launching kernels from Python, not by the GPU's arithmetic."""
    from torch.profiler import ProfilerActivity, profile

    from .cuda_graphs import GraphedDenoiser, GraphedTrainingStep

    device = torch.device(device)
    if device.type != "cuda":
        raise ValueError(f"bench --profile: needs a CUDA device (it compares wall time with the GPU kernels' time), "
                         f"got {device}; on a CPU use a Python profiler such as py-spy")

    def milliseconds(fn, n):
        started = synchronized_time(device)
        for _ in range(n):
            fn()
        return (synchronized_time(device) - started) / n * 1e3

    def kernels(fn, n):
        with profile(activities=[ProfilerActivity.CPU, ProfilerActivity.CUDA]) as prof:
            for _ in range(n):
                fn()
            torch.cuda.synchronize(device)
        events = [e for e in prof.key_averages() if e.device_type == torch.autograd.DeviceType.CUDA]
        return sum(e.self_device_time_total for e in events) / n / 1e3, sum(e.count for e in events) / n

    torch.manual_seed(0)
    diffusion = Diffusion(cosine_beta_schedule(1000))
    model = UNet(model_config).to(device)
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-4)
    x0 = torch.rand(batch_size, model.channels, 28, 28, device=device) * 2 - 1
    dtype = precision.autocast_dtype(device, model)

    def train_step():
        with torch.autocast("cuda", dtype=dtype):
            loss = diffusion.loss(model, x0)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()

    graphed_train_step = GraphedTrainingStep(model, lambda m, x: diffusion.loss(m, x), optimizer, amp_dtype=dtype)

    x_t, t = torch.randn_like(x0), torch.full((batch_size,), 500, device=device)
    graphed = GraphedDenoiser(model)

    def forward():
        model(x_t, t)

    result = {"device": settings.device_name(device), "batch_size": batch_size, "precision": precision.name(dtype)}
    for _ in range(3):
        train_step()
    result["train_ms"] = milliseconds(train_step, steps * 3)
    result["train_kernel_ms"], result["train_kernels"] = kernels(train_step, steps)
    for _ in range(3):
        graphed_train_step(x0)   # the first call records
    result["train_cuda_graph_ms"] = milliseconds(lambda: graphed_train_step(x0), steps * 3)
    model.eval()
    with torch.no_grad(), torch.autocast("cuda", dtype=dtype):
        for _ in range(3):
            forward(), graphed(x_t, t)
        result["forward_ms"] = milliseconds(forward, steps * 3)
        result["forward_kernel_ms"], result["forward_kernels"] = kernels(forward, steps)
        result["forward_cuda_graph_ms"] = milliseconds(lambda: graphed(x_t, t), steps * 3)
    return result


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(prog="python -m ddpm_lessons.bench", description=__doc__.split("\n")[0])
    parser.add_argument("--device", default=None, help="cuda, cpu, ... (default: the fastest available)")
    for name in ("batch-size", "steps", "warmup", "repeats", "sample-batch", "sample-T", "ddim-steps"):
        parser.add_argument(f"--{name}", type=int, default=None, help="default: sized for the device")
    parser.add_argument("--dim", type=int, default=UNetConfig.dim)
    parser.add_argument("--dim-mults", default=",".join(map(str, UNetConfig.dim_mults)),
                        help="comma-separated, e.g. 1,2,4")
    parser.add_argument("--attn-heads", type=int, default=UNetConfig.attn_heads)
    parser.add_argument("--attn-dim-head", type=int, default=UNetConfig.attn_dim_head)
    parser.add_argument("--full-res-attention", choices=("yes", "no"),
                        default="yes" if UNetConfig.full_res_attention else "no")
    parser.add_argument("--against", default="", help="compare with peers at a matched parameter count: "
                        "diffusers, lucidrains (comma-separated; each must be installed, see --help of the error)")
    parser.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's own choice)")
    parser.add_argument("--profile", action="store_true", help="CUDA only: wall time against the GPU kernels' time "
                        "per training step and per forward call (is the network launch-bound?)")
    args = parser.parse_args(argv)
    try:
        dim_mults = tuple(int(m) for m in args.dim_mults.split(","))
    except ValueError:
        parser.error(f"--dim-mults must be comma-separated ints, got {args.dim_mults!r}")
    config = UNetConfig(dim=args.dim, dim_mults=dim_mults, attn_heads=args.attn_heads,
                        attn_dim_head=args.attn_dim_head, full_res_attention=args.full_res_attention == "yes")
    if args.threads:
        torch.set_num_threads(args.threads)
    if args.profile:
        try:
            result = launch_profile(config, args.device or settings.get_device(), batch_size=args.batch_size or 32)
        except ValueError as error:
            parser.error(str(error))
        json.dump(result, sys.stdout, indent=2)
        print()
        return result
    peers = [p.strip() for p in args.against.split(",") if p.strip()]
    for peer in peers:
        if peer not in bench_peers.PEERS:
            parser.error(f"--against: unknown peer {peer!r}; choose from {', '.join(bench_peers.PEERS)}")
    if peers:
        device = torch.device(args.device) if args.device else torch.device("cpu")
        options = DEFAULTS["cuda" if device.type == "cuda" else "cpu"]
        result = bench_peers.compare(config, peers, batch_size=args.batch_size or options["batch_size"],
                                     steps=args.steps or options["steps"], repeats=args.repeats or 5, device=device)
        result["device"] = settings.device_name(device)
        json.dump(result, sys.stdout, indent=2)
        print()
        for peer, message in result["skipped"].items():
            print(f"skipped {peer}: {message}", file=sys.stderr)
        return result
    result = run(device=args.device, batch_size=args.batch_size, steps=args.steps, warmup=args.warmup,
                 repeats=args.repeats, sample_batch=args.sample_batch, sample_T=args.sample_T, model_config=config,
                 ddim_steps=args.ddim_steps)
    json.dump(result, sys.stdout, indent=2)
    print()
    return result


if __name__ == "__main__":
    main()
