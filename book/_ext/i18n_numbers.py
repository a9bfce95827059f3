"""Translations that survive a re-run: the numbers of a sentence are placeholders in the catalogues.

The prose states the numbers of the stored run, and ``tools/prose_numbers.py`` keeps them true: a
re-run that changes a result changes the sentence that states it. A translated edition (Sphinx's
gettext catalogues, ``sphinx-build -b gettext`` and ``sphinx-intl``) looks its translations up by the
English sentence, so it would lose that sentence's translation although only a number changed.

With this extension every number of a message is a placeholder in the catalogue, ``⟦1⟧``, ``⟦2⟧``, …
in the order of the sentence::

    msgid "The samples' KID is ⟦1⟧ ± ⟦2⟧ after ⟦3⟧ steps."
    msgstr "训练 ⟦3⟧ 步之后,样本的 KID 为 ⟦1⟧ ± ⟦2⟧。"

and building the translated site puts the source's current numbers back in their places. A
translation whose placeholders are not exactly ⟦1⟧ … ⟦n⟧ of its message is not used: the English
sentence stays, and a warning names it. A number is a run of digits (with its decimal point and
thousands separators) that stands alone: the 0 of ``x_0`` and the 2020 of ``ho2020denoising`` are
parts of names and stay as they are.

It changes nothing in a build without translations. It works by wrapping two functions of Sphinx's
message handling (``extract_messages`` where the catalogues are written and read, ``publish_msgstr``
where a translation is parsed); tests/book/test_i18n_numbers.py builds a small translated project to
check that it still does, with the Sphinx that the requirements install.
"""
from __future__ import annotations

import re

from sphinx.util import logging

logger = logging.getLogger(__name__)

NUMBER = re.compile(r"(?<![\w.⟦])\d+(?:[.,]\d+)*(?![\w⟧])")
PLACEHOLDER = re.compile(r"⟦(\d+)⟧")


class Template(str):
    """A message with its numbers replaced by placeholders; ``numbers`` holds them, in order."""

    numbers: tuple[str, ...] = ()


def template(message: str) -> Template:
    """``"KID 12.5 after 5,000 steps"`` -> ``Template("KID ⟦1⟧ after ⟦2⟧ steps")`` with numbers ``("12.5", "5,000")``."""
    numbers: list[str] = []

    def placeholder(match: re.Match) -> str:
        numbers.append(match.group(0))
        return f"⟦{len(numbers)}⟧"

    result = Template(NUMBER.sub(placeholder, message))
    result.numbers = tuple(numbers)
    return result


def fill(translation: str, numbers: tuple[str, ...]) -> str | None:
    """The translation with the numbers in their placeholders, or None when its placeholders are not
    exactly ⟦1⟧ … ⟦n⟧ for the n numbers of the message (a number lost or invented in translation)."""
    found = [int(index) for index in PLACEHOLDER.findall(translation)]
    if sorted(set(found)) != list(range(1, len(numbers) + 1)):
        return None
    return PLACEHOLDER.sub(lambda match: numbers[int(match.group(1)) - 1], translation)


_current: dict = {"numbers": (), "message": "", "checked": True}


def _templates(extract_messages, remember: bool):
    def extract(doctree):
        for node, message in extract_messages(doctree):
            numbered = template(message)
            if remember:   # the Locale transform parses this message's translation before asking for the next one
                _current.update(numbers=numbered.numbers, message=message, checked=False)
            yield node, numbered
    return extract


def _filling(publish_msgstr):
    def publish(app, source, source_path, source_line, config, settings):
        if not _current["checked"]:   # the message's own translation (a glossary term's second part is not checked)
            _current["checked"] = True
            filled = fill(source, _current["numbers"])
            if filled is None:
                logger.warning(f"i18n_numbers: the translation of {_current['message'][:80]!r} does not hold the "
                               f"placeholders ⟦1⟧ … ⟦{len(_current['numbers'])}⟧ of its numbers; the English is shown",
                               location=(source_path, source_line))
                filled = _current["message"]
            source = filled
        else:
            source = PLACEHOLDER.sub(lambda m: _current["numbers"][int(m.group(1)) - 1]
                                     if int(m.group(1)) <= len(_current["numbers"]) else m.group(0), source)
        return publish_msgstr(app, source, source_path, source_line, config, settings)
    return publish


def setup(app):
    import sphinx.builders.gettext as gettext_builder
    import sphinx.transforms.i18n as i18n

    if not all(hasattr(module, name) for module, name in ((gettext_builder, "extract_messages"),
                                                          (i18n, "extract_messages"), (i18n, "publish_msgstr"))):
        logger.warning("i18n_numbers: this Sphinx version is not supported; catalogues keep their numbers")
        return {"parallel_read_safe": True, "parallel_write_safe": True}
    if not getattr(i18n.extract_messages, "i18n_numbers", False):
        gettext_builder.extract_messages = _templates(gettext_builder.extract_messages, remember=False)
        i18n.extract_messages = _templates(i18n.extract_messages, remember=True)
        i18n.publish_msgstr = _filling(i18n.publish_msgstr)
        i18n.extract_messages.i18n_numbers = True
    return {"parallel_read_safe": True, "parallel_write_safe": True}
