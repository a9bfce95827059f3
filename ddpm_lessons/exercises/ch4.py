"""Checkers of chapter 4 (book/04_noise_prediction).
"""
from __future__ import annotations

import copy

import torch

from ..diffusion import Diffusion
from ..models.noise_mlp import NoiseMLP
from ..schedules import linear_beta_schedule
from ._harness import ExerciseMistake, call, first_difference, known_mistake, run_checker


class _SpyModel(torch.nn.Module):
    """A fixed, elementwise "noise predictor" that records what it was called with (chapter 4 checkers).

    Its output tanh(1.3 x − 0.2 + 0.01 t) depends on both inputs, so a loss computed from a wrong x_t
    or t gives a different value; ``calls`` holds the (x, t) of every call.
    """

    def __init__(self):
        super().__init__()
        self.scale = torch.nn.Parameter(torch.tensor(1.3))
        self.calls = []

    def forward(self, x, t):
        self.calls.append((x.detach().clone(), t.detach().clone() if torch.is_tensor(t) else t))
        t = torch.as_tensor(t, dtype=x.dtype, device=x.device)
        return torch.tanh(self.scale * x - 0.2 + 0.01 * t.reshape(-1, *[1] * (x.ndim - 1)))


def _chapter4_cases(generator: torch.Generator):
    """A short linear schedule; 2-D points with steps 0 and T-1 included, then images."""
    d = Diffusion(linear_beta_schedule(100, 1e-3, 0.2))
    points = torch.randn(9, 2, generator=generator)
    images = torch.rand(4, 1, 5, 5, generator=generator) * 2 - 1
    return d, [
        ("a batch of 2-D points (x0 of shape (9, 2)) with steps t = 0 … 99", points,
         torch.tensor([0, 1, 5, 20, 50, 70, 97, 98, 99])),
        ("a batch of images (x0 of shape (4, 1, 5, 5))", images, torch.tensor([99, 0, 30, 60])),
    ]


def _x_t_slips(d, x0, noise, t, shape) -> dict:
    """Wrong forms of x_t that students write often, each with what to change (chapter 4 checkers)."""
    at = d.alphas_cumprod[t].view(shape)
    prev = d.alphas_cumprod_prev[t].view(shape)
    return {
        "you swapped the coefficients: the data gets sqrt(ᾱ_t) and the noise sqrt(1 − ᾱ_t), "
        "x_t = sqrt(ᾱ_t)·x0 + sqrt(1 − ᾱ_t)·ε.": (1 - at).sqrt() * x0 + at.sqrt() * noise,
        "the noise's coefficient must be its standard deviation sqrt(1 − ᾱ_t), not the variance 1 − ᾱ_t.":
            at.sqrt() * x0 + (1 - at) * noise,
        "x_t used ᾱ_{t−1} (alphas_cumprod_prev): the closed form at step t uses alphas_cumprod[t].":
            prev.sqrt() * x0 + (1 - prev).sqrt() * noise,
        "x_t used β_t for the noise, the one-step formula (eq. 2): after t steps the noise's variance is "
        "1 − ᾱ_t, so x_t = sqrt(ᾱ_t)·x0 + sqrt(1 − ᾱ_t)·ε.": at.sqrt() * x0 + d.betas[t].view(shape).sqrt() * noise,
        "you took the square root twice: diffusion.sqrt_alphas_cumprod already holds sqrt(ᾱ_t) (and "
        "sqrt_one_minus_alphas_cumprod holds sqrt(1 − ᾱ_t)); use them as they are.":
            at.sqrt().sqrt() * x0 + (1 - at).sqrt().sqrt() * noise,
    }


