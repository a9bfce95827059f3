"""CUDA graphs (chapter 5): the kernels of a sampling step, or of a whole training step, recorded once
and replayed.

On a GPU, one call of chapter 5's small U-Net is a few hundred short kernels, and a training step
(forward, backward, AdamW, EMA) about two thousand; Python launches them one by one, and at the
book's batch sizes the GPU spends most of the time waiting for the next launch. A CUDA graph records
the kernels once and replays all of them with a single launch, so that a step costs what the GPU
computes. The samplers call the same network with tensors of the same shape T times, and training
repeats the same step on batches of one shape: exactly what a graph can replay.

- **Sampling.** ``Diffusion.sample`` and ``ddim.sample`` wrap the model with :func:`graphed` on CUDA
  (``cuda_graph=True``, the default); on a CPU or Apple's MPS it returns the model unchanged. The
  first call of each input shape runs the model as usual (its input checks included), then records
  it; later calls copy the inputs into the recorded buffers and replay.
- **Training.** ``training.train`` (``cuda_graph=True``, the default) runs its first steps eagerly,
  with every check, then records one whole step in a :class:`GraphedTrainingStep`: the loss with its
  random t and ε (drawn by PyTorch's graph-safe generator, new numbers at every replay), the
  backward pass, the gradient clipping, AdamW (``capturable=True``) and the EMA update.

Either way, a model or loss that cannot be recorded (it reads a value back to the CPU, say) is found
before recording, by one eager call in which CUDA's synchronising operations are errors, and runs
as it is, with a :class:`GraphWarning` that says why.
"""
from __future__ import annotations

import itertools
import warnings

import torch
from torch import nn

from ._checks import BookWarning

# The book turns CUDA's sync debug mode on for one call, on purpose (see _sync_free_error); PyTorch's notice
# that the mode is a prototype, with a path into its installation, is not for the reader's page.
warnings.filterwarnings("ignore", message="Synchronization debug mode is a prototype feature", category=UserWarning)

WARMUP_CALLS = 2
"""Sampling: calls on a side stream before recording (cuDNN picks its algorithms, lazy buffers are
made), as PyTorch's documentation of CUDA graphs asks."""
EAGER_STEPS = 2
"""Training: steps that ``train()`` runs eagerly, with all its checks, before it records a step."""


class GraphWarning(BookWarning):
    """The denoiser or the training step could not be recorded as a CUDA graph and runs without one
    (correct, only slower)."""


def _autocast_state() -> tuple:
    return torch.is_autocast_enabled("cuda"), torch.get_autocast_dtype("cuda")


def _first_line(error: Exception) -> str:
    return (str(error).strip().splitlines() or [type(error).__name__])[0]


def _sync_free_error(fn) -> str | None:
    """Run ``fn()`` with CUDA's synchronising operations (a value read back to the CPU, a copy from
    pageable memory) turned into errors; the first line of the error, or None if there was none.
    Such an operation would break a recording half-way, and a broken recording leaves PyTorch's random
    generator and allocator in capture mode, so it must be found before recording, not caught after."""
    previous = torch.cuda.get_sync_debug_mode()
    torch.cuda.set_sync_debug_mode("error")
    try:
        fn()
    except RuntimeError as error:
        return _first_line(error)
    finally:
        torch.cuda.set_sync_debug_mode(previous)
    return None


def _capture_failed(what: str, error: Exception, fix: str) -> RuntimeError:
    return RuntimeError(f"{what} failed while being recorded as a CUDA graph ({_first_line(error)}); PyTorch's "
                        f"CUDA state may be left in capture mode: restart the kernel and {fix}")


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

    def _record(self, key, x_t, t) -> None:
        static_x, static_t = x_t.clone(), t.clone()
        enabled, dtype = key[-1]
        # autocast's cache of low-precision weights lives outside the graph: recorded kernels must cast themselves
        precision = torch.autocast("cuda", dtype=dtype, enabled=enabled, cache_enabled=False)
        side = torch.cuda.Stream(x_t.device)
        side.wait_stream(torch.cuda.current_stream(x_t.device))
        with torch.cuda.stream(side), precision:
            self.fallback_reason = _sync_free_error(lambda: self.model(static_x, static_t))
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
            raise _capture_failed(f"the denoiser ({type(self.model).__name__})", error,
                                  "sample with cuda_graph=False") from error
        self.graphs[key] = (static_x, static_t, static_out, graph)


