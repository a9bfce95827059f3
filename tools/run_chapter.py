"""Regenerate a chapter: run its notebook top to bottom in full mode and store the outputs as a
terminal would show them.

    python tools/run_chapter.py book/02_forward_process.ipynb [book/03_reverse_posterior.ipynb ...]

Each notebook runs in a fresh kernel (nbclient), in its own folder, with ``DDPM_LESSONS_QUICK=0``
(``--quick`` runs the small budgets instead: for trying the runner, not for committing, since the
tests reject stored outputs from quick mode) and matplotlib's inline backend (whatever
``MPLBACKEND`` says, so that figures are stored). The notebook is rewritten only when every cell ran
without an error. Before it is written, each cell's printed output is tidied:

- neighbouring outputs of one stream (stdout, or stderr) are merged into one block, never across a
  figure or another stream, so text stays where it was printed relative to the figures (nbclient's
  and myst-nb's ``coalesce_streams`` merge all of a cell's prints into its first one, moving text
  printed after a figure above it);
- carriage returns are applied as a terminal applies them: a progress bar that redraws its line
  keeps only its final state, one line, instead of one line per refresh.

``--tidy-only`` does only the tidying, for a notebook run elsewhere (on a Colab GPU, then
downloaded). The website shows these outputs as stored (``nb_merge_streams: false`` in _config.yml);
tests/book/test_site.py checks that no page has more than a handful of progress-bar lines.
"""
from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

QUICK_ENV = "DDPM_LESSONS_QUICK"
INLINE_BACKEND = "module://matplotlib_inline.backend_inline"


def terminal_text(text: str) -> str:
    """``text`` as a terminal shows it: ``\\r`` returns to the start of the line, and what follows
    overwrites what was there (a progress bar's refreshes leave its final state)."""
    lines = []
    for line in text.replace("\r\n", "\n").split("\n"):
        if "\r" in line:
            shown = ""
            for part in line.split("\r"):
                shown = part + shown[len(part):]
            line = shown.rstrip(" ")  # a bar pads its line with spaces to erase a longer one
        lines.append(line)
    return "\n".join(lines)


def tidy_outputs(outputs: list) -> list:
    """A cell's outputs with neighbouring stream outputs of one name merged, in their order, and
    carriage returns applied (see :func:`terminal_text`); streams left empty are dropped."""
    merged = []
    for output in outputs:
        previous = merged[-1] if merged else None
        if (output.get("output_type") == "stream" and previous is not None
                and previous.get("output_type") == "stream" and previous.get("name") == output.get("name")):
            previous["text"] += output["text"]
        else:
            merged.append(output)
    for output in merged:
        if output.get("output_type") == "stream":
            output["text"] = terminal_text(output["text"])
    return [output for output in merged if output.get("output_type") != "stream" or output["text"]]


def tidy_notebook(notebook) -> None:
    """Tidy the outputs of every code cell of ``notebook`` in place."""
    for cell in notebook.cells:
        if cell.cell_type == "code":
            cell.outputs = tidy_outputs(cell.outputs)


def run(path: Path, quick: bool = False, timeout: int | None = None) -> float:
    """Execute the notebook at ``path`` top to bottom, tidy its outputs, write it back; the seconds
    it took. Raises nbclient's CellExecutionError (leaving the file as it was) when a cell fails."""
    import nbformat
    from nbclient import NotebookClient

    notebook = nbformat.read(path, as_version=4)
    # The kernel inherits this process's environment. Figures must be drawn inline even where the
    # shell says MPLBACKEND=Agg (as the tests do): with Agg, plt.show() would store no figure.
    os.environ[QUICK_ENV] = "1" if quick else "0"
    os.environ["MPLBACKEND"] = INLINE_BACKEND
    kernel = notebook.metadata.get("kernelspec", {}).get("name", "python3")
    client = NotebookClient(notebook, timeout=timeout, kernel_name=kernel, record_timing=False,
                            resources={"metadata": {"path": str(path.parent)}})
    started = time.perf_counter()
    client.execute()
    tidy_notebook(notebook)
    nbformat.write(notebook, path)
    return time.perf_counter() - started


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("notebooks", nargs="+", type=Path, help="the notebooks to run, e.g. book/02_forward_process.ipynb")
    parser.add_argument("--quick", action="store_true", help="small budgets (DDPM_LESSONS_QUICK=1): to try, not to commit")
    parser.add_argument("--timeout", type=int, default=None, help="seconds allowed to one cell (default: no limit)")
    parser.add_argument("--tidy-only", action="store_true",
                        help="do not run: only tidy the stored outputs of a notebook run elsewhere (e.g. on Colab)")
    args = parser.parse_args(argv)
    for path in args.notebooks:
        if path.suffix != ".ipynb" or not path.is_file():
            parser.error(f"{path}: not a notebook file (.ipynb)")
    import nbformat
    from nbclient.exceptions import CellExecutionError

    for path in args.notebooks:
        if args.tidy_only:
            notebook = nbformat.read(path, as_version=4)
            tidy_notebook(notebook)
            nbformat.write(notebook, path)
            print(f"{path}: outputs tidied")
            continue
        print(f"running {path} ({'quick' if args.quick else 'full'} mode) ...", flush=True)
        try:
            seconds = run(path.resolve(), quick=args.quick, timeout=args.timeout)
        except CellExecutionError as error:
            print(f"{path}: a cell failed; the notebook was not rewritten.\n{error}", file=sys.stderr)
            return 1
        print(f"{path}: ran in {seconds:.0f} s; outputs stored", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
