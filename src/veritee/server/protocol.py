"""uvicorn's httptools protocol with limits on the request head.

llhttp (httptools) accepts request heads of any size and any number of header fields; a
client could make a worker buffer megabytes before the app sees anything. This protocol
counts the bytes of a request head as they arrive and the header fields as they are parsed,
and answers 431 (and closes) past the limits. The limits come from the app's lifespan state
(``veritee.http_limits``: ``(max_head_bytes, max_headers)``), which the broker app sets from
``[server] max_header_bytes`` and ``max_headers``; before the app started, the defaults apply.
"""

from __future__ import annotations

from typing import Any, Final

from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

STATE_KEY: Final = "veritee.http_limits"
DEFAULT_LIMITS: Final = (256 * 1024, 100)


class LimitedHttpToolsProtocol(HttpToolsProtocol):
    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._head_bytes = 0
        self._fields = 0
        self._in_head = True
        self._refused: str | None = None

    def _limits(self) -> tuple[int, int]:
        limits = self.app_state.get(STATE_KEY, DEFAULT_LIMITS)
        return int(limits[0]), int(limits[1])

    def on_message_begin(self) -> None:
        super().on_message_begin()
        self._fields = 0

    def on_message_complete(self) -> None:
        super().on_message_complete()
        self._head_bytes, self._in_head = 0, True  # the next request's head starts

    def on_header(self, name: bytes, value: bytes) -> None:
        self._fields += 1
        if self._fields > self._limits()[1]:
            self._refused = f"more than {self._limits()[1]} header fields"
            raise _HeadTooLarge(self._refused)
        super().on_header(name, value)

    def on_headers_complete(self) -> None:
        self._in_head = False
        super().on_headers_complete()

    def data_received(self, data: bytes) -> None:
        if self._in_head:
            self._head_bytes += len(data)
            limit = self._limits()[0]
            if self._head_bytes > limit:
                self._refused = f"the request head is larger than {limit} bytes"
                self.send_400_response(self._refused)
                return
        super().data_received(data)

    def send_400_response(self, msg: str) -> None:
        """uvicorn's answer to a parse failure; 431 when the failure is one of our limits."""
        if self._refused is None:
            super().send_400_response(msg)
            return
        body = (b'{"type":"https://github.com/confidential-containers/kbs/errors/'
                b'HeaderTooLarge","title":"HeaderTooLarge","status":431,"detail":"'
                + self._refused.encode("ascii") + b'"}')
        self.transport.write(
            b"HTTP/1.1 431 Request Header Fields Too Large\r\n"
            b"content-type: application/problem+json\r\n"
            b"content-length: " + str(len(body)).encode("ascii") + b"\r\n"
            b"connection: close\r\n\r\n" + body)
        self.transport.close()


class _HeadTooLarge(Exception):
    """Raised from a parser callback to stop parsing (httptools reports it as a parse error)."""


__all__ = ["DEFAULT_LIMITS", "STATE_KEY", "LimitedHttpToolsProtocol"]
