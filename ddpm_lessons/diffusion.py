"""The diffusion process of Ho et al. (2020): forward process, posterior, reverse step, sampler, loss.

Chapter 2 derives the forward process (:meth:`Diffusion.q_sample`, eq. 4), chapter 3 the posterior
(:meth:`Diffusion.q_posterior`, eqs. 6-7), the reverse step and the sampler (Algorithm 2), chapter 4
the training loss (Algorithm 1).

Time is 0-based: index ``t`` in ``0 … T-1`` is the paper's step ``t+1``, so ``alphas_cumprod[t]`` is
the product of ``alphas[0..t]``, and the reverse step at ``t == 0`` (the paper's t = 1) adds no noise.
"""
from __future__ import annotations

from numbers import Integral

import torch
import torch.nn.functional as F

_BUFFERS = (
    "betas", "alphas", "alphas_cumprod", "alphas_cumprod_prev", "sqrt_alphas_cumprod",
    "sqrt_one_minus_alphas_cumprod", "sqrt_recip_alphas", "sqrt_recip_alphas_cumprod",
    "sqrt_recipm1_alphas_cumprod", "eps_coef", "posterior_variance", "posterior_log_variance_clipped",
    "posterior_mean_coef1", "posterior_mean_coef2",
)
LOSS_TYPES = ("l2", "l1", "huber")
TARGETS = ("eps", "x0")
VARIANCES = ("beta", "beta_tilde")


def _choice(value, valid, what: str) -> str:
    if value not in valid:
        raise ValueError(f"{what} must be one of {', '.join(map(repr, valid))}; got {value!r}")
    return value


def _model_device_dtype(model):
    """The device and floating dtype of a model's first parameter, or (None, None) without parameters."""
    parameters = getattr(model, "parameters", None)
    if callable(parameters):
        for p in parameters():
            return p.device, (p.dtype if p.is_floating_point() else None)
    return None, None


