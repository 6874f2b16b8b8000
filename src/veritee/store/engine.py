"""Engines for the two backends, and the translation of driver errors at the boundary.

SQLite (``sqlite:///path.db``): one file shared by threads and processes. Each connection
runs in WAL mode (readers never block the writer), with ``synchronous=NORMAL`` (a commit
survives a crash of the process; the last commits may be lost on power failure, the usual WAL
trade), a 5 s busy timeout, and foreign keys on. The sqlite3 module's own transaction
handling is switched off (``isolation_level = None``): a call that is one statement runs in
SQLite's autocommit, atomic by itself (a write statement waits for the lock under the busy
timeout); a call of several statements opens its transaction with ``BEGIN IMMEDIATE``, so that
the writer takes the lock up front instead of failing on a lock upgrade.

PostgreSQL (``postgresql+psycopg://...``; ``postgresql://`` is taken to mean psycopg 3): a
pool of connections; psycopg prepares statements it sees repeatedly.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from pathlib import Path
from typing import Any, Final

from sqlalchemy import Connection, Engine, create_engine, event
from sqlalchemy import exc as sa_exc
from sqlalchemy.engine import URL, make_url

from veritee.blocking import WouldBlock
from veritee.errors import VeriteeError
from veritee.store.errors import (
    InvalidRecordError,
    StoreConfigError,
    StoreConflictError,
    StoreUnavailableError,
)

BUSY_TIMEOUT_S: Final = 5.0
#: What a multi-statement write runs first on SQLite (no event hook: any engine-level
#: listener makes SQLAlchemy dispatch events around every statement).
SQLITE_BEGIN_WRITE: Final = "BEGIN IMMEDIATE"


def parse_url(url: str) -> URL:
    try:
        parsed = make_url(url)
    except (sa_exc.ArgumentError, ValueError, TypeError) as exc:
        raise StoreConfigError("database URL does not parse") from exc
    backend = parsed.get_backend_name()
    if backend == "postgresql" and parsed.get_driver_name() != "psycopg":
        if "+" in parsed.drivername:
            raise StoreConfigError(f"PostgreSQL driver {parsed.get_driver_name()!r}: use psycopg")
        parsed = parsed.set(drivername="postgresql+psycopg")
    if backend not in ("sqlite", "postgresql"):
        raise StoreConfigError(f"database scheme {backend!r}: expected sqlite or postgresql")
    if backend == "sqlite" and parsed.database in (None, "", ":memory:"):
        raise StoreConfigError("SQLite needs a file path (sqlite:///path.db), not memory")
    return parsed


def _json_dumps(value: Any) -> str:
    """Compact JSON, refusing NaN and infinities (not JSON; PostgreSQL would refuse them)."""
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False, allow_nan=False)


def make_engine(url: URL, *, pool_size: int, create: bool,
                busy_timeout: float = BUSY_TIMEOUT_S) -> Engine:
    """An engine for ``url`` (already checked by :func:`parse_url`); with SQLite, a statement
    waits ``busy_timeout`` seconds for another process's write lock."""
    common: dict[str, Any] = {
        "pool_size": pool_size,
        "max_overflow": 2 * pool_size,
        "pool_timeout": 10,
        "hide_parameters": True,
        "json_serializer": _json_dumps,
    }
    if url.get_backend_name() == "postgresql":
        return create_engine(url, pool_pre_ping=True, **common)
    if create:
        try:
            _create_private_file(Path(str(url.database)))
        except OSError as exc:
            raise StoreUnavailableError(
                f"cannot create the SQLite file {url.database}: {exc.strerror}"
            ) from exc
    engine = create_engine(
        url, connect_args={"check_same_thread": False, "timeout": busy_timeout}, **common
    )
    milliseconds = int(busy_timeout * 1000)

    def on_connect(connection: Any, record: Any) -> None:
        _sqlite_on_connect(connection, milliseconds)
        record.info[_BUSY_CONFIGURED] = record.info[_BUSY_NOW] = milliseconds

    event.listen(engine.pool, "connect", on_connect)
    return engine


