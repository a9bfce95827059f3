"""Chapter 4 checkers: the reference passes, and typical wrong answers are caught with a useful message."""
import pytest
import torch
import torch.nn.functional as F

from ddpm_lessons import exercises


def _x_t(d, x0, t, noise, table=None, roots=True, shift=0):
    table = d.alphas_cumprod if table is None else table
    a = table[(t + shift).clamp(max=len(table) - 1)].view(-1, *[1] * (x0.ndim - 1))
    return a.sqrt() * x0 + (1 - a).sqrt() * noise if roots else a * x0 + (1 - a) * noise


# ---------------------------------------------------------------- check_loss
def loss_reference(d, model, x0, t, noise):
    return F.mse_loss(model(_x_t(d, x0, t, noise), t), noise)


def loss_uses_diffusion_loss(d, model, x0, t, noise):
    return d.loss(model, x0, t=t, noise=noise)


def loss_model_sees_x0(d, model, x0, t, noise):
    return F.mse_loss(model(x0, t), noise)


def loss_no_square_roots(d, model, x0, t, noise):
    return F.mse_loss(model(_x_t(d, x0, t, noise, roots=False), t), noise)


def loss_alphas_not_cumprod(d, model, x0, t, noise):
    return F.mse_loss(model(_x_t(d, x0, t, noise, table=d.alphas), t), noise)


def loss_target_x0(d, model, x0, t, noise):
    return F.mse_loss(model(_x_t(d, x0, t, noise), t), x0)


def loss_sum(d, model, x0, t, noise):
    return (model(_x_t(d, x0, t, noise), t) - noise).square().sum()


def loss_l1(d, model, x0, t, noise):
    return (model(_x_t(d, x0, t, noise), t) - noise).abs().mean()


def loss_item(d, model, x0, t, noise):
    return torch.tensor(F.mse_loss(model(_x_t(d, x0, t, noise), t), noise).item())


def loss_per_element(d, model, x0, t, noise):
    return (model(_x_t(d, x0, t, noise), t) - noise).square()


def loss_float_time(d, model, x0, t, noise):
    return F.mse_loss(model(_x_t(d, x0, t, noise), t / d.T), noise)


def loss_t_plus_one(d, model, x0, t, noise):
    return F.mse_loss(model(_x_t(d, x0, t, noise, shift=1), t + 1), noise)


def loss_no_model(d, model, x0, t, noise):
    return (_x_t(d, x0, t, noise) - noise).square().mean().requires_grad_()


def loss_broadcast_1d(d, model, x0, t, noise):  # forgets to reshape ᾱ_t: breaks on images
    a = d.alphas_cumprod[t]
    return F.mse_loss(model(a.sqrt()[:, None] * x0 + (1 - a).sqrt()[:, None] * noise, t), noise)


def loss_swapped(d, model, x0, t, noise):
    a = d.alphas_cumprod[t].view(-1, *[1] * (x0.ndim - 1))
    return F.mse_loss(model((1 - a).sqrt() * x0 + a.sqrt() * noise, t), noise)


def loss_noise_variance(d, model, x0, t, noise):  # 1 − ᾱ_t where sqrt(1 − ᾱ_t) belongs
    a = d.alphas_cumprod[t].view(-1, *[1] * (x0.ndim - 1))
    return F.mse_loss(model(a.sqrt() * x0 + (1 - a) * noise, t), noise)


def loss_cumprod_prev(d, model, x0, t, noise):
    return F.mse_loss(model(_x_t(d, x0, t, noise, table=d.alphas_cumprod_prev), t), noise)


def loss_one_step_beta(d, model, x0, t, noise):
    shape = (-1, *[1] * (x0.ndim - 1))
    x_t = d.alphas_cumprod[t].view(shape).sqrt() * x0 + d.betas[t].view(shape).sqrt() * noise
    return F.mse_loss(model(x_t, t), noise)


