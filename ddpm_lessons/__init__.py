"""ddpm_lessons: the tested companion module of the ddpm-lessons book.

Every chapter does ``import ddpm_lessons as dl``. One small file per concept; each public function's
docstring names the equation and the chapter that derives it.
"""
from . import _alloc, _checks

_alloc.keep_freed_memory()  # reuse freed activation buffers (glibc): a large speed-up on CPUs, see _alloc.py
_checks.format_book_warnings()  # "Category: message", without this machine's file paths

from . import (checkpoints, corruption, cuda_graphs, data, ddim, diagrams, diffusion, elbo, exercises, fid, guidance,
               metrics, models, naive, oracle, quality, sampling, schedules, settings, training, utils, viz, vlb, zoo)
from .diffusion import Diffusion
from .settings import QUICK, budget, cache_dir, data_root, elapsed, get_device, run_info, seed_everything

__version__ = "0.1.0"

__all__ = [
    # one module per concept
    "checkpoints", "corruption", "cuda_graphs", "data", "ddim", "diagrams", "diffusion", "elbo", "exercises", "fid",
    "guidance", "metrics", "models", "naive", "oracle", "quality", "sampling", "schedules", "settings", "training", "utils",
    "viz", "vlb", "zoo",
    # what every chapter uses
    "Diffusion", "QUICK", "budget", "cache_dir", "data_root", "elapsed", "get_device", "run_info",
    "seed_everything",
]
