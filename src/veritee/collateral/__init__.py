"""Vendor collateral: certificates, CRLs, TCB information — as bytes, never as verdicts.

Everything a verifier may need beyond the evidence reaches it through one
:class:`CollateralSource`:

* ``files`` — what the operator handed over (``--endorsements``, ``--collateral`` files and
  directories), each with its name and origin. Their content says what they are; the
  verifier classifies them, and names a file it cannot use.
* vendor services (AMD KDS, Intel PCS, ...) behind a :class:`Fetcher`, with a persistent
  :class:`CollateralCache` keyed by the exact request: :meth:`CollateralSource.get` is the
  one generic client (cache → fetch → cache; offline: the cache alone, a stale entry before
  none). Each TEE room only builds its vendor's URLs.

This package fetches and caches bytes; it makes no trust decision (DESIGN.md, layers), and
importing it loads no HTTP client (:mod:`veritee.collateral.fetch` does, when asked for).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from veritee import blocking
from veritee.collateral.base import CollateralRequest, Fetcher, Response
from veritee.collateral.cache import CollateralCache, DirectoryCache, MemoryCache
from veritee.errors import CollateralMissingError, CollateralUnavailableError, MisuseError

#: Files larger than this in a collateral directory are skipped (TCB info and CRLs are small).
MAX_COLLATERAL_FILE = 8 * 1024 * 1024

Origin = Literal["endorsement", "collateral", "directory"]


@dataclass(frozen=True)
class CollateralFile:
    """One operator-supplied file."""

    name: str
    """Where it came from (a path, for messages)."""
    data: bytes
    origin: Origin = "endorsement"
    """``endorsement`` (``--endorsements``), ``collateral`` (a ``--collateral`` file) or
    ``directory`` (a file found in a ``--collateral`` directory: ignored when it does not
    apply). A verifier refuses, naming it, a file of the first two kinds that it cannot use
    at all."""

    @property
    def named(self) -> bool:
        """True when the operator named this file itself (not found in a directory)."""
        return self.origin != "directory"


@dataclass(frozen=True)
class CollateralSource:
    """Everything a verifier may use besides the evidence itself."""

    files: tuple[CollateralFile, ...] = ()
    """Operator-supplied files, in the order given (endorsements first)."""
    cache: CollateralCache = field(default_factory=MemoryCache)
    fetcher: Fetcher | None = None
    """None: never reach a vendor service (offline)."""

    @property
    def offline(self) -> bool:
        return self.fetcher is None

    @property
    def blobs(self) -> tuple[bytes, ...]:
        """The contents of :attr:`files`."""
        return tuple(f.data for f in self.files)

    @classmethod
    def of(cls, *blobs: bytes, cache: CollateralCache | None = None,
           fetcher: Fetcher | None = None) -> CollateralSource:
        """A source of in-memory endorsements (named ``endorsement[i]``)."""
        files = tuple(CollateralFile(f"endorsement[{i}]", b) for i, b in enumerate(blobs))
        return cls(files=files, cache=cache or MemoryCache(), fetcher=fetcher)

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
            MisuseError: a named path does not exist, cannot be read, or is empty.
        """
        files = [CollateralFile(str(p), _read(p), "endorsement") for p in endorsements]
        for path in collateral:
            files.extend(read_collateral_path(path))
        for item in files:
            if item.named and not item.data.strip():
                raise MisuseError(f"{item.origin} file {item.name} is empty")
        return cls(files=tuple(files), cache=cache or MemoryCache(), fetcher=fetcher)

    def cached(self, url: str) -> bytes | None:
        """The cached answer for ``url``, however old (never fetched)."""
        return self.cache.get(url)

    def get(self, url: str, what: str, *, service: str = "the vendor service",
            max_age: float | None = None, keep_headers: tuple[str, ...] = ()) -> bytes:
        """The body at ``url``: from the cache when fresher than ``max_age`` seconds, else from
        the vendor service (and cached); offline, a stale cached answer beats none. The
        response headers named in ``keep_headers`` are cached with it
        (:meth:`cached_header`).

        Raises:
            CollateralMissingError: offline and not cached, or the service answered 404.
            CollateralUnavailableError: the service answered another error or not at all.
        """
        cached = self.cache.get(url, max_age=max_age)
        if cached is not None:
            return cached
        if self.fetcher is None:
            stale = self.cache.get(url) if max_age is not None else None
            if stale is not None:
                return stale
            raise CollateralMissingError(f"{what} is not in the offline cache ({url})")
        blocking.about_to_block(f"fetching {what} from {service}")
        response = self.fetcher.get(url)
        if response.status == 404:
            raise CollateralMissingError(f"{service} has no {what} at {url} (HTTP 404)")
        if response.status != 200 or not response.body:
            raise CollateralUnavailableError(f"{service} answered HTTP {response.status} for {url}")
        headers = {key.lower(): value for key, value in response.headers.items()}
        for name in keep_headers:
            value = headers.get(name.lower())
            if value:
                self.cache.put(header_key(url, name), value.encode("utf-8", "replace"))
        self.cache.put(url, response.body)
        return response.body

    def cached_header(self, url: str, name: str) -> bytes | None:
        """A header :meth:`get` kept with the answer for ``url`` (None: none kept)."""
        return self.cache.get(header_key(url, name))


def header_key(url: str, name: str) -> str:
    """The cache key of a header kept with the answer for ``url``."""
    return f"{url}#header={name.lower()}"


def read_collateral_path(path: Path, *,
                         max_file: int = MAX_COLLATERAL_FILE) -> list[CollateralFile]:
    """A ``--collateral`` file, or every regular file below a directory (sorted by name;
    files larger than ``max_file`` bytes are skipped)."""
    if path.is_dir():
        files = sorted(p for p in path.rglob("*") if p.is_file())
        return [CollateralFile(str(p), _read(p), "directory") for p in files
                if p.stat().st_size <= max_file]
    return [CollateralFile(str(path), _read(path), "collateral")]


def _read(path: Path) -> bytes:
    try:
        return path.read_bytes()
    except OSError as exc:
        raise MisuseError(f"cannot read {path}: {exc.strerror or exc}") from exc


__all__ = [
    "CollateralCache",
    "CollateralFile",
    "CollateralRequest",
    "CollateralSource",
    "DirectoryCache",
    "Fetcher",
    "MemoryCache",
    "Response",
    "read_collateral_path",
]
