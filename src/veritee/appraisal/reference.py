"""Reference values: the known-good values attestation policies compare claims with.

Two document forms are accepted (service-anchors.md §1.7):

* Trustee's RVPS *sample* message, as ``kbs-client set-sample-reference-value`` sends it:
  ``{"version": "0.1.0", "type": "sample", "payload": "<base64 of {name: [values]}>"}``.
  Like Trustee, nothing checks who wrote it: provision it only over an authenticated admin
  path.
* A plain mapping, as JSON or TOML text or an already parsed mapping::

      {"snp_launch_measurement": ["7a1e…", "b07a…"],
       "snp_snp": {"values": [23], "expires": "2027-01-01T00:00:00Z",
                   "provenance": "AMD SEV-SNP firmware 1.55", "version": 3}}

Values are always lists (a policy tests ``x in data.reference[name]``); a bare scalar is an
error, not wrapped. Expired values are dropped by :func:`active`.
"""

from __future__ import annotations

import base64
import binascii
import json
import re
import tomllib
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Final

from veritee.appraisal.errors import ReferenceValueError
from veritee.binding import canonical_json
from veritee.errors import MisuseError

SAMPLE_MESSAGE_KEYS: Final = frozenset({"version", "type", "payload"})
ENTRY_KEYS: Final = frozenset({"values", "expires", "provenance", "version"})
_NAME: Final = re.compile(r"[^\x00-\x1f\x7f]{1,255}")


@dataclass(frozen=True, slots=True)
class ReferenceValue:
    """One named set of reference values."""

    name: str
    values: list[Any]
    provenance: str
    """Where the values came from (a file, an admin request, a vendor manifest)."""
    expires: datetime | None = None
    version: int = 1
    """The revision of this name; the store increments it when the values change."""

    def active_at(self, now: datetime) -> bool:
        return self.expires is None or now < self.expires

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, "values": list(self.values), "provenance": self.provenance,
                "expires": self.expires.isoformat() if self.expires else None,
                "version": self.version}


def parse_reference_values(document: Mapping[str, Any] | str | bytes, *,
                           source: str) -> list[ReferenceValue]:
    """The reference values in ``document`` (see the module docstring for its forms).

    ``source`` names where the document came from; it becomes the default provenance.

    Raises:
        ReferenceValueError: the document does not parse or has the wrong shape; the message
            names the entry and what is wrong with it.
    """
    mapping = _as_mapping(document, source)
    if _is_sample_message(mapping):
        return _parse_entries(_sample_payload(mapping, source),
                              provenance=f"RVPS sample message from {source}")
    return _parse_entries(mapping, provenance=source)


def active(values: Iterable[ReferenceValue], now: datetime) -> list[ReferenceValue]:
    """The values that have not expired at ``now`` (an aware datetime)."""
    if now.tzinfo is None:
        raise MisuseError("now must be timezone-aware")
    return [value for value in values if value.active_at(now)]


def reference_mapping(values: Iterable[ReferenceValue]) -> dict[str, list[Any]]:
    """``{name: [values]}`` for a policy's ``data.reference``; values of a name that appears
    more than once are joined in order, without repeats."""
    merged: dict[str, list[Any]] = {}
    seen: dict[str, set[bytes]] = {}
    for value in values:
        bucket = merged.setdefault(value.name, [])
        keys = seen.setdefault(value.name, set())
        for item in value.values:
            key = canonical_json(item)
            if key not in keys:
                keys.add(key)
                bucket.append(item)
    return merged


# -- parsing -------------------------------------------------------------------------------------


def _as_mapping(document: Mapping[str, Any] | str | bytes, source: str) -> Mapping[str, Any]:
    if isinstance(document, bytes):
        try:
            document = document.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise ReferenceValueError(f"{source}: not UTF-8 text ({exc})") from exc
    if isinstance(document, str):
        document = _parse_text(document, source)
    if not isinstance(document, Mapping):
        raise ReferenceValueError(
            f"{source}: a reference-value document is an object, not {type(document).__name__}")
    return document


