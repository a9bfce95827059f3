"""Resume a training run from its checkpoint, honestly (chapter 5: surviving a disconnect).

:func:`resume_run` restores the model, optimizer, EMA, gradient scaler, random state, batch sampler,
step count and loss history. Where the settings of the resumed call differ from the checkpoint's, it
applies the new value and says so (learning rate, weight decay, gradient clipping, EMA on or off),
or refuses with a message that says how to start afresh (another optimizer, fewer steps than done,
other metadata such as the model's config or the diffusion's schedule).
"""
from __future__ import annotations

import warnings

import torch

from . import _checks
from .utils import same_values


class ResumeWarning(_checks.BookWarning):
    """A setting of the resumed call differs from the checkpoint's, and the new value is used."""


def _start_afresh(path) -> str:
    return f"To start afresh, train with resume=False or another checkpoint_path (or delete {path})."


def resume_run(path, saved: dict, steps: int, settings: dict, metadata: dict, model, opt, ema, scaler,
               batches, result) -> None:
    """Restore a run from ``saved``; apply or refuse each setting that differs (module docstring)."""
    step = int(saved["step"])
    if steps <= step:
        raise ValueError(f"resume: the checkpoint {path} is already at step {step}, and steps={steps}: nothing "
                         f"to train. Pass steps > {step} to continue. {_start_afresh(path)}")
    for key in sorted(set(saved["metadata"]) | set(metadata)):
        if not same_values(saved["metadata"].get(key), metadata.get(key)):
            raise ValueError(f"resume: the checkpoint {path} was written with a different {key} "
                             f"({saved['metadata'].get(key)!r:.80} there, {metadata.get(key)!r:.80} now); resuming "
                             f"would mix two runs. {_start_afresh(path)}")
    old = saved["settings"]
    if old["optimizer"] != settings["optimizer"]:
        raise ValueError(f"resume: the checkpoint was trained with optimizer={old['optimizer']!r}, this call asks for "
                         f"{settings['optimizer']!r}; their states do not convert. Resume with "
                         f"optimizer={old['optimizer']!r}. {_start_afresh(path)}")
    try:
        model.load_state_dict(saved["model"])
        opt.load_state_dict(saved["optimizer"])
    except (RuntimeError, KeyError, ValueError) as error:
        raise ValueError(f"resume: {path} does not fit this model ({error}). Resume with the model that wrote it. "
                         f"{_start_afresh(path)}") from error
    if not all(torch.isfinite(p).all() for p in model.parameters()):
        raise FloatingPointError(f"resume: the weights in {path} are not finite; the run had already diverged "
                                 f"when it was saved. {_start_afresh(path)}")
    changed = [f"{key} {old[key]!r} -> {settings[key]!r}" for key in ("lr", "weight_decay", "grad_clip", "ema_decay")
               if old[key] != settings[key]]
    for group in opt.param_groups:  # the new call's values, as the message below says
        group["lr"], group["weight_decay"] = settings["lr"], settings["weight_decay"]
    if ema is not None and saved["ema"] is not None:
        ema.load_state_dict(saved["ema"])
    elif ema is not None:
        changed.append("EMA starts now, from the restored weights (the checkpoint had none)")
    elif saved["ema"] is not None:
        changed.append("the checkpoint's EMA weights are dropped (this call has ema_decay=None)")
    if changed:
        warnings.warn(f"resume from step {step}: this call's settings differ from the checkpoint's and are "
                      f"used: {'; '.join(changed)}", ResumeWarning, stacklevel=3)
    if saved["scaler"]:
        scaler.load_state_dict(saved["scaler"])
    torch.set_rng_state(saved["rng_cpu"])
    if torch.cuda.is_available() and len(saved["rng_cuda"]):
        torch.cuda.set_rng_state_all(saved["rng_cuda"])
    if saved["batches"] is not None and hasattr(batches, "load_state_dict"):
        batches.load_state_dict(saved["batches"])
    elif not hasattr(batches, "load_state_dict"):
        warnings.warn("resume: the batches come from a source without a saved state (a DataLoader): the model, "
                      "optimizer, EMA, random state and step count are restored, but the order of the data starts "
                      "afresh. For an exact resume use dl.training.TensorBatches.", ResumeWarning, stacklevel=3)
    result.history = saved["history"].tolist()
    result.images, result.seconds = int(saved["images"]), float(saved["seconds"])
    result.resumed_from_step = step
