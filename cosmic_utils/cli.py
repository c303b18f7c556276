"""The ``cosmic`` command line: one entry point, one sub-command module per concern.

Each module in :mod:`cosmic_utils.commands` exposes ``register(subparsers)`` which adds its
sub-command(s) and sets ``func`` on the parsed namespace. Commands import their heavy
dependencies (torch, moto) inside their functions so ``cosmic --help`` stays fast.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import sys
from collections.abc import Sequence

#: Sub-command modules, in the order `cosmic --help` lists them.
COMMAND_MODULES: tuple[str, ...] = (
    "data",      # cosmic data prepare | convert-pt | verify | bench
    "model",     # cosmic model train | export | load-published | evaluate
    "predict",   # cosmic predict --catalog FILE --out PRED.csv
    "bench",     # cosmic bench --json OUT
    "run",       # cosmic run --backend local|aws ... ; cosmic deploy / teardown
    "sweep",     # cosmic sweep GRID.yaml
    "cost",      # cosmic cost ... ; cosmic simulate ...
    "figures",   # cosmic figures
    "demo",      # cosmic demo: the main job
    "reliability",  # cosmic reliability
    "logs",      # cosmic logs RUN: CloudWatch errors of failed partitions
)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="cosmic",
        description="Redshift inference on SDSS galaxy cutouts, locally and on AWS Lambda.",
    )
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name in COMMAND_MODULES:
        try:
            module = importlib.import_module(f"cosmic_utils.commands.{name}")
        except ModuleNotFoundError as exc:
            if exc.name == f"cosmic_utils.commands.{name}":
                continue  # command not part of this build
            raise
        module.register(subparsers)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO,
        format="%(levelname)s %(name)s: %(message)s",
    )
    if not getattr(args, "func", None):
        parser.print_help()
        return 2
    result = args.func(args)
    return int(result or 0)


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
