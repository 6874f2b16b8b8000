"""Persistent and in-memory caches of vendor answers, keyed by the exact request.

Both take the clock they are given (seconds since the epoch, ``time.time`` by default), so
that tests age entries without touching the process's clock.
"""

from __future__ import annotations

import hashlib
import json
import os
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

Clock = Callable[[], float]


class CollateralCache(Protocol):
    """Bytes by request key. Entries older than ``max_age`` seconds count as absent."""

    def get(self, key: str, *, max_age: float | None = None) -> bytes | None: ...

    def put(self, key: str, body: bytes) -> None: ...


@dataclass
class MemoryCache:
    """A cache that lives as long as the object (the default; nothing touches the disk)."""

    clock: Clock = field(default=time.time, repr=False)
    _entries: dict[str, tuple[float, bytes]] = field(default_factory=dict)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def get(self, key: str, *, max_age: float | None = None) -> bytes | None:
        with self._lock:
            entry = self._entries.get(key)
        if entry is None or (max_age is not None and self.clock() - entry[0] > max_age):
            return None
        return entry[1]

    def put(self, key: str, body: bytes) -> None:
        with self._lock:
            self._entries[key] = (self.clock(), body)


@dataclass
class DirectoryCache:
    """A cache in a directory: one body file and one JSON note per request key.

    The file name is the SHA-256 of the key, so any request string is safe; the note keeps
    the key itself so an operator can see what is stored (``veritee collateral ls``).
    Writes go through a temporary file and ``os.replace``, so readers never see half a body.
    """

    root: Path
    clock: Clock = field(default=time.time, repr=False)

    def _paths(self, key: str) -> tuple[Path, Path]:
        name = hashlib.sha256(key.encode()).hexdigest()
        return self.root / f"{name}.bin", self.root / f"{name}.json"

    def get(self, key: str, *, max_age: float | None = None) -> bytes | None:
        body_path, note_path = self._paths(key)
        try:
            note = json.loads(note_path.read_text())
            body = body_path.read_bytes()
        except (OSError, ValueError):
            return None
        if note.get("key") != key or note.get("sha256") != hashlib.sha256(body).hexdigest():
            return None
        stored = float(note.get("stored_at", 0))
        if max_age is not None and self.clock() - stored > max_age:
            return None
        return body

    def put(self, key: str, body: bytes) -> None:
        self.root.mkdir(parents=True, exist_ok=True)
        body_path, note_path = self._paths(key)
        note = {"key": key, "stored_at": self.clock(),
                "sha256": hashlib.sha256(body).hexdigest()}
        _atomic_write(body_path, body)
        _atomic_write(note_path, json.dumps(note).encode())

    def entries(self) -> list[dict[str, object]]:
        """The notes of every stored answer (for listing)."""
        out: list[dict[str, object]] = []
        for note_path in sorted(self.root.glob("*.json")):
            try:
                out.append(json.loads(note_path.read_text()))
            except (OSError, ValueError):
                continue
        return out


def _atomic_write(path: Path, data: bytes) -> None:
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{threading.get_ident()}.tmp")
    tmp.write_bytes(data)
    os.replace(tmp, path)
