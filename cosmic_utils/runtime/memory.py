"""Peak resident memory of this process: the one reader of ``VmHWM`` (steps, measurements).

(:mod:`cosmic_utils.cloud.lambda_child` keeps a copy: it runs before the package is importable.)
"""

from __future__ import annotations

import resource


def read_hwm_mb(status_path: str = "/proc/self/status") -> float | None:
    """``VmHWM`` (peak RSS since start or the last reset) in MB (2**20 bytes); ``None`` off Linux."""
    try:
        with open(status_path) as fh:
            for line in fh:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 1024.0
    except (OSError, ValueError, IndexError):
        pass
    return None


def peak_rss_mb() -> float:
    """Peak resident memory of this process so far, MB (2**20 bytes): ``VmHWM`` where available,
    as ``ru_maxrss`` includes the parent's peak after fork + exec (the local backend's children)."""
    hwm = read_hwm_mb()
    return hwm if hwm is not None else resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0
