"""What the HTTP face refuses before a route runs: oversized or slow bodies, JSON a route
must not see (lone surrogates, deep nesting), and spoofed client addresses.

* :class:`BodyGuard` reads each request body fully, with a size limit (413 for a declared or
  a chunked body over it) and a deadline (408 for a body that does not arrive in time, and
  the connection is closed), then hands the body to the app. For the JSON routes it refuses,
  with 400, a body whose strings hold a lone surrogate (``"\\udfff"``: not Unicode, and the
  source of 500s wherever such a string is encoded later), that holds ``NaN`` or
  ``Infinity`` (not JSON), or whose nesting is deeper than :data:`MAX_JSON_DEPTH`.
* :class:`TrustedProxies` says who the client is: the peer, or, when the peer is a trusted
  load balancer, the last address in ``X-Forwarded-For`` that is not itself a trusted proxy.
"""

from __future__ import annotations

import asyncio
import ipaddress
import json
import re
import time
from collections.abc import Iterable, Sequence
from typing import Any, Final

from starlette.responses import JSONResponse
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from veritee.broker import problems

#: JSON documents of the KBS and admin routes nest a few levels; deeper ones are refused.
MAX_JSON_DEPTH: Final = 64
_SURROGATE_ESCAPE: Final = re.compile(rb"\\u[dD][89a-fA-F][0-9a-fA-F]{2}")


class _Refused(Exception):
    def __init__(self, problem: problems.BrokerError) -> None:
        super().__init__(problem.detail)
        self.problem = problem


class BodyGuard:
    def __init__(self, app: ASGIApp, *, limit: int, timeout: float,
                 json_paths: Sequence[str]) -> None:
        self.app = app
        self.limit = limit
        self.timeout = timeout
        self.json_paths = tuple(json_paths)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        try:
            self._check_declared(scope)
            body, more = await self._read(receive)
            if scope.get("method") in ("POST", "PUT", "PATCH") and str(
                    scope.get("path", "")).startswith(self.json_paths):
                check_json(body)
        except _Refused as refused:
            await _answer(send, refused.problem)
            return
        await self.app(scope, _replay(body, more, receive), send)

    def _check_declared(self, scope: Scope) -> None:
        for name, value in scope.get("headers", []):
            if name == b"content-length":
                try:
                    too_big = int(value) > self.limit
                except ValueError:
                    too_big = True
                if too_big:
                    raise _Refused(problems.PayloadTooLarge(
                        f"the body is larger than {self.limit} bytes"))

    async def _read(self, receive: Receive) -> tuple[bytes, bool]:
        """The whole body (and whether the last message said more was to come, which it
        never does once read), within the size limit and the deadline."""
        deadline = time.monotonic() + self.timeout
        chunks: list[bytes] = []
        size = 0
        while True:
            remaining = deadline - time.monotonic()
            try:
                message = await asyncio.wait_for(receive(), max(remaining, 0.001))
            except TimeoutError:
                raise _Refused(problems.RequestTimeout(
                    f"the body did not arrive within {self.timeout:g} s")) from None
            if message["type"] != "http.request":
                return b"".join(chunks), False
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > self.limit:
                raise _Refused(problems.PayloadTooLarge(
                    f"the body is larger than {self.limit} bytes"))
            chunks.append(chunk)
            if not message.get("more_body", False):
                return b"".join(chunks), False


def check_json(body: bytes) -> None:
    """Refuse (400) JSON whose strings hold a lone surrogate or that nests too deeply; other
    bodies (not JSON at all) are left for the route to refuse."""
    # Substring tests first: a regular expression with alternatives costs about 20 µs per
    # KiB of body, a substring search well under one.
    suspicious = (b"\\u" in body and _SURROGATE_ESCAPE.search(body) is not None) or (
        b"NaN" in body or b"Infinity" in body)
    deep = body.count(b"[") + body.count(b"{") > MAX_JSON_DEPTH
    if not (suspicious or deep):
        return
    try:
        document = json.loads(body, parse_constant=_no_constant)
    except RecursionError as exc:
        raise _Refused(problems.InvalidRequest("the body nests JSON too deeply")) from exc
    except ValueError:
        return
    _walk(document)


def _no_constant(name: str) -> Any:
    raise _Refused(problems.InvalidRequest(f"the body holds {name}, which is not JSON"))


def _walk(document: Any) -> None:
    stack: list[tuple[Any, int]] = [(document, 1)]
    while stack:
        value, depth = stack.pop()
        if isinstance(value, str):
            _unicode(value)
        elif isinstance(value, dict | list):
            if depth > MAX_JSON_DEPTH:
                raise _Refused(problems.InvalidRequest(
                    f"the body nests JSON more than {MAX_JSON_DEPTH} levels deep"))
            items = value.items() if isinstance(value, dict) else enumerate(value)
            for key, item in items:
                if isinstance(key, str):
                    _unicode(key)
                stack.append((item, depth + 1))


def _unicode(text: str) -> None:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError as exc:
        raise _Refused(problems.InvalidRequest(
            "the body holds a string with a lone surrogate (not Unicode text)")) from exc


def _replay(body: bytes, more: bool, receive: Receive) -> Receive:
    sent = False

    async def replayed() -> Message:
        nonlocal sent
        if not sent:
            sent = True
            return {"type": "http.request", "body": body, "more_body": more}
        return await receive()

    return replayed


async def _answer(send: Send, problem: problems.BrokerError) -> None:
    """Answer with the problem and close the connection (the client may still be sending)."""
    found = problems.problem_for(problem)
    response = JSONResponse(found.body(), status_code=found.status,
                            media_type="application/problem+json",
                            headers={"Connection": "close", **found.headers()})
    await send({"type": "http.response.start", "status": response.status_code,
                "headers": response.raw_headers})
    await send({"type": "http.response.body", "body": response.body})


class TrustedProxies:
    """Who the client is, given the peer and the ``X-Forwarded-For`` headers."""

    def __init__(self, proxies: Iterable[str]) -> None:
        self.networks = tuple(ipaddress.ip_network(p, strict=False) for p in proxies)

    def trusted(self, address: str) -> bool:
        try:
            ip = ipaddress.ip_address(address)
        except ValueError:
            return False
        return any(ip in network for network in self.networks)

    def client(self, peer: str, forwarded: Sequence[str]) -> str:
        if not self.networks or not self.trusted(peer):
            return peer
        hops = [h.strip() for value in forwarded for h in value.split(",") if h.strip()]
        for hop in reversed(hops):
            if not self.trusted(hop):
                try:
                    return str(ipaddress.ip_address(hop))
                except ValueError:
                    return peer  # a malformed hop from the proxy: fall back to the peer
        return peer


__all__ = ["MAX_JSON_DEPTH", "BodyGuard", "TrustedProxies", "check_json"]
