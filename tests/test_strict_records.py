"""Numbers read from a bench record are finite and plausible, or the projection refuses naming them."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from cosmic_utils import config
from cosmic_utils.cli import main


@pytest.mark.parametrize("bad", ["Infinity", "NaN", "1e300", "1e-300", "0", "-5"])
def test_an_absurd_speed_is_refused_naming_file_field_and_value(bad: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    doc = json.loads((config.RECORDS_DIR / "bench.json").read_text())
    i = next(k for k, r in enumerate(doc["rows"]) if r["engine"] == "onnx-int8" and r["threads"] == 1)
    text = json.dumps(doc).replace(json.dumps(doc["rows"][i])[:-1],
                                   json.dumps({**doc["rows"][i], "samples_per_s": 1.0})[:-1].replace("1.0", bad, 1), 1)
    assert bad in text
    path = tmp_path / "bench.json"
    path.write_text(text)
    out = tmp_path / "proj.json"
    assert main(["simulate", "--project", "--bench", str(path), "--json", str(out)]) == 1
    err = capsys.readouterr().err
    assert str(path) in err and f"rows[{i}].samples_per_s" in err and "threads=1 row" not in err
    assert not out.exists()


def test_the_projection_record_is_standard_json(tmp_path: Path) -> None:
    out = tmp_path / "proj.json"
    assert main(["simulate", "--project", "--json", str(out)]) == 0
    json.loads(out.read_text(), parse_constant=lambda c: pytest.fail(f"non-standard JSON constant {c}"))
