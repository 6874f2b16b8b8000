"""Shared fixtures. Real evidence is read in place from ../shared/corpus (never copied)."""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from support.store import BACKENDS, KEK, backend_url
from veritee.store import Store

ROOT = Path(__file__).resolve().parents[1]
CORPUS = Path(os.environ.get("VERITEE_CORPUS", ROOT.parent / "shared" / "corpus"))


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

