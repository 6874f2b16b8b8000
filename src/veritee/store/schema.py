"""The one schema, for SQLite and PostgreSQL alike, and its migrations.

Tables are SQLAlchemy Core :class:`~sqlalchemy.Table` objects on :data:`metadata`.
:data:`MIGRATIONS` lists ``(version, title, step)``; ``Store.migrate`` applies, in one
transaction, every step above the highest version recorded in ``schema_version``.

Rules for whoever adds a version: never edit a released step; a step that changes a table
must leave step 1 creating the *old* shape (freeze that DDL in step 1 first), and new steps
use ``ALTER``/``CREATE`` that both dialects accept.

Types that differ by dialect:

* :class:`UTCDateTime` — ``TIMESTAMP WITH TIME ZONE`` on PostgreSQL; on SQLite a ``BIGINT``
  of microseconds since the Unix epoch (exact to the microsecond, ordered, compared natively).
* :data:`JSON` — ``JSON`` on both (text on SQLite).
* Audit ids — ``BIGINT`` identity on PostgreSQL, ``INTEGER PRIMARY KEY`` (the rowid) on SQLite.

The audit log is append-only: triggers on both dialects refuse ``UPDATE`` and ``DELETE``
(and ``TRUNCATE`` on PostgreSQL). Pruning it needs a deliberate, privileged act outside the
application: drop the trigger, delete, recreate the trigger.

Versions:

1. the initial schema;
2. paging and change tracking: the audit log is indexed by ``(at, id)`` and ``(kind, at, id)``
   (its listing order, so every page is one index range) instead of ``at`` and ``(kind, id)``;
   ``reference_value_changes`` records each put and delete of a reference value.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any, Final

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    CheckConstraint,
    Column,
    Connection,
    DateTime,
    Dialect,
    Index,
    Integer,
    LargeBinary,
    MetaData,
    String,
    Table,
    Text,
    false,
)
from sqlalchemy.types import TypeDecorator, TypeEngine

_EPOCH: Final = datetime(1970, 1, 1, tzinfo=UTC)
_MICROSECOND: Final = timedelta(microseconds=1)


class UTCDateTime(TypeDecorator[datetime]):
    """An aware UTC datetime, stored exactly on both dialects (see the module docstring)."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def load_dialect_impl(self, dialect: Dialect) -> TypeEngine[Any]:
        if dialect.name == "sqlite":
            return dialect.type_descriptor(BigInteger())
        return dialect.type_descriptor(DateTime(timezone=True))

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> Any:
        if value is None:
            return None
        if value.utcoffset() is None:
            raise ValueError("naive datetime")
        if dialect.name == "sqlite":
            return (value - _EPOCH) // _MICROSECOND
        return value.astimezone(UTC)

    def process_result_value(self, value: Any, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if dialect.name == "sqlite":
            return _EPOCH + timedelta(microseconds=int(value))
        stamp: datetime = value
        return stamp.astimezone(UTC)


#: Identity column type: BIGINT on PostgreSQL, INTEGER (rowid alias) on SQLite.
_ID = BigInteger().with_variant(Integer(), "sqlite")
_NAME = String(255)

metadata = MetaData()

schema_version = Table(
    "schema_version",
    metadata,
    Column("version", Integer, primary_key=True, autoincrement=False),
    Column("title", String(200), nullable=False),
    Column("applied_at", UTCDateTime, nullable=False),
)

sessions = Table(
    "sessions",
    metadata,
    Column("id", String(128), primary_key=True),
    Column("tee", String(64), nullable=False),
    Column("nonce", Text, nullable=False),
    Column("request", JSON, nullable=False),
    Column("extra", JSON, nullable=False),
    Column("state", String(16), nullable=False),
    Column("nonce_used", Boolean, nullable=False, server_default=false()),
    Column("token", Text, nullable=True),
    Column("created_at", UTCDateTime, nullable=False),
    Column("expires_at", UTCDateTime, nullable=False),
    CheckConstraint("state IN ('authed', 'attested')", name="sessions_state"),
    Index("sessions_expires_at", "expires_at"),
)

resources = Table(
    "resources",
    metadata,
    Column("path", _NAME, primary_key=True),
    Column("version", Integer, nullable=False),
    Column("key_id", String(32), nullable=False),
    Column("nonce", LargeBinary, nullable=False),
    Column("ciphertext", LargeBinary, nullable=False),
    Column("created_at", UTCDateTime, nullable=False),
    Column("updated_at", UTCDateTime, nullable=False),
)

policy_heads = Table(
    "policy_heads",
    metadata,
    Column("kind", String(32), primary_key=True),
    Column("policy_id", _NAME, primary_key=True),
    Column("latest", Integer, nullable=False),
)

policies = Table(
    "policies",
    metadata,
    Column("kind", String(32), primary_key=True),
    Column("policy_id", _NAME, primary_key=True),
    Column("version", Integer, primary_key=True, autoincrement=False),
    Column("source", Text, nullable=False),
    Column("created_at", UTCDateTime, nullable=False),
    Column("author", _NAME, nullable=True),
    CheckConstraint("kind IN ('attestation', 'resource')", name="policies_kind"),
)

reference_value_heads = Table(
    "reference_value_heads",
    metadata,
    Column("name", _NAME, primary_key=True),
    Column("latest", Integer, nullable=False),
)

reference_values = Table(
    "reference_values",
    metadata,
    Column("name", _NAME, primary_key=True),
    Column("version", Integer, primary_key=True, autoincrement=False),
    Column("values_json", JSON, nullable=False),
    Column("provenance", Text, nullable=False),
    Column("expires", UTCDateTime, nullable=True),
    Column("created_at", UTCDateTime, nullable=False),
)

audit_log = Table(
    "audit_log",
    metadata,
    Column("id", _ID, primary_key=True, autoincrement=True),
    Column("kind", String(16), nullable=False),
    Column("at", UTCDateTime, nullable=False),
    Column("session_id", String(128), nullable=True),
    Column("tee", String(64), nullable=True),
    Column("subject", _NAME, nullable=True),
    Column("resource", _NAME, nullable=True),
    Column("verdict", String(32), nullable=False),
    Column("failed_rules", JSON, nullable=False),
    Column("detail", JSON, nullable=False),
    CheckConstraint("kind IN ('attest', 'release', 'refuse', 'admin')", name="audit_log_kind"),
    # The indexes of version 1; version 2 replaces them (see _V2_AUDIT_INDEXES).
    Index("audit_log_at", "at"),
    Index("audit_log_kind_id", "kind", "id"),
)

#: One row per put or delete of a reference value, numbered in commit order (version 2): a
#: cache reloads only the names changed since the sequence number it last saw. SQLite's
#: AUTOINCREMENT never reuses a number, even after the newest rows are deleted.
reference_value_changes = Table(
    "reference_value_changes",
    metadata,
    Column("seq", _ID, primary_key=True, autoincrement=True),
    Column("name", _NAME, nullable=False),
    Column("changed_at", UTCDateTime, nullable=False),
    sqlite_autoincrement=True,
)

settings = Table(
    "settings",
    metadata,
    Column("key", _NAME, primary_key=True),
    Column("key_id", String(32), nullable=False),
    Column("nonce", LargeBinary, nullable=False),
    Column("ciphertext", LargeBinary, nullable=False),
    Column("updated_at", UTCDateTime, nullable=False),
)

# --- append-only audit log --------------------------------------------------------------------

_APPEND_ONLY = "audit_log is append-only"

_AUDIT_TRIGGERS: Final[dict[str, tuple[str, ...]]] = {
    "sqlite": (
        "CREATE TRIGGER audit_log_no_update BEFORE UPDATE ON audit_log "
        f"BEGIN SELECT RAISE(ABORT, '{_APPEND_ONLY}'); END",
        "CREATE TRIGGER audit_log_no_delete BEFORE DELETE ON audit_log "
        f"BEGIN SELECT RAISE(ABORT, '{_APPEND_ONLY}'); END",
    ),
    "postgresql": (
        "CREATE OR REPLACE FUNCTION audit_log_append_only() RETURNS trigger "
        f"LANGUAGE plpgsql AS $$ BEGIN RAISE EXCEPTION '{_APPEND_ONLY}'; END $$",
        "CREATE TRIGGER audit_log_no_change BEFORE UPDATE OR DELETE ON audit_log "
        "FOR EACH ROW EXECUTE FUNCTION audit_log_append_only()",
        "CREATE TRIGGER audit_log_no_truncate BEFORE TRUNCATE ON audit_log "
        "FOR EACH STATEMENT EXECUTE FUNCTION audit_log_append_only()",
    ),
}

# --- migrations -------------------------------------------------------------------------------


def _v1_initial(conn: Connection) -> None:
    for table in (
        sessions,
        resources,
        policy_heads,
        policies,
        reference_value_heads,
        reference_values,
        audit_log,
        settings,
    ):
        table.create(conn)
    for ddl in _AUDIT_TRIGGERS[conn.dialect.name]:
        conn.exec_driver_sql(ddl)


#: The audit log's indexes from version 2 on: its listing order is ``(at, id)`` descending,
#: so a page (with a kind, a time window, a cursor) is one range of one index, read in order.
_V2_AUDIT_INDEXES: Final = (
    "CREATE INDEX audit_log_at_id ON audit_log (at, id)",
    "CREATE INDEX audit_log_kind_at_id ON audit_log (kind, at, id)",
    "DROP INDEX audit_log_at",
    "DROP INDEX audit_log_kind_id",
)


def _v2_paging(conn: Connection) -> None:
    for ddl in _V2_AUDIT_INDEXES:
        conn.exec_driver_sql(ddl)
    reference_value_changes.create(conn)


Migration = tuple[int, str, Callable[[Connection], None]]

MIGRATIONS: Final[tuple[Migration, ...]] = (
    (1, "initial schema", _v1_initial),
    (2, "audit log indexed in listing order; reference-value changes", _v2_paging),
)

#: The schema version this code reads and writes.
SCHEMA_VERSION: Final = MIGRATIONS[-1][0]

#: Key of the PostgreSQL transaction-level advisory lock that serializes concurrent migrations.
MIGRATION_LOCK_KEY: Final = 0x76657269_74656531  # "veritee1"
