"""Pictures of the book: image grids, loss curves, 2-D scatter plots and animated GIFs.

Images are tensors in the models' range [-1, 1] unless a function says otherwise. Figures are drawn
for the book's text column: :data:`WIDTH` inches at 100 dpi (500 px), with text of at least 10 pt
(14 px), so that on a phone, where the column is about 380 px wide, they are shown at 70% or more
of their size with text of at least 10 px; in a notebook they are stored at twice those pixels
(1000 px wide, shown at 500), sharp on a phone's and a laptop's high-density screen (:func:`use_book_style`). GIF frames are
labelled with the state they show, in the book's one convention: x_t with the paper's subscript t
(x_T is the noise, x_0 the sample).
"""
from __future__ import annotations

import io
from typing import Sequence

import matplotlib.pyplot as plt
import numpy as np
import torch

from . import _checks
from .data import to_image_range, to_model_range

WIDTH = 5.0
"""Inches: the width of a full-width figure of the book (500 px at 100 dpi)."""
DPI = 100
GIF_WIDTH = 480
"""Pixels: the width that GIFs are scaled to (labels included): 75% of it still fits a phone."""


def use_book_style() -> None:
    """Matplotlib settings of the book: figures :data:`WIDTH` inches wide at 100 dpi, text >= 10 pt;
    in a notebook, PNGs stored at twice the pixels and shown at the drawn size ("retina")."""
    try:
        from IPython import get_ipython
        from matplotlib_inline.backend_inline import set_matplotlib_formats
        if get_ipython() is not None:
            set_matplotlib_formats("retina")
    except ImportError:  # no IPython, no inline figures: nothing to store
        pass
    plt.rcParams.update({
        "figure.dpi": DPI, "savefig.dpi": DPI, "figure.figsize": (WIDTH, 3.2),
        "font.size": 11, "axes.titlesize": 11, "axes.labelsize": 11, "xtick.labelsize": 10,
        "ytick.labelsize": 10, "legend.fontsize": 10, "figure.titlesize": 12,
        "figure.constrained_layout.use": True,
    })


def image_grid(images: torch.Tensor, nrow: int = 8, padding: int = 2) -> torch.Tensor:
    """A batch (B, C, H, W) in [-1, 1] as one grid image (3, H', W') in [0, 1] (torchvision's make_grid)."""
    from torchvision.utils import make_grid

    if not torch.is_tensor(images) or images.dim() != 4:
        shape = tuple(images.shape) if torch.is_tensor(images) else type(images).__name__
        raise ValueError(f"image_grid(): expected a batch of shape (B, C, H, W), got {shape}")
    _checks.positive_int(nrow, "nrow (images per row)", "image_grid()")
    _checks.positive_int(padding, "padding", "image_grid()", minimum=0)
    if images.dtype == torch.uint8:  # images as stored: 0…255
        images = to_model_range(images)
    images = _checks.data(images.detach().float().cpu(), "images", "image_grid()",
                          shape_hint="(B, C, H, W), images in [-1, 1] or uint8")
    return make_grid(to_image_range(images), nrow=nrow, padding=padding, pad_value=1.0)


