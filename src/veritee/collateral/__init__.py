"""Vendor collateral: certificates, CRLs, TCB information — as bytes, never as verdicts.

Everything a verifier may need beyond the evidence reaches it through one
:class:`CollateralSource`:

* ``blobs`` — files the operator handed over (``--endorsements``, ``--collateral`` files and
  directories). Their content says what they are; the verifier classifies them.
* vendor services (AMD KDS, ...) behind a :class:`Fetcher`, with a persistent
  :class:`CollateralCache` keyed by the exact request. With no fetcher the cache alone answers
  (offline mode) and a miss is :class:`~veritee.errors.CollateralMissingError`.

This package fetches and caches bytes; it makes no trust decision (DESIGN.md, layers).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

from veritee.collateral.cache import CollateralCache, MemoryCache
from veritee.collateral.fetch import Fetcher, HttpFetcher, Response
from veritee.errors import MisuseError

#: Files larger than this in a collateral directory are skipped (TCB info and CRLs are small).
MAX_COLLATERAL_FILE = 8 * 1024 * 1024


@dataclass(frozen=True)
class CollateralSource:
    """Everything a verifier may use besides the evidence itself."""

    blobs: tuple[bytes, ...] = ()
    """Operator-supplied files, in the order given (endorsements first)."""
    cache: CollateralCache = field(default_factory=MemoryCache)
    fetcher: Fetcher | None = None
    """None: never reach a vendor service (offline)."""

    @property
    def offline(self) -> bool:
        return self.fetcher is None

    @classmethod
    def from_paths(
        cls,
        endorsements: Iterable[Path] = (),
        collateral: Iterable[Path] = (),
        *,
        cache: CollateralCache | None = None,
        fetcher: Fetcher | None = None,
    ) -> CollateralSource:
        """Read endorsement files and collateral files or directories into a source.

        Raises:
            MisuseError: a named path does not exist or cannot be read.
        """
        blobs: list[bytes] = []
        for path in endorsements:
            blobs.append(_read(path))
        for path in collateral:
            blobs.extend(read_collateral_path(path))
        return cls(blobs=tuple(blobs), cache=cache or MemoryCache(), fetcher=fetcher)


def read_collateral_path(path: Path) -> list[bytes]:
    """The contents of a file, or of every regular file below a directory (sorted by name)."""
    if path.is_dir():
        files = sorted(p for p in path.rglob("*") if p.is_file())
        return [_read(p) for p in files if p.stat().st_size <= MAX_COLLATERAL_FILE]
    return [_read(path)]


def _read(path: Path) -> bytes:
    try:
        return path.read_bytes()
    except OSError as exc:
        raise MisuseError(f"cannot read {path}: {exc.strerror or exc}") from exc


__all__ = [
    "CollateralCache",
    "CollateralSource",
    "Fetcher",
    "HttpFetcher",
    "MemoryCache",
    "Response",
    "read_collateral_path",
]