_BUSY_CONFIGURED: Final = "veritee_busy_timeout_ms"
_BUSY_NOW: Final = "veritee_busy_timeout_now_ms"
#: How long a statement waits for another connection's lock where the caller may not block
#: (on the event loop): other connections' write transactions take well under a millisecond,
#: so this rides out an overlap; a lock held longer moves the step to a thread.
NONBLOCKING_BUSY_MS: Final = 2
#: SQLite's primary result codes for "another connection holds the lock".
_SQLITE_BUSY_CODES: Final = frozenset({5, 6})


@contextmanager
def sqlite_wait_policy(conn: Connection, *, may_wait: bool) -> Iterator[None]:
    """Inside, the SQLite connection waits for locks as configured (``may_wait``) or at most
    :data:`NONBLOCKING_BUSY_MS`; a statement that meets a lock it may not wait out raises
    :class:`veritee.blocking.WouldBlock`, and the call's transaction rolls back. The setting
    stays on the pooled connection until a call wants the other one (no statement when it
    already matches)."""
    info = conn.connection.info
    configured = int(info.get(_BUSY_CONFIGURED, 0))
    wanted = configured if may_wait else min(configured, NONBLOCKING_BUSY_MS)
    if info.get(_BUSY_NOW) != wanted:
        conn.connection.dbapi_connection.execute(f"PRAGMA busy_timeout = {wanted}")  # type: ignore[union-attr]
        info[_BUSY_NOW] = wanted
    try:
        yield
    except sa_exc.OperationalError as exc:
        code = getattr(exc.orig, "sqlite_errorcode", None)
        if not may_wait and code is not None and code & 0xFF in _SQLITE_BUSY_CODES:
            raise WouldBlock("the SQLite database is locked by another connection") from exc
        raise


def _create_private_file(path: Path) -> None:
    """Create the database file readable by its owner only; SQLite gives the -wal and -shm
    files the same mode."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with suppress(FileExistsError):
        os.close(os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o600))


def _sqlite_on_connect(dbapi_connection: Any, busy_timeout_ms: int) -> None:
    dbapi_connection.isolation_level = None  # we emit BEGIN ourselves
    cursor = dbapi_connection.cursor()
    try:
        cursor.execute(f"PRAGMA busy_timeout = {busy_timeout_ms}")
        cursor.execute("PRAGMA journal_mode = WAL")
        cursor.execute("PRAGMA synchronous = NORMAL")
        cursor.execute("PRAGMA foreign_keys = ON")
    finally:
        cursor.close()


def _describe(exc: sa_exc.SQLAlchemyError) -> str:
    """A short, secret-free name of a driver error: class and SQLSTATE / SQLite code."""
    orig = getattr(exc, "orig", None)
    if orig is None:
        return type(exc).__name__
    code = getattr(orig, "sqlstate", None) or getattr(orig, "sqlite_errorname", None)
    return f"{type(orig).__name__} {code}" if code else type(orig).__name__


@contextmanager
def translated(op: str) -> Iterator[None]:
    """Turn SQLAlchemy and driver errors raised inside into the store's typed errors."""
    try:
        yield
    except VeriteeError:
        raise
    except sa_exc.IntegrityError as exc:
        raise StoreConflictError(f"{op}: a row with this key exists ({_describe(exc)})") from exc
    except sa_exc.DataError as exc:
        raise InvalidRecordError(f"{op}: the database refused a value ({_describe(exc)})") from exc
    except sa_exc.DBAPIError as exc:
        raise StoreUnavailableError(f"{op}: database failed ({_describe(exc)})") from exc
    except sa_exc.StatementError as exc:  # a value that could not be bound (e.g. not JSON)
        raise InvalidRecordError(f"{op}: a value cannot be stored ({_describe(exc)})") from exc
    except sa_exc.SQLAlchemyError as exc:
        raise StoreUnavailableError(f"{op}: database failed ({_describe(exc)})") from exc