def graphed(model, device) -> object:
    """``model`` as the samplers call it on ``device``: a :class:`GraphedDenoiser` on CUDA, else ``model``."""
    return GraphedDenoiser(model) if torch.device(device).type == "cuda" else model


def ema_update(ema, model: nn.Module) -> None:
    """θ_EMA ← δ θ_EMA + (1 − δ) θ for an ``AveragedModel`` built with ``get_ema_multi_avg_fn(δ)`` and
    ``use_buffers=True`` (chapter 5): its own update, without its tests of ``n_averaged`` (a value on
    the CPU, or read back to it), so that it can be recorded. For an EMA already updated once; the
    caller counts the update in ``ema.n_averaged``."""
    groups = {}
    for averaged, current in zip(itertools.chain(ema.module.parameters(), ema.module.buffers()),
                                 itertools.chain(model.parameters(), model.buffers())):
        if averaged.is_floating_point():
            pair = groups.setdefault(averaged.dtype, ([], []))
            pair[0].append(averaged.detach())
            pair[1].append(current.detach())
    for averaged, current in groups.values():
        ema.multi_avg_fn(averaged, current, ema.n_averaged)


def set_capturable(optimizer, capturable: bool) -> None:
    """Switch a torch optimizer with a ``capturable`` mode (Adam, AdamW) between eager steps (its step
    counts on the CPU) and steps that a CUDA graph can record (the counts on the parameters' device).
    ``training.train`` also calls it after resuming, since a checkpoint keeps the mode it was saved in."""
    for group in optimizer.param_groups:
        if "capturable" not in group:
            continue
        group["capturable"] = capturable
        for p in group["params"]:
            state = optimizer.state.get(p, {})
            if torch.is_tensor(state.get("step")):
                state["step"] = (state["step"].to(p.device, torch.float32) if capturable else state["step"].cpu())


def _structure(batch):
    """Shapes, dtypes and strides of a batch (a tensor or a tuple/list of them): what a recording fixes."""
    tensors = (batch,) if torch.is_tensor(batch) else tuple(batch)
    return tuple((tuple(b.shape), b.dtype, b.device, b.stride()) if torch.is_tensor(b) else type(b) for b in tensors)


def _copy_into(static, batch) -> None:
    if torch.is_tensor(static):
        static.copy_(batch)
    else:
        for s, b in zip(static, batch):
            if torch.is_tensor(s):
                s.copy_(b)


def _clone(batch):
    return batch.clone() if torch.is_tensor(batch) else type(batch)(b.clone() if torch.is_tensor(b) else b
                                                                       for b in batch)


