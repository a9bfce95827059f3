"""Diagrams of the book, drawn by code (matplotlib only) so that anyone can redraw them.

Each function returns a matplotlib figure drawn for the book's column: at most
:data:`~ddpm_lessons.viz.WIDTH` inches wide, text of at least 10 pt, every label a text artist in the
book's notation (x_0 the data, x_T the noise: the paper's subscripts).
"""
from __future__ import annotations

import matplotlib.pyplot as plt
from matplotlib.patches import Circle, FancyArrowPatch

from . import _checks
from .viz import WIDTH

FORWARD = r"$q(x_t \mid x_{t-1})$"
REVERSE = r"$p_\theta(x_{t-1} \mid x_t)$"
NODES = (r"$x_0$", r"$x_1$", r"$\cdots$", r"$x_{t-1}$", r"$x_t$", r"$\cdots$", r"$x_T$")
"""The states of the chain from left to right; the dots stand for the states left out."""


def _arrow(ax, start: float, end: float, y: float, bend: float, **style) -> None:
    """A curved arrow from node ``start`` to node ``end`` (x positions), leaving and entering at height y."""
    ax.add_patch(FancyArrowPatch((start, y), (end, y), connectionstyle=f"arc3,rad={bend}",
                                 arrowstyle="-|>", mutation_scale=12, lw=1.3, shrinkA=0, shrinkB=0, **style))


def diffusion_chain(width: float = WIDTH):
    """The forward and reverse processes as a graphical model (chapters 2 and 3; Ho et al. 2020, Fig. 2).

    States x_0 (the data) → x_1 → … → x_{t−1} → x_t → … → x_T (noise). The dashed arrows above are
    the forward steps q(x_t | x_{t−1}), fixed (eq. 2); the solid arrows below are the reverse steps
    p_θ(x_{t−1} | x_t), learned (eq. 11, Algorithm 2). Returns the figure, ``width`` inches wide
    (at most :data:`~ddpm_lessons.viz.WIDTH`).
    """
    width = _checks.number(width, "width", "diffusion_chain()", low=3.0, high=WIDTH)
    height = 0.44 * width
    fig = plt.figure(figsize=(width, height), layout="none")
    ax = fig.add_axes((0, 0, 1, 1))
    ax.set_xlim(0, width)
    ax.set_ylim(0, height)
    ax.set_axis_off()

    margin, radius, y = 0.4, 0.27, 0.5 * height
    xs = [margin + i * (width - 2 * margin) / (len(NODES) - 1) for i in range(len(NODES))]
    for x, label in zip(xs, NODES):
        if label != r"$\cdots$":
            ax.add_patch(Circle((x, y), radius, facecolor="white", edgecolor="black", lw=1.3))
        ax.text(x, y, label, ha="center", va="center", fontsize=11)
    # an arrow leaves a circle where it meets it (0.6 r above or below the centre: 0.8 r to the side)
    half = [0.15 if label == r"$\cdots$" else 0.8 * radius for label in NODES]
    for (left, a), (right, b) in zip(zip(xs, half), zip(xs[1:], half[1:])):
        _arrow(ax, left + a, right - b, y + 0.6 * radius, -0.5, color="0.35", linestyle="--")
        _arrow(ax, right - b, left + a, y - 0.6 * radius, -0.5, color="C0")

    middle = (xs[3] + xs[4]) / 2
    ax.text(middle, y + 2.1 * radius, FORWARD, ha="center", va="bottom", fontsize=11, color="0.25")
    ax.text(middle, y - 2.1 * radius, REVERSE, ha="center", va="top", fontsize=11, color="C0")
    ax.text(xs[0], y - 1.6 * radius, "data", ha="center", va="top", fontsize=10)
    ax.text(xs[-1], y - 1.6 * radius, "noise", ha="center", va="top", fontsize=10)
    ax.text(width / 2, height - 0.08, "forward: fixed, adds noise  →", ha="center", va="top", fontsize=10,
            color="0.25")
    ax.text(width / 2, 0.08, "←  reverse: learned, removes noise", ha="center", va="bottom", fontsize=10,
            color="C0")
    return fig


def unet_shapes(model, image_size: int = 28) -> dict:
    """The real shapes inside a :class:`~ddpm_lessons.models.UNet`, traced with a forward pass of one
    image: per level, the resolution and channels after its blocks, whether it has attention, and the
    middle's. What :func:`unet` draws (chapter 5)."""
    import torch
    from torch import nn

    size = _checks.positive_int(image_size, "image_size", "unet_shapes()")
    seen = {}

    def record(key):
        def hook(module, inputs, output):
            seen.setdefault(key, tuple(output.shape))  # returns None: the output is left as it is
        return hook

    hooks = [module.register_forward_hook(record(key))
             for key, module in [("input", model.init_conv)] +
             [(f"down{i}", level[1]) for i, level in enumerate(model.downs)] +
             [(f"up{i}", level[1]) for i, level in enumerate(model.ups)] +
             [("mid", model.mid_block2), ("final", model.final_block)]]
    try:
        weight = next(model.parameters())
        with torch.no_grad():
            model(torch.zeros(1, model.channels, size, size, dtype=weight.dtype, device=weight.device),
                  torch.zeros(1, dtype=torch.long, device=weight.device))
    finally:
        for hook in hooks:
            hook.remove()
    levels = [{"channels": seen[f"down{i}"][1], "size": seen[f"down{i}"][2],
               "attention": not isinstance(level[2], nn.Identity)} for i, level in enumerate(model.downs)]
    ups = [{"channels": seen[f"up{i}"][1], "size": seen[f"up{i}"][2], "attention": not isinstance(level[2], nn.Identity)}
           for i, level in enumerate(model.ups)][::-1]  # listed from the full resolution down, as the encoder's
    return {"image": (model.channels, size), "first": seen["input"][1], "levels": levels, "ups": ups,
            "mid": {"channels": seen["mid"][1], "size": seen["mid"][2]}, "time_dim": 4 * model.dim,
            "block": model.config.block}


