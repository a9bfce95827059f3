"""Small helpers that any part of the module may use."""
from __future__ import annotations

import time

import torch
from torch import nn


def count_parameters(model: nn.Module) -> int:
    """The number of trainable parameters."""
    if isinstance(model, type) or not isinstance(model, nn.Module):
        raise ValueError(f"count_parameters(): expected a network (an nn.Module instance), got "
                         f"{model.__name__ + ' (the class)' if isinstance(model, type) else type(model).__name__}")
    return sum(p.numel() for p in model.parameters() if p.requires_grad)


def synchronized_time(device) -> float:
    """``time.perf_counter()`` once the work queued on ``device`` has finished: GPU kernels run
    asynchronously, so a clock read without waiting would time their launch, not their run."""
    if torch.device(device).type == "cuda":
        torch.cuda.synchronize(device)
    return time.perf_counter()


def module_device_dtype(model):
    """The device and floating dtype of a model's first parameter, or (None, None) without parameters
    (a plain function such as chapter 3's oracle)."""
    parameters = getattr(model, "parameters", None)
    if callable(parameters):
        for p in parameters():
            return p.device, (p.dtype if p.is_floating_point() else None)
    return None, None


def source_listing(obj) -> dict:
    """The source code of ``obj`` (a function, method or class) as a display bundle: Markdown with a
    ```python block (dedented) for the website, and the exact ``inspect.getsource(obj)`` text as
    plain text, which tests/book/test_notebooks.py compares with the module's current code."""
    import inspect
    import re
    import textwrap

    try:
        source = inspect.getsource(obj)
    except (TypeError, OSError) as error:
        raise ValueError(f"show_source(): expected a function, method or class written in Python, got "
                         f"{obj!r} ({error}); pass e.g. dl.Diffusion.q_sample") from None
    longest = max((len(run) for run in re.findall(r"`+", source)), default=0)
    fence = "`" * max(3, longest + 1)  # a fence longer than any run of backticks in the code
    code = textwrap.dedent(source).rstrip("\n")
    return {"text/markdown": f"{fence}python\n{code}\n{fence}\n", "text/plain": source}


def show_source(obj) -> None:
    """Show the source code of ``obj`` as a highlighted listing: where a chapter's point is the code.

    On the website the listing is highlighted and wraps at the column's edge; in a plain Python
    session (no IPython) the code is printed.

    >>> dl.utils.show_source(dl.Diffusion.q_sample)   # doctest: +SKIP
    """
    bundle = source_listing(obj)
    try:
        from IPython import get_ipython
        from IPython.display import display
    except ImportError:  # pragma: no cover - IPython is a dependency of the module
        get_ipython = None
    if get_ipython is None or get_ipython() is None:
        print(bundle["text/plain"], end="")
    else:
        display(bundle, raw=True)


def same_values(a, b) -> bool:
    """True when two values (tensors, numbers, strings, or dicts and lists of them) are equal, exactly."""
    if torch.is_tensor(a) or torch.is_tensor(b):
        return torch.is_tensor(a) and torch.is_tensor(b) and a.shape == b.shape and torch.equal(a.cpu(), b.cpu())
    if isinstance(a, dict) and isinstance(b, dict):
        return a.keys() == b.keys() and all(same_values(a[k], b[k]) for k in a)
    if isinstance(a, (list, tuple)) and isinstance(b, (list, tuple)):
        return len(a) == len(b) and all(same_values(x, y) for x, y in zip(a, b))
    return a == b
