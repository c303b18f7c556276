"""Progress bars that suit where the output goes: a live bar on a terminal, a few lines in a log.

:func:`progress` returns tqdm on a terminal, the notebook bar in Jupyter, else a
:class:`PlainProgress` (the same tqdm object printing a start line, one per tenth of the way or
one a minute, and an end line, never a ``\\r``). ``COSMIC_PROGRESS=bar|plain|off`` overrides.
Every progress bar of the project goes through here (docs/architecture.md, "Run records").
"""

from __future__ import annotations

import os
import sys
import time
from collections.abc import Iterable
from typing import IO, Any

from tqdm import tqdm as _tqdm
from tqdm.std import tqdm as _std_tqdm

#: Plain lines a bar with a known total prints between its start and end line (one per step).
PLAIN_STEPS = 10
#: Seconds between plain lines when the total is unknown.
PLAIN_INTERVAL_S = 60.0


def _in_notebook() -> bool:
    shell = sys.modules.get("IPython")
    try:
        ip = shell.get_ipython() if shell else None  # type: ignore[attr-defined]
    except Exception:  # noqa: BLE001 - any failure means "not a notebook"
        return False
    return type(ip).__name__ == "ZMQInteractiveShell"


def _is_tty(stream: IO[str]) -> bool:
    try:
        return bool(stream.isatty())
    except (AttributeError, ValueError):
        return False


class PlainProgress(_std_tqdm):
    """A tqdm bar that writes whole lines, at most ``max_lines`` + 2 of them, for logs and CI."""

    def __init__(self, *args: Any, max_lines: int = PLAIN_STEPS, interval_s: float = PLAIN_INTERVAL_S,
                 **kwargs: Any) -> None:
        self._max_lines = max(1, int(max_lines))
        self._interval_s = float(interval_s)
        self._printed_step = -1
        self._printed_lines = 0
        self._last_line_t = 0.0
        self._ended = False
        self._last_emitted: tuple[float, str] | None = None
        # every update reaches display(), which decides itself whether a line is due
        kwargs.update(mininterval=0.0, miniters=1, dynamic_ncols=False, ncols=None)
        super().__init__(*args, **kwargs)

    def _line(self) -> str:
        d = self.format_dict
        unit = d.get("unit") or "it"
        n = d["n"]
        elapsed = d["elapsed"]
        parts = [f"{self.desc}:" if self.desc else "progress:"]
        if d.get("total"):
            parts.append(f"{n:,.0f}/{d['total']:,.0f} {unit} ({100.0 * n / d['total']:.0f}%)")
        else:
            parts.append(f"{n:,.0f} {unit}")
        rate = n / elapsed if elapsed > 0 else 0.0
        speed = f"{rate:,.0f}" if rate >= 100 else f"{rate:.3g}"
        parts.append(f"in {self.format_interval(elapsed)}" + (f", {speed} {unit}/s" if rate else ""))
        if d.get("postfix"):
            parts.append(f"[{d['postfix']}]")
        return " ".join(parts)

    def _due(self) -> bool:
        if self._printed_lines == 0:
            return True
        if self._printed_lines >= self._max_lines + 1:
            return False
        if self.total:
            step = int(self._max_lines * min(self.n, self.total) / self.total)
            return step > self._printed_step
        return time.monotonic() - self._last_line_t >= self._interval_s

    def display(self, msg: str | None = None, pos: int | None = None) -> bool:
        if msg == "" or self._ended or not self._due():  # "": a request to clear the bar, nothing to clear
            return False
        self._emit()
        return True

    def _emit(self) -> None:
        self._last_emitted = (self.n, str(self.format_dict.get("postfix") or ""))
        self.fp.write(self._line() + "\n")
        self.fp.flush()
        self._printed_lines += 1
        self._last_line_t = time.monotonic()
        if self.total:
            self._printed_step = int(self._max_lines * min(self.n, self.total) / self.total)

    def close(self) -> None:
        if self.disable:
            return
        if not self._ended:
            self._ended = True
            final = (self.n, str(self.format_dict.get("postfix") or ""))
            if self.leave is not False and final != self._last_emitted:
                self._emit()  # the end line: final count, elapsed time, rate
        self.disable = True
        with self._lock:
            self._decr_instances(self)


def progress(iterable: Iterable[Any] | None = None, total: float | None = None, desc: str = "",
             unit: str = "it", disable: bool = False, file: IO[str] | None = None, **kwargs: Any) -> _std_tqdm:
    """A progress bar over ``iterable`` (or one to ``update`` by hand) that suits the output stream
    (``file``, default stderr); extra keyword arguments go to tqdm (``unit_scale``, ``leave`` ...)."""
    stream = file if file is not None else sys.stderr
    mode = os.environ.get("COSMIC_PROGRESS", "auto").strip().lower()
    if mode == "off":
        disable = True
    common = {"total": total, "desc": desc, "unit": unit, "disable": disable, **kwargs}
    if mode == "bar" or (mode != "plain" and _is_tty(stream)):
        return _tqdm(iterable, file=stream, **common)
    if mode != "plain" and file is None and _in_notebook():
        from tqdm.auto import tqdm as auto_tqdm

        return auto_tqdm(iterable, **common)
    common.pop("unit_scale", None)  # plain lines print whole counts
    return PlainProgress(iterable, file=stream, **common)
