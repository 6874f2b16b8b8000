"""veritee.store.audit.AuditWriter: batches, flushes, closes, survives a failing database."""

from __future__ import annotations

import dataclasses
import threading
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import pytest

from support.store import BACKENDS, KEK, T0, backend_url, event
from veritee.store import AuditWriter, InvalidRecordError, Store, StoreUnavailableError


@pytest.fixture(params=BACKENDS)
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Store]:
    with backend_url(request.param, tmp_path) as url, Store.open(url, kek=KEK) as value:
        yield value


def test_interval_zero_writes_at_once(store: Store) -> None:
    writer = AuditWriter(store, interval=0)
    writer.append(event("attest", T0))
    assert [e.kind for e in store.list_audit()] == ["attest"]
    writer.close()


def test_events_are_written_in_order_and_flush_waits(store: Store) -> None:
    writer = AuditWriter(store, interval=10)       # only a flush writes them
    kinds = ["attest", "release", "refuse", "admin"] * 30
    for index, kind in enumerate(kinds):
        writer.append(dataclasses.replace(event(kind, T0), subject=f"client-{index}"))
    assert writer.pending == len(kinds)
    writer.flush()
    assert writer.pending == 0
    listed = list(reversed(store.list_audit(limit=1000)))
    assert [e.kind for e in listed] == kinds
    assert [e.subject for e in listed] == [f"client-{i}" for i in range(len(kinds))]
    writer.close()


def test_close_writes_what_is_pending(store: Store) -> None:
    writer = AuditWriter(store, interval=10)
    writer.append(event("release", T0, resource="a/b/c"))
    writer.close()
    assert [e.resource for e in store.list_audit()] == ["a/b/c"]
    with pytest.raises(StoreUnavailableError, match="closed"):
        writer.append(event("release", T0))


def test_a_batch_is_written_within_the_interval(store: Store) -> None:
    writer = AuditWriter(store, interval=0.01)
    writer.append(event("attest", T0))
    for _ in range(500):
        if store.list_audit():
            break
        threading.Event().wait(0.01)
    assert len(store.list_audit()) == 1
    writer.close()


def test_refused_values_are_refused_by_append(store: Store) -> None:
    writer = AuditWriter(store, interval=10)
    with pytest.raises(InvalidRecordError):
        writer.append(event("bogus", T0))
    with pytest.raises(InvalidRecordError):
        writer.append(dataclasses.replace(event("attest", T0), detail={"x": float("nan")}))
    assert writer.pending == 0
    writer.close()


def test_flush_without_events_returns() -> None:
    writer = AuditWriter(_FlakyStore(failures=0), interval=10)
    writer.flush()
    writer.close()


class _FlakyStore:
    """A store whose batch insert fails ``failures`` times, then records the rows."""

    def __init__(self, failures: int) -> None:
        self.failures = failures
        self.rows: list[dict[str, Any]] = []

    def audit_row(self, ev: Any) -> dict[str, Any]:
        return {"kind": ev.kind, "subject": ev.subject}

    def append_audit_rows(self, rows: Sequence[dict[str, Any]]) -> None:
        if self.failures:
            self.failures -= 1
            raise StoreUnavailableError("append_audit_rows: database failed (locked)")
        self.rows.extend(rows)


def test_a_failing_database_is_retried() -> None:
    flaky = _FlakyStore(failures=1)
    writer = AuditWriter(flaky, interval=10)  # type: ignore[arg-type]
    writer.append(event("attest", T0))
    with pytest.raises(StoreUnavailableError, match="locked"):
        writer.flush(timeout=5)                 # the first failure is reported to flush
    writer.flush(timeout=5)                     # and the retries get it written
    assert [row["kind"] for row in flaky.rows] == ["attest"]
    writer.close()


def test_an_outage_drops_beyond_max_pending(caplog: pytest.LogCaptureFixture) -> None:
    flaky = _FlakyStore(failures=10**9)
    writer = AuditWriter(flaky, interval=10, max_pending=3)  # type: ignore[arg-type]
    for index in range(5):
        writer.append(dataclasses.replace(event("attest", T0), subject=str(index)))
    assert writer.pending == 3 and writer.dropped == 2
    assert "dropped 1 so far" in caplog.text
    with pytest.raises(StoreUnavailableError):
        writer.flush(timeout=0.5)
    writer.close(timeout=0.5)                  # logs the loss instead of raising
    assert "closing with 3 events unwritten" in caplog.text
