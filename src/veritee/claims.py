"""Typed claims: what a verifier extracted from evidence it verified.

Claims are typed in the core (one frozen dataclass per TEE) and become dicts only at the
edges (CLI JSON, tokens). Byte strings become lowercase hex in the order the bytes appear in
the evidence; numbers stay integers (CONTRACT.md §1).
"""

from __future__ import annotations

import dataclasses
from typing import Any, ClassVar, Protocol, runtime_checkable


@runtime_checkable
class Claims(Protocol):
    """What every verifier returns on success."""

    tee: ClassVar[str]

    def to_dict(self) -> dict[str, Any]:
        """The claims as JSON-ready values, named as CONTRACT.md names them."""
        ...


def to_jsonable(value: Any) -> Any:
    """Turn dataclasses, bytes, tuples and mappings into JSON-ready values (bytes → hex)."""
    if isinstance(value, bytes | bytearray | memoryview):
        return bytes(value).hex()
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        to_dict = getattr(value, "to_dict", None)
        if callable(to_dict):
            return to_dict()
        return {f.name: to_jsonable(getattr(value, f.name)) for f in dataclasses.fields(value)}
    if isinstance(value, dict):
        return {str(k): to_jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [to_jsonable(v) for v in value]
    return value


def claim_at(claims: Any, path: str) -> Any:
    """The claim at ``path``: a key of ``claims``, or a dotted path into nested claims
    (``vtpm.pcrs.sha256.8``); None when any step is missing."""
    value = claims
    for part in path.split("."):
        value = value.get(part) if isinstance(value, dict) else None
    return value
