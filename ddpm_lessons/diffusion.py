"""The diffusion process of Ho et al. (2020): forward process, posterior, reverse step, sampler, loss.

Chapter 2 derives the forward process (:meth:`Diffusion.q_sample`, eq. 4), chapter 3 the posterior
(:meth:`Diffusion.q_posterior`, eqs. 6-7), the reverse step (:meth:`Diffusion.p_sample`) and the
sampler built on it (Algorithm 2), chapter 4 the training loss (Algorithm 1).

Time is 0-based: index ``t`` in ``0 … T-1`` is the paper's step ``t+1``, so ``alphas_cumprod[t]`` is
the product of ``alphas[0..t]``, and the reverse step at ``t == 0`` (the paper's t = 1) adds no noise.
The reverse step at index ``t`` takes the paper's x_{t+1} to x_t, so the states of a sampling run are
labelled with the paper's subscripts: x_T is the noise, x_0 the sample.
"""
from __future__ import annotations

import inspect
import warnings
from types import MappingProxyType

import torch
import torch.nn.functional as F

from . import _checks, cuda_graphs, precision, sampling
from .sampling import randn_like
from .schedules import alphas_cumprod as cumulative_alphas
from .schedules import check_betas
from .utils import module_device_dtype

LOSS_TYPES = ("l2", "l1", "huber")
TARGETS = ("eps", "x0")
VARIANCES = ("beta", "beta_tilde")
"""σ_t² of the reverse step: β_t or β̃_t (Ho et al. 2020, sec. 3.2)."""


def schedule_quantities(betas: torch.Tensor) -> dict:
    """Every quantity of the schedule, with the paper's names, from float64 ``betas`` (chapters 2-3)."""
    alphas = 1 - betas
    alphas_cumprod = cumulative_alphas(betas)                                  # ᾱ_t (eq. 4)
    alphas_cumprod_prev = torch.cat([alphas_cumprod.new_ones(1), alphas_cumprod[:-1]])
    return {
        "betas": betas,
        "alphas": alphas,
        "alphas_cumprod": alphas_cumprod,
        "alphas_cumprod_prev": alphas_cumprod_prev,
        "sqrt_alphas_cumprod": alphas_cumprod.sqrt(),
        "sqrt_one_minus_alphas_cumprod": (1 - alphas_cumprod).sqrt(),
        "sqrt_recip_alphas": alphas.rsqrt(),
        "sqrt_recip_alphas_cumprod": alphas_cumprod.rsqrt(),
        "sqrt_recipm1_alphas_cumprod": (1 / alphas_cumprod - 1).sqrt(),
        # β_t / sqrt(1 − ᾱ_t): the weight of ε in the reverse mean (eq. 11, Algorithm 2 line 4)
        "eps_coef": betas / (1 - alphas_cumprod).sqrt(),
        # β̃_t = (1 − ᾱ_{t−1}) / (1 − ᾱ_t) · β_t (eq. 7); it is 0 at t = 0
        "posterior_variance": betas * (1 - alphas_cumprod_prev) / (1 - alphas_cumprod),
        # μ̃_t = coef1 · x_0 + coef2 · x_t (eq. 7)
        "posterior_mean_coef1": betas * alphas_cumprod_prev.sqrt() / (1 - alphas_cumprod),
        "posterior_mean_coef2": (1 - alphas_cumprod_prev) * alphas.sqrt() / (1 - alphas_cumprod),
    }


class ScheduleWarning(_checks.BookWarning):
    """A schedule that works but defeats the method: x_T still holds a visible part of the data."""


