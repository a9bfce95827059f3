import math

import pytest
import torch

from ddpm_lessons import data
from ddpm_lessons.metrics import mean_distance_to_curve


def test_scaling_round_trip():
    x = torch.arange(256, dtype=torch.uint8).reshape(1, 16, 16)
    y = data.to_model_range(x)
    assert y.min() == -1 and y.max() == 1
    assert torch.allclose(data.to_image_range(y) * 255, x.float(), atol=1e-4)
    assert torch.equal(data.to_model_range(torch.tensor([0.0, 0.5, 1.0])), torch.tensor([-1.0, 0.0, 1.0]))
    assert data.to_image_range(torch.tensor([-3.0, 3.0])).tolist() == [0.0, 1.0]  # clamped
    with pytest.raises(ValueError):
        data.to_model_range(torch.tensor([1, 2], dtype=torch.int32))
    with pytest.raises(ValueError):
        data.to_image_range([0.0, 1.0])


def test_fashion_mnist_from_data_root():
    ds = data.fashion_mnist(train=True)
    x, y = ds[0]
    assert x.shape == (1, 28, 28) and x.dtype == torch.float32
    assert -1.0 <= x.min() and x.max() <= 1.0
    assert 0 <= y < 10
    test = data.fashion_mnist(train=False)
    assert len(test) > 0 and not test.train
    assert ("SUBSET" in data.describe(ds)) == (len(ds) != 60_000)


def test_fashion_mnist_sizes_match_the_datasets(tmp_path):
    """The sizes read from the raw files' headers are those of the loaded splits; a root without the
    files gives None."""
    assert data.fashion_mnist_sizes() == (len(data.fashion_mnist(train=True)), len(data.fashion_mnist(train=False)))
    assert data.fashion_mnist_sizes(tmp_path) == (None, None)


def test_describe_names_the_split_its_size_and_no_path():
    text = data.describe(data.fashion_mnist(train=True))
    assert text.startswith("FashionMNIST train: ") and "/" not in text


def test_fashion_mnist_tensors_are_uint8_with_all_classes():
    images, labels = data.fashion_mnist_tensors(train=True)
    assert images.dtype == torch.uint8 and images.shape[1:] == (1, 28, 28)
    assert labels.shape == (len(images),)
    assert set(labels.tolist()) == set(range(10))


def test_fashion_mnist_offline_missing_data_error(monkeypatch, tmp_path):
    monkeypatch.setenv("DDPM_LESSONS_OFFLINE", "1")
    monkeypatch.setenv("DDPM_LESSONS_DATA", str(tmp_path))
    with pytest.raises(FileNotFoundError) as info:
        data.fashion_mnist()
    message = str(info.value)
    assert str(tmp_path / "FashionMNIST" / "raw") in message  # the folder it looked in
    assert "DDPM_LESSONS_DATA" in message  # the variable that sets it
    assert "download" in message.lower() and "DDPM_LESSONS_OFFLINE" in message  # how to download


def test_fashion_mnist_bad_argument():
    with pytest.raises(ValueError):
        data.fashion_mnist(train="yes")


def test_butterfly_points_lie_on_the_curve():
    g = torch.Generator().manual_seed(0)
    points = data.butterfly(2000, generator=g)
    assert points.shape == (2000, 2) and points.dtype == torch.float32
    # back to polar: every point satisfies r = e^{cos θ} - 2 cos 4θ + sin^5(θ/12) for some θ;
    # check against a dense curve instead of inverting the angle
    curve = data.butterfly_curve(200_000)
    # in chunks of 20 points: a 20 x 200,000 distance matrix (16 MB), not 2,000 x 200,000 (1.6 GB)
    distance = torch.cat([torch.cdist(part, curve).min(dim=1).values for part in points.split(20)])
    assert distance.max() < 2e-3
    assert points.abs().max() < 2.5


def test_butterfly_radius_formula():
    theta = torch.tensor([0.0, math.pi / 2, math.pi])
    expected = [math.e - 2.0, 1.0 - 2.0 + math.sin(math.pi / 24) ** 5, math.exp(-1) - 2.0 + math.sin(math.pi / 12) ** 5]
    assert torch.allclose(data.butterfly_radius(theta), torch.tensor(expected), atol=1e-6)


def test_butterfly_noise_and_reproducibility():
    a = data.butterfly(500, noise=0.1, generator=torch.Generator().manual_seed(1))
    b = data.butterfly(500, noise=0.1, generator=torch.Generator().manual_seed(1))
    assert torch.equal(a, b)
    clean = data.butterfly_curve(100_000)
    offset = mean_distance_to_curve(a, clean)   # in blocks: 500 × 100,000 distances at once would be 200 MB
    assert 0.03 < offset < 0.15  # about the noise level (distance to the curve, not to the point)


@pytest.mark.parametrize("kwargs", [dict(n=0), dict(n=2.5), dict(n=10, noise=-1)])
def test_butterfly_bad_input(kwargs):
    with pytest.raises(ValueError):
        data.butterfly(**kwargs)


def test_sample_photo():
    photo = data.sample_photo(64)
    assert photo.dim() == 3 and photo.shape[0] == 1 and min(photo.shape[1:]) == 64
    assert -1.0 <= photo.min() < -0.5 and 0.5 < photo.max() <= 1.0  # real contrast
    assert min(data.sample_photo(None).shape[1:]) == 512
    with pytest.raises(ValueError):
        data.sample_photo(3)


def _damaged_copy(tmp_path, damage):
    import shutil

    shutil.copytree(data.settings.data_root() / "FashionMNIST", tmp_path / "FashionMNIST")
    raw = tmp_path / "FashionMNIST" / "raw"
    for file in raw.iterdir():
        file.chmod(0o644)
    damage(raw / "train-images-idx3-ubyte", raw / "train-labels-idx1-ubyte")
    return tmp_path


def _truncate(images, labels):
    images.write_bytes(images.read_bytes()[:-100])


def _wrong_magic(images, labels):
    content = bytearray(images.read_bytes())
    content[3] = 1  # 2049 (labels) instead of 2051 (images)
    images.write_bytes(bytes(content))


def _fewer_labels(images, labels):
    content = bytearray(labels.read_bytes()[:-10])
    content[4:8] = (int.from_bytes(content[4:8], "big") - 10).to_bytes(4, "big")
    labels.write_bytes(bytes(content))


@pytest.mark.skipif(not (data.settings.data_root() / "FashionMNIST" / "raw").is_dir(), reason="needs the data")
@pytest.mark.parametrize("damage, words", [
    (_truncate, r"train-images-idx3-ubyte .* header says \d+ images .* \(truncated or damaged\)"),
    (_wrong_magic, r"magic number is 2049, not 2051"),
    (_fewer_labels, r"disagree: .* holds \d+ images but .* \d+ labels"),
])
def test_damaged_raw_files_are_named(tmp_path, damage, words):
    root = _damaged_copy(tmp_path, damage)
    with pytest.raises(ValueError, match=words):
        data.fashion_mnist(root=root)
