"""tools/run_chapter.py, the runner that regenerates a chapter's stored outputs (CONTRIBUTING.md).

It is run here, as the README says, on a tiny notebook that draws progress bars around a figure.
"""
from __future__ import annotations

import importlib.util
import os
import subprocess
import sys

import nbformat
import pytest

from .conftest import ROOT

RUNNER = ROOT / "tools" / "run_chapter.py"


def _runner():
    spec = importlib.util.spec_from_file_location("run_chapter", RUNNER)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _stream(name, text):
    return nbformat.v4.new_output("stream", name=name, text=text)


@pytest.mark.parametrize("text, shown", [
    ("plain\ntext\n", "plain\ntext\n"),
    ("\rbar:  10%| 1/10\rbar:  50%| 5/10\rbar: 100%| 10/10\n", "bar: 100%| 10/10\n"),
    ("long line\rshort", "shortline"),             # a terminal overwrites; it does not erase ...
    ("\rlong line\rshort    ", "short"),            # ... unless the new text pads with spaces, as tqdm does
    ("line one\r\nline two\r\n", "line one\nline two\n"),  # Windows line ends are line ends
])
def test_terminal_text(text, shown):
    assert _runner().terminal_text(text) == shown


def test_tidy_outputs_merges_neighbours_only_and_keeps_the_order():
    runner = _runner()
    figure = nbformat.v4.new_output("display_data", data={"image/png": "iVBOR", "text/plain": "<Figure>"})
    outputs = [_stream("stdout", "summary above\n"), _stream("stdout", "\rtraining: 0%| 0/3"),
               _stream("stdout", "\rtraining: 100%| 3/3\n"), figure, _stream("stdout", "text below the figure\n"),
               _stream("stderr", "a warning\n"), _stream("stdout", "\r")]
    tidied = runner.tidy_outputs(outputs)
    assert [(o["output_type"], o.get("name")) for o in tidied] == [
        ("stream", "stdout"), ("display_data", None), ("stream", "stdout"), ("stream", "stderr")]
    assert tidied[0]["text"] == "summary above\ntraining: 100%| 3/3\n"
    assert tidied[2]["text"] == "text below the figure\n"


TINY_NOTEBOOK = [
    "import os, sys, time\nfrom tqdm import tqdm\nimport matplotlib.pyplot as plt\nimport ddpm_lessons as dl",
    "print('mode', os.environ['DDPM_LESSONS_QUICK'])\n"
    "for _ in tqdm(range(40), desc='training', file=sys.stdout, mininterval=0, miniters=1):\n"
    "    time.sleep(0.002)\n"
    "print('the summary, printed after the bar')\n"
    "plt.plot([0, 1]); plt.show()\n"
    "print('printed after the figure')",
    "for _ in tqdm(range(30), desc='on stderr', mininterval=0, miniters=1):\n    time.sleep(0.002)",
    "dl.utils.show_source(dl.Diffusion.q_sample)",
]


def test_runner_runs_a_notebook_in_full_mode_and_stores_what_a_terminal_shows(tmp_path):
    notebook = nbformat.v4.new_notebook()
    notebook.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    notebook.cells = [nbformat.v4.new_code_cell(code) for code in TINY_NOTEBOOK]
    path = tmp_path / "tiny.ipynb"
    nbformat.write(notebook, path)

    environment = dict(os.environ, PYTHONPATH=str(ROOT), DDPM_LESSONS_QUICK="1", MPLBACKEND="Agg")
    result = subprocess.run([sys.executable, str(RUNNER), str(path)], capture_output=True, text=True,
                            env=environment, timeout=300)
    assert result.returncode == 0, result.stdout + result.stderr
    cells = nbformat.read(path, as_version=4).cells
    assert [cell.execution_count for cell in cells] == [1, 2, 3, 4]

    outputs = cells[1].outputs
    assert [o.output_type for o in outputs] == ["stream", "display_data", "stream"], outputs
    printed = outputs[0].text.splitlines()
    assert printed[0] == "mode 0"  # full mode, whatever the caller's environment says
    assert len(printed) == 3 and printed[1].startswith("training: 100%") and "40/40 [" in printed[1]
    assert printed[2] == "the summary, printed after the bar"
    assert outputs[2].text == "printed after the figure\n"

    stderr = [o for o in cells[2].outputs if o.output_type == "stream"]
    assert len(stderr) == 1 and stderr[0].name == "stderr"
    assert stderr[0].text.count("\n") == 1 and "30/30 [" in stderr[0].text and "\r" not in stderr[0].text

    listing = cells[3].outputs[0]
    assert listing.output_type == "display_data" and listing.data["text/markdown"].startswith("```python\n")
    assert "def q_sample(" in listing.data["text/plain"]


def test_tidy_only_tidies_a_notebook_run_elsewhere_without_running_it(tmp_path):
    notebook = nbformat.v4.new_notebook()
    cell = nbformat.v4.new_code_cell("this would fail if it ran", execution_count=7)
    cell.outputs = [_stream("stderr", f"\rpart 1: {i}/3") for i in range(4)] + [_stream("stderr", "\n")]
    notebook.cells = [cell]
    path = tmp_path / "from_colab.ipynb"
    nbformat.write(notebook, path)
    result = subprocess.run([sys.executable, str(RUNNER), "--tidy-only", str(path)], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    cell = nbformat.read(path, as_version=4).cells[0]
    assert cell.execution_count == 7 and [o.text for o in cell.outputs] == ["part 1: 3/3\n"]


def test_runner_leaves_a_failing_notebook_as_it_was(tmp_path):
    notebook = nbformat.v4.new_notebook()
    notebook.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    notebook.cells = [nbformat.v4.new_code_cell("print('ran')"), nbformat.v4.new_code_cell("1 / 0")]
    path = tmp_path / "failing.ipynb"
    nbformat.write(notebook, path)
    before = path.read_text()
    result = subprocess.run([sys.executable, str(RUNNER), str(path)], capture_output=True, text=True, timeout=300)
    assert result.returncode == 1 and "ZeroDivisionError" in result.stderr
    assert path.read_text() == before
    result = subprocess.run([sys.executable, str(RUNNER), str(tmp_path / "missing.ipynb")], capture_output=True, text=True)
    assert result.returncode == 2 and "not a notebook file" in result.stderr
