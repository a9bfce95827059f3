"""Write a GIF that a notebook stores to a file: the README's animation is chapter 5's.

    python tools/export_gif.py book/05_unet_fashion_mnist.ipynb book/images/denoising.gif

``--index`` picks the GIF (0 the first, -1 the last: the default). After chapter 5 is regenerated
(tools/run_chapter.py), run this again: tests/book/test_publishing.py checks that the README's GIF
is, byte for byte, one that chapter 5 stores, so the README cannot show an older run.
"""
from __future__ import annotations

import argparse
import base64
import json
import sys
from pathlib import Path


def stored_gifs(notebook: Path) -> list[bytes]:
    """The GIFs of a notebook's stored outputs (``image/gif`` data), in the order of its cells."""
    cells = json.loads(notebook.read_text())["cells"]
    gifs = []
    for cell in cells:
        for output in cell.get("outputs", []) if cell["cell_type"] == "code" else []:
            data = output.get("data", {}).get("image/gif")
            if data:
                gifs.append(base64.b64decode("".join(data) if isinstance(data, list) else data))
    return gifs


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("notebook", type=Path)
    parser.add_argument("gif", type=Path, help="the file to write, e.g. book/images/denoising.gif")
    parser.add_argument("--index", type=int, default=-1, help="which stored GIF (default -1: the last)")
    args = parser.parse_args(argv)
    gifs = stored_gifs(args.notebook)
    if not -len(gifs) <= args.index < len(gifs):
        parser.error(f"{args.notebook} stores {len(gifs)} GIF(s); --index {args.index} is not one of them")
    args.gif.parent.mkdir(parents=True, exist_ok=True)
    args.gif.write_bytes(gifs[args.index])
    print(f"{args.gif}: GIF {args.index % len(gifs) + 1} of {len(gifs)} from {args.notebook}, "
          f"{len(gifs[args.index]) / 1024:.0f} KiB")
    return 0


if __name__ == "__main__":
    sys.exit(main())
