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


@pytest.mark.parametrize(("field", "value"), [("data_gb", True), ("wall_s", "12"), ("partitions", 2.5),
                                              ("data_gb", -0.1)])
def test_record_models_refuse_what_check_number_refuses(field: str, value: object) -> None:
    """A summary field that is a boolean, a numeric string or out of range is refused, naming the field."""
    from cosmic_utils.analysis import schemas

    summary = {"data_gb": 0.1, "wall_s": 10.0, "partitions": 2, "throughput": {"end_to_end_gb_s": 0.01},
               "timing": {"sum_duration_s": 4.0}, "cost": {"lambda_usd": 1e-4, "total_usd": 2e-4},
               "billing": {"memory_mb_configured": 1024}}
    assert schemas.validate(schemas.RunSummary, summary, "s.json").data_gb == 0.1
    with pytest.raises(strict.RecordError, match=rf"s\.json is malformed: field '{field}'"):
        schemas.validate(schemas.RunSummary, {**summary, field: value}, "s.json")
