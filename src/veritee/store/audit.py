"""Audit events written in batches by a background thread, off the request path.

Two inserts per attestation flow (the attestation and the release) were a tenth of the
broker's time per flow; :class:`AuditWriter` moves them to one thread per process that
appends every pending event in one transaction per batch.

What this trades, and how it is bounded:

* **Crash window.** An event is in memory from :meth:`AuditWriter.append` until its batch
  commits: at most ``interval`` seconds (50 ms by default) while the database is healthy.
  A process killed outright (SIGKILL, power loss) loses those events; a clean stop
  (:meth:`AuditWriter.close`, called at server shutdown) writes them first.
* **Read your writes.** :meth:`AuditWriter.flush` waits until everything appended so far
  is written; the broker calls it before listing the audit log and after administrative
  changes, so an administrator sees their own change and this process's events. Events of
  other worker processes appear within their ``interval``.
* **A failing database.** A batch that cannot be written is kept and retried with backoff;
  if ``max_pending`` events pile up, further events are dropped and counted
  (:attr:`AuditWriter.dropped`, logged), so an outage never exhausts memory. Values the
  store refuses are refused by :meth:`append`, synchronously, as
  :meth:`~veritee.store.Store.append_audit` refuses them.

With ``interval=0`` every event is written synchronously (libraries and tests).
"""

from __future__ import annotations

import logging
import threading
from typing import Any, Final

from veritee.errors import VeriteeError
from veritee.store.errors import StoreError, StoreUnavailableError
from veritee.store.records import AuditEvent
from veritee.store.store import Store

log = logging.getLogger(__name__)

MAX_BATCH: Final = 500
MIN_BACKOFF, MAX_BACKOFF = 0.05, 5.0


class AuditWriter:
    """Appends audit events for one process; thread-safe."""

    def __init__(self, store: Store, *, interval: float = 0.05,
                 max_pending: int = 100_000) -> None:
        self._store = store
        self.interval = interval
        self.max_pending = max_pending
        self.dropped = 0
        self._pending: list[dict[str, Any]] = []
        self._appended = self._written = 0
        self._error: VeriteeError | None = None
        self._urgent = self._closed = False
        self._cond = threading.Condition()
        self._thread: threading.Thread | None = None

    def append(self, event: AuditEvent) -> None:
        """Record ``event``: now (``interval`` 0) or in the next batch.

        Raises:
            InvalidRecordError: a value the store refuses (checked here, not later).
        """
        row = self._store.audit_row(event)
        if self.interval <= 0:
            self._store.append_audit_rows([row])
            return
        with self._cond:
            if self._closed:
                raise StoreUnavailableError("the audit writer is closed")
            if len(self._pending) >= self.max_pending:
                self._drop(event)
                return
            self._pending.append(row)
            self._appended += 1
            if self._thread is None:
                self._thread = threading.Thread(target=self._run, name="veritee-audit",
                                                daemon=True)
                self._thread.start()
            if len(self._pending) == 1 or len(self._pending) >= MAX_BATCH:
                self._cond.notify_all()

    def flush(self, timeout: float = 10.0) -> None:
        """Wait until every event appended so far is written.

        Raises:
            StoreUnavailableError: they could not be written within ``timeout`` seconds.
        """
        with self._cond:
            target, self._error = self._appended, None
            self._urgent = True
            self._cond.notify_all()
            self._cond.wait_for(
                lambda: self._written >= target or self._error is not None, timeout)
            if self._written < target:
                reason = self._error.detail if self._error else f"timed out after {timeout:g} s"
                raise StoreUnavailableError(f"audit events are not written yet: {reason}")

    def close(self, timeout: float = 10.0) -> None:
        """Write what is pending (as far as the database allows within ``timeout``) and stop;
        events that cannot be written by then are logged as lost."""
        try:
            if self.interval > 0:
                self.flush(timeout)
        except StoreUnavailableError as exc:
            log.error("audit log: closing with %d events unwritten: %s", self.pending,
                      exc.detail)
        with self._cond:
            self._closed = True
            self._cond.notify_all()
            thread = self._thread
        if thread is not None:
            thread.join(timeout)

    @property
    def pending(self) -> int:
        with self._cond:
            return len(self._pending)

    def _drop(self, event: AuditEvent) -> None:
        self.dropped += 1
        if self.dropped == 1 or self.dropped % 1000 == 0:
            log.error("audit log: %d events pending, dropped %d so far (latest: %s %s)",
                      len(self._pending), self.dropped, event.kind, event.verdict)

    def _run(self) -> None:
        backoff = MIN_BACKOFF
        while True:
            batch = self._next_batch()
            if batch is None:
                return
            try:
                self._store.append_audit_rows(batch)
            except StoreError as exc:          # the database is down or locked: retry
                if self._closed:
                    log.error("audit log: %d events lost at shutdown: %s", self.pending,
                              exc.detail)
                    return
                backoff = self._failed(exc, backoff)
                continue
            except VeriteeError as exc:        # refused despite the checks: never retried
                log.error("audit log: dropping %d events the store refuses: %s", len(batch),
                          exc.detail)
            backoff = MIN_BACKOFF
            with self._cond:
                del self._pending[:len(batch)]
                self._written += len(batch)
                self._cond.notify_all()

    def _next_batch(self) -> list[dict[str, Any]] | None:
        """The next rows to write, after the batching interval; None when closed and empty."""
        with self._cond:
            self._cond.wait_for(lambda: bool(self._pending) or self._closed)
            if not self._pending:
                return None
            self._cond.wait_for(lambda: self._urgent or self._closed
                                or len(self._pending) >= MAX_BATCH, self.interval)
            self._urgent = False
            return self._pending[:MAX_BATCH]

    def _failed(self, exc: VeriteeError, backoff: float) -> float:
        log.warning("audit log: %d events not written yet: %s", self.pending, exc.detail)
        with self._cond:
            self._error = exc
            self._cond.notify_all()
            self._cond.wait_for(lambda: self._closed, backoff)
        return min(backoff * 2, MAX_BACKOFF)


__all__ = ["AuditWriter"]
