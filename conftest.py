"""Test settings: quick mode for every notebook and test, data from the offline subset when present.

At the repository root so that it applies to `pytest book/02_forward_process.ipynb` too.

The environment is set at import time, before any test (or nbval's kernels, which inherit it)
imports ddpm_lessons.
"""
import os
from pathlib import Path

ROOT = Path(__file__).resolve().parent

os.environ["DDPM_LESSONS_QUICK"] = "1"
os.environ.setdefault("MPLBACKEND", "Agg")
_shared = ROOT.parent / "shared" / "datasets"
if "DDPM_LESSONS_DATA" not in os.environ and (_shared / "FashionMNIST").exists():
    os.environ["DDPM_LESSONS_DATA"] = str(_shared)
    os.environ.setdefault("DDPM_LESSONS_OFFLINE", "1")
