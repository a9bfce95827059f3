import inspect

import IPython
import IPython.display
import pytest
import torch

import ddpm_lessons as dl
from ddpm_lessons import utils


def test_count_parameters_counts_trainable_ones():
    model = torch.nn.Linear(3, 2)
    assert utils.count_parameters(model) == 8
    model.bias.requires_grad_(False)
    assert utils.count_parameters(model) == 6


def test_source_listing_is_highlighted_markdown_with_the_exact_source():
    bundle = utils.source_listing(dl.Diffusion.q_sample)
    source = inspect.getsource(dl.Diffusion.q_sample)
    assert bundle["text/plain"] == source  # what the notebook test compares with the module
    markdown = bundle["text/markdown"]
    assert markdown.startswith("```python\ndef q_sample(") and markdown.endswith("\n```\n")  # dedented method
    assert "    def q_sample(" in source


def _documented():
    """An example:

    ```python
    x = 1
    ```
    """
    return 1


def test_source_listing_fence_is_longer_than_any_backticks_in_the_code():
    markdown = utils.source_listing(_documented)["text/markdown"]
    assert markdown.startswith("````python\n") and markdown.endswith("\n````\n")


def test_show_source_rejects_what_has_no_python_source():
    with pytest.raises(ValueError, match=r"show_source\(\): expected a function, method or class"):
        utils.show_source(len)


def test_show_source_prints_outside_ipython(capsys):
    utils.show_source(dl.Diffusion.q_sample)
    assert capsys.readouterr().out == inspect.getsource(dl.Diffusion.q_sample)


def test_show_source_displays_the_bundle_in_ipython(monkeypatch):
    shown = []
    monkeypatch.setattr(IPython, "get_ipython", lambda: object())
    monkeypatch.setattr(IPython.display, "display", lambda *objs, raw=False: shown.append((objs, raw)))
    utils.show_source(dl.Diffusion.q_sample)
    assert shown == [((utils.source_listing(dl.Diffusion.q_sample),), True)]


def test_synchronized_time_is_a_monotonic_clock_on_the_cpu():
    a = dl.utils.synchronized_time("cpu")
    b = dl.utils.synchronized_time(torch.device("cpu"))
    assert isinstance(a, float) and b >= a
