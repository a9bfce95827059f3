"""NoiseMLP: the small time-conditioned network that predicts the noise of 2-D points (chapter 4).

    x_t (B, 2) ─ Linear ─ (+ time) ─ ReLU ─ Linear ─ (+ time) ─ ReLU ─ Linear ─ (+ time) ─ ReLU ─ Linear ─ ε̂ (B, 2)
                 2→128                  128→128                  128→128                  128→2

One network serves every step t, so each hidden layer also receives the step: a time embedding,
projected to the layer's width and *added* to its pre-activation. Two embeddings, compared in the
chapter:

- ``"raw"``: the scalar t/T, as in the classic small 2-D DDPMs;
- ``"sinusoidal"``: the Transformer's sin/cos features of t (:func:`.embeddings.sinusoidal_embedding`).
"""
from __future__ import annotations

import torch
from torch import nn

from .. import _checks
from .embeddings import sinusoidal_embedding

TIME_EMBEDDINGS = ("raw", "sinusoidal")


class NoiseMLP(nn.Module):
    """ε_θ(x_t, t) for points in ``dim`` dimensions (chapter 4).

    ``T``: the number of diffusion steps (``t`` runs over 0 … T-1; the raw embedding divides by T).
    ``hidden``: width of the three hidden layers. ``time_embedding``: "raw" or "sinusoidal".
    ``embedding_dim``: size of the sinusoidal features (ignored for "raw", which has one feature).
    """

    def __init__(self, T: int, dim: int = 2, hidden: int = 128, time_embedding: str = "sinusoidal",
                 embedding_dim: int = 32, num_hidden: int = 3):
        super().__init__()
        for name, value in (("T", T), ("dim", dim), ("hidden", hidden), ("num_hidden", num_hidden)):
            _checks.positive_int(value, name, "NoiseMLP()")
        _checks.one_of(time_embedding, TIME_EMBEDDINGS, "time_embedding", "NoiseMLP()")
        if time_embedding == "sinusoidal":
            _checks.even_int(embedding_dim, "embedding_dim", "NoiseMLP()")
        self.T, self.dim, self.time_embedding = T, dim, time_embedding
        self.embedding_dim = 1 if time_embedding == "raw" else embedding_dim
        widths = [dim] + [hidden] * num_hidden
        self.layers = nn.ModuleList(nn.Linear(a, b) for a, b in zip(widths[:-1], widths[1:]))
        self.time_projections = nn.ModuleList(nn.Linear(self.embedding_dim, hidden) for _ in range(num_hidden))
        self.out = nn.Linear(hidden, dim)

    def embed_time(self, t: torch.Tensor) -> torch.Tensor:
        """The step as features (B, embedding_dim): t/T ("raw") or sin/cos of t ("sinusoidal")."""
        if self.time_embedding == "raw":
            return (t.float() / self.T)[:, None]
        return sinusoidal_embedding(t, self.embedding_dim)

    def check_input(self, x, t):
        """x (B, dim) and t (B,) as this network takes them, or a ValueError that says what is wrong."""
        x = _checks.network_input(x, self, "NoiseMLP", f"points x of shape (B, {self.dim})")
        if x.dim() != 2 or x.shape[1] != self.dim:
            raise ValueError(f"NoiseMLP: expected points x of shape (B, {self.dim}), got {tuple(x.shape)}")
        return x, _checks.network_steps(t, x.shape[0], self.T, "NoiseMLP")

    def forward(self, x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        x, t = self.check_input(x, t)
        time = self.embed_time(t).to(x.dtype)
        h = x
        for layer, projection in zip(self.layers, self.time_projections):
            h = torch.relu(layer(h) + projection(time))
        return self.out(h)
