"""The records the store reads and writes, and the checks on their fields.

All datetimes are timezone-aware UTC on the way out; any aware datetime is accepted on the
way in (converted to UTC), naive ones are refused.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Final, Literal, Protocol, TypeVar, get_args

from veritee.store.errors import InvalidRecordError, ResourcePathError

T = TypeVar("T")

SessionState = Literal["authed", "attested"]
PolicyKind = Literal["attestation", "resource"]
AuditKind = Literal["attest", "release", "refuse", "admin"]

SESSION_STATES: Final[frozenset[str]] = frozenset(get_args(SessionState))
POLICY_KINDS: Final[frozenset[str]] = frozenset(get_args(PolicyKind))
AUDIT_KINDS: Final[frozenset[str]] = frozenset(get_args(AuditKind))

#: Longest name (policy id, reference-value name, setting key, resource path) the schema holds.
MAX_NAME: Final = 255


@dataclass(frozen=True)
class Session:
    """A KBS protocol session (service-anchors §1.2): ``authed`` after /auth, then
    ``attested`` after /attest with the EAR token it returned."""

    id: str
    tee: str
    nonce: str
    request: dict[str, Any]
    state: str  # a SessionState; checked when written
    created_at: datetime
    expires_at: datetime
    token: str | None = None
    #: TEE-specific challenge data (e.g. the IBM SE request) and the selected hash algorithm.
    extra: dict[str, Any] = field(default_factory=dict)
    #: The challenge was spent (an attestation was attempted with it).
    nonce_used: bool = False


@dataclass(frozen=True)
class PolicyRecord:
    """One version of a Rego policy."""

    kind: str  # a PolicyKind
    policy_id: str
    version: int
    source: str
    created_at: datetime
    author: str | None


@dataclass(frozen=True)
class ReferenceValueRecord:
    """One version of a named list of reference values (RVPS, service-anchors §1.7)."""

    name: str
    values: list[Any]
    provenance: str
    expires: datetime | None
    version: int
    created_at: datetime


class ReferenceValueInput(Protocol):
    """What :meth:`Store.put_reference_records` writes: the appraisal layer's
    ``ReferenceValue`` and :class:`ReferenceValueRecord` both are one."""

    @property
    def name(self) -> str: ...
    @property
    def values(self) -> list[Any]: ...
    @property
    def provenance(self) -> str: ...
    @property
    def expires(self) -> datetime | None: ...


@dataclass(frozen=True)
class AuditEvent:
    """One line of the append-only audit log: an attestation, a release, a refusal, or an
    administrative change. ``subject`` is who asked (client address or admin subject)."""

    kind: str  # an AuditKind; checked when written
    at: datetime
    session_id: str | None
    tee: str | None
    subject: str | None
    resource: str | None
    verdict: str
    failed_rules: list[str]
    detail: dict[str, Any]
    id: int | None = None


# --- checks ---------------------------------------------------------------------------------

_SEGMENT = re.compile(r"[A-Za-z0-9._-]+")


def check_resource_path(path: str) -> str:
    """Return ``path`` if it is ``repo/type/tag`` (KBS resource URI shape), else raise.

    Segments are non-empty runs of ``[A-Za-z0-9._-]``; ``..`` anywhere and segments made of
    dots only are refused so that a path can never name a parent when mapped to files."""
    if not isinstance(path, str) or len(path) > MAX_NAME:
        raise ResourcePathError(f"resource path must be a string of at most {MAX_NAME} chars")
    parts = path.split("/")
    if len(parts) != 3:
        raise ResourcePathError(
            f"resource path has {len(parts)} segments, expected 3 (repo/type/tag)"
        )
    for part in parts:
        if not _SEGMENT.fullmatch(part):
            raise ResourcePathError(f"resource path segment {part!r} is not [A-Za-z0-9._-]+")
        if ".." in part or part.strip(".") == "":
            raise ResourcePathError(f"resource path segment {part!r} is a dot segment")
    return path


def check_name(value: str, what: str) -> str:
    """A non-empty printable name of at most :data:`MAX_NAME` characters."""
    if not isinstance(value, str) or not value or len(value) > MAX_NAME or not value.isprintable():
        raise InvalidRecordError(f"{what} must be 1..{MAX_NAME} printable characters")
    return value


def check_length(value: str | None, limit: int, what: str) -> str | None:
    """``value`` if it is ``None`` or text of at most ``limit`` characters (the column size,
    which PostgreSQL enforces and SQLite does not: checked here for both)."""
    if value is not None and (not isinstance(value, str) or len(value) > limit):
        raise InvalidRecordError(f"{what} must be text of at most {limit} characters")
    return value


def check_json(value: T, what: str) -> T:
    """``value`` if it serializes as strict JSON (no NaN or infinities, string keys)."""
    try:
        json.dumps(value, allow_nan=False)
    except (TypeError, ValueError) as exc:
        raise InvalidRecordError(f"{what} is not JSON: {exc}") from exc
    return value


def check_member(value: str, allowed: frozenset[str], what: str) -> str:
    if value not in allowed:
        raise InvalidRecordError(f"{what} is {value!r}, expected one of {sorted(allowed)}")
    return value


def utc(value: datetime, what: str) -> datetime:
    """``value`` in UTC; naive datetimes are refused rather than guessed."""
    if not isinstance(value, datetime) or value.utcoffset() is None:
        raise InvalidRecordError(f"{what} must be a timezone-aware datetime")
    return value.astimezone(UTC)


def utc_or_none(value: datetime | None, what: str) -> datetime | None:
    return None if value is None else utc(value, what)
