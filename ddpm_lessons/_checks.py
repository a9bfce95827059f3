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


def timesteps(t, T: int, batch: int, where: str, device=None) -> torch.Tensor:
    """``t`` as a LongTensor (batch,) of 0-based steps in 0 … T-1; an int (or 0-d tensor) is broadcast.

    The result is marked as checked, so that a method called by another one with the same ``t``
    does not check (and, on a GPU, synchronise) again: ``t`` is checked once per call.
    """
    key = (T, batch, torch.device(device) if device is not None else None)
    if torch.is_tensor(t) and getattr(t, "_checked_for", None) == key:
        return t
    if isinstance(t, bool) or not (isinstance(t, Integral) or torch.is_tensor(t)):
        raise ValueError(f"{where}: t must be an integer or a LongTensor of shape ({batch},), got {_seen(t)}")
    t = torch.as_tensor(t)
    if t.is_floating_point() or t.is_complex() or t.dtype == torch.bool:
        raise ValueError(f"{where}: t must hold integer steps 0 … {T - 1} (a LongTensor), got dtype {t.dtype}")
    if t.ndim == 0:
        t = t.expand(batch)
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


def labels(y, num_classes: int, batch: int, where: str, *, allow_null: bool = True) -> torch.Tensor:
    """``y`` as a LongTensor (batch,) of class labels in 0 … num_classes − 1 (chapter 7).

    With ``allow_null`` the value ``num_classes`` itself is allowed too: the "no label" token of a
    class-conditional model (classifier-free guidance). An int is broadcast to the batch.
    """
    null = f", or {num_classes} for \"no label\"" if allow_null else ""
    if isinstance(y, bool) or not (isinstance(y, Integral) or torch.is_tensor(y)):
        raise ValueError(f"{where}: y must be a LongTensor of shape ({batch},) with one class label per image "
                         f"(0 … {num_classes - 1}{null}), got {_seen(y)}")
    y = torch.as_tensor(y)
    if y.is_floating_point() or y.is_complex() or y.dtype == torch.bool:
        raise ValueError(f"{where}: y must hold integer class labels (a LongTensor), got dtype {y.dtype}; "
                         "convert with y.long()")
    if y.ndim == 0:
        y = y.expand(batch)
    if tuple(y.shape) != (batch,):
        raise ValueError(f"{where}: y must have shape (batch,) = ({batch},), one label per image; got "
                         f"{tuple(y.shape)}")
    highest = num_classes if allow_null else num_classes - 1
    if batch and (y.min() < 0 or y.max() > highest):
        raise ValueError(f"{where}: labels must lie in 0 … {num_classes - 1}{null}; got values from "
                         f"{y.min().item()} to {y.max().item()}")
    return y.long()