def unet(model, image_size: int = 28, width: float = WIDTH):
    """The chapter-5 U-Net as a labelled diagram with its real channel counts and resolutions.

    Encoder levels down the left, decoder levels up the right, skips across, the middle at the
    bottom; every number comes from :func:`unet_shapes` (a traced forward pass), so the picture
    cannot drift from the code.
    """
    from matplotlib.patches import FancyBboxPatch

    width = _checks.number(width, "width", "unet()", low=3.0, high=WIDTH)
    shapes = unet_shapes(model, image_size)
    levels, block = shapes["levels"], "ResNet" if shapes["block"] == "resnet" else "ConvNeXt"
    rows = len(levels) + 1
    row_height = 0.78
    height = row_height * rows + 1.15
    fig = plt.figure(figsize=(width, height), layout="none")
    ax = fig.add_axes((0, 0, 1, 1))
    ax.set_xlim(0, width)
    ax.set_ylim(0, height)
    ax.set_axis_off()
    box_width, left, right = 0.39 * width, 0.05 * width, 0.56 * width

    def box(x, y, text, color):
        ax.add_patch(FancyBboxPatch((x, y - 0.25), box_width, 0.5, boxstyle="round,pad=0.02", facecolor=color,
                                    edgecolor="0.3", lw=1))
        ax.text(x + box_width / 2, y, text, ha="center", va="center", fontsize=10)

    def label(level):
        attention = " + lin. attn" if level["attention"] else ""
        return f'2 {block}{attention}\n{level["size"]}×{level["size"]}, {level["channels"]} ch'

    top = height - 0.95
    for i, (level, up) in enumerate(zip(levels, shapes["ups"])):
        y = top - i * row_height
        box(left, y, label(level), "#dbe9f6")
        box(right, y, label(up), "#fde3cf")
        ax.annotate("", (right, y), (left + box_width, y), arrowprops=dict(arrowstyle="-|>", color="0.45", lw=1,
                                                                             linestyle="--"))
        ax.text(width / 2, y + 0.07, "concat", ha="center", va="bottom", fontsize=10, color="0.35")
        if i < len(levels) - 1:
            for x, color, start, end in ((left, "C0", y - 0.27, y - row_height + 0.27),
                                         (right, "C1", y - row_height + 0.27, y - 0.27)):
                ax.annotate("", (x + box_width / 2, end), (x + box_width / 2, start),
                            arrowprops=dict(arrowstyle="-|>", color=color, lw=1.2))
            ax.text(left + box_width / 2 + 0.08, y - row_height / 2, "÷2", va="center", fontsize=10, color="C0")
            ax.text(right + box_width / 2 + 0.08, y - row_height / 2, "×2", va="center", fontsize=10, color="C1")
    y_mid = top - (rows - 1) * row_height
    mid = shapes["mid"]
    ax.add_patch(FancyBboxPatch((width / 2 - box_width / 2, y_mid - 0.25), box_width, 0.5, boxstyle="round,pad=0.02",
                                facecolor="#e2f0d9", edgecolor="0.3", lw=1))
    ax.text(width / 2, y_mid, f"{block}, attention, {block}\n{mid['size']}×{mid['size']}, {mid['channels']} ch",
            ha="center", va="center", fontsize=10)
    ax.annotate("", (width / 2 - box_width / 2, y_mid), (left + box_width / 2, y_mid + row_height - 0.27),
                arrowprops=dict(arrowstyle="-|>", color="C0", lw=1.2, connectionstyle="angle,angleA=-90,angleB=180"))
    ax.annotate("", (right + box_width / 2, y_mid + row_height - 0.27), (width / 2 + box_width / 2, y_mid),
                arrowprops=dict(arrowstyle="-|>", color="C1", lw=1.2, connectionstyle="angle,angleA=0,angleB=-90"))
    channels, size = shapes["image"]
    ax.text(left + box_width / 2, height - 0.12, f"$x_t$: {channels}×{size}×{size} → conv 7×7 → {shapes['first']} ch",
            ha="center", va="top", fontsize=10)
    ax.text(right + box_width / 2, height - 0.12, f"$\\hat\\epsilon$: {channels}×{size}×{size} ← conv 1×1",
            ha="center", va="top", fontsize=10)
    ax.text(width / 2, 0.08, f"t → sinusoidal → MLP → {shapes['time_dim']} features, into every {block} block",
            ha="center", va="bottom", fontsize=10, color="0.3")
    return fig
