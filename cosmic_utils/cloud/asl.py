"""Load, fill and check the Step Functions definition in ``stepfunctions/*.asl.json``.

The definition is committed with ``${Name}`` placeholders (function ARNs), filled at deploy time by
a regex (never ``string.Template``, which would corrupt JSONPath); :func:`check_definition` is the
static check of tests and deploy. Reasoning: docs/aws.md#implementation-notes-cosmic_utilscloud
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

from cosmic_utils import config

PLACEHOLDER = re.compile(r"\$\{([A-Za-z][A-Za-z0-9_]*)\}")
DEFAULT_DEFINITION = "pipeline"
#: The Lambda service errors every Task retries with backoff.
LAMBDA_SERVICE_ERRORS: tuple[str, ...] = (
    "Lambda.TooManyRequestsException",
    "Lambda.ServiceException",
    "Lambda.AWSLambdaException",
    "Lambda.SdkClientException",
)


class DefinitionError(ValueError):
    """The state machine definition is malformed or a placeholder is unfilled / unknown."""


def definition_path(name: str = DEFAULT_DEFINITION) -> Path:
    return config.STEPFUNCTIONS_DIR / f"{name}.asl.json"


def load_template(name: str = DEFAULT_DEFINITION) -> str:
    """The raw definition text with its placeholders."""
    path = definition_path(name)
    try:
        return path.read_text()
    except FileNotFoundError as exc:
        raise DefinitionError(f"{path}: state machine definition not found") from exc


def placeholders(text: str) -> set[str]:
    """Names of the ``${Name}`` placeholders in ``text``."""
    return set(PLACEHOLDER.findall(text))


def fill(text: str, values: Mapping[str, str]) -> str:
    """Replace every ``${Name}`` by ``values[Name]`` (JSON-escaped), all and only those (else DefinitionError)."""
    names = placeholders(text)
    missing = sorted(names - set(values))
    unused = sorted(set(values) - names)
    if missing or unused:
        raise DefinitionError(
            "cannot fill the definition:"
            + (f" no value for {missing}" if missing else "")
            + (f" no placeholder for {unused}" if unused else "")
        )
    return PLACEHOLDER.sub(lambda m: json.dumps(str(values[m.group(1)]))[1:-1], text)


def render(values: Mapping[str, str], name: str = DEFAULT_DEFINITION) -> str:
    """The filled and checked definition, ready for create/update_state_machine."""
    text = fill(load_template(name), values)
    problems = check_definition(text)
    if problems:
        raise DefinitionError(f"{definition_path(name)}: " + "; ".join(problems))
    return text


def _walk(states: Mapping[str, Any], where: str) -> Iterator[tuple[str, str, Mapping[str, Any]]]:
    for name, state in states.items():
        yield where, name, state
        proc = state.get("ItemProcessor") or state.get("Iterator")
        if isinstance(proc, Mapping):
            yield from _walk(proc.get("States", {}), f"{where}{name}/")
        for i, branch in enumerate(state.get("Branches", []) or []):
            yield from _walk(branch.get("States", {}), f"{where}{name}[{i}]/")


def _check_machine(machine: Mapping[str, Any], where: str, problems: list[str]) -> None:
    states = machine.get("States")
    if not isinstance(states, Mapping) or not states:
        problems.append(f"{where or 'top level'}: no States")
        return
    start = machine.get("StartAt")
    if start not in states:
        problems.append(f"{where or 'top level'}: StartAt {start!r} is not a state")
    reachable: set[str] = set()
    todo = [start]
    while todo:
        cur = todo.pop()
        if cur in reachable or cur not in states:
            continue
        reachable.add(cur)
        st = states[cur]
        targets = [st.get("Next"), st.get("Default")]
        targets += [c.get("Next") for c in st.get("Catch", []) or []]
        targets += [c.get("Next") for c in st.get("Choices", []) or []]
        for t in (t for t in targets if t is not None):
            if t not in states:
                problems.append(f"{where}{cur}: target {t!r} is not a state")
            todo.append(t)
    for name, st in states.items():
        if name not in reachable:
            problems.append(f"{where}{name}: unreachable")
        if st.get("Type") not in ("Choice", "Succeed", "Fail") and not st.get("End") and not st.get("Next"):
            problems.append(f"{where}{name}: neither Next nor End")
        proc = st.get("ItemProcessor") or st.get("Iterator")
        if isinstance(proc, Mapping):
            _check_machine(proc, f"{where}{name}/", problems)


def check_definition(definition: str | Mapping[str, Any]) -> list[str]:
    """Problems of a (filled) definition; an empty list means it passed."""
    problems: list[str] = []
    if isinstance(definition, str):
        left = placeholders(definition)
        if left:
            problems.append(f"placeholders left unfilled: {sorted(left)}")
        try:
            machine = json.loads(definition)
        except json.JSONDecodeError as exc:
            return problems + [f"not valid JSON: {exc}"]
    else:
        machine = definition
    _check_machine(machine, "", problems)
    for where, name, state in _walk(machine.get("States", {}), ""):
        if state.get("Type") == "Task":
            retry = state.get("Retry") or []
            covered = {e for r in retry for e in r.get("ErrorEquals", [])}
            if not retry:
                problems.append(f"{where}{name}: Task without Retry")
            elif not set(LAMBDA_SERVICE_ERRORS) <= covered and "States.ALL" not in covered:
                problems.append(f"{where}{name}: Retry does not cover {sorted(set(LAMBDA_SERVICE_ERRORS) - covered)}")
            for r in retry:
                if r.get("BackoffRate", 2.0) < 1.0:
                    problems.append(f"{where}{name}: BackoffRate below 1")
        if state.get("Type") == "Map":
            proc = state.get("ItemProcessor") or {}
            mode = (proc.get("ProcessorConfig") or {}).get("Mode")
            if mode == "DISTRIBUTED" and not state.get("ItemReader"):
                problems.append(f"{where}{name}: DISTRIBUTED Map without ItemReader")
    return problems


def load_definition(values: Mapping[str, str], name: str = DEFAULT_DEFINITION) -> dict[str, Any]:
    """The filled definition as a dict."""
    return json.loads(render(values, name))
