"""Persistence for the broker: SQLAlchemy Core over SQLite (default) or PostgreSQL.

One :class:`Store` holds KBS sessions, resources sealed under a key-encryption key, versioned
policies, reference values, an append-only audit log and a few settings. See ``store.py`` for
the calls, ``schema.py`` for the tables and migrations, ``sealing.py`` for encryption at rest.
"""

from veritee.store.audit import AuditWriter
from veritee.store.errors import (
    InvalidRecordError,
    ResourcePathError,
    SessionError,
    SessionStateError,
    SessionUnknownError,
    StoreConfigError,
    StoreConflictError,
    StoreError,
    StoreIntegrityError,
    StoreMisuseError,
    StoreUnavailableError,
)
from veritee.store.records import (
    AuditEvent,
    AuditKind,
    PolicyKind,
    PolicyRecord,
    ReferenceValueInput,
    ReferenceValueRecord,
    Session,
    SessionState,
    check_resource_path,
)
from veritee.store.schema import SCHEMA_VERSION
from veritee.store.store import Store

__all__ = [
    "SCHEMA_VERSION",
    "AuditEvent",
    "AuditKind",
    "AuditWriter",
    "InvalidRecordError",
    "PolicyKind",
    "PolicyRecord",
    "ReferenceValueInput",
    "ReferenceValueRecord",
    "ResourcePathError",
    "Session",
    "SessionError",
    "SessionState",
    "SessionStateError",
    "SessionUnknownError",
    "Store",
    "StoreConfigError",
    "StoreConflictError",
    "StoreError",
    "StoreIntegrityError",
    "StoreMisuseError",
    "StoreUnavailableError",
    "check_resource_path",
]
