"""The one vocabulary of argument checks, shared by every module.

Each check raises a ``ValueError`` that names the function (``where``), the argument, what was
expected and what was seen, and returns the value in the form the caller uses (an ``int``, a
tensor on the right device). A method then reads like its equation with one check line above it.
"""
from __future__ import annotations

import math
from numbers import Integral, Real

import torch


def _seen(value) -> str:
    if torch.is_tensor(value):
        return f"a tensor of shape {tuple(value.shape)} and dtype {value.dtype}"
    return f"{type(value).__name__} {value!r}"


def positive_int(value, name: str, where: str, minimum: int = 1) -> int:
    """``value`` as an int >= ``minimum`` (bools and floats refused, also 3.0)."""
    if isinstance(value, bool) or not isinstance(value, Integral) or value < minimum:
        wanted = "a positive int" if minimum == 1 else f"an int >= {minimum}"
        raise ValueError(f"{where}: {name} must be {wanted}, got {value!r}")
    return int(value)


def even_int(value, name: str, where: str, minimum: int = 2) -> int:
    """``value`` as an even int >= ``minimum`` (sizes split into sine and cosine halves)."""
    if isinstance(value, bool) or not isinstance(value, Integral) or value < minimum or value % 2:
        raise ValueError(f"{where}: {name} must be an even int >= {minimum}, got {value!r}")
    return int(value)


def number(value, name: str, where: str, low: float = -math.inf, high: float = math.inf,
           low_open: bool = False, high_open: bool = False) -> float:
    """``value`` as a finite float in the interval given by ``low``/``high`` (open ends as asked)."""
    if isinstance(value, bool) or not isinstance(value, Real) or not math.isfinite(value) or \
            (value <= low if low_open else value < low) or (value >= high if high_open else value > high):
        if high == math.inf and low in (0, -math.inf):
            wanted = ("a positive number" if low_open else "a number >= 0") if low == 0 else "a finite number"
        else:
            wanted = (f"a number in {'(' if low_open or low == -math.inf else '['}{low:g}, "
                      f"{high:g}{')' if high_open or high == math.inf else ']'}")
        raise ValueError(f"{where}: {name} must be {wanted}, got {value!r}")
    return float(value)


def one_of(value, valid, name: str, where: str):
    """``value`` if it is one of ``valid``."""
    if value not in valid:
        raise ValueError(f"{where}: {name} must be one of {', '.join(map(repr, valid))}; got {value!r}")
    return value


def tensor(x, name: str, where: str, *, min_dim: int = 1, floating: bool = True, shape_hint: str = "(batch, ...)"):
    """``x`` if it is a tensor with at least ``min_dim`` dimensions (and floating point, if asked)."""
    if not torch.is_tensor(x):
        raise ValueError(f"{where}: {name} must be a torch.Tensor of shape {shape_hint}, got {_seen(x)}")
    if x.dim() < min_dim:
        raise ValueError(f"{where}: {name} must have shape {shape_hint}, got shape {tuple(x.shape)}")
    if floating and not x.is_floating_point():
        raise ValueError(f"{where}: {name} must be a floating-point tensor {shape_hint}, got dtype {x.dtype}")
    return x


def same_shape(reference, other, reference_name: str, other_name: str, where: str):
    """``other`` if it is a tensor of ``reference``'s shape."""
    if not torch.is_tensor(other) or tuple(other.shape) != tuple(reference.shape):
        got = tuple(other.shape) if torch.is_tensor(other) else type(other).__name__
        raise ValueError(f"{where}: {other_name} must have the shape of {reference_name}, "
                         f"{tuple(reference.shape)}; got {got}")
    return other


def _integer_steps(t, name: str, what: str, batch: int, where: str) -> torch.Tensor:
    """``t`` (an int, or an integer tensor) as a tensor; an int or 0-d tensor is broadcast to (batch,)."""
    if isinstance(t, bool) or not (isinstance(t, Integral) or torch.is_tensor(t)):
        raise ValueError(f"{where}: {name} must be an integer or a LongTensor of shape ({batch},), got {_seen(t)}")
    t = torch.as_tensor(t)
    if t.is_floating_point() or t.is_complex() or t.dtype == torch.bool:
        raise ValueError(f"{where}: {name} must hold {what} (a LongTensor), got dtype {t.dtype}")
    return t.expand(batch) if t.ndim == 0 else t


def timesteps(t, T: int, batch: int, where: str, device=None) -> torch.Tensor:
    """``t`` as a LongTensor (batch,) of 0-based steps in 0 … T-1; an int (or 0-d tensor) is broadcast.

    The result is marked as checked, so that a method called by another one with the same ``t``
    does not check (and, on a GPU, synchronise) again: ``t`` is checked once per call.
    """
    key = (T, batch, torch.device(device) if device is not None else None)
    if torch.is_tensor(t) and getattr(t, "_checked_for", None) == key:
        return t
    t = _integer_steps(t, "t", f"integer steps 0 … {T - 1}", batch, where)
    if tuple(t.shape) != (batch,):
        raise ValueError(f"{where}: t must have shape (batch,) = ({batch},), one step per example; "
                         f"got {tuple(t.shape)}")
    if batch and (t.min() < 0 or t.max() >= T):
        raise ValueError(
            f"{where}: t must lie in 0 … T-1 = 0 … {T - 1} (0-based: index t is the paper's step t+1); "
            f"got values from {t.min().item()} to {t.max().item()}"
        )
    checked = t.to(device=device if device is not None else t.device, dtype=torch.long).view(batch)  # a new object
    checked._checked_for = key
    return checked