class GraphedTrainingStep:
    """One training step (Algorithm 1, lines 2-5), recorded as a CUDA graph and replayed (chapter 5).

    ``step(batch)`` updates the model, its Adam or AdamW optimizer and the EMA on one batch and returns
    the loss, a 0-d tensor on the GPU. The first call tests the step for operations that cannot be
    recorded (:func:`_sync_free_error`, on a dry run whose gradient and random numbers are dropped),
    makes one real step on a side stream (cuDNN picks its algorithms, the optimizer's state exists),
    switches the optimizer to ``capturable`` if it is not yet (:func:`set_capturable`), then records;
    later calls copy the batch into the recorded one and replay. A replay computes what an eager step
    of a capturable optimizer computes, random draws included, so a run resumed from a checkpoint
    repeats the unbroken one. A batch
    of another shape (the last, smaller batch of a DataLoader) takes an eager step, as does every
    step when the recording is impossible (``fallback_reason`` says why).

    Only for losses without a gradient scaler (float32 or bfloat16): fp16's scaler reads the
    gradients back to skip a step that overflowed. A loss that is not finite has already updated
    the weights when it is read: :func:`ddpm_lessons.training.train` then stops, and its last
    checkpoint holds healthy weights.
    """

    def __init__(self, model: nn.Module, loss_fn, optimizer, grad_clip=None, ema=None, amp_dtype=None):
        self.model, self.loss_fn, self.optimizer = model, loss_fn, optimizer
        self.grad_clip, self.ema, self.amp_dtype = grad_clip, ema, amp_dtype
        self.graph = self.static_batch = self.static_loss = self.structure = None
        self.fallback_reason = None

    def _loss(self, batch) -> torch.Tensor:
        # autocast's cache of low-precision weights lives outside a graph: recorded kernels must cast themselves
        with torch.autocast("cuda", dtype=self.amp_dtype, enabled=self.amp_dtype is not None, cache_enabled=False):
            return self.loss_fn(self.model, batch)

    def _gradient(self, batch) -> torch.Tensor:
        """Loss and its clipped gradient (gradients must be None or zero before); the dry run stops here."""
        loss = self._loss(batch)
        loss.backward()
        if self.grad_clip is not None:
            nn.utils.clip_grad_norm_(self.model.parameters(), self.grad_clip)
        return loss.detach()

    def _update(self, batch) -> torch.Tensor:
        """Loss, clipped gradient, AdamW step, EMA: the whole step, what is recorded."""
        loss = self._gradient(batch)
        self.optimizer.step()
        if self.ema is not None:
            ema_update(self.ema, self.model)
        return loss

    def __call__(self, batch) -> torch.Tensor:
        if self.graph is not None and _structure(batch) == self.structure:
            _copy_into(self.static_batch, batch)
            self.graph.replay()
            loss = self.static_loss
        elif self.graph is not None or self.fallback_reason is not None:
            self.optimizer.zero_grad(set_to_none=self.graph is None)   # a graph's gradients stay where it wrote them
            loss = self._update(batch)
        else:
            loss = self._record(batch)
        if self.ema is not None:
            self.ema.n_averaged += 1
        return loss

    def _record(self, batch) -> torch.Tensor:
        """The first step: test, one real step on a side stream, then record (see the class docstring)."""
        device = next(self.model.parameters()).device
        self.optimizer.zero_grad(set_to_none=True)
        side = torch.cuda.Stream(device)
        side.wait_stream(torch.cuda.current_stream(device))
        with torch.cuda.stream(side):
            with torch.random.fork_rng(devices=[device]):   # the dry run's t and ε are not the real step's
                self.fallback_reason = _sync_free_error(lambda: self._gradient(batch))
            self.optimizer.zero_grad(set_to_none=True)     # the dry run's gradient is dropped
            loss = self._update(batch)                     # the real step for this batch
        torch.cuda.current_stream(device).wait_stream(side)
        if self.fallback_reason is None and not all("capturable" in g for g in self.optimizer.param_groups):
            self.fallback_reason = f"{type(self.optimizer).__name__} cannot be recorded (it has no capturable mode)"
        if self.fallback_reason is not None:
            set_capturable(self.optimizer, False)   # eager steps from now on: the faster mode for them
            warnings.warn(f"the training step ({type(self.model).__name__} with this loss_fn) cannot be recorded as "
                          f"a CUDA graph, so it runs without one (same training, slower): {self.fallback_reason}. "
                          "Pass cuda_graph=False to train() to silence this", GraphWarning, stacklevel=4)
            return loss
        self.static_batch, self.structure = _clone(batch), _structure(batch)
        set_capturable(self.optimizer, True)
        self.optimizer.zero_grad(set_to_none=True)         # the recorded backward writes the gradients afresh
        graph = torch.cuda.CUDAGraph()
        try:
            with torch.cuda.graph(graph):
                self.static_loss = self._update(self.static_batch)
        except RuntimeError as error:
            raise _capture_failed(f"the training step ({type(self.model).__name__})", error,
                                  "train with cuda_graph=False") from error
        self.graph = graph
        return loss
