"""Colab: every notebook installs the module the same way, and that install works.

A student on Colab runs the first cell of a chapter, which pip-installs the module from the
repository of _config.yml (``ddpm-lessons @ git+<repository url>``), keeping Colab's own torch.
These tests check that the cell is the same everywhere and names the right package and repository,
and that installing from a git URL of this repository (as pip on Colab does) gives a module that
imports, with every file of the working tree's ``ddpm_lessons``.
"""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import sysconfig
from pathlib import Path

import pytest
from packaging.requirements import Requirement

from .conftest import ROOT, colab_install_cell, repository_url

try:
    import tomllib
except ModuleNotFoundError:  # Python < 3.11
    tomllib = pytest.importorskip("tomli")

BOOK_NOTEBOOKS = sorted((ROOT / "book").glob("*.ipynb"))


def first_code_cell(path: Path) -> dict:
    cells = json.loads(path.read_text())["cells"]
    return next(cell for cell in cells if cell["cell_type"] == "code")


def cell_text(cell: dict) -> str:
    text = cell["source"]
    return ("".join(text) if isinstance(text, list) else text).rstrip("\n")


def pip_requirement(cell: str) -> Requirement:
    """The requirement that the cell's ``%pip install`` line asks for."""
    line = next(line for line in cell.splitlines() if "%pip install" in line)
    return Requirement(line.split("%pip install", 1)[1].replace("-q", "").strip().strip('"'))


def test_install_cell_names_this_package_and_repository():
    """The shared cell installs the package of pyproject.toml from the repository URL of _config.yml,
    on Colab only (elsewhere the set-up command has installed it)."""
    cell = colab_install_cell()
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    requirement = pip_requirement(cell)
    assert requirement.name == project["name"]
    assert requirement.url == f"git+{repository_url()}"
    assert repository_url().startswith("https://github.com/"), "Colab's launch buttons need a GitHub repository"
    assert 'if "google.colab" in sys.modules:' in cell and "--no-deps" not in cell


@pytest.mark.parametrize("path", BOOK_NOTEBOOKS, ids=lambda p: p.name)
def test_every_notebook_starts_with_the_same_install_cell(path):
    """Every notebook under book/ (listed in the table of contents or not) starts with the cell,
    hidden on the website (tag remove-cell)."""
    cell = first_code_cell(path)
    assert cell_text(cell) == colab_install_cell(), \
        f"{path.name}: the first code cell must be exactly the shared Colab install cell:\n{colab_install_cell()}"
    assert "remove-cell" in cell.get("metadata", {}).get("tags", []), f"{path.name}: tag the install cell remove-cell"


# ------------------------------------------------------------------------------ install from git
def _working_tree_repository(destination: Path) -> Path:
    """A one-commit git repository holding the working tree as git sees it (tracked and untracked
    files, minus ignored ones), so uncommitted changes are tested too, whatever HEAD is."""
    listed = subprocess.run(["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
                            cwd=ROOT, capture_output=True, text=True)
    if listed.returncode != 0:
        pytest.skip(f"{ROOT} is not a git checkout: {listed.stderr.strip()}")
    for name in filter(None, listed.stdout.split("\0")):
        source = ROOT / name
        if source.is_file():  # deleted but not yet committed files are listed too
            (destination / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source, destination / name)
    git = ["git", "-c", "user.name=ddpm-lessons tests", "-c", "user.email=tests@invalid",
           "-c", "commit.gpgsign=false", "-c", "init.defaultBranch=main"]
    for command in (["init", "-q"], ["add", "-A"], ["commit", "-q", "-m", "working tree"]):
        subprocess.run(git + command, cwd=destination, check=True, capture_output=True)
    return destination


def _has_build_backend() -> bool:
    """True when this environment has the build backend that pyproject.toml asks for."""
    from importlib.metadata import PackageNotFoundError, version

    build = tomllib.loads((ROOT / "pyproject.toml").read_text())["build-system"]
    try:
        return all(Requirement(r).specifier.contains(version(Requirement(r).name)) for r in build["requires"])
    except PackageNotFoundError:
        return False


def test_pip_installs_the_module_from_a_git_url(tmp_path):
    """`pip install --no-deps git+file://…` into a fresh virtual environment gives a
    module that imports (with torch from this environment, as Colab's torch is reused), from the
    new environment, with every module file of the working tree."""
    if shutil.which("git") is None:
        pytest.skip("git is not installed: pip needs it for git+ URLs (apt-get install -y git)")
    repository = _working_tree_repository(tmp_path / "repository")

    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True)
    new_python = venv / "bin" / "python"
    new_site = Path(subprocess.run([str(new_python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                                   capture_output=True, text=True, check=True).stdout.strip())
    # torch, numpy, setuptools… come from this environment (as Colab's own torch is reused); an
    # editable install of ddpm_lessons here is not visible there (its .pth hook is not processed)
    (new_site / "_parent_environment.pth").write_text(
        "\n".join(dict.fromkeys([sysconfig.get_paths()["purelib"], sysconfig.get_paths()["platlib"]])) + "\n")

    # a bare VCS URL: pip < 24 rejects "name @ git+file:///…" (a file URL without a host) in PEP 508 form
    requirement = f"git+{repository.as_uri()}"
    # offline (no index, no build isolation) with this environment's setuptools when it can build
    # the project; otherwise pip fetches the build backend from the package index, as Colab does
    offline = ["--no-index", "--no-build-isolation"] if _has_build_backend() else []
    install = subprocess.run([sys.executable, "-m", "pip", "--python", str(new_python), "install", "-q",
                              "--no-deps", *offline, requirement],
                             capture_output=True, text=True, cwd=tmp_path)
    assert install.returncode == 0, f"pip install {requirement!r} failed:\n{install.stdout}\n{install.stderr}"

    probe = (
        "import importlib, json, pkgutil, ddpm_lessons\n"
        "names = [m.name for m in pkgutil.walk_packages(ddpm_lessons.__path__, 'ddpm_lessons.')]\n"
        "for name in names: importlib.import_module(name)\n"
        "print(json.dumps({'file': ddpm_lessons.__file__, 'modules': names}))\n"
    )
    environment = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "PYTHONHOME")}
    result = subprocess.run([str(new_python), "-c", probe], capture_output=True, text=True,
                            cwd=tmp_path, env=environment)
    assert result.returncode == 0, f"the installed module does not import:\n{result.stderr[-3000:]}"
    imported = json.loads(result.stdout.strip().splitlines()[-1])
    installed = Path(imported["file"]).parent
    assert installed == new_site / "ddpm_lessons", f"imported from {installed}, not from the new environment"

    def module_files(folder: Path) -> set[str]:
        return {str(p.relative_to(folder)) for p in folder.rglob("*.py") if "__pycache__" not in p.parts}

    missing = module_files(ROOT / "ddpm_lessons") - module_files(installed)
    assert not missing, f"the git install lacks {sorted(missing)}: check [tool.setuptools] in pyproject.toml"
