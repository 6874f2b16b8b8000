"""Shared fixtures. Real evidence is read in place from ../shared/corpus (never copied)."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import pytest

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
