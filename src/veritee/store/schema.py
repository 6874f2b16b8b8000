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
    Index("audit_log_at", "at"),
    Index("audit_log_kind_id", "kind", "id"),
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


Migration = tuple[int, str, Callable[[Connection], None]]

MIGRATIONS: Final[tuple[Migration, ...]] = ((1, "initial schema", _v1_initial),)

#: The schema version this code reads and writes.
SCHEMA_VERSION: Final = MIGRATIONS[-1][0]

#: Key of the PostgreSQL transaction-level advisory lock that serializes concurrent migrations.
MIGRATION_LOCK_KEY: Final = 0x76657269_74656531  # "veritee1"
