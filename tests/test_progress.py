"""Progress output: a live bar on a terminal, a few plain lines (no carriage returns) elsewhere."""

from __future__ import annotations

import io

import pytest

from cosmic_utils.progress import PLAIN_STEPS, PlainProgress, progress


class _Tty(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_not_a_tty_gives_a_few_plain_lines(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("COSMIC_PROGRESS", raising=False)
    out = io.StringIO()
    bar = progress(range(100_000), total=100_000, desc="render", unit="gal", file=out)
    assert isinstance(bar, PlainProgress)
    assert sum(1 for _ in bar) == 100_000
    text = out.getvalue()
    assert "\r" not in text and "\x1b" not in text
    lines = text.splitlines()
    assert 2 <= len(lines) <= PLAIN_STEPS + 2, lines
    assert lines[0].startswith("render: 0/100,000 gal") and "100,000/100,000 gal (100%)" in lines[-1]


def test_manual_bar_with_late_total_and_postfix(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("COSMIC_PROGRESS", raising=False)
    out = io.StringIO()
    bar = progress(total=None, desc="partitions", unit="part", file=out, leave=True)
    for _ in range(500):
        bar.update(0)  # polling with nothing new prints nothing
    bar.total = 8
    bar.refresh()
    for _ in range(8):
        bar.update(1)
    bar.set_postfix(loss="0.0123")
    bar.close()
    bar.close()  # closing twice is harmless
    lines = out.getvalue().splitlines()
    assert "\r" not in out.getvalue() and len(lines) <= PLAIN_STEPS + 2, lines
    assert lines[-1].startswith("partitions: 8/8 part (100%)") and "loss=0.0123" in lines[-1]


def test_terminal_gets_the_tqdm_bar(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("COSMIC_PROGRESS", raising=False)
    out = _Tty()
    for _ in progress(range(50), desc="bar", file=out):
        pass
    assert "\r" in out.getvalue()


@pytest.mark.parametrize("mode, expect_cr, empty", [("plain", False, False), ("off", False, True), ("bar", True, False)])
def test_environment_override(monkeypatch: pytest.MonkeyPatch, mode: str, expect_cr: bool, empty: bool) -> None:
    monkeypatch.setenv("COSMIC_PROGRESS", mode)
    out = _Tty() if mode == "plain" else io.StringIO()
    for _ in progress(range(20), desc="x", file=out):
        pass
    assert ("\r" in out.getvalue()) == expect_cr
    assert (out.getvalue() == "") == empty
