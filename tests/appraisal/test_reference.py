"""Reference values: Trustee's RVPS sample message and plain JSON/TOML mappings."""

from __future__ import annotations

import base64
import json
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from veritee.appraisal import (
    ReferenceValue,
    ReferenceValueError,
    active,
    parse_reference_values,
    reference_mapping,
)
from veritee.errors import MisuseError

NOW = datetime(2026, 6, 1, tzinfo=UTC)
MEASUREMENT = "ab" * 48


def sample_message(payload: Any, **changes: Any) -> dict[str, Any]:
    raw = payload if isinstance(payload, bytes) else json.dumps(payload).encode()
    return {"version": "0.1.0", "type": "sample",
            "payload": base64.b64encode(raw).decode(), **changes}


def test_trustee_sample_message() -> None:
    message = sample_message({"snp_launch_measurement": [MEASUREMENT], "snp_snp": [23]})
    values = parse_reference_values(message, source="admin request")
    assert values == [
        ReferenceValue("snp_launch_measurement", [MEASUREMENT],
                       "RVPS sample message from admin request"),
        ReferenceValue("snp_snp", [23], "RVPS sample message from admin request"),
    ]
    # as JSON text too, the way it arrives over HTTP
    assert parse_reference_values(json.dumps(message), source="admin request") == values


def test_plain_json_mapping() -> None:
    document = json.dumps({
        "snp_launch_measurement": [MEASUREMENT],
        "snp_snp": {"values": [23], "expires": "2027-01-01T00:00:00Z",
                    "provenance": "AMD firmware 1.55", "version": 3},
    })
    short, long_ = parse_reference_values(document, source="refs.json")
    assert short == ReferenceValue("snp_launch_measurement", [MEASUREMENT], "refs.json")
    assert long_ == ReferenceValue("snp_snp", [23], "AMD firmware 1.55",
                                   datetime(2027, 1, 1, tzinfo=UTC), 3)


def test_toml_mapping() -> None:
    document = f"""
snp_launch_measurement = ["{MEASUREMENT}"]
allow_emulated = [true]

[snp_snp]
values = [23, 24]
expires = 2027-01-01T00:00:00Z
"""
    values = parse_reference_values(document.encode(), source="refs.toml")
    assert [v.name for v in values] == ["snp_launch_measurement", "allow_emulated", "snp_snp"]
    assert values[1].values == [True]
    assert values[2].expires == datetime(2027, 1, 1, tzinfo=UTC)


def test_active_drops_expired() -> None:
    values = [
        ReferenceValue("a", [1], "t"),
        ReferenceValue("b", [2], "t", expires=NOW - timedelta(seconds=1)),
        ReferenceValue("c", [3], "t", expires=NOW),
        ReferenceValue("d", [4], "t", expires=NOW + timedelta(days=1)),
    ]
    assert [v.name for v in active(values, NOW)] == ["a", "d"]
    with pytest.raises(MisuseError):
        active(values, NOW.replace(tzinfo=None))


def test_reference_mapping_joins_names() -> None:
    values = [ReferenceValue("m", ["a", "b"], "x"), ReferenceValue("n", [1], "x"),
              ReferenceValue("m", ["b", "c"], "y")]
    assert reference_mapping(values) == {"m": ["a", "b", "c"], "n": [1]}


@pytest.mark.parametrize(("name", "document", "message"), [
    ("not JSON or TOML", "{{{", "neither JSON"),
    ("not an object", "[1, 2]", "is an object, not list"),
    ("not UTF-8", b"\xff\xfe", "not UTF-8"),
    ("scalar value", {"snp_snp": 23}, "wrap a single value in a list"),
    ("null value", {"snp_snp": None}, "null is neither"),
    ("values not a list", {"snp_snp": {"values": "23"}}, "not a list"),
    ("no values", {"snp_snp": {"expires": "2027-01-01T00:00:00Z"}}, "has no 'values'"),
    ("unknown key", {"snp_snp": {"values": [1], "expiry": "x"}}, "unknown keys expiry"),
    ("bad time", {"a": {"values": [1], "expires": "next year"}}, "not an RFC 3339 time"),
    ("naive time", {"a": {"values": [1], "expires": "2027-01-01T00:00:00"}}, "no time zone"),
    ("time of wrong type", {"a": {"values": [1], "expires": 5}}, "not a time"),
    ("bad version", {"a": {"values": [1], "version": 0}}, "version 0"),
    ("boolean version", {"a": {"values": [1], "version": True}}, "version True"),
    ("empty provenance", {"a": {"values": [1], "provenance": ""}}, "provenance"),
    ("empty name", {"": [1]}, "name ''"),
    ("control character in name", {"a\nb": [1]}, "control characters"),
    ("NaN value", {"a": [float("nan")]}, "not a JSON number"),
    ("RVPS type", sample_message({}, type="swid"), "type 'swid' is not supported"),
    ("RVPS version", sample_message({}, version="9.9"), "version '9.9'"),
    ("payload not base64", {"version": "0.1.0", "type": "sample", "payload": "***"},
     "not base64"),
    ("payload not JSON", sample_message(b"not json"), "not base64 of a JSON object"),
    ("payload not an object", sample_message([1]), "payload is list"),
    ("payload scalar value", sample_message({"a": "x"}), "wrap a single value"),
])
def test_errors(name: str, document: Any, message: str) -> None:
    with pytest.raises(ReferenceValueError, match=message):
        parse_reference_values(document, source="test")


def test_reference_value_error_is_misuse() -> None:
    assert issubclass(ReferenceValueError, MisuseError)


def test_to_dict() -> None:
    value = ReferenceValue("a", [1], "t", datetime(2027, 1, 1, tzinfo=UTC), 2)
    assert value.to_dict() == {"name": "a", "values": [1], "provenance": "t",
                               "expires": "2027-01-01T00:00:00+00:00", "version": 2}
