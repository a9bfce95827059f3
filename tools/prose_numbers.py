"""Every number in the prose comes from the run: the check behind tests/book/test_prose_numbers.py.

A number that a page's prose states (a loss, a time, an FID, a ratio, a count) must be one of:

- **from the run**: it appears in an output stored in the same notebook, with the prose's rounding
  ("27" matches an output "27.3"; "77%" an output "0.77" or "77.0%");
- **set by the code**: a literal of one of the notebook's code cells (``steps = dl.budget(full=4000, ...)``
  makes "4000 steps" true);
- **a declared constant**: listed in ``book/numbers.yml`` for that page (or for every page) with the
  reason: a value of the maths, a number quoted from a cited paper, a fact of the data.

So a re-run that changes a result makes the check fail until the prose says the new number. Not
checked, because they are not claims about a result: integers from 0 to 10, years (1950-2030), the
numbers of chapters, equations, sections, tables and algorithms, and everything inside code
(`` `...` `` and code blocks), citations, cross-references and link targets. Numbers in math are
checked like any other.

    python tools/prose_numbers.py                      # every page of the book
    python tools/prose_numbers.py book/05_unet_fashion_mnist.ipynb

prints each number that has no source, with its cell and context, and exits 1 if there is one.
"""
from __future__ import annotations

import argparse
import json
import re
import sys
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]
CONSTANTS_FILE = ROOT / "book" / "numbers.yml"
EVERY_PAGE = "every page"

_SUPERSCRIPT = str.maketrans("⁰¹²³⁴⁵⁶⁷⁸⁹⁻⁺", "0123456789-+")
_MINUS = "-−"
# a number stands alone: no letter, digit, underscore or decimal point glued to its front, no letter or digit to its back
_FRONT, _BACK = r"(?<![\w.])", r"(?![\w])"
_PLAIN = r"\d{1,3}(?:,\d{3})+(?:\.\d+)?|\d+(?:\.\d+)?"
_TIMES = r"\s*(?:\\cdot|\\times|·|×)\s*"
NUMBER = re.compile(
    _FRONT + r"(?P<sign>[" + _MINUS + r"](?=\d))?"
    r"(?:(?P<mantissa>\d+(?:\.\d+)?)" + _TIMES + r"10\^\{?(?P<exp_tex>[" + _MINUS + r"+]?\d+)\}?"   # 4.04\cdot10^{-5}
    r"|(?P<mantissa_u>\d+(?:\.\d+)?)" + _TIMES + r"10(?P<exp_u>[⁻⁺]?[⁰¹²³⁴⁵⁶⁷⁸⁹]+)"                 # 4.04·10⁻⁵
    r"|10\^\{?(?P<exp_only>[" + _MINUS + r"+]?\d+)\}?"                                           # 10^{-4}
    r"|(?P<mantissa_e>\d+(?:\.\d+)?)[eE](?P<exp_e>[" + _MINUS + r"+]?\d+)"                        # 4.04e-05
    r"|(?P<plain>" + _PLAIN + r"))" + _BACK + r"(?P<percent>\s?%)?"
)
_STRUCTURAL = re.compile(
    r"(?:\b(?:chapters?|Chapters?|Algorithms?|algorithms?|eqs?\.|Eqs?\.|equations?|Equations?|sec\.|Sec\.|"
    r"sections?|Sections?|Table|Tables|Fig\.|Figure|Figures|lines?|Lines?|Lemma|Theorem|Proposition|unit|Unit|"
    r"Appendix|step)\s+(?:\d+(?:\.\d+)?(?:,\s*|\s+and\s+|-|–))*)$"
)


@dataclass(frozen=True)
class Number:
    """A number as written: its value, the precision it was written with (half a unit of its last
    digit), whether it is a percentage, and the text."""

    value: Decimal
    quantum: Decimal
    percent: bool
    text: str

    def matches(self, other: "Number") -> bool:
        """Whether ``other`` (an output's number) rounds to this one at this one's precision."""
        for candidate in _as_percent_or_not(other, self.percent):
            if abs(abs(candidate) - abs(self.value)) <= self.quantum / 2 * Decimal("1.000000001"):
                return True
        return False


def _as_percent_or_not(number: Number, percent: bool) -> list[Decimal]:
    if number.percent == percent:
        return [number.value]
    return [number.value * 100] if percent else [number.value / 100]


