"""A bounded table of results of pure functions, keyed by their exact inputs.

Verifiers keep one per kind of input that repeats across guests (a certificate's parsed
extension, a quoting enclave's checked signature, an operator's trusted key files, a VM's
keys): the value depends only on the key, so a hit is the same answer computed again.
Standard library only (DESIGN.md, layer "errors, common types").
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Hashable
from typing import Final, Generic, TypeVar

V = TypeVar("V")
_MISSING: Final = object()


class BoundedMemo(Generic[V]):
    """At most ``size`` results (the oldest go first; ``size <= 0`` keeps none). Safe to share
    between threads: a value may be computed twice by racing callers, never mixed up."""

    __slots__ = ("_lock", "_size", "_table")

    def __init__(self, size: int = 1024) -> None:
        self._size = size
        self._table: dict[Hashable, V] = {}
        self._lock = threading.Lock()

    def get(self, key: Hashable, compute: Callable[[], V]) -> V:
        """The value for ``key``, computed by ``compute`` the first time (an exception it
        raises is not kept)."""
        found = self._table.get(key, _MISSING)
        if found is not _MISSING:
            return found  # type: ignore[return-value]
        value = compute()
        if self._size <= 0:
            return value
        with self._lock:
            if len(self._table) >= self._size:
                self._table.pop(next(iter(self._table)))
            self._table[key] = value
        return value


__all__ = ["BoundedMemo"]
