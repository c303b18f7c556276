"""Reliability scenarios of the exit-status contract (issue 13): what a careless user types.

Each scenario runs the real ``cosmic`` command line (in process, or as a child when it needs the
local backend) and checks exit status, message, no traceback and, for runs, the partitions
accounted independently. :data:`SCENARIOS` extends :data:`cosmic_utils.jobs.reliability.SCENARIOS`.
Reasoning: docs/reliability.md#exit-status-and-interruption-issue-13
"""

from __future__ import annotations

import contextlib
import io
import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import psutil

from cosmic_utils.jobs.fault_kit import Outcome, _short, account, make_dataset, read_json, write_tiny_artifact

#: The folder holding the ``cosmic_utils`` package (PYTHONPATH of the child processes).
PACKAGE_PARENT = Path(__file__).resolve().parent.parent


@dataclass
class CliRun:
    """One ``cosmic`` invocation: exit status, what it printed, and (interrupted runs) what it left."""

    status: int
    out: str
    err: str
    seconds: float = 0.0
    children: list[int] = field(default_factory=list)
    alive_children: list[int] = field(default_factory=list)
    leftovers: list[str] = field(default_factory=list)

    @property
    def traceback(self) -> bool:
        return "Traceback (most recent call last)" in self.out + self.err


def cli_in_process(argv: Sequence[str]) -> CliRun:
    """``cosmic ARGV`` through :func:`cosmic_utils.cli.main` with stdout / stderr captured."""
    from cosmic_utils.cli import main

    out, err = io.StringIO(), io.StringIO()
    t0 = time.perf_counter()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        try:
            status = main(list(argv))
        except SystemExit as exc:  # argparse's usage errors
            status = exc.code if isinstance(exc.code, int) else 1
    return CliRun(int(status), out.getvalue(), err.getvalue(), time.perf_counter() - t0)


def child_env(tmp: Path, runs: Path) -> dict[str, str]:
    """Environment of a ``cosmic`` child: its own TMPDIR (to find leftovers) and runs folder."""
    return {**os.environ, "PYTHONPATH": str(PACKAGE_PARENT), "TMPDIR": str(tmp), "COSMIC_RUNS_DIR": str(runs)}


def cli_child(argv: Sequence[str], env: dict[str, str], cwd: Path, timeout_s: float = 300) -> CliRun:
    """``cosmic ARGV`` as a child process (``python -m cosmic_utils.cli``)."""
    t0 = time.perf_counter()
    proc = subprocess.run([sys.executable, "-m", "cosmic_utils.cli", *argv], env=env, cwd=cwd,
                          capture_output=True, text=True, timeout=timeout_s)
    return CliRun(proc.returncode, proc.stdout, proc.stderr, time.perf_counter() - t0)


def _descendants(pid: int) -> list[int]:
    try:
        return [c.pid for c in psutil.Process(pid).children(recursive=True)]
    except psutil.NoSuchProcess:
        return []


def _alive(pids: list[int]) -> list[int]:
    out = []
    for pid in pids:
        with contextlib.suppress(psutil.NoSuchProcess):
            if psutil.Process(pid).status() != psutil.STATUS_ZOMBIE:
                out.append(pid)
    return out


