"""CUDA graphs for the samplers (chapter 5): the denoiser's kernels recorded once, replayed at every step.

On a GPU, one call of chapter 5's small U-Net is a few hundred short kernels, and Python launches
them one by one: at a batch of 32 the GPU spends most of a sampling step waiting for the next
launch. A CUDA graph records the kernels of one call ``model(x_t, t)`` and replays all of them with
a single launch, so that a step costs what the GPU computes. A sampler calls the same network with
tensors of the same shape T times, which is exactly what a graph can replay.

The samplers (``Diffusion.sample``, ``ddim.sample``) wrap the model with :func:`graphed` on CUDA
(``cuda_graph=True``, the default); on a CPU or Apple's MPS it returns the model unchanged. The
result is the same computation: the first call of each input shape runs the model as usual (its
input checks included), then records it; later calls copy the inputs into the recorded buffers and
replay. A model that cannot be recorded (it reads a value back to the CPU, say) is found before
recording, by one eager call in which CUDA's synchronising operations are errors, and is run as it
is, with a :class:`GraphWarning` that says why.
"""
from __future__ import annotations

import warnings

import torch

from ._checks import BookWarning

WARMUP_CALLS = 2
"""Calls on a side stream before recording (cuDNN picks its algorithms, lazy buffers are made), as
PyTorch's documentation of CUDA graphs asks."""


class GraphWarning(BookWarning):
    """The denoiser could not be recorded as a CUDA graph and runs without one (correct, only slower)."""


def _autocast_state() -> tuple:
    return torch.is_autocast_enabled("cuda"), torch.get_autocast_dtype("cuda")


class GraphedDenoiser:
    """``model(x_t, t)`` replayed from a CUDA graph, one graph per input shape and precision.

    Returns a new tensor at every call (the graph's output buffer is overwritten by the next
    replay). ``fallback_reason`` is None while graphs are used, else why the model runs eagerly.
    """

    def __init__(self, model):
        self.model = model
        self.graphs = {}
        self.fallback_reason = None

    def parameters(self):
        """The model's parameters (the samplers find the model's device and dtype through them)."""
        parameters = getattr(self.model, "parameters", None)
        return parameters() if callable(parameters) else iter(())

    def __call__(self, x_t: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        if self.fallback_reason is not None or torch.is_grad_enabled() or not (
                torch.is_tensor(x_t) and torch.is_tensor(t) and x_t.is_cuda and t.device == x_t.device):
            return self.model(x_t, t)
        key = (tuple(x_t.shape), x_t.dtype, x_t.device, tuple(t.shape), t.dtype, _autocast_state())
        if key not in self.graphs:
            out = self.model(x_t, t)   # the first call is eager: the model checks the real input
            self._record(key, x_t, t)
            return out
        static_x, static_t, static_out, graph = self.graphs[key]
        static_x.copy_(x_t)
        static_t.copy_(t)
        graph.replay()
        return static_out.clone()

    def _blocker(self, x_t, t) -> str | None:
        """Why the model cannot be recorded, or None. One eager call with CUDA's synchronising operations
        turned into errors (a value read back to the CPU, a copy from pageable memory): such an operation
        would break a recording half-way, and a broken recording leaves PyTorch's random generator and
        allocator in capture mode, so it must be found before, not caught after."""
        previous = torch.cuda.get_sync_debug_mode()
        torch.cuda.set_sync_debug_mode("error")
        try:
            self.model(x_t, t)
        except RuntimeError as error:
            return str(error).strip().splitlines()[0]
        finally:
            torch.cuda.set_sync_debug_mode(previous)
        return None

    def _record(self, key, x_t, t) -> None:
        static_x, static_t = x_t.clone(), t.clone()
        enabled, dtype = key[-1]
        # autocast's cache of low-precision weights lives outside the graph: recorded kernels must cast themselves
        precision = torch.autocast("cuda", dtype=dtype, enabled=enabled, cache_enabled=False)
        side = torch.cuda.Stream(x_t.device)
        side.wait_stream(torch.cuda.current_stream(x_t.device))
        with torch.cuda.stream(side), precision:
            self.fallback_reason = self._blocker(static_x, static_t)
            if self.fallback_reason is None:
                for _ in range(WARMUP_CALLS - 1):
                    self.model(static_x, static_t)
        torch.cuda.current_stream(x_t.device).wait_stream(side)
        if self.fallback_reason is not None:
            warnings.warn(f"the denoiser ({type(self.model).__name__}) cannot be recorded as a CUDA graph, so it "
                          f"runs without one (same results, slower): {self.fallback_reason}. Pass cuda_graph=False "
                          "to the sampler to silence this", GraphWarning, stacklevel=4)
            return
        graph = torch.cuda.CUDAGraph()
        try:
            with torch.cuda.graph(graph), precision:
                static_out = self.model(static_x, static_t)
        except RuntimeError as error:
            raise RuntimeError(f"the denoiser ({type(self.model).__name__}) failed while being recorded as a CUDA "
                               f"graph ({str(error).strip().splitlines()[0]}); PyTorch's CUDA state may be left in "
                               "capture mode: restart the kernel and sample with cuda_graph=False") from error
        self.graphs[key] = (static_x, static_t, static_out, graph)


def graphed(model, device) -> object:
    """``model`` as the samplers call it on ``device``: a :class:`GraphedDenoiser` on CUDA, else ``model``."""
    return GraphedDenoiser(model) if torch.device(device).type == "cuda" else model
