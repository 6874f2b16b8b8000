"""Emulated TEEs, test PKIs and fake vendor services — TEST ONLY.

Nothing here is trusted unless an operator says so (``--trust-emulated``,
``[verification] trust_emulated``), and results from emulated roots say ``emulated: true``.
Production commands (``veritee verify``, ``veritee serve``, ``veritee attest`` without
``--emulate``) never import this package.

Each platform's emulator module (``veritee/testing/<room>.py``) exports an object of the
:class:`Emulator` shape, named by the platform descriptor's ``emulator`` slot, which
``veritee emulate`` uses.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Protocol


@dataclass(frozen=True)
class Emulated:
    """What an emulator produced: the evidence, and files a verifier needs beside it."""

    evidence: bytes
    """The evidence in the TEE's usual wire form, as a file holds it."""
    form: str
    """The wire form's name (for messages)."""
    endorsements: tuple[tuple[str, bytes], ...] = ()
    """``(suffix, bytes)`` of collateral that makes a knob's defect visible (a CRL, ...)."""


class Emulator(Protocol):
    """An emulated TEE as ``veritee emulate`` drives it."""

    tee: str

    @property
    def knobs(self) -> Mapping[str, str]:
        """Knob name (``name`` or ``name=VALUE``) → what it does."""
        ...

    def emulate(self, *, report_data: bytes | None, host_data: bytes | None,
                knobs: Sequence[str]) -> Emulated:
        """Evidence signed by the test PKI.

        Raises:
            ValueError: an unknown knob, a knob value that does not parse, or report data or
                host data of the wrong size (the message says which).
        """
        ...


__all__ = ["Emulated", "Emulator"]
