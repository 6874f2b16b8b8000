"""Backends for the store tests (no tests here).

Every store test runs on ``sqlite`` (a file in the test's tmp_path) and on ``postgres`` when
VERITEE_TEST_POSTGRES_URL is set (``eval "$(scripts/pg-test.sh start)"``); there each test gets
a schema of its own, named at random and put first on the connection's search_path, so tests
stay independent under pytest-xdist.
"""

from __future__ import annotations

import dataclasses
import os
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from sqlalchemy import create_engine
from sqlalchemy.engine import make_url
from sqlalchemy.pool import NullPool

from veritee.store import AuditEvent, Session, Store

PG_ENV = "VERITEE_TEST_POSTGRES_URL"
BACKENDS = ("sqlite", "postgres")
KEK = bytes(range(32))
OTHER_KEK = bytes(range(100, 132))
T0 = datetime(2026, 1, 2, 3, 4, 5, 678901, tzinfo=UTC)
MINUTE = timedelta(minutes=1)


def no_postgres_reason() -> str:
    return f'{PG_ENV} is not set; start one with: eval "$(scripts/pg-test.sh start)"'


@contextmanager
def backend_url(backend: str, tmp_path: Path) -> Iterator[str]:
    """A database URL of an empty database for ``backend``, dropped afterwards."""
    if backend == "sqlite":
        yield f"sqlite:///{tmp_path / 'store.db'}"
        return
    base = os.environ.get(PG_ENV)
    if not base:
        import pytest  # not at the top: spawned contenders import this module, not pytest

        pytest.skip(no_postgres_reason())
    schema = f"t_{uuid.uuid4().hex[:20]}"
    admin = create_engine(base, poolclass=NullPool)
    try:
        with admin.begin() as conn:
            conn.exec_driver_sql(f'CREATE SCHEMA "{schema}"')
        url = make_url(base).update_query_dict({"options": f"-csearch_path={schema}"})
        yield url.render_as_string(hide_password=False)
    finally:
        with admin.begin() as conn:
            conn.exec_driver_sql(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')
        admin.dispose()


def session(
    sid: str = "s1", *, nonce: str = "bm9uY2U=", created: datetime = T0, ttl: timedelta = 5 * MINUTE
) -> Session:
    return Session(
        id=sid,
        tee="snp",
        nonce=nonce,
        request={"version": "0.4.0", "tee": "snp", "extra-params": {}},
        state="authed",
        created_at=created,
        expires_at=created + ttl,
        extra={"selected-hash-algorithm": "sha384"},
    )


def event(kind: Any = "attest", at: datetime = T0, **change: Any) -> AuditEvent:
    base = AuditEvent(
        kind=kind,
        at=at,
        session_id="s1",
        tee="snp",
        subject="192.0.2.7",
        resource=None,
        verdict="affirming",
        failed_rules=[],
        detail={"tcb": {"snp": 10}},
    )
    return dataclasses.replace(base, **change)


def contender(url: str, index: int, barrier: Any, results: Any) -> None:
    """One process of the races in test_store_concurrency (defined here, at top level, so that
    a spawned interpreter imports it without pytest): migrate an empty database, consume one
    nonce, claim one setting — each race started at the barrier. Reports a tuple or an error."""
    try:
        barrier.wait(30)
        with Store.open(url, kek=KEK) as store:
            version = store.schema_version()
            barrier.wait(30)
            if index == 0:
                store.create_session(session(nonce="N"))
            barrier.wait(30)
            consumed = store.consume_nonce("s1", "N", now=T0)
            barrier.wait(30)
            claimed = store.put_setting_if_absent("ear-key", f"key-{index}")
        results.put((index, (version, consumed, claimed)))
    except BaseException as exc:
        results.put((index, (f"{type(exc).__name__}: {exc}",)))
