"""Peak resident memory of this process: the one reader of ``VmHWM`` (steps, measurements).

(:mod:`cosmic_utils.cloud.lambda_child` keeps a standard-library copy: it runs inside the unpacked
zip before any of the package is imported, and must not import it.)
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
    """Peak resident memory of this process so far, MB (2**20 bytes).

    ``VmHWM`` from /proc/self/status where available: ``ru_maxrss`` would include the parent's peak
    when this process was started by fork + exec (the local backend's handler processes).
    """
    hwm = read_hwm_mb()
    if hwm is not None:
        return hwm
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0
