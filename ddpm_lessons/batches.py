"""Where training batches come from (chapters 1-5): a dataset held on the device, or a DataLoader.

:class:`TensorBatches` is the fast path: the dataset sits on the device (images as uint8, one byte
per pixel) and each batch is drawn there, with no data-loader workers and no copy from the host per
step; its random state is saved in checkpoints, so a resumed run draws exactly the same batches.
:func:`forever` cycles a ``DataLoader`` (the plain path); its position is not saved.
"""
from __future__ import annotations

from typing import Iterator

import torch

from . import _checks
from .data import to_model_range
from .settings import get_device


class TensorBatches:
    """Random batches drawn on the device from a dataset held there (the fast path).

    ``data`` is a tensor (N, ...) of uint8 images (scaled to [-1, 1] per batch, so the dataset
    costs one byte per pixel on the device) or of floats (used as they are). ``labels`` (N,), if
    given, makes each batch a tuple ``(x, y)``. Sampling is with replacement from a seeded generator
    whose state is saved in checkpoints, so a resumed run draws the same batches.
    """

    def __init__(self, data: torch.Tensor, batch_size: int, device=None, labels: torch.Tensor | None = None,
                 seed: int = 0):
        where = "TensorBatches"
        if torch.is_tensor(data) and data.dtype != torch.uint8 and not data.is_floating_point():
            raise ValueError(f"{where}: data must be uint8 images (0…255, scaled per batch) or floats in the "
                             f"models' range, got dtype {data.dtype}; convert images with data.to(torch.uint8)")
        if not torch.is_tensor(data) or data.dim() < 2:
            raise ValueError(f"{where}: expected a tensor (N, ...) of data, got "
                             f"{tuple(data.shape) if torch.is_tensor(data) else type(data).__name__}")
        if data.is_floating_point():
            _checks.data(data, "data", where, shape_hint="(N, ...)")
        elif len(data) == 0:
            raise ValueError(f"{where}: data is empty (shape {tuple(data.shape)}); pass at least one example")
        _checks.positive_int(batch_size, "batch_size", where)
        if labels is not None and (not torch.is_tensor(labels) or labels.shape[:1] != data.shape[:1]):
            raise ValueError(f"TensorBatches: labels must be a tensor of length {len(data)}")
        self.device = _checks.device(device, where) if device is not None else get_device()
        self.data = data.to(self.device)
        self.labels = labels.to(self.device) if labels is not None else None
        self.batch_size = batch_size
        self.generator = torch.Generator(device=self.device).manual_seed(seed)

    def __len__(self) -> int:
        return len(self.data)

    def __iter__(self) -> Iterator:
        return self

    def __next__(self):
        index = torch.randint(len(self.data), (self.batch_size,), device=self.device, generator=self.generator)
        x = self.data[index]
        x = to_model_range(x) if x.dtype == torch.uint8 else x
        return (x, self.labels[index]) if self.labels is not None else x

    def state_dict(self) -> dict:
        return {"generator": self.generator.get_state()}

    def load_state_dict(self, state: dict) -> None:
        self.generator.set_state(state["generator"].cpu())


def forever(loader) -> Iterator:
    """Batches from a DataLoader (or any re-iterable), epoch after epoch (the plain path)."""
    while True:
        empty = True
        for batch in loader:
            empty = False
            yield batch
        if empty:
            raise ValueError("forever(): the loader yielded no batch")


def to_device(batch, device: torch.device, channels_last: bool = False):
    """A batch (a tensor, or a tuple/list of them) on ``device``; images channels-last if asked."""
    if torch.is_tensor(batch):
        batch = batch.to(device, non_blocking=True)
        if channels_last and batch.dim() == 4 and batch.is_floating_point():
            batch = batch.contiguous(memory_format=torch.channels_last)
        return batch
    if isinstance(batch, (tuple, list)):
        return type(batch)(to_device(b, device, channels_last) for b in batch)
    return batch


def batch_length(batch) -> int:
    """The number of examples in a batch (of its first tensor, for a tuple such as (images, labels))."""
    first = batch if torch.is_tensor(batch) else batch[0]
    return len(first)


def batch_device(batch) -> torch.device:
    """The device of a batch (of its first tensor)."""
    return (batch if torch.is_tensor(batch) else batch[0]).device
