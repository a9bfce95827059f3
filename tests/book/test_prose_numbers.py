"""Every number in the prose comes from the run (tools/prose_numbers.py, book/numbers.yml).

A number that a page states must appear in an output of its notebook (with the prose's rounding), be
set by its code, or be declared in book/numbers.yml with its reason. A re-run that changes a result
therefore fails here until the prose says the new number.
"""
import json
import sys

import pytest
import yaml

from .conftest import ROOT, awaiting_rerun

sys.path.insert(0, str(ROOT / "tools"))
import prose_numbers  # noqa: E402
from prose_numbers import claims, numbers_in, prose_of, unsourced  # noqa: E402

PAGES = prose_numbers.book_pages()


@pytest.mark.parametrize("path", awaiting_rerun(PAGES), ids=lambda p: p.name)
def test_every_number_in_the_prose_comes_from_the_run(path):
    problems = unsourced(path)
    assert not problems, (
        f"{len(problems)} number(s) of {path.name}'s prose appear in no output of the notebook, in none of its "
        "code, and not in book/numbers.yml; write the number the run printed, make the notebook print it, or "
        "declare it (with its reason) in book/numbers.yml:\n" + "\n".join(map(str, problems)))


def _numbers(text):
    return [(n.text, str(n.value), n.percent) for n, _ in numbers_in(text)]


def test_numbers_are_read_as_written():
    assert _numbers("FID 27.3 at 5,000 steps, 77% accurate, −30.6 and 1e-4") == [
        ("27.3", "27.3", False), ("5,000", "5000", False), ("77%", "77", True), ("−30.6", "-30.6", False),
        ("1e-4", "0.0001", False)]
    assert _numbers(r"$\bar\alpha_T = 4.04\cdot10^{-5}$ and 2.4·10⁻⁷, ratio 10^{-3}") == [
        (r"4.04\cdot10^{-5}", "0.0000404", False), ("2.4·10⁻⁷", "2.4E-7", False), ("10^{-3}", "0.001", False)]
    assert _numbers("x_0, H100, bf16, ch1, ho2020denoising, T-1") == [("1", "1", False)]   # names are not numbers


def test_rounding_precision_and_percentages():
    (rounded, _), = numbers_in("27")
    (shown, _), = numbers_in("27.3")
    (other, _), = numbers_in("27.6")
    assert rounded.matches(shown) and not rounded.matches(other)
    (percent, _), = numbers_in("77%")
    (fraction, _), = numbers_in("0.772")
    assert percent.matches(fraction)
    (small, _), = numbers_in("4.0e-05")
    (printed, _), = numbers_in("4.04e-05")
    assert small.matches(printed)


def test_what_is_not_a_claim():
    prose = prose_of("""Chapter 12 and eq. 14 (sec. 5.2, Algorithm 2) of {cite:t}`ho2020denoising` (2020) with `steps=4000`,
[a link](https://example.org/4711) and $x_{37}$, then 3 seeds and a loss of 0.0716.

```python
print(12345)
```
````{exercise} Title with 0.25
:label: ch9-something-42
Body with 0.5%.
````""")
    assert [number.text for number, _ in claims(prose)] == ["0.0716", "0.25", "0.5%"]


def _notebook(tmp_path, printed, prose):
    """A chapter in miniature: a cell that printed ``printed``, and prose that states a number."""
    cells = [{"cell_type": "code", "execution_count": 1, "metadata": {}, "source": "steps = dl.budget(full=4000, quick=12)",
              "outputs": [{"output_type": "stream", "name": "stdout", "text": printed}]},
             {"cell_type": "markdown", "metadata": {}, "source": prose}]
    path = tmp_path / "09_planted.ipynb"
    path.write_text(json.dumps({"cells": cells, "metadata": {}, "nbformat": 4, "nbformat_minor": 5}))
    return path


def test_a_re_run_that_changes_a_result_fails_until_the_prose_follows(tmp_path):
    """Plant a stale number: the prose says the loss ends at 0.0716 after 4000 steps, as the run printed;
    a re-run prints 0.0734, and the prose's 0.0716 has no source any more until it is updated."""
    prose = "After 4000 steps the loss ends at 0.0716 (about 0.07)."
    assert unsourced(_notebook(tmp_path, "loss 0.0716\n", prose)) == []
    stale = unsourced(_notebook(tmp_path, "loss 0.0734\n", prose))
    assert [problem.number for problem in stale] == ["0.0716"] and "loss ends at 0.0716" in stale[0].context
    assert unsourced(_notebook(tmp_path, "loss 0.0734\n", prose.replace("0.0716", "0.0734"))) == []


def test_the_constants_file_gives_a_reason_for_every_number_and_each_is_used():
    declared = yaml.safe_load(prose_numbers.CONSTANTS_FILE.read_text()) or {}
    pages = {path.stem: path for path in PAGES}
    for page, numbers in declared.items():
        assert page == prose_numbers.EVERY_PAGE or page in pages, f"book/numbers.yml: no page {page!r}"
        for number, reason in (numbers or {}).items():
            assert isinstance(reason, str) and len(reason.split()) >= 3, \
                f"book/numbers.yml: {page}: {number!r} needs its reason (what it is, where it comes from)"
            if page == prose_numbers.EVERY_PAGE:
                continue
            prose = " ".join(text for _, text in prose_numbers.page_prose(pages[page]))
            written = [n.text for n, _ in claims(prose)]
            assert any(number == text or "{n}" in str(number) and str(number).replace("{n}", text) in prose
                       for text in written), f"book/numbers.yml: {page} declares {number!r}, which its prose no longer states"
