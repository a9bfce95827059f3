"""The exact noise predictor for a known Gaussian mixture: a sampler test without training (chapter 3).

If the data follow a mixture of isotropic Gaussians, Σ_k π_k N(μ_k, s_k² I), then x_t = sqrt(ᾱ_t) x_0 +
sqrt(1 − ᾱ_t) ε follows the mixture Σ_k π_k N(sqrt(ᾱ_t) μ_k, v_k(t) I) with v_k(t) = ᾱ_t s_k² + 1 − ᾱ_t.
The best possible noise prediction (the minimiser of Algorithm 1's loss) is E[ε | x_t] =
−sqrt(1 − ᾱ_t) ∇ log q(x_t) (Tweedie's formula; Vincent 2011), and for the mixture

    ε*(x_t, t) = sqrt(1 − ᾱ_t) Σ_k r_k(x_t) (x_t − sqrt(ᾱ_t) μ_k) / v_k(t),

with r_k(x_t) the posterior probability of component k given x_t. A correct sampler fed with ε*
must reproduce the mixture.

Chapter 7 labels the components with classes (:class:`LabelledMixture`): the data of class c are
the mixture of its own components, so the exact conditional predictor ε*(x_t, t | c) is the same
formula for that smaller mixture, and ε*(x_t, t) for the whole one is the unconditional predictor:
the two halves of classifier-free guidance, exact, to test a guided sampler before any training.
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
        try:
            weights, means, stds = (torch.as_tensor(v, dtype=torch.float64) for v in (weights, means, stds))
        except (TypeError, ValueError, RuntimeError) as error:
            raise ValueError(f"GaussianMixture: weights (K,), means (K, D) and stds (K,) must be numbers ({error})") from None
        for name, value in (("weights", weights), ("means", means), ("stds", stds)):
            _checks.finite(value, name, "GaussianMixture")
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
        return self._draw(n, generator)[0]

    def _draw(self, n: int, generator: torch.Generator | None):
        """``n`` draws (n, D) and the component k (n,) each came from."""
        n = _checks.positive_int(n, "n", "GaussianMixture.sample()")
        generator = _checks.generator(generator, "GaussianMixture.sample()")
        k = torch.multinomial(self.weights, n, replacement=True, generator=generator)
        z = torch.randn(n, self.dim, generator=generator, dtype=torch.float64)
        return (self.means[k] + self.stds[k, None] * z).float(), k

    def noised(self, alpha_bar: torch.Tensor):
        """Means (B, K, D) and variances (B, K) of the components of q(x_t) for each ᾱ_t in ``alpha_bar`` (B,)."""
        means = alpha_bar.sqrt()[:, None, None] * self.means[None]
        variances = alpha_bar[:, None] * self.stds[None] ** 2 + (1 - alpha_bar[:, None])
        return means, variances

    def responsibilities(self, x: torch.Tensor, alpha_bar=None) -> torch.Tensor:
        """r_k(x) = P(component k | x) (B, K) under the mixture noised to ᾱ (default 1: the data itself)."""
        return torch.softmax(self._log_joint(x, alpha_bar, "responsibilities()"), dim=1)

    def log_density(self, x: torch.Tensor, alpha_bar=None) -> torch.Tensor:
        """log q(x_t) (B,) of the mixture noised to ᾱ (default 1: the data), float64 and differentiable in x,
        so that autograd gives the score ∇ log q(x_t) (chapter 7)."""
        return torch.logsumexp(self._log_joint(x, alpha_bar, "log_density()"), dim=1)

    def _log_joint(self, x: torch.Tensor, alpha_bar, where: str) -> torch.Tensor:
        """log π_k + log N(x; sqrt(ᾱ) μ_k, v_k I) (B, K)."""
        if x is None or not (torch.is_tensor(x) or hasattr(x, "__len__")):
            raise ValueError(f"{where}: x must be points of shape (batch, {self.dim}), got {type(x).__name__}")
        x = _checks.finite(torch.as_tensor(x).to(torch.float64).cpu(), "x", where)
        if x.ndim != 2 or x.shape[1] != self.dim:
            raise ValueError(f"{where}: x must have shape (batch, {self.dim}), got {tuple(x.shape)}")
        alpha_bar = torch.ones(x.shape[0], dtype=torch.float64) if alpha_bar is None else \
            torch.as_tensor(alpha_bar, dtype=torch.float64).cpu().expand(x.shape[0])
        if not ((alpha_bar > 0) & (alpha_bar <= 1)).all():
            raise ValueError(f"{where}: alpha_bar (ᾱ_t) must lie in (0, 1], got values from {alpha_bar.min().item():.3g} "
                             f"to {alpha_bar.max().item():.3g}")
        means, variances = self.noised(alpha_bar)
        sq = ((x[:, None, :] - means) ** 2).sum(-1)
        return self.weights.log() - 0.5 * sq / variances - 0.5 * self.dim * torch.log(2 * math.pi * variances)

    def eps_model(self, diffusion) -> "MixtureOracle":
        """The exact noise predictor ε*(x_t, t) for ``diffusion``'s schedule: a model for ``diffusion.sample``."""
        if not hasattr(diffusion, "float64"):
            raise ValueError(f"eps_model(): expected the Diffusion whose schedule the oracle follows, e.g. "
                             f"mixture.eps_model(dl.Diffusion(betas)); got {type(diffusion).__name__}")
        return MixtureOracle(self, diffusion)


