"""ddpm_lessons: the tested companion module of the ddpm-lessons book.

Every chapter does ``import ddpm_lessons as dl``. One small file per concept; each public function's
docstring names the equation and the chapter that derives it.
"""
from . import (checkpoints, corruption, data, ddim, diffusion, exercises, fid, metrics, models, naive, oracle,
               sampling, schedules, settings, training, utils, viz, vlb, zoo)
from .diffusion import Diffusion
from .settings import QUICK, budget, cache_dir, data_root, elapsed, get_device, run_info, seed_everything

__version__ = "0.1.0"

__all__ = [
    # one module per concept
    "checkpoints", "corruption", "data", "ddim", "diffusion", "exercises", "fid", "metrics", "models", "naive",
    "oracle", "sampling", "schedules", "settings", "training", "utils", "viz", "vlb", "zoo",
    # what every chapter uses
    "Diffusion", "QUICK", "budget", "cache_dir", "data_root", "elapsed", "get_device", "run_info",
    "seed_everything",
]
