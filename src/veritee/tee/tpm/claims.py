"""The claims of TPM quotes, named as CONTRACT.md §1.1 (``tpm``) names them.

``extra_data``, ``pcr_select`` ({bank: [index]}), ``pcr_digest``, ``pcrs`` ({bank:
{"<index>": hex}}), ``firmware_version``, ``clock``, ``reset_count``, ``restart_count``,
``safe``, ``qualified_signer``, ``signer`` (SHA-256 of the AK's DER SPKI), ``quotes`` (one
object per quote, in evidence order) and ``eventlog_pcrs``. The scalar fields are the first
quote's; ``pcr_select`` and ``pcrs`` merge every quote's banks. :func:`quote_claims` builds
them for this room and for the composites that nest a ``tpm`` object (Azure, SVSM).

Beside them: ``evidence_form``, ``emulated``, ``ak_trust`` (how the AK was trusted: ``key``,
``certificate`` or null), ``event_log`` ({"events": [...], "notes": [...]}, the events as
policies read them, :func:`veritee.tee.tpm.replay.event_json`).
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, ClassVar

from cryptography.hazmat.primitives import serialization

from veritee.tee.tpm.structures import Attest, PcrSelection, PublicKey

Pcrs = Mapping[str, Mapping[int, bytes]]
_BANK_ORDER = ("sha1", "sha256", "sha384", "sha512")


def signer_of(key: PublicKey) -> bytes:
    """The ``signer`` claim's bytes: SHA-256 of the key's DER SubjectPublicKeyInfo."""
    spki = key.public_bytes(serialization.Encoding.DER,
                            serialization.PublicFormat.SubjectPublicKeyInfo)
    return hashlib.sha256(spki).digest()


def pcrs_dict(pcrs: Pcrs) -> dict[str, dict[str, str]]:
    """{bank: {"<index>": hex}}, banks in sha1..sha512 order, indices ascending."""
    out = {}
    for bank in _ordered(pcrs):
        values = pcrs[bank]
        out[bank] = {str(i): values[i].hex() for i in sorted(values)}
    return out


def selection_dict(selections: Sequence[PcrSelection]) -> dict[str, list[int]]:
    out: dict[str, list[int]] = {}
    for s in selections:
        out.setdefault(s.bank, [])
        out[s.bank] = sorted(set(out[s.bank]) | set(s.indices))
    return out


def _ordered(banks: Mapping[str, Any]) -> list[str]:
    return sorted(banks, key=lambda b: (_BANK_ORDER.index(b) if b in _BANK_ORDER else 9, b))


def _one_quote(attest: Attest) -> dict[str, Any]:
    return {"pcr_select": selection_dict(attest.pcr_select),
            "pcr_digest": attest.pcr_digest.hex(), "extra_data": attest.extra_data.hex(),
            "firmware_version": attest.firmware_version, "clock": attest.clock}


def quote_claims(quotes: Sequence[tuple[Attest, Pcrs]], *, signer: bytes | None,
                 eventlog_pcrs: Pcrs | None) -> dict[str, Any]:
    """The CONTRACT ``tpm`` claims of one or more quotes, each with the PCR values it covers.

    ``signer`` is :func:`signer_of` the AK (None: unknown); ``eventlog_pcrs`` the replayed
    values of the PCRs that have events (None: no log)."""
    out: dict[str, Any] = {}
    if quotes:
        first = quotes[0][0]
        merged: dict[str, dict[int, bytes]] = {}
        for _, pcrs in quotes:
            for bank, values in pcrs.items():
                merged.setdefault(bank, {}).update(values)
        out |= {
            "extra_data": first.extra_data.hex(),
            "pcr_select": selection_dict([s for a, _ in quotes for s in a.pcr_select]),
            "pcr_digest": first.pcr_digest.hex(),
            "pcrs": pcrs_dict(merged),
            "firmware_version": first.firmware_version,
            "clock": first.clock,
            "reset_count": first.reset_count,
            "restart_count": first.restart_count,
            "safe": first.safe,
            "qualified_signer": first.qualified_signer.hex(),
            "quotes": [_one_quote(a) for a, _ in quotes],
        }
    out["signer"] = signer.hex() if signer is not None else None
    if eventlog_pcrs is not None:
        out["eventlog_pcrs"] = pcrs_dict(eventlog_pcrs)
    return out


@dataclass(frozen=True, slots=True)
class TpmClaims:
    """What a verified TPM quote (or a replayed log) says."""

    tee: ClassVar[str] = "tpm"

    quotes: tuple[tuple[Attest, Mapping[str, Mapping[int, bytes]]], ...]
    signer: bytes | None
    evidence_form: str
    eventlog_pcrs: Mapping[str, Mapping[int, bytes]] | None = None
    events: tuple[dict[str, Any], ...] | None = None
    notes: tuple[str, ...] = ()
    ak_trust: str | None = None
    emulated: bool = False

    def to_dict(self) -> dict[str, Any]:
        out = quote_claims(self.quotes, signer=self.signer, eventlog_pcrs=self.eventlog_pcrs)
        out |= {"evidence_form": self.evidence_form, "ak_trust": self.ak_trust,
                "emulated": self.emulated}
        if self.events is not None:
            out["event_log"] = {"events": list(self.events), "notes": list(self.notes)}
        elif self.notes:
            out["notes"] = list(self.notes)
        return out


__all__ = ["TpmClaims", "pcrs_dict", "quote_claims", "selection_dict", "signer_of"]
