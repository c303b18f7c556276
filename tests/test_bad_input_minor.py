"""Issue 22's minor points: usage status for an oversized batch, the .pt refusal, an empty manifest."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from test_handlers import make_dataset

from cosmic_utils.cli import main
from cosmic_utils.data.pt_io import read_pt_partition
from cosmic_utils.runtime.manifest import MANIFEST_NAME
from cosmic_utils.runtime.partition import PartitionError
from cosmic_utils.runtime.request import parse_request
from cosmic_utils.runtime.steps.common import DataError
from cosmic_utils.runtime.steps.init import list_partitions
from cosmic_utils.runtime.storage import open_storage


@pytest.mark.parametrize("command", [["predict", "--catalog", "x.txt", "--out", "p.csv"], ["run"]])
def test_an_oversized_batch_is_a_usage_error(command: list[str], capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exc:
        main([*command, "--batch-size", "100000"])
    assert exc.value.code == 2 and "must be <= 8192" in capsys.readouterr().err


class _NotATensor:  # a class the safe loader does not allow
    pass


def test_the_pt_refusal_never_suggests_the_unsafe_option(tmp_path: Path) -> None:
    path = tmp_path / "bad.pt"
    torch.save({"x": _NotATensor()}, path)
    with pytest.raises(PartitionError) as exc:
        read_pt_partition(path)
    text = str(exc.value)
    assert "holds Python objects other than tensors" in text and "weights_only=False" not in text


def test_a_manifest_listing_nothing_beside_partitions_says_so(tmp_path: Path) -> None:
    store = open_storage(tmp_path)
    make_dataset(store, 3, samples=4)
    doc = json.loads((tmp_path / MANIFEST_NAME).read_text())
    doc["entries"] = []
    (tmp_path / MANIFEST_NAME).write_text(json.dumps(doc))
    req = parse_request({"run_id": "m", "data": str(tmp_path), "model": str(tmp_path), "results": str(tmp_path / "r")})
    with pytest.raises(DataError, match=r"manifest lists no partitions, while the folder holds 3 \.cpart"):
        list_partitions(req, store)
