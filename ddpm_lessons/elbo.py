"""The variational bound derived, one density at a time (chapter 4).

Maximum likelihood asks for a small −log p_θ(x_0), but p_θ(x_0) = ∫ p(x_T) Π_t p_θ(x_{t−1} | x_t) dx_{1:T}
is an integral over every path. Chapter 4 derives a bound on it in four steps, and this module holds
the densities that check each step numerically (Ho et al. 2020, eqs. 3-5 and appendix A):

1. Jensen's inequality with the forward process as the proposal:
   −log p_θ(x_0) ≤ E_q[ −log p(x_T) − Σ_{t≥1} log p_θ(x_{t−1} | x_t) + Σ_{t≥1} log q(x_t | x_{t−1}) ]
   (:func:`path_bound`, one value per sampled path).
2. Bayes' rule with the Markov property, for t ≥ 2:
   q(x_t | x_{t−1}) = q(x_t | x_{t−1}, x_0) = q(x_{t−1} | x_t, x_0) q(x_t | x_0) / q(x_{t−1} | x_0).
3. The ratios q(x_t | x_0) / q(x_{t−1} | x_0) telescope to q(x_T | x_0) / q(x_1 | x_0), which leaves
   log q(x_T | x_0)/p(x_T) + Σ_{t≥2} log q(x_{t−1} | x_t, x_0)/p_θ(x_{t−1} | x_t) − log p_θ(x_0 | x_1)
   for every path (:func:`path_terms`).
4. In expectation each log ratio is a KL divergence: L_T + Σ L_{t−1} + L_0 (:func:`ddpm_lessons.vlb.bound`).

Conventions. A path is a list of T + 1 tensors with ``path[k]`` the state x_k (the paper's subscript:
``path[0]`` is the data x_0, ``path[T]`` the noise end x_T). Functions of one step take the code index
``t`` in 0 … T-1 (the paper's step t+1), as the rest of the module: the step at index t joins x_t and
x_{t+1}, so ``q_step_log_prob(d, x_next, x_prev, t)`` is log q(x_{t+1} | x_t) with β_{t+1} = ``betas[t]``.
Log densities are summed over the data dimensions, in nats, in float64.
"""
from __future__ import annotations

import math

import torch

from . import _checks
from .diffusion import VARIANCES
from .utils import module_device_dtype
from .vlb import gaussian_nll, schedule64


def log_normal(x, mean, var) -> torch.Tensor:
    """log N(x; mean, var I) per example (summed over all but the batch dimension), float64."""
    x = torch.as_tensor(x, dtype=torch.float64)
    value = -gaussian_nll(x, torch.as_tensor(mean, dtype=torch.float64).to(x.device),
                          torch.as_tensor(var, dtype=torch.float64).to(x.device))
    return value.expand_as(x).flatten(1).sum(1) if x.dim() > 1 else value


def _at(diffusion, name: str, t, x: torch.Tensor, where: str) -> torch.Tensor:
    """Schedule quantity ``name`` (float64) at code index ``t``, shaped to broadcast against x."""
    t = _checks.timesteps(t, diffusion.T, x.shape[0], where, x.device)
    return schedule64(diffusion, x.device)[name][t].reshape(-1, *([1] * (x.dim() - 1)))


def _pair(a, b, names: str, where: str):
    first, second = names.split(",")
    a = _checks.tensor(a, first.strip(), where)
    _checks.same_shape(a, b, first.strip(), second.strip(), where)
    return a.double(), b.double().to(a.device)


def q_step_log_prob(diffusion, x_next, x_prev, t) -> torch.Tensor:
    """log q(x_{t+1} | x_t) = log N(x_{t+1}; sqrt(α_{t+1}) x_t, β_{t+1} I) at code index ``t`` (eq. 2).

    One step of the forward Markov chain; ``x_next`` is the later (noisier) state.
    """
    x_next, x_prev = _pair(x_next, x_prev, "x_next, x_prev", "q_step_log_prob()")
    alpha = _at(diffusion, "alphas", t, x_next, "q_step_log_prob()")
    return log_normal(x_next, alpha.sqrt() * x_prev, 1 - alpha)


def q_marginal_log_prob(diffusion, x, x0, t) -> torch.Tensor:
    """log q(x_{t+1} | x_0) = log N(x_{t+1}; sqrt(ᾱ_{t+1}) x_0, (1 − ᾱ_{t+1}) I) at code index ``t`` (eq. 4)."""
    x, x0 = _pair(x, x0, "x, x0", "q_marginal_log_prob()")
    abar = _at(diffusion, "alphas_cumprod", t, x, "q_marginal_log_prob()")
    return log_normal(x, abar.sqrt() * x0, 1 - abar)