def _randn_like(x: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
    """N(0, I) noise of x's shape, dtype and device, drawn with ``generator`` (on its own device) when given."""
    if generator is None:
        return torch.randn_like(x)
    return torch.randn(x.shape, generator=generator, dtype=x.dtype, device=generator.device).to(x.device)


class Diffusion:
    """A DDPM with noise schedule ``betas`` (1-D, length T, every value in (0, 1)).

    All schedule quantities are computed in float64 and stored as float32 tensors with the paper's
    names; they follow the data to its device on first use (or call :meth:`to`).

    >>> d = Diffusion(schedules.linear_beta_schedule(1000))
    >>> x_t = d.q_sample(x0, t)                       # eq. 4
    >>> mean, var = d.q_posterior(x0, x_t, t)         # eqs. 6-7
    >>> x = d.sample(model, (16, 1, 28, 28))          # Algorithm 2
    >>> loss = d.loss(model, x0)                      # Algorithm 1
    """

    def __init__(self, betas):
        betas = torch.as_tensor(betas)
        if betas.ndim != 1 or betas.numel() == 0:
            raise ValueError(
                f"Diffusion(betas): betas must be a non-empty 1-D tensor (one β per step), "
                f"got shape {tuple(betas.shape)}"
            )
        if not betas.is_floating_point():
            raise ValueError(f"Diffusion(betas): betas must be a floating-point tensor, got dtype {betas.dtype}")
        betas = betas.detach().to("cpu", torch.float64)
        if not torch.isfinite(betas).all() or (betas <= 0).any() or (betas >= 1).any():
            bad = int(((betas <= 0) | (betas >= 1) | ~torch.isfinite(betas)).nonzero()[0])
            raise ValueError(
                f"Diffusion(betas): every beta must lie in the open interval (0, 1); "
                f"betas[{bad}] = {betas[bad].item()!r}"
            )
        self.T = betas.numel()
        alphas = 1 - betas
        alphas_cumprod = torch.cumprod(alphas, dim=0)                          # ᾱ_t (eq. 4)
        alphas_cumprod_prev = torch.cat([alphas_cumprod.new_ones(1), alphas_cumprod[:-1]])
        values = {
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
        pv = values["posterior_variance"]
        # log β̃_t with the t = 0 entry (log 0) replaced by the next one, as in Ho et al.'s code
        # (with a single step there is no next one: β_t stands in)
        values["posterior_log_variance_clipped"] = torch.log(torch.cat([pv[1:2], pv[1:]]) if self.T > 1 else betas)
        for name in _BUFFERS:
            setattr(self, name, values[name].to(torch.float32))

    # ------------------------------------------------------------------ housekeeping
    @property
    def device(self) -> torch.device:
        return self.betas.device

    def to(self, device) -> "Diffusion":
        """Move every buffer to ``device`` (in place, like ``nn.Module.to``); returns self."""
        device = torch.device(device)
        for name in _BUFFERS:
            setattr(self, name, getattr(self, name).to(device))
        return self

    def __repr__(self) -> str:
        return (
            f"Diffusion(T={self.T}, betas={self.betas[0].item():.3g} … {self.betas[-1].item():.3g}, "
            f"alphas_cumprod[T-1]={self.alphas_cumprod[-1].item():.3g}, device={self.device})"
        )

    def _check_t(self, t, batch: int, device) -> torch.Tensor:
        """``t`` as a LongTensor (batch,) on ``device``; an int (or 0-d integer tensor) is broadcast."""
        if isinstance(t, bool) or not (isinstance(t, Integral) or torch.is_tensor(t)):
            raise ValueError(f"t must be an integer or a LongTensor of shape ({batch},), got {type(t).__name__}: {t!r}")
        t = torch.as_tensor(t)
        if t.is_floating_point() or t.is_complex() or t.dtype == torch.bool:
            raise ValueError(f"t must hold integer steps 0 … {self.T - 1} (a LongTensor), got dtype {t.dtype}")
        if t.ndim == 0:
            t = t.expand(batch)
        if tuple(t.shape) != (batch,):
            raise ValueError(f"t must have shape (batch,) = ({batch},), one step per example; got {tuple(t.shape)}")
        if batch and (t.min() < 0 or t.max() >= self.T):
            raise ValueError(
                f"t must lie in 0 … T-1 = 0 … {self.T - 1} (0-based: index t is the paper's step t+1); "
                f"got values from {t.min().item()} to {t.max().item()}"
            )
        return t.to(device=device, dtype=torch.long)

    @staticmethod
    def _check_x(x, name: str) -> torch.Tensor:
        if not torch.is_tensor(x):
            raise ValueError(f"{name} must be a torch.Tensor of shape (batch, ...), got {type(x).__name__}")
        if x.ndim < 1:
            raise ValueError(f"{name} must have a batch dimension (batch, ...), got a 0-d tensor")
        if not x.is_floating_point():
            raise ValueError(f"{name} must be a floating-point tensor, got dtype {x.dtype}")
        return x

    @staticmethod
    def _same_shape(a, b, name_a: str, name_b: str) -> None:
        if not torch.is_tensor(b) or tuple(a.shape) != tuple(b.shape):
            got = tuple(b.shape) if torch.is_tensor(b) else type(b).__name__
            raise ValueError(f"{name_b} must have the shape of {name_a}, {tuple(a.shape)}; got {got}")

    def _extract(self, name: str, t: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        """Buffer ``name`` at steps ``t``, shaped (batch, 1, …, 1) to broadcast against ``x``."""
        if self.betas.device != x.device:
            self.to(x.device)  # once: the buffers then stay on the data's device
        values = getattr(self, name)[t].to(x.dtype)
        return values.reshape(-1, *([1] * (x.ndim - 1)))

    def _model_output(self, model, x_t: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        out = model(x_t, t)
        if not torch.is_tensor(out) or tuple(out.shape) != tuple(x_t.shape):
            got = tuple(out.shape) if torch.is_tensor(out) else type(out).__name__
            raise ValueError(
                f"model(x_t, t) must return a tensor of x_t's shape {tuple(x_t.shape)} (the predicted noise); got {got}"
            )
        return out

    # ------------------------------------------------------------------ chapter 2: forward process
    def q_sample(self, x0: torch.Tensor, t, noise: torch.Tensor | None = None,
                 generator: torch.Generator | None = None) -> torch.Tensor:
        """x_t = sqrt(ᾱ_t) x_0 + sqrt(1 − ᾱ_t) ε, a draw from q(x_t | x_0) (Ho et al. 2020, eq. 4; chapter 2).

        ``noise`` is ε (drawn from N(0, I) with ``generator`` when not given).
        """
        x0 = self._check_x(x0, "x0")
        t = self._check_t(t, x0.shape[0], x0.device)
        if noise is None:
            noise = _randn_like(x0, generator)
        self._same_shape(x0, noise, "x0", "noise")
        return self._extract("sqrt_alphas_cumprod", t, x0) * x0 + self._extract("sqrt_one_minus_alphas_cumprod", t, x0) * noise

    # ------------------------------------------------------------------ chapter 3: posterior and reverse step
    def q_posterior(self, x0: torch.Tensor, x_t: torch.Tensor, t):
        """Mean μ̃_t(x_t, x_0) and variance β̃_t of q(x_{t−1} | x_t, x_0) (Ho et al. 2020, eqs. 6-7; chapter 3).

        μ̃_t = sqrt(ᾱ_{t−1}) β_t / (1 − ᾱ_t) · x_0 + sqrt(α_t) (1 − ᾱ_{t−1}) / (1 − ᾱ_t) · x_t,
        β̃_t = (1 − ᾱ_{t−1}) / (1 − ᾱ_t) · β_t. The variance is returned with x_t's shape.
        """
        x0 = self._check_x(x0, "x0")
        x_t = self._check_x(x_t, "x_t")
        self._same_shape(x0, x_t, "x0", "x_t")
        t = self._check_t(t, x_t.shape[0], x_t.device)
        mean = self._extract("posterior_mean_coef1", t, x_t) * x0 + self._extract("posterior_mean_coef2", t, x_t) * x_t
        variance = self._extract("posterior_variance", t, x_t).expand(x_t.shape)
        return mean, variance

    def predict_x0(self, x_t: torch.Tensor, t, eps: torch.Tensor) -> torch.Tensor:
        """x_0 = (x_t − sqrt(1 − ᾱ_t) ε) / sqrt(ᾱ_t): eq. 4 solved for x_0 (chapter 3)."""
        x_t = self._check_x(x_t, "x_t")
        self._same_shape(x_t, eps, "x_t", "eps")
        t = self._check_t(t, x_t.shape[0], x_t.device)
        return self._extract("sqrt_recip_alphas_cumprod", t, x_t) * x_t - self._extract("sqrt_recipm1_alphas_cumprod", t, x_t) * eps

    def predict_eps(self, x_t: torch.Tensor, t, x0: torch.Tensor) -> torch.Tensor:
        """ε = (x_t − sqrt(ᾱ_t) x_0) / sqrt(1 − ᾱ_t): eq. 4 solved for ε (chapter 4, x0-prediction)."""
        x_t = self._check_x(x_t, "x_t")
        self._same_shape(x_t, x0, "x_t", "x0")
        t = self._check_t(t, x_t.shape[0], x_t.device)
        return (x_t - self._extract("sqrt_alphas_cumprod", t, x_t) * x0) / self._extract("sqrt_one_minus_alphas_cumprod", t, x_t)

    def p_mean(self, model, x_t: torch.Tensor, t, target: str = "eps", clip_x0: bool = False) -> torch.Tensor:
        """μ_θ(x_t, t) = 1/sqrt(α_t) (x_t − β_t / sqrt(1 − ᾱ_t) ε_θ(x_t, t)) (Ho et al. 2020, eq. 11; chapter 3).

        ``target="x0"`` reads the model output as predicted x_0 and uses μ̃_t(x_t, x̂_0) (eq. 7);
        ``clip_x0=True`` clips the predicted x_0 to the data range [-1, 1] first (Ho et al.'s code
        does so for images); without clipping both forms give the same mean.
        """
        _choice(target, TARGETS, "target")
        x_t = self._check_x(x_t, "x_t")
        t = self._check_t(t, x_t.shape[0], x_t.device)
        out = self._model_output(model, x_t, t)
        if target == "eps" and not clip_x0:
            return self._extract("sqrt_recip_alphas", t, x_t) * (x_t - self._extract("eps_coef", t, x_t) * out)
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
        _choice(variance, VARIANCES, "variance")
        x_t = self._check_x(x_t, "x_t")
        t = self._check_t(t, x_t.shape[0], x_t.device)
        mean = self.p_mean(model, x_t, t, target=target, clip_x0=clip_x0)
        sigma2 = self._extract("betas" if variance == "beta" else "posterior_variance", t, x_t)
        sigma = sigma2.sqrt() * (t > 0).to(x_t.dtype).reshape(sigma2.shape)
        return mean + sigma * _randn_like(x_t, generator)

    def sample(self, model, shape, return_trajectory: bool = False, generator: torch.Generator | None = None,
               variance: str = "beta", device=None, progress: bool = False, *, target: str = "eps",
               clip_x0: bool = False):
        """Algorithm 2 of Ho et al. 2020 (chapter 3): x_T ~ N(0, I), then T reverse steps to x_0.

        Runs on ``device`` (default: the model's device, else the device of this Diffusion's buffers)
        in the model's dtype. Returns x_0, or with ``return_trajectory=True`` the pair
        ``(x_0, [x_T, …, x_0])`` with every state on the CPU (T + 1 tensors, for animations).
        ``generator`` makes the run reproducible; ``progress=True`` shows a tqdm bar.
        """
        _choice(variance, VARIANCES, "variance")
        _choice(target, TARGETS, "target")
        shape = tuple(int(s) for s in shape)
        if len(shape) < 1 or min(shape) < 1:
            raise ValueError(f"shape must be a non-empty tuple of positive sizes (batch, ...), got {shape}")
        model_device, model_dtype = _model_device_dtype(model)
        device = torch.device(device) if device is not None else (model_device or self.device)
        dtype = model_dtype or torch.float32
        self.to(device)
        noise_device = generator.device if generator is not None else device

        def randn():
            return torch.randn(shape, generator=generator, dtype=dtype, device=noise_device).to(device)

        # per-step constants as Python floats: the loop then costs one model call and a few tensor ops
        sqrt_recip_alphas = self.sqrt_recip_alphas.tolist()
        eps_coef = self.eps_coef.tolist()
        sigmas = (self.betas if variance == "beta" else self.posterior_variance).sqrt().tolist()
        steps = torch.arange(self.T, device=device).repeat_interleave(shape[0]).view(self.T, shape[0])
        use_p_mean = target != "eps" or clip_x0

        x = randn()                                                    # Algorithm 2, line 1
        trajectory = [x.cpu()] if return_trajectory else None
        indices = range(self.T - 1, -1, -1)
        if progress:
            from tqdm.auto import tqdm
            indices = tqdm(indices, desc="sampling", total=self.T)
        with torch.no_grad():
            for i in indices:                                          # line 2: t = T, …, 1
                t = steps[i]
                if use_p_mean:
                    mean = self.p_mean(model, x, t, target=target, clip_x0=clip_x0)
                else:
                    eps = self._model_output(model, x, t)
                    mean = sqrt_recip_alphas[i] * (x - eps_coef[i] * eps)    # line 4, the mean
                x = mean + sigmas[i] * randn() if i > 0 else mean        # line 3: z = 0 at the last step
                if return_trajectory:
                    trajectory.append(x.cpu())
        return (x, trajectory) if return_trajectory else x

    # ------------------------------------------------------------------ chapter 4: training loss
    def loss(self, model, x0: torch.Tensor, loss_type: str = "l2", target: str = "eps", t=None,
             noise: torch.Tensor | None = None, generator: torch.Generator | None = None) -> torch.Tensor:
        """Algorithm 1 of Ho et al. 2020 (chapter 4): the simplified loss L_simple (eq. 14).

        t ~ Uniform{0, …, T-1} and ε ~ N(0, I) (unless given), x_t = q_sample(x0, t, ε), and the mean
        of ‖target − model(x_t, t)‖ with ``loss_type`` "l2" (squared error), "l1" or "huber";
        ``target`` "eps" (the model predicts the noise, as in the paper) or "x0" (it predicts x_0).
        """
        _choice(loss_type, LOSS_TYPES, "loss_type")
        _choice(target, TARGETS, "target")
        x0 = self._check_x(x0, "x0")
        model_device, _ = _model_device_dtype(model)
        if model_device is not None and x0.device != model_device:
            x0 = x0.to(model_device)
        batch = x0.shape[0]
        if t is None:
            t = torch.randint(0, self.T, (batch,), generator=generator,
                              device=generator.device if generator is not None else x0.device)
        t = self._check_t(t, batch, x0.device)
        if noise is None:
            noise = _randn_like(x0, generator)
        self._same_shape(x0, noise, "x0", "noise")
        noise = noise.to(x0.device)
        x_t = self.q_sample(x0, t, noise)
        prediction = self._model_output(model, x_t, t)
        wanted = noise if target == "eps" else x0
        if loss_type == "l2":
            return F.mse_loss(prediction, wanted)
        if loss_type == "l1":
            return F.l1_loss(prediction, wanted)
        return F.huber_loss(prediction, wanted)
