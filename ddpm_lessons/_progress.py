"""The book's progress bars: tqdm, quiet when asked, and written to stdout so that a notebook keeps
each bar in order with the lines printed around it."""
from __future__ import annotations

import sys
import warnings

# Without ipywidgets, tqdm.auto falls back to a text bar (what the website shows); its warning saying
# so would clutter every output. Filtered once, here: a catch_warnings() around every bar would reset
# Python's "already warned" registries, so a warning meant to show once would show after every
# training run again.
warnings.filterwarnings("ignore", message="IProgress not found")


def bar(iterable=None, total: int | None = None, desc: str = "", disable: bool = False, initial: int = 0):
    """A ``tqdm.auto`` bar (a widget in Jupyter where ipywidgets is installed, else text)."""
    from tqdm.auto import tqdm

    return tqdm(iterable, total=total, desc=desc, disable=disable, initial=initial, file=sys.stdout,
                dynamic_ncols=True)
