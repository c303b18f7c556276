"""runtime.strict: numbers from records are finite and in range; JSON is standard."""

import math

import pytest

from cosmic_utils.runtime import strict


@pytest.mark.parametrize("bad", [math.inf, -math.inf, math.nan, "12", None, True])
def test_non_numbers_are_refused_with_file_and_field(bad) -> None:
    with pytest.raises(strict.RecordError, match=r"bench\.json: field 'samples_per_s'"):
        strict.check_number(bad, source="bench.json", field="samples_per_s", lo=0, lo_open=True)


def test_range_is_enforced_and_value_named() -> None:
    assert strict.check_number(5, source="f", field="x", lo=0, hi=10) == 5.0
    with pytest.raises(strict.RecordError, match=r"1e\+300.*<= 1e\+06"):
        strict.check_number(1e300, source="f", field="x", lo=0, hi=1e6)
    with pytest.raises(strict.RecordError, match="> 0"):
        strict.check_number(0.0, source="f", field="x", lo=0, lo_open=True)


def test_json_writer_refuses_nan() -> None:
    assert strict.dumps({"a": 1.5}) == '{"a": 1.5}'
    with pytest.raises(ValueError):
        strict.dumps({"a": math.inf})
