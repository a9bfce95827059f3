"""The variational bound of a DDPM, term by term, and how it becomes the simple loss (chapter 4).

Ho et al. (2020, eq. 5; Sohl-Dickstein et al. 2015) bound the negative log-likelihood by

    L = E_q[ L_T + Σ_{t>1} L_{t−1} + L_0 ]
    L_T     = KL( q(x_T | x_0) ‖ p(x_T) )                          no parameters: ≈ 0 for a good schedule
    L_{t−1} = KL( q(x_{t−1} | x_t, x_0) ‖ p_θ(x_{t−1} | x_t) )     two Gaussians
    L_0     = −log p_θ(x_0 | x_1)                                   the decoder

With p_θ(x_{t−1} | x_t) = N(μ_θ(x_t, t), σ_t² I) and the noise parametrisation
μ_θ = 1/sqrt(α_t) (x_t − β_t / sqrt(1 − ᾱ_t) ε_θ(x_t, t)) (eq. 11), each KL is a weighted noise error:

    L_{t−1} = λ_t ‖ε − ε_θ(x_t, t)‖² + C_t,    λ_t = β_t² / (2 σ_t² α_t (1 − ᾱ_t))    (eq. 12)

where C_t = D/2 (log(σ_t²/β̃_t) + β̃_t/σ_t² − 1) does not depend on θ (it is 0 for σ_t² = β̃_t).
Dropping λ_t gives L_simple = ‖ε − ε_θ‖² (eq. 14), :meth:`Diffusion.loss`: a reweighted sum of the
bound's terms, not a bound. Stable Diffusion's hybrid loss (:func:`hybrid_loss`, :func:`lvlb_weights`)
mixes the two weightings. How the bound itself is derived, density by density: :mod:`ddpm_lessons.elbo`.

Time is 0-based as everywhere in the module: index ``t`` is the paper's step t+1, so the KL terms
live at indices 1 … T-1 and the decoder L_0 at index 0. Per-example values are summed over the data
dimensions, in nats.
"""
from __future__ import annotations

import math

import torch

from . import _checks
from .diffusion import VARIANCES
from .utils import module_device_dtype


def _broadcast(value, like: torch.Tensor) -> torch.Tensor:
    value = torch.as_tensor(value, dtype=like.dtype, device=like.device)
    return value.reshape(-1, *([1] * (like.dim() - 1))) if value.dim() == 1 else value


def _sum_per_example(x: torch.Tensor) -> torch.Tensor:
    return x.flatten(1).sum(dim=1) if x.dim() > 1 else x


def _kl_steps(diffusion, t, batch: int, device, where: str) -> torch.Tensor:
    t = _checks.timesteps(t, diffusion.T, batch, where, device)
    if batch and t.min() < 1:
        raise ValueError(
            "the KL terms L_{t-1} live at 0-based steps t = 1 … T-1 (the paper's t = 2 … T); "
            "step 0 is the decoder term L_0 (decoder_nll)"
        )
    return t


def normal_kl(mean1, var1, mean2, var2) -> torch.Tensor:
    """KL( N(mean1, var1) ‖ N(mean2, var2) ), elementwise, in nats (chapter 4).

        KL = ½ ( log(var2 / var1) + (var1 + (mean1 − mean2)²) / var2 − 1 )

    With equal variances it is the squared distance of the means over 2·var: the step from
    L_{t−1} to a mean-matching loss.
    """
    tensors = [torch.as_tensor(v) for v in (mean1, var1, mean2, var2)]
    dtype = torch.float32
    for v in tensors:   # the widest of the four (float64 variances with float means give float64)
        dtype = torch.promote_types(dtype, v.dtype)
    mean1, var1, mean2, var2 = (v.to(dtype) for v in tensors)
    for name, value in (("mean1", mean1), ("var1", var1), ("mean2", mean2), ("var2", var2)):
        _checks.finite(value, name, "normal_kl()")
    if (var1 <= 0).any() or (var2 <= 0).any():
        raise ValueError("normal_kl(): both variances must be > 0 (a Gaussian with variance 0 has no density)")
    return 0.5 * (torch.log(var2 / var1) + (var1 + (mean1 - mean2) ** 2) / var2 - 1.0)


def gaussian_nll(x, mean, var) -> torch.Tensor:
    """−log N(x; mean, var), elementwise, in nats: ½ (log(2π var) + (x − mean)² / var)."""
    x, mean, var = (torch.as_tensor(v) for v in (x, mean, var))
    for name, value in (("x", x), ("mean", mean), ("var", var)):
        _checks.finite(value, name, "gaussian_nll()")
    if (var <= 0).any():
        raise ValueError("gaussian_nll(): the variance must be > 0")
    return 0.5 * (torch.log(2 * math.pi * var) + (x - mean) ** 2 / var)


