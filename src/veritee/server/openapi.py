"""The broker's OpenAPI document, as committed in docs/openapi.json.

Regenerate with ``python -m veritee.server.openapi docs/openapi.json``; a test fails when the
committed document differs from what the app generates.
"""

from __future__ import annotations

import json
import sys
import tempfile
from pathlib import Path
from typing import Any

from veritee.broker.config import Config


def openapi_document() -> dict[str, Any]:
    """The document FastAPI generates for the broker (built on a throwaway data dir)."""
    from veritee.server.app import build_broker, make_app  # noqa: PLC0415 - heavy, on demand

    with tempfile.TemporaryDirectory(prefix="veritee-openapi-") as tmp:
        config = Config(data_dir=tmp)
        broker, admin, _ = build_broker(config)
        try:
            document: dict[str, Any] = make_app(broker, admin, config).openapi()
        finally:
            broker.store.close()
    return document


def render(document: dict[str, Any]) -> str:
    return json.dumps(document, indent=2, sort_keys=True) + "\n"


def main(argv: list[str]) -> int:
    text = render(openapi_document())
    if argv:
        Path(argv[0]).write_text(text)
    else:
        sys.stdout.write(text)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
