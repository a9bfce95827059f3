"""What every sampler of the book shares: a run of states, and the trajectory a caller may keep.

A sampler is written as a generator of ``(t, x)`` pairs, the start first (chapter 1's naive
sampler, chapter 3's Algorithm 2, chapter 6's DDIM); :func:`run` drives it to the end and returns
the last state or, when asked, the whole :class:`Trajectory`.
"""
from __future__ import annotations

from typing import Iterator, NamedTuple

import torch

from . import _progress


def randn_like(x: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
    """N(0, I) noise of x's shape, dtype and device, drawn with ``generator`` (on its own device) when given."""
    if generator is None:
        return torch.randn_like(x)
    return torch.randn(x.shape, generator=generator, dtype=x.dtype, device=generator.device).to(x.device)


class Trajectory(NamedTuple):
    """A sampling run kept state by state (on the CPU): what ``sample(..., return_trajectory=True)`` returns.

    ``x`` is the result (on the sampler's device), ``xs`` every state from the start to the result,
    ``t`` the label of each state (for DDPM samplers the paper's subscript: T for the noise, 0 for
    the sample; for the naive sampler the number of steps taken), and ``predictions`` what the
    network predicted at each step, where the sampler reports it (else an empty list).
    """

    x: torch.Tensor
    xs: list
    t: list
    predictions: list


def run(states: Iterator, total: int, progress: bool = False, return_trajectory: bool = False,
        desc: str = "sampling"):
    """Drive a sampler's generator of ``(t, x)`` (or ``(t, x, prediction)``) to its last state.

    Returns the last x, or with ``return_trajectory=True`` a :class:`Trajectory` of every state.
    ``progress=True`` shows one progress bar of ``total`` states.
    """
    if progress:
        states = _progress.bar(states, total=total, desc=desc)
    xs, labels, predictions = [], [], []
    x = None
    for state in states:
        t, x = state[0], state[1]
        if return_trajectory:
            xs.append(x.cpu())
            labels.append(int(t))
            if len(state) > 2:
                predictions.append(state[2].cpu())
    if x is None:
        raise ValueError("sampling.run(): the sampler yielded no state")
    return Trajectory(x, xs, labels, predictions) if return_trajectory else x
