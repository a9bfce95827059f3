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
    shape = getattr(value, "shape", None)
    if shape is not None:  # a NumPy array, say: its size, not its contents
        return f"{type(value).__name__} of shape {tuple(shape)} (convert it with torch.as_tensor)"
    text = repr(value)
    return f"{type(value).__name__} {text if len(text) <= 80 else text[:77] + '...'}"


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


def flag(value, name: str, where: str) -> bool:
    """``value`` if it is True or False (not 1, 1.0 or "yes", which ``in (True, False)`` would let through)."""
    if not isinstance(value, bool):
        raise ValueError(f"{where}: {name} must be True or False, got {_seen(value)}")
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
    if batch and not capturing(t) and (t.min() < 0 or t.max() >= T):
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
    """``amount`` (a number or a tensor (B,) in [0, 1]: 0 = clean, 1 = pure noise) as one value per
    image of the batch ``x``, on its device."""
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
    if len(x) and (not torch.isfinite(amount).all() or amount.min() < 0 or amount.max() > 1):
        raise ValueError(f"{where}: amount must lie in [0, 1] (0 = clean, 1 = pure noise), got values from "
                         f"{amount.min().item():.3g} to {amount.max().item():.3g}")
    return amount


class BookWarning(UserWarning):
    """A warning of the book's module: shown as "Category: message", without the file and line that
    Python's warnings print by default (machine paths mean nothing on the website)."""


def format_book_warnings() -> None:
    """Make ``warnings`` show :class:`BookWarning` s as "Category: message" (other warnings as usual)."""
    import warnings

    original = warnings.formatwarning
    if getattr(original, "_ddpm_lessons", False):
        return

    def formatwarning(message, category, filename, lineno, line=None):
        if isinstance(category, type) and issubclass(category, BookWarning):
            return f"{category.__name__}: {message}\n"
        return original(message, category, filename, lineno, line)

    formatwarning._ddpm_lessons = True
    warnings.formatwarning = formatwarning


class DataRangeWarning(BookWarning):
    """Data that may be legitimate but look like images in the wrong range (0 … 1 instead of -1 … 1)."""


_SCALE_HINT = "scale them first: x = dl.data.to_model_range(x) (uint8 in 0…255, or floats in [0, 1])"


def capturing(x: torch.Tensor) -> bool:
    """True while a CUDA graph is being recorded on ``x``'s device, or while CUDA's synchronising
    operations are errors (``torch.cuda.set_sync_debug_mode("error")``, how :mod:`ddpm_lessons.cuda_graphs`
    tests a model first): no value can be read back to the CPU then, so the checks that read values
    (finite, in range) are skipped; the eager call before made them on the same input."""
    return x.is_cuda and (torch.cuda.is_current_stream_capturing() or torch.cuda.get_sync_debug_mode() == 2)


def finite(x: torch.Tensor, name: str, where: str) -> torch.Tensor:
    """``x`` if it holds no NaN or infinity (a NaN in the data otherwise comes out as NaN samples)."""
    if capturing(x):
        return x
    bad = ~torch.isfinite(x)
    if bad.any():
        raise ValueError(f"{where}: {name} contains {int(bad.sum())} NaN or infinite value(s) "
                         f"(of {x.numel()}); find where they came from (a division by zero, a diverged "
                         f"training run, a log of 0) and pass finite data")
    return x


def data(x, name: str, where: str, *, shape_hint: str = "(batch, ...)") -> torch.Tensor:
    """``x`` as data for the models: a non-empty, finite, floating-point tensor; images (4-D) in [-1, 1].

    Images in 0…255 (integers, or non-negative floats above 1.5) are an error, images that look like
    [0, 1] a :class:`DataRangeWarning`: both are the classic cause of "my samples are noise" (the
    appendix). Other data (2-D points, noise) are only checked to be finite.
    """
    if torch.is_tensor(x) and (x.dtype == torch.bool or x.is_complex()):
        raise ValueError(f"{where}: {name} must hold real numbers (float32), got dtype {x.dtype}")
    if torch.is_tensor(x) and not x.is_floating_point() and x.dim() == 4:
        raise ValueError(f"{where}: {name} holds integers (dtype {x.dtype}): images in 0…255; the models "
                         f"work in [-1, 1]: {_SCALE_HINT}")
    x = tensor(x, name, where, shape_hint=shape_hint)
    if x.shape[0] == 0:
        raise ValueError(f"{where}: {name} is an empty batch (shape {tuple(x.shape)}); pass at least one example")
    if capturing(x):   # a recorded training step: the eager steps before it checked batches from the same source
        return x
    low, high = (float(v) for v in torch.aminmax(x.detach()))
    if not (math.isfinite(low) and math.isfinite(high)):
        finite(x, name, where)
    if x.dim() == 4 and low >= 0.0:
        if high > 1.5:
            raise ValueError(f"{where}: {name} has values from {low:.3g} to {high:.3g}: they look like images in "
                             f"0…255, but the models work in [-1, 1]: {_SCALE_HINT} (floats in 0…255: x / 127.5 - 1)")
        if high - low > 0.2:
            import warnings
            warnings.warn(f"{where}: {name} lies in [0, 1] (values from {low:.3g} to {high:.3g}), but the "
                          f"models expect images in [-1, 1] (black = -1, white = 1); if these are images "
                          f"in [0, 1], use dl.data.to_model_range({name})", DataRangeWarning, stacklevel=3)
    return x