def _decimal(digits: str, exponent: int = 0) -> tuple[Decimal, Decimal]:
    digits = digits.replace(",", "")
    places = len(digits.split(".")[1]) if "." in digits else 0
    return Decimal(digits).scaleb(exponent), Decimal(1).scaleb(exponent - places)


def numbers_in(text: str) -> list[tuple[Number, int]]:
    """Every number written in ``text``, with its position."""
    found = []
    for match in NUMBER.finditer(text):
        groups = match.groupdict()
        if groups["mantissa"] is not None:
            value, quantum = _decimal(groups["mantissa"], int(groups["exp_tex"].replace("−", "-")))
        elif groups["mantissa_u"] is not None:
            value, quantum = _decimal(groups["mantissa_u"], int(groups["exp_u"].translate(_SUPERSCRIPT)))
        elif groups["exp_only"] is not None:
            value, quantum = _decimal("1", int(groups["exp_only"].replace("−", "-")))
        elif groups["mantissa_e"] is not None:
            value, quantum = _decimal(groups["mantissa_e"], int(groups["exp_e"].replace("−", "-")))
        else:
            value, quantum = _decimal(groups["plain"])
        if groups["sign"]:
            value = -value
        found.append((Number(value, quantum, bool(groups["percent"]), match.group(0).strip()), match.start()))
    return found


# ---------------------------------------------------------------- what the prose says
_FENCE = re.compile(r"^(`{3,}|~{3,})(.*)$")
_CODE_SPAN = re.compile(r"(`+)(?:(?!\1).)+?\1", re.S)
_ROLE = re.compile(r"\{[\w:.-]+\}`[^`]*`")
_LINK_TARGET = re.compile(r"\]\([^)]*\)")
_HTML_COMMENT = re.compile(r"<!--.*?-->", re.S)
_URL = re.compile(r"https?://\S+")


def prose_of(markdown: str) -> str:
    """The prose of a Markdown cell: code blocks, code spans, roles (citations, references), link
    targets, URLs, comments and directive options removed; directive titles and bodies kept."""
    lines, fence = [], None
    for line in markdown.splitlines():
        opened = _FENCE.match(line.strip())
        if fence is not None:                                    # inside a code block
            if opened and opened.group(1)[0] == fence[0] and len(opened.group(1)) >= len(fence) and not opened.group(2).strip():
                fence = None
            continue
        if opened and not opened.group(2).strip().startswith("{") and opened.group(2).strip() != "":
            fence = opened.group(1)                              # ```python: code, skipped
            continue
        if opened and opened.group(2).strip() == "":
            continue                                             # the end of a directive
        if opened:                                               # ```{exercise} Title: keep the title
            line = re.sub(r"^\s*[`~]{3,}\{[^}]*\}", "", line)
        if re.match(r"^\s*:[\w-]+:", line):                      # a directive's option (:label: ch1-...)
            continue
        lines.append(line)
    text = "\n".join(lines)
    for pattern in (_HTML_COMMENT, _ROLE, _CODE_SPAN, _LINK_TARGET, _URL):
        text = pattern.sub(" ", text)
    return text


def claims(prose: str) -> list[tuple[Number, str]]:
    """The numbers of ``prose`` that are claims, each with its context (40 characters each side)."""
    result = []
    for number, start in numbers_in(prose):
        if number.value == number.value.to_integral() and abs(number.value) <= 10 and not number.percent \
                and number.quantum >= 1:
            continue                                             # small integers: counts of things, maths
        if re.fullmatch(r"(19[5-9]\d|20[0-2]\d|2030)", number.text):
            continue                                             # a year
        if _STRUCTURAL.search(prose[max(0, start - 60):start]):
            continue                                             # chapter 5, eq. 12, sec. 5.2, Algorithm 2
        if re.search(r"[_^]\{?$", prose[max(0, start - 2):start]):
            continue                                             # an index in math: x_{37}, \Sigma_{12}
        context = prose[max(0, start - 40):start + len(number.text) + 40].replace("\n", " ")
        result.append((number, context))
    return result


# ---------------------------------------------------------------- where numbers may come from
def _text(value) -> str:
    return "".join(value) if isinstance(value, list) else (value or "")


def output_numbers(notebook: dict) -> list[Number]:
    """Every number shown by the notebook's stored outputs (printed text, Markdown, plain text)."""
    found = []
    for cell in notebook["cells"]:
        for output in cell.get("outputs", []) if cell["cell_type"] == "code" else []:
            if output.get("output_type") == "stream":
                texts = [_text(output.get("text"))]
            else:
                data = output.get("data", {})
                texts = [_text(data.get("text/markdown"))] if "text/markdown" in data else (
                    [_text(data.get("text/plain"))] if not any(k.startswith("image/") for k in data) else [])
            for text in texts:
                found += [number for number, _ in numbers_in(text)]
    return found