def schedule64(diffusion, device=None) -> dict:
    """The schedule quantities of ``diffusion`` in float64 (``diffusion.float64``) on ``device``.

    The bound is a sum of small differences (μ̃_t − μ_θ is tiny when ε_θ ≈ ε), so its pieces are
    computed in double precision from one set of betas; then eq. 12 holds to rounding (1e-12), not
    just to float32's 1e-4.
    """
    return {name: value.to(device or "cpu") for name, value in diffusion.float64.items()}


def reverse_variance(diffusion, t: torch.Tensor, variance: str = "beta") -> torch.Tensor:
    """σ_t² of p_θ(x_{t−1} | x_t) at steps ``t``: β_t (``"beta"``) or β̃_t (``"beta_tilde"``) (Ho et al. 2020, sec. 3.2)."""
    _checks.one_of(variance, VARIANCES, "variance", "reverse_variance()")
    t = _checks.timesteps(t, diffusion.T, len(t) if torch.is_tensor(t) and t.dim() == 1 else 1, "reverse_variance()")
    return schedule64(diffusion, t.device)["betas" if variance == "beta" else "posterior_variance"][t]


def noise_weight(diffusion, t, variance: str = "beta") -> torch.Tensor:
    """λ_t = β_t² / (2 σ_t² α_t (1 − ᾱ_t)), the weight of ‖ε − ε_θ‖² in L_{t−1} (eq. 12), float64 (B,).

    ``t``: a LongTensor (B,) of 0-based steps 1 … T-1.
    """
    _checks.tensor(t, "t", "noise_weight()", floating=False, shape_hint="(B,), a LongTensor of steps")
    t = _kl_steps(diffusion, t, t.shape[0], t.device, "noise_weight()")
    s = schedule64(diffusion, t.device)
    sigma2 = reverse_variance(diffusion, t, variance)
    return s["betas"][t] ** 2 / (2 * sigma2 * s["alphas"][t] * (1 - s["alphas_cumprod"][t]))


def kl_term(diffusion, x0, t, noise, eps_pred, variance: str = "beta") -> torch.Tensor:
    """L_{t−1} = KL( q(x_{t−1} | x_t, x_0) ‖ p_θ(x_{t−1} | x_t) ) per example, from the two means.

    x_t = sqrt(ᾱ_t) x_0 + sqrt(1 − ᾱ_t) ε (eq. 4) with ε = ``noise``; ``eps_pred`` is ε_θ(x_t, t).
    q's mean is μ̃_t = sqrt(ᾱ_{t−1}) β_t / (1 − ᾱ_t) x_0 + sqrt(α_t)(1 − ᾱ_{t−1}) / (1 − ᾱ_t) x_t,
    its variance β̃_t (eqs. 6-7); p_θ's mean is μ_θ = (x_t − β_t / sqrt(1 − ᾱ_t) ε_θ) / sqrt(α_t)
    (eq. 11), its variance σ_t². Computed directly as a KL between these Gaussians, without eq. 12,
    so that :func:`weighted_noise_error` can be checked against it. Steps t = 1 … T-1 (0-based).
    """
    x0 = _checks.data(x0, "x0", "kl_term()")
    t = _kl_steps(diffusion, t, x0.shape[0], x0.device, "kl_term()")
    _checks.same_shape(x0, noise, "x0", "noise", "kl_term()")
    _checks.same_shape(x0, eps_pred, "x0", "eps_pred", "kl_term()")
    s = {name: _broadcast(value[t], x0.double()) for name, value in schedule64(diffusion, x0.device).items()}
    x0, noise, eps_pred = x0.double(), noise.double(), eps_pred.double()
    betas, alphas, abar, abar_prev = s["betas"], s["alphas"], s["alphas_cumprod"], s["alphas_cumprod_prev"]
    x_t = abar.sqrt() * x0 + (1 - abar).sqrt() * noise
    posterior_mean = abar_prev.sqrt() * betas / (1 - abar) * x0 + alphas.sqrt() * (1 - abar_prev) / (1 - abar) * x_t
    model_mean = (x_t - betas / (1 - abar).sqrt() * eps_pred) / alphas.sqrt()
    sigma2 = _broadcast(reverse_variance(diffusion, t, variance), x_t)
    return _sum_per_example(normal_kl(posterior_mean, s["posterior_variance"].expand_as(x_t), model_mean,
                                      sigma2.expand_as(x_t)))


