"""The one Lambda model: every place names the same cheapest memory and $/GB; the REPORT-duration decomposition adds up."""

from __future__ import annotations

import json
import math
from typing import Any

import pytest

from cosmic_utils import config
from cosmic_utils.analysis import lambda_model, projection


@pytest.fixture(scope="module")
def record() -> dict[str, Any]:
    rec = projection.load()
    assert rec is not None, "data/records/lambda_projection.json is shipped"
    return rec


def _figure_text(fig: Any) -> str:
    """Every string drawn in a figure: suptitle, axis titles, texts, annotations, legend entries."""
    parts = [t.get_text() for t in fig.texts]
    if fig._suptitle is not None:
        parts.append(fig._suptitle.get_text())
    for ax in fig.axes:
        parts += [ax.get_title(loc) for loc in ("left", "center", "right")]
        parts += [t.get_text() for t in ax.texts]
        if ax.get_legend():
            parts += [t.get_text() for t in ax.get_legend().get_texts()]
    for leg in fig.legends:
        parts += [t.get_text() for t in leg.get_texts()]
    return "\n".join(parts)


@pytest.fixture(scope="module")
def places(record: dict[str, Any]) -> dict[str, str]:
    """Every place of the report that names a cheapest memory, as text."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from cosmic_utils.analysis import plots

    out = {"docs/report.md": (config.PROJECT_ROOT / "docs" / "report.md").read_text(encoding="utf-8"),
           "README.md": (config.PROJECT_ROOT / "README.md").read_text(encoding="utf-8"),
           "docs/cost_and_simulation.md": (config.PROJECT_ROOT / "docs" / "cost_and_simulation.md").read_text(
               encoding="utf-8")}
    for name in ("lambda_engine_projection", "memory_cost_duration"):
        fig = plots.draw_all_figures(only=[name])[name]
        out[f"figure {name}"] = _figure_text(fig)
        plt.close(fig)
    out["record (lambda_model.claims_of)"] = "\n".join(
        lambda_model.claims_of(record["by_cpu"], bounds=("point", "high")))
    return out


def test_every_place_names_the_same_cheapest_memory_and_usd_per_gb(places: dict[str, str],
                                                                    record: dict[str, Any]) -> None:
    assert lambda_model.disagreements(places) == []
    # each place names some configuration, and both figures name both measured CPUs
    for where, text in places.items():
        assert lambda_model.find_claims(text), f"{where} names no cheapest memory in the one format"
    machines = {c["machine"] for c in record["by_cpu"] if c.get("best")}
    assert len(machines) == 2
    for fig in ("figure lambda_engine_projection", "figure memory_cost_duration", "docs/report.md", "README.md"):
        assert {k[0] for k, _ in lambda_model.find_claims(places[fig])} == machines, fig
    # the README and report name the same as the record, not merely the same as each other
    rec = dict(lambda_model.find_claims(places["record (lambda_model.claims_of)"]))
    for where in ("docs/report.md", "README.md"):
        for key, value in lambda_model.find_claims(places[where]):
            assert rec[key] == value, (where, key)


def test_a_different_cheapest_memory_anywhere_is_caught(places: dict[str, str]) -> None:
    text = places["docs/report.md"]
    (machine, mb, bound), (mem, usd) = lambda_model.find_claims(text)[0]
    wrong = lambda_model.claim(machine, mb, 3008 if mem != 3008 else 1769, float(usd), bound)
    stale = dict(places, **{"README.md": places["README.md"] + "\n" + wrong})
    found = lambda_model.disagreements(stale)
    assert len(found) == 1 and "README.md" in found[0] and machine in found[0]
    other_usd = dict(places, **{"figure memory_cost_duration": lambda_model.claim(machine, mb, mem, float(usd) * 7, bound)})
    assert lambda_model.disagreements(other_usd)


def test_the_record_is_what_the_model_gives_now(record: dict[str, Any]) -> None:
    """The shipped record's per-CPU tables are the one model's output on the shipped records (not hand-edited)."""
    now = lambda_model.by_cpu(lambda_model.MEMORY_SIZES_MB, lambda_model.PROJECTED_PARTITIONS_MB)
    assert [c["machine"] for c in now] == [c["machine"] for c in record["by_cpu"]]
    for a, b in zip(now, record["by_cpu"], strict=True):
        assert json.loads(json.dumps(a.get("best"))) == b.get("best")


def test_per_cpu_rows_intel_and_amd_measured_arm64_not(record: dict[str, Any]) -> None:
    by = {c["key"]: c for c in record["by_cpu"]}
    assert set(by) == {"intel-amx", "amd-epyc-avx2", "arm64"}
    assert by["arm64"]["usd_per_gb"] == "not measured" and "best" not in by["arm64"]
    intel, amd = by["intel-amx"], by["amd-epyc-avx2"]
    assert "Intel" in intel["machine"] and intel["bench_path"] == "data/records/bench.json"
    assert "AMD EPYC" in amd["machine"] and amd["bench_path"] == "data/records/machines/amd-epyc-avx2/bench.json"
    # the slower AMD engine costs more per GB at the same memory; every row is a range low <= point <= high
    for mb in ("25", "75"):
        for i_row, a_row in zip(intel["tables"][mb], amd["tables"][mb], strict=True):
            assert a_row["usd_per_gb"] > i_row["usd_per_gb"]
            for r in (i_row, a_row):
                assert r["usd_per_gb_low"] <= r["usd_per_gb"] < r["usd_per_gb_high"]
    assert amd["samples_per_s_1t"] == pytest.approx(432.1957588953859)
    assert intel["samples_per_s_1t"] == pytest.approx(746.6048541617325)


def test_decomposition_adds_up_and_uses_the_published_loop(record: dict[str, Any]) -> None:
    d = lambda_model.decompose()
    assert d["unexplained_s"] == pytest.approx(record["decomposition"]["unexplained_s"])  # the record is current
    rows = {r["phase"]: r for r in d["rows"]}
    assert list(rows) == ["init", "model load", "download", "decode", "compute", "upload"]
    for bound in ("low", "point", "high"):
        warm = sum(r[bound] for r in d["rows"] if r["in_warm"])
        assert d["explained_s"][bound] == pytest.approx(warm)
    assert d["unexplained_s"]["point"] == pytest.approx(d["duration_s"] - d["explained_s"]["point"])
    assert d["unexplained_s"]["high"] == pytest.approx(d["duration_s"] - d["explained_s"]["low"])
    # the published warm median (33.7 s of 8 warm lines) and the cold line's Init Duration
    assert d["duration_s"] == pytest.approx(33.6877, abs=1e-3) and d["warm_lines"] == 8
    assert rows["init"]["point"] == pytest.approx(0.66381)
    # compute: the published loop's measured 1- and 2-thread rates, 3,833 samples at 5.79 vCPU;
    # the slow end (no gain above 2 threads) of the AMD record is samples / its 2-thread rate
    amd = json.loads((config.RECORDS_DIR / "machines" / "amd-epyc-avx2" / "bench.json").read_text(encoding="utf-8"))
    loop2 = next(r["samples_per_s"] for r in amd["rows"]
                 if r["engine"] == "published-loop" and r["threads"] == 2 and r["batch_size"] == 256)
    assert rows["compute"]["high"] == pytest.approx(d["samples"] / loop2)
    assert rows["compute"]["low"] < rows["compute"]["point"] < rows["compute"]["high"] < d["duration_s"]
    # most of the published duration is not explained by any phase
    assert 0.5 < d["unexplained_share"]["low"] < d["unexplained_share"]["high"] < 1.0
    assert all(math.isfinite(r[b]) for r in d["rows"] for b in ("low", "point", "high"))
