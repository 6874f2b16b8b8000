"""Fake network peers for tests and benchmarks (loopback only)."""

from __future__ import annotations

import contextlib
import socket
import threading
from types import TracebackType


class SilentService:
    """A loopback listener that accepts connections and never answers, until closed: a
    vendor service that hangs. ``accepted`` is set once a client connected."""

    def __init__(self, backlog: int = 128) -> None:
        self._listener = socket.socket()
        self._listener.bind(("127.0.0.1", 0))
        self._listener.listen(backlog)
        self._listener.settimeout(0.1)
        self.url = f"http://127.0.0.1:{self._listener.getsockname()[1]}"
        self.accepted = threading.Event()
        self._stop = threading.Event()
        self._held: list[socket.socket] = []
        self._thread = threading.Thread(target=self._serve, daemon=True)
        self._thread.start()

    def _serve(self) -> None:
        while not self._stop.is_set():
            with contextlib.suppress(OSError):
                self._held.append(self._listener.accept()[0])
                self.accepted.set()

    def close(self) -> None:
        """Stop listening and drop every held connection (idempotent)."""
        self._stop.set()
        self._thread.join()
        self._listener.close()
        for conn in self._held:
            conn.close()

    def __enter__(self) -> SilentService:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.close()


__all__ = ["SilentService"]