def weighted_noise_error(diffusion, t, noise, eps_pred, variance: str = "beta") -> torch.Tensor:
    """λ_t ‖ε − ε_θ‖² + C_t per example: L_{t−1} written as a noise error (eq. 12).

    C_t = D/2 (log(σ_t²/β̃_t) + β̃_t/σ_t² − 1) depends only on the schedule (0 when σ_t² = β̃_t).
    Equals :func:`kl_term` for every x_0 (which cancels out), ε and ε_θ: chapter 4 checks it.
    """
    noise = _checks.tensor(noise, "noise", "weighted_noise_error()")
    _checks.same_shape(noise, eps_pred, "noise", "eps_pred", "weighted_noise_error()")
    t = _kl_steps(diffusion, t, noise.shape[0], noise.device, "weighted_noise_error()")
    error = _sum_per_example((noise.double() - eps_pred.double()) ** 2)
    return noise_weight(diffusion, t, variance) * error + kl_constant(diffusion, t, noise[0].numel(), variance)


def kl_constant(diffusion, t, dims: int, variance: str = "beta") -> torch.Tensor:
    """C_t = D/2 (log(σ_t²/β̃_t) + β̃_t/σ_t² − 1), the part of L_{t−1} that no model changes (eq. 12), (B,).

    The KL between two Gaussians of equal means and variances β̃_t and σ_t²: 0 for σ_t² = β̃_t.
    ``t``: 0-based steps 1 … T-1; ``dims``: D, the number of numbers in one example.
    """
    _checks.tensor(t, "t", "kl_constant()", floating=False, shape_hint="(B,), a LongTensor of steps")
    t = _kl_steps(diffusion, t, t.shape[0], t.device, "kl_constant()")
    dims = _checks.positive_int(dims, "dims", "kl_constant()")
    sigma2 = reverse_variance(diffusion, t, variance)
    beta_tilde = schedule64(diffusion, t.device)["posterior_variance"][t]
    return 0.5 * dims * (torch.log(sigma2 / beta_tilde) + beta_tilde / sigma2 - 1)


def prior_term(diffusion, x0) -> torch.Tensor:
    """L_T = KL( q(x_T | x_0) ‖ N(0, I) ) per example: no parameters, ≈ 0 when ᾱ_T ≈ 0."""
    x0 = _checks.data(x0, "x0", "prior_term()").double()
    last = schedule64(diffusion, x0.device)["alphas_cumprod"][-1]
    return _sum_per_example(normal_kl(last.sqrt() * x0, (1 - last).expand_as(x0), torch.zeros_like(x0),
                                      torch.ones_like(x0)))


def decoder_nll(diffusion, x0, noise, eps_pred) -> torch.Tensor:
    """L_0 = −log p_θ(x_0 | x_1) per example, for continuous data: the density of N(μ_θ(x_1, 1), β_1 I) at x_0.

    (Ho et al. discretise it for 8-bit images; 2-D points are continuous, so the density is used.)
    x_1 = sqrt(ᾱ_1) x_0 + sqrt(1 − ᾱ_1) ε (0-based step 0); ``eps_pred`` is ε_θ(x_1, 0).
    """
    x0 = _checks.data(x0, "x0", "decoder_nll()").double()
    _checks.same_shape(x0, noise, "x0", "noise", "decoder_nll()")
    _checks.same_shape(x0, eps_pred, "x0", "eps_pred", "decoder_nll()")
    beta = schedule64(diffusion, x0.device)["betas"][0]
    alpha = 1 - beta  # = ᾱ_1, so sqrt(1 − ᾱ_1) = sqrt(β_1)
    x1 = alpha.sqrt() * x0 + beta.sqrt() * noise.double()
    mean = (x1 - beta.sqrt() * eps_pred.double()) / alpha.sqrt()  # eq. 11: β_1 / sqrt(1 − ᾱ_1) = sqrt(β_1)
    return _sum_per_example(gaussian_nll(x0, mean, beta))