class MixtureOracle:
    """ε*(x_t, t) = E[ε | x_t] for data from a :class:`GaussianMixture` (module docstring; chapter 3).

    Called like a trained model, ``oracle(x_t, t)``; computed in float64, returned in x_t's dtype and device.
    """

    def __init__(self, mixture: GaussianMixture, diffusion):
        self.mixture = mixture
        self.alphas_cumprod = diffusion.float64["alphas_cumprod"]

    def __repr__(self) -> str:
        return f"MixtureOracle({self.mixture!r}, T={self.T})"

    @property
    def T(self) -> int:
        """The number of steps of the schedule it was built for (a Diffusion with another T refuses it)."""
        return len(self.alphas_cumprod)

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


class LabelledMixture(GaussianMixture):
    """A :class:`GaussianMixture` whose components carry class labels: p(x) = Σ_c p(c) p(x | c) (chapter 7).

    ``labels`` (K,) gives the class of each component, 0 … C − 1, every class used at least once.
    The class prior p(c) sums the weights of its components; p(x | c) is the mixture of its
    components (:meth:`given`). Label C is the "no label" token of classifier-free guidance.
    """

    def __init__(self, weights, means, stds, labels):
        super().__init__(weights, means, stds)
        labels = torch.as_tensor(labels)
        if labels.is_floating_point() or labels.dtype == torch.bool or tuple(labels.shape) != (len(self.weights),):
            raise ValueError(f"LabelledMixture: labels must be integers of shape (K,) = ({len(self.weights)},), "
                             f"the class of each component; got {labels.dtype} of shape {tuple(labels.shape)}")
        self.num_classes = int(labels.max()) + 1
        used = torch.bincount(labels.clamp(min=0), minlength=self.num_classes)
        if labels.min() < 0 or (used == 0).any():
            raise ValueError(f"LabelledMixture: the classes must be 0 … C − 1, each with a component; got labels "
                             f"{labels.tolist()}")
        self.labels = labels.long()
        self.class_weights = torch.zeros(self.num_classes, dtype=torch.float64).index_add_(0, self.labels, self.weights)

    def __repr__(self) -> str:
        return f"LabelledMixture(K={len(self.weights)}, D={self.dim}, classes={self.num_classes})"

    def given(self, c: int) -> GaussianMixture:
        """p(x | c): the mixture of class c's components, their weights renormalised."""
        _checks.positive_int(c, "the class c", "LabelledMixture.given()", minimum=0)
        if c >= self.num_classes:
            raise ValueError(f"LabelledMixture.given(): c must be a class 0 … {self.num_classes - 1}, got {c}")
        mine = self.labels == c
        return GaussianMixture(self.weights[mine], self.means[mine], self.stds[mine])

    def sample_labelled(self, n: int, generator: torch.Generator | None = None):
        """``n`` draws (n, D) of p(x) and the class (n,) of each: pairs (x, c) ~ p(c) p(x | c)."""
        x, k = self._draw(n, generator)
        return x, self.labels[k]

    def class_posterior(self, x: torch.Tensor, alpha_bar=None) -> torch.Tensor:
        """p(c | x_t) (B, C) under the mixture noised to ᾱ (default 1: the data): the exact, noise-aware
        classifier of classifier guidance. Differentiable in ``x`` (float64)."""
        r = self.responsibilities(x, alpha_bar)
        return r @ torch.nn.functional.one_hot(self.labels, self.num_classes).to(r.dtype)

    def eps_model(self, diffusion) -> "ConditionalMixtureOracle":
        """The exact ε*(x_t, t | y) and ε*(x_t, t) for ``diffusion``'s schedule: ``oracle(x_t, t, y)``."""
        return ConditionalMixtureOracle(self, diffusion)


class ConditionalMixtureOracle:
    """ε*(x_t, t | y) = E[ε | x_t, y] for data from a :class:`LabelledMixture` (chapter 7).

    Called like a class-conditional network, ``oracle(x_t, t, y)``: the rows with label c get chapter
    3's oracle of p(x | c), the rows with the "no label" token C (or all rows, with ``y=None``) that
    of the whole mixture, ε*(x_t, t).
    """

    def __init__(self, mixture: LabelledMixture, diffusion):
        self.mixture = mixture
        self.num_classes = mixture.num_classes
        self.oracles = [MixtureOracle(mixture.given(c), diffusion) for c in range(self.num_classes)]
        self.oracles.append(MixtureOracle(mixture, diffusion))  # index C: no label

    def __repr__(self) -> str:
        return f"ConditionalMixtureOracle({self.mixture!r}, T={len(self.oracles[0].alphas_cumprod)})"

    def __call__(self, x_t: torch.Tensor, t: torch.Tensor, y: torch.Tensor | None = None) -> torch.Tensor:
        where = "ConditionalMixtureOracle"
        x_t = _checks.tensor(x_t, "x_t", where, shape_hint=f"(batch, {self.mixture.dim})")
        t = _checks.timesteps(t, len(self.oracles[0].alphas_cumprod), len(x_t), where, x_t.device)
        y = torch.full((len(x_t),), self.num_classes) if y is None else \
            _checks.labels(y, self.num_classes, len(x_t), where).cpu()
        eps = torch.empty_like(x_t)
        for c in y.unique().tolist():
            rows = (y == c).to(x_t.device)
            eps[rows] = self.oracles[c](x_t[rows], t[rows])
        return eps
