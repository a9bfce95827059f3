"""The U-Net of chapter 5: the DDPM noise predictor ε_θ(x_t, t) (Ho et al. 2020, appendix B).

An encoder of ResNet (or ConvNeXt) blocks that halves the resolution at each level, a middle with
full self-attention at the lowest resolution, and a decoder that doubles it back while concatenating
the encoder's features of the same size (the skips of Ronneberger et al. 2015). Every block gets the
time embedding. With ``len(dim_mults) = L`` levels the image is halved ``L - 1`` times, so height and
width must be divisible by ``2^(L-1)``: 28x28 works with up to three levels (28 -> 14 -> 7), 32x32
with up to six.

With ``num_classes`` (chapter 7) the network is class-conditional, ε_θ(x_t, t, y): a learned
embedding of the label y is added to the time embedding, so every block hears about the class
where it hears about the step. Index ``num_classes`` is a learned "no label" token, the
unconditional model ε_θ(x_t, t, ∅) of classifier-free guidance (Ho & Salimans 2022).
"""
from __future__ import annotations

from dataclasses import asdict, dataclass
from functools import partial

import torch
from torch import nn

from .. import _checks
from .attention import Attention, LinearAttention
from .blocks import ConvNextBlock, Downsample, PreNorm, Residual, ResnetBlock, TimeEmbedding, Upsample

BLOCKS = ("resnet", "convnext")


@dataclass(frozen=True)
class UNetConfig:
    """The shape of a :class:`UNet` (as nanoGPT's ``GPTConfig``); the defaults are chapter 5's network.

    ``dim``: channels of the first level; level i has ``dim · dim_mults[i]``. ``block``: "resnet"
    (scale-and-shift time conditioning) or "convnext". ``attn_heads``/``attn_dim_head``: the
    attention's shape (linear attention in every level, full attention in the middle);
    ``full_res_attention=False`` leaves the linear attention out at the full resolution. ``T``: the
    number of diffusion steps it is trained for, when known: then steps t >= T and a ``Diffusion``
    with another T are refused with a clear error (the time embedding only knows 0 … T-1).
    ``num_classes``: None (chapter 5, unconditional) or the number of classes C of a class-conditional
    network (chapter 7), whose labels are 0 … C − 1 and C for "no label".
    """

    dim: int = 16
    channels: int = 1
    dim_mults: tuple = (1, 2, 2)
    block: str = "resnet"
    groups: int = 8
    attn_heads: int = 2
    attn_dim_head: int = 16
    full_res_attention: bool = True
    T: int | None = None
    num_classes: int | None = None

    def __post_init__(self):
        where = "UNetConfig"
        _checks.even_int(self.dim, "dim", where)
        _checks.positive_int(self.channels, "channels", where)
        if not isinstance(self.dim_mults, (tuple, list)) or not self.dim_mults:
            raise ValueError(f"{where}: dim_mults must be a non-empty sequence of positive ints, got {self.dim_mults!r}")
        for m in self.dim_mults:
            _checks.positive_int(m, "every entry of dim_mults", where)
        object.__setattr__(self, "dim_mults", tuple(self.dim_mults))
        _checks.one_of(self.block, BLOCKS, "block", where)
        for name in ("groups", "attn_heads", "attn_dim_head"):
            _checks.positive_int(getattr(self, name), name, where)
        if not isinstance(self.full_res_attention, bool):
            raise ValueError(f"{where}: full_res_attention must be True or False, got {self.full_res_attention!r}")
        if self.T is not None:
            _checks.positive_int(self.T, "T (the number of diffusion steps)", where)
        if self.num_classes is not None:
            _checks.positive_int(self.num_classes, "num_classes (None for an unconditional U-Net)", where)

    def to_dict(self) -> dict:
        """Plain values (for a checkpoint or JSON): ``UNetConfig(**config.to_dict())`` rebuilds it."""
        return {**asdict(self), "dim_mults": list(self.dim_mults)}


