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
