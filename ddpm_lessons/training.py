"""One training loop for every chapter: progress bar, loss history, AMP, EMA, checkpoints (chapters 1-5).

```python
batches = dl.training.TensorBatches(images_uint8, batch_size=128, device=device)
result = dl.training.train(model, lambda m, x: diffusion.loss(m, x), batches, steps=5000, lr=2e-4)
result.history        # loss per step
result.ema_model      # EMA weights (torch.optim.swa_utils.AveragedModel), if ema_decay was given
```

A checkpoint is written atomically every few minutes (:mod:`ddpm_lessons.checkpoints`), only once
the next step's loss has shown its weights healthy, so that after a blow-up the last checkpoint is
one to go back to. ``resume=True`` restores the model, optimizer, EMA, gradient scaler, random
state, batch sampler, step count and loss history; where the settings of the resumed call differ
from the checkpoint's it applies the new value and says so, or refuses and says how to start afresh.
"""
from __future__ import annotations

import math
import time
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import torch
from torch import nn
from torch.optim.swa_utils import AveragedModel, get_ema_multi_avg_fn

from . import _checks, _progress, checkpoints, cuda_graphs, precision
from .resume import ResumeWarning, resume_run  # noqa: F401  (ResumeWarning: dl.training.ResumeWarning)
from .batches import TensorBatches, batch_device, batch_length, forever, to_device  # noqa: F401  (TensorBatches, forever: dl.training.*)

OPTIMIZERS = {"adam": torch.optim.Adam, "adamw": torch.optim.AdamW}
EXPLOSION_FACTOR = 1e3
"""The loss counts as exploded when its running average exceeds this many times its best one
(or than 10⁻³, for a loss that had come close to 0)."""


class CheckpointWarning(_checks.BookWarning):
    """A checkpoint could not be written (disk full, read-only); training goes on without it."""


@dataclass
class TrainResult:
    """What :func:`train` returns."""

    model: nn.Module
    history: list[float]
    ema_model: AveragedModel | None = None
    optimizer: torch.optim.Optimizer | None = None
    steps: int = 0
    seconds: float = 0.0
    images: int = 0
    checkpoint_path: Path | None = None
    resumed_from_step: int | None = None
    stopped_by_time: bool = False
    extras: dict = field(default_factory=dict)

    @property
    def images_per_second(self) -> float:
        return self.images / self.seconds if self.seconds > 0 else float("nan")


_ADVICE = ("Try: a smaller learning rate (lr=...); gradient clipping (grad_clip=1.0); amp=False (fp32) if "
           "fp16 overflows; and check that the data are scaled to [-1, 1] (dl.data.to_model_range). "
           "With a checkpoint, train again with resume=True and the new settings: it continues from the "
           "last healthy checkpoint.")


def _check_arguments(model, loss_fn, batches, steps, lr, weight_decay, ema_decay, grad_clip, max_seconds,
                     checkpoint_path, checkpoint_every_s, resume, callback, callback_every) -> None:
    where = "train()"
    if isinstance(model, type):
        raise ValueError(f"{where}: model is the class {model.__name__}; pass an instance, e.g. {model.__name__}()")
    if not isinstance(model, nn.Module) or next(model.parameters(), None) is None:
        raise ValueError(f"{where}: model must be a torch.nn.Module with parameters to train, got {type(model).__name__}")
    _checks.callable_as(loss_fn, (model, None), "loss_fn(model, batch) -> loss", "loss_fn", where,
                        hint="Wrap a one-argument loss: loss_fn=lambda m, x: diffusion.loss(m, x).")
    if not hasattr(batches, "__next__"):
        raise ValueError(f"{where}: batches must be an iterator (TensorBatches, or forever(loader)), "
                         f"got {type(batches).__name__}")
    _checks.positive_int(steps, "steps", where)
    _checks.number(lr, "lr (the learning rate)", where, 0.0, low_open=True)
    _checks.number(weight_decay, "weight_decay", where, 0.0)
    if ema_decay is not None:
        _checks.number(ema_decay, "ema_decay", where, 0.0, 1.0, low_open=True, high_open=True)
    if grad_clip is not None:
        _checks.number(grad_clip, "grad_clip (the largest gradient norm)", where, 0.0, low_open=True)
    if max_seconds is not None:
        _checks.number(max_seconds, "max_seconds", where, 0.0, low_open=True)
    _checks.number(checkpoint_every_s, "checkpoint_every_s", where, 0.0)
    if resume and checkpoint_path is None:
        raise ValueError(f"{where}: resume=True needs checkpoint_path, the file to resume from")
    if checkpoint_path is not None:
        checkpoints.check_writable(checkpoint_path)
    if callback is not None:
        _checks.callable_as(callback, (0, model, None), "callback(step, model, result)", "callback", where)
    if callback_every is not None:
        _checks.positive_int(callback_every, "callback_every", where)


