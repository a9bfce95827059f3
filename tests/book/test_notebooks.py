"""Notebooks listed in _toc.yml are committed with outputs from a run, and start the same way.

nbval (``--nbval-lax``) executes them; these tests check what the website shows.
"""
import re

import pytest

from .conftest import ROOT, awaiting_rerun, code_cells, source, toc_files, toc_notebooks

MAX_BYTES = 5 * 2**20
NOTEBOOKS = toc_notebooks()


def test_toc_notebooks_exist():
    for name in toc_files():
        if name.endswith(".ipynb") or name.split("/")[-1][:2].isdigit():
            path = ROOT / (name if name.endswith(".ipynb") else f"{name}.ipynb")
            assert path.exists(), f"_toc.yml lists the notebook {path.name}, which does not exist"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_notebook_committed_with_outputs_from_a_run(path):
    assert path.stat().st_size < MAX_BYTES, f"{path.name} weighs {path.stat().st_size / 2**20:.1f} MB (limit 5)"
    counts = [cell.get("execution_count") for cell in code_cells(path) if source(cell)]
    assert all(isinstance(n, int) for n in counts), f"{path.name} has unexecuted code cells"
    assert counts == sorted(counts) and len(set(counts)) == len(counts), \
        f"{path.name} was not run top to bottom in one session: execution counts {counts}"
    for cell in code_cells(path):
        errors = [o for o in cell.get("outputs", []) if o.get("output_type") == "error"]
        assert not errors, f"{path.name} has an error output: {errors[0].get('ename')}: {errors[0].get('evalue')}"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_notebook_outputs_come_from_a_full_run(path):
    """The second code cell imports the module and prints run_info(); its stored output says "full".

    (The first cell, the Colab install cell, is checked in tests/test_colab.py.)
    """
    second = code_cells(path)[1]
    assert "import ddpm_lessons as dl" in source(second) and "dl.run_info()" in source(second)
    printed = "".join("".join(o.get("text", "")) for o in second.get("outputs", []))
    assert "device" in printed and "mode: full" in printed, \
        f"{path.name}: the stored outputs must come from a full run (run_info says: {printed!r})"


@pytest.mark.parametrize("path", awaiting_rerun(NOTEBOOKS), ids=lambda p: p.name)
def test_figures_are_stored_at_twice_the_pixels_they_are_shown_at(path):
    """Every figure (PNG) is stored at twice the width it is drawn for, which its metadata gives
    (dl.viz.use_book_style: "retina"): sharp on a phone's and a laptop's high-density screen."""
    import base64
    import io

    from PIL import Image

    for index, cell in enumerate(code_cells(path)):
        for output in cell.get("outputs", []):
            png = output.get("data", {}).get("image/png")
            if png is None:
                continue
            drawn = output.get("metadata", {}).get("image/png", {}).get("width")
            pixels = Image.open(io.BytesIO(base64.b64decode("".join(png)))).width
            assert drawn and abs(pixels - 2 * drawn) <= 2, (
                f"{path.name}, code cell {index}: a figure of {pixels} px shown at {drawn or pixels} px; store figures "
                "at twice their width (dl.viz.use_book_style() in the notebook's first cell, then re-run it)")


def _module_namespace() -> dict:
    """Every ddpm_lessons submodule and public name, to evaluate the notebooks' getsource arguments."""
    import importlib
    import pkgutil

    import ddpm_lessons

    modules = [importlib.import_module(info.name)
               for info in pkgutil.walk_packages(ddpm_lessons.__path__, "ddpm_lessons.")]
    namespace = {"dl": ddpm_lessons}
    for module in modules:
        namespace.setdefault(module.__name__.rsplit(".", 1)[1], module)
    for module in modules:
        for name, value in vars(module).items():
            if not name.startswith("_"):
                namespace.setdefault(name, value)
    return namespace


def listed_text(cell: dict) -> str:
    """The text a cell's stored outputs show: printed streams and the plain-text form of displayed
    objects (``dl.utils.show_source`` stores the exact ``inspect.getsource`` text there)."""
    texts = []
    for output in cell.get("outputs", []):
        if output.get("output_type") == "stream":
            texts.append("".join(output.get("text", "")))
        elif output.get("output_type") in {"display_data", "execute_result"}:
            texts.append("".join(output.get("data", {}).get("text/plain", "")))
    return "\n".join(texts)


LISTING = re.compile(r"(?:inspect\.getsource|show_source)\(([\w.]+)\)")


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_stored_code_listings_match_the_module(path):
    """A cell that shows the module's code, with ``dl.utils.show_source(X)`` (highlighted on the site)
    or ``print(inspect.getsource(X))``, must store today's code, so a module change without a re-run
    of the notebook fails here."""
    import inspect

    namespace = _module_namespace()
    for cell in code_cells(path):
        for expression in LISTING.findall(source(cell)):
            listing = inspect.getsource(eval(expression, namespace))  # a dotted name, from our own notebooks
            assert listing in listed_text(cell), (
                f"{path.name}: the stored listing of {expression} is not the module's current code; "
                "re-run the notebook (CONTRIBUTING.md: regenerate a chapter)"
            )
