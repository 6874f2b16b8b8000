"""docs/ERRORS.md names every error variant the broker sends and every evidence error class."""

from __future__ import annotations

import re
from pathlib import Path

from veritee import errors
from veritee.broker import problems

ROOT = Path(__file__).resolve().parents[1]
DOC = (ROOT / "docs" / "ERRORS.md").read_text()


def _subclasses(cls: type) -> set[type]:
    found = set(cls.__subclasses__())
    for sub in list(found):
        found |= _subclasses(sub)
    return found


def _documented(first_column: str) -> bool:
    return re.search(rf"^\| `{re.escape(first_column)}` \|", DOC, re.MULTILINE) is not None


def _written_variants() -> set[str]:
    """Variants written as literals outside BrokerError subclasses: the fallbacks of
    problem_for, the HTTP framework's refusals, the protocol layer's 431."""
    found: set[str] = set()
    for name in ("broker/problems.py", "server/app.py", "server/protocol.py"):
        text = (ROOT / "src" / "veritee" / name).read_text()
        found |= set(re.findall(r'Problem\(\d+, "(\w+)"', text))
        for pair in re.findall(r'variant = "(\w+)" if .* else "(\w+)"', text):
            found |= set(pair)
        found |= set(re.findall(r'title":"(\w+)"', text))
    return found


def test_every_broker_variant_is_documented() -> None:
    variants = {cls.variant for cls in _subclasses(problems.BrokerError)} | _written_variants()
    assert {"AttestationError", "InternalError", "HttpError", "HeaderTooLarge"} <= variants
    missing = sorted(v for v in variants if not _documented(v))
    assert not missing, f"docs/ERRORS.md lacks {missing}"


def test_every_evidence_error_class_is_documented() -> None:
    classes = {cls.__name__ for cls in _subclasses(errors.EvidenceError)
               | _subclasses(errors.UndecidedError) if cls.__module__ == "veritee.errors"}
    assert "InitDataMismatchError" in classes
    missing = sorted(name for name in classes if not _documented(name))
    assert not missing, f"docs/ERRORS.md lacks {missing}"