def _checked_loss(loss, step: int) -> float:
    """The loss as a float, after checking it is a single finite number that training can use."""
    if not torch.is_tensor(loss):
        hint = " (return the tensor itself, not loss.item())" if isinstance(loss, float) else ""
        raise ValueError(f"train(): loss_fn must return a tensor (one number with a gradient); "
                         f"got {type(loss).__name__}{hint}")
    if loss.numel() != 1:
        raise ValueError(f"train(): loss_fn must return a single number; got a tensor of shape "
                         f"{tuple(loss.shape)} (take the mean: .mean())")
    if not loss.requires_grad:
        raise ValueError("train(): the loss has no gradient (was it computed under torch.no_grad(), or "
                         "from the model's output detached?); training cannot use it")
    return _loss_value(loss, step)


def _loss_value(loss: torch.Tensor, step: int) -> float:
    value = loss.item()  # waits for the GPU: the step's time below is real
    if not math.isfinite(value):
        raise FloatingPointError(f"train(): the loss became {value} at step {step}. {_ADVICE}")
    return value


def _weights_finite(model: nn.Module) -> bool:
    return all(torch.isfinite(p).all() for p in model.parameters())


def _run_settings(lr, optimizer, weight_decay, ema_decay, grad_clip) -> dict:
    return {"lr": lr, "optimizer": optimizer, "weight_decay": weight_decay, "ema_decay": ema_decay,
            "grad_clip": grad_clip}


