"""A collector over :mod:`veritee.testing`'s emulated TPM, for ``veritee attest --tee tpm
--emulate``. Its quotes verify only where the AK is trusted: the verifier must be given the
emulated AK's public key (``veritee emulate tpm`` writes it beside the evidence) or trust
emulated roots."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from veritee.attester.tpm import MAX_REPORT_DATA
from veritee.errors import MisuseError

if TYPE_CHECKING:
    from veritee.testing.tpm import TpmEmulator


def _emulator() -> TpmEmulator:
    from veritee.testing.tpm import TpmEmulator  # noqa: PLC0415 - loaded only when asked for

    return TpmEmulator()


@dataclass
class EmulatedTpmCollector:
    """Trustee's TPM attester JSON from an emulated TPM: a quote over its SHA-256 PCRs with
    the report data as qualifying data, and its event log."""

    emulator: TpmEmulator = field(default_factory=_emulator)

    def __call__(self, report_data: bytes) -> dict[str, Any]:
        if len(report_data) > MAX_REPORT_DATA:
            raise MisuseError(f"report data is {len(report_data)} bytes; a TPM quote's "
                              f"qualifying data is at most {MAX_REPORT_DATA}")
        evidence: dict[str, Any] = json.loads(self.emulator.trustee(report_data))
        return evidence


__all__ = ["EmulatedTpmCollector"]
