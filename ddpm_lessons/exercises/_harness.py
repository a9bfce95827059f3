"""The harness every checker shares: the mistake, the runner, the comparison helpers.

A checker calls the student's function on random and edge-case inputs, compares with the module's
reference, and prints either a short success message or the *first* thing that is wrong, in words
(what was expected, where it differs, by how much). Known wrong formulas are kept next to their
explanations (:func:`known_mistake`), so that a student who makes a common slip is told which.
"""
from __future__ import annotations

import traceback

import torch


class ExerciseMistake(Exception):
    """Raised inside a checker to stop at the first mistake; its message is shown to the student."""


class NotYetWritten(ExerciseMistake):
    """The student's function is still the stub of the exercise (it raises NotImplementedError)."""


def run_checker(name: str, body) -> bool:
    """Run ``body()`` for the checker ``name`` (its function name, e.g. "check_q_sample").

    Prints success or the first mistake in plain words, and returns True or False.
    """
    try:
        body()
    except (NotYetWritten, NotImplementedError):
        print(f"… {name}: nothing to check yet. Replace `raise NotImplementedError` with your code, "
              "then run the cell again.")
        return False
    except ExerciseMistake as mistake:
        print(f"✗ {name}: not yet. {mistake}")
        return False
    except Exception as error:  # the student's code crashed: show where, briefly
        frames = traceback.extract_tb(error.__traceback__)
        where = f" (line {frames[-1].lineno} of {frames[-1].name})" if frames else ""
        print(f"✗ {name}: your function raised {type(error).__name__}: {error}{where}")
        return False
    print(f"✓ {name}: correct. Well done!")
    return True


def call(function, *args, what: str, **kwargs):
    """Call the student's function; a crash becomes a mistake that says with which inputs."""
    try:
        return function(*args, **kwargs)
    except ExerciseMistake:
        raise
    except NotImplementedError as error:
        raise NotYetWritten(str(error)) from error
    except Exception as error:
        raise ExerciseMistake(f"calling it {what} raised {type(error).__name__}: {error}") from error


def expect_tensor(value, expected: torch.Tensor, what: str, atol: float = 1e-5, rtol: float = 1e-4) -> None:
    """Compare the student's tensor with the reference; explain the first difference."""
    if not torch.is_tensor(value):
        raise ExerciseMistake(f"{what}: expected a torch.Tensor, got {type(value).__name__}.")
    if tuple(value.shape) != tuple(expected.shape):
        raise ExerciseMistake(f"{what}: expected shape {tuple(expected.shape)}, got {tuple(value.shape)}.")
    if not value.is_floating_point() and expected.is_floating_point():
        raise ExerciseMistake(f"{what}: expected a floating-point tensor, got {value.dtype}.")
    value, expected = value.detach().double().cpu(), expected.detach().double().cpu()
    if not torch.isfinite(value).all():
        raise ExerciseMistake(f"{what}: your result contains NaN or infinity.")
    difference = (value - expected).abs()
    if not torch.allclose(value, expected, atol=atol, rtol=rtol):
        raise ExerciseMistake(
            f"{what}: your result differs from the expected one by up to {difference.max().item():.3g} "
            f"(mean {expected.mean().item():.4g} expected, yours {value.mean().item():.4g})."
        )


def known_mistake(value, variants: dict, atol: float = 1e-5) -> str | None:
    """The explanation of the first known wrong formula that ``value`` matches, or None."""
    if not torch.is_tensor(value):
        return None
    for explanation, wrong in variants.items():
        if wrong is not None and tuple(value.shape) == tuple(wrong.shape) and \
                torch.allclose(value.detach().double().cpu(), wrong.double(), atol=atol, rtol=1e-4):
            return explanation
    return None


def first_difference(value, expected, t) -> str:
    """Where a batch result first differs: the example, its step t and the size of the difference."""
    value, expected = value.detach().double().cpu(), expected.double()
    per_example = (value - expected).abs().reshape(len(expected), -1).amax(1)
    i = int(per_example.argmax())
    return f"example {i} (t = {int(t[i])}) differs by {per_example[i].item():.3g}"
