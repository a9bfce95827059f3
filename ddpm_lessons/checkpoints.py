"""Checkpoints: written atomically, verified on load (chapter 5: surviving a Colab disconnect).

A checkpoint file is a one-line header (the format and the SHA-256 of the payload), then the
payload written by ``torch.save``. :func:`save` writes it to a temporary file of its own in the same
folder and renames it over the target, so a crash or a kill mid-write leaves the old file (or
none), and two processes saving to one path never see each other's half-written files. :func:`load`
reads it with ``weights_only=True`` (no code runs) after checking the header and the checksum, so a
truncated or altered file is refused with a message that says so, never loaded with wrong tensors.
"""
from __future__ import annotations

import hashlib
import io
import os
import pickle
import tempfile
from pathlib import Path

import torch

FORMAT = "ddpm_lessons.checkpoint/2"
_MAGIC = b"DDPMLESSONS "


class CheckpointError(ValueError):
    """A checkpoint that cannot be used: missing, corrupt, foreign, or not matching the run."""


def _path(path, where: str) -> Path:
    if not isinstance(path, (str, os.PathLike)) or not str(path):
        raise ValueError(f"{where}: the checkpoint path must be a file name (str or Path), got {path!r}")
    path = Path(path).expanduser()
    if path.is_dir():
        raise ValueError(f"{where}: the checkpoint path {path} is a folder; give a file name inside it, "
                         f"e.g. {path / 'model.pt'}")
    return path


def check_writable(path) -> Path:
    """Fail early (before training) when ``path`` cannot hold a checkpoint: a folder, or no write access."""
    path = _path(path, "checkpoint_path")
    folder = path.parent
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        raise ValueError(f"checkpoint_path: cannot create the folder {folder} ({error.strerror}); "
                         "choose a folder you can write to") from error
    if not os.access(folder, os.W_OK):
        raise ValueError(f"checkpoint_path: the folder {folder} is not writable; choose a folder you can write to")
    return path


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except (PermissionError, OSError):
        return True
    return True


def _remove_stale_temporaries(path: Path) -> None:
    """Remove temporary files of ``path`` left by writers that were killed (their process is gone).

    Names are compared as plain strings (no wildcard patterns), and a file whose writer still runs
    is left alone, so a concurrent save to the same path is never disturbed.
    """
    prefix = f".{path.name}."
    try:
        names = os.listdir(path.parent)
    except OSError:
        return
    for name in names:
        if not (name.startswith(prefix) and name.endswith(".tmp")):
            continue
        pid = name[len(prefix):].split(".", 1)[0]
        if pid.isdigit() and int(pid) != os.getpid() and not _pid_alive(int(pid)):
            try:
                (path.parent / name).unlink()
            except OSError:
                pass


def serialize(state: dict) -> bytes:
    """``state`` as the bytes of a checkpoint file (header with checksum, then the payload): a
    snapshot that :func:`write` can put on disk later."""
    buffer = io.BytesIO()
    try:
        torch.save({"format": FORMAT, **state}, buffer)
    except (AttributeError, TypeError, pickle.PicklingError) as error:
        raise ValueError(f"checkpoint: the state must hold tensors and plain values (numbers, strings, lists, dicts), "
                         f"which any later run can load; this one cannot be saved ({error})") from None
    payload = buffer.getvalue()
    return _MAGIC + f"{FORMAT} sha256={hashlib.sha256(payload).hexdigest()}\n".encode() + payload


def write(path, data: bytes) -> Path:
    """Put checkpoint bytes (:func:`serialize`) at ``path`` atomically: a temporary file of this process
    in the same folder, flushed to disk, renamed over the target. Raises ``OSError`` with the reason when
    the disk is full or read-only; the old file stays."""
    path = check_writable(path)
    handle, temporary = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.{os.getpid()}.", suffix=".tmp")
    try:
        with os.fdopen(handle, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(temporary, 0o666 & ~umask)   # mkstemp makes 0600; a checkpoint is an ordinary file
        os.replace(temporary, path)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise
    _remove_stale_temporaries(path)
    return path


def save(path, state: dict) -> Path:
    """Write ``state`` (a dict of tensors and plain values) to ``path`` atomically, with a checksum."""
    return write(path, serialize(state))


def load(path) -> dict:
    """Read a checkpoint written by :func:`save`, checking its header and checksum first.

    A missing, truncated, altered or foreign file raises :class:`CheckpointError` saying which
    and what to do.
    """
    path = _path(path, "load()")
    if not path.is_file():
        raise CheckpointError(f"no checkpoint at {path}. Train without resume=True to start afresh, "
                              "or pass the path of an existing checkpoint.")
    data = path.read_bytes()
    newline = data.find(b"\n", 0, 200)
    header = data[:newline].decode("ascii", "replace") if data.startswith(_MAGIC) and newline > 0 else ""
    if not header.startswith(_MAGIC.decode() + FORMAT + " sha256="):
        raise CheckpointError(f"{path} is not a ddpm_lessons checkpoint (format {FORMAT!r} expected); "
                              "pass a file saved by train(..., checkpoint_path=...) or checkpoints.save().")
    payload = data[newline + 1:]
    if hashlib.sha256(payload).hexdigest() != header.rsplit("sha256=", 1)[1]:
        raise CheckpointError(f"{path} is corrupt: its contents do not match the checksum written with them "
                              "(truncated, or changed on disk). Delete it to start afresh, or use an earlier copy.")
    try:
        state = torch.load(io.BytesIO(payload), map_location="cpu", weights_only=True)
    except Exception as error:
        raise CheckpointError(f"{path} could not be read ({type(error).__name__}: {error}); "
                              "delete it to start afresh") from error
    if not isinstance(state, dict) or state.get("format") != FORMAT:
        raise CheckpointError(f"{path} is not a ddpm_lessons checkpoint (format {FORMAT!r} expected)")
    return state
