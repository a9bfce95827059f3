"""tools/student_edition.py: the book without solutions (book/instructors.md documents it; its
command is run on a small book, site included, by test_instructors.py)."""
from __future__ import annotations

import importlib.util
import json

import pytest
import yaml

from .conftest import ROOT, code_cells, colab_install_cell, source, toc_notebooks


def _tool():
    spec = importlib.util.spec_from_file_location("student_edition", ROOT / "tools" / "student_edition.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


EXERCISE = "```{exercise} Try it\n:label: ex\nDo it.\n```\n"


@pytest.mark.parametrize("solution", [
    "```{solution} ex\n:class: dropdown\nThe answer.\n```\n",
    "````{solution} ex\n:class: dropdown\nThe answer:\n\n```python\nanswer = 42\n```\n\nSee?\n````\n",
    ":::{solution} ex\n:class: dropdown\nThe answer.\n:::\n",
    "```{solution-start} ex\n:class: dropdown\n```\nThe answer:\n```python\nanswer = 42\n```\n```{solution-end}\n```\n",
])
def test_remove_solutions_keeps_the_exercise_and_the_text_around(solution):
    text = f"Before.\n\n{EXERCISE}\n{solution}\nAfter.\n"
    cleaned, removed = _tool().remove_solutions(text)
    assert removed == 1
    assert cleaned == f"Before.\n\n{EXERCISE}\nAfter.\n"


def test_remove_solutions_leaves_text_without_solutions_alone():
    text = f"# Title\n\n{EXERCISE}\nA `{{solution}}` mentioned in prose, and code:\n\n```python\nx = 1\n```\n"
    assert _tool().remove_solutions(text) == (text, 0)


def _cell(code, tags=()):
    return {"cell_type": "code", "source": code, "metadata": {"tags": list(tags)}, "outputs": []}


def test_hidden_reference_checks_are_recognised():
    tool = _tool()
    assert tool.is_reference_check(_cell("assert dl.exercises.check_q_sample(dl.Diffusion.q_sample)", ["remove-cell"]))
    assert not tool.is_reference_check(_cell("dl.exercises.check_q_sample(q_sample)"))  # the students' own check
    assert not tool.is_reference_check(_cell(colab_install_cell(), ["remove-cell"]))      # the Colab install cell


def test_student_notebook_reports_visible_module_answers():
    notebook = {"cells": [_cell("dl.exercises.check_corrupt(dl.corruption.corrupt)"),
                          _cell("dl.exercises.check_corrupt(my_corrupt)")]}
    _, report = _tool().student_notebook(notebook)
    assert report == {"solutions": 0, "hidden checks": 0, "visible answers": [0]}


def _exercises(notebook) -> int:
    return sum("".join(cell["source"]).count("{exercise}") for cell in notebook["cells"])


def test_edition_of_the_book(tmp_path):
    """Every notebook of the book loses its solutions and hidden checks, and keeps its exercises, its
    install cell and its other cells; the configuration hides solutions and drops the Colab buttons."""
    tool = _tool()
    out = tmp_path / "edition"
    report = tool.write_edition(out)
    for path in toc_notebooks():
        relative = path.relative_to(ROOT)
        written = out / relative
        original, student = json.loads(path.read_text()), json.loads(written.read_text())
        removed = report[str(relative)]
        assert not tool._has_solution(written)
        assert len(student["cells"]) == len(original["cells"]) - removed["hidden checks"]
        assert _exercises(student) == _exercises(original), f"{relative}: an exercise was removed"
        assert source(code_cells(written)[0]) == colab_install_cell()
    assert (out / "book" / "references.bib").is_file() and (out / "book" / "_static" / "book.css").is_file()
    config = yaml.safe_load((out / "_config.yml").read_text())
    assert config["sphinx"]["config"]["hide_solutions"] is True and config["launch_buttons"] == {}
    assert config["title"].endswith("(student edition)")

    tool.write_edition(out, repository_url="https://github.com/someone/students")  # replaces the old edition
    config = yaml.safe_load((out / "_config.yml").read_text())
    assert config["repository"]["url"] == "https://github.com/someone/students" and config["launch_buttons"]


def test_edition_refuses_a_folder_that_is_not_one(tmp_path):
    (tmp_path / "notes.txt").write_text("mine")
    with pytest.raises(ValueError, match="not a student edition"):
        _tool().write_edition(tmp_path)
    assert (tmp_path / "notes.txt").read_text() == "mine"
