"""The exact noise predictor for a known Gaussian mixture: a sampler test without training (chapter 3).

If the data follow a mixture of isotropic Gaussians, Σ_k π_k N(μ_k, s_k² I), then x_t = sqrt(ᾱ_t) x_0 +
sqrt(1 − ᾱ_t) ε follows the mixture Σ_k π_k N(sqrt(ᾱ_t) μ_k, v_k(t) I) with v_k(t) = ᾱ_t s_k² + 1 − ᾱ_t.
The best possible noise prediction (the minimiser of Algorithm 1's loss) is E[ε | x_t] =
−sqrt(1 − ᾱ_t) ∇ log q(x_t) (Tweedie's formula; Vincent 2011), and for the mixture

    ε*(x_t, t) = sqrt(1 − ᾱ_t) Σ_k r_k(x_t) (x_t − sqrt(ᾱ_t) μ_k) / v_k(t),

with r_k(x_t) the posterior probability of component k given x_t. A correct sampler fed with ε*
must reproduce the mixture.
"""
from __future__ import annotations

import math

import torch

from . import _checks


class GaussianMixture:
    """A mixture of isotropic Gaussians Σ_k π_k N(μ_k, s_k² I) in D dimensions (chapter 3).

    ``weights`` (K,) positive (normalised here), ``means`` (K, D), ``stds`` (K,) positive.
    """

    def __init__(self, weights, means, stds):
        weights = torch.as_tensor(weights, dtype=torch.float64)
        means = torch.as_tensor(means, dtype=torch.float64)
        stds = torch.as_tensor(stds, dtype=torch.float64)
        if means.ndim != 2:
            raise ValueError(f"GaussianMixture: means must have shape (K, D), got {tuple(means.shape)}")
        K = means.shape[0]
        if tuple(weights.shape) != (K,) or tuple(stds.shape) != (K,):
            raise ValueError(
                f"GaussianMixture: weights and stds must have shape (K,) = ({K},), one per mean; "
                f"got {tuple(weights.shape)} and {tuple(stds.shape)}"
            )
        if (weights <= 0).any() or (stds <= 0).any():
            raise ValueError("GaussianMixture: weights and stds must all be positive")
        self.weights = weights / weights.sum()
        self.means = means
        self.stds = stds

    @property
    def dim(self) -> int:
        return self.means.shape[1]

    def __repr__(self) -> str:
        return f"GaussianMixture(K={len(self.weights)}, D={self.dim})"

    def sample(self, n: int, generator: torch.Generator | None = None) -> torch.Tensor:
        """``n`` draws (n, D), float32: pick a component with probability π_k, then add s_k · N(0, I)."""
        n = _checks.positive_int(n, "n", "GaussianMixture.sample()")
        k = torch.multinomial(self.weights, n, replacement=True, generator=generator)
        z = torch.randn(n, self.dim, generator=generator, dtype=torch.float64)
        return (self.means[k] + self.stds[k, None] * z).float()

    def noised(self, alpha_bar: torch.Tensor):
        """Means (B, K, D) and variances (B, K) of the components of q(x_t) for each ᾱ_t in ``alpha_bar`` (B,)."""
        means = alpha_bar.sqrt()[:, None, None] * self.means[None]
        variances = alpha_bar[:, None] * self.stds[None] ** 2 + (1 - alpha_bar[:, None])
        return means, variances

    def responsibilities(self, x: torch.Tensor, alpha_bar=None) -> torch.Tensor:
        """r_k(x) = P(component k | x) (B, K) under the mixture noised to ᾱ (default 1: the data itself)."""
        x = torch.as_tensor(x).to(torch.float64).cpu()
        if x.ndim != 2 or x.shape[1] != self.dim:
            raise ValueError(f"responsibilities(): x must have shape (batch, {self.dim}), got {tuple(x.shape)}")
        alpha_bar = torch.ones(x.shape[0], dtype=torch.float64) if alpha_bar is None else \
            torch.as_tensor(alpha_bar, dtype=torch.float64).cpu().expand(x.shape[0])
        means, variances = self.noised(alpha_bar)
        sq = ((x[:, None, :] - means) ** 2).sum(-1)
        log_p = self.weights.log() - 0.5 * sq / variances - 0.5 * self.dim * torch.log(2 * math.pi * variances)
        return torch.softmax(log_p, dim=1)

    def eps_model(self, diffusion) -> "MixtureOracle":
        """The exact noise predictor ε*(x_t, t) for ``diffusion``'s schedule: a model for ``diffusion.sample``."""
        return MixtureOracle(self, diffusion)


class MixtureOracle:
    """ε*(x_t, t) = E[ε | x_t] for data from a :class:`GaussianMixture` (module docstring; chapter 3).

    Called like a trained model, ``oracle(x_t, t)``; computed in float64, returned in x_t's dtype and device.
    """

    def __init__(self, mixture: GaussianMixture, diffusion):
        self.mixture = mixture
        self.alphas_cumprod = diffusion.float64["alphas_cumprod"]

    def __repr__(self) -> str:
        return f"MixtureOracle({self.mixture!r}, T={len(self.alphas_cumprod)})"

    def __call__(self, x_t: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        x = _checks.tensor(x_t, "x_t", "MixtureOracle", shape_hint=f"(batch, {self.mixture.dim})").detach().to("cpu", torch.float64)
        if x.ndim != 2 or x.shape[1] != self.mixture.dim:
            raise ValueError(f"MixtureOracle: x_t must have shape (batch, {self.mixture.dim}), got {tuple(x.shape)}")
        t = _checks.timesteps(t, len(self.alphas_cumprod), x.shape[0], "MixtureOracle", "cpu")
        alpha_bar = self.alphas_cumprod[t]
        means, variances = self.mixture.noised(alpha_bar)
        r = self.mixture.responsibilities(x, alpha_bar)
        eps = (1 - alpha_bar).sqrt()[:, None] * (r[:, :, None] * (x[:, None, :] - means) / variances[:, :, None]).sum(1)
        return eps.to(device=x_t.device, dtype=x_t.dtype)
