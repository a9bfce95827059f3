"""ddpm_lessons: the tested companion module of the ddpm-lessons book.

Every chapter does ``import ddpm_lessons as dl``. One small file per concept; each public function's
docstring names the equation and the chapter that derives it.
"""
import warnings

with warnings.catch_warnings():
    # Without ipywidgets, tqdm.auto falls back to text progress bars (what the website shows); its
    # warning saying so would otherwise clutter the first output of every chapter.
    warnings.filterwarnings("ignore", message="IProgress not found")
    import tqdm.auto  # noqa: F401

from . import (corruption, data, diffusion, exercises, metrics, models, naive, oracle, schedules, settings,
               training, viz, vlb)
from .diffusion import Diffusion
from .settings import QUICK, budget, cache_dir, data_root, elapsed, get_device, run_info, seed_everything

__version__ = "0.1.0"
