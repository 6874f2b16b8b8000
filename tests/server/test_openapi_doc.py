"""docs/openapi.json is what the broker generates (regenerate: python -m veritee.server.openapi)."""

from __future__ import annotations

import json
from pathlib import Path

from veritee.server.openapi import openapi_document, render

DOC = Path(__file__).resolve().parents[2] / "docs" / "openapi.json"


def test_committed_openapi_document_is_current() -> None:
    generated = render(openapi_document())
    committed = DOC.read_text()
    assert json.loads(committed) == json.loads(generated), (
        "docs/openapi.json is stale: run python -m veritee.server.openapi docs/openapi.json")


def test_openapi_lists_the_kbs_paths() -> None:
    paths = json.loads(DOC.read_text())["paths"]
    for path in ("/kbs/v0/auth", "/kbs/v0/attest", "/kbs/v0/resource/{repository}/{kind}/{tag}",
                 "/kbs/v0/attestation-policy", "/kbs/v0/resource-policy",
                 "/kbs/v0/reference-value", "/.well-known/jwks.json", "/healthz", "/metrics"):
        assert path in paths, path
