"""HTTP limits, tried with raw sockets as an attacker would: huge or many headers (431), a body
that never arrives (408, connection closed), an oversized chunked body (413), and JSON that
no route may see (400). Outcomes only, never durations."""

from __future__ import annotations

import socket
from collections.abc import Iterator
from pathlib import Path

import pytest

from support.broker import RunningBroker, running_broker
from veritee.broker.config import ServerConfig


@pytest.fixture(scope="module")
def kbs(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningBroker]:
    server = ServerConfig(port=0, body_timeout_seconds=0.5, max_body_bytes=4096)
    with running_broker(tmp_path_factory.mktemp("guards"), server=server) as running:
        yield running


def exchange(kbs: RunningBroker, raw: bytes, *, read_timeout: float = 10.0) -> bytes:
    """Send ``raw``; everything the broker answers until it closes or goes quiet."""
    host, port = kbs.url.removeprefix("http://").split(":")
    with socket.create_connection((host, int(port))) as conn:
        conn.sendall(raw)
        conn.settimeout(read_timeout)
        chunks = []
        try:
            while chunk := conn.recv(65536):
                chunks.append(chunk)
        except (TimeoutError, ConnectionResetError):
            pass
    return b"".join(chunks)


def status(answer: bytes) -> int:
    return int(answer.split(b" ", 2)[1]) if answer.startswith(b"HTTP/1.1 ") else 0


def test_a_128_kib_bearer_token_is_read(kbs: RunningBroker) -> None:
    token = b"a" * 128 * 1024
    answer = exchange(kbs, b"GET /kbs/v0/resource/a/b/c HTTP/1.1\r\nHost: x\r\n"
                           b"Authorization: Bearer " + token + b"\r\nConnection: close\r\n\r\n",
                      read_timeout=5)
    assert status(answer) == 401 and b"TokenVerifierError" in answer


def test_an_oversized_head_is_431_and_closed(kbs: RunningBroker) -> None:
    answer = exchange(kbs, b"GET /healthz HTTP/1.1\r\nHost: x\r\nX-Pad: " + b"a" * 300_000
                      + b"\r\n\r\n")
    assert status(answer) == 431 and b"HeaderTooLarge" in answer


def test_too_many_header_fields_is_431(kbs: RunningBroker) -> None:
    fields = b"".join(b"X-%d: y\r\n" % i for i in range(150))
    answer = exchange(kbs, b"GET /healthz HTTP/1.1\r\nHost: x\r\n" + fields + b"\r\n")
    assert status(answer) == 431 and b"more than 100 header fields" in answer


def test_a_body_that_does_not_arrive_is_408_and_the_connection_closes(kbs: RunningBroker) -> None:
    answer = exchange(kbs, b"POST /kbs/v0/auth HTTP/1.1\r\nHost: x\r\n"
                           b"Content-Type: application/json\r\nContent-Length: 10\r\n\r\n{\"",
                      read_timeout=10)
    assert status(answer) == 408
    assert b"connection: close" in answer.lower() and b"RequestTimeout" in answer


def test_an_oversized_chunked_body_is_413(kbs: RunningBroker) -> None:
    chunk = b"a" * 3000
    body = b"".join(b"%x\r\n" % len(chunk) + chunk + b"\r\n" for _ in range(3)) + b"0\r\n\r\n"
    answer = exchange(kbs, b"POST /kbs/v0/auth HTTP/1.1\r\nHost: x\r\n"
                           b"Content-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n"
                      + body)
    assert status(answer) == 413 and b"PayloadTooLarge" in answer


def test_a_declared_oversized_body_is_413(kbs: RunningBroker) -> None:
    answer = exchange(kbs, b"POST /kbs/v0/auth HTTP/1.1\r\nHost: x\r\n"
                           b"Content-Type: application/json\r\nContent-Length: 99999\r\n\r\n")
    assert status(answer) == 413


@pytest.mark.parametrize(("body", "reason"), [
    (b'{"version": "0.4.0", "tee": "\\udfff"}', b"lone surrogate"),
    (b'{"version": "0.4.0", "tee": "snp", "extra-params": {"\\ud800x": 1}}', b"lone surrogate"),
    (b'{"version": "0.4.0", "tee": "snp", "extra-params": NaN}', b"NaN, which is not JSON"),
    (b'{"version": "0.4.0", "tee": "snp", "extra-params": ' + b"[" * 80 + b"]" * 80 + b"}",
     b"more than 64 levels deep"),
])
def test_json_no_route_may_see_is_400(kbs: RunningBroker, body: bytes, reason: bytes) -> None:
    answer = exchange(kbs, b"POST /kbs/v0/auth HTTP/1.1\r\nHost: x\r\n"
                           b"Content-Type: application/json\r\nConnection: close\r\n"
                           b"Content-Length: %d\r\n\r\n" % len(body) + body)
    assert status(answer) == 400 and reason in answer, answer[-300:]


def test_a_paired_surrogate_escape_is_text(kbs: RunningBroker, tmp_path: Path) -> None:
    body = b'{"version": "0.4.0", "tee": "\\ud83d\\ude00"}'
    answer = exchange(kbs, b"POST /kbs/v0/auth HTTP/1.1\r\nHost: x\r\n"
                           b"Content-Type: application/json\r\nConnection: close\r\n"
                           b"Content-Length: %d\r\n\r\n" % len(body) + body)
    assert status(answer) == 400 and b"is not supported" in answer  # an unknown TEE, not 500