class UNet(nn.Module):
    """ε_θ(x_t, t): images (B, channels, H, W) and steps t (B,) -> predicted noise (B, channels, H, W).

    Built from a :class:`UNetConfig` (default: chapter 5's), kept as ``model.config``. With
    ``config.num_classes`` it is ε_θ(x_t, t, y), called ``model(x_t, t, y)`` (see :meth:`conditioning`).
    """

    def __init__(self, config: UNetConfig | None = None, **options):
        super().__init__()
        if options:  # the keyword form of earlier versions (and of other libraries)
            raise ValueError(f"UNet takes one UNetConfig: UNet(UNetConfig({', '.join(f'{k}={v!r}' for k, v in options.items())}))")
        if config is None:
            config = UNetConfig()
        if not isinstance(config, UNetConfig):
            raise ValueError(f"UNet: expected a UNetConfig, e.g. UNet(UNetConfig(dim=32)); got {config!r}")
        self.config = config
        dim, channels, dim_mults = config.dim, config.channels, config.dim_mults
        self.dim, self.channels, self.dim_mults = dim, channels, dim_mults
        time_dim = 4 * dim
        make_block = (partial(ResnetBlock, time_dim=time_dim, groups=config.groups) if config.block == "resnet"
                      else partial(ConvNextBlock, time_dim=time_dim))
        attn_heads, attn_dim_head = config.attn_heads, config.attn_dim_head
        linear_attention = partial(LinearAttention, heads=attn_heads, dim_head=attn_dim_head)

        self.time_embedding = TimeEmbedding(dim)
        self.label_embedding = None
        if config.num_classes is not None:  # one row per class, and the last one for "no label"
            self.label_embedding = nn.Embedding(config.num_classes + 1, time_dim)
            nn.init.zeros_(self.label_embedding.weight)  # untrained, it is the unconditional network
        self.init_conv = nn.Conv2d(channels, dim, 7, padding=3)
        dims = [dim] + [dim * m for m in dim_mults]
        in_out = list(zip(dims[:-1], dims[1:]))
        last = len(in_out) - 1

        self.downs = nn.ModuleList()
        for level, (d_in, d_out) in enumerate(in_out):
            self.downs.append(nn.ModuleList([
                make_block(d_in, d_out),
                make_block(d_out, d_out),
                Residual(PreNorm(d_out, linear_attention(d_out))) if level or config.full_res_attention else nn.Identity(),
                Downsample(d_out) if level < last else nn.Identity(),
            ]))
        mid = dims[-1]
        self.mid_block1 = make_block(mid, mid)
        self.mid_attention = Residual(PreNorm(mid, Attention(mid, heads=attn_heads, dim_head=attn_dim_head)))
        self.mid_block2 = make_block(mid, mid)

        self.ups = nn.ModuleList()
        for level, (d_in, d_out) in enumerate(reversed(in_out)):
            self.ups.append(nn.ModuleList([
                make_block(2 * d_out, d_in),  # concatenated with the encoder's skip of the same level
                make_block(d_in, d_in),
                Residual(PreNorm(d_in, linear_attention(d_in))) if level < last or config.full_res_attention
                else nn.Identity(),
                Upsample(d_in) if level < last else nn.Identity(),
            ]))
        self.final_block = make_block(2 * dim, dim)
        self.final_conv = nn.Conv2d(dim, channels, 1)

    @property
    def T(self) -> int | None:
        """The number of diffusion steps it is built for (``config.T``), or None when not stated."""
        return self.config.T

    @property
    def num_classes(self) -> int | None:
        """C for a class-conditional network (labels 0 … C − 1, and C = "no label"), else None."""
        return self.config.num_classes

    @property
    def size_multiple(self) -> int:
        """Height and width must be multiples of this: 2 to the number of downsamplings."""
        return 2 ** (len(self.dim_mults) - 1)

    def check_input(self, x: torch.Tensor, t: torch.Tensor) -> None:
        """A clear ValueError for inputs this U-Net cannot take (shape, channels, size, steps)."""
        x = _checks.network_input(x, self, "UNet", f"images (B, {self.channels}, H, W) in [-1, 1]")
        if x.device.type == "cpu" and x.dtype == torch.float16:
            raise ValueError("UNet: float16 weights do not run on the CPU (PyTorch's GroupNorm has no float16 kernel "
                             "there); keep the network in float32: bf16 is used automatically where the CPU computes "
                             "it natively (dl.precision), or move the network to a GPU for float16")
        if x.dim() != 4:
            raise ValueError(f"UNet: expected images (B, {self.channels}, H, W), got {tuple(x.shape)}")
        if x.shape[1] != self.channels:
            raise ValueError(f"UNet: built for {self.channels} channel(s), got images with {x.shape[1]}: "
                             f"shape {tuple(x.shape)}")
        height, width = x.shape[-2:]
        m = self.size_multiple
        if height % m or width % m:
            raise ValueError(
                f"UNet: with dim_mults={self.dim_mults} the image is halved {len(self.dim_mults) - 1} times, so "
                f"height and width must be multiples of {m}; got {height}x{width}. Pad the images "
                f"(e.g. to {-(-height // m) * m}x{-(-width // m) * m}) or use fewer levels in dim_mults."
            )
        _checks.network_steps(t, x.shape[0], self.T, "UNet")

    def conditioning(self, t: torch.Tensor, y: torch.Tensor | None = None) -> torch.Tensor:
        """What every block is told: emb(t), plus emb(y) on a class-conditional network (chapter 7).

        ``y`` (B,) holds labels 0 … C − 1, or C for "no label"; None means "no label" for the whole
        batch. An unconditional network refuses labels.
        """
        time_emb = self.time_embedding(t)
        if self.label_embedding is None:
            if y is not None:
                raise ValueError("UNet: this network was built without num_classes, so it takes no labels y; "
                                 "call model(x_t, t), or build a conditional one with UNetConfig(num_classes=10)")
            return time_emb
        if y is None:
            y = torch.full((len(t),), self.num_classes, dtype=torch.long, device=t.device)
        y = _checks.labels(y, self.num_classes, len(t), "UNet").to(t.device)
        return time_emb + self.label_embedding(y)

    def forward(self, x: torch.Tensor, t: torch.Tensor, y: torch.Tensor | None = None) -> torch.Tensor:
        self.check_input(x, t)
        time_emb = self.conditioning(t, y)
        h = self.init_conv(x)
        skips = [h]
        for block1, block2, attention, downsample in self.downs:
            h = block1(h, time_emb)
            h = block2(h, time_emb)
            h = attention(h)
            skips.append(h)
            h = downsample(h)
        h = self.mid_block1(h, time_emb)
        h = self.mid_attention(h)
        h = self.mid_block2(h, time_emb)
        for block1, block2, attention, upsample in self.ups:
            h = block1(torch.cat([h, skips.pop()], dim=1), time_emb)
            h = block2(h, time_emb)
            h = attention(h)
            h = upsample(h)
        h = self.final_block(torch.cat([h, skips.pop()], dim=1), time_emb)
        return self.final_conv(h)

