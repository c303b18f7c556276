"""The shipped report claims no more than it shows (issue 21): published precision, distinct galaxies,
page-cache reads, the study's 4 GB peak as a claim, self-chosen thresholds said, reference README consistent."""

from __future__ import annotations

import re

import pytest

from cosmic_utils import config
from cosmic_utils.analysis import report


@pytest.fixture(scope="module")
def text() -> str:
    return (config.PROJECT_ROOT / "docs" / "report.md").read_text(encoding="utf-8")


def test_published_numbers_keep_their_precision(text: str) -> None:
    assert report.pub_g(67.11) == "67.11" and report.pub_g(45.61) == "45.61" and report.pub_g(1234.5) == "1,234.5"
    assert report.pub_g(2.0) == "2" and report.pub_g(float("nan")) == "-"
    assert "| 67.11 |" in text and "| 45.61 |" in text
    assert "| 67.1 |" not in text and "| 45.6 |" not in text


def test_the_studys_peak_is_a_claim_with_its_rule_said(text: str) -> None:
    row = next(line for line in text.splitlines() if line.startswith("| Efficiency (10 MB partitions) peaks at 67.11"))
    assert "38.94" in row and "chosen here" in row
    assert re.search(r"\*\*(supported|not supported)\*\*", row)


def test_thresholds_chosen_here_are_said(text: str) -> None:
    flat = next(line for line in text.splitlines() if "flat with data size |" in line)
    assert "chosen here" in flat
    fallback = next(line for line in text.splitlines() if line.startswith("| 25 MB partitions are a good fallback"))
    assert "chosen here" in fallback or "not testable here" in fallback


def test_tiled_run_is_named_page_cache_reads_and_samples_are_not_called_galaxies(text: str) -> None:
    assert "page-cache reads: a 1.00 GB base tiled with symlinks" in text
    oom = next(line for line in text.splitlines() if line.startswith("| The laptop runs out of memory at 8 GB"))
    assert "page-cache reads" in oom
    assert "9,747 galaxies" not in text and "at most 2,500 distinct" in text
    readme = (config.PROJECT_ROOT / "README.md").read_text(encoding="utf-8")
    assert "9,747 galaxies" not in readme


def test_reference_readme_quotes_the_rates_the_report_quotes(text: str) -> None:
    m = re.search(r"local CPU ([\d,]+) samples/s, A100 GPU ([\d,]+) samples/s", text)
    assert m, "the report quotes the published CPU and A100 rates"
    ref = (config.REFERENCE_DIR / "README.md").read_text(encoding="utf-8")
    assert f"CPU {m.group(1)}" in ref and f"A100 {m.group(2)}" in ref
    assert "~10,000" not in ref
