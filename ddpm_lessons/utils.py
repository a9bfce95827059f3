"""Small helpers that any part of the module may use."""
from __future__ import annotations

import torch
from torch import nn


def count_parameters(model: nn.Module) -> int:
    """The number of trainable parameters."""
    if isinstance(model, type) or not isinstance(model, nn.Module):
        raise ValueError(f"count_parameters(): expected a network (an nn.Module instance), got "
                         f"{model.__name__ + ' (the class)' if isinstance(model, type) else type(model).__name__}")
    return sum(p.numel() for p in model.parameters() if p.requires_grad)


def module_device_dtype(model):
    """The device and floating dtype of a model's first parameter, or (None, None) without parameters
    (a plain function such as chapter 3's oracle)."""
    parameters = getattr(model, "parameters", None)
    if callable(parameters):
        for p in parameters():
            return p.device, (p.dtype if p.is_floating_point() else None)
    return None, None