def q_posterior_log_prob(diffusion, x_prev, x_next, x0, t) -> torch.Tensor:
    """log q(x_t | x_{t+1}, x_0) = log N(x_t; μ̃(x_{t+1}, x_0), β̃ I) at code index ``t`` >= 1 (eqs. 6-7).

    At index 0 the posterior variance β̃_1 is 0 (x_0 is known exactly): that step is the decoder.
    """
    x_prev, x_next = _pair(x_prev, x_next, "x_prev, x_next", "q_posterior_log_prob()")
    x0 = _checks.same_shape(x_prev, x0, "x_prev", "x0", "q_posterior_log_prob()").double().to(x_prev.device)
    t = _checks.timesteps(t, diffusion.T, x_prev.shape[0], "q_posterior_log_prob()", x_prev.device)
    if len(t) and t.min() < 1:
        raise ValueError("q_posterior_log_prob(): the posterior q(x_t | x_{t+1}, x_0) has variance 0 at code index "
                         "t = 0 (the paper's t = 1); use code indices 1 … T-1 (step 0 is the decoder, L_0)")
    coef1, coef2, var = (_at(diffusion, name, t, x_prev, "q_posterior_log_prob()") for name in
                         ("posterior_mean_coef1", "posterior_mean_coef2", "posterior_variance"))
    return log_normal(x_prev, coef1 * x0 + coef2 * x_next, var)


def model_eps(diffusion, model, x, t) -> torch.Tensor:
    """ε_θ(x, t) in float64: the model is called in its own dtype (float32 networks, float64 oracles)."""
    x = _checks.tensor(x, "x", "model_eps()")
    device, dtype = module_device_dtype(model)
    inputs = x.to(device=device or x.device, dtype=dtype or x.dtype)
    t = _checks.timesteps(t, diffusion.T, x.shape[0], "model_eps()", inputs.device)
    with torch.no_grad():
        return diffusion.model_output(model, inputs, t).double().to(x.device)


def reverse_step_variance(diffusion, t, x: torch.Tensor, variance: str = "beta") -> torch.Tensor:
    """σ² of p_θ(x_t | x_{t+1}) at code index ``t``: β or β̃ (``variance``), and β_1 at index 0 (the decoder
    N(μ_θ(x_1, 1), β_1 I), as :func:`ddpm_lessons.vlb.decoder_nll`), shaped to broadcast against x."""
    _checks.one_of(variance, VARIANCES, "variance", "reverse_step_variance()")
    t = _checks.timesteps(t, diffusion.T, x.shape[0], "reverse_step_variance()", x.device)
    s = schedule64(diffusion, x.device)
    sigma2 = torch.where(t == 0, s["betas"][t], s["betas" if variance == "beta" else "posterior_variance"][t])
    return sigma2.reshape(-1, *([1] * (x.dim() - 1)))


def p_step_log_prob(diffusion, model, x_prev, x_next, t, variance: str = "beta") -> torch.Tensor:
    """log p_θ(x_t | x_{t+1}) = log N(x_t; μ_θ(x_{t+1}), σ² I) at code index ``t`` (eq. 11; the decoder at t = 0).

    μ_θ(x, t) = (x − β / sqrt(1 − ᾱ) ε_θ(x, t)) / sqrt(α), with ε_θ = ``model``.
    """
    x_prev, x_next = _pair(x_prev, x_next, "x_prev, x_next", "p_step_log_prob()")
    eps = model_eps(diffusion, model, x_next, t)
    mean = (x_next - _at(diffusion, "eps_coef", t, x_next, "p_step_log_prob()") * eps) \
        / _at(diffusion, "alphas", t, x_next, "p_step_log_prob()").sqrt()
    return log_normal(x_prev, mean, reverse_step_variance(diffusion, t, x_next, variance))


def forward_path(diffusion, x0, generator: torch.Generator | None = None) -> list:
    """A path x_0, x_1, …, x_T of the forward Markov chain, one step at a time (eq. 2), float64.

    ``path[k]`` is x_k; x_{k} = sqrt(α_k) x_{k−1} + sqrt(β_k) z with fresh z ~ N(0, I). (Eq. 4 gives each
    x_k's marginal in closed form; a path needs the steps, because the bound scores the whole path.)
    """
    x = _checks.data(x0, "x0", "forward_path()").double()
    s = schedule64(diffusion, x.device)
    path = [x]
    for k in range(diffusion.T):
        z = torch.randn(x.shape, generator=generator, dtype=torch.float64,
                        device=generator.device if generator is not None else x.device).to(x.device)
        x = s["alphas"][k].sqrt() * x + s["betas"][k].sqrt() * z
        path.append(x)
    return path


def _check_path(diffusion, path, where: str) -> list:
    if not isinstance(path, (list, tuple)) or len(path) != diffusion.T + 1:
        got = f"{len(path)} states" if isinstance(path, (list, tuple)) else type(path).__name__
        raise ValueError(f"{where}: path must be a list of T + 1 = {diffusion.T + 1} states x_0 … x_T "
                         f"(forward_path()); got {got}")
    return [_checks.same_shape(path[0], x, "path[0]", f"path[{k}]", where).double() for k, x in enumerate(path)]


