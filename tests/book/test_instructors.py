"""The instructors' page (book/instructors.md) stays in step with the book.

Its table must list every exercise of every chapter once, with a chapter, objective, difficulty,
time and checker; every checker it names must exist in ``ddpm_lessons.exercises`` and be shown in
that exercise's chapter; every checker of the module must be listed. The Colab links and the recipe
for a site without solutions are checked by running them.
"""
from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import nbformat

import ddpm_lessons as dl
from .conftest import ROOT, colab_link, toc_files

PAGE = ROOT / "book" / "instructors.md"
DIRECTIVE = re.compile(r"^(?:`{3,}|:{3,})\{exercise(?:-start)?\}[ \t]*(?P<title>.*)$")
OPTION = re.compile(r"^:(?P<name>[\w-]+):[ \t]*(?P<value>.*)$")
CHECKER = re.compile(r"\bcheck_\w+")
DIFFICULTIES = {"★", "★★", "★★★"}


def chapter_of(path: Path) -> str:
    """'3' for book/03_reverse_posterior.ipynb, 'Appendix' for book/appendix_*.ipynb."""
    prefix = path.stem.split("_")[0]
    return str(int(prefix)) if prefix.isdigit() else prefix.capitalize()


def book_texts() -> dict[Path, str]:
    """The Markdown of every document under book/ (a notebook's Markdown cells, joined)."""
    texts = {}
    for path in sorted((ROOT / "book").glob("*")):
        if path.suffix == ".ipynb":
            cells = json.loads(path.read_text())["cells"]
            texts[path] = "\n\n".join("".join(c["source"]) if isinstance(c["source"], list) else c["source"]
                                      for c in cells if c["cell_type"] == "markdown")
        elif path.suffix == ".md" and path != PAGE:
            texts[path] = path.read_text()
    return texts


def exercises() -> list[dict]:
    """Every {exercise} directive in the book: file, title, label (None when it has none)."""
    found = []
    for path, text in book_texts().items():
        lines = text.splitlines()
        for number, line in enumerate(lines):
            match = DIRECTIVE.match(line.strip())
            if not match:
                continue
            options = {}
            for option_line in lines[number + 1:]:
                option = OPTION.match(option_line.strip())
                if not option:
                    break
                options[option["name"]] = option["value"].strip()
            found.append({"path": path, "title": match["title"].strip(), "label": options.get("label")})
    return found


def table_rows() -> list[dict]:
    """The rows of the exercise table (first cell {ref}`label`, a link to the exercise): label,
    chapter, objective, difficulty, time, checkers."""
    rows = []
    for line in PAGE.read_text().splitlines():
        cells = [cell.strip() for cell in line.strip().strip("|").split("|")]
        label = re.fullmatch(r"\{ref\}`([^`]+)`", cells[0])
        if label and len(cells) == 6:
            _, chapter, objective, difficulty, minutes, checker = cells
            rows.append({"label": label[1], "chapter": chapter, "objective": objective,
                         "difficulty": difficulty, "time": minutes, "checkers": CHECKER.findall(checker),
                         "checker_cell": checker})
    return rows


def module_checkers() -> set[str]:
    return {name for name in dir(dl.exercises) if name.startswith("check_") and callable(getattr(dl.exercises, name))}


def test_every_exercise_has_a_unique_label():
    found = exercises()
    for exercise in found:
        assert exercise["label"], f"{exercise['path'].name}: exercise '{exercise['title']}' has no :label:"
    labels = [exercise["label"] for exercise in found]
    duplicates = {label for label in labels if labels.count(label) > 1}
    assert not duplicates, f"exercise labels used twice: {sorted(duplicates)}"


def test_table_lists_every_exercise_once():
    rows = table_rows()
    listed = [row["label"] for row in rows]
    assert len(listed) == len(set(listed)), f"book/instructors.md lists an exercise twice: {listed}"
    in_book = {exercise["label"]: exercise for exercise in exercises() if exercise["label"]}
    missing = [f"{label} ({ex['path'].name}: {ex['title']})" for label, ex in in_book.items() if label not in listed]
    assert not missing, f"add these exercises to the table of book/instructors.md: {missing}"
    stale = sorted(set(listed) - set(in_book))
    assert not stale, f"book/instructors.md lists exercises that are not in the book: {stale}"


def test_table_rows_are_complete_and_in_the_right_chapter():
    in_book = {exercise["label"]: exercise for exercise in exercises() if exercise["label"]}
    for row in table_rows():
        what = f"book/instructors.md, row {row['label']}"
        if row["label"] in in_book:
            expected = chapter_of(in_book[row["label"]]["path"])
            assert row["chapter"] == expected, f"{what}: chapter '{row['chapter']}', but the exercise is in {expected}"
        assert len(row["objective"].split()) >= 3, f"{what}: write the learning objective"
        assert row["difficulty"] in DIFFICULTIES, f"{what}: difficulty must be one of {sorted(DIFFICULTIES)}"
        assert re.fullmatch(r"\d+(-\d+)? min", row["time"]), f"{what}: time like '20 min', got '{row['time']}'"
        assert row["checkers"] or row["checker_cell"] == "(in words)", \
            f"{what}: name the checker (`check_…`) or write '(in words)'"