def loss_double_root(d, model, x0, t, noise):
    shape = (-1, *[1] * (x0.ndim - 1))
    x_t = d.sqrt_alphas_cumprod[t].view(shape).sqrt() * x0 + d.sqrt_one_minus_alphas_cumprod[t].view(shape).sqrt() * noise
    return F.mse_loss(model(x_t, t), noise)


def loss_own_noise(d, model, x0, t, noise):
    fresh = torch.randn_like(noise)
    return F.mse_loss(model(_x_t(d, x0, t, fresh), t), fresh)


def loss_stub(d, model, x0, t, noise):
    raise NotImplementedError


def test_check_loss_accepts_the_reference(capsys):
    assert exercises.check_loss(loss_reference)
    assert exercises.check_loss(loss_uses_diffusion_loss)
    assert "correct" in capsys.readouterr().out


@pytest.mark.parametrize("wrong, words", [
    (loss_model_sees_x0, "the model was given x0"),
    (loss_no_square_roots, "forgot the square roots"),
    (loss_alphas_not_cumprod, "alphas_cumprod"),
    (loss_target_x0, "compared the output with x0"),
    (loss_sum, "summed the squared errors"),
    (loss_l1, "absolute errors (L1)"),
    (loss_item, "no gradient"),
    (loss_per_element, "one error per number"),
    (loss_float_time, "integer steps"),
    (loss_t_plus_one, "You passed t + 1"),
    (loss_no_model, "never called model"),
    (loss_broadcast_1d, "images"),
    (loss_swapped, "swapped the coefficients"),
    (loss_noise_variance, "standard deviation sqrt(1 − ᾱ_t), not the variance"),
    (loss_cumprod_prev, "alphas_cumprod_prev"),
    (loss_one_step_beta, "one-step formula"),
    (loss_double_root, "square root twice"),
    (loss_own_noise, "drew your own noise"),
])
def test_check_loss_catches_typical_mistakes(wrong, words, capsys):
    assert not exercises.check_loss(wrong)
    out = capsys.readouterr().out
    assert "not yet" in out or "raised" in out
    assert words in out, out


# ---------------------------------------------------------------- check_predict_x0_loss
def x0_loss_reference(d, model, x0, t, noise):
    return F.mse_loss(model(_x_t(d, x0, t, noise), t), x0)


def x0_loss_target_x_t(d, model, x0, t, noise):
    x_t = _x_t(d, x0, t, noise)
    return F.mse_loss(model(x_t, t), x_t)


def x0_loss_per_example_sum(d, model, x0, t, noise):
    return (model(_x_t(d, x0, t, noise), t) - x0).square().flatten(1).sum(1).mean()


def x0_loss_rmse(d, model, x0, t, noise):
    return F.mse_loss(model(_x_t(d, x0, t, noise), t), x0).sqrt()


def test_check_predict_x0_loss_accepts_the_reference(capsys):
    assert exercises.check_predict_x0_loss(x0_loss_reference)
    assert exercises.check_predict_x0_loss(lambda d, m, x0, t, e: d.loss(m, x0, target="x0", t=t, noise=e))
    assert "correct" in capsys.readouterr().out


@pytest.mark.parametrize("wrong, words", [
    (loss_reference, "compared the output with the noise ε; the target here is x0"),
    (x0_loss_target_x_t, "compared the output with x_t"),
    (x0_loss_per_example_sum, "summed over the coordinates"),
    (x0_loss_rmse, "square root"),
    (lambda d, m, x0, t, e: F.mse_loss(m(x0, t), x0), "the model was given x0"),
])
def test_check_predict_x0_loss_catches_typical_mistakes(wrong, words, capsys):
    assert not exercises.check_predict_x0_loss(wrong)
    out = capsys.readouterr().out
    assert words in out, out


# ---------------------------------------------------------------- check_training_step
def step_reference(model, optimizer, loss_fn, batch):
    optimizer.zero_grad()
    loss = loss_fn(model, batch)
    loss.backward()
    optimizer.step()
    return loss.item()