def path_bound(diffusion, model, path, variance: str = "beta") -> torch.Tensor:
    """−log p(x_T) − Σ_{t=1}^T log p_θ(x_{t−1} | x_t) + Σ_{t=1}^T log q(x_t | x_{t−1}) per example.

    The log of p_θ(x_{0:T}) / q(x_{1:T} | x_0) along one sampled ``path``, negated: its average over
    paths from q is the bound that Jensen's inequality gives (step 1 of the module docstring).
    """
    path = _check_path(diffusion, path, "path_bound()")
    value = -log_normal(path[-1], 0.0, 1.0)
    for t in range(diffusion.T):   # the step at code index t joins x_t and x_{t+1}
        value = value - p_step_log_prob(diffusion, model, path[t], path[t + 1], t, variance) \
            + q_step_log_prob(diffusion, path[t + 1], path[t], t)
    return value


def path_terms(diffusion, model, path, variance: str = "beta") -> dict:
    """The same path scored after the Bayes rewrite and the telescoping (steps 2-3 of the module docstring).

    Returns per-example tensors ``{"prior": log q(x_T | x_0) − log p(x_T), "kl": (T, B) with row t the
    log ratio log q(x_t | x_{t+1}, x_0) − log p_θ(x_t | x_{t+1}) (the paper's L_t sample; row 0 is 0,
    unused), "decoder": −log p_θ(x_0 | x_1)}``; their sum equals :func:`path_bound` for every path.
    """
    path = _check_path(diffusion, path, "path_terms()")
    x0, T = path[0], diffusion.T
    prior = q_marginal_log_prob(diffusion, path[-1], x0, T - 1) - log_normal(path[-1], 0.0, 1.0)
    kl = torch.zeros(T, x0.shape[0], dtype=torch.float64, device=x0.device)
    for t in range(1, T):
        kl[t] = q_posterior_log_prob(diffusion, path[t], path[t + 1], x0, t) \
            - p_step_log_prob(diffusion, model, path[t], path[t + 1], t, variance)
    decoder = -p_step_log_prob(diffusion, model, x0, path[1], 0, variance)
    return {"prior": prior, "kl": kl, "decoder": decoder}


def gaussian_data_marginal(diffusion, mean: float, std: float, variance: str = "beta") -> tuple:
    """Mean and variance (per dimension) of the model's p_θ(x_0) for data N(mean, std² I) and the best ε_θ.

    For Gaussian data the best noise predictor E[ε | x_t] is affine, ε*(x, t) = sqrt(1 − ᾱ)(x − sqrt(ᾱ) mean) / v
    with v = ᾱ std² + 1 − ᾱ (the one-component :class:`~ddpm_lessons.oracle.GaussianMixture`), so every
    reverse step x_t = a x_{t+1} + b + σ z is affine-Gaussian and p_θ(x_0) is a Gaussian whose mean and
    variance follow from x_T ~ N(0, I) in T updates (the decoder's σ² is β_1). Chapter 4.
    """
    mean = _checks.number(mean, "mean", "gaussian_data_marginal()")
    std = _checks.number(std, "std", "gaussian_data_marginal()", low=0.0, low_open=True)
    _checks.one_of(variance, VARIANCES, "variance", "gaussian_data_marginal()")
    s = schedule64(diffusion)
    m, v = 0.0, 1.0                                                # x_T ~ N(0, I)
    for t in reversed(range(diffusion.T)):
        abar, alpha, coef = s["alphas_cumprod"][t], s["alphas"][t], s["eps_coef"][t]
        k = (1 - abar).sqrt() / (abar * std ** 2 + 1 - abar)      # ε* = k (x − sqrt(ᾱ) mean)
        a = (1 - coef * k) / alpha.sqrt()                          # μ_θ = a x + b (eq. 11)
        b = coef * k * abar.sqrt() * mean / alpha.sqrt()
        sigma2 = s["betas"][t] if t == 0 or variance == "beta" else s["posterior_variance"][t]
        m, v = a * m + b, a ** 2 * v + sigma2
    return float(m), float(v)


def gaussian_data_nll(diffusion, mean: float, std: float, x0, variance: str = "beta") -> torch.Tensor:
    """The exact −log p_θ(x_0) per example, for data N(mean, std² I) and the best ε_θ = E[ε | x_t] (chapter 4).

    The one case where the likelihood that the bound bounds is known exactly (:func:`gaussian_data_marginal`).
    """
    x0 = _checks.tensor(x0, "x0", "gaussian_data_nll()").double()
    model_mean, model_var = gaussian_data_marginal(diffusion, mean, std, variance)
    return -log_normal(x0, model_mean, model_var)


def gaussian_entropy(std: float, dims: int) -> float:
    """H(N(mean, std² I)) = D/2 log(2πe std²) in nats: the smallest E[−log p(x_0)] any model can reach."""
    return 0.5 * dims * math.log(2 * math.pi * math.e * std ** 2)