def generator(value, where: str):
    """``value`` as a ``torch.Generator``: None stays None, an int becomes a CPU generator seeded with it."""
    if value is None or isinstance(value, torch.Generator):
        return value
    if isinstance(value, Integral) and not isinstance(value, bool):
        return torch.Generator().manual_seed(int(value))
    raise ValueError(f"{where}: generator must be a torch.Generator or an int seed, got {_seen(value)}")


def network_input(x, module, where: str, shape_hint: str) -> torch.Tensor:
    """``x`` as an input of ``module`` (a network): a finite floating-point tensor on the module's
    device with the dtype of its weights (autocast may lower it; it never raises it)."""
    if torch.is_tensor(x) and not x.is_floating_point():
        hint = f": {_SCALE_HINT}" if x.dtype == torch.uint8 else ""
        raise ValueError(f"{where}: expected floating-point {shape_hint}, got dtype {x.dtype}{hint}")
    x = tensor(x, "x", where, shape_hint=shape_hint)
    weight = next(module.parameters(), None)
    if weight is not None:
        if x.device != weight.device:
            raise ValueError(f"{where}: x is on {x.device} but the network's weights are on {weight.device}; "
                             f"move one of them: x = x.to({str(weight.device)!r})")
        autocast = torch.is_autocast_enabled(x.device.type)   # lowers float32 inputs, never float64 ones
        if x.dtype != weight.dtype and (not autocast or x.dtype == torch.float64):
            raise ValueError(f"{where}: x has dtype {x.dtype} but the network's weights are {weight.dtype}; "
                             f"convert one of them, e.g. x = x.to({weight.dtype})")
    return finite(x, "x", where)


def network_steps(t, batch: int, T: int | None, where: str) -> torch.Tensor:
    """``t`` as the steps a time-conditioned network takes: a LongTensor (batch,) in 0 … T-1 (T, when
    the network knows it; else any step >= 0). Steps already checked by ``Diffusion`` pass as they are."""
    if torch.is_tensor(t) and hasattr(t, "_checked_for") and tuple(t.shape) == (batch,) and \
            (T is None or t._checked_for[0] <= T):
        return t
    if not torch.is_tensor(t) or tuple(t.shape) != (batch,):
        shape = tuple(t.shape) if torch.is_tensor(t) else type(t).__name__
        raise ValueError(f"{where}: expected one step per example, t of shape ({batch},), got {shape}")
    if t.is_floating_point() or t.is_complex() or t.dtype == torch.bool:
        raise ValueError(f"{where}: t must hold integer steps (a LongTensor: 0-based, index t is the paper's step "
                         f"t+1), got dtype {t.dtype}; use t.long() only if the values are whole numbers")
    if batch and not capturing(t) and (t.min() < 0 or (T is not None and t.max() >= T)):
        wanted = f"0 … T-1 = 0 … {T - 1}" if T is not None else "steps >= 0"
        raise ValueError(f"{where}: t must lie in {wanted}; got values from {t.min().item()} to {t.max().item()}")
    return t


def device(value, where: str) -> torch.device:
    """``value`` as a ``torch.device`` that exists on this machine, or a clear error naming the ones that do."""
    available = ["cpu"] + (["cuda"] if torch.cuda.is_available() else []) + \
        (["mps"] if getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available() else [])
    try:
        value = torch.device(value)
    except (RuntimeError, TypeError) as error:
        raise ValueError(f"{where}: device must be one of {', '.join(map(repr, available))} (or dl.get_device()), "
                         f"got {value!r}") from error
    if value.type not in available:
        raise ValueError(f"{where}: this machine has no {value.type!r} device (available: {', '.join(available)}); "
                         f"use dl.get_device() to pick the fastest one")
    return value


def callable_as(function, example_args: tuple, signature_text: str, name: str, where: str, hint: str = ""):
    """``function`` if it can be called as ``signature_text`` (e.g. "loss_fn(model, batch)"); ``hint``
    is added to the error (what the student most likely passed instead)."""
    import inspect

    if isinstance(function, type) or not callable(function):
        raise ValueError(f"{where}: {name} must be a function called as {signature_text}, got {_seen(function)}"
                         f"{'. ' + hint if hint else ''}")
    try:
        inspect.signature(getattr(function, "forward", function) if isinstance(function, torch.nn.Module)
                          else function).bind(*example_args)
    except TypeError as error:
        raise ValueError(f"{where}: {name} is called as {signature_text}, but yours takes other arguments "
                         f"({error}).{' ' + hint if hint else ''}") from None
    except ValueError:  # no signature to read (a builtin): let the call tell
        pass
    return function


def module(value, name: str, where: str):
    """``value`` if it is an instance of ``torch.nn.Module`` (not the class itself)."""
    if isinstance(value, type):
        raise ValueError(f"{where}: {name} is the class {value.__name__}; pass an instance, e.g. {value.__name__}()")
    if not isinstance(value, torch.nn.Module):
        raise ValueError(f"{where}: {name} must be a torch.nn.Module (a network), got {_seen(value)}")
    return value


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
    if batch and not capturing(y) and (y.min() < 0 or y.max() > highest):
        raise ValueError(f"{where}: labels must lie in 0 … {num_classes - 1}{null}; got values from "
                         f"{y.min().item()} to {y.max().item()}")
    return y.long()


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