def _parse_text(text: str, source: str) -> Any:
    try:
        return json.loads(text)
    except ValueError as json_error:
        try:
            return tomllib.loads(text)
        except tomllib.TOMLDecodeError as toml_error:
            raise ReferenceValueError(
                f"{source}: neither JSON ({json_error}) nor TOML ({toml_error})") from toml_error


def _is_sample_message(mapping: Mapping[str, Any]) -> bool:
    return (set(mapping) == SAMPLE_MESSAGE_KEYS and isinstance(mapping.get("type"), str)
            and isinstance(mapping.get("payload"), str))


def _sample_payload(message: Mapping[str, Any], source: str) -> Mapping[str, Any]:
    if message["type"] != "sample":
        raise ReferenceValueError(
            f"{source}: RVPS message type {message['type']!r} is not supported (only 'sample')")
    if message["version"] != "0.1.0":
        raise ReferenceValueError(
            f"{source}: RVPS message version {message['version']!r} is not 0.1.0")
    try:
        payload = json.loads(base64.b64decode(message["payload"], validate=True))
    except (binascii.Error, ValueError) as exc:
        raise ReferenceValueError(
            f"{source}: the sample payload is not base64 of a JSON object ({exc})") from exc
    if not isinstance(payload, Mapping):
        raise ReferenceValueError(
            f"{source}: the sample payload is {type(payload).__name__}, not an object")
    return payload


def _parse_entries(mapping: Mapping[str, Any], *, provenance: str) -> list[ReferenceValue]:
    return [_parse_entry(name, entry, provenance) for name, entry in mapping.items()]


def _parse_entry(name: Any, entry: Any, provenance: str) -> ReferenceValue:
    if not isinstance(name, str) or not _NAME.fullmatch(name):
        raise ReferenceValueError(
            f"reference-value name {name!r} must be 1-255 characters without control characters")
    if isinstance(entry, list):
        return ReferenceValue(name, _values(name, entry), provenance)
    if not isinstance(entry, Mapping):
        raise ReferenceValueError(
            f"reference value {name}: {_type(entry)} is neither a list of values nor an object "
            "with 'values' (wrap a single value in a list)")
    unknown = set(entry) - ENTRY_KEYS
    if unknown:
        raise ReferenceValueError(f"reference value {name}: unknown keys "
                                  f"{', '.join(sorted(map(str, unknown)))} "
                                  f"(known: {', '.join(sorted(ENTRY_KEYS))})")
    if "values" not in entry:
        raise ReferenceValueError(f"reference value {name}: the object has no 'values'")
    return ReferenceValue(
        name=name,
        values=_values(name, entry["values"]),
        provenance=_provenance(name, entry.get("provenance", provenance)),
        expires=_expires(name, entry.get("expires")),
        version=_version(name, entry.get("version", 1)),
    )


def _values(name: str, values: Any) -> list[Any]:
    if not isinstance(values, list):
        raise ReferenceValueError(
            f"reference value {name}: values are {_type(values)}, not a list "
            "(wrap a single value in a list)")
    try:
        canonical_json(values)
    except MisuseError as exc:
        raise ReferenceValueError(f"reference value {name}: {exc.detail}") from exc
    return list(values)


def _provenance(name: str, value: Any) -> str:
    if not isinstance(value, str) or not value:
        raise ReferenceValueError(f"reference value {name}: provenance must be a non-empty string")
    return value


def _expires(name: str, value: Any) -> datetime | None:
    if value is None:
        return None
    if isinstance(value, str):
        try:
            value = datetime.fromisoformat(value)
        except ValueError as exc:
            raise ReferenceValueError(
                f"reference value {name}: expires {value!r} is not an RFC 3339 time") from exc
    if not isinstance(value, datetime):
        raise ReferenceValueError(f"reference value {name}: expires is {_type(value)}, not a time")
    if value.tzinfo is None:
        raise ReferenceValueError(
            f"reference value {name}: expires {value.isoformat()} has no time zone offset")
    return value


def _version(name: str, value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ReferenceValueError(
            f"reference value {name}: version {value!r} is not an integer ≥ 1")
    return value


def _type(value: Any) -> str:
    return "null" if value is None else f"a {type(value).__name__}"


__all__ = ["ReferenceValue", "active", "parse_reference_values", "reference_mapping"]
