"""What every collateral source shares: the answer of a vendor service and the fetcher that
obtains one. No network here (the HTTP client lives in :mod:`veritee.collateral.fetch`)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Protocol


@dataclass(frozen=True)
class Response:
    status: int
    body: bytes
    max_age: float | None = None
    """Seconds the answer may be reused, from ``Cache-Control: max-age`` (None: unknown)."""
    headers: Mapping[str, str] = field(default_factory=dict, compare=False)
    """Response headers, names lowercase (some vendors send collateral in them: Intel PCS
    sends issuer chains)."""


class Fetcher(Protocol):
    """Something that performs an HTTP GET and returns the answer as bytes."""

    def get(self, url: str) -> Response:
        """Return the answer (any status); raise CollateralUnavailableError if none came."""
        ...


@dataclass(frozen=True)
class CollateralRequest:
    """One vendor request that verifying a piece of evidence needs (for filling the cache
    ahead of offline use: ``veritee collateral fetch``)."""

    url: str
    what: str
    """What the answer is (``VCEK``, ``CRL``, ...), for messages."""
    service: str = "the vendor service"
    max_age: float | None = None
    """Refetch when the cached answer is older than this many seconds (None: never)."""
    keep_headers: tuple[str, ...] = ()
    """Response headers cached with the answer (Intel PCS's issuer chains)."""


__all__ = ["CollateralRequest", "Fetcher", "Response"]