_PY_LITERAL = re.compile(r"(?<![\w.])(\d[\d_]*(?:\.\d+)?(?:[eE][-+]?\d+)?)(?![\w.])")


def code_values(notebook: dict) -> set[Decimal]:
    """The numeric literals of the notebook's code cells (``5_000``, ``1e-4``, ``0.995``)."""
    values = set()
    for cell in notebook["cells"]:
        if cell["cell_type"] == "code":
            for literal in _PY_LITERAL.findall(_text(cell["source"])):
                values.add(Decimal(literal.replace("_", "")))
    return values


def constants(page: str) -> dict[str, str]:
    """The numbers ``book/numbers.yml`` declares for ``page`` (a file name without its suffix) and
    for every page, as written, with their reasons. A key with ``{n}`` declares every number written
    in that phrase ("{n} min": the time estimates of a table)."""
    declared = yaml.safe_load(CONSTANTS_FILE.read_text()) or {}
    return {**(declared.get(EVERY_PAGE) or {}), **(declared.get(page) or {})}


# ---------------------------------------------------------------- the check
@dataclass(frozen=True)
class Unsourced:
    page: str
    cell: int | None
    number: str
    context: str

    def __str__(self) -> str:
        where = f"{self.page}, cell {self.cell}" if self.cell is not None else self.page
        return f"{where}: {self.number!r} in \"…{self.context}…\""


def page_prose(path: Path) -> list[tuple[int | None, str]]:
    """(cell index, prose) for each Markdown cell of a notebook, or (None, prose) for a Markdown page."""
    if path.suffix == ".md":
        return [(None, prose_of(path.read_text()))]
    notebook = json.loads(path.read_text())
    return [(i, prose_of(_text(cell["source"]))) for i, cell in enumerate(notebook["cells"])
            if cell["cell_type"] == "markdown"]


def unsourced(path: Path) -> list[Unsourced]:
    """The numbers of ``path``'s prose that come neither from its outputs, nor from its code, nor from
    book/numbers.yml."""
    path = Path(path)
    if path.suffix == ".ipynb":
        notebook = json.loads(path.read_text())
        outputs, code = output_numbers(notebook), code_values(notebook)
    else:
        outputs, code = [], set()
    declared = constants(path.stem)
    phrases = [key for key in declared if "{n}" in str(key)]
    declared_numbers = [number for text in declared if "{n}" not in str(text) for number, _ in numbers_in(str(text))]
    missing = []
    for cell, prose in page_prose(path):
        for number, context in claims(prose):
            if number.text in declared or any(d.value == number.value and d.percent == number.percent
                                              for d in declared_numbers):
                continue
            if any(phrase.replace("{n}", number.text) in context for phrase in phrases):
                continue
            if not number.percent and abs(number.value) in code:
                continue
            if any(number.matches(shown) for shown in outputs):
                continue
            missing.append(Unsourced(path.name, cell, number.text, context.strip()))
    return missing


def book_pages() -> list[Path]:
    """Every page of _toc.yml with prose: the notebooks and the Markdown pages."""
    toc = yaml.safe_load((ROOT / "_toc.yml").read_text())
    names = [toc["root"]]

    def walk(entries):
        for entry in entries or []:
            if "file" in entry:
                names.append(entry["file"])
            walk(entry.get("chapters"))
            walk(entry.get("sections"))

    walk(toc.get("parts"))
    pages = []
    for name in names:
        for suffix in (".ipynb", ".md"):
            if (ROOT / f"{name}{suffix}").exists():
                pages.append(ROOT / f"{name}{suffix}")
    return pages


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("pages", nargs="*", type=Path, help="notebooks or Markdown pages (default: every page of the book)")
    paths = parser.parse_args(argv).pages or book_pages()
    missing = [str(path) for path in paths if not path.exists()]
    if missing:
        parser.error(f"no such page: {', '.join(missing)}")
    problems = [problem for path in paths for problem in unsourced(path)]
    for problem in problems:
        print(problem)
    if problems:
        print(f"\n{len(problems)} number(s) of the prose without a source: put the number the run printed, make "
              "the notebook print it, or declare it with its reason in book/numbers.yml.")
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
