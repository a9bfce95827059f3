"""Datasets of the book: FashionMNIST, the 2-D butterfly curve and a sample photo.

The models see data in [-1, 1] (the book's convention, stated in its introduction);
:func:`to_model_range` and :func:`to_image_range` convert to and from images in [0, 1].
"""
from __future__ import annotations

import hashlib
import math
import os
from pathlib import Path

import numpy as np
import torch

from . import _checks, settings

CLASS_NAMES = (
    "T-shirt/top", "Trouser", "Pullover", "Dress", "Coat",
    "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot",
)
FULL_SIZES = {True: 60_000, False: 10_000}
_RAW_FILES = {
    True: ("train-images-idx3-ubyte", "train-labels-idx1-ubyte"),
    False: ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"),
}


# ---------------------------------------------------------------- scaling
def to_model_range(x: torch.Tensor) -> torch.Tensor:
    """Images to the models' range [-1, 1]: uint8 in 0…255, or floats in [0, 1]."""
    if not torch.is_tensor(x):
        raise ValueError(f"to_model_range(): expected a tensor of images, got {type(x).__name__}")
    if x.dtype == torch.uint8:
        return x.float().div(127.5).sub(1.0)
    if not x.is_floating_point():
        raise ValueError(f"to_model_range(): expected uint8 images (0…255) or floats in [0, 1], got dtype {x.dtype}; "
                         "convert integer images with x.to(torch.uint8)")
    if x.numel():
        low, high = (float(v) for v in torch.aminmax(x.detach()))
        if low < -1e-6:
            raise ValueError(f"to_model_range(): x has values from {low:.3g} to {high:.3g}, but floats must lie in "
                             "[0, 1]; negative values mean it is probably in [-1, 1] already (applied twice?)")
        if high > 1 + 1e-6:
            raise ValueError(f"to_model_range(): x has values up to {high:.3g}, but floats must lie in [0, 1]; "
                             "for images in 0…255 pass them as uint8 (x.to(torch.uint8)) or divide by 255 first")
    return x * 2.0 - 1.0


def to_image_range(x: torch.Tensor) -> torch.Tensor:
    """Back from [-1, 1] to images in [0, 1], clamped (samples can overshoot a little)."""
    if not torch.is_tensor(x) or not x.is_floating_point():
        got = f"dtype {x.dtype}" if torch.is_tensor(x) else type(x).__name__
        raise ValueError(f"to_image_range(): expected a floating-point tensor in [-1, 1], got {got}")
    if x.numel():
        low, high = (float(v) for v in torch.aminmax(x.detach()))
        if high > 2.0 and low >= 0.0:
            raise ValueError(f"to_image_range(): x has values from {low:.3g} to {high:.3g}: it looks like images in "
                             "0…255 already, not the models' [-1, 1]; there is nothing to convert")
        if low >= 0.0 and high <= 1.0 and high - low > 0.2:
            import warnings
            warnings.warn(f"to_image_range(): x lies in [0, 1] (values from {low:.3g} to {high:.3g}): it looks like "
                          "images in [0, 1] already (applied twice?); converting again washes them out to [0.5, 1]",
                          _checks.DataRangeWarning, stacklevel=2)
        if not (math.isfinite(low) and math.isfinite(high)):
            raise ValueError("to_image_range(): x contains NaN or infinity; the samples are broken (see the "
                             "appendix: why are my samples noise?)")
    return ((x + 1.0) / 2.0).clamp(0.0, 1.0)


# ---------------------------------------------------------------- FashionMNIST
def _missing_files(root: Path, train: bool) -> list[Path]:
    raw = root / "FashionMNIST" / "raw"
    return [raw / name for name in _RAW_FILES[train] if not (raw / name).exists()]


def _missing_data_message(root: Path, missing: list[Path], reason: str) -> str:
    names = ", ".join(p.name for p in missing)
    return (
        f"FashionMNIST is not available: {reason}.\n"
        f"  Looked in: {root / 'FashionMNIST' / 'raw'} (missing: {names})\n"
        f"  The folder comes from ${settings.DATA_ENV} (now: "
        f"{'set' if settings.DATA_ENV in os.environ else 'unset, so the default cache'}).\n"
        f"  To download it, run with network access and without {settings.OFFLINE_ENV}=1, e.g.\n"
        f"    python -c \"import ddpm_lessons as dl; dl.data.fashion_mnist(); dl.data.fashion_mnist(train=False)\"\n"
        f"  or point {settings.DATA_ENV} at a folder that holds FashionMNIST/raw/ "
        f"(the repository's CI uses ../shared/datasets)."
    )