@torch.no_grad()
def bound(diffusion, model, x0, variance: str = "beta", generator: torch.Generator | None = None) -> dict:
    """The whole bound L = L_T + Σ L_{t−1} + L_0 for ``model`` on ``x0``, in nats per example.

    Every one of the T terms is evaluated (one fresh ε per example and step), not sampled: returns
    ``{"total", "prior", "decoder", "kl": tensor (T,) of mean L_{t−1} per step (kl[0] = 0, unused),
    "noise_error": tensor (T,) of mean ‖ε − ε_θ‖² per step, "per_example": tensor (B,) of each
    example's bound (its mean is "total"; its spread gives the Monte Carlo error)}``.
    """
    x0 = _checks.data(x0, "x0", "bound()")
    generator = _checks.generator(generator, "bound()")
    batch = x0.shape[0]
    kl = torch.zeros(diffusion.T, dtype=torch.float64)
    noise_error = torch.zeros(diffusion.T, dtype=torch.float64)
    per_example = prior_term(diffusion, x0).cpu()
    for step in range(diffusion.T):
        t = torch.full((batch,), step, dtype=torch.long, device=x0.device)
        noise = torch.randn(x0.shape, generator=generator, dtype=x0.dtype,
                            device=generator.device if generator is not None else x0.device).to(x0.device)
        eps_pred = diffusion.model_output(model, diffusion.q_sample(x0, t, noise), t)
        noise_error[step] = _sum_per_example((noise - eps_pred).double() ** 2).mean().cpu()
        if step == 0:
            term = decoder_nll(diffusion, x0, noise, eps_pred).cpu()
            decoder = term.mean()
        else:
            term = kl_term(diffusion, x0, t, noise, eps_pred, variance).cpu()
            kl[step] = term.mean()
        per_example = per_example + term
    prior = prior_term(diffusion, x0).mean().cpu()
    return {"total": float(prior + kl.sum() + decoder), "prior": float(prior), "decoder": float(decoder),
            "kl": kl, "noise_error": noise_error, "per_example": per_example}


# ---------------------------------------------------------------- Stable Diffusion's hybrid loss
def lvlb_weights(diffusion) -> torch.Tensor:
    """The per-step weights of the bound's term in CompVis' latent-diffusion ``ddpm.py`` (Stable Diffusion), (T,).

    ``betas**2 / (2 * posterior_variance * alphas * (1 - alphas_cumprod))`` at 0-based index t: λ_t of
    eq. 12 for σ_t² = β̃_t (:func:`noise_weight` with ``"beta_tilde"``, same index). At index 0 the formula
    divides by β̃_1 = 0, so the code copies index 1 (``lvlb_weights[0] = lvlb_weights[1]``). Chapter 4.
    """
    s = schedule64(diffusion)
    weights = s["betas"] ** 2 / (2 * s["posterior_variance"] * s["alphas"] * (1 - s["alphas_cumprod"]))
    weights[0] = weights[1]
    return weights


def hybrid_loss(diffusion, model, x0, l_simple_weight: float = 1.0, original_elbo_weight: float = 0.0,
                t=None, noise=None, generator: torch.Generator | None = None) -> torch.Tensor:
    """``l_simple_weight · L_simple + original_elbo_weight · L_vlb``, the loss of latent-diffusion's ``p_losses``.

    With e = the mean over the data dimensions of (ε − ε_θ(x_t, t))² per example, L_simple = mean(e)
    (Algorithm 1) and L_vlb = mean(lvlb_weights[t] · e): per example, (L_{t−1} − C_t) / D for t >= 1. So the
    hybrid is L_simple with the per-step weight l_simple_weight + original_elbo_weight · λ_t (chapter 4).
    t ~ Uniform{0, …, T-1} and ε ~ N(0, I) unless given, as in :meth:`Diffusion.loss`.
    """
    simple = _checks.number(l_simple_weight, "l_simple_weight", "hybrid_loss()", low=0.0)
    elbo = _checks.number(original_elbo_weight, "original_elbo_weight", "hybrid_loss()", low=0.0)
    diffusion.check_model(model, "hybrid_loss()")
    x0 = _checks.data(x0, "x0", "hybrid_loss()")
    x0 = x0.to(module_device_dtype(model)[0] or x0.device)   # where the model is, as Diffusion.loss does
    generator = _checks.generator(generator, "hybrid_loss()")
    if t is None:
        t = torch.randint(0, diffusion.T, (x0.shape[0],), generator=generator,
                          device=generator.device if generator is not None else x0.device)
    t = _checks.timesteps(t, diffusion.T, x0.shape[0], "hybrid_loss()", x0.device)
    if noise is None:
        noise = torch.randn(x0.shape, generator=generator, dtype=x0.dtype,
                            device=generator.device if generator is not None else x0.device).to(x0.device)
    _checks.same_shape(x0, noise, "x0", "noise", "hybrid_loss()")
    prediction = diffusion.model_output(model, diffusion.q_sample(x0, t, noise), t)
    per_example = (noise - prediction).square().flatten(1).mean(1)
    weights = lvlb_weights(diffusion).to(device=x0.device, dtype=x0.dtype)[t]
    return simple * per_example.mean() + elbo * (weights * per_example).mean()
