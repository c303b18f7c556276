"""Cost model: billing rules, price overrides, the seed project's table, pipeline summaries."""

from __future__ import annotations

import csv
import math
import subprocess
import sys
from decimal import Decimal

import pytest

from cosmic_utils import config
from cosmic_utils.analysis import cost


def _table() -> list[dict[str, str]]:
    with open(config.REFERENCE_DIR / "team6" / "lambda_table.csv", encoding="utf-8") as fh:
        return list(csv.DictReader(fh))


def _close_to_printed(value: float, printed: str, rel: float = 0.01) -> bool:
    """Within 1 % of the table, or within half a unit of its last printed decimal (rounded values)."""
    target = float(printed)
    decimals = -Decimal(printed).as_tuple().exponent
    return abs(value - target) <= max(rel * abs(target), 0.5 * 10.0 ** (-decimals) + 1e-12)


def test_billed_duration_rounds_up_to_1ms() -> None:
    assert cost.billed_ms(33676.81) == 33677
    assert cost.billed_ms(1000.0) == 1000
    assert cost.billed_ms(0.2) == 1
    with pytest.raises(ValueError):
        cost.billed_ms(-1)


def test_lambda_cost_uses_configured_memory_and_arch() -> None:
    x86 = cost.lambda_cost([1000.0], 1024)
    assert x86.gb_seconds == pytest.approx(1.0)
    assert x86.compute_usd == pytest.approx(0.0000166667)
    assert x86.request_usd == pytest.approx(0.2e-6)
    arm = cost.lambda_cost([1000.0], 1024, arch="arm64")
    assert arm.compute_usd == pytest.approx(0.0000133334)
    big = cost.lambda_cost([1000.0], 10240)
    assert big.compute_usd == pytest.approx(10 * x86.compute_usd)
    # ephemeral storage: only above the free 512 MB
    assert cost.lambda_cost([1000.0], 1024, ephemeral_mb=512).ephemeral_usd == 0.0
    eph = cost.lambda_cost([1000.0], 1024, ephemeral_mb=512 + 1024).ephemeral_usd
    assert eph == pytest.approx(0.0000000309)
    with pytest.raises(ValueError, match="memory_mb"):
        cost.lambda_cost([1.0], 20000)
    with pytest.raises(ValueError, match="architecture"):
        cost.lambda_cost([1.0], 1024, arch="sparc")


def test_stepfunctions_and_s3_costs() -> None:
    assert cost.stepfunctions_cost(1000) == pytest.approx((4 + 2000) * 0.025 / 1000)
    assert cost.s3_cost(gets=1000, puts=1000, lists=1000) == pytest.approx(0.0004 + 0.005 + 0.005)
    req = cost.pipeline_s3_requests(2500, cold_starts=10)
    assert req["lists"] == 6 and req["gets"] == 2500 + 10 + 2500


def test_price_override_dict_and_yaml(tmp_path) -> None:
    prices = cost.load_prices({"lambda": {"gb_second_usd": {"x86_64": 1.0}}})
    assert prices["lambda"]["gb_second_usd"]["x86_64"] == 1.0
    assert prices["lambda"]["gb_second_usd"]["arm64"] == pytest.approx(0.0000133334)  # rest kept
    assert cost.lambda_cost([1000.0], 1024, prices=prices).compute_usd == pytest.approx(1.0)
    path = tmp_path / "p.yaml"
    path.write_text("stepfunctions:\n  standard_transition_usd_per_1000: 1.0\n")
    assert cost.stepfunctions_cost(0, prices=cost.load_prices(path)) == pytest.approx(0.004)
    bad = tmp_path / "bad.yaml"
    bad.write_text("- 1\n- 2\n")
    with pytest.raises(ValueError, match="bad.yaml"):
        cost.load_prices(bad)
    assert cost.load_prices()["as_of"]  # the table is dated


