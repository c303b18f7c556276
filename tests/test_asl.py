"""The state machine definition: valid JSON, placeholders filled by regex only, wiring, Retry."""

from __future__ import annotations

import json

import pytest

from cosmic_utils.cloud import asl

VALUES = {
    "InitFunctionArn": "arn:aws:lambda:us-east-1:123456789012:function:t-init",
    "InferenceFunctionArn": "arn:aws:lambda:us-east-1:123456789012:function:t-inference",
    "SummarizeFunctionArn": "arn:aws:lambda:us-east-1:123456789012:function:t-summarize",
}


def test_template_is_json_with_expected_placeholders() -> None:
    text = asl.load_template()
    json.loads(text)
    assert asl.placeholders(text) == set(VALUES)


def test_filled_definition_passes_checks_and_keeps_paths() -> None:
    text = asl.render(VALUES)
    assert not asl.placeholders(text)
    assert asl.check_definition(text) == []
    machine = json.loads(text)
    # JSONPath and context paths survive filling (string.Template would corrupt them)
    m = machine["States"]["Partitions"]
    assert m["ItemSelector"]["item.$"] == "$$.Map.Item.Value"
    assert m["MaxConcurrencyPath"] == "$.request.max_concurrency"
    assert m["ItemReader"]["Resource"] == "arn:aws:states:::s3:getObject"
    assert m["ItemProcessor"]["ProcessorConfig"]["Mode"] == "DISTRIBUTED"
    inf = m["ItemProcessor"]["States"]["Inference"]
    assert inf["Parameters"]["FunctionName"] == VALUES["InferenceFunctionArn"]
    assert machine["States"]["Init"]["Next"] == "Partitions" and m["Next"] == "Summarize"
    assert m["Catch"][0]["Next"] == "Summarize"


def test_every_task_retries_lambda_service_errors() -> None:
    machine = asl.load_definition(VALUES)
    tasks = [(n, s) for _, n, s in asl._walk(machine["States"], "") if s["Type"] == "Task"]
    assert {n for n, _ in tasks} == {"Init", "Inference", "Summarize"}
    for name, state in tasks:
        errors = {e for r in state["Retry"] for e in r["ErrorEquals"]}
        assert set(asl.LAMBDA_SERVICE_ERRORS) <= errors, name
        assert all(r["BackoffRate"] >= 1.0 and r["MaxAttempts"] >= 1 for r in state["Retry"])


def test_fill_rejects_missing_and_unknown_values() -> None:
    with pytest.raises(asl.DefinitionError, match="no value"):
        asl.fill(asl.load_template(), {"InitFunctionArn": "x"})
    with pytest.raises(asl.DefinitionError, match="no placeholder"):
        asl.fill(asl.load_template(), {**VALUES, "Extra": "y"})


def test_fill_touches_only_placeholders() -> None:
    text = '{"a.$": "$.x", "b.$": "$$.Map.Item.Value", "c": "${Name}", "d": "$Name", "e": "${ not }"}'
    out = json.loads(asl.fill(text, {"Name": 'v"q'}))
    assert out == {"a.$": "$.x", "b.$": "$$.Map.Item.Value", "c": 'v"q', "d": "$Name", "e": "${ not }"}


def test_checker_finds_broken_wiring() -> None:
    machine = asl.load_definition(VALUES)
    machine["States"]["Init"]["Next"] = "Nowhere"
    del machine["States"]["Summarize"]["Retry"]
    problems = asl.check_definition(machine)
    assert any("Nowhere" in p for p in problems)
    assert any("Summarize: Task without Retry" in p for p in problems)
    assert any("unreachable" in p for p in problems)
    assert asl.check_definition('{"StartAt": "A", "States": {"A": {"Type": "Pass", "End": true, "x": "${Left}"}}}')


def test_moto_parser_accepts_definition() -> None:
    from moto.stepfunctions.parser.asl.parse.asl_parser import AmazonStateLanguageParser

    AmazonStateLanguageParser.parse(asl.render(VALUES))
