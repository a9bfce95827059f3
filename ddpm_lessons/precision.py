"""Mixed precision: which lower-precision dtype, if any, the trainer and the sampler use (chapter 5).

Under ``torch.autocast`` the convolutions and matrix products run in a 16-bit format while the
weights, the optimizer and the diffusion's formulas stay in float32. Chosen automatically:

- CUDA: bfloat16 where the GPU computes it (compute capability 8.0 and newer: Ampere, Hopper), else
  float16 with a gradient scaler (a T4, say; ``torch.cuda.is_bf16_supported()`` also says yes there,
  counting slow emulation);
- CPU: bfloat16 for convolutional networks where oneDNN supports it (AVX-512 processors; natively
  with AVX-512 BF16 or AMX), else float32 — the small MLPs gain nothing;
- anything else (Apple's MPS): float32.
"""
from __future__ import annotations

import torch


def cpu_has_native_bf16() -> bool:
    """True when oneDNN supports bfloat16 on this CPU: AVX-512 processors (natively with AVX-512 BF16 or AMX)."""
    try:
        return bool(torch.backends.mkldnn.is_available() and torch.ops.mkldnn._is_mkldnn_bf16_supported())
    except (AttributeError, RuntimeError):
        return False


def autocast_dtype(device, model=None) -> torch.dtype | None:
    """The dtype ``torch.autocast`` should use on ``device`` for ``model``, or None to stay in float32.

    On a CPU only convolutional networks gain (oneDNN's bf16 convolutions); the small MLPs of
    chapters 3-4 would only lose precision, so a ``model`` without convolutions stays in float32.
    """
    device = torch.device(device)
    if device.type == "cuda":
        major, _ = torch.cuda.get_device_capability(device)
        return torch.bfloat16 if major >= 8 else torch.float16
    if device.type == "cpu" and cpu_has_native_bf16():
        modules = model.modules() if isinstance(model, torch.nn.Module) else ()
        convolutional = model is None or any(isinstance(m, torch.nn.Conv2d) for m in modules)
        return torch.bfloat16 if convolutional else None
    return None


def name(dtype: torch.dtype | None) -> str:
    """"bf16", "fp16" or "fp32": how the book prints the precision of a run."""
    return {torch.bfloat16: "bf16", torch.float16: "fp16", None: "fp32"}.get(dtype, str(dtype).replace("torch.", ""))
