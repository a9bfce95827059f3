"""One training loop for every chapter: progress bar, loss history, AMP on CUDA, EMA, checkpoints (chapters 1-5).

```python
batches = dl.training.TensorBatches(images_uint8, batch_size=128, device=device)
result = dl.training.train(model, lambda m, x: diffusion.loss(m, x), batches, steps=5000, lr=2e-4)
result.history        # loss per step
result.ema_model      # EMA weights (torch.optim.swa_utils.AveragedModel), if ema_decay was given
```

The fast path keeps a small dataset on the device as uint8 and draws each batch there
(:class:`TensorBatches`): no data-loader workers, no host-to-device copy per step. A checkpoint is
written atomically every few minutes; ``resume=True`` continues the step count, optimizer, EMA,
gradient scaler and random state, and refuses (never silently restarts) when the file is missing,
truncated or written by something else.
"""
from __future__ import annotations

import math
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterator

import torch
from torch import nn
from torch.optim.swa_utils import AveragedModel, get_ema_multi_avg_fn

from . import _checks, _progress, checkpoints
from .data import to_model_range
from .settings import get_device


# ---------------------------------------------------------------- batches
class TensorBatches:
    """Random batches drawn on the device from a dataset held there (the fast path).

    ``data`` is a tensor (N, ...) of uint8 images (scaled to [-1, 1] per batch, so the dataset
    costs one byte per pixel on the device) or of floats (used as they are). ``labels`` (N,), if
    given, makes each batch a tuple ``(x, y)``. Sampling is with replacement from a seeded generator
    whose state is saved in checkpoints, so a resumed run draws the same batches.
    """

    def __init__(self, data: torch.Tensor, batch_size: int, device=None, labels: torch.Tensor | None = None,
                 seed: int = 0):
        if not torch.is_tensor(data) or data.dim() < 2 or len(data) == 0:
            raise ValueError("TensorBatches: expected a non-empty tensor (N, ...) of data")
        _checks.positive_int(batch_size, "batch_size", "TensorBatches")
        if labels is not None and (not torch.is_tensor(labels) or labels.shape[:1] != data.shape[:1]):
            raise ValueError(f"TensorBatches: labels must be a tensor of length {len(data)}")
        self.device = torch.device(device) if device is not None else get_device()
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


def _to_device(batch, device: torch.device, channels_last: bool):
    if torch.is_tensor(batch):
        batch = batch.to(device, non_blocking=True)
        if channels_last and batch.dim() == 4 and batch.is_floating_point():
            batch = batch.contiguous(memory_format=torch.channels_last)
        return batch
    if isinstance(batch, (tuple, list)):
        return type(batch)(_to_device(b, device, channels_last) for b in batch)
    return batch


def _batch_size(batch) -> int:
    first = batch if torch.is_tensor(batch) else batch[0]
    return len(first)


# ---------------------------------------------------------------- precision
def autocast_dtype(device: torch.device) -> torch.dtype | None:
    """bf16 where the GPU has it, else fp16 (with a gradient scaler); None (fp32) off CUDA."""
    if device.type != "cuda":
        return None
    return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16


# ---------------------------------------------------------------- the loop
@dataclass
class TrainResult:
    """What :func:`train` returns."""

    model: nn.Module
    history: list[float]
    ema_model: AveragedModel | None = None
    steps: int = 0
    seconds: float = 0.0
    images: int = 0
    checkpoint_path: Path | None = None
    resumed_from_step: int | None = None
    extras: dict = field(default_factory=dict)

    @property
    def images_per_second(self) -> float:
        return self.images / self.seconds if self.seconds > 0 else float("nan")


_NON_FINITE_ADVICE = (
    "Try: a smaller learning rate; gradient clipping (grad_clip=1.0); amp=False (fp32) if fp16 "
    "overflows; and check that the data are scaled to [-1, 1] (dl.data.to_model_range)."
)


