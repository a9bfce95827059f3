"""Checkpoint files: atomic writes, a checksum that catches corruption, clear errors, no stray files."""
import os
import stat

import pytest
import torch

from ddpm_lessons import checkpoints


def test_round_trip_keeps_tensors_and_values(tmp_path):
    state = {"step": 3, "weights": torch.arange(5.0), "nested": {"a": [1, 2], "b": torch.ones(2, 2)}}
    path = checkpoints.save(tmp_path / "ckpt.pt", state)
    loaded = checkpoints.load(path)
    assert loaded["step"] == 3 and torch.equal(loaded["weights"], state["weights"])
    assert torch.equal(loaded["nested"]["b"], torch.ones(2, 2)) and loaded["format"] == checkpoints.FORMAT


def test_a_flipped_byte_is_detected(tmp_path):
    path = checkpoints.save(tmp_path / "ckpt.pt", {"weights": torch.randn(1000)})
    data = bytearray(path.read_bytes())
    for position in (len(data) // 3, len(data) // 2, len(data) - 10):  # anywhere in the payload
        changed = bytearray(data)
        changed[position] ^= 0x01
        path.write_bytes(bytes(changed))
        with pytest.raises(checkpoints.CheckpointError, match="corrupt"):
            checkpoints.load(path)


@pytest.mark.parametrize("content, message", [
    (b"", "not a ddpm_lessons checkpoint"),
    (b"PK\x03\x04 something else", "not a ddpm_lessons checkpoint"),
])
def test_foreign_files_are_refused(tmp_path, content, message):
    path = tmp_path / "other.pt"
    path.write_bytes(content)
    with pytest.raises(checkpoints.CheckpointError, match=message):
        checkpoints.load(path)


def test_a_plain_torch_save_file_is_refused(tmp_path):
    path = tmp_path / "plain.pt"
    torch.save({"weights": torch.zeros(3)}, path)
    with pytest.raises(checkpoints.CheckpointError, match="not a ddpm_lessons checkpoint"):
        checkpoints.load(path)


def test_missing_file_and_folder_paths(tmp_path):
    with pytest.raises(checkpoints.CheckpointError, match="no checkpoint"):
        checkpoints.load(tmp_path / "none.pt")
    with pytest.raises(ValueError, match="is a folder"):
        checkpoints.save(tmp_path, {"step": 1})
    with pytest.raises(ValueError, match="is a folder"):
        checkpoints.load(tmp_path)


def test_tilde_is_expanded(tmp_path, monkeypatch):
    monkeypatch.setenv("HOME", str(tmp_path))
    path = checkpoints.save("~/run/ckpt.pt", {"step": 1})
    assert path == tmp_path / "run" / "ckpt.pt" and path.is_file()
    assert not (tmp_path / "~").exists()


def test_file_mode_is_that_of_an_ordinary_file(tmp_path):
    path = checkpoints.save(tmp_path / "ckpt.pt", {"step": 1})
    umask = os.umask(0)
    os.umask(umask)
    assert stat.S_IMODE(path.stat().st_mode) == 0o666 & ~umask


def test_atomic_save_keeps_old_file_when_writing_fails(tmp_path, monkeypatch):
    path = tmp_path / "ckpt.pt"
    checkpoints.save(path, {"step": 1})

    def broken_fsync(fd):
        raise KeyboardInterrupt  # a kill in the middle of the write

    monkeypatch.setattr(os, "fsync", broken_fsync)
    with pytest.raises(KeyboardInterrupt):
        checkpoints.save(path, {"step": 2})
    monkeypatch.undo()
    assert checkpoints.load(path)["step"] == 1
    assert [p.name for p in tmp_path.iterdir()] == ["ckpt.pt"]


def test_stale_temporaries_of_dead_writers_go_and_live_ones_stay(tmp_path):
    path = tmp_path / "ckpt.pt"
    dead = tmp_path / ".ckpt.pt.999999999.abc.tmp"      # no process has this id
    alive = tmp_path / f".ckpt.pt.{os.getppid()}.abc.tmp"  # a running process: another writer
    other = tmp_path / ".ckpt[1].pt.999999999.abc.tmp"   # a different checkpoint's file
    for stale in (dead, alive, other):
        stale.write_bytes(b"half a checkpoint")
    checkpoints.save(path, {"step": 3})
    assert not dead.exists() and alive.exists() and other.exists()
    assert checkpoints.load(path)["step"] == 3


def test_names_with_wildcard_characters_are_not_patterns(tmp_path):
    path = tmp_path / "run*[1].pt"
    neighbour = tmp_path / ".run-x[1].pt.999999999.abc.tmp"
    neighbour.write_bytes(b"someone else's")
    checkpoints.save(path, {"step": 1})
    assert neighbour.exists() and checkpoints.load(path)["step"] == 1


def test_two_processes_saving_to_one_path_never_crash(tmp_path):
    import subprocess
    import sys
    import textwrap

    script = textwrap.dedent(f"""
        import sys, torch
        from ddpm_lessons import checkpoints
        for i in range(25):
            checkpoints.save({str(tmp_path / 'shared.pt')!r}, {{"writer": int(sys.argv[1]), "i": i,
                                                               "weights": torch.randn(200_000)}})
    """)
    writers = [subprocess.Popen([sys.executable, "-c", script, str(n)], stderr=subprocess.PIPE) for n in (1, 2)]
    for writer in writers:
        assert writer.wait(timeout=300) == 0, writer.stderr.read().decode()
    state = checkpoints.load(tmp_path / "shared.pt")  # one of the two, whole
    assert state["writer"] in (1, 2) and state["i"] == 24
    assert [p.name for p in tmp_path.iterdir()] == ["shared.pt"]


def test_a_read_only_folder_is_refused_before_anything_runs(tmp_path):
    folder = tmp_path / "read-only"
    folder.mkdir()
    folder.chmod(0o500)
    try:
        if os.access(folder, os.W_OK):  # root ignores the mode bits
            pytest.skip("running as root: a read-only folder is still writable")
        with pytest.raises(ValueError, match="not writable"):
            checkpoints.check_writable(folder / "c.pt")
    finally:
        folder.chmod(0o700)