def test_reproduces_seed_table() -> None:
    """cost, throughput and efficiency of every row from its inputs (table values are rounded)."""
    rows = _table()
    assert len(rows) == 22
    for r in rows:
        pub = cost.published_formulas(float(r["partition_mb"]), int(r["lambdas"]), float(r["avg_runtime_s"]),
                                      float(r["avg_memory_mb"]))
        assert _close_to_printed(pub.cost_usd, r["cost_usd"]), (r, pub)
        assert _close_to_printed(pub.throughput_gb_s, r["throughput_gb_s"]), (r, pub)
        assert _close_to_printed(pub.data_gb, r["data_gb"]), (r, pub)
        assert _close_to_printed(pub.perf_efficiency_gb_s_per_usd, r["perf_efficiency_gb_s_per_usd"]), (r, pub)
    # rows printed with >= 3 significant digits match within 1 % outright
    strict = [r for r in rows if float(r["cost_usd"]) >= 0.01]
    assert strict
    for r in strict:
        pub = cost.published_formulas(float(r["partition_mb"]), int(r["lambdas"]), float(r["avg_runtime_s"]),
                                      float(r["avg_memory_mb"]))
        assert pub.cost_usd == pytest.approx(float(r["cost_usd"]), rel=0.01)


def test_billed_next_to_published() -> None:
    out = cost.reproduce_published_table(_table())
    for r in out:
        assert r["billed_assumed_memory_mb"] == cost.ASSUMED_PUBLISHED_MEMORY_MB
        # configured 10,240 MB is more than any measured average, so AWS bills more
        assert r["billed_total_usd"] > r["published_cost_usd"]
        assert r["billed_perf_efficiency_gb_s_per_usd"] < r["published_perf_efficiency_gb_s_per_usd"]


def _records() -> list[dict]:
    base = {"status": "ok", "data_bytes": 25 * 2**20, "duration_s": 10.0, "inference_s": 5.0, "cold_start": "True"}
    return [dict(base, billed_duration_ms=10000), dict(base, billed_duration_ms="", cold_start=False),
            dict(base, status="failed", data_bytes=0, billed_duration_ms=2000, inference_s="", cold_start=False)]


def test_summarize_pipeline_cost() -> None:
    s = cost.summarize_pipeline_cost(_records(), memory_mb=2048, wall_s=20.0)
    assert s["partitions"] == 3 and s["partitions_ok"] == 2 and s["cold_starts"] == 1
    assert s["billed_ms_total"] == 22000
    lam = cost.lambda_cost([10000, 10000, 2000], 2048, already_billed=True).total_usd
    assert s["lambda_usd"] == pytest.approx(lam)
    assert s["total_usd"] == pytest.approx(lam + s["stepfunctions_usd"] + s["s3_usd"])
    data_gb = 2 * 25 * 2**20 / 1e9
    assert s["data_gb"] == pytest.approx(data_gb)
    assert s["throughput_e2e_gb_s"] == pytest.approx(data_gb / 20.0)
    assert s["throughput_per_worker_gb_s"] == pytest.approx(data_gb / 5.0)
    assert s["efficiency_e2e_gb_s_per_usd"] == pytest.approx(data_gb / 20.0 / s["total_usd"])
    no_wall = cost.summarize_pipeline_cost(_records(), memory_mb=2048)
    assert math.isnan(no_wall["throughput_e2e_gb_s"])


def test_cost_module_is_plain_python() -> None:
    code = ("import sys, cosmic_utils.analysis.cost as c; c.summarize_pipeline_cost([], 1024); "
            "bad = [m for m in ('numpy', 'pandas', 'torch') if m in sys.modules]; assert not bad, bad")
    subprocess.run([sys.executable, "-c", code], check=True)


def test_summarize_accepts_a_dataframe() -> None:
    import pandas as pd

    df = pd.DataFrame(_records())
    assert cost.summarize_pipeline_cost(df, 2048)["partitions"] == 3


def test_cost_cli(capsys, tmp_path) -> None:
    from cosmic_utils import cli

    assert cli.main(["cost", "--published"]) == 0
    out = capsys.readouterr().out
    assert "ASSUMED configured memory 10240 MB" in out and "data_size_25mb" in out
    path = tmp_path / "records.csv"
    with open(path, "w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=list(_records()[0]))
        writer.writeheader()
        writer.writerows(_records())
    assert cli.main(["cost", "--records", str(path), "--memory-mb", "2048", "--wall-s", "20"]) == 0
    assert '"partitions": 3' in capsys.readouterr().out