class Diffusion:
    """A DDPM with noise schedule ``betas`` (1-D, length T, every value in (0, 1)).

    The schedule is kept once in float64 (``d.float64``, a read-only dict of every quantity); the
    attributes with the paper's names (``d.betas``, ``d.alphas_cumprod``, …) are float32 copies, on
    the CPU until :meth:`to` moves them. The methods work on data on any device.

    >>> d = Diffusion(schedules.linear_beta_schedule(1000))
    >>> x_t = d.q_sample(x0, t)                       # eq. 4
    >>> mean, var = d.q_posterior(x0, x_t, t)         # eqs. 6-7
    >>> x = d.sample(model, (16, 1, 28, 28))          # Algorithm 2
    >>> loss = d.loss(model, x0)                      # Algorithm 1
    """

    def __init__(self, betas):
        betas = check_betas(betas, "Diffusion(betas)")
        self.T = betas.numel()
        self.float64 = MappingProxyType(schedule_quantities(betas))
        for name, value in self.float64.items():
            setattr(self, name, value.to(torch.float32))
        self._device_copies = {}   # (name, dtype, device) -> (table, its version, the copy): see _on_device
        last = float(self.float64["alphas_cumprod"][-1])
        if last > 0.01:
            warnings.warn(
                f"Diffusion: ᾱ_T = {last:.3g}, so x_T keeps sqrt(ᾱ_T) = {last ** 0.5:.0%} of the data and is not "
                f"pure noise, while sampling starts from N(0, I): the samples will be off. Use more steps, "
                f"scale the betas by 1000/T (linear_beta_schedule(T, 1e-4 * 1000 / T, 0.02 * 1000 / T)), or the "
                f"cosine schedule (chapter 2).", ScheduleWarning, stacklevel=2)

    # ------------------------------------------------------------------ housekeeping
    @property
    def device(self) -> torch.device:
        return self.betas.device

    def to(self, device) -> "Diffusion":
        """Move the float32 attributes to ``device`` (in place, like ``nn.Module.to``); returns self."""
        device = _checks.device(device, "Diffusion.to()")
        for name in self.float64:
            setattr(self, name, getattr(self, name).to(device))
        return self

    def __repr__(self) -> str:
        return (f"Diffusion(T={self.T}, betas={self.betas[0].item():.3g} … {self.betas[-1].item():.3g}, "
                f"alphas_cumprod[T-1]={self.alphas_cumprod[-1].item():.3g}, device={self.device})")

    def _at(self, name: str, t: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        """Quantity ``name`` at steps ``t``, shaped (batch, 1, …, 1) to broadcast against ``x``, on x's device
        (from the float64 schedule for float64 data, so that they keep their precision)."""
        table = self.float64[name] if x.dtype == torch.float64 else getattr(self, name)
        values = self._on_device(name, table, x.device)[t].to(x.dtype)
        return values.reshape(-1, *([1] * (x.ndim - 1)))

    def _on_device(self, name: str, table: torch.Tensor, device: torch.device) -> torch.Tensor:
        """``table`` on ``device``, copied there once and kept (until the table changes): a copy from
        the CPU at every step would make the GPU wait for it, and cannot be recorded in a CUDA graph."""
        if table.device == device:
            return table
        key = (name, table.dtype, device)
        source, version, copy = self._device_copies.get(key, (None, None, None))
        if source is not table or version != table._version:
            copy = table.to(device)
            self._device_copies[key] = (table, table._version, copy)
        return copy

    def _checked(self, where: str, x, t, x_name: str = "x_t"):
        """x (a finite tensor) and t (steps in 0 … T-1) as the methods use them. A t that a method of
        this chain has already checked marks an inner call: x was checked there too."""
        x = _checks.tensor(x, x_name, where)
        if not hasattr(t, "_checked_for"):
            _checks.finite(x, x_name, where)
        return x, _checks.timesteps(t, self.T, x.shape[0], where, x.device)

    def check_model(self, model, where: str) -> None:
        """A clear error for what cannot be a noise predictor of this diffusion: a class, or a network
        built for another number of steps T."""
        if isinstance(model, type):
            raise ValueError(f"{where}: model is the class {model.__name__}; pass the trained network, an instance")
        if not callable(model):
            raise ValueError(f"{where}: model must be callable as model(x_t, t), got {type(model).__name__}")
        built_for = getattr(model, "T", None)
        if isinstance(built_for, int) and built_for != self.T:
            raise ValueError(f"{where}: the model was built for T = {built_for} steps, this Diffusion has T = {self.T}; "
                             "use the schedule it was trained with")

    def model_output(self, model, x_t: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        """``model(x_t, t)``, checked to be a tensor of x_t's shape (the predicted noise, or x_0)."""
        try:
            out = model(x_t, t)
        except TypeError as error:
            try:
                inspect.signature(getattr(model, "forward", model)).bind(x_t, t)
            except (TypeError, ValueError):
                raise ValueError(f"model(x_t, t) failed ({error}): a noise predictor must take the step t too. "
                                 "Chapter 1's BasicUNet takes only x; use a time-conditioned network such as "
                                 "dl.models.UNet or NoiseMLP") from None
            raise
        if not torch.is_tensor(out) or tuple(out.shape) != tuple(x_t.shape):
            got = tuple(out.shape) if torch.is_tensor(out) else type(out).__name__
            raise ValueError(f"model(x_t, t) must return a tensor of x_t's shape {tuple(x_t.shape)} "
                             f"(the predicted noise); got {got}")
        if not _checks.capturing(out) and not torch.isfinite(out).all():   # in a CUDA graph the loss is checked after
            raise FloatingPointError("model(x_t, t) returned NaN or infinity (at steps "
                                     f"{sorted(set(t.tolist()))[:5]}…): the network has diverged or was given "
                                     "bad weights; check its training loss (chapter 4, the appendix)")
        return out

    # ------------------------------------------------------------------ chapter 2: forward process
    def q_sample(self, x0: torch.Tensor, t, noise: torch.Tensor | None = None,
                 generator: torch.Generator | None = None) -> torch.Tensor:
        """x_t = sqrt(ᾱ_t) x_0 + sqrt(1 − ᾱ_t) ε, a draw from q(x_t | x_0) (Ho et al. 2020, eq. 4; chapter 2).

        ``noise`` is ε (drawn from N(0, I) with ``generator`` when not given).
        """
        x0, t = self._checked("q_sample()", _checks.data(x0, "x0", "q_sample()"), t, "x0")
        noise = (randn_like(x0, _checks.generator(generator, "q_sample()")) if noise is None else
                 _checks.finite(_checks.same_shape(x0, noise, "x0", "noise", "q_sample()"), "noise", "q_sample()"))
        return self._at("sqrt_alphas_cumprod", t, x0) * x0 + self._at("sqrt_one_minus_alphas_cumprod", t, x0) * noise

    # ------------------------------------------------------------------ chapter 3: posterior and reverse step
    def q_posterior(self, x0: torch.Tensor, x_t: torch.Tensor, t):
        """Mean μ̃_t(x_t, x_0) and variance β̃_t of q(x_{t−1} | x_t, x_0) (Ho et al. 2020, eqs. 6-7; chapter 3).

        μ̃_t = sqrt(ᾱ_{t−1}) β_t / (1 − ᾱ_t) · x_0 + sqrt(α_t) (1 − ᾱ_{t−1}) / (1 − ᾱ_t) · x_t,
        β̃_t = (1 − ᾱ_{t−1}) / (1 − ᾱ_t) · β_t. The variance is returned with x_t's shape.
        """
        x_t, t = self._checked("q_posterior()", x_t, t)
        x0 = _checks.same_shape(x_t, _checks.tensor(x0, "x0", "q_posterior()"), "x_t", "x0", "q_posterior()")
        _checks.finite(x0, "x0", "q_posterior()")
        mean = self._at("posterior_mean_coef1", t, x_t) * x0 + self._at("posterior_mean_coef2", t, x_t) * x_t
        variance = self._at("posterior_variance", t, x_t).expand(x_t.shape)
        return mean, variance

    def predict_x0(self, x_t: torch.Tensor, t, eps: torch.Tensor) -> torch.Tensor:
        """x_0 = (x_t − sqrt(1 − ᾱ_t) ε) / sqrt(ᾱ_t): eq. 4 solved for x_0 (chapter 3)."""
        x_t, t = self._checked("predict_x0()", x_t, t)
        eps = _checks.same_shape(x_t, eps, "x_t", "eps", "predict_x0()")
        return self._at("sqrt_recip_alphas_cumprod", t, x_t) * x_t - self._at("sqrt_recipm1_alphas_cumprod", t, x_t) * eps

    def predict_eps(self, x_t: torch.Tensor, t, x0: torch.Tensor) -> torch.Tensor:
        """ε = (x_t − sqrt(ᾱ_t) x_0) / sqrt(1 − ᾱ_t): eq. 4 solved for ε (chapters 4 and 6, x0-prediction)."""
        x_t, t = self._checked("predict_eps()", x_t, t)
        x0 = _checks.same_shape(x_t, x0, "x_t", "x0", "predict_eps()")
        return (x_t - self._at("sqrt_alphas_cumprod", t, x_t) * x0) / self._at("sqrt_one_minus_alphas_cumprod", t, x_t)

    def p_mean(self, model, x_t: torch.Tensor, t, target: str = "eps", clip_x0: bool = False) -> torch.Tensor:
        """μ_θ(x_t, t) = 1/sqrt(α_t) (x_t − β_t / sqrt(1 − ᾱ_t) ε_θ(x_t, t)) (Ho et al. 2020, eq. 11; chapter 3).

        ``target="x0"`` reads the model output as predicted x_0 and uses μ̃_t(x_t, x̂_0) (eq. 7);
        ``clip_x0=True`` clips the predicted x_0 to the data range [-1, 1] first (Ho et al.'s code
        does so for images); without clipping both forms give the same mean.
        """
        _checks.one_of(target, TARGETS, "target", "p_mean()")
        x_t, t = self._checked("p_mean()", x_t, t)
        out = self.model_output(model, x_t, t)
        if target == "eps" and not clip_x0:
            return self._at("sqrt_recip_alphas", t, x_t) * (x_t - self._at("eps_coef", t, x_t) * out)
        x0_hat = out if target == "x0" else self.predict_x0(x_t, t, out)
        if clip_x0:
            x0_hat = x0_hat.clamp(-1, 1)
        return self.q_posterior(x0_hat, x_t, t)[0]

    @torch.no_grad()
    def p_sample(self, model, x_t: torch.Tensor, t, variance: str = "beta",
                 generator: torch.Generator | None = None, *, target: str = "eps",
                 clip_x0: bool = False) -> torch.Tensor:
        """One reverse step x_{t−1} = μ_θ(x_t, t) + σ_t z, z ~ N(0, I) (Algorithm 2, line 4; chapter 3).

        ``variance`` picks σ_t²: ``"beta"`` (β_t) or ``"beta_tilde"`` (β̃_t, eq. 7); both are discussed
        in Ho et al. 2020, sec. 3.2. No noise is added at t == 0 (the paper's t = 1).
        """
        _checks.one_of(variance, VARIANCES, "variance", "p_sample()")
        x_t, t = self._checked("p_sample()", x_t, t)
        x_t = x_t.to(module_device_dtype(model)[0] or x_t.device)    # where the model is, as loss() does
        mean = self.p_mean(model, x_t, t, target=target, clip_x0=clip_x0)
        sigma2 = self._at("betas" if variance == "beta" else "posterior_variance", t, x_t)
        sigma = sigma2.sqrt() * (t > 0).to(x_t.dtype).reshape(sigma2.shape)   # z = 0 at the last step
        return mean + sigma * randn_like(x_t, _checks.generator(generator, "p_sample()"))

    @torch.no_grad()
    def p_sample_loop_progressive(self, model, shape, *, generator: torch.Generator | None = None,
                                  variance: str = "beta", device=None, target: str = "eps", clip_x0: bool = False,
                                  amp: bool = True, cuda_graph: bool = True):
        """Algorithm 2, one state at a time (chapter 3): yields ``(t, x_t)`` for t = T, T-1, …, 0.

        x_T ~ N(0, I) (line 1), then :meth:`p_sample` at each step (lines 2-4); the labels are the
        paper's subscripts, so the last pair is (0, x_0), the sample. Runs on ``device`` (default:
        the model's) in the model's dtype; ``generator`` makes the run reproducible. ``amp`` runs the
        network in mixed precision where it helps (:mod:`ddpm_lessons.precision`); x stays float32.
        ``cuda_graph`` replays the network from a CUDA graph on a GPU (:mod:`ddpm_lessons.cuda_graphs`).
        """
        shape = _checks.shape(shape, "shape", "sample()")
        _checks.one_of(variance, VARIANCES, "variance", "sample()")
        self.check_model(model, "sample()")
        generator = _checks.generator(generator, "sample()")
        model_device, model_dtype = module_device_dtype(model)
        device = _checks.device(device, "sample()") if device is not None else (model_device or self.device)
        x = randn_like(torch.empty(shape, dtype=model_dtype or torch.float32, device=device), generator)
        steps = torch.arange(self.T, device=device).repeat_interleave(shape[0]).view(self.T, shape[0])
        amp_dtype = precision.autocast_dtype(device, model) if amp else None
        _checks.flag(cuda_graph, "cuda_graph", "sample()")
        denoiser = cuda_graphs.graphed(model, device) if cuda_graph else model
        yield self.T, x
        for t in reversed(range(self.T)):
            with torch.autocast(device.type, dtype=amp_dtype, enabled=amp_dtype is not None):
                x = self.p_sample(denoiser, x, steps[t], variance, generator, target=target, clip_x0=clip_x0)
            yield t, x

    def sample(self, model, shape, *, generator: torch.Generator | None = None, variance: str = "beta",
               device=None, target: str = "eps", clip_x0: bool = False, amp: bool = True, progress: bool = False,
               return_trajectory: bool = False, cuda_graph: bool = True):
        """Algorithm 2 of Ho et al. 2020 (chapter 3): x_T ~ N(0, I), then T reverse steps to x_0.

        The loop is :meth:`p_sample_loop_progressive`. Returns x_0, or with ``return_trajectory=True``
        a :class:`~ddpm_lessons.sampling.Trajectory` (every state x_T … x_0 on the CPU, labelled with
        its t). ``progress=True`` shows a progress bar.
        """
        states = self.p_sample_loop_progressive(model, shape, generator=generator, variance=variance,
                                                device=device, target=target, clip_x0=clip_x0, amp=amp,
                                                cuda_graph=cuda_graph)
        return sampling.run(states, total=self.T + 1, progress=progress, return_trajectory=return_trajectory)

    # ------------------------------------------------------------------ chapter 4: training loss
    def loss(self, model, x0: torch.Tensor, loss_type: str = "l2", target: str = "eps", t=None,
             noise: torch.Tensor | None = None, generator: torch.Generator | None = None) -> torch.Tensor:
        """Algorithm 1 of Ho et al. 2020 (chapter 4): the simplified loss L_simple (eq. 14).

        t ~ Uniform{0, …, T-1} and ε ~ N(0, I) (unless given), x_t = q_sample(x0, t, ε), and the mean
        of ‖target − model(x_t, t)‖ with ``loss_type`` "l2" (squared error), "l1" or "huber";
        ``target`` "eps" (the model predicts the noise, as in the paper) or "x0" (it predicts x_0).
        """
        _checks.one_of(loss_type, LOSS_TYPES, "loss_type", "loss()")
        _checks.one_of(target, TARGETS, "target", "loss()")
        self.check_model(model, "loss()")
        x0 = _checks.data(x0, "x0", "loss()").to(module_device_dtype(model)[0] or x0.device)
        generator = _checks.generator(generator, "loss()")
        if t is None:
            t = torch.randint(0, self.T, (x0.shape[0],), generator=generator,
                              device=generator.device if generator is not None else x0.device)
        noise = randn_like(x0, generator) if noise is None else _checks.same_shape(x0, noise, "x0", "noise", "loss()")
        x0, t = self._checked("loss()", x0, t, "x0")
        x_t = self.q_sample(x0, t, noise.to(x0.device))
        prediction = self.model_output(model, x_t, t)
        wanted = noise.to(x0.device) if target == "eps" else x0
        if loss_type == "l2":
            return F.mse_loss(prediction, wanted)
        if loss_type == "l1":
            return F.l1_loss(prediction, wanted)
        return F.huber_loss(prediction, wanted)