def shape(value, name: str, where: str) -> tuple:
    """``value`` as a tuple of positive ints (batch, ...): the size of a batch to sample."""
    if not isinstance(value, (tuple, list, torch.Size)) or len(value) == 0 or any(
            isinstance(s, bool) or not isinstance(s, Integral) or s < 1 for s in value):
        raise ValueError(f"{where}: {name} must be a non-empty tuple of positive ints (batch, ...), "
                         f"e.g. (16, 1, 28, 28); got {value!r}")
    return tuple(int(s) for s in value)


def per_image_amount(amount, x: torch.Tensor, where: str) -> torch.Tensor:
    """``amount`` (a number or a tensor (B,)) as one value per image of the batch ``x``, on its device."""
    if isinstance(amount, bool) or not (isinstance(amount, Real) or torch.is_tensor(amount)):
        raise ValueError(f"{where}: amount must be a number or a tensor of shape ({len(x)},), got {_seen(amount)}")
    amount = torch.as_tensor(amount, dtype=x.dtype, device=x.device)
    if amount.dim() == 0:
        amount = amount.expand(len(x))
    if amount.shape != (len(x),):
        raise ValueError(
            f"{where}: amount must be a number or a tensor with one value per image, shape ({len(x)},); "
            f"got shape {tuple(amount.shape)} for a batch of {len(x)}"
        )
    return amount


def previous_steps(t_prev, t: torch.Tensor, where: str) -> torch.Tensor:
    """``t_prev`` as a LongTensor like ``t`` (a checked LongTensor (batch,)) with −1 ≤ t_prev < t elementwise:
    the 0-based step a sampler jumps to from ``t`` (chapter 6); −1 means x_0 itself (ᾱ = 1)."""
    t_prev = _integer_steps(t_prev, "t_prev", "integer steps −1 … t−1", len(t), where)
    if tuple(t_prev.shape) != tuple(t.shape):
        raise ValueError(f"{where}: t_prev must have t's shape {tuple(t.shape)}, one step per example; "
                         f"got {tuple(t_prev.shape)}")
    t_prev = t_prev.to(device=t.device, dtype=torch.long)
    if len(t) and ((t_prev < -1) | (t_prev >= t)).any():
        i = int(((t_prev < -1) | (t_prev >= t)).nonzero()[0])
        raise ValueError(f"{where}: t_prev must lie in −1 … t−1 (an earlier step; −1 is x_0 itself, where ᾱ = 1); "
                         f"got t_prev = {int(t_prev[i])} for t = {int(t[i])} (example {i})")
    return t_prev


def step_schedule(steps, T: int, where: str) -> torch.Tensor:
    """``steps`` as a LongTensor (S,) of 0-based steps that a few-step sampler visits (chapter 6): values
    in 0 … T-1, strictly decreasing (from the noisiest step down), ending at 0 (the step to x_0)."""
    example = "e.g. dl.ddim.step_schedule(T, S) or torch.tensor([99, 66, 33, 0])"
    if isinstance(steps, (list, tuple)) and all(isinstance(s, Integral) and not isinstance(s, bool) for s in steps):
        steps = torch.tensor(steps, dtype=torch.long)
    if not torch.is_tensor(steps) or steps.ndim != 1 or len(steps) == 0 or steps.is_floating_point() \
            or steps.is_complex() or steps.dtype == torch.bool:
        raise ValueError(f"{where}: a step schedule must be a non-empty 1-D LongTensor (or list) of 0-based steps, "
                         f"{example}; got {_seen(steps)}")
    steps = steps.detach().to("cpu", torch.long)
    if steps.min() < 0 or steps.max() >= T:
        raise ValueError(f"{where}: the steps of a schedule must lie in 0 … T-1 = 0 … {T - 1} (0-based: index t is "
                         f"the paper's step t+1); got values from {int(steps.min())} to {int(steps.max())}")
    rising = (steps[1:] >= steps[:-1]).nonzero()
    if len(rising):
        i = int(rising[0])
        raise ValueError(f"{where}: a step schedule must be strictly decreasing (from the noisiest step down to 0, "
                         f"each step once); got steps[{i}] = {int(steps[i])}, steps[{i + 1}] = {int(steps[i + 1])}. "
                         f"{example[0].upper()}{example[1:]}")
    if steps[-1] != 0:
        raise ValueError(f"{where}: a step schedule must end at 0 (the last step, to x_0); got one ending at "
                         f"{int(steps[-1])}. Append 0, {example}")
    return steps
