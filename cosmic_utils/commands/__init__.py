"""Sub-commands of the ``cosmic`` CLI; each module registers its own parser (see cli.py)."""

from __future__ import annotations

import sys
from collections.abc import Callable
from typing import Any


def upload(prog: str, upload_fn: Callable[[Any, str], Any], src: Any, dest: str,
           refused: tuple[type[BaseException], ...]) -> int:
    """``upload_fn(src, dest)``: its report on stderr, the s3 URI on stdout, 0; a refusal (``refused``:
    a broken input or an unreachable bucket) is one stderr line, exit 1 (exit-status contract)."""
    from cosmic_utils.cloud.upload import describe

    try:
        report = upload_fn(src, dest)
    except refused as exc:
        print(f"{prog}: {exc}", file=sys.stderr)
        return 1
    print(describe(report), file=sys.stderr)
    print(report.uri)
    return 0