def step_no_zero_grad(model, optimizer, loss_fn, batch):
    loss = loss_fn(model, batch)
    loss.backward()
    optimizer.step()
    return loss.item()


def step_before_backward(model, optimizer, loss_fn, batch):
    optimizer.zero_grad()
    loss = loss_fn(model, batch)
    optimizer.step()
    loss.backward()
    return loss.item()


def step_returns_tensor(model, optimizer, loss_fn, batch):
    optimizer.zero_grad()
    loss = loss_fn(model, batch)
    loss.backward()
    optimizer.step()
    return loss


def step_returns_loss_after_update(model, optimizer, loss_fn, batch):
    optimizer.zero_grad()
    loss_fn(model, batch).backward()
    optimizer.step()
    return loss_fn(model, batch).item()


def step_twice(model, optimizer, loss_fn, batch):
    for _ in range(2):
        optimizer.zero_grad()
        loss = loss_fn(model, batch)
        loss.backward()
        optimizer.step()
    return loss.item()


def step_no_step(model, optimizer, loss_fn, batch):
    optimizer.zero_grad()
    loss = loss_fn(model, batch)
    loss.backward()
    return loss.item()


def test_check_training_step_accepts_the_reference(capsys):
    assert exercises.check_training_step(step_reference)
    assert "correct" in capsys.readouterr().out


@pytest.mark.parametrize("wrong, words", [
    (step_no_zero_grad, "optimizer.zero_grad()"),
    (step_before_backward, "call optimizer.step() after loss.backward()"),
    (step_no_step, "parameters did not change"),
    (step_returns_tensor, "loss.item()"),
    (step_returns_loss_after_update, "before the update"),
    (step_twice, "once each"),
])
def test_check_training_step_catches_typical_mistakes(wrong, words, capsys):
    assert not exercises.check_training_step(wrong)
    out = capsys.readouterr().out
    assert words in out, out


def _ordered(*operations, returns=True):
    """A training step doing these operations in this order: the slips below differ only in the order."""
    def step(model, optimizer, loss_fn, batch):
        loss = None
        for operation in operations:
            if operation == "loss":
                loss = loss_fn(model, batch)
            elif operation == "backward":
                loss.backward()
            else:   # "zero_grad", "step" (the optimizer's) or "model.zero_grad"
                getattr(model if operation.startswith("model.") else optimizer, operation.split(".")[-1])()
        return loss.item() if returns else None
    return step


step_zero_grad_between = _ordered("loss", "backward", "zero_grad", "step")
step_returns_nothing = _ordered("zero_grad", "loss", "backward", "step", returns=False)
step_model_zero_grad = _ordered("model.zero_grad", "loss", "backward", "step")   # clears the same gradients


@pytest.mark.parametrize("wrong, words", [
    (step_zero_grad_between, "after loss.backward() and before optimizer.step()"),
    (step_returns_nothing, "returned nothing"),
])
def test_check_training_step_names_more_slips(wrong, words, verdict):
    ok, out = verdict(exercises.check_training_step, wrong)
    assert not ok and words in out, out


def test_check_training_step_accepts_model_zero_grad(verdict):
    ok, out = verdict(exercises.check_training_step, step_model_zero_grad)
    assert ok, out


def step_stub(model, optimizer, loss_fn, batch):
    raise NotImplementedError


@pytest.mark.parametrize("checker, stub", [
    (exercises.check_loss, loss_stub), (exercises.check_predict_x0_loss, loss_stub),
    (exercises.check_training_step, step_stub),
])
def test_a_stub_has_nothing_to_check_yet(checker, stub, verdict):
    """What the reader sees on the page before writing code: no traceback, no false verdict."""
    ok, out = verdict(checker, stub)
    assert not ok and "nothing to check yet" in out and "Traceback" not in out, out
