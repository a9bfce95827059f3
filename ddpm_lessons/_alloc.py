"""Keep freed memory for reuse instead of handing it back to the system (glibc only).

A U-Net step allocates and frees the same large activation buffers again and again. By default glibc
serves large blocks with ``mmap`` and returns freed ones to the operating system at once, so every
step faults in fresh zeroed pages (tens of MiB per denoiser call), which on a CPU costs more than the
arithmetic of the small networks in this book. Raising glibc's mmap and trim thresholds keeps those
blocks in the heap for the next step (the same as setting ``MALLOC_MMAP_THRESHOLD_`` and
``MALLOC_TRIM_THRESHOLD_``, done from the code so that no reader has to). Elsewhere (macOS, Windows,
musl) this does nothing; a user's own ``MALLOC_*`` settings are left alone.
"""
from __future__ import annotations

import ctypes
import ctypes.util
import os
import platform

M_TRIM_THRESHOLD = -1
M_MMAP_THRESHOLD = -3
MMAP_THRESHOLD = 32 * 2**20
"""Bytes: blocks below this come from the heap (glibc's largest allowed value on 64-bit systems)."""
TRIM_THRESHOLD = 512 * 2**20
"""Bytes: free memory kept at the top of the heap before it is returned to the system."""

configured: bool = False
"""True once the thresholds are set in this process."""


def keep_freed_memory() -> bool:
    """Set glibc's mmap and trim thresholds (see the module docstring); True where it took effect."""
    global configured
    if configured:
        return True
    if platform.system() != "Linux" or any(os.environ.get(v) for v in ("MALLOC_MMAP_THRESHOLD_", "MALLOC_TRIM_THRESHOLD_")):
        return False
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        mallopt = libc.mallopt
    except (OSError, AttributeError):  # not glibc (musl has no mallopt)
        return False
    mallopt.argtypes, mallopt.restype = [ctypes.c_int, ctypes.c_int], ctypes.c_int
    configured = bool(mallopt(M_MMAP_THRESHOLD, MMAP_THRESHOLD) and mallopt(M_TRIM_THRESHOLD, TRIM_THRESHOLD))
    return configured