def run_and_interrupt(argv: Sequence[str], env: dict[str, str], cwd: Path, signum: int = signal.SIGINT,
                      after_invocations: int = 2, timeout_s: float = 180) -> CliRun:
    """Start ``cosmic run ARGV``, signal it once the inference child started its ``after_invocations``-th
    invocation (MaxConcurrency 1: a partition finished), wait. ``env["TMPDIR"]`` must be its own folder:
    its handler logs say when to signal; the ``cosmic-*`` entries left in it are ``leftovers``."""
    tmp = Path(env["TMPDIR"])
    t0 = time.perf_counter()
    proc = subprocess.Popen([sys.executable, "-m", "cosmic_utils.cli", "run", *argv], env=env, cwd=cwd,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    kids: set[int] = set()
    try:
        while time.perf_counter() - t0 < timeout_s and proc.poll() is None:
            kids.update(_descendants(proc.pid))
            logs = sorted(tmp.glob("cosmic-local-*/lambda/*inference*.log"))
            if logs and logs[0].read_text(errors="replace").count("START RequestId") >= after_invocations:
                break
            time.sleep(0.05)
        if proc.poll() is None:
            kids.update(_descendants(proc.pid))
            proc.send_signal(signum)
        out, err = proc.communicate(timeout=timeout_s)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    time.sleep(0.2)
    return CliRun(proc.returncode, out, err, time.perf_counter() - t0, sorted(kids), _alive(sorted(kids)),
                  sorted(p.name for p in tmp.iterdir() if p.name.startswith("cosmic-")))


def _judge(out: Outcome, runs: list[tuple[CliRun, int, str]]) -> Outcome:
    """Every (run, expected status, expected text) must match, without a traceback."""
    shown = [(r.err.strip().splitlines() or r.out.strip().splitlines() or [""])[-1] for r, _, _ in runs]
    out.outcome = "; ".join(f"exit {r.status}" + (" + traceback" if r.traceback else "") for r, _, _ in runs)
    out.error = _short(" / ".join(dict.fromkeys(shown)))
    out.passed = all(r.status == want and not r.traceback and text in r.out + r.err for r, want, text in runs)
    return out


def exit_out_of_range_arguments(h: Any) -> Outcome:
    out = Outcome("exit_out_of_range_arguments", "exit status",
                   "predict --batch-size -1 / 0; data prepare --gb 0 / -1 / nan, --partition-mb 0; run --batch-size true")
    work = h.folder("exit-args")
    work.mkdir(parents=True)
    cat, csv = str(work / "none.txt"), str(work / "p.csv")
    cases = [["predict", "--catalog", cat, "--out", csv, "--batch-size", "-1"],
             ["predict", "--catalog", cat, "--out", csv, "--batch-size", "0"],
             ["data", "prepare", "--gb", "0", "--out", str(work / "d")],
             ["data", "prepare", "--gb", "-1", "--out", str(work / "d")],
             ["data", "prepare", "--gb", "nan", "--out", str(work / "d")],
             ["data", "prepare", "--gb", "1", "--partition-mb", "0", "--out", str(work / "d")],
             ["run", "--data", str(work), "--run-id", "x", "--batch-size", "true"]]
    runs = [(cli_in_process(argv), 2, "error: argument") for argv in cases]
    ok = not (work / "d").exists() and not Path(csv).exists()
    _judge(out, runs)
    out.passed = out.passed and ok
    out.outcome = f"refused by the argument parser: {out.outcome}"
    return out


def exit_missing_inputs(h: Any) -> Outcome:
    out = Outcome("exit_missing_inputs", "exit status",
                  "verify a missing dataset, redrive an unknown run, predict a missing catalogue")
    work = h.folder("exit-missing")
    runs = [(cli_in_process(["data", "verify", str(work / "nothing")]), 1, "manifest not found"),
            (cli_in_process(["run", "--redrive", "no-such-run-13"]), 1, "no run folder 'no-such-run-13'"),
            (cli_in_process(["predict", "--catalog", str(work / "none.txt"), "--out", str(work / "p.csv"),
                             "--model", str(h.model)]), 1, "not found")]
    return _judge(out, runs)


def exit_predict_nonfinite(h: Any) -> Outcome:
    from cosmic_utils.data import catalog

    out = Outcome("exit_predict_nonfinite", "exit status", "cosmic predict with a model whose every prediction is NaN")
    work = h.folder("exit-nan-predict")
    model = write_tiny_artifact(work / "nan-model", scale=float("nan"))
    df = catalog.valid_catalog().iloc[:5]
    src = work / "cat.txt"
    src.write_text("# " + " ".join(df.columns) + "\n" + df.to_csv(sep=" ", header=False, index=False))
    run = cli_in_process(["predict", "--catalog", str(src), "--out", str(work / "p.csv"), "--model", str(model)])
    _judge(out, [(run, 3, "5 of 5 predictions are not finite")])
    rows = (work / "p.csv").read_text().splitlines()[1:] if (work / "p.csv").exists() else []
    written_as_number = [r for r in rows if r.rsplit(",", 1)[-1] != ""]
    out.details["rows_written_as_number"] = len(written_as_number)
    out.passed = out.passed and len(rows) == 5 and not written_as_number
    return out


def exit_all_partitions_fail(h: Any) -> Outcome:
    out = Outcome("exit_all_partitions_fail", "exit status", "cosmic run with a model folder that does not exist")
    work = h.folder("exit-all-fail")
    tmp, runs = work / "tmp", work / "runs"
    tmp.mkdir(parents=True)
    run = cli_child(["run", "--data", str(h.good), "--model", str(work / "no-model"), "--run-id", "allfail",
                     "--batch-size", "4", "--threads", "1", "--max-concurrency", "2", "--no-progress"],
                    child_env(tmp, runs), work)
    _judge(out, [(run, 3, "partition part-00000 failed: model artifact")])
    acc = account(runs / "allfail", ["part-00000", "part-00001", "part-00002"])
    out.partitions, out.ok, out.failed, out.lost = 3, acc["ok"], acc["failed"], acc["lost"]
    lines = [ln for ln in run.err.splitlines() if " failed: model artifact" in ln]
    out.passed = out.passed and len(lines) == 3 and acc["failed"] == 3 and acc["lost"] == 0
    return out


def _interrupt(name: str, signum: int) -> Callable[[Any], Outcome]:
    def scenario(h: Any) -> Outcome:
        signame = signal.Signals(signum).name
        out = Outcome(name, "exit status", f"{signame} to `cosmic run` after its first partition finished, then "
                                           "`cosmic run --redrive RUN_ID` from another directory")
        work = h.folder(f"exit-{name}")
        tmp, runs, elsewhere = work / "tmp", work / "runs", work / "elsewhere"
        for d in (tmp, elsewhere):
            d.mkdir(parents=True)
        ids = make_dataset(work / "data", 5, seed=13)
        env = child_env(tmp, runs)
        run = run_and_interrupt(["--data", str(work / "data"), "--model", str(h.model), "--run-id", name,
                                 "--batch-size", "4", "--threads", "1", "--max-concurrency", "1",
                                 "--memory-mb", "512", "--no-progress"], env, work, signum)
        want = 128 + signum
        summary = read_json(runs / name / "summary.json")
        kept = int((summary.get("interrupted") or {}).get("partitions_kept") or 0)
        redrive = cli_child(["run", "--redrive", name, "--no-progress"], env, elsewhere)
        acc = account(runs / name, ids)
        _judge(out, [(run, want, f"interrupted ({signame})"), (redrive, 0, "ok 5, failed 0")])
        out.outcome = (f"exit {run.status}, {kept} finished partition(s) kept, children left "
                       f"{len(run.alive_children)}, temp folders left {len(run.leftovers)}; redrive exit "
                       f"{redrive.status}")
        out.redrive = f"{acc['ok']} ok, {acc['failed']} failed, {acc['lost']} lost"
        out.partitions, out.ok, out.failed, out.lost = len(ids), acc["ok"], acc["failed"], acc["lost"]
        out.details.update(children=run.children, alive_children=run.alive_children, leftovers=run.leftovers)
        out.passed = (out.passed and kept >= 1 and bool(run.children) and not run.alive_children
                      and not run.leftovers and acc["ok"] == len(ids) and acc["lost"] == 0)
        shutil.rmtree(runs, ignore_errors=True)
        return out
    scenario.__name__ = name
    return scenario


def exit_convert_pt_partial(h: Any) -> Outcome:
    out = Outcome("exit_convert_pt_partial", "exit status",
                  "convert-pt on a folder of 2 good .pt files, 1 garbage, 1 empty")
    work = h.folder("exit-convert")
    src = work / "pt"
    src.mkdir(parents=True)
    try:
        from cosmic_utils.data.pt_io import write_pt_partition
        from cosmic_utils.jobs.fault_kit import partition_bytes
        from cosmic_utils.runtime.partition import read_partition
    except ImportError as exc:  # torch absent: the row says so instead of passing silently
        out.error, out.outcome = f"not run: {exc}", "not run"
        return out
    for k, name in enumerate(("a.pt", "c.pt")):
        (work / "tmp.cpart").write_bytes(partition_bytes(4, k))
        part = read_partition(work / "tmp.cpart")
        write_pt_partition(src / name, part.image, part.magnitude, part.redshift)
    (src / "b.pt").write_bytes(b"not a pickle")
    (src / "d.pt").write_bytes(b"")
    run = cli_in_process(["data", "convert-pt", str(src), "--out", str(work / "out")])
    _judge(out, [(run, 3, "2 of 4 files could not be converted")])
    manifest = read_json(work / "out" / "manifest.json")
    lines = [ln for ln in run.err.splitlines() if ln.startswith("cosmic data convert-pt: file ")]
    out.partitions, out.ok, out.failed = 4, len(manifest.get("entries", [])), len(lines)
    out.passed = out.passed and out.ok == 2 and out.failed == 2
    return out


def exit_sweep_failed_point(h: Any) -> Outcome:
    import nbformat
    import yaml

    out = Outcome("exit_sweep_failed_point", "exit status", "cosmic sweep where one point's run has a failed partition")
    work = h.folder("exit-sweep")
    work.mkdir(parents=True)
    nb = nbformat.v4.new_notebook()
    params = nbformat.v4.new_code_cell('x = 1\noutput_dir = ""')
    params.metadata["tags"] = ["parameters"]
    nb.cells = [params, nbformat.v4.new_code_cell(
        "import json\nfrom pathlib import Path\n"
        "failed = [{'partition_id': 'part-00001', 'error': 'checksum mismatch'}] if x == 2 else []\n"
        "Path(output_dir, 'summary.json').write_text(json.dumps({'execution_status': 'SUCCEEDED', 'partitions': 3,"
        " 'partitions_ok': 3 - len(failed), 'partitions_failed': len(failed), 'failed': failed}))\n")]
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    nbformat.write(nb, work / "nb.ipynb")
    (work / "grid.yaml").write_text(yaml.safe_dump({"name": "exit13", "notebook": str(work / "nb.ipynb"),
                                                    "grid": {"x": [1, 2]}}))
    run = cli_child(["sweep", str(work / "grid.yaml")], child_env(work, work / "runs"), work)
    return _judge(out, [(run, 3, "point x-2 failed: 1 of 3 partitions failed")])


#: In the order `cosmic reliability` runs them (after the earlier scenarios).
SCENARIOS: list[Callable[[Any], Outcome]] = [
    exit_out_of_range_arguments,
    exit_missing_inputs,
    exit_predict_nonfinite,
    exit_all_partitions_fail,
    _interrupt("exit_sigint_then_redrive", signal.SIGINT),
    _interrupt("exit_sigterm_then_redrive", signal.SIGTERM),
    exit_convert_pt_partial,
    exit_sweep_failed_point,
]
