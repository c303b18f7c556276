"""``cosmic predict --catalog FILE --out PRED.csv [--model DIR] [--seed S] [--engine E]``.

One CSV row per galaxy (``row``, ``z_spec`` when known, ``z_pred``, ``flag``); with labels, the
accuracy table with the kNN row. Logic: :mod:`cosmic_utils.inference.predict`.
"""

from __future__ import annotations

import argparse
import json
import sys

from cosmic_utils.commands import cli_types


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser("predict", help="predict redshifts for a catalogue file (renders its cutouts)")
    p.add_argument("--catalog", required=True, help="catalogue in the data/sdss_mgs format ('#' header; u g r i z "
                   "required, eu..ez and zs optional)")
    p.add_argument("--out", required=True, help="output CSV: row, z_spec (if known), z_pred")
    p.add_argument("--model", default=None, help="model artifact folder (default: models/default; "
                   "run `cosmic model train` to create it)")
    p.add_argument("--seed", type=cli_types.nonnegative_int, default=0, help="render seed of the cutouts (0: the seed of the reported "
                   "validation metrics)")
    p.add_argument("--engine", default="onnx", help="inference engine: onnx (default), onnx-int8, torch, "
                   "torch-eager, ... (see cosmic_utils.inference.engines)")
    p.add_argument("--batch-size", type=cli_types.batch_size, default=256, help="samples per engine call")
    p.add_argument("--threads", type=cli_types.positive_int, default=None, help="engine threads (default: all available cores)")
    p.add_argument("--json", default=None, help="also write a JSON summary (timings, metrics) here")
    p.set_defaults(func=_predict)


def _predict(args: argparse.Namespace) -> int:
    from cosmic_utils import exits
    from cosmic_utils.data.evaluation import format_table
    from cosmic_utils.inference.predict import describe, predict_catalog

    result = predict_catalog(args.catalog, args.out, model=args.model, seed=args.seed, engine=args.engine,
                             batch_size=args.batch_size, threads=args.threads)
    n = len(result.predictions)
    print(f"{n} galaxies -> {args.out} (model {result.model_dir}, engine {result.engine}, render seed {args.seed}; "
          f"render {result.timings['render_s']:.1f} s, predict {result.timings['predict_s']:.1f} s)")
    if result.table is not None:
        print(format_table(result.table))
    if args.json:
        with open(args.json, "w", encoding="utf-8") as fh:
            json.dump(describe(result), fh, indent=2)
    missing = result.missing_rows
    if missing:
        first = result.flags[missing[0]]
        print(f"cosmic predict: {len(missing)} of {n} rows have missing photometry and were not predicted "
              f"(row {missing[0]}: {first}{'; ...' if len(missing) > 1 else ''}); empty z_pred and the reason in "
              f"the flag column of {args.out}", file=sys.stderr)
    flagged = [r for r in result.flags if r not in set(missing)]
    if flagged:
        print(f"cosmic predict: {len(flagged)} predictions flagged (row {flagged[0]}: {result.flags[flagged[0]]}); "
              f"see the flag column of {args.out}", file=sys.stderr)
    bad = result.nonfinite_rows
    if bad:
        print(f"cosmic predict: {len(bad)} of {n} predictions are not finite (NaN/inf): rows "
              f"{', '.join(map(str, bad[:20]))}{' ...' if len(bad) > 20 else ''}; written as empty z_pred in "
              f"{args.out} and left out of the accuracy table", file=sys.stderr)
    return exits.PARTIAL if missing or bad else exits.OK
