"""The exit-status contract (cosmic_utils.exits): argument ranges, no tracebacks, interruption.

The interruption test starts a real ``cosmic run`` process on the local backend with the tiny
model, sends it SIGINT after the first partition finished, and checks what a user relies on:
exit 130, no traceback, no child process or temp folder left, the finished records kept, and a
redrive by run id from another directory that completes the run.
"""

from __future__ import annotations

import argparse
import json
import signal
from pathlib import Path

import numpy as np
import pytest

from cosmic_utils import exits
from cosmic_utils.cli import main
from cosmic_utils.commands import cli_types
from cosmic_utils.jobs.reliability import make_dataset, write_tiny_artifact


@pytest.mark.parametrize("text", ["0", "-1", "1.0", "1e3", "true", "", "nan", " 2x"])
def test_positive_int_refuses(text: str) -> None:
    with pytest.raises(argparse.ArgumentTypeError):
        cli_types.positive_int(text)


@pytest.mark.parametrize("text", ["0", "-1", "nan", "inf", "-inf", "true", "x"])
def test_positive_float_refuses(text: str) -> None:
    with pytest.raises(argparse.ArgumentTypeError):
        cli_types.positive_float(text)


def test_types_accept_good_values() -> None:
    assert cli_types.positive_int("+3") == 3 and cli_types.nonnegative_int("0") == 0
    assert cli_types.positive_float("0.5") == 0.5 and cli_types.percentage("100") == 100.0


