"""DDIM: sampling in 10-50 steps with the DDPM's own noise predictor (Song, Meng & Ermon 2021; chapter 6).

DDIM replaces the Markov forward process of the DDPM by a family of non-Markovian ones with the same
marginals q(x_t | x_0), so a network trained with Algorithm 1 serves them all unchanged. Their
reverse step (eq. 12 of the paper) may jump over many steps at once:

    x̂_0    = (x_t − sqrt(1 − ᾱ_t) ε_θ(x_t, t)) / sqrt(ᾱ_t)
    σ_t(η) = η · sqrt((1 − ᾱ_prev) / (1 − ᾱ_t)) · sqrt(1 − ᾱ_t / ᾱ_prev)
    x_prev = sqrt(ᾱ_prev) x̂_0 + sqrt(1 − ᾱ_prev − σ_t²) ε_θ(x_t, t) + σ_t z,     z ~ N(0, I)

η = 0 is deterministic (the same x_T always gives the same x_0, which :func:`invert` runs
backwards); η = 1 over every step is DDPM's Algorithm 2 with σ_t² = β̃_t.

Time, as everywhere in the book: code index t in 0 … T-1 is the paper's step t+1 (``alphas_cumprod[t]``
is ᾱ_{t+1}); the state the step at index t starts from is the paper's x_{t+1}, and t_prev = −1 means
x_0 itself (ᾱ = 1). A step schedule is the list of indices a sampler calls the model at, from the
noisiest down (:func:`step_schedule`); the states of a run are labelled with the paper's subscripts,
x_T first and x_0 last.
"""
from __future__ import annotations

import torch

from . import _checks, cuda_graphs, precision, sampling
from .diffusion import TARGETS
from .sampling import randn_like
from .utils import module_device_dtype

SPACINGS = ("uniform", "quadratic")


def step_schedule(T: int, S: int, spacing: str = "uniform") -> torch.Tensor:
    """The S steps (0-based indices into the T-step schedule) a few-step sampler visits (chapter 6).

    A LongTensor (S,), strictly decreasing, first ``T-1`` (the noisiest step, where x_T ~ N(0, I)
    lives) and last ``0`` (the DDPM's last step, to x_0). Between them:

    - ``"uniform"``: evenly spaced, τ_i = round((T-1) · (1 − i/(S−1))) for i = 0 … S-1 (Nichol & Dhariwal's
      choice, "linspace" in Lin et al.; the DDIM paper's "linear" selection, whose code starts at
      T − T//S instead);
    - ``"quadratic"``: τ_i = round((T-1) · (1 − i/(S−1))²), denser near 0 where the details form (the DDIM
      paper's "quadratic", which its code stops at 0.8 T); steps that round to the same index are
      pushed apart, so all S are distinct.

    Rounding is to the nearest integer, halves up, in integer arithmetic (no float ties).
    S = T gives every step, T-1 … 0 (DDPM's loop). S = 1 is the single step 0 (the model then sees pure
    noise as if it were almost clean: correct by the definition, useless in practice).
    """
    where = "step_schedule()"
    T = _checks.positive_int(T, "T (the number of diffusion steps)", where)
    S = _checks.positive_int(S, "S (the number of sampling steps)", where)
    if S > T:
        raise ValueError(f"{where}: S (the number of sampling steps) must be at most T = {T}, the number of steps "
                         f"the model was trained with (a sampler visits each at most once); got S = {S}")
    _checks.one_of(spacing, SPACINGS, "spacing", where)
    if S == 1:
        return torch.zeros(1, dtype=torch.long)
    power = 1 if spacing == "uniform" else 2
    left = torch.arange(S - 1, -1, -1, dtype=torch.long) ** power          # (S−1−i)^p: (T−1)·left/(S−1)^p is the step
    scale = (S - 1) ** power
    steps = (2 * (T - 1) * left + scale) // (2 * scale)                    # round((T−1)·left/scale), halves up
    for i in range(S - 2, -1, -1):  # quadratic rounds neighbours near 0 to one index: keep them distinct
        steps[i] = max(int(steps[i]), int(steps[i + 1]) + 1)
    return steps


def _schedule(steps, T: int, spacing: str, where: str) -> torch.Tensor:
    """``steps`` as a checked schedule: an int S (built by :func:`step_schedule`), or the schedule itself."""
    if isinstance(steps, int) and not isinstance(steps, bool):
        return step_schedule(T, steps, spacing)
    return _checks.step_schedule(steps, T, where)