def train(
    model: nn.Module,
    loss_fn: Callable[[nn.Module, object], torch.Tensor],
    batches,
    steps: int,
    *,
    lr: float = 1e-3,
    optimizer: str = "adam",
    weight_decay: float = 0.0,
    ema_decay: float | None = None,
    amp: bool = True,
    channels_last: bool = False,
    grad_clip: float | None = None,
    max_seconds: float | None = None,
    checkpoint_path: str | Path | None = None,
    checkpoint_every_s: float = 300.0,
    resume: bool = False,
    device=None,
    progress: bool = True,
    desc: str = "training",
    callback: Callable[[int, nn.Module, "TrainResult"], None] | None = None,
    callback_every: int | None = None,
) -> TrainResult:
    """Train ``model`` for ``steps`` optimizer steps of ``loss_fn(model, batch)``.

    ``batches`` is an iterator of batches (:class:`TensorBatches`, or ``forever(DataLoader)``).
    ``optimizer``: "adam" or "adamw". ``ema_decay`` keeps EMA weights with
    ``torch.optim.swa_utils`` (chapter 5). ``amp`` uses autocast on CUDA: bf16 where supported, else
    fp16 with a gradient scaler. ``max_seconds`` stops early when the time is up (the step reached is
    in the result). ``checkpoint_path`` with ``checkpoint_every_s`` saves atomically during and at the
    end of training; ``resume=True`` continues from that file. ``callback(step, model, result)`` runs
    every ``callback_every`` steps and after the last one (snapshots, FID against time).
    A non-finite loss stops training with a :class:`FloatingPointError` that says what to try.
    """
    _checks.positive_int(steps, "steps", "train()")
    _checks.one_of(optimizer, ("adam", "adamw"), "optimizer", "train()")
    if ema_decay is not None and not 0.0 < ema_decay < 1.0:
        raise ValueError(f"train(): ema_decay must be in (0, 1), got {ema_decay!r}")
    if resume and checkpoint_path is None:
        raise ValueError("train(): resume=True needs checkpoint_path, the file to resume from")
    if callback is not None and callback_every is not None and callback_every < 1:
        raise ValueError("train(): callback_every must be a positive int")
    if not hasattr(batches, "__next__"):
        raise ValueError("train(): batches must be an iterator (TensorBatches, or forever(loader))")

    device = torch.device(device) if device is not None else next(model.parameters()).device
    model.to(device)
    if channels_last and device.type == "cuda":
        model.to(memory_format=torch.channels_last)
    optimizer_class = torch.optim.AdamW if optimizer == "adamw" else torch.optim.Adam
    opt = optimizer_class(model.parameters(), lr=lr, weight_decay=weight_decay)
    amp_dtype = autocast_dtype(device) if amp else None
    scaler = torch.amp.GradScaler("cuda", enabled=amp_dtype == torch.float16)
    ema = (AveragedModel(model, multi_avg_fn=get_ema_multi_avg_fn(ema_decay), use_buffers=True)
           if ema_decay is not None else None)
    result = TrainResult(model=model, history=[], ema_model=ema,
                         checkpoint_path=Path(checkpoint_path) if checkpoint_path else None)

    def state() -> dict:
        return {
            "step": len(result.history),
            "history": torch.tensor(result.history, dtype=torch.float64),
            "images": result.images,
            "seconds": result.seconds,
            "model": model.state_dict(),
            "optimizer": opt.state_dict(),
            "ema": ema.state_dict() if ema is not None else None,
            "scaler": scaler.state_dict(),
            "rng_cpu": torch.get_rng_state(),
            "rng_cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
            "batches": batches.state_dict() if hasattr(batches, "state_dict") else None,
        }

    if resume:
        saved = checkpoints.load(checkpoint_path)
        try:
            model.load_state_dict(saved["model"])
            opt.load_state_dict(saved["optimizer"])
            if ema is not None:
                if saved["ema"] is None:
                    raise KeyError("the checkpoint has no EMA weights but ema_decay was given")
                ema.load_state_dict(saved["ema"])
        except (RuntimeError, KeyError, ValueError) as error:
            raise ValueError(
                f"resume: {checkpoint_path} does not fit this model or these settings ({error}). "
                "Resume with the same model and options that wrote it."
            ) from error
        if saved["scaler"]:
            scaler.load_state_dict(saved["scaler"])
        torch.set_rng_state(saved["rng_cpu"])
        if torch.cuda.is_available() and len(saved["rng_cuda"]):
            torch.cuda.set_rng_state_all(saved["rng_cuda"])
        if saved["batches"] is not None and hasattr(batches, "load_state_dict"):
            batches.load_state_dict(saved["batches"])
        result.history = saved["history"].tolist()
        result.images, result.seconds = int(saved["images"]), float(saved["seconds"])
        result.resumed_from_step = int(saved["step"])

    start_step = len(result.history)
    model.train()
    bar = _progress.bar(total=steps, initial=start_step, desc=desc, disable=not progress)
    last_checkpoint = time.perf_counter()
    try:
        for step in range(start_step, steps):
            step_started = time.perf_counter()
            batch = _to_device(next(batches), device, channels_last and device.type == "cuda")
            with torch.autocast(device.type, dtype=amp_dtype, enabled=amp_dtype is not None):
                loss = loss_fn(model, batch)
            if not torch.isfinite(loss):
                raise FloatingPointError(f"train(): the loss became {loss.item()} at step {step}. {_NON_FINITE_ADVICE}")
            opt.zero_grad(set_to_none=True)
            scaler.scale(loss).backward()
            if grad_clip is not None:
                scaler.unscale_(opt)
                nn.utils.clip_grad_norm_(model.parameters(), grad_clip)
            scaler.step(opt)
            scaler.update()
            if ema is not None:
                ema.update_parameters(model)

            result.history.append(loss.item())  # .item() waits for the GPU: the time below is real
            result.images += _batch_size(batch)
            now = time.perf_counter()
            result.seconds += now - step_started  # training time only: callbacks and saves excluded
            bar.update(1)
            if progress and (step % 10 == 0 or step == steps - 1):
                bar.set_postfix(loss=f"{result.history[-1]:.4f}", img_s=f"{result.images_per_second:.0f}")
            done = step == steps - 1 or (max_seconds is not None and result.seconds >= max_seconds)
            if callback is not None and (done or (callback_every and (step + 1) % callback_every == 0)):
                model.eval()
                callback(step + 1, model, result)
                model.train()
            if checkpoint_path is not None and (done or now - last_checkpoint >= checkpoint_every_s):
                checkpoints.save(checkpoint_path, state())
                last_checkpoint = time.perf_counter()
            if done:
                break
    finally:
        bar.close()
        model.eval()
    result.steps = len(result.history)
    return result


def smoothed(history, window: int = 100) -> float:
    """Mean of the last ``window`` losses: the number to quote for "the loss it reached"."""
    values = list(history)[-window:]
    if not values:
        raise ValueError("smoothed(): empty history")
    return math.fsum(values) / len(values)
