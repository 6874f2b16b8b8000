"""Shared fixtures. Real evidence is read in place from ../shared/corpus (never copied)."""

from __future__ import annotations

import ipaddress
import json
import os
import socket
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from support.store import BACKENDS, KEK, backend_url
from veritee.store import Store

ROOT = Path(__file__).resolve().parents[1]
CORPUS = Path(os.environ.get("VERITEE_CORPUS", ROOT.parent / "shared" / "corpus"))


_LOCAL_NAMES = frozenset({"localhost", "testserver"})
_real_getaddrinfo = socket.getaddrinfo


def _loopback_only(host: Any, *args: Any, **kwargs: Any) -> Any:
    """No test reaches the network: names other than loopback do not resolve (so a client
    that would ask a vendor service sees it unreachable, and the test shows it)."""
    name = host.decode() if isinstance(host, bytes) else str(host)
    try:
        address = ipaddress.ip_address(name.strip("[]"))
        local = address.is_loopback or address.is_unspecified
    except ValueError:
        local = name in _LOCAL_NAMES
    if not local and host is not None:
        raise socket.gaierror(socket.EAI_NONAME, f"tests reach loopback only, not {name}")
    return _real_getaddrinfo(host, *args, **kwargs)


socket.getaddrinfo = _loopback_only


def corpus_dir(*parts: str) -> Path:
    """A folder of the shared corpus; skips the test (saying why) when it is absent."""
    path = CORPUS.joinpath(*parts)
    if not path.is_dir():
        pytest.skip(f"corpus folder {'/'.join(parts) or '.'} is absent (set VERITEE_CORPUS)")
    return path


def manifest(vendor: str) -> list[dict[str, Any]]:
    """The entries of ``corpus/<vendor>/MANIFEST.json`` (empty when the corpus is absent)."""
    path = CORPUS / vendor / "MANIFEST.json"
    if not path.is_file():
        return []
    entries: list[dict[str, Any]] = json.loads(path.read_text())["entries"]
    return entries


@pytest.fixture
def amd_corpus() -> Path:
    return corpus_dir("amd")


@pytest.fixture(params=BACKENDS)
def url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """A store URL per backend (PostgreSQL only when VERITEE_TEST_POSTGRES_URL is set)."""
    with backend_url(request.param, tmp_path) as value:
        yield value


@pytest.fixture
def store(url: str) -> Iterator[Store]:
    with Store.open(url, kek=KEK) as value:
        yield value