@pytest.mark.parametrize("argv", [
    ["predict", "--catalog", "x.txt", "--out", "y.csv", "--batch-size", "-1"],
    ["predict", "--catalog", "x.txt", "--out", "y.csv", "--batch-size", "0"],
    ["data", "prepare", "--gb", "0"],
    ["data", "prepare", "--gb", "-1"],
    ["data", "prepare", "--gb", "nan"],
    ["data", "prepare", "--gb", "1", "--partition-mb", "0"],
    ["run", "--data", "d", "--out", "o", "--batch-size", "true"],
    ["run", "--data", "d", "--out", "o", "--max-concurrency", "0"],
    ["run", "--data", "d", "--out", "o", "--tolerated-failure-percentage", "101"],
    ["demo", "--data-gb", "inf"],
    ["bench", "--samples", "0"],
    ["simulate", "--gb", "0"],
])
def test_out_of_range_arguments_are_usage_errors(argv: list[str], capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as info:
        main(argv)
    assert info.value.code == exits.USAGE
    err = capsys.readouterr().err
    assert "error: argument" in err and "Traceback" not in err


def test_user_errors_are_one_line_without_traceback(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["run", "--redrive", "no-such-run"]) == exits.FAILED
    err = capsys.readouterr().err
    assert err.startswith("cosmic run: error: no run folder 'no-such-run'") and "Traceback" not in err
    assert main(["run", "--no-progress"]) == exits.USAGE  # --data missing
    assert "--data is required" in capsys.readouterr().err
    # with -v (after the command too) the traceback is shown
    assert main(["run", "--redrive", "no-such-run", "-v"]) == exits.FAILED
    assert "Traceback" in capsys.readouterr().err


def test_describe_error_statuses() -> None:
    from cosmic_utils.runtime.manifest import ManifestError

    assert exits.describe_error(ManifestError("bad manifest")) == (exits.FAILED, "bad manifest")
    assert exits.describe_error(exits.UsageError("x")) == (exits.USAGE, "x")
    status, text = exits.describe_error(ZeroDivisionError("boom"))
    assert status == exits.FAILED and "internal error" in text and "-v" in text


def test_predictions_never_come_from_an_unfilled_buffer(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from cosmic_utils.inference import predict

    class ShortEngine:  # returns one prediction fewer than asked
        def __enter__(self) -> ShortEngine:
            return self

        def __exit__(self, *a: object) -> None:
            return None

        def predict(self, image: np.ndarray, magnitude: np.ndarray) -> np.ndarray:
            return np.zeros(max(0, len(image) - 1), dtype=np.float32)

    monkeypatch.setattr("cosmic_utils.inference.engines.create_engine", lambda *a, **k: ShortEngine())
    img, mag = np.zeros((5, 5, 32, 32), np.float32), np.zeros((5, 5))
    with pytest.raises(predict.PredictError, match="returned 1 predictions"):
        predict.predict_arrays(img, mag, tmp_path, batch_size=2)
    with pytest.raises(predict.PredictError, match="batch size"):
        predict.predict_arrays(img, mag, tmp_path, batch_size=-1)


def test_nonfinite_predictions_are_written_empty_and_exit_3(tmp_path: Path,
                                                           capsys: pytest.CaptureFixture[str]) -> None:
    from cosmic_utils.data import catalog

    model = write_tiny_artifact(tmp_path / "nan-model", scale=float("nan"))
    src = tmp_path / "cat.txt"
    df = catalog.valid_catalog().iloc[:6]
    src.write_text("# " + " ".join(df.columns) + "\n" + df.to_csv(sep=" ", header=False, index=False))
    out = tmp_path / "p.csv"
    assert main(["predict", "--catalog", str(src), "--out", str(out), "--model", str(model),
                 "--batch-size", "4"]) == exits.PARTIAL
    err = capsys.readouterr().err
    assert "6 of 6 predictions are not finite" in err
    rows = out.read_text().splitlines()
    assert rows[0].split(",")[-2:] == ["z_pred", "flag"] and all(r.endswith(",,") for r in rows[1:])


@pytest.mark.parametrize("name", ["exit_out_of_range_arguments", "exit_missing_inputs", "exit_predict_nonfinite",
                                  "exit_convert_pt_partial"])
def test_reliability_scenarios_in_process(name: str, tmp_path: Path) -> None:
    """The scenarios that need no local backend (the harness is built, never started)."""
    from cosmic_utils.jobs import reliability_exits
    from cosmic_utils.jobs.reliability import Harness

    if name == "exit_convert_pt_partial":
        pytest.importorskip("torch")
    scenario = next(s for s in reliability_exits.SCENARIOS if s.__name__ == name)
    out = scenario(Harness(tmp_path))
    assert out.passed and out.lost == 0, out.row()


def test_ctrl_c_keeps_finished_partitions_and_redrive_completes(tmp_path: Path) -> None:
    from cosmic_utils.jobs.reliability_exits import child_env, cli_child, run_and_interrupt

    data, tmp, runs = tmp_path / "data", tmp_path / "tmp", tmp_path / "runs"
    tmp.mkdir()
    make_dataset(data, 5, samples=4)
    model = write_tiny_artifact(tmp_path / "model")
    env = child_env(tmp, runs)
    run = run_and_interrupt(["--data", str(data), "--model", str(model), "--run-id", "intr", "--batch-size", "4",
                             "--threads", "1", "--max-concurrency", "1", "--memory-mb", "512", "--no-progress"],
                            env, tmp_path, signal.SIGINT)
    assert run.status == exits.SIGINT_STATUS, run.err[-2000:]
    assert not run.traceback and "cosmic run: interrupted (SIGINT)" in run.err
    assert run.children and run.alive_children == [] and run.leftovers == []
    run_dir = runs / "intr"
    summary = json.loads((run_dir / "summary.json").read_text())
    assert summary["interrupted"]["signal"] == "SIGINT" and summary["interrupted"]["partitions_kept"] >= 1
    kept = [json.loads(p.read_text()) for p in (run_dir / "records").glob("*.json")]
    assert sum(r["status"] == "ok" for r in kept) == summary["partitions_ok"] >= 1
    assert "INTERRUPTED" in run.out
    # redrive by run id from another directory
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    done = cli_child(["run", "--redrive", "intr", "--no-progress"], env, elsewhere)
    assert done.status == exits.OK, done.err[-2000:]
    final = json.loads((run_dir / "summary.json").read_text())
    assert final["partitions"] == final["partitions_ok"] == 5 and "interrupted" not in final
    assert not [p.name for p in tmp.iterdir() if p.name.startswith("cosmic-")]