def test_checkers_in_the_table_exist_and_every_checker_is_listed():
    in_book = {exercise["label"]: exercise for exercise in exercises() if exercise["label"]}
    texts = book_texts()
    listed = set()
    for row in table_rows():
        for name in row["checkers"]:
            assert name in module_checkers(), f"book/instructors.md names {name}, which is not in dl.exercises"
            exercise = in_book.get(row["label"])
            if exercise:
                notebook = exercise["path"]
                code = "" if notebook.suffix != ".ipynb" else "\n".join(
                    "".join(c["source"]) for c in nbformat.read(notebook, as_version=4).cells)
                assert name in texts[notebook] + code, f"{notebook.name} does not show {name} to the students"
            listed.add(name)
    unlisted = sorted(module_checkers() - listed)
    assert not unlisted, f"checkers missing from the table of book/instructors.md: {unlisted}"


def test_colab_links_open_each_notebook_of_the_book():
    links = set(re.findall(r"[<(](https://colab\.research\.google\.com/[^>)]+)[>)]", PAGE.read_text()))
    expected = {colab_link(f"{name}.ipynb") for name in toc_files() if name.split("/")[-1][:2].isdigit()
                or name.split("/")[-1].startswith("appendix")}
    assert links == expected, f"Colab links: missing {sorted(expected - links)}, stale {sorted(links - expected)}"


def test_recipe_for_a_site_without_solutions(tmp_path):
    """The page's command (tools/student_edition.py), run on a one-chapter book, writes a notebook
    without the solution and without the hidden check of the module's answer, and a site where no
    file holds the solution text; the exercise and the students' own check cell stay."""
    section = PAGE.read_text().split("## A copy of the site without solutions", 1)[1]
    recipe = re.search(r"```bash\n(.*?)```", section, re.S).group(1)

    shutil.copy(ROOT / "_config.yml", tmp_path / "_config.yml")
    shutil.copytree(ROOT / "tools", tmp_path / "tools", ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copytree(ROOT / "book" / "_static", tmp_path / "book" / "_static")
    shutil.copytree(ROOT / "book" / "_ext", tmp_path / "book" / "_ext", ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copy(ROOT / "book" / "references.bib", tmp_path / "book" / "references.bib")
    (tmp_path / "_toc.yml").write_text("format: jb-book\nroot: book/intro\nchapters:\n  - file: book/01_chapter\n")
    (tmp_path / "book" / "intro.md").write_text("# Intro\n\nA test book.\n")
    notebook = nbformat.v4.new_notebook()
    notebook.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    hidden = nbformat.v4.new_code_cell("assert dl.exercises.check_q_sample(REFERENCE_MARKER)")
    hidden.metadata["tags"] = ["remove-cell"]
    notebook.cells = [
        nbformat.v4.new_markdown_cell(
            "# Chapter\n\n```{exercise} Try it\n:label: ch1-try\nEXERCISE-TEXT-MARKER\n```\n\n"
            "````{solution} ch1-try\n:class: dropdown\nSOLUTION-TEXT-MARKER\n\n```python\nSOLUTION-CODE-MARKER\n```\n````\n\n"
            "Text after the solution.\n"),
        nbformat.v4.new_code_cell("dl.exercises.check_q_sample(STUDENT_CHECK_MARKER)"),
        hidden,
    ]
    nbformat.write(notebook, tmp_path / "book" / "01_chapter.ipynb")

    environment = dict(os.environ, PATH=f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}")
    result = subprocess.run(["bash", "-c", "set -e\n" + recipe], cwd=tmp_path, env=environment,
                            capture_output=True, text=True)
    edition = tmp_path / "_build" / "student-edition"
    site = edition / "_build" / "html"
    assert result.returncode == 0 and site.is_dir(), f"the recipe failed:\n{result.stdout[-3000:]}\n{result.stderr[-3000:]}"

    student = (edition / "book" / "01_chapter.ipynb").read_text()
    for kept in ("EXERCISE-TEXT-MARKER", "Text after the solution", "STUDENT_CHECK_MARKER"):
        assert kept in student, f"the student notebook lost {kept}"
    for removed in ("SOLUTION-TEXT-MARKER", "SOLUTION-CODE-MARKER", "REFERENCE_MARKER"):
        assert removed not in student, f"the student notebook still holds {removed}"
    page = (site / "book" / "01_chapter.html").read_text()
    assert "EXERCISE-TEXT-MARKER" in page
    leaks = [str(p.relative_to(site)) for p in site.rglob("*") if p.is_file() and p.suffix not in {".woff", ".png"}
             and (b"SOLUTION-TEXT-MARKER" in p.read_bytes() or b"REFERENCE_MARKER" in p.read_bytes())]
    assert not leaks, f"the solution is still in {leaks}"
    assert "colab.research.google.com" not in page
