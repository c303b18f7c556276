"""A stand-in AWS account in its own process: moto's server that really runs the Lambda handlers.

``python -m cosmic_utils.cloud.standin --port N [--faults plan.json]`` serves
:class:`~cosmic_utils.cloud.local.LocalStack` until SIGTERM or Ctrl-C, so the *aws* code path runs
against it unchanged through ``AWS_ENDPOINT_URL``; deploy with ``--no-deps``
(``COSMIC_LAMBDA_DEPS=0``): the children use this interpreter's site-packages. ``--faults``: the
list :meth:`LocalStack.set_faults` takes (kind, function, partition, times).
Reasoning: docs/aws.md#6-rehearsing-the-runbook-without-an-account-the-stand-in
"""

from __future__ import annotations

import argparse
import json
import signal
import sys
import threading
from pathlib import Path

from cosmic_utils.cloud import moto_hook
from cosmic_utils.cloud.local import LocalStack

#: The line printed on stdout once the server answers (a parent waits for it).
READY = "cosmic stand-in ready"


def main(argv: list[str] | None = None) -> int:
    """Serve until SIGTERM / SIGINT; 0 on a clean stop, 2 on a bad argument."""
    p = argparse.ArgumentParser(prog="python -m cosmic_utils.cloud.standin", description=__doc__.split("\n\n")[0])
    p.add_argument("--port", type=int, required=True, help="port on 127.0.0.1")
    p.add_argument("--faults", type=Path, default=None, help="JSON list of faults to inject (see the module doc)")
    p.add_argument("--concurrency", type=int, default=moto_hook.default_concurrency(4),
                   help="Lambda invocations running at once (default: min(4, cores * 2))")
    p.add_argument("--workdir", type=Path, default=None, help="unpacked zips and container logs (default: temp)")
    args = p.parse_args(argv)
    faults = None
    if args.faults is not None:
        try:
            faults = json.loads(args.faults.read_text())
        except (OSError, ValueError) as exc:
            print(f"standin: --faults {args.faults}: {exc}", file=sys.stderr)
            return 2
        if not isinstance(faults, list):
            print(f"standin: --faults {args.faults}: expected a JSON list of faults", file=sys.stderr)
            return 2
    stop = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stop.set())
    with LocalStack(concurrency=args.concurrency, workdir=args.workdir, port=args.port) as stack:
        stack.set_faults(faults)
        print(f"{READY} at {stack.endpoint_url}", flush=True)
        stop.wait()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
