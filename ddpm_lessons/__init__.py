"""ddpm_lessons: the tested companion module of the ddpm-lessons book.

Every chapter does ``import ddpm_lessons as dl``. One small file per concept; each public function's
docstring names the equation and the chapter that derives it.
"""
from . import data, settings, viz
from .settings import QUICK, budget, data_root, elapsed, get_device, run_info, seed_everything

__version__ = "0.1.0"
