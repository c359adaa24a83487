"""Keep freed tensor memory in the process on CPU (glibc malloc), so planning does not page-fault.

A planning step allocates and frees the same large activations (tens of MB) every CEM
iteration. With glibc's defaults those come from ``mmap`` or from heap memory that ``free``
hands back to the kernel, so every iteration faults the pages in again (the kernel zeroes each
one). :func:`keep_freed_memory` serves them from the heap and stops trimming it: the next
iteration reuses warm pages. It is the effect PyTorch's CPU tuning guide gets from jemalloc or
TCMalloc, with two ``mallopt`` calls instead of a preloaded library. The cost: the process keeps
up to ``trim_threshold_mb`` of freed memory. ``demos/bench/bench_planning.py --malloc default`` times
the planners without it.

The planning entry points (``wm-demo``, ``wm-eval`` and its workers, ``wm-serve``, the planning
benchmark) call it; ``WM_KEEP_FREED_MEMORY=0`` turns it off. It does nothing off glibc.
"""

from __future__ import annotations

import ctypes
import os

M_TRIM_THRESHOLD = -1  # glibc mallopt parameters (malloc.h)
M_TOP_PAD = -2
M_MMAP_THRESHOLD = -3
MMAP_THRESHOLD_MAX = 32 * 1024 * 1024  # glibc's largest mmap threshold on 64-bit
ENV_VAR = "WM_KEEP_FREED_MEMORY"

_applied: dict[str, bool] = {}


def _glibc():
    """The process's C library if it is glibc (has ``mallopt`` and ``gnu_get_libc_version``)."""
    try:
        libc = ctypes.CDLL(None)
    except OSError:
        return None
    if not (hasattr(libc, "mallopt") and hasattr(libc, "gnu_get_libc_version")):
        return None
    return libc


def keep_freed_memory(trim_threshold_mb: int = 1024, top_pad_mb: int = 64) -> bool:
    """Serve allocations up to 32 MB from the heap and keep up to ``trim_threshold_mb`` of
    freed heap memory (grown ``top_pad_mb`` at a time). Returns whether it is in effect.

    All three settings are needed together: fixing the mmap threshold alone also fixes glibc's
    trim threshold at its 128 kB default (the heap is handed back after every step), and
    fixing the trim threshold alone sends every large tensor to ``mmap``.
    """
    if os.environ.get(ENV_VAR, "1").strip().lower() in ("0", "false", "no", "off"):
        return False
    if not (1 <= trim_threshold_mb < 2048 and 0 <= top_pad_mb < 2048):  # mallopt takes an int
        raise ValueError(f"need 1 <= trim_threshold_mb < 2048 and 0 <= top_pad_mb < 2048, got "
                         f"{trim_threshold_mb}, {top_pad_mb}")  # fmt: skip
    key = f"{trim_threshold_mb}/{top_pad_mb}"
    if key not in _applied:
        libc = _glibc()
        _applied[key] = libc is not None and all(
            libc.mallopt(param, value) == 1
            for param, value in (
                (M_MMAP_THRESHOLD, MMAP_THRESHOLD_MAX),
                (M_TRIM_THRESHOLD, trim_threshold_mb << 20),
                (M_TOP_PAD, top_pad_mb << 20),
            )
        )
    return _applied[key]
