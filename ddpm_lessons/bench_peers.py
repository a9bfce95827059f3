"""The networks a reader would pick instead of chapter 5's U-Net, at a matched parameter count.

Used by ``python -m ddpm_lessons.bench --against diffusers,lucidrains`` to measure ours against
them on the same machine, with the same loss and sampler. Neither package is a dependency: each
peer is skipped, with the command that installs it, when its package is missing.

- ``diffusers``: Hugging Face's ``UNet2DModel`` (ResNet blocks, attention in the lower levels),
  the network of the Hugging Face diffusion course;
- ``lucidrains``: ``Unet`` of ``denoising-diffusion-pytorch`` (the layout this book's U-Net and
  The Annotated Diffusion Model follow).

For each, the configuration whose parameter count is closest to ours is chosen from a small family
of the peer's usual shapes (28x28 images: three levels).
"""
from __future__ import annotations

import importlib.util
import statistics

import torch
from torch import nn

from .models.unet import UNet, UNetConfig
from .utils import count_parameters, synchronized_time

PEERS = {
    "diffusers": ("diffusers", "pip install diffusers"),
    "lucidrains": ("denoising_diffusion_pytorch", "pip install denoising-diffusion-pytorch"),
}


class PeerMissing(RuntimeError):
    """The peer's package is not installed; the message says how to install it."""


class _DiffusersUNet(nn.Module):
    """``UNet2DModel`` called as ``model(x_t, t)`` -> predicted noise, like the book's networks."""

    def __init__(self, **config):
        super().__init__()
        from diffusers import UNet2DModel

        self.net = UNet2DModel(**config)

    def forward(self, x, t):
        return self.net(x, t).sample


def _diffusers_family(channels: int):
    for width in range(8, 73, 8):
        for mults in ((1, 2, 2), (1, 2, 4)):
            for layers in (1, 2):
                yield (f"UNet2DModel(block_out_channels={tuple(width * m for m in mults)}, layers_per_block={layers})",
                       lambda width=width, mults=mults, layers=layers: _DiffusersUNet(
                           sample_size=28, in_channels=channels, out_channels=channels, layers_per_block=layers,
                           block_out_channels=tuple(width * m for m in mults), norm_num_groups=8, attention_head_dim=16,
                           down_block_types=("DownBlock2D", "AttnDownBlock2D", "AttnDownBlock2D"),
                           up_block_types=("AttnUpBlock2D", "AttnUpBlock2D", "UpBlock2D")))


def _lucidrains_family(channels: int, config: UNetConfig):
    from denoising_diffusion_pytorch import Unet

    for dim in range(8, 73, 4):
        yield (f"Unet(dim={dim}, dim_mults={config.dim_mults}, attn_heads={config.attn_heads}, "
               f"attn_dim_head={config.attn_dim_head})",
               lambda dim=dim: Unet(dim=dim, dim_mults=config.dim_mults, channels=channels,
                                    attn_heads=config.attn_heads, attn_dim_head=config.attn_dim_head))


def peer_model(name: str, config: UNetConfig) -> tuple[nn.Module, str, int]:
    """The peer ``name``'s network closest in parameter count to ``UNet(config)``: (model, description,
    parameters). Raises :class:`PeerMissing` with the install command when its package is absent."""
    if name not in PEERS:
        raise ValueError(f"bench: unknown peer {name!r}; choose from {', '.join(PEERS)}")
    package, install = PEERS[name]
    if importlib.util.find_spec(package) is None:
        raise PeerMissing(f"{name} is not installed (it is not a dependency of the book); to compare with it: {install}")
    target = count_parameters(UNet(config))
    family = (_diffusers_family(config.channels) if name == "diffusers"
              else _lucidrains_family(config.channels, config))
    candidates = []
    for description, build in family:
        with torch.device("meta"):  # counted without allocating or initialising any weight
            candidates.append((abs(count_parameters(build()) - target), description, build))
    _, description, build = min(candidates, key=lambda c: c[0])
    with torch.random.fork_rng():
        torch.manual_seed(0)
        model = build()
    return model, description, count_parameters(model)


