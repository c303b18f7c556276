"""``cosmic run`` (local or aws backend, redrive), ``cosmic deploy`` (and ``--dry-run``), ``cosmic teardown``."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from cosmic_utils import config
from cosmic_utils.cloud.summary_view import execution_reason, print_summary
from cosmic_utils.commands import cli_types


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser("run", help="run the state machine over a dataset (backend local or aws)")
    p.add_argument("--backend", choices=["local", "aws"], default="local",
                   help="local: embedded moto server runs the same ASL (default); aws: your account")
    p.add_argument("--data", help="dataset folder or s3://bucket/prefix of .cpart partitions")
    p.add_argument("--model", default=None, help=f"model artifact folder or s3:// (default {config.DEFAULT_MODEL_DIR})")
    p.add_argument("--results", default=None,
                   help="s3://bucket/prefix for items, records, predictions (default: a bucket inside moto for local)")
    p.add_argument("--out", type=Path, default=None, help="run folder (default runs/<run-id>); its name is the run id")
    p.add_argument("--run-id", default=None, help="run id (default: the --out folder name)")
    p.add_argument("--batch-size", type=cli_types.batch_size, default=256)
    p.add_argument("--partition-limit", type=cli_types.positive_int, default=None)
    p.add_argument("--max-concurrency", type=cli_types.positive_int, default=16)
    p.add_argument("--world-size", type=cli_types.positive_int, default=None, help="spread partitions over this many invocations")
    p.add_argument("--engine", default="onnx")
    p.add_argument("--threads", type=cli_types.positive_int, default=None, help="engine threads per invocation (default: all CPUs)")
    p.add_argument("--memory-mb", type=cli_types.positive_int, default=3008, help="configured memory of the Inference function")
    p.add_argument("--timeout-s", type=cli_types.positive_int, default=900, help="timeout of the Inference function")
    p.add_argument("--tolerated-failure-percentage", type=cli_types.percentage, default=10.0)
    p.add_argument("--request", type=Path, default=None, help="a run request JSON file (flags override nothing)")
    p.add_argument("--seed-payload", type=Path, default=None,
                   help="the seed project's payload JSON (translated; its script fields are refused); needs --model")
    p.add_argument("--redrive", metavar="RUN_ID", default=None,
                   help="re-run only the failed partitions of runs/RUN_ID (or a run folder) and merge")
    p.add_argument("--prefix", default="cosmic", help="deployment name prefix (aws resources)")
    p.add_argument("--region", default=None)
    p.add_argument("--stage-data", action="store_true", help="local: upload the dataset into moto S3 first")
    p.add_argument("--overwrite", action="store_true",
                   help="replace the results of an earlier run with the same run id (refused otherwise)")
    p.add_argument("--no-progress", action="store_true")
    p.add_argument("--max-usd", type=cli_types.positive_float, default=None,
                   help="refuse (exit 1) a run whose projected cost is above this budget, before anything starts")
    p.set_defaults(func=_run)

    d = subparsers.add_parser("deploy", help="deploy (create or update) the pipeline to AWS; --dry-run prints the plan")
    _deploy_args(d)
    d.add_argument("--dry-run", action="store_true", help="print what would be created and a cost ceiling")
    d.add_argument("--partitions", type=cli_types.positive_int, default=None, help="partitions of a run, for the dry-run cost ceiling")
    d.add_argument("--no-deps", action="store_true", help="package without dependencies (testing only)")
    d.add_argument("--budget-usd", type=cli_types.positive_float, default=None,
                   help="also create the AWS Budgets spend alarm <prefix>-spend: monthly account cost, "
                        "e-mail at 80 %% and 100 %% of this (needs --budget-email); teardown removes it")
    d.add_argument("--budget-email", default=None, help="where the spend alarm e-mails")
    d.set_defaults(func=_deploy)

    t = subparsers.add_parser("teardown", help="remove everything `cosmic deploy` created")
    _deploy_args(t)
    t.add_argument("--keep-results", action="store_true", help="keep the results bucket and its runs")
    t.add_argument("--check", action="store_true",
                   help="delete nothing: list every resource of this deployment that exists (by name prefix "
                        "and tag); exit 1 while any remain")
    t.set_defaults(func=_teardown)

    o = subparsers.add_parser("operator-policy", help="print the IAM policy the person running deploy / run / "
                                                      "logs / teardown / doctor needs (JSON)")
    o.add_argument("--results", required=True, help="s3://bucket/prefix where runs write")
    o.add_argument("--data", action="append", default=[], help="s3:// data location(s) (repeatable)")
    o.add_argument("--model", action="append", default=[], help="s3:// model location(s) (repeatable)")
    o.add_argument("--prefix", default="cosmic")
    o.add_argument("--region", default="*", help="region of the resources (default: any)")
    o.add_argument("--account", default="*", help="12-digit account id (default: the account it is attached in)")
    o.set_defaults(func=_operator_policy)


def _deploy_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--results", required=True, help="s3://bucket/prefix where runs write")
    p.add_argument("--data", action="append", default=[], help="s3:// dataset location(s) the functions may read")
    p.add_argument("--model", action="append", default=[], help="s3:// model artifact location(s)")
    p.add_argument("--prefix", default="cosmic")
    p.add_argument("--region", default=None)
    p.add_argument("--memory-mb", type=cli_types.positive_int, default=3008)
    p.add_argument("--timeout-s", type=cli_types.positive_int, default=900)
    p.add_argument("--arch", choices=["x86_64", "arm64"], default="x86_64",
                   help="Lambda architecture: x86_64 (default) or arm64 (Graviton: 20 %% cheaper per GB-s, "
                        "speed not measured); the zips are built from wheels for it")


def _request_from_args(args: argparse.Namespace) -> Any:
    from cosmic_utils.cloud.local import LOCAL_RESULTS_URI
    from cosmic_utils.exits import UsageError
    from cosmic_utils.runtime.request import parse_request

    if args.request:
        return parse_request(args.request.read_text())
    if args.seed_payload:
        from cosmic_utils.runtime.request import from_seed_payload

        if not args.model:
            raise UsageError("--seed-payload needs --model (the seed payload has no model location)")
        return from_seed_payload(json.loads(args.seed_payload.read_text()), model=str(args.model),
                                 run_id=args.run_id or (args.out.name if args.out else None))
    if not args.data:
        raise UsageError("--data is required (or --request FILE)")
    run_id = args.run_id or (args.out.name if args.out else None)
    if not run_id:
        raise UsageError("give --out runs/RUN_ID or --run-id")
    results = args.results or (LOCAL_RESULTS_URI if args.backend == "local" else None)
    if results is None:
        raise UsageError("--backend aws needs --results s3://bucket/prefix")
    fields: dict[str, Any] = {
        "run_id": run_id, "data": str(args.data), "model": str(args.model or config.DEFAULT_MODEL_DIR),
        "results": results, "batch_size": args.batch_size, "max_concurrency": args.max_concurrency,
        "engine": args.engine, "memory_mb": args.memory_mb, "timeout_s": args.timeout_s,
        "tolerated_failure_percentage": args.tolerated_failure_percentage,
    }
    for key in ("partition_limit", "world_size", "threads"):  # unset: the request model's default
        if getattr(args, key) is not None:
            fields[key] = getattr(args, key)
    if args.overwrite:
        fields["overwrite"] = True
    return parse_request(fields)


def run_exit_status(result: Any) -> int:
    """The exit status of a finished run (0 ok, 3 partitions failed, 1 execution failed: README "Exit
    status"), every failure printed on stderr."""
    from cosmic_utils import exits

    summary = result.summary
    failed = summary.get("failed") or []
    if failed or int(summary.get("partitions_failed") or 0):
        exits.print_failures("cosmic run", failed)
        print(f"cosmic run: {len(failed)} of {summary.get('partitions')} partitions failed; re-run them with "
              f"cosmic run --redrive {result.run_dir}", file=sys.stderr)
        return exits.PARTIAL
    if result.status != "SUCCEEDED" or not summary.get("partitions"):
        print(f"cosmic run: error: execution {result.status}: {execution_reason(summary)}", file=sys.stderr)
        return exits.FAILED
    return exits.OK


def _run(args: argparse.Namespace) -> int:
    from cosmic_utils import exits
    from cosmic_utils.cloud import runner

    common = {"backend": args.backend, "prefix": args.prefix, "region": args.region,
              "progress": not args.no_progress}
    if args.backend == "aws":  # priced regions only: the projection and the budget need its prices
        refused = _known_region(args.region, "cosmic run")
        if refused is not None:
            return refused
    try:
        if args.redrive:
            result = runner.redrive(args.redrive, **common)
            if result.status == "NOTHING_TO_REDRIVE":
                print(f"run {result.run_dir.name}: no failed partitions, nothing to redrive")
                return exits.OK
        else:
            request = _request_from_args(args)
            admitted: list[Any] = []
            refused = _project(request, args.backend, args.max_usd, admitted)
            if refused is not None:
                return refused
            run_dir = args.out or config.RUNS_DIR / request.run_id
            if args.overwrite and not request.overwrite:
                request = request.model_copy(update={"overwrite": True})
            result = runner.run_pipeline(request, run_dir=run_dir, stage_data=args.stage_data, **common)
    except runner.RunInterrupted as exc:
        if exc.result is not None:
            print_summary(exc.result.summary)
            print(f"  outputs: {exc.result.run_dir}")
        print(f"cosmic run: interrupted ({exc.signal_name}); finished partitions are kept: complete the run "
              f"with `cosmic run --redrive {exc.run_dir}`", file=sys.stderr)
        return exc.status
    print_summary(result.summary)
    if not args.redrive and admitted:
        print(billed_vs_projected(result.run_dir, result.summary, admitted[0]))
    print(f"  outputs: {result.run_dir}")
    return run_exit_status(result)


def billed_vs_projected(run_dir: Path, summary: dict[str, Any], projection: Any) -> str:
    """The run's billed cost (the Summarize step's) beside the projection it was admitted on, with how
    many durations came from CloudWatch REPORT lines and how many are estimated (``billed_source``)."""
    import csv
    from collections import Counter

    sources: Counter[str] = Counter()
    path = Path(run_dir) / "records.csv"
    if path.exists():
        with open(path, encoding="utf-8", newline="") as fh:
            sources.update(row.get("billed_source") or "unknown" for row in csv.DictReader(fh))
    billed = (summary.get("cost") or {}).get("total_usd")
    ratio = f" ({billed / projection.cost_usd:.2f}x the projection)" if billed and projection.cost_usd else ""
    origin = ", ".join(f"{n} {k}" for k, n in sorted(sources.items())) or "no records"
    return (f"  BILLED {'n/a' if billed is None else format(billed, '.4g')} USD (durations: {origin}) beside the "
            f"PROJECTION {projection.cost_usd:.4g} USD it was admitted on{ratio}")


def _project(request: Any, backend: str, max_usd: float | None, admitted: list[Any]) -> int | None:
    """Print the projected cost and wall clock (aws, or whenever a budget is given); 1 when over budget.
    The projection is appended to ``admitted`` (printed again beside the billed cost after the run)."""
    if backend != "aws" and max_usd is None:
        return None
    from cosmic_utils.analysis.projection import BudgetExceeded, check_budget, project_run

    try:
        projection = project_run(request)
    except Exception as exc:  # no manifest readable: a budget cannot be checked, so it is not run
        if max_usd is None:
            print(f"cosmic run: no projection ({exc})", file=sys.stderr)
            return None
        print(f"cosmic run: --max-usd {max_usd:g} cannot be checked: {exc}", file=sys.stderr)
        return 1  # refused (exit-status contract: 1)
    print(projection.one_line())
    admitted.append(projection)
    try:
        check_budget(projection, max_usd)
    except (BudgetExceeded, ValueError) as exc:
        print(f"cosmic run: {exc}", file=sys.stderr)
        return 1  # refused (exit-status contract: 1)
    return None


def _config(args: argparse.Namespace, with_deps: bool = True) -> Any:
    from cosmic_utils.cloud.aws import DeployConfig

    return DeployConfig(results_uri=args.results, prefix=args.prefix, read_uris=[*args.data, *args.model],
                        memory_mb=args.memory_mb, timeout_s=args.timeout_s, with_deps=with_deps, arch=args.arch,
                        region=args.region)


def _deploy(args: argparse.Namespace) -> int:
    from cosmic_utils.cloud import aws

    cfg = _config(args, with_deps=not args.no_deps)
    try:
        aws.check_locations(cfg)  # wildcards, bucket names, results overlapping data: before anything
    except aws.DeployError as exc:
        print(f"cosmic deploy: {exc}", file=sys.stderr)
        return 2
    if (args.budget_usd is None) != (args.budget_email is None):
        print("cosmic deploy: --budget-usd and --budget-email go together", file=sys.stderr)
        return 2
    refused = _known_region(args.region, "cosmic deploy")
    if refused is not None:
        return refused
    if args.budget_usd is not None:
        aws.budget_request("000000000000", "check", args.budget_usd, args.budget_email)  # refuses bad input first
    if args.dry_run:
        print(json.dumps(aws.plan(cfg, partitions=args.partitions), indent=2))
        return 0
    backend = aws.AwsBackend(region=args.region)
    deployment = backend.deploy(cfg)
    if args.budget_usd is not None:
        deployment.actions[f"budget {cfg.prefix}-spend ({args.budget_usd:g} USD/month, actual spend)"] = \
            backend.ensure_budget(cfg.prefix, args.budget_usd, args.budget_email)
    for resource, action in deployment.actions.items():
        print(f"{action:>9}  {resource}")
    for resource, why in deployment.left_alone.items():
        print(f"{why}  {resource}")
    print(f"state machine: {deployment.state_machine_arn}")
    return 0


def _teardown(args: argparse.Namespace) -> int:
    from cosmic_utils.cloud import aws

    if args.check:
        left = aws.AwsBackend(region=args.region).inventory(_config(args))
        for kind, name in left:
            print(f"  remains  {kind} {name}")
        print(f"teardown --check: {len(left)} resources of deployment {args.prefix!r}")
        return 1 if left else 0  # not empty: the check failed as a whole (exit-status contract)
    done = aws.AwsBackend(region=args.region).teardown(_config(args), delete_results=not args.keep_results)
    for resource, action in done.items():
        print(f"{action:>9}  {resource}")
    if not done:
        print("nothing to remove")
    return 0


def _known_region(region: str | None, prog: str) -> int | None:
    """1 (refused, with how to add it) when the region has no row in the price table; else None."""
    from cosmic_utils.cloud.aws import price_region
    from cosmic_utils.runtime import prices

    try:
        prices.region_prices(price_region(region))
    except prices.UnknownRegion as exc:
        print(f"{prog}: {exc}", file=sys.stderr)
        return 1
    return None


def _operator_policy(args: argparse.Namespace) -> int:
    from cosmic_utils.cloud import iam, operator

    try:
        policy = operator.operator_policy(prefix=args.prefix, results_uri=args.results,
                                          data_uris=[*args.data, *args.model], region=args.region,
                                          account=args.account)
    except ValueError as exc:
        print(f"cosmic operator-policy: {exc}", file=sys.stderr)
        return 2
    buckets = {iam._split(u)[0] for u in [args.results, *args.data, *args.model]}
    problems = operator.check_operator_policy(policy, args.prefix, buckets)
    if problems:  # cannot happen for validated input; checked anyway
        print(f"cosmic operator-policy: error: {problems}", file=sys.stderr)
        return 1
    print(json.dumps(policy, indent=2))
    return 0
