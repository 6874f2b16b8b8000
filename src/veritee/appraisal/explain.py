"""Turning a policy's ``checks`` output into explained :class:`Check` objects.

A policy check is an object with at least ``name`` (string) and ``held`` (boolean). The
optional members say what was compared, and veritee fills in what the policy leaves out:

* ``field``: where the claim is, a dotted path (or a list of keys) under the TEE's claims.
  Without ``actual``, veritee reads the value there.
* ``reference``: the reference-value name compared with. Without ``expected``, veritee
  reads that reference value.
* ``actual``, ``expected``: the compared values, when the policy gives them itself.
* ``rule``: how they were compared, for the wording: ``in`` (actual is one of the reference
  values), ``min`` (actual is a number at least one of them), ``eq`` (actual equals expected).
* ``optional``: true when a missing reference value means "not checked".
* ``hint``: a sentence added to the explanation when the check failed.
* ``detail``: the whole explanation, replacing veritee's wording.

Letting veritee fill in the values keeps the policy small, and a static array of checks is
cheaper to evaluate than one that copies the values itself (about 4× with rego-cpp, the
engine veritee used before regorus).
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping, Sequence
from typing import Any, Final

from veritee.appraisal.result import Check

ABSENT: Final = object()
"""A value the path does not reach."""

_HEX: Final = re.compile(r"[0-9a-fA-F]+")
_SHOWN_ITEMS: Final = 2


def resolve(document: Any, path: str | Sequence[Any]) -> Any:
    """The value at ``path`` (dotted string or list of keys/indices) in ``document``, or ABSENT."""
    keys: Sequence[Any] = path.split(".") if isinstance(path, str) else path
    value = document
    for key in keys:
        in_object = isinstance(value, Mapping) and isinstance(key, str) and key in value
        in_array = (isinstance(value, list) and isinstance(key, int)
                    and not isinstance(key, bool) and -len(value) <= key < len(value))
        if not (in_object or in_array):
            return ABSENT
        value = value[key]
    return value


def check_from_entry(entry: Mapping[str, Any], *, claims: Any,
                     references: Mapping[str, Any]) -> Check:
    """An explained Check from one validated policy ``checks`` entry."""
    name: str = entry["name"]
    held: bool = entry["held"]
    path = entry.get("field")
    reference = entry.get("reference") if isinstance(entry.get("reference"), str) else None
    if "actual" in entry:
        actual = entry["actual"]
    elif isinstance(path, str | list):
        actual = resolve(claims, path)
    else:
        actual = ABSENT
    if "expected" in entry:
        expected = entry["expected"]
    elif reference is not None:
        expected = references.get(reference, ABSENT)
    else:
        expected = ABSENT
    values: dict[str, Any] = {}
    if path is not None:
        values["field"] = path if isinstance(path, str) else ".".join(map(str, path))
    if actual is not ABSENT:
        values["actual"] = actual
    if expected is not ABSENT:
        values["expected"] = expected
    if reference is not None:
        values["reference"] = reference
    detail = entry.get("detail")
    if not isinstance(detail, str):
        detail = phrase(entry.get("rule"), held, field=values.get("field"), actual=actual,
                        expected=expected, reference=reference)
        hint = entry.get("hint")
        if not held and isinstance(hint, str):
            detail = f"{detail}; {hint}"
    return Check(name=name, held=held, detail=detail, values=values)


def phrase(rule: Any, held: bool, *, field: str | None, actual: Any, expected: Any,
           reference: str | None) -> str:
    """The wording of one check's outcome."""
    label = field or "the value"
    subject = f"{field} is " if field else ""
    if rule in ("in", "min") and reference is not None and expected is ABSENT:
        shown = "absent" if actual is ABSENT else show(actual)
        if held:
            return f"{subject}{shown}; no reference value {reference}, not checked"
        return f"{subject}{shown}, but no reference value {reference} is set"
    refs = f"{reference}: {show(expected)}" if reference is not None else show(expected)
    if actual is ABSENT:
        return f"{label} is absent ({refs})" if expected is not ABSENT else f"{label} is absent"
    if rule == "in":
        if held:
            return f"{show(actual)} is a reference value ({reference or refs})"
        return f"{show(actual)}{_kind_note(actual, expected)} is not a reference value ({refs})"
    if rule == "min":
        return _phrase_min(held, label, actual=actual, expected=expected,
                           reference=reference, refs=refs)
    if rule == "eq":
        if held:
            return f"{subject}{show(actual)}"
        return (f"{subject}{show(actual)}{_kind_note(actual, expected)}, "
                f"expected {show(expected)}")
    outcome = "held" if held else "failed"
    if expected is ABSENT:
        return f"{outcome}: {subject}{show(actual)}"
    return f"{outcome}: {subject}{show(actual)}, compared with {refs}"


def _phrase_min(held: bool, label: str, *, actual: Any, expected: Any, reference: str | None,
                refs: str) -> str:
    if not is_number(actual):
        return f"{label} is {show(actual)} ({kind(actual)}), not a number ({refs})"
    minimums = [m for m in expected if is_number(m)] if isinstance(expected, list) else (
        [expected] if is_number(expected) else [])
    if not minimums:
        where = reference or "the minimum"
        return f"{label} is {show(actual)}, but {where} holds no number ({refs})"
    low = min(minimums)
    if held:
        return f"{label} is {show(actual)} ≥ {show(low)} ({refs})"
    return f"{label} is {show(actual)}, below the minimum {show(low)} ({refs})"


def _kind_note(actual: Any, expected: Any) -> str:
    """`` (a string)`` when actual's JSON type differs from expected's (or its items')."""
    sample = expected
    if isinstance(expected, list) and expected:
        sample = expected[0]
    if expected is ABSENT or actual is None or kind(actual) == kind(sample):
        return ""
    return f" ({kind(actual)})"


def is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def kind(value: Any) -> str:
    """The JSON type of ``value``, with its article."""
    if value is ABSENT:
        return "absent"
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    if is_number(value):
        return "a number"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, list):
        return "an array"
    return "an object"


#: Hex strings up to this many characters (a 64-byte value) are shown in full.
_FULL_HEX = 128


def show(value: Any) -> str:
    """A readable rendering: digests in full (up to 64 bytes of hex), longer hex shortened
    to ``7a1e5c…841f``, strings quoted, lists cut after a few items with the count."""
    if value is ABSENT:
        return "absent"
    if isinstance(value, str):
        if len(value) > 16 and _HEX.fullmatch(value):
            return value if len(value) <= _FULL_HEX else f"{value[:12]}…{value[-8:]}"
        if len(value) > 60:
            return json.dumps(value[:57], ensure_ascii=False)[:-1] + '…"'
        return json.dumps(value, ensure_ascii=False)
    if isinstance(value, list):
        items = [show(item) for item in value[:_SHOWN_ITEMS]]
        if len(value) > _SHOWN_ITEMS:
            items.append(f"… {len(value) - _SHOWN_ITEMS} more")
        return f"[{', '.join(items)}]"
    if isinstance(value, Mapping):
        items = [f"{json.dumps(str(k))}: {show(v)}" for k, v in list(value.items())[:_SHOWN_ITEMS]]
        if len(value) > _SHOWN_ITEMS:
            items.append("…")
        return "{" + ", ".join(items) + "}"
    return json.dumps(value)


__all__ = ["ABSENT", "check_from_entry", "is_number", "kind", "phrase", "resolve", "show"]