def _check_own_noise(seen_x, x0, noise, at, t, got, what: str) -> None:
    """A student who draws fresh noise (torch.randn_like) instead of using ``noise`` gets a loss that the
    checker cannot reproduce: recognise it from the model's input and the returned value."""
    if tuple(seen_x.shape) != tuple(x0.shape):
        return
    own = (seen_x.double() - at.sqrt().double() * x0.double()) / (1 - at).sqrt().double()
    if torch.allclose(own, noise.double(), atol=1e-4):
        return
    with torch.no_grad():
        out = _SpyModel()(seen_x, t).double()
    if torch.isclose(got.detach().double().cpu().reshape(()), (out - own).square().mean(), rtol=1e-4, atol=1e-7):
        raise ExerciseMistake(f"with {what}: you drew your own noise (torch.randn_like?); use the noise ε that "
                              "the function is given, in x_t and as the target, so that the loss is reproducible.")


def _check_simple_loss(loss_fn, target: str) -> None:
    """Shared body of check_loss and check_predict_x0_loss: the model input, then the loss value."""
    g = torch.Generator().manual_seed(4)
    d, cases = _chapter4_cases(g)
    wanted_name = "the noise ε" if target == "eps" else "x0"
    for what, x0, t in cases:
        noise = torch.randn(x0.shape, generator=g)
        model = _SpyModel()
        got = call(loss_fn, d, model, x0.clone(), t.clone(), noise.clone(), what=f"with {what}")
        if torch.is_tensor(got) and tuple(got.shape) == tuple(x0.shape):
            raise ExerciseMistake(f"with {what}: you returned one error per number, shape {tuple(got.shape)}; "
                                  "the loss is a single number, the mean over the batch (`.mean()`).")
        if not torch.is_tensor(got) or got.numel() != 1:
            kind = f"shape {tuple(got.shape)}" if torch.is_tensor(got) else type(got).__name__
            raise ExerciseMistake(f"with {what}: expected a single-number tensor (0-d), got {kind}.")
        if not got.requires_grad:
            raise ExerciseMistake(f"with {what}: your loss has no gradient, so training could not use it. "
                                  "Return the tensor itself (no `.item()`, no `torch.no_grad()`).")
        if not model.calls:
            raise ExerciseMistake(f"with {what}: your loss never called model(x_t, t).")
        seen_x, seen_t = model.calls[-1]
        # the model's input: the noisy x_t at the integer steps t
        if not torch.is_tensor(seen_t) or tuple(seen_t.shape) != tuple(t.shape) or \
                seen_t.is_floating_point() or not torch.equal(seen_t.cpu().long(), t):
            hint = ""
            if torch.is_tensor(seen_t) and tuple(seen_t.shape) == tuple(t.shape):
                if torch.equal(seen_t.cpu().double(), t.double() + 1):
                    hint = " You passed t + 1: steps are 0-based here, pass t itself."
                elif seen_t.is_floating_point():
                    hint = " You passed floats (t / T?): pass the integer steps t; the model embeds them itself."
            raise ExerciseMistake(f"with {what}: the model should be called with the steps t = {t.tolist()}.{hint}")
        shape = (-1,) + (1,) * (x0.ndim - 1)
        a, at = d.alphas_cumprod, d.alphas_cumprod[t].view(shape)
        x_t = at.sqrt() * x0 + (1 - at).sqrt() * noise
        mistake = known_mistake(seen_x, {
            "the model was given x0; it must see the noisy x_t = sqrt(ᾱ_t)·x0 + sqrt(1 − ᾱ_t)·ε.": x0,
            "the model was given the noise ε; it must see the noisy x_t = sqrt(ᾱ_t)·x0 + sqrt(1 − ᾱ_t)·ε.": noise,
            "you forgot the square roots in x_t: sqrt(ᾱ_t)·x0 + sqrt(1 − ᾱ_t)·ε, not ᾱ_t·x0 + (1 − ᾱ_t)·ε.":
                at * x0 + (1 - at) * noise,
            "x_t used α_t (alphas) instead of ᾱ_t (alphas_cumprod): the closed form needs the product ᾱ_t.":
                d.alphas[t].view(shape).sqrt() * x0 + (1 - d.alphas[t].view(shape)).sqrt() * noise,
            "x_t used ᾱ at step t + 1: steps are 0-based, so step t uses alphas_cumprod[t] itself.":
                a[(t + 1).clamp(max=len(a) - 1)].view(shape).sqrt() * x0
                + (1 - a[(t + 1).clamp(max=len(a) - 1)].view(shape)).sqrt() * noise,
            **_x_t_slips(d, x0, noise, t, shape),
        })
        if mistake:
            raise ExerciseMistake(f"with {what}: {mistake}")
        _check_own_noise(seen_x, x0, noise, at, t, got, what)
        if tuple(seen_x.shape) != tuple(x0.shape) or not torch.allclose(seen_x.double(), x_t.double(), atol=1e-5):
            raise ExerciseMistake(
                f"with {what}: the model's input should be x_t = sqrt(ᾱ_t)·x0 + sqrt(1 − ᾱ_t)·ε with "
                f"ᾱ_t = alphas_cumprod[t] (one per example); yours differs"
                + (f": {first_difference(seen_x, x_t, t)}." if tuple(seen_x.shape) == tuple(x0.shape)
                   else f" in shape: {tuple(seen_x.shape)} instead of {tuple(x0.shape)}.")
            )
        # the loss value: the mean squared error between the target and the model's output
        with torch.no_grad():
            out = _SpyModel()(x_t, t).double()
        wanted, other = (noise, x0) if target == "eps" else (x0, noise)
        wanted, other = wanted.double(), other.double()
        expected = (out - wanted).square().mean()
        value = got.detach().double().cpu().reshape(())
        variants = {
            f"you compared the output with {'x0' if target == 'eps' else 'the noise ε'}; "
            f"the target here is {wanted_name}.": (out - other).square().mean(),
            f"you compared the output with x_t; the target is {wanted_name}.": (out - x_t.double()).square().mean(),
            "you summed the squared errors; take the mean, so that the loss does not grow with the batch.":
                (out - wanted).square().sum(),
            "you averaged the absolute errors (L1); the simple loss squares them.": (out - wanted).abs().mean(),
            "you took the square root of the mean squared error; the loss is the mean squared error itself.":
                (out - wanted).square().mean().sqrt(),
            "you summed over the coordinates and averaged over the batch; average over every number "
            "(as F.mse_loss does), so the value does not depend on the data size.":
                (out - wanted).square().reshape(len(x0), -1).sum(1).mean(),
        }
        for explanation, wrong in variants.items():
            if torch.isclose(value, wrong, rtol=1e-4, atol=1e-7) and not torch.isclose(value, expected, rtol=1e-4, atol=1e-7):
                raise ExerciseMistake(f"with {what}: {explanation}")
        if not torch.isclose(value, expected, rtol=1e-4, atol=1e-7):
            raise ExerciseMistake(
                f"with {what}: expected the mean of (model(x_t, t) − {wanted_name})² = {expected.item():.6g}, "
                f"got {value.item():.6g}."
            )


