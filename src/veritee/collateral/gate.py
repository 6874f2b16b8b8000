"""What stands between unverified input and a vendor service: a gate around the fetcher.

A forged report with a random chip id makes a verifier ask the vendor for collateral that
does not exist. Behind the gate (one per broker process):

* at most ``concurrency`` fetches are in flight; a fetch that cannot start within
  ``queue_seconds`` is refused (undecided) rather than queued without bound;
* a URL whose fetch failed (no answer, 404, 429, 5xx) is not asked again for
  ``failure_ttl`` seconds: the failure is answered from memory;
* each client (the caller names it: a client address) may cause at most
  ``per_client_per_minute`` fetches a minute (a token bucket), so one client cannot make the
  broker hammer the vendor;
* the fetcher itself has short timeouts and few retries (the broker builds it so).

The gate only counts and refuses; it decides nothing about evidence.
"""

from __future__ import annotations

import threading
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass, field

from veritee.collateral.base import Fetcher, Response
from veritee.errors import CollateralUnavailableError
from veritee.ratelimit import TokenBuckets

#: Statuses remembered as failures (404: the vendor has no such collateral).
_FAILED = frozenset({404, 429, 500, 502, 503, 504})


@dataclass
class FetchGate:
    concurrency: int = 4
    queue_seconds: float = 2.0
    failure_ttl: float = 60.0
    per_client_per_minute: float = 10.0
    max_failures: int = 4096
    clock: Callable[[], float] = field(default=time.monotonic, repr=False)
    _slots: threading.BoundedSemaphore = field(init=False, repr=False)
    _failures: OrderedDict[str, tuple[float, Response]] = field(default_factory=OrderedDict,
                                                                repr=False)
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)
    _budgets: TokenBuckets = field(init=False, repr=False)

    def __post_init__(self) -> None:
        self._slots = threading.BoundedSemaphore(max(1, self.concurrency))
        self._budgets = TokenBuckets(self.per_client_per_minute,
                                     burst=max(1.0, self.per_client_per_minute), clock=self.clock)

    def wrap(self, fetcher: Fetcher, client: str) -> Fetcher:
        """``fetcher`` seen through this gate on behalf of ``client``."""
        return _Gated(self, fetcher, client)

    def _remembered(self, url: str) -> Response | None:
        with self._lock:
            hit = self._failures.get(url)
            if hit is None:
                return None
            if self.clock() - hit[0] > self.failure_ttl:
                del self._failures[url]
                return None
            return hit[1]

    def _remember(self, url: str, response: Response) -> None:
        with self._lock:
            self._failures.pop(url, None)
            self._failures[url] = (self.clock(), response)
            while len(self._failures) > self.max_failures:
                self._failures.popitem(last=False)


@dataclass(frozen=True)
class _Gated:
    gate: FetchGate
    inner: Fetcher
    client: str

    def get(self, url: str) -> Response:
        gate = self.gate
        remembered = gate._remembered(url)
        if remembered is not None:
            return remembered
        wait = gate._budgets.take(self.client)
        if wait:
            raise CollateralUnavailableError(
                f"client {self.client} caused too many vendor fetches; retry in {wait:.0f} s")
        if not gate._slots.acquire(timeout=gate.queue_seconds):
            raise CollateralUnavailableError(
                f"{gate.concurrency} vendor fetches are in flight; retry later")
        try:
            response = self.inner.get(url)
        except CollateralUnavailableError:
            gate._remember(url, Response(503, b""))
            raise
        finally:
            gate._slots.release()
        if response.status in _FAILED:
            gate._remember(url, Response(response.status, b""))
        return response


__all__ = ["FetchGate"]
