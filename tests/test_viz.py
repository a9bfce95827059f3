import io
import re

import matplotlib
import matplotlib.pyplot
import numpy as np
import pytest
import torch
from PIL import Image

from ddpm_lessons import viz

matplotlib.use("Agg")


def _gif_frames(data: bytes) -> list[np.ndarray]:
    image = Image.open(io.BytesIO(data))
    frames = []
    for index in range(image.n_frames):
        image.seek(index)
        frames.append(np.asarray(image.convert("L")))
    return frames


def test_image_grid_uses_make_grid_layout():
    images = torch.zeros(10, 1, 8, 8) - 1.0  # black
    grid = viz.image_grid(images, nrow=5, padding=2)
    assert grid.shape == (3, 2 * 10 + 2, 5 * 10 + 2)
    assert grid.min() == 0.0 and grid.max() == 1.0  # black images on a white padding
    with pytest.raises(ValueError, match=r"\(B, C, H, W\)"):
        viz.image_grid(torch.zeros(8, 8))


def test_show_images_and_plots_return_axes():
    ax = viz.show_images(torch.rand(6, 1, 8, 8) * 2 - 1, nrow=3, labels=list("abcdef"))
    assert "a, b, c" in ax.get_title()
    ax = viz.plot_loss(np.linspace(1, 0.1, 300))
    assert ax.get_yscale() == "log" and len(ax.lines) == 2
    ax = viz.scatter_2d(torch.randn(100, 2), curve=torch.randn(50, 2))
    assert len(ax.collections) == 1 and len(ax.lines) == 1
    with pytest.raises(ValueError):
        viz.scatter_2d(torch.randn(10, 3))
    with pytest.raises(ValueError):
        viz.plot_loss([])


def test_animate_makes_a_looping_gif_with_every_frame():
    frames = [torch.full((1, 6, 6), value) for value in (-1.0, 0.0, 1.0)]
    image = viz.animate(frames, fps=5)
    assert image.format == "gif"
    assert image.data[:6] in (b"GIF87a", b"GIF89a")
    decoded = _gif_frames(image.data)
    assert len(decoded) == 3
    assert [int(f.mean()) for f in decoded] == [0, 128, 255]
    assert Image.open(io.BytesIO(image.data)).info.get("loop") == 0


def test_animate_accepts_arrays_and_scales():
    frames = [np.zeros((4, 5, 3), np.uint8), np.ones((4, 5, 3), np.float32)]
    decoded = _gif_frames(viz.gif_bytes(frames, scale=3))
    assert decoded[0].shape == (12, 15) and decoded[1].mean() == 255


def test_animate_errors():
    with pytest.raises(ValueError, match="no frames"):
        viz.animate([])
    with pytest.raises(ValueError, match="same shape"):
        viz.animate([torch.zeros(1, 4, 4), torch.zeros(1, 5, 5)])
    with pytest.raises(ValueError, match="fps"):
        viz.animate([torch.zeros(1, 4, 4)], fps=0)


def test_figure_to_array_and_grid_frames():
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(2, 2), dpi=50)
    ax.plot([0, 1], [0, 1])
    array = viz.figure_to_array(fig)
    assert array.shape == (100, 100, 3) and array.dtype == np.uint8
    trajectory = [torch.rand(4, 1, 8, 8) * 2 - 1 for _ in range(30)]
    frames = viz.grid_frames(trajectory, nrow=2, num_frames=7)
    assert len(frames) == 7 and frames[-1].shape == (3, 22, 22)
    assert torch.allclose((frames[-1] + 1) / 2, viz.image_grid(trajectory[-1], nrow=2))


def test_table_markdown_has_a_header_rule_and_a_blank_line_after_the_caption():
    text = viz.table_markdown(["a", "b"], [[1, 2.5], ["x", "y"]], caption="Two rows")
    assert text.splitlines() == ["Two rows", "", "| a | b |", "|---|---|", "| 1 | 2.5 |", "| x | y |"]
    with pytest.raises(ValueError, match="2 cells"):
        viz.table_markdown(["a", "b"], [[1]])


def test_show_rows_names_each_row():
    ax = viz.show_rows(torch.rand(12, 1, 8, 8) * 2 - 1, ["T-shirt", "Trouser", "Bag"], title="three rows")
    assert [label.get_text() for label in ax.get_yticklabels()] == ["T-shirt", "Trouser", "Bag"]
    assert ax.get_images()[0].get_array().shape[:2] == (3 * 10 + 2, 4 * 10 + 2)
    assert ax.get_title() == "three rows"
    with pytest.raises(ValueError, match=r"expected images \(R · n, C, H, W\) for R = 5 rows"):
        viz.show_rows(torch.rand(12, 1, 8, 8), list("abcde"))
    matplotlib.pyplot.close("all")


def test_table_markdown_escapes_a_pipe_inside_a_cell():
    """q(x_t | x_0) in a cell stays one cell: the pipe is escaped, so every row keeps two columns."""
    text = viz.table_markdown(["η", "error"], [[0.5, "2.3 standard errors of q(x_t | x_0)"]])
    row = text.strip().splitlines()[-1]
    assert row == "| 0.5 | 2.3 standard errors of q(x_t \\| x_0) |"
    assert len(re.split(r"(?<!\\)\|", row)) - 2 == 2