def _alpha_bar(diffusion, t: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
    """ᾱ at 0-based steps ``t`` (−1: x_0 itself, ᾱ = 1) in float64 on the CPU, shaped to broadcast against
    ``like``. Float64 because 1 − ᾱ_t/ᾱ_prev is a small difference of numbers close to 1."""
    with_one = torch.cat([diffusion.float64["alphas_cumprod_prev"], diffusion.float64["alphas_cumprod"][-1:]])
    return with_one[t.cpu() + 1].view(-1, *[1] * (like.ndim - 1))


def _like(coefficient: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    return coefficient.to(x.dtype).to(x.device)


def predictions(diffusion, model, x_t: torch.Tensor, t: torch.Tensor, target: str = "eps", clip_x0: bool = False):
    """x̂_0 and ε̂ at state x_t from one call of the model (chapter 6).

    The model predicts one of them (``target``); eq. 4 gives the other (:meth:`Diffusion.predict_x0`,
    :meth:`Diffusion.predict_eps`). With ``clip_x0`` x̂_0 is clipped to [-1, 1] and ε̂ recomputed from
    it, so that the pair stays consistent with x_t (then η = 1 matches DDPM's clipped sampler).
    """
    out = diffusion.model_output(model, x_t, t)
    x0, eps = (diffusion.predict_x0(x_t, t, out), out) if target == "eps" else (out, diffusion.predict_eps(x_t, t, out))
    if clip_x0:
        x0 = x0.clamp(-1, 1)
        eps = diffusion.predict_eps(x_t, t, x0)
    return x0, eps


@torch.no_grad()
def ddim_step(diffusion, model, x_t: torch.Tensor, t, t_prev, eta: float, generator: torch.Generator | None = None,
              clip_x0: bool = False, *, target: str = "eps") -> torch.Tensor:
    """One DDIM step from the state at index ``t`` to the state at ``t_prev`` (Song et al. 2021, eq. 12; chapter 6).

    x_prev = sqrt(ᾱ_prev) x̂_0 + sqrt(1 − ᾱ_prev − σ_t²) ε̂ + σ_t z with
    σ_t(η) = η · sqrt((1 − ᾱ_prev)/(1 − ᾱ_t)) · sqrt(1 − ᾱ_t/ᾱ_prev), x̂_0 and ε̂ from one model call
    (:func:`predictions`). ``t``: index (or LongTensor (batch,)) in 0 … T-1; ``t_prev`` in −1 … t−1,
    −1 meaning x_0 (ᾱ_prev = 1). ``eta`` in [0, 1]: 0 is deterministic (no z is drawn), 1 with
    t_prev = t − 1 is DDPM's step with σ_t² = β̃_t (z drawn with ``generator`` even where σ_t = 0, as
    :meth:`Diffusion.p_sample` does, so both consume the same noise).
    """
    where = "ddim_step()"
    eta = _checks.number(eta, "eta (η)", where, 0.0, 1.0)
    _checks.one_of(target, TARGETS, "target", where)
    x_t = _checks.tensor(x_t, "x_t", where)
    t = _checks.timesteps(t, diffusion.T, x_t.shape[0], where, x_t.device)
    t_prev = _checks.previous_steps(t_prev, t, where)
    x0, eps = predictions(diffusion, model, x_t, t, target, clip_x0)
    alpha_bar, alpha_bar_prev = _alpha_bar(diffusion, t, x_t), _alpha_bar(diffusion, t_prev, x_t)
    sigma = eta * ((1 - alpha_bar_prev) / (1 - alpha_bar)).sqrt() * (1 - alpha_bar / alpha_bar_prev).sqrt()
    direction = (1 - alpha_bar_prev - sigma ** 2).clamp(min=0).sqrt()      # the weight of ε̂ ("direction to x_t")
    x_prev = _like(alpha_bar_prev.sqrt(), x_t) * x0 + _like(direction, x_t) * eps
    if eta > 0:
        x_prev = x_prev + _like(sigma, x_t) * randn_like(x_t, generator)
    return x_prev


def _start(diffusion, model, shape, x_T, generator, device, where: str) -> torch.Tensor:
    """x_T: ``x_T`` as given (checked against ``shape``), or N(0, I) drawn with ``generator``, on ``device``
    (default: the model's, else the diffusion's) in the model's dtype, as :meth:`Diffusion.sample` does."""
    model_device, model_dtype = module_device_dtype(model)
    device = torch.device(device) if device is not None else (model_device or diffusion.device)
    if x_T is not None:
        x_T = _checks.tensor(x_T, "x_T", where)
        if tuple(x_T.shape) != shape:
            raise ValueError(f"{where}: x_T must have the shape {shape}; got {tuple(x_T.shape)}")
        return x_T.to(device=device, dtype=model_dtype or x_T.dtype)
    return randn_like(torch.empty(shape, dtype=model_dtype or torch.float32, device=device), generator)


@torch.no_grad()
def _etas(eta, jumps: int, where: str) -> list[float]:
    """η for each of the schedule's ``jumps``: one number for all of them, or one per jump (chapter 6)."""
    if isinstance(eta, (list, tuple)) or torch.is_tensor(eta):
        values = eta.tolist() if torch.is_tensor(eta) else list(eta)
        if len(values) != jumps:
            raise ValueError(f"{where}: eta (η) must be one number, or one per step of the schedule ({jumps} here); "
                             f"got {len(values)} values")
        return [_checks.number(value, "each eta (η)", where, 0.0, 1.0) for value in values]
    return [_checks.number(eta, "eta (η)", where, 0.0, 1.0)] * jumps


def sample_progressive(diffusion, model, shape, *, steps=50, eta: float = 0.0, spacing: str = "uniform",
                       generator: torch.Generator | None = None, device=None, clip_x0: bool = False,
                       target: str = "eps", x_T: torch.Tensor | None = None, amp: bool = True,
                       cuda_graph: bool = True):
    """DDIM sampling one state at a time (chapter 6): yields ``(t, x_t)``, the paper's subscripts, x_T first.

    ``steps`` is S (the schedule is :func:`step_schedule` with ``spacing``) or a schedule itself. From
    x_T (drawn, or ``x_T``), :func:`ddim_step` from each τ_i to the next, the last to −1; the labels
    are τ_i + 1, so the run ends with (0, x_0). ``eta``: one η for every step, or a list of S, one per
    step from the noisiest down. Runs on ``device`` (default: the model's); ``amp``:
    the network in mixed precision where it helps (:mod:`ddpm_lessons.precision`), x in float32;
    ``cuda_graph``: the network replayed from a CUDA graph on a GPU (:mod:`ddpm_lessons.cuda_graphs`).
    """
    where = "ddim.sample()"
    shape = _checks.shape(shape, "shape", where)
    schedule = _schedule(steps, diffusion.T, spacing, where).tolist()
    etas = _etas(eta, len(schedule), where)
    x = _start(diffusion, model, shape, x_T, generator, device, where)
    amp_dtype = precision.autocast_dtype(x.device, model) if amp else None
    _checks.flag(cuda_graph, "cuda_graph", where)
    denoiser = cuda_graphs.graphed(model, x.device) if cuda_graph else model
    yield schedule[0] + 1, x
    for t, t_prev, eta_t in zip(schedule, schedule[1:] + [-1], etas):
        with torch.autocast(x.device.type, dtype=amp_dtype, enabled=amp_dtype is not None):
            x = ddim_step(diffusion, denoiser, x, t, t_prev, eta_t, generator, clip_x0, target=target)
        yield t_prev + 1, x


def sample(diffusion, model, shape, *, steps=50, eta: float = 0.0, spacing: str = "uniform",
           generator: torch.Generator | None = None, device=None, clip_x0: bool = False, target: str = "eps",
           x_T: torch.Tensor | None = None, amp: bool = True, progress: bool = False, return_trajectory: bool = False,
           cuda_graph: bool = True):
    """DDIM sampling in ``steps`` model calls (Song et al. 2021; chapter 6): x_T ~ N(0, I), then eq. 12.

    The conventions of :meth:`Diffusion.sample`: returns x_0, or with ``return_trajectory=True`` a
    :class:`~ddpm_lessons.sampling.Trajectory` of every state (on the CPU, labelled with its t);
    ``progress=True`` shows a bar. ``eta`` in [0, 1] (0: deterministic DDIM, 1: DDPM's ancestral
    sampler on the schedule), or one η per step; ``x_T`` starts from given noise (e.g. from :func:`invert`).
    """
    schedule = _schedule(steps, diffusion.T, spacing, "ddim.sample()")
    states = sample_progressive(diffusion, model, shape, steps=schedule, eta=eta, generator=generator, device=device,
                                clip_x0=clip_x0, target=target, x_T=x_T, amp=amp, cuda_graph=cuda_graph)
    return sampling.run(states, total=len(schedule) + 1, progress=progress, return_trajectory=return_trajectory,
                        desc="DDIM sampling")


@torch.no_grad()
def invert_progressive(diffusion, model, x0: torch.Tensor, *, steps=50, spacing: str = "uniform"):
    """DDIM inversion, one state at a time (chapter 6): the η = 0 update run upwards, x_0 to x_T.

    The sampler's step from τ_i to τ_{i+1} uses ε_θ(x, τ_i) at the upper state, which inversion does
    not know yet; it uses ε̂ = ε_θ(x, τ_i) at the lower state it has (a good approximation when steps
    are small), and moves with the same update: x̂_0 = (x − sqrt(1 − ᾱ_lower) ε̂)/sqrt(ᾱ_lower),
    x_upper = sqrt(ᾱ_upper) x̂_0 + sqrt(1 − ᾱ_upper) ε̂. Yields ``(t, x_t)`` from (0, x_0) to x_T.
    """
    where = "ddim.invert()"
    x = _checks.tensor(x0, "x0", where, shape_hint="(batch, ...) in [-1, 1]")
    model_device, model_dtype = module_device_dtype(model)
    x = x.to(device=model_device or x.device, dtype=model_dtype or x.dtype)
    upward = _schedule(steps, diffusion.T, spacing, where).flip(0).tolist()   # 0, …, the noisiest step
    yield 0, x
    for lower, upper in zip([-1] + upward[:-1], upward):
        eps = diffusion.model_output(model, x, torch.full((len(x),), upper, device=x.device))
        alpha_bar_lower = _alpha_bar(diffusion, torch.tensor([lower]), x)
        alpha_bar_upper = _alpha_bar(diffusion, torch.tensor([upper]), x)
        x0_hat = (x - _like((1 - alpha_bar_lower).sqrt(), x) * eps) / _like(alpha_bar_lower.sqrt(), x)
        x = _like(alpha_bar_upper.sqrt(), x) * x0_hat + _like((1 - alpha_bar_upper).sqrt(), x) * eps
        yield upper + 1, x


def invert(diffusion, model, x0: torch.Tensor, *, steps=50, spacing: str = "uniform", progress: bool = False,
           return_trajectory: bool = False):
    """Encode images x_0 to the noise x_T that deterministic DDIM (η = 0, the same ``steps``) decodes
    back to them, up to the approximation explained in :func:`invert_progressive` (chapter 6).

    Returns x_T, or with ``return_trajectory=True`` the :class:`~ddpm_lessons.sampling.Trajectory`
    x_0 … x_T. Decode with ``sample(diffusion, model, x_T.shape, x_T=x_T, steps=steps, spacing=spacing)``.
    """
    schedule = _schedule(steps, diffusion.T, spacing, "ddim.invert()")
    states = invert_progressive(diffusion, model, x0, steps=schedule)
    return sampling.run(states, total=len(schedule) + 1, progress=progress, return_trajectory=return_trajectory,
                        desc="DDIM inversion")


def slerp(a: torch.Tensor, b: torch.Tensor, weight) -> torch.Tensor:
    """Spherical interpolation from ``a`` (weight 0) to ``b`` (weight 1) (Shoemake 1985; White 2016; chapter 6).

    sin((1 − w) θ)/sin θ · a + sin(w θ)/sin θ · b, with θ the angle between a and b (all their entries
    as one vector). Between two draws of N(0, I) in many dimensions it keeps the norm that such noise
    has (about sqrt(dimension)), where a straight line would pass through smaller, untypical noise.
    ``a`` and ``b``: one shape (e.g. one x_T (1, 28, 28)); ``weight`` a number in [0, 1] (result of a's
    shape) or a 1-D tensor or list of them (result (K, *a.shape)).
    """
    where = "slerp()"
    a = _checks.tensor(a, "a", where, shape_hint="(...), one x_T")
    b = _checks.same_shape(a, _checks.tensor(b, "b", where, shape_hint="(...), one x_T"), "a", "b", where)
    single = not (torch.is_tensor(weight) or isinstance(weight, (list, tuple)))
    weights = [_checks.number(weight, "weight", where, 0.0, 1.0)] if single else \
        [_checks.number(float(w), "every weight", where, 0.0, 1.0) for w in torch.as_tensor(weight).reshape(-1)]
    u, v = a.detach().double().flatten(), b.detach().double().flatten()
    theta = torch.arccos((u @ v / (u.norm() * v.norm())).clamp(-1, 1))
    w = torch.tensor(weights, dtype=torch.float64)[:, None]
    if theta.sin() < 1e-6:   # (anti)parallel: the great circle is not defined; the straight line is the limit
        mixed = (1 - w) * u + w * v
    else:
        mixed = (torch.sin((1 - w) * theta) * u + torch.sin(w * theta) * v) / theta.sin()
    result = mixed.to(a.dtype).to(a.device).view(len(weights), *a.shape)
    return result[0] if single else result
