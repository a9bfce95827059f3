"""A translation survives a re-run that changes a number (book/_ext/i18n_numbers.py).

The prose states the numbers of the stored run; a translated edition must not lose a sentence's
translation when a re-run changes its number. A small MyST project is built with Sphinx's gettext
builder and then in Chinese from a hand-written catalogue, before and after its numbers change.
"""
import subprocess
import sys
import textwrap

import pytest

from .conftest import ROOT

sys.path.insert(0, str(ROOT / "book" / "_ext"))
from i18n_numbers import fill, template  # noqa: E402

CONF = """
import sys
sys.path.insert(0, {ext!r})
extensions = ["myst_parser", "i18n_numbers"]
locale_dirs = ["locales/"]
gettext_compact = False
exclude_patterns = ["_build"]
"""
SENTENCE = "The samples have KID {kid} after {steps} steps, from $x_0$ in {cite}."
TRANSLATION = "训练 ⟦3⟧ 步之后,样本的 KID 为 ⟦1⟧ ± ⟦2⟧(第 ⟦4⟧ 章,从 $x_0$ 出发)。"


def test_numbers_become_placeholders_and_come_back():
    numbered = template("KID 12.5 ± 3.1 after 5,000 steps of x_0 (ho2020denoising), 28×28 images")
    assert numbered == "KID ⟦1⟧ ± ⟦2⟧ after ⟦3⟧ steps of x_0 (ho2020denoising), ⟦4⟧×⟦5⟧ images"
    assert numbered.numbers == ("12.5", "3.1", "5,000", "28", "28")
    assert fill("⟦3⟧ 步, ⟦1⟧ ± ⟦2⟧, ⟦4⟧×⟦5⟧", numbered.numbers) == "5,000 步, 12.5 ± 3.1, 28×28"
    assert fill("⟦1⟧ ± ⟦2⟧", numbered.numbers) is None          # a number lost in translation
    assert fill("⟦1⟧ … ⟦6⟧", ("1", "2")) is None                 # or invented


def _project(tmp_path, kid, steps):
    (tmp_path / "conf.py").write_text(CONF.format(ext=str(ROOT / "book" / "_ext")))
    (tmp_path / "index.md").write_text("# Results\n\n" + SENTENCE.format(kid=kid, steps=steps, cite="chapter 5") + "\n")


def _build(tmp_path, builder, *options):
    result = subprocess.run([sys.executable, "-m", "sphinx", "-b", builder, "-q", *options, str(tmp_path),
                             str(tmp_path / "_build" / builder)], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    return result.stderr


def _catalogue(tmp_path, msgstr):
    folder = tmp_path / "locales" / "zh_CN" / "LC_MESSAGES"
    folder.mkdir(parents=True, exist_ok=True)
    pot = (tmp_path / "_build" / "gettext" / "index.pot").read_text()
    msgid = next(line for line in pot.splitlines() if line.startswith('msgid "The samples'))
    (folder / "index.po").write_text(textwrap.dedent(f'''\
        msgid ""
        msgstr ""
        "Content-Type: text/plain; charset=UTF-8\\n"

        {msgid}
        msgstr "{msgstr}"
        '''))
    for compiled in folder.glob("*.mo"):
        compiled.unlink()
    return msgid


def test_a_translation_keeps_working_when_the_run_changes_its_numbers(tmp_path):
    pytest.importorskip("myst_parser")
    _project(tmp_path, kid="12.5 ± 3.1", steps="5,000")
    _build(tmp_path, "gettext")
    msgid = _catalogue(tmp_path, TRANSLATION)
    assert msgid == 'msgid "The samples have KID ⟦1⟧ ± ⟦2⟧ after ⟦3⟧ steps, from $x_0$ in chapter ⟦4⟧."'

    _build(tmp_path, "html", "-D", "language=zh_CN", "-E")
    page = (tmp_path / "_build" / "html" / "index.html").read_text()
    assert "训练 5,000 步之后,样本的 KID 为 12.5 ± 3.1(第 5 章," in page

    _project(tmp_path, kid="11.9 ± 2.8", steps="6,000")              # a re-run: new numbers, the same catalogue
    _build(tmp_path, "gettext")
    assert msgid in (tmp_path / "_build" / "gettext" / "index.pot").read_text()   # the message has not changed
    _build(tmp_path, "html", "-D", "language=zh_CN", "-E")
    page = (tmp_path / "_build" / "html" / "index.html").read_text()
    assert "训练 6,000 步之后,样本的 KID 为 11.9 ± 2.8(第 5 章," in page and "12.5" not in page


def test_a_translation_that_loses_a_number_is_not_used(tmp_path):
    pytest.importorskip("myst_parser")
    _project(tmp_path, kid="12.5 ± 3.1", steps="5,000")
    _build(tmp_path, "gettext")
    _catalogue(tmp_path, "样本的 KID 为 ⟦1⟧。")
    warnings = _build(tmp_path, "html", "-D", "language=zh_CN", "-E")
    page = (tmp_path / "_build" / "html" / "index.html").read_text()
    assert "The samples have KID 12.5 ± 3.1 after 5,000 steps" in page and "样本的 KID" not in page
    assert "does not hold the placeholders ⟦1⟧ … ⟦4⟧" in warnings
