"""Mixed precision: which lower-precision dtype, if any, the trainer and the sampler use (chapter 5).

Under ``torch.autocast`` the convolutions and matrix products run in a 16-bit format while the
weights, the optimizer and the diffusion's formulas stay in float32. Chosen automatically:

- CUDA: bfloat16 where the GPU has it (Ampere and newer), else float16 with a gradient scaler;
- CPU: bfloat16 for convolutional networks where the processor computes it natively (AVX-512 BF16
  or AMX, which oneDNN uses), else float32 — emulated bfloat16 would be slower than float32, and the
  small MLPs gain nothing;
- anything else (Apple's MPS): float32.
"""
from __future__ import annotations

import torch


def cpu_has_native_bf16() -> bool:
    """True when oneDNN runs bfloat16 natively on this CPU (AVX-512 BF16 or AMX)."""
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
        return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
    if device.type == "cpu" and cpu_has_native_bf16():
        modules = model.modules() if isinstance(model, torch.nn.Module) else ()
        convolutional = model is None or any(isinstance(m, torch.nn.Conv2d) for m in modules)
        return torch.bfloat16 if convolutional else None
    return None


def name(dtype: torch.dtype | None) -> str:
    """"bf16", "fp16" or "fp32": how the book prints the precision of a run."""
    return {torch.bfloat16: "bf16", torch.float16: "fp16", None: "fp32"}.get(dtype, str(dtype).replace("torch.", ""))
