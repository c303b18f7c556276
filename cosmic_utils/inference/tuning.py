"""Process-level tuning for the torch engines: keep freed activation memory in the heap.

:func:`keep_freed_memory` raises glibc's mmap and trim thresholds with ``mallopt`` so the
activation buffers a forward pass frees are reused instead of re-faulted (+15 % fp32). It is
process-wide and irreversible, so the published-loop baseline runs in an untuned child process.
Only glibc Linux is tuned. Reasoning: docs/inference.md ("The allocator").
"""

from __future__ import annotations

import ctypes
import ctypes.util
import logging
import platform

log = logging.getLogger(__name__)

# mallopt parameter numbers from glibc's <malloc.h>
_M_TRIM_THRESHOLD = -1
_M_TOP_PAD = -2
_M_MMAP_THRESHOLD = -3

_state: dict[str, bool] = {"tuned": False}


def malloc_tuned() -> bool:
    """Whether :func:`keep_freed_memory` has tuned this process."""
    return _state["tuned"]


def keep_freed_memory(mmap_threshold_mb: int = 32, trim_mb: int = 512, top_pad_mb: int = 64) -> bool:
    """Tune glibc malloc of this process so freed activation buffers are reused; True when tuned (idempotent),
    False where the C library is not glibc or refuses a value. Allocations up to ``mmap_threshold_mb``
    (glibc's maximum: 32) come from the heap; up to ``trim_mb`` of free memory stays at its top;
    ``top_pad_mb`` is grown per ``brk``."""
    if _state["tuned"]:
        return True
    if platform.system() != "Linux" or platform.libc_ver()[0] != "glibc":
        log.info("malloc tuning skipped: not glibc Linux (%s %s)", platform.system(), platform.libc_ver()[0])
        return False
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        mallopt = libc.mallopt
    except (OSError, AttributeError) as exc:
        log.info("malloc tuning skipped: %s", exc)
        return False
    mallopt.argtypes = [ctypes.c_int, ctypes.c_int]
    mallopt.restype = ctypes.c_int
    mb = 1 << 20
    ok = all(mallopt(param, value) == 1 for param, value in (
        (_M_MMAP_THRESHOLD, mmap_threshold_mb * mb),
        (_M_TRIM_THRESHOLD, trim_mb * mb),
        (_M_TOP_PAD, top_pad_mb * mb),
    ))
    _state["tuned"] = ok
    if not ok:
        log.warning("malloc tuning: glibc refused a mallopt value; allocator left partly at defaults")
    return ok
