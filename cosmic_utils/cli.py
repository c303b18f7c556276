"""The ``cosmic`` command line: one entry point, one sub-command module per concern.

Each :mod:`cosmic_utils.commands` module exposes ``register(subparsers)`` and imports its heavy
dependencies inside its functions, so ``cosmic --help`` stays fast. :func:`main` applies the
exit-status contract of :mod:`cosmic_utils.exits` to every command.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import os
import sys
import traceback
from collections.abc import Sequence

from cosmic_utils import exits

# The CLI draws figures into files only: a non-interactive backend unless the user chose one
# (cosmic_utils.analysis.plots chooses none, so notebooks show their figures inline).
os.environ.setdefault("MPLBACKEND", "Agg")

#: Sub-command modules, in the order `cosmic --help` lists them.
COMMAND_MODULES: tuple[str, ...] = (
    "data",      # cosmic data prepare | convert-pt | verify | bench
    "model",     # cosmic model train | export | load-published | evaluate
    "predict",   # cosmic predict --catalog FILE --out PRED.csv
    "bench",     # cosmic bench --json OUT
    "run",       # cosmic run --backend local|aws ... ; cosmic deploy / teardown
    "sweep",     # cosmic sweep GRID.yaml
    "cost",      # cosmic cost ... ; cosmic simulate ...
    "figures",   # cosmic figures [--include-runs]
    "records",   # cosmic records ship | check: the admission rules of data/records
    "runs",      # cosmic runs: every scratch run and shipped record
    "report",    # cosmic readme | report [--check]: the README table, docs/report.md from data/records
    "local",     # cosmic local data-size: the local streaming data-size study
    "demo",      # cosmic demo: the main job
    "reliability",  # cosmic reliability
    "logs",      # cosmic logs RUN: CloudWatch errors of failed partitions
    "doctor",    # cosmic doctor [--grid G]: credentials, region, prices, quotas
)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="cosmic",
        description="Redshift inference on SDSS galaxy cutouts, locally and on AWS Lambda.",
    )
    parser.add_argument("-v", "--verbose", action="store_true",
                        help="debug logging, and the Python traceback of an error")
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name in COMMAND_MODULES:
        try:
            module = importlib.import_module(f"cosmic_utils.commands.{name}")
        except ModuleNotFoundError as exc:
            if exc.name == f"cosmic_utils.commands.{name}":
                continue  # command not part of this build
            raise
        module.register(subparsers)
    _add_verbose(parser)
    return parser


def _add_verbose(parser: argparse.ArgumentParser) -> None:
    """Accept ``-v`` after the command too (``cosmic run ... -v``), without overriding ``cosmic -v``."""
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for sub in set(action.choices.values()):
                if not any("-v" in a.option_strings for a in sub._actions):
                    sub.add_argument("-v", "--verbose", action="store_true", default=argparse.SUPPRESS,
                                     help="debug logging, and the Python traceback of an error")
                _add_verbose(sub)


def command_name(args: argparse.Namespace) -> str:
    """``cosmic run``, ``cosmic data prepare``...: the prefix of every error line."""
    parts = ["cosmic"]
    for key in ("command", "data_command", "model_command"):
        value = getattr(args, key, None)
        if value:
            parts.append(str(value))
    return " ".join(parts)


def main(argv: Sequence[str] | None = None) -> int:
    restore = exits.install_signal_handlers()
    prog, verbose = "cosmic", False
    try:
        parser = build_parser()
        args = parser.parse_args(argv)  # usage errors: argparse prints them and exits 2
        verbose = bool(args.verbose)
        logging.basicConfig(
            level=logging.DEBUG if verbose else logging.INFO,
            format="%(levelname)s %(name)s: %(message)s",
        )
        if not getattr(args, "func", None):
            parser.print_help()
            return exits.USAGE
        prog = command_name(args)
        return int(args.func(args) or 0)
    except exits.Interrupted as exc:
        print(f"{prog}: interrupted ({exc.signal_name})", file=sys.stderr)
        return exc.status
    except KeyboardInterrupt:
        print(f"{prog}: interrupted (SIGINT)", file=sys.stderr)
        return exits.SIGINT_STATUS
    except Exception as exc:  # noqa: BLE001 - every error ends as one line and a status
        if verbose:
            traceback.print_exc()
        status, text = exits.describe_error(exc)
        print(f"{prog}: error: {text}", file=sys.stderr)
        return status
    finally:
        restore()


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
