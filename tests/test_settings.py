import os
from pathlib import Path

import pytest
import torch

import ddpm_lessons as dl
from ddpm_lessons import settings


def test_quick_mode_is_on_in_tests():
    assert os.environ["DDPM_LESSONS_QUICK"] == "1"
    assert settings.QUICK is True
    assert dl.budget(full=20_000, quick=30) == 30


def test_budget_full_mode(monkeypatch):
    monkeypatch.setattr(settings, "QUICK", False)
    assert settings.budget(full=20_000, quick=30) == 20_000
    assert settings.budget(full=0.5, quick=0.1) == 0.5


@pytest.mark.parametrize("full, quick", [(10, 20), (0, 0), (10, 0), (-5, -10), (10, -1)])
def test_budget_rejects_bad_values(full, quick):
    with pytest.raises(ValueError):
        settings.budget(full=full, quick=quick)


@pytest.mark.parametrize("value", ["10", None, True])
def test_budget_rejects_non_numbers(value):
    with pytest.raises(ValueError, match="positive number"):
        settings.budget(full=value, quick=1)


def test_flag_parsing(monkeypatch):
    for value, expected in [("1", True), ("true", True), ("0", False), ("", False), ("no", False)]:
        monkeypatch.setenv("DDPM_LESSONS_OFFLINE", value)
        assert settings.offline() is expected


def test_get_device_on_this_machine():
    device = settings.get_device()
    assert isinstance(device, torch.device)
    if not torch.cuda.is_available():
        assert device.type in {"cpu", "mps"}


def test_seed_everything_repeats_random_draws():
    settings.seed_everything(123)
    a = torch.randn(5)
    settings.seed_everything(123)
    assert torch.equal(a, torch.randn(5))
    with pytest.raises(ValueError):
        settings.seed_everything(-1)


def test_run_info_prints_and_starts_clock(capsys):
    info = settings.run_info()
    printed = capsys.readouterr().out
    for key in ("date", "python", "torch", "device", "mode", "data", "images", "offline"):
        assert key in info and f"{key}: " in printed
    assert "quick" in info["mode"]
    assert 0 <= settings.elapsed() < 60


def test_run_info_prints_no_path_of_the_machine(capsys, monkeypatch, tmp_path):
    """What a reader needs (the dataset, its size, whether it is a subset), not the writer's folders."""
    monkeypatch.setenv("DDPM_LESSONS_DATA", str(tmp_path / "data"))
    monkeypatch.setenv("DDPM_LESSONS_CACHE", str(tmp_path / "cache"))
    settings.run_info()
    printed = capsys.readouterr().out
    for folder in (tmp_path, Path.home(), Path.cwd()):
        assert str(folder) not in printed
    assert "$DDPM_LESSONS_DATA" in printed


def _fake_fashion_mnist(root: Path, train: int, test: int) -> Path:
    """Raw FashionMNIST files whose IDX headers say ``train`` and ``test`` images (no pixels)."""
    raw = root / "FashionMNIST" / "raw"
    raw.mkdir(parents=True)
    for name, count in (("train-images-idx3-ubyte", train), ("t10k-images-idx3-ubyte", test)):
        (raw / name).write_bytes(b"\x00\x00\x08\x03" + count.to_bytes(4, "big") + bytes(8))
    return root


@pytest.mark.parametrize("train, test, expected", [
    (800, 100, "800 train + 100 test (a SUBSET of 60,000 + 10,000)"),
    (60_000, 10_000, "60,000 train + 10,000 test (the full dataset)"),
])
def test_data_source_and_size_in_words(train, test, expected, monkeypatch, tmp_path):
    monkeypatch.setenv("DDPM_LESSONS_DATA", str(_fake_fashion_mnist(tmp_path, train, test)))
    assert settings.data_source() == "FashionMNIST from $DDPM_LESSONS_DATA"
    assert settings.data_size() == expected


def test_data_source_and_size_when_the_data_are_missing(monkeypatch, tmp_path):
    monkeypatch.setenv("DDPM_LESSONS_DATA", str(tmp_path))
    monkeypatch.setenv("DDPM_LESSONS_OFFLINE", "1")
    assert settings.data_size() == "not there (offline: nothing is downloaded)"
    monkeypatch.setenv("DDPM_LESSONS_OFFLINE", "0")
    monkeypatch.delenv("DDPM_LESSONS_DATA")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    assert settings.data_source() == "FashionMNIST from the default cache folder"
    assert settings.data_size() == "none yet (downloaded when first used)"


@pytest.mark.parametrize("threads, expected", [(1, "1 thread)"), (2, "2 threads)"), (16, "16 threads)")])
def test_device_name_counts_threads_in_words(threads, expected, monkeypatch):
    monkeypatch.setattr(torch, "get_num_threads", lambda: threads)
    assert settings.device_name(torch.device("cpu")).endswith(expected)


def test_elapsed_before_run_info(monkeypatch):
    monkeypatch.setattr(settings, "_run_started", None)
    with pytest.raises(RuntimeError, match="run_info"):
        settings.elapsed()


@pytest.mark.parametrize("folder, env, default", [
    (settings.data_root, "DDPM_LESSONS_DATA", "data"),
    (settings.cache_dir, "DDPM_LESSONS_CACHE", "cache"),
])
def test_folders_from_env_and_default(folder, env, default, monkeypatch, tmp_path):
    monkeypatch.setenv(env, str(tmp_path))
    assert folder() == tmp_path
    monkeypatch.delenv(env)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert folder() == tmp_path / "xdg" / "ddpm-lessons" / default
    monkeypatch.delenv("DDPM_LESSONS_DATA", raising=False)
    monkeypatch.delenv("DDPM_LESSONS_CACHE", raising=False)
    assert settings.cache_dir() != settings.data_root()  # the data root may be read-only


def test_freed_memory_is_kept_for_reuse_on_glibc():
    """ddpm_lessons sets glibc's mmap/trim thresholds at import (no page faults per denoiser call),
    and leaves a user's own MALLOC_* settings alone."""
    import os
    import platform
    import subprocess
    import sys

    from ddpm_lessons import _alloc

    if platform.system() != "Linux" or platform.libc_ver()[0] != "glibc":
        assert not _alloc.configured
        return
    assert _alloc.configured
    code = "import ddpm_lessons._alloc as a; print(a.keep_freed_memory())"
    env = {**os.environ, "MALLOC_TRIM_THRESHOLD_": "131072"}
    printed = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True).stdout
    assert printed.strip() == "False"
