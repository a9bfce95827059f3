"""Author-year labels in the bibliography, matching the author-year citations of the text.

The text cites "Ho et al. [2020]" (``bibtex_reference_style: author_year``), but pybtex's default
styles label the entries of the references page "[HJA20]" (alpha) or "[1]" (plain). This Sphinx
extension (loaded through ``sphinx.local_extensions`` in _config.yml) registers a pybtex style,
``author_year``, whose labels read "Ho et al., 2020", "Rogge and Rasul, 2022", "Fay, 1989", with
"2021a", "2021b" where two entries would otherwise share a label. Entries are sorted by author, then
year, then title; their formatting is pybtex's ``unsrt`` (titles in sentence case, so the .bib
file protects capitals with braces: ``{GANs}``, ``{U-Net}``).
"""
from __future__ import annotations

from collections import Counter
from string import ascii_lowercase

from pybtex.plugin import register_plugin
from pybtex.richtext import Text
from pybtex.style.formatting.unsrt import Style as UnsrtStyle
from pybtex.style.labels import BaseLabelStyle

STYLE = "author_year"


def _last_name(person) -> str:
    """A person's last name(s) as plain text ("Sohl-Dickstein", "{\\L}ukasz" -> "Łukasz")."""
    return Text.from_latex(" ".join(person.prelast_names + person.last_names)).render_as("text")


def author_year(entry) -> str:
    """'Fay, 1989', 'Rogge and Rasul, 2022' or 'Ho et al., 2020' (authors, else editors)."""
    people = entry.persons.get("author") or entry.persons.get("editor") or []
    names = [_last_name(person) for person in people]
    if not names:
        who = entry.fields.get("title", entry.key)
    elif len(names) == 1:
        who = names[0]
    elif len(names) == 2:
        who = f"{names[0]} and {names[1]}"
    else:
        who = f"{names[0]} et al."
    return f"{who}, {entry.fields.get('year', 'n.d.')}"


class AuthorYearLabels(BaseLabelStyle):
    """Labels 'Ho et al., 2020'; a letter after the year tells apart entries that share one."""

    def format_labels(self, sorted_entries):
        labels = [author_year(entry) for entry in sorted_entries]
        shared = {label for label, count in Counter(labels).items() if count > 1}
        used = Counter()
        for label in labels:
            if label in shared:
                letter = ascii_lowercase[used[label]]
                used[label] += 1
                label += letter
            yield label


class AuthorYearStyle(UnsrtStyle):
    default_sorting_style = "author_year_title"
    default_label_style = STYLE


def setup(app):
    register_plugin("pybtex.style.labels", STYLE, AuthorYearLabels)
    register_plugin("pybtex.style.formatting", STYLE, AuthorYearStyle)
    return {"parallel_read_safe": True, "parallel_write_safe": True}
