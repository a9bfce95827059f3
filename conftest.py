"""Test settings: quick mode for every notebook and test, data from the offline subset when present.

At the repository root so that it applies to `pytest book/02_forward_process.ipynb` too.

The environment is set at import time, before any test (or nbval's kernels, which inherit it)
imports ddpm_lessons.
"""
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent

os.environ["DDPM_LESSONS_QUICK"] = "1"
os.environ.setdefault("MPLBACKEND", "Agg")
_shared = ROOT.parent / "shared" / "datasets"
if "DDPM_LESSONS_DATA" not in os.environ and (_shared / "FashionMNIST").exists():
    os.environ["DDPM_LESSONS_DATA"] = str(_shared)
    os.environ.setdefault("DDPM_LESSONS_OFFLINE", "1")


@pytest.fixture(scope="session")
def built_site(tmp_path_factory):
    """The book built once per test session with warnings as errors (-W); yields the html folder."""
    out = tmp_path_factory.mktemp("site")
    jupyter_book = Path(sys.executable).with_name("jupyter-book")
    command = [str(jupyter_book) if jupyter_book.exists() else "jupyter-book",
               "build", str(ROOT), "--path-output", str(out), "-W", "-n", "--keep-going"]
    result = subprocess.run(command, capture_output=True, text=True, cwd=ROOT)
    if result.returncode != 0:
        pytest.fail(f"jupyter-book build -W failed:\n{result.stdout[-6000:]}\n{result.stderr[-4000:]}")
    return out / "_build" / "html"