_IDX_MAGIC = {"images": 2051, "labels": 2049}


def _idx_count(path: Path, kind: str) -> int:
    """The number of items in a raw IDX file, after checking its header against its size (a clear
    error naming the file and what is wrong, instead of "download failed" or a wrongly shaped set)."""
    size = path.stat().st_size
    header = 16 if kind == "images" else 8
    problem = None
    with open(path, "rb") as f:
        head = f.read(header)
    if len(head) < header:
        problem = f"it has {size} bytes, fewer than its {header}-byte header (truncated)"
    else:
        magic, count = int.from_bytes(head[:4], "big"), int.from_bytes(head[4:8], "big")
        rows, cols = (int.from_bytes(head[8:12], "big"), int.from_bytes(head[12:16], "big")) if kind == "images" else (1, 1)
        if magic != _IDX_MAGIC[kind]:
            problem = f"its magic number is {magic}, not {_IDX_MAGIC[kind]} (an IDX {kind} file)"
        elif kind == "images" and (rows, cols) != (28, 28):
            problem = f"its header says {rows}x{cols} images, not 28x28"
        elif size != header + count * rows * cols:
            problem = (f"its header says {count} {kind} ({header + count * rows * cols} bytes), but the file has "
                       f"{size} bytes (truncated or damaged)")
    if problem:
        raise ValueError(f"FashionMNIST file {path.name} in {path.parent} is not usable: {problem}. Delete it and "
                         "download it again (or copy an intact one there).")
    return count


def _check_raw_files(root: Path, train: bool) -> None:
    raw = root / "FashionMNIST" / "raw"
    images, labels = (raw / name for name in _RAW_FILES[train])
    n_images, n_labels = _idx_count(images, "images"), _idx_count(labels, "labels")
    if n_images != n_labels:
        raise ValueError(f"FashionMNIST files in {raw} disagree: {images.name} holds {n_images} images but "
                         f"{labels.name} {n_labels} labels. Replace both with intact copies.")
    largest = max(labels.read_bytes()[8:], default=0)
    if largest >= len(CLASS_NAMES):
        raise ValueError(f"FashionMNIST file {labels.name} in {raw} is damaged: it holds the label {largest}, but the "
                         f"classes are 0 … {len(CLASS_NAMES) - 1}. Replace it with an intact copy.")


def fashion_mnist(train: bool = True, root: str | Path | None = None):
    """FashionMNIST through torchvision, as images in [-1, 1] of shape (1, 28, 28) and labels.

    Reads from :func:`ddpm_lessons.settings.data_root` (``$DDPM_LESSONS_DATA``). Downloads what is
    missing unless ``DDPM_LESSONS_OFFLINE=1``; then, or when the download fails, the error names the
    folder it looked in, the variable that sets it and how to download.
    The raw uint8 images are ``ds.data`` (N, 28, 28): the fast training path uses them directly.
    """
    from torchvision import datasets, transforms

    if not isinstance(train, bool):
        raise ValueError(f"fashion_mnist(): train must be True or False, got {train!r}")
    if root is not None and not isinstance(root, (str, os.PathLike)):
        raise ValueError(f"fashion_mnist(): root must be a folder (str or Path) that holds FashionMNIST/raw, got {root!r}")
    root = Path(root).expanduser() if root is not None else settings.data_root()
    missing = _missing_files(root, train)
    if missing and settings.offline():
        raise FileNotFoundError(
            _missing_data_message(root, missing, f"offline mode ({settings.OFFLINE_ENV}=1)")
        )
    if not missing:
        _check_raw_files(root, train)
    transform = transforms.Compose([transforms.ToTensor(), transforms.Lambda(to_model_range)])
    try:
        return datasets.FashionMNIST(str(root), train=train, download=bool(missing), transform=transform)
    except (OSError, RuntimeError) as error:  # no network, a proxy, a full disk, ...
        raise FileNotFoundError(
            _missing_data_message(root, missing or _missing_files(root, train), f"download failed ({error})")
        ) from error


def _header_count(path: Path) -> int | None:
    """The number of items that an IDX file (FashionMNIST's raw format) says it holds (its header only;
    None when the file is missing or shorter than a header)."""
    try:
        with open(path, "rb") as f:
            header = f.read(8)
    except OSError:
        return None
    return int.from_bytes(header[4:8], "big") if len(header) == 8 else None