def training_step(model, loss_fn, batch, optimizer, scaler, grad_clip=None, ema=None, amp_dtype=None,
                  step: int = 0) -> float:
    """One step of the training loop (Algorithm 1, lines 2-5): the loss on a batch, its gradient, the
    (clipped) update, the EMA weights; returns the loss as a float (chapters 4 and 5)."""
    with torch.autocast(batch_device(batch).type, dtype=amp_dtype, enabled=amp_dtype is not None):
        loss = loss_fn(model, batch)
    value = _checked_loss(loss, step)
    optimizer.zero_grad(set_to_none=True)
    scaler.scale(loss).backward()
    if grad_clip is not None:              # clip the gradient's norm: one bad batch cannot throw the weights far
        scaler.unscale_(optimizer)
        nn.utils.clip_grad_norm_(model.parameters(), grad_clip)
    scaler.step(optimizer)
    scaler.update()
    if ema is not None:
        ema.update_parameters(model)       # θ_EMA ← δ θ_EMA + (1 − δ) θ
    return value


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
    metadata: dict | None = None,
    device=None,
    progress: bool = True,
    desc: str = "training",
    callback: Callable[[int, nn.Module, "TrainResult"], None] | None = None,
    callback_every: int | None = None,
    cuda_graph: bool = True,
) -> TrainResult:
    """Train ``model`` for ``steps`` optimizer steps of ``loss_fn(model, batch)`` (Algorithm 1's loop).

    ``batches`` is an iterator of batches (:class:`TensorBatches`, or ``forever(DataLoader)``).
    ``optimizer``: "adam" or "adamw". ``ema_decay`` keeps EMA weights with ``torch.optim.swa_utils``
    (chapter 5). ``amp`` uses mixed precision where it helps (:mod:`ddpm_lessons.precision`: bf16 on
    GPUs and CPUs that have it, fp16 with a gradient scaler on older GPUs; the result's
    ``extras["precision"]`` says which). ``max_seconds`` stops early when the time is up (``result.stopped_by_time``).
    ``checkpoint_path`` with ``checkpoint_every_s`` saves during and at the end of training, with
    ``metadata`` (what is needed to use the model again: its config, the diffusion's betas) and the
    model's ``config`` when it has one; ``resume=True`` continues from that file (module docstring).
    ``callback(step, model, result)`` runs every ``callback_every`` steps and after the last one.
    ``cuda_graph`` (on a GPU, without fp16's gradient scaler) replays each step from a CUDA graph after
    the first ``cuda_graphs.EAGER_STEPS``, which run eagerly with every check (:mod:`ddpm_lessons.cuda_graphs`;
    the result's ``extras["cuda_graph"]`` says whether it was used); elsewhere it changes nothing.
    A loss that is not finite or explodes stops training with a :class:`FloatingPointError` that
    says what to try.
    """
    _checks.one_of(optimizer, tuple(OPTIMIZERS), "optimizer", "train()")
    _checks.flag(cuda_graph, "cuda_graph", "train()")
    _check_arguments(model, loss_fn, batches, steps, lr, weight_decay, ema_decay, grad_clip, max_seconds,
                     checkpoint_path, checkpoint_every_s, resume, callback, callback_every)
    if metadata is not None and not isinstance(metadata, dict):
        raise ValueError(f"train(): metadata must be a dict of what the model needs to be used again (tensors and "
                         f"plain values, e.g. {{'betas': diffusion.float64['betas']}}), got {type(metadata).__name__}")
    metadata = dict(metadata or {})
    if hasattr(getattr(model, "config", None), "to_dict"):
        metadata.setdefault("model_config", model.config.to_dict())
    settings = _run_settings(lr, optimizer, weight_decay, ema_decay, grad_clip)
    device = _checks.device(device, "train()") if device is not None else next(model.parameters()).device
    model.to(device)
    if channels_last and device.type == "cuda":
        model.to(memory_format=torch.channels_last)
    amp_dtype = precision.autocast_dtype(device, model) if amp else None
    scaler = torch.amp.GradScaler("cuda", enabled=amp_dtype == torch.float16)
    graphed = cuda_graph and device.type == "cuda" and not scaler.is_enabled()
    # capturable from the first step: the eager steps then compute exactly what the replays will
    opt = OPTIMIZERS[optimizer](model.parameters(), lr=lr, weight_decay=weight_decay, capturable=graphed)
    ema = (AveragedModel(model, multi_avg_fn=get_ema_multi_avg_fn(ema_decay), use_buffers=True)
           if ema_decay is not None else None)
    path = Path(checkpoint_path).expanduser() if checkpoint_path is not None else None
    result = TrainResult(model=model, history=[], ema_model=ema, optimizer=opt, checkpoint_path=path,
                         extras={"precision": precision.name(amp_dtype)})
    if resume:
        resume_run(path, checkpoints.load(path), steps, settings, metadata, model, opt, ema, scaler, batches, result)
        cuda_graphs.set_capturable(opt, graphed)  # the checkpoint keeps the mode of the run that wrote it
    graphed_step = cuda_graphs.GraphedTrainingStep(model, loss_fn, opt, grad_clip, ema, amp_dtype) if graphed else None

    def state() -> dict:
        return {"step": len(result.history), "history": torch.tensor(result.history, dtype=torch.float64),
                "images": result.images, "seconds": result.seconds, "settings": settings, "metadata": metadata,
                "model": model.state_dict(), "optimizer": opt.state_dict(),
                "ema": ema.state_dict() if ema is not None else None, "scaler": scaler.state_dict(),
                "rng_cpu": torch.get_rng_state(),
                "rng_cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
                "batches": batches.state_dict() if hasattr(batches, "state_dict") else None}

    def save(snapshot: bytes) -> None:
        try:
            checkpoints.write(path, snapshot)
        except OSError as error:  # a full or read-only disk: keep training, keep the result, say so
            result.extras["checkpoint_error"] = str(error)
            warnings.warn(f"train(): the checkpoint {path.name} could not be written ({error.strerror or error}); "
                          "training goes on without it", CheckpointWarning, stacklevel=3)

    start_step = len(result.history)
    best_average = running_average = pending = None
    model.train()
    bar = _progress.bar(total=steps, initial=start_step, desc=desc, disable=not progress)
    last_checkpoint = time.perf_counter()
    try:
        for step in range(start_step, steps):
            step_started = time.perf_counter()
            batch = to_device(next(batches), device, channels_last and device.type == "cuda")
            if graphed_step is not None and step - start_step >= cuda_graphs.EAGER_STEPS:
                value = _loss_value(graphed_step(batch), step)
            else:
                value = training_step(model, loss_fn, batch, opt, scaler, grad_clip, ema, amp_dtype, step)
            if step == start_step and all(p.grad is None for p in model.parameters()):
                raise ValueError("train(): the loss does not depend on the model being trained (no gradient reached "
                                 "its parameters); does loss_fn use its first argument, the model it is given?")

            result.history.append(value)
            result.images += batch_length(batch)
            now = time.perf_counter()
            result.seconds += now - step_started  # training time only: callbacks and saves excluded
            running_average = value if running_average is None else 0.9 * running_average + 0.1 * value
            best_average = min(best_average or running_average, running_average)
            if running_average > EXPLOSION_FACTOR * max(best_average, 1e-3):  # blown up, without overflowing
                raise FloatingPointError(f"train(): the loss exploded at step {step}: its running average rose "
                                         f"from {best_average:.3g} to {running_average:.3g}. {_ADVICE}")
            if pending is not None:  # the weights it holds gave a healthy loss on this batch: now write it
                save(pending)
                pending = None
            bar.update(1)
            if progress and (step % 10 == 0 or step == steps - 1):
                bar.set_postfix(loss=f"{value:.4f}", img_s=f"{result.images_per_second:.0f}")
            result.stopped_by_time = max_seconds is not None and result.seconds >= max_seconds and step < steps - 1
            done = step == steps - 1 or result.stopped_by_time
            if callback is not None and (done or (callback_every and (step + 1) % callback_every == 0)):
                model.eval()
                callback(step + 1, model, result)
                model.train()
            if path is not None and (done or now - last_checkpoint >= checkpoint_every_s) and _weights_finite(model):
                snapshot = checkpoints.serialize(state())
                if done:
                    save(snapshot)
                else:  # written after the next step's loss shows these weights are healthy
                    pending = snapshot
                last_checkpoint = time.perf_counter()
            if done:
                break
    finally:
        if result.stopped_by_time:  # the bar's last line shows the steps taken, not a total never reached
            bar.total = bar.n
            bar.set_description(f"{desc} (time budget of {max_seconds:g} s reached)")
        bar.close()
        model.eval()
    if not _weights_finite(model):
        raise FloatingPointError(f"train(): the weights are not finite after step {len(result.history)}. {_ADVICE}")
    result.steps = len(result.history)
    result.extras["cuda_graph"] = graphed_step is not None and graphed_step.graph is not None
    return result


def smoothed(history, window: int = 100) -> float:
    """Mean of the last ``window`` losses: the number to quote for "the loss it reached"."""
    _checks.positive_int(window, "window", "smoothed()")
    values = list(history)[-window:]
    if not values:
        raise ValueError("smoothed(): empty history (train for at least one step)")
    if not all(math.isfinite(v) for v in values):
        raise ValueError("smoothed(): the history holds NaN or infinity: the run diverged (train() stops on that)")
    return math.fsum(values) / len(values)