def check_loss(loss_fn) -> bool:
    """Exercise (chapter 4): ``loss_fn(diffusion, model, x0, t, noise)`` is L_simple of Algorithm 1.

    x_t = sqrt(ᾱ_t) x0 + sqrt(1 − ᾱ_t) ε, then the mean of (ε − model(x_t, t))² over every number,
    for the given steps ``t`` (LongTensor, 0-based) and noise ``ε``; it must work for points and images.
    """
    return run_checker("check_loss", lambda: _check_simple_loss(loss_fn, "eps"))


def check_predict_x0_loss(loss_fn) -> bool:
    """Exercise (chapter 4): ``loss_fn(diffusion, model, x0, t, noise)`` trains the model to predict x0.

    As :func:`check_loss`, but the target is x0: the mean of (x0 − model(x_t, t))².
    """
    return run_checker("check_predict_x0_loss", lambda: _check_simple_loss(loss_fn, "x0"))


def reference_training_step(model, optimizer, loss_fn, batch) -> float:
    optimizer.zero_grad()
    loss = loss_fn(model, batch)
    loss.backward()
    optimizer.step()
    return loss.item()


def check_training_step(step_fn) -> bool:
    """Exercise (chapter 4): ``step_fn(model, optimizer, loss_fn, batch)`` does one optimizer step.

    Clear the old gradients, compute ``loss = loss_fn(model, batch)``, backpropagate, step the
    optimizer, and return the loss as a Python float (the value before the step).
    """

    def body():
        d, cases = _chapter4_cases(torch.Generator().manual_seed(5))
        g = torch.Generator().manual_seed(6)
        batches = [torch.randn(16, 2, generator=g) for _ in range(3)]
        fixed = [(torch.randint(0, d.T, (16,), generator=g), torch.randn(16, 2, generator=g)) for _ in range(3)]
        torch.manual_seed(0)
        start = NoiseMLP(d.T, hidden=16)

        def run(step, zero_grad=True):
            model = copy.deepcopy(start)
            optimizer = torch.optim.Adam(model.parameters(), lr=1e-2)
            losses, states = [], []
            for i, batch in enumerate(batches):
                t, noise = fixed[i]

                def loss_fn(m, x, t=t, noise=noise):  # fixed t and ε: the step is deterministic
                    return d.loss(m, x, t=t, noise=noise)

                if not zero_grad and i > 0:  # the reference for "forgot zero_grad": keep the old gradients
                    loss = loss_fn(model, batch)
                    loss.backward()
                    optimizer.step()
                    losses.append(loss.item())
                else:
                    losses.append(call(step, model, optimizer, loss_fn, batch, what=f"at step {i + 1}"))
                states.append([p.detach().clone() for p in model.parameters()])
                cleared.append(all(p.grad is None or not p.grad.any() for p in model.parameters()))
            return losses, states

        cleared = []
        got_losses, got_states = run(step_fn)
        got_cleared, cleared = cleared, []
        ref_losses, ref_states = run(reference_training_step)
        _, no_zero_states = run(reference_training_step, zero_grad=False)
        if got_losses[0] is None:
            raise ExerciseMistake("your function returned nothing (None): end it with `return loss.item()`, "
                                  "the loss of this batch as a Python float.")
        unchanged = all(torch.equal(p, q) for p, q in zip(got_states[0], start.parameters()))
        if unchanged and got_cleared[0]:
            raise ExerciseMistake(
                "after your step the parameters did not change and the gradients were empty: you cleared them "
                "after loss.backward() and before optimizer.step(). Call optimizer.zero_grad() first, before "
                "computing the loss."
            )
        if unchanged:
            raise ExerciseMistake(
                "after your step the parameters did not change: call optimizer.step() after loss.backward() "
                "(before backward there are no gradients to step with)."
            )
        for i, got in enumerate(got_losses):
            if torch.is_tensor(got):
                raise ExerciseMistake(
                    f"at step {i + 1} you returned a tensor; return loss.item(), a Python float, so that the "
                    "history of losses does not keep every step's graph in memory."
                )
            if not isinstance(got, float):
                raise ExerciseMistake(f"at step {i + 1}: expected the loss as a Python float, got {type(got).__name__}.")
        for i, (got, ref, accumulated) in enumerate(zip(got_states, ref_states, no_zero_states)):
            if all(torch.allclose(p, q, atol=1e-6) for p, q in zip(got, ref)):
                continue
            if i > 0 and all(torch.allclose(p, q, atol=1e-6) for p, q in zip(got, accumulated)):
                raise ExerciseMistake(
                    f"at step {i + 1} the update used this batch's gradient plus the previous ones: call "
                    "optimizer.zero_grad() before loss.backward() (PyTorch adds gradients up)."
                )
            raise ExerciseMistake(
                f"after step {i + 1} the parameters differ from one Adam step on loss_fn(model, batch): "
                "zero the gradients, compute the loss, call backward(), then optimizer.step() -- once each."
            )
        for i, (got, ref) in enumerate(zip(got_losses, ref_losses)):
            if abs(got - ref) > 1e-5 * max(1.0, abs(ref)):
                raise ExerciseMistake(
                    f"at step {i + 1} you returned {got:.6g}; the loss of this batch before the update is "
                    f"{ref:.6g}. Return the loss that you called backward() on."
                )

    return run_checker("check_training_step", body)