def fashion_mnist_sizes(root: str | Path | None = None) -> tuple[int | None, int | None]:
    """How many training and test images the data root holds (``None`` for a split that is not
    there), read from the raw files' headers without loading the images."""
    raw = (Path(root).expanduser() if root is not None else settings.data_root()) / "FashionMNIST" / "raw"
    return tuple(_header_count(raw / _RAW_FILES[train][0]) for train in (True, False))


def fashion_mnist_tensors(train: bool = True, root: str | Path | None = None):
    """The whole split as tensors: uint8 images (N, 1, 28, 28) and int64 labels (N,)."""
    ds = fashion_mnist(train=train, root=root)
    return ds.data.unsqueeze(1).clone(), ds.targets.clone()


def fingerprint(images: torch.Tensor) -> str:
    """12 hex digits of the SHA-256 of a tensor's bytes: names what a cached model was trained on."""
    if not torch.is_tensor(images):
        raise ValueError(f"fingerprint(): expected a tensor of images, got {type(images).__name__}")
    return hashlib.sha256(images.detach().cpu().contiguous().numpy().tobytes()).hexdigest()[:12]


def describe(ds) -> str:
    """One line naming the split and its size, and saying plainly when it is not the full dataset."""
    if not hasattr(ds, "train") or not hasattr(ds, "__len__"):
        raise ValueError(f"describe(): expected a FashionMNIST dataset (from dl.data.fashion_mnist()), got "
                         f"{type(ds).__name__}")
    n, full = len(ds), FULL_SIZES[bool(ds.train)]
    split = "train" if ds.train else "test"
    if n == full:
        return f"FashionMNIST {split}: {n:,} images (the full split)"
    return (f"FashionMNIST {split}: {n:,} images -- a SUBSET, not the full {full:,}; "
            "results on it are not comparable with published ones")


# ---------------------------------------------------------------- 2-D butterfly
def butterfly_radius(theta: torch.Tensor) -> torch.Tensor:
    """Temple Fay's butterfly curve r(θ) = e^{cos θ} − 2 cos 4θ + sin⁵(θ/12)."""
    return torch.exp(torch.cos(theta)) - 2.0 * torch.cos(4.0 * theta) + torch.sin(theta / 12.0) ** 5


BUTTERFLY_SCALE = 2.0  # divides the curve so that the points have roughly unit spread


def _butterfly_xy(theta: torch.Tensor) -> torch.Tensor:
    r = butterfly_radius(theta)
    return torch.stack([r * torch.sin(theta), r * torch.cos(theta)], dim=1) / BUTTERFLY_SCALE


def butterfly_curve(num: int = 4000) -> torch.Tensor:
    """``num`` points evenly spaced in θ along the curve for θ in [0, 12π], shape (num, 2)."""
    _checks.positive_int(num, "num", "butterfly_curve()", minimum=2)
    return _butterfly_xy(torch.linspace(0.0, 12.0 * math.pi, num, dtype=torch.float64)).float()


def butterfly(n: int, noise: float = 0.0, generator: torch.Generator | None = None) -> torch.Tensor:
    """``n`` points on the butterfly curve (θ ~ U[0, 12π]) plus Gaussian noise of std ``noise``.

    Shape (n, 2), float32, scaled by 1/2 so that the data fill roughly [-2, 2]².
    """
    _checks.positive_int(n, "n", "butterfly()")
    _checks.number(noise, "noise", "butterfly()", 0.0)
    generator = _checks.generator(generator, "butterfly()")
    theta = torch.rand(n, generator=generator, dtype=torch.float64) * 12.0 * math.pi
    points = _butterfly_xy(theta).float()
    if noise > 0:
        points = points + noise * torch.randn(n, 2, generator=generator)
    return points


# ---------------------------------------------------------------- a photo
def sample_photo(size: int | None = 128) -> torch.Tensor:
    """Matplotlib's bundled photo (Grace Hopper), grayscale, in [-1, 1], shape (1, H, W).

    ``size`` resizes the shorter side (``None`` keeps the original 600x512).
    """
    import matplotlib.cbook
    from PIL import Image

    if size is not None:
        _checks.positive_int(size, "size (None, or the shorter side in pixels)", "sample_photo()", minimum=8)
    with matplotlib.cbook.get_sample_data("grace_hopper.jpg") as f:
        image = Image.open(f).convert("L")
        if size is not None:
            w, h = image.size
            scale = size / min(w, h)
            image = image.resize((round(w * scale), round(h * scale)), Image.BICUBIC)
        array = np.asarray(image, dtype=np.uint8).copy()
    return to_model_range(torch.from_numpy(array).unsqueeze(0))