def show_images(images: torch.Tensor, nrow: int = 8, title: str | None = None, ax=None,
                labels: Sequence[str] | None = None):
    """Show a batch in [-1, 1] as a grid; ``labels`` (one per image) become the title lines."""
    grid = image_grid(images, nrow=nrow)
    if labels is not None and len(labels) != len(images):
        raise ValueError(f"show_images(): labels must have one entry per image, {len(images)}; got {len(labels)}")
    if ax is None:
        width = min(WIDTH, 1.2 * min(nrow, len(images)) + 0.5)    # never wider than the book's column
        rows = -(-len(images) // nrow)
        _, ax = plt.subplots(figsize=(width, width * rows / min(nrow, len(images)) + 0.3))
    ax.imshow(grid.permute(1, 2, 0).numpy(), interpolation="nearest")
    ax.set_axis_off()
    if labels is not None:
        lines = [", ".join(labels[i:i + nrow]) for i in range(0, len(labels), nrow)]
        ax.set_title("\n".join(lines), fontsize=8)
    elif title:
        ax.set_title(title)
    return ax


def show_rows(images: torch.Tensor, row_labels: Sequence[str], title: str | None = None, ax=None):
    """A batch in [-1, 1] as one row per label (chapter 7: one row per class), each row named on the left.

    ``images`` holds ``len(row_labels)`` rows of equal length, row by row: (R · n, C, H, W).
    """
    rows = len(row_labels)
    if not torch.is_tensor(images) or images.dim() != 4 or rows == 0 or len(images) % rows:
        shape = tuple(images.shape) if torch.is_tensor(images) else type(images).__name__
        raise ValueError(f"show_rows(): expected images (R · n, C, H, W) for R = {rows} rows, got {shape}")
    per_row, height = len(images) // rows, images.shape[-2] + 2       # make_grid pads by 2 pixels
    if ax is None:
        _, ax = plt.subplots(figsize=(WIDTH, WIDTH * rows / (per_row + 2.5) + 0.4))
    ax.imshow(image_grid(images, nrow=per_row).permute(1, 2, 0).numpy(), interpolation="nearest")
    ax.set_yticks([2 + height * (i + 0.5) for i in range(rows)], list(row_labels))
    ax.set_xticks([])
    ax.tick_params(length=0)
    for side in ax.spines.values():
        side.set_visible(False)
    if title:
        ax.set_title(title)
    return ax


def plot_loss(history: Sequence[float], smooth: int = 50, ax=None, log: bool = True,
              title: str = "training loss"):
    """Loss per step, raw and as a moving average over ``smooth`` steps."""
    values = np.asarray(list(history), dtype=float)
    if values.ndim != 1 or len(values) == 0:
        raise ValueError("plot_loss(): expected a non-empty sequence of numbers")
    if not np.isfinite(values).all():
        import warnings
        first = int(np.argmax(~np.isfinite(values)))
        warnings.warn(f"plot_loss(): the loss is not finite from step {first} on (the run diverged there); only the "
                      "finite values are drawn", _checks.BookWarning, stacklevel=2)
    if ax is None:
        _, ax = plt.subplots(figsize=(WIDTH, 3.0))
    ax.plot(values, alpha=0.3, label="per step")
    window = max(1, min(smooth, len(values) // 5 or 1))
    if window > 1:
        averaged = np.convolve(values, np.ones(window) / window, mode="valid")
        ax.plot(np.arange(window - 1, len(values)), averaged, label=f"mean of {window}")
    if log and (values > 0).all():
        ax.set_yscale("log")
    ax.set_xlabel("step")
    ax.set_ylabel("loss")
    ax.set_title(title)
    ax.legend()
    return ax


def scatter_2d(points, ax=None, title: str | None = None, curve=None, lim: float = 3.0,
               s: float = 2.0, color: str = "C0"):
    """2-D points (N, 2) as a scatter plot; ``curve`` (M, 2) is drawn underneath as a line."""
    points = _checks.tensor(points if torch.is_tensor(points) else torch.as_tensor(points) if points is not None else None,
                            "points", "scatter_2d()", shape_hint="(N, 2)").detach().cpu()
    if points.dim() != 2 or points.shape[1] != 2:
        raise ValueError(f"scatter_2d(): expected points of shape (N, 2), got {tuple(points.shape)}")
    _checks.finite(points, "points", "scatter_2d()")
    if ax is None:
        _, ax = plt.subplots(figsize=(4, 4))
    if curve is not None:
        curve = torch.as_tensor(curve).cpu()
        ax.plot(curve[:, 0], curve[:, 1], color="0.6", lw=0.8, zorder=0)
    ax.scatter(points[:, 0], points[:, 1], s=s, alpha=0.5, color=color, linewidths=0)
    ax.set_xlim(-lim, lim)
    ax.set_ylim(-lim, lim)
    ax.set_aspect("equal")
    if title:
        ax.set_title(title)
    return ax


def figure_to_array(fig) -> np.ndarray:
    """A matplotlib figure rendered to an RGB uint8 array (H, W, 3); closes the figure."""
    if not hasattr(fig, "canvas"):
        raise ValueError(f"figure_to_array(): expected a matplotlib figure (plt.subplots()[0]), got {type(fig).__name__}")
    fig.canvas.draw()
    array = np.asarray(fig.canvas.buffer_rgba())[..., :3].copy()
    plt.close(fig)
    return array


def _frame_to_uint8(frame, where: str = "animate()") -> np.ndarray:
    """One frame as uint8 (H, W) or (H, W, 3). Float tensors are in [-1, 1], float arrays in [0, 1]."""
    if frame is None or (not torch.is_tensor(frame) and not hasattr(frame, "__array__") and not isinstance(frame, list)):
        raise ValueError(f"{where}: a frame must be an image (a tensor or an array), got {type(frame).__name__}")
    if torch.is_tensor(frame) and (frame.dim() not in (2, 3) or frame.numel() == 0):
        raise ValueError(f"{where}: a frame must be one image, (H, W), (1, H, W) or (3, H, W), got shape "
                         f"{tuple(frame.shape)}; turn a batch into one frame with image_grid or grid_frames")
    if torch.is_tensor(frame):
        frame = frame.detach().cpu()
        if frame.dim() == 3 and frame.shape[0] in (1, 3):  # (C, H, W) -> (H, W, C)
            frame = frame.permute(1, 2, 0)
        if frame.is_floating_point():
            frame = to_image_range(_checks.data(frame[None, None] if frame.dim() == 2 else frame.permute(2, 0, 1)[None],
                                                "a frame", where)[0].permute(1, 2, 0))
        else:
            if frame.numel() and (frame.min() < 0 or frame.max() > 255):
                raise ValueError(f"{where}: an integer frame must hold pixel values 0…255, got {frame.min().item()} "
                                 f"to {frame.max().item()}")
            return frame.to(torch.uint8).squeeze(-1).numpy() if frame.dim() == 3 else frame.to(torch.uint8).numpy()
        frame = frame.numpy()
    array = np.asarray(frame)
    if array.dtype != np.uint8:
        array = np.round(np.clip(array, 0.0, 1.0) * 255).astype(np.uint8)
    if array.ndim == 3 and array.shape[2] == 1:
        array = array[..., 0]
    return array


def gif_bytes(frames: Sequence, fps: float = 10.0, hold_last: float = 1.0, scale: int = 1,
              where: str = "gif_bytes()") -> bytes:
    """Encode frames as a looping GIF (imageio). ``hold_last`` seconds pause on the last frame.

    ``where`` names the caller in error messages (:func:`animate` passes its own name).
    """
    import imageio.v3 as iio

    frames = list(frames)
    if not frames:
        raise ValueError(f"{where}: got no frames; pass a list of images (tensors or arrays)")
    arrays = [_frame_to_uint8(f, where) for f in frames]
    shapes = {a.shape for a in arrays}
    if len(shapes) > 1:
        raise ValueError(f"{where}: every frame must have the same shape, got {sorted(shapes)}")
    shape = arrays[0].shape
    if len(shape) not in (2, 3) or (len(shape) == 3 and shape[2] not in (3, 4)):
        raise ValueError(f"{where}: a frame must be (H, W), (H, W, 3) or (C, H, W); got {shape}")
    _checks.number(fps, "fps (frames per second)", where, 0.0, low_open=True)
    _checks.number(hold_last, "hold_last (seconds on the last frame)", where, 0.0)
    _checks.positive_int(scale, "scale (pixel repetition)", where)
    if scale != 1:
        arrays = [np.kron(a, np.ones((scale, scale) + (1,) * (a.ndim - 2), dtype=np.uint8)) for a in arrays]
    durations = [1000.0 / fps] * len(arrays)
    durations[-1] += 1000.0 * hold_last
    buffer = io.BytesIO()
    iio.imwrite(buffer, np.stack(arrays), extension=".gif", loop=0,
                duration=durations if len(durations) > 1 else durations[0])  # Pillow wants a number for one frame
    return buffer.getvalue()


def animate(frames: Sequence, fps: float = 10.0, hold_last: float = 1.0, scale: int = 1):
    """Frames -> an animated GIF shown inline: ``IPython.display.Image(data=..., format="gif")``.

    Frames are tensors in [-1, 1] ((H, W), (1, H, W) or (3, H, W)), or arrays (uint8, or floats
    in [0, 1]), all of one shape. ``scale`` enlarges small images by pixel repetition.
    """
    from IPython.display import Image

    return Image(data=gif_bytes(frames, fps=fps, hold_last=hold_last, scale=scale, where="animate()"), format="gif")


def choose_frames(states: Sequence[torch.Tensor], num_frames: int) -> list[int]:
    """Indices of ``num_frames`` states of a run (noise first), spent where the picture changes.

    The states are spaced evenly in their distance to the final one (mean absolute difference,
    made monotone), not evenly in time: a DDPM run spends many steps on pure noise, and those get
    few frames. The first and the last state are always kept.
    """
    _checks.positive_int(num_frames, "num_frames", "choose_frames()", minimum=2)
    if len(states) == 0:
        raise ValueError("choose_frames(): got no states; pass the states of a run, e.g. run.xs of a Trajectory")
    last = _checks.finite(states[-1].detach().float().cpu(), "the last state", "choose_frames()")
    distance = np.array([float((s.detach().float().cpu() - last).abs().mean()) for s in states])
    if not np.isfinite(distance).all():
        raise ValueError(f"choose_frames(): state {int(np.argmax(~np.isfinite(distance)))} holds NaN or infinity; "
                         "the run diverged there")
    envelope = np.minimum.accumulate(distance)
    targets = np.linspace(envelope[0], 0.0, num_frames)
    indices = {0, len(states) - 1}
    indices.update(int(np.argmax(envelope <= target + 1e-12)) for target in targets)
    return sorted(indices)


def _label_font(size: int):
    from PIL import ImageFont

    try:
        return ImageFont.load_default(size=size)
    except (TypeError, OSError):  # Pillow < 10.1, or no FreeType: matplotlib's bundled DejaVu Sans
        from matplotlib import font_manager
        return ImageFont.truetype(font_manager.findfont("DejaVu Sans"), size)


def label_frame(frame, text: str, width: int | None = GIF_WIDTH) -> np.ndarray:
    """A frame (tensor in [-1, 1] or uint8 array) scaled to ``width`` pixels (nearest neighbour) with
    ``text`` in a white strip above it: how the book labels each frame of a GIF with its step."""
    from PIL import Image, ImageDraw

    image = Image.fromarray(_frame_to_uint8(frame, "label_frame()")).convert("RGB")
    if width is not None and image.width != width:
        image = image.resize((width, round(image.height * width / image.width)), Image.NEAREST)
    size = max(14, image.width // 26)
    canvas = Image.new("RGB", (image.width, image.height + int(1.6 * size)), "white")
    canvas.paste(image, (0, canvas.height - image.height))
    ImageDraw.Draw(canvas).text((size // 2, int(0.25 * size)), text, fill="black", font=_label_font(size))
    return np.asarray(canvas)


def grid_frames(trajectory: Sequence[torch.Tensor], nrow: int = 4, num_frames: int | None = 50,
                labels: Sequence | None = None, by_change: bool = False, width: int | None = GIF_WIDTH) -> list:
    """Turn a sampling trajectory (a list of batches, noise first) into grid images for :func:`animate`.

    Keeps at most ``num_frames`` batches: evenly spaced in time, or with ``by_change=True`` where the
    picture changes (:func:`choose_frames`); the first and the last are always kept. With ``labels``
    (one per state, e.g. ``run.t`` of a :class:`~ddpm_lessons.sampling.Trajectory`: the paper's
    subscript t of x_t), each frame is scaled to ``width`` and labelled "x_t, t = …".
    """
    trajectory = list(trajectory)
    if not trajectory:
        raise ValueError("grid_frames(): the trajectory is empty")
    if num_frames is not None:
        _checks.positive_int(num_frames, "num_frames", "grid_frames()")
    if labels is not None and len(labels) != len(trajectory):
        raise ValueError(f"grid_frames(): labels must have one entry per state, {len(trajectory)}; got {len(labels)}")
    keep = list(range(len(trajectory)))
    if num_frames is not None and len(trajectory) > num_frames:
        keep = (choose_frames(trajectory, num_frames) if by_change else
                np.unique(np.linspace(0, len(trajectory) - 1, num_frames).round().astype(int)).tolist())
    grids = [image_grid(trajectory[i], nrow=nrow) * 2.0 - 1.0 for i in keep]
    if labels is None:
        return grids
    return [label_frame(grid, f"x_t, t = {labels[i]}" if isinstance(labels[i], int) else str(labels[i]), width)
            for grid, i in zip(grids, keep)]


def table_markdown(header: Sequence[str], rows: Sequence[Sequence], caption: str | None = None) -> str:
    """A Markdown table (with an optional caption line above it) from a header and rows of cells."""
    if not header or any(len(row) != len(header) for row in rows):
        raise ValueError(f"table(): every row needs {len(header)} cells, one per column of the header")

    def cells(values):  # a "|" inside a cell (q(x_t | x_0)) would start a new column: escape it
        return " | ".join(str(value).replace("|", "\\|") for value in values)

    lines = [f"| {cells(header)} |", f"|{'|'.join('---' for _ in header)}|"]
    lines += [f"| {cells(row)} |" for row in rows]
    return (f"{caption}\n\n" if caption else "") + "\n".join(lines) + "\n"


def show_table(header: Sequence[str], rows: Sequence[Sequence], caption: str | None = None):
    """Display a table of results in a notebook (rendered as a table on the book's website)."""
    from IPython.display import Markdown, display

    display(Markdown(table_markdown(header, rows, caption)))
