"""Write the student edition of the book: its notebooks without solutions, and a website without them.

    python tools/student_edition.py --out _build/student-edition --build

Written under ``--out``: ``_config.yml``, ``_toc.yml`` and ``book/`` (pages, notebooks with their
stored outputs, bibliography, the site's CSS), from which ``--build`` makes the website
(``<out>/_build/html``). Two things are left out of every notebook and page:

- the solutions: every ``{solution}`` block (fenced with backticks or colons, options included,
  code blocks nested inside it too) and every ``{solution-start}`` ... ``{solution-end}`` pair;
- the hidden cells that check the module's own answer: code cells tagged ``remove-cell`` that call
  a ``dl.exercises.check_*`` function (the page never shows them, but the notebook has them).

Everything else stays: the exercises, the cells where students check their answer, the Colab
install cell, the outputs. The copy's configuration hides solutions once more (sphinx-exercise's
``hide_solutions``) and has Colab buttons only with ``--repository-url``, the repository where you
publish the student notebooks: without it Colab would open the book's own notebooks, solutions
included. book/instructors.md documents this; tests/book/test_instructors.py runs it.
"""
from __future__ import annotations

import argparse
import json
import re
import shutil
import subprocess
import sys
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]
OPENING = re.compile(r"^ {0,3}(?P<fence>`{3,}|:{3,})\{(?P<name>[\w-]+)\}")
CHECKER_CALL = re.compile(r"\bcheck_\w+\s*\(")
MODULE_ANSWER = re.compile(r"\bcheck_\w+\s*\(\s*dl\.")
SKIPPED = {".ipynb_checkpoints", "_build", "__pycache__"}
MARKER = ".student-edition"


def _closes(line: str, fence: str) -> bool:
    """Whether ``line`` closes a block opened by ``fence`` (same character, at least as long)."""
    stripped = line.strip()
    return len(stripped) >= len(fence) and set(stripped) == {fence[0]}


def remove_solutions(text: str) -> tuple[str, int]:
    """``text`` (MyST Markdown) without its solution blocks, and how many were removed."""
    lines, kept, removed = text.split("\n"), [], 0
    index = 0
    while index < len(lines):
        opening = OPENING.match(lines[index])
        if not opening or opening["name"] not in {"solution", "solution-start"}:
            kept.append(lines[index])
            index += 1
            continue
        removed += 1
        # skip to the end of this block; for solution-start, on to the end of the solution-end block
        until = "solution" if opening["name"] == "solution" else "solution-end"
        fence, name = opening["fence"], opening["name"]
        index += 1
        while index < len(lines):
            line = lines[index]
            index += 1
            if name != until:
                end = OPENING.match(line)
                if end and end["name"] == until:
                    fence, name = end["fence"], until
                    if _closes(line[line.index("}") + 1:], fence):  # ```{solution-end}``` on one line
                        break
                continue
            if _closes(line, fence):
                break
        if kept and not kept[-1].strip() and index < len(lines) and not lines[index].strip():
            index += 1  # no double blank line where the block was
    return "\n".join(kept), removed


def is_reference_check(cell: dict) -> bool:
    """A hidden code cell that checks the module's own answer (tagged remove-cell, calls check_*)."""
    source = "".join(cell.get("source", ""))
    tags = cell.get("metadata", {}).get("tags", [])
    return cell.get("cell_type") == "code" and "remove-cell" in tags and bool(CHECKER_CALL.search(source))


def student_notebook(notebook: dict) -> tuple[dict, dict]:
    """The notebook without solutions and hidden reference checks, and a report: how many of each
    were removed, and the indices (in the result) of visible cells that still pass a module object
    to a checker (``check_x(dl.…)``: the page shows the module's answer there)."""
    cells, report = [], {"solutions": 0, "hidden checks": 0, "visible answers": []}
    for cell in notebook["cells"]:
        if is_reference_check(cell):
            report["hidden checks"] += 1
            continue
        if cell["cell_type"] == "markdown":
            text, count = remove_solutions("".join(cell["source"]))
            if count:
                report["solutions"] += count
                cell = dict(cell, source=text)
        elif MODULE_ANSWER.search("".join(cell.get("source", ""))):
            report["visible answers"].append(len(cells))
        cells.append(cell)
    return dict(notebook, cells=cells), report


