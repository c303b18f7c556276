"""The notebooks chain: one model location, no silent untrained model, meaningful sizes, a runs table."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from cosmic_utils import config
from cosmic_utils.analysis import runs_index
from cosmic_utils.inference.measure import check_batches
from cosmic_utils.model import artifacts
from cosmic_utils.provenance import describe_model, model_fields
from cosmic_utils.runtime.artifact import ArtifactNotFoundError


def test_no_model_stops_with_one_line_unless_untrained_is_asked(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(config, "DEFAULT_MODEL_DIR", tmp_path / "models" / "default")
    with pytest.raises(ArtifactNotFoundError, match="run notebook 00 or `cosmic model train`.*allow_untrained=True") as exc:
        artifacts.find_model(None)
    assert "\n" not in str(exc.value)


def test_an_untrained_model_is_labelled_everywhere(tmp_path: Path) -> None:
    folder = tmp_path / "untrained"
    folder.mkdir()
    (folder / "artifact.json").write_text(json.dumps({"config": {"kind": "untrained"}, "trained": False}))
    fields = model_fields(folder)
    assert fields["model_trained"] is False and len(fields["model_sha256"]) == 64
    assert "UNTRAINED" in describe_model(folder)


def test_a_batch_over_too_few_samples_is_refused() -> None:
    with pytest.raises(ValueError, match=r"97 samples: batch size\(s\) \[32, 256\] would run fewer than 4 full batches"):
        check_batches(97, [32, 256])
    check_batches(config.samples_for_gb(0.022), [32, 256])  # notebook 01's defaults: 1,072 samples


def test_runs_table_lists_scratch_runs_and_shipped_records(tmp_path: Path) -> None:
    run = tmp_path / "runs" / "lambda_sweep" / "local-b32"
    run.mkdir(parents=True)
    (run / "summary.json").write_text(json.dumps({
        "partitions": 5, "partitions_ok": 5, "data_gb": 0.01, "samples": 487, "execution_status": "SUCCEEDED",
        "model_info": {"model_sha256": "cd" * 32, "model_trained": False}, "data_info": {"distinct_galaxies": 444},
        "provenance": {"cpu_model": "AMD EPYC", "isa": "avx2"}, "engine": {"used": {"onnx": 5}}}))
    df = runs_index.runs_table(tmp_path / "runs", config.RECORDS_DIR)
    scratch = df[df["origin"] == "scratch"]
    assert scratch[["kind", "trained", "machine", "engine", "distinct_galaxies"]].values.tolist() == \
        [["pipeline", "UNTRAINED", "AMD EPYC", "onnx", 444]]
    assert scratch["admission"].iloc[0] == "refused: trained-model" and not scratch["shipped"].iloc[0]
    shipped = df[df["origin"] == "shipped"]
    assert shipped["shipped"].all() and {"pipeline", "sweep_point", "local_cpu", "bench"} <= set(shipped["kind"])