def _train_rate(model, batch_size: int, steps: int, amp_dtype, generator: torch.Generator,
                device: torch.device) -> float:
    """Images/s of ``steps`` AdamW steps of the DDPM loss (Algorithm 1) after two warm-up steps."""
    from .diffusion import Diffusion
    from .schedules import cosine_beta_schedule

    diffusion = Diffusion(cosine_beta_schedule(1000))
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-4)
    x0 = torch.rand(batch_size, 1, 28, 28, generator=generator, device=device) * 2 - 1
    model.train()

    def step():
        with torch.autocast(device.type, dtype=amp_dtype, enabled=amp_dtype is not None):
            loss = diffusion.loss(model, x0, generator=generator)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()

    step(), step()
    started = synchronized_time(device)
    for _ in range(steps):
        step()
    return batch_size * steps / (synchronized_time(device) - started)


@torch.no_grad()
def _sample_rate(model, batch_size: int, calls: int, amp_dtype, device: torch.device) -> float:
    """Images/s of denoiser calls, as in a sampler's loop (one call per image and step)."""
    model.eval()
    x = torch.randn(batch_size, 1, 28, 28, device=device)
    t = torch.full((batch_size,), 500, dtype=torch.long, device=device)
    with torch.autocast(device.type, dtype=amp_dtype, enabled=amp_dtype is not None):
        model(x, t), model(x, t)
        started = synchronized_time(device)
        for _ in range(calls):
            model(x, t)
        return batch_size * calls / (synchronized_time(device) - started)


def compare(config: UNetConfig, peers, batch_size: int = 32, steps: int = 6, repeats: int = 5,
            amp: bool = True, device="cpu") -> dict:
    """Training and denoiser images/s of ``UNet(config)`` and of each peer at a matched parameter count,
    measured A/B interleaved (the order alternates between repeats) on ``device``; ratios ours/peer per
    repeat, with their median, min and max. Peers whose package is missing are reported as skipped.
    Every network runs eagerly (no CUDA graph: the networks are compared, not the samplers)."""
    from .precision import autocast_dtype, name

    device = torch.device(device)
    torch.manual_seed(0)
    models = {"ours": (UNet(config), "UNet(" + ", ".join(f"{k}={v}" for k, v in config.to_dict().items()
                                                           if v is not None) + ")")}
    skipped = {}
    for peer in peers:
        try:
            model, description, _ = peer_model(peer, config)
            models[peer] = (model, description)
        except PeerMissing as missing:
            skipped[peer] = str(missing)
    models = {key: (model.to(device), description) for key, (model, description) in models.items()}
    generator = torch.Generator(device).manual_seed(0)
    runs = {key: {"train": [], "sample": []} for key in models}
    dtypes = {key: autocast_dtype(device, model) if amp else None for key, (model, _) in models.items()}
    for repeat in range(repeats):
        for key in (list(models) if repeat % 2 == 0 else list(models)[::-1]):
            model = models[key][0]
            runs[key]["train"].append(_train_rate(model, batch_size, steps, dtypes[key], generator, device))
            runs[key]["sample"].append(_sample_rate(model, batch_size, steps, dtypes[key], device))
    result = {"batch_size": batch_size, "steps": steps, "repeats": repeats, "threads": torch.get_num_threads(),
              "models": {key: {"description": description, "parameters": count_parameters(model),
                               "precision": name(dtypes[key]),
                               **{f"{what}_images_per_s": statistics.median(runs[key][what]) for what in ("train", "sample")},
                               "runs": runs[key]} for key, (model, description) in models.items()},
              "skipped": skipped}
    for peer in models:
        if peer == "ours":
            continue
        for what in ("train", "sample"):
            ratios = [a / b for a, b in zip(runs["ours"][what], runs[peer][what])]
            result[f"ours_over_{peer}_{what}"] = {"median": statistics.median(ratios), "min": min(ratios),
                                                  "max": max(ratios)}
    return result
