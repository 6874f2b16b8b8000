"""The one door to the network: a :class:`Fetcher` returns the body of a GET.

Verification code never imports this module; it receives a fetcher (or none, for offline
operation) inside a :class:`~veritee.collateral.CollateralSource`. Tests inject fakes from
:mod:`veritee.testing` (or an ``httpx.MockTransport``).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field

import httpx

from veritee.collateral.base import Response
from veritee.errors import CollateralUnavailableError

#: Vendor answers larger than this are refused (a CRL of every AMD part is a few KiB).
MAX_RESPONSE_BYTES = 16 * 1024 * 1024
_RETRY_STATUS = frozenset({429, 500, 502, 503, 504})


@dataclass
class HttpFetcher:
    """GET over httpx with timeouts, bounded bodies and retries with backoff on 429/5xx and
    on dropped connections. A host that cannot be resolved or connected to is not retried:
    that is a closed or missing network, and waiting would only delay the verdict."""

    timeout: float = 10.0
    retries: int = 3
    backoff: float = 1.0
    user_agent: str = "veritee"
    max_response_bytes: int = MAX_RESPONSE_BYTES
    transport: httpx.BaseTransport | None = field(default=None, repr=False)
    """None: the network. Tests pass an ``httpx.MockTransport``."""
    sleep: Callable[[float], None] = field(default=time.sleep, repr=False)
    """How to wait between attempts (tests pass a recorder)."""
    mirrors: tuple[tuple[str, str], ...] = ()
    """``(prefix, replacement)``: a request whose URL starts with ``prefix`` goes to
    ``replacement`` + the rest (an internal mirror or caching proxy of a vendor service, such
    as a PCCS for Intel PCS). Several replacements of one prefix are tried in order, the next
    when one fails (no answer, 404 or another error). Caches stay keyed by the vendor's URL."""
    _client: httpx.Client | None = field(default=None, init=False, repr=False)

    def get(self, url: str) -> Response:
        targets = self._targets(url)
        for target in targets[:-1]:
            try:
                response = self._get_retrying(target, url)
            except CollateralUnavailableError:
                continue
            if response.status == 200:
                return response
        return self._get_retrying(targets[-1], url)

    def _get_retrying(self, target: str, url: str) -> Response:
        last = ""
        for attempt in range(self.retries + 1):
            if attempt:
                self.sleep(self.backoff * 2 ** (attempt - 1))
            try:
                response = self._get_once(target, url)
            except httpx.ConnectError as exc:
                last = f"{type(exc).__name__}: {exc}"
                break
            except httpx.HTTPError as exc:
                last = f"{type(exc).__name__}: {exc}"
                continue
            if response.status not in _RETRY_STATUS:
                return response
            last = f"HTTP {response.status}"
        raise CollateralUnavailableError(
            f"GET {target}{'' if target == url else f' (for {url})'} failed after "
            f"{attempt + 1} attempt{'s' if attempt else ''} ({last})"
        )

    def _targets(self, url: str) -> list[str]:
        found = [replacement + url[len(prefix):] for prefix, replacement in self.mirrors
                 if url.startswith(prefix)]
        return found or [url]

    def _get_once(self, target: str, url: str) -> Response:
        client = self._client
        if client is None:
            client = self._client = httpx.Client(
                timeout=self.timeout, headers={"User-Agent": self.user_agent},
                follow_redirects=True, transport=self.transport,
            )
        with client.stream("GET", target) as stream:
            chunks: list[bytes] = []
            size = 0
            for chunk in stream.iter_bytes():
                size += len(chunk)
                if size > self.max_response_bytes:
                    raise CollateralUnavailableError(
                        f"GET {url}: answer larger than {self.max_response_bytes} bytes"
                    )
                chunks.append(chunk)
            return Response(
                status=stream.status_code,
                body=b"".join(chunks),
                max_age=_max_age(stream.headers.get("cache-control", "")),
                headers={k.lower(): v for k, v in stream.headers.items()},
            )


def _max_age(cache_control: str) -> float | None:
    for part in cache_control.split(","):
        name, _, value = part.strip().partition("=")
        if name.lower() == "max-age":
            try:
                return float(value)
            except ValueError:
                return None
    return None
