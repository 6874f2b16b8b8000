"""The broker's copy of the store's reference values, prepared for appraisal and kept current
incrementally.

Every flow appraises against the reference values, so the broker must not read or hash them
all per flow, nor even once a second when there are 100,000 of them. :class:`ReferenceCache`
loads them once, then asks the store at most once per ``refresh_seconds`` which names changed
since the change number it has seen (:meth:`~veritee.store.Store.reference_changes`: an
indexed range, the cost of the changes) and re-reads only those names. Expiry is tracked in
a heap, so the values that expire leave when their time comes, without a scan. A new
:class:`~veritee.appraisal.prepared.PreparedReferences` (with a new generation) is built only
when something changed; between changes every appraisal receives the same object, and the
policy engine keeps using the policy compiled for it.
"""

from __future__ import annotations

import heapq
import itertools
import logging
import os
import threading
import time
from collections.abc import Callable, Iterable
from datetime import datetime

from veritee import blocking
from veritee.appraisal.prepared import PreparedReferences
from veritee.store import ReferenceValueRecord, Store

log = logging.getLogger(__name__)

_GENERATIONS = itertools.count(1)


class ReferenceCache:
    """The store's live reference values as one :class:`PreparedReferences`, safe to share
    between threads."""

    def __init__(self, store: Store, *, refresh_seconds: float = 1.0,
                 monotonic: Callable[[], float] = time.monotonic) -> None:
        self._store = store
        self._refresh = refresh_seconds
        self._monotonic = monotonic
        self._lock = threading.Lock()
        self._records: dict[str, ReferenceValueRecord] = {}
        self._expiry: list[tuple[datetime, str, int]] = []
        self._seen = -1                  # the change number loaded; -1: nothing loaded
        self._checked = float("-inf")
        self._dirty = False
        self._prepared: PreparedReferences | None = None

    def get(self, now: datetime) -> PreparedReferences:
        """The live values at ``now``, at most ``refresh_seconds`` behind the store.

        Raises:
            StoreError: the store could not be read (the caller's error mapping applies).
            WouldBlock: on the event loop (:func:`veritee.blocking.nonblocking`), another
                thread is refreshing, or the store would make this one wait.
        """
        prepared = self._prepared
        if prepared is not None and self._current(now):
            return prepared
        if not self._lock.acquire(blocking=blocking.may_block()):
            raise blocking.WouldBlock("reference values being re-read by another thread")
        try:
            if self._prepared is None or not self._current(now):
                self._refresh_locked(now)
            assert self._prepared is not None
            return self._prepared
        finally:
            self._lock.release()

    def forget(self) -> None:
        """Re-read everything on next use (after a change this process made itself, the next
        use sees it at once instead of within ``refresh_seconds``)."""
        with self._lock:
            self._checked = float("-inf")

    def _current(self, now: datetime) -> bool:
        if self._monotonic() - self._checked >= self._refresh:
            return False
        return not self._expiry or now < self._expiry[0][0]

    def _refresh_locked(self, now: datetime) -> None:
        # Each step leaves a consistent state when a read raises (WouldBlock, StoreError):
        # _dirty remembers a change not yet prepared.
        self._dirty |= self._drop_expired(now)
        if self._prepared is None or self._monotonic() - self._checked >= self._refresh:
            self._dirty |= self._read_changes(now)
            self._checked = self._monotonic()
        if self._dirty or self._prepared is None:
            values = {name: record.values for name, record in self._records.items()}
            self._prepared = PreparedReferences.build(
                values, generation=f"{os.getpid()}:{next(_GENERATIONS)}")
            self._dirty = False

    def _read_changes(self, now: datetime) -> bool:
        if self._seen >= 0:
            latest, names = self._store.reference_changes(self._seen)
            if latest >= self._seen:
                if names:
                    self._apply(names, self._store.reference_values_for(names, now=now))
                self._seen = latest
                return bool(names)
            log.warning("the store's reference-value change number went back (%d < %d): "
                        "reloading every value", latest, self._seen)
        latest, _ = self._store.reference_changes(0)
        loaded = {record.name: record for record in self._store.iter_reference_values(now=now)}
        self._records, self._expiry = {}, []
        self._apply((), loaded)
        self._seen = latest
        return True

    def _apply(self, names: Iterable[str], records: dict[str, ReferenceValueRecord]) -> None:
        for name in names:
            if name not in records:
                self._records.pop(name, None)
        for name, record in records.items():
            self._records[name] = record
            if record.expires is not None:
                heapq.heappush(self._expiry, (record.expires, name, record.version))

    def _drop_expired(self, now: datetime) -> bool:
        dropped = False
        while self._expiry and self._expiry[0][0] <= now:
            _, name, version = heapq.heappop(self._expiry)
            record = self._records.get(name)
            if record is not None and record.version == version:
                del self._records[name]
                dropped = True
        return dropped

    def __len__(self) -> int:
        return len(self._records)


__all__ = ["ReferenceCache"]
