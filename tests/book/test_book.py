"""The book: its table of contents, and a build with warnings as errors (-W)."""
import re
from pathlib import Path

from .conftest import ROOT, toc_files


def test_toc_documents_exist():
    for name in toc_files():
        candidates = [ROOT / f"{name}{ext}" for ext in ("", ".md", ".ipynb")]
        assert any(p.is_file() for p in candidates), f"_toc.yml lists {name}, which does not exist"


def test_every_book_document_is_in_the_toc():
    listed = {str(Path(f).with_suffix("")) for f in toc_files()}
    for path in sorted((ROOT / "book").glob("*")):
        if path.suffix in {".md", ".ipynb"} and not path.name.startswith("_"):
            name = str(path.relative_to(ROOT).with_suffix(""))
            assert name in listed, f"{name} is not in _toc.yml: add it or remove the file"


def test_book_builds_without_warnings(built_site):
    index = built_site / "index.html"
    assert index.is_file()
    for name in toc_files():
        page = built_site / f"{name}.html"
        assert page.is_file(), f"the build has no page for {name}"
    intro = (built_site / "book" / "intro.html").read_text()
    assert "Notation and conventions" in intro
    # the citation resolved to the bibliography page, not left as a raw role
    assert "{cite" not in intro
    assert re.search(r'href="references.html#[^"]*" title="Jonathan Ho, Ajay Jain', intro)