def student_config(config: dict, repository_url: str | None) -> dict:
    """The book's _config.yml for the student edition."""
    config = dict(config, title=f"{config.get('title', 'The book')} (student edition)")
    sphinx = dict(config.get("sphinx", {}))
    sphinx["config"] = dict(sphinx.get("config", {}), hide_solutions=True)
    config["sphinx"] = sphinx
    if repository_url:
        config["repository"] = dict(config.get("repository", {}), url=repository_url)
    else:
        config["launch_buttons"] = {}  # Colab would open the book's notebooks, solutions included
    return config


def write_edition(out: Path, root: Path = ROOT, repository_url: str | None = None) -> dict:
    """Write the student edition of the book at ``root`` into ``out``; what was removed from each
    notebook and page (see :func:`student_notebook`)."""
    marker = out / MARKER
    if out.exists() and any(out.iterdir()) and not marker.exists():
        raise ValueError(f"--out {out}: the folder exists and is not a student edition; choose a new "
                         "folder, e.g. _build/student-edition (an old edition there is replaced)")
    if out.exists():
        shutil.rmtree(out)
    out.mkdir(parents=True)
    marker.write_text("written by tools/student_edition.py; replaced by its next run\n")
    config = yaml.safe_load((root / "_config.yml").read_text())
    (out / "_config.yml").write_text(yaml.safe_dump(student_config(config, repository_url), sort_keys=False,
                                                    allow_unicode=True))
    shutil.copy(root / "_toc.yml", out / "_toc.yml")
    report = {}
    for path in sorted((root / "book").rglob("*")):
        relative = path.relative_to(root)
        if path.is_dir() or SKIPPED & set(relative.parts):
            continue
        target = out / relative
        target.parent.mkdir(parents=True, exist_ok=True)
        if path.suffix == ".ipynb":
            notebook, report[str(relative)] = student_notebook(json.loads(path.read_text()))
            target.write_text(json.dumps(notebook, indent=1, ensure_ascii=False) + "\n")
        elif path.suffix == ".md":
            text, solutions = remove_solutions(path.read_text())
            report[str(relative)] = {"solutions": solutions, "hidden checks": 0, "visible answers": []}
            target.write_text(text)
        else:
            shutil.copy(path, target)
    leaks = [str(p.relative_to(out)) for p in (out / "book").rglob("*") if p.suffix in {".md", ".ipynb"}
             and _has_solution(p)]
    if leaks:
        raise RuntimeError(f"a solution block was not recognised in {leaks}; remove it by hand and report it")
    return report


def _has_solution(path: Path) -> bool:
    """Whether a written page or notebook still opens a solution block on some line."""
    if path.suffix == ".ipynb":
        cells = json.loads(path.read_text())["cells"]
        lines = [line for cell in cells if cell["cell_type"] == "markdown"
                 for line in "".join(cell["source"]).split("\n")]
    else:
        lines = path.read_text().split("\n")
    return any((m := OPENING.match(line)) and m["name"] in {"solution", "solution-start"} for line in lines)


def build(out: Path) -> Path:
    """Build the student edition's website; the folder of its html."""
    jupyter_book = Path(sys.executable).with_name("jupyter-book")
    command = [str(jupyter_book) if jupyter_book.exists() else "jupyter-book", "build", str(out)]
    subprocess.run(command, check=True)
    return out / "_build" / "html"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, default=Path("_build/student-edition"),
                        help="the folder to write (replaced if it exists); default _build/student-edition")
    parser.add_argument("--build", action="store_true", help="also build its website into OUT/_build/html")
    parser.add_argument("--repository-url", help="the repository where you publish the student notebooks "
                        "(for the Colab buttons); without it the site has no Colab buttons")
    args = parser.parse_args(argv)
    report = write_edition(args.out, repository_url=args.repository_url)
    for name, removed in report.items():
        if removed["solutions"] or removed["hidden checks"]:
            print(f"{name}: removed {removed['solutions']} solution(s) and {removed['hidden checks']} hidden "
                  "check(s) of the module's answers")
        if removed["visible answers"]:
            print(f"warning: {name}: cell(s) {removed['visible answers']} pass the module's own answer to a "
                  "checker on the page; show a stub there and check the module's answer in a hidden cell "
                  "(tag remove-cell)", file=sys.stderr)
    print(f"student edition written to {args.out}")
    if args.build:
        print(f"website: {build(args.out)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
