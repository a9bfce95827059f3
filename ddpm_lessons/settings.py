"""Run settings shared by every chapter: quick mode, budgets, device, seeding, data root, run info.

Quick mode (``DDPM_LESSONS_QUICK=1``, set by the tests) runs every cell of a notebook with small
budgets, so that one code path serves both a real run and a test run.
"""
from __future__ import annotations

import os
import platform
import random
import time
from pathlib import Path

import numpy as np
import torch

from . import _checks

QUICK_ENV = "DDPM_LESSONS_QUICK"
DATA_ENV = "DDPM_LESSONS_DATA"
OFFLINE_ENV = "DDPM_LESSONS_OFFLINE"
CACHE_ENV = "DDPM_LESSONS_CACHE"


def _flag(name: str) -> bool:
    return os.environ.get(name, "").strip().lower() in {"1", "true", "yes", "on"}


QUICK: bool = _flag(QUICK_ENV)
"""True when ``DDPM_LESSONS_QUICK=1``: notebooks and tests use the small budgets."""

_run_started: float | None = None


def budget(full, quick):
    """The cost knob of a cell: ``full`` on a real run, ``quick`` in quick mode.

    >>> steps = budget(full=20_000, quick=30)
    """
    for name, value in (("full", full), ("quick", quick)):
        _checks.number(value, name, "budget()", 0.0, low_open=True)
    if quick > full:
        raise ValueError(
            f"budget(): the quick value ({quick!r}) must not exceed the full one ({full!r}); "
            "quick mode is the cheap version of the same cell"
        )
    return quick if QUICK else full


def offline() -> bool:
    """True when ``DDPM_LESSONS_OFFLINE=1``: nothing is downloaded."""
    return _flag(OFFLINE_ENV)


def get_device() -> torch.device:
    """The fastest device available: CUDA, then Apple's MPS, then the CPU."""
    if torch.cuda.is_available():
        return torch.device("cuda")
    mps = getattr(torch.backends, "mps", None)
    if mps is not None and mps.is_available():
        return torch.device("mps")
    return torch.device("cpu")


def seed_everything(seed: int = 0) -> None:
    """Seed Python, NumPy and torch (all devices), so a run can be repeated."""
    _checks.positive_int(seed, "seed", "seed_everything()", minimum=0)
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def _user_folder(env: str, name: str) -> Path:
    """``$env`` if set, else ``<XDG cache or ~/.cache>/ddpm-lessons/<name>``."""
    if os.environ.get(env):
        return Path(os.environ[env]).expanduser()
    cache = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(cache) / "ddpm-lessons" / name


def data_root() -> Path:
    """Where datasets live: ``$DDPM_LESSONS_DATA``, else a per-user cache folder."""
    return _user_folder(DATA_ENV, "data")


def cache_dir() -> Path:
    """Where trained helpers are cached (e.g. the FID classifier): ``$DDPM_LESSONS_CACHE``, else a
    per-user cache folder. Kept apart from the data root, which may be a read-only shared folder."""
    return _user_folder(CACHE_ENV, "cache")


def device_name(device: torch.device | None = None) -> str:
    """A readable name of the device, e.g. ``cuda (NVIDIA T4)`` or ``cpu (x86_64, 2 threads)``."""
    device = device or get_device()
    if device.type == "cuda":
        return f"cuda ({torch.cuda.get_device_name(device)})"
    if device.type == "cpu":
        threads = torch.get_num_threads()
        return f"cpu ({platform.processor() or platform.machine()}, {threads} thread{'' if threads == 1 else 's'})"
    return device.type


def data_source() -> str:
    """Where FashionMNIST comes from, in words: "FashionMNIST from $DDPM_LESSONS_DATA" or "... from
    the default cache folder", never the folder's path on the machine that ran the notebook."""
    where = f"${DATA_ENV}" if os.environ.get(DATA_ENV) else "the default cache folder"
    return f"FashionMNIST from {where}"


def data_size() -> str:
    """How many FashionMNIST images the data root holds, and whether they are a subset:
    "800 train + 100 test (a SUBSET of 60,000 + 10,000)"; read from the files' headers."""
    from .data import FULL_SIZES, fashion_mnist_sizes  # data imports settings: import it when called

    train, test = fashion_mnist_sizes()
    if train is None or test is None:
        return "not there (offline: nothing is downloaded)" if offline() else "none yet (downloaded when first used)"
    full = (FULL_SIZES[True], FULL_SIZES[False])
    return f"{train:,} train + {test:,} test" + (
        " (the full dataset)" if (train, test) == full else f" (a SUBSET of {full[0]:,} + {full[1]:,})")


def run_info() -> dict:
    """Print and return what a reader needs to judge a run: date, versions, device (with its thread
    count), mode, the data (their source and size, and whether they are a subset) and offline mode.
    No path of the machine that ran it is printed.

    Also starts the clock that :func:`elapsed` reads, so a notebook can print its own run time.
    """
    global _run_started
    _run_started = time.perf_counter()
    info = {
        "date": time.strftime("%Y-%m-%d %H:%M %Z"),
        "python": platform.python_version(),
        "torch": torch.__version__,
        "device": device_name(),
        "mode": "quick (small budgets, for tests)" if QUICK else "full",
        "data": data_source(),
        "images": data_size(),
        "offline": offline(),
    }
    width = max(map(len, info))
    for key, value in info.items():
        print(f"{key:>{width}}: {value}")
    return info


def elapsed() -> float:
    """Seconds since :func:`run_info` was called (the notebook's run time)."""
    if _run_started is None:
        raise RuntimeError("elapsed(): call run_info() first, at the top of the notebook")
    return time.perf_counter() - _run_started
