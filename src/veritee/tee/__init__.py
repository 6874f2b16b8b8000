"""One verifier per TEE, behind one interface, listed in one registry.

Every package under ``veritee/tee/`` exposes a class with the :class:`Verifier` shape and is
named in :data:`VERIFIERS`; a test keeps the table complete.
"""

from __future__ import annotations

import importlib
from datetime import datetime
from typing import Any, Protocol

from veritee.claims import Claims
from veritee.collateral import CollateralSource
from veritee.errors import UnknownTeeError
from veritee.evidence import Evidence


class Verifier(Protocol):
    """Verify one piece of evidence; return typed claims or raise a VeriteeError leaf."""

    tee: str

    def verify(self, evidence: Evidence, *, report_data: bytes | None,
               collateral: CollateralSource, now: datetime) -> Claims: ...


#: TEE name (the KBS protocol's ``tee`` value) → "module:class" of its verifier.
VERIFIERS: dict[str, str] = {
    "snp": "veritee.tee.snp.verify:SnpVerifier",
}

#: TEE name → "module:function" returning the emulated roots of :mod:`veritee.testing`.
#: Imported only when an operator asks to trust emulated evidence.
EMULATED_ROOTS: dict[str, str] = {
    "snp": "veritee.testing.snp:emulated_roots",
}


def tee_names() -> list[str]:
    return sorted(VERIFIERS)


def _load(target: str) -> Any:
    module, _, name = target.partition(":")
    return getattr(importlib.import_module(module), name)


def get_verifier(tee: str, *, trust_emulated: bool = False) -> Verifier:
    """A new verifier for ``tee`` trusting the pinned vendor roots (and, if asked, the
    emulated roots of :mod:`veritee.testing`, whose results are marked ``emulated``).

    Raises:
        UnknownTeeError: no verifier is registered under ``tee``.
    """
    target = VERIFIERS.get(tee)
    if target is None:
        raise UnknownTeeError(f"no verifier for TEE {tee!r}; known: {', '.join(tee_names())}")
    cls = _load(target)
    if not trust_emulated:
        return cls()  # type: ignore[no-any-return]
    roots = _load(EMULATED_ROOTS[tee])()
    return cls(roots=(*cls().roots, *roots))  # type: ignore[no-any-return]
